package wizards

import (
	"net/netip"
	"strings"
	"testing"

	"roundtrip/engine/model"
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
		!strings.Contains(notes, "plan render --format nft") {
		t.Fatalf("notes: %s", notes)
	}
}
