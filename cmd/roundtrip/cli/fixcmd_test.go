package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
	"roundtrip/engine/trace"
	"roundtrip/wizards"
)

// These tests hold every fix roundtrip prints to being a command an operator can paste: trace,
// doctor and diagnose print `run: roundtrip wizard NAME FLAGS`, the wizard's own flag parser
// accepts it, and where a value cannot be known the command carries a <PLACEHOLDER> and a
// "missing:" line says what goes there.

// printedFixes returns the commands of the "run:" lines of a text output, continuation lines
// (ending in " \") joined.
func printedFixes(out string) []string {
	var cmds []string
	lines := strings.Split(out, "\n")
	for i := 0; i < len(lines); i++ {
		rest, ok := strings.CutPrefix(strings.TrimSpace(lines[i]), "run: ")
		if !ok {
			continue
		}
		cmd := rest
		for strings.HasSuffix(cmd, ` \`) && i+1 < len(lines) {
			i++
			cmd = strings.TrimSuffix(cmd, `\`) + strings.TrimSpace(lines[i])
		}
		cmds = append(cmds, cmd)
	}
	return cmds
}

// shellWords splits a command line as sh does for the quoting Fix.Command uses: plain words
// and single-quoted parts.
func shellWords(t *testing.T, cmd string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range cmd {
		switch {
		case quoted && r == '\'':
			quoted = false
		case quoted:
			cur.WriteRune(r)
		case r == '\'':
			quoted, inWord = true, true
		case r == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.ContainsRune(`"$\;&|`+"`", r):
			t.Fatalf("command %q has shell syntax the fixes never print: %q", cmd, r)
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("command %q has an unterminated quote", cmd)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// placeholderValues stand in for what a fix could not know, so that the rest of the command
// can be parsed.
var placeholderValues = map[string]string{"<GATEWAY>": "192.0.2.1", "<CIDR>": "192.0.2.0/24", "<IFACE>": "eth0"}

// parseFixCommand parses a printed fix with the wizard's flag parser, as `roundtrip wizard`
// does before it plans: unknown flags, missing required flags and malformed values fail here.
func parseFixCommand(t *testing.T, cmd string) (wizards.Wizard, error) {
	t.Helper()
	words := shellWords(t, cmd)
	if len(words) < 3 || words[0] != "roundtrip" || words[1] != "wizard" {
		return nil, fmt.Errorf("not a wizard command line")
	}
	spec := wizards.SpecFor(words[2])
	if spec == nil {
		return nil, fmt.Errorf("unknown wizard %q", words[2])
	}
	args := words[3:]
	for i, a := range args {
		for ph, v := range placeholderValues {
			a = strings.ReplaceAll(a, ph, v)
		}
		if finding.HasPlaceholder(a) {
			return nil, fmt.Errorf("placeholder without a stand-in in %q", a)
		}
		args[i] = a
	}
	// The wizard command itself parses them, its run replaced by one that builds the options.
	var errb bytes.Buffer
	f := &Factory{Ctx: context.Background(), Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: &errb}
	var w wizards.Wizard
	c := NewCmdWizard(f, func(o *WizardOptions) error {
		if len(o.Args) > 0 {
			return fmt.Errorf("arguments besides flags: %q", o.Args)
		}
		var err error
		w, err = buildWizard(o.Spec, o.Values)
		return err
	})
	if code := run(f, c, c.sub(words[2:]), args); code != ExitOK {
		return nil, errors.New(errb.String())
	}
	return w, nil
}

// checkPrintedFixes checks every fix of a text output and returns how many there were. A
// command with a placeholder must come with a "missing:" line right after it.
func checkPrintedFixes(t *testing.T, what, out string) int {
	t.Helper()
	cmds := printedFixes(out)
	for _, cmd := range cmds {
		if _, err := parseFixCommand(t, cmd); err != nil {
			t.Errorf("%s prints the fix %q, which the wizard's parser rejects: %v\n%s", what, cmd, err, out)
		}
		if strings.Contains(cmd, "<") && !regexp.MustCompile(`(?m)^\s+missing: \S`).MatchString(out) {
			t.Errorf("%s prints %q with a placeholder and no missing: line\n%s", what, cmd, out)
		}
	}
	if strings.Contains(out, "wizard: ") {
		t.Errorf("%s still prints a bare wizard: line\n%s", what, out)
	}
	return len(cmds)
}

// checkJSONFixes checks the findings of a --json output: a fix that names a wizard has its
// flags, and its command parses.
func checkJSONFixes(t *testing.T, what string, fs []finding.Finding) {
	t.Helper()
	for _, f := range fs {
		if f.Fix.Wizard == "" {
			continue
		}
		if len(f.Fix.Args) == 0 {
			t.Errorf("%s: finding %s names the %s wizard without its flags", what, f.ID, f.Fix.Wizard)
		}
		if _, err := parseFixCommand(t, f.Fix.Command()); err != nil {
			t.Errorf("%s: finding %s: fix %q does not parse: %v", what, f.ID, f.Fix.Command(), err)
		}
		if strings.Contains(f.Fix.Command(), "<") != (f.Fix.Missing != "") {
			t.Errorf("%s: finding %s: fix %q with missing %q: a placeholder goes with a missing sentence", what, f.ID, f.Fix.Command(), f.Fix.Missing)
		}
	}
}

func TestParseFixCommandRejectsIncompleteOnes(t *testing.T) {
	for _, c := range []struct{ cmd, want string }{
		{"roundtrip wizard snat-gateway", "needs --out"},
		{"roundtrip wizard snat-gateway --in eth1", "needs --out"},
		{"roundtrip wizard port-forward --listen 80", "needs --listen"},
		{"roundtrip wizard source-return --uplink eth0:300.1.1.1", "300.1.1.1"},
		{"roundtrip wizard multi-wan --wan eth1:<NOPE>", "placeholder"},
		{"roundtrip snat-gateway --in eth1 --out eth0", "not a wizard command"},
	} {
		if _, err := parseFixCommand(t, c.cmd); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parse %q = %v, want an error with %q", c.cmd, err, c.want)
		}
	}
	for _, cmd := range []string{
		"roundtrip wizard snat-gateway --in eth1 --out eth0",
		"roundtrip wizard port-forward --listen 10.0.0.1:81 --in eth0 --to 10.0.0.2:80 --snat auto",
		"roundtrip wizard source-return --uplink 'eth0:192.0.2.1' --mode connmark",
		"roundtrip wizard multi-wan --wan eth1:<GATEWAY> --wan eth2:198.51.100.1",
	} {
		if _, err := parseFixCommand(t, cmd); err != nil {
			t.Errorf("parse %q: %v", cmd, err)
		}
	}
}

// TestDoctorFixWithPlaceholder: an uplink whose gateway no route names (a point-to-point
// default route) gets <GATEWAY> in the multi-wan command, and the output says what is missing.
func TestDoctorFixWithPlaceholder(t *testing.T) {
	s := testState()
	s.Links = append(s.Links, model.Link{Index: 4, Name: "ppp0", Kind: "ppp", Up: true, MTU: 1492,
		Addrs: []model.Address{{Prefix: netip.MustParsePrefix("100.64.9.2/32")}}})
	s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: 200, Type: model.RouteUnicast, Dst: netip.MustParsePrefix("0.0.0.0/0"), Dev: "ppp0"})
	p := writeSnapshot(t, s)
	code, out, errs := runCLI(t, "doctor", "--snapshot", p)
	if code != ExitOK && code != ExitFindings {
		t.Fatalf("doctor: exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "run: roundtrip wizard multi-wan --wan lan0:10.1.0.254 --wan wan0:192.0.2.1 \\\n") ||
		!strings.Contains(out, "--wan ppp0:<GATEWAY>\n") || !strings.Contains(out, "missing: the gateway of ppp0") {
		t.Errorf("doctor output lacks the multi-wan command with ppp0's placeholder:\n%s", out)
	}
	if n := checkPrintedFixes(t, "doctor", out); n == 0 {
		t.Errorf("doctor printed no fix:\n%s", out)
	}
	_, js, _ := runCLI(t, "doctor", "--snapshot", p, "--json")
	var res struct{ Findings []finding.Finding }
	if err := json.Unmarshal([]byte(js), &res); err != nil {
		t.Fatal(err)
	}
	checkJSONFixes(t, "doctor --json", res.Findings)
}

// TestPrivilegedPrintedFixesParse runs trace and doctor, text and JSON, on the field cases'
// hosts and parses every fix they print.
func TestPrivilegedPrintedFixesParse(t *testing.T) {
	c1, c4, c5 := lab.Case1(t), lab.Case4(t), lab.Case5(t)
	runs := [][]string{
		{"trace", "tcp", c1.ClientAddr + ":40000", c1.ServerAddr, "--iif", c1.ServerLAN, "--netns", c1.Server.Name},
		{"doctor", "--netns", c1.Server.Name},
		{"trace", "tcp", c4.AAddr + ":40000", c4.Service, "--iif", c4.BIn, "--netns", c4.B.Name},
		{"trace", "tcp", c5.ClientAddr + ":40000", c5.Service, "--iif", c5.AIface, "--netns", c5.A.Name},
		{"doctor", "--netns", c5.A.Name},
	}
	total := 0
	for _, args := range runs {
		code, out, errs := runCLI(t, args...)
		if code != ExitOK && code != ExitFindings {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		total += checkPrintedFixes(t, strings.Join(args[:1], " "), out)
		_, js, _ := runCLI(t, append(args, "--json")...)
		var res struct{ Findings []finding.Finding }
		if err := json.Unmarshal([]byte(js), &res); err != nil {
			t.Fatalf("%v --json: %v\n%s", args, err, js)
		}
		checkJSONFixes(t, strings.Join(args, " "), res.Findings)
	}
	// Case 1's asymmetric return and uplink, case 4's forwarding, case 5's DNAT twice.
	if total < 5 {
		t.Errorf("%d fixes printed over the field cases, want at least 5", total)
	}
}

// TestPrivilegedDiagnoseFixIsACommandCase4 is the example: with forwarding on, B
// forwards A's request to D, whose reply never comes back (D has no route to A's network).
// diagnose names reply-not-seen with the snat-gateway wizard and all its flags, in the text
// and in the verdict's JSON; the printed command, run as printed, fixes the flow.
func TestPrivilegedDiagnoseFixIsACommandCase4(t *testing.T) {
	c := lab.Case4(t)
	c.EnableForwarding()
	flow := []string{"diagnose", "tcp", c.AAddr, c.Service, "--iif", c.BIn, "--netns", c.B.Name, "--timeout", "5s"}
	done := runCLIAsync(t, flow...)
	if _, err := c.A.Dial(c.Service, c.AAddr+":40201", 1500*time.Millisecond); err == nil {
		t.Fatal("A reaches D before the fix")
	}
	r := <-done
	want := fmt.Sprintf("run: roundtrip wizard snat-gateway --in %s --out %s\n", c.BIn, c.BOut)
	if r.code != ExitFindings || !strings.Contains(r.out, "FINDING reply-not-seen") || !strings.Contains(r.out, want) {
		t.Fatalf("diagnose: exit %d, want reply-not-seen and %q:\n%s\n%s", r.code, want, r.out, r.errs)
	}
	if n := checkPrintedFixes(t, "diagnose", r.out); n == 0 {
		t.Errorf("diagnose printed no fix")
	}

	done = runCLIAsync(t, append(flow, "--json")...)
	if _, err := c.A.Dial(c.Service, c.AAddr+":40202", 1500*time.Millisecond); err == nil {
		t.Fatal("A reaches D before the fix")
	}
	r = <-done
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	var last struct {
		Verdict struct {
			Capture struct {
				Findings []struct {
					finding.Finding
					Ingress string `json:"ingress"`
				} `json:"findings"`
			} `json:"capture"`
		} `json:"verdict"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("last line of diagnose --json: %v\n%s", err, r.out)
	}
	var fix *finding.Fix
	for _, f := range last.Verdict.Capture.Findings {
		checkJSONFixes(t, "diagnose --json verdict", []finding.Finding{f.Finding})
		if f.ID == "reply-not-seen" {
			// The verdict's copy is the whole finding, evidence and fix included.
			if len(f.Evidence) == 0 || f.Ingress != c.BIn {
				t.Errorf("verdict's reply-not-seen lacks its evidence or interfaces: %+v", f)
			}
			fix = &f.Fix
		}
	}
	if fix == nil {
		t.Fatalf("no reply-not-seen in the verdict:\n%s", r.out)
	}

	// The command as printed, on the host it was printed for.
	t.Setenv("ROUNDTRIP_STATE_DIR", t.TempDir())
	args := append(shellWords(t, fix.Command())[1:], "--netns", c.B.Name, "--apply")
	if code, out, errs := runCLI(t, args...); code != ExitOK {
		t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, errs)
	}
	if body, err := c.A.HTTPGet(c.Service, 3*time.Second); err != nil || body != c.Body {
		t.Errorf("after the printed fix A gets %q, %v", body, err)
	}
}

// TestPrivilegedTraceNamesItsAssumption: case 1's firewall DNATs the client to the server
// without SNAT. From the firewall, nothing is wrong, provided the server routes the client
// back through it, which it does not (its reply leaves by em1). trace says "no problems" but
// names that assumption and the diagnose command that checks it; that command, run while the
// client connects, finds the reply missing.
func TestPrivilegedTraceNamesItsAssumption(t *testing.T) {
	c := lab.Case1(t)
	args := []string{"trace", "tcp", c.ClientAddr + ":40000", c.Service, "--iif", "pub", "--netns", c.Firewall.Name}
	code, out, errs := runCLI(t, args...)
	if code != ExitOK || !strings.Contains(out, "No problems found, assuming what follows (1):") ||
		!strings.Contains(out, "INFO assumed-return-route") || !strings.Contains(out, "10.72.1.2 (on lan) routes 198.18.72.10/32 back via this host") {
		t.Fatalf("trace: exit %d\n%s\n%s", code, out, errs)
	}
	code, js, _ := runCLI(t, append(args, "--json")...)
	var res trace.Result
	if err := json.Unmarshal([]byte(js), &res); err != nil || code != ExitOK {
		t.Fatalf("trace --json: exit %d, %v\n%s", code, err, js)
	}
	f := res.Finding(trace.FindingAssumedReturnRoute)
	if f == nil || f.Severity != finding.SeverityInfo || len(res.Findings) != 1 || !strings.Contains(f.Summary, "back via this host (10.72.1.1)") {
		t.Fatalf("trace --json findings %+v, want the assumption alone", res.Findings)
	}
	check := regexp.MustCompile(`roundtrip (diagnose [^,]*),`).FindStringSubmatch(f.Fix.Summary)
	if check == nil || check[1] != "diagnose tcp "+c.ClientAddr+" "+c.Service+" --iif pub" {
		t.Fatalf("the assumption's fix names no diagnose command for the flow: %q", f.Fix.Summary)
	}

	done := runCLIAsync(t, append(strings.Fields(check[1]), "--netns", c.Firewall.Name, "--timeout", "5s")...)
	if _, err := c.Client.Dial(c.Service, c.ClientAddr+":40301", 1500*time.Millisecond); err == nil {
		t.Fatal("the client gets through before the fix")
	}
	r := <-done
	if r.code != ExitFindings || !strings.Contains(r.out, "FINDING reply-not-seen") {
		t.Errorf("the diagnose the assumption names: exit %d, want reply-not-seen\n%s\n%s", r.code, r.out, r.errs)
	}
	checkPrintedFixes(t, "diagnose", r.out)
}

// endsWithNewline fails the test unless the file is not empty and ends with one newline.
func endsWithNewline(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		t.Errorf("%s does not end with a newline: ...%q", path, b[max(0, len(b)-40):])
	}
	return string(b)
}

// TestPrivilegedTunnelReceivingEnd is case 3 planned on both relays: relay 2, the receiving
// end of the uplink-only tunnel, plans its own side without --route and applies it with
// rollback; relay 1 plans the sending side with the route. The client then gets its page.
// Relay 2's plan makes the same changes as the peer script relay 1's run prints for it.
func TestPrivilegedTunnelReceivingEnd(t *testing.T) {
	c := lab.Case3(t)
	t.Setenv("ROUNDTRIP_STATE_DIR", t.TempDir())
	t.Setenv("ROUNDTRIP_IPROUTE2_DIR", t.TempDir())
	dir := t.TempDir()
	recv := []string{"wizard", "tunnel", "--type", "vxlan", "--local", c.Relay2Addr, "--remote", c.Relay1Addr, "--address", "10.73.99.2/30", "--netns", c.Relay2.Name}

	// Without --uplink-only a receiving end is not a thing: the error says where its side
	// comes from.
	code, _, errs := runCLI(t, recv...)
	if code == ExitOK || !strings.Contains(errs, "--route CIDR is required") || !strings.Contains(errs, "--peer-out FILE") || !strings.Contains(errs, "--uplink-only and no --route") {
		t.Errorf("tunnel without --route: exit %d: %s", code, errs)
	}
	recv = append(recv, "--uplink-only")
	// --peer-out has nothing to write, and says why.
	code, _, errs = runCLI(t, append(recv, "--peer-out", filepath.Join(dir, "none.sh"))...)
	if code != ExitUsage || !strings.Contains(errs, "receiving end of an uplink-only tunnel") || !strings.Contains(errs, "--route <CIDR> --uplink-only") {
		t.Errorf("receiving end with --peer-out: exit %d: %s", code, errs)
	}
	code, script, errs := runCLI(t, recv...)
	if code != ExitOK || !strings.Contains(script, "# note: the receiving end of an uplink-only tunnel") || !strings.HasSuffix(script, "\n") {
		t.Fatalf("receiving end: exit %d\n%s\n%s", code, script, errs)
	}
	code, js, errs := runCLI(t, append(recv, "--json")...)
	var recvRes wizards.Result
	if err := json.Unmarshal([]byte(js), &recvRes); code != ExitOK || err != nil {
		t.Fatalf("receiving end --json: exit %d, %v: %s", code, err, errs)
	}

	send := []string{"wizard", "tunnel", "--type", "vxlan", "--local", c.Relay1Addr, "--remote", c.Relay2Addr, "--address", "10.73.99.1/30",
		"--route", c.ServerAddr + "/32", "--uplink-only", "--netns", c.Relay1.Name}
	peerOut, planOut := filepath.Join(dir, "relay2.sh"), filepath.Join(dir, "relay1.json")
	if code, _, errs := runCLI(t, append(send, "-o", planOut, "--peer-out", peerOut)...); code != ExitOK {
		t.Fatalf("sending end: exit %d: %s", code, errs)
	}
	endsWithNewline(t, planOut)
	endsWithNewline(t, peerOut)
	code, js, errs = runCLI(t, append(send, "--json")...)
	var sendRes wizards.Result
	if err := json.Unmarshal([]byte(js), &sendRes); code != ExitOK || err != nil || sendRes.Peer == nil {
		t.Fatalf("sending end --json: exit %d, %v: %s", code, err, errs)
	}
	// The same objects, set the same way, whichever end planned relay 2's side: what relay
	// 2's own plan leaves out is already so on relay 2 (it forwards already).
	st, err := kernel.Read(context.Background(), kernel.Namespace{Name: c.Relay2.Name})
	if err != nil {
		t.Fatal(err)
	}
	key := func(ch plan.Change) string {
		if ch.Kind == plan.KindLink {
			return "link " + ch.ObjectKey() + " " + ch.Link.Kind // the peer script does not know relay 2's underlay device
		}
		return ch.Summary()
	}
	peer := map[string]plan.Change{}
	for _, ch := range sendRes.Peer.Changes {
		peer[key(ch)] = ch
	}
	for _, ch := range recvRes.Plan.Changes {
		if _, ok := peer[key(ch)]; !ok {
			t.Errorf("relay 2's own plan makes %q, which relay 1's peer script does not", key(ch))
		}
		delete(peer, key(ch))
	}
	for k, ch := range peer {
		if ch.Kind != plan.KindSysctl || st.Sysctls[ch.Sysctl.Key] != ch.Sysctl.Value {
			t.Errorf("relay 1's peer script makes %q, which relay 2's own plan leaves out", k)
		}
	}
	if len(recvRes.Plan.Changes) < 3 {
		t.Errorf("relay 2's own plan: %d changes, want the tunnel, its forwarding and its rp_filter", len(recvRes.Plan.Changes))
	}

	// Applied on both ends, the client gets through.
	if code, out, errs := runCLI(t, append(recv, "--apply")...); code != ExitOK {
		t.Fatalf("applying the receiving end: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := runCLI(t, "apply", planOut, "--netns", c.Relay1.Name); code != ExitOK {
		t.Fatalf("applying the sending end: exit %d\n%s\n%s", code, out, errs)
	}
	if body, err := c.Get(3 * time.Second); err != nil || body != c.Body {
		t.Fatalf("the client through the tunnel: %q, %v", body, err)
	}
	// The receiving end rolls back on its own: the client fails again.
	if code, out, errs := runCLI(t, "rollback", "--netns", c.Relay2.Name); code != ExitOK {
		t.Fatalf("rollback on relay 2: exit %d\n%s\n%s", code, out, errs)
	}
	if _, err := c.Get(2 * time.Second); err == nil {
		t.Errorf("the client still gets through after relay 2 rolled back")
	}
}

// TestWrittenScriptsEndWithNewline writes every wizard's plan and peer script (where it has
// one) with -o and --peer-out from a snapshot, and checks each file and the printed script end
// with a newline.
func TestWrittenScriptsEndWithNewline(t *testing.T) {
	// The test host without its source rule, with the connected routes in main.
	s := testState()
	s.Rules = []model.Rule{s.Rules[0], s.Rules[2]}
	s.Routes = append(s.Routes[:1],
		model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: netip.MustParsePrefix("10.1.0.0/24"), Dev: "lan0", Scope: "link", Src: netip.MustParseAddr("10.1.0.1")},
		model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: netip.MustParsePrefix("192.0.2.0/30"), Dev: "wan0", Scope: "link", Src: netip.MustParseAddr("192.0.2.2")})
	s.TableNames = nil
	p := writeSnapshot(t, s)
	dir := t.TempDir()
	for i, args := range [][]string{
		{"snat-gateway", "--in", "lan0", "--out", "wan0"},
		{"tunnel", "--type", "vxlan", "--local", "192.0.2.2", "--remote", "198.51.100.9", "--address", "10.255.0.1/30", "--route", "10.9.0.0/24"},
		{"tunnel", "--type", "vxlan", "--local", "192.0.2.2", "--remote", "198.51.100.9", "--address", "10.255.0.1/30", "--route", "10.9.0.0/24", "--uplink-only"},
		{"tunnel", "--type", "vxlan", "--local", "192.0.2.2", "--remote", "198.51.100.9", "--address", "10.255.0.2/30", "--uplink-only"},
		{"port-forward", "--listen", "192.0.2.2:8080", "--to", "10.1.0.80:80"},
		{"source-return", "--uplink", "wan0:192.0.2.1"},
	} {
		plan, peer := filepath.Join(dir, fmt.Sprintf("plan%d.json", i)), filepath.Join(dir, fmt.Sprintf("peer%d.sh", i))
		full := append([]string{"wizard"}, args...)
		full = append(full, "--snapshot", p, "-o", plan)
		code, out, errs := runCLI(t, append(full, "--peer-out", peer)...)
		if code == ExitUsage && strings.Contains(errs, "--peer-out") {
			code, out, errs = runCLI(t, full...) // no other end
			peer = ""
		}
		if code != ExitOK {
			t.Errorf("%v: exit %d: %s", args, code, errs)
			continue
		}
		if !strings.HasSuffix(out, "\n") {
			t.Errorf("%v: the printed script does not end with a newline", args)
		}
		endsWithNewline(t, plan)
		if peer != "" {
			endsWithNewline(t, peer)
		}
	}
}
