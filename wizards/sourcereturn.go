package wizards

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"roundtrip/engine/finding"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// Source-return modes.
const (
	ModeFrom     = "from"
	ModeConnmark = "connmark"
)

// Uplink is an interface with its gateway; a zero gateway is detected from the host's routes.
type Uplink struct {
	Iface   string
	Gateway netip.Addr
}

// ParseUplink reads IFACE[:GATEWAY].
func ParseUplink(v, flag string) (Uplink, error) {
	iface, gw, hasGW := strings.Cut(v, ":")
	u := Uplink{Iface: iface}
	if iface == "" {
		return u, fmt.Errorf("%s %q: want IFACE or IFACE:GATEWAY", flag, v)
	}
	if hasGW {
		a, err := ParseAddr(gw, flag+" "+v)
		if err != nil {
			return u, err
		}
		u.Gateway = a
	}
	return u, nil
}

func (u Uplink) String() string {
	if u.Gateway.IsValid() {
		return u.Iface + ":" + u.Gateway.String()
	}
	return u.Iface
}

// SourceReturnOptions are the options of the source-return wizard (case 1, and the reply side
// of case 2): return traffic leaves by the interface it came in on.
type SourceReturnOptions struct {
	Uplinks []Uplink
	// Mode is ModeFrom (default: a rule per address of each uplink) or ModeConnmark (mark
	// connections by ingress interface and route their packets by the mark).
	Mode string
}

// Name implements Wizard.
func (o *SourceReturnOptions) Name() string { return finding.WizardSourceReturn }

// Args implements Wizard.
func (o *SourceReturnOptions) Args() []string {
	var a []string
	for _, u := range o.Uplinks {
		a = append(a, "--uplink", u.String())
	}
	return append(a, "--mode", o.mode())
}

func (o *SourceReturnOptions) mode() string {
	if o.Mode == "" {
		return ModeFrom
	}
	return o.Mode
}

// Validate implements Wizard: it plans and reports the first problem, so that a form can
// check the options as they are filled in.
func (o *SourceReturnOptions) Validate(s *model.State) error {
	_, err := o.Plan(s)
	return err
}

// uplinks checks the options and resolves each uplink's link and gateway.
func (o *SourceReturnOptions) uplinks(s *model.State) ([]returnUplink, error) {
	if o.mode() != ModeFrom && o.mode() != ModeConnmark {
		return nil, fmt.Errorf("--mode %q: want from or connmark", o.Mode)
	}
	if len(o.Uplinks) == 0 {
		return nil, fmt.Errorf("--uplink IFACE[:GATEWAY] is required: name each interface whose connections must be answered through it (this host has %s)", linkNames(s))
	}
	var out []returnUplink
	for _, u := range o.Uplinks {
		flag := "--uplink " + u.Iface
		l, err := needLink(s, u.Iface, "--uplink")
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(out, func(r returnUplink) bool { return r.link.Name == l.Name }) {
			return nil, fmt.Errorf("%s is given twice", flag)
		}
		if l.Kind == "loopback" {
			return nil, fmt.Errorf("%s: the loopback interface is not an uplink", flag)
		}
		if len(v4Addrs(l)) == 0 {
			return nil, fmt.Errorf("%s: %s has no IPv4 address, so nothing can come in on it to be answered", flag, l.Name)
		}
		gw, err := gatewayOf(s, l, u.Gateway, "--uplink "+u.Iface+":GATEWAY")
		if err != nil {
			return nil, err
		}
		out = append(out, returnUplink{link: l, gateway: gw, table: tableName("rt-", l.Name)})
	}
	return out, nil
}

// Plan implements Wizard.
func (o *SourceReturnOptions) Plan(s *model.State) (*Result, error) {
	return withNFTFallback(s, o.plan)
}

// plan is Plan for one choice of firewall.
func (o *SourceReturnOptions) plan(s *model.State) (*Result, error) {
	ups, err := o.uplinks(s)
	if err != nil {
		return nil, err
	}
	b := newBuilder(s, plan.ChainPrefix+"SR-", intent(o))
	for i, u := range ups {
		if !o.Uplinks[i].Gateway.IsValid() {
			b.notef("the gateway of %s is %s, taken from the routes that use it", u.link.Name, u.gateway)
		}
	}
	connmark := o.mode() == ModeConnmark
	if connmark {
		// Forwarded connections are routed by the uplink's table too, so it must reach the
		// host's other networks.
		for i := range ups {
			for j := range s.Links {
				l := &s.Links[j]
				if l.Kind == "loopback" || len(v4Addrs(l)) == 0 || slices.ContainsFunc(ups, func(u returnUplink) bool { return u.link.Name == l.Name }) {
					continue
				}
				ups[i].lans = append(ups[i].lans, l)
			}
		}
	}
	if err := b.returnRouting(ups, !connmark, connmark, plan.ChainPrefix+"SR-"); err != nil {
		return nil, err
	}
	if !connmark {
		b.notef("by address: connections to an address of an uplink are answered through that uplink; for forwarded (DNAT) connections use --mode connmark")
	}
	b.sweep()
	return b.result(o.Name())
}
