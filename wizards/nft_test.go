package wizards

import (
	"net/netip"
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/nft"
	"roundtrip/engine/plan"
)

// On a host whose firewall is native nft, a wizard that writes rules says where they go.
func TestWizardNotesNativeNFT(t *testing.T) {
	o := PortForwardOptions{ListenAddr: mustAddr("10.73.5.34"), ListenPort: 81, To: netip.MustParseAddrPort("10.73.5.32:80")}
	s := case5Host(t)
	res, err := o.Plan(s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(res.Notes, "\n"), "native nftables") {
		t.Fatalf("a note about nftables on a host without: %v", res.Notes)
	}
	s.Nftables = &nft.Ruleset{HostOrder: "little", Tables: []*nft.Table{{Family: nft.FamilyInet, Name: "filter"}, {Family: nft.FamilyIP, Name: "nat", Origin: "iptables-nft"}}}
	if res, err = o.Plan(s); err != nil {
		t.Fatal(err)
	}
	if notes := strings.Join(res.Notes, "\n"); !strings.Contains(notes, "this host's firewall is native nftables (inet filter): the plan's rules go into roundtrip's own table inet roundtrip") {
		t.Fatalf("notes: %s", notes)
	}
	if !strings.Contains(string(res.Plan.Script()), "nft -f - <<'RT_NFT_EOF'") {
		t.Fatalf("the script does not load roundtrip's nft table:\n%s", res.Plan.Script())
	}
	s.WriteFirewall = model.FirewallIPTables
	if res, err = o.Plan(s); err != nil {
		t.Fatal(err)
	}
	if notes := strings.Join(res.Notes, "\n"); !strings.Contains(notes, "this host's firewall is native nftables (inet filter): the plan's rules go into iptables' tables") ||
		!strings.Contains(notes, "plan render --format nft") || strings.Contains(notes, "writes into this host's own table") {
		t.Fatalf("notes: %s", notes)
	}
	// A hand-written `table ip nat`: iptables-nft writes into it, not beside it
	// (iptables-legacy does not).
	pre := &nft.Chain{Name: "prerouting", Type: nft.TypeNAT, Hook: nft.HookPrerouting, Priority: -100, Policy: "accept"}
	s.Nftables.Tables[1] = &nft.Table{Family: nft.FamilyIP, Name: "nat", Chains: []*nft.Chain{pre}}
	s.Netfilter.Backend = iptables.BackendLegacy
	if res, err = o.Plan(s); err != nil || strings.Contains(strings.Join(res.Notes, "\n"), "writes into this host's own table") {
		t.Fatalf("iptables-legacy and a native ip nat table: %v %v", err, res.Notes)
	}
	s.Netfilter.Backend = iptables.BackendNFT
	if res, err = o.Plan(s); err != nil {
		t.Fatal(err)
	}
	if notes := strings.Join(res.Notes, "\n"); !strings.Contains(notes, "this host's firewall is native nftables (inet filter, ip nat)") ||
		!strings.Contains(notes, "iptables-nft writes into this host's own table ip nat (it has iptables' name), which nft then calls managed by iptables-nft, and the built-in chain ") ||
		!strings.Contains(notes, "stays, empty, after a rollback") {
		t.Fatalf("notes: %s", notes)
	}
}

// When the plan's FORWARD accept goes into one iptables backend and the other backend's
// FORWARD drops by default, the accept cannot help: the plan says so and what to run.
func TestWizardNotesForwardDropInOtherBackend(t *testing.T) {
	o := PortForwardOptions{ListenAddr: mustAddr("10.73.5.34"), ListenPort: 81, To: netip.MustParseAddrPort("10.73.5.32:80")}
	s := case5Host(t)
	s.Netfilter = iptables.Ruleset{Backend: iptables.BackendNFT, Tables: []iptables.Table{
		{Family: inet.V4, Name: "nat", Backend: iptables.BackendNFT, Chains: []iptables.Chain{
			{Name: "PREROUTING", Policy: "ACCEPT", Rules: []iptables.Rule{{Spec: "-p tcp --dport 8080 -j DNAT --to-destination 10.73.5.40:80"}}},
			{Name: "POSTROUTING", Policy: "ACCEPT"}}},
		{Family: inet.V4, Name: "filter", Backend: iptables.BackendLegacy, Chains: []iptables.Chain{
			{Name: "INPUT", Policy: "ACCEPT"}, {Name: "FORWARD", Policy: "DROP"}, {Name: "OUTPUT", Policy: "ACCEPT"}}},
	}}
	res, err := o.Plan(s)
	if err != nil {
		t.Fatal(err)
	}
	if b := res.Plan.ChainBackend(inet.V4); b != iptables.BackendNFT {
		t.Fatalf("the plan writes into %q, want nf_tables (where the NAT rules are)", b)
	}
	want := "filter FORWARD drops by default in the legacy backend too (iptables-legacy -t filter -P FORWARD DROP) while this plan's accept goes into the nft backend"
	if notes := strings.Join(res.Notes, "\n"); !strings.Contains(notes, want) || !strings.Contains(notes, "--iptables-backend legacy") {
		t.Fatalf("notes:\n%s", notes)
	}
	// The same drop in the backend the plan writes into is what the accept is for: no note.
	s.Netfilter.Tables[1].Backend = iptables.BackendNFT
	if res, err = o.Plan(s); err != nil {
		t.Fatal(err)
	}
	if notes := strings.Join(res.Notes, "\n"); strings.Contains(notes, "drops by default in the") {
		t.Fatalf("a note with the drop in the plan's own backend:\n%s", notes)
	}
}

// CONNMARK with masks has no form in roundtrip's nft table: on a native-nft host the wizard
// that chose nft by itself plans into iptables instead and says why; --firewall nft fails.
func TestWizardFallsBackToIPTablesWithoutNFTForm(t *testing.T) {
	s := case1Host(t)
	s.Nftables = &nft.Ruleset{HostOrder: "little", Tables: []*nft.Table{{Family: nft.FamilyInet, Name: "filter"}}}
	if !s.UseNFT() {
		t.Fatal("a native-nft host without iptables rules does not choose nft")
	}
	o := &SourceReturnOptions{Uplinks: []Uplink{{Iface: "lan0", Gateway: mustAddr("10.73.1.1")}, {Iface: "em1"}}, Mode: ModeConnmark}
	res, err := o.Plan(s)
	if err != nil {
		t.Fatal(err)
	}
	chains, nfts := 0, 0
	for _, c := range res.Plan.Changes {
		switch c.Kind {
		case plan.KindChain:
			chains++
		case plan.KindNFT:
			nfts++
		}
	}
	if chains == 0 || nfts != 0 {
		t.Fatalf("%d iptables chain changes and %d nft ones, want iptables only", chains, nfts)
	}
	if notes := strings.Join(res.Notes, "\n"); !strings.Contains(notes, "this plan's rules go into iptables, not roundtrip's own nft table, which cannot hold them (nft chain") ||
		!strings.Contains(notes, "CONNMARK") {
		t.Fatalf("notes:\n%s", notes)
	}
	if s.WriteFirewall != "" {
		t.Fatalf("planning changed the caller's state: WriteFirewall %q", s.WriteFirewall)
	}
	s.WriteFirewall = model.FirewallNFT
	if _, err := o.Plan(s); err == nil || !strings.Contains(err.Error(), "no translation for -j CONNMARK") {
		t.Fatalf("--firewall nft with CONNMARK masks: %v, want the rule named", err)
	}
}
