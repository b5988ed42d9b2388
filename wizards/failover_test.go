package wizards

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// multiWANCase2 is the multi-wan setup of case 2 on its test host: ISP A the default, ISP B's
// customer network on its list, NAT and connection marks.
func multiWANCase2() *MultiWANOptions {
	return &MultiWANOptions{
		WANs:       []WAN{{Iface: "wan1", Gateway: mustAddr("198.18.73.5"), Name: "isp_a"}, {Iface: "wan2", Gateway: mustAddr("198.18.73.9"), Name: "isp_b"}},
		LANs:       []string{"lan0"},
		Default:    "isp_a",
		RouteLists: []RouteList{{WAN: "isp_b", Prefixes: []netip.Prefix{mustPrefix("198.18.77.0/24")}}},
		SNAT:       true, Connmark: true,
	}
}

// appliedCase2 is case 2's host with the multi-wan setup in effect.
func appliedCase2(t testing.TB, s *model.State) (*MultiWANOptions, *model.State) {
	t.Helper()
	o := multiWANCase2()
	res, err := o.Plan(s)
	if err != nil {
		t.Fatal(err)
	}
	return o, res.Plan.Expect(s)
}

// egress routes a LAN client's packet to dst through the state and returns the interface it
// leaves by.
func egress(s *model.State, dst string) string {
	return fib.New(s).Resolve(fib.Flow{Src: mustAddr("10.73.20.50"), Dst: mustAddr(dst), IIF: "lan0", Proto: 6, SPort: 40000, DPort: 80}).OIF
}

func TestPlanWithDown(t *testing.T) {
	o, s := appliedCase2(t, case2Host(t))
	if e := egress(s, "192.0.2.1"); e != "wan1" {
		t.Fatalf("before: the default leaves by %s, want wan1", e)
	}

	// ISP A down: the default route moves to ISP B, in place; nothing else changes.
	res, err := o.PlanWithDown(s, []string{"isp_a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Plan.Changes) != 1 || res.Plan.Changes[0].Summary() != "ip -4 route replace default via 198.18.73.9 dev wan2" {
		t.Fatalf("isp_a down plans:\n%s", res.Plan.Script())
	}
	down := res.Plan.Expect(s)
	for dst, want := range map[string]string{"192.0.2.1": "wan2", "198.18.77.10": "wan2"} {
		if e := egress(down, dst); e != want {
			t.Errorf("isp_a down: %s leaves by %s, want %s", dst, e, want)
		}
	}
	// Back up: exactly the state the wizard made.
	back, err := o.PlanWithDown(down, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := model.Diff(s, back.Plan.Expect(down)); d != "" {
		t.Errorf("failing back does not restore the wizard's state:\n%s", d)
	}

	// ISP B down (by interface name): its list goes to ISP A, the default stays.
	res, err = o.PlanWithDown(s, []string{"wan2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Plan.Changes) != 1 || res.Plan.Changes[0].Summary() != "ip -4 route replace 198.18.77.0/24 via 198.18.73.5 dev wan1" {
		t.Fatalf("isp_b down plans:\n%s", res.Plan.Script())
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "isp_b is down: its 1 destination networks leave by isp_a") {
		t.Errorf("notes do not say where the list went: %q", res.Notes)
	}
	if e := egress(res.Plan.Expect(s), "198.18.77.10"); e != "wan1" {
		t.Errorf("isp_b down: its list leaves by %s, want wan1", e)
	}

	for _, c := range []struct {
		down []string
		want string
	}{
		{[]string{"isp_a", "isp_b"}, "every WAN is down"},
		{[]string{"isp_c"}, `no WAN is named "isp_c" (the WANs are isp_a, isp_b)`},
	} {
		if _, err := o.PlanWithDown(s, c.down); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("PlanWithDown(%v) = %v, want %q", c.down, err, c.want)
		}
	}
}

// TestPlanWithDownKeepsMetrics: default routes with metrics (two DHCP clients) are replaced in
// place, so that failing back gives back the same routes with the same metrics.
func TestPlanWithDownKeepsMetrics(t *testing.T) {
	h := newTestHost(t).
		link("lan0", "veth", "10.73.20.1/24").
		link("wan1", "veth", "198.18.73.6/30").
		link("wan2", "veth", "198.18.73.10/30")
	h.s.Routes = append(h.s.Routes,
		plan.NormalizeRoute(model.Route{Family: inet.V4, Table: model.TableMain, Dst: mustPrefix("0.0.0.0/0"), Gateway: mustAddr("198.18.73.5"), Dev: "wan1", Metric: 100, Protocol: "dhcp"}),
		plan.NormalizeRoute(model.Route{Family: inet.V4, Table: model.TableMain, Dst: mustPrefix("0.0.0.0/0"), Gateway: mustAddr("198.18.73.9"), Dev: "wan2", Metric: 200, Protocol: "dhcp"}))
	o, s := appliedCase2(t, h.s)
	res, err := o.Plan(s)
	if err != nil || len(res.Plan.Changes) != 0 {
		t.Fatalf("the wizard's own setup replans %v: %v", err, res.Plan.Script())
	}
	res, err = o.PlanWithDown(s, []string{"isp_a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Plan.Changes) != 1 || res.Plan.Changes[0].Summary() != "ip -4 route replace default via 198.18.73.9 dev wan2 metric 100" {
		t.Fatalf("isp_a down plans:\n%s", res.Plan.Script())
	}
	down := res.Plan.Expect(s)
	if e := egress(down, "192.0.2.1"); e != "wan2" {
		t.Errorf("isp_a down: the default leaves by %s, want wan2", e)
	}
	back, err := o.PlanWithDown(down, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := back.Plan.Expect(down)
	var defaults []string
	for _, r := range got.RoutesOf(inet.V4, model.TableMain) {
		if r.Dst.Bits() == 0 {
			defaults = append(defaults, r.Args(got.TableName))
		}
	}
	slices.Sort(defaults)
	if want := []string{"default via 198.18.73.5 dev wan1 metric 100", "default via 198.18.73.9 dev wan2 proto dhcp metric 200"}; !slices.Equal(defaults, want) {
		t.Errorf("after failback the default routes are\n%s\nwant\n%s", strings.Join(defaults, "\n"), strings.Join(want, "\n"))
	}
}

// TestPlanWithDownLinkGone: a WAN whose link went down on this host has lost its routes; its
// table is left alone while it is down (adding routes through it would fail), and planned
// again once the link is up.
func TestPlanWithDownLinkGone(t *testing.T) {
	o, s := appliedCase2(t, case2Host(t))
	wanTable, err := s.TableID("isp_a")
	if err != nil {
		t.Fatal(err)
	}
	// What `ip link set wan1 down` does: every route through wan1 goes.
	s.LinkByName("wan1").Up = false
	s.Routes = slices.DeleteFunc(s.Routes, func(r model.Route) bool { return r.Dev == "wan1" })
	res, err := o.PlanWithDown(s, []string{"isp_a"})
	if err != nil {
		t.Fatalf("planning with wan1's link down: %v", err)
	}
	for _, c := range res.Plan.Changes {
		if c.Kind == plan.KindRoute && (c.Route.Table == wanTable || c.Route.Dev == "wan1") {
			t.Errorf("the plan touches the dead WAN: %s", c.Summary())
		}
	}
	if e := egress(res.Plan.Expect(s), "192.0.2.1"); e != "wan2" {
		t.Errorf("the default leaves by %s, want wan2", e)
	}
}

func TestRoutesLayout(t *testing.T) {
	o, s := appliedCase2(t, case2Host(t))
	rs, err := o.Routes(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Name != "isp_a" || rs[0].Iface != "wan1" || rs[1].Gateway != mustAddr("198.18.73.9") ||
		!slices.Equal(rs[1].Addrs, []netip.Addr{mustAddr("198.18.73.10")}) {
		t.Fatalf("Routes = %+v", rs)
	}
	for _, r := range rs {
		if r.Mark == nil || r.Mark.Value == 0 || r.Table == 0 {
			t.Errorf("%s: no mark or table: %+v", r.Name, r)
		}
		if id, _ := s.TableID(r.Name); id != r.Table {
			t.Errorf("%s: table %d, the host names %d", r.Name, r.Table, id)
		}
	}
	if rs[0].Mark.Value == rs[1].Mark.Value {
		t.Errorf("both WANs have mark %#x", rs[0].Mark.Value)
	}
}
