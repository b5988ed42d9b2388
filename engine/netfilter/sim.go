// Package netfilter simulates the netfilter hooks a packet passes, with conntrack's semantics,
// over the iptables rules of a model.State.
package netfilter

import (
	"fmt"
	"net/netip"
	"strings"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
)

// This file evaluates iptables chains for one packet, the way x_tables does (ipt_do_table in
// net/ipv4/netfilter/ip_tables.c): rules in order, jumps and gotos to user chains with a return
// stack, the built-in chain's policy at the end. It models the matches and targets that decide
// paths; a rule using anything else is reported as uncertain, never guessed.

// Netfilter verdicts of one table at one hook.
const (
	Accept = "accept"
	Drop   = "drop"
	Reject = "reject"
)

// Conntrack states as the conntrack and state matches name them.
const (
	CTNew         = "NEW"
	CTEstablished = "ESTABLISHED"
	CTUntracked   = "UNTRACKED"
)

// Packet is a packet as netfilter sees it at one hook.
type Packet struct {
	Family       inet.Family
	Proto        int
	Src, Dst     netip.Addr
	SPort, DPort uint16
	IIF, OIF     string
	Mark         uint32
	TCPFlags     uint8
	ICMPType     int // -1 when not ICMP
	// LocalOut is true for a locally generated packet (REDIRECT then goes to loopback).
	LocalOut bool
	// NextHop is the gateway (or the destination when on-link) chosen by routing, for
	// MASQUERADE's choice of source address.
	NextHop netip.Addr
	// Phys is what br_netfilter records of a packet that came in through a bridge port
	// (nf_bridge_info), which the physdev match reads; nil for other packets.
	Phys *PhysDev
	// SPortRange and DPortRange say, when NAT gave the packet a port the model cannot know
	// (SPort or DPort is then 0), the range the kernel picks it from: "1024-65535".
	SPortRange, DPortRange string
}

// PhysDev is a bridged packet's physical devices: the port it came in on ("" when the trace
// does not know which) and whether the bridge forwards it to another port (its port there is
// the bridge's forwarding table's business, never known).
type PhysDev struct {
	In      string
	Bridged bool
}

// TCP flag bits as in the TCP header.
const (
	tcpFIN = 0x01
	TCPSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	TCPACK = 0x10
	tcpURG = 0x20
)

// Conn is the conntrack entry of the traced flow.
type Conn struct {
	State string // CTNew, CTEstablished or CTUntracked
	Reply bool   // the packet travels in the reply direction
	Mark  uint32
	// Orig is the tuple of the first packet as it arrived; NATed is where it went after NAT
	// (the inverse of the reply tuple).
	Orig, NATed Tuple
	DNAT, SNAT  bool
	// DNATBy and SNATBy name the native nft chain that set the NAT up ("inet x prerouting");
	// empty when an iptables nat table did (or who did is not known).
	DNATBy, SNATBy string
}

type Tuple struct{ Src, Dst netip.AddrPort }

// Result is what one table did to a packet at one hook.
type Result struct {
	Verdict   string // Accept, Drop or Reject
	Decider   string // the rule (or policy) that dropped or rejected
	Steps     []Step
	Uncertain []Uncertain
	// Branches are the rules on the way whose match depends on state or chance, in order,
	// with the outcome the evaluation took (Force, or a quiet host's).
	Branches []Branch
}

// Step is what one rule (or the policy) did to the packet.
type Step struct {
	What     string
	Rule     string // the rule as the command that adds it
	Decisive bool
}

// Uncertain is a rule whose outcome the model cannot know; the evaluation went on as if it
// did not match.
type Uncertain struct{ Rule, Why string }

// Sim evaluates the netfilter configuration of a state.
type Sim struct {
	s      *model.State
	fib    *fib.FIB // for MASQUERADE's source address selection
	parsed map[*iptables.Rule]*iptables.Rule
	// local holds the routes of the local table, gathered on first use: AddrType is asked per
	// rule and per candidate address, and must not read a full table's routes each time.
	local []model.Route
	// localRead is set once local is gathered.
	localRead bool
	// Force sets the outcome of branch rules (Branch.Key) for the evaluations that follow,
	// to explore the outcomes a quiet host's assumption leaves out.
	Force map[*iptables.Rule]bool
}

func New(s *model.State, f *fib.FIB) *Sim {
	return &Sim{s: s, fib: f, parsed: map[*iptables.Rule]*iptables.Rule{}}
}

// rule returns the rule as its Spec says. Spec is the exact text iptables-save printed and
// what the rule is shown as; the parsed fields of a hand-written or older snapshot may be
// missing, so they are derived from Spec again (once per rule), falling back to the stored
// fields when Spec does not parse.
func (n *Sim) rule(f inet.Family, r *iptables.Rule) *iptables.Rule {
	if p, ok := n.parsed[r]; ok {
		return p
	}
	p := r
	if r.Spec != "" {
		if pr, err := iptables.ParseRule(f, r.Spec); err == nil {
			pr.Packets, pr.Bytes = r.Packets, r.Bytes
			p = &pr
		}
	}
	n.parsed[r] = p
	return p
}

var nfContinueTargets = map[string]bool{
	// These only observe or tweak headers that do not decide the path: the packet goes on
	// with the next rule (XT_CONTINUE).
	"": true, "LOG": true, "NFLOG": true, "ULOG": true, "TRACE": true, "AUDIT": true,
	"TCPMSS": true, "CHECKSUM": true, "CLASSIFY": true, "DSCP": true, "TOS": true, "TTL": true,
	"HL": true, "ECN": true, "SECMARK": true, "CONNSECMARK": true, "IDLETIMER": true, "LED": true,
	"RATEEST": true, "SET": true,
}

var nfNATTargets = map[string]bool{"DNAT": true, "SNAT": true, "MASQUERADE": true, "REDIRECT": true, "NETMAP": true}

// run evaluates the built-in chain of table at hook for p, changing p and ct as targets do.
// A missing table or chain accepts, as in the kernel where it is not registered.
func (n *Sim) Run(table, hook string, p *Packet, ct *Conn) Result {
	return n.runTable(n.s.Netfilter.Table(p.Family, table), table, hook, p, ct)
}

// RunIn is Run on the table of one iptables backend ("" is the iptables command's).
func (n *Sim) RunIn(backend, table, hook string, p *Packet, ct *Conn) Result {
	return n.runTable(n.s.Netfilter.TableIn(backend, p.Family, table), table, hook, p, ct)
}

func (n *Sim) runTable(t *iptables.Table, table, hook string, p *Packet, ct *Conn) Result {
	res := Result{Verdict: Accept}
	base := t.Chain(hook)
	if base == nil {
		return res
	}
	type frame struct {
		chain *iptables.Chain
		next  int
	}
	// x_tables refuses loops when rules are loaded; a snapshot can still hold one, so the
	// return stack is bounded and a chain already on it is not entered again.
	const maxDepth = 64
	stack := []frame{{base, 0}}
	onStack := func(c *iptables.Chain) bool {
		for _, f := range stack {
			if f.chain == c {
				return true
			}
		}
		return false
	}
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if top.next >= len(top.chain.Rules) {
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				break // fell off the built-in chain: its policy decides
			}
			continue
		}
		r := n.rule(p.Family, &top.chain.Rules[top.next])
		top.next++
		matched, why, br := n.matchesBranch(r, p, ct)
		if br != nil && why == "" {
			if nfContinueTargets[r.Target] && t.Chain(r.Target) == nil {
				continue // a rate-limited LOG: whatever it matches, the path is the same
			}
			if f, ok := n.Force[r]; ok {
				matched = f
			}
			br.Taken, br.rule = matched, r
			br.Rule = iptables.RuleCommand(p.Family, table, top.chain.Name, r)
			res.Branches = append(res.Branches, *br)
			what := "depends: matches " + br.When + "; otherwise not (" + br.Else + ")"
			if br.Prob >= 0 {
				what = fmt.Sprintf("random branch: matches %s; ", percent(br.Prob)) + map[bool]string{true: "taken here", false: "not taken here"}[matched]
			} else {
				what += map[bool]string{true: "; taken as matching", false: "; taken as not matching"}[matched]
			}
			res.Steps = append(res.Steps, Step{What: what, Rule: br.Rule})
		}
		if !matched && why == "" {
			continue
		}
		text := fmt.Sprintf("%s -t %s -A %s %s", n.s.Netfilter.TableCommand(t), table, top.chain.Name, r.Spec)
		if why != "" {
			if nfContinueTargets[r.Target] && t.Chain(r.Target) == nil {
				continue // whatever it matches, it does not change the path
			}
			res.Uncertain = append(res.Uncertain, Uncertain{text, why})
			res.Steps = append(res.Steps, Step{What: "uncertain: " + why + "; assumed not to match", Rule: text})
			continue
		}
		if user := t.Chain(r.Target); user != nil && !isBuiltinChain(r.Target) {
			if onStack(user) || len(stack) >= maxDepth {
				why := fmt.Sprintf("chain %s loops back into itself", r.Target)
				res.Uncertain = append(res.Uncertain, Uncertain{text, why})
				res.Steps = append(res.Steps, Step{What: "uncertain: " + why + "; jump skipped", Rule: text})
				continue
			}
			if r.Goto {
				// -g: RETURN from the target goes back to the caller of this chain.
				stack[len(stack)-1] = frame{user, 0}
			} else {
				stack = append(stack, frame{user, 0})
			}
			continue
		}
		switch r.Target {
		case "ACCEPT":
			res.Steps = append(res.Steps, Step{What: "accepted", Rule: text})
			return res
		case "DROP":
			res.Verdict, res.Decider = Drop, text
			res.Steps = append(res.Steps, Step{What: "dropped", Rule: text, Decisive: true})
			return res
		case "REJECT":
			res.Verdict, res.Decider = Reject, text
			res.Steps = append(res.Steps, Step{What: "rejected", Rule: text, Decisive: true})
			return res
		case "RETURN":
			stack = stack[:len(stack)-1]
			continue
		case "MARK":
			old := p.Mark
			if err := applyMark(&p.Mark, r); err != "" {
				res.Uncertain = append(res.Uncertain, Uncertain{text, err})
				res.Steps = append(res.Steps, Step{What: "uncertain: " + err, Rule: text})
				continue
			}
			res.Steps = append(res.Steps, Step{What: fmt.Sprintf("mark %#x -> %#x", old, p.Mark), Rule: text})
			continue
		case "CONNMARK":
			if ct.State == CTUntracked {
				continue // no conntrack entry to mark
			}
			oldP, oldC := p.Mark, ct.Mark
			if err := applyConnmark(p, ct, r); err != "" {
				res.Uncertain = append(res.Uncertain, Uncertain{text, err})
				res.Steps = append(res.Steps, Step{What: "uncertain: " + err, Rule: text})
				continue
			}
			what := fmt.Sprintf("connmark %#x -> %#x", oldC, ct.Mark)
			if oldP != p.Mark {
				what = fmt.Sprintf("mark %#x -> %#x (restored from connmark %#x)", oldP, p.Mark, ct.Mark)
			} else if oldC == ct.Mark {
				what = fmt.Sprintf("connmark stays %#x", ct.Mark)
			}
			res.Steps = append(res.Steps, Step{What: what, Rule: text})
			continue
		case "NOTRACK":
			ct.State = CTUntracked
			res.Steps = append(res.Steps, Step{What: "not tracked: no NAT, state UNTRACKED", Rule: text})
			continue
		case "CT":
			if _, ok := r.TargetOption("notrack"); ok {
				ct.State = CTUntracked
				res.Steps = append(res.Steps, Step{What: "not tracked: no NAT, state UNTRACKED", Rule: text})
			}
			continue
		}
		if nfNATTargets[r.Target] {
			if table != "nat" {
				why := fmt.Sprintf("%s outside the nat table", r.Target)
				res.Uncertain = append(res.Uncertain, Uncertain{text, why})
				continue
			}
			what, err := n.applyNAT(r, hook, p)
			if err != "" {
				res.Uncertain = append(res.Uncertain, Uncertain{text, err})
				res.Steps = append(res.Steps, Step{What: "uncertain: " + err + "; assumed not to match", Rule: text})
				continue
			}
			if what == "" {
				res.Verdict, res.Decider = Drop, text
				res.Steps = append(res.Steps, Step{What: "dropped: " + r.Target + " found no address to use", Rule: text, Decisive: true})
				return res
			}
			if hook == "PREROUTING" || hook == "OUTPUT" {
				ct.DNAT = true
			} else {
				ct.SNAT = true
			}
			// A NAT target ends the nat table for this packet (it returns NF_ACCEPT).
			res.Steps = append(res.Steps, Step{What: what, Rule: text, Decisive: true})
			return res
		}
		if nfContinueTargets[r.Target] {
			continue
		}
		why = fmt.Sprintf("target %s is not modelled", r.Target)
		if effect, ok := namedTargetWhy(r); ok {
			why = effect
		}
		res.Uncertain = append(res.Uncertain, Uncertain{text, why})
		res.Steps = append(res.Steps, Step{What: "uncertain: " + why + "; assumed not to match", Rule: text})
	}
	switch base.Policy {
	case "DROP":
		res.Verdict, res.Decider = Drop, fmt.Sprintf("policy DROP of %s %s", table, hook)
		if n.s.Netfilter.Mixed() {
			res.Decider += " (" + iptables.BackendName(n.s.Netfilter.TableBackend(t)) + ")"
		}
		res.Steps = append(res.Steps, Step{What: "no rule accepted: policy DROP", Rule: fmt.Sprintf("%s -t %s -P %s DROP", n.s.Netfilter.TableCommand(t), table, hook), Decisive: true})
	default:
		if table == "filter" && len(base.Rules) > 0 {
			res.Steps = append(res.Steps, Step{What: "no rule decided: policy ACCEPT"})
		}
	}
	return res
}

func isBuiltinChain(name string) bool {
	switch name {
	case "PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING":
		return true
	}
	return false
}

// matches reports whether a rule matches the packet, taking a branch's assumed outcome. A
// non-empty why means the model cannot tell, and says which part of the rule it does not model.
func (n *Sim) matches(r *iptables.Rule, p *Packet, ct *Conn) (bool, string) {
	ok, why, _ := n.matchesBranch(r, p, ct)
	return ok, why
}

// matchesBranch is matches that also returns, when every other part of the rule matches and
// the rest depends on state or chance (stateMatch), the Branch that says on what; ok is then
// the quiet host's outcome.
func (n *Sim) matchesBranch(r *iptables.Rule, p *Packet, ct *Conn) (bool, string, *Branch) {
	var infos []branchInfo
	for _, m := range r.Matches {
		b, why, ok := stateMatch(m, p)
		if !ok {
			continue
		}
		if why != "" {
			return false, why, nil
		}
		if b.determined {
			if !b.assumed {
				return false, "", nil
			}
			continue
		}
		infos = append(infos, b)
	}
	ok, why := n.matchesRest(r, p, ct)
	if !ok || why != "" || len(infos) == 0 {
		return ok, why, nil
	}
	br := &Branch{Prob: 1, Taken: true}
	var when, els []string
	for _, b := range infos {
		if b.prob < 0 || br.Prob < 0 {
			br.Prob = -1
		} else {
			br.Prob *= b.prob
		}
		when, els = append(when, b.when), append(els, b.els)
		br.Taken = br.Taken && b.assumed
	}
	br.When, br.Else = strings.Join(when, " and "), strings.Join(els, " or ")
	return br.Taken, "", br
}

// matchesRest evaluates every part of a rule but the matches stateMatch handles.
func (n *Sim) matchesRest(r *iptables.Rule, p *Packet, ct *Conn) (bool, string) {
	if r.Fragment != nil && *r.Fragment {
		// -f matches only second and later fragments; a traced flow's packets are whole.
		return false, ""
	}
	if r.Src != nil {
		ok, why := matchAddrText(r.Src.Prefix, p.Src)
		if why != "" {
			return false, why
		}
		if ok == r.Src.Not {
			return false, ""
		}
	}
	if r.Dst != nil {
		ok, why := matchAddrText(r.Dst.Prefix, p.Dst)
		if why != "" {
			return false, why
		}
		if ok == r.Dst.Not {
			return false, ""
		}
	}
	if r.In != nil && matchIface(r.In.Value, p.IIF) == r.In.Not {
		return false, ""
	}
	if r.Out != nil && matchIface(r.Out.Value, p.OIF) == r.Out.Not {
		return false, ""
	}
	if r.Proto != nil {
		ok, why := matchProto(r.Proto.Value, p.Proto)
		if why != "" {
			return false, why
		}
		if ok == r.Proto.Not {
			return false, ""
		}
	}
	for _, m := range r.Matches {
		if _, _, state := stateMatch(m, p); state {
			continue
		}
		ok, why := n.match(m, p, ct)
		if why != "" {
			return false, why
		}
		if !ok {
			return false, ""
		}
	}
	return true, ""
}
