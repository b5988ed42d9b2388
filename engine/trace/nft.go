package trace

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/netfilter"
	"roundtrip/engine/nft"
)

// This file is the one place where hook order is decided: trace's own stages on a hook (the
// iptables tables at their fixed priorities, conntrack at -200, the NAT core) and the native
// nftables base chains on it, run in the kernel's order, by priority (nft.HookOrder explains
// the kernel's rules). At equal priority the nft chain runs first: the kernel runs the most
// recently registered hook first, and a firewall loaded with nft usually comes after the
// modules. nat-type chains run inside the NAT core, in their priority order, for the first
// packet of a connection only, until one sets up NAT.
//
// Only native chains are evaluated here: iptables-nft's tables are the iptables model's,
// except for the native base chains of a table both wrote into (nft.Table.Native).

// stage is one of trace's own steps on a hook.
type stage struct {
	prio int32
	// nat marks the NAT core's stage; conntrack marks conntrack's (chains before it see no
	// conntrack entry).
	nat, conntrack bool
	// table is the iptables table an iptStage runs (for the note on equal priorities).
	table string
	run   func() bool
}

// Priorities of trace's stages (NF_IP_PRI_*).
const (
	prioRaw       = -300
	prioConntrack = -200
	prioMangle    = -150
	prioNATDst    = -100
	prioFilter    = 0
	prioNATSrc    = 100
)

// iptStage runs an iptables table at its priority.
func (t *tracer) iptStage(leg *Leg, table, hook string, p *netfilter.Packet, ct *netfilter.Conn) stage {
	prio := map[string]int32{"raw": prioRaw, "mangle": prioMangle, "filter": prioFilter}[table]
	return stage{prio: prio, table: table, run: func() bool { return t.table(leg, table, hook, p, ct) }}
}

// hook runs one netfilter hook for the packet: the stages (in priority order) with the
// native nft base chains of the hook between them. It returns false when the packet is
// dropped, rejected or cannot go on.
func (t *tracer) hook(leg *Leg, hook string, p *netfilter.Packet, ct *netfilter.Conn, stages ...stage) bool {
	if hook == "PREROUTING" && !t.ingress(leg, p, ct) {
		return false
	}
	chains := t.nftChains(hook, p.Family)
	if len(chains) == 0 {
		for _, s := range stages {
			if !s.run() {
				return false
			}
		}
		return true
	}
	var filters, nats []nftChain
	for _, c := range chains {
		if c.chain.Type == nft.TypeNAT {
			nats = append(nats, c)
		} else {
			filters = append(filters, c)
		}
	}
	// Before conntrack's own stage a packet has no conntrack entry; hooks without that stage
	// see the entry from the start.
	attached := !slices.ContainsFunc(stages, func(s stage) bool { return s.conntrack })
	next := 0
	// tie is the other order of nft chains that share the priority of an iptables table, run
	// beforehand to compare with the order taken once both have run; early is set when the
	// table ran before its tied chains (iptables-nft's table is the newer), with its result.
	var tie *tieRun
	early, earlyOK := false, true
	runFilters := func(s *stage) bool {
		upTo := int32(1<<31 - 1)
		if s != nil {
			upTo = s.prio
		}
		for ; next < len(filters); next++ {
			pr := filters[next].chain.Priority
			if pr > upTo {
				break
			}
			c := filters[next]
			if pr == upTo && s.table != "" && !early && tie == nil && t.hasRules(s.table, hook, p.Family) {
				end := next
				for end < len(filters) && filters[end].chain.Priority == pr {
					end++
				}
				tied := filters[next:end]
				newer := t.iptablesNewer(s.table, hook, p.Family, tied)
				if newer == "" {
					leg.Steps = append(leg.Steps, Step{Hook: "order", What: fmt.Sprintf("nft chain %s %s and iptables %s %s share priority %d: the kernel runs the most recently registered first, which is not visible; assumed the nft chain first", c.table, c.chain.Name, s.table, hook, pr)})
					tie = t.otherOrder(hook, *s, tied, p, ct, attached, true)
				} else {
					leg.Steps = append(leg.Steps, Step{Hook: "order", What: fmt.Sprintf("nft chain %s %s and iptables %s %s share priority %d: the kernel runs the most recently registered first; %s, so the iptables table is taken first", c.table, c.chain.Name, s.table, hook, pr, newer)})
					tie = t.otherOrder(hook, *s, tied, p, ct, attached, false)
					early, earlyOK = true, s.run()
					if !earlyOK {
						t.orderMatters(leg, tie, false, p, ct)
						tie = nil
						next = len(filters)
						return false
					}
				}
			}
			mark, src, dst := p.Mark, p.Src, p.Dst
			if !t.nftChain(leg, hook, c, p, ct, attached) {
				t.orderMatters(leg, tie, false, p, ct)
				tie = nil
				next = len(filters)
				return false
			}
			// A route chain routes a locally generated packet again when it changed the mark
			// or the addresses (nf_route_table_hook); filter chains do not.
			if hook == "OUTPUT" && c.chain.Type == nft.TypeRoute && (p.Mark != mark || p.Src != src || p.Dst != dst) &&
				!t.reroute(leg, p, fmt.Sprintf("nft route chain %s %s changed the packet", c.table, c.chain.Name)) {
				next = len(filters)
				return false
			}
		}
		if early && tie != nil {
			t.orderMatters(leg, tie, true, p, ct)
			tie = nil
		}
		return true
	}
	for i := range stages {
		s := &stages[i]
		early, earlyOK = false, true
		if !runFilters(s) {
			return false
		}
		switch {
		case early:
			// the table ran before the nft chains of its priority
		case s.nat:
			if !t.natCore(leg, hook, *s, nats, p, ct, attached) {
				return false
			}
		case !s.run():
			t.orderMatters(leg, tie, false, p, ct)
			return false
		}
		t.orderMatters(leg, tie, true, p, ct)
		tie = nil
		if s.conntrack {
			attached = true
		}
	}
	return runFilters(nil)
}

// tieRun is what an iptables table and the nft chains of its priority did to the packet when
// run in the order the trace does not take.
type tieRun struct {
	what    string // the iptables table and hook, for the finding
	assumed string // the order the trace takes
	ok      bool   // the packet went on
	p       netfilter.Packet
	ct      netfilter.Conn
	prio    int32
	chains  []string
}

// otherOrder runs the iptables stage s and the tied nft chains, the table first when
// tableFirst, on copies of the packet and its connection, and puts everything back: the
// kernel's order at equal priority is not in the state, so the order the trace takes is only
// an assumption, to be named when the other order ends differently.
func (t *tracer) otherOrder(hook string, s stage, tied []nftChain, p *netfilter.Packet, ct *netfilter.Conn, attached, tableFirst bool) *tieRun {
	p0, ct0, n0 := *p, *ct, len(t.res.Findings)
	seen := make(map[string]bool, len(t.seen))
	for k, v := range t.seen {
		seen[k] = v
	}
	natSetUp := t.natSetUp
	scratch := &Leg{}
	r := &tieRun{prio: s.prio, what: "iptables " + s.table + " " + hook, assumed: "the nft chain first", ok: true}
	if !tableFirst {
		r.assumed = "the iptables table first (it is the newer)"
	}
	if tableFirst {
		r.ok = t.table(scratch, s.table, hook, p, ct)
	}
	for _, c := range tied {
		r.chains = append(r.chains, c.table.String()+" "+c.chain.Name)
		if r.ok {
			r.ok = t.nftChain(scratch, hook, c, p, ct, attached)
		}
	}
	if !tableFirst && r.ok {
		r.ok = t.table(scratch, s.table, hook, p, ct)
	}
	r.p, r.ct = *p, *ct
	*p, *ct = p0, ct0
	t.res.Findings, t.seen, t.natSetUp = t.res.Findings[:n0], seen, natSetUp
	return r
}

// iptablesNewer says why iptables-nft's table of an iptables stage was registered on the hook
// after every tied native chain, from the handles nf_tables gives in creation order (tables
// in a namespace, chains in a table): "" when it was not, or when that cannot be told (the
// legacy backend holds the table, or iptables-nft's table is not in the state). A native
// chain added to an older table later is the case this misjudges; the uncertain finding
// still names the other order when it matters.
func (t *tracer) iptablesNewer(table, hook string, fam inet.Family, tied []nftChain) string {
	backends, _ := t.nf.TableOrder(fam, table)
	if len(backends) != 1 || backends[0] != iptables.BackendNFT || t.s.Nftables == nil {
		return ""
	}
	nf := nft.FamilyIP
	if fam == inet.V6 {
		nf = nft.FamilyIP6
	}
	it := t.s.Nftables.Table(nf, table)
	if it == nil || it.Origin != "iptables-nft" {
		return ""
	}
	ic := it.Chain(hook)
	if ic == nil || !ic.Base() {
		return ""
	}
	for _, c := range tied {
		if c.table == it {
			if ic.Handle <= c.chain.Handle {
				return ""
			}
		} else if it.Handle <= c.table.Handle {
			return ""
		}
	}
	return fmt.Sprintf("iptables-nft's table %s (handle %d) was created after %s (handle %d)", it, it.Handle, tied[0].table, tied[0].table.Handle)
}

// orderMatters adds an uncertain finding when the tied chains and table, in the order taken,
// left the packet otherwise than in the other order (ok: whether it went on); the leg's
// verdict is then uncertain, as for a table in both iptables backends.
func (t *tracer) orderMatters(leg *Leg, r *tieRun, ok bool, p *netfilter.Packet, ct *netfilter.Conn) {
	if r == nil {
		return
	}
	var diff []string
	if ok != r.ok {
		diff = append(diff, fmt.Sprintf("the packet goes on: %v, and %v in the other order", ok, r.ok))
	}
	if ok && r.ok {
		if p.Mark != r.p.Mark {
			diff = append(diff, fmt.Sprintf("the packet's mark is %#x, and %#x in the other order", p.Mark, r.p.Mark))
		}
		if ct.Mark != r.ct.Mark {
			diff = append(diff, fmt.Sprintf("the connection's mark is %#x, and %#x in the other order", ct.Mark, r.ct.Mark))
		}
		if p.Src != r.p.Src || p.Dst != r.p.Dst || p.SPort != r.p.SPort || p.DPort != r.p.DPort || p.OIF != r.p.OIF {
			diff = append(diff, fmt.Sprintf("the packet is %s, and %s in the other order", packetText(p), packetText(&r.p)))
		}
	}
	if len(diff) == 0 {
		return
	}
	leg.uncertain = true
	chains := "nft chain " + strings.Join(r.chains, ", nft chain ")
	key := "tie " + chains + " " + r.what + " " + strings.Join(diff, "\n")
	if t.seen[key] {
		return
	}
	t.seen[key] = true
	t.add(finding.Finding{ID: FindingUncertain, Severity: finding.SeverityWarning,
		Summary:  fmt.Sprintf("%s and %s share priority %d and their order changes the outcome: the kernel runs the most recently registered first, which the state shows only by creation order; the trace assumed %s", chains, r.what, r.prio, r.assumed),
		Evidence: diff,
		Fix: finding.Fix{Summary: "give one of them another priority (an nft chain at mangle - 1 or + 1), so that the order is defined; " +
			"`nft list hooks` shows the kernel's order"}})
}

// hasRules reports whether an iptables table's built-in chain on the hook has rules.
func (t *tracer) hasRules(table, hook string, fam inet.Family) bool {
	c := t.s.Netfilter.Table(fam, table).Chain(hook)
	return c != nil && len(c.Rules) > 0
}

// natCore is the NAT core's stage: for a new connection without NAT of this hook's kind, the
// native nat chains and the iptables nat table (the stage) in priority order until one sets
// NAT up; otherwise the stage alone (conntrack's reverse NAT of replies).
func (t *tracer) natCore(leg *Leg, hook string, s stage, nats []nftChain, p *netfilter.Packet, ct *netfilter.Conn, attached bool) bool {
	dst := hook == "PREROUTING" || hook == "OUTPUT"
	t.natSetUp = false
	done := func() bool {
		if dst {
			return ct.DNAT || t.natSetUp
		}
		return ct.SNAT || t.natSetUp
	}
	if ct.State != netfilter.CTNew || len(nats) == 0 || hook == "INPUT" && p.LocalOut {
		return s.run()
	}
	// A destination changed on OUTPUT routes the packet again (the stage does so itself).
	routed := p.Dst
	defer func() {
		if hook == "OUTPUT" && p.Dst != routed && leg.outcome == "" {
			t.reroute(leg, p, fmt.Sprintf("destination changed %s -> %s", routed, p.Dst))
		}
	}()
	stageRun := func() bool {
		ok := s.run()
		routed = p.Dst
		return ok
	}
	ranStage := false
	for _, c := range nats {
		if !ranStage && c.chain.Priority > s.prio {
			ranStage = true
			if !stageRun() {
				return false
			}
		}
		if done() {
			return true
		}
		if !t.nftChain(leg, hook, c, p, ct, attached) {
			return false
		}
	}
	if !ranStage && !done() {
		return stageRun()
	}
	return true
}

// nftChain is a native base chain on a hook.
type nftChain struct {
	table *nft.Table
	chain *nft.Chain
}

// nftChains lists the native base chains on a hook that see packets of the family, by
// priority; at equal priority the later created first, as the kernel runs them (defined
// within a table by the chain handles; between tables the newer table first is only the
// probable order, as nft.HookOrder says).
func (t *tracer) nftChains(hook string, fam inet.Family) []nftChain {
	rs := t.s.Nftables
	if rs == nil {
		return nil
	}
	h := nft.Hook(strings.ToLower(hook))
	pf := nft.FamilyIP
	if fam == inet.V6 {
		pf = nft.FamilyIP6
	}
	var out []nftChain
	for _, tb := range rs.Tables {
		if !tb.HasNative() || slices.Contains(tb.Flags, "dormant") || tb.Family != pf && tb.Family != nft.FamilyInet {
			continue
		}
		for _, c := range tb.Chains {
			if c.Hook == h && tb.Native(c) {
				out = append(out, nftChain{tb, c})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].chain, out[j].chain
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		if ti, tj := out[i].table.Handle, out[j].table.Handle; ti != tj {
			return ti > tj
		}
		return a.Handle > b.Handle
	})
	return out
}

// ingress runs the ingress chains of the input interface (netdev tables, and inet tables'
// ingress hook), by priority, before prerouting: before conntrack, so without a conntrack
// entry.
func (t *tracer) ingress(leg *Leg, p *netfilter.Packet, ct *netfilter.Conn) bool {
	rs := t.s.Nftables
	if rs == nil || p.IIF == "" {
		return true
	}
	var chains []nftChain
	for _, tb := range rs.Tables {
		if !tb.HasNative() || slices.Contains(tb.Flags, "dormant") || tb.Family != nft.FamilyNetdev && tb.Family != nft.FamilyInet {
			continue
		}
		for _, c := range tb.Chains {
			if c.Hook == nft.HookIngress && slices.Contains(c.Devices, p.IIF) {
				chains = append(chains, nftChain{tb, c})
			}
		}
	}
	sort.SliceStable(chains, func(i, j int) bool { return chains[i].chain.Priority < chains[j].chain.Priority })
	for _, c := range chains {
		if !t.nftChain(leg, "INGRESS", c, p, ct, false) {
			return false
		}
	}
	return true
}

// nftChain evaluates one native chain for the packet and applies what it did: the verdict,
// marks, NAT, notrack. It returns false when the packet does not go on.
func (t *tracer) nftChain(leg *Leg, hook string, c nftChain, p *netfilter.Packet, ct *netfilter.Conn, attached bool) bool {
	name := fmt.Sprintf("%s %s", c.table, c.chain.Name)
	label := "nft " + name
	pkt := t.nftPacket(hook, p, ct, attached)
	res := t.s.Nftables.EvalChain(c.table, c.chain, pkt, nil)
	if len(res.Outcomes) == 0 {
		return true
	}
	o := pickOutcome(res)
	if !res.Certain() {
		leg.uncertain = true
		t.nftUncertain(name, hook, res, o)
	}
	// the rule steps
	for _, st := range o.Path {
		// NAT is recorded with its translation below; an accepting policy says nothing.
		if st.Action == "nat" || st.Action == "policy" && c.chain.Policy != "drop" {
			continue
		}
		what := st.Action
		switch st.Action {
		case "match":
			what = "matched"
		case "accept":
			what = "accepted"
		case "drop":
			what = "dropped"
		case "reject":
			what = "rejected"
		case "jump", "goto", "return":
			what = st.Action
		case "policy":
			what = "no rule decided: " + st.Text
		}
		decisive := st.Action == "drop" || st.Action == "reject" || st.Action == "policy" && c.chain.Policy == "drop"
		rule := nftRuleText(st)
		if st.Action == "policy" {
			rule = fmt.Sprintf("chain %s { type %s hook %s priority %s; policy %s; }", name, c.chain.Type, c.chain.Hook, nft.PriorityName(c.table.Family, c.chain.Hook, c.chain.Priority), c.chain.Policy)
		}
		leg.Steps = append(leg.Steps, Step{Hook: t.nftStepLabel(c, st), What: what, Rule: rule, Decisive: decisive})
	}
	e := o.Effects
	if e.Mark != nil && *e.Mark != p.Mark {
		leg.Steps = append(leg.Steps, Step{Hook: label, What: fmt.Sprintf("mark %#x -> %#x", p.Mark, *e.Mark)})
		p.Mark = *e.Mark
	}
	if e.CtMark != nil && ct.State != netfilter.CTUntracked && *e.CtMark != ct.Mark {
		leg.Steps = append(leg.Steps, Step{Hook: label, What: fmt.Sprintf("connmark %#x -> %#x", ct.Mark, *e.CtMark)})
		ct.Mark = *e.CtMark
	}
	if e.Notrack {
		ct.State = netfilter.CTUntracked
		leg.Steps = append(leg.Steps, Step{Hook: label, What: "not tracked: no NAT, state UNTRACKED"})
	}
	if e.FlowOffload != "" {
		leg.Steps = append(leg.Steps, Step{Hook: label, What: fmt.Sprintf("flow offload to flowtable @%s: the connection's later packets bypass the hooks (not modelled further)", e.FlowOffload)})
	}
	for _, other := range e.Other {
		leg.Steps = append(leg.Steps, Step{Hook: label, What: "also: " + other})
	}
	if e.Nat != nil && o.Verdict == "accept" {
		if !t.nftNAT(leg, t.nftStepLabel(c, e.Nat.Step), hook, e.Nat, p, ct) {
			return false
		}
	}
	switch o.Verdict {
	case "accept":
		return true
	case "queue":
		leg.uncertain = true
		t.addUncertain(name, nftRuleText(lastStep(o)), "the packet is queued to a userspace program, whose verdict is not known")
		return true
	}
	// drop, reject, stolen
	leg.outcome = LegDrop
	verb := "dropped"
	if o.Verdict == "reject" {
		leg.outcome, verb = LegReject, "rejected"
	}
	last := lastStep(o)
	decider := nftRuleText(last)
	by := fmt.Sprintf("rule %s (handle %d)", last.Text, last.Handle)
	fix := fmt.Sprintf("allow the flow in chain %s before that rule (nft insert rule %s ... accept) if it should pass", name, name)
	if last.Action == "policy" {
		decider = fmt.Sprintf("policy %s of chain %s (hook %s)", c.chain.Policy, name, c.chain.Hook)
		by = "its policy " + c.chain.Policy
		fix = fmt.Sprintf("accept the flow in chain %s (nft add rule %s ... accept) if it should pass", name, name)
	}
	if last.Chain != "" && last.Chain != c.chain.Name {
		by += " in chain " + last.Chain
	}
	dir := "request"
	if ct.Reply {
		dir = "reply"
	}
	t.add(finding.Finding{ID: FindingFiltered, Severity: finding.SeverityError,
		Summary:  fmt.Sprintf("the %s is %s by nft chain %s: %s", dir, verb, name, by),
		Evidence: []string{decider, "packet: " + packetText(p)},
		Fix:      finding.Fix{Summary: fix}})
	return false
}

// nftStepLabel names the chain that holds a step's rule: the base chain, or the regular
// chain it jumped to (roundtrip's table hooks each of its chains from a base chain
// hook.HOOK.NAME that only jumps, so its DNAT is in NAME, where `nft list` shows it).
func (t *tracer) nftStepLabel(c nftChain, st nft.Step) string {
	chain := c.chain.Name
	if st.Chain != "" {
		chain = st.Chain
	}
	return fmt.Sprintf("nft %s %s", c.table, chain)
}

func lastStep(o *nft.Outcome) nft.Step {
	if len(o.Path) == 0 {
		return nft.Step{}
	}
	return o.Path[len(o.Path)-1]
}

// nftRuleText is a rule as `nft -a list ruleset` prints it: its text and its handle.
func nftRuleText(st nft.Step) string {
	if st.Action == "policy" || st.Handle == 0 {
		return st.Text
	}
	return fmt.Sprintf("%s # handle %d", st.Text, st.Handle)
}

// pickOutcome takes the outcome in which every undecidable expression did not match, as the
// iptables path assumes, else the first.
func pickOutcome(res *nft.Result) *nft.Outcome {
	for i := range res.Outcomes {
		o := &res.Outcomes[i]
		all := true
		for _, c := range o.Conditions {
			if !strings.HasPrefix(c.Branch, "did not match") && !strings.HasPrefix(c.Branch, "no element") {
				all = false
			}
		}
		if all {
			return o
		}
	}
	return &res.Outcomes[0]
}

// nftUncertain reports the expressions of a chain the evaluation could not decide.
func (t *tracer) nftUncertain(name, hook string, res *nft.Result, o *nft.Outcome) {
	var ev []string
	seen := map[string]bool{}
	for _, oc := range res.Outcomes {
		for _, c := range oc.Conditions {
			line := fmt.Sprintf("%s: %s (%s)", nftRuleText(c.Step), c.Expr, c.Reason)
			if !seen[line] {
				seen[line] = true
				ev = append(ev, line)
			}
		}
	}
	if res.Truncated {
		ev = append(ev, "more outcomes than were explored")
	}
	key := "nft " + name + " " + strings.Join(ev, "\n")
	if t.seen[key] {
		return
	}
	t.seen[key] = true
	t.add(finding.Finding{ID: FindingUncertain, Severity: finding.SeverityWarning,
		Summary:  fmt.Sprintf("nft chain %s (hook %s) has expressions the trace cannot decide; it assumed: verdict %s", name, strings.ToLower(hook), o.Verdict),
		Evidence: ev,
		Fix:      finding.Fix{Summary: "check by hand whether these rules match the flow (`nft -a list chain " + name + "` shows their counters)"}})
}

func (t *tracer) addUncertain(name, rule, why string) {
	if t.seen[rule+why] {
		return
	}
	t.seen[rule+why] = true
	t.add(finding.Finding{ID: FindingUncertain, Severity: finding.SeverityWarning,
		Summary:  fmt.Sprintf("a rule in nft chain %s cannot be evaluated: %s", name, why),
		Evidence: []string{rule},
		Fix:      finding.Fix{Summary: "check by hand what happens to the flow there"}})
}

// nftNAT applies a native chain's NAT to the packet, as the iptables targets do.
func (t *tracer) nftNAT(leg *Leg, label, hook string, a *nft.NatAction, p *netfilter.Packet, ct *netfilter.Conn) bool {
	rule := nftRuleText(a.Step)
	if a.Unknown != "" {
		leg.uncertain = true
		t.addUncertain(strings.TrimPrefix(label, "nft "), rule, a.Type+": "+a.Unknown)
		return true
	}
	hasPorts := p.Proto == 6 || p.Proto == 17 || p.Proto == 132 || p.Proto == 33 || p.Proto == 136
	var what string
	switch a.Type {
	case "dnat", "redirect":
		old := netip.AddrPortFrom(p.Dst, p.DPort)
		addr := a.AddrMin
		if a.Type == "redirect" {
			addr = t.redirectAddr(p)
			if !addr.IsValid() {
				return t.natFails(leg, label, rule, a.Type)
			}
		}
		if addr.IsValid() {
			p.Dst = addr
		}
		if hasPorts {
			p.DPort = natPort(p.DPort, a)
		}
		what = fmt.Sprintf("%s %s -> %s", strings.ToUpper(a.Type), inet.Endpoint(old), inet.Endpoint(netip.AddrPortFrom(p.Dst, p.DPort)))
		// The kernel marks the connection as DNATed only when the tuple changed
		// (nf_nat_setup_info); NAT is set up, and no later nat chain runs, either way.
		ct.DNAT = netip.AddrPortFrom(p.Dst, p.DPort) != old
		ct.DNATBy = strings.TrimPrefix(label, "nft ")
		t.natSetUp = true
	case "snat", "masquerade":
		old := netip.AddrPortFrom(p.Src, p.SPort)
		addr := a.AddrMin
		if a.Type == "masquerade" {
			addr = t.fib.MasqueradeAddr(p.OIF, p.NextHop, p.Dst)
			if !addr.IsValid() {
				return t.natFails(leg, label, rule, a.Type)
			}
		}
		if addr.IsValid() {
			p.Src = addr
		}
		if hasPorts {
			p.SPort = natPort(p.SPort, a)
		}
		what = fmt.Sprintf("%s %s -> %s", strings.ToUpper(a.Type), inet.Endpoint(old), inet.Endpoint(netip.AddrPortFrom(p.Src, p.SPort)))
		if a.Type == "masquerade" {
			what += " (address of " + p.OIF + ")"
		}
		ct.SNAT = netip.AddrPortFrom(p.Src, p.SPort) != old
		ct.SNATBy = strings.TrimPrefix(label, "nft ")
		t.natSetUp = true
	default:
		leg.uncertain = true
		t.addUncertain(strings.TrimPrefix(label, "nft "), rule, "nat type "+a.Type+" is not modelled")
		return true
	}
	leg.Steps = append(leg.Steps, Step{Hook: label, What: what, Rule: rule, Decisive: true})
	return true
}

// natPort is the port a NAT range gives: the packet's own when it is in the range (the kernel
// keeps a tuple that is in range and unique, nf_nat_l4proto_unique_tuple), else the first of
// the range (which one the kernel picks depends on the other connections).
func natPort(port uint16, a *nft.NatAction) uint16 {
	if a.ProtoMin == 0 {
		return port
	}
	hi := max(a.ProtoMax, a.ProtoMin)
	if port >= a.ProtoMin && port <= hi {
		return port
	}
	return a.ProtoMin
}

func (t *tracer) natFails(leg *Leg, label, rule, typ string) bool {
	leg.outcome = LegDrop
	leg.Steps = append(leg.Steps, Step{Hook: label, What: "dropped: " + typ + " found no address to use", Rule: rule, Decisive: true})
	t.add(finding.Finding{ID: FindingFiltered, Severity: finding.SeverityError,
		Summary:  fmt.Sprintf("the packet is dropped by %s: %s found no address to use", label, typ),
		Evidence: []string{rule},
		Fix:      finding.Fix{Summary: "give the interface an address"}})
	return false
}

// redirectAddr is where redirect sends a packet: loopback for a local one, else the first
// address of the interface it came in on (nf_nat_redirect).
func (t *tracer) redirectAddr(p *netfilter.Packet) netip.Addr {
	if p.LocalOut {
		if p.Family == inet.V4 {
			return netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		return netip.IPv6Loopback()
	}
	if l := t.s.LinkByName(p.IIF); l != nil {
		for _, ad := range l.Addrs {
			if inet.FamilyOf(ad.Prefix.Addr()) == p.Family {
				return ad.Prefix.Addr()
			}
		}
	}
	return netip.Addr{}
}

// nftPacket describes the packet to the nft evaluator at a hook.
func (t *tracer) nftPacket(hook string, p *netfilter.Packet, ct *netfilter.Conn, attached bool) *nft.PacketInfo {
	pi := &nft.PacketInfo{Proto: 2, L4: uint8(p.Proto), Src: p.Src, Dst: p.Dst, SPort: p.SPort, DPort: p.DPort, FwMark: p.Mark}
	if p.Family == inet.V6 {
		pi.Proto = 10
	}
	switch p.Proto {
	case 6, 17, 132, 33, 136:
		pi.HasPorts = true
	}
	if p.Proto == 6 {
		pi.Flags, pi.HasFlags = p.TCPFlags, true
	}
	if p.ICMPType >= 0 {
		pi.ICMPType, pi.HasICMP = uint8(p.ICMPType), true
	}
	h := strings.ToUpper(hook)
	if p.IIF != "" && (h == "INGRESS" || h == "PREROUTING" || h == "INPUT" || h == "FORWARD") {
		pi.In = t.iface(p.IIF)
	}
	if p.OIF != "" && (h == "FORWARD" || h == "OUTPUT" || h == "POSTROUTING") {
		pi.Out = t.iface(p.OIF)
	}
	if p.LocalOut {
		pi.HasSocket = true // the uid is not known
	}
	if attached {
		c := &nft.CT{State: "new", Reply: ct.Reply, Mark: ct.Mark}
		switch ct.State {
		case netfilter.CTUntracked:
			c = &nft.CT{Untracked: true}
		case netfilter.CTEstablished:
			c.State = "established"
			c.Status |= 2 | 8 // seen reply, confirmed
		}
		if ct.DNAT {
			c.Status |= 32
		}
		if ct.SNAT {
			c.Status |= 16
		}
		proto := uint8(p.Proto)
		tuple := func(src, dst netip.AddrPort) nft.Tuple {
			return nft.Tuple{Src: src.Addr(), Dst: dst.Addr(), SPort: src.Port(), DPort: dst.Port(), Proto: proto}
		}
		c.Orig = tuple(ct.Orig.Src, ct.Orig.Dst)
		if ct.Reply || ct.NATed.Dst.IsValid() {
			c.ReplyT = tuple(ct.NATed.Dst, ct.NATed.Src)
		} else {
			// the request so far: its reply tuple is its current addresses reversed
			c.ReplyT = tuple(netip.AddrPortFrom(p.Dst, p.DPort), netip.AddrPortFrom(p.Src, p.SPort))
		}
		pi.CTEntry = c
	}
	pi.FIBFunc = func(q nft.FIBQuery) (nft.FIBResult, bool) { return t.nftFIB(q, p) }
	return pi
}

// iface describes an interface of the state.
func (t *tracer) iface(name string) *nft.Iface {
	ifc := &nft.Iface{Name: name}
	if l := t.s.LinkByName(name); l != nil {
		ifc.Index, ifc.Kind = uint32(l.Index), l.Kind
		ifc.Type = 1
		if l.Kind == "loopback" || name == "lo" {
			ifc.Type = 772
		}
	}
	return ifc
}

// nftFIB answers a `fib` expression from the model's FIB (nft_fib4_eval): the address looked
// up, its type, or the interface the route to it leaves by (none when `iif` is asked and the
// route does not go back out the input interface).
func (t *tracer) nftFIB(q nft.FIBQuery, p *netfilter.Packet) (nft.FIBResult, bool) {
	addr := p.Dst
	if q.Saddr {
		addr = p.Src
	}
	if q.Result == "type" {
		dev := ""
		if q.Iif {
			dev = p.IIF
		} else if q.Oif {
			dev = p.OIF
		}
		return nft.FIBResult{AddrType: strings.ToLower(t.nf.AddrType(addr, dev))}, true
	}
	fl := fib.Flow{Family: p.Family, Dst: addr, Proto: p.Proto}
	if q.Mark {
		fl.Mark = p.Mark
	}
	if q.Saddr {
		fl.Src = p.Dst
		fl.IIF = p.IIF
	} else {
		fl.Src = p.Src
		fl.IIF = p.IIF
	}
	r := t.fib.Resolve(fl)
	var out nft.FIBResult
	switch r.Verdict {
	case model.RouteUnicast, model.RouteLocal:
	default:
		return out, true // no route: oif 0
	}
	if q.Iif && r.OIF != p.IIF && r.Verdict != model.RouteLocal {
		return out, true
	}
	out.Oif = *t.iface(r.OIF)
	if q.Iif && r.Verdict == model.RouteLocal {
		out.Oif = *t.iface(p.IIF)
	}
	return out, true
}

// nftLimits names the parts of the nft ruleset the trace does not evaluate.
func (t *tracer) nftLimits() {
	rs := t.s.Nftables
	if rs == nil {
		return
	}
	var skipped []string
	for _, tb := range rs.Tables {
		if !tb.HasNative() || slices.Contains(tb.Flags, "dormant") {
			continue
		}
		for _, c := range tb.Chains {
			if c.Base() && tb.Native(c) && (tb.Family == nft.FamilyBridge || tb.Family == nft.FamilyARP || c.Hook == nft.HookEgress) {
				skipped = append(skipped, fmt.Sprintf("%s %s (hook %s)", tb, c.Name, c.Hook))
			}
		}
	}
	ev := append(slices.Clone(rs.Notes), skipped...)
	if len(ev) == 0 {
		return
	}
	t.add(finding.Finding{ID: FindingUncertain, Severity: finding.SeverityWarning,
		Summary:  "parts of the nftables ruleset are not evaluated by the trace (egress, bridge and arp chains, or rules the reader could not decode); they may drop or rewrite this flow",
		Evidence: ev,
		Fix:      finding.Fix{Summary: "check them with `nft -a list ruleset`", Args: []string{}}})
}

// nftReplyDirectionNAT evaluates the native nat chains of a hook for the reply as if it were
// a new connection, and names the first NAT rule it would hit on the reply leg and in the
// reply-bypasses-nat finding: a rule written for the reply direction, which never fires.
func (t *tracer) nftReplyDirectionNAT(reply *Leg, hook string, p *netfilter.Packet) {
	for _, c := range t.nftChains(hook, p.Family) {
		if c.chain.Type != nft.TypeNAT {
			continue
		}
		res := t.s.Nftables.EvalChain(c.table, c.chain, t.nftPacket(hook, p, &netfilter.Conn{State: netfilter.CTNew}, true), nil)
		if !res.Certain() {
			continue
		}
		if a := res.Outcomes[0].Effects.Nat; a != nil {
			rule := nftRuleText(a.Step)
			reply.Steps = append(reply.Steps, Step{Hook: "nft " + c.table.String() + " " + c.chain.Name, What: "not consulted for replies: this rule matches the reply but nat chains only see a connection's first packet, so it never fires", Rule: rule})
			if f := t.res.Finding(FindingReplyBypassesNAT); f != nil {
				f.Evidence = append(f.Evidence, "this rule matches the reply direction and never fires: "+rule)
			}
			return
		}
	}
}
