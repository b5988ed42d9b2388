package doctor

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"roundtrip/engine/fib"
	"roundtrip/engine/model/modeltest"
	"roundtrip/engine/nft"
)

func nftIfname(s string) []byte { b := make([]byte, 16); copy(b, s); return b }

func nftRule(handle uint64, text string, exprs ...nft.Expr) *nft.Rule {
	return &nft.Rule{Handle: handle, Text: text, Exprs: exprs}
}

func nftLoad(key string) nft.Expr { return nft.Expr{Meta: &nft.Meta{Key: key, Dreg: 1}} }
func nftEq(data []byte) nft.Expr  { return nft.Expr{Cmp: &nft.Cmp{Op: "eq", Sreg: 1, Data: data}} }
func nftGoto(kind, chain string) nft.Expr {
	return nft.Expr{Verdict: &nft.Verdict{Kind: kind, Chain: chain}}
}

// TestDoctorNFTDNATOnlyReachedFromItsZone is TestDoctorDNATOnlyReachedFromItsZone for
// firewalld's nft backend: its nat prerouting chain jumps to the zone dispatch, which goes to
// the chain of the packet's interface's zone; the public zone's DNAT to a backend on eth1 is
// no hairpin problem while eth1's packets go to the internal zone, and is one without that.
func TestDoctorNFTDNATOnlyReachedFromItsZone(t *testing.T) {
	for _, internal := range []bool{true, false} {
		s := modeltest.Host(t, `
link eth0 198.18.94.1/24
link eth1 10.94.1.1/24
sysctl net.ipv4.ip_forward=1
`)
		var zones []*nft.Rule
		if internal {
			zones = append(zones, nftRule(11, `iifname "eth1" goto nat_PRE_internal`, nftLoad("iifname"), nftEq(nftIfname("eth1")), nftGoto("goto", "nat_PRE_internal")))
		}
		zones = append(zones,
			nftRule(12, `iifname "eth0" goto nat_PRE_public`, nftLoad("iifname"), nftEq(nftIfname("eth0")), nftGoto("goto", "nat_PRE_public")),
			nftRule(13, `goto nat_PRE_public`, nftGoto("goto", "nat_PRE_public")))
		backend := netip.MustParseAddr("10.94.1.2").As4()
		dnat := nftRule(20, `tcp dport 8443 dnat ip to 10.94.1.2:443`,
			nftLoad("l4proto"), nftEq([]byte{6}),
			nft.Expr{Payload: &nft.Payload{Base: "transport", Offset: 2, Len: 2, Dreg: 1}}, nftEq(binary.BigEndian.AppendUint16(nil, 8443)),
			nft.Expr{Immediate: &nft.Immediate{Dreg: 1, Data: backend[:]}},
			nft.Expr{Immediate: &nft.Immediate{Dreg: 2, Data: binary.BigEndian.AppendUint16(nil, 443)}},
			nft.Expr{Nat: &nft.Nat{Type: "dnat", Family: "ip", RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: 2, RegProtoMax: 2, Flags: []string{"map-ips", "proto-specified"}}})
		s.Nftables = &nft.Ruleset{HostOrder: "little", Tables: []*nft.Table{{Family: nft.FamilyInet, Name: "firewalld", Handle: 1, Chains: []*nft.Chain{
			{Name: "nat_PREROUTING", Handle: 1, Type: nft.TypeNAT, Hook: nft.HookPrerouting, Priority: -90, Policy: "accept",
				Rules: []*nft.Rule{nftRule(10, "jump nat_PREROUTING_ZONES", nftGoto("jump", "nat_PREROUTING_ZONES"))}},
			{Name: "nat_PREROUTING_ZONES", Handle: 2, Rules: zones},
			{Name: "nat_PRE_public", Handle: 3, Rules: []*nft.Rule{dnat}},
			{Name: "nat_PRE_internal", Handle: 4},
			{Name: "nat_POSTROUTING", Handle: 5, Type: nft.TypeNAT, Hook: nft.HookPostrouting, Priority: 110, Policy: "accept"},
		}}}}
		fs := Run(s, fib.New(s))
		if internal {
			wantDoctor(t, fs)
		} else {
			wantDoctor(t, fs, FindingDNATWithoutSNAT)
		}
	}
}
