// Package fib answers routing questions from a model.State the way the kernel's FIB does: policy
// rules, routing tables, source address selection and reverse-path filtering.
package fib

import (
	"cmp"
	"fmt"
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

	// The routes, as the tables' prefixes refer to them (fibValue): each route's class, the
	// routes of prefixes that have several, and where the routes themselves are.
	classes []fibRoute
	multi   []fibValue
	routes0 []model.Route   // the state's routes when the FIB was made: route refs 1..len
	chunks  [][]model.Route // routes a Builder added that share no template: refs after those

	lazy *lazyTables // tables a TableSource answers (lazy.go)

	// top4 are the IPv4 tables with a top index (lpmTrie.index): large enough that a lookup
	// prefetches its node in each before the rule walk.
	top4 []*lpmTrie
}

// fibValue is what a table holds for a prefix, 8 bytes without pointers, so that a lookup
// reads the prefix's routes from the trie node's values and a class most lookups share
// (BENCHMARKS.md, "Simulated lookups": every pointer followed is a cache miss at a full
// table). A prefix of one route holds class<<32 | ref: class indexes FIB.classes, ref is 0
// for a route that is its class's template with the prefix as destination (Builder.Add) and
// otherwise 1 + the route's index in the FIB's store (FIB.route). A prefix of several routes
// holds multiBit | n<<32 | start: FIB.multi[start:start+n] are its routes' values in the
// order the kernel tries them.
type fibValue = uint64

const multiBit fibValue = 1 << 63

func valueOf(class, ref uint32) fibValue { return fibValue(class)<<32 | fibValue(ref) }

// routesOf returns the values of the routes of a prefix with several (v&multiBit set).
func (f *FIB) routesOf(v fibValue) []fibValue {
	start, n := uint32(v), uint32(v>>32)&(1<<31-1)
	return f.multi[start : start+n]
}

// values returns the values of the routes of a prefix, however many; one holds a single one.
func (f *FIB) values(v fibValue, one *[1]fibValue) []fibValue {
	if v&multiBit != 0 {
		return f.routesOf(v)
	}
	one[0] = v
	return one[:]
}

// class returns the class of a route's value.
func (f *FIB) class(v fibValue) *fibRoute { return &f.classes[v>>32] }

// route returns the route a ref names (not 0).
func (f *FIB) route(ref uint32) *model.Route {
	i := int(ref) - 1
	if i < len(f.routes0) {
		return &f.routes0[i]
	}
	i -= len(f.routes0)
	return &f.chunks[i/builderChunk][i%builderChunk]
}

// modelRoute returns the route of a value's class and ref as the state has it; a template's
// copy is made here with the prefix as its destination.
func (f *FIB) modelRoute(r *fibRoute, ref uint32, p netip.Prefix) *model.Route {
	if ref != 0 {
		return f.route(ref)
	}
	if r.own {
		return r.r
	}
	m := *r.r
	m.Dst = p
	return &m
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

// fibRoute is a class of routes as lookups read them: routes that differ only in their
// destination (a full table's routes via a few gateways) share one, which holds everything a
// lookup needs but the route's own pointer, so that the common lookup reads the trie and one
// class, which stays in the cache. A multipath route has a class of its own.
type fibRoute struct {
	tos    uint8
	reject bool // blackhole, unreachable, prohibit, throw: the lookup answers an error
	scope  int
	npaths int
	one    *fibNexthop  // the path of a single-path route; nil when it has none
	multi  []fibNexthop // the paths of a multipath route
	metric int
	typ    string
	// prefSrc is the routes' prefsrc, kept here so that a lookup need not read the route.
	prefSrc netip.Addr
	fam     inet.Family
	table   int
	// r is one route of the class; its fields but Dst are every route's of the class.
	r *model.Route
	// own: r is the route itself, not a class's template (a TableSource's route, lazy.go).
	own bool
}

// noNexthop is what nh returns for a route without a path, as the zero path it once held
// inline. Nothing writes to it: only paths below npaths are resolved.
var noNexthop fibNexthop

// sameAs reports whether m is the route of the class with destination p that is its template.
func (r *fibRoute) sameAs(m *model.Route, p netip.Prefix) bool {
	t := r.r
	return len(m.Nexthops) == 0 && len(t.Nexthops) == 0 && m.Dst == p && m.Family == t.Family && m.Table == t.Table &&
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
	weight int  // a multipath route's path's weight (at least 1)
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

// Builder indexes routes one at a time, as a dump delivers them, so that a FIB of a full table
// can be built without a State holding every route first (live trace). The FIB it makes
// answers exactly as New's for a state with the same routes in the same order.
type Builder struct {
	f *FIB
	// classes finds the class of a route that has no multipath: routes added by Add that
	// differ only in their destination are not stored, the class's route is their template
	// (a Result gets a copy with its own Dst, FIB.modelRoute). Other routes are copied into
	// chunks that never move.
	classes map[routeTemplate]uint32
	paths   nexthops
	// pending holds the routes of prefixes with several, in the order they came; FIB sorts
	// them into FIB.multi.
	pending [][]fibValue
	// host indexes the IPv4 routes of host scope: only a gateway inside one needs the kernel's
	// gateway resolution replayed (resolveRouteGateways), and such routes are few.
	host      *lpmTrie
	lastFam   inet.Family
	lastTable int
	t         *lpmTrie
}

// routeTemplate is what routes of a class have in common: everything but Dst (and Nexthops:
// multipath routes have a class each).
type routeTemplate struct {
	family                 inet.Family
	table, metric          int
	typ, dev, scope, proto string
	tos                    uint8
	gateway, src           netip.Addr
	onlink                 bool
}

func templateOf(r *model.Route) routeTemplate {
	return routeTemplate{family: r.Family, table: r.Table, metric: r.Metric, typ: r.Type, dev: r.Dev,
		scope: r.Scope, proto: r.Protocol, tos: r.TOS, gateway: r.Gateway, src: r.Src, onlink: r.OnLink}
}

// maxTemplates bounds the classes a Builder shares: a table whose routes differ in more than
// their destinations (a metric per route) gets a class per route rather than a map as large.
const maxTemplates = 4096

// NewBuilder indexes the links, addresses, rules and sysctls of s, and the routes s holds; Add
// adds more routes after them.
func NewBuilder(s *model.State) *Builder {
	f := newFIB(s)
	f.routes0 = s.Routes
	b := &Builder{f: f, host: newLPMTrie(inet.V4), lastTable: -1}
	for i := range s.Routes {
		if r := &s.Routes[i]; b.indexed(r) {
			b.add(r, b.classOf(r), uint32(i+1))
		}
	}
	return b
}

// builderChunk is the number of routes a Builder stores per allocation.
const builderChunk = 4096

// Add adds a route after those added before, as if it were the next route of the state.
func (b *Builder) Add(r model.Route) {
	if !b.indexed(&r) {
		return
	}
	if len(r.Nexthops) == 0 && r.Dst == r.Dst.Masked() && !r.Dst.Addr().Is4In6() {
		if c, ok := b.templateClass(&r); ok {
			b.add(&r, c, 0)
			return
		}
	}
	f := b.f
	if n := len(f.chunks); n == 0 || len(f.chunks[n-1]) == builderChunk {
		f.chunks = append(f.chunks, make([]model.Route, 0, builderChunk))
	}
	n := len(f.chunks) - 1
	f.chunks[n] = append(f.chunks[n], r)
	stored := &f.chunks[n][len(f.chunks[n])-1]
	b.add(stored, b.classOf(stored), uint32(len(f.routes0)+n*builderChunk+len(f.chunks[n])))
}

// indexed reports whether the FIB indexes r, and notes it when it is a route of host scope.
func (b *Builder) indexed(r *model.Route) bool {
	if r.Family == inet.V4 && r.Dst.IsValid() && parseScope(r.Scope, defaultRouteScope(r)) >= scopeHost {
		b.host.value(netip.PrefixFrom(r.Dst.Addr().Unmap(), r.Dst.Bits()).Masked(), true)
	}
	return (r.Family == inet.V4 || r.Family == inet.V6) && r.Dst.IsValid()
}

// classOf returns the class of r, which stays where it is, making it when there is none.
func (b *Builder) classOf(r *model.Route) uint32 {
	if len(r.Nexthops) > 0 {
		return b.newClass(r)
	}
	k := templateOf(r)
	if c, ok := b.classes[k]; ok {
		return c
	}
	c := b.newClass(r)
	if len(b.classes) < maxTemplates {
		if b.classes == nil {
			b.classes = map[routeTemplate]uint32{}
		}
		b.classes[k] = c
	}
	return c
}

// templateClass returns the class whose template r is, a route without multipath that
// need not be stored (its class keeps a copy as the template when it makes it); ok is false
// when the classes are full and r has none.
func (b *Builder) templateClass(r *model.Route) (uint32, bool) {
	k := templateOf(r)
	if c, ok := b.classes[k]; ok {
		return c, true
	}
	if len(b.classes) >= maxTemplates {
		return 0, false
	}
	t := new(model.Route)
	*t = *r
	t.Dst = netip.Prefix{}
	return b.classOf(t), true
}

func (b *Builder) newClass(r *model.Route) uint32 {
	f := b.f
	f.classes = append(f.classes, f.fibRoute(r, &b.paths))
	return uint32(len(f.classes) - 1)
}

// add indexes r as a route of class c stored at ref (0: the class's template).
func (b *Builder) add(r *model.Route, c, ref uint32) {
	f := b.f
	if r.Family != b.lastFam || r.Table != b.lastTable {
		fam := f.family(r.Family)
		b.t = fam.tables[r.Table]
		if b.t == nil {
			b.t = newLPMTrie(r.Family)
			fam.tables[r.Table] = b.t
		}
		b.lastFam, b.lastTable = r.Family, r.Table
	}
	p := r.Dst
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if r.Family == inet.V4 && r.Table == model.TableLocal && f.classes[c].typ == model.RouteLocal && r.Protocol != "kernel" {
		f.customLocal4 = true // fib_has_custom_local_routes
	}
	v := valueOf(c, ref)
	slot, fresh := b.t.value(p.Masked(), true)
	switch {
	case fresh:
		*slot = v
	case *slot&multiBit == 0:
		b.pending = append(b.pending, []fibValue{*slot, v})
		*slot = multiBit | fibValue(len(b.pending)-1)
	default:
		i := uint32(*slot)
		b.pending[i] = append(b.pending[i], v)
	}
}

// FIB finishes the index; the builder must not be used afterwards.
func (b *Builder) FIB() *FIB {
	f := b.f
	// The routes of each prefix in the order the kernel tries them: IPv4 aliases by TOS,
	// highest first, then priority (fib_find_alias); IPv6 routes by metric
	// (fib6_add_rt2node). Equal keys keep the order of the state, the kernel's dump order.
	for fi := range f.fams {
		v6 := f.fams[fi].fam == inet.V6
		for _, t := range f.fams[fi].tables {
			t.compact()
			t.index()
			t.each(func(v *fibValue) {
				if *v&multiBit == 0 {
					return
				}
				rs := b.pending[uint32(*v)]
				slices.SortStableFunc(rs, func(x, y fibValue) int {
					a, b := f.class(x), f.class(y)
					if !v6 && a.tos != b.tos {
						return cmp.Compare(b.tos, a.tos)
					}
					return cmp.Compare(uint32(a.metric), uint32(b.metric))
				})
				*v = multiBit | fibValue(len(rs))<<32 | fibValue(len(f.multi))
				f.multi = append(f.multi, rs...)
			})
		}
	}
	for _, t := range f.fams[0].tables {
		if t.top2 != nil {
			f.top4 = append(f.top4, t)
		}
	}
	for fi := range f.fams {
		for i := range f.fams[fi].rules {
			r := &f.fams[fi].rules[i]
			r.t = f.fams[fi].tables[r.table]
		}
	}
	// Only a gateway inside an IPv4 route of host scope (a local address) needs the kernel's
	// gateway resolution to be replayed. A class is its routes' table, scope and paths.
	viaHost := func(gw netip.Addr) bool {
		var c lpmCursor
		b.host.find(gw, &c)
		_, _, ok := c.next()
		return ok || f.lazyHost(gw)
	}
	cache := map[gatewayKey]bool{}
	for i := range f.classes {
		r := &f.classes[i]
		if r.fam != inet.V4 {
			continue
		}
		for k := 0; k < r.npaths; k++ {
			if nh := r.nh(k); nh.gw.IsValid() && !nh.onlink && viaHost(nh.gw) {
				f.resolveRouteGateways(cache, r.table, r)
				break
			}
		}
	}
	b.f, b.host, b.t, b.classes, b.pending, b.paths = nil, nil, nil, nil, nil, nexthops{}
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
	fr := fibRoute{r: r, typ: r.Type, tos: r.TOS, metric: r.Metric, prefSrc: r.Src.Unmap(), fam: r.Family, table: r.Table}
	if fr.typ == "" {
		fr.typ = model.RouteUnicast
	}
	fr.reject = isErrorType(fr.typ)
	fr.scope = parseScope(r.Scope, defaultRouteScope(r))
	if len(r.Nexthops) > 0 {
		fr.multi = make([]fibNexthop, len(r.Nexthops))
		for j, nh := range r.Nexthops {
			fr.multi[j] = fibNexthop{gw: nh.Gateway.Unmap(), link: link(nh.Dev), dev: nh.Dev, index: j, onlink: nh.OnLink || r.OnLink, weight: max(nh.Weight, 1)}
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
func (f *FIB) Lookup(fl Flow) (res Result) {
	f.lookup(&fl, true, &res)
	return res
}

// Resolve answers like Lookup but records no Steps: for looking up many flows, where it is
// several times faster than Lookup, whose steps copy every rule considered.
func (f *FIB) Resolve(fl Flow) (res Result) {
	f.lookup(&fl, false, &res)
	return res
}

// lookup answers into res, which is zero; the Result is filled in place rather than returned,
// since copying it (200 bytes) from function to function is a good part of a lookup.
func (f *FIB) lookup(fl *Flow, steps bool, res *Result) {
	if len(f.top4) > 0 && (fl.Dst.Is4() || fl.Dst.Is4In6()) {
		// First, so that the wait for the node overlaps everything before the table is read.
		a := fl.Dst.Unmap().As4()
		for _, t := range f.top4 {
			t.prefetch(a)
		}
	}
	var q query
	if !f.normalizeInto(fl, &q, res) {
		return
	}
	q.wantSteps = steps
	if q.fam == inet.V6 {
		*res = f.lookup6(&q)
		return
	}
	f.lookup4(&q, res)
}

func (f *FIB) normalize(fl Flow) (query, Result, bool) {
	var q query
	var res Result
	ok := f.normalizeInto(&fl, &q, &res)
	return q, res, ok
}

// normalizeInto fills q from fl; when the kernel refuses the flow before any lookup it sets
// res to the answer and returns false.
func (f *FIB) normalizeInto(fl *Flow, q *query, res *Result) bool {
	*q = query{
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
		*res = Result{Verdict: VerdictInvalid, Nexthop: -1, Note: "the flow has no destination address"}
		return false
	}
	if q.fam == 0 {
		q.fam = inet.FamilyOf(q.dst)
	}
	if inet.FamilyOf(q.dst) != q.fam || q.src.IsValid() && inet.FamilyOf(q.src) != q.fam {
		*res = Result{Verdict: VerdictInvalid, Nexthop: -1, Note: fmt.Sprintf("addresses %v and %v are not both %s", q.src, q.dst, q.fam)}
		return false
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
			*res = Result{Verdict: VerdictInvalid, Nexthop: -1, Note: fmt.Sprintf("no device %q to receive on (ENODEV)", q.iif)}
			return false
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
				*res = Result{Verdict: VerdictInvalid, Nexthop: -1, Note: fmt.Sprintf("no device %q to bind the lookup to (ENODEV)", q.oif)}
				return false
			}
		}
	}
	return true
}

// describeRoute appends a route as a step's outcome shows it: type (unless unicast), prefix,
// path, metric. Outcomes are built by appending to one buffer, so that Lookup's steps cost one
// allocation each rather than one per word.
func describeRoute(b []byte, p netip.Prefix, r *fibRoute, nh int) []byte {
	if r.typ != model.RouteUnicast {
		b = append(b, r.typ...)
		b = append(b, ' ')
	}
	b = p.AppendTo(b)
	if nh >= 0 && nh < r.npaths {
		if p := r.nh(nh); p.gw.IsValid() {
			b = append(b, " via "...)
			b = p.gw.AppendTo(b)
		}
		if p := r.nh(nh); p.dev != "" {
			b = append(b, " dev "...)
			b = append(b, p.dev...)
		}
	}
	if r.metric != 0 {
		b = append(b, " metric "...)
		b = strconv.AppendInt(b, int64(r.metric), 10)
	}
	return b
}

type tableResult struct {
	route *fibRoute
	ref   uint32 // the route's ref (fibValue)
	bits  int    // the prefix length of the route's destination
	nh    int
}

func isErrorType(t string) bool {
	switch t {
	case model.RouteBlackhole, model.RouteUnreachable, model.RouteProhibit, model.RouteThrow, model.RouteNAT, "xresolve":
		return true
	}
	return false
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
		if fr.fam == inet.V6 {
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
		return f.lazyRouteOf(r)
	}
	p := r.Dst
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	p = p.Masked()
	slot, _ := t.value(p, false)
	if slot == nil {
		return nil
	}
	var one [1]fibValue
	for _, v := range f.values(*slot, &one) {
		fr, ref := f.class(v), uint32(v)
		if ref != 0 && f.route(ref) == r || ref == 0 && fr.sameAs(r, p) {
			return fr
		}
	}
	return nil
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
