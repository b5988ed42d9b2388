package pages

import (
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/ui/common"
)

// TestNATPageBackends: with rules in both iptables backends the page lists each backend's
// chains, tagged, warns that the kernel runs both, and a rule's detail names the command that
// lists it.
func TestNATPageBackends(t *testing.T) {
	s := bigTable(0)
	s.Netfilter = iptables.Ruleset{Backend: iptables.BackendNFT}
	for _, b := range []struct{ name, text string }{
		{iptables.BackendLegacy, "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -i wan0 -p tcp --dport 8080 -j DNAT --to-destination 100.140.0.10:80\nCOMMIT\n"},
		{iptables.BackendNFT, "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp --dport 53 -j DNAT --to-destination 100.140.0.53\nCOMMIT\n"},
	} {
		tables, err := iptables.ParseSave(inet.V4, []byte(b.text))
		if err != nil {
			t.Fatal(err)
		}
		tables[0].Backend = b.name
		s.Netfilter.Tables = append(s.Netfilter.Tables, tables...)
	}
	p := NewNAT(testCommon())
	p.Update(common.StateMsg{State: s, Routes: common.IndexRoutes(s)})
	view := p.View(160, 20)
	for _, want := range []string{"rules in both iptables backends", "PREROUTING [legacy]", "PREROUTING [nft]", "--to-destination 100.140.0.10:80", "--to-destination 100.140.0.53"} {
		if !strings.Contains(view, want) {
			t.Errorf("view lacks %q:\n%s", want, view)
		}
	}
	var legacyRule *natRow
	for i := range p.rows {
		if !p.rows[i].header && strings.Contains(p.rows[i].text, "8080") {
			legacyRule = &p.rows[i]
		}
	}
	if legacyRule == nil {
		t.Fatalf("no row for the legacy DNAT: %+v", p.rows)
	}
	d := p.rowDetail(*legacyRule).View(160, 20)
	if !strings.Contains(d, "iptables-legacy -t nat -A PREROUTING -i wan0") || !strings.Contains(d, "legacy") {
		t.Errorf("detail of the legacy rule does not name iptables-legacy:\n%s", d)
	}
}
