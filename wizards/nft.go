package wizards

import (
	"slices"
	"strings"

	"roundtrip/engine/model"
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
		if t.Origin == "" {
			native = append(native, t.String())
		}
	}
	return "this host's firewall is native nftables (" + strings.Join(native, ", ") + "): the plan's rules go into iptables' " +
		"tables, beside those; both run on each hook in priority order, so a drop or a NAT " +
		"in an nft chain still applies (roundtrip trace shows both). `roundtrip plan render --format nft` gives " +
		"the same rules as a native nft table to load instead"
}
