package common

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"strings"

	"roundtrip/engine/model"
)

// RouteIndex groups the positions of a state's routes by table, so that the Routing page can
// show one table of a million routes without copying or formatting them: rows are formatted
// from the state by position, and only the visible ones.
type RouteIndex struct {
	// Tables are the ids of the tables that hold routes: main, local and default first (the
	// ones people look at), then the others in ascending order.
	Tables  []int
	ByTable map[int][]int32
	// Defaults are the positions of the default routes (0.0.0.0/0, ::/0) of every table: the
	// gateways the Overview lists.
	Defaults []int32
}

// IndexRoutes builds the index in two passes over the routes (count, then fill), so each
// table's slice is allocated once at its final size.
func IndexRoutes(s *model.State) *RouteIndex {
	counts := map[int]int{}
	for i := range s.Routes {
		counts[s.Routes[i].Table]++
	}
	ix := &RouteIndex{ByTable: make(map[int][]int32, len(counts))}
	for t, n := range counts {
		ix.ByTable[t] = make([]int32, 0, n)
		ix.Tables = append(ix.Tables, t)
	}
	for i := range s.Routes {
		r := &s.Routes[i]
		ix.ByTable[r.Table] = append(ix.ByTable[r.Table], int32(i))
		if r.Dst.Bits() == 0 && r.Type != model.RouteLocal && r.Type != model.RouteBroadcast {
			ix.Defaults = append(ix.Defaults, int32(i))
		}
	}
	SortTables(ix.Tables)
	return ix
}

// SortTables orders table ids as the Routing page offers them: main, then the others in
// ascending order, then local and default.
func SortTables(tables []int) {
	rank := func(t int) int {
		switch t {
		case model.TableMain:
			return 0
		case model.TableLocal:
			return 2
		case model.TableDefault:
			return 3
		}
		return 1
	}
	slices.SortFunc(tables, func(a, b int) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return model.CompareTables(a, b)
	})
}

// RouteFilter selects routes by what an operator types: an address (routes whose destination
// contains it, as a lookup would consider them), a prefix (routes inside or covering it), or
// words found in the route's text: its destination, gateway, source, device, type or
// protocol ("dev eth0", "via 10.0.0.1", "blackhole", "100.72" for every route that mentions
// it).
type RouteFilter struct {
	addr   netip.Addr
	prefix netip.Prefix
	words  []string
	// wordBytes are the words as bytes, made once: addresses are matched as bytes.
	wordBytes [][]byte
}

// ParseRouteFilter reads a filter; the empty string selects everything.
func ParseRouteFilter(text string) RouteFilter {
	var f RouteFilter
	for _, w := range strings.Fields(text) {
		if a, err := netip.ParseAddr(w); err == nil && !f.addr.IsValid() && !f.prefix.IsValid() {
			f.addr = a.Unmap()
			continue
		}
		if p, err := netip.ParsePrefix(w); err == nil && !f.addr.IsValid() && !f.prefix.IsValid() {
			f.prefix = p.Masked()
			continue
		}
		if w == "dev" || w == "via" || w == "proto" {
			continue
		}
		f.words = append(f.words, strings.ToLower(w))
		f.wordBytes = append(f.wordBytes, []byte(strings.ToLower(w)))
	}
	return f
}

// Empty reports whether the filter selects everything.
func (f RouteFilter) Empty() bool {
	return !f.addr.IsValid() && !f.prefix.IsValid() && len(f.words) == 0
}

// Match reports whether a route passes the filter. It formats nothing, so it can run over a
// million routes per keystroke.
func (f RouteFilter) Match(r *model.Route) bool {
	if f.addr.IsValid() && !r.Dst.Contains(f.addr) {
		return false
	}
	if f.prefix.IsValid() && !r.Dst.Overlaps(f.prefix) {
		return false
	}
	for i, w := range f.words {
		if !routeHasWord(r, w, f.wordBytes[i]) {
			return false
		}
	}
	return true
}

// routeHasWord reports whether w (lower case) is part of the route's text. Addresses are
// formatted into a stack buffer, so a filter over a million routes allocates nothing.
func routeHasWord(r *model.Route, w string, wb []byte) bool {
	if w == "default" && r.Dst.Bits() == 0 {
		return true
	}
	var buf [64]byte
	has := func(s string) bool { return strings.Contains(strings.ToLower(s), w) }
	addr := func(a netip.Addr) bool {
		return a.IsValid() && bytes.Contains(a.AppendTo(buf[:0]), wb)
	}
	if bytes.Contains(r.Dst.AppendTo(buf[:0]), wb) || addr(r.Gateway) || addr(r.Src) {
		return true
	}
	if has(r.Dev) || has(r.Type) || has(r.Protocol) || has(r.Scope) {
		return true
	}
	for _, nh := range r.Nexthops {
		if has(nh.Dev) || addr(nh.Gateway) {
			return true
		}
	}
	return false
}

// FilterRoutes returns the positions in rows whose routes pass the filter. It checks ctx
// every 64k routes so that a filter replaced by the next keystroke stops early.
func FilterRoutes(ctx context.Context, s *model.State, rows []int32, f RouteFilter) ([]int32, error) {
	if f.Empty() {
		return rows, nil
	}
	var out []int32
	for i, ri := range rows {
		if i&0xffff == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if f.Match(&s.Routes[ri]) {
			out = append(out, ri)
		}
	}
	return out, nil
}
