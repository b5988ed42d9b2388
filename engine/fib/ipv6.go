package fib

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"

	"roundtrip/engine/model"
)

type fibAddr6 struct {
	addr  netip.Addr
	plen  int
	typ   v6AddrType
	label int
	link  *fibLink
}

// tableLookup6 is fib6_table_lookup: rt6_select on the most specific node and fib6_backtrack to
// less specific ones while no route there qualifies.
func (f *FIB) tableLookup6(t *lpmTrie, q *query) tableResult {
	var c lpmCursor
	t.find(q.dst, &c)
	for {
		v, bits, ok := c.next()
		if !ok {
			return tableResult{}
		}
		var one [1]fibValue
		vs := f.values(v, &one)
		if i, nh := q.select6(f, vs); i >= 0 {
			return tableResult{route: f.class(vs[i]), ref: uint32(vs[i]), bits: bits, nh: nh}
		}
	}
}

// score6 is find_match / rt6_score_route for one path: -1 when it cannot be used, else 2 when
// it leaves by the preferred device (the oif of an output lookup, the iif of an input one) or
// none is preferred, 0 otherwise. Router preference bits are equal for static routes and
// neighbour reachability is assumed (no neighbour entries: RT6_NUD_SUCCEED with
// CONFIG_IPV6_ROUTER_PREF).
func (q *query) score6(r *fibRoute, nh *fibNexthop) int {
	l := nh.link
	if l == nil || !l.up {
		return -1
	}
	// Local and anycast routes never get RTNH_F_LINKDOWN (fib6_nh_init, fib6_ifdown).
	if !l.carrier && l.ignoreLinkdown6 && !q.ignoreLS && r.typ != model.RouteLocal && r.typ != model.RouteAnycast {
		return -1
	}
	if q.v6oif == "" || nh.dev == q.v6oif {
		return 2
	}
	if q.strict {
		return -1
	}
	return 0
}

// select6 is rt6_select / find_rr_leaf: among the routes of the lowest metric the first with the
// best score; when none qualifies, the first best among all the others. Each path of a
// multipath route is a sibling route of its own in the kernel.
func (q *query) select6(f *FIB, routes []fibValue) (best, bestNH int) {
	if len(routes) == 0 {
		return -1, -1
	}
	metric := f.class(routes[0]).metric
	best, bestNH, mpri := -1, -1, -1
	cont := -1
	for i, v := range routes {
		r := f.class(v)
		if r.metric != metric {
			cont = i
			break
		}
		for j := 0; j < r.npaths; j++ {
			if m := q.score6(r, r.nh(j)); m > mpri {
				best, bestNH, mpri = i, j, m
			}
		}
	}
	if best >= 0 || cont < 0 {
		return best, bestNH
	}
	for i := cont; i < len(routes); i++ {
		r := f.class(routes[i])
		for j := 0; j < r.npaths; j++ {
			if m := q.score6(r, r.nh(j)); m > mpri {
				best, bestNH, mpri = i, j, m
			}
		}
	}
	return best, bestNH
}

func (f *FIB) lookup6(q *query) Result {
	res := Result{Nexthop: -1}
	dt := v6Type(q.dst)
	needStrict := dt.multicast || dt.scope == v6ScopeLink
	if q.input {
		// ip6_pol_route_input passes the input device as the preferred one.
		q.v6oif = q.iif
		q.strict = needStrict
	} else {
		q.v6oif = q.oif
		q.strict = needStrict || q.oif != "" && !q.hasSrc
	}
	w, stopped := f.walk(q, &res)
	if stopped {
		return res
	}
	r := w.route
	res.Route, res.Table, res.Verdict = w.model(f), w.table, r.typ
	nh := w.nh
	if r.npaths > 1 {
		// fib6_select_path: the hash picks a sibling whose upper bound it falls under; one
		// that cannot be used leaves the route rt6_select chose.
		res.Candidates = []int{r.nh(nh).index}
		for i := 0; i < r.npaths; i++ {
			if i == nh {
				continue
			}
			l := r.nh(i).link
			if l == nil || !l.up || !l.carrier && l.ignoreLinkdown6 || q.score6(r, r.nh(i)) < 0 {
				continue
			}
			res.Candidates = append(res.Candidates, r.nh(i).index)
		}
		slices.Sort(res.Candidates)
		nh = pickCandidate(r, res.Candidates, q) // multipath: path i is Nexthops[i]
	}
	if r.nh(nh).index >= 0 {
		res.Nexthop = r.nh(nh).index
	}
	switch r.typ {
	case model.RouteLocal, model.RouteAnycast:
		res.OIF = f.loName()
	default:
		res.OIF = r.nh(nh).dev
		res.Gateway = r.nh(nh).gw
	}
	if !q.input {
		res.PrefSrc = f.prefSrc6(r, nh, q.dst)
		res.Src = res.PrefSrc
		if q.hasSrc {
			res.Src = q.src
		}
	}
	return res
}

// prefSrc6 is ip6_route_get_saddr: the route's prefsrc, else source address selection on the
// path's device.
func (f *FIB) prefSrc6(r *fibRoute, nh int, dst netip.Addr) netip.Addr {
	if ps := r.prefSrc; ps.IsValid() {
		return ps
	}
	var dev *fibLink
	if nh >= 0 && nh < r.npaths {
		dev = r.nh(nh).link
	}
	return f.selectAddr6(dev, dst)
}

// v6AddrType is what __ipv6_addr_type says of an address.
type v6AddrType struct {
	scope     int
	multicast bool
	any       bool
}

// IPv6 address scopes (IPV6_ADDR_SCOPE_*).
const (
	v6ScopeNode   = 0x01
	v6ScopeLink   = 0x02
	v6ScopeSite   = 0x05
	v6ScopeGlobal = 0x0e
)

func v6Type(a netip.Addr) v6AddrType {
	b := a.As16()
	switch {
	case b[0] == 0xff:
		return v6AddrType{scope: int(b[1] & 0x0f), multicast: true}
	case b[0] == 0xfe && b[1]&0xc0 == 0x80:
		return v6AddrType{scope: v6ScopeLink}
	case b[0] == 0xfe && b[1]&0xc0 == 0xc0:
		return v6AddrType{scope: v6ScopeSite}
	case a.IsUnspecified():
		return v6AddrType{any: true}
	case a == netip.IPv6Loopback():
		// "addr-select 3.4": the kernel gives ::1 link-local scope.
		return v6AddrType{scope: v6ScopeLink}
	}
	return v6AddrType{scope: v6ScopeGlobal}
}

// v6Labels is the kernel's default address label table (net/ipv6/addrlabel.c, RFC 6724).
var v6Labels = []struct {
	p     netip.Prefix
	label int
}{
	{netip.MustParsePrefix("::1/128"), 0},
	{netip.MustParsePrefix("::ffff:0:0/96"), 4},
	{netip.MustParsePrefix("::/96"), 3},
	{netip.MustParsePrefix("2001::/32"), 6},
	{netip.MustParsePrefix("2001:10::/28"), 7},
	{netip.MustParsePrefix("2002::/16"), 2},
	{netip.MustParsePrefix("3ffe::/16"), 12},
	{netip.MustParsePrefix("fec0::/10"), 11},
	{netip.MustParsePrefix("fc00::/7"), 5},
}

func v6Label(a netip.Addr) int {
	best, label := -1, 1 // ::/0 has label 1
	for _, l := range v6Labels {
		if l.p.Bits() > best && l.p.Contains(a) {
			best, label = l.p.Bits(), l.label
		}
	}
	return label
}

// selectAddr6 is ipv6_dev_get_saddr: RFC 6724 source address selection as the kernel does it,
// over the output device's addresses for link-local and multicast destinations, else over
// every device's (preferring the output device's by rule 5).
func (f *FIB) selectAddr6(dev *fibLink, dst netip.Addr) netip.Addr {
	dt := v6Type(dst)
	d := saddrDst{addr: dst, scope: dt.scope, label: v6Label(dst), dev: dev}
	var best *fibAddr6
	var bestScore saddrScore
	consider := func(l *fibLink) {
		for i := range l.v6 {
			a := &l.v6[i]
			if a.typ.any || a.typ.multicast {
				continue
			}
			s := d.score(a)
			if best == nil || s.better(&bestScore) {
				best, bestScore = a, s
			}
		}
	}
	if dev != nil && (dt.multicast || dt.scope <= v6ScopeLink) {
		consider(dev)
	} else {
		for _, l := range f.ordered {
			consider(l)
		}
	}
	if best == nil {
		return netip.Addr{}
	}
	return best.addr
}

type saddrDst struct {
	addr  netip.Addr
	scope int
	label int
	dev   *fibLink
}

// saddrScore holds the values of the kernel's rules (ipv6_get_saddr_eval) that can differ
// between addresses the model knows of; deprecated, temporary, optimistic and ORCHID addresses
// are not modelled, so those rules tie.
type saddrScore [5]int

func (d *saddrDst) score(a *fibAddr6) saddrScore {
	var s saddrScore
	if a.addr == d.addr { // rule 1: same address
		s[0] = 1
	}
	sc := a.typ.scope // rule 2: appropriate scope
	if sc >= d.scope {
		s[1] = -sc
	} else {
		s[1] = sc - 128
	}
	if d.dev == nil || a.link == d.dev { // rule 5: outgoing interface
		s[2] = 1
	}
	if a.label == d.label { // rule 6: matching label
		s[3] = 1
	}
	m := commonPrefixLen(a.addr, d.addr) // rule 8: longest matching prefix, up to the prefix length
	s[4] = min(m, a.plen)
	return s
}

// better reports whether s beats the current best; ties keep the earlier address.
func (s *saddrScore) better(o *saddrScore) bool {
	for i := range s {
		if s[i] != o[i] {
			return s[i] > o[i]
		}
	}
	return false
}

func commonPrefixLen(a, b netip.Addr) int {
	x, y := a.As16(), b.As16()
	hx, hy := binary.BigEndian.Uint64(x[:8]), binary.BigEndian.Uint64(y[:8])
	if hx != hy {
		return bits.LeadingZeros64(hx ^ hy)
	}
	lx, ly := binary.BigEndian.Uint64(x[8:]), binary.BigEndian.Uint64(y[8:])
	if lx != ly {
		return 64 + bits.LeadingZeros64(lx^ly)
	}
	return 128
}
