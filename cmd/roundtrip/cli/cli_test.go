package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
)

// runCLI runs one command line in-process and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func testState() *model.State {
	return &model.State{
		Host: "edge1",
		Links: []model.Link{
			{Index: 1, Name: "lo", Kind: "loopback", Up: true, MTU: 65536},
			{Index: 2, Name: "lan0", Kind: "veth", Up: true, MTU: 1500, Addrs: []model.Address{{Prefix: netip.MustParsePrefix("10.1.0.1/24")}}},
			{Index: 3, Name: "wan0", Kind: "veth", Up: true, MTU: 1500, Addrs: []model.Address{{Prefix: netip.MustParsePrefix("192.0.2.2/30")}}},
		},
		Rules: []model.Rule{
			{Family: inet.V4, Priority: 0, Action: model.ActionTable, Table: model.TableLocal},
			{Family: inet.V4, Priority: 1000, Src: netip.MustParsePrefix("192.0.2.2/32"), Action: model.ActionTable, Table: 100},
			{Family: inet.V4, Priority: 32766, Action: model.ActionTable, Table: model.TableMain},
		},
		Routes: []model.Route{
			{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.1.0.254"), Dev: "lan0"},
			{Family: inet.V4, Table: 100, Type: model.RouteUnicast, Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.1"), Dev: "wan0"},
			{Family: inet.V4, Table: 100, Type: model.RouteUnicast, Dst: netip.MustParsePrefix("192.0.2.0/30"), Dev: "wan0", Scope: "link", Src: netip.MustParseAddr("192.0.2.2")},
		},
		TableNames: map[int]string{100: "uplink"},
		Netfilter: iptables.Ruleset{Tables: []iptables.Table{{Family: inet.V4, Name: "nat", Chains: []iptables.Chain{
			{Name: "PREROUTING", Policy: "ACCEPT", Rules: []iptables.Rule{{Spec: "-i wan0 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.1.0.80", Target: "DNAT"}}},
		}}}},
		Sysctls: model.Sysctls{model.SysctlIPForward: "1", model.ConfKey("all", "rp_filter"): "0", model.ConfKey("wan0", "rp_filter"): "1"},
	}
}

func writeSnapshot(t *testing.T, s *model.State) string {
	t.Helper()
	b, err := model.NewSnapshot(s, time.Unix(1700000000, 0)).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "host.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{[]string{"frobnicate"}, ExitUsage, "", `unknown command "frobnicate"`},
		{[]string{"help"}, ExitOK, "show", ""},
		{[]string{"help", "show"}, ExitOK, "--snapshot FILE", ""},
		{[]string{"show", "--help"}, ExitOK, "usage: roundtrip show", ""},
		{[]string{"show", "extra"}, ExitUsage, "", "show takes no arguments"},
		{[]string{"show", "--bogus"}, ExitUsage, "", "flag provided but not defined: -bogus"},
		{[]string{"show", "--snapshot", "x", "--netns", "y"}, ExitUsage, "", "exclude each other"},
		{[]string{"snapshot", "out.json"}, ExitUsage, "", "did you mean -o out.json"},
		{[]string{"version"}, ExitOK, "roundtrip ", ""},
	}
	for _, tt := range tests {
		code, out, errs := runCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(out, tt.inStdout) || !strings.Contains(errs, tt.inStderr) {
			t.Errorf("roundtrip %v = %d\nstdout: %s\nstderr: %s\nwant code %d, stdout with %q, stderr with %q",
				tt.args, code, out, errs, tt.code, tt.inStdout, tt.inStderr)
		}
	}
}

func TestShowSnapshot(t *testing.T) {
	p := writeSnapshot(t, testState())
	code, out, errs := runCLI(t, "show", "--snapshot", p)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"edge1",
		"ip_forward on",
		"wan0         up         mtu 1500  veth rp_filter=strict",
		"192.0.2.2/30",
		"uplink     via 192.0.2.1 dev wan0",
		"1000   from 192.0.2.2/32 lookup uplink",
		"TABLE uplink: 2 route(s)",
		"192.0.2.0/30 dev wan0 scope link src 192.0.2.2",
		"-i wan0 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.1.0.80",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	for i, line := range strings.Split(out, "\n") {
		if len([]rune(line)) > 80 {
			t.Errorf("line %d is wider than 80 columns: %q", i+1, line)
		}
	}

	// --json prints the state itself: it must load back to the same configuration.
	code, out, errs = runCLI(t, "show", "--json", "--snapshot", p)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got model.State
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("show --json is not a state: %v\n%s", err, out)
	}
	if d := model.Diff(testState(), &got); d != "" {
		t.Errorf("show --json differs from the snapshot:\n%s", d)
	}

	code, out, _ = runCLI(t, "show", "--snapshot", p, "--table", "uplink")
	if code != ExitOK || strings.Contains(out, "INTERFACES") || !strings.Contains(out, "default via 192.0.2.1 dev wan0") {
		t.Errorf("show --table uplink = %d:\n%s", code, out)
	}
	code, _, errs = runCLI(t, "show", "--snapshot", p, "--table", "nosuch")
	if code != ExitUsage || !strings.Contains(errs, `unknown routing table "nosuch"`) {
		t.Errorf("show --table nosuch = %d: %s", code, errs)
	}
}

func TestShowSummarisesHugeTables(t *testing.T) {
	s := testState()
	for i := range 500 {
		s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: 100, Type: model.RouteUnicast,
			Dst: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)}), 32), Gateway: netip.MustParseAddr("192.0.2.1"), Dev: "wan0"})
	}
	p := writeSnapshot(t, s)
	_, out, _ := runCLI(t, "show", "--snapshot", p)
	if !strings.Contains(out, "TABLE uplink: 502 route(s)") || !strings.Contains(out, "... 482 more (roundtrip show --table uplink --all)") {
		t.Errorf("huge table not summarised:\n%s", out)
	}
	_, out, _ = runCLI(t, "show", "--snapshot", p, "--all")
	if strings.Contains(out, "more (roundtrip") || !strings.Contains(out, "10.200.1.243/32 via 192.0.2.1") {
		t.Errorf("--all still summarises")
	}
}

func TestBadSnapshotIsAClearError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.json")
	good, _ := model.NewSnapshot(testState(), time.Unix(0, 0)).Marshal()
	os.WriteFile(p, good[:len(good)/3], 0o600)
	code, _, errs := runCLI(t, "show", "--snapshot", p)
	if code != ExitError || !strings.Contains(errs, "loading snapshot "+p) || !strings.Contains(errs, "truncated") {
		t.Errorf("truncated snapshot: exit %d, %q", code, errs)
	}
	code, _, errs = runCLI(t, "show", "--snapshot", filepath.Join(t.TempDir(), "missing.json"))
	if code != ExitError || !strings.Contains(errs, "no such file") {
		t.Errorf("missing snapshot: exit %d, %q", code, errs)
	}
}
