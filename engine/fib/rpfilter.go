package fib

import (
	"fmt"
	"net/netip"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// RPFCheck models the source checks of the IPv4 input path (ip_route_input_slow and
// fib_validate_source) for a packet received on fl.IIF: martian sources, and the reverse-path
// lookup that rp_filter (0 off, 1 strict, 2 loose; the maximum of all and the interface) and,
// even with rp_filter off, the martian-source check make when policy rules or custom local
// routes exist. ok is false when the kernel drops the packet; reverse is the reverse lookup
// (from Dst to Src, iif = the forward route's output device) when one was made.
// IPv6 has no reverse-path filter in the FIB (only netfilter's rpfilter match), so IPv6 flows
// and output lookups always pass.
func (f *FIB) RPFCheck(fl Flow) (ok bool, reverse Result, why string) {
	return f.RPFCheckFor(fl, f.Lookup(fl))
}

// RPFCheckFor is RPFCheck for a given answer of the forward lookup, such as another path of a
// multipath route (PickNexthop): the reverse lookup starts from the forward route's output
// device, so the path the kernel hashes the packet to can decide whether it passes.
func (f *FIB) RPFCheckFor(fl Flow, fwd Result) (ok bool, reverse Result, why string) {
	q, res, valid := f.normalize(fl)
	if !valid {
		return false, res, res.Note
	}
	if !q.input || q.fam != inet.V4 {
		return true, Result{}, "no reverse-path check: " + map[bool]string{true: "IPv6 has no rp_filter", false: "locally generated packet"}[q.fam == inet.V6]
	}
	iif := f.links[q.iif]
	if iif == nil {
		return false, Result{}, fmt.Sprintf("no interface %s", q.iif)
	}
	src, dst := q.src, q.dst
	switch {
	case src.IsMulticast() || src == ipv4Broadcast:
		return false, Result{}, fmt.Sprintf("martian source %s: multicast or broadcast", src)
	case dst == ipv4Broadcast || src.IsUnspecified() && dst.IsUnspecified():
		if src.IsUnspecified() {
			return true, Result{}, "limited broadcast from 0.0.0.0 is accepted without a check"
		}
		return f.validateSource(&q, iif, netip.IPv4Unspecified(), "")
	case isZeronet4(src):
		return false, Result{}, fmt.Sprintf("martian source %s: in 0.0.0.0/8", src)
	case isZeronet4(dst):
		return false, Result{}, fmt.Sprintf("martian destination %s: in 0.0.0.0/8", dst)
	case dst.IsLoopback() && !iif.routeLocalnet:
		return false, Result{}, fmt.Sprintf("martian destination %s: loopback address received on %s (route_localnet is off)", dst, iif.name)
	case src.IsLoopback() && !iif.routeLocalnet:
		return false, Result{}, fmt.Sprintf("martian source %s: loopback address received on %s (route_localnet is off)", src, iif.name)
	}
	switch fwd.Verdict {
	case VerdictLocal:
		return f.validateSource(&q, iif, dst, "")
	case VerdictBroadcast:
		return f.validateSource(&q, iif, netip.IPv4Unspecified(), "")
	case VerdictUnicast:
		return f.validateSource(&q, iif, dst, fwd.OIF)
	}
	return true, Result{}, fmt.Sprintf("no source check: the forward lookup already refuses the packet (%s)", fwd.Verdict)
}

// validateSource is fib_validate_source and __fib_validate_source. oif is the forward route's
// output device ("" for local delivery), which the kernel uses as the reverse lookup's iif.
func (f *FIB) validateSource(q *query, dev *fibLink, dst netip.Addr, oif string) (bool, Result, string) {
	rpf := dev.rpFilter
	if rpf == 0 && (dev.name != oif || !dev.sendRedirects) {
		if dev.acceptLocal {
			return true, Result{}, "rp_filter is off and accept_local is on"
		}
		if !f.customLocal4 && !f.customRules4 {
			for _, l := range f.ordered {
				for _, a := range l.v4 {
					if a.local == q.src {
						return false, Result{}, fmt.Sprintf("martian source %s: it is an address of this host (on %s)", q.src, l.name)
					}
				}
			}
			return true, Result{}, "rp_filter is off"
		}
	}
	rq := query{
		fam:       inet.V4,
		src:       dst,
		dst:       q.src,
		hasSrc:    !dst.IsUnspecified(),
		iif:       oif,
		tos:       q.tos,
		proto:     q.proto,
		sport:     q.dport,
		dport:     q.sport,
		input:     true,
		wantSteps: true,
	}
	if rq.iif == "" {
		rq.iif = f.loName()
	}
	if dev.srcValidMark {
		rq.mark = q.mark
	}
	w := f.walkRules(&rq)
	rev := Result{Verdict: w.verdict, Nexthop: -1, Table: w.table, Steps: w.steps}
	if w.rule != nil {
		rev.Rule = w.rule.r
	}
	mode := [...]string{"off", "strict", "loose"}[min(rpf, 2)]
	if w.route == nil || isErrorType(w.route.typ) {
		if w.route != nil {
			rev.Route = w.model(f)
		}
		if rpf != 0 {
			return false, rev, fmt.Sprintf("rp_filter %s: no route back to %s (%s)", mode, q.src, w.verdict)
		}
		return true, rev, fmt.Sprintf("rp_filter off: no route back to %s, accepted", q.src)
	}
	r := w.route
	rev.Route = w.model(f)
	rev.Verdict = r.typ
	if w.nh >= 0 {
		rev.OIF, rev.Gateway, rev.Nexthop = r.nh(w.nh).dev, r.nh(w.nh).gateway(), r.nh(w.nh).index
	}
	if r.typ != model.RouteUnicast && (r.typ != model.RouteLocal || !dev.acceptLocal) {
		return false, rev, fmt.Sprintf("martian source %s: the route back to it is %s %s in table %s", q.src, r.typ, w.pfx, f.state.TableName(w.table))
	}
	for i := 0; i < r.npaths; i++ {
		if r.nh(i).dev == dev.name {
			return true, rev, fmt.Sprintf("rp_filter %s: the route back to %s leaves by %s, where the packet came in", mode, q.src, dev.name)
		}
	}
	if r.typ == model.RouteLocal && dev == f.lo {
		return true, rev, "received on loopback from a local address"
	}
	if len(dev.v4) == 0 {
		if rpf != 0 {
			return false, rev, fmt.Sprintf("rp_filter %s: %s has no IPv4 address and the route back to %s does not use it", mode, dev.name, q.src)
		}
		return true, rev, "rp_filter off"
	}
	back := "another interface"
	if r.npaths > 0 {
		back = r.nh(0).dev
	}
	if rpf == 1 {
		return false, rev, fmt.Sprintf("rp_filter strict: the route back to %s leaves by %s, not %s where the packet came in", q.src, back, dev.name)
	}
	return true, rev, fmt.Sprintf("rp_filter %s: the route back to %s leaves by %s, not %s, which only strict mode refuses", mode, q.src, back, dev.name)
}
