package kernel_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// journalFile returns the path of the only journal of a store.
func journalFile(t testing.TB, dir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.journal"))
	if len(m) != 1 {
		t.Fatalf("want one journal in %s, have %v", dir, m)
	}
	return m[0]
}

// TestJournalTornAtEveryByte cuts a finished journal at every byte: history reads every cut,
// a journal cut inside its head is set aside as empty by the next command that takes the lock,
// the steps it says were started only grow with the cut, and the next apply is never blocked.
func TestJournalTornAtEveryByte(t *testing.T) {
	ctx := context.Background()
	st := fakeState()
	p := everyKindPlan(t, st)
	w := newWorld(t, st)
	if _, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	path := journalFile(t, w.dir)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	steps, err := os.ReadFile(strings.TrimSuffix(path, ".journal") + ".steps")
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(path)
	prevStarted := 0
	for cut := 0; cut <= len(full); cut++ {
		dir := memDir(t)
		os.WriteFile(filepath.Join(dir, name), full[:cut], 0o600)
		os.WriteFile(filepath.Join(dir, strings.TrimSuffix(name, ".journal")+".steps"), steps, 0o600)
		store := &kernel.Store{Dir: dir, NS: kernel.Namespace{Name: "fake"}}
		js, err := store.List()
		if err != nil || len(js) != 1 {
			t.Fatalf("cut at %d: history: %v (%d journals)", cut, err, len(js))
		}
		j := js[0]
		if j.Status == kernel.StatusUnreadable {
			if !j.Empty {
				t.Fatalf("cut at %d: unreadable but not empty: %s", cut, j.Problem)
			}
			release, err := store.Lock(ctx, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			release()
			if js, _ := store.List(); len(js) != 0 || len(store.Notes) != 1 || !strings.Contains(store.Notes[0], "set aside") {
				t.Fatalf("cut at %d: an empty journal was not set aside: %v %q", cut, js, store.Notes)
			}
			continue
		}
		full, err := store.Load(j.ID)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if len(full.Started) < prevStarted {
			t.Fatalf("cut at %d: %d steps started, fewer than a shorter cut's %d", cut, len(full.Started), prevStarted)
		}
		prevStarted = len(full.Started)
	}
	if prevStarted == 0 {
		t.Fatal("the whole journal shows no started step")
	}
}

// TestCorruptJournalIsSkipped: a journal damaged in the middle (not a torn tail) is listed as
// unreadable with what is wrong, and does not block history, applies or rollbacks.
func TestCorruptJournalIsSkipped(t *testing.T) {
	ctx := context.Background()
	st := fakeState()
	w := newWorld(t, st)
	sysctl := func(v string) *plan.Plan {
		p := plan.New("forwarding " + v)
		p.Changes = []plan.Change{{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: model.SysctlIPForward, Value: v}}}
		return p
	}
	if _, err := w.applier.Apply(ctx, sysctl("1"), kernel.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	path := journalFile(t, w.dir)
	b, _ := os.ReadFile(path)
	b[len("roundtrip journal 2\n")+20] ^= 0xff // inside the head's payload
	os.WriteFile(path, b, 0o600)
	js, err := w.store.List()
	if err != nil || len(js) != 1 || js[0].Status != kernel.StatusUnreadable || !strings.Contains(js[0].Problem, "checksum") {
		t.Fatalf("history of a corrupt journal: %v %v", js, err)
	}
	if !strings.Contains(js[0].String(), "it is skipped") {
		t.Errorf("history line: %s", js[0])
	}
	// New work goes on.
	if _, err := w.applier.Apply(ctx, sysctl("0"), kernel.ApplyOptions{}); err != nil {
		t.Fatalf("apply next to a corrupt journal: %v", err)
	}
	if _, err := w.applier.Rollback(ctx, "", "test"); err != nil {
		t.Fatalf("rollback next to a corrupt journal: %v", err)
	}
}

// TestLegacyJournal reads and rolls back a journal of the first format (JSON lines, the whole
// plan in the head), with a head line far longer than bufio.Scanner's default token.
func TestLegacyJournal(t *testing.T) {
	ctx := context.Background()
	st := fakeState()
	w := newWorld(t, st)
	p := plan.New("legacy")
	var routes, undo []plan.Change
	why := strings.Repeat("a destination list entry ", 20)
	for i := range 1000 {
		r := model.Route{Family: inet.V4, Table: 100, Dst: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)}), 32), Gateway: ip("10.88.0.2"), Dev: "a0"}
		routes = append(routes, plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &r, Why: why})
		undo = append([]plan.Change{{Kind: plan.KindRoute, Op: plan.OpDelete, Route: &r}}, undo...)
	}
	p.Changes = routes
	sysctl := plan.Change{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: model.SysctlIPForward, Value: "1"}}
	steps := []map[string]any{
		{"changes": []plan.Change{sysctl}, "undo": []plan.Change{{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: model.SysctlIPForward, Value: "0"}}}},
		{"changes": routes, "undo": undo},
	}
	id := "20250101-000000-abcd"
	head := map[string]any{"id": id, "started": time.Now().UTC(), "intent": "legacy", "pid": 1, "plan": p, "steps": steps}
	var lines []string
	for _, r := range []map[string]any{
		{"t": "begin", "time": time.Now().UTC(), "begin": head},
		{"t": "start", "time": time.Now().UTC(), "step": 0}, {"t": "done", "time": time.Now().UTC(), "step": 0},
		{"t": "start", "time": time.Now().UTC(), "step": 1}, {"t": "done", "time": time.Now().UTC(), "step": 1},
		{"t": "applied", "time": time.Now().UTC()},
	} {
		b, _ := json.Marshal(r)
		lines = append(lines, string(b))
	}
	if len(lines[0]) < 1<<20 {
		t.Fatalf("the head line is only %d bytes", len(lines[0]))
	}
	os.WriteFile(filepath.Join(w.dir, id+".journal"), []byte(strings.Join(lines, "\n")+"\n{\"t\":\"confirm"), 0o600) // and a torn tail
	// The host as that apply left it.
	plan.ApplyChange(st, sysctl)
	for _, c := range routes {
		plan.ApplyChange(st, c)
	}
	applied := newWorld(t, st)
	applied.dir, applied.store.Dir = w.dir, w.dir
	js, err := applied.store.List()
	if err != nil || len(js) != 1 || js[0].Status != kernel.StatusApplied || !js[0].Legacy || js[0].Steps != 2 {
		t.Fatalf("history of a legacy journal: %v %v", js, err)
	}
	if _, err := applied.applier.Rollback(ctx, "", "test"); err != nil {
		t.Fatalf("rolling back a legacy journal: %v", err)
	}
	sameState(t, "rolling back a legacy journal", fakeState(), applied.fake.State())
	j, err := applied.store.Load(id)
	if err != nil || j.Status != kernel.StatusRolledBack {
		t.Fatalf("after the rollback: %v %v", j, err)
	}
}

// fill sets every field of v (a pointer) to a random non-zero value of its type, so that a
// codec that forgets a field, or a field added later, fails the round trip.
func fill(rng *rand.Rand, v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(rng, v.Elem())
	case reflect.Struct:
		switch v.Interface().(type) {
		case netip.Addr:
			a := netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), 1})
			if rng.IntN(2) == 0 {
				a = netip.AddrFrom16([16]byte{0xfe, 0x80, 15: byte(rng.IntN(256))}).WithZone("eth0")
			}
			v.Set(reflect.ValueOf(a))
			return
		case netip.Prefix:
			v.Set(reflect.ValueOf(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), 0, 0}), 16)))
			return
		}
		for i := range v.NumField() {
			fill(rng, v.Field(i))
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(rng, s.Index(i))
		}
		v.Set(s)
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", rng.IntN(1000)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(rng.IntN(1<<30)) - 1<<29)
	case reflect.Uint8:
		v.SetUint(uint64(1 + rng.IntN(255)))
	case reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(1 + rng.IntN(1<<16)))
	default:
		panic("fill: " + v.Kind().String())
	}
}

// TestBatchCodecRoundTrip: every field of routes and rules survives the steps file, mirrors
// and explicit undos alike.
func TestBatchCodecRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, kind := range []plan.ChangeKind{plan.KindRoute, plan.KindRule} {
		st := &kernel.Step{Batch: true, First: 7}
		for i := range 50 {
			c := plan.Change{Kind: kind, Op: []plan.Op{plan.OpAdd, plan.OpReplace, plan.OpDelete}[i%3]}
			if kind == plan.KindRoute {
				fill(rng, reflect.ValueOf(&c.Route).Elem())
			} else {
				fill(rng, reflect.ValueOf(&c.Rule).Elem())
			}
			st.Changes = append(st.Changes, c)
			var u []plan.Change
			switch i % 3 {
			case 1:
				u = []plan.Change{}
			case 2:
				x := plan.Change{Kind: kind, Op: plan.OpAdd}
				if kind == plan.KindRoute {
					fill(rng, reflect.ValueOf(&x.Route).Elem())
				} else {
					fill(rng, reflect.ValueOf(&x.Rule).Elem())
				}
				u = []plan.Change{x, x}
			}
			st.Undos = append(st.Undos, u)
		}
		got, err := kernel.DecodeBatchForTest(kernel.EncodeBatchForTest(st))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(st.Changes, got.Changes) || !reflect.DeepEqual(st.Undos, got.Undos) || st.First != got.First || !got.Batch {
			t.Fatalf("%s batch changed on the way:\nwant %+v\ngot  %+v", kind, st.Changes[0], got.Changes[0])
		}
	}
}

// TestStateDirMustBeSafe: a state directory (or a directory above it) that others can write is
// refused, and so are journals that are links or that others can write.
func TestStateDirMustBeSafe(t *testing.T) {
	base := memDir(t)
	os.Chmod(base, 0o700)
	t.Setenv(kernel.StateDirEnv, filepath.Join(base, "state"))
	if _, err := kernel.OpenStore(kernel.Namespace{}); err != nil {
		t.Fatalf("a private state directory: %v", err)
	}
	os.Chmod(base, 0o777) // not sticky: anyone could swap "state" for their own
	if _, err := kernel.OpenStore(kernel.Namespace{}); !errors.Is(err, kernel.ErrUntrustedStateDir) || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("under a world-writable directory: %v", err)
	}
	os.Chmod(base, 0o777|os.ModeSticky) // like /tmp: entries only their owner can replace
	if _, err := kernel.OpenStore(kernel.Namespace{}); err != nil {
		t.Fatalf("under a sticky directory: %v", err)
	}
	os.Chmod(filepath.Join(base, "state"), 0o777)
	if _, err := kernel.OpenStore(kernel.Namespace{}); !errors.Is(err, kernel.ErrUntrustedStateDir) {
		t.Fatalf("a world-writable state directory: %v", err)
	}
	os.Chmod(filepath.Join(base, "state"), 0o755)
	s, err := kernel.OpenStore(kernel.Namespace{})
	if err != nil {
		t.Fatal(err)
	}

	// A journal planted as a link, and one others may write, are not read.
	target := filepath.Join(base, "elsewhere.journal")
	os.WriteFile(target, []byte("roundtrip journal 2\n"), 0o600)
	os.Symlink(target, filepath.Join(s.Dir, "20250101-000000-aaaa.journal"))
	os.WriteFile(filepath.Join(s.Dir, "20250101-000000-bbbb.journal"), []byte("roundtrip journal 2\n"), 0o666)
	os.Chmod(filepath.Join(s.Dir, "20250101-000000-bbbb.journal"), 0o666)
	js, err := s.List()
	if err != nil || len(js) != 2 {
		t.Fatalf("history: %v %v", js, err)
	}
	for _, j := range js {
		if j.Status != kernel.StatusUnreadable || !strings.Contains(j.Problem, "not trusted") {
			t.Errorf("journal %s: %s %q", j.ID, j.Status, j.Problem)
		}
	}
	if os.Geteuid() == 0 {
		// Owned by someone else, even read-only, is not trusted either.
		os.Remove(filepath.Join(s.Dir, "20250101-000000-aaaa.journal"))
		os.Chmod(filepath.Join(s.Dir, "20250101-000000-bbbb.journal"), 0o600)
		os.Chown(filepath.Join(s.Dir, "20250101-000000-bbbb.journal"), 1000, 1000)
		js, _ := s.List()
		if len(js) != 1 || !strings.Contains(js[0].Problem, "owned by uid 1000") {
			t.Errorf("a journal of uid 1000: %v", js)
		}
		os.Chown(filepath.Join(base, "state"), 1000, 1000)
		if _, err := kernel.OpenStore(kernel.Namespace{}); !errors.Is(err, kernel.ErrUntrustedStateDir) || !strings.Contains(err.Error(), "owned by uid 1000") {
			t.Errorf("a state directory of uid 1000: %v", err)
		}
	}
}

// sleeper starts a process that stands for a revert timer, and returns its pid and a function
// that kills it.
func sleeper(t *testing.T) (int, func()) {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	t.Cleanup(kill)
	return cmd.Process.Pid, kill
}

// TestDeadRevertTimer: a pending apply whose timer process died is reported as such; before
// its deadline the next apply refuses and says what to do; after it, the next apply reverts it
// (what its operator was promised) and says so.
func TestDeadRevertTimer(t *testing.T) {
	ctx := context.Background()
	st := fakeState()
	p := plan.New("forwarding")
	p.Changes = []plan.Change{{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: model.SysctlIPForward, Value: "1"}}}
	q := plan.New("rp_filter")
	q.Changes = []plan.Change{{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: model.ConfKey("b0", "rp_filter"), Value: "2"}}}

	for _, window := range []time.Duration{time.Hour, 200 * time.Millisecond} {
		w := newWorld(t, st)
		pid, kill := sleeper(t)
		w.applier.StartTimer = func(*kernel.Store, *kernel.Journal, time.Duration) (int, error) { return pid, nil }
		res, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{Confirm: window})
		if err != nil {
			t.Fatal(err)
		}
		if js, _ := w.store.List(); js[0].TimerDead {
			t.Fatal("a live timer is reported dead")
		}
		kill()
		js, _ := w.store.List()
		if !js[0].TimerDead || !strings.Contains(js[0].String(), "revert timer died") {
			t.Fatalf("a dead timer is not reported: %s", js[0])
		}
		if window == time.Hour {
			_, err := w.applier.Apply(ctx, q, kernel.ApplyOptions{})
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("revert timer (pid %d) has died", pid)) || !strings.Contains(err.Error(), "roundtrip confirm") {
				t.Fatalf("apply over a pending apply with a dead timer: %v", err)
			}
			continue
		}
		time.Sleep(time.Until(res.Journal.ConfirmBy)) // past the deadline nobody kept
		_, err = w.applier.Apply(ctx, q, kernel.ApplyOptions{})
		if err == nil || !strings.Contains(err.Error(), "has been rolled back now") {
			t.Fatalf("apply after the deadline of a dead timer: %v", err)
		}
		sameState(t, "the unconfirmed apply was not reverted", st, w.fake.State())
		if _, err := w.applier.Apply(ctx, q, kernel.ApplyOptions{}); err != nil {
			t.Fatalf("the apply after that: %v", err)
		}
	}
}
