package model

import (
	"errors"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/nft"
)

// nftState is sampleState with a native nft table: a base chain whose one rule counts and
// accepts.
func nftState(chain string) *State {
	s := sampleState()
	s.Nftables = &nft.Ruleset{HostOrder: "little", Tables: []*nft.Table{
		{Family: nft.FamilyInet, Name: "fw", Handle: 1, Chains: []*nft.Chain{
			{Name: chain, Handle: 1, Type: nft.TypeFilter, Hook: nft.HookForward, Policy: "drop", Rules: []*nft.Rule{
				{Handle: 2, Text: "counter packets 3 bytes 180 accept", Exprs: []nft.Expr{{Counter: &nft.Counter{Packets: 3, Bytes: 180}}, {Verdict: &nft.Verdict{Kind: "accept"}}}},
			}},
		}},
		{Family: nft.FamilyIP, Name: "nat", Handle: 2, Origin: "iptables-nft"},
	}}
	return s
}

func TestSnapshotKeepsNFTables(t *testing.T) {
	s := nftState("forward")
	if !s.NativeNFT() {
		t.Fatal("a native table is not seen as one")
	}
	b, err := NewSnapshot(s, time.Unix(0, 0)).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := ParseSnapshot(b)
	if err != nil {
		t.Fatalf("parsing a snapshot with nftables: %v", err)
	}
	// Version 2 holds nftables; a state without stays version 1, which older loaders read.
	if snap.Version != 2 || NewSnapshot(sampleState(), time.Unix(0, 0)).Version != 1 {
		t.Errorf("versions %d (with nftables), %d (without)", snap.Version, NewSnapshot(sampleState(), time.Unix(0, 0)).Version)
	}
	if d := Diff(s, snap.State); d != "" || snap.State.Nftables == nil || len(snap.State.Nftables.Tables) != 2 {
		t.Fatalf("nftables changed through a snapshot: %s", d)
	}
	// Lines: the native table, its chain, its rule without the counter's values; not
	// iptables-nft's table.
	lines := strings.Join(s.Lines(), "\n")
	for _, want := range []string{"nft table inet fw", "nft chain inet fw forward type filter hook forward priority 0 policy drop", "nft rule inet fw forward [1] counter accept"} {
		if !strings.Contains(lines, want) {
			t.Errorf("Lines lack %q:\n%s", want, lines)
		}
	}
	if strings.Contains(lines, "ip nat") || strings.Contains(lines, "packets 3") {
		t.Errorf("Lines show iptables-nft's table or counters:\n%s", lines)
	}
	// A state with only iptables-nft's tables has no native nft.
	only := nftState("forward")
	only.Nftables.Tables = only.Nftables.Tables[1:]
	if only.NativeNFT() {
		t.Error("iptables-nft's table counted as native")
	}
}

func TestSnapshotRefusesBadNFTables(t *testing.T) {
	b, err := NewSnapshot(nftState("for\x1bward"), time.Unix(0, 0)).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseSnapshot(b); !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), "nftables") {
		t.Fatalf("a chain name with an escape character: %v", err)
	}
	s := nftState("forward")
	s.Nftables.HostOrder = "middle"
	b, _ = NewSnapshot(s, time.Unix(0, 0)).Marshal()
	if _, err := ParseSnapshot(b); !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), "host_order") {
		t.Fatalf("a bad host order: %v", err)
	}
}
