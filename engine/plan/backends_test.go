package plan

import (
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
)

// TestPlanBackends: a plan's chains name their iptables backend, from the host's rules; the
// summary, script and iptables-restore file say it, the inverse keeps it, and a plan file with
// an unknown backend or two backends in one family is refused.
func TestPlanBackends(t *testing.T) {
	legacyNAT, err := iptables.ParseSave(inet.V4, []byte("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp --dport 22 -j DNAT --to-destination 10.0.0.2\nCOMMIT\n"))
	if err != nil {
		t.Fatal(err)
	}
	legacyNAT[0].Backend = iptables.BackendLegacy
	cur := &model.State{Netfilter: iptables.Ruleset{Backend: iptables.BackendNFT, Tables: legacyNAT}}
	d := &Desired{Intent: "test", Chains: []ChainSpec{{Family: inet.V4, Table: "nat", Name: "RT-PF-PRE", Jumps: []Jump{{Chain: "PREROUTING"}}, Rules: []string{"-p tcp --dport 80 -j DNAT --to-destination 10.0.0.3"}}}}
	p, err := d.Plan(cur)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 1 || p.Changes[0].Chain.Backend != iptables.BackendLegacy {
		t.Fatalf("plan = %+v, want one chain in the legacy backend (where the host's nat rules are)", p.Changes)
	}
	if s := p.Changes[0].Summary(); !strings.HasPrefix(s, "iptables-legacy -t nat: chain RT-PF-PRE") {
		t.Errorf("summary %q does not name the backend", s)
	}
	if s := string(p.Script()); !strings.Contains(s, "iptables-legacy -w -t nat -A RT-PF-PRE") {
		t.Errorf("script does not write into iptables-legacy:\n%s", s)
	}
	if s := string(p.IPTablesRestore(inet.V4, cur)); !strings.Contains(s, "iptables-legacy-restore --noflush -w") {
		t.Errorf("restore file does not name iptables-legacy-restore:\n%s", s)
	}
	undo, err := p.Changes[0].Inverse(cur)
	if err != nil || len(undo) != 1 || undo[0].Chain.Backend != iptables.BackendLegacy {
		t.Errorf("inverse = %+v, %v; want the chain deleted from the legacy backend", undo, err)
	}

	// The user's choice wins.
	cur.Netfilter.WriteBackend = iptables.BackendNFT
	if p, err := d.Plan(cur); err != nil || p.Changes[0].Chain.Backend != iptables.BackendNFT {
		t.Errorf("with --iptables-backend nft: %+v, %v", p, err)
	}

	bad := New("x")
	bad.Changes = []Change{{Kind: KindChain, Op: OpSet, Chain: &ChainSpec{Family: inet.V4, Backend: "bpf", Table: "nat", Name: "RT-X"}}}
	if err := bad.Check(); err == nil || !strings.Contains(err.Error(), `field backend "bpf"`) {
		t.Errorf("unknown backend: %v", err)
	}
	bad.Changes = []Change{
		{Kind: KindChain, Op: OpSet, Chain: &ChainSpec{Family: inet.V4, Backend: iptables.BackendLegacy, Table: "nat", Name: "RT-X"}},
		{Kind: KindChain, Op: OpSet, Chain: &ChainSpec{Family: inet.V4, Backend: iptables.BackendNFT, Table: "mangle", Name: "RT-Y"}},
	}
	if err := bad.Check(); err == nil || !strings.Contains(err.Error(), "one backend") {
		t.Errorf("two backends in one family: %v", err)
	}
}
