package nft

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// HookEvalOptions tune EvalHook.
type HookEvalOptions struct {
	EvalOptions
	// Legacy evaluates an iptables-legacy table's built-in chain on the hook (issue 19);
	// nil makes such a slot an undecided step. The effects' Mark and CtMark carry over to the
	// slots after it.
	Legacy func(table string, hook Hook, pkt Packet) (verdict string, effects Effects, ok bool)
	// Skip leaves a table's chains out (trace may evaluate iptables-nft's tables through the
	// iptables model instead); a skipped slot is recorded as a "skipped" step.
	Skip func(t *Table) bool
}

// natDone is the IPS_*_NAT_DONE bit the NAT core checks for the hook's manip type.
func natDone(h Hook) uint32 {
	if h == HookPrerouting || h == HookOutput {
		return 256 // IPS_DST_NAT_DONE
	}
	return 128 // IPS_SRC_NAT_DONE
}

// EvalHook runs everything on one hook in order for the packet, as the kernel would: each
// chain's verdict, accept going on to the next slot; conntrack attaching the entry at its
// slot (chains before it see none); the NAT core running the nat chains only for a new
// connection without NAT yet, stopping at the first that sets NAT up, and the translated
// address being what later slots see. The result's effects are the packet's at the end of the
// hook.
//
// Where slots tie at a priority in an order the kernel does not define, every order of the
// tied slots (up to 3 of them) is evaluated; when the orders lead to different verdicts or
// effects, each outcome carries the order it assumed as a condition, otherwise the orders are
// folded into one outcome.
func (rs *Ruleset) EvalHook(o *Order, pkt Packet, opts *HookEvalOptions) *Result {
	if opts == nil {
		opts = &HookEvalOptions{}
	}
	res := explore(&opts.EvalOptions, func(m *machine) {
		m.init(rs, pkt)
		order := m.tieOrder(o)
		ctSlot := -1
		for pos, i := range order {
			if o.Slots[i].Kind == SlotConntrack && o.Slots[i].Stage == "in" {
				ctSlot = pos
			}
		}
		real := m.pkt.Packet
		verdict := "accept"
		for pos, i := range order {
			s := &o.Slots[i]
			// Before conntrack's slot a packet has no conntrack entry yet.
			if ctSlot >= 0 && pos < ctSlot {
				m.pkt.Packet = beforeConntrack{real}
			} else {
				m.pkt.Packet = real
			}
			v := "accept"
			switch s.Kind {
			case SlotChain:
				if opts.Skip != nil && opts.Skip(s.Table) {
					m.outcome.Path = append(m.outcome.Path, Step{Family: s.Table.Family, Table: s.Table.Name, Chain: s.Chain.Name, Origin: s.Origin, Action: "skipped", Text: "evaluated elsewhere"})
					continue
				}
				m.rule = nil
				v = m.runChain(s.Table, s.Chain)
			case SlotLegacy:
				v = m.legacy(s.Legacy, o.Hook, opts)
			case SlotNAT:
				v = m.natCore(s, o.Hook, opts)
			}
			if v != "accept" {
				verdict = v
				break
			}
		}
		m.pkt.Packet = real
		m.finish(verdict)
	})
	foldTieOrders(res)
	return res
}

// tieReason marks the conditions that record an assumed order of tied slots.
const tieReason = "the kernel's order between them is not defined"

// tieOrder returns the order to run the slots in: the given one, with each undefined tie of
// up to 3 slots permuted by a choice.
func (m *machine) tieOrder(o *Order) []int {
	order := make([]int, len(o.Slots))
	for i := range order {
		order[i] = i
	}
	for _, t := range o.Ties {
		if t.Defined || len(t.Slots) > 3 {
			continue
		}
		perms := permutations(t.Slots)
		c := m.choose(len(perms))
		var names []string
		for k, i := range perms[c] {
			order[t.Slots[k]] = i
			names = append(names, o.Slots[i].Name())
		}
		m.cond = append(m.cond, Condition{
			Expr:   strings.Join(names, " and "),
			Reason: tieReason,
			Branch: "in the order " + strings.Join(names, ", ") + " (priority " + fmt.Sprint(t.Priority) + ")",
		})
	}
	return order
}

func permutations(s []int) [][]int {
	if len(s) <= 1 {
		return [][]int{append([]int(nil), s...)}
	}
	var out [][]int
	for i := range s {
		rest := append(append([]int(nil), s[:i]...), s[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]int{s[i]}, p...))
		}
	}
	return out
}

// foldTieOrders drops the order conditions where the order made no difference: outcomes
// that agree on everything else and end the same way are one outcome.
func foldTieOrders(res *Result) {
	type group struct {
		first   int
		results map[string]bool
		members []int
	}
	groups := map[string]*group{}
	var keys []string
	for i := range res.Outcomes {
		o := &res.Outcomes[i]
		var rest []Condition
		for _, c := range o.Conditions {
			if c.Reason != tieReason {
				rest = append(rest, c)
			}
		}
		k, _ := json.Marshal(rest)
		g := groups[string(k)]
		if g == nil {
			g = &group{first: i, results: map[string]bool{}}
			groups[string(k)] = g
			keys = append(keys, string(k))
		}
		r, _ := json.Marshal(struct {
			V string
			E Effects
		}{o.Verdict, o.Effects})
		g.results[string(r)] = true
		g.members = append(g.members, i)
	}
	var out []Outcome
	for _, k := range keys {
		g := groups[k]
		if len(g.results) > 1 {
			for _, i := range g.members {
				out = append(out, res.Outcomes[i])
			}
			continue
		}
		o := res.Outcomes[g.first]
		o.Conditions = slices.DeleteFunc(slices.Clone(o.Conditions), func(c Condition) bool { return c.Reason == tieReason })
		out = append(out, o)
	}
	res.Outcomes = out
}

func (m *machine) legacy(table string, hook Hook, opts *HookEvalOptions) string {
	step := Step{Table: table, Chain: strings.ToUpper(string(hook)), Origin: "iptables-legacy", Action: "legacy"}
	if opts.Legacy != nil {
		if v, eff, ok := opts.Legacy(table, hook, m.pkt); ok {
			step.Action = v
			m.outcome.Path = append(m.outcome.Path, step)
			m.mergeEffects(eff)
			return v
		}
	}
	c := m.choose(2)
	branch := "accepted"
	v := "accept"
	if c == 1 {
		branch, v = "dropped", "drop"
	}
	m.cond = append(m.cond, Condition{Step: step, Expr: "iptables-legacy " + table + " " + step.Chain, Reason: "not evaluated here", Branch: branch})
	m.outcome.Path = append(m.outcome.Path, step)
	return v
}

// mergeEffects applies another evaluator's effects to the packet and the outcome.
func (m *machine) mergeEffects(e Effects) {
	if e.Mark != nil {
		v := *e.Mark
		m.pkt.mark, m.outcome.Effects.Mark = &v, &v
	}
	if e.CtMark != nil {
		v := *e.CtMark
		m.pkt.ctMark, m.outcome.Effects.CtMark = &v, &v
	}
	if e.Nat != nil {
		m.outcome.Effects.Nat = e.Nat
	}
	if e.Notrack {
		m.outcome.Effects.Notrack, m.pkt.untracked = true, true
	}
	m.outcome.Effects.Other = append(m.outcome.Effects.Other, e.Other...)
}

// natCore is nf_nat_inet_fn for a packet: nat chains run only for the first packet of a
// connection that has no NAT of this kind yet; the first chain that sets up NAT ends the
// round, and its translation applies to the packet from here on.
func (m *machine) natCore(s *Slot, hook Hook, opts *HookEvalOptions) string {
	ct, attached := m.pkt.Conntrack()
	if !attached || ct.State != "new" || ct.Status&natDone(hook) != 0 {
		return "accept"
	}
	for i := range s.NATChains {
		n := &s.NATChains[i]
		var v string
		if n.Kind == SlotLegacy {
			v = m.legacy(n.Legacy, hook, opts)
		} else {
			if opts.Skip != nil && opts.Skip(n.Table) {
				m.outcome.Path = append(m.outcome.Path, Step{Family: n.Table.Family, Table: n.Table.Name, Chain: n.Chain.Name, Origin: n.Origin, Action: "skipped", Text: "evaluated elsewhere"})
				continue
			}
			m.outcome.Effects.Nat = nil
			v = m.runChain(n.Table, n.Chain)
		}
		if v != "accept" {
			return v
		}
		if a := m.outcome.Effects.Nat; a != nil {
			m.applyNat(a, hook)
			return "accept"
		}
	}
	return "accept"
}

// applyNat makes later slots see the translated addresses (dnat on prerouting/output
// changes the destination, snat on postrouting/input the source). Masquerade and redirect
// take the interface's address, which is the caller's to know; only a port is applied then.
func (m *machine) applyNat(a *NatAction, hook Hook) {
	if a.Unknown != "" {
		return
	}
	addr, port := &m.pkt.src, &m.pkt.sport
	if a.Type == "dnat" || a.Type == "redirect" {
		addr, port = &m.pkt.dst, &m.pkt.dport
	}
	if a.AddrMin.IsValid() && a.AddrMin == a.AddrMax {
		v := a.AddrMin
		*addr = &v
	}
	if a.ProtoMin != 0 && a.ProtoMin == a.ProtoMax {
		v := a.ProtoMin
		*port = &v
	}
}

// beforeConntrack hides the conntrack entry, for slots before conntrack's own hook.
type beforeConntrack struct{ Packet }

func (b beforeConntrack) Conntrack() (CT, bool) { return CT{}, false }
