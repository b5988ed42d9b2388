package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"roundtrip/engine/model"
	"roundtrip/engine/model/modeltest"
)

// scaleSnapshot writes the snapshot of a router with n routes (modeltest.ScaleHost).
func scaleSnapshot(t *testing.T, n int) string {
	t.Helper()
	b, err := model.NewSnapshot(modeltest.ScaleHost(t, n), time.Now()).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInterruptStopsReadOnlyCommands starts the real binary on a snapshot of 300k routes and
// sends SIGINT (and SIGTERM) while it works: it ends without its result, says it was
// interrupted, and exits with ExitInterrupted. The deadline only guards against a hang.
func TestInterruptStopsReadOnlyCommands(t *testing.T) {
	bin := roundtripBinary(t)
	snap := scaleSnapshot(t, 300_000)
	for _, c := range []struct {
		args []string
		sig  syscall.Signal
	}{
		{[]string{"doctor", "--snapshot", snap}, syscall.SIGINT},
		{[]string{"doctor", "--snapshot", snap, "--json"}, syscall.SIGTERM},
		{[]string{"show", "--snapshot", snap, "--all"}, syscall.SIGINT},
		{[]string{"trace", "tcp", "10.0.0.5:40000", "11.0.0.1:80", "--iif", "lan", "--snapshot", snap}, syscall.SIGINT},
	} {
		t.Run(c.args[0]+"-"+c.sig.String(), func(t *testing.T) {
			cmd := exec.Command(bin, c.args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			// Once the snapshot is open, Main has set up its signal handling (it does so
			// before it runs a command), and reading 300k routes takes far longer than this
			// poll. A fixed sleep lost that race on a loaded machine: the signal came first.
			waitOpen(t, cmd.Process.Pid, snap)
			if err := cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("roundtrip %s still running 10 s after %s", c.args[0], c.sig)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != ExitInterrupted {
				t.Fatalf("after %s: %v, want exit status %d\nstderr: %s", c.sig, err, ExitInterrupted, stderr.String())
			}
			if want := "roundtrip " + c.args[0] + ": interrupted\n"; stderr.String() != want {
				t.Errorf("stderr %q, want %q", stderr.String(), want)
			}
			if stdout.Len() > 0 && c.args[0] != "show" {
				t.Errorf("an interrupted %s printed its result: %.300s", c.args[0], stdout.String())
			}
		})
	}
}

// TestInterruptedInProcess: a doctor whose context is cancelled (as Main's is by a signal)
// stops with ExitInterrupted and one "interrupted" line, and prints no findings.
func TestInterruptedInProcess(t *testing.T) {
	snap := scaleSnapshot(t, 20_000)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	if code := Run(ctx, []string{"doctor", "--snapshot", snap}, strings.NewReader(""), &stdout, &stderr); code != ExitInterrupted {
		t.Fatalf("exit %d, want %d; stderr %s", code, ExitInterrupted, stderr.String())
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "roundtrip doctor: interrupted") {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
}

// TestProgressOnlyOnATerminal: doctor of 20k routes reports progress, but with stderr not a
// terminal nothing of it is printed; the bar itself draws counts and erases itself.
func TestProgressOnlyOnATerminal(t *testing.T) {
	snap := scaleSnapshot(t, 20_000)
	var stdout, stderr bytes.Buffer
	Run(context.Background(), []string{"doctor", "--snapshot", snap}, strings.NewReader(""), &stdout, &stderr)
	if stderr.Len() != 0 || !strings.Contains(stdout.String(), "gateway") {
		t.Fatalf("doctor with stderr not a terminal: stderr %q, stdout %.200q", stderr.String(), stdout.String())
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if p := newProgress(&Invocation{Factory: &Factory{Stderr: f}}, "doctor"); p != nil {
		t.Fatalf("a bar for a plain file")
	}
	var b bytes.Buffer
	p := &progressBar{w: &b, what: "doctor"}
	p.Update(12_345, 50_000)
	p.Done()
	if got := b.String(); !strings.Contains(got, "doctor ███████░") || !strings.Contains(got, " 25% 12k/50k") || !strings.HasSuffix(got, "\r\x1b[K") {
		t.Fatalf("bar %q", got)
	}
}

// waitOpen waits until process pid has path open (a link in /proc/PID/fd names it).
func waitOpen(t *testing.T, pid int, path string) {
	t.Helper()
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		ents, _ := os.ReadDir(fds)
		for _, e := range ents {
			if l, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && l == path {
				return
			}
		}
	}
	t.Fatalf("process %d did not open %s within 10 s", pid, path)
}
