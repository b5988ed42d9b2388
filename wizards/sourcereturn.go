package wizards

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
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

// plan is Plan for one choice of firewall. Uplinks an earlier run set up stay: each
// finding's suggested fix names one uplink, and an operator who applies them one after the
// other expects the second to add to the first, not to take it away (the sweep would remove
// the first run's marking, or its rule would refuse the second's).
func (o *SourceReturnOptions) plan(s *model.State) (*Result, error) {
	kept := o.earlier(s)
	if len(kept) == 0 {
		return o.planOnly(s)
	}
	all := *o
	all.Uplinks = append(kept, o.Uplinks...)
	res, err := all.planOnly(s)
	if err != nil {
		return nil, err
	}
	var names, dels []string
	for _, u := range kept {
		names = append(names, u.Iface)
		for _, r := range s.Rules {
			if r.Priority >= plan.PriorityFirst && r.Priority <= plan.PriorityLast && s.TableName(r.Table) == tableName("rt-", u.Iface) {
				dels = append(dels, fmt.Sprintf("ip rule del priority %d", r.Priority))
			}
		}
	}
	res.Notes = append([]string{fmt.Sprintf("an earlier run of this wizard answers through %s; that stays, so this plan is that of `%s` "+
		"(to stop answering through %s this way, first run `%s`, then this wizard again)",
		strings.Join(names, ", "), intent(&all), strings.Join(names, ", "), strings.Join(dels, "; "))}, res.Notes...)
	return res, nil
}

// earlier returns the uplinks an earlier run of this wizard routes (a rule in roundtrip's
// range pointing at the uplink's rt- table) that the options do not name, with the gateway of
// that table's default route.
func (o *SourceReturnOptions) earlier(s *model.State) []Uplink {
	var out []Uplink
	for i := range s.Links {
		l := &s.Links[i]
		// An uplink that lost its addresses is not kept: its rule then stands in the way, and
		// the refusal names it with the command that removes it.
		if l.Kind == "loopback" || len(v4Addrs(l)) == 0 || slices.ContainsFunc(o.Uplinks, func(u Uplink) bool { return u.Iface == l.Name }) {
			continue
		}
		name := tableName("rt-", l.Name)
		if !slices.ContainsFunc(s.Rules, func(r model.Rule) bool {
			return r.Family == inet.V4 && r.Priority >= plan.PriorityFirst && r.Priority <= plan.PriorityLast && r.Table != 0 && s.TableName(r.Table) == name
		}) {
			continue
		}
		u := Uplink{Iface: l.Name}
		for _, r := range s.Routes {
			if s.TableName(r.Table) == name && r.Dst.Bits() == 0 && r.Dst.Addr().Is4() && r.Dev == l.Name && r.Gateway.IsValid() {
				u.Gateway = r.Gateway
				break
			}
		}
		out = append(out, u)
	}
	return out
}

// planOnly plans exactly the options' uplinks.
func (o *SourceReturnOptions) planOnly(s *model.State) (*Result, error) {
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
