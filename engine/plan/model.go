package plan

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
)

// hookJumps lists the jumps to chain name from the built-in chains of a table, with their
// 1-based positions: rules whose whole spec is "-j NAME".
func hookJumps(t *iptables.Table, name string) []Jump {
	if t == nil {
		return nil
	}
	var out []Jump
	for _, c := range t.Chains {
		if c.Policy == "" {
			continue
		}
		for i, r := range c.Rules {
			if r.Spec == "-j "+name {
				out = append(out, Jump{Chain: c.Name, Position: i + 1})
			}
		}
	}
	return out
}

// InEffect reports whether the change is already true of the state: applying it would change
// nothing. Conntrack flushes are never in effect (the state does not hold conntrack entries).
func (c Change) InEffect(s *model.State) bool {
	return c.normalized().inEffect(s, scanRoutes(s))
}

// routeLookup finds the routes of a state with one identity.
type routeLookup func(routeID) []model.Route

// scanRoutes looks routes up by scanning, for a single question.
func scanRoutes(s *model.State) routeLookup {
	return func(id routeID) []model.Route { return routesWithID(s, id) }
}

// indexRoutes looks routes up through an index built once, for many questions.
func indexRoutes(s *model.State) routeLookup {
	idx := make(map[routeID][]int, len(s.Routes))
	for i, r := range s.Routes {
		id := identOf(r)
		idx[id] = append(idx[id], i)
	}
	return func(id routeID) []model.Route {
		var out []model.Route
		for _, i := range idx[id] {
			out = append(out, s.Routes[i])
		}
		return out
	}
}

// inEffect is InEffect for a normalized change.
func (c Change) inEffect(s *model.State, routes routeLookup) bool {
	switch c.Kind {
	case KindTable:
		n, ok := s.TableNames[c.Table.ID]
		if c.Op == OpDelete {
			return !ok || n != c.Table.Name
		}
		return ok && n == c.Table.Name
	case KindLink:
		l := s.LinkByName(c.Link.Name)
		if c.Op == OpDelete {
			return l == nil
		}
		return l != nil && linkCompatible(*l, *c.Link) == nil && linkSettled(*l, *c.Link)
	case KindAddress:
		l := s.LinkByName(c.Address.Dev)
		has := l != nil && slices.ContainsFunc(l.Addrs, func(a model.Address) bool { return a.Prefix == c.Address.Prefix })
		return has == (c.Op == OpAdd)
	case KindSysctl:
		v, ok := s.Sysctls[c.Sysctl.Key]
		return ok && strings.TrimSpace(v) == c.Sysctl.Value
	case KindRoute:
		same := routes(identOf(*c.Route))
		if c.Op == OpDelete {
			return len(same) == 0
		}
		return len(same) == 1 && sameRoute(same[0], *c.Route)
	case KindRule:
		has := slices.ContainsFunc(s.Rules, func(r model.Rule) bool { return sameRule(r, *c.Rule) })
		return has == (c.Op == OpAdd)
	case KindChain:
		t := s.Netfilter.TableIn(c.Chain.Backend, c.Chain.Family, c.Chain.Table)
		ch := t.Chain(c.Chain.Name)
		hooks := hookJumps(t, c.Chain.Name)
		if c.Op == OpDelete {
			return ch == nil && len(hooks) == 0
		}
		if ch == nil || ch.Policy != "" {
			return false
		}
		var have []string
		for _, r := range ch.Rules {
			have = append(have, r.Spec)
		}
		if !slices.Equal(canonicalRules(c.Chain.Family, have), c.Chain.Rules) {
			return false
		}
		var got, want []string
		for _, h := range hooks {
			got = append(got, h.Chain)
		}
		for _, h := range c.Chain.Jumps {
			want = append(want, h.Chain)
		}
		slices.Sort(got)
		slices.Sort(want)
		return slices.Equal(got, want)
	case KindNFT:
		return nftInEffect(c, s)
	}
	return false
}

// linkCompatible says why an existing link cannot be turned into the planned one without being
// deleted and created again (a different kind or tunnel parameters), or nil.
func linkCompatible(have, want model.Link) error {
	if have.Kind != want.Kind {
		return fmt.Errorf("link %s exists as a %s link, not %s", have.Name, have.Kind, want.Kind)
	}
	if want.Tunnel != nil {
		h, w := model.Tunnel{}, *want.Tunnel
		if have.Tunnel != nil {
			h = *have.Tunnel
		}
		if h.VNI != w.VNI || h.Local != w.Local || h.Remote != w.Remote || h.Group != w.Group || h.Dev != w.Dev ||
			h.TTL != w.TTL || h.Key != w.Key || (want.Kind == "vxlan" && h.Port != w.Port) {
			return fmt.Errorf("link %s exists with other tunnel parameters (%s)", have.Name, tunnelString(have))
		}
	}
	if want.HardwareAddr != "" && !strings.EqualFold(want.HardwareAddr, have.HardwareAddr) {
		return fmt.Errorf("link %s has hardware address %s, not %s", have.Name, have.HardwareAddr, want.HardwareAddr)
	}
	return nil
}

// linkSettled reports whether a compatible link also has the planned up state, MTU, master and
// addresses.
func linkSettled(have, want model.Link) bool {
	if have.Up != want.Up || (want.MTU != 0 && have.MTU != want.MTU) || (want.Master != "" && have.Master != want.Master) {
		return false
	}
	for _, a := range want.Addrs {
		if !slices.ContainsFunc(have.Addrs, func(b model.Address) bool { return b.Prefix == a.Prefix }) {
			return false
		}
	}
	return true
}

func tunnelString(l model.Link) string {
	t := l.Tunnel
	if t == nil {
		return l.Kind
	}
	var b strings.Builder
	b.WriteString(l.Kind)
	if l.Kind == "vxlan" {
		fmt.Fprintf(&b, " id %d", t.VNI)
	}
	if t.Remote.IsValid() {
		fmt.Fprintf(&b, " remote %s", t.Remote)
	}
	if t.Group.IsValid() {
		fmt.Fprintf(&b, " group %s", t.Group)
	}
	if t.Local.IsValid() {
		fmt.Fprintf(&b, " local %s", t.Local)
	}
	if t.Dev != "" {
		fmt.Fprintf(&b, " dev %s", t.Dev)
	}
	if l.Kind == "vxlan" && t.Port != 0 {
		fmt.Fprintf(&b, " dstport %d", t.Port)
	}
	if t.Key != 0 {
		fmt.Fprintf(&b, " key %d", t.Key)
	}
	if t.TTL != 0 {
		fmt.Fprintf(&b, " ttl %d", t.TTL)
	}
	return b.String()
}

// Pending returns the plan reduced to the changes not yet in effect on s, with each change's
// op settled against s (a route add whose key exists becomes a replace; a link add of an
// existing link becomes a set, and the reverse). Conntrack flushes are kept only when some other
// change is pending: re-applying an applied plan does nothing at all.
func (p *Plan) Pending(s *model.State) *Plan {
	routes := indexRoutes(s)
	out := *p
	out.Changes = nil
	var flushes []Change
	for _, c := range p.Changes {
		c = c.normalized()
		if c.Kind == KindConntrack {
			flushes = append(flushes, c)
			continue
		}
		if c, ok := settle(c, s, routes); ok {
			out.Changes = append(out.Changes, c)
		}
	}
	if len(out.Changes) > 0 {
		out.Changes = append(out.Changes, flushes...)
	}
	if out.Changes == nil {
		out.Changes = []Change{}
	}
	return &out
}

// settle reports whether a normalized change (not a conntrack flush) is pending on s, and
// returns it as the kernel must be asked to make it: a removal carries its object as it is
// (so that exactly that is deleted, and the summary shows it); a route add whose key exists
// becomes a replace; a link add of an existing link becomes a set, and the reverse.
func settle(c Change, s *model.State, routes routeLookup) (Change, bool) {
	if c.Kind == KindRoute {
		// inEffect and the settling below, with one lookup (a destination list settles a
		// million of these).
		same := routes(identOf(*c.Route))
		switch {
		case c.Op == OpDelete && len(same) == 0:
			return c, false
		case c.Op == OpDelete:
			r := same[0]
			c.Route = &r
			return c, true
		case len(same) == 1 && sameRoute(same[0], *c.Route):
			return c, false
		}
		c.Op = OpAdd
		if len(same) > 0 {
			c.Op = OpReplace
		}
		return c, true
	}
	if c.inEffect(s, routes) {
		return c, false
	}
	if c.Op == OpDelete {
		switch c.Kind {
		case KindRoute:
			if same := routes(identOf(*c.Route)); len(same) > 0 {
				r := same[0]
				c.Route = &r
			}
		case KindRule:
			if i := slices.IndexFunc(s.Rules, func(r model.Rule) bool { return sameRule(r, *c.Rule) }); i >= 0 {
				r := s.Rules[i]
				c.Rule = &r
			}
		case KindAddress:
			if l := s.LinkByName(c.Address.Dev); l != nil {
				if i := slices.IndexFunc(l.Addrs, func(a model.Address) bool { return a.Prefix == c.Address.Prefix }); i >= 0 {
					c.Address = &LinkAddress{Dev: l.Name, Address: l.Addrs[i]}
				}
			}
		}
	}
	switch c.Kind {
	case KindRoute:
		if c.Op != OpDelete {
			c.Op = OpAdd
			if len(routes(identOf(*c.Route))) > 0 {
				c.Op = OpReplace
			}
		}
	case KindLink:
		if c.Op != OpDelete {
			c.Op = OpAdd
			if s.LinkByName(c.Link.Name) != nil {
				c.Op = OpSet
			}
		}
	}
	return c, true
}

// Validate checks the plan against the state it will be applied to, change by change on the
// state as the earlier changes leave it: devices exist, gateways are on-link, table names do
// not clash, links are not re-created with other parameters, chains to delete are not used.
// Every problem says what to fix; a plan that fails validation must not be applied at all.
func (p *Plan) Validate(s *model.State) error {
	if err := p.Check(); err != nil {
		return err
	}
	var ps problems
	m := newShadow(s)
	planned := map[string]bool{}
	for _, c := range p.Changes {
		if c.Kind == KindChain && c.Op != OpDelete {
			planned[chainKey(c.Chain.Family, c.Chain.Table, c.Chain.Name)] = true
		}
	}
	for i, c := range p.Changes {
		c = c.normalized()
		if err := validateAgainst(c, m, planned); err != nil {
			ps.add("change %d (%s): %w", i+1, c.Summary(), err)
			continue
		}
		m.apply(c)
	}
	return ps.err("the plan does not fit this host")
}

func validateAgainst(c Change, m *shadow, planned map[string]bool) error {
	st := m.st
	linkKnown := func(name string) error {
		if name == "" || name == "all" || name == "default" || st.LinkByName(name) != nil {
			return nil
		}
		return fmt.Errorf("unknown interface %s: it is not among the links of this host (create it first, or check the name with `ip link`)", name)
	}
	switch c.Kind {
	case KindTable:
		if c.Op == OpDelete {
			return nil
		}
		for id, n := range st.TableNames {
			if n == c.Table.Name && id != c.Table.ID {
				return fmt.Errorf("table name %q is already table %d in rt_tables: choose another name, or use table %d", n, id, id)
			}
		}
	case KindLink:
		l := st.LinkByName(c.Link.Name)
		if c.Op == OpDelete {
			if l != nil && !tunnelKinds[l.Kind] {
				return fmt.Errorf("link %s is a %s link: roundtrip deletes only tunnel and vxlan links, which it can re-create on rollback", l.Name, l.Kind)
			}
			return nil
		}
		if l != nil {
			if err := linkCompatible(*l, *c.Link); err != nil {
				return fmt.Errorf("%w: delete it first in the plan, or choose another name", err)
			}
		}
		if c.Link.Tunnel.Dev != "" {
			if err := linkKnown(c.Link.Tunnel.Dev); err != nil {
				return fmt.Errorf("underlying device: %w", err)
			}
		}
		if c.Link.Master != "" {
			if err := linkKnown(c.Link.Master); err != nil {
				return fmt.Errorf("master: %w", err)
			}
		}
	case KindAddress:
		if c.Op == OpDelete {
			return nil
		}
		return linkKnown(c.Address.Dev)
	case KindSysctl:
		if iface, ok := model.SysctlIface(c.Sysctl.Key); ok {
			return linkKnown(iface)
		}
	case KindRoute:
		r := *c.Route
		if c.Op == OpDelete {
			return nil
		}
		if err := linkKnown(r.Dev); err != nil {
			return err
		}
		for _, nh := range r.Nexthops {
			if err := linkKnown(nh.Dev); err != nil {
				return err
			}
			if nh.Gateway.IsValid() && !nh.OnLink && !m.onLink(r.Table, nh.Gateway, nh.Dev) {
				return gatewayError(nh.Gateway, nh.Dev)
			}
		}
		if r.Gateway.IsValid() && !r.OnLink && !m.onLink(r.Table, r.Gateway, r.Dev) {
			return gatewayError(r.Gateway, r.Dev)
		}
		if r.Src.IsValid() && !localAddr(st, r.Src) {
			return fmt.Errorf("source %s is not an address of this host: the kernel refuses a route with a foreign src; add the address first", r.Src)
		}
	case KindRule:
		if c.Op == OpDelete {
			return nil
		}
		for _, n := range []string{c.Rule.IIF, c.Rule.OIF} {
			if n != "lo" {
				if err := linkKnown(n); err != nil {
					return err
				}
			}
		}
	case KindChain:
		t := st.Netfilter.TableIn(c.Chain.Backend, c.Chain.Family, c.Chain.Table)
		if ch := t.Chain(c.Chain.Name); ch != nil && ch.Policy != "" {
			return fmt.Errorf("%s is a built-in chain of %s", c.Chain.Name, c.Chain.Table)
		}
		if c.Op != OpDelete {
			for i, spec := range c.Chain.Rules {
				r, err := iptables.ParseRule(c.Chain.Family, spec)
				if err != nil || r.Target == "" || iptablesTargets[r.Target] {
					continue
				}
				if t.Chain(r.Target) == nil && !planned[chainKey(c.Chain.Family, c.Chain.Table, r.Target)] {
					return fmt.Errorf("rule %d jumps to %s, which is neither an iptables target nor a chain of the %s table: create that chain first or fix the name", i+1, r.Target, c.Chain.Table)
				}
			}
		}
		if c.Op == OpDelete && t != nil {
			for _, ch := range t.Chains {
				for i, r := range ch.Rules {
					if r.Target == c.Chain.Name && !(ch.Policy != "" && r.Spec == "-j "+c.Chain.Name) && ch.Name != c.Chain.Name {
						return fmt.Errorf("chain %s is used by rule %d of chain %s (%q): remove that rule first", c.Chain.Name, i+1, ch.Name, r.Spec)
					}
				}
			}
		}
	}
	return nil
}

func chainKey(f inet.Family, table, name string) string {
	return fmt.Sprintf("%s/%s/%s", f, table, name)
}

// iptablesTargets are the targets of iptables and its extensions (iptables-extensions(8)); any
// other -j names a user chain, which must exist.
var iptablesTargets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "QUEUE": true, "AUDIT": true, "CHECKSUM": true,
	"CLASSIFY": true, "CLUSTERIP": true, "CONNMARK": true, "CONNSECMARK": true, "CT": true,
	"DNAT": true, "DNPT": true, "DSCP": true, "ECN": true, "HL": true, "HMARK": true,
	"IDLETIMER": true, "LED": true, "LOG": true, "MARK": true, "MASQUERADE": true, "NETMAP": true,
	"NFLOG": true, "NFQUEUE": true, "NOTRACK": true, "RATEEST": true, "REDIRECT": true,
	"REJECT": true, "SECMARK": true, "SET": true, "SNAT": true, "SNPT": true, "SYNPROXY": true,
	"TCPMSS": true, "TCPOPTSTRIP": true, "TEE": true, "TOS": true, "TPROXY": true, "TRACE": true,
	"TTL": true, "ULOG": true,
}

func gatewayError(gw netip.Addr, dev string) error {
	where := "any link"
	if dev != "" {
		where = dev
	}
	return fmt.Errorf("gateway %s is not on-link: no address or link route on %s covers it (add an address in its subnet first, fix the gateway, or mark the route onlink)", gw, where)
}

// gatewayDev returns the link a gateway is on-link through, or "".
func gatewayDev(routes []model.Route, links []model.Link, table int, gw netip.Addr) string {
	for _, l := range links {
		if model.OnLinkIn(routes, links, table, gw, l.Name) {
			return l.Name
		}
	}
	return ""
}

func localAddr(st *model.State, a netip.Addr) bool {
	for _, l := range st.Links {
		for _, x := range l.Addrs {
			if x.Prefix.Addr() == a {
				return true
			}
		}
	}
	return false
}

// model is a state that a plan's changes are applied to in memory, one by one (Validate,
// Expect). Its routes are indexed by identity and the ones a gateway can be on-link through are
// kept apart, so that planning thousands of routes against a host with a full routing table
// stays fast (BenchmarkPlanDestinationList).
type shadow struct {
	st     *model.State
	byID   map[routeID][]int // positions in st.Routes
	dead   map[int]bool      // positions removed since the last reindex
	direct []model.Route     // routes without a gateway; nil when stale
	// keep, when set, says which planned routes the model holds (a Settler's model keeps
	// only those that later checks can need, so that it does not grow with the plan).
	keep func(model.Route) bool
}

func newShadow(s *model.State) *shadow {
	m := &shadow{st: s.Clone()}
	m.reindex()
	return m
}

// reindex drops removed routes and rebuilds the index.
func (m *shadow) reindex() {
	if len(m.dead) > 0 {
		kept := m.st.Routes[:0]
		for i, r := range m.st.Routes {
			if !m.dead[i] {
				kept = append(kept, r)
			}
		}
		m.st.Routes = kept
	}
	m.dead = map[int]bool{}
	m.byID = make(map[routeID][]int, len(m.st.Routes))
	for i, r := range m.st.Routes {
		id := identOf(r)
		m.byID[id] = append(m.byID[id], i)
	}
	m.direct = nil
}

// isDirect reports whether a route can make a gateway on-link (no gateway of its own).
func isDirect(r model.Route) bool {
	return !r.Gateway.IsValid() && len(r.Nexthops) == 0 && (r.Type == model.RouteUnicast || r.Type == model.RouteLocal || r.Type == "")
}

func (m *shadow) onLink(table int, gw netip.Addr, dev string) bool {
	if m.direct == nil {
		m.direct = []model.Route{}
		for i, r := range m.st.Routes {
			if !m.dead[i] && isDirect(r) {
				m.direct = append(m.direct, r)
			}
		}
	}
	return model.OnLinkIn(m.direct, m.st.Links, table, gw, dev)
}

// apply applies one normalized change: routes through the index, everything else (which may
// add or remove routes with links and addresses) on the plain state.
func (m *shadow) apply(c Change) {
	if c.Kind != KindRoute {
		touchesRoutes := c.Kind == KindLink || c.Kind == KindAddress
		if touchesRoutes {
			m.reindex()
		}
		applyToModel(m.st, c)
		if touchesRoutes {
			m.reindex()
		}
		return
	}
	id := identOf(*c.Route)
	if ids, ok := m.byID[id]; ok {
		for _, i := range ids {
			if !m.dead[i] {
				m.dead[i] = true
				if isDirect(m.st.Routes[i]) {
					m.direct = nil
				}
			}
		}
		delete(m.byID, id)
	}
	if c.Op == OpDelete {
		return
	}
	r := *c.Route
	if m.keep != nil && !m.keep(r) {
		return
	}
	if r.Dev == "" && r.Gateway.IsValid() {
		m.onLink(r.Table, r.Gateway, "") // fills m.direct
		r.Dev = gatewayDev(m.direct, m.st.Links, r.Table, r.Gateway)
	}
	m.st.Routes = append(m.st.Routes, r)
	m.byID[id] = []int{len(m.st.Routes) - 1}
	if isDirect(r) {
		m.direct = nil
	}
}

// state returns the model's state with removed routes dropped.
func (m *shadow) state() *model.State {
	m.reindex()
	return m.st
}

// Expect returns the state the plan leaves behind when applied to before, as far as the model
// can tell: the planned objects, plus the routes the kernel adds or removes with addresses and
// links. It is the "after" of the SSH lockout check.
func (p *Plan) Expect(before *model.State) *model.State {
	m := newShadow(before)
	for _, c := range p.Pending(before).Changes {
		m.apply(c)
	}
	return m.state()
}

// Drift lists the changes of the plan that are not in effect on actual: after an apply it
// should be empty, and anything it lists was changed by someone else or read back differently.
func (p *Plan) Drift(actual *model.State) []string {
	var out []string
	routes := indexRoutes(actual)
	for i, c := range p.Changes {
		c = c.normalized()
		if c.Kind == KindConntrack || c.inEffect(actual, routes) {
			continue
		}
		out = append(out, fmt.Sprintf("change %d is not in effect: %s", i+1, c.Summary()))
	}
	return out
}

// applyToModel applies one normalized change to a model state.
func applyToModel(st *model.State, c Change) {
	switch c.Kind {
	case KindTable:
		if c.Op == OpDelete {
			if st.TableNames[c.Table.ID] == c.Table.Name {
				delete(st.TableNames, c.Table.ID)
			}
			return
		}
		if st.TableNames == nil {
			st.TableNames = map[int]string{}
		}
		st.TableNames[c.Table.ID] = c.Table.Name
	case KindLink:
		name := c.Link.Name
		if c.Op == OpDelete {
			st.Links = slices.DeleteFunc(st.Links, func(l model.Link) bool { return l.Name == name })
			st.Routes = slices.DeleteFunc(st.Routes, func(r model.Route) bool { return routeUses(r, name) })
			for k := range st.Sysctls {
				if iface, ok := model.SysctlIface(k); ok && iface == name {
					delete(st.Sysctls, k)
				}
			}
			return
		}
		l := st.LinkByName(name)
		if l == nil {
			idx := 0
			for _, x := range st.Links {
				idx = max(idx, x.Index)
			}
			nl := *c.Link
			nl.Index, nl.Addrs = idx+1, nil
			if nl.MTU == 0 {
				nl.MTU = 1500
			}
			st.Links = append(st.Links, nl)
			l = &st.Links[len(st.Links)-1]
		}
		l.Up = c.Link.Up
		if c.Link.MTU != 0 {
			l.MTU = c.Link.MTU
		}
		if c.Link.Master != "" {
			l.Master = c.Link.Master
		}
		for _, a := range c.Link.Addrs {
			addAddrToModel(st, name, a)
		}
	case KindAddress:
		if c.Op == OpDelete {
			delAddrFromModel(st, c.Address.Dev, c.Address.Prefix)
			return
		}
		addAddrToModel(st, c.Address.Dev, c.Address.Address)
	case KindSysctl:
		if st.Sysctls == nil {
			st.Sysctls = model.Sysctls{}
		}
		st.Sysctls[c.Sysctl.Key] = c.Sysctl.Value
	case KindRoute:
		id := identOf(*c.Route)
		st.Routes = slices.DeleteFunc(st.Routes, func(r model.Route) bool { return identOf(r) == id })
		if c.Op != OpDelete {
			r := *c.Route
			// Like the kernel, give a route via a gateway the device the gateway is on.
			if r.Dev == "" && r.Gateway.IsValid() {
				r.Dev = gatewayDev(st.Routes, st.Links, r.Table, r.Gateway)
			}
			st.Routes = append(st.Routes, r)
		}
	case KindRule:
		if c.Op == OpDelete {
			if i := slices.IndexFunc(st.Rules, func(r model.Rule) bool { return sameRule(r, *c.Rule) }); i >= 0 {
				st.Rules = slices.Delete(st.Rules, i, i+1)
			}
			return
		}
		// The kernel inserts a rule after the existing rules of the same priority.
		i := len(st.Rules)
		for j, r := range st.Rules {
			if r.Family == c.Rule.Family && r.Priority > c.Rule.Priority {
				i = j
				break
			}
		}
		st.Rules = slices.Insert(st.Rules, i, *c.Rule)
	case KindChain:
		applyChainToModel(st, *c.Chain, c.Op)
	}
}

func routeUses(r model.Route, dev string) bool {
	if r.Dev == dev {
		return true
	}
	return slices.ContainsFunc(r.Nexthops, func(nh model.Nexthop) bool { return nh.Dev == dev })
}

// addAddrToModel adds an address and the routes the kernel adds with it (fib_add_ifaddr,
// addrconf_prefix_route): a local route, and on an up link the connected route.
func addAddrToModel(st *model.State, dev string, a model.Address) {
	l := st.LinkByName(dev)
	if l == nil || slices.ContainsFunc(l.Addrs, func(b model.Address) bool { return b.Prefix == a.Prefix }) {
		return
	}
	f := inet.FamilyOf(a.Prefix.Addr())
	// A second IPv4 address in a subnet the link has is a secondary: no connected route.
	if f == inet.V4 && slices.ContainsFunc(l.Addrs, func(b model.Address) bool { return b.Prefix.Masked() == a.Prefix.Masked() }) {
		a.Secondary = true
	}
	l.Addrs = append(l.Addrs, a)
	host := netip.PrefixFrom(a.Prefix.Addr(), a.Prefix.Addr().BitLen())
	local := model.Route{Family: f, Table: model.TableLocal, Type: model.RouteLocal, Dst: host, Dev: dev, Protocol: "kernel", Scope: "host"}
	if f == inet.V4 {
		local.Src = a.Prefix.Addr()
	} else {
		local.Scope = "universe"
	}
	st.Routes = append(st.Routes, local)
	if l.Up && !a.Secondary && a.Prefix.Bits() < a.Prefix.Addr().BitLen() {
		conn := model.Route{Family: f, Table: model.TableMain, Type: model.RouteUnicast, Dst: a.Prefix.Masked(), Dev: dev, Protocol: "kernel", Scope: "link"}
		if f == inet.V4 {
			conn.Src = a.Prefix.Addr()
		} else {
			conn.Scope, conn.Metric = "universe", 256
		}
		st.Routes = append(st.Routes, conn)
	}
}

// delAddrFromModel removes an address and the routes the kernel removes with it: its local and
// connected routes and every route that uses it as preferred source (fib_sync_down_addr).
func delAddrFromModel(st *model.State, dev string, p netip.Prefix) {
	l := st.LinkByName(dev)
	if l == nil {
		return
	}
	l.Addrs = slices.DeleteFunc(l.Addrs, func(a model.Address) bool { return a.Prefix == p })
	subnetLeft := slices.ContainsFunc(l.Addrs, func(a model.Address) bool { return a.Prefix.Masked() == p.Masked() })
	st.Routes = slices.DeleteFunc(st.Routes, func(r model.Route) bool {
		if r.Src == p.Addr() {
			return true
		}
		if r.Protocol != "kernel" || r.Dev != dev {
			return false
		}
		return r.Dst == p.Masked() && !subnetLeft || r.Dst.Addr() == p.Addr() && r.Dst.IsSingleIP()
	})
}

func applyChainToModel(st *model.State, c ChainSpec, op Op) {
	t := st.Netfilter.TableIn(c.Backend, c.Family, c.Table)
	if t == nil {
		if op == OpDelete {
			return
		}
		nt := iptables.Table{Family: c.Family, Name: c.Table, Backend: c.Backend}
		for _, b := range hookable[c.Table] {
			nt.Chains = append(nt.Chains, iptables.Chain{Name: b, Policy: "ACCEPT"})
		}
		st.Netfilter.Tables = append(st.Netfilter.Tables, nt)
		t = &st.Netfilter.Tables[len(st.Netfilter.Tables)-1]
	}
	jump := "-j " + c.Name
	wanted := map[string]bool{}
	if op != OpDelete {
		for _, h := range c.Jumps {
			wanted[h.Chain] = true
		}
	}
	for i := range t.Chains {
		ch := &t.Chains[i]
		if ch.Policy == "" {
			continue
		}
		if !wanted[ch.Name] {
			ch.Rules = slices.DeleteFunc(ch.Rules, func(r iptables.Rule) bool { return r.Spec == jump })
		}
	}
	if op == OpDelete {
		t.Chains = slices.DeleteFunc(t.Chains, func(ch iptables.Chain) bool { return ch.Name == c.Name })
		return
	}
	ch := t.Chain(c.Name)
	if ch == nil {
		t.Chains = append(t.Chains, iptables.Chain{Name: c.Name})
		ch = &t.Chains[len(t.Chains)-1]
	}
	ch.Rules = nil
	for _, spec := range c.Rules {
		r, err := iptables.ParseRule(c.Family, spec)
		if err != nil {
			r = iptables.Rule{Spec: spec}
		}
		ch.Rules = append(ch.Rules, r)
	}
	hooks := slices.Clone(c.Jumps)
	slices.SortStableFunc(hooks, func(a, b Jump) int { return a.Position - b.Position })
	for _, h := range hooks {
		b := t.Chain(h.Chain)
		if b == nil {
			t.Chains = append(t.Chains, iptables.Chain{Name: h.Chain, Policy: "ACCEPT"})
			b = &t.Chains[len(t.Chains)-1]
		}
		if slices.ContainsFunc(b.Rules, func(r iptables.Rule) bool { return r.Spec == jump }) {
			continue
		}
		r, _ := iptables.ParseRule(c.Family, jump)
		pos := min(max(h.Position, 1), len(b.Rules)+1)
		b.Rules = slices.Insert(b.Rules, pos-1, r)
	}
}

// Inverse returns the changes that undo c, computed from the state before c is applied; applied
// in order after c they restore before exactly. Deleting a link or an address also removes
// routes (and secondary addresses) with it, so their inverses put those back too. It fails only
// when before lacks what the undo needs (a sysctl's old value).
func (c Change) Inverse(before *model.State) ([]Change, error) {
	return c.normalized().inverse(before, scanRoutes(before), true)
}

// Inverses returns the inverse of every change of the plan (Change.Inverse), all computed
// from before, with one route index for all of them.
func (p *Plan) Inverses(before *model.State) ([][]Change, error) {
	routes := indexRoutes(before)
	out := make([][]Change, len(p.Changes))
	for i, c := range p.Changes {
		inv, err := c.normalized().inverse(before, routes, true)
		if err != nil {
			return nil, fmt.Errorf("change %d (%s): %w", i+1, c.Summary(), err)
		}
		out[i] = inv
	}
	return out, nil
}

// inverse is Inverse for a normalized change; why says whether the undo changes say what
// they undo (the change engine, undoing routes by the million, does without).
func (c Change) inverse(before *model.State, routes routeLookup, why bool) ([]Change, error) {
	inv := func(k ChangeKind, op Op) Change {
		x := Change{Kind: k, Op: op}
		if why {
			x.Why = "undo: " + c.Summary()
		}
		return x
	}
	switch c.Kind {
	case KindTable:
		old, ok := before.TableNames[c.Table.ID]
		if ok {
			x := inv(KindTable, OpAdd)
			x.Table = &RTTable{ID: c.Table.ID, Name: old}
			return []Change{x}, nil
		}
		x := inv(KindTable, OpDelete)
		x.Table = &RTTable{ID: c.Table.ID, Name: c.Table.Name}
		return []Change{x}, nil
	case KindLink:
		l := before.LinkByName(c.Link.Name)
		if l == nil {
			if c.Op == OpDelete {
				return nil, nil
			}
			x := inv(KindLink, OpDelete)
			x.Link = &model.Link{Name: c.Link.Name, Kind: c.Link.Kind}
			return []Change{x}, nil
		}
		if c.Op != OpDelete {
			x := inv(KindLink, OpSet)
			old := *l
			old.Addrs = nil
			x.Link = &old
			out := []Change{x}
			// Addresses the set added (Link.Addrs) go away again.
			for _, a := range c.Link.Addrs {
				if !slices.ContainsFunc(l.Addrs, func(b model.Address) bool { return b.Prefix == a.Prefix }) {
					d := inv(KindAddress, OpDelete)
					d.Address = &LinkAddress{Dev: l.Name, Address: a}
					out = append([]Change{d}, out...)
				}
			}
			return out, nil
		}
		// Re-create the link as it was: parameters, hardware address (so that its IPv6
		// link-local address comes back the same), addresses, its routes and its sysctls.
		x := inv(KindLink, OpAdd)
		old := *l
		x.Link = &old
		out := []Change{x}
		out = append(out, lostRoutes(before, func(r model.Route) bool { return routeUses(r, l.Name) }, inv)...)
		out = append(out, linkSysctls(before, l.Name, inv)...)
		return out, nil
	case KindAddress:
		l := before.LinkByName(c.Address.Dev)
		var old *model.Address
		if l != nil {
			if i := slices.IndexFunc(l.Addrs, func(a model.Address) bool { return a.Prefix == c.Address.Prefix }); i >= 0 {
				old = &l.Addrs[i]
			}
		}
		if c.Op == OpAdd {
			if old != nil {
				return nil, nil
			}
			x := inv(KindAddress, OpDelete)
			x.Address = &LinkAddress{Dev: c.Address.Dev, Address: c.Address.Address}
			return []Change{x}, nil
		}
		if old == nil {
			return nil, nil
		}
		x := inv(KindAddress, OpAdd)
		x.Address = &LinkAddress{Dev: l.Name, Address: *old}
		out := []Change{x}
		// Deleting a primary IPv4 address deletes its secondaries too unless
		// promote_secondaries is set (__inet_del_ifa); put them back either way.
		if old.Prefix.Addr().Is4() && !old.Secondary {
			for _, a := range l.Addrs {
				if a.Secondary && a.Prefix.Masked() == old.Prefix.Masked() {
					s := inv(KindAddress, OpAdd)
					s.Address = &LinkAddress{Dev: l.Name, Address: a}
					out = append(out, s)
				}
			}
		}
		out = append(out, lostRoutes(before, func(r model.Route) bool { return r.Src == old.Prefix.Addr() }, inv)...)
		return out, nil
	case KindSysctl:
		if iface, ok := model.SysctlIface(c.Sysctl.Key); ok && before.LinkByName(iface) == nil && iface != "all" && iface != "default" {
			return nil, nil // a link created by the plan: deleting it removes the setting
		}
		old, ok := before.Sysctls[c.Sysctl.Key]
		if !ok {
			return nil, fmt.Errorf("the old value of sysctl %s is unknown: read it before planning the undo", c.Sysctl.Key)
		}
		x := inv(KindSysctl, OpSet)
		x.Sysctl = &SysctlValue{Key: c.Sysctl.Key, Value: strings.TrimSpace(old)}
		return []Change{x}, nil
	case KindRoute:
		same := routes(identOf(*c.Route))
		if len(same) == 0 {
			if c.Op == OpDelete {
				return nil, nil
			}
			x := inv(KindRoute, OpDelete)
			x.Route = c.Route
			return []Change{x}, nil
		}
		var out []Change
		for i, r := range same {
			op := OpAdd
			if c.Op != OpDelete && i == 0 {
				op = OpReplace
			}
			x := inv(KindRoute, op)
			x.Route = &r
			out = append(out, x)
		}
		return out, nil
	case KindRule:
		if c.Op == OpAdd {
			if slices.ContainsFunc(before.Rules, func(r model.Rule) bool { return sameRule(r, *c.Rule) }) {
				return nil, nil
			}
			x := inv(KindRule, OpDelete)
			x.Rule = c.Rule
			return []Change{x}, nil
		}
		i := slices.IndexFunc(before.Rules, func(r model.Rule) bool { return sameRule(r, *c.Rule) })
		if i < 0 {
			return nil, nil
		}
		x := inv(KindRule, OpAdd)
		old := before.Rules[i]
		x.Rule = &old
		return []Change{x}, nil
	case KindChain:
		t := before.Netfilter.TableIn(c.Chain.Backend, c.Chain.Family, c.Chain.Table)
		ch := t.Chain(c.Chain.Name)
		if ch == nil {
			if c.Op == OpDelete {
				return nil, nil
			}
			x := inv(KindChain, OpDelete)
			x.Chain = &ChainSpec{Family: c.Chain.Family, Backend: c.Chain.Backend, Table: c.Chain.Table, Name: c.Chain.Name}
			return []Change{x}, nil
		}
		x := inv(KindChain, OpSet)
		spec := ChainSpec{Family: c.Chain.Family, Backend: c.Chain.Backend, Table: c.Chain.Table, Name: c.Chain.Name, Jumps: hookJumps(t, c.Chain.Name)}
		for _, r := range ch.Rules {
			spec.Rules = append(spec.Rules, r.Spec)
		}
		x.Chain = &spec
		return []Change{x}, nil
	}
	return nil, nil
}

// lostRoutes returns changes that re-add the routes of before that match lost, except the
// kernel's own (proto kernel), which come back with their address or link.
func lostRoutes(before *model.State, lost func(model.Route) bool, inv func(ChangeKind, Op) Change) []Change {
	var out []Change
	for _, r := range before.Routes {
		if r.Protocol == "kernel" || !lost(r) {
			continue
		}
		x := inv(KindRoute, OpReplace)
		x.Route = &r
		out = append(out, x)
	}
	return out
}

// linkSysctls returns changes that restore a link's per-interface sysctls.
func linkSysctls(before *model.State, name string, inv func(ChangeKind, Op) Change) []Change {
	var keys []string
	for k := range before.Sysctls {
		if iface, ok := model.SysctlIface(k); ok && iface == name {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []Change
	for _, k := range keys {
		x := inv(KindSysctl, OpSet)
		x.Sysctl = &SysctlValue{Key: k, Value: before.Sysctls[k]}
		out = append(out, x)
	}
	return out
}
