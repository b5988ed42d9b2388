package wizards

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// This file is the multi-wan wizard's part of WAN failover (case 2's open question: "probe
// each line and switch"): the multi-wan plan with dead WANs routed around, and what the
// watcher (package watch) needs to know of each WAN.

// WANRoute is what the watcher needs to know of one WAN of a multi-wan setup: where to probe
// from (its interface and address, with its connection mark) and how to recognize the
// connections that use it (NATed to one of its addresses, or carrying its mark).
type WANRoute struct {
	Name    string           `json:"name"`
	Iface   string           `json:"iface"`
	Gateway netip.Addr       `json:"gateway"`
	Addrs   []netip.Addr     `json:"addrs"`
	Table   int              `json:"table"`
	Mark    *model.MarkMatch `json:"mark,omitempty"` // with --connmark
}

// PlanWithDown plans the multi-wan setup with the WANs in down (names or interfaces) routed
// around: the default route and the destination lists of a dead WAN go to the default WAN, or
// to the first surviving one when the default WAN is the dead one. The routes replace the
// dead WAN's in place (the same metric), so that planning again with down empty puts back
// exactly what the wizard made: on a host where the setup is in effect, the plan holds only
// the routes that move. At least one WAN must survive.
func (o *MultiWANOptions) PlanWithDown(s *model.State, down []string) (*Result, error) {
	b, _, err := o.build(s, down)
	if err != nil {
		return nil, err
	}
	return b.result(o.Name())
}

// Routes returns the layout of the WANs on a host: interfaces, addresses, gateways, table ids
// and connection marks, as the wizard plans them.
func (o *MultiWANOptions) Routes(s *model.State) ([]WANRoute, error) {
	b, mp, err := o.build(s, nil)
	if err != nil {
		return nil, err
	}
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	var out []WANRoute
	for _, w := range mp.wans {
		wr := WANRoute{Name: w.table, Iface: w.link.Name, Gateway: w.gateway}
		for _, a := range v4Addrs(w.link) {
			wr.Addrs = append(wr.Addrs, a.Addr())
		}
		if i := slices.IndexFunc(b.d.TableNames, func(t plan.RTTable) bool { return t.Name == w.table }); i >= 0 {
			wr.Table = b.d.TableNames[i].ID
		}
		for _, r := range b.d.Rules {
			if r.Mark != nil && r.Table == wr.Table {
				m := *r.Mark
				wr.Mark = &m
			}
		}
		out = append(out, wr)
	}
	return out, nil
}

// downSet resolves WAN names (or interfaces) to a set of indices into mp.wans.
func (mp *mwPlan) downSet(o *MultiWANOptions, down []string) (map[int]bool, error) {
	dead := map[int]bool{}
	for _, n := range down {
		i := slices.IndexFunc(mp.wans, func(u returnUplink) bool { return u.table == n || u.link.Name == n })
		if i < 0 {
			var known []string
			for _, w := range o.WANs {
				known = append(known, w.name())
			}
			return nil, fmt.Errorf("no WAN is named %q (the WANs are %s)", n, strings.Join(known, ", "))
		}
		dead[i] = true
	}
	if len(dead) == len(mp.wans) {
		return nil, fmt.Errorf("every WAN is down (%s): there is no WAN left to route through", strings.Join(down, ", "))
	}
	return dead, nil
}

// carrier returns the WAN that carries the default route: the default WAN unless it is dead,
// else the first surviving one.
func (mp *mwPlan) carrier(dead map[int]bool) int {
	if !dead[mp.def] {
		return mp.def
	}
	for i := range mp.wans {
		if !dead[i] {
			return i
		}
	}
	return mp.def
}

// leaveTables drops the routes of dead WANs' own tables from the desired state when their link
// is down on this host: taking a link down removes every route through it (fib_disable_ip),
// and adding them back would fail, their gateway being off-link until the link is up again.
// Once it is, they are planned again, so that the WAN can be probed through its table.
func (b *builder) leaveTables(mp *mwPlan, dead map[int]bool) {
	ids := map[int]bool{}
	for i := range dead {
		if mp.wans[i].link.Up {
			continue
		}
		for _, t := range b.d.TableNames {
			if t.Name == mp.wans[i].table {
				ids[t.ID] = true
			}
		}
	}
	b.d.Routes = slices.DeleteFunc(b.d.Routes, func(r model.Route) bool { return ids[r.Table] })
}

// defaultRoute plans main's default route through WAN target. The best default route through
// any WAN (the lowest metric) is the one that decides; when it already goes through target it
// is kept as it is, whatever its metric; otherwise it is replaced in place (same metric), and a
// new one is added with metric 0 when there is none.
func (b *builder) defaultRoute(mp *mwPlan, target int) {
	w := mp.wans[target]
	isWAN := func(dev string) bool {
		return slices.ContainsFunc(mp.wans, func(u returnUplink) bool { return u.link.Name == dev })
	}
	var best *model.Route
	for _, r := range b.s.RoutesOf(inet.V4, model.TableMain) {
		if r.Dst.Bits() != 0 || (r.Type != "" && r.Type != model.RouteUnicast) || !isWAN(r.Dev) || r.TOS != 0 {
			continue
		}
		if best == nil || r.Metric < best.Metric {
			best = &r
		}
	}
	if best != nil && best.Gateway == w.gateway && best.Dev == w.link.Name {
		return
	}
	want := model.Route{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Gateway: w.gateway, Dev: w.link.Name}
	if best != nil {
		want.Metric = best.Metric
	}
	why := fmt.Sprintf("everything no destination list claims leaves by %s (the default WAN)", w.table)
	if target != mp.def {
		why = fmt.Sprintf("%s (the default WAN) is down: everything no destination list claims leaves by %s", mp.wans[mp.def].table, w.table)
		b.notef("%s is down: the default route goes through %s (%s via %s)", mp.wans[mp.def].table, w.table, w.link.Name, w.gateway)
	}
	b.route(want, why)
}
