package fib

import (
	"net/netip"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// The questions below are model.OnLink's and a coverage test of doctor, answered from the
// tables' prefix index: they read the prefixes that hold an address (at most one per prefix
// length), not every route, so asking them once per route of a full table stays linear.

// OnLink reports what model.OnLink reports for the state the FIB was built from: whether a
// gateway is reachable directly (a route of link or host scope without a gateway covers it, in
// the route's table or main, on dev when dev is given; or an address on the link covers it).
func (f *FIB) OnLink(table int, gw netip.Addr, dev string) bool {
	if gw.Is6() && gw.IsLinkLocalUnicast() {
		return dev != ""
	}
	fam := inet.FamilyOf(gw)
	direct := func(id int) bool {
		if f.isLazy(fam, id) {
			f.uncertain("OnLink asks table %d", id)
		}
		t := f.family(fam).tables[id]
		if t == nil {
			return false
		}
		var c lpmCursor
		t.find(gw.Unmap(), &c)
		for v, bits, ok := c.next(); ok; v, bits, ok = c.next() {
			dst := netip.PrefixFrom(gw.Unmap(), bits).Masked()
			var one [1]fibValue
			for _, v := range f.values(v, &one) {
				r := f.class(v).r // every route of the class is r but for its destination
				if r.Family != fam || !dst.Contains(gw) || r.Type != model.RouteUnicast && r.Type != "" ||
					r.Gateway.IsValid() || len(r.Nexthops) > 0 {
					continue
				}
				if fam == inet.V4 && r.Scope != "link" && r.Scope != "host" {
					continue
				}
				if dev == "" || r.Dev == dev {
					return true
				}
			}
		}
		return false
	}
	if direct(table) || table != model.TableMain && direct(model.TableMain) {
		return true
	}
	onLink := func(l *model.Link) bool {
		for _, a := range l.Addrs {
			if a.Prefix.Masked().Contains(gw) || a.Peer.IsValid() && a.Peer.Contains(gw) {
				return true
			}
		}
		return false
	}
	if dev != "" {
		// A (malformed) state may name two links alike; model.OnLink looks at each of them.
		if fl := f.links[dev]; fl != nil && onLink(fl.link) {
			return true
		}
		for i := range f.state.Links {
			if l := &f.state.Links[i]; l.Name == dev && onLink(l) {
				return true
			}
		}
		return false
	}
	for i := range f.state.Links {
		if onLink(&f.state.Links[i]) {
			return true
		}
	}
	return false
}

// Covers reports whether a route of the table (of any type, the default route aside) covers a
// prefix: its destination holds the prefix's address and is no longer than the prefix.
func (f *FIB) Covers(fam inet.Family, table int, p netip.Prefix) bool {
	if f.isLazy(fam, table) {
		f.uncertain("Covers asks table %d", table)
	}
	t := f.family(fam).tables[table]
	if t == nil || !p.IsValid() {
		return false
	}
	a := p.Addr()
	var c lpmCursor
	t.find(a.Unmap(), &c)
	for v, bits, ok := c.next(); ok; v, bits, ok = c.next() {
		if bits == 0 {
			break // only the default route is left, which does not count
		}
		dst := netip.PrefixFrom(a.Unmap(), bits).Masked()
		var one [1]fibValue
		for _, v := range f.values(v, &one) {
			r := f.class(v).r
			if r.Family == fam && dst.Bits() > 0 && dst.Bits() <= p.Bits() && dst.Contains(a) {
				return true
			}
		}
	}
	return false
}
