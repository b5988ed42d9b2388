package engine

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
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
func RouteHash(r Route, loose bool) uint64 { return routeHash(r, loose) }

// RouteLeavesDev reports whether a planned route (normalized) leaves some device to the kernel.
func RouteLeavesDev(r Route) bool {
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
func RouteIdentity(r Route) uint64 { return routeIDHash(identOf(r)) }

func routeHash(r Route, loose bool) uint64 {
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
func RuleKey(r Rule) uint64 {
	r = NormalizeRule(r)
	var h maphash.Hash
	h.SetSeed(keySeed)
	h.WriteByte(byte(r.Family))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(r.Protocol))
	h.Write(b[:])
	h.WriteString(r.Args(numericTable))
	return h.Sum64()
}
