package doctor

import (
	"context"
	"errors"
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
		d, err := run(context.Background(), s, fib.New(s), nil)
		if err != nil {
			t.Fatal(err)
		}
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

// TestDoctorStopsWhenCancelled cancels a doctor of 100k routes at its first report of progress:
// it returns the context's error instead of findings, and its reports only ever grow.
func TestDoctorStopsWhenCancelled(t *testing.T) {
	s := modeltest.ScaleHost(t, 100_000)
	f := fib.New(s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var reports [][2]int
	fs, err := RunContext(ctx, s, f, func(done, total int) {
		reports = append(reports, [2]int{done, total})
		cancel()
	})
	if !errors.Is(err, context.Canceled) || fs != nil {
		t.Fatalf("cancelled doctor returned %d findings, %v", len(fs), err)
	}
	if len(reports) != 1 || reports[0][0] <= 0 || reports[0][0] >= reports[0][1] {
		t.Fatalf("progress reports %v, want one, part of the way", reports)
	}
	// Uncancelled, the reports climb to done == total.
	reports = nil
	if _, err := RunContext(context.Background(), s, f, func(done, total int) { reports = append(reports, [2]int{done, total}) }); err != nil {
		t.Fatal(err)
	}
	for i, r := range reports {
		if r[0] > r[1] || i > 0 && r[0] < reports[i-1][0] {
			t.Fatalf("progress reports go back or past the total: %v", reports)
		}
	}
	if last := reports[len(reports)-1]; last[0] != last[1] || len(reports) < 10 {
		t.Fatalf("%d progress reports, the last %v", len(reports), last)
	}
}
