package kernel_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/kernel"
	"roundtrip/engine/kernel/kerneltest"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// These tests run the change engine against kerneltest.Fake, without root: failures at every
// operation, disk full at every journal write, a kill at every operation followed by recovery,
// torn journals at every byte, and random walks of applies and rollbacks.

var (
	pfx = netip.MustParsePrefix
	ip  = netip.MustParseAddr
)

// fakeState is newApplyHost's namespace as a State, for everyKindPlan: a host with a bit of
// everything for plans to change: links with addresses
// (and the routes the kernel adds with them), a vxlan link, routes in main and table 100, the
// default rules and one more, roundtrip chains in mangle and nat, sysctls, a table name.
func fakeState() *model.State {
	st := &model.State{Host: "fake", TableNames: map[int]string{100: "clients"}}
	add := func(l model.Link, addrs ...string) {
		st.Links = append(st.Links, l)
		for _, a := range addrs {
			plan.ApplyChange(st, plan.Change{Kind: plan.KindAddress, Op: plan.OpAdd,
				Address: &plan.LinkAddress{Dev: l.Name, Address: model.Address{Prefix: pfx(a)}}})
		}
	}
	add(model.Link{Index: 1, Name: "lo", Kind: "loopback", Up: true, MTU: 65536}, "127.0.0.1/8")
	add(model.Link{Index: 2, Name: "a0", Kind: "veth", Up: true, MTU: 1500}, "10.88.0.1/24", "10.88.9.1/24")
	add(model.Link{Index: 3, Name: "b0", Kind: "veth", Up: true, MTU: 1500}, "192.168.7.1/24")
	add(model.Link{Index: 4, Name: "vxold", Kind: "vxlan", Up: true, MTU: 1450,
		Tunnel: &model.Tunnel{VNI: 7, Local: ip("10.88.0.1"), Remote: ip("10.88.0.9"), Port: 4789, Dev: "a0"}}, "10.99.0.1/24")
	route := func(r model.Route) {
		r = plan.NormalizeRoute(r)
		plan.ApplyChange(st, plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &r})
	}
	route(model.Route{Family: inet.V4, Dst: pfx("0.0.0.0/0"), Gateway: ip("10.88.0.254"), Dev: "a0"})
	route(model.Route{Family: inet.V4, Dst: pfx("10.66.0.0/16"), Gateway: ip("10.88.0.2"), Dev: "a0"})
	route(model.Route{Family: inet.V4, Table: 100, Dst: pfx("10.98.0.0/16"), Gateway: ip("10.99.0.2"), Dev: "vxold"})
	route(model.Route{Family: inet.V4, Table: 100, Dst: pfx("10.77.0.0/16"), Gateway: ip("10.88.0.2"), Dev: "a0"})
	route(model.Route{Family: inet.V4, Table: 101, Dst: pfx("10.55.0.0/16"), Gateway: ip("10.88.0.2"), Dev: "a0", Src: ip("10.88.9.1")})
	st.Rules = []model.Rule{
		{Family: inet.V4, Priority: 0, Action: model.ActionTable, Table: model.TableLocal},
		{Family: inet.V4, Priority: 10050, Src: pfx("10.88.5.0/24"), Action: model.ActionTable, Table: 100},
		{Family: inet.V4, Priority: 32766, Action: model.ActionTable, Table: model.TableMain},
		{Family: inet.V4, Priority: 32767, Action: model.ActionTable, Table: model.TableDefault},
	}
	rule := func(f inet.Family, spec string) iptables.Rule {
		r, err := iptables.ParseRule(f, spec)
		if err != nil {
			panic(err)
		}
		return r
	}
	st.Netfilter.Tables = []iptables.Table{
		{Family: inet.V4, Name: "mangle", Chains: []iptables.Chain{
			{Name: "PREROUTING", Policy: "ACCEPT", Rules: []iptables.Rule{rule(inet.V4, "-p udp -j ACCEPT"), rule(inet.V4, "-j RT-TEST-OLD")}},
			{Name: "INPUT", Policy: "ACCEPT"}, {Name: "FORWARD", Policy: "ACCEPT"}, {Name: "OUTPUT", Policy: "ACCEPT"}, {Name: "POSTROUTING", Policy: "ACCEPT"},
			{Name: "RT-TEST-OLD", Rules: []iptables.Rule{rule(inet.V4, "-p tcp -j MARK --set-xmark 0x2000000/0xff000000")}},
		}},
		{Family: inet.V4, Name: "nat", Chains: []iptables.Chain{
			{Name: "PREROUTING", Policy: "ACCEPT", Rules: []iptables.Rule{rule(inet.V4, "-j RT-TEST-PRE")}},
			{Name: "INPUT", Policy: "ACCEPT"}, {Name: "OUTPUT", Policy: "ACCEPT"}, {Name: "POSTROUTING", Policy: "ACCEPT"},
			{Name: "RT-TEST-PRE", Rules: []iptables.Rule{rule(inet.V4, "-p tcp -m tcp --dport 9090 -j DNAT --to-destination 10.88.0.2:90")}},
		}},
	}
	st.Sysctls = model.Sysctls{model.SysctlIPForward: "0"}
	for _, dev := range []string{"all", "default", "lo", "a0", "b0", "vxold"} {
		st.Sysctls[model.ConfKey(dev, "rp_filter")] = "1"
	}
	return st
}

// world is a fake host with a journal store and an Applier for them.
type world struct {
	fake    *kerneltest.Fake
	store   *kernel.Store
	applier *kernel.Applier
	dir     string // the store's directory
}

func newWorld(t testing.TB, st *model.State) *world {
	t.Helper()
	dirs := []string{"/fake/iproute2"}
	w := &world{fake: kerneltest.New(st, filepath.Join(dirs[0], plan.RTTablesFile)), dir: memDir(t)}
	w.store = &kernel.Store{Dir: w.dir, NS: kernel.Namespace{Name: "fake"}}
	// Small batches, so that a dozen routes make several steps.
	w.applier = &kernel.Applier{NS: w.store.NS, Store: w.store, Host: w.fake, RTTablesDirs: dirs, BatchSize: 2}
	return w
}

// memDir returns a temporary directory in memory when there is one (/dev/shm): the journal
// syncs every step, and the kill tests restart thousands of worlds.
func memDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "roundtrip-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// sameState fails unless the fake holds want.
func sameState(t testing.TB, what string, want, got *model.State) {
	t.Helper()
	if d := model.Diff(want, got); d != "" {
		t.Fatalf("%s:\n%s", what, d)
	}
}

func TestFakeApplyRollback(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, fakeState())
	before := w.fake.State()
	p := everyKindPlan(t, before)
	res, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{})
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, strings.Join(w.fake.Log, "\n"))
	}
	if len(res.Drift) > 0 {
		t.Errorf("drift:\n%s", strings.Join(res.Drift, "\n"))
	}
	sameState(t, "the fake (+) differs from the plan's expectation (-)", p.Expect(before), w.fake.State())
	if res.Journal.Steps < 10 {
		t.Errorf("only %d steps for %d changes", res.Journal.Steps, len(p.Changes))
	}
	again, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{})
	if err != nil || !again.NoOp {
		t.Fatalf("re-apply: %v, noop %v", err, again != nil && again.NoOp)
	}
	j, err := w.applier.Rollback(ctx, "", "test")
	if err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if j.Status != kernel.StatusRolledBack || len(j.Undone) != j.Steps {
		t.Errorf("after rollback: %s, %d of %d steps undone", j.Status, len(j.Undone), j.Steps)
	}
	sameState(t, "rollback did not restore the fake", before, w.fake.State())
	if _, err := w.applier.Rollback(ctx, "", "test"); !errors.Is(err, kernel.ErrNothingToRollBack) {
		t.Errorf("second rollback: %v", err)
	}
}

// countOps applies p to a fresh world and returns how many operations it made.
func countOps(t *testing.T, st *model.State, p *plan.Plan) int {
	t.Helper()
	w := newWorld(t, st)
	n := 0
	w.fake.After = func(kerneltest.Op) { n++ }
	if _, err := w.applier.Apply(context.Background(), p, kernel.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFakeFailureAtEveryOp fails every operation of an apply in turn (each route and rule of a
// batch, each link, address, sysctl, transaction and file write): each time the host ends
// exactly as it was, the journal says rolled back, and nothing is left to roll back.
func TestFakeFailureAtEveryOp(t *testing.T) {
	ctx := context.Background()
	st := fakeState()
	p := everyKindPlan(t, st)
	n := countOps(t, st, p)
	if n < 15 {
		t.Fatalf("the plan makes only %d operations", n)
	}
	injected := errors.New("injected failure")
	for k := 1; k <= n; k++ {
		w := newWorld(t, st)
		w.fake.Fail = func(op kerneltest.Op) error {
			if op.N == k {
				return injected
			}
			return nil
		}
		_, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{})
		if !errors.Is(err, injected) || !strings.Contains(err.Error(), "host is as it was") && !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("failing operation %d: %v", k, err)
		}
		sameState(t, fmt.Sprintf("failing operation %d left the host changed", k), st, w.fake.State())
		js, err := w.store.List()
		if err != nil || len(js) > 1 || len(js) == 1 && js[0].Status != kernel.StatusRolledBack {
			t.Fatalf("failing operation %d: journals %v (%v)", k, js, err)
		}
		if _, err := w.applier.Rollback(ctx, "", "test"); !errors.Is(err, kernel.ErrNothingToRollBack) {
			t.Fatalf("failing operation %d: rollback after: %v", k, err)
		}
	}
}

// TestFakeFailedAddIsNotUndone: a rule (and a route) whose add the kernel refuses because an
// identical one appeared meanwhile is not "undone": that would delete the other one.
func TestFakeFailedAddIsNotUndone(t *testing.T) {
	for _, kind := range []plan.ChangeKind{plan.KindRule, plan.KindRoute} {
		t.Run(string(kind), func(t *testing.T) {
			ctx := context.Background()
			st := fakeState()
			p := plan.New("adds")
			var raced plan.Change
			for i := range 5 {
				c := plan.Change{Kind: kind, Op: plan.OpAdd}
				if kind == plan.KindRule {
					c.Rule = &model.Rule{Family: inet.V4, Priority: 2000 + i, Src: pfx(fmt.Sprintf("10.60.%d.0/24", i)), Action: model.ActionTable, Table: 100}
				} else {
					c.Route = &model.Route{Family: inet.V4, Table: 100, Dst: pfx(fmt.Sprintf("10.60.%d.0/24", i)), Gateway: ip("10.88.0.2"), Dev: "a0"}
				}
				p.Changes = append(p.Changes, c)
				if i == 2 {
					raced = c
				}
			}
			w := newWorld(t, st)
			w.applier.BatchSize = 10 // all in one batch
			w.fake.Fail = func(op kerneltest.Op) error {
				if op.N == 3 {
					// Someone else makes the third change just before the kernel sees ours.
					w.fake.Fail = nil
					engineApply(t, w.fake, raced)
					return fmt.Errorf("%s: %w", op.Line, unix.EEXIST)
				}
				return nil
			}
			_, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{})
			if !errors.Is(err, unix.EEXIST) || !strings.Contains(err.Error(), "change 3 of the plan") {
				t.Fatalf("apply: %v", err)
			}
			want := st.Clone()
			plan.ApplyChange(want, raced)
			sameState(t, "the other one's change was undone, or ours were not", want, w.fake.State())
		})
	}
}

// engineApply makes a change on the fake as another program would.
func engineApply(t *testing.T, f *kerneltest.Fake, c plan.Change) {
	t.Helper()
	var err error
	if c.Kind == plan.KindRule {
		_, failed, e := f.Rules(context.Background(), []kernel.RuleOp{{Op: c.Op, Rule: *c.Rule}}, true)
		err = errors.Join(e, opErr(failed))
	} else {
		_, failed, e := f.Routes(context.Background(), []kernel.RouteOp{{Op: c.Op, Route: *c.Route}}, true)
		err = errors.Join(e, opErr(failed))
	}
	if err != nil {
		t.Fatal(err)
	}
}

func opErr(failed []kernel.OpError) error {
	if len(failed) > 0 {
		return failed[0].Err
	}
	return nil
}

// TestFakeDiskFullAtEveryWrite makes every write to the journal and steps files fail in turn
// (and every one after it, as a full disk does): an apply that cannot journal a step does not
// make it, and one that cannot finish undoes what it did. Either way the host is as it was or
// as planned, and once there is room again, history reads and the next apply works.
func TestFakeDiskFullAtEveryWrite(t *testing.T) {
	ctx := context.Background()
	st := fakeState()
	p := everyKindPlan(t, st)
	// Count the writes of an apply that goes through.
	w := newWorld(t, st)
	writes := 0
	kernel.SetFault(w.store, func(_, op string) error {
		if op == "write" {
			writes++
		}
		return nil
	})
	if _, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	expect := p.Expect(st)
	for k := 1; k <= writes; k++ {
		w := newWorld(t, st)
		n := 0
		kernel.SetFault(w.store, func(path, op string) error {
			if op != "write" {
				return nil
			}
			if n++; n >= k {
				return fmt.Errorf("writing %s: %w", filepath.Base(path), syscall.ENOSPC)
			}
			return nil
		})
		res, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{})
		switch {
		case err != nil:
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("disk full at write %d: %v", k, err)
			}
			sameState(t, fmt.Sprintf("disk full at write %d: the host changed", k), st, w.fake.State())
		default:
			// Full only after the apply was recorded as applied (the drift record).
			if res.Journal == nil {
				t.Fatalf("disk full at write %d: applied without a journal", k)
			}
			sameState(t, fmt.Sprintf("disk full at write %d: applied, but not as planned", k), expect, w.fake.State())
		}
		// Room again.
		kernel.SetFault(w.store, nil)
		if _, err := w.store.List(); err != nil {
			t.Fatalf("disk full at write %d: history afterwards: %v", k, err)
		}
		if err == nil {
			if _, err := w.applier.Rollback(ctx, "", "test"); err != nil {
				t.Fatalf("disk full at write %d: rollback afterwards: %v", k, err)
			}
			sameState(t, fmt.Sprintf("disk full at write %d: rollback afterwards", k), st, w.fake.State())
		}
		if _, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{}); err != nil {
			t.Fatalf("disk full at write %d: the next apply: %v", k, err)
		}
		sameState(t, fmt.Sprintf("disk full at write %d: the next apply", k), expect, w.fake.State())
	}
}

// snapshot is the world at one instant: the host and the state directory's files.
type snapshot struct {
	host  *model.State
	files map[string][]byte // the fake's files (rt_tables)
	dir   map[string][]byte // the state directory
}

func copyDir(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

// restart builds a world from a snapshot, as if the machine came back after a kill.
func restart(t testing.TB, s snapshot, tear func(name string, b []byte) []byte) *world {
	t.Helper()
	w := newWorld(t, s.host)
	w.fake.BaseTables = fakeState().TableNames
	w.fake.SetFiles(s.files)
	for name, b := range s.dir {
		if tear != nil {
			b = tear(name, b)
		}
		if err := os.WriteFile(filepath.Join(w.dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// TestFakeKillAtEveryOp kills the apply (takes the world as it is) after every operation and
// before every journal write, and recovers: a rollback, or nothing when no step had started,
// leaves the host as it was. A kill loses what the journal had not synced yet and may leave
// the record being written torn: the journal is cut at every byte after its last sync.
func TestFakeKillAtEveryOp(t *testing.T) {
	ctx := context.Background()
	st := fakeState()
	p := everyKindPlan(t, st)
	w := newWorld(t, st)
	type instant struct {
		snapshot
		synced map[string]int // journal bytes on disk for sure
	}
	var snaps []instant
	synced := map[string]int{}
	take := func() {
		s := instant{snapshot{w.fake.State(), w.fake.Files(), copyDir(t, w.dir)}, map[string]int{}}
		for k, v := range synced {
			s.synced[k] = v
		}
		snaps = append(snaps, s)
	}
	take()
	w.fake.After = func(kerneltest.Op) { take() }
	kernel.SetFault(w.store, func(path, op string) error {
		name := filepath.Base(path)
		switch {
		case !strings.HasSuffix(name, ".journal"):
		case op == "write":
			take()
		case op == "synced":
			fi, err := os.Stat(path)
			if err == nil {
				synced[name] = int(fi.Size())
			}
		}
		return nil
	})
	if _, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	take()
	recoverFrom := func(t *testing.T, what string, rw *world) {
		t.Helper()
		_, err := rw.applier.Rollback(ctx, "", "recovery")
		if err != nil && !errors.Is(err, kernel.ErrNothingToRollBack) {
			t.Fatalf("%s: rollback: %v", what, err)
		}
		if d := model.Diff(st, rw.fake.State()); d != "" {
			js, _ := rw.store.List()
			t.Fatalf("%s: the host after recovery (rollback: %v; journals %v; log %v):\n%s", what, err, js, rw.fake.Log, d)
		}
	}
	cuts := 0
	for i, s := range snaps {
		recoverFrom(t, fmt.Sprintf("killed at instant %d", i), restart(t, s.snapshot, nil))
		// What the next instant holds may be half written at this one.
		var next map[string][]byte
		if i+1 < len(snaps) {
			next = snaps[i+1].dir
		}
		for name, b := range s.dir {
			if !strings.HasSuffix(name, ".journal") {
				continue
			}
			if n, ok := next[name]; ok && len(n) > len(b) {
				b = n
			}
			for cut := s.synced[name]; cut < len(b); cut++ {
				torn := snapshot{s.host, s.files, map[string][]byte{}}
				for n, x := range s.dir {
					torn.dir[n] = x
				}
				torn.dir[name] = b[:cut]
				recoverFrom(t, fmt.Sprintf("killed at instant %d, journal %s cut at byte %d of %d", i, name, cut, len(b)), restart(t, torn, nil))
				cuts++
			}
		}
	}
	if cuts < 100 {
		t.Fatalf("only %d torn journals tried", cuts)
	}
}

// randomDesired makes a random intent against st: routes and rules added, replaced and
// removed, sysctls, addresses, a vxlan link, a chain, table names.
func randomDesired(rng *rand.Rand, st *model.State, n int) *plan.Desired {
	d := &plan.Desired{Intent: fmt.Sprintf("random %d", n)}
	gws := []struct {
		gw  string
		dev string
	}{{"10.88.0.2", "a0"}, {"10.88.0.3", ""}, {"192.168.7.2", "b0"}, {"10.99.0.2", "vxold"}}
	for range rng.IntN(12) {
		g := gws[rng.IntN(len(gws))]
		if g.dev == "vxold" && st.LinkByName("vxold") == nil {
			continue
		}
		r := model.Route{Family: inet.V4, Table: 100 + rng.IntN(3), Dst: pfx(fmt.Sprintf("10.%d.%d.0/24", 30+rng.IntN(3), rng.IntN(8))),
			Gateway: ip(g.gw), Dev: g.dev, Metric: rng.IntN(2) * 10}
		if rng.IntN(6) == 0 {
			r = model.Route{Family: inet.V4, Table: 100 + rng.IntN(3), Type: model.RouteBlackhole, Dst: r.Dst}
		}
		if !slices.ContainsFunc(d.Routes, func(x model.Route) bool { return x.Table == r.Table && x.Dst == r.Dst && x.Metric == r.Metric }) {
			d.Routes = append(d.Routes, r)
		}
	}
	for _, r := range st.Routes {
		if r.Protocol != "kernel" && r.Table >= 100 && r.Table < 200 && rng.IntN(3) == 0 &&
			!slices.ContainsFunc(d.Routes, func(x model.Route) bool { return x.Table == r.Table && x.Dst == r.Dst }) {
			d.RemoveRoutes = append(d.RemoveRoutes, r)
		}
	}
	for range rng.IntN(5) {
		r := model.Rule{Family: inet.V4, Priority: 1000 + rng.IntN(20), Src: pfx(fmt.Sprintf("10.40.%d.0/24", rng.IntN(5))), Action: model.ActionTable, Table: 100 + rng.IntN(3)}
		if !slices.ContainsFunc(d.Rules, func(x model.Rule) bool { return x.Priority == r.Priority && x.Src == r.Src }) {
			d.Rules = append(d.Rules, r)
		}
	}
	for _, r := range st.Rules {
		if r.Priority >= 1000 && r.Priority < 1100 && rng.IntN(2) == 0 &&
			!slices.ContainsFunc(d.Rules, func(x model.Rule) bool { return x.Priority == r.Priority && x.Src == r.Src }) {
			d.RemoveRules = append(d.RemoveRules, r)
		}
	}
	if rng.IntN(2) == 0 {
		d.Sysctls = append(d.Sysctls, plan.SysctlValue{Key: model.ConfKey("b0", "rp_filter"), Value: fmt.Sprint(rng.IntN(3))})
	}
	if rng.IntN(3) == 0 {
		d.Sysctls = append(d.Sysctls, plan.SysctlValue{Key: model.SysctlIPForward, Value: fmt.Sprint(rng.IntN(2))})
	}
	if rng.IntN(3) == 0 {
		d.Addresses = append(d.Addresses, plan.LinkAddress{Dev: "b0", Address: model.Address{Prefix: pfx(fmt.Sprintf("10.50.%d.1/24", rng.IntN(3)))}})
	}
	if l := st.LinkByName("b0"); l != nil && rng.IntN(3) == 0 {
		for _, a := range l.Addrs {
			if a.Prefix.Addr().As4()[0] == 10 && !slices.ContainsFunc(d.Addresses, func(x plan.LinkAddress) bool { return x.Prefix == a.Prefix }) {
				d.RemoveAddresses = append(d.RemoveAddresses, plan.LinkAddress{Dev: "b0", Address: a})
			}
		}
	}
	switch rng.IntN(4) {
	case 0:
		d.Links = append(d.Links, model.Link{Name: "vxr", Kind: "vxlan", Up: rng.IntN(2) == 0,
			Tunnel: &model.Tunnel{VNI: 77, Local: ip("10.88.0.1"), Remote: ip("10.88.0.7"), Dev: "a0", Port: 4789}})
	case 1:
		if st.LinkByName("vxr") != nil {
			d.RemoveLinks = append(d.RemoveLinks, "vxr")
		}
	}
	switch rng.IntN(4) {
	case 0:
		d.Chains = append(d.Chains, plan.ChainSpec{Family: inet.V4, Table: "mangle", Name: "RT-RAND", Jumps: []plan.Jump{{Chain: "PREROUTING"}},
			Rules: []string{fmt.Sprintf("-s 10.40.%d.0/24 -j MARK --set-mark 0x%d/0xff", rng.IntN(5), 1+rng.IntN(9))}})
	case 1:
		d.RemoveChains = append(d.RemoveChains, plan.ChainSpec{Family: inet.V4, Table: "mangle", Name: "RT-RAND"})
	}
	if rng.IntN(4) == 0 {
		d.TableNames = append(d.TableNames, plan.RTTable{ID: 101 + rng.IntN(2), Name: fmt.Sprintf("rand%d", rng.IntN(3))})
	}
	return d
}

// TestFakeRandomWalks applies random plans one over the other, rolls some back, fails some
// half way, and checks after every step that the fake holds what the plan's model expects:
// an apply leaves Expect(before), a rollback or a failure leaves before.
func TestFakeRandomWalks(t *testing.T) {
	ctx := context.Background()
	walks, steps := 60, 12
	if testing.Short() {
		walks = 10
	}
	var applied, failed, rolledBack, refused int
	for walk := range walks {
		rng := rand.New(rand.NewPCG(uint64(walk), 7))
		w := newWorld(t, fakeState())
		w.applier.BatchSize = 1 + rng.IntN(4)
		var stack []*model.State // the state before each apply in effect
		for step := range steps {
			cur := w.fake.State()
			where := fmt.Sprintf("walk %d step %d", walk, step)
			if len(stack) > 0 && rng.IntN(3) == 0 {
				if _, err := w.applier.Rollback(ctx, "", "walk"); err != nil {
					t.Fatalf("%s: rollback: %v", where, err)
				}
				sameState(t, where+": rollback", stack[len(stack)-1], w.fake.State())
				stack = stack[:len(stack)-1]
				rolledBack++
				continue
			}
			p, err := randomDesired(rng, cur, step).Plan(cur)
			if err != nil {
				refused++
				continue // a random intent that does not fit: the planner says so
			}
			fail := 0
			if rng.IntN(4) == 0 {
				fail = 1 + rng.IntN(20)
			}
			ops := 0
			w.fake.Fail = func(kerneltest.Op) error {
				if ops++; ops == fail {
					return errors.New("injected")
				}
				return nil
			}
			res, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{})
			w.fake.Fail = nil
			switch {
			case err != nil && fail > 0:
				sameState(t, where+": a failed apply", cur, w.fake.State())
				failed++
			case err != nil:
				t.Fatalf("%s: apply: %v\nplan:\n%s", where, err, p.Script())
			case res.NoOp:
			default:
				sameState(t, where+": the fake (+) against the plan's expectation (-)", p.Expect(cur), w.fake.State())
				if len(res.Drift) > 0 {
					t.Fatalf("%s: drift: %v", where, res.Drift)
				}
				stack = append(stack, cur)
				applied++
			}
		}
		for len(stack) > 0 {
			if _, err := w.applier.Rollback(ctx, "", "walk"); err != nil {
				t.Fatalf("walk %d: final rollback: %v", walk, err)
			}
			sameState(t, fmt.Sprintf("walk %d: final rollback", walk), stack[len(stack)-1], w.fake.State())
			stack = stack[:len(stack)-1]
		}
	}
	t.Logf("%d applies, %d failed half way, %d rolled back, %d intents refused by the planner", applied, failed, rolledBack, refused)
	if applied < walks || failed < walks/10 || rolledBack < walks/2 {
		t.Errorf("the walks did too little: %d applies, %d failures, %d rollbacks", applied, failed, rolledBack)
	}
}

// TestFakeDriftIsReported: what another program changes while the apply runs shows in the
// drift check, by the plan's change numbers: a route of a batch deleted, a rule deleted, a
// sysctl set back, and a route deleted that the plan had in effect already.
func TestFakeDriftIsReported(t *testing.T) {
	st := fakeState()
	p := plan.New("drift")
	for i := range 10 {
		p.Changes = append(p.Changes, plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd,
			Route: &model.Route{Family: inet.V4, Table: 100, Dst: pfx(fmt.Sprintf("10.61.%d.0/24", i)), Gateway: ip("10.88.0.2"), Dev: "a0"}})
	}
	p.Changes = append(p.Changes,
		plan.Change{Kind: plan.KindRule, Op: plan.OpAdd, Rule: &model.Rule{Family: inet.V4, Priority: 3000, Src: pfx("10.61.0.0/16"), Action: model.ActionTable, Table: 100}},
		plan.Change{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: model.SysctlIPForward, Value: "1"}},
		plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4, Table: 100, Dst: pfx("10.98.0.0/16"), Gateway: ip("10.99.0.2"), Dev: "vxold"}}, // in effect
	)
	w := newWorld(t, st)
	n := countOps(t, st, p)
	w.fake.After = func(op kerneltest.Op) {
		if op.N != n {
			return
		}
		// Another program, once the last change is made.
		w.fake.After = nil
		engineApply(t, w.fake, plan.Change{Kind: plan.KindRoute, Op: plan.OpDelete, Route: p.Changes[3].Route})
		engineApply(t, w.fake, plan.Change{Kind: plan.KindRule, Op: plan.OpDelete, Rule: p.Changes[10].Rule})
		engineApply(t, w.fake, plan.Change{Kind: plan.KindRoute, Op: plan.OpDelete, Route: p.Changes[12].Route})
		if err := w.fake.WriteSysctl(model.SysctlIPForward, "0"); err != nil {
			t.Fatal(err)
		}
	}
	res, err := w.applier.Apply(context.Background(), p, kernel.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(res.Drift, "\n")
	for _, want := range []string{"change 4 is not in effect: ip -4 route add 10.61.3.0/24", "change 11 is not in effect: ip -4 rule",
		"change 12 is not in effect: sysctl", "change 13 is not in effect: ip -4 route add 10.98.0.0/16"} {
		if !strings.Contains(got, want) {
			t.Errorf("drift lacks %q:\n%s", want, got)
		}
	}
	if len(res.Drift) != 4 {
		t.Errorf("%d drift lines, want 4:\n%s", len(res.Drift), got)
	}
}
