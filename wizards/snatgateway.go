package wizards

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// SNATGatewayOptions are the options of the snat-gateway wizard (case 4): this host forwards
// traffic from one network to another and SNATs it, so that the far network needs no route
// back; the other side gets the route through this host as a peer script.
type SNATGatewayOptions struct {
	// From are the networks whose traffic is forwarded; empty means the networks of In.
	From []netip.Prefix
	// To are the networks reached; empty means the networks of Out.
	To []netip.Prefix
	// In is the interface the traffic comes in on; empty means where this host routes From.
	In  string
	Out string
	// ToSource is the address to SNAT to; zero means this host's address on Out.
	ToSource netip.Addr
}

// Name implements Wizard.
func (o *SNATGatewayOptions) Name() string { return finding.WizardSNATGateway }

// Args implements Wizard.
func (o *SNATGatewayOptions) Args() []string {
	var a []string
	for _, p := range o.From {
		a = append(a, "--from", p.String())
	}
	for _, p := range o.To {
		a = append(a, "--to", p.String())
	}
	if o.In != "" {
		a = append(a, "--in", o.In)
	}
	a = append(a, "--out", o.Out)
	if o.ToSource.IsValid() {
		a = append(a, "--to-source", o.ToSource.String())
	}
	return a
}

type sgHost struct {
	in, out    *model.Link
	from, to   []netip.Prefix
	source     netip.Addr // what the SNAT translates to
	peerRouter netip.Addr // this host's address on the side of From
}

// Validate implements Wizard: it plans and reports the first problem, so that a form can
// check the options as they are filled in.
func (o *SNATGatewayOptions) Validate(s *model.State) error {
	_, err := o.Plan(s)
	return err
}

func (o *SNATGatewayOptions) resolve(s *model.State) (*sgHost, error) {
	h := &sgHost{from: o.From, to: o.To}
	var err error
	if h.out, err = needLink(s, o.Out, "--out"); err != nil {
		return nil, err
	}
	if len(v4Addrs(h.out)) == 0 && !o.ToSource.IsValid() {
		return nil, fmt.Errorf("--out %s: %s has no IPv4 address to SNAT to: give --to-source ADDR", o.Out, o.Out)
	}
	if o.In != "" {
		if h.in, err = needLink(s, o.In, "--in"); err != nil {
			return nil, err
		}
		if h.in.Name == h.out.Name {
			return nil, fmt.Errorf("--in and --out are both %s: traffic that comes in and goes out on one link needs no gateway", o.In)
		}
	}
	if len(h.from) == 0 {
		if h.in == nil {
			return nil, fmt.Errorf("--from CIDR (or --in IFACE) is required: the network whose traffic this host forwards")
		}
		if h.from = connected(h.in); len(h.from) == 0 {
			return nil, fmt.Errorf("--in %s has no IPv4 network: give --from CIDR", h.in.Name)
		}
	}
	if len(h.to) == 0 {
		if h.to = connected(h.out); len(h.to) == 0 {
			return nil, fmt.Errorf("--out %s has no IPv4 network: give --to CIDR", h.out.Name)
		}
	}
	f := fib.New(s)
	for _, p := range h.from {
		if !p.Addr().Is4() {
			return nil, fmt.Errorf("--from %s: only IPv4 is supported", p)
		}
		// Where the replies to From go decides the ingress (and the peer's router address).
		r := f.Lookup(fib.Flow{Family: inet.V4, Dst: p.Addr()})
		if r.Verdict != fib.VerdictUnicast {
			return nil, fmt.Errorf("--from %s: this host has no route to %s (%s), so it could not reach the hosts it forwards for", p, p, r.Verdict)
		}
		if h.in == nil {
			h.in = s.LinkByName(r.OIF)
		}
		if r.OIF == h.out.Name {
			return nil, fmt.Errorf("--from %s: this host routes %s out %s, the --out interface; --from must be on another side of this host", p, p, h.out.Name)
		}
		if slices.ContainsFunc(h.to, func(t netip.Prefix) bool { return t.Overlaps(p) }) {
			return nil, fmt.Errorf("--from %s overlaps --to %s", p, prefixList(h.to))
		}
	}
	for _, p := range h.to {
		if !p.Addr().Is4() {
			return nil, fmt.Errorf("--to %s: only IPv4 is supported", p)
		}
		r := f.Lookup(fib.Flow{Family: inet.V4, Dst: p.Addr()})
		if r.Verdict != fib.VerdictUnicast || r.OIF != h.out.Name {
			where := r.Verdict
			if r.OIF != "" {
				where = "leave by " + r.OIF
			}
			return nil, fmt.Errorf("--to %s: this host's routes to %s %s, not %s (--out): add a route first or fix --out", p, p, where, h.out.Name)
		}
	}
	h.source = o.ToSource
	if h.source.IsValid() {
		if localAddr(s, h.source) == nil {
			return nil, fmt.Errorf("--to-source %s: not an address of this host, so replies to it would not come here", h.source)
		}
	} else {
		h.source = addrOn(h.out, h.to[0].Addr())
	}
	if h.in != nil {
		h.peerRouter = addrOn(h.in, h.from[0].Addr())
	}
	return h, nil
}

// chainSNAT holds the SNAT rules of every snat-gateway run (each tags its own).
const chainSNAT = plan.ChainPrefix + "SNAT"

// Plan implements Wizard.
func (o *SNATGatewayOptions) Plan(s *model.State) (*Result, error) {
	return withNFTFallback(s, o.plan)
}

// plan is Plan for one choice of firewall.
func (o *SNATGatewayOptions) plan(s *model.State) (*Result, error) {
	h, err := o.resolve(s)
	if err != nil {
		return nil, err
	}
	b := newBuilder(s, "", intent(o))
	var froms []string
	for _, p := range h.from {
		froms = append(froms, p.String())
	}
	tag := fmt.Sprintf("rt:snat:%s:%s", h.out.Name, strings.Join(froms, ","))
	var rules, matches []string
	for _, f := range h.from {
		for _, t := range h.to {
			m := fmt.Sprintf("-s %s -d %s", f, t)
			matches = append(matches, fmt.Sprintf("%s -i %s -o %s", m, h.in.Name, h.out.Name))
			rules = append(rules, fmt.Sprintf("%s -o %s %s -j SNAT --to-source %s", m, h.out.Name, comment(tag), h.source))
		}
	}
	b.forwarding(fmt.Sprintf("this host forwards %s to %s", prefixList(h.from), prefixList(h.to)), h.in.Name, h.out.Name)
	b.shared("nat", chainSNAT, []plan.Jump{{Chain: "POSTROUTING", Position: 1}}, tagged{tag, rules},
		fmt.Sprintf("the hosts of %s answer %s, which they reach without a route back", prefixList(h.to), h.source))
	b.acceptForwarded(tag, matches...)
	b.notef("traffic from %s to %s leaves %s as %s: the hosts there need no route back to %s", prefixList(h.from), prefixList(h.to), h.out.Name, h.source, prefixList(h.from))
	res, err := b.result(o.Name())
	if err != nil {
		return nil, err
	}

	// The other side must send its traffic for To through this host.
	peer := &plan.Desired{Intent: fmt.Sprintf("reach %s through %s (the other end of: %s)", prefixList(h.to), h.peerRouter, intent(o)), Why: map[string]string{}}
	for _, t := range h.to {
		r := model.Route{Family: inet.V4, Table: model.TableMain, Dst: t, Gateway: h.peerRouter}
		peer.Routes = append(peer.Routes, r)
		peer.Why[plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &r}.ObjectKey()] = fmt.Sprintf("%s is reached through %s, which forwards and SNATs it", t, h.peerRouter)
	}
	if res.Peer, err = peerPlan(peer); err != nil {
		return nil, err
	}
	res.PeerHost = fmt.Sprintf("the hosts of %s that must reach %s (or their router)", prefixList(h.from), prefixList(h.to))
	if linkOf(s, h.from[0].Addr()) == nil {
		res.Notes = append(res.Notes, fmt.Sprintf("%s is not on a network of this host: the route in the peer script belongs on the router in front of it, which must reach %s", h.from[0], h.peerRouter))
	}
	return res, nil
}
