package kernel

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"roundtrip/engine/nft"
	"roundtrip/engine/plan"
)

// NFTUndo is what undoes a step that loads roundtrip's nft table: the table as `nft list
// table inet roundtrip` printed it before the step, or Existed false when there was none.
// Loaded from a journal, the listing is checked (plan.CheckNFTListing) before nft reads it.
type NFTUndo struct {
	Existed bool   `json:"existed"`
	Before  string `json:"before,omitempty"`
}

// ReadNftables implements Host: the namespace's nft ruleset through the registered reader
// (nil when none is linked in or the kernel has no nf_tables).
func (l *LiveHost) ReadNftables(ctx context.Context) (*nft.Ruleset, error) {
	nftMu.Lock()
	read := nftReader
	nftMu.Unlock()
	if read == nil {
		return nil, nil
	}
	rs, err := read(ctx, l.ns)
	if err != nil {
		if errors.Is(err, ErrNFTUnsupported) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading nftables of %s: %w", l.ns, err)
	}
	return rs, nil
}

// NFTList implements Host: `nft list table inet roundtrip`.
func (l *LiveHost) NFTList(ctx context.Context) (string, bool, error) {
	out, err := l.runner.Run(ctx, nil, "nft", "list", "table", plan.NFTFamily, plan.NFTTable)
	if err != nil {
		if strings.Contains(err.Error(), "No such file or directory") {
			return "", false, nil
		}
		return "", false, err
	}
	return string(out), true, nil
}

// NFTLoad implements Host: `nft -f -` with the script on standard input (`nft -c -f -` for a
// check, which changes nothing). nft loads a file as one transaction: all of it or nothing.
func (l *LiveHost) NFTLoad(ctx context.Context, script []byte, check bool) error {
	args := []string{"-f", "-"}
	if check {
		args = []string{"-c", "-f", "-"}
	}
	_, err := l.runner.Run(ctx, script, "nft", args...)
	return err
}

// nftStep plans the step of a plan's nft changes: the script is checked by nft (-c), and
// the table's listing now is its undo.
func (p *planner) nftStep() error {
	st := p.nft
	script, err := plan.NFTScript(st.Changes)
	if err != nil {
		return err
	}
	if err := p.host.NFTLoad(p.ctx, script, true); err != nil {
		if isPermissionDenied(err) {
			return fmt.Errorf("checking the plan's nft table with nft -c needs root: %w", err)
		}
		return fmt.Errorf("checking the plan's nft table with nft -c: nft refuses it (nothing was changed): %w", err)
	}
	before, existed, err := p.host.NFTList(p.ctx)
	if err != nil {
		return fmt.Errorf("listing table %s %s for its undo (nothing was changed): %w", plan.NFTFamily, plan.NFTTable, err)
	}
	if existed {
		if err := plan.CheckNFTListing(before); err != nil {
			return fmt.Errorf("table %s %s cannot be kept as an undo (nothing was changed): %w", plan.NFTFamily, plan.NFTTable, err)
		}
	}
	st.NFT = &NFTUndo{Existed: existed, Before: before}
	return p.sink(p.nftK, st)
}

// loadNFT makes a step of nft changes: one `nft -f` transaction.
func loadNFT(ctx context.Context, host Host, st *Step) error {
	script, err := plan.NFTScript(st.Changes)
	if err != nil {
		return err
	}
	if err := host.NFTLoad(ctx, script, false); err != nil {
		return fmt.Errorf("nft -f: %w\ntransaction:\n%s", err, script)
	}
	return nil
}

// undoNFT puts roundtrip's table back as the step found it.
func undoNFT(ctx context.Context, host Host, u *NFTUndo) error {
	script, err := plan.NFTRestoreScript(u.Existed, u.Before)
	if err != nil {
		return fmt.Errorf("the journaled nft table: %w", err)
	}
	if err := host.NFTLoad(ctx, script, false); err != nil {
		return fmt.Errorf("restoring table %s %s with nft -f: %w", plan.NFTFamily, plan.NFTTable, err)
	}
	return nil
}
