package nft

import (
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
// hook; an undefined order between tied slots that both acted becomes a condition.
func (rs *Ruleset) EvalHook(o *Order, pkt Packet, opts *HookEvalOptions) *Result {
	if opts == nil {
		opts = &HookEvalOptions{}
	}
	ctSlot := -1
	for i := range o.Slots {
		if o.Slots[i].Kind == SlotConntrack && o.Slots[i].Stage == "in" {
			ctSlot = i
		}
	}
	return explore(&opts.EvalOptions, func(m *machine) {
		m.init(rs, pkt)
		real := m.pkt.Packet
		acted := map[int]bool{}
		verdict := "accept"
	slots:
		for i := range o.Slots {
			s := &o.Slots[i]
			// Before conntrack's slot a packet has no conntrack entry yet.
			if ctSlot >= 0 && i < ctSlot {
				m.pkt.Packet = beforeConntrack{real}
			} else {
				m.pkt.Packet = real
			}
			before := len(m.outcome.Path)
			var v string
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
			default:
				continue
			}
			if len(m.outcome.Path) > before && !onlyPolicyAccept(m.outcome.Path[before:]) {
				acted[i] = true
			}
			if v != "accept" {
				verdict = v
				break slots
			}
		}
		m.pkt.Packet = real
		m.undefinedTies(o, acted)
		m.finish(verdict)
	})
}

func onlyPolicyAccept(steps []Step) bool {
	return len(steps) == 1 && steps[0].Action == "policy" && steps[0].Text == "policy accept"
}

// undefinedTies adds a condition for each tie of undefined order in which two or more slots
// did something: the result assumed the probable order.
func (m *machine) undefinedTies(o *Order, acted map[int]bool) {
	for _, t := range o.Ties {
		if t.Defined {
			continue
		}
		var names []string
		for _, i := range t.Slots {
			if acted[i] {
				names = append(names, o.Slots[i].Name())
			}
		}
		if len(names) < 2 {
			continue
		}
		m.cond = append(m.cond, Condition{
			Expr:   strings.Join(names, " and "),
			Reason: "the kernel's order between them (all at priority " + PriorityName(FamilyIP, o.Hook, t.Priority) + ") is not defined",
			Branch: "evaluated in the order " + strings.Join(names, ", "),
		})
	}
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
	switch a.Type {
	case "dnat", "redirect":
		if a.AddrMin.IsValid() && a.AddrMin == a.AddrMax {
			v := a.AddrMin
			m.pkt.dst = &v
		}
		if a.ProtoMin != 0 && a.ProtoMin == a.ProtoMax {
			v := a.ProtoMin
			m.pkt.dport = &v
		}
	case "snat", "masquerade":
		if a.AddrMin.IsValid() && a.AddrMin == a.AddrMax {
			v := a.AddrMin
			m.pkt.src = &v
		}
		if a.ProtoMin != 0 && a.ProtoMin == a.ProtoMax {
			v := a.ProtoMin
			m.pkt.sport = &v
		}
	}
}

// beforeConntrack hides the conntrack entry, for slots before conntrack's own hook.
type beforeConntrack struct{ Packet }

func (b beforeConntrack) Conntrack() (CT, bool) { return CT{}, false }
