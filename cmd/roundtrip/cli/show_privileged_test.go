package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"roundtrip/engine/lab"
	"roundtrip/engine/model"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// roundtripBinary builds the real binary once per test run, for tests that run it the way an
// operator does (under ip netns exec, in tmux, killed with signals).
func roundtripBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "roundtrip-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "roundtrip")
		cmd := exec.Command("go", "build", "-o", binPath, "roundtrip/cmd/roundtrip")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = err
			binPath = string(out)
		}
	})
	if binErr != nil {
		t.Fatalf("building roundtrip: %v: %s", binErr, binPath)
	}
	return binPath
}

// runCommand runs a program (the binary, under ip netns exec or setpriv) and returns its exit
// status, stdout and stderr; a program that cannot be started fails the test.
func runCommand(t *testing.T, name string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running %s %s: %v", name, strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return code, out.String(), errb.String()
}

// TestPrivilegedShowJSONInNamespace runs the real binary under `ip netns exec` and checks that
// it reports exactly that namespace: its links, addresses, rules, routes and NAT rules, and
// nothing of the host's.
func TestPrivilegedShowJSONInNamespace(t *testing.T) {
	l := lab.New(t)
	gw, isp := l.NS("gw"), l.NS("isp")
	l.Veth(gw, "wan0", isp, "eth0")
	gw.Addr("wan0", "198.18.7.2/30")
	gw.IP("route", "add", "default", "via", "198.18.7.1", "table", "77")
	gw.IP("rule", "add", "priority", "777", "from", "198.18.7.2", "lookup", "77")
	gw.Run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE")
	gw.Sysctl("net.ipv4.ip_forward", "1")

	bin := roundtripBinary(t)
	out := gw.Run(bin, "show", "--json")
	var s model.State
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	if s.Namespace != "" {
		t.Errorf("under ip netns exec the state names namespace %q, want none (it is the current one)", s.Namespace)
	}
	var names []string
	for _, lk := range s.Links {
		names = append(names, lk.Name)
	}
	if strings.Join(names, ",") != "lo,wan0" {
		t.Errorf("links = %v, want exactly lo,wan0 (the namespace's own)", names)
	}
	if lk := s.LinkByName("wan0"); lk == nil || len(lk.Addrs) == 0 || lk.Addrs[0].Prefix.String() != "198.18.7.2/30" {
		t.Errorf("wan0 = %+v", lk)
	}
	if !s.Sysctls.IPForward() {
		t.Errorf("ip_forward not seen")
	}
	lines := strings.Join(s.Lines(), "\n")
	for _, want := range []string{
		"ip -4 rule priority 777 from 198.18.7.2/32 lookup 77",
		"ip -4 route default via 198.18.7.1 dev wan0 table 77",
		"iptables -t nat -A POSTROUTING [1] -o wan0 -j MASQUERADE",
	} {
		if !strings.Contains(lines, want) {
			t.Errorf("state lacks %q:\n%s", want, lines)
		}
	}

	// --netns NAME from outside reads the same namespace and must agree exactly.
	code, out2, errs := runCLI(t, "show", "--json", "--netns", gw.Name)
	if code != ExitOK {
		t.Fatalf("show --netns: exit %d: %s", code, errs)
	}
	var s2 model.State
	if err := json.Unmarshal([]byte(out2), &s2); err != nil {
		t.Fatal(err)
	}
	if d := model.Diff(&s, &s2); d != "" {
		t.Errorf("ip netns exec and --netns disagree:\n%s", d)
	}

	// snapshot -o then show --snapshot offline gives the same human output as live.
	snap := filepath.Join(t.TempDir(), "gw.json")
	gw.Run(bin, "snapshot", "-o", snap)
	live := gw.Run(bin, "show")
	offline, err := exec.Command(bin, "show", "--snapshot", snap).CombinedOutput()
	if err != nil {
		t.Fatalf("show --snapshot: %v: %s", err, offline)
	}
	if string(offline) != live {
		t.Errorf("offline show differs from live:\n--- live\n%s\n--- offline\n%s", live, offline)
	}
}
