package fib

import (
	"fmt"
	"hash/fnv"
	"net/netip"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

type fibAddr4 struct {
	local     netip.Addr
	match     netip.Prefix // the subnet inet_ifa_match compares with (the peer's for point-to-point)
	scope     int
	secondary bool
}

// goodNexthop4 is fib_lookup_good_nhc.
func (q *query) goodNexthop4(r *fibRoute, nh *fibNexthop) bool {
	l := nh.link
	if l == nil {
		return false
	}
	// Routes of host scope (the local routes of addresses) get a nexthop of scope "nowhere",
	// which fib_sync_down_dev leaves alone when the device goes down: they never die.
	if r.scope != scopeHost {
		if !l.up {
			return false // RTNH_F_DEAD
		}
		if !l.carrier && l.ignoreLinkdown4 && !q.ignoreLS {
			return false // RTNH_F_LINKDOWN with ignore_routes_with_linkdown
		}
	}
	if q.oif != "" && nh.dev != q.oif {
		return false
	}
	return true
}

// tableLookup4 is fib_table_lookup: the longest matching prefix whose aliases have one that
// fits the flow's TOS and a usable nexthop; error types (blackhole, unreachable, prohibit, throw)
// answer at once.
func (f *FIB) tableLookup4(t *lpmTrie, q *query) tableResult {
	var c lpmCursor
	t.find(q.dst, &c)
	for {
		v, bits, ok := c.next()
		if !ok {
			return tableResult{}
		}
		if v&multiBit == 0 {
			if nh := q.select4(f.class(v)); nh != noMatch {
				return tableResult{route: f.class(v), ref: uint32(v), bits: bits, nh: nh}
			}
			continue
		}
		for _, v := range f.routesOf(v) {
			if nh := q.select4(f.class(v)); nh != noMatch {
				return tableResult{route: f.class(v), ref: uint32(v), bits: bits, nh: nh}
			}
		}
	}
}

// noMatch is what select4 returns for a route the lookup passes over.
const noMatch = -2

// select4 is the test fib_table_lookup makes of one alias: its TOS and scope, then its first
// usable path (-1 for an error type, which answers at once).
func (q *query) select4(r *fibRoute) int {
	if r.tos != 0 && r.tos != q.tos || r.scope < q.scope {
		return noMatch
	}
	if r.reject {
		return -1
	}
	for i := 0; i < r.npaths; i++ {
		if q.goodNexthop4(r, r.nh(i)) {
			return i
		}
	}
	return noMatch
}

// lookup4 answers into res, which is zero.
func (f *FIB) lookup4(q *query, res *Result) {
	res.Nexthop = -1
	if !q.input {
		// ip_route_output_key_hash_rcu: checks of the source and of the bound device.
		if q.hasSrc {
			if q.src.IsMulticast() || q.src == ipv4Broadcast || isZeronet4(q.src) {
				res.Verdict = VerdictInvalid
				res.Note = fmt.Sprintf("source %s cannot be used for sending (EINVAL)", q.src)
				return
			}
			if !f.isLocal4(q.src) {
				res.Verdict = VerdictNoRoute
				res.Note = fmt.Sprintf("source %s is not an address of this host: the kernel refuses output lookups from it (ENETUNREACH)", q.src)
				return
			}
		}
		if q.oifLink != nil && !q.oifLink.up {
			res.Verdict = VerdictNoRoute
			res.Note = fmt.Sprintf("bound device %s is down (ENETUNREACH)", q.oif)
			return
		}
		if q.dst == ipv4Broadcast && (q.oif != "" || q.hasSrc) {
			// The limited broadcast leaves by the bound device, or else by the device of the
			// source address, without a route lookup.
			res.Verdict, res.Src = VerdictBroadcast, q.src
			if q.oifLink != nil {
				res.OIF = q.oif
				if !q.hasSrc {
					res.Src = f.selectAddr4(q.oifLink, netip.Addr{}, scopeLink)
				}
			} else {
				res.OIF = f.devOf4(q.src)
			}
			res.PrefSrc = res.Src
			res.Note = "limited broadcast: sent without a route lookup"
			return
		}
		if q.dst.IsUnspecified() {
			res.Verdict, res.OIF = VerdictLocal, f.loName()
			res.Src = q.src
			if !q.hasSrc && q.oifLink != nil {
				res.Src = f.selectAddr4(q.oifLink, netip.Addr{}, scopeHost)
			}
			if !res.Src.IsValid() || res.Src.IsUnspecified() {
				res.Src = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			}
			res.PrefSrc = res.Src
			res.Note = "destination 0.0.0.0 means this host"
			return
		}
	} else if q.dst == ipv4Broadcast {
		res.Verdict, res.OIF = VerdictBroadcast, f.loName()
		res.Note = "limited broadcast: delivered locally without a route lookup"
		return
	}

	w, stopped := f.walk(q, res)
	if stopped {
		if !q.input && q.oifLink != nil {
			// "Apparently, routing tables are wrong. Assume, that the destination is on
			// link." (ip_route_output_key_hash_rcu): a bound lookup that fails sends out of
			// the bound device anyway.
			res.Note = fmt.Sprintf("no usable route (%s); a lookup bound to %s sends on that link anyway", res.Verdict, q.oif)
			res.Verdict, res.Route, res.Table, res.Rule = VerdictUnicast, nil, 0, nil
			res.OIF = q.oif
			res.PrefSrc = f.selectAddr4(q.oifLink, netip.Addr{}, scopeLink)
			res.Src = res.PrefSrc
			if q.hasSrc {
				res.Src = q.src
			}
		}
		return
	}

	r := w.route
	res.Route, res.Table, res.Verdict = w.model(f), w.table, r.typ
	nh := w.nh
	switch {
	case r.typ == model.RouteLocal:
		res.OIF = f.loName()
		if !q.input {
			res.PrefSrc = r.prefSrc
			if !res.PrefSrc.IsValid() {
				res.PrefSrc = q.dst
			}
		}
	case q.input && r.typ == model.RouteBroadcast:
		res.OIF = f.loName()
	default:
		// fib_select_path (output, unless bound to a device) and ip_mkroute_input choose
		// among the live paths of a multipath route by hash.
		if r.npaths > 1 && (q.input || q.oif == "") {
			res.Candidates = f.candidates4(r, q)
			if len(res.Candidates) > 0 {
				nh = pickCandidate(r, res.Candidates, q) // multipath: path i is Nexthops[i]
			}
		}
		res.OIF = r.nh(nh).dev
		res.Gateway = r.nh(nh).gateway()
		if !q.input {
			res.PrefSrc = f.prefSrc4(r, nh)
		}
	}
	if r.npaths > 0 && nh >= 0 {
		res.Nexthop = r.nh(nh).index
	}
	if !q.input {
		res.Src = res.PrefSrc
		if q.hasSrc {
			res.Src = q.src
		}
		// __mkroute_output: a loopback source may only leave by the loopback device.
		if res.Src.IsLoopback() && res.OIF != f.loName() {
			if l := f.links[res.OIF]; l == nil || !l.routeLocalnet {
				res.Note = fmt.Sprintf("source %s is a loopback address and cannot leave by %s (EINVAL)", res.Src, res.OIF)
				res.Verdict = VerdictInvalid
			}
		}
		if q.dst == ipv4Broadcast && (res.Verdict == VerdictUnicast || res.Verdict == VerdictLocal) {
			// __mkroute_output makes 255.255.255.255 a broadcast, sent on the route's device
			// without its gateway.
			res.Verdict, res.Gateway = VerdictBroadcast, netip.Addr{}
		}
	}
}

var ipv4Broadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

func isZeronet4(a netip.Addr) bool { return a.Is4() && a.As4()[0] == 0 }

// candidates4 lists the nexthops fib_select_multipath can choose: those fib_rebalance gave an
// upper bound, that is neither dead nor link-down with ignore_routes_with_linkdown. An output
// lookup with a source prefers the paths whose own source address (nh_saddr) is that source.
func (f *FIB) candidates4(r *fibRoute, q *query) []int {
	var all, same []int
	for i := 0; i < r.npaths; i++ {
		n := r.nh(i)
		if n.link == nil || !n.link.up || !n.link.carrier && n.link.ignoreLinkdown4 {
			continue
		}
		all = append(all, n.index)
		if !q.input && q.hasSrc && f.selectAddr4(n.link, n.gw, r.scope) == q.src {
			same = append(same, n.index)
		}
	}
	if len(same) > 0 {
		return same
	}
	return all
}

// pickCandidate chooses among the candidates by a hash of the addresses, weighted like the
// kernel's upper bounds. It is deterministic but not the kernel's hash, which is seeded per boot.
func pickCandidate(r *fibRoute, cands []int, q *query) int {
	h := fnv.New32a()
	s, d := q.src.As16(), q.dst.As16()
	h.Write(s[:])
	h.Write(d[:])
	total := 0
	for _, c := range cands {
		total += r.multi[c].weight
	}
	x := int(h.Sum32() % uint32(total))
	for _, c := range cands {
		x -= r.multi[c].weight
		if x < 0 {
			return c
		}
	}
	return cands[0]
}

// prefSrc4 is fib_result_prefsrc: the route's prefsrc, else inet_select_addr on the nexthop's
// device, preferring an address on the gateway's subnet, within the route's scope.
func (f *FIB) prefSrc4(r *fibRoute, nh int) netip.Addr {
	if ps := r.prefSrc; ps.IsValid() {
		return ps
	}
	n := r.nh(nh)
	return f.selectAddr4(n.link, n.gw, r.scope)
}

// selectAddr4 is inet_select_addr.
func (f *FIB) selectAddr4(dev *fibLink, dst netip.Addr, scope int) netip.Addr {
	var addr netip.Addr
	if dev != nil {
		localnet := scopeHost
		if dev.routeLocalnet {
			localnet = scopeLink
		}
		for _, a := range dev.v4 {
			if a.secondary || min(a.scope, localnet) > scope {
				continue
			}
			if !dst.IsValid() || dst.IsUnspecified() || a.match.Contains(dst) {
				return a.local
			}
			if !addr.IsValid() {
				addr = a.local
			}
		}
		if addr.IsValid() {
			return addr
		}
	}
	// "Not loopback addresses on loopback should be preferred in this case."
	for _, l := range f.ordered {
		for _, a := range l.v4 {
			if !a.secondary && a.scope != scopeLink && a.scope <= scope {
				return a.local
			}
		}
	}
	return netip.Addr{}
}

// isLocal4 is __ip_dev_find: an address configured here, or one the local table makes local.
func (f *FIB) isLocal4(a netip.Addr) bool { return f.devOf4(a) != "" }

// devOf4 returns the device __ip_dev_find finds for a local address: the one it is configured
// on, else the device of the local table's local route to it; "" when it is not local.
func (f *FIB) devOf4(a netip.Addr) string {
	for _, l := range f.ordered {
		for _, x := range l.v4 {
			if x.local == a {
				return l.name
			}
		}
	}
	t := f.fams[0].tables[model.TableLocal]
	if t == nil {
		return ""
	}
	q := query{fam: inet.V4, dst: a, src: netip.IPv4Unspecified()}
	if tr := f.tableLookup4(t, &q); tr.route != nil && tr.route.typ == model.RouteLocal {
		return tr.route.nh(tr.nh).dev
	}
	return ""
}
