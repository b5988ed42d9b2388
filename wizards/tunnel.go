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

// Tunnel defaults.
const (
	DefaultVNI       = 100
	DefaultVXLANPort = 4789 // IANA's; the Linux default 8472 predates it
)

// TunnelOptions are the options of the tunnel wizard (case 3): an IP tunnel between this host
// and a peer, routes into it, and the peer's side as a script.
type TunnelOptions struct {
	Type   string // ipip, gre or vxlan
	Local  netip.Addr
	Remote netip.Addr
	// Address is this end's address inside the tunnel, with the tunnel network's length.
	Address netip.Prefix
	// PeerAddress is the other end's address; zero means the other usable address of
	// Address's network.
	PeerAddress netip.Addr
	// Routes are the destinations sent into the tunnel from this host.
	Routes []netip.Prefix
	// PeerRoutes are the destinations the peer sends back into the tunnel; empty means this
	// host's networks other than the underlay's. Unused with UplinkOnly.
	PeerRoutes []netip.Prefix
	// UplinkOnly sends only the upstream through the tunnel: the far side answers directly,
	// so the peer routes nothing back and must accept packets whose source it routes
	// elsewhere (loose reverse-path filtering). With UplinkOnly and no Routes this host is
	// that receiving end (case 3's relay 2): it sends nothing into the tunnel.
	UplinkOnly bool
	Iface      string // the tunnel interface; "rt-TYPE" when empty
	VNI        uint32 // vxlan id; DefaultVNI when zero
	Port       int    // vxlan UDP port; DefaultVXLANPort when zero
}

// Name implements Wizard.
func (o *TunnelOptions) Name() string { return finding.WizardTunnel }

// Args implements Wizard.
func (o *TunnelOptions) Args() []string {
	a := []string{"--type", o.Type, "--local", o.Local.String(), "--remote", o.Remote.String(), "--address", o.Address.String()}
	if o.PeerAddress.IsValid() {
		a = append(a, "--peer-address", o.PeerAddress.String())
	}
	for _, r := range o.Routes {
		a = append(a, "--route", r.String())
	}
	for _, r := range o.PeerRoutes {
		a = append(a, "--peer-route", r.String())
	}
	if o.UplinkOnly {
		a = append(a, "--uplink-only")
	}
	if o.Iface != "" {
		a = append(a, "--name", o.Iface)
	}
	if o.Type == "vxlan" {
		a = append(a, "--vni", fmt.Sprint(o.vni()), "--port", fmt.Sprint(o.port()))
	}
	return a
}

func (o *TunnelOptions) ifname() string {
	if o.Iface != "" {
		return o.Iface
	}
	return "rt-" + o.Type
}

func (o *TunnelOptions) vni() uint32 {
	if o.VNI == 0 {
		return DefaultVNI
	}
	return o.VNI
}

func (o *TunnelOptions) port() int {
	if o.Port == 0 {
		return DefaultVXLANPort
	}
	return o.Port
}

type tunHost struct {
	underlay *model.Link
	peer     netip.Addr
}

// Validate implements Wizard: it plans and reports the first problem, so that a form can
// check the options as they are filled in.
func (o *TunnelOptions) Validate(s *model.State) error {
	_, err := o.Plan(s)
	return err
}

func (o *TunnelOptions) resolve(s *model.State) (*tunHost, error) {
	h := &tunHost{}
	switch o.Type {
	case "ipip", "gre", "vxlan":
	case "":
		return nil, fmt.Errorf("--type is required: ipip, gre or vxlan")
	default:
		return nil, fmt.Errorf("--type %q: want ipip, gre or vxlan", o.Type)
	}
	name := o.ifname()
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/: \t") {
		return nil, fmt.Errorf("--name %q: an interface name is 1-15 characters without '/', ':' or spaces", name)
	}
	if !o.Local.Is4() || !o.Remote.Is4() {
		return nil, fmt.Errorf("--local and --remote are required: the IPv4 addresses of the two ends on the network between them")
	}
	if h.underlay = localAddr(s, o.Local); h.underlay == nil {
		return nil, fmt.Errorf("--local %s is not an address of this host: give the address this host has toward %s", o.Local, o.Remote)
	}
	if h.underlay.Name == name {
		return nil, fmt.Errorf("--local %s is on %s, the tunnel itself: give the address of the network the tunnel runs over", o.Local, name)
	}
	if l := localAddr(s, o.Remote); l != nil {
		return nil, fmt.Errorf("--remote %s is an address of this host (on %s): give the other end's address", o.Remote, l.Name)
	}
	if l := s.LinkByName(name); l != nil && l.Kind != o.Type {
		return nil, fmt.Errorf("interface %s already exists as a %s link: choose another --name", name, l.Kind)
	}
	if !o.Address.IsValid() || !o.Address.Addr().Is4() {
		return nil, fmt.Errorf("--address CIDR is required: this end's address in the tunnel, e.g. 10.255.0.1/30")
	}
	bitsLen := o.Address.Bits()
	if bitsLen > 31 {
		return nil, fmt.Errorf("--address %s: the tunnel network needs room for two ends: use a /30 or /31", o.Address)
	}
	net := o.Address.Masked()
	h.peer = o.PeerAddress
	if !h.peer.IsValid() {
		h.peer = otherEnd(o.Address)
	}
	if !net.Contains(h.peer) || h.peer == o.Address.Addr() {
		return nil, fmt.Errorf("--peer-address %s must be another address of %s", h.peer, net)
	}
	if bitsLen < 31 && (o.Address.Addr() == net.Addr() || h.peer == net.Addr()) {
		return nil, fmt.Errorf("--address %s: %s is the network's own address; use a host address", o.Address, net.Addr())
	}
	for _, l := range s.Links {
		if l.Name == name {
			continue
		}
		for _, p := range connected(&l) {
			if p.Overlaps(net) {
				return nil, fmt.Errorf("--address %s: the tunnel network overlaps %s on %s: choose an unused network", o.Address, p, l.Name)
			}
		}
	}
	f := fib.New(s)
	if r := f.Lookup(fib.Flow{Family: inet.V4, Dst: o.Remote}); r.Verdict != fib.VerdictUnicast || r.OIF == name {
		return nil, fmt.Errorf("--remote %s: this host has no route to it outside the tunnel (%s): the tunnel's packets need one", o.Remote, r.Verdict)
	}
	if o.Type == "vxlan" && o.vni() >= 1<<24 {
		return nil, fmt.Errorf("--vni %d: a vxlan id has 24 bits (at most %d)", o.VNI, 1<<24-1)
	}
	if o.port() < 1 || o.port() > 65535 {
		return nil, fmt.Errorf("--port %d is out of range: want 1-65535", o.Port)
	}
	if len(o.Routes) == 0 && !o.UplinkOnly {
		return nil, fmt.Errorf("--route CIDR is required: the destinations this end sends through the tunnel. " +
			"Plan on one end only: this run also prints the other end's script (save it with --peer-out FILE and run it there). " +
			"On the receiving end of an --uplink-only tunnel give --uplink-only and no --route")
	}
	for _, list := range [][]netip.Prefix{o.Routes, o.PeerRoutes} {
		for _, r := range list {
			if !r.Addr().Is4() || r.Masked() != r {
				return nil, fmt.Errorf("route %s: want an IPv4 network without host bits", r)
			}
			for _, end := range []netip.Addr{o.Local, o.Remote} {
				if r.Contains(end) {
					return nil, fmt.Errorf("route %s covers the tunnel end %s: its encapsulated packets would be sent into the tunnel itself", r, end)
				}
			}
			if r.Overlaps(net) {
				return nil, fmt.Errorf("route %s overlaps the tunnel network %s", r, net)
			}
		}
	}
	return h, nil
}

// otherEnd returns the other usable address of a tunnel network: the other address of a /31,
// else the first host address, or the second when this end has the first.
func otherEnd(p netip.Prefix) netip.Addr {
	net := p.Masked().Addr()
	if p.Bits() == 31 {
		if p.Addr() == net {
			return net.Next()
		}
		return net
	}
	first := net.Next()
	if p.Addr() == first {
		return first.Next()
	}
	return first
}

// link returns the tunnel link of one end.
func (o *TunnelOptions) link(local, remote netip.Addr, dev string, addr netip.Prefix) model.Link {
	t := &model.Tunnel{Local: local, Remote: remote, Dev: dev}
	if o.Type == "vxlan" {
		t.VNI, t.Port = o.vni(), o.port()
	}
	return model.Link{Name: o.ifname(), Kind: o.Type, Up: true, Tunnel: t, Addrs: []model.Address{{Prefix: addr}}}
}

// route returns a route into the tunnel: point-to-point tunnels need only the device, a vxlan
// (an Ethernet segment) the other end as gateway.
func (o *TunnelOptions) route(dst netip.Prefix, gw netip.Addr) model.Route {
	r := model.Route{Family: inet.V4, Table: model.TableMain, Dst: dst, Dev: o.ifname()}
	if o.Type == "vxlan" {
		r.Gateway = gw
	}
	return r
}

// Plan implements Wizard.
func (o *TunnelOptions) Plan(s *model.State) (*Result, error) {
	return withNFTFallback(s, o.plan)
}

// plan is Plan for one choice of firewall.
func (o *TunnelOptions) plan(s *model.State) (*Result, error) {
	h, err := o.resolve(s)
	if err != nil {
		return nil, err
	}
	if len(o.Routes) == 0 {
		return o.planReceiving(s, h)
	}
	name := o.ifname()
	b := newBuilder(s, "", intent(o))
	b.link(o.link(o.Local, o.Remote, h.underlay.Name, o.Address),
		fmt.Sprintf("the %s tunnel to %s over %s", o.Type, o.Remote, h.underlay.Name))
	for _, r := range o.Routes {
		b.route(o.route(r, h.peer), fmt.Sprintf("%s is reached through the tunnel", r))
	}
	// Clients' packets may come in on any interface but the tunnel (on a one-NIC relay, the
	// one the tunnel runs over); without --uplink-only the answers come in on the tunnel.
	var ingress []string
	for _, l := range s.Links {
		if l.Kind != "loopback" && l.Name != name {
			ingress = append(ingress, l.Name)
		}
	}
	if !o.UplinkOnly {
		ingress = append(ingress, name)
	}
	b.forwarding("this host forwards its clients' traffic into the tunnel", ingress...)
	b.notef("the clients must send their traffic for %s to this host (a route via this host's address on their network)", prefixList(o.Routes))
	if o.UplinkOnly {
		b.notef("uplink only: the answers from %s do not come back through the tunnel; the clients must accept them where they arrive (bind the address the server should see, and turn reverse-path filtering loose or off on the interface they arrive on)", prefixList(o.Routes))
	}
	res, err := b.result(o.Name())
	if err != nil {
		return nil, err
	}

	// The other end: the same tunnel seen from there, forwarding on, and either routes back or
	// (uplink only) a reverse-path filter that accepts sources it routes elsewhere.
	peer := &plan.Desired{Intent: fmt.Sprintf("the %s tunnel's end at %s (the other end of: %s)", o.Type, o.Remote, intent(o)), Why: map[string]string{}}
	why := func(c plan.Change, text string) { peer.Why[c.ObjectKey()] = text }
	l := o.link(o.Remote, o.Local, "", netip.PrefixFrom(h.peer, o.Address.Bits()))
	peer.Links = append(peer.Links, l)
	why(plan.Change{Kind: plan.KindLink, Link: &l}, fmt.Sprintf("the %s tunnel to %s", o.Type, o.Local))
	sys := func(k, v, text string) {
		sv := plan.SysctlValue{Key: k, Value: v}
		peer.Sysctls = append(peer.Sysctls, sv)
		why(plan.Change{Kind: plan.KindSysctl, Sysctl: &sv}, text)
	}
	sys(model.SysctlIPForward, "1", whyForwardOut)
	sys(model.ConfKey(name, "forwarding"), "1", whyForwardOut)
	if o.UplinkOnly {
		sys(model.ConfKey(name, "rp_filter"), "2", whyLooseRPFilter)
		res.Notes = append(res.Notes, "the peer's loose reverse-path filter still needs some route to the clients' addresses (its default route is enough)")
	} else {
		back := o.PeerRoutes
		if len(back) == 0 {
			for _, ln := range s.Links {
				if ln.Name == h.underlay.Name || ln.Name == name || ln.Kind == "loopback" {
					continue
				}
				back = append(back, connected(&ln)...)
			}
			slices.SortFunc(back, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		}
		for _, p := range back {
			r := o.route(p, o.Address.Addr())
			peer.Routes = append(peer.Routes, r)
			why(plan.Change{Kind: plan.KindRoute, Route: &r}, fmt.Sprintf("answers to %s go back through the tunnel", p))
		}
		if len(back) == 0 {
			res.Notes = append(res.Notes, "no networks to route back through the tunnel: give --peer-route CIDR, or --uplink-only")
		}
	}
	if res.Peer, err = peerPlan(peer); err != nil {
		return nil, err
	}
	res.PeerHost = fmt.Sprintf("the relay at %s", o.Remote)
	return res, nil
}

// Why the receiving end of a tunnel changes what it changes, in the peer's script and in the
// plan of a receiving end run there alike.
const (
	whyForwardOut = "packets that come out of the tunnel are forwarded on"
	// The clients' addresses are not routed back into the tunnel, so strict mode (the route
	// back must use the arrival interface) drops every packet from it. The kernel uses
	// max(all, interface), so 2 on the interface is loose whatever all says.
	whyLooseRPFilter = "loose reverse-path filtering: the clients' addresses are routed elsewhere, not back into the tunnel"
)

// planReceiving plans the receiving end of an uplink-only tunnel (--uplink-only without
// --route, run on case 3's relay 2): the tunnel, forwarding of what comes out of it, and a
// loose reverse-path filter on it. That is what the sending end's peer script sets up, planned
// here against this host so that it applies journaled, with a confirm timer and rollback. The
// sending end's side is not planned from here: its routes are its own to name.
func (o *TunnelOptions) planReceiving(s *model.State, h *tunHost) (*Result, error) {
	name := o.ifname()
	b := newBuilder(s, "", intent(o))
	b.link(o.link(o.Local, o.Remote, h.underlay.Name, o.Address),
		fmt.Sprintf("the %s tunnel to %s over %s", o.Type, o.Remote, h.underlay.Name))
	b.forwarding(whyForwardOut, name)
	b.sysctl(model.ConfKey(name, "rp_filter"), "2", whyLooseRPFilter)
	b.notef("the receiving end of an uplink-only tunnel: what comes out of the tunnel is forwarded by this host's own routes, and nothing is sent back into it")
	b.notef("loose reverse-path filtering on %s still needs some route to the clients' addresses (the default route is enough)", name)
	res, err := b.result(o.Name())
	if err != nil {
		return nil, err
	}
	sender := fmt.Sprintf("roundtrip wizard tunnel --type %s --local %s --remote %s --address %s --route %s --uplink-only", o.Type, o.Remote, o.Local, netip.PrefixFrom(h.peer, o.Address.Bits()), finding.Placeholder("CIDR"))
	res.NoPeer = fmt.Sprintf("this is the receiving end of an uplink-only tunnel (no --route), and the sending end's routes are not known here: plan that end on %s with %s (the script it prints for this end is this plan)", o.Remote, sender)
	res.Notes = append(res.Notes, "the sending end at "+o.Remote.String()+": "+sender)
	return res, nil
}
