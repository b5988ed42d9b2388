package wizards

import (
	"fmt"
	"slices"
	"strings"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/nft"
	"roundtrip/engine/plan"
)

// nftNote says where a plan's netfilter rules go on a host whose firewall is native
// nftables: into iptables' tables (of the host's iptables backend), beside its nft tables, whose
// chains run with them in priority order. Empty when the plan changes no chain or the host
// has no native nft table.
func nftNote(s *model.State, p *plan.Plan) string {
	if !s.NativeNFT() || !slices.ContainsFunc(p.Changes, func(c plan.Change) bool { return c.Kind == plan.KindChain }) {
		return ""
	}
	var native []string
	for _, t := range s.Nftables.Tables {
		if t.HasNative() {
			native = append(native, t.String())
		}
	}
	return "this host's firewall is native nftables (" + strings.Join(native, ", ") + "): the plan's rules go into iptables' " +
		"tables, beside those; both run on each hook in priority order, so a drop or a NAT " +
		"in an nft chain still applies (roundtrip trace shows both). `roundtrip plan render --format nft` gives " +
		"the same rules as a native nft table to load instead" + sharedTables(s, p)
}

// sharedTables warns, for each native nft table that has the name of an iptables table the
// plan writes into through iptables-nft (a hand-written `table ip nat`), that iptables-nft
// writes into that very table: nft then calls the whole table managed by iptables-nft, and
// the built-in chains iptables-nft adds to it for the plan's jumps stay after a rollback
// (empty, with policy accept).
func sharedTables(s *model.State, p *plan.Plan) string {
	var out []string
	for _, c := range p.Changes {
		if c.Kind != plan.KindChain || c.Chain == nil || c.Chain.Backend == iptables.BackendLegacy ||
			c.Chain.Backend == "" && s.Netfilter.Backend == iptables.BackendLegacy {
			continue
		}
		fam := nft.FamilyIP
		if c.Chain.Family == inet.V6 {
			fam = nft.FamilyIP6
		}
		t := s.Nftables.Table(fam, c.Chain.Table)
		if t == nil || !t.HasNative() {
			continue
		}
		var added []string
		for _, j := range c.Chain.Jumps {
			if t.Chain(j.Chain) == nil && !slices.Contains(added, j.Chain) {
				added = append(added, j.Chain)
			}
		}
		w := fmt.Sprintf("; iptables-nft writes into this host's own table %s (it has iptables' name), which nft then calls managed by iptables-nft", t)
		if len(added) > 0 {
			w += fmt.Sprintf(", and the built-in chain %s it adds there stays, empty, after a rollback", strings.Join(added, ", "))
		}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return strings.Join(out, "")
}
