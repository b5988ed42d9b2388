package plan

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"slices"
	"sort"

	"roundtrip/engine/model"
)

// Hashes that stand in for comparisons when a million routes are compared without holding
// them: duplicate changes in a plan file, and the drift check after an apply, which compares
// the plan with a streaming dump of the routes. They are keyed per process and never stored.
var keySeed = maphash.MakeSeed()

// objectHash hashes what object returns, without formatting it for routes.
func (c Change) objectHash() uint64 {
	if c.Kind == KindRoute && c.Route != nil {
		return routeIDHash(identOf(NormalizeRoute(*c.Route)))
	}
	return maphash.String(keySeed, c.object())
}

func routeIDHash(id routeID) uint64 {
	var h maphash.Hash
	h.SetSeed(keySeed)
	writeRouteID(&h, id)
	return h.Sum64()
}

func writeRouteID(h *maphash.Hash, id routeID) {
	var b [8]byte
	h.WriteByte(byte(id.family))
	binary.LittleEndian.PutUint64(b[:], uint64(id.table))
	h.Write(b[:])
	writeAddr(h, id.dst.Addr())
	h.WriteByte(byte(id.dst.Bits() + 1))
	h.WriteByte(id.tos)
	binary.LittleEndian.PutUint64(b[:], uint64(id.metric))
	h.Write(b[:])
}

func writeAddr(h *maphash.Hash, a netip.Addr) {
	switch {
	case !a.IsValid():
		h.WriteByte(0)
	case a.Is4():
		h.WriteByte(4)
		b := a.As4()
		h.Write(b[:])
	default:
		h.WriteByte(6)
		b := a.As16()
		h.Write(b[:])
		h.WriteString(a.Zone())
		h.WriteByte(0)
	}
}

func writeString(h *maphash.Hash, s string) {
	h.WriteString(s)
	h.WriteByte(0)
}

func writeBool(h *maphash.Hash, v bool) {
	if v {
		h.WriteByte(1)
	} else {
		h.WriteByte(0)
	}
}

// RouteHash hashes a normalized route for comparing routes by value the way sameRoute does:
// exactly, over every field it compares, or loose, leaving out the device of the route and of
// each nexthop that has a gateway. Compare a planned route loosely when RouteLeavesDev says it
// leaves a device to the kernel (which picks the link the gateway is on), else exactly. A route
// that leaves one nexthop's device to the kernel but names another's is compared without
// either.
func RouteHash(r model.Route, loose bool) uint64 { return routeHash(r, loose) }

// RouteLeavesDev reports whether a planned route (normalized) leaves some device to the kernel.
func RouteLeavesDev(r model.Route) bool {
	if r.Dev == "" && r.Gateway.IsValid() {
		return true
	}
	for _, nh := range r.Nexthops {
		if nh.Dev == "" && nh.Gateway.IsValid() {
			return true
		}
	}
	return false
}

// RouteIdentity hashes how the kernel identifies a route for replace and delete: family,
// table, destination, tos and metric.
func RouteIdentity(r model.Route) uint64 { return routeIDHash(identOf(r)) }

func routeHash(r model.Route, loose bool) uint64 {
	var h maphash.Hash
	h.SetSeed(keySeed)
	writeRouteID(&h, identOf(r))
	writeString(&h, r.Type)
	writeAddr(&h, r.Gateway)
	if !(loose && r.Gateway.IsValid()) {
		writeString(&h, r.Dev)
	}
	writeAddr(&h, r.Src)
	writeString(&h, r.Scope)
	writeString(&h, r.Protocol)
	writeBool(&h, r.OnLink)
	h.WriteByte(byte(len(r.Nexthops)))
	for _, nh := range r.Nexthops {
		writeAddr(&h, nh.Gateway)
		if !(loose && nh.Gateway.IsValid()) {
			writeString(&h, nh.Dev)
		}
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(nh.Weight))
		h.Write(b[:])
		writeBool(&h, nh.OnLink)
	}
	return h.Sum64()
}

// RuleKey hashes a rule the way sameRule compares rules (normalized, by family, protocol and
// everything `ip rule` shows).
func RuleKey(r model.Rule) uint64 {
	r = NormalizeRule(r)
	var h maphash.Hash
	h.SetSeed(keySeed)
	h.WriteByte(byte(r.Family))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(r.Protocol))
	h.Write(b[:])
	h.WriteString(r.Args(model.NumericTable))
	return h.Sum64()
}

// HashList holds 64-bit hashes, millions of them at 8 bytes each: in 256 buckets by their top
// byte, each filled a block at a time (no slice grows by copying itself, or keeps unused room
// worth more than a block), and each sorted and searched on its own. Hashes are spread evenly,
// so a lookup guesses where in its bucket a hash would be and searches outwards from there: a
// cache miss or two rather than the twenty of a binary search.
type HashList struct {
	fill  [256][][]uint64 // blocks of each bucket while hashes are added
	b     [256][]uint64   // each bucket, sorted (Sort)
	start [257]int        // global index of each bucket's first hash, after Sort
}

const hashBlock = 1024

// Add adds a hash.
func (l *HashList) Add(h uint64) {
	k := h >> 56
	blocks := l.fill[k]
	if len(blocks) == 0 || len(blocks[len(blocks)-1]) == hashBlock {
		l.fill[k] = append(blocks, make([]uint64, 0, hashBlock))
		blocks = l.fill[k]
	}
	blocks[len(blocks)-1] = append(blocks[len(blocks)-1], h)
}

// Len returns how many hashes were added.
func (l *HashList) Len() int {
	n := l.start[256]
	for _, blocks := range l.fill {
		for _, b := range blocks {
			n += len(b)
		}
	}
	return n
}

// Sort sorts the hashes; At, Find and Dups need it. Hashes added after it are lost.
func (l *HashList) Sort() {
	for k := range l.fill {
		n := len(l.b[k])
		for _, b := range l.fill[k] {
			n += len(b)
		}
		all := append(make([]uint64, 0, n), l.b[k]...)
		for _, b := range l.fill[k] {
			all = append(all, b...)
		}
		l.fill[k] = nil
		slices.Sort(all)
		l.b[k] = all
		l.start[k+1] = l.start[k] + n
	}
}

// At returns the hash at a global index (0..Len-1, in sorted order).
func (l *HashList) At(i int) uint64 {
	k := sort.SearchInts(l.start[:], i+1) - 1
	return l.b[k][i-l.start[k]]
}

// Find returns the global indices [lo, hi) of the hashes equal to h (lo == hi when none).
func (l *HashList) Find(h uint64) (lo, hi int) {
	k := h >> 56
	b := l.b[k]
	i := findSorted(b, h, h<<8)
	j := i
	for j < len(b) && b[j] == h {
		j++
	}
	return l.start[k] + i, l.start[k] + j
}

// Dups returns the hashes added more than once.
func (l *HashList) Dups() []uint64 {
	var out []uint64
	for _, b := range l.b {
		for i := 1; i < len(b); i++ {
			if b[i] == b[i-1] && (len(out) == 0 || out[len(out)-1] != b[i]) {
				out = append(out, b[i])
			}
		}
	}
	return out
}

// findSorted returns the index of the first element >= h in a sorted list whose elements are
// spread evenly by rank (the bits of h that order it within the list, top-aligned).
func findSorted(list []uint64, h, rank uint64) int {
	n := len(list)
	if n == 0 {
		return 0
	}
	g := min(int((rank>>32)*uint64(n)>>32), n-1) // both below 2^32: no overflow
	if list[g] < h {
		lo, step := g, 1 // list[lo] < h
		for lo+step < n && list[lo+step] < h {
			lo += step
			step *= 2
		}
		hi := min(lo+step, n)
		i, _ := slices.BinarySearch(list[lo+1:hi], h)
		return lo + 1 + i
	}
	hi, step := g, 1 // list[hi] >= h
	for hi-step >= 0 && list[hi-step] >= h {
		hi -= step
		step *= 2
	}
	lo := max(hi-step, -1)
	i, _ := slices.BinarySearch(list[lo+1:hi], h)
	return lo + 1 + i
}
