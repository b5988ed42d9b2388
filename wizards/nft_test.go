package wizards

import (
	"net/netip"
	"strings"
	"testing"

	"roundtrip/engine/iptables"
	"roundtrip/engine/nft"
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
