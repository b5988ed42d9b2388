package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
)

// tmuxSession is the real binary running in a terminal: a tmux session on a server of its
// own (-L), so that no other tmux session is ever touched.
type tmuxSession struct {
	t      *testing.T
	socket string
	last   string
}

func (s *tmuxSession) tmux(args ...string) (string, error) {
	out, err := exec.Command("tmux", append([]string{"-L", s.socket}, args...)...).CombinedOutput()
	return string(out), err
}

// keys sends key names (Enter, Tab, BSpace) or, with literal, text typed as is.
func (s *tmuxSession) keys(literal bool, keys ...string) {
	s.t.Helper()
	args := []string{"send-keys", "-t", "tui"}
	if literal {
		args = append(args, "-l")
	}
	if out, err := s.tmux(append(args, keys...)...); err != nil {
		s.t.Fatalf("tmux send-keys %q: %v: %s\nlast screen:\n%s", keys, err, out, s.last)
	}
}

func (s *tmuxSession) screen() string {
	out, err := s.tmux("capture-pane", "-p", "-t", "tui")
	if err != nil {
		return "(capture-pane failed: " + err.Error() + ": " + out + ")"
	}
	s.last = out
	return out
}

// waitFor polls the screen until it shows every one of want, and fails with the last screen
// when it does not within the deadline.
func (s *tmuxSession) waitFor(what string, timeout time.Duration, want ...string) string {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		scr := s.screen()
		missing := ""
		for _, w := range want {
			if !strings.Contains(scr, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return scr
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: the screen did not show %q within %s:\n%s", what, missing, timeout, scr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killStrays ends the processes of this test's own binary that outlived it (a revert timer
// left by a failed run), by their ids.
func killStrays(t *testing.T, bin string) {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", d.Name(), "exe")); err == nil && exe == bin {
			t.Logf("ending leftover process %d of %s", pid, bin)
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
}

// TestPrivilegedTUISmoke runs the console as an operator would, in tmux on the web server of
// field case 1: Diagnose names the asymmetric return of the client's flow, the finding opens
// the source-return wizard, the plan is applied with a confirmation window and confirmed with
// one key, and the real client then gets its page.
func TestPrivilegedTUISmoke(t *testing.T) {
	lab.Require(t)
	lab.RequireTool(t, "tmux")
	bin := roundtripBinary(t)
	c := lab.Case1(t)

	// The failure reproduces: the SYN-ACK leaves by em1 and the handshake never completes.
	if body, err := c.Client.HTTPGet(c.Service, 2*time.Second); err == nil {
		t.Fatalf("case 1 works before the fix (got %q): the lab does not reproduce it", body)
	}

	// Journals and routing table names go to directories of the test's, so the apply never
	// writes the host's files.
	stateDir := t.TempDir()
	script := fmt.Sprintf("env %s=%s %s=%s ip netns exec %s %s; echo console exited $?; sleep 60",
		kernel.StateDirEnv, stateDir, kernel.IPRoute2DirEnv, t.TempDir(), c.Server.Name, bin)
	s := &tmuxSession{t: t, socket: fmt.Sprintf("rt-tui-%d", os.Getpid())}
	t.Cleanup(func() {
		s.tmux("kill-server")
		killStrays(t, bin)
	})
	if out, err := s.tmux("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40",
		"sh", "-c", script); err != nil {
		t.Fatalf("starting tmux: %v: %s", err, out)
	}

	// The first frame, then the state of the server's namespace.
	s.waitFor("state read", 20*time.Second, "1 Overview", "eth0", "em1", "10.72.1.2/24")

	// Diagnose: the client's flow as it reaches the server through the firewall's DNAT.
	s.keys(false, "5")
	s.waitFor("diagnose page", 5*time.Second, "Flow to trace")
	s.keys(false, "e")
	s.keys(true, c.ClientAddr)
	s.keys(false, "Tab")
	s.keys(true, c.ServerAddr)
	s.keys(false, "Tab")
	s.keys(true, c.ServerLAN)
	s.keys(false, "Enter")
	s.waitFor("trace", 10*time.Second, "asymmetric-return", "the request comes in on eth0 but the reply leaves by em1",
		"REQUEST", "REPLY", "● in eth0", "✗ out em1 via 192.168.72.253")

	// Watch the flow live while the client tries: the SYN comes in on eth0, the SYN-ACK leaves
	// by em1.
	s.keys(false, "c")
	s.waitFor("capture started", 10*time.Second, "Live capture", "running")
	go c.Client.HTTPGet(c.Service, 3*time.Second)
	s.waitFor("live capture", 15*time.Second, "eth0 in ", "em1 in 0 out ")
	s.keys(false, "c")

	// The finding's fix opens the source-return wizard, filled.
	s.keys(false, "w")
	s.waitFor("wizard", 10*time.Second, "Wizard ‹ source-return ›", "filled from the finding asymmetric-return", "eth0:10.72.1.1", "✓ plan:")

	// Apply with the confirmation window, then keep the changes with one key.
	s.keys(false, "a")
	s.waitFor("apply dialog", 5*time.Second, "Apply", "to this host?", "confirm window", "[1m]")
	s.keys(false, "Enter")
	s.waitFor("applied", 20*time.Second, "✓ applied: journal", "press y to keep")
	s.keys(false, "y")
	s.waitFor("confirmed", 10*time.Second, "the changes stay")

	// The real client now gets its page.
	var body string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if body, err = c.Client.HTTPGet(c.Service, 3*time.Second); err == nil {
			break
		}
	}
	if err != nil || body != c.Body {
		t.Fatalf("after the fix the client gets %q, %v\nscreen:\n%s", body, err, s.screen())
	}
	// Confirmed: the revert timer is gone and nothing waits any more.
	out, err := exec.Command("ip", "netns", "exec", c.Server.Name, "env", kernel.StateDirEnv+"="+stateDir, bin, "history").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "confirmed") {
		t.Fatalf("history after confirm: %v\n%s", err, out)
	}

	// The console read the state again: the uplink's table is there, named. The conntrack
	// page reads the server's table (empty: nothing in the server's namespace asks netfilter
	// to track connections, so the kernel does not).
	s.keys(false, "1")
	s.waitFor("overview after the fix", 10*time.Second, "rt-eth0    default via 10.72.1.1 dev eth0")
	s.keys(false, "4")
	s.waitFor("conntrack", 10*time.Second, " entries  read ")

	s.keys(false, "q")
	s.waitFor("quit", 10*time.Second, "console exited 0")
}
