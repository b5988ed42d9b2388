package nftread

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/nft"
)

// TestPrivilegedUnknownExpressions: an expression the decoder does not model is kept as
// Unknown, named by the text `nft -j` gives it, and makes a packet that reaches it uncertain
// while a packet that does not reach it stays certain.
func TestPrivilegedUnknownExpressions(t *testing.T) {
	requireNft(t)
	l := lab.New(t)
	ns := l.NS("fw")
	ns.Run("nft", "-f", "testdata/unknown.nft")

	bare, err := Read(context.Background(), kernel.Namespace{Name: ns.Name}, Options{NoFallback: true})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Read(context.Background(), kernel.Namespace{Name: ns.Name}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Validate(); err != nil {
		t.Fatal(err)
	}
	chain := rs.Table(nft.FamilyIP, "u").Chain("pre")
	want := []string{"dup addr 10.81.9.9", "tproxy port 1234"}
	for i, w := range want {
		var u *nft.Unknown
		for _, e := range chain.Rules[i].Exprs {
			if e.Unknown != nil {
				u = e.Unknown
			}
		}
		if u == nil {
			t.Fatalf("rule %d: no unknown expression in %+v", i, chain.Rules[i].Exprs)
		}
		if u.Text != w || !strings.Contains(chain.Rules[i].Text, w) {
			t.Errorf("rule %d: unknown %q (%q) rule text %q, want %q", i, u.Name, u.Text, chain.Rules[i].Text, w)
		}
		var bu *nft.Unknown
		for _, e := range bare.Table(nft.FamilyIP, "u").Chain("pre").Rules[i].Exprs {
			if e.Unknown != nil {
				bu = e.Unknown
			}
		}
		if bu == nil || bu.Text != "" || bu.Name != u.Name {
			t.Errorf("without the fallback: %+v", bu)
		}
	}
	if len(rs.Notes) != 1 || len(bare.Notes) != 0 {
		t.Errorf("notes %q / %q", rs.Notes, bare.Notes)
	}
	tbl := rs.Table(nft.FamilyIP, "u")
	pkt := func(port uint16) *nft.PacketInfo {
		return &nft.PacketInfo{Proto: 2, L4: 6, Src: netip.MustParseAddr("198.18.81.2"), Dst: netip.MustParseAddr("198.18.81.1"),
			SPort: 40000, DPort: port, HasPorts: true, In: &nft.Iface{Name: "wan0", Index: 2}, CTEntry: &nft.CT{State: "new"}}
	}
	res := rs.EvalChain(tbl, chain, pkt(80), nil)
	if len(res.Outcomes) != 2 || res.Outcomes[0].Conditions[0].Expr != "dup addr 10.81.9.9" || res.Outcomes[0].Conditions[0].Reason != "not modelled" {
		t.Errorf("port 80: %+v", res.Outcomes)
	}
	if res := rs.EvalChain(tbl, chain, pkt(82), nil); !res.Certain() || res.Outcomes[0].Verdict != "accept" {
		t.Errorf("port 82 does not reach the unknown expressions: %+v", res.Outcomes)
	}
}

// MayHaveNative: false for a namespace whose only tables are iptables-nft's, true once a
// native table is added (even one named like iptables-nft's).
func TestPrivilegedMayHaveNative(t *testing.T) {
	lab.Require(t)
	lab.RequireTool(t, "nft", "iptables-nft")
	ns := lab.New(t).NS("hnf-native")
	kns := kernel.Namespace{Name: ns.Name}
	if native, err := MayHaveNative(kns); err != nil || native {
		t.Fatalf("empty namespace: %v %v", native, err)
	}
	ns.Run("iptables-nft", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "MASQUERADE")
	ns.Run("iptables-nft", "-w", "-A", "FORWARD", "-j", "ACCEPT")
	if native, err := MayHaveNative(kns); err != nil || native {
		t.Fatalf("iptables-nft's tables only: %v %v", native, err)
	}
	ns.Run("nft", "add", "table", "ip", "mangle")
	ns.Run("nft", "add", "chain", "ip", "mangle", "prerouting", "{ type filter hook prerouting priority mangle; }")
	if native, err := MayHaveNative(kns); err != nil || !native {
		t.Fatalf("a native ip mangle table: %v %v", native, err)
	}
}
