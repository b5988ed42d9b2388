package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ti-mo/conntrack"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"roundtrip/engine"
	"roundtrip/engine/safefile"
)

// Applier applies plans to one network namespace: links, addresses, routes and rules through
// one netlink handle, roundtrip's iptables chains in one `iptables-restore --noflush -w`
// transaction per family, sysctls under /proc/sys/net inside the namespace, conntrack flushes
// through ctnetlink. It journals every step before moving on and undoes the completed steps in
// reverse when one fails, so the host ends either changed as planned or as it was.
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

	// BeforeStep and AfterStep are failure-injection hooks for tests: an error from BeforeStep
	// fails step i before it starts, one from AfterStep fails it after its kernel work is done
	// but before the journal records it as done.
	BeforeStep func(i int, s Step) error
	AfterStep  func(i int, s Step) error
}

// ApplyOptions are the choices of one apply.
type ApplyOptions struct {
	// Confirm, when positive, starts a detached timer that rolls the apply back after this
	// long unless `roundtrip confirm` runs first.
	Confirm time.Duration
}

// Result is what an apply did.
type Result struct {
	Journal *Journal     // nil when nothing needed changing
	Pending *engine.Plan // the changes that were not yet in effect
	Before  *engine.State
	After   *engine.State
	// Drift lists planned changes not in effect when the state was read back after the apply.
	Drift []string
	NoOp  bool
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

func (a *Applier) read(ctx context.Context) (*engine.State, error) {
	return ReadWith(ctx, a.NS, ReadOptions{RTTablesDirs: a.RTTablesDirs})
}

// tablesFile is where roundtrip writes routing table names.
func (a *Applier) tablesFile() string {
	dir := RTTablesDirs()[0]
	if len(a.RTTablesDirs) > 0 {
		dir = a.RTTablesDirs[0]
	}
	return filepath.Join(dir, engine.RTTablesFile)
}

// Prepare reads the state, validates the plan against it and computes the steps an apply
// would take, without changing anything (apply --dry-run). Errors are the plan's problems.
func (a *Applier) Prepare(ctx context.Context, p *engine.Plan) (before *engine.State, pending *engine.Plan, steps []Step, err error) {
	before, err = a.read(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := a.readSysctls(before, p); err != nil {
		return nil, nil, nil, err
	}
	if err := p.Validate(before); err != nil {
		return nil, nil, nil, err
	}
	pending = p.Pending(before)
	steps, err = a.steps(ctx, pending, before)
	if err != nil {
		return nil, nil, nil, err
	}
	return before, pending, steps, nil
}

// readSysctls adds to before the current values of the plan's sysctls that the state does not
// hold (a State keeps only the path-deciding ones), so their undo can be computed.
func (a *Applier) readSysctls(before *engine.State, p *engine.Plan) error {
	var keys []string
	for _, c := range p.Changes {
		if c.Kind == engine.KindSysctl {
			if _, ok := before.Sysctls[c.Sysctl.Key]; !ok {
				keys = append(keys, c.Sysctl.Key)
			}
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if before.Sysctls == nil {
		before.Sysctls = engine.Sysctls{}
	}
	return a.NS.Do(func() error {
		for _, k := range keys {
			b, err := os.ReadFile(SysctlPath(k))
			if errors.Is(err, fs.ErrNotExist) {
				if iface, ok := engine.SysctlIface(k); ok && before.LinkByName(iface) == nil {
					continue // a link the plan creates
				}
				return fmt.Errorf("sysctl %s does not exist on this kernel (%s is missing): check the name", k, SysctlPath(k))
			}
			if err != nil {
				return fmt.Errorf("reading sysctl %s: %w", k, err)
			}
			before.Sysctls[k] = strings.TrimSpace(string(b))
		}
		return nil
	})
}

// steps groups the pending changes into steps and computes each one's undo from before.
// Netfilter changes of a family become one step (one transaction), tried first with
// iptables-restore --test so that a rule the kernel would refuse stops the apply before
// anything changes; table names become one step (one file).
func (a *Applier) steps(ctx context.Context, p *engine.Plan, before *engine.State) ([]Step, error) {
	undos, err := p.Inverses(before)
	if err != nil {
		return nil, err
	}
	var steps []Step
	nfStep := map[engine.Family]int{}
	tableStep := -1
	// batchUndo collects a batch's undos in apply order; they are laid out in reverse once the
	// batch is complete (prepending per change copied the list every time: quadratic at 1M).
	batchUndo := map[int][][]engine.Change{}
	for ci, c := range p.Changes {
		undo := undos[ci]
		switch {
		case c.Kind == engine.KindChain:
			i, ok := nfStep[c.Chain.Family]
			if !ok {
				steps = append(steps, Step{})
				i = len(steps) - 1
				nfStep[c.Chain.Family] = i
			}
			steps[i].Changes = append(steps[i].Changes, c)
			steps[i].Undo = append(steps[i].Undo, undo...)
		case c.Kind == engine.KindTable:
			if tableStep < 0 {
				steps = append(steps, Step{})
				tableStep = len(steps) - 1
			}
			steps[tableStep].Changes = append(steps[tableStep].Changes, c)
		case batchable(c) && len(steps) > 0 && len(steps[len(steps)-1].Changes) < maxBatch &&
			batchable(steps[len(steps)-1].Changes[0]) && steps[len(steps)-1].Changes[0].Kind == c.Kind:
			// Routes and rules come in thousands (a destination list): one journal record per
			// batch rather than per route. Their undos are independent of each other; the
			// batch undoes in reverse all the same.
			last := &steps[len(steps)-1]
			last.Changes = append(last.Changes, c)
			batchUndo[len(steps)-1] = append(batchUndo[len(steps)-1], undo)
		default:
			steps = append(steps, Step{Changes: []engine.Change{c}, Undo: undo})
			if batchable(c) {
				batchUndo[len(steps)-1] = [][]engine.Change{undo}
			}
		}
	}
	for i, chunks := range batchUndo {
		var u []engine.Change
		for j := len(chunks) - 1; j >= 0; j-- {
			u = append(u, chunks[j]...)
		}
		steps[i].Undo = u
	}
	if tableStep >= 0 {
		fu, err := a.tableFileUndo(steps[tableStep].Changes)
		if err != nil {
			return nil, err
		}
		steps[tableStep].File = fu
	}
	for f, i := range nfStep {
		tx := engine.NetfilterTransaction(f, steps[i].Changes, before)
		if _, err := a.NS.Runner().Run(ctx, tx, restoreTool(f), "--test", "--noflush", "-w"); err != nil {
			return nil, fmt.Errorf("checking the plan's %s rules with %s --test: the kernel refuses them (nothing was changed): %w", f, restoreTool(f), err)
		}
	}
	return steps, nil
}

// maxBatch bounds how many routes or rules one step holds.
const maxBatch = 256

// batchable reports whether a change may share a step with others of its kind.
func batchable(c engine.Change) bool {
	return c.Kind == engine.KindRoute || c.Kind == engine.KindRule
}

func restoreTool(f engine.Family) string {
	if f == engine.V6 {
		return "ip6tables-restore"
	}
	return "iptables-restore"
}

// tableFileUndo computes roundtrip's rt_tables file after the table changes, with its content
// before.
func (a *Applier) tableFileUndo(changes []engine.Change) (*FileUndo, error) {
	path := a.tablesFile()
	fu := &FileUndo{Path: path}
	old, err := os.ReadFile(path)
	switch {
	case err == nil:
		fu.Existed, fu.Old = true, old
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	names, err := engine.ParseRTTables(old)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w; fix or remove that line", path, err)
	}
	for _, c := range changes {
		if c.Op == engine.OpDelete {
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

// Apply applies the changes of p that are not yet in effect. It holds the namespace's lock
// throughout, validates the plan against the state it reads first (a plan that does not fit
// changes nothing), journals the steps with their undo, starts the revert timer when
// opts.Confirm is set, applies step by step, and on any failure undoes the completed steps in
// reverse. After a successful apply it reads the state back and reports drift. An apply of a
// plan that is already in effect does nothing and writes no journal.
func (a *Applier) Apply(ctx context.Context, p *engine.Plan, opts ApplyOptions) (*Result, error) {
	store, release, err := a.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := checkSettled(store); err != nil {
		return nil, err
	}

	before, pending, steps, err := a.Prepare(ctx, p)
	if err != nil {
		return nil, err
	}
	res := &Result{Before: before, Pending: pending}
	if len(steps) == 0 {
		res.NoOp, res.After = true, before
		return res, nil
	}
	j, err := store.Create(JournalHead{Intent: p.Intent, Namespace: a.NS.Name, Confirm: opts.Confirm, Plan: p, Steps: steps})
	if err != nil {
		return nil, err
	}
	defer j.Close()
	res.Journal = j
	if opts.Confirm > 0 {
		// Started before the first step: if this process dies mid-apply, the timer still
		// rolls back what was done.
		start := a.StartTimer
		if start == nil {
			start = StartRevertTimer
		}
		pid, err := start(store, j, opts.Confirm)
		if err != nil {
			_ = j.write(record{Type: "rolled-back", Reason: "the revert timer could not start; nothing was changed"})
			return nil, fmt.Errorf("starting the revert timer (nothing was changed): %w", err)
		}
		if err := j.write(record{Type: "timer", PID: pid}); err != nil {
			return nil, err
		}
	}

	h, err := a.NS.Handle()
	if err != nil {
		_ = j.write(record{Type: "rolled-back", Reason: "netlink unavailable; nothing was changed"})
		return nil, err
	}
	defer h.Close()
	ex := &executor{ns: a.NS, h: h, runner: a.NS.Runner()}
	defer ex.close()
	for i, st := range steps {
		a.logf("step %d/%d: %s", i+1, len(steps), st.Summary())
		if a.BeforeStep != nil {
			if err := a.BeforeStep(i, st); err != nil {
				return nil, a.fail(ctx, ex, j, i, false, err)
			}
		}
		if err := j.write(record{Type: "start", Step: i}); err != nil {
			return nil, a.fail(ctx, ex, j, i, false, err)
		}
		err := ex.step(ctx, st)
		if err == nil && a.AfterStep != nil {
			err = a.AfterStep(i, st)
		}
		if err != nil {
			return nil, a.fail(ctx, ex, j, i, true, err)
		}
		if err := j.write(record{Type: "done", Step: i}); err != nil {
			return nil, a.fail(ctx, ex, j, i, true, err)
		}
	}
	var confirmBy time.Time
	if opts.Confirm > 0 {
		confirmBy = time.Now().Add(opts.Confirm).UTC()
	}
	if err := j.write(record{Type: "applied", ConfirmBy: confirmBy}); err != nil {
		return nil, err
	}
	after, err := a.read(ctx)
	if err != nil {
		return res, fmt.Errorf("applied, but reading the state back for the drift check failed: %w", err)
	}
	res.After = after
	res.Drift = p.Drift(after)
	if len(res.Drift) > 0 {
		_ = j.write(record{Type: "drift", Lines: res.Drift})
	}
	return res, nil
}

// checkSettled refuses to stack an apply on one that waits for confirmation (its revert would
// also undo the new one's ground) or on one that was interrupted half way.
func checkSettled(store *Store) error {
	latest, err := store.Latest()
	if err != nil || latest == nil {
		return err
	}
	switch latest.Status {
	case StatusPending:
		return fmt.Errorf("the apply of journal %s waits for confirmation until %s: run roundtrip confirm (or roundtrip rollback) first",
			latest.ID, latest.ConfirmBy.Local().Format("15:04:05"))
	case StatusApplying, StatusRollbackFailed:
		return fmt.Errorf("the apply of journal %s did not finish cleanly (%s): run roundtrip rollback %s first", latest.ID, latest.Status, latest.ID)
	}
	return nil
}

// fail undoes the steps before i (and step i itself when it started: it may be half done),
// journals the outcome and returns the error to report.
func (a *Applier) fail(ctx context.Context, ex *executor, j *Journal, i int, started bool, cause error) error {
	_ = j.write(record{Type: "failed", Step: i, Error: cause.Error()})
	last := i - 1
	if started {
		last = i
	}
	undoErr := a.undo(ctx, ex, j, last)
	reason := fmt.Sprintf("step %d failed", i+1)
	what := fmt.Sprintf("applying step %d of %d (%s)", i+1, len(j.Steps), j.Steps[i].Summary())
	if undoErr != nil {
		_ = j.write(record{Type: "rolled-back", Reason: reason, Error: undoErr.Error()})
		return fmt.Errorf("%s: %w; undoing the completed steps also failed: %v: run `roundtrip rollback %s` to retry, and compare with `roundtrip snapshot`", what, cause, undoErr, j.ID)
	}
	_ = j.write(record{Type: "rolled-back", Reason: reason})
	return fmt.Errorf("%s: %w; the completed steps were undone and the host is as it was", what, cause)
}

// undo reverses steps last..0 of a journal, skipping those already undone. Undo is tolerant:
// an undo that finds its object already as wanted (added and present, deleted and gone)
// succeeds, so a step that was half done, or undone before a crash, is undone safely.
func (a *Applier) undo(ctx context.Context, ex *executor, j *Journal, last int) error {
	var errs []error
	ex.tolerant = true
	defer func() { ex.tolerant = false }()
	for k := last; k >= 0; k-- {
		if j.Undone[k] {
			continue
		}
		st := j.Steps[k]
		a.logf("undo step %d: %s", k+1, st.Summary())
		if err := ex.undoStep(ctx, st); err != nil {
			errs = append(errs, fmt.Errorf("step %d (%s): %w", k+1, st.Summary(), err))
			_ = j.write(record{Type: "undo-failed", Step: k, Error: err.Error()})
			continue
		}
		_ = j.write(record{Type: "undone", Step: k})
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
	return a.rollbackLocked(ctx, store, id, reason)
}

func (a *Applier) rollbackLocked(ctx context.Context, store *Store, id, reason string) (*Journal, error) {
	latest, err := store.Latest()
	if err != nil {
		return nil, err
	}
	if latest == nil {
		return nil, fmt.Errorf("%w in %s: no applied plan is active (see roundtrip history)", ErrNothingToRollBack, a.NS)
	}
	j := latest
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
	h, err := a.NS.Handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	defer j.Close()
	ex := &executor{ns: a.NS, h: h, runner: a.NS.Runner()}
	defer ex.close()
	last := -1
	for k := range j.Steps {
		if j.Started[k] || j.Done[k] {
			last = k
		}
	}
	if reason == "" {
		reason = "rolled back by request"
	}
	if err := a.undo(ctx, ex, j, last); err != nil {
		_ = j.write(record{Type: "rolled-back", Reason: reason, Error: err.Error()})
		return j, fmt.Errorf("rolling back %s: %w; run roundtrip rollback again once the cause is fixed", j.ID, err)
	}
	if err := j.write(record{Type: "rolled-back", Reason: reason}); err != nil {
		return j, err
	}
	return j, nil
}

// executor performs changes in one namespace. In tolerant mode (undo), an add that finds the
// object present and a delete that finds it absent succeed.
type executor struct {
	ns       Namespace
	h        *vnl.Handle
	links    map[string]int // ifindex by name, cached for the apply: routes come by the thousand
	runner   Runner
	tolerant bool
	sock     *nl.NetlinkSocket // for rule requests; see ruleRequest
}

func (e *executor) step(ctx context.Context, st Step) error {
	if st.File != nil {
		return writeFileAtomic(st.File.Path, st.File.New, true)
	}
	if len(st.Changes) > 0 && st.Changes[0].Kind == engine.KindChain {
		return e.netfilter(ctx, st.Changes)
	}
	for _, c := range st.Changes {
		if err := e.change(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

func (e *executor) undoStep(ctx context.Context, st Step) error {
	if st.File != nil {
		if st.File.Existed {
			return writeFileAtomic(st.File.Path, st.File.Old, false)
		}
		if err := os.Remove(st.File.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", st.File.Path, err)
		}
		return nil
	}
	var chains []engine.Change
	for _, c := range st.Undo {
		if c.Kind == engine.KindChain {
			chains = append(chains, c)
			continue
		}
		if err := e.change(ctx, c); err != nil {
			return err
		}
	}
	if len(chains) > 0 {
		return e.netfilter(ctx, chains)
	}
	return nil
}

// writeFileAtomic replaces a file through a new, synced file renamed over it (never through
// a link planted at its path). The rt_tables file is 0644: ip reads it as any user.
func writeFileAtomic(path string, data []byte, mkdir bool) error {
	if mkdir {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
		}
	}
	return safefile.WriteFile(path, data, 0o644, nil)
}

// netfilter applies chain changes of one family as one iptables-restore transaction, rendered
// against the rules as they are now.
func (e *executor) netfilter(ctx context.Context, changes []engine.Change) error {
	nf, err := ReadNetfilter(ctx, e.runner)
	if err != nil {
		return err
	}
	if nf.Unavailable != "" {
		return fmt.Errorf("cannot change iptables rules: %s", nf.Unavailable)
	}
	f := changes[0].Chain.Family
	tx := engine.NetfilterTransaction(f, changes, &engine.State{Netfilter: nf})
	if tx == nil {
		return nil
	}
	if _, err := e.runner.Run(ctx, tx, restoreTool(f), "--noflush", "-w"); err != nil {
		return fmt.Errorf("%w\ntransaction:\n%s", err, tx)
	}
	return nil
}

// ignorable reports whether err means the object is already as an undo wants it.
func (e *executor) ignorable(err error, errnos ...syscall.Errno) bool {
	if !e.tolerant || err == nil {
		return false
	}
	for _, n := range errnos {
		if errors.Is(err, n) {
			return true
		}
	}
	return false
}

func (e *executor) change(ctx context.Context, c engine.Change) error {
	var err error
	switch c.Kind {
	case engine.KindLink:
		err = e.link(c)
	case engine.KindAddress:
		err = e.address(c)
	case engine.KindSysctl:
		err = e.ns.Do(func() error {
			return os.WriteFile(SysctlPath(c.Sysctl.Key), []byte(c.Sysctl.Value+"\n"), 0o644)
		})
	case engine.KindRoute:
		err = e.route(c)
	case engine.KindRule:
		err = e.rule(c)
	case engine.KindChain:
		err = e.netfilter(ctx, []engine.Change{c})
	case engine.KindConntrack:
		err = e.conntrack(ctx, *c.Conntrack)
	case engine.KindTable:
		return fmt.Errorf("table names are written as one file step, not one by one")
	}
	if err != nil {
		return fmt.Errorf("%s: %w", c.Summary(), err)
	}
	return nil
}

func (e *executor) linkIndex(name string) (int, error) {
	if i, ok := e.links[name]; ok {
		return i, nil
	}
	l, err := e.h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("finding link %s: %w", name, err)
	}
	if e.links == nil {
		e.links = map[string]int{}
	}
	e.links[name] = l.Attrs().Index
	return l.Attrs().Index, nil
}

func ipOf(a netip.Addr) net.IP {
	if !a.IsValid() {
		return nil
	}
	return net.IP(a.AsSlice())
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Masked().Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (e *executor) link(c engine.Change) error {
	// A link added, deleted or re-created changes ifindexes: forget the cached ones.
	e.links = nil
	l := c.Link
	existing, lerr := e.h.LinkByName(l.Name)
	if c.Op == engine.OpDelete {
		if lerr != nil {
			if e.tolerant {
				return nil
			}
			return lerr
		}
		return e.h.LinkDel(existing)
	}
	if lerr != nil {
		nl, err := e.newLink(*l)
		if err != nil {
			return err
		}
		if err := e.h.LinkAdd(nl); err != nil {
			return fmt.Errorf("creating link: %w", err)
		}
		if existing, lerr = e.h.LinkByName(l.Name); lerr != nil {
			return lerr
		}
		// Everything below is part of this step; if it fails the link goes again.
		if err := e.settleLink(existing, *l); err != nil {
			return errors.Join(err, e.h.LinkDel(existing))
		}
		return nil
	}
	return e.settleLink(existing, *l)
}

// settleLink gives an existing link the planned MTU, master, up state and addresses.
func (e *executor) settleLink(nl vnl.Link, l engine.Link) error {
	if l.MTU != 0 && nl.Attrs().MTU != l.MTU {
		if err := e.h.LinkSetMTU(nl, l.MTU); err != nil {
			return fmt.Errorf("setting mtu %d: %w", l.MTU, err)
		}
	}
	if l.Master != "" {
		idx, err := e.linkIndex(l.Master)
		if err != nil {
			return err
		}
		if err := e.h.LinkSetMasterByIndex(nl, idx); err != nil {
			return fmt.Errorf("setting master %s: %w", l.Master, err)
		}
	}
	if l.Up {
		if err := e.h.LinkSetUp(nl); err != nil {
			return fmt.Errorf("setting up: %w", err)
		}
	} else if err := e.h.LinkSetDown(nl); err != nil {
		return fmt.Errorf("setting down: %w", err)
	}
	for _, a := range l.Addrs {
		if err := e.h.AddrReplace(nl, netlinkAddr(a)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("adding address %s: %w", a.Prefix, err)
		}
	}
	return nil
}

// newLink builds the netlink object for a tunnel link, with iproute2's defaults where netlink
// would otherwise send other values (vxlan learning on, ipip path MTU discovery on).
func (e *executor) newLink(l engine.Link) (vnl.Link, error) {
	attrs := vnl.NewLinkAttrs()
	attrs.Name = l.Name
	attrs.MTU = l.MTU
	if l.HardwareAddr != "" {
		hw, err := net.ParseMAC(l.HardwareAddr)
		if err != nil {
			return nil, fmt.Errorf("hardware address %q: %w", l.HardwareAddr, err)
		}
		attrs.HardwareAddr = hw
	}
	t := engine.Tunnel{}
	if l.Tunnel != nil {
		t = *l.Tunnel
	}
	dev := 0
	if t.Dev != "" {
		idx, err := e.linkIndex(t.Dev)
		if err != nil {
			return nil, err
		}
		dev = idx
	}
	switch l.Kind {
	case "vxlan":
		v := &vnl.Vxlan{LinkAttrs: attrs, VxlanId: int(t.VNI), VtepDevIndex: dev, SrcAddr: ipOf(t.Local), TTL: t.TTL, Port: t.Port, Learning: true}
		if t.Group.IsValid() {
			v.Group = ipOf(t.Group)
		} else {
			v.Group = ipOf(t.Remote)
		}
		return v, nil
	case "ipip":
		return &vnl.Iptun{LinkAttrs: attrs, Local: ipOf(t.Local), Remote: ipOf(t.Remote), Ttl: uint8(t.TTL), Link: uint32(dev), PMtuDisc: 1}, nil
	case "sit":
		return &vnl.Sittun{LinkAttrs: attrs, Local: ipOf(t.Local), Remote: ipOf(t.Remote), Ttl: uint8(t.TTL), Link: uint32(dev), PMtuDisc: 1}, nil
	case "gre", "gretap":
		// The library sets the GRE_KEY flags itself when a key is given.
		if l.Kind == "gretap" {
			return &vnl.Gretap{LinkAttrs: attrs, Local: ipOf(t.Local), Remote: ipOf(t.Remote), Ttl: uint8(t.TTL), Link: uint32(dev), IKey: t.Key, OKey: t.Key, PMtuDisc: 1}, nil
		}
		return &vnl.Gretun{LinkAttrs: attrs, Local: ipOf(t.Local), Remote: ipOf(t.Remote), Ttl: uint8(t.TTL), Link: uint32(dev), IKey: t.Key, OKey: t.Key, PMtuDisc: 1}, nil
	}
	return nil, fmt.Errorf("cannot create a %s link", l.Kind)
}

var addrScopes = map[string]int{"": unix.RT_SCOPE_UNIVERSE, "global": unix.RT_SCOPE_UNIVERSE, "site": unix.RT_SCOPE_SITE, "link": unix.RT_SCOPE_LINK, "host": unix.RT_SCOPE_HOST}

// netlinkAddr converts an address the way `ip addr add` sends it: no broadcast unless asked
// (netlink would compute one), loopback addresses with host scope (iproute2 default_scope).
func netlinkAddr(a engine.Address) *vnl.Addr {
	na := &vnl.Addr{IPNet: &net.IPNet{IP: net.IP(a.Prefix.Addr().AsSlice()), Mask: net.CIDRMask(a.Prefix.Bits(), a.Prefix.Addr().BitLen())}}
	if a.Prefix.Addr().Is4() {
		na.Broadcast = net.IPv4zero
	}
	if a.Peer.IsValid() {
		na.Peer = ipNet(a.Peer)
		na.Peer.IP = net.IP(a.Peer.Addr().AsSlice())
	}
	na.Scope = addrScopes[a.Scope]
	if a.Scope == "" && a.Prefix.Addr().Is4() && a.Prefix.Addr().As4()[0] == 127 {
		na.Scope = unix.RT_SCOPE_HOST
	}
	return na
}

func (e *executor) address(c engine.Change) error {
	l, err := e.h.LinkByName(c.Address.Dev)
	if err != nil {
		if e.tolerant && c.Op == engine.OpDelete {
			return nil
		}
		return fmt.Errorf("finding link %s: %w", c.Address.Dev, err)
	}
	na := netlinkAddr(c.Address.Address)
	if c.Op == engine.OpDelete {
		err := e.h.AddrDel(l, na)
		if e.ignorable(err, unix.EADDRNOTAVAIL, unix.ENODEV) {
			return nil
		}
		return err
	}
	err = e.h.AddrAdd(l, na)
	if e.ignorable(err, unix.EEXIST) {
		return nil
	}
	return err
}

var (
	routeTypeNums = map[string]int{}
	scopeNums     = map[string]int{"universe": unix.RT_SCOPE_UNIVERSE, "site": unix.RT_SCOPE_SITE, "link": unix.RT_SCOPE_LINK, "host": unix.RT_SCOPE_HOST, "nowhere": unix.RT_SCOPE_NOWHERE}
	ruleActs      = map[string]uint8{}
)

func init() {
	for n, s := range routeTypes {
		routeTypeNums[s] = n
	}
	for n, s := range ruleActions {
		ruleActs[s] = n
	}
}

// protocolNum parses a route protocol name (iproute2's) or number.
func protocolNum(name string) (int, error) {
	for n, s := range routeProtocols {
		if s == name {
			return n, nil
		}
	}
	n, err := strconv.Atoi(name)
	if err != nil || n < 0 || n > 255 {
		return 0, fmt.Errorf("unknown route protocol %q", name)
	}
	return n, nil
}

func (e *executor) netlinkRoute(r engine.Route) (*vnl.Route, error) {
	r = engine.NormalizeRoute(r)
	typ, ok := routeTypeNums[r.Type]
	if !ok {
		return nil, fmt.Errorf("unknown route type %q", r.Type)
	}
	proto, err := protocolNum(r.Protocol)
	if err != nil {
		return nil, err
	}
	scope, ok := scopeNums[r.Scope]
	if !ok {
		return nil, fmt.Errorf("unknown route scope %q", r.Scope)
	}
	nr := &vnl.Route{
		Family: int(r.Family), Table: r.Table, Dst: ipNet(r.Dst), Tos: int(r.TOS), Priority: r.Metric,
		Type: typ, Protocol: vnl.RouteProtocol(proto), Scope: vnl.Scope(scope), Gw: ipOf(r.Gateway), Src: ipOf(r.Src),
	}
	if r.Dev != "" {
		if nr.LinkIndex, err = e.linkIndex(r.Dev); err != nil {
			return nil, err
		}
	}
	if r.OnLink {
		nr.Flags |= unix.RTNH_F_ONLINK
	}
	for _, nh := range r.Nexthops {
		ni := &vnl.NexthopInfo{Gw: ipOf(nh.Gateway), Hops: max(nh.Weight, 1) - 1}
		if nh.Dev != "" {
			if ni.LinkIndex, err = e.linkIndex(nh.Dev); err != nil {
				return nil, err
			}
		}
		if nh.OnLink {
			ni.Flags |= unix.RTNH_F_ONLINK
		}
		nr.MultiPath = append(nr.MultiPath, ni)
	}
	return nr, nil
}

func (e *executor) route(c engine.Change) error {
	nr, err := e.netlinkRoute(*c.Route)
	if err != nil {
		if e.tolerant && c.Op == engine.OpDelete {
			return nil // its device is gone, and the route with it
		}
		return err
	}
	switch c.Op {
	case engine.OpDelete:
		err = e.h.RouteDel(nr)
		if e.ignorable(err, unix.ESRCH, unix.ENOENT, unix.ENODEV) {
			return nil
		}
		return err
	case engine.OpReplace:
		return e.h.RouteReplace(nr)
	}
	if e.tolerant {
		// Undo re-adds a route as it was; replacing is the idempotent way to do that.
		return e.h.RouteReplace(nr)
	}
	return e.h.RouteAdd(nr)
}

// ruleRequest builds an RTM_NEWRULE or RTM_DELRULE message for a rule the way iproute2 does:
// a fib_rule_hdr (laid out as rtmsg) and FRA_* attributes. netlink v1.3.1's RuleAdd cannot be
// used: it leaves out suppress_prefixlength for tables above 255 and sends FRA_IP_PROTO as
// four bytes.
func ruleRequest(msgType int, flags int, r engine.Rule) (*nl.NetlinkRequest, error) {
	r = engine.NormalizeRule(r)
	act, ok := ruleActs[r.Action]
	if !ok {
		return nil, fmt.Errorf("unknown rule action %q", r.Action)
	}
	hdr := unix.RtMsg{Family: uint8(r.Family), Tos: r.TOS, Type: act}
	if r.Not {
		hdr.Flags |= unix.FIB_RULE_INVERT
	}
	if r.Action == engine.ActionTable && r.Table < 256 {
		hdr.Table = uint8(r.Table)
	}
	req := nl.NewNetlinkRequest(msgType, flags)
	var attrs []*nl.RtAttr
	u32 := func(typ int, v uint32) { attrs = append(attrs, nl.NewRtAttr(typ, nl.Uint32Attr(v))) }
	if r.Src.IsValid() {
		hdr.Src_len = uint8(r.Src.Bits())
		attrs = append(attrs, nl.NewRtAttr(unix.FRA_SRC, r.Src.Addr().AsSlice()))
	}
	if r.Dst.IsValid() {
		hdr.Dst_len = uint8(r.Dst.Bits())
		attrs = append(attrs, nl.NewRtAttr(unix.FRA_DST, r.Dst.Addr().AsSlice()))
	}
	u32(unix.FRA_PRIORITY, uint32(r.Priority))
	if r.Action == engine.ActionTable {
		u32(unix.FRA_TABLE, uint32(r.Table))
	}
	if r.Mark != nil {
		u32(unix.FRA_FWMARK, r.Mark.Value)
		u32(unix.FRA_FWMASK, r.Mark.Mask)
	}
	if r.IIF != "" {
		attrs = append(attrs, nl.NewRtAttr(unix.FRA_IIFNAME, nl.ZeroTerminated(r.IIF)))
	}
	if r.OIF != "" {
		attrs = append(attrs, nl.NewRtAttr(unix.FRA_OIFNAME, nl.ZeroTerminated(r.OIF)))
	}
	if r.Action == engine.ActionGoto {
		u32(unix.FRA_GOTO, uint32(r.Goto))
	}
	if r.SuppressPrefixLen != nil {
		u32(unix.FRA_SUPPRESS_PREFIXLEN, uint32(int32(*r.SuppressPrefixLen)))
	}
	if r.SuppressIfGroup != nil {
		u32(unix.FRA_SUPPRESS_IFGROUP, uint32(int32(*r.SuppressIfGroup)))
	}
	if r.IPProto != 0 {
		attrs = append(attrs, nl.NewRtAttr(unix.FRA_IP_PROTO, []byte{uint8(r.IPProto)}))
	}
	ports := func(typ int, p *engine.PortRange) {
		b := make([]byte, 4)
		nl.NativeEndian().PutUint16(b, p.Start)
		nl.NativeEndian().PutUint16(b[2:], p.End)
		attrs = append(attrs, nl.NewRtAttr(typ, b))
	}
	if r.SPort != nil {
		ports(unix.FRA_SPORT_RANGE, r.SPort)
	}
	if r.DPort != nil {
		ports(unix.FRA_DPORT_RANGE, r.DPort)
	}
	if r.UIDRange != nil {
		b := make([]byte, 8)
		nl.NativeEndian().PutUint32(b, r.UIDRange.Start)
		nl.NativeEndian().PutUint32(b[4:], r.UIDRange.End)
		attrs = append(attrs, nl.NewRtAttr(unix.FRA_UID_RANGE, b))
	}
	if r.Protocol != 0 {
		attrs = append(attrs, nl.NewRtAttr(unix.FRA_PROTOCOL, []byte{uint8(r.Protocol)}))
	}
	req.AddData(&nl.RtMsg{RtMsg: hdr})
	for _, a := range attrs {
		req.AddData(a)
	}
	return req, nil
}

// routeSocket returns the executor's rtnetlink socket in its namespace, opened on first use,
// for the requests the library cannot make.
func (e *executor) routeSocket() (map[int]*nl.SocketHandle, error) {
	if e.sock != nil {
		return map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: e.sock}}, nil
	}
	sock, err := e.ns.socket(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	e.sock = sock
	return map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: sock}}, nil
}

func (e *executor) close() {
	if e.sock != nil {
		e.sock.Close()
		e.sock = nil
	}
}

func (e *executor) rule(c engine.Change) error {
	msgType, flags := unix.RTM_NEWRULE, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK
	if c.Op == engine.OpDelete {
		msgType, flags = unix.RTM_DELRULE, unix.NLM_F_ACK
	}
	req, err := ruleRequest(msgType, flags, *c.Rule)
	if err != nil {
		return err
	}
	if req.Sockets, err = e.routeSocket(); err != nil {
		return err
	}
	_, err = req.Execute(unix.NETLINK_ROUTE, 0)
	if c.Op == engine.OpDelete && e.ignorable(err, unix.ENOENT, unix.ESRCH) || c.Op != engine.OpDelete && e.ignorable(err, unix.EEXIST) {
		return nil
	}
	return err
}

// conntrack deletes the conntrack entries of the flush's family whose original tuple matches,
// each as the streamed dump brings it, so memory does not grow with the table (the kernel
// filters the family and the mark). A kernel without conntrack has no entries to delete.
func (e *executor) conntrack(ctx context.Context, f engine.ConntrackFlush) error {
	c, err := OpenConntrack(e.ns)
	if err != nil {
		return err
	}
	defer c.Close()
	var deleteErr error
	err = c.dump(ctx, &ConntrackFilter{Family: f.Family, Mark: f.Mark}, func(fl *conntrack.Flow, _ *ConntrackEntry) error {
		t := fl.TupleOrig
		if f.Proto != 0 && int(t.Proto.Protocol) != f.Proto ||
			f.Src.IsValid() && !f.Src.Contains(t.IP.SourceAddress.Unmap()) ||
			f.Dst.IsValid() && !f.Dst.Contains(t.IP.DestinationAddress.Unmap()) ||
			f.DPort != 0 && t.Proto.DestinationPort != f.DPort {
			return nil
		}
		// An entry may be gone by now: it expired, or the dump sent it again (ctnetlink restarts
		// a hash bucket when the entry it stopped at was deleted meanwhile).
		if err := c.conn.Delete(*fl); err != nil && !errors.Is(err, unix.ENOENT) {
			deleteErr = fmt.Errorf("deleting conntrack entry %s: %w", t, err)
			return deleteErr
		}
		return nil
	})
	if deleteErr == nil && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP)) {
		return nil
	}
	return err
}
