package doctor

import (
	"strings"
	"testing"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model/modeltest"
)

// TestDoctorBackendsMixed: a DNAT in iptables-legacy and a DROP in iptables-nft is reported
// as a split, naming both rules by the commands that list them; one backend alone is not.
func TestDoctorBackendsMixed(t *testing.T) {
	s := modeltest.Host(t, `
link wan0 100.64.0.1/24
link lan0 100.140.0.1/24
sysctl net.ipv4.ip_forward=1
`)
	legacy, err := iptables.ParseSave(inet.V4, []byte("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -i wan0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 100.140.0.10:80\nCOMMIT\n"))
	if err != nil {
		t.Fatal(err)
	}
	nft, err := iptables.ParseSave(inet.V4, []byte("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp -m tcp --dport 80 -j DROP\nCOMMIT\n"))
	if err != nil {
		t.Fatal(err)
	}
	legacy[0].Backend, nft[0].Backend = iptables.BackendLegacy, iptables.BackendNFT
	s.Netfilter = iptables.Ruleset{Backend: iptables.BackendNFT, Tables: append(legacy, nft...)}
	fs := Run(s, fib.New(s))
	wantDoctor(t, fs, FindingIPTablesBackendsMixed)
	f := fs[0]
	ev := strings.Join(f.Evidence, "\n")
	for _, want := range []string{"iptables-legacy -t nat -A PREROUTING -i wan0", "iptables-nft -t filter -A FORWARD -p tcp"} {
		if !strings.Contains(ev, want) {
			t.Errorf("evidence lacks %q:\n%s", want, ev)
		}
	}
	if !strings.Contains(f.Fix.Summary, "iptables-legacy-save") || !strings.Contains(f.Fix.Summary, "iptables-nft-save") {
		t.Errorf("fix %q does not give both commands", f.Fix.Summary)
	}
	if !strings.Contains(f.Summary, "1 in legacy (nat)") || !strings.Contains(f.Summary, "1 in nft (filter)") {
		t.Errorf("summary %q does not say where the rules are", f.Summary)
	}

	// One backend only (plus an empty table in the other, as `iptables-legacy -L` leaves): no split.
	empty, _ := iptables.ParseSave(inet.V4, []byte("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"))
	empty[0].Backend = iptables.BackendNFT
	s.Netfilter.Tables = append(legacy, empty...)
	wantDoctor(t, Run(s, fib.New(s)))
}
