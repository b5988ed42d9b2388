package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"roundtrip/engine/apply"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// Applier applies plans to one network namespace through a Host: links, addresses, routes and
// rules through netlink (routes and rules pipelined, in batches), roundtrip's iptables chains
// in one `iptables-restore --noflush -w` transaction per family, sysctls under /proc/sys/net
// inside the namespace, conntrack flushes through ctnetlink, table names in one file.
//
// An apply reads the plan once, change by change: each change is validated against the state
// read first, settled (is it already in effect, what undoes it) and grouped into steps, which
// go to the journal's steps file. Only when the whole plan fits and the steps are on disk does
// the apply change anything, step by step, each step's start journaled (and synced) before it
// touches the kernel. On any failure, on Ctrl-C, or when the journal cannot be written, the
// steps that took effect are undone in reverse, so the host ends changed as planned or as it
// was. Memory does not grow with the plan: batches are read back from the steps file, and the
// drift check compares hashes of the planned routes with a streaming dump of the kernel's.
type Applier struct {
	NS Namespace
	// Store is the namespace's journal directory; nil opens it with OpenStore.
	Store *Store
	// RTTablesDirs are the iproute2 configuration directories (as ReadOptions); table names
	// are written to RTTablesDirs[0]/rt_tables.d/roundtrip.conf.
	RTTablesDirs []string
	// LockWait is how long to wait for another apply to finish before giving up.
	LockWait time.Duration
	// Log receives one line per step; nil discards them.
	Log io.Writer
	// StartTimer starts the revert timer of a journal (StartRevertTimer when nil).
	StartTimer func(s *Store, j *Journal, after time.Duration) (pid int, err error)
	// Host is what the Applier reads and changes; nil opens the namespace's (OpenHost).
	Host Host
	// BatchSize bounds the routes or rules of one step (DefaultBatchSize when 0).
	BatchSize int

	// BeforeStep and AfterStep are failure-injection hooks for tests: an error from BeforeStep
	// fails step i before it starts, one from AfterStep fails it after its kernel work is done
	// but before the journal records it as done.
	BeforeStep func(i int, s Step) error
	AfterStep  func(i int, s Step) error
}

// DefaultBatchSize is how many routes or rules one step holds: one journal record, and one
// synced "started" record, per batch.
const DefaultBatchSize = 4096

// The values of an apply live in engine/apply; these names keep the adapter's callers as
// they were.
type (
	ApplyOptions = apply.Options
	Result       = apply.Result
	LockoutError = apply.LockoutError
)

// Step is one unit of an apply: one change; all netfilter changes of one family (one
// iptables-restore transaction); all routing table names (one file); or a batch of routes or
// of rules, sent pipelined. Undo lists the changes that reverse a step made of one change or
// one transaction; a batch has the undo of each change in Undos (nil: the change's mirror, an
// add deleted or a delete added back). All undos are computed from the state before the apply.
type Step struct {
	Changes []plan.Change   `json:"changes"`
	Undo    []plan.Change   `json:"undo,omitempty"`
	Undos   [][]plan.Change `json:"-"`
	File    *FileUndo       `json:"file,omitempty"`
	NFT     *NFTUndo        `json:"nft,omitempty"` // a step of nft changes (one nft -f)
	Batch   bool            `json:"batch,omitempty"`
	First   int             `json:"first"` // the plan's index of the first change

	routes []model.Route // a decoded batch's routes, allocated together
}

// FileUndo is a file a step rewrites, with its content before and after.
type FileUndo struct {
	Path    string `json:"path"`
	Existed bool   `json:"existed"`
	Old     []byte `json:"old,omitempty"`
	New     []byte `json:"new,omitempty"`
}

// Summary describes a step in one line.
func (s Step) Summary() string {
	if len(s.Changes) == 1 {
		return s.Changes[0].Summary()
	}
	if len(s.Changes) > 3 {
		return fmt.Sprintf("%s; ... and %d more %s changes", s.Changes[0].Summary(), len(s.Changes)-1, s.Changes[0].Kind)
	}
	var parts []string
	for _, c := range s.Changes {
		parts = append(parts, c.Summary())
	}
	return strings.Join(parts, "; ")
}

// UndoOf returns what undoes change i of a batch.
func (s Step) UndoOf(i int) []plan.Change {
	if u := s.Undos[i]; u != nil {
		return u
	}
	return []plan.Change{mirror(s.Changes[i])}
}

// mirror returns the change that undoes an add or delete of a route or rule.
func mirror(c plan.Change) plan.Change {
	m := plan.Change{Kind: c.Kind, Op: plan.OpDelete, Route: c.Route, Rule: c.Rule}
	if c.Op == plan.OpDelete {
		m.Op = plan.OpAdd
	}
	return m
}

// StepInfo describes a step of a prepared apply.
type StepInfo struct {
	Summary string          `json:"summary"`
	Kind    plan.ChangeKind `json:"kind"`
	Changes int             `json:"changes"`
}

// Prepared is what an apply would do (apply --dry-run).
type Prepared struct {
	Before  *model.State
	Changes int // in the plan
	Pending int // not yet in effect
	Steps   []StepInfo
	Lockout *plan.Lockout
}

func (a *Applier) logf(format string, args ...any) {
	if a.Log != nil {
		fmt.Fprintf(a.Log, format+"\n", args...)
	}
}

func (a *Applier) store() (*Store, error) {
	if a.Store != nil {
		return a.Store, nil
	}
	s, err := OpenStore(a.NS)
	if err != nil {
		return nil, err
	}
	a.Store = s
	return s, nil
}

// lock opens the namespace's journal store and takes its lock, waiting up to LockWait for
// another apply; the caller releases it.
func (a *Applier) lock(ctx context.Context) (*Store, func(), error) {
	store, err := a.store()
	if err != nil {
		return nil, nil, err
	}
	release, err := store.Lock(ctx, a.LockWait)
	if err != nil {
		return nil, nil, err
	}
	return store, release, nil
}

// host returns the Host to work on and the function that closes it.
func (a *Applier) host() (Host, func(), error) {
	if a.Host != nil {
		return a.Host, func() {}, nil
	}
	h, err := OpenHost(a.NS, a.RTTablesDirs)
	if err != nil {
		return nil, nil, err
	}
	return h, func() { h.Close() }, nil
}

// tablesFile is where roundtrip writes routing table names.
func (a *Applier) tablesFile() string {
	dir := RTTablesDirs()[0]
	if len(a.RTTablesDirs) > 0 {
		dir = a.RTTablesDirs[0]
	}
	return filepath.Join(dir, plan.RTTablesFile)
}

// sshSession returns the SSH session of an apply, if any, and a warning when SSH_CONNECTION
// cannot be read.
func sshSession(o ApplyOptions) (*plan.SSHSession, string) {
	if o.SSH != nil || o.Force {
		return o.SSH, ""
	}
	conn := os.Getenv("SSH_CONNECTION")
	if conn == "" {
		return nil, ""
	}
	s, err := plan.ParseSSHConnection(conn)
	if err != nil {
		return nil, fmt.Sprintf("cannot check the SSH lockout: %v", err)
	}
	return &s, ""
}

// lockoutPolicy decides on the SSH lockout check of a plan whose effect is after: nil when the
// operator's session is not affected; the lockout when it is, with a LockoutError unless a
// confirmation window or Force was given.
func lockoutPolicy(before, after *model.State, sess *plan.SSHSession, opts ApplyOptions) (*plan.Lockout, error) {
	if sess == nil || opts.Force {
		return nil, nil
	}
	lo := plan.CheckLockout(before, after, *sess)
	if !lo.Applies || !lo.Changed {
		return nil, nil
	}
	if opts.Confirm <= 0 {
		return &lo, &LockoutError{Lockout: lo}
	}
	return &lo, nil
}

// CheckLockout is the SSH lockout check an apply makes, for a preview (the console shows it
// before applying): the lockout when the plan changes how replies reach the session's client,
// with a LockoutError when the apply would be refused.
func CheckLockout(before *model.State, p *plan.Plan, opts ApplyOptions) (*plan.Lockout, error) {
	sess, _ := sshSession(opts)
	if sess == nil {
		return nil, nil
	}
	return lockoutPolicy(before, p.Expect(before), sess, opts)
}

// Apply applies the changes of p that are not yet in effect (ApplySource).
func (a *Applier) Apply(ctx context.Context, p *plan.Plan, opts ApplyOptions) (*Result, error) {
	return a.ApplySource(ctx, p.Source(), opts)
}

// ApplySource applies the changes of a plan that are not yet in effect. It holds the
// namespace's lock throughout, validates the plan against the state it reads first (a plan that
// does not fit changes nothing), refuses over SSH a plan that changes the route back to the
// operator unless opts allow it, journals the steps with their undo, starts the revert timer
// when opts.Confirm is set, applies step by step, and on any failure or cancellation undoes
// what took effect, in reverse. After a successful apply it reads the state back and reports
// drift. An apply of a plan that is already in effect does nothing and writes no journal.
func (a *Applier) ApplySource(ctx context.Context, src plan.Source, opts ApplyOptions) (*Result, error) {
	if opts.Confirm < 0 {
		return nil, fmt.Errorf("a confirmation window of %s: give a positive duration", opts.Confirm)
	}
	store, release, err := a.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	host, closeHost, err := a.host()
	if err != nil {
		return nil, err
	}
	defer closeHost()
	if err := a.checkSettled(ctx, store, host); err != nil {
		return nil, err
	}

	now := time.Now()
	head := JournalHead{ID: newID(now), Started: now.UTC(), Intent: src.Header().Intent, Namespace: a.NS.Name, PID: os.Getpid(), Confirm: opts.Confirm}
	sw, err := store.newSteps(head.ID)
	if err != nil {
		return nil, err
	}
	pl, err := a.plan(ctx, host, src, opts, sw.add)
	if err != nil {
		sw.abort()
		return nil, err
	}
	res := &Result{Before: pl.before, Changes: pl.total, Pending: pl.pending, Lockout: pl.lockout, Notes: store.Notes}
	if pl.steps == 0 {
		sw.abort()
		res.NoOp = true
		return res, nil
	}
	if err := sw.finish(); err != nil {
		return nil, fmt.Errorf("journaling the steps (nothing was changed): %w", err)
	}
	head.Steps, head.Changes, head.Pending = pl.steps, pl.total, pl.pending
	j, err := store.create(head)
	if err != nil {
		os.Remove(sw.path)
		return nil, fmt.Errorf("%w (nothing was changed)", err)
	}
	defer j.Close()
	res.Journal = &j.Journal
	sf, err := store.openSteps(j)
	if err != nil {
		a.abandon(j, "its steps could not be read back")
		return nil, fmt.Errorf("%w (nothing was changed)", err)
	}
	defer sf.close()

	if opts.Confirm > 0 {
		// Started before the first step: if this process dies mid-apply, the timer still
		// rolls back what was done.
		if err := a.startTimer(store, j, opts.Confirm); err != nil {
			return nil, err
		}
	}
	j.prepared = j.size
	if err := a.run(ctx, host, j, sf, pl.wants); err != nil {
		return nil, err
	}
	var confirmBy time.Time
	if opts.Confirm > 0 {
		confirmBy = time.Now().Add(opts.Confirm).UTC()
	}
	if err := j.write(record{Type: "applied", ConfirmBy: confirmBy}, true); err != nil {
		// An apply that cannot record that it finished undoes itself: a journal left at
		// "applying" would look interrupted, and nobody would confirm it.
		return nil, a.fail(ctx, host, j, sf, j.Steps-1, fmt.Errorf("recording the apply as finished: %w", err))
	}
	store.updateIndex(j)
	drift, err := a.drift(ctx, host, src, pl.wants)
	if err != nil {
		return res, fmt.Errorf("applied, but reading the state back for the drift check failed: %w", err)
	}
	res.Drift = drift
	if len(drift) > 0 {
		_ = j.write(record{Type: "drift", Lines: drift}, false)
		store.updateIndex(j)
	}
	return res, nil
}

// abandon records that an apply stopped before its first step.
func (a *Applier) abandon(j *Journal, why string) {
	_ = j.write(record{Type: "rolled-back", Reason: why + "; nothing was changed"}, true)
	j.store.updateIndex(j)
}

// startTimer starts the revert timer and journals its identity.
func (a *Applier) startTimer(store *Store, j *Journal, after time.Duration) error {
	start := a.StartTimer
	if start == nil {
		start = StartRevertTimer
	}
	pid, err := start(store, j, after)
	if err != nil {
		a.abandon(j, "the revert timer could not start")
		return fmt.Errorf("starting the revert timer (nothing was changed): %w", err)
	}
	t := &TimerID{PID: pid}
	if pid > 0 {
		t.Start, _ = processStart(pid)
		t.Boot = bootID()
	}
	if err := j.write(record{Type: "timer", Timer: t}, true); err != nil {
		stopTimer(t, j.ID)
		a.abandon(j, "the revert timer could not be journaled")
		return fmt.Errorf("journaling the revert timer (nothing was changed): %w", err)
	}
	return nil
}

// stopTimer ends a revert timer, if the process is still that timer.
func stopTimer(t *TimerID, id string) {
	if t != nil && t.PID > 0 && timerAlive(t, id) {
		_ = syscall.Kill(t.PID, syscall.SIGTERM)
	}
}

// Prepare reads the state and goes through the plan as an apply would, without changing
// anything or writing a journal (apply --dry-run): it returns the steps, or the plan's
// problems.
func (a *Applier) Prepare(ctx context.Context, src plan.Source, opts ApplyOptions) (*Prepared, error) {
	host, closeHost, err := a.host()
	if err != nil {
		return nil, err
	}
	defer closeHost()
	var infos []StepInfo
	pl, err := a.plan(ctx, host, src, opts, func(k int, st *Step) error {
		for len(infos) <= k {
			infos = append(infos, StepInfo{})
		}
		kind := plan.ChangeKind("")
		if len(st.Changes) > 0 {
			kind = st.Changes[0].Kind
		}
		infos[k] = StepInfo{Summary: st.Summary(), Kind: kind, Changes: len(st.Changes)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Prepared{Before: pl.before, Changes: pl.total, Pending: pl.pending, Steps: infos, Lockout: pl.lockout}, nil
}

// checkSettled refuses to stack an apply on one that waits for confirmation (its revert would
// also undo the new one's ground) or on one that was interrupted half way. An apply waiting for
// confirmation whose revert timer died and whose deadline has passed is reverted now: that is
// what its operator was promised.
func (a *Applier) checkSettled(ctx context.Context, store *Store, host Host) error {
	latest, err := store.Latest()
	if err != nil || latest == nil {
		return err
	}
	switch latest.Status {
	case StatusPending:
		if latest.TimerDead {
			if time.Now().After(latest.ConfirmBy) {
				reason := fmt.Sprintf("not confirmed by %s; its revert timer had died", latest.ConfirmBy.Local().Format("15:04:05"))
				if _, err := a.rollbackLocked(ctx, store, host, latest.ID, reason); err != nil {
					return fmt.Errorf("journal %s was due to revert at %s, but its revert timer died; reverting it now failed: %w", latest.ID, latest.ConfirmBy.Local().Format("15:04:05"), err)
				}
				return fmt.Errorf("journal %s was due to revert at %s, but its revert timer (pid %d) had died: it has been rolled back now; plan and apply again", latest.ID, latest.ConfirmBy.Local().Format("15:04:05"), latest.TimerPID())
			}
			return fmt.Errorf("the apply of journal %s waits for confirmation until %s, but its revert timer (pid %d) has died, so nothing will revert it: run roundtrip confirm to keep it or roundtrip rollback to undo it first",
				latest.ID, latest.ConfirmBy.Local().Format("15:04:05"), latest.TimerPID())
		}
		return fmt.Errorf("the apply of journal %s waits for confirmation until %s: run roundtrip confirm (or roundtrip rollback) first",
			latest.ID, latest.ConfirmBy.Local().Format("15:04:05"))
	case StatusApplying, StatusRollbackFailed:
		return fmt.Errorf("the apply of journal %s did not finish cleanly (%s): run roundtrip rollback %s first", latest.ID, latest.Status, latest.ID)
	}
	return nil
}

// run applies the steps one by one. The next step is read from the steps file while the
// kernel works on the current one; so are the drift check's hashes of its routes and rules
// (wants), which costs nothing then and would be a second read of every batch after the apply.
func (a *Applier) run(ctx context.Context, host Host, j *Journal, sf *stepsFile, wants *driftWants) error {
	type read struct {
		st  *Step
		err error
	}
	// One fetch runs at a time (the next starts once the last is received), so wants is
	// filled in order and is complete when the last step has been received.
	fetch := func(k int) <-chan read {
		c := make(chan read, 1)
		if k >= j.Steps {
			return c
		}
		go func() {
			st, err := sf.step(k)
			if err == nil && st.Batch {
				for _, c := range st.Changes {
					wants.add(0, c)
				}
			}
			c <- read{st, err}
		}()
		return c
	}
	next := fetch(0)
	for k := range j.Steps {
		r := <-next
		next = fetch(k + 1)
		st, err := r.st, r.err
		if err != nil {
			return a.fail(ctx, host, j, sf, k-1, err)
		}
		a.logf("step %d/%d: %s", k+1, j.Steps, st.Summary())
		if err := ctx.Err(); err != nil {
			return a.fail(ctx, host, j, sf, k-1, fmt.Errorf("interrupted (Ctrl-C or SIGTERM) before step %d: %w", k+1, err))
		}
		if a.BeforeStep != nil {
			if err := a.BeforeStep(k, *st); err != nil {
				return a.fail(ctx, host, j, sf, k-1, stepError(k, j.Steps, st, err))
			}
		}
		// The start is on disk before the kernel sees the step: a step the journal cannot
		// record is not made.
		if err := j.write(record{Type: "start", Step: k}, true); err != nil {
			return a.fail(ctx, host, j, sf, k-1, stepError(k, j.Steps, st, err))
		}
		failure, err := a.exec(ctx, host, st)
		if err == nil && a.AfterStep != nil {
			err = a.AfterStep(k, *st)
		}
		if err != nil {
			// Unrecorded (a full disk), what took effect is still known here for the undo.
			_ = j.write(record{Type: "failed", Step: k, Error: err.Error(), NoEffect: failure.noEffect,
				Batch: failure.batch, Sent: failure.sent, Refused: keys(failure.refused)}, true)
			j.failures[k] = failure
			return a.fail(ctx, host, j, sf, k, stepError(k, j.Steps, st, err))
		}
		// Not synced: should it be lost, the step counts as started, and undoing a step that
		// was done is what a rollback would do anyway.
		if err := j.write(record{Type: "done", Step: k}, false); err != nil {
			return a.fail(ctx, host, j, sf, k, stepError(k, j.Steps, st, err))
		}
		recycle(st)
	}
	return nil
}

func stepError(k, n int, st *Step, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted (Ctrl-C or SIGTERM) during step %d of %d (%s): %w", k+1, n, st.Summary(), context.Canceled)
	}
	return fmt.Errorf("applying step %d of %d (%s): %w", k+1, n, st.Summary(), err)
}

func keys(m map[int]bool) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// fail undoes the steps up to last that took effect, journals the outcome and returns the
// error to report. It undoes even when ctx is cancelled: an interrupted apply must leave the
// host as it was.
func (a *Applier) fail(ctx context.Context, host Host, j *Journal, sf *stepsFile, last int, cause error) error {
	ctx = context.WithoutCancel(ctx)
	undoErr := a.undo(ctx, host, j, sf, last)
	reason := "the apply failed"
	if errors.Is(cause, context.Canceled) {
		reason = "the apply was interrupted"
	}
	if undoErr != nil {
		_ = j.write(record{Type: "rolled-back", Reason: reason, Error: undoErr.Error()}, true)
		j.store.updateIndex(j)
		return fmt.Errorf("%w; undoing the completed steps also failed: %v: run `roundtrip rollback %s` to retry, and compare with `roundtrip snapshot`", cause, undoErr, j.ID)
	}
	if err := j.write(record{Type: "rolled-back", Reason: reason}, true); err != nil {
		// The host is as it was, but the journal cannot say so (a full disk): cut it back to
		// before its first step, which reads as an apply that changed nothing.
		if terr := j.cutToPrepared(); terr != nil {
			return fmt.Errorf("%w; the completed steps were undone and the host is as it was, but journal %s could not record that (%v): free space, then run `roundtrip rollback %s` to close it", cause, j.ID, err, j.ID)
		}
	}
	j.store.updateIndex(j)
	return fmt.Errorf("%w; the completed steps were undone and the host is as it was", cause)
}

// cutToPrepared truncates the journal to its records before the first step.
func (j *Journal) cutToPrepared() error {
	if j.f == nil || j.prepared == 0 {
		return errors.New("the journal is not open")
	}
	if err := j.f.Truncate(j.prepared); err != nil {
		return err
	}
	if err := j.f.Sync(); err != nil {
		return err
	}
	j.size = j.prepared
	return nil
}

// undo reverses the steps last..0 of a journal that took effect, skipping those already
// undone, steps that never started, failed steps that took no effect, and the changes of a
// failed batch that the kernel refused or that were never sent. Undo is tolerant: an undo that
// finds its object already as wanted (added and present, deleted and gone) succeeds, so a step
// that was half done, or undone before a crash, is undone safely.
func (a *Applier) undo(ctx context.Context, host Host, j *Journal, sf *stepsFile, last int) error {
	var errs []error
	for k := last; k >= 0; k-- {
		if j.Undone[k] || !j.Started[k] && !j.Done[k] {
			continue
		}
		f, failed := j.failures[k]
		if failed && f.noEffect && !j.Done[k] {
			continue
		}
		st, err := sf.step(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("step %d: %w", k+1, err))
			continue
		}
		var took []int // nil: all of it
		if failed && f.batch && !j.Done[k] {
			took = []int{}
			for i := range min(f.sent, len(st.Changes)) {
				if !f.refused[i] {
					took = append(took, i)
				}
			}
		}
		a.logf("undo step %d: %s", k+1, st.Summary())
		if err := a.undoStep(ctx, host, st, took); err != nil {
			errs = append(errs, fmt.Errorf("step %d (%s): %w", k+1, st.Summary(), err))
			_ = j.write(record{Type: "undo-failed", Step: k, Error: err.Error()}, true)
			continue
		}
		_ = j.write(record{Type: "undone", Step: k}, false)
		j.Undone[k] = true
	}
	return errors.Join(errs...)
}

// ErrNothingToRollBack is returned when a namespace has no active journal.
var ErrNothingToRollBack = errors.New("nothing to roll back")

// Rollback undoes an apply: the journal with that id, or the most recent active one when id
// is empty. Only the most recent active journal can be rolled back, since later applies may
// build on it. Steps are undone in reverse, including one that an interrupted apply started.
func (a *Applier) Rollback(ctx context.Context, id, reason string) (*Journal, error) {
	store, release, err := a.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	host, closeHost, err := a.host()
	if err != nil {
		return nil, err
	}
	defer closeHost()
	return a.rollbackLocked(ctx, store, host, id, reason)
}

func (a *Applier) rollbackLocked(ctx context.Context, store *Store, host Host, id, reason string) (*Journal, error) {
	latest, err := store.Latest()
	if err != nil {
		return nil, err
	}
	if latest == nil {
		if id != "" {
			if other, err := store.Load(id); err == nil {
				return nil, fmt.Errorf("journal %s is %s: there is nothing of it to roll back", id, other.Status)
			}
		}
		return nil, fmt.Errorf("%w in %s: no applied plan is active (see roundtrip history)", ErrNothingToRollBack, a.NS)
	}
	if id != "" && id != latest.ID {
		other, err := store.Load(id)
		if err != nil {
			return nil, err
		}
		if !other.Active() {
			return nil, fmt.Errorf("journal %s is %s: there is nothing of it to roll back", id, other.Status)
		}
		return nil, fmt.Errorf("journal %s was applied after %s: roll it back first (roundtrip rollback %s)", latest.ID, id, latest.ID)
	}
	j, err := store.Load(latest.ID)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	sf, err := store.openSteps(j)
	if err != nil {
		return nil, fmt.Errorf("rolling back %s: %w", j.ID, err)
	}
	defer sf.close()
	last := -1
	for k := range j.Steps {
		if j.Started[k] || j.Done[k] {
			last = k
		}
	}
	if reason == "" {
		reason = "rolled back by request"
	}
	// A rollback finishes even when interrupted: half a rollback helps nobody.
	if err := a.undo(context.WithoutCancel(ctx), host, j, sf, last); err != nil {
		_ = j.write(record{Type: "rolled-back", Reason: reason, Error: err.Error()}, true)
		store.updateIndex(j)
		return j, fmt.Errorf("rolling back %s: %w; run roundtrip rollback again once the cause is fixed", j.ID, err)
	}
	if err := j.write(record{Type: "rolled-back", Reason: reason}, true); err != nil {
		return j, fmt.Errorf("rolled back %s, but the journal could not record it: %w", j.ID, err)
	}
	stopTimer(j.Timer, j.ID)
	store.updateIndex(j)
	return j, nil
}

// exec performs a step. On failure it says how much of the step took effect.
func (a *Applier) exec(ctx context.Context, host Host, st *Step) (stepFailure, error) {
	switch {
	case st.File != nil:
		if err := host.WriteFile(st.File.Path, st.File.New); err != nil {
			return stepFailure{noEffect: true}, err
		}
		return stepFailure{}, nil
	case st.Batch:
		return a.batch(ctx, host, st.Changes, st.First)
	case st.NFT != nil:
		if err := loadNFT(ctx, host, st); err != nil {
			return stepFailure{noEffect: true}, err
		}
		return stepFailure{}, nil
	case len(st.Changes) > 0 && st.Changes[0].Kind == plan.KindChain:
		if err := restoreChains(ctx, host, st.Changes); err != nil {
			return stepFailure{noEffect: true}, err
		}
		return stepFailure{}, nil
	}
	for _, c := range st.Changes {
		effect, err := execChange(ctx, host, c, false)
		if err != nil {
			return stepFailure{noEffect: !effect}, fmt.Errorf("%s: %w", c.Summary(), err)
		}
	}
	return stepFailure{}, nil
}

// batch sends a batch of routes or rules, stopping at the first group with a failure.
func (a *Applier) batch(ctx context.Context, host Host, changes []plan.Change, first int) (stepFailure, error) {
	done, failed, err := sendBatch(ctx, host, changes, false, true)
	if err == nil && len(failed) == 0 {
		return stepFailure{}, nil
	}
	f := stepFailure{batch: true, sent: done, refused: map[int]bool{}}
	var errs []error
	for _, fe := range failed {
		f.refused[fe.Index] = true
		if len(errs) < 3 {
			errs = append(errs, fmt.Errorf("change %d of the plan (%s): %w", first+fe.Index+1, changes[fe.Index].Summary(), fe.Err))
		}
	}
	if len(failed) > 3 {
		errs = append(errs, fmt.Errorf("and %d more changes of the batch", len(failed)-3))
	}
	if err != nil {
		errs = append(errs, err)
	}
	return f, errors.Join(errs...)
}

// sendBatch sends route or rule changes (all of one kind) as one pipelined batch. In tolerant
// mode (undo) adds are made as replaces.
func sendBatch(ctx context.Context, host Host, changes []plan.Change, tolerant, stopOnError bool) (int, []OpError, error) {
	if len(changes) == 0 {
		return 0, nil, nil
	}
	if changes[0].Kind == plan.KindRoute {
		buf := routeOps.Get().(*[]RouteOp)
		defer routeOps.Put(buf)
		ops := (*buf)[:0]
		for _, c := range changes {
			op := c.Op
			if tolerant && op == plan.OpAdd {
				op = plan.OpReplace // undo re-adds a route as it was; replacing is idempotent
			}
			ops = append(ops, RouteOp{Op: op, Route: *c.Route})
		}
		*buf = ops
		return host.Routes(ctx, ops, stopOnError)
	}
	ops := make([]RuleOp, len(changes))
	for i, c := range changes {
		ops[i] = RuleOp{Op: c.Op, Rule: *c.Rule}
	}
	return host.Rules(ctx, ops, stopOnError)
}

// routeOps recycles the op lists of batches: a million routes come in a few hundred of them.
var routeOps = sync.Pool{New: func() any { return new([]RouteOp) }}

// ignorable reports whether an undo's failure means its object is already as wanted.
func ignorable(c plan.Change, err error) bool {
	if c.Op == plan.OpDelete {
		return isErrno(err, unix.ESRCH, unix.ENOENT, unix.ENODEV, unix.EADDRNOTAVAIL)
	}
	return isErrno(err, unix.EEXIST)
}

// undoStep reverses a step; for a batch, only the changes in took (all when nil).
func (a *Applier) undoStep(ctx context.Context, host Host, st *Step, took []int) error {
	if st.File != nil {
		if st.File.Existed {
			return host.WriteFile(st.File.Path, st.File.Old)
		}
		return host.RemoveFile(st.File.Path)
	}
	if st.NFT != nil {
		return undoNFT(ctx, host, st.NFT)
	}
	if st.Batch {
		if took == nil {
			took = make([]int, len(st.Changes))
			for i := range took {
				took[i] = i
			}
		}
		var undo []plan.Change
		for _, i := range slices.Backward(took) {
			undo = append(undo, st.UndoOf(i)...)
		}
		return undoChanges(ctx, host, undo)
	}
	return undoChanges(ctx, host, st.Undo)
}

// undoChanges makes undo changes tolerantly, in order: routes and rules in batches, chain
// changes in one transaction at the end.
func undoChanges(ctx context.Context, host Host, undo []plan.Change) error {
	var chains []plan.Change
	for i := 0; i < len(undo); {
		c := undo[i]
		switch c.Kind {
		case plan.KindChain:
			chains = append(chains, c)
			i++
			continue
		case plan.KindRoute, plan.KindRule:
			j := i
			for j < len(undo) && undo[j].Kind == c.Kind {
				j++
			}
			if err := undoBatch(ctx, host, undo[i:j]); err != nil {
				return err
			}
			i = j
			continue
		}
		if _, err := execChange(ctx, host, c, true); err != nil {
			return fmt.Errorf("%s: %w", c.Summary(), err)
		}
		i++
	}
	if len(chains) > 0 {
		return restoreChains(ctx, host, chains)
	}
	return nil
}

func undoBatch(ctx context.Context, host Host, changes []plan.Change) error {
	_, failed, err := sendBatch(ctx, host, changes, true, false)
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range failed {
		if !ignorable(changes[f.Index], f.Err) {
			errs = append(errs, fmt.Errorf("%s: %w", changes[f.Index].Summary(), f.Err))
		}
	}
	return errors.Join(errs...)
}

// execChange makes one change; tolerant (undo) accepts an object already as wanted. It
// reports whether a failed change may have taken effect in part.
func execChange(ctx context.Context, host Host, c plan.Change, tolerant bool) (effect bool, err error) {
	switch c.Kind {
	case plan.KindLink:
		return execLink(host, c, tolerant)
	case plan.KindAddress:
		if c.Op == plan.OpDelete {
			err = host.AddrDel(c.Address.Dev, c.Address.Address)
		} else {
			err = host.AddrAdd(c.Address.Dev, c.Address.Address, false)
		}
	case plan.KindSysctl:
		err = host.WriteSysctl(c.Sysctl.Key, c.Sysctl.Value)
	case plan.KindRoute, plan.KindRule:
		var failed []OpError
		_, failed, err = sendBatch(ctx, host, []plan.Change{c}, tolerant, true)
		if err == nil && len(failed) > 0 {
			err = failed[0].Err
		}
	case plan.KindChain:
		err = restoreChains(ctx, host, []plan.Change{c})
	case plan.KindConntrack:
		// A flush cannot be undone, and deletes what it can as it goes.
		return true, host.FlushConntrack(ctx, *c.Conntrack)
	case plan.KindTable:
		return false, fmt.Errorf("table names are written as one file step, not one by one")
	case plan.KindNFT:
		return false, fmt.Errorf("nft chains are loaded as one nft -f step, not one by one")
	}
	if tolerant && err != nil && ignorable(c, err) {
		return false, nil
	}
	return false, err
}

// execLink creates, settles or deletes a link. A link it creates goes again if settling it
// fails, so a failed creation leaves nothing.
func execLink(host Host, c plan.Change, tolerant bool) (bool, error) {
	l := c.Link
	if c.Op == plan.OpDelete {
		err := host.LinkDel(l.Name)
		if tolerant && isErrno(err, unix.ENODEV) {
			return false, nil
		}
		return false, err
	}
	exists, err := host.LinkExists(l.Name)
	if err != nil {
		return false, err
	}
	if !exists {
		if err := host.LinkAdd(*l); err != nil {
			return false, err
		}
		if err := settleLink(host, *l); err != nil {
			return false, errors.Join(err, host.LinkDel(l.Name))
		}
		return false, nil
	}
	return true, settleLink(host, *l)
}

// settleLink gives an existing link the planned MTU, master, up state and addresses.
func settleLink(host Host, l model.Link) error {
	if err := host.LinkSet(l); err != nil {
		return err
	}
	for _, ad := range l.Addrs {
		if err := host.AddrAdd(l.Name, ad, true); err != nil && !isErrno(err, unix.EEXIST) {
			return fmt.Errorf("adding address %s: %w", ad.Prefix, err)
		}
	}
	return nil
}

// restoreChains applies chain changes of one family as one iptables-restore transaction, rendered
// against the rules as they are now.
func restoreChains(ctx context.Context, host Host, changes []plan.Change) error {
	nf, err := host.ReadNetfilter(ctx)
	if err != nil {
		return err
	}
	if nf.Unavailable != "" {
		return fmt.Errorf("cannot change iptables rules: %s", nf.Unavailable)
	}
	f, backend := changes[0].Chain.Family, changes[0].Chain.Backend
	tx := plan.NetfilterTransaction(f, changes, &model.State{Netfilter: nf})
	if tx == nil {
		return nil
	}
	if err := host.RestoreIn(ctx, backend, f, tx, false); err != nil {
		return fmt.Errorf("%w\ntransaction:\n%s", err, tx)
	}
	return nil
}

// tableFileUndo computes roundtrip's rt_tables file after the table changes, with its content
// before.
func (a *Applier) tableFileUndo(host Host, changes []plan.Change) (*FileUndo, error) {
	path := a.tablesFile()
	fu := &FileUndo{Path: path}
	old, err := host.ReadFile(path)
	switch {
	case err == nil:
		fu.Existed, fu.Old = true, old
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	names, err := model.ParseRTTables(old)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w; fix or remove that line", path, err)
	}
	for _, c := range changes {
		if c.Op == plan.OpDelete {
			delete(names, c.Table.ID)
			continue
		}
		for id, n := range names {
			if n == c.Table.Name {
				delete(names, id)
			}
		}
		names[c.Table.ID] = c.Table.Name
	}
	ids := make([]int, 0, len(names))
	for id := range names {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b bytes.Buffer
	b.WriteString("# Routing table names written by roundtrip; `roundtrip rollback` restores the previous file.\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "%d\t%s\n", id, names[id])
	}
	fu.New = b.Bytes()
	return fu, nil
}
