// Package fib answers routing questions from a model.State the way the kernel's FIB does: policy
// rules, routing tables, source address selection and reverse-path filtering.
package fib

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// Flow is what the kernel's FIB lookup sees of a packet (struct flowi4 / flowi6).
type Flow struct {
	Family inet.Family // zero: the family of Dst
	Src    netip.Addr  // zero for a locally generated packet before source selection
	Dst    netip.Addr
	// IIF is the interface the packet arrived on; "" makes an output lookup (locally generated
	// traffic), which the kernel makes with iif = loopback, so `iif lo` rules match it.
	IIF string
	// OIF is the device an output lookup is bound to (SO_BINDTODEVICE, `ip route get oif`).
	OIF   string
	Mark  uint32
	Proto int // IP protocol number, 0 = any
	SPort uint16
	DPort uint16
	// TOS is the IPv4 TOS byte or the IPv6 traffic class. IPv4 rules and routes compare its
	// bits 0x1c only (the legacy TOS field the kernel keeps); IPv6 rules compare the DSCP (0xfc).
	TOS uint8
	// UID is the socket owner for uidrange rules. It counts for output lookups only: the
	// kernel looks up received and forwarded packets as uid 0 (ip_route_input_slow uses
	// sock_net_uid(net, NULL); ip6_route_input leaves flowi6_uid zero).
	UID uint32
}

// Verdicts of a FIB lookup.
const (
	VerdictUnicast     = "unicast"     // forward or send out of OIF
	VerdictLocal       = "local"       // deliver to this host
	VerdictBroadcast   = "broadcast"   // a broadcast address of a local subnet
	VerdictBlackhole   = "blackhole"   // dropped silently (EINVAL)
	VerdictUnreachable = "unreachable" // ICMP unreachable (EHOSTUNREACH; ENETUNREACH from a rule)
	VerdictProhibit    = "prohibit"    // ICMP administratively prohibited (EACCES)
	VerdictNoRoute     = "no-route"    // ENETUNREACH: no rule gave a route
	VerdictInvalid     = "invalid"     // the kernel refuses the lookup itself: a bad source (EINVAL), no such device (ENODEV)
)

// Result is the answer of a FIB lookup and how it was reached.
type Result struct {
	// Verdict is one of the Verdict constants, or the route type (anycast, multicast, nat) when
	// a route of another type matched.
	Verdict string
	Rule    *model.Rule  // the rule that decided; nil for no-route
	Table   int          // the table of Route; 0 when no table decided
	Route   *model.Route // the matching route; nil when a rule action or no route decided
	// Nexthop is the index into Route.Nexthops of the chosen path, -1 for a single-path route.
	Nexthop int
	// Candidates are the nexthops the kernel may choose for this flow (the live ones). The
	// kernel hashes the flow with a per-boot random seed (fib_multipath_hash_seed), so which
	// one it takes cannot be predicted; Nexthop is a deterministic pick among them and
	// PickNexthop gives the answer for any other.
	Candidates []int
	Gateway    netip.Addr
	OIF        string // the output device; "lo" for local delivery
	// Src is the source address of an output lookup: the flow's own when it has one, else
	// PrefSrc.
	Src netip.Addr
	// PrefSrc is the source the kernel selects for this route: the route's prefsrc, else
	// inet_select_addr (IPv4) or ipv6_dev_get_saddr, RFC 6724 (IPv6) on the output device.
	PrefSrc netip.Addr
	Steps   []Step // every rule considered, in order
	Note    string // why, when no rule was consulted or the kernel changed the answer afterwards
}

// Step is one rule considered by a lookup.
type Step struct {
	Rule    model.Rule
	Matched bool
	// Outcome says what happened: "no match (fwmark)", "table 100: no route", "table 100:
	// throw 10.0.0.0/8", "table main: 0.0.0.0/0 suppressed (prefix length 0 <= 0)", "table 100:
	// chose 10.0.0.0/8 via 10.1.0.2 dev eth1".
	Outcome string
}

// FIB answers route lookups for a State the way the Linux kernel does: policy rules in priority
// order (net/core/fib_rules.c), then longest-prefix match with the kernel's tie-breaking in
// each table (IPv4: net/ipv4/fib_trie.c, fib_semantics.c, route.c; IPv6: net/ipv6/fib6_rules.c,
// ip6_fib.c, route.c). It indexes the state once; the state must not change while it is used.
//
// It is checked against the kernel by TestPrivilegedFIBMatchesKernel (random rules and routes,
// thousands of `ip route get` probes). What it does not model: neighbour (ARP/ND) state, which
// the kernel consults to choose between several IPv4 default routes of equal metric
// (fib_select_default), for fib_multipath_use_neigh and for IPv6 router reachability (it assumes
// no neighbour entries, which makes all three pick as below); the multipath hash (see
// Result.Candidates); IPv6 source-specific routes (subtrees); nexthop objects; VRF (l3mdev);
// interface groups (every link is taken to be in group 0, the default, for suppress_ifgroup);
// addresses still in duplicate address detection; the shortcut the kernel takes while no
// policy rule was ever added (local and main merged, a reject route in main falling through to
// the default table), where it assumes the three default rules. The kernel resolves a gateway
// when its route is added, against the rules and routes of that moment; the FIB resolves it
// against the state it is given.
type FIB struct {
	state   *model.State
	links   map[string]*fibLink
	ordered []*fibLink // in ifindex order, the kernel's device list order for links made in place
	lo      *fibLink
	fams    [2]fibFamily
	// The IPv4 input path checks sources cheaply unless these are set (fib_validate_source).
	customRules4, customLocal4 bool
}

type fibFamily struct {
	fam    inet.Family
	rules  []fibRule
	tables map[int]*lpmTrie
}

type fibLink struct {
	link    *model.Link
	name    string
	up      bool // IFF_UP: nexthops through a link that is down are dead (RTNH_F_DEAD)
	carrier bool // nexthops through a link without carrier are RTNH_F_LINKDOWN
	v4      []fibAddr4
	v6      []fibAddr6
	// per-interface sysctls
	ignoreLinkdown4, ignoreLinkdown6 bool
	rpFilter                         int
	srcValidMark, acceptLocal        bool
	sendRedirects, routeLocalnet     bool
}

type fibAddr4 struct {
	local     netip.Addr
	match     netip.Prefix // the subnet inet_ifa_match compares with (the peer's for point-to-point)
	scope     int
	secondary bool
}

type fibAddr6 struct {
	addr  netip.Addr
	plen  int
	typ   v6AddrType
	label int
	link  *fibLink
}

type fibRule struct {
	r        *model.Rule
	detached bool // iif or oif names no link: the kernel stores ifindex -1, which never matches
	target   int  // goto: index of the first rule with the target priority, -1 if none
	table    int
	noRoute  string // outcomes, made once
	name     string
	gotoText string
	suppress int // suppress_prefixlength, -1 when unset
	ifgroup  int // suppress_ifgroup, -1 when unset
}

// fibRoute is a route as lookups read it. Routes are stored by value in their prefix's entry, so
// that a lookup reaches a route's data in as few cache misses as possible; a single path is
// shared by the routes whose path is the same (a full table has a few), so a route is small.
type fibRoute struct {
	r *model.Route
	// dst is the route's destination: r.Dst, except for a shared route (Builder), whose r is a
	// template with no Dst.
	dst    netip.Prefix
	typ    string
	metric int
	scope  int
	npaths int
	one    *fibNexthop  // the path of a single-path route; nil when it has none
	multi  []fibNexthop // the paths of a multipath route
	shared bool
	reject bool // blackhole, unreachable, prohibit, throw: the lookup answers an error
	tos    uint8
}

// prefSrc is the route's prefsrc (in r: a template shares it).
func (r *fibRoute) prefSrc() netip.Addr { return r.r.Src.Unmap() }

// noNexthop is what nh returns for a route without a path, as the zero path it once held
// inline. Nothing writes to it: only paths below npaths are resolved.
var noNexthop fibNexthop

// model returns the route as the state has it; a shared route's is made here.
func (r *fibRoute) model() *model.Route {
	if !r.shared {
		return r.r
	}
	m := *r.r
	m.Dst = r.dst
	return &m
}

// sameAs reports whether a shared route is m.
func (r *fibRoute) sameAs(m *model.Route) bool {
	t := r.r
	return len(m.Nexthops) == 0 && m.Dst == r.dst && m.Family == t.Family && m.Table == t.Table &&
		m.Metric == t.Metric && m.Type == t.Type && m.Dev == t.Dev && m.Scope == t.Scope &&
		m.Protocol == t.Protocol && m.TOS == t.TOS && m.Gateway == t.Gateway && m.Src == t.Src &&
		m.OnLink == t.OnLink
}

// nh returns path i of the route.
func (r *fibRoute) nh(i int) *fibNexthop {
	if r.multi != nil {
		return &r.multi[i]
	}
	if r.one == nil {
		return &noNexthop
	}
	return r.one
}

type fibNexthop struct {
	gw     netip.Addr
	link   *fibLink
	dev    string
	index  int  // into Route.Nexthops, -1 for a single-path route
	onlink bool // RTNH_F_ONLINK
	// direct is set when the kernel does not use the gateway: it resolved to a route of host
	// scope (a local address) when the route was added, which gives the nexthop host scope and
	// makes rt_uses_gateway false.
	direct bool
}

// gateway returns the gateway the kernel sends to, if any.
func (n *fibNexthop) gateway() netip.Addr {
	if n.direct {
		return netip.Addr{}
	}
	return n.gw
}

// Route and address scopes (RT_SCOPE_*).
const (
	scopeUniverse = 0
	scopeSite     = 200
	scopeLink     = 253
	scopeHost     = 254
	scopeNowhere  = 255
)

func parseScope(s string, def int) int {
	switch s {
	case "":
		return def
	case "universe", "global":
		return scopeUniverse
	case "site":
		return scopeSite
	case "link":
		return scopeLink
	case "host":
		return scopeHost
	case "nowhere":
		return scopeNowhere
	}
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}

// New indexes a state for lookups.
func New(s *model.State) *FIB { return NewBuilder(s).FIB() }

// newFIB indexes the links, addresses and rules of a state, not its routes.
func newFIB(s *model.State) *FIB {
	f := &FIB{state: s, links: make(map[string]*fibLink, len(s.Links))}
	for i := range s.Links {
		l := &s.Links[i]
		fl := &fibLink{link: l, name: l.Name, up: l.Up}
		switch strings.ToUpper(l.OperState) {
		case "DOWN", "LOWERLAYERDOWN", "NOTPRESENT":
			fl.carrier = false
		default:
			fl.carrier = l.Up
		}
		sy := s.Sysctls
		orConf := func(setting string, def int) bool {
			return sy.Int(model.ConfKey("all", setting), def) == 1 || sy.Int(model.ConfKey(l.Name, setting), def) == 1
		}
		fl.ignoreLinkdown4 = orConf("ignore_routes_with_linkdown", 0)
		fl.ignoreLinkdown6 = sy.Int(model.ConfKey6("all", "ignore_routes_with_linkdown"), 0) == 1 ||
			sy.Int(model.ConfKey6(l.Name, "ignore_routes_with_linkdown"), 0) == 1
		fl.rpFilter = sy.RPFilter(l.Name)
		fl.srcValidMark = sy.SrcValidMark(l.Name)
		fl.acceptLocal = sy.AcceptLocal(l.Name)
		fl.sendRedirects = orConf("send_redirects", 1)
		fl.routeLocalnet = orConf("route_localnet", 0)
		f.links[l.Name] = fl
		f.ordered = append(f.ordered, fl)
		if l.Kind == "loopback" || (f.lo == nil && l.Name == "lo") {
			f.lo = fl
		}
	}
	slices.SortStableFunc(f.ordered, func(a, b *fibLink) int { return cmp.Compare(a.link.Index, b.link.Index) })
	for _, fl := range f.ordered {
		for _, a := range fl.link.Addrs {
			p := a.Prefix
			if !p.IsValid() {
				continue
			}
			addr := p.Addr().Unmap()
			if addr.Is4() {
				m := netip.PrefixFrom(addr, p.Bits())
				if a.Peer.IsValid() {
					m = netip.PrefixFrom(a.Peer.Addr().Unmap(), a.Peer.Bits())
				}
				m = m.Masked()
				fl.v4 = append(fl.v4, fibAddr4{local: addr, match: m, scope: parseScope(a.Scope, scopeUniverse), secondary: a.Secondary})
			} else {
				t := v6Type(addr)
				fl.v6 = append(fl.v6, fibAddr6{addr: addr, plen: p.Bits(), typ: t, label: v6Label(addr), link: fl})
			}
		}
	}

	f.fams[0] = fibFamily{fam: inet.V4, tables: map[int]*lpmTrie{}}
	f.fams[1] = fibFamily{fam: inet.V6, tables: map[int]*lpmTrie{}}
	f.buildRules(s)
	return f
}

func (f *FIB) family(fam inet.Family) *fibFamily {
	if fam == inet.V6 {
		return &f.fams[1]
	}
	return &f.fams[0]
}

var defaultRules4 = []struct{ prio, table int }{{0, model.TableLocal}, {32766, model.TableMain}, {32767, model.TableDefault}}

func (f *FIB) buildRules(s *model.State) {
	// The kernel keeps rules sorted by priority, equal priorities in the order they were added,
	// which is the order a dump returns them in.
	idx := make([]int, 0, len(s.Rules))
	for i := range s.Rules {
		idx = append(idx, i)
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(s.Rules[a].Priority, s.Rules[b].Priority) })
	for _, i := range idx {
		r := &s.Rules[i]
		if r.Family != inet.V4 && r.Family != inet.V6 {
			continue
		}
		fam := f.family(r.Family)
		fr := fibRule{r: r, target: -1, table: r.Table, suppress: -1, ifgroup: -1}
		if r.IIF != "" && f.links[r.IIF] == nil {
			fr.detached = true
		}
		if r.OIF != "" && f.links[r.OIF] == nil {
			fr.detached = true
		}
		if fr.table == 0 {
			fr.table = model.TableMain // fib_get_table and fib6_get_table read table 0 as main
		}
		if r.SuppressPrefixLen != nil {
			fr.suppress = *r.SuppressPrefixLen
		}
		if r.SuppressIfGroup != nil {
			fr.ifgroup = *r.SuppressIfGroup
		}
		fr.name = "table " + s.TableName(fr.table) + ": "
		fr.noRoute = fr.name + "no route"
		fr.gotoText = fmt.Sprintf("goto %d", r.Goto)
		fam.rules = append(fam.rules, fr)
	}
	for fi := range f.fams {
		rules := f.fams[fi].rules
		for i := range rules {
			if rules[i].r.Action != model.ActionGoto {
				continue
			}
			rules[i].gotoText += ": no rule with that priority, ignored"
			// The kernel resolves a goto to the first rule with the target priority and
			// refuses backward jumps when the rule is added.
			for j := range rules {
				if rules[j].r.Priority == rules[i].r.Goto && rules[i].r.Goto > rules[i].r.Priority {
					rules[i].target = j
					rules[i].gotoText = fmt.Sprintf("goto %d", rules[i].r.Goto)
					break
				}
			}
		}
	}
	v4 := f.fams[0].rules
	if len(v4) != len(defaultRules4) {
		f.customRules4 = true
	} else {
		for i, d := range defaultRules4 {
			r := v4[i].r
			if r.Priority != d.prio || v4[i].table != d.table || r.Action != model.ActionTable && r.Action != "" ||
				r.Selectors() != "from all" || r.SuppressPrefixLen != nil || r.SuppressIfGroup != nil {
				f.customRules4 = true
			}
		}
	}
}

// Builder indexes routes one at a time, as a dump delivers them, so that a FIB of a full table
// can be built without a State holding every route first (live trace). The FIB it makes
// answers exactly as New's for a state with the same routes in the same order.
type Builder struct {
	f *FIB
	// Routes added by Add that differ only in their destination (a full table's routes via a
	// few gateways) share one model.Route, the template, whose Dst is zero; a Result gets a
	// copy with its own Dst (FIB.modelRoute). Other routes are copied into chunks that never
	// move.
	templates map[routeTemplate]*model.Route
	chunk     []model.Route
	paths     nexthops
	slab      []fibRoute
	// host indexes the IPv4 routes of host scope: only a gateway inside one needs the kernel's
	// gateway resolution replayed (resolveRouteGateways), and such routes are few.
	host      *lpmTrie
	lastFam   inet.Family
	lastTable int
	t         *lpmTrie
}

// routeTemplate is what routes sharing a template have in common: everything but Dst (and
// Nexthops: multipath routes are not shared).
type routeTemplate struct {
	family                 inet.Family
	table, metric          int
	typ, dev, scope, proto string
	tos                    uint8
	gateway, src           netip.Addr
	onlink                 bool
}

// maxTemplates bounds the templates a Builder keeps: a table whose routes differ in more than
// their destinations (a metric per route) gets a copy per route rather than a map as large.
const maxTemplates = 4096

// NewBuilder indexes the links, addresses, rules and sysctls of s, and the routes s holds; Add
// adds more routes after them.
func NewBuilder(s *model.State) *Builder {
	f := newFIB(s)
	b := &Builder{f: f, host: newLPMTrie(inet.V4), lastTable: -1, slab: make([]fibRoute, 0, len(s.Routes))}
	for i := range s.Routes {
		b.add(&s.Routes[i], &s.Routes[i], false)
	}
	return b
}

// builderChunk is the number of routes or indexed routes a Builder stores per allocation.
const builderChunk = 4096

// Add adds a route after those added before, as if it were the next route of the state.
func (b *Builder) Add(r model.Route) {
	if len(r.Nexthops) == 0 && r.Dst.IsValid() && r.Dst == r.Dst.Masked() && !r.Dst.Addr().Is4In6() {
		k := routeTemplate{family: r.Family, table: r.Table, metric: r.Metric, typ: r.Type, dev: r.Dev,
			scope: r.Scope, proto: r.Protocol, tos: r.TOS, gateway: r.Gateway, src: r.Src, onlink: r.OnLink}
		t := b.templates[k]
		if t == nil && len(b.templates) < maxTemplates {
			if b.templates == nil {
				b.templates = map[routeTemplate]*model.Route{}
			}
			t = new(model.Route)
			*t = r
			t.Dst = netip.Prefix{}
			b.templates[k] = t
		}
		if t != nil {
			b.add(&r, t, true)
			return
		}
	}
	if len(b.chunk) == cap(b.chunk) {
		b.chunk = make([]model.Route, 0, builderChunk)
	}
	b.chunk = append(b.chunk, r)
	b.add(&r, &b.chunk[len(b.chunk)-1], false)
}

// add indexes r; the indexed route refers to stored, which is r itself or, when shared, its
// template.
func (b *Builder) add(r, stored *model.Route, shared bool) {
	f := b.f
	if r.Family == inet.V4 && r.Dst.IsValid() && parseScope(r.Scope, defaultRouteScope(r)) >= scopeHost {
		b.host.entry(netip.PrefixFrom(r.Dst.Addr().Unmap(), r.Dst.Bits()).Masked(), true)
	}
	if r.Family != inet.V4 && r.Family != inet.V6 || !r.Dst.IsValid() {
		return
	}
	if r.Family != b.lastFam || r.Table != b.lastTable {
		fam := f.family(r.Family)
		b.t = fam.tables[r.Table]
		if b.t == nil {
			b.t = newLPMTrie(r.Family)
			fam.tables[r.Table] = b.t
		}
		b.lastFam, b.lastTable = r.Family, r.Table
	}
	fr := f.fibRoute(r, &b.paths)
	fr.r, fr.shared = stored, shared
	p := r.Dst
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if r.Family == inet.V4 && r.Table == model.TableLocal && fr.typ == model.RouteLocal && r.Protocol != "kernel" {
		f.customLocal4 = true // fib_has_custom_local_routes
	}
	e := b.t.entry(p.Masked(), true)
	if e.routes == nil {
		// Each prefix's first route sits in a slab: a million routes are then a few
		// allocations, not a million.
		if len(b.slab) == cap(b.slab) {
			b.slab = make([]fibRoute, 0, builderChunk)
		}
		b.slab = append(b.slab, fr)
		n := len(b.slab)
		e.routes = b.slab[n-1 : n : n]
	} else {
		e.routes = append(e.routes, fr)
	}
}

// FIB finishes the index; the builder must not be used afterwards.
func (b *Builder) FIB() *FIB {
	f := b.f
	for fi := range f.fams {
		v6 := f.fams[fi].fam == inet.V6
		for _, t := range f.fams[fi].tables {
			sortEntries(&t.root, v6)
		}
	}
	// Only a gateway inside an IPv4 route of host scope (a local address) needs the kernel's
	// gateway resolution to be replayed.
	viaHost := func(gw netip.Addr) bool {
		var c lpmCursor
		b.host.find(gw, &c)
		return c.next() != nil
	}
	cache := map[gatewayKey]bool{}
	var walk func(table int, n *lpmNode)
	walk = func(table int, n *lpmNode) {
		for i := range n.entries {
			for j := range n.entries[i].routes {
				r := &n.entries[i].routes[j]
				for k := 0; k < r.npaths; k++ {
					if nh := r.nh(k); nh.gw.IsValid() && !nh.onlink && viaHost(nh.gw) {
						f.resolveRouteGateways(cache, table, r)
						break
					}
				}
			}
		}
		for _, c := range n.children {
			walk(table, c)
		}
	}
	for id, t := range f.fams[0].tables {
		walk(id, &t.root)
	}
	b.f, b.chunk, b.slab, b.host, b.t, b.templates, b.paths = nil, nil, nil, nil, nil, nil, nexthops{}
	return f
}

// fibRoute makes the indexed form of a route; its single path comes from paths.
func (f *FIB) fibRoute(r *model.Route, paths *nexthops) fibRoute {
	link := func(name string) *fibLink {
		if name == "" {
			return nil
		}
		return f.links[name]
	}
	fr := fibRoute{r: r, dst: r.Dst, typ: r.Type, tos: r.TOS, metric: r.Metric}
	if fr.typ == "" {
		fr.typ = model.RouteUnicast
	}
	fr.reject = isErrorType(fr.typ)
	fr.scope = parseScope(r.Scope, defaultRouteScope(r))
	if len(r.Nexthops) > 0 {
		fr.multi = make([]fibNexthop, len(r.Nexthops))
		for j, nh := range r.Nexthops {
			fr.multi[j] = fibNexthop{gw: nh.Gateway.Unmap(), link: link(nh.Dev), dev: nh.Dev, index: j, onlink: nh.OnLink || r.OnLink}
		}
		fr.npaths = len(fr.multi)
	} else if r.Dev != "" || r.Gateway.IsValid() {
		fr.one = paths.get(fibNexthop{gw: r.Gateway.Unmap(), link: link(r.Dev), dev: r.Dev, index: -1, onlink: r.OnLink}, r.Table, fr.scope)
		fr.npaths = 1
	} else if r.Family == inet.V6 && f.lo != nil {
		// IPv6 reject routes hang off the loopback device (ip6_route_info_create).
		fr.one = paths.get(fibNexthop{link: f.lo, dev: f.lo.name, index: -1}, r.Table, fr.scope)
		fr.npaths = 1
	}
	return fr
}

// nexthops hands out single paths, one per distinct path. A path is shared only by routes of
// one table and scope: resolveRouteGateways decides its use of the gateway from those.
type nexthops struct {
	shared map[nexthopKey]*fibNexthop
	slab   []fibNexthop
}

type nexthopKey struct {
	gw           netip.Addr
	dev          string
	link         *fibLink
	onlink       bool
	table, scope int
}

// maxSharedNexthops bounds the paths shared: beyond, each route gets its own.
const maxSharedNexthops = 1 << 16

func (p *nexthops) get(n fibNexthop, table, scope int) *fibNexthop {
	k := nexthopKey{gw: n.gw, dev: n.dev, link: n.link, onlink: n.onlink, table: table, scope: scope}
	if s := p.shared[k]; s != nil {
		return s
	}
	if len(p.slab) == cap(p.slab) {
		p.slab = make([]fibNexthop, 0, 1024)
	}
	p.slab = append(p.slab, n)
	s := &p.slab[len(p.slab)-1]
	if len(p.shared) < maxSharedNexthops {
		if p.shared == nil {
			p.shared = map[nexthopKey]*fibNexthop{}
		}
		p.shared[k] = s
	}
	return s
}

type gatewayKey struct {
	table, scope int
	gw           netip.Addr
	dev          string
}

// resolveRouteGateways finds the IPv4 gateways the kernel does not use. fib_check_nh_v4_gw resolves
// a gateway when its route is added: in the route's table (unless main), else by a full lookup,
// bound to the nexthop's device, among routes of link scope or narrower; the scope of the route
// found becomes the nexthop's. Only a host-scope answer (a local address) changes anything. The
// kernel does this once, when the route is added; the model does it on the current tables.
func (f *FIB) resolveRouteGateways(cache map[gatewayKey]bool, table int, r *fibRoute) {
	for j := 0; j < r.npaths; j++ {
		n := r.nh(j)
		if !n.gw.IsValid() || n.onlink {
			continue
		}
		k := gatewayKey{table: table, scope: max(r.scope+1, scopeLink), gw: n.gw, dev: n.dev}
		direct, ok := cache[k]
		if !ok {
			direct = f.gatewayScope(k) >= scopeHost
			cache[k] = direct
		}
		n.direct = direct
	}
}

func (f *FIB) gatewayScope(k gatewayKey) int {
	q := query{fam: inet.V4, dst: k.gw, src: netip.IPv4Unspecified(), iif: f.loName(), oif: k.dev, scope: k.scope, ignoreLS: true}
	q.oifLink = f.links[k.dev]
	var tr tableResult
	if t := f.fams[0].tables[k.table]; t != nil && k.table != model.TableMain {
		tr = f.tableLookup4(t, &q)
	}
	if tr.route == nil || isErrorType(tr.route.typ) {
		w := f.walkRules(&q)
		tr = tableResult{route: w.route}
	}
	if tr.route == nil || tr.route.typ != model.RouteUnicast && tr.route.typ != model.RouteLocal {
		return scopeLink // the kernel would have refused the route
	}
	return tr.route.scope
}

// sortEntries orders the routes of each prefix as the kernel tries them. IPv4 aliases are
// sorted by TOS, highest first, then priority (fib_find_alias); IPv6 routes by metric
// (fib6_add_rt2node). Equal keys keep the order of the state, the kernel's dump order.
func sortEntries(n *lpmNode, v6 bool) {
	for i := range n.entries {
		e := &n.entries[i]
		if len(e.routes) < 2 {
			continue
		}
		slices.SortStableFunc(e.routes, func(a, b fibRoute) int {
			if !v6 && a.tos != b.tos {
				return cmp.Compare(b.tos, a.tos)
			}
			return cmp.Compare(uint32(a.metric), uint32(b.metric))
		})
	}
	for _, c := range n.children {
		sortEntries(c, v6)
	}
}

func defaultRouteScope(r *model.Route) int {
	switch r.Type {
	case model.RouteLocal:
		return scopeHost
	case model.RouteBroadcast:
		return scopeLink
	case "", model.RouteUnicast:
		if r.Gateway.IsValid() {
			return scopeUniverse
		}
		for _, nh := range r.Nexthops {
			if nh.Gateway.IsValid() {
				return scopeUniverse
			}
		}
		if len(r.Nexthops) == 0 {
			return scopeLink
		}
	}
	return scopeUniverse
}

// query is a normalised flow as the kernel's flowi holds it.
type query struct {
	fam       inet.Family
	src, dst  netip.Addr
	hasSrc    bool
	iif       string // "lo" for output lookups
	oif       string
	oifLink   *fibLink
	mark      uint32
	proto     int
	sport     uint16
	dport     uint16
	tos       uint8 // IPv4: & 0x1c; IPv6: & 0xfc
	scope     int   // IPv4 flowi4_scope: routes of a wider scope are skipped
	uid       uint32
	input     bool
	strict    bool // IPv6 RT6_LOOKUP_F_IFACE: only routes through oif qualify
	v6oif     string
	ignoreLS  bool // FIB_LOOKUP_IGNORE_LINKSTATE
	wantSteps bool
}

// walkResult is what the rule walk found.
type walkResult struct {
	verdict string
	rule    *fibRule
	table   int
	entry   *lpmEntry
	route   *fibRoute
	nh      int // index into route.nhs
	steps   []Step
}

// walk runs the policy rules for q and records in res the steps and the deciding rule. When
// the walk ends without a route or at a reject route, res gets the verdict and walk reports
// that the lookup stops there.
func (f *FIB) walk(q *query, res *Result) (walkResult, bool) {
	w := f.walkRules(q)
	res.Steps = w.steps
	if w.rule != nil {
		res.Rule = w.rule.r
	}
	if w.route != nil && !w.route.reject {
		return w, false
	}
	res.Verdict = w.verdict
	if w.route != nil {
		res.Route, res.Table = w.route.model(), w.table
		if w.route.typ == model.RouteNAT || w.route.typ == "xresolve" {
			res.Verdict = VerdictBlackhole
		}
	}
	return w, true
}

func (f *FIB) loName() string {
	if f.lo != nil {
		return f.lo.name
	}
	return "lo"
}

// Lookup answers a route lookup the way the kernel does for the packet: an input lookup
// (ip_route_input_slow, ip6_route_input) when IIF is set, an output lookup
// (ip_route_output_key_hash, ip6_route_output) when it is not. The source checks of the input
// path (rp_filter, martians) are left to RPFCheck. It is what `ip route get` answers for the same
// arguments, except that `ip route get` looks up IPv4 flows without ipproto as UDP and received
// IPv6 packets as uid -1 unless it is given one.
func (f *FIB) Lookup(fl Flow) Result { return f.lookup(fl, true) }

// Resolve answers like Lookup but records no Steps: for looking up many flows, where it is
// several times faster than Lookup, whose steps copy every rule considered.
func (f *FIB) Resolve(fl Flow) Result { return f.lookup(fl, false) }

func (f *FIB) lookup(fl Flow, steps bool) Result {
	q, res, ok := f.normalize(fl)
	if !ok {
		return res
	}
	q.wantSteps = steps
	if q.fam == inet.V6 {
		return f.lookup6(&q)
	}
	return f.lookup4(&q)
}

func (f *FIB) normalize(fl Flow) (query, Result, bool) {
	q := query{
		fam:       fl.Family,
		src:       fl.Src.Unmap(),
		dst:       fl.Dst.Unmap(),
		iif:       fl.IIF,
		oif:       fl.OIF,
		mark:      fl.Mark,
		proto:     fl.Proto,
		sport:     fl.SPort,
		dport:     fl.DPort,
		uid:       fl.UID,
		input:     fl.IIF != "",
		wantSteps: true,
	}
	if !q.dst.IsValid() {
		return q, Result{Verdict: VerdictInvalid, Nexthop: -1, Note: "the flow has no destination address"}, false
	}
	if q.fam == 0 {
		q.fam = inet.FamilyOf(q.dst)
	}
	if inet.FamilyOf(q.dst) != q.fam || q.src.IsValid() && inet.FamilyOf(q.src) != q.fam {
		return q, Result{Verdict: VerdictInvalid, Nexthop: -1, Note: fmt.Sprintf("addresses %v and %v are not both %s", q.src, q.dst, q.fam)}, false
	}
	if !q.src.IsValid() {
		if q.fam == inet.V4 {
			q.src = netip.IPv4Unspecified()
		} else {
			q.src = netip.IPv6Unspecified()
		}
	}
	q.hasSrc = !q.src.IsUnspecified()
	if q.fam == inet.V4 {
		q.tos = fl.TOS & 0x1c
	} else {
		q.tos = fl.TOS & 0xfc
	}
	if q.input {
		if f.links[q.iif] == nil {
			return q, Result{Verdict: VerdictInvalid, Nexthop: -1, Note: fmt.Sprintf("no device %q to receive on (ENODEV)", q.iif)}, false
		}
		q.oif = "" // an input lookup has no output device (flowi_oif = 0)
		q.uid = 0
		if q.fam == inet.V6 {
			// ip6_route_input always sets RT6_LOOKUP_F_HAS_SADDR.
			q.hasSrc = true
		}
	} else {
		q.iif = f.loName()
		if q.oif != "" {
			q.oifLink = f.links[q.oif]
			if q.oifLink == nil {
				return q, Result{Verdict: VerdictInvalid, Nexthop: -1, Note: fmt.Sprintf("no device %q to bind the lookup to (ENODEV)", q.oif)}, false
			}
		}
	}
	return q, Result{}, true
}

// ruleMatch is fib_rule_match plus fib4_rule_match / fib6_rule_match. It returns "" when the
// rule matches, else the outcome naming the selector that failed.
func (q *query) ruleMatch(fr *fibRule) string {
	why := q.selectorMismatch(fr)
	if fr.r.Not {
		if why == "" {
			return "no match (not: selectors match)"
		}
		return ""
	}
	return why
}

func (q *query) selectorMismatch(fr *fibRule) string {
	r := fr.r
	if fr.detached {
		return "no match (device not present)"
	}
	if r.IIF != "" && r.IIF != q.iif {
		return "no match (iif)"
	}
	if r.OIF != "" && r.OIF != q.oif {
		return "no match (oif)"
	}
	if r.Mark != nil && (r.Mark.Value^q.mark)&r.Mark.Mask != 0 {
		return "no match (fwmark)"
	}
	if r.UIDRange != nil && (q.uid < r.UIDRange.Start || q.uid > r.UIDRange.End) {
		return "no match (uidrange)"
	}
	if q.fam == inet.V4 {
		if r.Src.IsValid() && r.Src.Bits() > 0 && !r.Src.Contains(q.src) {
			return "no match (from)"
		}
		if r.Dst.IsValid() && r.Dst.Bits() > 0 && !r.Dst.Contains(q.dst) {
			return "no match (to)"
		}
		// fib4_rule_match: the rule's TOS against the flow's DSCP masked to the legacy TOS bits.
		if r.TOS != 0 && r.TOS&0xfc != q.tos {
			return "no match (tos)"
		}
	} else {
		if r.Dst.IsValid() && r.Dst.Bits() > 0 && !r.Dst.Contains(q.dst) {
			return "no match (to)"
		}
		// fib6_rule_match: a source selector needs a source (RT6_LOOKUP_F_HAS_SADDR).
		if r.Src.IsValid() && r.Src.Bits() > 0 && (!q.hasSrc || !r.Src.Contains(q.src)) {
			return "no match (from)"
		}
		if r.TOS != 0 && r.TOS&0xfc != q.tos {
			return "no match (tos)"
		}
	}
	if r.IPProto != 0 && r.IPProto != q.proto {
		return "no match (ipproto)"
	}
	if r.SPort != nil && (r.SPort.Start != 0 || r.SPort.End != 0) && !r.SPort.Contains(q.sport) {
		return "no match (sport)"
	}
	if r.DPort != nil && (r.DPort.Start != 0 || r.DPort.End != 0) && !r.DPort.Contains(q.dport) {
		return "no match (dport)"
	}
	return ""
}

// walkRules is fib_rules_lookup: rules in order, goto and nop, table lookups that return
// EAGAIN (no route, throw) or are suppressed continuing with the next rule.
func (f *FIB) walkRules(q *query) walkResult {
	fam := f.family(q.fam)
	var w walkResult
	if q.wantSteps {
		w.steps = make([]Step, 0, len(fam.rules))
	}
	for i := 0; i < len(fam.rules); i++ {
	jumped:
		fr := &fam.rules[i]
		if why := q.ruleMatch(fr); why != "" {
			w.step(q, fr, false, why)
			continue
		}
		switch fr.r.Action {
		case model.ActionGoto:
			w.step(q, fr, true, fr.gotoText)
			if fr.target < 0 {
				continue
			}
			i = fr.target
			goto jumped
		case model.ActionNop:
			w.step(q, fr, true, "nop")
			continue
		case model.ActionBlackhole, model.ActionUnreachable, model.ActionProhibit:
			w.step(q, fr, true, fr.r.Action)
			w.verdict, w.rule = fr.r.Action, fr
			return w
		case model.ActionTable, "":
		default:
			// Unknown actions are refused as blackhole by fib4_rule_action / fib6_rule_action.
			w.step(q, fr, true, fr.r.Action+" (unknown action: blackhole)")
			w.verdict, w.rule = VerdictBlackhole, fr
			return w
		}
		t := fam.tables[fr.table]
		var tr tableResult
		if t != nil {
			if q.fam == inet.V6 {
				tr = f.tableLookup6(t, q)
			} else {
				tr = f.tableLookup4(t, q)
			}
		}
		if tr.route == nil {
			w.step(q, fr, true, fr.noRoute)
			continue
		}
		switch tr.route.typ {
		case model.RouteThrow:
			if q.wantSteps {
				w.step(q, fr, true, fr.name+"throw "+tr.entry.prefix().String())
			}
			continue
		case model.RouteBlackhole, model.RouteUnreachable, model.RouteProhibit:
			if q.wantSteps {
				w.step(q, fr, true, fr.name+tr.route.typ+" "+tr.entry.prefix().String())
			}
			w.verdict = tr.route.typ
		case model.RouteNAT, "xresolve":
			if q.wantSteps {
				w.step(q, fr, true, fr.name+tr.route.typ+" "+tr.entry.prefix().String()+" (refused: blackhole)")
			}
			w.verdict = VerdictBlackhole
		default:
			// Only a successful lookup can be suppressed (fib_rules_lookup calls ->suppress
			// when the action returned 0).
			if plen := int(tr.entry.bits); plen <= fr.suppress {
				if q.wantSteps {
					w.step(q, fr, true, fr.name+tr.entry.prefix().String()+" suppressed (prefix length "+
						strconv.Itoa(plen)+" <= "+strconv.Itoa(fr.suppress)+")")
				}
				continue
			}
			if fr.ifgroup == 0 && tr.route.npaths > 0 && tr.route.nh(0).link != nil {
				if q.wantSteps {
					w.step(q, fr, true, fr.name+tr.entry.prefix().String()+" suppressed (device "+tr.route.nh(0).dev+" is in interface group 0)")
				}
				continue
			}
			w.verdict = tr.route.typ
			if q.wantSteps {
				w.step(q, fr, true, fr.name+"chose "+describeRoute(tr.entry, tr.route, tr.nh))
			}
		}
		w.rule, w.table, w.entry, w.route, w.nh = fr, fr.table, tr.entry, tr.route, tr.nh
		return w
	}
	w.verdict = VerdictNoRoute
	return w
}

func (w *walkResult) step(q *query, fr *fibRule, matched bool, outcome string) {
	if q.wantSteps {
		w.steps = append(w.steps, Step{Rule: *fr.r, Matched: matched, Outcome: outcome})
	}
}

func describeRoute(e *lpmEntry, r *fibRoute, nh int) string {
	var b strings.Builder
	if r.typ != model.RouteUnicast {
		b.WriteString(r.typ + " ")
	}
	b.WriteString(e.prefix().String())
	if nh >= 0 && nh < r.npaths {
		if p := r.nh(nh); p.gw.IsValid() {
			b.WriteString(" via " + p.gw.String())
		}
		if p := r.nh(nh); p.dev != "" {
			b.WriteString(" dev " + p.dev)
		}
	}
	if r.metric != 0 {
		b.WriteString(" metric " + strconv.Itoa(r.metric))
	}
	return b.String()
}

type tableResult struct {
	entry *lpmEntry
	route *fibRoute
	nh    int
}

func isErrorType(t string) bool {
	switch t {
	case model.RouteBlackhole, model.RouteUnreachable, model.RouteProhibit, model.RouteThrow, model.RouteNAT, "xresolve":
		return true
	}
	return false
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
	for e := c.next(); e != nil; e = c.next() {
		for j := range e.routes {
			r := &e.routes[j]
			if r.tos != 0 && r.tos != q.tos || r.scope < q.scope {
				continue
			}
			if r.reject {
				return tableResult{entry: e, route: r, nh: -1}
			}
			for i := 0; i < r.npaths; i++ {
				if q.goodNexthop4(r, r.nh(i)) {
					return tableResult{entry: e, route: r, nh: i}
				}
			}
		}
	}
	return tableResult{}
}

func (f *FIB) lookup4(q *query) Result {
	res := Result{Nexthop: -1}
	if !q.input {
		// ip_route_output_key_hash_rcu: checks of the source and of the bound device.
		if q.hasSrc {
			if q.src.IsMulticast() || q.src == ipv4Broadcast || isZeronet4(q.src) {
				res.Verdict = VerdictInvalid
				res.Note = fmt.Sprintf("source %s cannot be used for sending (EINVAL)", q.src)
				return res
			}
			if !f.isLocal4(q.src) {
				res.Verdict = VerdictNoRoute
				res.Note = fmt.Sprintf("source %s is not an address of this host: the kernel refuses output lookups from it (ENETUNREACH)", q.src)
				return res
			}
		}
		if q.oifLink != nil && !q.oifLink.up {
			res.Verdict = VerdictNoRoute
			res.Note = fmt.Sprintf("bound device %s is down (ENETUNREACH)", q.oif)
			return res
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
			return res
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
			return res
		}
	} else if q.dst == ipv4Broadcast {
		res.Verdict, res.OIF = VerdictBroadcast, f.loName()
		res.Note = "limited broadcast: delivered locally without a route lookup"
		return res
	}

	w, stopped := f.walk(q, &res)
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
		return res
	}

	r := w.route
	res.Route, res.Table, res.Verdict = r.model(), w.table, r.typ
	nh := w.nh
	switch {
	case r.typ == model.RouteLocal:
		res.OIF = f.loName()
		if !q.input {
			res.PrefSrc = r.prefSrc()
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
	return res
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
		total += max(r.r.Nexthops[c].Weight, 1)
	}
	x := int(h.Sum32() % uint32(total))
	for _, c := range cands {
		x -= max(r.r.Nexthops[c].Weight, 1)
		if x < 0 {
			return c
		}
	}
	return cands[0]
}

// prefSrc4 is fib_result_prefsrc: the route's prefsrc, else inet_select_addr on the nexthop's
// device, preferring an address on the gateway's subnet, within the route's scope.
func (f *FIB) prefSrc4(r *fibRoute, nh int) netip.Addr {
	if ps := r.prefSrc(); ps.IsValid() {
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

// PickNexthop returns res as it would be had the kernel chosen path nh of its multipath route:
// for comparing with the kernel, which hashes flows with a per-boot random seed.
func (f *FIB) PickNexthop(fl Flow, res Result, nh int) (Result, error) {
	if res.Route == nil || !slices.Contains(res.Candidates, nh) {
		return res, fmt.Errorf("nexthop %d is not a candidate of this lookup (candidates %v)", nh, res.Candidates)
	}
	fr := f.routeOf(res.Route)
	if fr == nil || nh < 0 || nh >= fr.npaths {
		return res, fmt.Errorf("route %s is not in this FIB's state", res.Route.Args(model.NumericTable))
	}
	res.Nexthop, res.Gateway, res.OIF = nh, fr.nh(nh).gateway(), fr.nh(nh).dev
	if res.Verdict == VerdictBroadcast {
		res.Gateway = netip.Addr{} // a broadcast is sent on the link, not to the gateway
	}
	if fl.IIF == "" {
		if fr.r.Family == inet.V6 {
			res.PrefSrc = f.prefSrc6(fr, nh, fl.Dst)
		} else {
			res.PrefSrc = f.prefSrc4(fr, nh)
		}
		res.Src = res.PrefSrc
		if fl.Src.IsValid() && !fl.Src.IsUnspecified() {
			res.Src = fl.Src.Unmap()
		}
	}
	return res, nil
}

// routeOf finds the indexed form of a route of the state.
func (f *FIB) routeOf(r *model.Route) *fibRoute {
	t := f.family(r.Family).tables[r.Table]
	if t == nil {
		return nil
	}
	p := r.Dst
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	e := t.entry(p.Masked(), false)
	if e == nil {
		return nil
	}
	for i := range e.routes {
		if fr := &e.routes[i]; fr.r == r || fr.shared && fr.sameAs(r) {
			return fr
		}
	}
	return nil
}

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
			rev.Route = w.route.model()
		}
		if rpf != 0 {
			return false, rev, fmt.Sprintf("rp_filter %s: no route back to %s (%s)", mode, q.src, w.verdict)
		}
		return true, rev, fmt.Sprintf("rp_filter off: no route back to %s, accepted", q.src)
	}
	r := w.route
	rev.Route = r.model()
	rev.Verdict = r.typ
	if w.nh >= 0 {
		rev.OIF, rev.Gateway, rev.Nexthop = r.nh(w.nh).dev, r.nh(w.nh).gateway(), r.nh(w.nh).index
	}
	if r.typ != model.RouteUnicast && (r.typ != model.RouteLocal || !dev.acceptLocal) {
		return false, rev, fmt.Sprintf("martian source %s: the route back to it is %s %s in table %s", q.src, r.typ, w.entry.prefix(), f.state.TableName(w.table))
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

// ---- IPv6 ----

// tableLookup6 is fib6_table_lookup: rt6_select on the most specific node and fib6_backtrack to
// less specific ones while no route there qualifies.
func (f *FIB) tableLookup6(t *lpmTrie, q *query) tableResult {
	var c lpmCursor
	t.find(q.dst, &c)
	for e := c.next(); e != nil; e = c.next() {
		if r, nh := q.select6(e); r != nil {
			return tableResult{entry: e, route: r, nh: nh}
		}
	}
	return tableResult{}
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
func (q *query) select6(e *lpmEntry) (*fibRoute, int) {
	if len(e.routes) == 0 {
		return nil, -1
	}
	metric := e.routes[0].metric
	best, bestNH, mpri := (*fibRoute)(nil), -1, -1
	cont := -1
	for i := range e.routes {
		r := &e.routes[i]
		if r.metric != metric {
			cont = i
			break
		}
		for j := 0; j < r.npaths; j++ {
			if m := q.score6(r, r.nh(j)); m > mpri {
				best, bestNH, mpri = r, j, m
			}
		}
	}
	if best != nil || cont < 0 {
		return best, bestNH
	}
	for i := cont; i < len(e.routes); i++ {
		r := &e.routes[i]
		for j := 0; j < r.npaths; j++ {
			if m := q.score6(r, r.nh(j)); m > mpri {
				best, bestNH, mpri = r, j, m
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
	res.Route, res.Table, res.Verdict = r.model(), w.table, r.typ
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
	if ps := r.prefSrc(); ps.IsValid() {
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

// MasqueradeAddr picks MASQUERADE's source the way the kernel does: IPv4 calls
// inet_select_addr(out, nexthop, RT_SCOPE_UNIVERSE) (nf_nat_masquerade_ipv4), the first primary
// global address of the out interface in the nexthop's subnet, else its first one; IPv6 calls
// ipv6_dev_get_saddr(out, daddr) (nf_nat_masquerade_ipv6).
func (f *FIB) MasqueradeAddr(oif string, nexthop, dst netip.Addr) netip.Addr {
	l := f.links[oif]
	if l == nil {
		return netip.Addr{}
	}
	if dst.Is4() {
		return f.selectAddr4(l, nexthop, scopeUniverse)
	}
	return f.selectAddr6(l, dst)
}

// ExplainDecision is Explain without the route, for a step that shows the route apart.
func (r Result) ExplainDecision(tableName func(int) string) string {
	if r.Route == nil {
		return r.Explain(tableName)
	}
	noRoute := r
	noRoute.Route = nil
	return noRoute.Explain(tableName)
}

// Explain explains a FIB decision in one line: rule, table, route, interface; tableName names
// the tables (State.TableName).
func (r Result) Explain(tableName func(int) string) string {
	var b strings.Builder
	if r.Rule != nil {
		fmt.Fprintf(&b, "rule %d (%s %s) -> table %s", r.Rule.Priority, r.Rule.Selectors(), r.Rule.ActionString(tableName), tableName(r.Table))
	} else if r.Table != 0 {
		fmt.Fprintf(&b, "table %s", tableName(r.Table))
	}
	if r.Route != nil {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(r.Route.Args(tableName))
	}
	if b.Len() > 0 {
		b.WriteString(" => ")
	}
	switch r.Verdict {
	case model.RouteUnicast:
		b.WriteString("out " + r.OIF)
		if r.Gateway.IsValid() {
			b.WriteString(" via " + r.Gateway.String())
		}
		if r.Src.IsValid() {
			b.WriteString(" src " + r.Src.String())
		}
	case model.RouteLocal:
		b.WriteString("local delivery")
	case "":
		b.WriteString("no route")
	default:
		b.WriteString(r.Verdict)
	}
	return b.String()
}
