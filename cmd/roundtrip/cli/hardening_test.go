package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"roundtrip/engine/plan"
)

// TestFlagChecks: every size and number from the command line has a range, a single-value
// flag given twice is refused, a namespace name is a name; each mistake exits 2 with a message
// that names the flag, before anything is read or changed.
func TestFlagChecks(t *testing.T) {
	snap := writeSnapshot(t, wizardState())
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.list")
	if err := os.WriteFile(empty, []byte("# filled in later\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wans := []string{"--wan", "wan0:192.0.2.1:a", "--wan", "lan0:10.1.0.254:b", "--target", "192.0.2.53"}
	pf := []string{"wizard", "port-forward", "--snapshot", snap, "--to", "10.1.0.80:80"}
	tests := []struct {
		args []string
		want string
	}{
		// Sizes of a capture: the ring (the kernel killed processes for memory with 100000),
		// the snap length, the packet count, the duration.
		{[]string{"capture", "--buffer", "100000"}, "--buffer 100000: want MiB from 1 to 1024"},
		{[]string{"capture", "--buffer", "0"}, "--buffer 0: want MiB from 1 to 1024"},
		{[]string{"capture", "--snaplen", "0"}, "--snaplen 0: want bytes from 1 to 262144"},
		{[]string{"capture", "--snaplen", "300000"}, "--snaplen 300000: want bytes from 1 to 262144"},
		{[]string{"capture", "--count", "-1"}, "--count -1: want a number of packets"},
		{[]string{"capture", "--duration", "-5s"}, "--duration -5s: a duration cannot be negative"},
		// Durations of every command.
		{[]string{"apply", "--lock-wait", "-1s", "plan.json"}, "--lock-wait -1s: a duration cannot be negative"},
		{[]string{"confirm", "--lock-wait", "-1s"}, "--lock-wait -1s: a duration cannot be negative"},
		{[]string{"rollback", "--lock-wait", "-1s"}, "--lock-wait -1s: a duration cannot be negative"},
		{append(pf, "--listen", "80", "--lock-wait", "-1s"), "--lock-wait -1s: a duration cannot be negative"},
		{[]string{"diagnose", "tcp", "10.0.0.1", "10.0.0.2:80", "--timeout", "-1s"}, "--timeout -1s: a duration cannot be negative"},
		// watch: zero rounds would silently be the default.
		{append([]string{"watch", "--down-after", "0"}, wans...), "--down-after 0: want failed rounds from 1 to 1000"},
		{append([]string{"watch", "--up-after", "0"}, wans...), "--up-after 0: want good rounds from 1 to 1000"},
		{append([]string{"watch", "--max-loss", "0"}, wans...), "--max-loss 0: want a percentage"},
		{append([]string{"watch", "--max-loss", "NaN"}, wans...), "--max-loss NaN: want a percentage"},
		{append([]string{"watch", "--interval", "0s"}, wans...), "--interval 0s: want at least 10ms"},
		{append([]string{"watch", "--max-rtt", "-1ms"}, wans...), "--max-rtt -1ms: a duration cannot be negative"},
		// Table ids are 32 bits; names must resolve.
		{[]string{"show", "--snapshot", snap, "--table", "99999999999"}, "routing table 99999999999 is out of range"},
		{[]string{"show", "--snapshot", snap, "--table", "nosuch"}, `unknown routing table "nosuch"`},
		{[]string{"show", "--snapshot", snap, "--limit", "-1"}, "--limit -1: want a number of routes"},
		{[]string{"conntrack", "--port", "70000"}, "--port 70000 out of range"},
		{[]string{"wizard", "tunnel", "--snapshot", snap, "--type", "vxlan", "--port", "0"}, "--port 0: want a UDP port from 1 to 65535"},
		{[]string{"wizard", "tunnel", "--snapshot", snap, "--type", "vxlan", "--port", "70000"}, "--port 70000: want a UDP port from 1 to 65535"},
		// A single-value flag given twice: the flag package kept the last one silently.
		{[]string{"trace", "tcp", "10.1.0.5", "192.0.2.9:80", "--snapshot", snap, "--iif", "lan0", "--iif", "wan0"}, `--iif given twice ("lan0", then "wan0"): it takes one value`},
		{append(pf, "--listen", "80", "--listen", "81"), `--listen given twice ("80", then "81")`},
		{[]string{"show", "--snapshot", snap, "--all", "--all"}, "--all given twice"},
		{[]string{"show", "--snapshot", snap, "--snapshot", snap}, "--snapshot given twice"},
		{[]string{"capture", "--pcap", "a", "--pcap", "b"}, "--pcap given twice"},
		// Namespace names are file names in /run/netns.
		{[]string{"show", "--netns", "../../x"}, `--netns "../../x" is not a namespace name`},
		{[]string{"show", "--netns", ".."}, `--netns ".." is not a namespace name`},
		{[]string{"history", "--netns", "a/b"}, `--netns "a/b" is not a namespace name`},
		{[]string{"show", "--netns", "a\x00b"}, "is not a namespace name"},
		{[]string{"show", "--netns", strings.Repeat("n", 256)}, "a namespace name has at most 255 bytes, this one 256"},
		{[]string{"wizard", "port-forward", "--netns", "../x", "--listen", "80", "--to", "10.1.0.80:80"}, `--netns "../x" is not a namespace name`},
		// Destination lists: empty, a device, a pipe.
		{[]string{"wizard", "multi-wan", "--snapshot", snap, "--wan", "wan0:192.0.2.1:a", "--wan", "lan0:10.1.0.254:b", "--route-list", "b=" + empty}, "empty.list has no networks"},
		{[]string{"wizard", "multi-wan", "--snapshot", snap, "--wan", "wan0:192.0.2.1:a", "--wan", "lan0:10.1.0.254:b", "--route-list", "b=/dev/zero"}, "/dev/zero is a character device, not a regular file"},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(t, tt.args...)
		if code != ExitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("roundtrip %q: exit %d, stdout %q, stderr %q; want exit 2 and %q", tt.args, code, out, errOut, tt.want)
		}
	}
	// Repeatable flags stay repeatable.
	code, _, errOut := runCLI(t, "wizard", "source-return", "--snapshot", snap, "--uplink", "wan0:192.0.2.1", "--uplink", "lan0:10.1.0.254")
	if strings.Contains(errOut, "given twice") {
		t.Errorf("--uplink twice: exit %d, %s", code, errOut)
	}
}

// plant puts a symbolic link to a victim file at target, and returns a check that the victim
// is untouched and target is now a regular file with mode.
func plant(t *testing.T, target string) func(mode fs.FileMode) []byte {
	t.Helper()
	vic := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(vic, []byte("root's secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(vic, target); err != nil {
		t.Fatal(err)
	}
	return func(mode fs.FileMode) []byte {
		t.Helper()
		if b, err := os.ReadFile(vic); err != nil || string(b) != "root's secret\n" {
			t.Errorf("the link's target %s was written: %q %v", vic, b, err)
		}
		fi, err := os.Lstat(target)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, want a regular file with mode %v", target, fi.Mode(), mode)
		}
		b, _ := os.ReadFile(target)
		return b
	}
}

// TestWizardOutputsReplacePlantedLinks: -o and --peer-out replace a symbolic link at their
// path with a new file (plan 0600, script 0700) instead of writing through it.
func TestWizardOutputsReplacePlantedLinks(t *testing.T) {
	snap := writeSnapshot(t, wizardState())
	dir := t.TempDir()
	planPath, peerPath := filepath.Join(dir, "plan.json"), filepath.Join(dir, "peer.sh")
	checkPlan, checkPeer := plant(t, planPath), plant(t, peerPath)
	code, _, errOut := runCLI(t, "wizard", "snat-gateway", "--snapshot", snap, "--in", "lan0", "--out", "wan0", "-o", planPath, "--peer-out", peerPath)
	if code != ExitOK {
		t.Fatalf("wizard: exit %d: %s", code, errOut)
	}
	if _, err := plan.Parse(checkPlan(0o600)); err != nil {
		t.Errorf("the saved plan does not load: %v", err)
	}
	if b := checkPeer(0o700); !bytes.HasPrefix(b, []byte("#!/bin/sh")) {
		t.Errorf("the peer script starts %q", b[:min(len(b), 40)])
	}
	if !strings.Contains(errOut, "warning: "+planPath+" was a symbolic link") {
		t.Errorf("no warning about the replaced link: %s", errOut)
	}
}

// TestPlanInputBounds: a plan is read from a regular file or from standard input ("-"), never
// from a device, and never past its size limit.
func TestPlanInputBounds(t *testing.T) {
	code, _, errOut := runCLI(t, "apply", "/dev/zero")
	if code != ExitError || !strings.Contains(errOut, "reading plan: /dev/zero is a character device, not a regular file: give a plan file, or - to read the plan from standard input") {
		t.Errorf("apply /dev/zero: exit %d, %s", code, errOut)
	}
	defer func(old int64) { maxPlanFile = old }(maxPlanFile)
	maxPlanFile = 1 << 20
	var out, errb bytes.Buffer
	code = Run(context.Background(), []string{"apply", "-"}, endless{}, &out, &errb)
	if code != ExitError || !strings.Contains(errb.String(), "reading plan: the plan on standard input: file too large (max 1 MiB)") {
		t.Errorf("apply - with endless input: exit %d, %s", code, errb.String())
	}
	big := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(big, bytes.Repeat([]byte(" "), 1<<20+1), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "plan", "render", big)
	if code != ExitError || !strings.Contains(errOut, big+": file too large (max 1 MiB)") {
		t.Errorf("plan render of a file over the limit: exit %d, %s", code, errOut)
	}

	// A plan on standard input is read as a file would be.
	path, _ := testPlanFile(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	code = Run(context.Background(), []string{"plan", "render", "-", "--format", "json"}, bytes.NewReader(data), &out, &errb)
	var p plan.Plan
	if code != ExitOK || json.Unmarshal(out.Bytes(), &p) != nil || len(p.Changes) != 4 {
		t.Errorf("plan render - : exit %d, %s %s", code, out.String(), errb.String())
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

var _ io.Reader = endless{}
