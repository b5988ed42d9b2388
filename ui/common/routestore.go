package common

import (
	"context"
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// RouteStore holds the routes of one table as a stream delivers them, compactly: each route
// is a few bytes (its destination, gateway, source and metric, and the number of its "shape",
// the fields that repeat from route to route: family, type, device, protocol, scope), so a
// table of a million routes takes ~16 MB rather than the ~250 MB of as many model.Route
// values. The reader of the stream adds routes while the page reads those already there:
// every method is safe for concurrent use.
type RouteStore struct {
	mu     sync.RWMutex
	data   []byte
	off    []uint32
	shapes []routeShape
	shapeN map[routeShape]uint32
	// last is the shape of the route added last: most routes share their neighbour's, which
	// saves hashing four strings per route.
	last   routeShape
	lastID uint32
	// extra holds, whole, the rare routes the compact form does not cover (multipath,
	// addresses with zones).
	extra []model.Route
	// resets counts Reset's calls: positions taken before one mean nothing after it.
	resets int
}

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

// Len returns how many routes the store holds.
func (s *RouteStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.off)
}

// Add appends a route (a copy: r may be reused by the caller).
func (s *RouteStore) Add(r *model.Route) {
	s.mu.Lock()
	defer s.mu.Unlock()
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

// Reset empties the store (a dump the kernel interrupted starts again).
func (s *RouteStore) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.off, s.extra = s.data[:0], s.off[:0], nil
	s.resets++
}

// Resets returns how often the store was emptied.
func (s *RouteStore) Resets() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.resets
}

// Route writes the i-th route into r (which the caller may reuse: it shares only strings and,
// for the rare multipath route, its nexthops with the store, which never changes them). It
// reports false, leaving r alone, when the store has no such route (it was reset).
func (s *RouteStore) Route(i int, r *model.Route) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if i < 0 || i >= len(s.off) {
		return false
	}
	s.route(i, r)
	return true
}

func (s *RouteStore) route(i int, r *model.Route) {
	b := s.data[s.off[i]:]
	flags := b[0]
	b = b[1:]
	if flags&rsExtra != 0 {
		n, _ := binary.Uvarint(b)
		*r = s.extra[n]
		return
	}
	id, k := binary.Uvarint(b)
	b = b[k:]
	sh := &s.shapes[id]
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

// Filter returns the positions in [from, to) whose routes pass f. It checks ctx every 16k
// routes and holds the store's lock only that long at a time, so the stream goes on while a
// filter runs.
func (s *RouteStore) Filter(ctx context.Context, from, to int, f RouteFilter) ([]int32, error) {
	var out []int32
	var r model.Route
	const step = 1 << 14
	for lo := from; lo < to; lo += step {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.mu.RLock()
		hi := min(lo+step, to, len(s.off))
		for i := lo; i < hi; i++ {
			s.route(i, &r)
			if f.Match(&r) {
				out = append(out, int32(i))
			}
		}
		s.mu.RUnlock()
	}
	return out, nil
}

// Bytes returns roughly how much memory the store holds.
func (s *RouteStore) Bytes() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return cap(s.data) + 4*cap(s.off) + len(s.extra)*200
}
