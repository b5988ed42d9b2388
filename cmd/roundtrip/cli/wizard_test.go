package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// wizardState is the command tests' host with the connected routes the kernel adds.
func wizardState() *model.State {
	st := testState()
	for _, l := range st.Links[1:] {
		a := l.Addrs[0].Prefix
		st.Routes = append(st.Routes, model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: a.Masked(), Dev: l.Name, Src: a.Addr(), Scope: "link", Protocol: "kernel"})
	}
	return st
}

func TestWizardUsage(t *testing.T) {
	snap := writeSnapshot(t, wizardState())
	tests := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{[]string{"wizard", "--help"}, ExitOK, "source-return", ""},
		{[]string{"help", "wizard"}, ExitOK, "snat-gateway", ""},
		{[]string{"wizard"}, ExitUsage, "", "name a wizard: source-return, multi-wan, tunnel, snat-gateway, port-forward"},
		{[]string{"wizard", "teleport"}, ExitUsage, "", `unknown wizard "teleport"`},
		{[]string{"wizard", "port-forward", "--help"}, ExitOK, "roundtrip wizard port-forward --listen 192.168.1.34:81 --to 192.168.1.32:80", ""},
		{[]string{"wizard", "tunnel", "--help"}, ExitOK, "--uplink-only", ""},
		{[]string{"wizard", "port-forward", "--snapshot", snap, "--listen", "70000", "--to", "10.1.0.80:80"}, ExitUsage, "", "port 70000 is out of range"},
		{[]string{"wizard", "port-forward", "--snapshot", snap, "--listen", "80"}, ExitUsage, "", "needs --listen [ADDR:]PORT and --to ADDR:PORT"},
		{[]string{"wizard", "port-forward", "--snapshot", snap, "--bogus"}, ExitUsage, "", "flag provided but not defined: -bogus"},
		{[]string{"wizard", "port-forward", "--snapshot", snap, "--apply", "--listen", "80", "--to", "10.1.0.80:80"}, ExitUsage, "", "cannot be combined with --snapshot"},
		{[]string{"wizard", "port-forward", "--snapshot", snap, "--confirm", "2m", "--listen", "80", "--to", "10.1.0.80:80"}, ExitUsage, "", "go with --apply"},
		{[]string{"wizard", "source-return", "--snapshot", snap, "--gateway", "192.0.2.1"}, ExitUsage, "", "--gateway follows an --uplink"},
		// Validation against the host: an unknown interface, a rule in the way.
		{[]string{"wizard", "source-return", "--snapshot", snap, "--uplink", "eth7"}, ExitError, "", `unknown interface "eth7": this host has lo, lan0, wan0`},
		{[]string{"wizard", "source-return", "--snapshot", snap, "--uplink", "wan0", "--gateway", "192.0.2.1"}, ExitError, "", "already routes the packets"},
		{[]string{"wizard", "snat-gateway", "--snapshot", snap, "--in", "lan0", "--out", "wan0", "--peer-out", "/nonexistent/dir/x"}, ExitError, "", "saving the other end's script"},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(out, tt.inStdout) || !strings.Contains(errOut, tt.inStderr) {
			t.Errorf("roundtrip %s: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				strings.Join(tt.args, " "), code, out, errOut, tt.code, tt.inStdout, tt.inStderr)
		}
	}
}

// TestWizardOutputs plans the one-arm forward of the test host offline and checks the three
// outputs: the script, the JSON and the saved plan.
func TestWizardOutputs(t *testing.T) {
	snap := writeSnapshot(t, wizardState())
	args := []string{"wizard", "port-forward", "--snapshot", snap, "--listen", "192.0.2.2:80", "--in", "wan0", "--to", "10.1.0.80:80"}
	code, out, errOut := runCLI(t, args...)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"#!/bin/sh", "# note: the DNAT is already there and stays", "-j SNAT --to-source 10.1.0.1", "hook iptables nat POSTROUTING RT-PF-POST 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("script lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "RT-PF-PRE") {
		t.Errorf("the DNAT made by hand should be kept, not duplicated:\n%s", out)
	}

	code, out, errOut = runCLI(t, append(args, "--json")...)
	var res struct {
		Wizard string     `json:"wizard"`
		Plan   *plan.Plan `json:"plan"`
		Notes  []string   `json:"notes"`
	}
	if code != ExitOK || json.Unmarshal([]byte(out), &res) != nil || res.Wizard != "port-forward" || len(res.Plan.Changes) == 0 || len(res.Notes) == 0 {
		t.Errorf("--json: exit %d, %+v, stderr %s, out %s", code, res, errOut, out)
	}

	file := filepath.Join(t.TempDir(), "pf.json")
	code, _, errOut = runCLI(t, append(args, "-o", file)...)
	if code != ExitOK || !strings.Contains(errOut, "roundtrip apply "+file) {
		t.Fatalf("-o: exit %d, stderr %q", code, errOut)
	}
	p, err := plan.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.Intent, "roundtrip wizard port-forward --listen 192.0.2.2:80 --in wan0") {
		t.Errorf("saved plan's intent is %q", p.Intent)
	}

	peer := filepath.Join(t.TempDir(), "peer.sh")
	code, out, errOut = runCLI(t, "wizard", "snat-gateway", "--snapshot", snap, "--in", "lan0", "--out", "wan0", "--peer-out", peer)
	if code != ExitOK {
		t.Fatalf("snat-gateway: exit %d: %s", code, errOut)
	}
	data, err := os.ReadFile(peer)
	if err != nil || !strings.Contains(string(data), "ip -4 route replace 192.0.2.0/30 via 10.1.0.1") {
		t.Errorf("peer script %q (%v)", data, err)
	}
	if !strings.Contains(out, ": <<'") {
		t.Errorf("the printed script should carry the peer's part in a here-document:\n%s", out)
	}
}

// TestPrivilegedWizardApply runs case 5's fix through the command line, as an operator would:
// the wizard applies its plan in the namespace, the client gets through, and
// `roundtrip rollback` brings the failure back.
func TestPrivilegedWizardApply(t *testing.T) {
	lab.Require(t)
	t.Setenv(kernel.StateDirEnv, t.TempDir())
	c := lab.Case5(t)
	if _, err := c.Client.HTTPGet(c.Service, clientTimeout); err == nil {
		t.Fatal("case 5 works before the wizard")
	}
	code, out, errOut := runCLI(t, "wizard", "port-forward", "--netns", c.A.Name, "--listen", c.Service, "--to", c.Backend, "--apply")
	if code != ExitOK || !strings.Contains(out, "applied") || !strings.Contains(errOut, "note: SNAT to "+c.AAddr) {
		t.Fatalf("wizard --apply: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if body, err := c.Client.HTTPGet(c.Service, clientTimeout); err != nil || body != c.Body {
		t.Errorf("after the wizard: %q, %v", body, err)
	}
	code, out, _ = runCLI(t, "wizard", "port-forward", "--netns", c.A.Name, "--listen", c.Service, "--to", c.Backend)
	if code != ExitOK || !strings.Contains(out, "# Nothing to change.") {
		t.Errorf("re-running the wizard: exit %d\n%s", code, out)
	}
	if code, out, errOut := runCLI(t, "rollback", "--netns", c.A.Name); code != ExitOK {
		t.Fatalf("rollback: exit %d %s %s", code, out, errOut)
	}
	if _, err := c.Client.HTTPGet(c.Service, clientTimeout); err == nil {
		t.Error("case 5 still works after rollback")
	}
}
