package wizards

import (
	"fmt"
	"net/netip"
	"strings"

	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// SNAT choices of the port-forward wizard.
const (
	SNATAuto = "auto"
	SNATNone = "none"
)

// PortForwardOptions are the options of the port-forward wizard (case 5, and the DNAT and
// hairpin part of case 2).
type PortForwardOptions struct {
	// ListenAddr is the address clients connect to; zero means any address of this host (then
	// In should say where clients come in).
	ListenAddr netip.Addr
	ListenPort uint16
	In         string // the interface clients come in on; "" for any
	To         netip.AddrPort
	Proto      string // "tcp" (default) or "udp"
	// SNAT is SNATAuto (default: SNAT when the backend would answer the client directly),
	// SNATNone, or an address of this host to SNAT to.
	SNAT string
	// Hairpin also forwards connections from the backend's own network (and from this host)
	// to the public address, SNATed so that the backend answers through this host.
	Hairpin bool
}

// ParseListen reads [ADDR:]PORT.
func ParseListen(v string) (netip.Addr, uint16, error) {
	if a, p, ok := strings.Cut(v, ":"); ok {
		addr, err := ParseAddr(a, "--listen "+v)
		if err != nil {
			return netip.Addr{}, 0, err
		}
		port, err := parsePort(p, "--listen "+v)
		return addr, port, err
	}
	port, err := parsePort(v, "--listen")
	return netip.Addr{}, port, err
}

// ParseTarget reads ADDR:PORT (ADDR alone keeps the listening port, given as def).
func ParseTarget(v string, def uint16) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(v, ":")
	addr, err := ParseAddr(a, "--to "+v)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port := def
	if ok {
		if port, err = parsePort(p, "--to "+v); err != nil {
			return netip.AddrPort{}, err
		}
	}
	return netip.AddrPortFrom(addr, port), nil
}

// Name implements Wizard.
func (o *PortForwardOptions) Name() string { return finding.WizardPortForward }

// Args implements Wizard.
func (o *PortForwardOptions) Args() []string {
	l := fmt.Sprint(o.ListenPort)
	if o.ListenAddr.IsValid() {
		l = o.ListenAddr.String() + ":" + l
	}
	a := []string{"--listen", l}
	if o.In != "" {
		a = append(a, "--in", o.In)
	}
	a = append(a, "--to", o.To.String(), "--proto", o.proto(), "--snat", o.snat())
	if o.Hairpin {
		a = append(a, "--hairpin")
	}
	return a
}

func (o *PortForwardOptions) proto() string {
	if o.Proto == "" {
		return "tcp"
	}
	return o.Proto
}

func (o *PortForwardOptions) snat() string {
	if o.SNAT == "" {
		return SNATAuto
	}
	return o.SNAT
}

// pfHost is what the port forward needs to know of the host.
type pfHost struct {
	listenLink *model.Link // the link of ListenAddr
	backend    *model.Link // the link whose network holds the backend, nil when routed
	via        string      // the link the backend is reached by when it is routed
	self       netip.Addr  // this host's address toward the backend
	snatTo     netip.Addr  // explicit --snat ADDR
	// adopted is a DNAT rule made by hand that already forwards the port to the backend: it is
	// kept, and the plan adds what it lacks (seed case 5 starts from exactly such a rule).
	adopted string
}

// Validate implements Wizard: it plans and reports the first problem, so that a form can
// check the options as they are filled in.
func (o *PortForwardOptions) Validate(s *model.State) error {
	_, err := o.Plan(s)
	return err
}

func (o *PortForwardOptions) resolve(s *model.State) (*pfHost, error) {
	h := &pfHost{}
	if o.ListenPort == 0 {
		return nil, fmt.Errorf("--listen [ADDR:]PORT is required: the port (1-65535) clients connect to")
	}
	if o.proto() != "tcp" && o.proto() != "udp" {
		return nil, fmt.Errorf("--proto %q: want tcp or udp", o.Proto)
	}
	if !o.To.IsValid() || o.To.Port() == 0 {
		return nil, fmt.Errorf("--to ADDR:PORT is required: the backend's address and port (1-65535)")
	}
	if !o.To.Addr().Is4() {
		return nil, fmt.Errorf("--to %s: only IPv4 backends are supported", o.To)
	}
	if l := localAddr(s, o.To.Addr()); l != nil {
		return nil, fmt.Errorf("--to %s: %s is this host's own address (on %s): a port forward sends connections to another host; to move a port on this host use a REDIRECT rule", o.To, o.To.Addr(), l.Name)
	}
	if o.In != "" {
		if _, err := needLink(s, o.In, "--in"); err != nil {
			return nil, err
		}
	}
	if o.ListenAddr.IsValid() {
		h.listenLink = localAddr(s, o.ListenAddr)
		if h.listenLink == nil {
			var mine []string
			for _, l := range s.Links {
				for _, a := range v4Addrs(&l) {
					mine = append(mine, a.Addr().String())
				}
			}
			return nil, fmt.Errorf("--listen %s:%d: %s is not an address of this host, so no connection to it would be forwarded (this host has %s)",
				o.ListenAddr, o.ListenPort, o.ListenAddr, strings.Join(mine, ", "))
		}
	} else if o.Hairpin {
		return nil, fmt.Errorf("--hairpin needs the public address: give --listen ADDR:PORT")
	}
	h.backend = linkOf(s, o.To.Addr())
	if h.backend != nil {
		h.self = addrOn(h.backend, o.To.Addr())
	} else {
		r := fib.New(s).Lookup(fib.Flow{Family: inet.V4, Dst: o.To.Addr()})
		if r.Verdict != fib.VerdictUnicast || r.OIF == "" {
			return nil, fmt.Errorf("--to %s: this host has no route to %s (%s): add one first", o.To, o.To.Addr(), r.Verdict)
		}
		h.via, h.self = r.OIF, r.PrefSrc
	}
	switch o.snat() {
	case SNATAuto, SNATNone:
	default:
		a, err := ParseAddr(o.snat(), "--snat")
		if err != nil {
			return nil, fmt.Errorf("--snat %q: want auto, none or an address of this host", o.SNAT)
		}
		if localAddr(s, a) == nil {
			return nil, fmt.Errorf("--snat %s: not an address of this host; the backend must be able to answer it here", a)
		}
		h.snatTo = a
	}
	adopted, err := o.existingDNAT(s)
	if err != nil {
		return nil, err
	}
	h.adopted = adopted
	return h, nil
}

// existingDNAT finds a DNAT rule outside roundtrip's chains that already forwards the same
// port. One that forwards it to the same backend is returned, to be kept; one that forwards it
// elsewhere is a clash.
func (o *PortForwardOptions) existingDNAT(s *model.State) (string, error) {
	// A DNAT in either iptables backend forwards the port: the kernel runs both.
	var chains []iptables.Chain
	for _, t := range s.Netfilter.TablesNamed(inet.V4, "nat") {
		chains = append(chains, t.Chains...)
	}
	for _, c := range chains {
		if strings.HasPrefix(c.Name, plan.ChainPrefix) || c.Name != "PREROUTING" && c.Policy != "" {
			continue
		}
		for _, r := range c.Rules {
			// The rule's text is what counts; a state built by hand may not carry the parse.
			if pr, err := iptables.ParseRule(inet.V4, r.Spec); err == nil {
				r = pr
			}
			if r.Target != "DNAT" || r.Proto == nil || r.Proto.Not || r.Proto.Value != o.proto() {
				continue
			}
			if r.Dst != nil && o.ListenAddr.IsValid() {
				p, err := netip.ParsePrefix(r.Dst.Prefix)
				if err != nil {
					if a, aerr := netip.ParseAddr(r.Dst.Prefix); aerr == nil {
						p = netip.PrefixFrom(a, 32)
					}
				}
				if p.IsValid() && p.Contains(o.ListenAddr) == r.Dst.Not {
					continue
				}
			}
			if r.In != nil && o.In != "" && (r.In.Value == o.In) == r.In.Not {
				continue
			}
			if !matchesPort(r, o.ListenPort) {
				continue
			}
			text := fmt.Sprintf("iptables -t nat -A %s %s", c.Name, r.Spec)
			if to, ok := r.TargetOption("to-destination"); ok && len(to.Values) == 1 && (to.Values[0] == o.To.String() || o.To.Port() == o.ListenPort && to.Values[0] == o.To.Addr().String()) {
				return text, nil
			}
			return "", fmt.Errorf("%s already forwards %s port %d elsewhere: remove it first (iptables -t nat -D %s %s), or choose another port",
				text, o.proto(), o.ListenPort, c.Name, r.Spec)
		}
	}
	return "", nil
}

// matchesPort reports whether a rule's destination port match covers port.
func matchesPort(r iptables.Rule, port uint16) bool {
	for _, m := range r.Matches {
		for _, name := range []string{"dport", "destination-port", "dports"} {
			o, ok := m.Option(name)
			if !ok || len(o.Values) == 0 {
				continue
			}
			for _, v := range strings.Split(o.Values[0], ",") {
				lo, hi, isRange := strings.Cut(v, ":")
				var a, b int
				fmt.Sscan(lo, &a)
				b = a
				if isRange {
					fmt.Sscan(hi, &b)
				}
				if (int(port) >= a && int(port) <= b) != o.Not {
					return true
				}
			}
			return false
		}
	}
	return false
}

// Chains of the port forwards, shared by every forward (each tags its rules).
const (
	chainPFPre  = plan.ChainPrefix + "PF-PRE"
	chainPFOut  = plan.ChainPrefix + "PF-OUT"
	chainPFPost = plan.ChainPrefix + "PF-POST"
)

func (o *PortForwardOptions) tag() string {
	where := "any"
	if o.ListenAddr.IsValid() {
		where = o.ListenAddr.String()
	} else if o.In != "" {
		where = o.In
	}
	return fmt.Sprintf("rt:pf:%s:%s:%d", o.proto(), where, o.ListenPort)
}

// Plan implements Wizard.
func (o *PortForwardOptions) Plan(s *model.State) (*Result, error) {
	return withNFTFallback(s, o.plan)
}

// plan is Plan for one choice of firewall.
func (o *PortForwardOptions) plan(s *model.State) (*Result, error) {
	h, err := o.resolve(s)
	if err != nil {
		return nil, err
	}
	b := newBuilder(s, "", intent(o))
	proto, tag := o.proto(), o.tag()
	match := func(dst netip.Addr, port uint16) string {
		m := fmt.Sprintf("-p %s -m %s --dport %d", proto, proto, port)
		if dst.IsValid() {
			m = fmt.Sprintf("-d %s/32 %s", dst, m)
		}
		return m
	}
	dnat := " " + comment(tag) + " -j DNAT --to-destination " + o.To.String()

	// Requests: DNAT where clients come in.
	var pre []string
	var parts []string
	if o.ListenAddr.IsValid() {
		parts = append(parts, fmt.Sprintf("-d %s/32", o.ListenAddr))
	}
	if o.In != "" {
		parts = append(parts, "-i "+o.In)
	}
	parts = append(parts, match(netip.Addr{}, o.ListenPort))
	if !o.ListenAddr.IsValid() {
		// Any address of this host, as a socket bound to 0.0.0.0 would accept.
		parts = append(parts, "-m addrtype --dst-type LOCAL")
	}
	first := strings.Join(parts, " ")
	if h.adopted == "" {
		pre = append(pre, first+dnat)
	} else {
		b.notef("the DNAT is already there and stays: %s; the plan adds what it lacks", h.adopted)
	}
	backendName := h.via
	if h.backend != nil {
		backendName = h.backend.Name
	}
	if o.Hairpin && o.In != "" && o.In != backendName {
		pre = append(pre, fmt.Sprintf("-d %s/32 -i %s -p %s -m %s --dport %d%s", o.ListenAddr, backendName, proto, proto, o.ListenPort, dnat))
	}
	b.shared("nat", chainPFPre, []plan.Jump{{Chain: "PREROUTING", Position: 1}}, tagged{tag, pre},
		fmt.Sprintf("connections to %s are sent to %s", o.listenText(), o.To))
	var out []string
	if o.Hairpin {
		out = append(out, match(o.ListenAddr, o.ListenPort)+dnat)
	}
	b.shared("nat", chainPFOut, []plan.Jump{{Chain: "OUTPUT", Position: 1}}, tagged{tag, out},
		"connections this host itself makes to the public address are forwarded too")

	// Replies: SNAT when the backend would otherwise answer the client directly.
	post := o.snatRules(b, h, proto, tag)
	b.shared("nat", chainPFPost, []plan.Jump{{Chain: "POSTROUTING", Position: 1}}, tagged{tag, post},
		"forwarded connections leave with this host's address, so the backend's answers come back here to be un-NATed")

	ingress := []string{o.In}
	if o.In == "" && h.listenLink != nil {
		ingress[0] = h.listenLink.Name
	}
	// The backend's answers arrive on its interface and are forwarded too.
	ingress = append(ingress, backendName)
	b.forwarding("forwarded connections are routed on to the backend", ingress...)
	b.acceptForwarded(tag, fmt.Sprintf("-d %s/32 -p %s -m %s --dport %d", o.To.Addr(), proto, proto, o.To.Port()))
	pn, _ := inet.ProtoNumber(proto)
	flush := plan.ConntrackFlush{Family: inet.V4, Proto: pn, DPort: o.ListenPort}
	if o.ListenAddr.IsValid() {
		flush.Dst = netip.PrefixFrom(o.ListenAddr, 32)
	}
	b.d.Flush = append(b.d.Flush, flush)
	return b.result(o.Name())
}

func (o *PortForwardOptions) listenText() string {
	s := fmt.Sprintf("%s port %d", o.proto(), o.ListenPort)
	if o.ListenAddr.IsValid() {
		s = fmt.Sprintf("%s %s:%d", o.proto(), o.ListenAddr, o.ListenPort)
	}
	if o.In != "" {
		s += " arriving on " + o.In
	}
	return s
}

// snatRules decides the SNAT of the forward and explains the decision in notes. A backend
// answers the client straight from its own address, bypassing this host (which must undo the
// DNAT), whenever its route to the client does not go through this host (seed case 5):
//   - clients on the backend's own network, which the backend reaches directly: those of the
//     interface the backend is on, and those of the hairpin;
//   - every client, when the backend's network has another router (this host routes via one
//     there), which is then most likely the backend's default gateway.
//
// SNAT to this host's address on the backend's network makes the backend answer here.
func (o *PortForwardOptions) snatRules(b *builder, h *pfHost, proto, tag string) []string {
	base := fmt.Sprintf("-d %s/32 -p %s -m %s --dport %d -m conntrack --ctstate DNAT %s -j SNAT --to-source ", o.To.Addr(), proto, proto, o.To.Port(), comment(tag))
	if h.snatTo.IsValid() {
		b.notef("forwarded connections are SNATed to %s (--snat)", h.snatTo)
		return []string{base + h.snatTo.String()}
	}
	if h.backend == nil {
		if o.snat() == SNATAuto {
			b.notef("the backend %s is not on a network of this host (it is reached via %s): its answers go where its own routes point, which this host cannot see; no SNAT is added. If they do not come back through this host, use --snat %s", o.To.Addr(), h.via, h.self)
		}
		return nil
	}
	x := h.backend
	routers := gateways(b.s, x.Name)
	sameLink := o.In == x.Name || o.In == "" && (h.listenLink == nil || h.listenLink.Name == x.Name)
	var rules []string
	why := ""
	switch {
	case len(routers) > 0:
		why = fmt.Sprintf("the backend's network %s has another router (%s, which this host routes through), so the backend's default gateway is most likely that router, not this host: without SNAT it would answer every client directly and the client would reset the connection", prefixList(connected(x)), routers[0])
		rules = append(rules, base+h.self.String())
	case sameLink || o.Hairpin:
		var who []string
		if sameLink {
			who = append(who, "clients on "+x.Name)
		}
		if o.Hairpin {
			who = append(who, "hairpin clients from the LAN")
		}
		why = fmt.Sprintf("%s share the backend's network %s, so the backend would answer them directly from %s, an address they never spoke to; they would reset the connection. SNAT to %s makes the answers come back here. Clients from other networks keep their address: this host, with no other router on %s, is the backend's way out",
			strings.Join(who, " and "), prefixList(connected(x)), o.To, h.self, x.Name)
		for _, n := range connected(x) {
			rules = append(rules, fmt.Sprintf("-s %s %s%s", n, base, h.self))
		}
	default:
		if o.snat() == SNATAuto {
			b.notef("no SNAT needed: clients come in on %s and the backend %s is on %s, where this host is the only router, so its answers come back through this host; the backend sees the clients' real addresses", o.inText(), o.To.Addr(), x.Name)
		}
		return nil
	}
	if o.snat() == SNATNone {
		b.notef("--snat none: no SNAT, although %s", why)
		return nil
	}
	b.notef("SNAT to %s: %s", h.self, why)
	return rules
}

func (o *PortForwardOptions) inText() string {
	if o.In != "" {
		return o.In
	}
	return "the interface of " + o.ListenAddr.String()
}
