package kernel

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"

	vnl "github.com/vishvananda/netlink"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// planned is what the pass over a plan found.
type planned struct {
	before  *model.State
	total   int // changes in the plan
	pending int // not yet in effect
	steps   int
	lockout *plan.Lockout
	wants   *driftWants
}

// planner goes through a plan once, change by change: it validates each against the state
// read first, settles it (in effect already? what undoes it?) and groups the pending ones into
// steps, which it hands to sink as they are complete. Netfilter changes of a family and table
// names are one step each, placed where the first of them comes and handed over at the end;
// conntrack flushes come last, as Plan.Pending puts them.
type planner struct {
	ctx     context.Context
	a       *Applier
	host    Host
	settler *plan.Settler
	sink    func(k int, st *Step) error
	size    int

	k        int // steps numbered so far
	batch    *Step
	batchK   int
	spare    Step // the batch being filled, reused
	nf       map[inet.Family]*Step
	nfK      map[inet.Family]int
	nfOrder  []inet.Family
	tables   *Step
	tablesK  int
	nft      *Step // the nft changes: one nft -f transaction
	nftK     int
	nftRead  bool
	flushes  []plan.Change
	sysctls  map[string]bool // keys whose old value is known
	nfRead   bool
	wants    *driftWants
	total    int
	pending  int
	problems bool
}

// plan is the first pass of an apply (and all of a dry run).
func (a *Applier) plan(ctx context.Context, host Host, src plan.Source, opts ApplyOptions, sink func(int, *Step) error) (*planned, error) {
	before, err := host.ReadState(ctx, ReadWhat{NoNetfilter: true})
	if err != nil {
		return nil, err
	}
	sess, warn := sshSession(opts)
	if warn != "" {
		a.logf("warning: %s", warn)
	}
	var watch netip.Addr
	if sess != nil {
		watch = sess.Client
	}
	size := a.BatchSize
	if size <= 0 {
		size = DefaultBatchSize
	}
	p := &planner{ctx: ctx, a: a, host: host, settler: plan.NewSettler(before, watch), sink: sink, size: size,
		nf: map[inet.Family]*Step{}, nfK: map[inet.Family]int{}, sysctls: map[string]bool{}, wants: newDriftWants()}
	if err := src.Each(p.add); err != nil {
		return nil, err
	}
	if err := p.settler.Finish(); err != nil {
		return nil, err
	}
	if err := p.finish(before); err != nil {
		return nil, err
	}
	lo, err := lockoutPolicy(before, p.settler.After(), sess, opts)
	if err != nil {
		return nil, err
	}
	return &planned{before: before, total: p.total, pending: p.pending, steps: p.k, lockout: lo, wants: p.wants}, nil
}

func (p *planner) reserve() int {
	p.k++
	return p.k - 1
}

// add takes change i of the plan.
func (p *planner) add(i int, c plan.Change) error {
	if i%1024 == 0 {
		if err := p.ctx.Err(); err != nil {
			return fmt.Errorf("reading the plan: %w (nothing was changed)", err)
		}
	}
	p.total++
	switch c.Kind {
	case plan.KindSysctl:
		if err := p.readSysctl(c.Sysctl.Key); err != nil {
			return err
		}
	case plan.KindChain:
		if !p.nfRead {
			nf, err := p.host.ReadNetfilter(p.ctx)
			if err != nil {
				return err
			}
			p.settler.SetNetfilter(nf)
			p.nfRead = true
		}
	case plan.KindNFT:
		if !p.nftRead {
			rs, err := p.host.ReadNftables(p.ctx)
			if err != nil {
				return err
			}
			p.settler.Before().Nftables = rs
			p.nftRead = true
		}
	}
	pc, pending := p.settler.Next(i, c)
	if p.problems = p.problems || p.settler.Problems() > 0; p.problems {
		return nil // keep checking, to report every problem; nothing is applied
	}
	// Pending routes and rules are added to the drift check's wants as their batches are
	// read back from the steps file to be applied (Applier.run); only the others are kept here.
	if !pending || pc.Kind != plan.KindRoute && pc.Kind != plan.KindRule {
		p.wants.add(i, pc)
	}
	if !pending {
		return nil
	}
	if pc.Kind == plan.KindConntrack {
		p.flushes = append(p.flushes, pc)
		return nil
	}
	p.pending++
	undo, mirrored, err := p.settler.Undo(pc)
	if err != nil {
		return fmt.Errorf("change %d (%s): %w", i+1, c.Summary(), err)
	}
	switch pc.Kind {
	case plan.KindChain:
		st := p.nf[pc.Chain.Family]
		if st == nil {
			if err := p.flushBatch(); err != nil {
				return err
			}
			st = &Step{First: i}
			p.nf[pc.Chain.Family], p.nfK[pc.Chain.Family] = st, p.reserve()
			p.nfOrder = append(p.nfOrder, pc.Chain.Family)
		} else if b := st.Changes[0].Chain.Backend; b != pc.Chain.Backend {
			return fmt.Errorf("change %d (%s): its chain is in the %q iptables backend, an earlier one's in %q: a plan writes each family's chains into one backend (nothing was changed)", i+1, c.Summary(), pc.Chain.Backend, b)
		}
		st.Changes = append(st.Changes, pc)
		st.Undo = append(st.Undo, undo...)
	case plan.KindNFT:
		if p.nft == nil {
			if err := p.flushBatch(); err != nil {
				return err
			}
			p.nft, p.nftK = &Step{First: i}, p.reserve()
		}
		p.nft.Changes = append(p.nft.Changes, pc)
	case plan.KindTable:
		if p.tables == nil {
			if err := p.flushBatch(); err != nil {
				return err
			}
			p.tables, p.tablesK = &Step{First: i}, p.reserve()
		}
		p.tables.Changes = append(p.tables.Changes, pc)
	case plan.KindRoute, plan.KindRule:
		if p.batch == nil || p.batch.Changes[0].Kind != pc.Kind || len(p.batch.Changes) >= p.size {
			if err := p.flushBatch(); err != nil {
				return err
			}
			// The sink is done with a batch when it returns: its slices are reused.
			p.spare.Changes, p.spare.Undos = p.spare.Changes[:0], p.spare.Undos[:0]
			p.spare.Batch, p.spare.First = true, i
			p.batch, p.batchK = &p.spare, p.reserve()
		}
		p.batch.Changes = append(p.batch.Changes, pc)
		if !mirrored && undo == nil {
			undo = []plan.Change{} // nothing undoes it (nil would mean the mirror)
		}
		p.batch.Undos = append(p.batch.Undos, undo)
	default:
		if err := p.flushBatch(); err != nil {
			return err
		}
		return p.sink(p.reserve(), &Step{Changes: []plan.Change{pc}, Undo: undo, First: i})
	}
	return nil
}

func (p *planner) flushBatch() error {
	if p.batch == nil {
		return nil
	}
	st := p.batch
	p.batch = nil
	err := p.sink(p.batchK, st)
	clear(st.Changes) // let the routes go
	clear(st.Undos)
	return err
}

// finish hands over the steps that needed the whole plan: netfilter transactions (tried with
// iptables-restore --test, so that a rule the kernel would refuse stops the apply before
// anything changes), the table names file, and the conntrack flushes.
func (p *planner) finish(before *model.State) error {
	if err := p.flushBatch(); err != nil {
		return err
	}
	for _, f := range p.nfOrder {
		st := p.nf[f]
		backend := st.Changes[0].Chain.Backend
		tx := plan.NetfilterTransaction(f, st.Changes, before)
		if err := p.host.RestoreIn(p.ctx, backend, f, tx, true); err != nil {
			tool := plan.RestoreTool(f, backend)
			if errors.Is(err, ErrRestoreTool) || errors.Is(err, ErrToolMissing) {
				return fmt.Errorf("applying the plan's %s rules (nothing was changed): %w", f, err)
			}
			if isPermissionDenied(err) || errors.Is(err, fs.ErrPermission) {
				return fmt.Errorf("checking the plan's %s rules with %s --test needs root (permission denied): run it as root: %w", f, tool, err)
			}
			return fmt.Errorf("checking the plan's %s rules with %s --test: the kernel refuses them (nothing was changed): %w", f, tool, err)
		}
		if err := p.sink(p.nfK[f], st); err != nil {
			return err
		}
	}
	if p.nft != nil {
		if err := p.nftStep(); err != nil {
			return err
		}
	}
	if p.tables != nil {
		fu, err := p.a.tableFileUndo(p.host, p.tables.Changes)
		if err != nil {
			return err
		}
		p.tables.File = fu
		if err := p.sink(p.tablesK, p.tables); err != nil {
			return err
		}
	}
	if p.k > 0 {
		for _, f := range p.flushes {
			p.pending++
			if err := p.sink(p.reserve(), &Step{Changes: []plan.Change{f}}); err != nil {
				return err
			}
		}
	}
	return nil
}

// readSysctl adds to the state before the current value of a sysctl the state does not hold
// (a State keeps only the path-deciding ones), so that its undo can be computed.
func (p *planner) readSysctl(key string) error {
	before := p.settler.Before()
	if _, ok := before.Sysctls[key]; ok || p.sysctls[key] {
		return nil
	}
	p.sysctls[key] = true
	v, err := p.host.ReadSysctl(key)
	if errors.Is(err, fs.ErrNotExist) {
		if iface, ok := model.SysctlIface(key); ok && before.LinkByName(iface) == nil {
			return nil // a link the plan creates
		}
		return fmt.Errorf("sysctl %s does not exist on this kernel (%s is missing): check the name", key, SysctlPath(key))
	}
	if err != nil {
		return fmt.Errorf("reading sysctl %s: %w", key, err)
	}
	if before.Sysctls == nil {
		before.Sysctls = model.Sysctls{}
	}
	before.Sysctls[key] = v
	return nil
}

// driftWants is what the drift check after an apply looks for: every planned change in
// effect. Routes and rules are kept as 8-byte hashes, compared with a streaming dump (routes)
// or the rules read back; the few other changes are kept whole. Which change a missing hash
// belongs to is found by reading the plan again, only when something is missing.
type driftWants struct {
	routes   plan.HashList // routes added or replaced: RouteHash, its low bit set when loose
	gone     plan.HashList // routes deleted: RouteIdentity
	rules    []uint64      // rules added: RuleKey
	noRules  []uint64      // rules deleted
	others   []indexedChange
	tables   map[famTable]bool
	anyLoose bool
	chains   bool
}

type famTable struct {
	fam   inet.Family
	table int
}

type indexedChange struct {
	i int
	c plan.Change
}

func newDriftWants() *driftWants { return &driftWants{tables: map[famTable]bool{}} }

// routeWant returns the hash a planned route (normalized) is looked for by.
func routeWant(r model.Route) (h uint64, loose bool) {
	loose = plan.RouteLeavesDev(r)
	return wantHash(plan.RouteHash(r, loose), loose), loose
}

// wantHash keeps whether a hash is loose in its low bit, so that an exact and a loose hash
// never meet by chance.
func wantHash(h uint64, loose bool) uint64 {
	if loose {
		return h | 1
	}
	return h &^ 1
}

func (w *driftWants) add(i int, c plan.Change) {
	switch c.Kind {
	case plan.KindRoute:
		r := plan.NormalizeRoute(*c.Route)
		w.tables[famTable{r.Family, r.Table}] = true
		if c.Op == plan.OpDelete {
			w.gone.Add(plan.RouteIdentity(r))
			return
		}
		h, loose := routeWant(r)
		w.anyLoose = w.anyLoose || loose
		w.routes.Add(h)
	case plan.KindRule:
		if c.Op == plan.OpDelete {
			w.noRules = append(w.noRules, plan.RuleKey(*c.Rule))
		} else {
			w.rules = append(w.rules, plan.RuleKey(*c.Rule))
		}
	case plan.KindConntrack:
	default:
		w.others = append(w.others, indexedChange{i, c})
		w.chains = w.chains || c.Kind == plan.KindChain || c.Kind == plan.KindNFT
	}
}

// maxDriftLines bounds the drift report.
const maxDriftLines = 100

// drift lists the changes of the plan that are not in effect after the apply: Plan.Drift for a
// plan that is not held. Routes are compared by hash with a dump of the tables the plan
// touches, as the kernel streams it; a planned route whose identity the kernel holds twice
// (IPv6 siblings) counts as in effect when one of them is the planned one.
func (a *Applier) drift(ctx context.Context, host Host, src plan.Source, w *driftWants) ([]string, error) {
	after, err := host.ReadState(ctx, ReadWhat{NoRoutes: true, NoNetfilter: !w.chains})
	if err != nil {
		return nil, err
	}
	missing := map[int]string{} // change index: summary
	for _, ic := range w.others {
		if !ic.c.InEffect(after) {
			missing[ic.i] = ic.c.Normalized().Summary()
		}
	}
	// Hashes not found as wanted: of added routes and rules (absent) and of deleted ones
	// (present).
	absent, present := map[uint64]bool{}, map[uint64]bool{}
	if len(w.rules)+len(w.noRules) > 0 {
		have := map[uint64]bool{}
		for _, r := range after.Rules {
			have[plan.RuleKey(r)] = true
		}
		for _, h := range w.rules {
			if !have[h] {
				absent[h] = true
			}
		}
		for _, h := range w.noRules {
			if have[h] {
				present[h] = true
			}
		}
	}
	if w.routes.Len()+w.gone.Len() > 0 {
		if err := routeDrift(ctx, host, after, w, absent, present); err != nil {
			return nil, err
		}
	}
	if len(missing)+len(absent)+len(present) == 0 {
		return nil, nil
	}
	if len(absent)+len(present) > 0 {
		// Read the plan again for the changes those hashes stand for.
		_ = src.Each(func(i int, c plan.Change) error {
			var h uint64
			var del bool
			switch c.Kind {
			case plan.KindRoute:
				r := plan.NormalizeRoute(*c.Route)
				if del = c.Op == plan.OpDelete; del {
					h = plan.RouteIdentity(r)
				} else {
					h, _ = routeWant(r)
				}
			case plan.KindRule:
				h, del = plan.RuleKey(*c.Rule), c.Op == plan.OpDelete
			default:
				return nil
			}
			if del && present[h] || !del && absent[h] {
				missing[i] = c.Normalized().Summary()
			}
			return nil
		})
	}
	idx := make([]int, 0, len(missing))
	for i := range missing {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var out []string
	for _, i := range idx[:min(len(idx), maxDriftLines)] {
		out = append(out, fmt.Sprintf("change %d is not in effect: %s", i+1, missing[i]))
	}
	if len(idx) > maxDriftLines {
		out = append(out, fmt.Sprintf("... and %d more changes are not in effect", len(idx)-maxDriftLines))
	}
	if len(out) == 0 {
		// Hashes missing whose changes the plan no longer holds (the file changed meanwhile).
		out = append(out, fmt.Sprintf("%d planned routes or rules are not in effect", len(absent)+len(present)))
	}
	return out, nil
}

// routeDrift dumps the tables the plan's routes are in and adds to absent the hashes of
// planned routes not found, and to present the identities of deleted routes still there.
func routeDrift(ctx context.Context, host Host, after *model.State, w *driftWants, absent, present map[uint64]bool) error {
	w.routes.Sort()
	w.gone.Sort()
	found := make([]bool, w.routes.Len())
	there := make([]bool, w.gone.Len())
	mark := func(list *plan.HashList, seen []bool, h uint64) {
		lo, hi := list.Find(h)
		for i := lo; i < hi; i++ {
			seen[i] = true
		}
	}
	names := make(map[int]string, len(after.Links))
	for _, l := range after.Links {
		names[l.Index] = l.Name
	}
	var dumps []famTable
	byFam := map[inet.Family]bool{}
	for ft := range w.tables {
		dumps = append(dumps, ft)
		byFam[ft.fam] = true
	}
	if len(dumps) > 16 { // many tables: one dump of every table per family
		dumps = dumps[:0]
		for f := range byFam {
			dumps = append(dumps, famTable{f, 0})
		}
	}
	for _, ft := range dumps {
		var err error
		for range dumpRetries {
			err = host.EachRoute(ctx, ft.fam, ft.table, names, func(r model.Route) {
				if len(found) > 0 {
					mark(&w.routes, found, wantHash(plan.RouteHash(r, false), false))
					if w.anyLoose {
						mark(&w.routes, found, wantHash(plan.RouteHash(r, true), true))
					}
				}
				if len(there) > 0 {
					mark(&w.gone, there, plan.RouteIdentity(r))
				}
			})
			if !errors.Is(err, vnl.ErrDumpInterrupted) {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("listing the routes of table %d: %w", ft.table, err)
		}
	}
	for i, ok := range found {
		if !ok {
			absent[w.routes.At(i)] = true
		}
	}
	for i, ok := range there {
		if ok {
			present[w.gone.At(i)] = true
		}
	}
	return nil
}
