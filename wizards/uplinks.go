package wizards

import (
	"fmt"
	"math/bits"
	"net/netip"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// returnUplink is one uplink whose connections must be answered through it: the table it gets,
// and the other links whose networks that table must reach too.
type returnUplink struct {
	link    *model.Link
	gateway netip.Addr
	table   string
	// lans are links whose connected networks go into the uplink's table, so that forwarded
	// packets routed by that table (a DNAT to a LAN server, a marked reply) still reach them.
	lans []*model.Link
}

// returnRouting plans "back the way it came" for a set of uplinks (case 1, and the replies of
// case 2): a table per uplink with its connected network and its default route, then either or
// both of
//   - byAddress: `ip rule from ADDR lookup T` for each address of the uplink, which answers
//     connections to this host's own addresses through the uplink that owns the address;
//   - byConnmark: connections are marked (CONNMARK) with the uplink they came in on, the mark
//     is copied to every later packet of the connection, in PREROUTING for forwarded replies
//     and in OUTPUT for replies of local sockets, and `ip rule fwmark` picks the table. This
//     also works for forwarded (DNATed) connections and for addresses shared by uplinks.
//
// chainPrefix names the mangle chains of the connmark variant.
func (b *builder) returnRouting(ups []returnUplink, byAddress, byConnmark bool, chainPrefix string) error {
	ids := make([]int, len(ups))
	for i, u := range ups {
		id, err := b.table(u.table, fmt.Sprintf("the routing table of uplink %s", u.link.Name))
		if err != nil {
			return err
		}
		ids[i] = id
		var planned []model.Route
		addConnected := func(l *model.Link, why string) {
			for _, a := range v4Addrs(l) {
				r := model.Route{Table: id, Dst: a.Masked(), Dev: l.Name, Src: a.Addr(), Scope: "link"}
				b.route(r, why)
				planned = append(planned, r)
			}
		}
		addConnected(u.link, fmt.Sprintf("%s's own network, so that answers to neighbours on it stay on it", u.link.Name))
		for _, l := range u.lans {
			addConnected(l, fmt.Sprintf("the LAN %s, so that connections routed by this table still reach it", l.Name))
		}
		def := model.Route{Table: id, Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Gateway: u.gateway, Dev: u.link.Name}
		b.route(def, fmt.Sprintf("answers leave %s through its gateway %s", u.link.Name, u.gateway))
		planned = append(planned, def)
		if extra := extraRoutes(b.s, id, planned); len(extra) > 0 {
			b.notef("table %s (%d) also holds routes this plan does not make; they stay: %s", u.table, id, limitList(extra, 3))
		}
	}
	if byAddress {
		for i, u := range ups {
			for _, a := range v4Addrs(u.link) {
				r := model.Rule{Src: netip.PrefixFrom(a.Addr(), 32), Table: ids[i]}
				if err := b.rule(r, fmt.Sprintf("traffic from %s (an address of %s) uses %s's table: it leaves the way its connections came in", a.Addr(), u.link.Name, u.link.Name)); err != nil {
					return err
				}
			}
		}
	}
	if !byConnmark {
		return nil
	}
	mark, err := b.alloc.MarkBits(bits.Len(uint(len(ups))))
	if err != nil {
		return fmt.Errorf("choosing connection marks: %w", err)
	}
	b.notef("connections are marked with fwmark bits %#x, which nothing else on this host uses", mark.Mask)
	restore := fmt.Sprintf("-j CONNMARK --restore-mark --nfmask %#x --ctmask %#x", mark.Mask, mark.Mask)
	var pre []string
	for i, u := range ups {
		m := mark.Match(uint32(i + 1))
		pre = append(pre, fmt.Sprintf("-i %s -m conntrack --ctstate NEW -j CONNMARK --set-xmark %#x/%#x", u.link.Name, m.Value, m.Mask))
		r := model.Rule{Mark: &m, Table: ids[i]}
		if err := b.rule(r, fmt.Sprintf("packets of connections that came in on %s are routed by %s's table", u.link.Name, u.link.Name)); err != nil {
			return err
		}
		b.markRulesBefore(m, ids[i], u.link.Name)
		// With strict reverse-path filtering the kernel checks a packet arriving on the uplink
		// by looking up the route back to its source; only with src_valid_mark does that lookup
		// carry the packet's mark (fib_validate_source), so only then does it find the uplink's
		// table instead of main, which may point elsewhere.
		if b.s.Sysctls.RPFilter(u.link.Name) == 1 && !b.s.Sysctls.SrcValidMark(u.link.Name) {
			b.sysctl(model.ConfKey(u.link.Name, "src_valid_mark"), "1",
				fmt.Sprintf("rp_filter is strict on %s: its reverse-path check must see the connection's mark", u.link.Name))
			b.notef("rp_filter is strict on %s, so src_valid_mark is turned on there: the reverse-path check then uses the connection's mark", u.link.Name)
		}
	}
	pre = append(pre, restore)
	b.chain(plan.ChainSpec{Family: inet.V4, Table: "mangle", Name: chainPrefix + "PRE", Jumps: []plan.Jump{{Chain: "PREROUTING", Position: 1}}, Rules: pre},
		"mark each new connection with the uplink it came in on, and give every packet of a marked connection its mark before routing")
	b.chain(plan.ChainSpec{Family: inet.V4, Table: "mangle", Name: chainPrefix + "OUT", Jumps: []plan.Jump{{Chain: "OUTPUT", Position: 1}}, Rules: []string{restore}},
		"replies of local sockets get their connection's mark; the kernel routes them again after mangle OUTPUT changes the mark")
	return nil
}

// limitList joins the first n items and says how many more there are.
func limitList(items []string, n int) string {
	s := ""
	for i, it := range items {
		if i == n {
			return s + fmt.Sprintf("; and %d more", len(items)-n)
		}
		if i > 0 {
			s += "; "
		}
		s += it
	}
	return s
}

// markRulesBefore notes the host's rules that the kernel tries before the planned rule routing
// mark m to table id and that a packet carrying m can match: a mark rule whose mask leaves m's
// bits out (fwmark 0x2/0x2) takes the marked replies of a connection the host's own rule also
// marks, so they never reach the planned rule. Adding m's bits to that rule's mask keeps it
// for the host's packets and leaves the marked replies to the plan.
func (b *builder) markRulesBefore(m model.MarkMatch, id int, iface string) {
	prio := -1
	for _, r := range b.d.Rules {
		if r.Table == id && r.Mark != nil && *r.Mark == m {
			prio = r.Priority
		}
	}
	if prio < 0 {
		return
	}
	for _, x := range b.s.Rules {
		if x.Family != inet.V4 || x.Priority >= prio || x.Not || x.Mark == nil || b.ownRule(x) || x.Action == model.ActionGoto {
			continue
		}
		if x.Action == model.ActionTable && x.Table == id {
			continue
		}
		// The kernel compares fwmark & mask with the value: on the bits both masks hold the
		// values must agree; the host's other bits may be anything the host set.
		if (x.Mark.Value^m.Value)&x.Mark.Mask&m.Mask != 0 {
			continue
		}
		fixed := *x.Mark
		fixed.Mask |= m.Mask
		b.notef("ip rule %q comes before this plan's rule %d and also matches replies marked %#x/%#x for %s, so those the host marks too are routed by it, not by %s's table: "+
			"give it the mask %#x/%#x (`ip rule del priority %d`, then add it again with fwmark %#x/%#x) so that it leaves this plan's replies alone",
			x.Args(b.s.TableName), prio, m.Value, m.Mask, iface, iface, fixed.Value, fixed.Mask, x.Priority, fixed.Value, fixed.Mask)
	}
}
