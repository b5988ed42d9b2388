package nft

import "testing"

// A hand-written `table ip nat` that iptables-nft later wrote into: the compat rule makes it
// iptables-nft's, its own base chain (and what that jumps to) stays native.
func TestNativeChainsOfASharedTable(t *testing.T) {
	pre := &Chain{Name: "prerouting", Handle: 1, Type: TypeNAT, Hook: HookPrerouting, Priority: -100, Policy: "accept", Rules: []*Rule{
		{Handle: 5, Text: "jump wan_dnat", Exprs: []Expr{{Verdict: &Verdict{Kind: "jump", Chain: "wan_dnat"}}}},
		{Handle: 6, Text: "ip daddr vmap @by_dst", Exprs: []Expr{{Lookup: &Lookup{Set: "by_dst", Sreg: 1, HasDreg: true}}}},
	}}
	wanDNAT := &Chain{Name: "wan_dnat", Handle: 2}
	viaMap := &Chain{Name: "via_map", Handle: 3}
	unused := &Chain{Name: "unused", Handle: 4}
	builtin := &Chain{Name: "POSTROUTING", Handle: 7, Type: TypeNAT, Hook: HookPostrouting, Priority: 100, Policy: "accept", Rules: []*Rule{
		{Handle: 9, Text: "jump RT-MW-NAT", Exprs: []Expr{{Verdict: &Verdict{Kind: "jump", Chain: "RT-MW-NAT"}}}},
	}}
	rt := &Chain{Name: "RT-MW-NAT", Handle: 8, Rules: []*Rule{{Handle: 10, Text: "snat", Exprs: []Expr{{Xt: &Xt{Kind: "target", Name: "SNAT"}}}}}}
	byDst := &Set{Name: "by_dst", Elements: []Element{{Verdict: &Verdict{Kind: "goto", Chain: "via_map"}}}}
	shared := &Table{Family: FamilyIP, Name: "nat", Handle: 1, Chains: []*Chain{pre, wanDNAT, viaMap, unused, builtin, rt}, Sets: []*Set{byDst}}
	DetectOrigins(&Ruleset{Tables: []*Table{shared}})
	if shared.Origin != "iptables-nft" {
		t.Fatalf("origin %q (%s), want iptables-nft: a compat rule is there", shared.Origin, shared.OriginWhy)
	}
	for c, want := range map[*Chain]bool{pre: true, wanDNAT: true, viaMap: true, unused: false, builtin: false, rt: false} {
		if got := shared.Native(c); got != want {
			t.Errorf("Native(%s) = %v, want %v", c.Name, got, want)
		}
	}
	v := shared.NativeView()
	if !shared.HasNative() || v == nil || len(v.Chains) != 3 || v.Chains[0] != pre || len(shared.Chains) != 6 {
		t.Fatalf("native view %+v of %+v", v, shared)
	}

	// iptables-nft's own layout alone has no native chain.
	own := &Table{Family: FamilyIP, Name: "nat", Handle: 2, Chains: []*Chain{builtin, rt}}
	DetectOrigins(&Ruleset{Tables: []*Table{own}})
	if own.HasNative() || own.NativeView() != nil || own.Native(builtin) {
		t.Errorf("iptables-nft's own table has native chains: %+v", own.NativeView())
	}
	// A native table is native throughout.
	native := &Table{Family: FamilyInet, Name: "filter", Handle: 3, Chains: []*Chain{unused}}
	DetectOrigins(&Ruleset{Tables: []*Table{native}})
	if !native.HasNative() || native.NativeView() != native || !native.Native(unused) {
		t.Errorf("a native table is not native")
	}
}
