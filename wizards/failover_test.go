package wizards

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// epoch is the fake clock's start.
var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func probes(answers ...bool) []ProbeResult {
	var out []ProbeResult
	for i, ok := range answers {
		r := ProbeResult{Target: fmt.Sprintf("icmp:192.0.2.%d", i+1), OK: ok}
		if ok {
			r.RTT = time.Duration(i+1) * time.Millisecond
		} else {
			r.Err = "timeout"
		}
		out = append(out, r)
	}
	return out
}

func TestJudge(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  HealthConfig
		in   []ProbeResult
		good bool
		why  string
	}{
		{"one of three answers: reliability 1", HealthConfig{}, probes(false, true, false), true, ""},
		{"none answers", HealthConfig{}, probes(false, false, false), false, "100% lost (timeout)"},
		{"no probes", HealthConfig{}, nil, false, "no probes"},
		{"half lost with max-loss 50%", HealthConfig{MaxLoss: 0.5}, probes(true, false), false, "50% lost (timeout)"},
		{"a third lost with max-loss 50%", HealthConfig{MaxLoss: 0.5}, probes(true, false, true), true, ""},
		{"two thirds lost with max-loss 66.7%", HealthConfig{MaxLoss: 2.0 / 3}, probes(true, false, false), false, "67% lost (timeout)"},
		{"slow", HealthConfig{MaxRTT: 1500 * time.Microsecond}, probes(true, true, true), false, "rtt 2ms over 1.5ms"},
		{"fast enough", HealthConfig{MaxRTT: 2 * time.Millisecond}, probes(true, true, true), true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := c.cfg.Judge(c.in)
			if r.Good != c.good || r.Why != c.why {
				t.Errorf("Judge = good %v why %q, want good %v why %q", r.Good, r.Why, c.good, c.why)
			}
		})
	}
}

func TestHealthConfigCheck(t *testing.T) {
	for _, c := range []struct {
		cfg  HealthConfig
		want string
	}{
		{HealthConfig{DownAfter: -1}, "--down-after -1"},
		{HealthConfig{UpAfter: 5000}, "--up-after 5000"},
		{HealthConfig{MaxLoss: 1.5}, "--max-loss 150%"},
		{HealthConfig{MaxRTT: -time.Second}, "--max-rtt -1s"},
	} {
		err := c.cfg.Check()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%+v) = %v, want an error about %s", c.cfg, err, c.want)
		}
	}
	if err := (HealthConfig{}).Check(); err != nil {
		t.Errorf("the defaults are refused: %v", err)
	}
}

// TestTrackerHysteresis walks a scripted sequence of rounds with a fake clock: a WAN goes down
// only after DownAfter failed rounds in a row, and up only after UpAfter good ones in a row.
func TestTrackerHysteresis(t *testing.T) {
	tr, err := NewTracker(HealthConfig{DownAfter: 3, UpAfter: 4}, []string{"isp_a", "isp_b"}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	// '+' a good round, '-' a failed one; the letter after is the expected health after it.
	script := "+U -U -U +U -U -U -D +D +D +D -D +D +D +D +U -U -U +U"
	now := epoch
	for i, step := range strings.Fields(script) {
		now = now.Add(time.Second)
		good := step[0] == '+'
		_, got, err := tr.Observe("isp_a", now, probes(good, good))
		if err != nil {
			t.Fatal(err)
		}
		want := map[byte]Health{'U': HealthUp, 'D': HealthDown}[step[1]]
		h := tr.WANs()[0]
		if h.Health != want {
			t.Fatalf("round %d (%s): isp_a is %s, want %s", i+1, step, h.Health, want)
		}
		if got != nil && (got.To != want || !got.At.Equal(now)) {
			t.Errorf("round %d: transition %+v, want one to %s at %s", i+1, got, want, now)
		}
		if got != nil && got.To == HealthDown && got.Rounds != 3 {
			t.Errorf("round %d: went down after %d rounds, want 3", i+1, got.Rounds)
		}
	}
	h := tr.WANs()[0]
	if h.Transitions != 2 {
		t.Errorf("isp_a changed health %d times, want 2 (down once, up once)", h.Transitions)
	}
	if tr.WANs()[1].Health != HealthUnknown || tr.Known() {
		t.Errorf("isp_b was never probed and should be unknown: %+v", tr.WANs()[1])
	}
	if got := tr.Down(); len(got) != 0 {
		t.Errorf("Down() = %v after recovery", got)
	}
	if _, _, err := tr.Observe("isp_c", now, nil); err == nil {
		t.Error("observing an unknown WAN gives no error")
	}
}

// walk feeds a tracker rounds of targets probes, each lost with probability loss, and returns
// the transitions after the first (the first good round makes an unknown WAN up).
func walk(t *testing.T, seed uint64, cfg HealthConfig, targets, rounds int, loss float64) []Transition {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	tr, err := NewTracker(cfg, []string{"wan"}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	var out []Transition
	now := epoch
	for range rounds {
		now = now.Add(time.Second)
		answers := make([]bool, targets)
		for i := range answers {
			answers[i] = rng.Float64() >= loss
		}
		_, got, err := tr.Observe("wan", now, probes(answers...))
		if err != nil {
			t.Fatal(err)
		}
		if got != nil && got.From != HealthUnknown {
			out = append(out, *got)
		}
	}
	return out
}

// TestNoFlapUnder20PercentLoss walks random rounds with every probe lost with probability 0.2.
// With three targets a round fails only when all three are lost (0.8% of rounds) and a WAN
// goes down only after three such rounds in a row (about once in 2 million rounds): 10 seeds
// of 20000 rounds (55 hours at one round a second) never flap. The same walk with one target
// and one round to go down does flap, which shows the walk can see it.
func TestNoFlapUnder20PercentLoss(t *testing.T) {
	cfg := HealthConfig{DownAfter: 3, UpAfter: 5}
	for seed := range uint64(10) {
		if trs := walk(t, seed, cfg, 3, 20000, 0.2); len(trs) > 0 {
			t.Errorf("seed %d: %d health changes under 20%% loss, first: %s", seed, len(trs), trs[0])
		}
	}
	if trs := walk(t, 1, HealthConfig{DownAfter: 1, UpAfter: 1}, 1, 2000, 0.2); len(trs) < 100 {
		t.Errorf("one target, one round: %d health changes in 2000 rounds at 20%% loss, want hundreds", len(trs))
	}
	// A dead line is still found at once: every probe lost goes down after exactly 3 rounds,
	// and a line losing 20% comes back after exactly UpAfter rounds when all answer.
	tr, _ := NewTracker(cfg, []string{"wan"}, epoch)
	tr.Observe("wan", epoch, probes(true, true, true))
	for i := 1; i <= 3; i++ {
		_, got, _ := tr.Observe("wan", epoch.Add(time.Duration(i)*time.Second), probes(false, false, false))
		if (got != nil) != (i == 3) {
			t.Fatalf("round %d of a dead line: transition %v", i, got)
		}
	}
}

func TestRouteAround(t *testing.T) {
	all := []string{"a", "b"}
	if got := RouteAround([]string{"a"}, all, nil); !slices.Equal(got, []string{"a"}) {
		t.Errorf("one down: %v", got)
	}
	if got := RouteAround(all, all, []string{"a"}); !slices.Equal(got, []string{"a"}) {
		t.Errorf("all down: %v, want the routing kept as it was ([a])", got)
	}
	if !SameWANs([]string{"b", "a"}, []string{"a", "b"}) || SameWANs([]string{"a"}, nil) {
		t.Error("SameWANs compares sets")
	}
}

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
