package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
	"roundtrip/engine/quote"
)

// This file is the watcher on the live host: probes through the kernel, the state read and
// routes applied through the change engine, conntrack through ctnetlink, the status and the
// lock in the namespace's journal directory.

// Live is one run of the watcher against a namespace of this host.
type Live struct {
	Config   Config
	NS       kernel.Namespace
	Log      io.Writer
	LockWait time.Duration // for the namespace's apply lock, when routes move
	// Store and RTTablesDirs default to the namespace's journal directory and iproute2's;
	// tests point them at their own.
	Store        *kernel.Store
	RTTablesDirs []string
	// Started is called once the watcher has checked the host and runs.
	Started func(*Watcher)
}

// Run runs the watcher until ctx ends, writing its status to the journal directory after
// every round. Only one watcher runs per namespace: it holds the store's watch lock.
func (r Live) Run(ctx context.Context) error {
	store := r.Store
	if store == nil {
		var err error
		if store, err = kernel.OpenStore(r.NS); err != nil {
			return err
		}
	}
	release, err := lock(store)
	if err != nil {
		return err
	}
	defer release()
	host := &liveHost{ns: r.NS, dirs: r.RTTablesDirs,
		applier: &kernel.Applier{NS: r.NS, Store: store, RTTablesDirs: r.RTTablesDirs, LockWait: r.LockWait}}
	w, err := New(r.Config, liveProber{ns: r.NS}, host)
	if err != nil {
		return err
	}
	w.Log = r.Log
	var statusErr string
	w.OnStatus = func(s *Status) {
		err := WriteStatus(store.Dir, s)
		if err != nil && err.Error() != statusErr {
			quote.TermFprintf(r.Log, "warning: %v\n", err)
		}
		statusErr = fmt.Sprint(err)
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	if r.Started != nil {
		r.Started(w)
	}
	err = w.Loop(ctx)
	s := w.Status()
	s.Stopped, s.Running = true, false
	return errors.Join(err, WriteStatus(store.Dir, s))
}

// lockName is the watch lock's file in the journal directory, beside the apply lock.
const lockName = "watch.lock"

// lock makes sure only one watcher runs per namespace: two would fight over the routes. It is
// the store's own kind of lock (kernel.Store.TryLock), so it dies with the process.
func lock(store *kernel.Store) (func(), error) {
	release, err := store.TryLock(lockName)
	var held *kernel.HeldError
	if errors.As(err, &held) {
		return nil, fmt.Errorf("another roundtrip watch runs for %s (%s): stop it first, or see roundtrip watch --status", store.NS, held.Holder)
	}
	return release, err
}

// ReadLive reads the status the watcher of a namespace last wrote, judging whether it still
// runs by its process.
func ReadLive(ns kernel.Namespace) (*Status, error) {
	store, err := kernel.OpenStore(ns)
	if err != nil {
		return nil, err
	}
	return ReadStatus(store.Dir, time.Now(), ProcessAlive)
}

// ProcessAlive reports whether a process exists (signal 0 checks without sending anything).
func ProcessAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// liveProber probes through the kernel.
type liveProber struct{ ns kernel.Namespace }

func (p liveProber) Probe(ctx context.Context, s ProbeSpec) ProbeResult {
	r := p.ns.Probe(ctx, kernel.Probe{Proto: s.Target.Proto, Target: s.Target.Addr, Iface: s.Iface, Src: s.Src, Mark: s.Mark, Timeout: s.Timeout})
	out := ProbeResult{OK: r.OK, RTT: r.RTT}
	switch {
	case errors.Is(r.Err, kernel.ErrNoAnswer):
		out.Err = "timeout" // the same for every target, so a round's verdict stays short
	case r.Err != nil:
		out.Err = r.Err.Error()
	}
	return out
}

// liveHost is the namespace the watcher changes: read and applied through the change engine,
// conntrack through ctnetlink.
type liveHost struct {
	ns      kernel.Namespace
	dirs    []string
	applier *kernel.Applier
}

func (h *liveHost) ReadState(ctx context.Context) (*model.State, error) {
	return kernel.ReadWith(ctx, h.ns, kernel.ReadOptions{RTTablesDirs: h.dirs})
}

func (h *liveHost) Apply(ctx context.Context, p *plan.Plan) (string, error) {
	// Failing over is the watcher's whole point: it moves routes whoever is logged in over
	// which of them.
	res, err := h.applier.Apply(ctx, p, kernel.ApplyOptions{Force: true})
	if err != nil {
		return "", err
	}
	if res.Journal == nil {
		return "", nil
	}
	if len(res.Drift) > 0 {
		return res.Journal.ID, fmt.Errorf("applied as journal %s, but the host differs from the plan: %s", res.Journal.ID, strings.Join(res.Drift, "; "))
	}
	return res.Journal.ID, nil
}

func trackedFlow(e *kernel.ConntrackEntry) TrackedFlow {
	return TrackedFlow{Proto: e.Orig.Proto, Src: e.Orig.Src, Dst: e.Orig.Dst, ReplySrc: e.Reply.Src, ReplyDst: e.Reply.Dst, Mark: e.Mark}
}

func (h *liveHost) DeleteFlows(ctx context.Context, match func(TrackedFlow) bool) (int, error) {
	c, err := kernel.OpenConntrack(h.ns)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.DeleteFunc(ctx, &kernel.ConntrackFilter{Family: inet.V4}, func(e *kernel.ConntrackEntry) bool { return match(trackedFlow(e)) })
}

func (h *liveHost) MarkFlows(ctx context.Context, mark func(TrackedFlow) (model.MarkMatch, bool)) (int, error) {
	c, err := kernel.OpenConntrack(h.ns)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.MarkFunc(ctx, &kernel.ConntrackFilter{Family: inet.V4}, func(e *kernel.ConntrackEntry) (model.MarkMatch, bool) { return mark(trackedFlow(e)) })
}
