package plan

import (
	"fmt"
	"net/netip"
	"slices"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
)

// Settler does for one change at a time what Validate, Pending and Inverses do for a whole
// plan, against the state read before an apply, so that the change engine can check and
// journal a plan as it reads it. Its model of the state after the plan keeps the routes that
// checks can need (those without a gateway, which make gateways on-link, and those towards the
// address given to NewSettler, for the SSH lockout check) rather than every planned route.
type Settler struct {
	before *model.State
	routes routeLookup
	m      *shadow
	chains []indexedChange // validated by Finish, once every chain the plan creates is known
	probs  []indexedErr
	slab   []model.Route // normalized routes are handed out from here: one allocation for many
}

type indexedChange struct {
	i int
	c Change
}

type indexedErr struct {
	i   int
	err error
}

// NewSettler returns a Settler for changes to before. Routes towards watch (when valid) are
// kept in the model, so that After answers lookups of that address as Expect would.
func NewSettler(before *model.State, watch netip.Addr) *Settler {
	keep := func(r model.Route) bool {
		return isDirect(r) || watch.IsValid() && r.Family == inet.FamilyOf(watch) && r.Dst.Contains(watch)
	}
	tmp := *before
	tmp.Routes = nil
	st := tmp.Clone()
	for _, r := range before.Routes {
		if keep(r) {
			st.Routes = append(st.Routes, r)
		}
	}
	m := &shadow{st: st, keep: keep}
	m.reindex()
	return &Settler{before: before, routes: indexRoutes(before), m: m}
}

// Before returns the state the changes are settled against.
func (s *Settler) Before() *model.State { return s.before }

// Next takes change i of a plan: it checks it against the state as the changes before it
// leave it (Plan.Validate; a change that does not fit is recorded as a problem, see Problems
// and Finish; chain changes are checked by Finish), and reports whether it is pending on the
// state before (Plan.Pending), returning it normalized and settled, as the kernel must be
// asked to make it. Conntrack flushes are always pending; the caller keeps them only when
// something else is.
func (s *Settler) Next(i int, c Change) (Change, bool) {
	if c.Route != nil { // c.normalized(), without an allocation per route
		if len(s.slab) == 0 {
			s.slab = make([]model.Route, 256)
		}
		s.slab[0] = NormalizeRoute(*c.Route)
		c.Route, s.slab = &s.slab[0], s.slab[1:]
	} else {
		c = c.normalized()
	}
	if c.Kind == KindChain {
		s.chains = append(s.chains, indexedChange{i, c})
	} else if err := validateAgainst(c, s.m, nil); err != nil {
		s.probs = append(s.probs, indexedErr{i, fmt.Errorf("change %d (%s): %w", i+1, c.Summary(), err)})
	} else {
		s.m.apply(c)
	}
	if c.Kind == KindConntrack {
		return c, true
	}
	return settle(c, s.before, s.routes)
}

// Problems reports how many changes did not fit so far.
func (s *Settler) Problems() int { return len(s.probs) }

// Finish checks the chain changes and returns every problem found, as Validate does.
func (s *Settler) Finish() error {
	planned := map[string]bool{}
	for _, ic := range s.chains {
		if ic.c.Op != OpDelete {
			planned[chainKey(ic.c.Chain.Family, ic.c.Chain.Table, ic.c.Chain.Name)] = true
		}
	}
	for _, ic := range s.chains {
		if err := validateAgainst(ic.c, s.m, planned); err != nil {
			s.probs = append(s.probs, indexedErr{ic.i, fmt.Errorf("change %d (%s): %w", ic.i+1, ic.c.Summary(), err)})
			continue
		}
		s.m.apply(ic.c)
	}
	s.chains = nil
	if len(s.probs) == 0 {
		return nil
	}
	slices.SortStableFunc(s.probs, func(a, b indexedErr) int { return a.i - b.i })
	var ps problems
	for _, p := range s.probs {
		ps.add("%w", p.err)
	}
	return ps.err("the plan does not fit this host")
}

// Inverse returns the changes that undo a change as Next returned it (Change.Inverse,
// without the Why of each undo change). An undo that is the mirror of a route or rule change
// (the added route deleted) holds the change's own object.
func (s *Settler) Inverse(c Change) ([]Change, error) {
	return c.inverse(s.before, s.routes, false)
}

// Undo returns what undoes a change as Next returned it. mirror is set, and no changes are
// returned, when the undo is the change's mirror (an added route or rule deleted, a deleted one
// added back as it was): the change engine does not journal those, and a million-route plan
// is a million mirrors.
func (s *Settler) Undo(c Change) (undo []Change, mirror bool, err error) {
	switch c.Kind {
	case KindRoute:
		if c.Op == OpAdd || c.Op == OpDelete && len(s.routes(identOf(*c.Route))) == 1 {
			return nil, true, nil
		}
	case KindRule:
		return nil, true, nil
	}
	undo, err = s.Inverse(c)
	return undo, false, err
}

// After returns the model's state after the validated changes: the state before with their
// effect on links, addresses, rules, chains and the routes the model keeps. It is the "after"
// of the SSH lockout check for the address given to NewSettler.
func (s *Settler) After() *model.State { return s.m.state() }

// SetNetfilter gives the state before, and the model, the netfilter rules read after the
// Settler was made (the change engine reads them only for a plan that changes chains). It must
// come before the first chain change.
func (s *Settler) SetNetfilter(nf iptables.Ruleset) {
	s.before.Netfilter = nf
	tmp := model.State{Netfilter: nf}
	s.m.st.Netfilter = tmp.Clone().Netfilter
}

// Normalized returns the change with its object normalized (routes, rules, links, chain
// rules): the form in which it is compared with a state and summarized in drift reports.
func (c Change) Normalized() Change { return c.normalized() }

// ApplyChange applies one change to a state the way the model of Expect does (the planned
// object, and the routes the kernel adds or removes with addresses and links). Fakes of the
// kernel use it to change the state they stand for.
func ApplyChange(st *model.State, c Change) { applyToModel(st, c.normalized()) }
