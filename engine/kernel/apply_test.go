package kernel_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// applyHost is a namespace prepared with something of every kind for a plan to replace or
// delete: a vxlan link with an address and a route, an extra address with a route that uses it
// as source, routes in main and table 100, a rule, iptables chains of roundtrip's hooked from
// built-in chains behind another rule, and sysctls.
type applyHost struct {
	ns       *lab.NS
	peer     *lab.NS
	tables   string // iproute2 configuration directory for table names
	applier  *kernel.Applier
	stateDir string
}

func newApplyHost(t *testing.T, l *lab.Lab, name string) *applyHost {
	t.Helper()
	a, b := l.NS(name), l.NS(name+"p")
	a.NoDAD()
	b.NoDAD()
	// Fixed hardware addresses, so that two hosts built alike have the same IPv6 link-local
	// addresses and compare equal.
	a.IP("link", "add", "a0", "address", "02:00:00:00:88:01", "type", "veth", "peer", "name", "b0", "address", "02:00:00:00:88:02", "netns", b.Name)
	a.IP("link", "set", "a0", "up")
	b.IP("link", "set", "b0", "up")
	a.Addr("a0", "10.88.0.1/24")
	a.Addr("a0", "10.88.9.1/24")
	b.Addr("b0", "10.88.0.2/24")
	a.IP("link", "add", "vxold", "address", "02:00:00:00:00:07", "type", "vxlan", "id", "7", "dev", "a0",
		"local", "10.88.0.1", "remote", "10.88.0.9", "dstport", "4789")
	a.IP("link", "set", "vxold", "up")
	a.Addr("vxold", "10.99.0.1/24")
	a.IP("route", "add", "10.98.0.0/16", "via", "10.99.0.2", "table", "100")
	a.IP("route", "add", "10.77.0.0/16", "via", "10.88.0.2", "table", "100")
	a.IP("route", "add", "10.66.0.0/16", "via", "10.88.0.2")
	a.IP("route", "add", "10.55.0.0/16", "via", "10.88.0.2", "src", "10.88.9.1", "table", "101")
	a.IP("rule", "add", "priority", "10050", "from", "10.88.5.0/24", "lookup", "100")
	a.Run("iptables", "-t", "mangle", "-A", "PREROUTING", "-p", "udp", "-j", "ACCEPT")
	a.Run("iptables", "-t", "mangle", "-N", "RT-TEST-OLD")
	a.Run("iptables", "-t", "mangle", "-A", "RT-TEST-OLD", "-p", "tcp", "-j", "MARK", "--set-mark", "0x2000000/0xff000000")
	a.Run("iptables", "-t", "mangle", "-A", "PREROUTING", "-j", "RT-TEST-OLD")
	a.Run("iptables", "-t", "mangle", "-A", "PREROUTING", "-p", "icmp", "-j", "ACCEPT")
	a.Run("iptables", "-t", "nat", "-N", "RT-TEST-PRE")
	a.Run("iptables", "-t", "nat", "-A", "RT-TEST-PRE", "-p", "tcp", "--dport", "9090", "-j", "DNAT", "--to-destination", "10.88.0.2:90")
	a.Run("iptables", "-t", "nat", "-A", "PREROUTING", "-j", "RT-TEST-PRE")
	a.Sysctl("net.ipv4.ip_forward", "0")
	a.Sysctl("net.ipv4.conf.a0.rp_filter", "1")
	a.SettleIPv6() // reads before and after are compared: no local route may land between

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rt_tables"), []byte("100\tclients\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &applyHost{ns: a, peer: b, tables: dir, stateDir: t.TempDir()}
	t.Setenv(kernel.StateDirEnv, h.stateDir)
	h.applier = &kernel.Applier{NS: kernel.Namespace{Name: a.Name}, RTTablesDirs: []string{dir}}
	return h
}

func (h *applyHost) read(t *testing.T) *model.State {
	t.Helper()
	st, err := kernel.ReadWith(context.Background(), kernel.Namespace{Name: h.ns.Name}, kernel.ReadOptions{RTTablesDirs: []string{h.tables}})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// everyKindPlan touches every change kind: it names a table, creates a vxlan link with an
// address, sets sysctls, adds and replaces routes, adds IPv4 and IPv6 rules, replaces one
// chain and creates another, deletes a rule, a route, a chain, an address (and with it a route
// that used it as source) and a link (with its address and route), and flushes conntrack.
func everyKindPlan(t testing.TB, st *model.State) *plan.Plan {
	t.Helper()
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	d := &plan.Desired{
		Intent:     "test: every change kind",
		TableNames: []plan.RTTable{{ID: 200, Name: "rtest"}},
		Links: []model.Link{{Name: "vxnew", Kind: "vxlan", Up: true, HardwareAddr: "02:00:00:00:00:42",
			Tunnel: &model.Tunnel{VNI: 42, Local: addr("10.88.0.1"), Remote: addr("10.88.0.2"), Dev: "a0", Port: 4789}}},
		Addresses: []plan.LinkAddress{{Dev: "vxnew", Address: model.Address{Prefix: pfx("10.91.0.1/24")}}},
		Sysctls: []plan.SysctlValue{
			{Key: model.SysctlIPForward, Value: "1"},
			{Key: model.ConfKey("a0", "rp_filter"), Value: "2"},
		},
		Routes: []model.Route{
			{Family: inet.V4, Table: 200, Dst: pfx("10.90.0.0/16"), Gateway: addr("10.91.0.2"), Dev: "vxnew"},
			{Family: inet.V4, Dst: pfx("10.66.0.0/16"), Gateway: addr("10.88.0.3")},
			{Family: inet.V4, Table: 200, Type: model.RouteUnreachable, Dst: pfx("0.0.0.0/0"), Metric: 50},
		},
		Rules: []model.Rule{
			{Family: inet.V4, Priority: 10001, Src: pfx("10.91.0.0/24"), Action: model.ActionTable, Table: 200},
			{Family: inet.V6, Priority: 10002, Src: pfx("fd00:1::/64"), Action: model.ActionTable, Table: 200},
			{Family: inet.V4, Priority: 10003, Mark: &model.MarkMatch{Value: 0x1000000, Mask: 0xff000000}, Action: model.ActionTable, Table: 200},
			// A table above 255 with suppress_prefixlength: netlink v1.3.1 would drop the latter.
			{Family: inet.V4, Priority: 10004, Action: model.ActionTable, Table: 1000, SuppressPrefixLen: new(0)},
			{Family: inet.V4, Priority: 10005, IPProto: 6, DPort: &model.PortRange{Start: 80, End: 80}, Action: model.ActionBlackhole},
		},
		Chains: []plan.ChainSpec{
			{Family: inet.V4, Table: "nat", Name: "RT-TEST-PRE", Jumps: []plan.Jump{{Chain: "PREROUTING"}},
				Rules: []string{"-p tcp --dport 8080 -j DNAT --to-destination 10.88.0.2:80"}},
			{Family: inet.V4, Table: "mangle", Name: "RT-TEST-MARK", Jumps: []plan.Jump{{Chain: "OUTPUT"}},
				Rules: []string{"-d 10.90.0.0/16 -j MARK --set-mark 0x1000000/0xff000000"}},
		},
		RemoveRules:     []model.Rule{{Family: inet.V4, Priority: 10050, Src: pfx("10.88.5.0/24"), Table: 100}},
		RemoveRoutes:    []model.Route{{Family: inet.V4, Table: 100, Dst: pfx("10.77.0.0/16")}},
		RemoveChains:    []plan.ChainSpec{{Family: inet.V4, Table: "mangle", Name: "RT-TEST-OLD"}},
		RemoveAddresses: []plan.LinkAddress{{Dev: "a0", Address: model.Address{Prefix: pfx("10.88.9.1/24")}}},
		RemoveLinks:     []string{"vxold"},
		Flush:           []plan.ConntrackFlush{{Family: inet.V4, Proto: 6, Dst: pfx("10.88.0.1/32"), DPort: 8080}},
	}
	p, err := d.Plan(st)
	if err != nil {
		t.Fatalf("planning: %v", err)
	}
	kinds := map[plan.ChangeKind]bool{}
	for _, c := range p.Changes {
		kinds[c.Kind] = true
	}
	if len(kinds) != 8 {
		t.Fatalf("the plan should touch all 8 change kinds, touches %v:\n%s", kinds, p.Script())
	}
	return p
}

func TestPrivilegedApplyRollback(t *testing.T) {
	l := lab.New(t)
	h := newApplyHost(t, l, "ar")
	ctx := context.Background()
	before := h.read(t)
	p := everyKindPlan(t, before)

	res, err := h.applier.Apply(ctx, p, kernel.ApplyOptions{})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if len(res.Drift) > 0 {
		t.Errorf("drift after apply:\n%s", strings.Join(res.Drift, "\n"))
	}
	after := h.read(t)
	if model.Equal(before, after) {
		t.Fatal("apply changed nothing")
	}
	// The model's expectation of the plan agrees with the kernel on everything the plan touched.
	if drift := p.Drift(after); len(drift) > 0 {
		t.Errorf("plan not in effect: %v", drift)
	}
	for _, want := range []string{"ip -4 rule priority 10001 from 10.91.0.0/24 lookup rtest", "link vxnew vxlan", "table 200 rtest"} {
		if !strings.Contains(after.String(), want) {
			t.Errorf("state after apply lacks %q", want)
		}
	}

	// Applying it again changes nothing and writes no journal.
	again, err := h.applier.Apply(ctx, p, kernel.ApplyOptions{})
	if err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	if !again.NoOp || again.Journal != nil {
		t.Errorf("re-apply of an applied plan did something: %v", again.Pending)
	}
	if d := model.Diff(after, h.read(t)); d != "" {
		t.Errorf("re-apply changed the state:\n%s", d)
	}

	j, err := h.applier.Rollback(ctx, "", "test")
	if err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if j.Status != kernel.StatusRolledBack {
		t.Errorf("journal status %s after rollback", j.Status)
	}
	if d := model.Diff(before, h.read(t)); d != "" {
		t.Errorf("rollback did not restore the state:\n%s", d)
	}
	if _, err := h.applier.Rollback(ctx, "", "test"); !errors.Is(err, kernel.ErrNothingToRollBack) {
		t.Errorf("second rollback: got %v, want ErrNothingToRollBack", err)
	}
}

// TestPrivilegedApplyFailureAtEveryStep fails the apply at every step k, both before step k
// starts and after its kernel work (before the journal records it), and checks each time that
// the host ends exactly as it was.
func TestPrivilegedApplyFailureAtEveryStep(t *testing.T) {
	l := lab.New(t)
	h := newApplyHost(t, l, "fi")
	ctx := context.Background()
	before := h.read(t)
	p := everyKindPlan(t, before)
	prep, err := h.applier.Prepare(ctx, p.Source(), kernel.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	steps := prep.Steps
	injected := errors.New("injected failure")
	for k := range steps {
		for _, when := range []string{"before", "after"} {
			a := *h.applier
			hook := func(i int, _ kernel.Step) error {
				if i == k {
					return injected
				}
				return nil
			}
			if when == "before" {
				a.BeforeStep = hook
			} else {
				a.AfterStep = hook
			}
			_, err := a.Apply(ctx, p, kernel.ApplyOptions{})
			if !errors.Is(err, injected) {
				t.Fatalf("failing %s step %d: got error %v", when, k+1, err)
			}
			if !strings.Contains(err.Error(), "host is as it was") {
				t.Errorf("failing %s step %d: error does not say the host was restored: %v", when, k+1, err)
			}
			if d := model.Diff(before, h.read(t)); d != "" {
				t.Fatalf("failing %s step %d of %d (%s) left the host changed:\n%s", when, k+1, len(steps), steps[k].Summary, d)
			}
		}
	}
	// After all that the plan still applies cleanly.
	if _, err := h.applier.Apply(ctx, p, kernel.ApplyOptions{}); err != nil {
		t.Fatalf("apply after the failures: %v", err)
	}
}

// TestPrivilegedScriptOracle applies the plan through the engine in one namespace and runs the
// rendered shell script (twice) in an identical one: the kernel's state must be the same.
func TestPrivilegedScriptOracle(t *testing.T) {
	l := lab.New(t)
	eng := newApplyHost(t, l, "oe")
	scr := newApplyHost(t, l, "os")
	ctx := context.Background()
	p := everyKindPlan(t, eng.read(t))
	if _, err := eng.applier.Apply(ctx, p, kernel.ApplyOptions{}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	script := filepath.Join(t.TempDir(), "plan.sh")
	if err := os.WriteFile(script, p.Script(), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func() {
		t.Helper()
		cmd := exec.Command("ip", "netns", "exec", scr.ns.Name, "sh", script)
		cmd.Env = append(os.Environ(), "ROUNDTRIP_IPROUTE2_DIR="+scr.tables)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("running the script: %v\n%s\nscript:\n%s", err, out, p.Script())
		}
	}
	run()
	first := scr.read(t)
	if d := model.Diff(eng.read(t), first); d != "" {
		t.Errorf("engine (-) and script (+) disagree:\n%s", d)
	}
	run()
	if d := model.Diff(first, scr.read(t)); d != "" {
		t.Errorf("running the script again changed the state (duplicates?):\n%s", d)
	}
}

// TestPrivilegedConcurrentApply checks that two applies on one namespace never interleave: one
// waits for the other, or is refused when it may not wait.
func TestPrivilegedConcurrentApply(t *testing.T) {
	l := lab.New(t)
	h := newApplyHost(t, l, "cc")
	ctx := context.Background()
	sysctl := func(key, v string) *plan.Plan {
		p := plan.New("set " + key)
		p.Changes = append(p.Changes, plan.Change{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: key, Value: v}})
		return p
	}
	entered, proceed := make(chan struct{}), make(chan struct{})
	first := *h.applier
	first.BeforeStep = func(int, kernel.Step) error {
		close(entered)
		<-proceed
		return nil
	}
	var wg sync.WaitGroup
	var firstErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, firstErr = first.Apply(ctx, sysctl(model.SysctlIPForward, "1"), kernel.ApplyOptions{})
	}()
	<-entered

	// A second apply that may not wait is refused and changes nothing.
	quick := *h.applier
	quick.LockWait = 100 * time.Millisecond
	if _, err := quick.Apply(ctx, sysctl(model.ConfKey("a0", "rp_filter"), "2"), kernel.ApplyOptions{}); !errors.Is(err, kernel.ErrLocked) {
		t.Fatalf("concurrent apply: got %v, want ErrLocked", err)
	}
	// One that may wait does so until the first is done.
	patient := *h.applier
	patient.LockWait = time.Minute
	var secondErr error
	var second *kernel.Result
	wg.Add(1)
	go func() {
		defer wg.Done()
		second, secondErr = patient.Apply(ctx, sysctl(model.ConfKey("a0", "rp_filter"), "2"), kernel.ApplyOptions{})
	}()
	time.Sleep(300 * time.Millisecond) // give the second apply time to (wrongly) get ahead
	close(proceed)
	wg.Wait()
	if firstErr != nil || secondErr != nil {
		t.Fatalf("applies failed: %v / %v", firstErr, secondErr)
	}
	store, err := kernel.OpenStore(kernel.Namespace{Name: h.ns.Name})
	if err != nil {
		t.Fatal(err)
	}
	js, err := store.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(js) != 2 {
		t.Fatalf("want 2 journals, got %d", len(js))
	}
	one, two := js[0], js[1]
	if one.Intent != "set "+model.SysctlIPForward || two.ID != second.Journal.ID {
		t.Fatalf("journals in the wrong order: %s, %s", one, two)
	}
	if !two.Head.Started.After(one.AppliedAt) {
		t.Errorf("the second apply started at %s, before the first finished at %s", two.Head.Started, one.AppliedAt)
	}
}

// TestPrivilegedApplyRefusesBadInput checks that input errors are caught before anything
// changes, with a message that says what to fix.
func TestPrivilegedApplyRefusesBadInput(t *testing.T) {
	l := lab.New(t)
	h := newApplyHost(t, l, "bi")
	ctx := context.Background()
	before := h.read(t)
	pfx := netip.MustParsePrefix
	cases := []struct {
		name string
		c    plan.Change
		want string
	}{
		{"unknown interface", plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4, Dst: pfx("10.1.0.0/16"), Dev: "nosuch0"}}, "unknown interface nosuch0"},
		{"gateway not on-link", plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4, Dst: pfx("10.1.0.0/16"), Gateway: netip.MustParseAddr("192.0.2.1")}}, "gateway 192.0.2.1 is not on-link"},
		{"table name clash", plan.Change{Kind: plan.KindTable, Op: plan.OpAdd, Table: &plan.RTTable{ID: 201, Name: "clients"}}, `table name "clients" is already table 100`},
		{"rule the kernel refuses", plan.Change{Kind: plan.KindChain, Op: plan.OpSet, Chain: &plan.ChainSpec{Family: inet.V4, Table: "nat", Name: "RT-BAD", Rules: []string{"-j NOSUCHTARGET"}}}, "jumps to NOSUCHTARGET, which is neither an iptables target nor a chain"},
		{"rule iptables cannot parse", plan.Change{Kind: plan.KindChain, Op: plan.OpSet, Chain: &plan.ChainSpec{Family: inet.V4, Table: "nat", Name: "RT-BAD", Rules: []string{"-p tcp --dport"}}}, "--dport"},
		{"rule the kernel refuses", plan.Change{Kind: plan.KindChain, Op: plan.OpSet, Chain: &plan.ChainSpec{Family: inet.V4, Table: "nat", Name: "RT-BAD", Rules: []string{"-m nosuchmatch --foo 1 -j ACCEPT"}}}, "the kernel refuses them"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := plan.New("bad: " + tc.name)
			// A valid change first, so that refusing must happen before anything is applied.
			p.Changes = append(p.Changes, plan.Change{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: model.SysctlIPForward, Value: "1"}}, tc.c)
			_, err := h.applier.Apply(ctx, p, kernel.ApplyOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
			// Refused before the first step: no journal, nothing undone.
			if strings.Contains(err.Error(), "undone") {
				t.Errorf("the plan was started before being refused: %v", err)
			}
			if d := model.Diff(before, h.read(t)); d != "" {
				t.Errorf("a refused plan changed the state:\n%s", d)
			}
		})
	}
}

// TestPrivilegedRevertTimer runs the revert timer's body in-process: an apply with a deadline
// that nobody confirms is rolled back; a confirmed one stays.
func TestPrivilegedRevertTimer(t *testing.T) {
	l := lab.New(t)
	h := newApplyHost(t, l, "rt")
	ctx := context.Background()
	before := h.read(t)
	p := plan.New("timer test")
	p.Changes = append(p.Changes, plan.Change{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: model.SysctlIPForward, Value: "1"}})
	ns := kernel.Namespace{Name: h.ns.Name}

	for _, confirm := range []bool{false, true} {
		a := *h.applier
		timerDone := make(chan error, 1)
		a.StartTimer = func(_ *kernel.Store, j *kernel.Journal, after time.Duration) (int, error) {
			go func() { timerDone <- kernel.RunRevertTimer(ctx, ns, j.ID, after) }()
			return 0, nil
		}
		res, err := a.Apply(ctx, p, kernel.ApplyOptions{Confirm: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if res.Journal.Status != kernel.StatusPending {
			t.Fatalf("status %s, want %s", res.Journal.Status, kernel.StatusPending)
		}
		if confirm {
			if _, err := kernel.Confirm(ctx, ns, "", time.Second); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-timerDone; err != nil {
			t.Fatalf("timer: %v", err)
		}
		got := h.read(t)
		if confirm {
			if got.Sysctls[model.SysctlIPForward] != "1" {
				t.Errorf("a confirmed apply was reverted")
			}
		} else if d := model.Diff(before, got); d != "" {
			t.Errorf("an unconfirmed apply was not reverted:\n%s", d)
		}
	}
	if _, err := kernel.Confirm(ctx, ns, "", time.Second); !errors.Is(err, kernel.ErrNothingToConfirm) {
		t.Errorf("confirm with nothing pending: %v", err)
	}
}

// TestPrivilegedConntrackFlush checks that a plan's flush deletes the conntrack entries of the
// flows it names and no others.
func TestPrivilegedConntrackFlush(t *testing.T) {
	lab.RequireTool(t, "conntrack") // to create entries
	l := lab.New(t)
	h := newApplyHost(t, l, "ct")
	for _, port := range []string{"8080", "9999"} {
		h.ns.Run("conntrack", "-I", "-s", "10.88.0.2", "-d", "10.88.0.1", "-p", "tcp", "--sport", "5555", "--dport", port,
			"--state", "ESTABLISHED", "-t", "100", "-u", "SEEN_REPLY")
	}
	// The flush is of IPv4 only: an IPv6 entry of the same port stays.
	h.ns.Run("conntrack", "-I", "-s", "2001:db8:88::2", "-d", "2001:db8:88::1", "-p", "tcp", "--sport", "5555", "--dport", "8080",
		"--state", "ESTABLISHED", "-t", "100", "-u", "SEEN_REPLY")
	p := plan.New("flush port 8080")
	p.Changes = []plan.Change{
		{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: model.SysctlIPForward, Value: "1"}},
		{Kind: plan.KindConntrack, Op: plan.OpFlush, Conntrack: &plan.ConntrackFlush{Family: inet.V4, Proto: 6, Dst: netip.MustParsePrefix("10.88.0.1/32"), DPort: 8080}},
	}
	if _, err := h.applier.Apply(context.Background(), p, kernel.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	out, _ := h.ns.Try("conntrack", "-L")
	if strings.Contains(out, "dst=10.88.0.1 sport=5555 dport=8080") || !strings.Contains(out, "dport=9999") {
		t.Errorf("after the flush of port 8080:\n%s", out)
	}
	out6, _ := h.ns.Try("conntrack", "-L", "-f", "ipv6")
	if !strings.Contains(out6, "dport=8080") {
		t.Errorf("the IPv4 flush deleted the IPv6 entry:\n%s", out6)
	}
}

// BenchmarkPrivilegedApplyDestinationList applies and rolls back a destination list of 2000
// routes (seed case 2) in a namespace: netlink per route, journal per batch.
func BenchmarkPrivilegedApplyDestinationList(b *testing.B) {
	l := lab.New(b)
	ns := l.NS("bench")
	ns.IP("link", "add", "d0", "type", "veth", "peer", "name", "d1")
	ns.IP("link", "set", "d0", "up")
	ns.IP("link", "set", "d1", "up")
	ns.Addr("d0", "10.77.0.1/24")
	b.Setenv(kernel.StateDirEnv, b.TempDir())
	a := &kernel.Applier{NS: kernel.Namespace{Name: ns.Name}, RTTablesDirs: []string{b.TempDir()}}
	p := plan.New("destination list")
	for i := range 2000 {
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(i >> 8), byte(i), 0}), 24)
		p.Changes = append(p.Changes, plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd,
			Route: &model.Route{Family: inet.V4, Table: 200, Dst: dst, Gateway: netip.MustParseAddr("10.77.0.2"), Dev: "d0"}})
	}
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		if _, err := a.Apply(ctx, p, kernel.ApplyOptions{}); err != nil {
			b.Fatal(err)
		}
		if _, err := a.Rollback(ctx, "", "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPrivilegedRollbackOfNewTable: a plan that is the first user of an iptables table (here
// raw) leaves the table behind after rollback, as iptables-nft keeps it; the state must still
// compare equal, since an empty table that accepts everything is no table at all.
func TestPrivilegedRollbackOfNewTable(t *testing.T) {
	l := lab.New(t)
	ns := l.NS("nt")
	t.Setenv(kernel.StateDirEnv, t.TempDir())
	a := &kernel.Applier{NS: kernel.Namespace{Name: ns.Name}, RTTablesDirs: []string{t.TempDir()}}
	ctx := context.Background()
	read := func() *model.State {
		st, err := kernel.ReadWith(ctx, a.NS, kernel.ReadOptions{RTTablesDirs: a.RTTablesDirs})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	before := read()
	if before.Netfilter.Table(inet.V4, "raw") != nil {
		t.Skip("the raw table already exists in a new namespace here")
	}
	p := plan.New("notrack")
	p.Changes = []plan.Change{{Kind: plan.KindChain, Op: plan.OpSet, Chain: &plan.ChainSpec{Family: inet.V4, Table: "raw", Name: "RT-NOTRACK",
		Jumps: []plan.Jump{{Chain: "PREROUTING"}}, Rules: []string{"-p udp --dport 53 -j CT --notrack"}}}}
	if _, err := a.Apply(ctx, p, kernel.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if drift := p.Drift(read()); len(drift) > 0 {
		t.Errorf("drift: %v", drift)
	}
	if _, err := a.Rollback(ctx, "", "test"); err != nil {
		t.Fatal(err)
	}
	if d := model.Diff(before, read()); d != "" {
		t.Errorf("rollback left:\n%s", d)
	}
}
