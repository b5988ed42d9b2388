package cli

import (
	"strings"
	"testing"

	"roundtrip/engine/model/modeltest"
)

// TestShowWorkGrowsLinearly counts the routes show's rendering visits on a router with 10k and
// with 100k routes (in a hundred tables at 100k): ten times the routes may cost about ten times
// the visits, not a scan of every route per table. It counts, it does not time.
func TestShowWorkGrowsLinearly(t *testing.T) {
	for _, limit := range []int{20, -1} {
		ops := func(n int) int64 {
			s := modeltest.ScaleHost(t, n)
			var b strings.Builder
			before := showOps.Load()
			renderShow(&b, s, -1, limit)
			if !strings.Contains(b.String(), "TABLE 1000: 1 route(s)") || !strings.Contains(b.String(), "11.0.0.0/24 via 192.0.2.1 dev eth0") {
				t.Fatalf("show of %d routes lacks the tables:\n%.2000s", n, b.String())
			}
			return showOps.Load() - before
		}
		small, large := ops(10_000), ops(100_000)
		t.Logf("limit %d: %d visits at 10k routes, %d at 100k (%.1fx)", limit, small, large, float64(large)/float64(small))
		if large > 12*small {
			t.Errorf("limit %d: show visited %d routes at 100k routes and %d at 10k: %.1fx for 10x the routes, want at most 12x", limit, large, small, float64(large)/float64(small))
		}
	}
}
