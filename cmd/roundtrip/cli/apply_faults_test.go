package cli

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// writePlan saves a plan to a file of the test's.
func writePlan(t *testing.T, p *plan.Plan) string {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// forwardingPlan turns forwarding on.
func forwardingPlan(v string) *plan.Plan {
	p := plan.New("forwarding " + v)
	p.Changes = []plan.Change{{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: model.SysctlIPForward, Value: v}}}
	return p
}

func TestConfirmZeroIsRefused(t *testing.T) {
	plan := writePlan(t, forwardingPlan("1"))
	for _, args := range [][]string{
		{"apply", plan, "--confirm", "0s"},
		{"apply", plan, "--confirm", "-2m"},
		{"apply", plan, "--confirm", "10ms"},
		{"wizard", "source-return", "--uplink", "eth0:10.0.0.1", "--apply", "--confirm", "0s"},
	} {
		code, _, errs := runCLI(t, args...)
		if code != ExitUsage || !strings.Contains(errs, "--confirm") && !strings.Contains(errs, "-confirm") {
			t.Errorf("roundtrip %s: exit %d, %s", strings.Join(args, " "), code, errs)
		}
	}
	code, _, errs := runCLI(t, "apply", plan, "--confirm", "0s")
	if !strings.Contains(errs, "leave --confirm out to apply without a timer") {
		t.Errorf("apply --confirm 0s: exit %d, %s", code, errs)
	}
}

// TestPrivilegedApplyInterrupted sends SIGINT to an apply of 400k routes while it sends them:
// it stops, undoes what it did and says so, and the journal says so too.
func TestPrivilegedApplyInterrupted(t *testing.T) {
	bin := roundtripBinary(t)
	l := lab.New(t)
	ns := l.NS("int")
	ns.IP("link", "add", "d0", "type", "veth", "peer", "name", "d1")
	ns.IP("link", "set", "d0", "up")
	ns.IP("link", "set", "d1", "up")
	ns.Addr("d0", "10.77.0.1/24")
	stateDir := t.TempDir()
	t.Setenv(kernel.StateDirEnv, stateDir)
	p := plan.New("400k routes")
	for i := range 400000 {
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(11 + i>>16), byte(i >> 8), byte(i), 0}), 24)
		p.Changes = append(p.Changes, plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd,
			Route: &model.Route{Family: inet.V4, Table: 200, Dst: dst, Gateway: netip.MustParseAddr("10.77.0.2"), Dev: "d0"}})
	}
	plan := writePlan(t, p)
	p = nil

	cmd := exec.Command(bin, "apply", plan, "--netns", ns.Name)
	cmd.Env = append(os.Environ(), kernel.StateDirEnv+"="+stateDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt once the first batch is under way.
	store, err := kernel.OpenStore(kernel.Namespace{Name: ns.Name})
	if err != nil {
		t.Fatal(err)
	}
	for {
		js, _ := store.List()
		if len(js) == 1 {
			j, err := store.Load(js[0].ID)
			if err == nil && len(j.Started) > 0 {
				if j.Status != kernel.StatusApplying {
					t.Fatalf("the apply finished (%s) before it could be interrupted", j.Status)
				}
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if err == nil || !strings.Contains(stderr.String(), "interrupted") || !strings.Contains(stderr.String(), "host is as it was") {
		t.Fatalf("after SIGINT: %v\n%s", err, stderr.String())
	}
	if out, _ := ns.Try("ip", "-4", "route", "show", "table", "200"); strings.TrimSpace(out) != "" && !strings.Contains(out, "does not exist") {
		t.Fatalf("routes left after the interrupted apply: %.200s", out)
	}
	js, err := store.List()
	if err != nil || len(js) != 1 || js[0].Status != kernel.StatusRolledBack || js[0].Reason != "the apply was interrupted" {
		t.Fatalf("journal after the interrupted apply: %v %v", js, err)
	}
}

// openDir returns a new directory that every user may read, under the system's temporary
// directory (a test's own are private).
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "roundtrip-open-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// asNobody runs the binary inside a namespace as an unprivileged user.
func asNobody(t *testing.T, ns *lab.NS, env []string, args ...string) (int, string, string) {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to drop privileges")
	}
	// Somewhere nobody may run it from.
	dir := openDir(t)
	bin := filepath.Join(dir, "roundtrip")
	b, err := os.ReadFile(roundtripBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{"netns", "exec", ns.Name, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
		"env"}, env...)
	return runCommand(t, "ip", append(append(argv, bin), args...)...)
}

// TestPrivilegedChangeCommandsNeedRoot: as an ordinary user, the commands that read or write
// the journals say that they need root, and a dry run says which check needed it.
func TestPrivilegedChangeCommandsNeedRoot(t *testing.T) {
	l := lab.New(t)
	ns := applyTestHost(t, l, "nr")
	stateDir := filepath.Join(openDir(t), "state")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	env := []string{kernel.StateDirEnv + "=" + stateDir}
	for _, args := range [][]string{{"history"}, {"confirm"}, {"rollback"}, {"watch", "--status"}} {
		code, _, errs := asNobody(t, ns, env, args...)
		if code != ExitError || !strings.Contains(errs, "needs root") || !strings.Contains(errs, "run it as root") || strings.Contains(errs, "mkdir") {
			t.Errorf("roundtrip %s as nobody: exit %d: %s", strings.Join(args, " "), code, errs)
		}
	}
	p := plan.New("a chain")
	p.Changes = []plan.Change{{Kind: plan.KindChain, Op: plan.OpSet, Chain: &plan.ChainSpec{Family: inet.V4, Table: "nat", Name: "RT-NR",
		Jumps: []plan.Jump{{Chain: "PREROUTING"}}, Rules: []string{"-p tcp --dport 8080 -j DNAT --to-destination 10.89.0.2:80"}}}}
	plan := filepath.Join(openDir(t), "plan.json")
	b, _ := p.Marshal()
	os.WriteFile(plan, b, 0o644)
	code, _, errs := asNobody(t, ns, env, "apply", plan, "--dry-run")
	if code != ExitError || !strings.Contains(errs, "needs root (permission denied)") || strings.Contains(errs, "the kernel refuses them") {
		t.Errorf("apply --dry-run as nobody: exit %d: %s", code, errs)
	}
}

// TestPrivilegedDeadRevertTimer kills the revert timer of an apply --confirm: history says so,
// the next apply refuses while the window is open and says what to do; after the deadline the
// next apply reverts the changes, as promised; confirm still keeps an apply whose timer died.
func TestPrivilegedDeadRevertTimer(t *testing.T) {
	bin := roundtripBinary(t)
	l := lab.New(t)
	ns := applyTestHost(t, l, "dt")
	stateDir := t.TempDir()
	t.Setenv(kernel.StateDirEnv, stateDir)
	before := readNS(t, ns)
	run := func(args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(bin, append(args, "--netns", ns.Name)...)
		cmd.Env = append(os.Environ(), kernel.StateDirEnv+"="+stateDir)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		code := 0
		if err := cmd.Run(); err != nil {
			code = cmd.ProcessState.ExitCode()
		}
		return code, out.String(), errb.String()
	}
	killTimer := func() *kernel.Journal {
		t.Helper()
		j := latestJournal(t, ns)
		if j == nil || j.Timer == nil || j.Timer.PID == 0 {
			t.Fatalf("no timer in %+v", j)
		}
		syscall.Kill(j.Timer.PID, syscall.SIGKILL)
		waitFor(t, "the timer to die", 10*time.Second, func() bool { return syscall.Kill(j.Timer.PID, 0) != nil || zombie(j.Timer.PID) })
		return j
	}

	// A long window: the next apply refuses, confirm keeps it.
	if code, _, errs := run("apply", writePlan(t, forwardingPlan("1")), "--confirm", "10m"); code != ExitOK {
		t.Fatalf("apply --confirm: %s", errs)
	}
	j := killTimer()
	_, out, _ := run("history")
	if !strings.Contains(out, "its revert timer died") {
		t.Errorf("history does not say the timer died:\n%s", out)
	}
	code, _, errs := run("apply", writePlan(t, forwardingPlan("0")))
	if code != ExitError || !strings.Contains(errs, fmt.Sprintf("revert timer (pid %d) has died", j.Timer.PID)) {
		t.Errorf("apply over it: exit %d: %s", code, errs)
	}
	code, out, errs = run("confirm")
	if code != ExitOK || !strings.Contains(out, "the changes stay") || !strings.Contains(errs, "had died") {
		t.Errorf("confirm: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := run("rollback"); code != ExitOK {
		t.Fatalf("rollback: %s", errs)
	}

	// A short window, missed: the next apply reverts it.
	if code, _, errs := run("apply", writePlan(t, forwardingPlan("1")), "--confirm", "2s"); code != ExitOK {
		t.Fatalf("apply --confirm: %s", errs)
	}
	j = killTimer()
	time.Sleep(time.Until(j.ConfirmBy))
	_, out, _ = run("history")
	if !strings.Contains(out, "was due to revert") {
		t.Errorf("history after the deadline:\n%s", out)
	}
	code, _, errs = run("apply", writePlan(t, forwardingPlan("0")))
	if code != ExitError || !strings.Contains(errs, "has been rolled back now") {
		t.Errorf("apply after the deadline: exit %d: %s", code, errs)
	}
	if d := model.Diff(before, readNS(t, ns)); d != "" {
		t.Errorf("not reverted:\n%s", d)
	}
}

// zombie reports whether a process is a zombie (dead, not yet reaped by its parent).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}
