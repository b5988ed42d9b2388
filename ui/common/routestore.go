package common

import (
	"context"
	"encoding/binary"
	"net/netip"
	"slices"
	"sync/atomic"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// RouteStore holds the routes of one table as a stream delivers them, compactly: each route
// is a few bytes (its destination, gateway, source and metric, and the number of its "shape",
// the fields that repeat from route to route: family, type, device, protocol, scope), so a
// table of a million routes takes ~16 MB rather than the ~250 MB of as many model.Route
// values. One goroutine (the stream's) adds routes while the page reads those already
// published, without a lock: a key never waits for the stream, however busy the machine.
type RouteStore struct {
	// The writer's own, never read by others: the slices only grow (or are replaced by
	// Reset), so a published view, which holds shorter headers of the same arrays, stays
	// valid and unchanged.
	data   []byte
	off    []uint32
	shapes []routeShape
	shapeN map[routeShape]uint32
	// extra holds, whole, the rare routes the compact form does not cover (multipath,
	// addresses with zones).
	extra []model.Route
	// last is the shape of the route added last: most routes share their neighbour's, which
	// saves hashing four strings per route.
	last    routeShape
	lastID  uint32
	pending int // routes added since the last Flush

	view   atomic.Pointer[storeView]
	resets atomic.Int64
}

// storeView is what readers see: the routes published so far.
type storeView struct {
	data   []byte
	off    []uint32
	shapes []routeShape
	extra  []model.Route
}

// flushEvery is how many routes Add publishes at a time.
const flushEvery = 1024

// routeShape is what a route shares with most others of its table.
type routeShape struct {
	family   inet.Family
	table    int
	typ      string
	tos      uint8
	dev      string
	scope    string
	protocol string
	onlink   bool
}

// Flags of a compact route.
const (
	rsDst6 = 1 << iota
	rsGw
	rsGw6
	rsSrc
	rsSrc6
	rsMetric
	rsExtra
)

// NewRouteStore returns an empty store.
func NewRouteStore() *RouteStore {
	return &RouteStore{shapeN: map[routeShape]uint32{}}
}

// Len returns how many routes are published.
func (s *RouteStore) Len() int {
	if v := s.view.Load(); v != nil {
		return len(v.off)
	}
	return 0
}

// Flush publishes the routes added so far (Add does every flushEvery routes).
func (s *RouteStore) Flush() {
	s.view.Store(&storeView{data: s.data, off: s.off, shapes: s.shapes, extra: s.extra})
	s.pending = 0
}

// Add appends a route (a copy: r may be reused by the caller). Only one goroutine may add.
func (s *RouteStore) Add(r *model.Route) {
	s.add(r)
	if s.pending++; s.pending >= flushEvery {
		s.Flush()
	}
}

func (s *RouteStore) add(r *model.Route) {
	s.off = append(s.off, uint32(len(s.data)))
	if !compactable(r) {
		s.data = append(s.data, rsExtra)
		s.data = binary.AppendUvarint(s.data, uint64(len(s.extra)))
		c := *r
		c.Nexthops = slices.Clone(r.Nexthops)
		s.extra = append(s.extra, c)
		return
	}
	sh := routeShape{r.Family, r.Table, r.Type, r.TOS, r.Dev, r.Scope, r.Protocol, r.OnLink}
	id := s.lastID
	if len(s.shapes) == 0 || sh != s.last {
		var ok bool
		if id, ok = s.shapeN[sh]; !ok {
			id = uint32(len(s.shapes))
			s.shapes = append(s.shapes, sh)
			s.shapeN[sh] = id
		}
		s.last, s.lastID = sh, id
	}
	var flags byte
	if !r.Dst.Addr().Is4() {
		flags |= rsDst6
	}
	if r.Gateway.IsValid() {
		flags |= rsGw
		if !r.Gateway.Is4() {
			flags |= rsGw6
		}
	}
	if r.Src.IsValid() {
		flags |= rsSrc
		if !r.Src.Is4() {
			flags |= rsSrc6
		}
	}
	if r.Metric != 0 {
		flags |= rsMetric
	}
	s.data = append(s.data, flags)
	s.data = binary.AppendUvarint(s.data, uint64(id))
	s.data = appendAddr(s.data, r.Dst.Addr())
	s.data = append(s.data, byte(r.Dst.Bits()))
	if flags&rsGw != 0 {
		s.data = appendAddr(s.data, r.Gateway)
	}
	if flags&rsSrc != 0 {
		s.data = appendAddr(s.data, r.Src)
	}
	if flags&rsMetric != 0 {
		s.data = binary.AppendUvarint(s.data, uint64(r.Metric))
	}
}

// compactable reports whether the compact form gives the route back exactly.
func compactable(r *model.Route) bool {
	plain := func(a netip.Addr) bool { return a.Zone() == "" }
	return r.Nexthops == nil && r.Dst.IsValid() && r.Metric >= 0 &&
		plain(r.Gateway) && plain(r.Src)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}

func readAddr(b []byte, v6 bool) (netip.Addr, []byte) {
	if v6 {
		return netip.AddrFrom16([16]byte(b[:16])), b[16:]
	}
	return netip.AddrFrom4([4]byte(b[:4])), b[4:]
}

// Reset empties the store (a dump the kernel interrupted starts again). Only the goroutine
// that adds may reset. New arrays, not the old ones emptied: readers may still hold a view of
// them.
func (s *RouteStore) Reset() {
	s.data, s.off, s.shapes, s.extra = nil, nil, nil, nil
	s.shapeN = map[routeShape]uint32{}
	s.resets.Add(1)
	s.Flush()
}

// Resets returns how often the store was emptied.
func (s *RouteStore) Resets() int { return int(s.resets.Load()) }

// Route writes the i-th route published into r (which the caller may reuse: it shares only
// strings and, for the rare multipath route, its nexthops with the store, which never changes
// them). It reports false, leaving r alone, when there is no such route (yet, or any more
// after a Reset).
func (s *RouteStore) Route(i int, r *model.Route) bool {
	v := s.view.Load()
	if v == nil || i < 0 || i >= len(v.off) {
		return false
	}
	v.route(i, r)
	return true
}

func (v *storeView) route(i int, r *model.Route) {
	b := v.data[v.off[i]:]
	flags := b[0]
	b = b[1:]
	if flags&rsExtra != 0 {
		n, _ := binary.Uvarint(b)
		*r = v.extra[n]
		return
	}
	id, k := binary.Uvarint(b)
	b = b[k:]
	sh := &v.shapes[id]
	*r = model.Route{Family: sh.family, Table: sh.table, Type: sh.typ, TOS: sh.tos, Dev: sh.dev,
		Scope: sh.scope, Protocol: sh.protocol, OnLink: sh.onlink}
	var dst netip.Addr
	dst, b = readAddr(b, flags&rsDst6 != 0)
	r.Dst = netip.PrefixFrom(dst, int(b[0]))
	b = b[1:]
	if flags&rsGw != 0 {
		r.Gateway, b = readAddr(b, flags&rsGw6 != 0)
	}
	if flags&rsSrc != 0 {
		r.Src, b = readAddr(b, flags&rsSrc6 != 0)
	}
	if flags&rsMetric != 0 {
		m, _ := binary.Uvarint(b)
		r.Metric = int(m)
	}
}

// Filter returns the positions in [from, to) of the routes published whose routes pass f. It
// checks ctx every 16k routes.
func (s *RouteStore) Filter(ctx context.Context, from, to int, f RouteFilter) ([]int32, error) {
	v := s.view.Load()
	if v == nil {
		return nil, ctx.Err()
	}
	to = min(to, len(v.off))
	var out []int32
	var r model.Route
	for i := from; i < to; i++ {
		if i&0x3fff == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		v.route(i, &r)
		if f.Match(&r) {
			out = append(out, int32(i))
		}
	}
	return out, nil
}

// Bytes returns roughly how much memory the published routes take.
func (s *RouteStore) Bytes() int {
	v := s.view.Load()
	if v == nil {
		return 0
	}
	return cap(v.data) + 4*cap(v.off) + len(v.extra)*200
}
