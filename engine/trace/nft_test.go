package trace

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/model/modeltest"
	"roundtrip/engine/nft"
)

// Rules written the way nft linearizes them (as engine/nft's tests do), so the tests read
// like the nft rules they stand for.

func nftIfname(s string) []byte { b := make([]byte, 16); copy(b, s); return b }
func nftLE32(v uint32) []byte   { return binary.LittleEndian.AppendUint32(nil, v) }

func nftMeta(key string, reg uint32) nft.Expr { return nft.Expr{Meta: &nft.Meta{Key: key, Dreg: reg}} }
func nftEq(reg uint32, data []byte) nft.Expr {
	return nft.Expr{Cmp: &nft.Cmp{Op: "eq", Sreg: reg, Data: data}}
}
func nftVerdict(kind string) nft.Expr { return nft.Expr{Verdict: &nft.Verdict{Kind: kind}} }

// nftMarkSet is `meta mark set V`.
func nftMarkSet(v uint32) []nft.Expr {
	return []nft.Expr{{Immediate: &nft.Immediate{Dreg: 1, Data: nftLE32(v)}}, {Meta: &nft.Meta{Key: "mark", Set: true, Sreg: 1}}}
}

func nftRule(handle uint64, text string, exprs ...[]nft.Expr) *nft.Rule {
	r := &nft.Rule{Handle: handle, Text: text}
	for _, e := range exprs {
		r.Exprs = append(r.Exprs, e...)
	}
	return r
}

// dualUplink is a router with two uplinks; fwmark 1 selects wan1.
func dualUplink(t *testing.T, chains ...*nft.Chain) *model.State {
	s := modeltest.Host(t, `
link lan0 10.9.1.1/24
link wan0 198.18.9.1/24
link wan1 198.18.10.1/24
route default via 198.18.9.2 dev wan0
route table 100 default via 198.18.10.2 dev wan1
rule 100 fwmark 1 table 100
sysctl net.ipv4.ip_forward=1
ipt mangle -A PREROUTING -i lan0 -p tcp -m tcp --dport 25 -j MARK --set-xmark 0x2/0xffffffff
`)
	s.Nftables = &nft.Ruleset{HostOrder: "little", Tables: []*nft.Table{{Family: nft.FamilyInet, Name: "fw", Handle: 1, Chains: chains}}}
	return s
}

func TestTraceNFTMarkRoutesAndMasquerade(t *testing.T) {
	mark := &nft.Chain{Name: "mark", Handle: 1, Type: nft.TypeFilter, Hook: nft.HookPrerouting, Priority: -150, Policy: "accept", Rules: []*nft.Rule{
		nftRule(4, `iifname "lan0" meta mark set 0x00000001`, []nft.Expr{nftMeta("iifname", 1), nftEq(1, nftIfname("lan0"))}, nftMarkSet(1)),
	}}
	fwd := &nft.Chain{Name: "forward", Handle: 2, Type: nft.TypeFilter, Hook: nft.HookForward, Policy: "drop", Rules: []*nft.Rule{
		nftRule(5, `oifname "wan1" accept`, []nft.Expr{nftMeta("oifname", 1), nftEq(1, nftIfname("wan1")), nftVerdict("accept")}),
	}}
	masq := &nft.Chain{Name: "srcnat", Handle: 3, Type: nft.TypeNAT, Hook: nft.HookPostrouting, Priority: 100, Policy: "accept", Rules: []*nft.Rule{
		nftRule(6, "masquerade", []nft.Expr{{Nat: &nft.Nat{Type: "masquerade"}}}),
	}}
	r := trace(t, dualUplink(t, mark, fwd, masq), "tcp 10.9.1.5:40000 203.0.113.7:443 lan0")
	wantFindings(t, r, FindingFiltered) // the reply: see below
	f := &r.Forward
	if f.Verdict != LegForward || f.OIF != "wan1" || f.Packet.Mark != 1 || f.Packet.Src.String() != "198.18.10.1:40000" {
		t.Fatalf("forward %s out %s mark %#x from %s, want out wan1 (table 100 by the mark), mark 1, masqueraded to 198.18.10.1\n%s",
			f.Verdict, f.OIF, f.Packet.Mark, f.Packet.Src, dumpLeg(f))
	}
	leg := dumpLeg(f)
	for _, want := range []string{`nft inet fw mark: matched | iifname "lan0" meta mark set 0x00000001 # handle 4`, "nft inet fw mark: mark 0x0 -> 0x1",
		`nft inet fw forward: accepted | oifname "wan1" accept # handle 5`, "nft inet fw srcnat: MASQUERADE 10.9.1.5:40000 -> 198.18.10.1:40000 (address of wan1) | masquerade # handle 6"} {
		if !strings.Contains(leg, want) {
			t.Errorf("no step %q:\n%s", want, leg)
		}
	}
	// The reply comes back through conntrack's reverse SNAT and the forward chain's policy
	// drops it: the chain has no established rule.
	if r.Reply == nil || r.Reply.Verdict != LegDrop || !strings.Contains(r.Findings[0].Summary, "the reply is dropped by nft chain inet fw forward: its policy drop") {
		t.Fatalf("reply %+v, findings %+v", r.Reply, r.Findings)
	}
}

// The iptables mangle table (priority -150) marks port 25 with 2; an nft chain at -140 sees
// that mark, one at -160 does not.
func TestTraceNFTRunsByPriorityBetweenIPTables(t *testing.T) {
	dropMarked := func(prio int32) *nft.Chain {
		return &nft.Chain{Name: "check", Handle: 1, Type: nft.TypeFilter, Hook: nft.HookPrerouting, Priority: prio, Policy: "accept", Rules: []*nft.Rule{
			nftRule(4, "meta mark 0x00000002 drop", []nft.Expr{nftMeta("mark", 1), nftEq(1, nftLE32(2)), nftVerdict("drop")}),
		}}
	}
	after := trace(t, dualUplink(t, dropMarked(-140)), "tcp 10.9.1.5:40000 203.0.113.7:25 lan0")
	if after.Forward.Verdict != LegDrop {
		t.Fatalf("an nft chain after mangle does not see its mark:\n%s", dumpLeg(&after.Forward))
	}
	f := after.Finding(FindingFiltered)
	if f == nil || !strings.Contains(f.Summary, "nft chain inet fw check") || f.Evidence[0] != "meta mark 0x00000002 drop # handle 4" {
		t.Fatalf("filtered finding %+v", f)
	}
	before := trace(t, dualUplink(t, dropMarked(-160)), "tcp 10.9.1.5:40000 203.0.113.7:25 lan0")
	if before.Forward.Verdict == LegDrop {
		t.Fatalf("an nft chain before mangle sees its mark:\n%s", dumpLeg(&before.Forward))
	}
	// At the same priority the kernel's order is not visible: the nft chain is taken first,
	// and the trace says so.
	tie := trace(t, dualUplink(t, dropMarked(-150)), "tcp 10.9.1.5:40000 203.0.113.7:25 lan0")
	if tie.Forward.Verdict != LegUncertain || !strings.Contains(dumpLeg(&tie.Forward), "order: nft chain inet fw check and iptables mangle PREROUTING share priority -150") {
		t.Fatalf("a tie at -150:\n%s", dumpLeg(&tie.Forward))
	}
	// The other order (mangle first, as after the mangle table was registered last) drops
	// the packet: the outcome is the kernel's secret, and the trace says so.
	f = tie.Finding(FindingUncertain)
	if f == nil || !strings.Contains(f.Summary, "nft chain inet fw check and iptables mangle PREROUTING share priority -150 and their order changes the outcome") ||
		len(f.Evidence) != 1 || f.Evidence[0] != "the packet goes on: true, and false in the other order" {
		t.Fatalf("a tie at -150 whose order decides the verdict: %+v", tie.Findings)
	}
	// Where the order changes nothing (port 443 is not marked by mangle) nothing is said.
	if other := trace(t, dualUplink(t, dropMarked(-150)), "tcp 10.9.1.5:40000 203.0.113.7:443 lan0"); other.Has(FindingUncertain) {
		t.Fatalf("a tie whose order does not matter is uncertain: %+v", other.Findings)
	}
	// Both set the mark: the last one wins, and which is last is not known.
	setMark := &nft.Chain{Name: "mark", Handle: 1, Type: nft.TypeFilter, Hook: nft.HookPrerouting, Priority: -150, Policy: "accept", Rules: []*nft.Rule{
		nftRule(4, `iifname "lan0" meta mark set 0x00000001`, []nft.Expr{nftMeta("iifname", 1), nftEq(1, nftIfname("lan0"))}, nftMarkSet(1)),
	}}
	both := trace(t, dualUplink(t, setMark), "tcp 10.9.1.5:40000 203.0.113.7:25 lan0")
	if f := both.Finding(FindingUncertain); f == nil || both.Forward.Verdict != LegUncertain || both.Forward.Packet.Mark != 2 || len(f.Evidence) != 1 || f.Evidence[0] != "the packet's mark is 0x2, and 0x1 in the other order" {
		t.Fatalf("two marks at one priority: mark %#x, findings %+v", both.Forward.Packet.Mark, both.Findings)
	}
	// With iptables-nft's table in the ruleset, the creation order is known: the newer
	// registered its hook last and runs first. Created after the nft table, the mangle table
	// marks the packet before the nft chain sees it, which then drops it.
	for _, c := range []struct {
		handle uint64
		drop   bool
	}{{9, true}, {0, false}} {
		s := dualUplink(t, dropMarked(-150))
		s.Netfilter.Backend = iptables.BackendNFT
		s.Nftables.Tables = append(s.Nftables.Tables, &nft.Table{Family: nft.FamilyIP, Name: "mangle", Handle: c.handle, Origin: "iptables-nft", Chains: []*nft.Chain{
			{Name: "PREROUTING", Handle: 1, Type: nft.TypeFilter, Hook: nft.HookPrerouting, Priority: -150, Policy: "accept"}}})
		r := trace(t, s, "tcp 10.9.1.5:40000 203.0.113.7:25 lan0")
		leg := dumpLeg(&r.Forward)
		dropped := r.Has(FindingFiltered) && strings.Contains(leg, "meta mark 0x00000002 drop # handle 4")
		if dropped != c.drop || !r.Has(FindingUncertain) || c.drop != strings.Contains(leg, "iptables-nft's table ip mangle (handle 9) was created after inet fw (handle 1), so the iptables table is taken first") {
			t.Errorf("iptables-nft's mangle with handle %d: dropped %v, findings %+v\n%s", c.handle, dropped, r.Findings, leg)
		}
	}
	// The state is put back after the other order: the leg's steps are the assumed order's.
	if leg := dumpLeg(&both.Forward); strings.Count(leg, "meta mark set 0x00000001") != 1 {
		t.Fatalf("the other order's steps leaked into the leg:\n%s", leg)
	}
}

// A rate limit cannot be decided: the trace says so with the rule's text.
func TestTraceNFTUncertainNamesTheRule(t *testing.T) {
	c := &nft.Chain{Name: "input", Handle: 1, Type: nft.TypeFilter, Hook: nft.HookInput, Policy: "accept", Rules: []*nft.Rule{
		nftRule(7, "limit rate over 10/second drop", []nft.Expr{{Limit: &nft.Limit{Rate: 10, Unit: 1, Over: true}}, nftVerdict("drop")}),
	}}
	r := trace(t, dualUplink(t, c), "tcp 10.9.1.5:40000 10.9.1.1:22 lan0")
	f := r.Finding(FindingUncertain)
	if f == nil || r.Forward.Verdict != LegUncertain || !strings.Contains(strings.Join(f.Evidence, "\n"), "limit rate over 10/second drop # handle 7") {
		t.Fatalf("uncertain finding %+v, verdict %s", f, r.Forward.Verdict)
	}
}

// `fib saddr . iif oif missing drop`, nft's reverse-path filter: a lan source passes, a source
// routed out another interface is dropped.
func TestTraceNFTFibReversePath(t *testing.T) {
	rpf := &nft.Chain{Name: "rpf", Handle: 1, Type: nft.TypeFilter, Hook: nft.HookPrerouting, Priority: -300, Policy: "accept", Rules: []*nft.Rule{
		nftRule(4, "fib saddr . iif oif missing drop", []nft.Expr{{Fib: &nft.Fib{Result: "oif", Flags: []string{"saddr", "iif", "present"}, Dreg: 1}}, nftEq(1, []byte{0}), nftVerdict("drop")}),
	}}
	ok := trace(t, dualUplink(t, rpf), "tcp 10.9.1.5:40000 10.9.1.1:22 lan0")
	if ok.Forward.Verdict != LegLocal {
		t.Fatalf("a lan source fails nft's rp filter:\n%s", dumpLeg(&ok.Forward))
	}
	spoofed := trace(t, dualUplink(t, rpf), "tcp 203.0.113.9:40000 10.9.1.1:22 lan0")
	if f := spoofed.Finding(FindingFiltered); spoofed.Forward.Verdict != LegDrop || f == nil || f.Evidence[0] != "fib saddr . iif oif missing drop # handle 4" {
		t.Fatalf("a source routed via wan0 arriving on lan0 passes nft's rp filter:\n%s", dumpLeg(&spoofed.Forward))
	}
}

// An inet table's chains see IPv6 packets, an ip table's do not.
func TestTraceNFTFamilies(t *testing.T) {
	drop := func(fam nft.Family) *model.State {
		s := modeltest.Host(t, `
link lan0 2001:db8:1::1/64
link wan0 2001:db8:2::1/64
route ::/0 via 2001:db8:2::2 dev wan0
sysctl net.ipv6.conf.all.forwarding=1
`)
		s.Nftables = &nft.Ruleset{HostOrder: "little", Tables: []*nft.Table{{Family: fam, Name: "fw", Handle: 1, Chains: []*nft.Chain{
			{Name: "forward", Handle: 1, Type: nft.TypeFilter, Hook: nft.HookForward, Policy: "drop"},
		}}}}
		return s
	}
	if r := trace(t, drop(nft.FamilyInet), "tcp [2001:db8:1::5]:40000 [2001:db8:9::7]:443 lan0"); r.Forward.Verdict != LegDrop {
		t.Fatalf("an inet forward chain with policy drop lets IPv6 through:\n%s", dumpLeg(&r.Forward))
	}
	if r := trace(t, drop(nft.FamilyIP), "tcp [2001:db8:1::5]:40000 [2001:db8:9::7]:443 lan0"); r.Forward.Verdict != LegForward {
		t.Fatalf("an ip table's chain drops IPv6:\n%s", dumpLeg(&r.Forward))
	}
}

// A netdev ingress chain on the input interface runs before prerouting.
func TestTraceNFTIngress(t *testing.T) {
	s := dualUplink(t)
	s.Nftables.Tables = append(s.Nftables.Tables, &nft.Table{Family: nft.FamilyNetdev, Name: "edge", Handle: 2, Chains: []*nft.Chain{
		{Name: "in", Handle: 1, Type: nft.TypeFilter, Hook: nft.HookIngress, Priority: -500, Policy: "accept", Devices: []string{"wan0"}, Rules: []*nft.Rule{
			nftRule(3, "tcp dport 22 drop", []nft.Expr{nftMeta("l4proto", 1), nftEq(1, []byte{6}), {Payload: &nft.Payload{Base: "transport", Offset: 2, Len: 2, Dreg: 1}}, nftEq(1, []byte{0, 22}), nftVerdict("drop")}),
		}},
	}})
	r := trace(t, s, "tcp 198.51.100.9:40000 198.18.9.1:22 wan0")
	if f := r.Finding(FindingFiltered); r.Forward.Verdict != LegDrop || f == nil || !strings.Contains(f.Summary, "nft chain netdev edge in") {
		t.Fatalf("the ingress chain of wan0 does not drop ssh:\n%s", dumpLeg(&r.Forward))
	}
	// Not on lan0.
	if r := trace(t, s, "tcp 10.9.1.5:40000 10.9.1.1:22 lan0"); r.Forward.Verdict != LegLocal {
		t.Fatalf("wan0's ingress chain runs for lan0:\n%s", dumpLeg(&r.Forward))
	}
}

func TestNATPortKeepsAPortInRange(t *testing.T) {
	r := &nft.NatAction{ProtoMin: 1024, ProtoMax: 2047}
	if natPort(1500, r) != 1500 || natPort(40000, r) != 1024 || natPort(80, &nft.NatAction{ProtoMin: 8080, ProtoMax: 8080}) != 8080 || natPort(80, &nft.NatAction{}) != 80 {
		t.Fatal("natPort")
	}
}

// A hand-written `table ip mangle` that iptables-nft wrote into as well (its PREROUTING with
// a compat rule, which the iptables model evaluates): the table is iptables-nft's, but its
// native chain still runs, with the regular chain it jumps to, and its mark routes the flow.
func TestTraceNFTNativeChainInASharedTable(t *testing.T) {
	s := dualUplink(t)
	setOne := &nft.Chain{Name: "set_one", Handle: 2, Rules: []*nft.Rule{nftRule(6, "meta mark set 0x00000001", nftMarkSet(1))}}
	native := &nft.Chain{Name: "mark", Handle: 1, Type: nft.TypeFilter, Hook: nft.HookPrerouting, Priority: -140, Policy: "accept", Rules: []*nft.Rule{
		nftRule(5, `iifname "lan0" jump set_one`, []nft.Expr{nftMeta("iifname", 1), nftEq(1, nftIfname("lan0")), {Verdict: &nft.Verdict{Kind: "jump", Chain: "set_one"}}}),
	}}
	// iptables-nft's built-in chain: its rule is the iptables model's (`ipt mangle` of
	// dualUplink stands for it), and must not run twice.
	builtin := &nft.Chain{Name: "PREROUTING", Handle: 3, Type: nft.TypeFilter, Hook: nft.HookPrerouting, Priority: -150, Policy: "accept", Rules: []*nft.Rule{
		{Handle: 7, Text: "meta mark set 0x00000009", Exprs: append(nftMarkSet(9), nft.Expr{Xt: &nft.Xt{Kind: "target", Name: "MARK"}})},
	}}
	shared := &nft.Table{Family: nft.FamilyIP, Name: "mangle", Handle: 2, Chains: []*nft.Chain{native, setOne, builtin}}
	s.Nftables.Tables = []*nft.Table{shared}
	nft.DetectOrigins(s.Nftables)
	if shared.Origin != "iptables-nft" {
		t.Fatalf("origin %q", shared.Origin)
	}
	r := trace(t, s, "tcp 10.9.1.5:40000 203.0.113.7:443 lan0")
	leg := dumpLeg(&r.Forward)
	if r.Forward.OIF != "wan1" || r.Forward.Packet.Mark != 1 || !strings.Contains(leg, "nft ip mangle mark") || strings.Contains(leg, "0x00000009") {
		t.Fatalf("the native chain of the shared table: out %s mark %#x\n%s", r.Forward.OIF, r.Forward.Packet.Mark, leg)
	}
}

// A route chain marks the router's replies that would leave by wan0; the mark's ip rule
// sends them out wan1 instead: the asymmetric return names the nft rule that set the mark.
func TestTraceNFTAsymmetricReturnNamesTheMarkRule(t *testing.T) {
	route := &nft.Chain{Name: "route_out", Handle: 1, Type: nft.TypeRoute, Hook: nft.HookOutput, Priority: -150, Policy: "accept", Rules: []*nft.Rule{
		nftRule(4, `oifname "wan0" meta mark set 0x00000001`, []nft.Expr{nftMeta("oifname", 1), nftEq(1, nftIfname("wan0"))}, nftMarkSet(1)),
	}}
	r := trace(t, dualUplink(t, route), "tcp 203.0.113.9:40000 198.18.9.1:22 wan0")
	f := r.Finding(FindingAsymmetricReturn)
	if f == nil || r.Reply == nil || r.Reply.OIF != "wan1" {
		t.Fatalf("no asymmetric return: %+v\n%s", r.Findings, dumpLeg(r.Reply))
	}
	want := `the reply's mark 0x1, which rule 100 matches, was set by nft inet fw route_out: oifname "wan0" meta mark set 0x00000001 # handle 4`
	if !slices.Contains(f.Evidence, want) {
		t.Fatalf("evidence %q lacks %q\n%s", f.Evidence, want, dumpLeg(r.Reply))
	}
}

// TestTraceNFTNamesTheChainThatHoldsTheNAT: roundtrip's own table hooks its chain RT-PF-PRE
// from a base chain that only jumps to it; the DNAT step names RT-PF-PRE, where the rule is,
// and the reply's undoing of it names that nft chain, not iptables' nat POSTROUTING (the host
// has no iptables nat table).
func TestTraceNFTNamesTheChainThatHoldsTheNAT(t *testing.T) {
	s := dualUplink(t)
	s.Nftables.Tables = append(s.Nftables.Tables, &nft.Table{Family: nft.FamilyInet, Name: "roundtrip", Handle: 2, Chains: []*nft.Chain{
		{Name: "hook.prerouting.RT-PF-PRE", Handle: 1, Type: nft.TypeNAT, Hook: nft.HookPrerouting, Priority: -100, Policy: "accept", Rules: []*nft.Rule{
			nftRule(3, "jump RT-PF-PRE", []nft.Expr{{Verdict: &nft.Verdict{Kind: "jump", Chain: "RT-PF-PRE"}}}),
		}},
		{Name: "RT-PF-PRE", Handle: 2, Rules: []*nft.Rule{
			nftRule(4, `iifname "wan0" dnat ip to 10.9.1.100`, []nft.Expr{nftMeta("iifname", 1), nftEq(1, nftIfname("wan0")),
				{Immediate: &nft.Immediate{Dreg: 1, Data: []byte{10, 9, 1, 100}}},
				{Nat: &nft.Nat{Type: "dnat", Family: "ip", RegAddrMin: 1, RegAddrMax: 1, Flags: []string{"map-ips"}}}}),
		}},
	}})
	r := trace(t, s, "tcp 203.0.113.7:40000 198.18.9.1:80 wan0")
	fwd := dumpLeg(&r.Forward)
	if !strings.Contains(fwd, `nft inet roundtrip RT-PF-PRE: DNAT 198.18.9.1:80 -> 10.9.1.100:80 | iifname "wan0" dnat ip to 10.9.1.100 # handle 4`) {
		t.Errorf("the DNAT step does not name chain RT-PF-PRE:\n%s", fwd)
	}
	if !strings.Contains(fwd, `nft inet roundtrip hook.prerouting.RT-PF-PRE: jump | jump RT-PF-PRE # handle 3`) {
		t.Errorf("the jump is not named by its base chain:\n%s", fwd)
	}
	reply := dumpLeg(r.Reply)
	if !strings.Contains(reply, "conntrack (reverse of the DNAT by nft inet roundtrip RT-PF-PRE): conntrack reverses the DNAT: source 10.9.1.100:80 -> 198.18.9.1:80") ||
		strings.Contains(reply, "nat POSTROUTING") {
		t.Errorf("the reply's reverse DNAT is not named by the nft chain:\n%s", reply)
	}
}
