package plan

import (
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
)

// updateGolden rewrites golden files: go test ./engine -run Golden -update.
var updateGolden = flag.Bool("update", false, "rewrite golden files under testdata")

// planHost is a small edge router: a LAN NIC with the default route, a public NIC em1 (the
// seed case 1 shape), a named table with a route and a rule to remove, Docker-style NAT rules
// and sysctls.
func planHost() *model.State {
	return &model.State{
		Host: "edge1",
		Links: []model.Link{
			{Index: 1, Name: "lo", Kind: "loopback", Up: true, MTU: 65536, Addrs: []model.Address{{Prefix: pfx("127.0.0.1/8"), Scope: "host"}}},
			{Index: 2, Name: "eth0", Kind: "device", Up: true, MTU: 1500, Addrs: []model.Address{{Prefix: pfx("10.0.0.2/24")}}},
			{Index: 3, Name: "em1", Kind: "device", Up: true, MTU: 1500, Addrs: []model.Address{{Prefix: pfx("192.168.1.254/30")}}},
		},
		Rules: []model.Rule{
			{Family: inet.V4, Priority: 0, Action: model.ActionTable, Table: model.TableLocal},
			{Family: inet.V4, Priority: 10050, Src: pfx("10.9.0.0/16"), Action: model.ActionTable, Table: 100},
			{Family: inet.V4, Priority: 32766, Action: model.ActionTable, Table: model.TableMain},
			{Family: inet.V4, Priority: 32767, Action: model.ActionTable, Table: model.TableDefault},
		},
		Routes: []model.Route{
			{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: pfx("0.0.0.0/0"), Gateway: ip("10.0.0.1"), Dev: "eth0", Scope: "universe", Protocol: "boot"},
			{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: pfx("10.0.0.0/24"), Dev: "eth0", Src: ip("10.0.0.2"), Scope: "link", Protocol: "kernel"},
			{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: pfx("192.168.1.252/30"), Dev: "em1", Src: ip("192.168.1.254"), Scope: "link", Protocol: "kernel"},
			{Family: inet.V4, Table: 100, Type: model.RouteUnicast, Dst: pfx("10.50.0.0/16"), Gateway: ip("10.0.0.1"), Dev: "eth0", Scope: "universe", Protocol: "boot"},
			{Family: inet.V4, Table: model.TableLocal, Type: model.RouteLocal, Dst: pfx("10.0.0.2/32"), Dev: "eth0", Src: ip("10.0.0.2"), Scope: "host", Protocol: "kernel"},
			{Family: inet.V4, Table: model.TableLocal, Type: model.RouteLocal, Dst: pfx("192.168.1.254/32"), Dev: "em1", Src: ip("192.168.1.254"), Scope: "host", Protocol: "kernel"},
		},
		TableNames: map[int]string{100: "isp1"},
		Netfilter: iptables.Ruleset{Backend: "nf_tables", Tables: []iptables.Table{
			{Family: inet.V4, Name: "nat", Chains: []iptables.Chain{
				{Name: "PREROUTING", Policy: "ACCEPT", Rules: []iptables.Rule{{Spec: "-m addrtype --dst-type LOCAL -j DOCKER", Target: "DOCKER"}}},
				{Name: "INPUT", Policy: "ACCEPT"},
				{Name: "OUTPUT", Policy: "ACCEPT"},
				{Name: "POSTROUTING", Policy: "ACCEPT", Rules: []iptables.Rule{{Spec: "-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE", Target: "MASQUERADE"}}},
				{Name: "DOCKER"},
			}},
		}},
		Sysctls: model.Sysctls{model.SysctlIPForward: "0", model.ConfKey("em1", "rp_filter"): "1", model.ConfKey("all", "rp_filter"): "0"},
	}
}

// planDesired touches every change kind: the source-return table and rules of seed case 1,
// the one-arm port forward of seed case 5, a vxlan tunnel, a multipath and a blackhole route,
// removals and a conntrack flush.
func planDesired() *Desired {
	return &Desired{
		Intent:     "golden: source return via em1, port 81 forward, vxlan tunnel",
		TableNames: []RTTable{{ID: 200, Name: "china"}},
		Links: []model.Link{{Name: "vx0", Kind: "vxlan", Up: true, MTU: 1400,
			Tunnel: &model.Tunnel{VNI: 42, Local: ip("192.168.1.254"), Remote: ip("203.0.113.9"), Dev: "em1", Port: 4789},
			Addrs:  []model.Address{{Prefix: pfx("172.16.0.1/30")}}}},
		Addresses: []LinkAddress{{Dev: "eth0", Address: model.Address{Prefix: pfx("10.0.0.3/24")}}},
		Sysctls:   []SysctlValue{{Key: model.SysctlIPForward, Value: "1"}, {Key: model.ConfKey("em1", "rp_filter"), Value: "2"}},
		Routes: []model.Route{
			{Family: inet.V4, Table: 200, Dst: pfx("0.0.0.0/0"), Gateway: ip("192.168.1.253"), Dev: "em1"},
			{Family: inet.V4, Table: 200, Dst: pfx("192.168.1.252/30"), Dev: "em1", Src: ip("192.168.1.254")},
			{Family: inet.V4, Table: 200, Dst: pfx("10.200.0.0/16"), Nexthops: []model.Nexthop{
				{Gateway: ip("10.0.0.1"), Dev: "eth0", Weight: 1}, {Gateway: ip("192.168.1.253"), Dev: "em1", Weight: 2}}},
			{Family: inet.V4, Type: model.RouteBlackhole, Dst: pfx("10.66.0.0/16")},
			{Family: inet.V4, Dst: pfx("0.0.0.0/0"), Gateway: ip("10.0.0.254"), Dev: "eth0"},
		},
		Rules: []model.Rule{
			{Family: inet.V4, Priority: 10000, Src: pfx("192.168.1.254/32"), Table: 200},
			{Family: inet.V4, Priority: 10001, Mark: &model.MarkMatch{Value: 0x1000000, Mask: 0xff000000}, Table: 200},
			{Family: inet.V6, Priority: 10002, Src: pfx("2001:db8::/64"), Action: model.ActionUnreachable},
		},
		Chains: []ChainSpec{
			{Family: inet.V4, Table: "nat", Name: "RT-PF-PRE", Jumps: []Jump{{Chain: "PREROUTING"}},
				Rules: []string{"-i eth0 -p tcp --dport 81 -j DNAT --to-destination 192.168.1.32:80"}},
			{Family: inet.V4, Table: "nat", Name: "RT-PF-POST", Jumps: []Jump{{Chain: "POSTROUTING"}},
				Rules: []string{"-d 192.168.1.32 -p tcp --dport 80 -j SNAT --to-source 192.168.1.34"}},
			{Family: inet.V4, Table: "mangle", Name: "RT-SR-PRE", Jumps: []Jump{{Chain: "PREROUTING"}},
				Rules: []string{
					`-i em1 -m conntrack --ctstate NEW -m comment --comment "source return: em1" -j CONNMARK --set-mark 0x1000000/0xff000000`,
					"-m connmark --mark 0x1000000/0xff000000 -j MARK --set-mark 0x1000000/0xff000000",
				}},
		},
		RemoveRules:  []model.Rule{{Family: inet.V4, Priority: 10050, Src: pfx("10.9.0.0/16"), Table: 100}},
		RemoveRoutes: []model.Route{{Family: inet.V4, Table: 100, Dst: pfx("10.50.0.0/16")}},
		Flush:        []ConntrackFlush{{Family: inet.V4, Proto: 6, DPort: 81}},
		Why: map[string]string{
			(Change{Kind: KindRule, Rule: &model.Rule{Family: inet.V4, Priority: 10000, Src: pfx("192.168.1.254/32"), Table: 200}}).ObjectKey(): "replies from em1's address leave by em1 (seed case 1)",
		},
	}
}

func goldenPlan(t *testing.T) (*Plan, *model.State) {
	t.Helper()
	st := planHost()
	p, err := planDesired().Plan(st)
	if err != nil {
		t.Fatalf("planning: %v", err)
	}
	return p, st
}

// GoldenPlanForTest gives the golden plan to the package's external (privileged) tests.
func GoldenPlanForTest(t *testing.T) (*Plan, *model.State) { return goldenPlan(t) }

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "plan", name+".golden")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./engine -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (rerun with -update if the change is intended):\n--- got\n%s", name, path, got)
	}
}

func TestPlanGolden(t *testing.T) {
	p, st := goldenPlan(t)
	js, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "plan.json", js)
	var summary bytes.Buffer
	for _, c := range p.Changes {
		summary.WriteString(c.Summary() + "\n")
	}
	checkGolden(t, "summary.txt", summary.Bytes())
	checkGolden(t, "script.sh", p.Script())
	checkGolden(t, "iptables-restore", p.IPTablesRestore(inet.V4, st))
	checkGolden(t, "ip6tables-restore", p.IPTablesRestore(inet.V6, st))
	nft, err := p.NFT()
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "plan.nft", nft)
	unit, err := p.SystemdUnit("roundtrip-edge", "/etc/roundtrip/edge.sh")
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "plan.service", unit)
	networkd, err := p.Networkd()
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "networkd.txt", networkd)

	// The plan file reads back as the same plan.
	back, err := Parse(js)
	if err != nil {
		t.Fatalf("the rendered plan does not parse: %v", err)
	}
	js2, _ := back.Marshal()
	if !bytes.Equal(js, js2) {
		t.Errorf("plan JSON does not round-trip:\n%s\n%s", js, js2)
	}
	// The script is valid sh.
	if sh, err := exec.LookPath("sh"); err == nil {
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = bytes.NewReader(p.Script())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sh -n rejects the script: %v\n%s", err, out)
		}
	}
}

// TestPlanReplanIsNoop: planning the same intent against the state the plan leaves gives no
// changes, and Pending of the plan itself is empty there.
func TestPlanReplanIsNoop(t *testing.T) {
	p, st := goldenPlan(t)
	after := p.Expect(st)
	if d := model.Diff(st, after); d == "" {
		t.Fatal("Expect changed nothing")
	}
	again, err := planDesired().Plan(after)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Changes) != 0 {
		t.Errorf("re-planning on the applied state gives changes:\n%s", again.Script())
	}
	if n := len(p.Pending(after).Changes); n != 0 {
		t.Errorf("%d changes still pending after Expect", n)
	}
	if drift := p.Drift(after); len(drift) != 0 {
		t.Errorf("drift against its own expectation: %v", drift)
	}
}

// TestPlanInverseRestoresModel applies each change to the model and then the inverses of all
// of them in reverse: the model must be back where it started.
func TestPlanInverseRestoresModel(t *testing.T) {
	p, st := goldenPlan(t)
	cur := st.Clone()
	var undo [][]Change
	for _, c := range p.Pending(st).Changes {
		inv, err := c.Inverse(cur)
		if err != nil {
			t.Fatalf("inverse of %s: %v", c.Summary(), err)
		}
		undo = append(undo, inv)
		applyToModel(cur, c.normalized())
	}
	for i := len(undo) - 1; i >= 0; i-- {
		for _, c := range undo[i] {
			applyToModel(cur, c.normalized())
		}
	}
	// The kernel's own routes come back with addresses; compare what the plan manages.
	if d := model.Diff(st, cur); d != "" {
		t.Errorf("the inverses do not restore the state:\n%s", d)
	}
}

func TestPlanValidateRefusesBadInput(t *testing.T) {
	st := planHost()
	cases := []struct {
		name string
		c    Change
		want string
	}{
		{"unknown interface", Change{Kind: KindRoute, Op: OpAdd, Route: &model.Route{Family: inet.V4, Dst: pfx("10.1.0.0/16"), Dev: "eth9"}}, "unknown interface eth9"},
		{"gateway not on-link", Change{Kind: KindRoute, Op: OpAdd, Route: &model.Route{Family: inet.V4, Dst: pfx("10.1.0.0/16"), Gateway: ip("172.31.0.1"), Dev: "eth0"}}, "gateway 172.31.0.1 is not on-link"},
		{"gateway on another link", Change{Kind: KindRoute, Op: OpAdd, Route: &model.Route{Family: inet.V4, Dst: pfx("10.1.0.0/16"), Gateway: ip("10.0.0.1"), Dev: "em1"}}, "not on-link: no address or link route on em1"},
		{"table name clash", Change{Kind: KindTable, Op: OpAdd, Table: &RTTable{ID: 101, Name: "isp1"}}, `table name "isp1" is already table 100`},
		{"foreign source", Change{Kind: KindRoute, Op: OpAdd, Route: &model.Route{Family: inet.V4, Dst: pfx("10.1.0.0/16"), Dev: "eth0", Src: ip("10.0.0.99")}}, "not an address of this host"},
		{"rule on unknown iif", Change{Kind: KindRule, Op: OpAdd, Rule: &model.Rule{Family: inet.V4, Priority: 10000, IIF: "wan9", Table: 100}}, "unknown interface wan9"},
		{"sysctl of unknown link", Change{Kind: KindSysctl, Op: OpSet, Sysctl: &SysctlValue{Key: model.ConfKey("eth7", "rp_filter"), Value: "2"}}, "unknown interface eth7"},
		{"deleting a NIC", Change{Kind: KindLink, Op: OpDelete, Link: &model.Link{Name: "eth0"}}, "deletes only tunnel and vxlan links"},
		{"unknown jump target", Change{Kind: KindChain, Op: OpSet, Chain: &ChainSpec{Family: inet.V4, Table: "nat", Name: "RT-X", Rules: []string{"-j RT-NOPE"}}}, "jumps to RT-NOPE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := New("bad")
			p.Changes = []Change{tc.c}
			err := p.Validate(st)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrBadPlan) {
				t.Fatalf("got %v, want an ErrBadPlan containing %q", err, tc.want)
			}
		})
	}
	// A chain still used by another chain cannot be deleted.
	used := planHost()
	used.Netfilter.Tables[0].Chains = append(used.Netfilter.Tables[0].Chains,
		iptables.Chain{Name: "RT-OLD"}, iptables.Chain{Name: "OTHER", Rules: []iptables.Rule{{Spec: "-p tcp -j RT-OLD", Target: "RT-OLD"}}})
	p := New("delete used chain")
	p.Changes = []Change{{Kind: KindChain, Op: OpDelete, Chain: &ChainSpec{Family: inet.V4, Table: "nat", Name: "RT-OLD"}}}
	if err := p.Validate(used); err == nil || !strings.Contains(err.Error(), "is used by rule 1 of chain OTHER") {
		t.Errorf("deleting a used chain: %v", err)
	}
}

func TestParsePlanRefusesMalformed(t *testing.T) {
	good, _ := goldenPlan(t)
	js, _ := good.Marshal()
	cases := map[string]string{
		"":  "empty",
		"{": "ends early",
		`{"format":"roundtrip-snapshot","version":1}`:                                                                                               `format is "roundtrip-snapshot"`,
		`{"format":"roundtrip-plan","version":9}`:                                                                                                   "newer than this roundtrip",
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add"}]}`:                                                           "exactly one object",
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"bogus","op":"add"}]}`:                                                           `unknown kind "bogus"`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"rule","op":"add","rule":{"family":"inet","priority":0}}]}`:                      "explicit priority",
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.1/8","dev":"eth0"}}]}`: "host bits are set",
		`{"format":"roundtrip-plan","version":1,"extra":1}`:                                                                                         "unknown field",
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"chain","op":"set","chain":{"family":"inet","table":"nat","name":"DOCKER"}}]}`:   "roundtrip's chains are named RT-",
		strings.Replace(string(js), `"kind": "rule"`, `"kind": "rule", "route": {"family":"inet","dst":"10.0.0.0/8","dev":"eth0"}`, 1):              "exactly one object",
	}
	for in, want := range cases {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePlan(%.60q): got %v, want an error containing %q", in, err, want)
		}
	}
}

func FuzzParsePlan(f *testing.F) {
	p, err := planDesired().Plan(planHost())
	if err != nil {
		f.Fatal(err)
	}
	js, _ := p.Marshal()
	f.Add(js)
	f.Add([]byte(`{"format":"roundtrip-plan","version":1,"intent":"x","changes":[]}`))
	f.Add([]byte(`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"chain","op":"set","chain":{"family":"inet","table":"nat","name":"RT-A","rules":["-p tcp --dport 1 -j ACCEPT"]}}]}`))
	st := planHost()
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("a parsed plan does not encode: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("an encoded plan does not parse: %v\n%s", err, out)
		}
		if out2, _ := back.Marshal(); !bytes.Equal(out, out2) {
			t.Fatalf("plan does not round-trip")
		}
		// Nothing a parsed plan holds may crash validation or rendering.
		_ = p.Validate(st)
		_ = p.Script()
		_ = p.IPTablesRestore(inet.V4, st)
		_, _ = p.NFT()
		_, _ = p.Networkd()
		_, _ = p.SystemdUnit("x", "/x")
		_ = p.Expect(st)
	})
}

func TestCanonicalRuleSpec(t *testing.T) {
	for in, want := range map[string]string{
		"-p tcp --dport 80 -j ACCEPT":                               "-p tcp -m tcp --dport 80 -j ACCEPT",
		"-s 10.0.0.1 -d 10.1.0.0/16 -j RETURN":                      "-s 10.0.0.1/32 -d 10.1.0.0/16 -j RETURN",
		"-j MARK --set-mark 1":                                      "-j MARK --set-xmark 0x1/0xffffffff",
		"-j MARK --set-mark 0x100/0xff00":                           "-j MARK --set-xmark 0x100/0xff00",
		"-j CONNMARK --save-mark --mask 0xff00":                     "-j CONNMARK --save-mark --nfmask 0xff00 --ctmask 0xff00",
		"-j CONNMARK --restore-mark":                                "-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff",
		"-m mark --mark 16 -j RETURN":                               "-m mark --mark 0x10 -j RETURN",
		"-m connmark --mark 0x100/0xff00 -j CONNMARK --set-xmark 5": "-m connmark --mark 0x100/0xff00 -j CONNMARK --set-xmark 0x5/0xffffffff",
	} {
		got, err := CanonicalRuleSpec(inet.V4, in)
		if err != nil || got != want {
			t.Errorf("CanonicalRuleSpec(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestAllocatorAvoidsKnownUsers(t *testing.T) {
	st := planHost()
	// Tailscale's rules and a wg-quick setup on the host.
	st.Rules = append(st.Rules,
		model.Rule{Family: inet.V4, Priority: 5210, Mark: &model.MarkMatch{Value: 0x80000, Mask: 0xff0000}, Action: model.ActionTable, Table: model.TableMain},
		model.Rule{Family: inet.V4, Priority: 10000, Src: pfx("10.7.0.0/16"), Action: model.ActionTable, Table: 100},
		model.Rule{Family: inet.V4, Priority: 32764, Not: true, Mark: &model.MarkMatch{Value: 51820, Mask: 0xffffffff}, Action: model.ActionTable, Table: 51820},
	)
	st.Netfilter.Tables = append(st.Netfilter.Tables, iptables.Table{Family: inet.V4, Name: "mangle", Chains: []iptables.Chain{
		{Name: "PREROUTING", Policy: "ACCEPT", Rules: []iptables.Rule{{Spec: "-j MARK --set-xmark 0x1000000/0x1000000", Target: "MARK",
			TargetOpts: []iptables.Option{{Name: "set-xmark", Values: []string{"0x1000000/0x1000000"}}}}}},
	}})
	a := NewAllocator(st, "RT-SR-")
	p1, err := a.Priority(model.Rule{Family: inet.V4, Src: pfx("192.168.1.254/32"), Table: 200})
	if err != nil || p1 != 10001 {
		t.Errorf("first priority: %d, %v; want 10001 (10000 is taken)", p1, err)
	}
	p2, _ := a.Priority(model.Rule{Family: inet.V4, Src: pfx("192.168.1.250/32"), Table: 200})
	if p2 != 10002 {
		t.Errorf("second priority %d, want 10002", p2)
	}
	// An existing rule that differs only in priority keeps it.
	if p, _ := a.Priority(model.Rule{Family: inet.V4, Src: pfx("10.7.0.0/16"), Table: 100}); p != 10000 {
		t.Errorf("existing rule's priority: %d, want 10000", p)
	}
	tid, err := a.Table("china")
	if err != nil || tid != 101 {
		t.Errorf("table: %d, %v; want 101 (100 is isp1)", tid, err)
	}
	if id, _ := a.Table("isp1"); id != 100 {
		t.Errorf("named table isp1: %d, want 100", id)
	}
	// Bits 0-23 belong to wg-quick, mwan3, kube-proxy and Tailscale and bit 24 to a foreign
	// MARK rule: 8 bits do not fit, 4 fit just above bit 24.
	if _, err := a.MarkBits(8); err == nil {
		t.Error("8 mark bits allocated where only 7 are free")
	}
	mb, err := a.MarkBits(4)
	if err != nil {
		t.Fatal(err)
	}
	if mb.Mask != 0x1e000000 {
		t.Errorf("mark bits %#x, want 0x1e000000", mb.Mask)
	}
	if m := mb.Match(1); m.Mask != mb.Mask || m.Value == 0 || m.Value&^mb.Mask != 0 {
		t.Errorf("mark value %#x/%#x outside its bits", m.Value, m.Mask)
	}
	var tailscale bool
	for _, r := range a.Reserved() {
		tailscale = tailscale || r.By == "Tailscale" && r.Seen
	}
	if !tailscale {
		t.Error("Tailscale's rule at 5210 was not detected")
	}
	// Marks used only in the intent's own chains are free to it: the same answer again.
	own := planHost()
	own.Netfilter.Tables = append(own.Netfilter.Tables, iptables.Table{Family: inet.V4, Name: "mangle", Chains: []iptables.Chain{
		{Name: "RT-SR-PRE", Rules: []iptables.Rule{{Spec: "-j MARK --set-xmark 0x1000000/0xff000000", Target: "MARK",
			TargetOpts: []iptables.Option{{Name: "set-xmark", Values: []string{"0x1000000/0xff000000"}}}}}},
	}})
	b1, _ := NewAllocator(planHost(), "RT-SR-").MarkBits(8)
	b2, _ := NewAllocator(own, "RT-SR-").MarkBits(8)
	if b1 != b2 || b1.Mask != 0xff000000 {
		t.Errorf("mark bits not stable across runs of one intent: %#x then %#x", b1.Mask, b2.Mask)
	}
	b3, _ := NewAllocator(own, "RT-PF-").MarkBits(8)
	if b3.Mask&0xff000000 != 0 {
		t.Errorf("another intent got the bits of RT-SR-: %#x", b3.Mask)
	}
}

func TestCheckLockout(t *testing.T) {
	st := planHost()
	sess, err := ParseSSHConnection("198.51.100.7 50022 10.0.0.2 22")
	if err != nil {
		t.Fatal(err)
	}
	redirect := New("move the default route")
	redirect.Changes = []Change{{Kind: KindRoute, Op: OpAdd, Route: &model.Route{Family: inet.V4, Dst: pfx("198.51.100.0/24"), Gateway: ip("192.168.1.253"), Dev: "em1"}}}
	lo := CheckLockout(st, redirect.Expect(st), sess)
	if !lo.Applies || !lo.Changed || !strings.Contains(lo.Reason, "via 192.168.1.253 dev em1") {
		t.Errorf("re-routing the SSH client: %+v", lo)
	}
	harmless := New("unrelated")
	harmless.Changes = []Change{{Kind: KindRoute, Op: OpAdd, Route: &model.Route{Family: inet.V4, Dst: pfx("203.0.113.0/24"), Gateway: ip("192.168.1.253"), Dev: "em1"}}}
	if lo := CheckLockout(st, harmless.Expect(st), sess); lo.Changed {
		t.Errorf("an unrelated route counts as a lockout: %s", lo.Reason)
	}
	other, _ := ParseSSHConnection("198.51.100.7 50022 10.99.0.1 22")
	if lo := CheckLockout(st, redirect.Expect(st), other); lo.Applies {
		t.Errorf("a session to another namespace's address was checked: %s", lo.Reason)
	}
	for _, bad := range []string{"", "1.2.3.4 5 6.7.8.9", "x 1 10.0.0.2 22", "1.2.3.4 99999 10.0.0.2 22"} {
		if _, err := ParseSSHConnection(bad); err == nil {
			t.Errorf("ParseSSHConnection(%q) accepted", bad)
		}
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }
