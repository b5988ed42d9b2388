package doctor

import (
	"testing"

	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/model/modeltest"
)

// TestDoctorWorkGrowsLinearly counts doctor's steps (loop iterations over the state, index and
// FIB lookups) on a router with 10k and with 100k routes: ten times the routes may cost about
// ten times the steps, not a hundred (a check that scans the routes once per route). It
// counts, it does not time, so a slow or busy machine cannot fail it.
func TestDoctorWorkGrowsLinearly(t *testing.T) {
	ops := func(n int) int {
		s := modeltest.ScaleHost(t, n)
		d := run(s, fib.New(s))
		// The workload keeps every check busy: a full table via two uplinks, gateways off-link,
		// per-uplink tables selected by fwmark, NAT.
		for _, id := range []string{FindingGatewayNotOnLink, FindingTableMissingConnected, FindingUplinkNoReturn} {
			if !hasFinding(d.out, id) {
				t.Fatalf("%d routes: no %s finding; the workload does not exercise that check: %v", n, id, finding.IDs(d.out))
			}
		}
		return d.ops
	}
	small, large := ops(10_000), ops(100_000)
	t.Logf("steps: %d at 10k routes, %d at 100k (%.1fx)", small, large, float64(large)/float64(small))
	if large > 12*small {
		t.Errorf("doctor took %d steps at 100k routes and %d at 10k: %.1fx for 10x the routes, want at most 12x", large, small, float64(large)/float64(small))
	}
}

func hasFinding(fs []finding.Finding, id string) bool {
	for _, f := range fs {
		if f.ID == id {
			return true
		}
	}
	return false
}
