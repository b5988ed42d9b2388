// Package doctor checks a whole host for the pitfalls of policy routing and NAT, without a flow.
package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/netfilter"
	"roundtrip/engine/quote"
)

// This file looks at a whole host for the pitfalls of the field cases (SCENARIOS.md) without a
// particular flow in mind: forwarding off under NAT, strict rp_filter on a multi-homed host, a
// second uplink that answers through the first, one-armed DNAT without SNAT, per-uplink tables
// without the LAN routes, and the leftovers of scripts run twice.

// Finding ids of doctor. They are stable: scripts and the ui match on them.
const (
	// FindingForwardingOff: ip_forward is 0 while the configuration forwards (NAT to other
	// hosts, FORWARD rules, ip rules for incoming interfaces).
	FindingForwardingOff = "forwarding-off"
	// FindingRPFilterStrict: strict rp_filter on an uplink of a host with several uplinks drops
	// whatever arrives on one uplink from addresses routed via another.
	FindingRPFilterStrict = "rp-filter-strict-multihomed"
	// FindingUplinkNoReturn: connections that come in on an uplink are answered through
	// another one (no `from ADDR` or fwmark rule sends them back).
	FindingUplinkNoReturn = "uplink-without-return-routing"
	// FindingDNATWithoutSNAT: DNAT to a backend on the network the DNAT is reached from, and no
	// SNAT: the backend answers the client directly (case 5, hairpin).
	FindingDNATWithoutSNAT = "dnat-same-subnet-no-snat"
	// FindingTableMissingConnected: a per-uplink table sends everything to its default route,
	// including the host's own LAN networks (hairpin and LAN replies break).
	FindingTableMissingConnected = "uplink-table-missing-connected"
	// FindingDuplicateRule: two ip rules with the same selectors and action.
	FindingDuplicateRule = "duplicate-rule"
	// FindingDuplicateIPTablesRule: the same iptables rule twice in one chain.
	FindingDuplicateIPTablesRule = "duplicate-iptables-rule"
	// FindingRuleEmptyTable: an ip rule looks up a table that holds no routes.
	FindingRuleEmptyTable = "rule-empty-table"
	// FindingGatewayNotOnLink: a route's gateway is on none of its device's networks.
	FindingGatewayNotOnLink = "gateway-not-onlink"
	// FindingConntrackFull: the conntrack table is (nearly) full; new connections are dropped.
	FindingConntrackFull = "conntrack-full"
	// FindingIPTablesBackendsMixed: iptables rules live in both backends (legacy x_tables and
	// nf_tables); the kernel runs both, but each iptables command shows only its own.
	FindingIPTablesBackendsMixed = "iptables-backends-mixed"
)

// Doctor checks a host's state for pitfalls and returns what it found, most severe first.
//
// Its work grows linearly with the state (a full BGP table is a million routes): the routes
// are indexed once by table, a route lookup is asked of the FIB, and the questions asked once
// per route (is its gateway on-link?) are asked once per distinct answer.
func Run(s *model.State, f *fib.FIB) []finding.Finding {
	d, _ := run(context.Background(), s, f, nil)
	return d.out
}

// Progress is told, now and then, how far doctor got: done of about total steps (a step is a
// route, rule or link looked at; total is an estimate, and done never passes it).
type Progress func(done, total int)

// RunContext is Run that stops soon after ctx is done, with ctx's error, and reports its
// progress to progress (when not nil).
func RunContext(ctx context.Context, s *model.State, f *fib.FIB, progress Progress) ([]finding.Finding, error) {
	d, err := run(ctx, s, f, progress)
	if err != nil {
		return nil, err
	}
	return d.out, nil
}

// stopped carries the context's error out of the checks' loops to run.
type stopped struct{ err error }

// tickEvery is how many steps go by between looks at the context and reports of progress.
const tickEvery = 1 << 12

func run(ctx context.Context, s *model.State, f *fib.FIB, progress Progress) (d *doctor, err error) {
	d = &doctor{s: s, fib: f, nf: netfilter.New(s, f), ctx: ctx, progress: progress}
	// The passes over the routes (index, uplinks of each family, probes, gateways) and over
	// the rules and links: what the work is, roughly.
	d.total = 5*len(s.Routes) + 4*len(s.Rules) + 2*len(s.Links) + 1
	defer func() {
		if r := recover(); r != nil {
			st, ok := r.(stopped)
			if !ok {
				panic(r)
			}
			d, err = nil, st.err
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.index()
	d.forwardingOff()
	ups := d.uplinks(inet.V4)
	d.rpFilterStrict(ups)
	d.uplinkReturn(ups)
	d.dnatWithoutSNAT()
	d.nftDNATWithoutSNAT()
	d.tablesMissingConnected()
	d.duplicateRules()
	d.duplicateIPTablesRules()
	d.rulesOnEmptyTables()
	d.gatewaysNotOnLink()
	d.conntrackFull()
	d.backendsMixed()
	rank := map[string]int{finding.SeverityError: 0, finding.SeverityWarning: 1, finding.SeverityInfo: 2}
	slices.SortStableFunc(d.out, func(a, b finding.Finding) int { return rank[a.Severity] - rank[b.Severity] })
	if d.out == nil {
		d.out = []finding.Finding{}
	}
	if d.progress != nil {
		d.progress(d.total, d.total)
	}
	return d, nil
}

// step counts one step of a loop over the state; every tickEvery steps it reports progress
// and stops the run (by a panic that run recovers) once the context is done, so that Ctrl-C
// ends a doctor of a full table at once.
func (d *doctor) step() {
	d.ops++
	if d.ops%tickEvery != 0 {
		return
	}
	if err := d.ctx.Err(); err != nil {
		panic(stopped{err})
	}
	if d.progress != nil {
		d.progress(min(d.ops, d.total-1), d.total)
	}
}

type doctor struct {
	s   *model.State
	fib *fib.FIB
	nf  *netfilter.Sim
	out []finding.Finding

	ctx      context.Context
	progress Progress
	total    int // the estimate of steps progress is told

	tables    map[tableKey]*tableInfo
	connected map[string][]netip.Prefix // on-link networks by interface (State.Connected)
	ups       [2][]uplink               // uplinks by family, made once
	upsMade   [2]bool
	// ops counts the steps of the loops over the state and the index lookups: the test that
	// doctor's work grows linearly with the state reads it (counting, not timing).
	ops int
}

type tableKey struct {
	fam   inet.Family
	table int
}

// tableInfo is what the checks need to know of one table of one family, gathered in one pass.
type tableInfo struct {
	routes   int
	devs     map[string]bool // the devices its routes (and their nexthops) go through
	defDev   string          // the device of its last default route, in stored order
	defaults []int           // positions of its default routes in State.Routes
	links    []int           // positions of its routes that make a network on-link (main only)
}

// index gathers the per-table facts of every route, and the networks of every link, once.
func (d *doctor) index() {
	d.tables = map[tableKey]*tableInfo{}
	var last *tableInfo
	lastKey := tableKey{table: -1}
	for i := range d.s.Routes {
		d.step()
		r := &d.s.Routes[i]
		k := tableKey{r.Family, r.Table}
		if last == nil || k != lastKey {
			last = d.tables[k]
			if last == nil {
				last = &tableInfo{devs: map[string]bool{}}
				d.tables[k] = last
			}
			lastKey = k
		}
		t := last
		t.routes++
		if r.Dev != "" {
			t.devs[r.Dev] = true
		}
		for _, nh := range r.Nexthops {
			if nh.Dev != "" {
				t.devs[nh.Dev] = true
			}
		}
		if r.Dst.Bits() == 0 {
			t.defDev = r.Dev
			t.defaults = append(t.defaults, i)
		}
		if r.Table == model.TableMain && !r.Gateway.IsValid() && r.Dst.Bits() != 0 && r.Dev != "" && r.Scope == "link" && (r.Type == model.RouteUnicast || r.Type == "") {
			t.links = append(t.links, i)
		}
	}
	d.connected = map[string][]netip.Prefix{}
	for i := len(d.s.Links) - 1; i >= 0; i-- {
		// State.Connected takes the first link of a name: going backwards, the first one wins.
		d.step()
		l := &d.s.Links[i]
		var ps []netip.Prefix
		for _, a := range l.Addrs {
			ps = append(ps, a.Prefix.Masked())
			if a.Peer.IsValid() {
				ps = append(ps, a.Peer.Masked())
			}
		}
		d.connected[l.Name] = ps
	}
}

// table returns what the index knows of a table (empty when it has no routes).
func (d *doctor) table(f inet.Family, id int) *tableInfo {
	d.step()
	if t := d.tables[tableKey{f, id}]; t != nil {
		return t
	}
	return &tableInfo{}
}

func (d *doctor) add(f finding.Finding) {
	if f.Evidence == nil {
		f.Evidence = []string{}
	}
	if f.Fix.Args == nil {
		f.Fix.Args = []string{}
	}
	d.out = append(d.out, f)
}

// nfRules calls fn for every rule of every chain of the tables of a family and name.
func (d *doctor) nfRules(table string, fn func(t *iptables.Table, c *iptables.Chain, r *iptables.Rule)) {
	for ti := range d.s.Netfilter.Tables {
		t := &d.s.Netfilter.Tables[ti]
		if t.Name != table {
			continue
		}
		for ci := range t.Chains {
			c := &t.Chains[ci]
			for ri := range c.Rules {
				d.step()
				fn(t, c, &c.Rules[ri])
			}
		}
	}
}

// ruleText is a rule as the command that adds it, in the backend it lives in.
func (d *doctor) ruleText(t *iptables.Table, c *iptables.Chain, r *iptables.Rule) string {
	return fmt.Sprintf("%s -t %s -A %s %s", d.s.Netfilter.TableCommand(t), t.Name, c.Name, r.Spec)
}

// backendsMixed reports iptables rules split across the legacy and nf_tables backends. The
// kernel runs both, so nothing is lost, but each iptables command lists only its own
// backend's rules: whoever looks with one misses the others, and rules of one table in both
// run in an order the kernel does not define.
func (d *doctor) backendsMixed() {
	nf := &d.s.Netfilter
	if !nf.Mixed() {
		return
	}
	var ev []string
	count := map[string]int{}
	where := map[string][]string{}
	for ti := range nf.Tables {
		t := &nf.Tables[ti]
		b := iptables.BackendName(nf.TableBackend(t))
		n := 0
		for ci := range t.Chains {
			c := &t.Chains[ci]
			for ri := range c.Rules {
				n++
				if count[b] < 3 {
					ev = append(ev, d.ruleText(t, c, &c.Rules[ri]))
				}
				count[b]++
			}
			if c.Policy != "" && c.Policy != "ACCEPT" {
				ev = append(ev, fmt.Sprintf("%s -t %s -P %s %s", nf.TableCommand(t), t.Name, c.Name, c.Policy))
			}
		}
		if n > 0 {
			name := t.Name
			if t.Family == inet.V6 {
				name = "ip6 " + name
			}
			where[b] = append(where[b], name)
		}
	}
	var parts []string
	for _, b := range []string{"legacy", "nft"} {
		if count[b] > 0 || len(where[b]) > 0 {
			parts = append(parts, fmt.Sprintf("%d in %s (%s)", count[b], b, strings.Join(where[b], ", ")))
		}
	}
	plain := "iptables"
	if nf.Backend != "" {
		plain += " (" + iptables.BackendName(nf.Backend) + ")"
	}
	d.add(finding.Finding{ID: FindingIPTablesBackendsMixed, Severity: finding.SeverityWarning,
		Summary:  fmt.Sprintf("iptables rules are split across both backends: %s; the kernel runs both, but %s lists only its own backend's", strings.Join(parts, ", "), plain),
		Evidence: ev,
		Fix:      finding.Fix{Summary: "list both with `iptables-legacy-save` and `iptables-nft-save` (ip6tables-legacy-save and ip6tables-nft-save for IPv6), and move the rules into one backend, the one the software that wrote them uses"}})
}

// hooksReaching returns, for every chain of a table, the built-in chains from which a packet
// can reach it through jumps and gotos: a rule in a chain only OUTPUT reaches acts on locally
// generated packets only.
func hooksReaching(t *iptables.Table) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, hook := range []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"} {
		if t.Chain(hook) == nil {
			continue
		}
		queue := []string{hook}
		seen := map[string]bool{hook: true}
		for len(queue) > 0 {
			name := queue[0]
			queue = queue[1:]
			if out[name] == nil {
				out[name] = map[string]bool{}
			}
			out[name][hook] = true
			for _, r := range t.Chain(name).Rules {
				if !seen[r.Target] && t.Chain(r.Target) != nil {
					seen[r.Target] = true
					queue = append(queue, r.Target)
				}
			}
		}
	}
	return out
}

// rulesReachedFrom returns the rules of a table a packet arriving on iface can get to from a
// hook, judged by interfaces alone: a rule for another interface is skipped, and a rule that
// ends the chain for every packet of iface (a -g, or a verdict or NAT target, with no match
// but -i) leaves the rest of its chain unreached. Everything else is assumed reachable, so
// the answer errs toward "reached".
func rulesReachedFrom(t *iptables.Table, hook, iface string) map[*iptables.Rule]bool {
	out := map[*iptables.Rule]bool{}
	seen := map[string]bool{}
	var walk func(name string)
	walk = func(name string) {
		c := t.Chain(name)
		if c == nil || seen[name] {
			return
		}
		seen[name] = true
		for i := range c.Rules {
			r := &c.Rules[i]
			if r.In != nil && ifaceMatches(r.In.Value, iface) == r.In.Not {
				continue
			}
			out[r] = true
			if t.Chain(r.Target) != nil {
				walk(r.Target)
			}
			onlyIn := r.Src == nil && r.Dst == nil && r.Out == nil && r.Proto == nil && r.Fragment == nil && len(r.Matches) == 0
			if !onlyIn {
				continue
			}
			switch r.Target {
			case "ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "SNAT", "MASQUERADE", "REDIRECT":
				return
			}
			if r.Goto {
				return
			}
		}
	}
	walk(hook)
	return out
}

// ifaceMatches matches an interface name against iptables' -i/-o pattern (a trailing + is a
// prefix).
func ifaceMatches(pattern, iface string) bool {
	if p, ok := strings.CutSuffix(pattern, "+"); ok {
		return strings.HasPrefix(iface, p)
	}
	return pattern == iface
}

// onlyLocalOut reports whether the rules of a nat chain act only on locally generated packets
// (the chain is reached from OUTPUT and not from PREROUTING): a DNAT there redirects this
// host's own connections and forwards nothing.
func onlyLocalOut(reach map[string]map[string]bool, chain string) bool {
	return reach[chain]["OUTPUT"] && !reach[chain]["PREROUTING"]
}

func (d *doctor) forwardingOff() {
	if d.s.Sysctls.IPForward() {
		return
	}
	if _, ok := d.s.Sysctls[model.SysctlIPForward]; !ok {
		return // not read: say nothing rather than guess
	}
	var ev []string
	reach := map[*iptables.Table]map[string]map[string]bool{}
	d.nfRules("nat", func(t *iptables.Table, c *iptables.Chain, r *iptables.Rule) {
		if t.Family != inet.V4 {
			return
		}
		switch r.Target {
		case "SNAT", "MASQUERADE", "NETMAP":
		case "DNAT":
			if reach[t] == nil {
				reach[t] = hooksReaching(t)
			}
			if onlyLocalOut(reach[t], c.Name) {
				return // this host's own connections, redirected: nothing is forwarded
			}
			if o, ok := r.TargetOption("to-destination"); ok && len(o.Values) > 0 {
				if a, _, err := netfilter.ParseNATRange(inet.V4, o.Values[0]); err == nil && a.IsValid() && d.nf.AddrType(a, "") == "LOCAL" {
					return // DNAT to this host itself needs no forwarding
				}
			}
		default:
			return
		}
		ev = append(ev, d.ruleText(t, c, r))
	})
	d.nfRules("filter", func(t *iptables.Table, c *iptables.Chain, r *iptables.Rule) {
		if t.Family == inet.V4 && c.Name == "FORWARD" {
			ev = append(ev, d.ruleText(t, c, r))
		}
	})
	for _, r := range d.s.Rules {
		if r.Family == inet.V4 && r.IIF != "" && r.IIF != "lo" {
			ev = append(ev, "ip rule "+r.Args(d.s.TableName))
		}
	}
	ev = append(ev, d.nftForwardEvidence()...)
	if len(ev) == 0 {
		return
	}
	ev = append([]string{model.SysctlIPForward + " = " + d.s.Sysctls[model.SysctlIPForward]}, limit(ev, 8)...)
	d.add(finding.Finding{ID: FindingForwardingOff, Severity: finding.SeverityWarning,
		Summary:  "IPv4 forwarding is off, but this host is configured to forward (NAT, FORWARD rules or rules for incoming interfaces): forwarded packets are dropped",
		Evidence: ev,
		// No wizard: they set up more than forwarding (SNAT, tables), and this host's own
		// configuration already says what it forwards; the commands are the whole fix.
		Fix: finding.Fix{Summary: "turn IPv4 forwarding on: sysctl -w net.ipv4.ip_forward=1 (or echo 1 > /proc/sys/net/ipv4/ip_forward), and keep it across reboots: echo net.ipv4.ip_forward=1 > /etc/sysctl.d/90-forwarding.conf"}})
}

// multiWANFix is the multi-wan wizard over the uplinks, each --wan IFACE:GATEWAY; an uplink
// whose gateway no route names gets a placeholder, and Missing says so.
func multiWANFix(summary string, ups []uplink) finding.Fix {
	f := finding.Fix{Summary: summary, Wizard: finding.WizardMultiWAN}
	var unknown []string
	for _, u := range ups {
		gw := finding.Placeholder("GATEWAY")
		if u.Gateway.IsValid() {
			gw = u.Gateway.String()
		} else {
			unknown = append(unknown, u.Name)
		}
		f.Args = append(f.Args, "--wan", u.Name+":"+gw)
	}
	if len(unknown) > 0 {
		f.Missing = fmt.Sprintf("the gateway of %s: no route of this host names one; put the router's address on that link in place of <GATEWAY>", strings.Join(unknown, " and "))
	}
	return f
}

// limit keeps the first n lines and says how many more there are.
func limit(lines []string, n int) []string {
	if len(lines) <= n {
		return lines
	}
	return append(lines[:n:n], fmt.Sprintf("... and %d more", len(lines)-n))
}

// uplink is an interface with a way out through a router: a route via a gateway, or a default
// route, in some table.
type uplink struct {
	Name    string
	Gateway netip.Addr
	Default bool
	// Routes holds the first few of its routes, as `ip route` commands, and NRoutes how many it
	// has: evidence stays small when a full table goes through the uplink.
	Routes  []string
	NRoutes int
}

// uplinkRoutesKept is how many routes of an uplink are kept as evidence.
const uplinkRoutesKept = 3

func (d *doctor) uplinks(f inet.Family) []uplink {
	fi := 0
	if f == inet.V6 {
		fi = 1
	}
	if !d.upsMade[fi] {
		d.ups[fi] = d.makeUplinks(f)
		d.upsMade[fi] = true
	}
	return d.ups[fi]
}

func (d *doctor) makeUplinks(f inet.Family) []uplink {
	byName := map[string]*uplink{}
	var order []string
	note := func(dev string, gw netip.Addr, r *model.Route) {
		if dev == "" || dev == "lo" {
			return
		}
		u := byName[dev]
		if u == nil {
			u = &uplink{Name: dev}
			byName[dev] = u
			order = append(order, dev)
		}
		if !u.Gateway.IsValid() || r.Dst.Bits() == 0 && !u.Default {
			if gw.IsValid() {
				u.Gateway = gw
			}
		}
		if r.Dst.Bits() == 0 {
			u.Default = true
		}
		if len(u.Routes) < uplinkRoutesKept {
			u.Routes = append(u.Routes, "ip route "+r.Args(d.s.TableName))
		}
		u.NRoutes++
	}
	for i := range d.s.Routes {
		d.step()
		r := &d.s.Routes[i]
		if r.Family != f || r.Table == model.TableLocal || r.Type != model.RouteUnicast && r.Type != "" {
			continue
		}
		if r.Gateway.IsValid() || r.Dst.Bits() == 0 {
			note(r.Dev, r.Gateway, r)
		}
		for _, nh := range r.Nexthops {
			note(nh.Dev, nh.Gateway, r)
		}
	}
	out := make([]uplink, 0, len(order))
	for _, n := range order {
		out = append(out, *byName[n])
	}
	return out
}

// primaryUplink is the interface of main's preferred default route: where this host's own
// traffic goes, and what needs no extra return routing.
func (d *doctor) primaryUplink(f inet.Family) string {
	best, dev := -1, ""
	for _, i := range d.table(f, model.TableMain).defaults {
		d.step()
		r := &d.s.Routes[i]
		if r.Type != model.RouteUnicast && r.Type != "" {
			continue
		}
		name := r.Dev
		if name == "" && len(r.Nexthops) > 0 {
			name = r.Nexthops[0].Dev
		}
		if best < 0 || r.Metric < best {
			best, dev = r.Metric, name
		}
	}
	return dev
}

func (d *doctor) rpFilterStrict(ups []uplink) {
	if len(ups) < 2 {
		return
	}
	var strict, names []string
	for _, u := range ups {
		names = append(names, u.Name)
		if d.s.Sysctls.RPFilter(u.Name) == 1 {
			strict = append(strict, u.Name)
		}
	}
	if len(strict) == 0 {
		return
	}
	ev := []string{"uplinks: " + strings.Join(names, ", ")}
	for _, n := range strict {
		ev = append(ev, fmt.Sprintf("%s: %s=%s, %s=%s (strict)", n, model.ConfKey("all", "rp_filter"), d.s.Sysctls.Text(model.ConfKey("all", "rp_filter")), model.ConfKey(n, "rp_filter"), d.s.Sysctls.Text(model.ConfKey(n, "rp_filter"))))
	}
	cmds := []string{quote.ShellJoin("sysctl", "-w", model.ConfKey("all", "rp_filter")+"=2")}
	for _, n := range strict {
		cmds = append(cmds, quote.ShellJoin("sysctl", "-w", model.ConfKey(n, "rp_filter")+"=2"))
	}
	d.add(finding.Finding{ID: FindingRPFilterStrict, Severity: finding.SeverityWarning,
		Summary:  fmt.Sprintf("strict reverse-path filtering on %s of a host with %d uplinks: packets arriving on one uplink from addresses routed via another are dropped", strings.Join(strict, ", "), len(ups)),
		Evidence: ev,
		Fix:      multiWANFix("use loose mode: "+strings.Join(cmds, "; ")+"; or set the uplinks up as a multi-WAN host (which loosens it where needed)", ups)})
}

// uplinkReturn finds uplinks whose connections are answered through another uplink: for each
// uplink but the primary, replies from its addresses are looked up (with the FIB, so any
// policy rule counts) toward the networks this host reaches through routers; a reply leaving
// through another uplink's gateway means no return routing. Return routing by fwmark (CONNMARK)
// counts when a fwmark rule leads to a table with a route through the uplink.
func (d *doctor) uplinkReturn(ups []uplink) {
	if len(ups) < 2 {
		return
	}
	primary := d.primaryUplink(inet.V4)
	probes := d.probeDestinations(inet.V4)
	for _, u := range ups {
		if u.Name == primary || d.markReturn(u.Name) {
			continue
		}
		l := d.s.LinkByName(u.Name)
		if l == nil {
			continue
		}
		var ev []string
		var from netip.Addr
		for _, a := range l.Addrs {
			if inet.FamilyOf(a.Prefix.Addr()) != inet.V4 || a.Scope != "" && a.Scope != "global" {
				continue
			}
			for _, dst := range probes {
				d.step()
				if a.Prefix.Masked().Contains(dst) {
					continue
				}
				r := d.fib.Lookup(fib.Flow{Family: inet.V4, Src: a.Prefix.Addr(), Dst: dst})
				if r.Verdict == model.RouteUnicast && r.OIF != u.Name && r.Gateway.IsValid() {
					if !from.IsValid() {
						from = a.Prefix.Addr()
					}
					ev = append(ev, fmt.Sprintf("a reply from %s to %s leaves by %s: %s", a.Prefix.Addr(), dst, r.OIF, r.Explain(d.s.TableName)))
				}
			}
		}
		if len(ev) == 0 {
			continue
		}
		ev = append([]string{fmt.Sprintf("%s is an uplink: %s", u.Name, u.Routes[0])}, limit(ev, 4)...)
		uplink := u.Name
		if u.Gateway.IsValid() {
			uplink += ":" + u.Gateway.String()
		}
		args := []string{"--uplink", uplink}
		d.add(finding.Finding{ID: FindingUplinkNoReturn, Severity: finding.SeverityWarning,
			Summary:  fmt.Sprintf("connections that come in on uplink %s (to %s) are answered through another uplink: no ip rule sends them back the way they came", u.Name, from),
			Evidence: ev,
			Fix: finding.Fix{Summary: fmt.Sprintf("a table for %s with its connected and default routes, and `ip rule add from %s table T` (or CONNMARK by ingress and ip rule fwmark)", u.Name, from),
				Wizard: finding.WizardSourceReturn, Args: args}})
	}
}

// markReturn reports whether a fwmark rule leads to a table routing through the interface.
func (d *doctor) markReturn(dev string) bool {
	for _, r := range d.s.Rules {
		d.step()
		if r.Mark == nil || r.Action != model.ActionTable && r.Action != "" {
			continue
		}
		if d.table(r.Family, r.Table).devs[dev] {
			return true
		}
	}
	return false
}

// probeDestinations are addresses to ask the FIB about: one inside a prefix this host routes
// via a gateway, for each table and way out (gateway and device; the first route of each
// stands for the others, so a full table through one router costs one probe), and for
// default routes one outside every other prefix.
func (d *doctor) probeDestinations(f inet.Family) []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	type way struct {
		table       int
		gw          netip.Addr
		dev         string
		nhGw        netip.Addr // the first nexthop's, for multipath routes
		nhDev       string
		nexthops    int
		defaultDest bool
	}
	ways := map[way]bool{}
	var outsideAddr netip.Addr
	outsideMade := false
	for i := range d.s.Routes {
		d.step()
		r := &d.s.Routes[i]
		if r.Family != f || r.Table == model.TableLocal || !r.Gateway.IsValid() && len(r.Nexthops) == 0 {
			continue
		}
		w := way{table: r.Table, gw: r.Gateway, dev: r.Dev, nexthops: len(r.Nexthops), defaultDest: r.Dst.Bits() == 0}
		if len(r.Nexthops) > 0 {
			w.nhGw, w.nhDev = r.Nexthops[0].Gateway, r.Nexthops[0].Dev
		}
		if ways[w] {
			continue
		}
		ways[w] = true
		var a netip.Addr
		if r.Dst.Bits() == 0 {
			if !outsideMade {
				outsideAddr = d.outside(f)
				outsideMade = true
			}
			a = outsideAddr
		} else {
			a = r.Dst.Masked().Addr()
			if r.Dst.Bits() < r.Dst.Addr().BitLen() {
				a = a.Next() // not the network address itself
			}
		}
		if a.IsValid() && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// outside returns a documentation address covered by no route of the family (in any table but
// local) but default routes.
func (d *doctor) outside(f inet.Family) netip.Addr {
	cands := []string{"198.51.100.1", "203.0.113.1", "192.0.2.1", "100.64.0.1"}
	if f == inet.V6 {
		cands = []string{"2001:db8::1", "2001:db8:ffff::1"}
	}
	for _, c := range cands {
		a := netip.MustParseAddr(c)
		covered := false
		for k := range d.tables {
			d.step()
			if k.fam == f && k.table != model.TableLocal && d.fib.Covers(f, k.table, netip.PrefixFrom(a, a.BitLen())) {
				covered = true
				break
			}
		}
		if !covered {
			return a
		}
	}
	return netip.Addr{}
}

// dnatWithoutSNAT finds DNAT rules whose backend is on the network their clients come from
// and no SNAT/MASQUERADE rule catches the forwarded packets (case 5; hairpin in case 2). The
// check runs nat POSTROUTING on the packet as the DNAT leaves it, from a client on that network.
func (d *doctor) dnatWithoutSNAT() {
	reach := map[*iptables.Table]map[string]map[string]bool{}
	d.nfRules("nat", func(t *iptables.Table, c *iptables.Chain, r *iptables.Rule) {
		if r.Target != "DNAT" {
			return
		}
		if reach[t] == nil {
			reach[t] = hooksReaching(t)
		}
		if !reach[t][c.Name]["PREROUTING"] {
			// Only packets that arrive are port-forwarded; a DNAT only OUTPUT reaches
			// redirects this host's own connections, whose replies come back to it.
			return
		}
		o, ok := r.TargetOption("to-destination")
		if !ok || len(o.Values) == 0 {
			return
		}
		backend, port, err := netfilter.ParseNATRange(t.Family, o.Values[0])
		if err != nil || !backend.IsValid() || d.nf.AddrType(backend, "") == "LOCAL" {
			return
		}
		out, pfx := d.linkOf(backend)
		if out == "" {
			return
		}
		if d.bridge(out) && d.s.Sysctls.BridgeNFCall(t.Family) {
			// Clients on the backend's bridge get their replies bridged through this host,
			// where br_netfilter hands them to conntrack, which undoes the DNAT.
			return
		}
		in := out // without -i, clients on the backend's own network reach the DNAT too
		if r.In != nil {
			if r.In.Not || strings.HasSuffix(r.In.Value, "+") {
				return
			}
			in = r.In.Value
			if _, shared := model.PrefixContaining(d.connected[in], backend); !shared {
				return
			}
		}
		client := d.clientIn(pfx, backend)
		if !client.IsValid() {
			return
		}
		if !rulesReachedFrom(t, "PREROUTING", in)[r] {
			// Packets from that network never get to the rule: an earlier rule sends them
			// elsewhere for good (firewalld's -g to the zone of their interface).
			return
		}
		proto := 6
		if r.Proto != nil && !r.Proto.Not {
			if n, err := inet.ProtoNumber(strings.ToLower(r.Proto.Value)); err == nil {
				proto = n
			}
		}
		listenPort := ruleDPort(r)
		if port == 0 {
			port = listenPort
		}
		p := &netfilter.Packet{Family: t.Family, Proto: proto, Src: client, Dst: backend, SPort: 40000, DPort: port,
			IIF: in, OIF: out, NextHop: backend, ICMPType: -1, TCPFlags: netfilter.TCPSYN}
		// Every backend's nat POSTROUTING: an SNAT in either catches the packet.
		backends, _ := d.nf.TableOrder(t.Family, "nat")
		for _, b := range backends {
			res := d.nf.RunIn(b, "nat", "POSTROUTING", p, &netfilter.Conn{State: netfilter.CTNew, DNAT: true})
			if p.Src != client || len(res.Uncertain) > 0 {
				return // SNATed (or cannot tell)
			}
		}
		text := d.ruleText(t, c, r)
		ev := []string{text,
			fmt.Sprintf("%s is on %s (%s); requests arrive on %s", backend, out, pfx, in),
			fmt.Sprintf("no SNAT or MASQUERADE in nat POSTROUTING catches %s -> %s out %s", client, backend, out)}
		fixPrefix := ""
		if d.bridge(out) {
			ev = append(ev, fmt.Sprintf("%s is a bridge of this host and br_netfilter is off (%s): replies bridged between its ports bypass conntrack", out, d.s.Sysctls.BridgeNFText(t.Family)))
			fixPrefix = fmt.Sprintf("turn br_netfilter on (modprobe br_netfilter; %s), or ", quote.ShellJoin("sysctl", "-w", model.BridgeNFKey(t.Family)+"=1"))
		}
		self := d.fib.MasqueradeAddr(out, backend, backend)
		protoName := ""
		if r.Proto != nil {
			protoName = strings.ToLower(r.Proto.Value)
		}
		fix := finding.SNATCommand(t.Family, backend, protoName, port, self)
		d.add(finding.Finding{ID: FindingDNATWithoutSNAT, Severity: finding.SeverityWarning,
			Summary:  fmt.Sprintf("DNAT to %s, which is on %s (%s) where its clients are too, without SNAT: the backend answers clients on %s directly and the connection fails", backend, out, pfx, pfx),
			Evidence: ev,
			Fix: finding.PortForwardFix(fixPrefix+"SNAT the forwarded traffic to this host's address: "+fix,
				finding.PortForwardArgs(proto, ruleIn(*r), netip.AddrPortFrom(ruleDstAddr(*r), listenPort), netip.AddrPortFrom(backend, port)))})
	})
}

// bridge reports whether an interface is a bridge of this host.
func (d *doctor) bridge(iface string) bool {
	l := d.s.LinkByName(iface)
	return l != nil && l.Kind == "bridge"
}

// ruleDPort returns the first destination port a rule matches, or 0.
func ruleDPort(r *iptables.Rule) uint16 {
	for _, m := range r.Matches {
		for _, o := range m.Options {
			if (o.Name == "dport" || o.Name == "destination-port" || o.Name == "dports") && len(o.Values) == 1 && !o.Not {
				if p, err := netfilter.FirstPort(strings.Split(o.Values[0], ",")[0]); err == nil {
					return p
				}
			}
		}
	}
	return 0
}

// linkOf returns the interface and network an address is on-link with.
func (d *doctor) linkOf(a netip.Addr) (string, netip.Prefix) {
	for _, l := range d.s.Links {
		d.step()
		if p, ok := model.PrefixContaining(d.connected[l.Name], a); ok && p.Bits() < p.Addr().BitLen() {
			return l.Name, p
		}
	}
	return "", netip.Prefix{}
}

// clientIn picks an address of the network that is neither the backend nor this host's.
func (d *doctor) clientIn(p netip.Prefix, not netip.Addr) netip.Addr {
	a := p.Masked().Addr().Next()
	for i := 0; i < 256 && p.Contains(a); i++ {
		if a != not && d.nf.AddrType(a, "") != "LOCAL" {
			return a
		}
		a = a.Next()
	}
	return netip.Addr{}
}

// tablesMissingConnected finds tables used by ip rules that have a default route but lack the
// connected networks of the host's LAN interfaces (those without gateways): traffic for the LAN selected into such a
// table (replies to LAN clients, hairpin) leaves by the uplink instead.
func (d *doctor) tablesMissingConnected() {
	used := map[int]bool{}
	for _, r := range d.s.Rules {
		d.step()
		if r.Action == model.ActionTable || r.Action == "" {
			used[r.Table] = true
		}
	}
	var ids []int
	seen := map[int]bool{}
	for k := range d.tables {
		d.step()
		if !seen[k.table] {
			seen[k.table] = true
			ids = append(ids, k.table)
		}
	}
	slices.SortFunc(ids, model.CompareTables) // State.Tables' order
	isUplink := [2]map[string]bool{}
	for fi, f := range []inet.Family{inet.V4, inet.V6} {
		// The transfer networks of other uplinks are not LAN: only their own table needs them.
		isUplink[fi] = map[string]bool{}
		for _, u := range d.uplinks(f) {
			isUplink[fi][u.Name] = true
		}
	}
	for _, id := range ids {
		if id == model.TableMain || id == model.TableLocal || id == model.TableDefault || !used[id] {
			continue
		}
		for fi, f := range []inet.Family{inet.V4, inet.V6} {
			defDev := d.table(f, id).defDev
			if defDev == "" {
				continue
			}
			var missing, cmds []string
			for _, ci := range d.table(f, model.TableMain).links {
				d.step()
				c := &d.s.Routes[ci]
				if c.Dev == defDev || isUplink[fi][c.Dev] {
					continue
				}
				if f == inet.V6 && c.Dst.Addr().IsLinkLocalUnicast() {
					continue
				}
				if !d.fib.Covers(f, id, c.Dst) {
					missing = append(missing, fmt.Sprintf("%s dev %s", c.Dst, c.Dev))
					cmds = append(cmds, quote.ShellJoin("ip", "route", "add", c.Dst.String(), "dev", c.Dev, "table", d.s.TableName(id)))
				}
			}
			if len(missing) == 0 {
				continue
			}
			d.add(finding.Finding{ID: FindingTableMissingConnected, Severity: finding.SeverityWarning,
				Summary:  fmt.Sprintf("table %s sends everything out %s but lacks this host's networks %s: LAN traffic selected into it (replies to LAN clients, hairpin) leaves by the uplink", d.s.TableName(id), defDev, strings.Join(missing, ", ")),
				Evidence: append([]string{fmt.Sprintf("table %s has a default route via %s and no route for:", d.s.TableName(id), defDev)}, missing...),
				// No wizard: the routes are the whole fix; the multi-wan wizard would build
				// tables of its own beside this one.
				Fix: finding.Fix{Summary: strings.Join(cmds, "; ")}})
		}
	}
}

func (d *doctor) duplicateRules() {
	groups := map[string][]model.Rule{}
	var order []string
	for _, r := range d.s.Rules {
		d.step()
		key := fmt.Sprintf("%s %s %s", r.Family, r.Selectors(), r.ActionString(model.NumericTable))
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], r)
	}
	for _, k := range order {
		g := groups[k]
		if len(g) < 2 {
			continue
		}
		var ev, del []string
		for i, r := range g {
			ev = append(ev, fmt.Sprintf("ip %s rule %s", r.Family.Flag(), r.Args(d.s.TableName)))
			if i > 0 {
				del = append(del, quote.ShellJoin(append([]string{"ip", r.Family.Flag(), "rule", "del"}, r.Argv(d.s.TableName)...)...))
			}
		}
		d.add(finding.Finding{ID: FindingDuplicateRule, Severity: finding.SeverityWarning,
			Summary:  fmt.Sprintf("%d ip rules have the same selectors and action (%s %s): a script ran twice?", len(g), g[0].Selectors(), g[0].ActionString(d.s.TableName)),
			Evidence: ev,
			Fix:      finding.Fix{Summary: "delete the copies: " + strings.Join(del, "; ")}})
	}
}

func (d *doctor) duplicateIPTablesRules() {
	for _, t := range d.s.Netfilter.Tables {
		for _, c := range t.Chains {
			count := map[string]int{}
			var order []string
			for _, r := range c.Rules {
				d.step()
				if count[r.Spec] == 0 {
					order = append(order, r.Spec)
				}
				count[r.Spec]++
			}
			for _, spec := range order {
				if count[spec] < 2 {
					continue
				}
				cmd := d.s.Netfilter.TableCommand(&t)
				text := fmt.Sprintf("%s -t %s -A %s %s", cmd, t.Name, c.Name, spec)
				fix := "delete the copies with " + cmd + " -D (once per copy)"
				if toks, err := iptables.SplitArgs(spec); err == nil {
					words := []string{cmd, "-t", t.Name, "-D", c.Name}
					for _, tok := range toks {
						words = append(words, tok.Text)
					}
					fix = fmt.Sprintf("delete the copies: %s (once per copy)", quote.ShellJoin(words...))
				}
				d.add(finding.Finding{ID: FindingDuplicateIPTablesRule, Severity: finding.SeverityWarning,
					Summary:  fmt.Sprintf("the same rule is %d times in %s %s: a script ran twice?", count[spec], t.Name, c.Name),
					Evidence: []string{text},
					Fix:      finding.Fix{Summary: fix}})
			}
		}
	}
}

func (d *doctor) rulesOnEmptyTables() {
	for _, r := range d.s.Rules {
		d.step()
		if r.Action != model.ActionTable && r.Action != "" || r.Table == model.TableLocal || r.Table == model.TableDefault || r.Table == model.TableMain {
			continue
		}
		if d.table(r.Family, r.Table).routes > 0 {
			continue
		}
		text := fmt.Sprintf("ip %s rule %s", r.Family.Flag(), r.Args(d.s.TableName))
		d.add(finding.Finding{ID: FindingRuleEmptyTable, Severity: finding.SeverityWarning,
			Summary:  fmt.Sprintf("rule %d looks up table %s, which has no %s routes: it does nothing, and the packets it should steer take the main table", r.Priority, d.s.TableName(r.Table), r.Family),
			Evidence: []string{text},
			Fix:      finding.Fix{Summary: fmt.Sprintf("add the routes of table %s (they are lost on reboot or when their interface goes down unless persisted), or delete the rule", d.s.TableName(r.Table))}})
	}
}

func (d *doctor) gatewaysNotOnLink() {
	// A full table goes through a few gateways: each is looked up once per table and device.
	type key struct {
		table int
		gw    netip.Addr
		dev   string
	}
	onLink := map[key]bool{}
	for i := range d.s.Routes {
		d.step()
		r := &d.s.Routes[i]
		check := func(gw netip.Addr, dev string, onlink bool) {
			if !gw.IsValid() || onlink || dev == "" {
				return
			}
			k := key{r.Table, gw, dev}
			ok, known := onLink[k]
			if !known {
				d.step()
				ok = d.fib.OnLink(r.Table, gw, dev)
				onLink[k] = ok
			}
			if ok {
				return
			}
			text := "ip route " + r.Args(d.s.TableName)
			d.add(finding.Finding{ID: FindingGatewayNotOnLink, Severity: finding.SeverityWarning,
				Summary:  fmt.Sprintf("the gateway %s of route %s is on none of %s's networks: the route cannot reach it", gw, r.Dst, dev),
				Evidence: []string{text, fmt.Sprintf("networks of %s: %s", dev, prefixList(d.connected[dev]))},
				Fix:      finding.Fix{Summary: fmt.Sprintf("fix the gateway or device, add an address of %s's network to %s, or add the route with `onlink` if the gateway really is on that wire", gw, dev)}})
		}
		check(r.Gateway, r.Dev, r.OnLink)
		for _, nh := range r.Nexthops {
			check(nh.Gateway, nh.Dev, nh.OnLink)
		}
	}
}

func prefixList(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "none"
	}
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ", ")
}

func (d *doctor) conntrackFull() {
	count := d.s.Sysctls.Int(model.SysctlConntrackCount, -1)
	maxN := d.s.Sysctls.Int(model.SysctlConntrackMax, 0)
	if count < 0 || maxN <= 0 || count*10 < maxN*9 {
		return
	}
	sev := finding.SeverityWarning
	what := "nearly full"
	if count >= maxN {
		sev, what = finding.SeverityError, "full: new connections are dropped (\"nf_conntrack: table full, dropping packet\")"
	}
	d.add(finding.Finding{ID: FindingConntrackFull, Severity: sev,
		Summary:  fmt.Sprintf("the conntrack table is %s: %d of %d entries", what, count, maxN),
		Evidence: []string{fmt.Sprintf("%s = %d", model.SysctlConntrackCount, count), fmt.Sprintf("%s = %d", model.SysctlConntrackMax, maxN)},
		Fix:      finding.Fix{Summary: fmt.Sprintf("raise %s (sysctl -w %s=%d) or find what opens so many connections (conntrack -L)", model.SysctlConntrackMax, model.SysctlConntrackMax, maxN*2)}})
}

// ruleIn is the rule's positive -i interface, or "".
func ruleIn(r iptables.Rule) string {
	if r.In == nil || r.In.Not {
		return ""
	}
	return r.In.Value
}

// ruleDstAddr is the single address a rule's positive -d matches, or the zero address.
func ruleDstAddr(r iptables.Rule) netip.Addr {
	if r.Dst == nil || r.Dst.Not {
		return netip.Addr{}
	}
	p, err := netip.ParsePrefix(r.Dst.Prefix)
	if err != nil {
		a, err := netip.ParseAddr(r.Dst.Prefix)
		if err != nil {
			return netip.Addr{}
		}
		return a
	}
	if !p.IsSingleIP() {
		return netip.Addr{}
	}
	return p.Addr()
}
