package kernel_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/kernel/kerneltest"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// bigPlanFile writes a plan of n route adds into table 100 (large enough, over a megabyte,
// to be decoded in parallel chunks) with last as its last change, as a file.
func bigPlanFile(t *testing.T, n int, last plan.Change) string {
	t.Helper()
	p := plan.New("a big plan")
	// A long why makes a megabyte of few changes (the fake's routes are a list).
	why := "a destination list, {\"kind\": \"x\"}" + strings.Repeat(" (padding)", 40)
	for i := range n - 1 {
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100 + byte(i>>16), byte(i >> 8), byte(i)}), 32)
		p.Changes = append(p.Changes, plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd, Why: why,
			Route: &model.Route{Family: inet.V4, Table: 100, Dst: dst, Gateway: ip("10.88.0.2"), Dev: "a0"}})
	}
	p.Changes = append(p.Changes, last)
	data, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 1<<20 {
		t.Fatalf("the plan is %d bytes: too small to be read in parallel", len(data))
	}
	path := filepath.Join(t.TempDir(), "big.plan.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFakeBigPlanLateProblemChangesNothing: a plan read in parallel chunks is still validated
// whole before the first change is made: a change late in it that does not fit the host, that
// is wrong on its own, or that is not JSON, stops the apply with the change (or line) named,
// and the host is untouched, with no journal. The same plan with a good last change applies
// whole.
func TestFakeBigPlanLateProblemChangesNothing(t *testing.T) {
	const n = 2200
	good := plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4, Table: 100, Dst: pfx("10.99.200.0/24"), Gateway: ip("10.88.0.2"), Dev: "a0"}}
	for _, tc := range []struct {
		name string
		last plan.Change
		edit func([]byte) []byte
		want string
	}{
		{name: "does not fit", want: fmt.Sprintf("change %d (", n),
			last: plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4, Table: 100, Dst: pfx("10.99.200.0/24"), Gateway: ip("10.88.0.2"), Dev: "nosuch0"}}},
		{name: "wrong on its own", want: fmt.Sprintf("change %d: ", n),
			last: plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4, Table: -3, Dst: pfx("10.99.200.0/24"), Dev: "a0"}}},
		{name: "not JSON", want: "line ", last: good, edit: func(b []byte) []byte {
			i := bytes.LastIndex(b, []byte(`"gateway"`))
			return append(b[:i:i], append([]byte("@"), b[i:]...)...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, fakeState())
			w.applier.BatchSize = 0 // the default: batches as a real apply makes them
			before := w.fake.State()
			path := bigPlanFile(t, n, tc.last)
			if tc.edit != nil {
				data, _ := os.ReadFile(path)
				os.WriteFile(path, tc.edit(data), 0o600)
			}
			ops := 0
			w.fake.After = func(kerneltest.Op) { ops++ }
			src, err := plan.Open(path)
			if err == nil {
				defer src.Close()
				_, err = w.applier.ApplySource(context.Background(), src, kernel.ApplyOptions{})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("apply: %v, want an error naming %q", err, tc.want)
			}
			if ops != 0 {
				t.Errorf("%d operations were made", ops)
			}
			sameState(t, "the host changed", before, w.fake.State())
			if js, err := w.store.List(); err != nil || len(js) != 0 {
				t.Errorf("journals after a refused plan: %d (%v)", len(js), err)
			}
		})
	}
	t.Run("fits", func(t *testing.T) {
		w := newWorld(t, fakeState())
		w.applier.BatchSize = 0
		src, err := plan.Open(bigPlanFile(t, n, good))
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		res, err := w.applier.ApplySource(context.Background(), src, kernel.ApplyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Pending != n || len(res.Drift) != 0 {
			t.Errorf("%d changes pending of %d, drift %q", res.Pending, n, res.Drift)
		}
		if got := len(w.fake.State().Routes) - len(fakeState().Routes); got != n {
			t.Errorf("%d routes added, want %d", got, n)
		}
	})
}
