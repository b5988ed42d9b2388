package cli

import (
	"io"
	"strings"

	// The nftables reader registers itself with kernel.Read: linking it in makes every
	// command (and the console, and diagnose) read native nft rulesets.
	_ "roundtrip/engine/kernel/nftread"
	"roundtrip/engine/nft"
	"roundtrip/engine/quote"
)

// renderNFTables prints the native nftables tables as `nft -a list ruleset` does (the
// iptables-nft tables are shown above as iptables rules).
func renderNFTables(w io.Writer, rs *nft.Ruleset) {
	if rs == nil {
		return
	}
	quote.TermFprintf(w, "\nNFTABLES (native tables, modelled by trace)\n")
	r := nft.NewRenderer(rs.HostOrder)
	for _, t := range rs.Tables {
		if t = t.NativeView(); t == nil {
			continue
		}
		for _, line := range r.List(t) {
			quote.TermFprintf(w, "  %s\n", strings.ReplaceAll(line, "\t", "  "))
		}
	}
	for _, n := range rs.Notes {
		quote.TermFprintf(w, "  note: %s\n", n)
	}
}
