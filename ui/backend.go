package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"roundtrip/diagnose"
	"roundtrip/engine/apply"
	"roundtrip/engine/conntrack"
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

// NewLiveBackend looks at the network namespace of that name ("" for the process's own).
func NewLiveBackend(netns string) *LiveBackend {
	return &LiveBackend{NS: kernel.Namespace{Name: netns}}
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
func (b *LiveBackend) Apply(ctx context.Context, p *plan.Plan, opts apply.Options, progress func(string)) (*apply.Result, error) {
	a := &kernel.Applier{NS: b.NS, LockWait: lockWait, Log: &lineWriter{fn: progress}}
	return a.Apply(ctx, p, opts)
}

// summary is the journal as the console sees it (nil stays nil).
func summary(j *kernel.Journal, err error) (*apply.Journal, error) {
	if j == nil {
		return nil, err
	}
	return &j.Journal, err
}

// Confirm implements common.Backend.
func (b *LiveBackend) Confirm(ctx context.Context) (*apply.Journal, error) {
	return summary(kernel.Confirm(ctx, b.NS, "", lockWait))
}

// Rollback implements common.Backend.
func (b *LiveBackend) Rollback(ctx context.Context, id string) (*apply.Journal, error) {
	a := &kernel.Applier{NS: b.NS, LockWait: lockWait}
	return summary(a.Rollback(ctx, id, "rolled back from the console"))
}

// History implements common.Backend.
func (b *LiveBackend) History(ctx context.Context) ([]*apply.Journal, error) {
	s, err := kernel.OpenStore(b.NS)
	if err != nil {
		return nil, err
	}
	js, err := s.List()
	out := make([]*apply.Journal, len(js))
	for i, j := range js {
		out[i] = &j.Journal
	}
	return out, err
}

// Pending implements common.Backend.
func (b *LiveBackend) Pending(ctx context.Context) (*apply.Journal, error) {
	return summary(kernel.PendingConfirmation(b.NS))
}

// Journal implements common.Backend.
func (b *LiveBackend) Journal(ctx context.Context, id string) (*apply.Journal, error) {
	s, err := kernel.OpenStore(b.NS)
	if err != nil {
		return nil, err
	}
	return summary(s.Load(id))
}

// JournalSteps implements common.Backend.
func (b *LiveBackend) JournalSteps(ctx context.Context, j *apply.Journal, max int) ([]string, error) {
	s, err := kernel.OpenStore(b.NS)
	if err != nil {
		return nil, err
	}
	return s.StepSummaries(j.ID, max)
}

// Netfilter implements common.Backend.
func (b *LiveBackend) Netfilter(ctx context.Context) (iptables.Ruleset, error) {
	return kernel.ReadNetfilter(ctx, b.NS.Runner())
}

// Neighbours implements common.Backend.
func (b *LiveBackend) Neighbours(ctx context.Context) ([]model.Neighbour, error) {
	return kernel.ReadNeighbours(b.NS)
}

var errEnough = errors.New("enough entries")

// Conntrack implements common.Backend.
func (b *LiveBackend) Conntrack(ctx context.Context, max int) ([]conntrack.Entry, conntrack.Stats, error) {
	stats, err := kernel.ReadConntrackStats(b.NS)
	if err != nil {
		return nil, stats, err
	}
	c, err := kernel.OpenConntrack(b.NS)
	if err != nil {
		return nil, stats, err
	}
	defer c.Close()
	var out []conntrack.Entry
	err = c.Dump(ctx, nil, func(e *conntrack.Entry) error {
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
func (b *LiveBackend) Capture(ctx context.Context, filter *diagnose.CaptureFilter, ready func(), emit func(diagnose.Event) error) (*diagnose.CaptureSummary, error) {
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
func (b *SnapshotBackend) Apply(context.Context, *plan.Plan, apply.Options, func(string)) (*apply.Result, error) {
	return nil, b.refuse()
}

// Confirm implements common.Backend.
func (b *SnapshotBackend) Confirm(context.Context) (*apply.Journal, error) { return nil, b.refuse() }

// Rollback implements common.Backend.
func (b *SnapshotBackend) Rollback(context.Context, string) (*apply.Journal, error) {
	return nil, b.refuse()
}

// History implements common.Backend: a snapshot has none.
func (b *SnapshotBackend) History(context.Context) ([]*apply.Journal, error) { return nil, nil }

// Pending implements common.Backend: nothing waits on a snapshot.
func (b *SnapshotBackend) Pending(context.Context) (*apply.Journal, error) { return nil, nil }

// Journal implements common.Backend: a snapshot has no journals.
func (b *SnapshotBackend) Journal(context.Context, string) (*apply.Journal, error) {
	return nil, errors.New("a snapshot has no journals")
}

// JournalSteps implements common.Backend: a snapshot has no journals.
func (b *SnapshotBackend) JournalSteps(context.Context, *apply.Journal, int) ([]string, error) {
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
func (b *SnapshotBackend) Neighbours(context.Context) ([]model.Neighbour, error) { return nil, nil }

// Conntrack implements common.Backend.
func (b *SnapshotBackend) Conntrack(context.Context, int) ([]conntrack.Entry, conntrack.Stats, error) {
	return nil, conntrack.Stats{}, errors.New("a snapshot holds no conntrack table")
}

// Capture implements common.Backend.
func (b *SnapshotBackend) Capture(context.Context, *diagnose.CaptureFilter, func(), func(diagnose.Event) error) (*diagnose.CaptureSummary, error) {
	return nil, errors.New("a snapshot has no packets to capture: run roundtrip on the host")
}

// ReadStateWithoutRoutes implements common.RouteStreamer.
func (b *LiveBackend) ReadStateWithoutRoutes(ctx context.Context) (*model.State, error) {
	return kernel.ReadWith(ctx, b.NS, kernel.ReadOptions{NoRoutes: true})
}

// RouteCount implements common.RouteStreamer.
func (b *LiveBackend) RouteCount(context.Context) int { return kernel.RouteCount(b.NS) }

// EachRoute implements common.RouteStreamer.
func (b *LiveBackend) EachRoute(ctx context.Context, s *model.State, table int, restart func(), fn func(*model.Route) error) error {
	again := func() error { restart(); return nil }
	if table == 0 {
		return kernel.EachRoute(ctx, b.NS, kernel.LinkNames(s), again, fn)
	}
	return kernel.EachRouteOfTable(ctx, b.NS, table, kernel.LinkNames(s), again, fn)
}
