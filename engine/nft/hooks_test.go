package nft

import (
	"strings"
	"testing"
)

func slotNames(slots []Slot) string {
	var out []string
	for i := range slots {
		s := &slots[i]
		name := s.Name()
		if s.Kind == SlotNAT {
			name += "[" + slotNames(s.NATChains) + "]"
		}
		out = append(out, name)
	}
	return strings.Join(out, ", ")
}

func TestHookOrder(t *testing.T) {
	mangle := &Table{Family: FamilyInet, Name: "mangle", Handle: 3, Chains: []*Chain{
		{Name: "pre_a", Handle: 1, Type: TypeFilter, Hook: HookPrerouting, Priority: -150, Policy: "accept"},
		{Name: "pre_b", Handle: 7, Type: TypeFilter, Hook: HookPrerouting, Priority: -150, Policy: "accept"},
	}}
	other := &Table{Family: FamilyInet, Name: "other", Handle: 5, Chains: []*Chain{
		{Name: "pre", Handle: 1, Type: TypeFilter, Hook: HookPrerouting, Priority: -150, Policy: "accept"},
	}}
	nat := &Table{Family: FamilyIP, Name: "nat", Handle: 2, Chains: []*Chain{
		{Name: "PREROUTING", Handle: 1, Type: TypeNAT, Hook: HookPrerouting, Priority: -100, Policy: "accept"},
		{Name: "early", Handle: 2, Type: TypeNAT, Hook: HookPrerouting, Priority: -150, Policy: "accept"},
		{Name: "POSTROUTING", Handle: 3, Type: TypeNAT, Hook: HookPostrouting, Priority: 100, Policy: "accept"},
	}}
	v6 := &Table{Family: FamilyIP6, Name: "v6", Handle: 6, Chains: []*Chain{
		{Name: "pre", Handle: 1, Type: TypeFilter, Hook: HookPrerouting, Priority: 0, Policy: "accept"},
	}}
	dormant := &Table{Family: FamilyInet, Name: "sleeping", Handle: 7, Flags: []string{"dormant"}, Chains: []*Chain{
		{Name: "pre", Handle: 1, Type: TypeFilter, Hook: HookPrerouting, Priority: 0, Policy: "accept"},
	}}
	rs := &Ruleset{HostOrder: "little", Tables: []*Table{mangle, other, nat, v6, dormant}}

	o := HookOrder(rs, FamilyIP, HookPrerouting, HookOptions{Legacy: []string{"raw", "mangle", "nat", "filter"}, Conntrack: true, Defrag: true})
	want := "defrag, iptables-legacy raw, conntrack in, inet other pre, inet mangle pre_b, inet mangle pre_a, iptables-legacy mangle, " +
		"the NAT core[ip nat early, ip nat PREROUTING, iptables-legacy nat]"
	if got := slotNames(o.Slots); got != want {
		t.Fatalf("order:\n got %s\nwant %s", got, want)
	}
	if len(o.Ties) != 1 {
		t.Fatalf("ties %+v", o.Ties)
	}
	tie := o.Ties[0]
	if tie.Priority != -150 || tie.Defined || len(tie.Slots) != 4 {
		t.Errorf("the -150 tie (two tables and iptables-legacy) must be undefined: %+v", tie)
	}
	natSlot := o.Slots[len(o.Slots)-1]
	if natSlot.Priority != -100 || len(natSlot.NATTies) != 1 || natSlot.NATTies[0].Defined {
		t.Errorf("NAT core: priority %d, ties %+v (nft nat and legacy nat at -100 are undefined)", natSlot.Priority, natSlot.NATTies)
	}

	// Only one table at a priority: the chains' order is defined by their handles.
	rs.Tables = []*Table{mangle}
	o = HookOrder(rs, FamilyIP6, HookPrerouting, HookOptions{})
	if got := slotNames(o.Slots); got != "inet mangle pre_b, inet mangle pre_a" || len(o.Ties) != 1 || !o.Ties[0].Defined {
		t.Errorf("same table: %s, ties %+v", got, o.Ties)
	}
	// IPv6 packets do not see ip tables; inet and ip6 ones they do.
	rs.Tables = []*Table{nat, v6, mangle}
	if got := slotNames(HookOrder(rs, FamilyIP6, HookPrerouting, HookOptions{}).Slots); got != "inet mangle pre_b, inet mangle pre_a, ip6 v6 pre" {
		t.Errorf("ipv6 prerouting: %s", got)
	}
	if got := slotNames(HookOrder(rs, FamilyIP, HookPostrouting, HookOptions{}).Slots); got != "the NAT core[ip nat POSTROUTING]" {
		t.Errorf("ipv4 postrouting: %s", got)
	}
}

// TestEvalHookNATCoreAndMarks: a nat chain at -150 runs in the NAT core at -100, so a chain at
// -120 sees the original destination and one at -90 the translated one (as the kernel does,
// see the oracle test); the mark set by the first chain is seen by the later ones.
func TestEvalHookNATCoreAndMarks(t *testing.T) {
	dnat := base("dnat", TypeNAT, HookPrerouting, -150, "accept",
		rule(dport(6, 8080), imm(1, ip4("10.0.0.2")), Expr{Nat: &Nat{Type: "dnat", Family: "ip", RegAddrMin: 1, RegAddrMax: 1, Flags: []string{"map-ips"}}}))
	early := base("early", TypeFilter, HookPrerouting, -120, "accept",
		rule(load("network", 16, 4, 1), eq(1, ip4("192.0.2.1")), imm(1, le32(1)), metaSet("mark", 1)))
	late := base("late", TypeFilter, HookPrerouting, -90, "accept",
		rule(metaLoad("mark", 1), eq(1, le32(1)), load("network", 16, 4, 1), eq(1, ip4("10.0.0.2")), imm(1, le32(2)), metaSet("mark", 1)),
		rule(metaLoad("mark", 1), eq(1, le32(2)), verdict("drop")))
	tbl := &Table{Family: FamilyIP, Name: "t", Handle: 1, Chains: []*Chain{dnat, early, late}}
	rs := &Ruleset{HostOrder: "little", Tables: []*Table{tbl}}
	o := HookOrder(rs, FamilyIP, HookPrerouting, HookOptions{Conntrack: true})
	if got := slotNames(o.Slots); got != "conntrack in, ip t early, the NAT core[ip t dnat], ip t late" {
		t.Fatalf("order %s", got)
	}
	res := rs.EvalHook(o, tcpPkt("198.51.100.7", "192.0.2.1", 40000, 8080, "new", "wan0", ""), nil)
	out := only(t, res)
	if out.Verdict != "drop" || out.Effects.Mark == nil || *out.Effects.Mark != 2 || out.Effects.Nat == nil {
		t.Fatalf("verdict %s mark %v nat %+v path %+v", out.Verdict, out.Effects.Mark, out.Effects.Nat, out.Path)
	}
	// An established connection does not go through the nat chains again.
	p := tcpPkt("198.51.100.7", "192.0.2.1", 40000, 8080, "established", "wan0", "")
	out = only(t, rs.EvalHook(o, p, nil))
	if out.Effects.Nat != nil || out.Verdict != "accept" {
		t.Errorf("established: %s nat %+v", out.Verdict, out.Effects.Nat)
	}
}

func TestEvalHookUndefinedTieIsACondition(t *testing.T) {
	a := &Table{Family: FamilyInet, Name: "a", Handle: 1, Chains: []*Chain{base("pre", TypeFilter, HookPrerouting, 0, "accept",
		rule(metaLoad("mark", 1), eq(1, le32(0)), imm(1, le32(1)), metaSet("mark", 1)))}}
	b := &Table{Family: FamilyInet, Name: "b", Handle: 2, Chains: []*Chain{base("pre", TypeFilter, HookPrerouting, 0, "accept",
		rule(metaLoad("mark", 1), eq(1, le32(0)), imm(1, le32(2)), metaSet("mark", 1)))}}
	rs := &Ruleset{HostOrder: "little", Tables: []*Table{a, b}}
	o := HookOrder(rs, FamilyIP, HookPrerouting, HookOptions{})
	res := rs.EvalHook(o, tcpPkt("198.51.100.7", "192.0.2.1", 1, 2, "new", "wan0", ""), nil)
	if len(res.Outcomes) != 2 {
		t.Fatalf("want one outcome per order: %+v", res.Outcomes)
	}
	for i, want := range []uint32{2, 1} { // the probable order (newer table b first) comes first
		out := res.Outcomes[i]
		if len(out.Conditions) != 1 || !strings.Contains(out.Conditions[0].Reason, "not defined") {
			t.Fatalf("outcome %d conditions %+v", i, out.Conditions)
		}
		if m := out.Effects.Mark; m == nil || *m != want {
			t.Errorf("outcome %d (%s): mark %v, want %d", i, out.Conditions[0].Branch, m, want)
		}
	}
	if c := res.Outcomes[0].Conditions[0]; !strings.HasPrefix(c.Branch, "in the order inet b pre, inet a pre") {
		t.Errorf("first outcome's order %q", c.Branch)
	}
	// When the order makes no difference, there is one outcome and no condition.
	a.Chains[0].Rules = nil
	b.Chains[0].Rules = []*Rule{rule(counter())}
	only(t, rs.EvalHook(o, tcpPkt("198.51.100.7", "192.0.2.1", 1, 2, "new", "wan0", ""), nil))
}
