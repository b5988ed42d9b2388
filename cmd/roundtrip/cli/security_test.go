package cli

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
	"roundtrip/engine/quote"
)

// The exploits of issue 18, each through the command that carried it.

// hostileUplink is a legal interface name that runs a command in an unquoted script: it
// truncates a file called PW in the working directory.
const hostileUplink = "l$(>PW)"

// TestPrivilegedWizardHostileUplinkName: a real interface named l$(>PW), snapshotted and given
// to wizard source-return --uplink on the snapshot; the script it prints, run in the namespace
// from an empty directory, creates no file and sets up the return routing on that interface.
func TestPrivilegedWizardHostileUplinkName(t *testing.T) {
	l := lab.New(t)
	a, isp, lan := l.NS("host"), l.NS("isp"), l.NS("lan")
	a.NoDAD()
	l.Veth(a, "lan0", lan, "c0")
	a.Addr("lan0", "10.1.0.1/24")
	lan.Addr("c0", "10.1.0.254/24")
	a.IP("route", "add", "default", "via", "10.1.0.254")
	// The hostile name cannot go through lab.Veth's ip calls unquoted either: create it with
	// exec's own argument words.
	if out, err := exec.Command("ip", "-n", a.Name, "link", "add", "name", hostileUplink, "type", "veth", "peer", "name", "i0", "netns", isp.Name).CombinedOutput(); err != nil {
		t.Fatalf("creating %s: %v: %s", hostileUplink, err, out)
	}
	a.IP("link", "set", "dev", hostileUplink, "up")
	isp.IP("link", "set", "dev", "i0", "up")
	a.IP("addr", "add", "192.0.2.2/30", "dev", hostileUplink)
	isp.Addr("i0", "192.0.2.1/30")

	snap := filepath.Join(t.TempDir(), "host.json")
	if code, _, errOut := runCLI(t, "snapshot", "--netns", a.Name, "-o", snap); code != ExitOK {
		t.Fatalf("snapshot: %d %s", code, errOut)
	}
	code, script, errOut := runCLI(t, "wizard", "source-return", "--snapshot", snap, "--uplink", hostileUplink+":192.0.2.1")
	if code != ExitOK {
		t.Fatalf("wizard: exit %d: %s", code, errOut)
	}
	for _, line := range strings.Split(script, "\n") {
		if !strings.HasPrefix(line, "#") && strings.Contains(strings.ReplaceAll(line, "'"+hostileUplink+"'", ""), hostileUplink) {
			t.Errorf("the interface is not quoted in %q", line)
		}
	}
	dir := t.TempDir()
	cwd := filepath.Join(dir, "cwd")
	os.Mkdir(cwd, 0o755)
	file := filepath.Join(dir, "plan.sh")
	if err := os.WriteFile(file, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", a.Name, "sh", file)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "ROUNDTRIP_IPROUTE2_DIR="+filepath.Join(dir, "iproute2"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the script fails: %v\n%s\n%s", err, out, script)
	}
	if ents, _ := os.ReadDir(cwd); len(ents) > 0 {
		t.Fatalf("running the script created %q: the interface name ran as a command", ents[0].Name())
	}
	st := readNS(t, a)
	routed := false
	for _, r := range st.Routes {
		routed = routed || r.Table != model.TableMain && r.Table != model.TableLocal && r.Dev == hostileUplink && r.Dst.Bits() == 0
	}
	if !routed {
		t.Errorf("no default route via %s in a table of its own after the script:\n%s", hostileUplink, st)
	}
}

// TestWizardRefusesSnapshotNamespaceWithNewline: a snapshot whose namespace holds a newline
// is refused on load; multi-wan used to put the second line into its script.
func TestWizardRefusesSnapshotNamespaceWithNewline(t *testing.T) {
	st := wizardState()
	st.Namespace = "ns\ntouch /tmp/roundtrip-owned"
	snap := writeSnapshot(t, st)
	code, out, errOut := runCLI(t, "wizard", "multi-wan", "--snapshot", snap, "--wan", "wan0:192.0.2.1:a", "--wan", "lan0:10.1.0.254:b")
	if code != ExitError || !strings.Contains(errOut, "field namespace") || strings.Contains(out, "touch") {
		t.Errorf("exit %d, stdout %q, stderr %q: want a refusal naming the namespace", code, out, errOut)
	}
}

// TestShowEscapesTerminalControls: link names may hold escape sequences (the kernel allows
// them), so show prints them escaped; a snapshot's host name may not, so it is refused.
func TestShowEscapesTerminalControls(t *testing.T) {
	st := testState()
	evil := "w\x1b]0;pwn\x07"
	st.Links[2].Name = evil
	for i := range st.Routes {
		if st.Routes[i].Dev == "wan0" {
			st.Routes[i].Dev = evil
		}
	}
	st.Sysctls[model.ConfKey(evil, "rp_filter")] = "1"
	code, out, errOut := runCLI(t, "show", "--snapshot", writeSnapshot(t, st))
	if code != ExitOK || quote.HasControl(strings.ReplaceAll(out, "\n", "")) || !strings.Contains(out, `w\x1b]0;pwn\x07`) {
		t.Errorf("show: exit %d, stderr %q, output with raw controls or without the escaped name:\n%q", code, errOut, out)
	}

	st = testState()
	st.Host = "edge\x1b[2J"
	code, _, errOut = runCLI(t, "show", "--snapshot", writeSnapshot(t, st))
	if code != ExitError || !strings.Contains(errOut, "field host") || strings.Contains(errOut, "\x1b") {
		t.Errorf("a host name with an escape: exit %d, stderr %q", code, errOut)
	}

	// Printing escapes whatever the state holds (a live host's rt_tables is not validated).
	st = testState()
	st.Host = "edge\x1b[2J"
	st.TableNames[100] = "up\x1b]8;;http://x\x07link"
	st.Netfilter.Tables[0].Chains[0].Rules[0].Spec = "-m comment --comment \"\x1b[31m\" -j ACCEPT"
	var b bytes.Buffer
	renderShow(&b, st, -1, 20)
	if quote.HasControl(strings.ReplaceAll(b.String(), "\n", "")) {
		t.Errorf("show printed control characters:\n%q", b.String())
	}
}

// applyNowhere is `apply` as these tests run it: a dry run in a namespace that does not exist,
// so that even an apply that wrongly accepted the plan could not touch the test machine.
var applyNowhere = []string{"apply", "--dry-run", "--netns", "rt-security-test-none"}

// TestPlanRenderRefusesBreakouts: the nft comment that flushed the ruleset and the systemd
// name or namespace that added an ExecStartPre= line are refused, before anything is printed
// or applied.
func TestPlanRenderRefusesBreakouts(t *testing.T) {
	writePlan := func(p *plan.Plan) string {
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
	nft := plan.New("comment")
	nft.Changes = []plan.Change{{Kind: plan.KindChain, Op: plan.OpSet, Chain: &plan.ChainSpec{Family: inet.V4, Table: "filter", Name: "RT-X",
		Rules: []string{`-m comment --comment "\"; }; }; flush ruleset; table ip evil {" -j ACCEPT`}}}}
	nftFile := writePlan(nft)
	for _, args := range [][]string{{"plan", "render", nftFile, "--format", "nft"}, {"plan", "render", nftFile, "--format", "iptables-restore"}, append(applyNowhere, nftFile)} {
		code, out, errOut := runCLI(t, args...)
		if code != ExitError || !strings.Contains(errOut, "double quote") || strings.Contains(out, "flush ruleset") {
			t.Errorf("roundtrip %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}

	plain := plan.New("boot")
	plain.Changes = []plan.Change{{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: model.SysctlIPForward, Value: "1"}}}
	code, out, errOut := runCLI(t, "plan", "render", writePlan(plain), "--format", "systemd", "--name", "x\nExecStartPre=/bin/touch /tmp/owned")
	if code != ExitError || strings.Contains(out, "ExecStartPre") || !strings.Contains(errOut, "unit name") {
		t.Errorf("systemd --name with a newline: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	plain.Namespace = "ns\nExecStartPre=/bin/touch /tmp/owned"
	code, out, errOut = runCLI(t, "plan", "render", writePlan(plain), "--format", "systemd")
	if code != ExitError || strings.Contains(out, "ExecStartPre") || !strings.Contains(errOut, "field namespace") {
		t.Errorf("a namespace with a newline: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	plain.Namespace = "gw 1"
	code, out, _ = runCLI(t, "plan", "render", writePlan(plain), "--format", "systemd", "--script-path", "/etc/roundtrip/my plan.sh")
	if code != ExitOK || !strings.Contains(out, `ExecStart=/usr/sbin/ip netns exec "gw 1" /bin/sh "/etc/roundtrip/my plan.sh"`) {
		t.Errorf("quoted ExecStart: exit %d:\n%s", code, out)
	}

	// A sysctl that names a file outside /proc/sys/net, and a rule table of 2^40.
	for _, c := range []plan.Change{
		{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: "net.ipv4.//.//..//tmp.x.secret", Value: "1"}},
		{Kind: plan.KindRule, Op: plan.OpAdd, Rule: &model.Rule{Family: inet.V4, Priority: 1000, Src: netip.MustParsePrefix("10.0.0.0/8"), Table: 1 << 40}},
	} {
		p := plan.New("bad")
		p.Changes = []plan.Change{c}
		file := writePlan(p)
		for _, args := range [][]string{append(applyNowhere, file), {"plan", "render", file}} {
			if code, _, errOut := runCLI(t, args...); code != ExitError || !strings.Contains(errOut, "change 1") {
				t.Errorf("roundtrip %s with %s: exit %d, stderr %q", strings.Join(args, " "), c.Summary(), code, errOut)
			}
		}
	}
}

// TestPrivilegedHistoryEscapesTerminalControls: a journal's intent comes from a plan file, and
// history, confirm and rollback print it; what a terminal would act on is escaped.
func TestPrivilegedHistoryEscapesTerminalControls(t *testing.T) {
	ns := lab.New(t).NS("sechist") // journals belong to a namespace; the state directory to root
	t.Setenv(kernel.StateDirEnv, t.TempDir())
	store, err := kernel.OpenStore(kernel.Namespace{Name: ns.Name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(kernel.JournalHead{Intent: "fix\x1b]0;pwn\x07 \x1b[2J"}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "history", "--netns", ns.Name)
	if code != ExitOK || !strings.Contains(out, `fix\x1b]0;pwn\x07`) || quote.HasControl(strings.ReplaceAll(out, "\n", "")) {
		t.Errorf("history: exit %d, stderr %q, output with raw controls or without the escaped intent:\n%q", code, errOut, out)
	}
}
