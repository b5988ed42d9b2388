package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"roundtrip/diagnose"
	"roundtrip/engine/iptables"
	"roundtrip/engine/kernel"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
	"roundtrip/ui/common"
)

// lockWait is how long the console waits for another roundtrip that is changing the same
// namespace before it reports it.
const lockWait = 10 * time.Second

// LiveBackend reads and changes a network namespace through engine/kernel ("" is the one the
// process runs in, which is what `ip netns exec NS roundtrip` gives).
type LiveBackend struct {
	NS kernel.Namespace
}

// Where implements common.Backend.
func (b *LiveBackend) Where() string {
	if b.NS.Name == "" {
		return "this host"
	}
	return "netns " + b.NS.Name
}

// Live implements common.Backend.
func (b *LiveBackend) Live() bool { return true }

// ReadOnly implements common.Backend.
func (b *LiveBackend) ReadOnly() string { return "" }

// ReadState implements common.Backend.
func (b *LiveBackend) ReadState(ctx context.Context) (*model.State, error) {
	return kernel.Read(ctx, b.NS)
}

// lineWriter passes each complete line written to it to fn.
type lineWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	fn  func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		if w.fn != nil {
			w.fn(line[:len(line)-1])
		}
	}
}

// Apply implements common.Backend.
func (b *LiveBackend) Apply(ctx context.Context, p *plan.Plan, opts kernel.ApplyOptions, progress func(string)) (*kernel.Result, error) {
	a := &kernel.Applier{NS: b.NS, LockWait: lockWait, Log: &lineWriter{fn: progress}}
	return a.Apply(ctx, p, opts)
}

// Confirm implements common.Backend.
func (b *LiveBackend) Confirm(ctx context.Context) (*kernel.Journal, error) {
	return kernel.Confirm(ctx, b.NS, "", lockWait)
}

// Rollback implements common.Backend.
func (b *LiveBackend) Rollback(ctx context.Context, id string) (*kernel.Journal, error) {
	a := &kernel.Applier{NS: b.NS, LockWait: lockWait}
	return a.Rollback(ctx, id, "rolled back from the console")
}

// History implements common.Backend.
func (b *LiveBackend) History(ctx context.Context) ([]*kernel.Journal, error) {
	s, err := kernel.OpenStore(b.NS)
	if err != nil {
		return nil, err
	}
	return s.List()
}

// Pending implements common.Backend.
func (b *LiveBackend) Pending(ctx context.Context) (*kernel.Journal, error) {
	return kernel.PendingConfirmation(b.NS)
}

// Journal implements common.Backend.
func (b *LiveBackend) Journal(ctx context.Context, id string) (*kernel.Journal, error) {
	s, err := kernel.OpenStore(b.NS)
	if err != nil {
		return nil, err
	}
	return s.Load(id)
}

// JournalSteps implements common.Backend.
func (b *LiveBackend) JournalSteps(ctx context.Context, j *kernel.Journal, max int) ([]string, error) {
	return j.StepSummaries(max)
}

// Netfilter implements common.Backend.
func (b *LiveBackend) Netfilter(ctx context.Context) (iptables.Ruleset, error) {
	return kernel.ReadNetfilter(ctx, b.NS.Runner())
}

// Neighbours implements common.Backend.
func (b *LiveBackend) Neighbours(ctx context.Context) ([]kernel.Neighbour, error) {
	return kernel.ReadNeighbours(b.NS)
}

var errEnough = errors.New("enough entries")

// Conntrack implements common.Backend.
func (b *LiveBackend) Conntrack(ctx context.Context, max int) ([]kernel.ConntrackEntry, kernel.ConntrackStats, error) {
	stats, err := kernel.ReadConntrackStats(b.NS)
	if err != nil {
		return nil, stats, err
	}
	c, err := kernel.OpenConntrack(b.NS)
	if err != nil {
		return nil, stats, err
	}
	defer c.Close()
	var out []kernel.ConntrackEntry
	err = c.Dump(ctx, nil, func(e *kernel.ConntrackEntry) error {
		out = append(out, *e)
		if len(out) >= max {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, stats, err
	}
	return out, stats, nil
}

// Capture implements common.Backend.
func (b *LiveBackend) Capture(ctx context.Context, filter *kernel.CaptureFilter, ready func(), emit func(diagnose.Event) error) (*diagnose.CaptureSummary, error) {
	return diagnose.Capture(ctx, diagnose.CaptureOptions{Namespace: b.NS, Filter: filter, Ready: ready}, emit)
}

// SnapshotBackend answers from a snapshot file: everything can be looked at, nothing changed.
type SnapshotBackend struct {
	Path string
}

// Where implements common.Backend.
func (b *SnapshotBackend) Where() string { return "snapshot " + b.Path }

// Live implements common.Backend.
func (b *SnapshotBackend) Live() bool { return false }

// ReadOnly implements common.Backend.
func (b *SnapshotBackend) ReadOnly() string {
	return "read-only: a snapshot is another host's state; run roundtrip on that host to change it"
}

// ReadState implements common.Backend.
func (b *SnapshotBackend) ReadState(ctx context.Context) (*model.State, error) {
	snap, err := model.LoadSnapshotFile(b.Path)
	if err != nil {
		return nil, err
	}
	return snap.State, nil
}

func (b *SnapshotBackend) refuse() error {
	return fmt.Errorf("%w: %s", common.ErrReadOnly, b.ReadOnly())
}

// Apply implements common.Backend.
func (b *SnapshotBackend) Apply(context.Context, *plan.Plan, kernel.ApplyOptions, func(string)) (*kernel.Result, error) {
	return nil, b.refuse()
}

// Confirm implements common.Backend.
func (b *SnapshotBackend) Confirm(context.Context) (*kernel.Journal, error) { return nil, b.refuse() }

// Rollback implements common.Backend.
func (b *SnapshotBackend) Rollback(context.Context, string) (*kernel.Journal, error) {
	return nil, b.refuse()
}

// History implements common.Backend: a snapshot has none.
func (b *SnapshotBackend) History(context.Context) ([]*kernel.Journal, error) { return nil, nil }

// Pending implements common.Backend: nothing waits on a snapshot.
func (b *SnapshotBackend) Pending(context.Context) (*kernel.Journal, error) { return nil, nil }

// Journal implements common.Backend: a snapshot has no journals.
func (b *SnapshotBackend) Journal(context.Context, string) (*kernel.Journal, error) {
	return nil, errors.New("a snapshot has no journals")
}

// JournalSteps implements common.Backend: a snapshot has no journals.
func (b *SnapshotBackend) JournalSteps(context.Context, *kernel.Journal, int) ([]string, error) {
	return nil, errors.New("a snapshot has no journals")
}

// Netfilter implements common.Backend: the snapshot's rules, as saved.
func (b *SnapshotBackend) Netfilter(ctx context.Context) (iptables.Ruleset, error) {
	s, err := b.ReadState(ctx)
	if err != nil {
		return iptables.Ruleset{}, err
	}
	return s.Netfilter, nil
}

// Neighbours implements common.Backend: a snapshot holds no neighbour table.
func (b *SnapshotBackend) Neighbours(context.Context) ([]kernel.Neighbour, error) { return nil, nil }

// Conntrack implements common.Backend.
func (b *SnapshotBackend) Conntrack(context.Context, int) ([]kernel.ConntrackEntry, kernel.ConntrackStats, error) {
	return nil, kernel.ConntrackStats{}, errors.New("a snapshot holds no conntrack table")
}

// Capture implements common.Backend.
func (b *SnapshotBackend) Capture(context.Context, *kernel.CaptureFilter, func(), func(diagnose.Event) error) (*diagnose.CaptureSummary, error) {
	return nil, errors.New("a snapshot has no packets to capture: run roundtrip on the host")
}
