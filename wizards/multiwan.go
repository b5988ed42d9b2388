package wizards

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// WAN is one uplink of a multi-WAN gateway: its interface, its ISP's gateway (zero: detected)
// and the name of its routing table (the interface's name when empty).
type WAN struct {
	Iface   string
	Gateway netip.Addr
	Name    string
}

// ParseWAN reads IFACE[:GATEWAY[:NAME]] (IFACE::NAME detects the gateway).
func ParseWAN(v string) (WAN, error) {
	parts := strings.Split(v, ":")
	if parts[0] == "" || len(parts) > 3 {
		return WAN{}, fmt.Errorf("--wan %q: want IFACE:GATEWAY or IFACE:GATEWAY:NAME", v)
	}
	w := WAN{Iface: parts[0]}
	if len(parts) > 1 && parts[1] != "" {
		a, err := ParseAddr(parts[1], "--wan "+v)
		if err != nil {
			return w, err
		}
		w.Gateway = a
	}
	if len(parts) > 2 {
		w.Name = parts[2]
	}
	return w, nil
}

func (w WAN) String() string {
	s := w.Iface
	if w.Gateway.IsValid() || w.Name != "" {
		s += ":"
		if w.Gateway.IsValid() {
			s += w.Gateway.String()
		}
	}
	if w.Name != "" {
		s += ":" + w.Name
	}
	return s
}

func (w WAN) name() string {
	if w.Name != "" {
		return w.Name
	}
	return w.Iface
}

// MultiWANOptions are the options of the multi-wan wizard (case 2): a gateway with several
// ISPs, destination lists per ISP, NAT per ISP, and answers that go back out the ISP they came
// in from.
type MultiWANOptions struct {
	WANs []WAN
	// LANs are the inside interfaces; empty means every other interface with an IPv4 address.
	LANs []string
	// Default names the WAN for everything no list claims (the first WAN when empty).
	Default    string
	RouteLists []RouteList
	// SNAT translates the LANs' traffic to the address of the WAN it leaves by.
	SNAT bool
	// Connmark also answers forwarded (DNATed) connections through the WAN they came in on.
	Connmark bool
}

// Name implements Wizard.
func (o *MultiWANOptions) Name() string { return finding.WizardMultiWAN }

// Args implements Wizard.
func (o *MultiWANOptions) Args() []string {
	var a []string
	for _, w := range o.WANs {
		a = append(a, "--wan", w.String())
	}
	for _, l := range o.LANs {
		a = append(a, "--lan", l)
	}
	if o.Default != "" {
		a = append(a, "--default", o.Default)
	}
	for _, l := range o.RouteLists {
		f := l.File
		if f == "" {
			f = fmt.Sprintf("(%d networks)", len(l.Prefixes))
		}
		a = append(a, "--route-list", l.WAN+"="+f)
	}
	if o.SNAT {
		a = append(a, "--snat")
	}
	if o.Connmark {
		a = append(a, "--connmark")
	}
	return a
}

// ParseRouteListFlag reads NAME=FILE of --route-list (the file is loaded by Validate).
func ParseRouteListFlag(v string) (RouteList, error) {
	name, file, ok := strings.Cut(v, "=")
	if !ok || name == "" || file == "" {
		return RouteList{}, fmt.Errorf("--route-list %q: want NAME=FILE, NAME being a WAN's name", v)
	}
	return RouteList{WAN: name, File: file}, nil
}

var wanNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

type mwPlan struct {
	wans  []returnUplink
	lans  []*model.Link
	def   int // index into wans
	lists [][]netip.Prefix
}

// Validate implements Wizard: it plans and reports the first problem, so that a form can
// check the options as they are filled in.
func (o *MultiWANOptions) Validate(s *model.State) error {
	_, err := o.Plan(s)
	return err
}

func (o *MultiWANOptions) resolve(s *model.State) (*mwPlan, error) {
	if len(o.WANs) < 2 {
		return nil, fmt.Errorf("--wan IFACE:GATEWAY[:NAME] is needed once for each uplink, at least twice (this host has %s)", linkNames(s))
	}
	mp := &mwPlan{def: -1}
	names := map[string]int{}
	for i, w := range o.WANs {
		flag := "--wan " + w.String()
		l, err := needLink(s, w.Iface, "--wan")
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(mp.wans, func(u returnUplink) bool { return u.link.Name == l.Name }) {
			return nil, fmt.Errorf("%s: %s is given twice", flag, l.Name)
		}
		if len(v4Addrs(l)) == 0 {
			return nil, fmt.Errorf("%s: %s has no IPv4 address", flag, l.Name)
		}
		name := w.name()
		if !wanNameRE.MatchString(name) || slices.Contains([]string{"main", "local", "default", "unspec", "all"}, name) {
			return nil, fmt.Errorf("%s: name %q cannot name a routing table: want letters, digits, '_', '.', '-', starting with a letter, not main, local, default, unspec or all", flag, name)
		}
		if _, dup := names[name]; dup {
			return nil, fmt.Errorf("%s: the name %s is given to two WANs", flag, name)
		}
		names[name] = i
		gw, err := gatewayOf(s, l, w.Gateway, "--wan "+w.Iface+":GATEWAY")
		if err != nil {
			return nil, err
		}
		mp.wans = append(mp.wans, returnUplink{link: l, gateway: gw, table: name})
	}
	lookup := func(flag, n string) (int, error) {
		if i, ok := names[n]; ok {
			return i, nil
		}
		// A WAN can also be named by its interface.
		if i := slices.IndexFunc(o.WANs, func(w WAN) bool { return w.Iface == n }); i >= 0 {
			return i, nil
		}
		var known []string
		for _, w := range o.WANs {
			known = append(known, w.name())
		}
		return 0, fmt.Errorf("%s: no WAN is named %q (the WANs are %s)", flag, n, strings.Join(known, ", "))
	}
	mp.def = 0
	if o.Default != "" {
		i, err := lookup("--default", o.Default)
		if err != nil {
			return nil, err
		}
		mp.def = i
	}
	isWAN := func(name string) bool {
		return slices.ContainsFunc(mp.wans, func(u returnUplink) bool { return u.link.Name == name })
	}
	if len(o.LANs) > 0 {
		for _, n := range o.LANs {
			l, err := needLink(s, n, "--lan")
			if err != nil {
				return nil, err
			}
			if isWAN(n) {
				return nil, fmt.Errorf("--lan %s: %s is also a WAN", n, n)
			}
			if len(v4Addrs(l)) == 0 {
				return nil, fmt.Errorf("--lan %s: %s has no IPv4 address", n, n)
			}
			mp.lans = append(mp.lans, l)
		}
	} else {
		for i := range s.Links {
			l := &s.Links[i]
			if l.Kind != "loopback" && !isWAN(l.Name) && len(v4Addrs(l)) > 0 {
				mp.lans = append(mp.lans, l)
			}
		}
	}
	mp.lists = make([][]netip.Prefix, len(mp.wans))
	owner := map[netip.Prefix]string{}
	var conn []netip.Prefix
	for i := range s.Links {
		conn = append(conn, connected(&s.Links[i])...)
	}
	for j := range o.RouteLists {
		rl := &o.RouteLists[j]
		flag := "--route-list " + rl.WAN + "=" + rl.File
		i, err := lookup(flag, rl.WAN)
		if err != nil {
			return nil, err
		}
		if rl.Prefixes == nil && rl.File != "" {
			ps, err := LoadRouteList(rl.File)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", flag, err)
			}
			rl.Prefixes = ps
		}
		src := rl.File
		if src == "" {
			src = "the list of " + rl.WAN
		}
		for _, p := range rl.Prefixes {
			if prev, dup := owner[p]; dup && prev != src {
				return nil, fmt.Errorf("%s: %s is also in %s: a network can leave by one WAN only", flag, p, prev)
			}
			if slices.Contains(conn, p) {
				return nil, fmt.Errorf("%s: %s is a network connected to this host: remove it from the list", flag, p)
			}
			if _, dup := owner[p]; !dup {
				owner[p] = src
				mp.lists[i] = append(mp.lists[i], p)
			}
		}
	}
	for i := range mp.wans {
		mp.wans[i].lans = mp.lans
	}
	return mp, nil
}

// Plan implements Wizard.
func (o *MultiWANOptions) Plan(s *model.State) (*Result, error) {
	return withNFTFallback(s, o.plan)
}

// plan is Plan for one choice of firewall.
func (o *MultiWANOptions) plan(s *model.State) (*Result, error) {
	b, _, err := o.build(s, nil)
	if err != nil {
		return nil, err
	}
	return b.result(o.Name())
}

// build collects the desired state of the multi-wan setup with the WANs of down (by name or
// interface) routed around: what they would carry (the default route, their destination lists)
// goes to the surviving default WAN instead (see PlanWithDown). With down empty it is the
// wizard's plan.
func (o *MultiWANOptions) build(s *model.State, down []string) (*builder, *mwPlan, error) {
	mp, err := o.resolve(s)
	if err != nil {
		return nil, nil, err
	}
	dead, err := mp.downSet(o, down)
	if err != nil {
		return nil, nil, err
	}
	b := newBuilder(s, plan.ChainPrefix+"MW-", intent(o))
	if len(o.LANs) == 0 {
		var n []string
		for _, l := range mp.lans {
			n = append(n, l.Name)
		}
		if len(n) == 0 {
			b.notef("no LAN: every interface with an address is a WAN")
		} else {
			b.notef("LAN interfaces (every interface that is not a WAN): %s", strings.Join(n, ", "))
		}
	}
	for i, w := range mp.wans {
		if !o.WANs[i].Gateway.IsValid() {
			b.notef("the gateway of %s is %s, taken from the routes that use it", w.link.Name, w.gateway)
		}
	}
	if err := b.returnRouting(mp.wans, true, o.Connmark, plan.ChainPrefix+"MW-"); err != nil {
		return nil, nil, err
	}
	b.leaveTables(mp, dead)
	if !o.Connmark {
		b.notef("without --connmark only connections to this host's own WAN addresses are answered through the WAN they came in on; forwarded ones (port forwards to the LAN) follow the routes to the client")
	}

	// Everything no list claims leaves by the default WAN, or by the first surviving one.
	target := mp.carrier(dead)
	b.defaultRoute(mp, target)
	for i, ps := range mp.lists {
		w := mp.wans[i]
		if dead[i] {
			w = mp.wans[target]
		}
		for _, p := range ps {
			b.route(model.Route{Dst: p, Gateway: w.gateway, Dev: w.link.Name}, "")
		}
		if len(ps) > 0 {
			if dead[i] {
				b.notef("%s is down: its %d destination networks leave by %s (%s via %s)", mp.wans[i].table, len(ps), w.table, w.link.Name, w.gateway)
			} else {
				b.notef("%d destination networks leave by %s (%s via %s)", len(ps), w.table, w.link.Name, w.gateway)
			}
		}
	}

	ingress := []string{}
	for _, l := range mp.lans {
		ingress = append(ingress, l.Name)
	}
	for _, w := range mp.wans {
		ingress = append(ingress, w.link.Name)
	}
	b.forwarding("a gateway forwards between its LAN and its WANs", ingress...)

	for _, w := range mp.wans {
		if b.s.Sysctls.RPFilter(w.link.Name) == 1 && !o.Connmark {
			// Cross access (a client routed via one WAN reaching the other WAN's address) arrives
			// on a WAN that main does not route the client through; strict mode drops it.
			b.sysctl(model.ConfKey(w.link.Name, "rp_filter"), "2", fmt.Sprintf("loose reverse-path filtering on %s: its clients may be routed via another WAN", w.link.Name))
			b.notef("rp_filter was strict on %s; it becomes loose (2), since clients reaching it may be routed via another WAN (or use --connmark, which keeps strict mode working)", w.link.Name)
		}
	}

	if o.SNAT {
		var rules []string
		for _, w := range mp.wans {
			addr := v4Addrs(w.link)[0].Addr()
			var lanNets []netip.Prefix
			for _, l := range mp.lans {
				lanNets = append(lanNets, connected(l)...)
			}
			if len(lanNets) == 0 {
				rules = append(rules, fmt.Sprintf("-o %s -j MASQUERADE", w.link.Name))
				continue
			}
			for _, n := range lanNets {
				rules = append(rules, fmt.Sprintf("-s %s -o %s -j SNAT --to-source %s", n, w.link.Name, addr))
			}
		}
		b.chain(plan.ChainSpec{Family: inet.V4, Table: "nat", Name: plan.ChainPrefix + "MW-NAT", Jumps: []plan.Jump{{Chain: "POSTROUTING", Position: 1}}, Rules: rules},
			"the LAN's connections leave with the address of the WAN they leave by, so that each ISP sees its own address")
	}
	b.sweep()
	return b, mp, nil
}
