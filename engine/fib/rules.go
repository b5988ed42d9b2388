package fib

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

type fibRule struct {
	r        *model.Rule
	detached bool // iif or oif names no link: the kernel stores ifindex -1, which never matches
	target   int  // goto: index of the first rule with the target priority, -1 if none
	table    int
	t        *lpmTrie // the table's routes (nil: none), set when the FIB is finished
	noRoute  string   // outcomes, made once
	name     string
	gotoText string
	suppress int // suppress_prefixlength, -1 when unset
	ifgroup  int // suppress_ifgroup, -1 when unset
	// all: the rule has no selector and no not, so it matches every flow (the default rules
	// and most lookup rules), which the walk need not check.
	all bool
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
		fr.all = !fr.detached && !r.Not && r.Selectors() == "from all"
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

// walkResult is what the rule walk found.
type walkResult struct {
	verdict string
	rule    *fibRule
	table   int
	route   *fibRoute
	ref     uint32       // the route's ref (fibValue)
	pfx     netip.Prefix // the route's destination
	nh      int          // index into route.nhs
	steps   []Step
}

// model returns the route found as the state has it.
func (w *walkResult) model(f *FIB) *model.Route { return f.modelRoute(w.route, w.ref, w.pfx) }

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
		res.Route, res.Table = w.model(f), w.table
		if w.route.typ == model.RouteNAT || w.route.typ == "xresolve" {
			res.Verdict = VerdictBlackhole
		}
	}
	return w, true
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
		if !fr.all {
			if why := q.ruleMatch(fr); why != "" {
				w.step(q, fr, false, why)
				continue
			}
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
		t := fr.t
		var tr tableResult
		if t == nil && f.isLazy(q.fam, fr.table) {
			tr = f.lazyLookup4(fr, q)
		} else if t != nil {
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
		pfx := netip.PrefixFrom(q.dst, tr.bits).Masked()
		switch tr.route.typ {
		case model.RouteThrow:
			if q.wantSteps {
				w.step(q, fr, true, outcome(fr.name, "throw ", pfx, ""))
			}
			continue
		case model.RouteBlackhole, model.RouteUnreachable, model.RouteProhibit:
			if q.wantSteps {
				w.step(q, fr, true, outcome(fr.name, tr.route.typ+" ", pfx, ""))
			}
			w.verdict = tr.route.typ
		case model.RouteNAT, "xresolve":
			if q.wantSteps {
				w.step(q, fr, true, outcome(fr.name, tr.route.typ+" ", pfx, " (refused: blackhole)"))
			}
			w.verdict = VerdictBlackhole
		default:
			// Only a successful lookup can be suppressed (fib_rules_lookup calls ->suppress
			// when the action returned 0).
			if plen := tr.bits; plen <= fr.suppress {
				if q.wantSteps {
					var buf [128]byte
					b := pfx.AppendTo(append(buf[:0], fr.name...))
					b = append(b, " suppressed (prefix length "...)
					b = append(strconv.AppendInt(b, int64(plen), 10), " <= "...)
					b = append(strconv.AppendInt(b, int64(fr.suppress), 10), ')')
					w.step(q, fr, true, string(b))
				}
				continue
			}
			if fr.ifgroup == 0 && tr.route.npaths > 0 && tr.route.nh(0).link != nil {
				if q.wantSteps {
					w.step(q, fr, true, outcome(fr.name, "", pfx, " suppressed (device "+tr.route.nh(0).dev+" is in interface group 0)"))
				}
				continue
			}
			w.verdict = tr.route.typ
			if q.wantSteps {
				var buf [128]byte
				b := append(append(buf[:0], fr.name...), "chose "...)
				w.step(q, fr, true, string(describeRoute(b, pfx, tr.route, tr.nh)))
			}
		}
		w.rule, w.table, w.route, w.ref, w.pfx, w.nh = fr, fr.table, tr.route, tr.ref, pfx, tr.nh
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

// outcome builds the outcome "table T: " + what + prefix + rest in one allocation.
func outcome(name, what string, p netip.Prefix, rest string) string {
	var buf [128]byte
	b := append(append(buf[:0], name...), what...)
	b = p.AppendTo(b)
	return string(append(b, rest...))
}
