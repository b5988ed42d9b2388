package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
)

// line returns the first line of the screen that contains s ("" when none does).
func line(screen, s string) string {
	for _, l := range strings.Split(screen, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// startTUI runs script (the console and what follows it) in an 80×24 tmux session on a tmux
// server of the test's own, ended with the test along with anything left of bin.
func startTUI(t *testing.T, name, bin, script string) *tmuxSession {
	s := &tmuxSession{t: t, socket: fmt.Sprintf("%s-%d", name, os.Getpid())}
	t.Cleanup(func() {
		s.tmux("kill-server")
		killStrays(t, bin)
	})
	if out, err := s.tmux("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", "sh", "-c", script); err != nil {
		t.Fatalf("starting tmux: %v: %s", err, out)
	}
	return s
}

// escape sends Escape and waits until gone is off the screen: an escape followed at once by
// another key reads as alt+that key, as in any terminal program.
func (s *tmuxSession) escape(gone string) {
	s.t.Helper()
	s.keys(false, "Escape")
	for deadline := time.Now().Add(5 * time.Second); strings.Contains(s.screen(), gone); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			s.t.Fatalf("escape did not close %q:\n%s", gone, s.last)
		}
	}
}

// selectRow moves a list's cursor from its first row down until the selected row (marked ▸)
// holds want.
func (s *tmuxSession) selectRow(want string) {
	s.t.Helper()
	s.keys(false, "Home")
	time.Sleep(200 * time.Millisecond) // the frame after the key, not the one before
	for range 40 {
		scr := s.screen()
		for _, l := range strings.Split(scr, "\n") {
			if strings.HasPrefix(l, "▸ ") && strings.Contains(l, want) {
				return
			}
		}
		s.keys(false, "Down")
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("no row holding %q could be selected:\n%s", want, s.last)
}

// escapeText is an escape sequence printed as text: what a terminal shows when a style is
// applied over a styled string and splits its sequences.
var escapeText = regexp.MustCompile(`\[[0-9;]*m`)

// TestPrivilegedTUIOperatorDay runs the real console at 80×24 in tmux on case 1's server, the
// way the operator of issue 15 used it, and checks each thing that got in the way there:
// escape codes in focused fields, substring route search and the selection kept on its item,
// live capture with a client port and its clock, findings grouped per problem, save and copy
// of the plan, the automatic rollback shown on every page, the positive verdict once the flow
// works, the NAT rules' live counters and detail view, conntrack's state and detail, a
// finding whose fix names no flags, uplink suggestions without lo, and the help at a small
// size.
func TestPrivilegedTUIOperatorDay(t *testing.T) {
	lab.Require(t)
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("privileged TUI test: needs tmux (apt-get install tmux)")
	}
	bin := roundtripBinary(t)
	c := lab.Case1(t)
	stateDir, saveDir := t.TempDir(), t.TempDir()
	script := fmt.Sprintf("cd %s && env %s=%s %s=%s ip netns exec %s %s; echo console exited $?; sleep 60",
		saveDir, kernel.StateDirEnv, stateDir, kernel.IPRoute2DirEnv, t.TempDir(), c.Server.Name, bin)
	s := startTUI(t, "rt-day", bin, script)
	// OSC 52 from the console lands in tmux's paste buffers.
	if out, err := s.tmux("set-option", "-s", "set-clipboard", "on"); err != nil {
		t.Fatalf("tmux set-clipboard: %v: %s", err, out)
	}
	s.waitFor("state read", 20*time.Second, "1 Overview", "eth0", "em1", "10.72.1.2/24")

	// Routing: a piece of an address finds every route whose text holds it, and the focused
	// filter shows the text typed, not its cursor's escape codes.
	s.keys(false, "2")
	s.waitFor("routing", 5*time.Second, "Table ‹ main ›")
	s.keys(false, "/")
	s.keys(true, "72.1")
	// (the main table also holds IPv6 routes: the count of all differs by kernel)
	scr := s.waitFor("route search", 5*time.Second, "2 of ", " routes match")
	if l := line(scr, "Filter"); !strings.Contains(l, "Filter 72.1") || escapeText.MatchString(l) {
		t.Fatalf("the focused filter shows %q", l)
	}
	s.escape("Filter 72.1")
	// The selection stays on its route when a route is added above it.
	s.selectRow("198.18.72.0/24")
	c.Server.IP("route", "add", "10.0.0.0/8", "via", "10.72.1.1")
	s.keys(false, "r")
	s.waitFor("reread", 10*time.Second, "10.0.0.0/8", "▸ 198.18.72.0/24")
	// Enter shows the route whole.
	s.keys(false, "Enter")
	s.waitFor("route detail", 5*time.Second, "Route in table main", "ip -4 route add 198.18.72.0/24 via 192.168.72.253 dev em1")
	s.escape("Route in table main")

	// Diagnose, with the client port the placeholder suggests: the capture still sees the
	// client's connections, whose ports differ, and its clock runs before any packet.
	s.keys(false, "5")
	s.waitFor("diagnose page", 5*time.Second, "Flow to trace")
	s.keys(false, "e")
	s.keys(true, c.ClientAddr+":40000")
	s.keys(false, "Tab")
	s.keys(true, c.ServerAddr)
	s.keys(false, "Tab")
	s.keys(true, c.ServerLAN)
	s.keys(false, "Enter")
	s.waitFor("trace", 10*time.Second, "asymmetric-return", "w opens the source-return wizard: --uplink eth0:10.72.1.1")
	s.keys(false, "c")
	s.waitFor("capture clock", 10*time.Second, "running 2s", "no packets of the flow yet")
	for range 2 {
		if _, err := c.Client.HTTPGet(c.Service, 2*time.Second); err == nil {
			t.Fatal("case 1 works before the fix: the lab does not reproduce it")
		}
	}
	// Two connections, one problem: one row with the count.
	scr = s.waitFor("live capture", 20*time.Second, "eth0 in ", "em1 in 0 out ", "asymmetric-return ×2")
	if n := strings.Count(scr, "▸ ✗ asymmetric-return") + strings.Count(scr, "  ✗ asymmetric-return "); n != 1 {
		t.Fatalf("the problem is listed %d times:\n%s", n, scr)
	}
	s.keys(false, "c")

	// The fix: the wizard filled from the finding; the plan saved as a script, the command
	// copied.
	s.keys(false, "w")
	s.waitFor("wizard", 10*time.Second, "Wizard ‹ source-return ›", "filled from the finding asymmetric-return", "✓ plan: 4 change(s)")
	s.keys(false, "s")
	s.waitFor("save prompt", 5*time.Second, "Save to", "roundtrip-source-return.sh")
	s.keys(false, "Enter")
	s.waitFor("saved", 5*time.Second, "saved", filepath.Join(saveDir, "roundtrip-source-return.sh"))
	saved, err := os.ReadFile(filepath.Join(saveDir, "roundtrip-source-return.sh"))
	if err != nil || !strings.Contains(string(saved), "ip -4 rule add priority 10000 from 10.72.1.2/32 lookup") {
		t.Fatalf("the saved script: %v\n%s", err, saved)
	}
	s.keys(false, "c")
	s.waitFor("copy box", 5*time.Second, "Copy the command", "roundtrip wizard source-return --uplink eth0:10.72.1.1 --mode from")
	var buf string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if buf, _ = s.tmux("show-buffer"); strings.Contains(buf, "roundtrip wizard source-return") {
			break
		}
	}
	if buf != "roundtrip wizard source-return --uplink eth0:10.72.1.1 --mode from" {
		t.Fatalf("tmux's clipboard holds %q", buf)
	}
	s.escape("Copy the command")

	// Applied with the shortest window and not confirmed: the revert timer rolls it back, and
	// the console says so on its own, on the Wizards page and in the status bar.
	s.keys(false, "a")
	s.waitFor("apply dialog", 5*time.Second, "confirm window", "[1m]")
	s.keys(false, "Left", "Enter")
	s.waitFor("applied", 20*time.Second, "✓ applied: journal", "press y to keep")
	scr = s.waitFor("automatic rollback", 90*time.Second, "↺ rolled back (not confirmed within 30s)", "was rolled back")
	for _, gone := range []string{"✓ applied", "being rolled back", "press y"} {
		if strings.Contains(scr, gone) {
			t.Fatalf("after the automatic rollback the screen still says %q:\n%s", gone, scr)
		}
	}
	s.keys(false, "1")
	if scr := s.waitFor("overview after the rollback", 5*time.Second, "Findings"); strings.Contains(scr, "revert in") {
		t.Fatalf("the Overview still counts down:\n%s", scr)
	}

	// Applied again and kept: the capture's verdict says the flow works.
	s.keys(false, "6", "a")
	s.waitFor("apply dialog", 5*time.Second, "[30s]") // the window chosen last time
	s.keys(false, "Right")
	s.waitFor("a minute", 5*time.Second, "[1m]")
	s.keys(false, "Enter")
	s.waitFor("applied", 20*time.Second, "press y to keep")
	s.keys(false, "y")
	s.waitFor("confirmed", 10*time.Second, "the changes stay", "✓ applied and confirmed")
	s.keys(false, "5")
	s.waitFor("traced again", 10*time.Second, "✓ the flow should make the round trip")
	s.keys(false, "c")
	s.waitFor("capture", 10*time.Second, "running 0s")
	if body, err := c.Client.HTTPGet(c.Service, 3*time.Second); err != nil || body != c.Body {
		t.Fatalf("after the fix the client gets %q, %v", body, err)
	}
	s.waitFor("verdict", 15*time.Second, "✓ round trip OK: 1 handshake completed")
	s.keys(false, "c")

	// NAT: a rule added by hand shows without r, its counters follow the kernel's, and enter
	// shows it whole; a DNAT target past the edge at 80 columns is read there.
	s.keys(false, "3")
	s.waitFor("nat page", 5*time.Second, "iptables -t nat")
	c.Server.Run("iptables", "-w", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "203.0.113.80", "--dport", "8080",
		"-j", "DNAT", "--to-destination", "10.72.1.2:80")
	c.Server.Run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "em1", "-j", "MASQUERADE")
	s.waitFor("rule without r", 15*time.Second, "-A OUTPUT -d 203.0.113.80/32")
	c.Server.Dial("203.0.113.80:8080", "", 2*time.Second)
	s.waitFor("live counters", 15*time.Second, "other     1 ")
	s.selectRow("-A OUTPUT -d 203.0.113.80/32")
	s.keys(false, "Enter")
	s.waitFor("rule detail", 5*time.Second, "Rule of iptables -t nat, chain OUTPUT", "--to-destination 10.72.1.2:80")
	s.escape("Rule of iptables")

	// Conntrack: now that netfilter tracks connections here, the list shows their state, and
	// enter shows the destination the list cuts.
	c.Server.Dial("203.0.113.80:8080", "", 2*time.Second)
	s.keys(false, "4")
	s.waitFor("conntrack", 15*time.Second, "STATE", "→ 203.0", "DNAT")
	s.keys(false, "/")
	s.keys(true, "203.0.113.80")
	s.keys(false, "Enter")
	s.waitFor("conntrack filtered", 5*time.Second, "match")
	s.keys(false, "Enter")
	s.waitFor("conntrack detail", 5*time.Second, "Connection tcp", "203.0.113.80:8080 is answered by 10.72.1.2:80")
	s.escape("Connection tcp")
	s.escape("Filter 203.0.113.80")

	// Overview: the doctor's forwarding-off (NAT rules, forwarding off): its evidence reads
	// whole, no line ends in a colon with nothing after it, and its fix, which is commands and
	// no wizard, says so when w is pressed.
	s.keys(false, "r", "1")
	s.waitFor("forwarding-off", 15*time.Second, "IPv4 forwarding is off")
	s.selectRow("forwarding is off")
	s.keys(false, "Enter")
	scr = s.waitFor("evidence", 5*time.Second, "id: forwarding-off", "fix: turn IPv4 forwarding on")
	for _, l := range strings.Split(scr, "\n") {
		if strings.HasSuffix(strings.TrimRight(l, " "), ":") {
			t.Fatalf("a line ends in a colon with nothing after it: %q\n%s", l, scr)
		}
	}
	s.keys(false, "w")
	s.waitFor("no wizard", 5*time.Second, "this finding has no wizard")
	s.keys(false, "Enter", "6")
	// The wizard shown is still the one the Diagnose finding opened.
	s.waitFor("wizards page", 5*time.Second, "Wizard ‹ source-return ›")

	// The source-return form offers the uplinks with their gateways; lo is never one.
	s.keys(false, "e")
	scr = s.waitFor("uplink offers", 5*time.Second, "Wizard ‹ source-return ›", "here: ", "em1:192.168.72.253 (gateway", "eth0:10.72.1.1 (gateway")
	if strings.Contains(scr, " lo (") || strings.Contains(scr, " lo:") {
		t.Fatalf("lo is offered:\n%s", scr)
	}
	s.escape("here: ")

	// The help at a small size: it scrolls in the page's area, says that there is more, and
	// the frame keeps its size.
	if out, err := s.tmux("resize-window", "-t", "tui", "-x", "60", "-y", "14"); err != nil {
		t.Fatalf("resizing: %v: %s", err, out)
	}
	s.keys(false, "?")
	scr = s.waitFor("small help", 5*time.Second, "Keys of Wizards", "more (pgdn)")
	if n := len(strings.Split(strings.TrimRight(scr, "\n"), "\n")); n > 14 {
		t.Fatalf("the frame has %d lines on a 14-line terminal:\n%s", n, scr)
	}
	s.keys(false, "NPage", "NPage", "NPage", "NPage", "NPage")
	s.waitFor("end of help", 5*time.Second, "q         quit")
	s.escape("Keys of Wizards")
	s.keys(false, "q")
	s.waitFor("quit", 10*time.Second, "console exited 0")
}

// TestPrivilegedTUINoColorFields types into a focused field of the real console under
// NO_COLOR (bold, reverse and underline only): the terminal must show the text and the cursor,
// not the cursor's escape sequence as text.
func TestPrivilegedTUINoColorFields(t *testing.T) {
	lab.Require(t)
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("privileged TUI test: needs tmux (apt-get install tmux)")
	}
	bin := roundtripBinary(t)
	ns := lab.New(t).NS("nocolor")
	script := fmt.Sprintf("env NO_COLOR=1 %s=%s ip netns exec %s %s; echo console exited $?; sleep 60",
		kernel.StateDirEnv, t.TempDir(), ns.Name, bin)
	s := startTUI(t, "rt-nocolor", bin, script)
	s.waitFor("state read", 20*time.Second, "1 Overview", "127.0.0.1/8")
	s.keys(false, "2", "/")
	s.keys(true, "127.0")
	scr := s.waitFor("filter", 5*time.Second, "Filter 127.0")
	if l := line(scr, "Filter"); escapeText.MatchString(l) {
		t.Fatalf("the focused filter shows %q", l)
	}
	// The Diagnose form too.
	s.escape("Filter 127.0")
	s.keys(false, "5", "e")
	s.keys(true, "10.1.2.3")
	scr = s.waitFor("source field", 5*time.Second, "Source      10.1.2.3")
	if l := line(scr, "Source"); escapeText.MatchString(l) {
		t.Fatalf("the focused source field shows %q", l)
	}
	s.escape("▸ Source")
	s.keys(false, "q")
	s.waitFor("quit", 10*time.Second, "console exited 0")
}
