package wizards

import (
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
	"roundtrip/engine/trace"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// checkGolden compares got with testdata/NAME.golden (rewriting it with -update).
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test ./wizards -update to create it): %v", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs from the golden file (-want +got; run go test ./wizards -update if the change is right):\n%s", path, d)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

// seedCase is one wizard run on the host of a field case.
type seedCase struct {
	name  string
	state func(testing.TB) *model.State
	w     func() Wizard
}

func seedCases() []seedCase {
	return []seedCase{
		{"source-return-from", case1Host, func() Wizard {
			return &SourceReturnOptions{Uplinks: []Uplink{{Iface: "lan0"}, {Iface: "em1"}}}
		}},
		{"source-return-connmark", case1Host, func() Wizard {
			return &SourceReturnOptions{Uplinks: []Uplink{{Iface: "lan0", Gateway: mustAddr("10.73.1.1")}, {Iface: "em1"}}, Mode: ModeConnmark}
		}},
		{"multi-wan", case2Host, func() Wizard {
			return &MultiWANOptions{
				WANs:       []WAN{{Iface: "wan1", Gateway: mustAddr("198.18.73.5"), Name: "isp_a"}, {Iface: "wan2", Gateway: mustAddr("198.18.73.9"), Name: "isp_b"}},
				LANs:       []string{"lan0"},
				Default:    "isp_a",
				RouteLists: []RouteList{{WAN: "isp_b", File: "testdata/ispb.list"}},
				SNAT:       true, Connmark: true,
			}
		}},
		{"port-forward-hairpin", case2Host, func() Wizard {
			return &PortForwardOptions{ListenAddr: mustAddr("198.18.73.10"), ListenPort: 80, In: "wan2",
				To: netip.MustParseAddrPort("10.73.20.100:80"), Hairpin: true}
		}},
		{"tunnel-vxlan-uplink-only", case3Host, func() Wizard {
			return &TunnelOptions{Type: "vxlan", Local: mustAddr("10.73.31.1"), Remote: mustAddr("10.73.31.2"),
				Address: mustPrefix("10.73.99.1/30"), Routes: []netip.Prefix{mustPrefix("198.18.76.20/32")}, UplinkOnly: true}
		}},
		{"tunnel-ipip", case3Host, func() Wizard {
			return &TunnelOptions{Type: "ipip", Local: mustAddr("10.73.31.1"), Remote: mustAddr("10.73.31.2"),
				Address: mustPrefix("10.73.99.1/30"), Routes: []netip.Prefix{mustPrefix("198.18.76.0/24")}}
		}},
		{"snat-gateway", case4Host, func() Wizard {
			return &SNATGatewayOptions{From: []netip.Prefix{mustPrefix("10.73.43.0/24")}, To: []netip.Prefix{mustPrefix("10.73.44.0/24")}, Out: "b0"}
		}},
		{"port-forward", case5Host, func() Wizard {
			return &PortForwardOptions{ListenAddr: mustAddr("10.73.5.34"), ListenPort: 81, To: netip.MustParseAddrPort("10.73.5.32:80")}
		}},
	}
}

// TestGolden pins each wizard's script for its field case.
func TestGolden(t *testing.T) {
	for _, c := range seedCases() {
		t.Run(c.name, func(t *testing.T) {
			res, err := c.w().Plan(c.state(t))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Plan.Changes) == 0 {
				t.Fatal("empty plan for a host that lacks the setup")
			}
			checkGolden(t, c.name, res.Script())
		})
	}
}

// TestReplanIsEmpty plans each case again on the state the plan leaves behind: nothing is left
// to do, so re-running a wizard never duplicates a rule, route or chain.
func TestReplanIsEmpty(t *testing.T) {
	for _, c := range seedCases() {
		t.Run(c.name, func(t *testing.T) {
			s := c.state(t)
			res, err := c.w().Plan(s)
			if err != nil {
				t.Fatal(err)
			}
			after := res.Plan.Expect(s)
			again, err := c.w().Plan(after)
			if err != nil {
				t.Fatalf("planning again: %v", err)
			}
			if len(again.Plan.Changes) != 0 {
				t.Errorf("planning again gives %d changes, want none:\n%s", len(again.Plan.Changes), again.Plan.Script())
			}
			// And the plan itself has no duplicate objects (Check would refuse them).
			if err := res.Plan.Check(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestScriptIsSafeToRun checks that the peer's part of the output is inside a here-document,
// so that running the whole output on this host does not run it.
func TestScriptIsSafeToRun(t *testing.T) {
	res, err := (&SNATGatewayOptions{From: []netip.Prefix{mustPrefix("10.73.43.0/24")}, Out: "b0"}).Plan(case4Host(t))
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Script())
	i := strings.Index(out, ": <<'"+peerMarker+"'\n")
	if i < 0 || !strings.HasSuffix(out, "\n"+peerMarker+"\n") {
		t.Fatalf("peer script not in a here-document:\n%s", out)
	}
	if !strings.Contains(out[i:], "ip -4 route replace 10.73.44.0/24 via 10.73.43.101") {
		t.Errorf("peer script lacks the route through this host:\n%s", out[i:])
	}
	if strings.Contains(out[:i], "route replace 10.73.44.0/24") {
		t.Errorf("this host's part routes the peer's network:\n%s", out[:i])
	}
}

// traceFlow traces a TCP flow and returns its findings' ids.
// traceFlow returns the problems trace finds with a flow, as "id: summary"; the assumptions it
// names (info) are not problems.
func traceFlow(s *model.State, src, dst, iif string) []string {
	res := trace.Run(s, fib.New(s), trace.Request{Proto: 6, Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst), IIF: iif})
	var ids []string
	for _, f := range res.Findings {
		if f.Severity != finding.SeverityInfo {
			ids = append(ids, f.ID+": "+f.Summary)
		}
	}
	return ids
}

// TestPlansFixTheTrace traces each case's broken flow on the modelled host before and after the
// wizard's plan: the finding of the case is there before and gone after.
func TestPlansFixTheTrace(t *testing.T) {
	cases := []struct {
		name          string
		state         *model.State
		setup, fix    []Wizard
		src, dst, iif string
		before        string
	}{
		{name: "case1", state: case1Host(t),
			fix: []Wizard{&SourceReturnOptions{Uplinks: []Uplink{{Iface: "lan0"}, {Iface: "em1"}}}},
			src: "198.18.74.10:40000", dst: "10.73.1.2:80", iif: "lan0", before: trace.FindingAsymmetricReturn},
		{name: "case1-connmark", state: case1Host(t),
			fix: []Wizard{&SourceReturnOptions{Uplinks: []Uplink{{Iface: "lan0"}}, Mode: ModeConnmark}},
			src: "198.18.74.10:40000", dst: "10.73.1.2:80", iif: "lan0", before: trace.FindingAsymmetricReturn},
		{name: "case2-cross-access", state: case2Host(t),
			setup: []Wizard{&PortForwardOptions{ListenAddr: mustAddr("198.18.73.10"), ListenPort: 80, In: "wan2", To: netip.MustParseAddrPort("10.73.20.100:80")}},
			fix: []Wizard{&MultiWANOptions{WANs: []WAN{{Iface: "wan1", Name: "isp_a"}, {Iface: "wan2", Gateway: mustAddr("198.18.73.9"), Name: "isp_b"}},
				RouteLists: []RouteList{{WAN: "isp_b", File: "testdata/ispb.list"}}, SNAT: true, Connmark: true}},
			src: "198.18.90.10:40000", dst: "198.18.73.10:80", iif: "wan2", before: trace.FindingAsymmetricReturn},
		{name: "case2-strict-rp-filter-connmark", state: func() *model.State {
			s := case2Host(t)
			s.Sysctls[model.ConfKey("all", "rp_filter")] = "1"
			return s
		}(),
			setup: []Wizard{&PortForwardOptions{ListenAddr: mustAddr("198.18.73.10"), ListenPort: 80, In: "wan2", To: netip.MustParseAddrPort("10.73.20.100:80")}},
			fix:   []Wizard{&MultiWANOptions{WANs: []WAN{{Iface: "wan1"}, {Iface: "wan2", Gateway: mustAddr("198.18.73.9")}}, Connmark: true}},
			src:   "198.18.90.10:40000", dst: "198.18.73.10:80", iif: "wan2", before: trace.FindingRPFilterDrop},
		{name: "case2-strict-rp-filter-local", state: func() *model.State {
			s := case2Host(t)
			s.Sysctls[model.ConfKey("all", "rp_filter")] = "1"
			return s
		}(),
			fix: []Wizard{&MultiWANOptions{WANs: []WAN{{Iface: "wan1"}, {Iface: "wan2", Gateway: mustAddr("198.18.73.9")}}}},
			src: "198.18.90.10:40000", dst: "198.18.73.10:22", iif: "wan2", before: trace.FindingRPFilterDrop},
		{name: "case4", state: case4Host(t),
			fix: []Wizard{&SNATGatewayOptions{In: "b1", Out: "b0"}},
			src: "10.73.43.10:40000", dst: "10.73.44.20:80", iif: "b1", before: trace.FindingForwardingDisabled},
		{name: "case5", state: case5Host(t),
			setup: []Wizard{&PortForwardOptions{ListenAddr: mustAddr("10.73.5.34"), ListenPort: 81, To: netip.MustParseAddrPort("10.73.5.32:80"), SNAT: SNATNone}},
			fix:   []Wizard{&PortForwardOptions{ListenAddr: mustAddr("10.73.5.34"), ListenPort: 81, To: netip.MustParseAddrPort("10.73.5.32:80")}},
			src:   "10.73.5.50:40000", dst: "10.73.5.34:81", iif: "eth0", before: trace.FindingReplyBypassesNAT},
	}
	apply := func(t *testing.T, s *model.State, ws []Wizard) *model.State {
		for _, w := range ws {
			res, err := w.Plan(s)
			if err != nil {
				t.Fatal(err)
			}
			s = res.Plan.Expect(s)
		}
		return s
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := apply(t, c.state, c.setup)
			before := traceFlow(s, c.src, c.dst, c.iif)
			if !strings.Contains(strings.Join(before, "\n"), c.before+":") {
				t.Errorf("before the fix the trace finds %q, want %s", before, c.before)
			}
			after := traceFlow(apply(t, s, c.fix), c.src, c.dst, c.iif)
			if len(after) > 0 {
				t.Errorf("after the fix the trace still finds:\n%s", strings.Join(after, "\n"))
			}
		})
	}
}

// TestValidationErrors checks that bad options are refused with messages that say what is
// wrong and what the host has.
func TestValidationErrors(t *testing.T) {
	cases := []struct {
		name  string
		state *model.State
		w     Wizard
		want  []string
	}{
		{"unknown uplink", case1Host(t), &SourceReturnOptions{Uplinks: []Uplink{{Iface: "eth9"}}},
			[]string{`unknown interface "eth9"`, "lo, lan0, em1"}},
		{"gateway off-link", case1Host(t), &SourceReturnOptions{Uplinks: []Uplink{{Iface: "em1", Gateway: mustAddr("10.9.9.9")}}},
			[]string{"10.9.9.9 is not on-link on em1", "198.18.73.0/30"}},
		{"gateway is own address", case1Host(t), &SourceReturnOptions{Uplinks: []Uplink{{Iface: "em1", Gateway: mustAddr("198.18.73.2")}}},
			[]string{"this host's own address"}},
		{"bad mode", case1Host(t), &SourceReturnOptions{Uplinks: []Uplink{{Iface: "em1"}}, Mode: "magic"},
			[]string{`--mode "magic"`}},
		{"no gateway known", newTestHost(t).link("em1", "veth", "192.0.2.2/30").s, &SourceReturnOptions{Uplinks: []Uplink{{Iface: "em1"}}},
			[]string{"no gateway known for em1", "192.0.2.0/30", "--uplink em1:GATEWAY"}},
		{"gateway ambiguous", newTestHost(t).link("em1", "veth", "192.0.2.2/24").route("10.1.0.0/16 via 192.0.2.1 dev em1").route("10.2.0.0/16 via 192.0.2.9 dev em1").s,
			&SourceReturnOptions{Uplinks: []Uplink{{Iface: "em1"}}}, []string{"ambiguous", "192.0.2.1 and 192.0.2.9"}},
		{"rule clash", func() *model.State {
			s := case1Host(t)
			s.Rules = append(s.Rules, model.Rule{Family: inet.V4, Priority: 100, Src: mustPrefix("198.18.73.2/32"), Action: model.ActionTable, Table: 200})
			return s
		}(), &SourceReturnOptions{Uplinks: []Uplink{{Iface: "em1"}}}, []string{"priority 100 from 198.18.73.2/32 lookup 200", "ip rule del priority 100"}},
		{"port-forward backend is local", case5Host(t), &PortForwardOptions{ListenPort: 81, To: netip.MustParseAddrPort("10.73.5.34:80")},
			[]string{"this host's own address", "REDIRECT"}},
		{"port-forward listen not local", case5Host(t), &PortForwardOptions{ListenAddr: mustAddr("10.73.5.99"), ListenPort: 81, To: netip.MustParseAddrPort("10.73.5.32:80")},
			[]string{"10.73.5.99 is not an address of this host", "10.73.5.34"}},
		{"port-forward bad proto", case5Host(t), &PortForwardOptions{ListenPort: 81, Proto: "sctp", To: netip.MustParseAddrPort("10.73.5.32:80")},
			[]string{`--proto "sctp"`}},
		{"port-forward clash", newTestHost(t).link("eth0", "veth", "10.73.5.34/24").iptables("nat", "-A PREROUTING -p tcp -m tcp --dport 81 -j DNAT --to-destination 10.73.5.40:80").s,
			&PortForwardOptions{ListenAddr: mustAddr("10.73.5.34"), ListenPort: 81, To: netip.MustParseAddrPort("10.73.5.32:80")},
			[]string{"already forwards tcp port 81 elsewhere", "iptables -t nat -D PREROUTING"}},
		{"port-forward unknown in", case5Host(t), &PortForwardOptions{ListenPort: 81, In: "wan7", To: netip.MustParseAddrPort("10.73.5.32:80")},
			[]string{`--in: unknown interface "wan7"`, "lo, eth0"}},
		{"snat-gateway wrong out", case4Host(t), &SNATGatewayOptions{From: []netip.Prefix{mustPrefix("10.73.43.0/24")}, To: []netip.Prefix{mustPrefix("10.73.44.0/24")}, Out: "b1"},
			[]string{"10.73.43.0/24 out b1, the --out interface"}},
		{"snat-gateway no from", case4Host(t), &SNATGatewayOptions{Out: "b0"}, []string{"--from CIDR (or --in IFACE) is required"}},
		{"tunnel remote is local", case3Host(t), &TunnelOptions{Type: "gre", Local: mustAddr("10.73.31.1"), Remote: mustAddr("10.73.30.1"), Address: mustPrefix("10.73.99.1/30"), Routes: []netip.Prefix{mustPrefix("198.18.76.0/24")}},
			[]string{"--remote 10.73.30.1 is an address of this host"}},
		{"tunnel route covers remote", case3Host(t), &TunnelOptions{Type: "gre", Local: mustAddr("10.73.31.1"), Remote: mustAddr("10.73.31.2"), Address: mustPrefix("10.73.99.1/30"), Routes: []netip.Prefix{mustPrefix("10.73.0.0/16")}},
			[]string{"covers the tunnel end"}},
		{"tunnel address overlaps", case3Host(t), &TunnelOptions{Type: "vxlan", Local: mustAddr("10.73.31.1"), Remote: mustAddr("10.73.31.2"), Address: mustPrefix("10.73.30.201/30"), Routes: []netip.Prefix{mustPrefix("198.18.76.0/24")}},
			[]string{"overlaps 10.73.30.0/24 on l0"}},
		{"tunnel bad type", case3Host(t), &TunnelOptions{Type: "wireguard"}, []string{`--type "wireguard"`}},
		{"multi-wan one wan", case2Host(t), &MultiWANOptions{WANs: []WAN{{Iface: "wan1"}}}, []string{"at least twice"}},
		{"multi-wan unknown list", case2Host(t), &MultiWANOptions{WANs: []WAN{{Iface: "wan1"}, {Iface: "wan2", Gateway: mustAddr("198.18.73.9")}}, RouteLists: []RouteList{{WAN: "isp_c", Prefixes: []netip.Prefix{}}}},
			[]string{`no WAN is named "isp_c"`, "wan1, wan2"}},
		{"multi-wan list has lan", case2Host(t), &MultiWANOptions{WANs: []WAN{{Iface: "wan1"}, {Iface: "wan2", Gateway: mustAddr("198.18.73.9")}}, RouteLists: []RouteList{{WAN: "wan2", Prefixes: []netip.Prefix{mustPrefix("10.73.20.0/24")}}}},
			[]string{"10.73.20.0/24 is a network connected to this host"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.w.Validate(c.state)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if _, perr := c.w.Plan(c.state); perr == nil || perr.Error() != err.Error() {
				t.Errorf("Plan's error %v differs from Validate's %v", perr, err)
			}
		})
	}
}

func TestGatewayErrorIsTyped(t *testing.T) {
	s := newTestHost(t).link("em1", "veth", "192.0.2.2/30").s
	err := (&SourceReturnOptions{Uplinks: []Uplink{{Iface: "em1"}}}).Validate(s)
	var ge *GatewayError
	if !errors.As(err, &ge) || ge.Iface != "em1" || len(ge.Candidates) != 0 {
		t.Fatalf("got %v, want a GatewayError for em1 without candidates", err)
	}
}

// TestPortForwardAutoSNAT checks the auto SNAT decision on the hosts where it differs.
func TestPortForwardAutoSNAT(t *testing.T) {
	to := netip.MustParseAddrPort("10.73.20.100:80")
	cases := []struct {
		name     string
		state    *model.State
		o        PortForwardOptions
		wantSNAT string // a rule fragment, "" for no SNAT
		note     string
	}{
		{"wan clients, this host is the backend's gateway", case2Host(t),
			PortForwardOptions{ListenAddr: mustAddr("198.18.73.10"), ListenPort: 80, In: "wan2", To: to}, "", "no SNAT needed"},
		{"hairpin snats the lan only", case2Host(t),
			PortForwardOptions{ListenAddr: mustAddr("198.18.73.10"), ListenPort: 80, In: "wan2", To: to, Hairpin: true},
			"-s 10.73.20.0/24 -d 10.73.20.100/32", "hairpin clients"},
		{"another router on the backend's network", func() *model.State {
			s := case2Host(t)
			s.Routes = append(s.Routes, plan.NormalizeRoute(model.Route{Family: inet.V4, Dst: mustPrefix("172.16.0.0/12"), Gateway: mustAddr("10.73.20.254"), Dev: "lan0"}))
			return s
		}(), PortForwardOptions{ListenAddr: mustAddr("198.18.73.10"), ListenPort: 80, In: "wan2", To: to}, "-d 10.73.20.100/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT", "another router (10.73.20.254"},
		{"one-arm forward (case 5)", case5Host(t),
			PortForwardOptions{ListenAddr: mustAddr("10.73.5.34"), ListenPort: 81, To: netip.MustParseAddrPort("10.73.5.32:80")}, "--to-source 10.73.5.34", "SNAT to 10.73.5.34"},
		{"explicit none", case5Host(t),
			PortForwardOptions{ListenAddr: mustAddr("10.73.5.34"), ListenPort: 81, To: netip.MustParseAddrPort("10.73.5.32:80"), SNAT: SNATNone}, "", "--snat none"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := c.o.Plan(c.state)
			if err != nil {
				t.Fatal(err)
			}
			var post []string
			for _, ch := range res.Plan.Changes {
				if ch.Chain != nil && ch.Chain.Name == chainPFPost {
					post = ch.Chain.Rules
				}
			}
			got := strings.Join(post, "\n")
			if c.wantSNAT == "" && got != "" || c.wantSNAT != "" && !strings.Contains(got, c.wantSNAT) {
				t.Errorf("SNAT rules %q, want %q", got, c.wantSNAT)
			}
			if notes := strings.Join(res.Notes, "\n"); !strings.Contains(notes, c.note) {
				t.Errorf("notes lack %q:\n%s", c.note, notes)
			}
		})
	}
}

// TestSharedChainKeepsOtherForwards runs two forwards on one host: each keeps its rules in the
// shared chains, and re-running the first changes nothing.
func TestSharedChainKeepsOtherForwards(t *testing.T) {
	s := case2Host(t)
	a := &PortForwardOptions{ListenAddr: mustAddr("198.18.73.6"), ListenPort: 80, In: "wan1", To: netip.MustParseAddrPort("10.73.20.100:80"), Hairpin: true}
	b := &PortForwardOptions{ListenAddr: mustAddr("198.18.73.10"), ListenPort: 80, In: "wan2", To: netip.MustParseAddrPort("10.73.20.100:80"), Hairpin: true}
	for _, w := range []Wizard{a, b} {
		res, err := w.Plan(s)
		if err != nil {
			t.Fatal(err)
		}
		s = res.Plan.Expect(s)
	}
	pre := s.Netfilter.Table(inet.V4, "nat").Chain(chainPFPre)
	if pre == nil || len(pre.Rules) != 4 {
		t.Fatalf("chain %s has %v, want two rules of each forward", chainPFPre, pre)
	}
	for _, w := range []Wizard{a, b} {
		res, err := w.Plan(s)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Plan.Changes) != 0 {
			t.Errorf("re-running %v: %s", w.Args(), res.Plan.Script())
		}
	}
	// Changing the first forward's backend replaces its rules only.
	a.To = netip.MustParseAddrPort("10.73.20.101:8080")
	res, err := a.Plan(s)
	if err != nil {
		t.Fatal(err)
	}
	s = res.Plan.Expect(s)
	var specs []string
	for _, r := range s.Netfilter.Table(inet.V4, "nat").Chain(chainPFPre).Rules {
		specs = append(specs, r.Spec)
	}
	all := strings.Join(specs, "\n")
	if strings.Count(all, "10.73.20.101:8080") != 2 || strings.Count(all, "10.73.20.100:80") != 2 || len(specs) != 4 {
		t.Errorf("after changing one forward the chain holds:\n%s", all)
	}
}

// TestSourceReturnModeSwitchSweeps switches from from-rules to connmark: the old rules go.
func TestSourceReturnModeSwitchSweeps(t *testing.T) {
	s := case1Host(t)
	res, err := (&SourceReturnOptions{Uplinks: []Uplink{{Iface: "lan0"}, {Iface: "em1"}}}).Plan(s)
	if err != nil {
		t.Fatal(err)
	}
	s = res.Plan.Expect(s)
	res, err = (&SourceReturnOptions{Uplinks: []Uplink{{Iface: "lan0"}, {Iface: "em1"}}, Mode: ModeConnmark}).Plan(s)
	if err != nil {
		t.Fatal(err)
	}
	s = res.Plan.Expect(s)
	for _, r := range s.Rules {
		if r.Src.IsValid() {
			t.Errorf("rule %s left behind by the switch to connmark", r.Args(s.TableName))
		}
	}
	res, err = (&SourceReturnOptions{Uplinks: []Uplink{{Iface: "lan0"}, {Iface: "em1"}}}).Plan(s)
	if err != nil {
		t.Fatal(err)
	}
	s = res.Plan.Expect(s)
	if c := s.Netfilter.Table(inet.V4, "mangle").Chain("RT-SR-PRE"); c != nil {
		t.Errorf("chain RT-SR-PRE left behind by the switch back: %v", c.Rules)
	}
}

// TestSourceReturnReusesHandMadeRule adopts a rule an operator already made (at any priority)
// instead of adding a duplicate.
func TestSourceReturnReusesHandMadeRule(t *testing.T) {
	s := case1Host(t)
	s.TableNames = map[int]string{100: "rt-em1"}
	s.Rules = append(s.Rules, model.Rule{Family: inet.V4, Priority: 200, Src: mustPrefix("198.18.73.2/32"), Action: model.ActionTable, Table: 100})
	res, err := (&SourceReturnOptions{Uplinks: []Uplink{{Iface: "em1"}}}).Plan(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Plan.Changes {
		if c.Kind == plan.KindRule {
			t.Errorf("plans %s although the rule exists at priority 200", c.Summary())
		}
	}
}

func TestStrictRPFilter(t *testing.T) {
	s := case2Host(t)
	s.Sysctls[model.ConfKey("all", "rp_filter")] = "1"
	w := func(connmark bool) *MultiWANOptions {
		return &MultiWANOptions{WANs: []WAN{{Iface: "wan1"}, {Iface: "wan2", Gateway: mustAddr("198.18.73.9")}}, Connmark: connmark}
	}
	res, err := w(false).Plan(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(res.Plan.Script(), []byte("printf '%s\\n' 2 >/proc/sys/net/ipv4/conf/wan2/rp_filter")) {
		t.Errorf("without connmark, strict rp_filter should become loose:\n%s", res.Plan.Script())
	}
	res, err = w(true).Plan(s)
	if err != nil {
		t.Fatal(err)
	}
	script := string(res.Plan.Script())
	if !strings.Contains(script, "printf '%s\\n' 1 >/proc/sys/net/ipv4/conf/wan2/src_valid_mark") || strings.Contains(script, "/rp_filter") {
		t.Errorf("with connmark, strict rp_filter should stay and src_valid_mark be set:\n%s", script)
	}
}

func TestParseRouteList(t *testing.T) {
	got, err := ParseRouteList("l", strings.NewReader("# c\n10.0.0.0/8\n\n  192.0.2.1  # host\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]netip.Prefix{mustPrefix("10.0.0.0/8"), mustPrefix("192.0.2.1/32")}, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Error(d)
	}
	_, err = ParseRouteList("isp.list", strings.NewReader("10.0.0.0/8\n10.1.2.3/16\nbogus\n2001:db8::/32\n"))
	for _, w := range []string{"isp.list:2: 10.1.2.3/16 has host bits set: did you mean 10.1.0.0/16?", `isp.list:3: "bogus"`, "isp.list:4:"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
	// A list without networks sends nothing by its WAN: refused, not taken as "no routes".
	if _, err := ParseRouteList("empty.list", strings.NewReader("# nothing yet\n\n")); err == nil || !strings.Contains(err.Error(), "empty.list has no networks") {
		t.Errorf("empty list: %v", err)
	}
}

func TestLoadRouteListRefusesSpecialFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// /dev/zero is one endless line; a pipe without a writer would block the open forever.
	for _, p := range []string{"/dev/zero", fifo} {
		if _, err := LoadRouteList(p); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("LoadRouteList(%s) = %v, want a refusal", p, err)
		}
	}
}

func TestParseFlags(t *testing.T) {
	if _, _, err := ParseListen("70000"); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("port 70000: %v", err)
	}
	if a, p, err := ParseListen("10.0.0.1:81"); err != nil || a != mustAddr("10.0.0.1") || p != 81 {
		t.Errorf("10.0.0.1:81: %v %v %v", a, p, err)
	}
	if ap, err := ParseTarget("10.0.0.2", 81); err != nil || ap.Port() != 81 {
		t.Errorf("target without port: %v %v", ap, err)
	}
	if w, err := ParseWAN("eth1::isp_a"); err != nil || w.Gateway.IsValid() || w.Name != "isp_a" {
		t.Errorf("eth1::isp_a: %+v %v", w, err)
	}
	if _, err := ParseUplink("em1:10.0.0.300", "--uplink"); err == nil {
		t.Error("a bad gateway was accepted")
	}
}

// TestSourceReturnRerunKeepsEarlierUplinks runs the suggested fix of one finding after the
// other (case 2: wan1, then wan2): the second run must not be refused and must keep wan1's
// marking, rule and table, adding wan2's.
func TestSourceReturnRerunKeepsEarlierUplinks(t *testing.T) {
	s := case2Host(t)
	res, err := (&SourceReturnOptions{Uplinks: []Uplink{{Iface: "wan1", Gateway: mustAddr("198.18.73.5")}}, Mode: ModeConnmark}).Plan(s)
	if err != nil {
		t.Fatal(err)
	}
	s = res.Plan.Expect(s)
	res, err = (&SourceReturnOptions{Uplinks: []Uplink{{Iface: "wan2", Gateway: mustAddr("198.18.73.9")}}, Mode: ModeConnmark}).Plan(s)
	if err != nil {
		t.Fatalf("second uplink refused: %v", err)
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "--uplink wan1:198.18.73.5 --uplink wan2:198.18.73.9") {
		t.Errorf("the notes do not name the full command with both uplinks: %q", res.Notes)
	}
	s = res.Plan.Expect(s)
	pre := s.Netfilter.Table(inet.V4, "mangle").Chain("RT-SR-PRE")
	if pre == nil {
		t.Fatal("no RT-SR-PRE after the second run")
	}
	var specs []string
	for _, r := range pre.Rules {
		specs = append(specs, r.Spec)
	}
	all := strings.Join(specs, "\n")
	if !strings.Contains(all, "-i wan1 ") || !strings.Contains(all, "-i wan2 ") {
		t.Errorf("RT-SR-PRE should mark both uplinks:\n%s", all)
	}
	tables := map[string]bool{}
	for _, r := range s.Rules {
		if r.Mark != nil {
			tables[s.TableName(r.Table)] = true
		}
	}
	if !tables["rt-wan1"] || !tables["rt-wan2"] {
		t.Errorf("fwmark rules route to %v, want rt-wan1 and rt-wan2", tables)
	}
	// Running the same fix again changes nothing.
	res, err = (&SourceReturnOptions{Uplinks: []Uplink{{Iface: "wan2", Gateway: mustAddr("198.18.73.9")}}, Mode: ModeConnmark}).Plan(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Plan.Changes) != 0 {
		t.Errorf("third run changes %d things:\n%s", len(res.Plan.Changes), res.Plan.Script())
	}
}

// TestSourceReturnNamesEarlierMarkRule: a host rule before the wizard's fwmark rule whose
// mark match also takes the marked replies (fwmark 0x2/0x2 at 1000: its mask leaves the
// wizard's bits out) routes them first, so the fix cannot work; the plan names the rule and
// the match that leaves the wizard's replies alone. An exact fwmark 0x2 cannot match a mark
// with the wizard's bit set and is not named.
func TestSourceReturnNamesEarlierMarkRule(t *testing.T) {
	for _, tc := range []struct {
		mask uint32
		want bool
	}{{0x2, true}, {0xffffffff, false}} {
		s := case2Host(t)
		s.TableNames = map[int]string{200: "isp_b"}
		s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: 200, Dst: mustPrefix("0.0.0.0/0"), Gateway: mustAddr("198.18.73.9"), Dev: "wan2"})
		s.Rules = append(s.Rules, model.Rule{Family: inet.V4, Priority: 1000, Mark: &model.MarkMatch{Value: 0x2, Mask: tc.mask}, Action: model.ActionTable, Table: 200})
		res, err := (&SourceReturnOptions{Uplinks: []Uplink{{Iface: "wan1", Gateway: mustAddr("198.18.73.5")}}, Mode: ModeConnmark}).Plan(s)
		if err != nil {
			t.Fatal(err)
		}
		notes := strings.Join(res.Notes, "\n")
		got := strings.Contains(notes, "priority 1000") && strings.Contains(notes, "fwmark 0x2/0x1000002")
		if got != tc.want {
			t.Errorf("mask %#x: note naming rule 1000 and fwmark 0x2/0x1000002 = %v, want %v:\n%s", tc.mask, got, tc.want, notes)
		}
	}
}
