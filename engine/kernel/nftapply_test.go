package kernel_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/kernel/kerneltest"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

func nftChange(name, rule string) plan.Change {
	return plan.Change{Kind: plan.KindNFT, Op: plan.OpSet, NFT: &plan.ChainSpec{Family: inet.V4, Table: "nat", Name: name,
		Jumps: []plan.Jump{{Chain: "PREROUTING"}}, Rules: []string{rule}}}
}

const earlierNFT = "table inet roundtrip {\n\tchain RT-PF-A {\n\t\tcomment \"roundtrip 0\"\n\t\tip daddr 10.0.0.1 tcp dport 81 counter packets 3 bytes 180 dnat ip to 10.0.0.2:80\n\t}\n}\n"

// An apply of nft changes is one nft -f step beside the others: in effect afterwards (no
// drift, nothing left to do), and rolled back to the table's listing before.
func TestFakeNFTApplyRollback(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, fakeState())
	if err := w.fake.SetNFTListing(earlierNFT); err != nil {
		t.Fatal(err)
	}
	listBefore, _, _ := w.fake.NFTList(ctx)
	before := w.fake.State()
	p := plan.New("nft")
	p.Changes = []plan.Change{
		nftChange("RT-PF-A", "-d 10.88.0.1/32 -p tcp -m tcp --dport 82 -m comment --comment rt:a -j DNAT --to-destination 10.88.0.5:80"),
		{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4, Dst: pfx("10.44.0.0/16"), Gateway: ip("10.88.0.2"), Dev: "a0"}},
		nftChange("RT-PF-B", "-d 10.88.0.1/32 -p tcp -m tcp --dport 83 -m comment --comment rt:b -j DNAT --to-destination 10.88.0.5:80"),
	}
	res, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{})
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, strings.Join(w.fake.Log, "\n"))
	}
	if len(res.Drift) > 0 {
		t.Errorf("drift:\n%s", strings.Join(res.Drift, "\n"))
	}
	if len(w.fake.NFTLoaded) != 1 || !strings.Contains(w.fake.NFTLoaded[0], "RT-PF-A") || !strings.Contains(w.fake.NFTLoaded[0], "RT-PF-B") {
		t.Fatalf("the nft changes are not one transaction: %q", w.fake.NFTLoaded)
	}
	list, _, _ := w.fake.NFTList(ctx)
	if !strings.Contains(list, "dnat ip to 10.88.0.5:80") || strings.Contains(list, "dport 81") {
		t.Errorf("after the apply:\n%s", list)
	}
	if again, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{}); err != nil || !again.NoOp {
		t.Fatalf("re-apply: %v, noop %v", err, again != nil && again.NoOp)
	}
	if _, err := w.applier.Rollback(ctx, "", "test"); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if list, _, _ := w.fake.NFTList(ctx); list != listBefore {
		t.Errorf("rollback left the table as\n%s\nwant\n%s", list, listBefore)
	}
	sameState(t, "rollback did not restore the fake", before, w.fake.State())
}

// A step after the nft step that fails undoes the nft step too; a table that did not exist is
// removed again.
func TestFakeNFTUndoneOnFailure(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, fakeState())
	p := plan.New("nft then a failing route")
	p.Changes = []plan.Change{
		nftChange("RT-PF-B", "-d 10.88.0.1/32 -p tcp -m tcp --dport 83 -m comment --comment rt:b -j DNAT --to-destination 10.88.0.5:80"),
		{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4, Dst: pfx("10.44.0.0/16"), Gateway: ip("10.88.0.2"), Dev: "a0"}},
	}
	w.applier.BeforeStep = func(i int, s kernel.Step) error {
		if s.Batch {
			return errors.New("injected")
		}
		return nil
	}
	if _, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{}); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("apply: %v", err)
	}
	if len(w.fake.NFTLoaded) != 2 || !strings.Contains(w.fake.NFTLoaded[1], "delete table inet roundtrip") {
		t.Errorf("the nft step was not undone: %q", w.fake.NFTLoaded)
	}
	if _, ok, _ := w.fake.NFTList(ctx); ok {
		t.Error("roundtrip's table is left after the failed apply")
	}
}

// A journaled listing that would make nft read more than roundtrip's table is refused at
// rollback rather than loaded.
func TestFakeNFTTamperedUndoRefused(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, fakeState())
	if err := w.fake.SetNFTListing(earlierNFT); err != nil {
		t.Fatal(err)
	}
	p := plan.New("nft")
	p.Changes = []plan.Change{nftChange("RT-PF-B", "-d 10.88.0.1/32 -p tcp -m tcp --dport 83 -m comment --comment rt:b -j DNAT --to-destination 10.88.0.5:80")}
	res, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, evil := range []string{
		"table inet roundtrip {\n\tinclude \"/etc/shadow\"\n}\n",
		earlierNFT + "flush ruleset\n",
		"table inet filter {\n}\n",
	} {
		st := kernel.Step{Changes: p.Changes, NFT: &kernel.NFTUndo{Existed: true, Before: evil}}
		if err := kernel.RewriteStepForTest(w.store, res.Journal.ID, 0, &st); err != nil {
			t.Fatal(err)
		}
		n := len(w.fake.NFTLoaded)
		if _, err := w.applier.Rollback(ctx, "", "test"); err == nil || !strings.Contains(err.Error(), "listing") {
			t.Fatalf("rollback of a journal holding %q: %v", evil, err)
		}
		if len(w.fake.NFTLoaded) != n {
			t.Errorf("a tampered listing was loaded: %q", w.fake.NFTLoaded[n:])
		}
	}
}

// The drift check reads roundtrip's table back: a chain that is not there as planned (here
// emptied by someone right after the load) is reported.
func TestFakeNFTDrift(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, fakeState())
	w.fake.After = func(op kerneltest.Op) {
		if op.Kind == "nft" {
			if err := w.fake.SetNFTListing("table inet roundtrip {\n}\n"); err != nil {
				t.Error(err)
			}
		}
	}
	p := plan.New("nft")
	p.Changes = []plan.Change{nftChange("RT-PF-B", "-d 10.88.0.1/32 -p tcp -m tcp --dport 83 -m comment --comment rt:b -j DNAT --to-destination 10.88.0.5:80")}
	res, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Drift) != 1 || !strings.Contains(res.Drift[0], "nft inet roundtrip: chain RT-PF-B") {
		t.Errorf("drift: %q", res.Drift)
	}
}
