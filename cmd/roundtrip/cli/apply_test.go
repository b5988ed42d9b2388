package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
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

// sshClient is the operator's address in these tests: the namespace reaches it by its default
// route, and the test plan moves it to another gateway.
const sshConnection = "198.51.100.7 40000 10.89.0.1 22"

// applyTestHost builds a namespace with a link to a peer and a default route, and points the
// journals at a temporary directory.
func applyTestHost(t *testing.T, l *lab.Lab, name string) *lab.NS {
	t.Helper()
	a, b := l.NS(name), l.NS(name+"p")
	a.NoDAD()
	b.NoDAD()
	l.Veth(a, "a0", b, "b0")
	a.Addr("a0", "10.89.0.1/24")
	b.Addr("b0", "10.89.0.2/24")
	a.IP("route", "add", "default", "via", "10.89.0.2")
	// Tests compare reads of the host before and after: the IPv6 local routes the kernel adds
	// from a work queue must not land between them.
	a.SettleIPv6()
	return a
}

// testPlanFile writes a plan that turns forwarding on, moves the route to the SSH client's
// network to another gateway and adds a policy rule with its table.
func testPlanFile(t *testing.T) (string, *plan.Plan) {
	t.Helper()
	pfx, ip := netip.MustParsePrefix, netip.MustParseAddr
	p := plan.New("cli test: route the operator's network via .3")
	p.Changes = []plan.Change{
		{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: model.SysctlIPForward, Value: "1"}},
		{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4, Dst: pfx("198.51.100.0/24"), Gateway: ip("10.89.0.3")}},
		{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4, Table: 300, Dst: pfx("0.0.0.0/0"), Gateway: ip("10.89.0.2")}},
		{Kind: plan.KindRule, Op: plan.OpAdd, Rule: &model.Rule{Family: inet.V4, Priority: 10010, Src: pfx("10.89.5.0/24"), Table: 300}},
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, p
}

func readNS(t *testing.T, ns *lab.NS) *model.State {
	t.Helper()
	st, err := kernel.Read(context.Background(), kernel.Namespace{Name: ns.Name})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func latestJournal(t *testing.T, ns *lab.NS) *kernel.Journal {
	t.Helper()
	store, err := kernel.OpenStore(kernel.Namespace{Name: ns.Name})
	if err != nil {
		t.Fatal(err)
	}
	js, err := store.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(js) == 0 {
		return nil
	}
	return js[len(js)-1]
}

// TestPrivilegedApplyConfirmRevertsAfterKill runs the real binary with --confirm 2s --wait over
// a (simulated) SSH session, kills it with SIGKILL while it waits, and checks that the detached
// timer still reverts the host to exactly its earlier state.
func TestPrivilegedApplyConfirmRevertsAfterKill(t *testing.T) {
	bin := roundtripBinary(t)
	l := lab.New(t)
	ns := applyTestHost(t, l, "ck")
	stateDir := t.TempDir()
	t.Setenv(kernel.StateDirEnv, stateDir)
	plan, p := testPlanFile(t)
	before := readNS(t, ns)

	cmd := exec.Command(bin, "apply", plan, "--confirm", "2s", "--wait", "--netns", ns.Name)
	cmd.Env = append(os.Environ(), kernel.StateDirEnv+"="+stateDir, "SSH_CONNECTION="+sshConnection)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the apply to be pending confirmation", 15*time.Second, func() bool {
		j := latestJournal(t, ns)
		return j != nil && j.Status == kernel.StatusPending
	})
	if drift := p.Drift(readNS(t, ns)); len(drift) > 0 && latestJournal(t, ns).Status == kernel.StatusPending {
		t.Errorf("pending apply is not in effect: %v", drift)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the apply was not killed while waiting: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "replies to your SSH client 198.51.100.7 would leave via 10.89.0.3") {
		t.Errorf("no lockout warning on stderr:\n%s", stderr.String())
	}

	deadline := time.Now().Add(20 * time.Second)
	for d := model.Diff(before, readNS(t, ns)); d != ""; d = model.Diff(before, readNS(t, ns)) {
		if time.Now().After(deadline) {
			logs, _ := filepath.Glob(filepath.Join(stateDir, "netns", "*", "*.timer.log"))
			var timerLog []byte
			for _, f := range logs {
				b, _ := os.ReadFile(f)
				timerLog = append(timerLog, b...)
			}
			t.Fatalf("the revert timer did not restore the host within 20s:\n%s\ntimer log:\n%s", d, timerLog)
		}
		time.Sleep(100 * time.Millisecond)
	}
	j := latestJournal(t, ns)
	if j.Status != kernel.StatusRolledBack || !strings.Contains(j.Reason, "not confirmed within 2s") {
		t.Errorf("journal after the revert: %s (%s)", j.Status, j.Reason)
	}
}

// TestPrivilegedApplyConfirmKeeps: with roundtrip confirm before the deadline, the changes
// outlive it.
func TestPrivilegedApplyConfirmKeeps(t *testing.T) {
	bin := roundtripBinary(t)
	l := lab.New(t)
	ns := applyTestHost(t, l, "cf")
	stateDir := t.TempDir()
	t.Setenv(kernel.StateDirEnv, stateDir)
	plan, p := testPlanFile(t)
	env := append(os.Environ(), kernel.StateDirEnv+"="+stateDir)

	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("roundtrip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := run("apply", plan, "--confirm", "2s", "--netns", ns.Name)
	if !strings.Contains(out, "unless you run: roundtrip confirm --netns "+ns.Name) {
		t.Errorf("apply does not say how to confirm:\n%s", out)
	}
	out = run("confirm", "--netns", ns.Name)
	if !strings.Contains(out, "the changes stay") {
		t.Errorf("confirm output:\n%s", out)
	}
	j := latestJournal(t, ns)
	if j.Status != kernel.StatusConfirmed {
		t.Fatalf("journal status %s after confirm", j.Status)
	}
	// Past the deadline (and a margin for a timer that would fire late), nothing reverted.
	time.Sleep(time.Until(j.ConfirmBy) + 1500*time.Millisecond)
	if drift := p.Drift(readNS(t, ns)); len(drift) > 0 {
		t.Errorf("a confirmed apply was reverted: %v", drift)
	}
	if j := latestJournal(t, ns); j.Status != kernel.StatusConfirmed {
		t.Errorf("journal status %s after the deadline", j.Status)
	}
}

// TestPrivilegedApplyLockoutGuard: over SSH, a plan that moves the route back to the client is
// refused without --confirm or --force, and changes nothing.
func TestPrivilegedApplyLockoutGuard(t *testing.T) {
	l := lab.New(t)
	ns := applyTestHost(t, l, "lg")
	t.Setenv(kernel.StateDirEnv, t.TempDir())
	t.Setenv("SSH_CONNECTION", sshConnection)
	plan, p := testPlanFile(t)
	before := readNS(t, ns)

	code, _, errs := runCLI(t, "apply", plan, "--netns", ns.Name)
	if code != ExitError || !strings.Contains(errs, "refusing to apply over SSH: replies to your SSH client 198.51.100.7 would leave via 10.89.0.3 dev a0") ||
		!strings.Contains(errs, "--confirm") {
		t.Fatalf("apply over SSH: exit %d, stderr:\n%s", code, errs)
	}
	if d := model.Diff(before, readNS(t, ns)); d != "" {
		t.Fatalf("a refused apply changed the host:\n%s", d)
	}
	code, out, errs := runCLI(t, "apply", plan, "--netns", ns.Name, "--dry-run", "--force")
	if code != ExitOK || !strings.Contains(out, "(4 of 4 changes are not in effect yet)") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errs)
	}
	if d := model.Diff(before, readNS(t, ns)); d != "" {
		t.Fatalf("a dry run changed the host:\n%s", d)
	}
	code, out, errs = runCLI(t, "apply", plan, "--netns", ns.Name, "--force", "--json")
	var res applyJSON
	if code != ExitOK || json.Unmarshal([]byte(out), &res) != nil || res.Steps != 3 || res.Journal == "" {
		t.Fatalf("apply --force: exit %d\n%s%s", code, out, errs)
	}
	if drift := p.Drift(readNS(t, ns)); len(drift) > 0 {
		t.Errorf("not applied: %v", drift)
	}
	// Applying it again is a no-op.
	if code, out, _ = runCLI(t, "apply", plan, "--netns", ns.Name, "--force"); code != ExitOK || !strings.Contains(out, "nothing to do") {
		t.Errorf("re-apply: exit %d: %s", code, out)
	}
	if code, _, errs = runCLI(t, "rollback", "--netns", ns.Name); code != ExitOK {
		t.Fatalf("rollback: exit %d: %s", code, errs)
	}
	if d := model.Diff(before, readNS(t, ns)); d != "" {
		t.Errorf("rollback did not restore the host:\n%s", d)
	}
}

// TestPrivilegedRollbackPerNamespace: journals belong to a namespace, so `ip netns exec X
// roundtrip rollback` rolls back X and leaves Y alone.
func TestPrivilegedRollbackPerNamespace(t *testing.T) {
	bin := roundtripBinary(t)
	l := lab.New(t)
	x, y := applyTestHost(t, l, "nx"), applyTestHost(t, l, "ny")
	stateDir := t.TempDir()
	t.Setenv(kernel.StateDirEnv, stateDir)
	plan, p := testPlanFile(t)
	beforeX := readNS(t, x)
	for _, ns := range []*lab.NS{x, y} {
		if code, _, errs := runCLI(t, "apply", plan, "--netns", ns.Name); code != ExitOK {
			t.Fatalf("apply in %s: %s", ns.Name, errs)
		}
	}
	cmd := exec.Command("ip", "netns", "exec", x.Name, bin, "rollback")
	cmd.Env = append(os.Environ(), kernel.StateDirEnv+"="+stateDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip netns exec %s roundtrip rollback: %v\n%s", x.Name, err, out)
	}
	if d := model.Diff(beforeX, readNS(t, x)); d != "" {
		t.Errorf("%s not rolled back:\n%s", x.Name, d)
	}
	if drift := p.Drift(readNS(t, y)); len(drift) > 0 {
		t.Errorf("rolling back %s touched %s: %v", x.Name, y.Name, drift)
	}
	code, out, _ := runCLI(t, "history", "--netns", y.Name, "--json")
	var hist []historyJSON
	if code != ExitOK || json.Unmarshal([]byte(out), &hist) != nil || len(hist) != 1 || hist[0].Status != kernel.StatusApplied {
		t.Errorf("history of %s: %s", y.Name, out)
	}
	code, out, _ = runCLI(t, "history", "--netns", x.Name)
	if code != ExitOK || !strings.Contains(out, kernel.StatusRolledBack) {
		t.Errorf("history of %s: %s", x.Name, out)
	}
}

func TestPrivilegedApplyRefusesMalformedPlan(t *testing.T) {
	l := lab.New(t)
	ns := applyTestHost(t, l, "mp")
	t.Setenv(kernel.StateDirEnv, t.TempDir())
	before := readNS(t, ns)
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","dev":"nosuch9"}}]}`), 0o644)
	code, _, errs := runCLI(t, "apply", bad, "--netns", ns.Name)
	if code != ExitError || !strings.Contains(errs, "unknown interface nosuch9") {
		t.Errorf("apply of a plan for another host: exit %d: %s", code, errs)
	}
	os.WriteFile(bad, []byte(`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route"`), 0o644)
	code, _, errs = runCLI(t, "apply", bad, "--netns", ns.Name)
	if code != ExitError || !strings.Contains(errs, "bad plan") {
		t.Errorf("apply of a truncated plan: exit %d: %s", code, errs)
	}
	if d := model.Diff(before, readNS(t, ns)); d != "" {
		t.Errorf("a refused plan changed the host:\n%s", d)
	}
}

func TestPlanRender(t *testing.T) {
	plan, p := testPlanFile(t)
	code, out, errs := runCLI(t, "plan", "render", plan, "--format", "script")
	if code != ExitOK || out != string(p.Script()) {
		t.Errorf("plan render --format script: exit %d: %s%s", code, out, errs)
	}
	code, out, _ = runCLI(t, "plan", "render", plan, "--format", "systemd", "--name", "edge", "--script-path", "/etc/roundtrip/edge.sh")
	if code != ExitOK || !strings.Contains(out, "ExecStart=/bin/sh /etc/roundtrip/edge.sh") {
		t.Errorf("plan render --format systemd: %s", out)
	}
	if code, _, _ = runCLI(t, "plan", "render", plan, "--format", "bogus"); code != ExitUsage {
		t.Errorf("unknown format: exit %d", code)
	}
	_, out, _ = runCLI(t, "help")
	if strings.Contains(out, kernel.RevertTimerCommand) || !strings.Contains(out, "rollback") {
		t.Errorf("command list shows the hidden timer or lacks rollback:\n%s", out)
	}
}
