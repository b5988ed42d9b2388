package cli

import (
	"roundtrip/engine/kernel/nftrace"
	"roundtrip/engine/quote"
)

// removeTraceTables removes the rule tracer's tables that capture or diagnose runs killed
// before they could clean up left in the invocation's namespace, with their records, and
// says so on stderr. A namespace without nf_tables has none: the failure to look is only
// reported when a record says a table was made there.
func removeTraceTables(inv *Invocation) []string {
	removed, err := nftrace.Cleanup(inv.NetNS)
	for _, t := range removed {
		quote.TermFprintf(inv.Stderr, "roundtrip: removed trace table inet %s (its capture or diagnose was killed)\n", t)
	}
	if err != nil && recordedTraceTables(inv.NetNS) {
		quote.TermFprintf(inv.Stderr, "roundtrip: removing leftover trace tables: %v\n", err)
	}
	return removed
}

func recordedTraceTables(ns string) bool {
	ms, err := nftrace.Markers()
	for _, m := range ms {
		if m.Netns == ns {
			return true
		}
	}
	return err != nil // an unreadable record may be one
}
