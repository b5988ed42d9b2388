package fib

import (
	"errors"
	"fmt"
	"net/netip"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// TableSource answers the lookups of an IPv4 table that a FIB does not hold, so that a live
// trace of a host with a full table need not dump it: the kernel answers each lookup in that
// one table (kernel.TableOracle). Each answer must be the kernel's exactly; a source that cannot
// be certain returns an error, the FIB records it (LazyErr) and the caller answers again from a
// FIB that holds the table.
type TableSource interface {
	// LookupTable answers fib_table_lookup of the table for q.Flow's destination and TOS at
	// q.Scope: the prefix and type of the route chosen (a throw route for a throw), or no
	// prefix when the table has none for the flow.
	LookupTable(q TableQuery) (TableAnswer, error)
	// RouteFor returns the route of an answer, which the FIB asks only when it uses more of
	// the route than its prefix and type (a suppress_prefixlength rule needs no more).
	RouteFor(q TableQuery, a TableAnswer) (*model.Route, error)
	// HostRoute reports whether a route of host scope or narrower in the table covers addr: a
	// gateway inside one is not used by the kernel (resolveRouteGateways).
	HostRoute(table int, addr netip.Addr) (bool, error)
}

// TableQuery is one lookup in a table a TableSource answers.
type TableQuery struct {
	Table int
	// Flow is the lookup as the FIB makes it (IIF set for an input lookup), for a source that
	// asks the kernel the whole lookup to learn the chosen route's details.
	Flow  Flow
	Scope int // flowi4_scope: routes of a wider scope are skipped
}

// TableAnswer is a TableSource's answer to LookupTable.
type TableAnswer struct {
	Prefix netip.Prefix // the chosen route's destination; invalid for no route
	Type   string       // the chosen route's type (model.RouteUnicast, ...)
	// Nexthop is the index of the route's first usable path, as fib_table_lookup found it.
	Nexthop int
	// Route is the chosen route when the source has it at hand (throw routes); else RouteFor.
	Route *model.Route
}

// ErrLazyUncertain wraps every reason a FIB with lazy tables could not answer for certain.
var ErrLazyUncertain = errors.New("a table left in the kernel could not answer for certain")

// lazyTables is what a FIB keeps of the tables a TableSource answers.
type lazyTables struct {
	src     TableSource
	tables  map[int]bool
	entries map[*model.Route]*fibRoute // the indexed form of each route a source returned
	paths   nexthops
	err     error // the first reason an answer was uncertain
}

// SetTableSource makes src answer the lookups of the IPv4 tables given, which the Builder must
// not be given routes of. Live trace uses it for full tables (TableSource).
func (b *Builder) SetTableSource(src TableSource, tables ...int) {
	f := b.f
	if f.lazy == nil {
		f.lazy = &lazyTables{src: src, tables: map[int]bool{}, entries: map[*model.Route]*fibRoute{}}
	}
	for _, t := range tables {
		f.lazy.tables[t] = true
	}
}

// LazyErr returns why an answer that involved a table left to a TableSource was uncertain
// (wrapping ErrLazyUncertain), nil when every answer was certain. Answers given after an
// uncertain one are not to be trusted: ask again with the table in the FIB.
func (f *FIB) LazyErr() error {
	if f.lazy == nil {
		return nil
	}
	return f.lazy.err
}

// isLazy reports whether a table of the family is answered by a TableSource.
func (f *FIB) isLazy(fam inet.Family, table int) bool {
	return f.lazy != nil && fam == inet.V4 && f.lazy.tables[table]
}

func (f *FIB) uncertain(format string, args ...any) {
	if f.lazy != nil && f.lazy.err == nil {
		f.lazy.err = fmt.Errorf("%w: "+format, append([]any{ErrLazyUncertain}, args...)...)
	}
}

// lazyLookup4 is tableLookup4 for the table of rule fr, which a TableSource answers. The route
// is fetched only when the rule uses it: a route the rule suppresses for its prefix length is
// known well enough by its prefix and type. The route is checked the way tableLookup4 checks a
// route (TOS, scope, a usable path), and the path found must be the kernel's.
func (f *FIB) lazyLookup4(fr *fibRule, q *query) tableResult {
	table := fr.table
	if q.oif != "" || q.ignoreLS {
		// NETLINK_FIB_LOOKUP has no output device and no FIB_LOOKUP_IGNORE_LINKSTATE.
		f.uncertain("table %d: a lookup bound to a device", table)
		return tableResult{}
	}
	fl := Flow{Family: inet.V4, Dst: q.dst, Mark: q.mark, Proto: q.proto, SPort: q.sport, DPort: q.dport, TOS: q.tos, UID: q.uid}
	if q.input {
		fl.IIF, fl.Src = q.iif, q.src
	} else if q.hasSrc {
		fl.Src = q.src
	}
	tq := TableQuery{Table: table, Flow: fl, Scope: q.scope}
	ans, err := f.lazy.src.LookupTable(tq)
	if err != nil {
		f.uncertain("table %d: %v", table, err)
		return tableResult{}
	}
	if !ans.Prefix.IsValid() {
		return tableResult{}
	}
	if ans.Route == nil && !isErrorType(ans.Type) && ans.Prefix.Bits() <= fr.suppress && fr.ifgroup != 0 {
		// walkRules suppresses it, reading its prefix and type only.
		r := &model.Route{Family: inet.V4, Table: table, Dst: ans.Prefix, Type: ans.Type}
		return tableResult{route: &fibRoute{r: r, own: true, typ: r.Type, fam: inet.V4, table: table}, bits: ans.Prefix.Bits(), nh: ans.Nexthop}
	}
	r := ans.Route
	if r == nil {
		if r, err = f.lazy.src.RouteFor(tq, ans); err != nil {
			f.uncertain("table %d: %v", table, err)
			return tableResult{}
		}
	}
	rt := f.lazy.entries[r]
	if rt == nil {
		if r.Family != inet.V4 || r.Table != table || r.Dst != ans.Prefix || !r.Dst.Contains(q.dst) {
			f.uncertain("table %d: the route %s is not the answer %s for %s", table, r.Dst, ans.Prefix, q.dst)
			return tableResult{}
		}
		fr := f.fibRoute(r, &f.lazy.paths)
		if fr.typ != ans.Type {
			f.uncertain("table %d: route %s is of type %s, the answer's is %s", table, r.Dst, fr.typ, ans.Type)
			return tableResult{}
		}
		// resolveRouteGateways: a gateway inside a route of host scope is not used. Such
		// gateways are rare; rather than replay the kernel's resolution, ask with the table.
		for i := 0; i < fr.npaths; i++ {
			if nh := fr.nh(i); nh.gw.IsValid() && !nh.onlink {
				host, err := f.hostRoute(nh.gw)
				if err != nil || host {
					f.uncertain("table %d: gateway %s is inside a route of host scope (%v)", table, nh.gw, err)
					return tableResult{}
				}
			}
		}
		fr.own = true
		rt = &fr
		f.lazy.entries[r] = rt
	}
	bits := r.Dst.Bits()
	if rt.tos != 0 && rt.tos != q.tos || rt.scope < q.scope {
		f.uncertain("table %d: route %s does not fit the lookup (tos %#x, scope %d)", table, r.Dst, q.tos, q.scope)
		return tableResult{}
	}
	if rt.reject {
		return tableResult{route: rt, bits: bits, nh: -1}
	}
	for i := 0; i < rt.npaths; i++ {
		if q.goodNexthop4(rt, rt.nh(i)) {
			if i != ans.Nexthop {
				f.uncertain("table %d: route %s: the model's path %d is not the kernel's %d", table, r.Dst, i, ans.Nexthop)
				return tableResult{}
			}
			return tableResult{route: rt, bits: bits, nh: i}
		}
	}
	f.uncertain("table %d: route %s has no usable path in the model, but the kernel chose it", table, r.Dst)
	return tableResult{}
}

// hostRoute reports whether a route of host scope covers an IPv4 address, in a table the FIB
// holds or in one a TableSource answers.
func (f *FIB) hostRoute(a netip.Addr) (bool, error) {
	for _, t := range f.fams[0].tables {
		var c lpmCursor
		t.find(a, &c)
		for v, _, ok := c.next(); ok; v, _, ok = c.next() {
			var one [1]fibValue
			for _, rv := range f.values(v, &one) {
				if f.class(rv).scope >= scopeHost {
					return true, nil
				}
			}
		}
	}
	if f.lazy == nil {
		return false, nil
	}
	for t := range f.lazy.tables {
		if host, err := f.lazy.src.HostRoute(t, a); err != nil || host {
			return host, err
		}
	}
	return false, nil
}

// lazyRouteOf is routeOf for a route a TableSource returned.
func (f *FIB) lazyRouteOf(r *model.Route) *fibRoute {
	if f.lazy == nil {
		return nil
	}
	return f.lazy.entries[r]
}

// lazyHost reports whether a gateway of a route the FIB holds is inside a route of host scope
// of a table a TableSource answers. The FIB would have to replay the kernel's resolution of
// such a gateway in that table: it records the answers as uncertain instead.
func (f *FIB) lazyHost(gw netip.Addr) bool {
	if f.lazy == nil || !gw.Is4() {
		return false
	}
	for t := range f.lazy.tables {
		if host, err := f.lazy.src.HostRoute(t, gw); err != nil || host {
			f.uncertain("table %d: gateway %s may be inside a route of host scope (%v)", t, gw, err)
			return false
		}
	}
	return false
}
