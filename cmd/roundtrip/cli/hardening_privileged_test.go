package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"roundtrip/engine/finding"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
)

// TestPrivilegedOutputsReplacePlantedLinks plants a symbolic link at the output of snapshot,
// capture and diagnose: each output replaces the link with a new 0600 file and never writes
// through it, a capture not even while it runs (it writes beside the target and renames when
// interrupted).
func TestPrivilegedOutputsReplacePlantedLinks(t *testing.T) {
	l := lab.New(t)
	a, b := l.NS("a"), l.NS("b")
	l.Veth(a, "a0", b, "b0")
	a.Addr("a0", "10.97.0.1/24")
	b.Addr("b0", "10.97.0.2/24")
	dir := t.TempDir()

	snap := filepath.Join(dir, "host.json")
	check := plant(t, snap)
	if code, _, errs := runCLI(t, "snapshot", "--netns", a.Name, "-o", snap); code != ExitOK {
		t.Fatalf("snapshot: exit %d: %s", code, errs)
	}
	if _, err := model.ParseSnapshot(check(0o600)); err != nil {
		t.Errorf("the snapshot does not load: %v", err)
	}

	// capture --pcap, interrupted as by Ctrl-C.
	pcap := filepath.Join(dir, "cap.pcapng")
	check = plant(t, pcap)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var out, errb syncBuffer
	go func() {
		done <- Run(ctx, []string{"capture", "--netns", a.Name, "--json", "--pcap", pcap, "tcp", "and", "port", "80"}, strings.NewReader(""), &out, &errb)
	}()
	// The capture writes to its temporary file beside the target from the start; once that is
	// there, it runs.
	waitFor(t, "the capture's temporary file", 20*time.Second, func() bool {
		select {
		case code := <-done:
			t.Fatalf("capture ended early: exit %d: %s", code, errb.String())
		default:
		}
		m, _ := filepath.Glob(filepath.Join(dir, ".cap.pcapng.*.tmp"))
		return len(m) == 1
	})
	srv := a.ServeHTTP("10.97.0.1:80", "hello")
	// The temporary file exists before every ring is attached, so a request made right away
	// may go unseen on a loaded machine: keep asking until six packets are printed. Each
	// packet is written to the file before it is printed.
	waitFor(t, "six packets printed", 30*time.Second, func() bool {
		if strings.Count(out.String(), `"type":"packet"`) >= 6 {
			return true
		}
		if body, err := b.HTTPGet(srv, 5*time.Second); err != nil || body != "hello" {
			t.Fatalf("GET: %q %v", body, err)
		}
		return strings.Count(out.String(), `"type":"packet"`) >= 6
	})
	if fi, err := os.Lstat(pcap); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("during the capture the target changed: %v %v", fi.Mode(), err)
	}
	cancel() // Ctrl-C
	if code := <-done; code != ExitOK {
		t.Fatalf("capture: exit %d: %s", code, errb.String())
	}
	r, err := pcapgo.NewNgReader(bytes.NewReader(check(0o600)), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("the capture is no pcapng file: %v", err)
	}
	n := 0
	for {
		if _, _, err := r.ReadPacketData(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n < 6 {
		t.Errorf("the capture holds %d packets, want the six printed at least", n)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*.tmp")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}

	// diagnose --pcap: the file is finished when the verdict is.
	diag := filepath.Join(dir, "flow.pcapng")
	check = plant(t, diag)
	code, _, errs := runCLI(t, "diagnose", "--netns", a.Name, "--timeout", "1s", "--pcap", diag, "tcp", "10.97.0.2", "10.97.0.1:80")
	if code != ExitOK && code != ExitFindings {
		t.Fatalf("diagnose: exit %d: %s", code, errs)
	}
	if _, err := pcapgo.NewNgReader(bytes.NewReader(check(0o600)), pcapgo.DefaultNgReaderOptions); err != nil {
		t.Errorf("diagnose's capture is no pcapng file: %v", err)
	}
}

// TestPrivilegedApplyWarnsAboutPlansOthersCanChange: whoever can write a plan decides what
// root runs; apply says so when the file is writable by others or belongs to another user.
func TestPrivilegedApplyWarnsAboutPlansOthersCanChange(t *testing.T) {
	l := lab.New(t)
	ns := applyTestHost(t, l, "pw")
	t.Setenv(kernel.StateDirEnv, t.TempDir())
	t.Setenv("SUDO_UID", "")
	plan, _ := testPlanFile(t)
	for _, c := range []struct {
		mode     os.FileMode
		uid, gid int
		sudoUID  string
		want     string // "" for no warning
	}{
		{0o600, 0, 0, "", ""},
		{0o644, 0, 0, "", ""},
		{0o666, 0, 0, "", "every user can write it (mode 0666)"},
		{0o620, 0, 65534, "", "(65534) can write it (mode 0620)"},
		{0o600, 65534, 65534, "", "it belongs to user"},
		// Through sudo, the operator's own file is theirs to trust.
		{0o600, 65534, 65534, "65534", ""},
	} {
		if err := os.Chown(plan, c.uid, c.gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(plan, c.mode); err != nil {
			t.Fatal(err)
		}
		t.Setenv("SUDO_UID", c.sudoUID)
		code, out, errs := runCLI(t, "apply", plan, "--netns", ns.Name, "--dry-run")
		if code != ExitOK || !strings.Contains(out, "would apply") {
			t.Fatalf("dry run: exit %d: %s%s", code, out, errs)
		}
		warned := strings.Contains(errs, "warning: plan "+plan+": ")
		if c.want == "" && warned || c.want != "" && (!warned || !strings.Contains(errs, c.want) || !strings.Contains(errs, "roundtrip plan show "+plan)) {
			t.Errorf("plan mode %04o uid %d gid %d (SUDO_UID %q): stderr %q, want warning %q", c.mode, c.uid, c.gid, c.sudoUID, errs, c.want)
		}
	}
	// plan show and render do not run the plan: no warning.
	if _, _, errs := runCLI(t, "plan", "render", plan); strings.Contains(errs, "warning") {
		t.Errorf("plan render warned: %s", errs)
	}
}

// TestPrivilegedDoctorAsNonRootIsIncomplete runs the real binary as nobody inside a namespace
// with a NAT rule: netfilter cannot be read, so doctor must not say "No problems found." and
// exit 0; it names what it did not read and exits 4. As root it reads everything.
func TestPrivilegedDoctorAsNonRootIsIncomplete(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to run as another user")
	}
	l := lab.New(t)
	gw := l.NS("gw")
	gw.Run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "MASQUERADE")
	// nobody must be able to run the binary: a copy in a directory anyone can enter.
	binDir, err := os.MkdirTemp("", "roundtrip-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(roundtripBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "roundtrip")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func(args ...string) (int, string, string) {
		return runCommand(t, "ip", append([]string{"netns", "exec", gw.Name, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
	}

	code, out, errs := asNobody("doctor")
	if code != ExitIncomplete || strings.Contains(out, "No problems found.") ||
		!strings.Contains(out, "No problems found in what could be read, but the check is incomplete:") ||
		!strings.Contains(out, "not read: netfilter: reading netfilter needs root") {
		t.Errorf("doctor as nobody: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	code, out, _ = asNobody("doctor", "--json")
	var res struct {
		Findings []finding.Finding `json:"findings"`
		NotRead  []string          `json:"not_read"`
	}
	if code != ExitIncomplete || json.Unmarshal([]byte(out), &res) != nil || len(res.NotRead) != 1 || !strings.HasPrefix(res.NotRead[0], "netfilter: ") {
		t.Errorf("doctor --json as nobody: exit %d: %s", code, out)
	}

	// As root the NAT rule is read, and with forwarding off it is a finding the incomplete
	// check could not make.
	if strings.Contains(out, "forwarding-off") {
		t.Errorf("as nobody, doctor reports what it cannot know: %s", out)
	}
	code, out, errs = runCommand(t, "ip", "netns", "exec", gw.Name, bin, "doctor")
	if code != ExitOK || strings.Contains(out, "not read") || !strings.Contains(out, "WARNING forwarding-off") {
		t.Errorf("doctor as root: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}
