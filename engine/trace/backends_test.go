package trace

import (
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/model/modeltest"
)

// routerWithBackends is a router (wan0 100.64.0.1, lan0 100.140.0.1) whose iptables rules are
// split across backends as given (iptables-save text per backend); iptables itself is
// iptables-nft, as on Debian.
func routerWithBackends(t *testing.T, legacy, nft string) *model.State {
	t.Helper()
	s := modeltest.Host(t, `
link wan0 100.64.0.1/24
link lan0 100.140.0.1/24
sysctl net.ipv4.ip_forward=1
`)
	s.Netfilter = iptables.Ruleset{Backend: iptables.BackendNFT}
	for _, b := range []struct{ name, text string }{{iptables.BackendLegacy, legacy}, {iptables.BackendNFT, nft}} {
		tables, err := iptables.ParseSave(inet.V4, []byte(b.text))
		if err != nil {
			t.Fatal(err)
		}
		for i := range tables {
			tables[i].Backend = b.name
		}
		s.Netfilter.Tables = append(s.Netfilter.Tables, tables...)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

const dnat8080 = `*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i wan0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 100.140.0.10:80
COMMIT
`

const drop80 = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp -m tcp --dport 80 -j DROP
COMMIT
`

// backendStep is stepIndex for a step of one backend's table.
func backendStep(l *Leg, hook, backend, contains string) int {
	for i, s := range l.Steps {
		if s.Hook == hook && s.Backend == backend && strings.Contains(s.What+" "+s.Rule, contains) {
			return i
		}
	}
	return -1
}

// The report: the only rule is in iptables-legacy while iptables is iptables-nft; the
// trace must see the DNAT, and name the rule by the command that lists it.
func TestTraceLegacyOnlyDNAT(t *testing.T) {
	s := routerWithBackends(t, dnat8080, "")
	r := trace(t, s, "tcp 100.64.0.7:40000 100.64.0.1:8080 wan0")
	if r.Forward.Verdict != LegForward || r.Forward.OIF != "lan0" {
		t.Fatalf("forward = %s via %s, want forwarded to lan0\n%s", r.Forward.Verdict, r.Forward.OIF, dumpLeg(&r.Forward))
	}
	i := stepIndex(&r.Forward, "nat PREROUTING", "DNAT 100.64.0.1:8080 -> 100.140.0.10:80")
	if i < 0 || !strings.HasPrefix(r.Forward.Steps[i].Rule, "iptables-legacy -t nat -A PREROUTING") {
		t.Errorf("no DNAT step naming iptables-legacy:\n%s", dumpLeg(&r.Forward))
	}
	wantFindings(t, r, FindingAssumedReturnRoute)
}

// A DNAT in one backend, a DROP in the other: different tables, so the order is defined
// (nat -100 before filter 0), and the packet is translated, then dropped by nft's FORWARD.
func TestTraceSplitBackends(t *testing.T) {
	for _, c := range []struct{ name, legacy, nft, dropBy string }{
		{"dnat legacy, drop nft", dnat8080, drop80, "nft"},
		{"dnat nft, drop legacy", drop80, dnat8080, "legacy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := routerWithBackends(t, c.legacy, c.nft)
			r := trace(t, s, "tcp 100.64.0.7:40000 100.64.0.1:8080 wan0")
			if r.Forward.Verdict != LegDrop {
				t.Fatalf("forward = %s, want drop\n%s", r.Forward.Verdict, dumpLeg(&r.Forward))
			}
			dnatBy := map[string]string{"nft": "legacy", "legacy": "nft"}[c.dropBy]
			if backendStep(&r.Forward, "nat PREROUTING", dnatBy, "DNAT 100.64.0.1:8080 -> 100.140.0.10:80") < 0 {
				t.Errorf("no DNAT step in %s:\n%s", dnatBy, dumpLeg(&r.Forward))
			}
			f := r.Finding(FindingFiltered)
			if f == nil || !strings.Contains(f.Summary, "filter FORWARD ("+c.dropBy+")") || !strings.HasPrefix(f.Evidence[0], iptables.BackendCommand(inet.V4, map[string]string{"nft": iptables.BackendNFT, "legacy": iptables.BackendLegacy}[c.dropBy])+" -t filter -A FORWARD") {
				t.Errorf("filtered finding = %+v, want the %s FORWARD DROP named", f, c.dropBy)
			}
			if r.Has(FindingUncertain) {
				t.Errorf("an uncertain finding for tables whose order is defined: %+v", r.Findings)
			}
		})
	}
}

// Both backends DNAT the same packet elsewhere: which runs first is not defined, the first
// DNAT wins, so the trace says so naming both rules, and goes on with nft first.
func TestTraceBackendsUndefinedOrder(t *testing.T) {
	other := strings.ReplaceAll(dnat8080, "100.140.0.10:80", "100.140.0.20:80")
	s := routerWithBackends(t, dnat8080, other)
	r := trace(t, s, "tcp 100.64.0.7:40000 100.64.0.1:8080 wan0")
	f := r.Finding(FindingUncertain)
	if f == nil {
		t.Fatalf("no uncertain finding: %+v\n%s", r.Findings, dumpLeg(&r.Forward))
	}
	ev := strings.Join(f.Evidence, "\n")
	for _, want := range []string{"iptables-legacy -t nat -A PREROUTING", "--to-destination 100.140.0.10:80", "iptables-nft -t nat -A PREROUTING", "--to-destination 100.140.0.20:80",
		"nft first: accept, tcp 100.64.0.7:40000 -> 100.140.0.20:80", "legacy first: accept, tcp 100.64.0.7:40000 -> 100.140.0.10:80"} {
		if !strings.Contains(ev, want) {
			t.Errorf("uncertain finding does not name %q:\n%s", want, ev)
		}
	}
	if backendStep(&r.Forward, "nat PREROUTING", "nft", "-> 100.140.0.20:80") < 0 || backendStep(&r.Forward, "nat PREROUTING", "legacy", "") >= 0 {
		t.Errorf("want nft's DNAT and legacy's nat not consulted after it:\n%s", dumpLeg(&r.Forward))
	}
	// The same DNAT in both: the order does not matter, and nothing is said.
	s = routerWithBackends(t, dnat8080, dnat8080)
	if r := trace(t, s, "tcp 100.64.0.7:40000 100.64.0.1:8080 wan0"); r.Has(FindingUncertain) {
		t.Errorf("uncertain finding for an order that changes nothing: %+v", r.Findings)
	}
}

// Rules iptables-nft-save warned about but nobody could read make the trace uncertain.
func TestTraceHiddenBackend(t *testing.T) {
	s := routerWithBackends(t, "", "")
	s.Netfilter.Hidden = []string{"iptables-nft-save warns \"Warning: iptables-legacy tables present\", but iptables-legacy-save is not installed"}
	r := trace(t, s, "tcp 100.64.0.7:40000 100.64.0.1:8080 wan0")
	f := r.Finding(FindingUncertain)
	if f == nil || !strings.Contains(strings.Join(f.Evidence, " "), "iptables-legacy-save is not installed") {
		t.Errorf("uncertain finding = %+v, want the hidden legacy tables", f)
	}
}

// A DROP in both backends' FORWARD: whichever runs first, the packet is dropped; the order
// does not matter and nothing is said about it.
func TestTraceBackendsBothDrop(t *testing.T) {
	s := routerWithBackends(t, drop80, drop80)
	r := trace(t, s, "tcp 100.64.0.7:40000 100.140.0.10:80 wan0")
	if r.Forward.Verdict != LegDrop || r.Has(FindingUncertain) {
		t.Errorf("forward %s, findings %+v; want a drop and nothing uncertain", r.Forward.Verdict, r.Findings)
	}
}
