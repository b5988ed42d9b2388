package ui

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"roundtrip/engine/apply"
	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/kernel/kerneltest"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// The live backend hands the console the journals' summaries (apply.Journal) of what the
// kernel adapter's store holds: history, one journal by id, its steps, and no pending apply
// for one that did not ask for confirmation. Runs without root, in a state directory of its own.
func TestLiveBackendJournals(t *testing.T) {
	t.Setenv(kernel.StateDirEnv, t.TempDir())
	b := NewLiveBackend("")
	ctx := context.Background()
	store, err := kernel.OpenStore(b.NS)
	if err != nil {
		t.Fatal(err)
	}
	j, err := store.Create(kernel.JournalHead{Intent: "roundtrip wizard source-return --uplink eth0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.MarkApplied(); err != nil {
		t.Fatal(err)
	}
	j.Close()

	hist, err := b.History(ctx)
	if err != nil || len(hist) != 1 {
		t.Fatalf("history: %v, %v", hist, err)
	}
	if h := hist[0]; h.ID != j.ID || h.Status != apply.StatusApplied || h.Intent != j.Intent || !h.Active() {
		t.Errorf("history has %+v, want journal %s applied and active", h, j.ID)
	}
	got, err := b.Journal(ctx, j.ID)
	if err != nil || got.ID != j.ID || got.Status != apply.StatusApplied {
		t.Errorf("journal %s: %+v, %v", j.ID, got, err)
	}
	if steps, err := b.JournalSteps(ctx, got, 0); err != nil || len(steps) != 0 {
		t.Errorf("steps of a journal of no steps: %q, %v", steps, err)
	}
	if p, err := b.Pending(ctx); p != nil || err != nil {
		t.Errorf("pending: %+v, %v; want none", p, err)
	}
	if _, err := b.Journal(ctx, "20250101-000000-000000"); err == nil {
		t.Error("a journal that does not exist was found")
	}

	// An apply through the kernel adapter (into its fake host) reports its journal as the
	// console's value, and the console reads its step back from the steps file.
	st := &model.State{Links: []model.Link{{Index: 2, Name: "a0", Kind: "veth", Up: true, MTU: 1500}}}
	plan.ApplyChange(st, plan.Change{Kind: plan.KindAddress, Op: plan.OpAdd,
		Address: &plan.LinkAddress{Dev: "a0", Address: model.Address{Prefix: netip.MustParsePrefix("10.88.0.1/24")}}})
	p := plan.New("roundtrip test")
	p.Changes = append(p.Changes, plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4,
		Table: 100, Dst: netip.MustParsePrefix("10.61.0.0/24"), Gateway: netip.MustParseAddr("10.88.0.2"), Dev: "a0"}})
	a := &kernel.Applier{NS: b.NS, Host: kerneltest.New(st, filepath.Join(t.TempDir(), plan.RTTablesFile))}
	res, err := a.Apply(ctx, p, apply.Options{Force: true})
	if err != nil || res.Journal == nil {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	if res.Journal.Status != apply.StatusApplied || res.Journal.Steps != 1 {
		t.Errorf("apply reported %+v, want applied in 1 step", res.Journal)
	}
	steps, err := b.JournalSteps(ctx, res.Journal, 0)
	if err != nil || len(steps) != 1 || !strings.Contains(steps[0], "10.61.0.0/24") {
		t.Errorf("steps of %s: %q, %v; want the route's", res.Journal.ID, steps, err)
	}
	if hist, _ := b.History(ctx); len(hist) != 2 || hist[1].ID != res.Journal.ID {
		t.Errorf("history after the apply: %v", hist)
	}
}
