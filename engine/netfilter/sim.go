// Package netfilter simulates the netfilter hooks a packet passes, with conntrack's semantics,
// over the iptables rules of a model.State.
package netfilter

import (
	"fmt"
	"net/netip"
	"strconv"
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

// match evaluates one -m match with all its options.
func (n *Sim) match(m iptables.Match, p *Packet, ct *Conn) (bool, string) {
	unknown := func(o iptables.Option) (bool, string) {
		return false, fmt.Sprintf("-m %s --%s is not modelled", m.Name, o.Name)
	}
	switch m.Name {
	case "comment":
		return true, ""
	case "tcp", "udp", "sctp", "dccp", "udplite":
		want := map[string]int{"tcp": 6, "udp": 17, "sctp": 132, "dccp": 33, "udplite": 136}[m.Name]
		if p.Proto != want {
			return false, ""
		}
		for _, o := range m.Options {
			var ok bool
			var why string
			switch o.Name {
			case "sport", "source-port":
				ok, why = matchPortList(o.Values, p.SPort, false)
			case "dport", "destination-port":
				ok, why = matchPortList(o.Values, p.DPort, false)
			case "tcp-flags":
				if m.Name != "tcp" || len(o.Values) != 2 {
					return unknown(o)
				}
				mask, err1 := tcpFlags(o.Values[0])
				comp, err2 := tcpFlags(o.Values[1])
				if err1 != nil || err2 != nil {
					return unknown(o)
				}
				ok = p.TCPFlags&mask == comp
			case "syn":
				if m.Name != "tcp" {
					return unknown(o)
				}
				ok = p.TCPFlags&(TCPSYN|tcpRST|TCPACK|tcpFIN) == TCPSYN
			default:
				return unknown(o)
			}
			if why != "" {
				return false, fmt.Sprintf("-m %s --%s %s: %s", m.Name, o.Name, strings.Join(o.Values, " "), why)
			}
			if ok == o.Not {
				return false, ""
			}
		}
		return true, ""
	case "multiport":
		switch p.Proto {
		case 6, 17, 132, 33, 136:
		default:
			return false, ""
		}
		for _, o := range m.Options {
			var ok bool
			var why string
			switch o.Name {
			case "dports", "destination-ports":
				ok, why = matchPortList(o.Values, p.DPort, true)
			case "sports", "source-ports":
				ok, why = matchPortList(o.Values, p.SPort, true)
			case "ports":
				ok, why = matchPortList(o.Values, p.DPort, true)
				if !ok && why == "" {
					ok, why = matchPortList(o.Values, p.SPort, true)
				}
			default:
				return unknown(o)
			}
			if why != "" {
				return false, fmt.Sprintf("-m multiport --%s %s: %s", o.Name, strings.Join(o.Values, " "), why)
			}
			if ok == o.Not {
				return false, ""
			}
		}
		return true, ""
	case "icmp", "icmp6":
		want := 1
		if m.Name == "icmp6" {
			want = 58
		}
		if p.Proto != want {
			return false, ""
		}
		for _, o := range m.Options {
			if o.Name != "icmp-type" && o.Name != "icmpv6-type" || len(o.Values) == 0 {
				return unknown(o)
			}
			if matchICMPType(o.Values[0], p.ICMPType) == o.Not {
				return false, ""
			}
		}
		return true, ""
	case "conntrack", "state":
		for _, o := range m.Options {
			var ok bool
			var why string
			switch o.Name {
			case "ctstate", "state":
				ok = matchCTState(o.Values, ct)
			case "ctdir":
				want := "ORIGINAL"
				if ct.Reply {
					want = "REPLY"
				}
				ok = len(o.Values) == 1 && strings.EqualFold(o.Values[0], want)
				if ct.State == CTUntracked {
					ok = false
				}
			case "ctproto":
				if len(o.Values) != 1 {
					return unknown(o)
				}
				ok, why = matchProto(o.Values[0], p.Proto)
			case "ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst":
				if len(o.Values) != 1 {
					return unknown(o)
				}
				var a netip.Addr
				switch o.Name {
				case "ctorigsrc":
					a = ct.Orig.Src.Addr()
				case "ctorigdst":
					a = ct.Orig.Dst.Addr()
				case "ctreplsrc":
					a = ct.NATed.Dst.Addr() // the reply comes from where the request went
				case "ctrepldst":
					a = ct.NATed.Src.Addr()
				}
				ok, why = matchAddrText(o.Values[0], a)
			case "ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport":
				var port uint16
				switch o.Name {
				case "ctorigsrcport":
					port = ct.Orig.Src.Port()
				case "ctorigdstport":
					port = ct.Orig.Dst.Port()
				case "ctreplsrcport":
					port = ct.NATed.Dst.Port()
				case "ctrepldstport":
					port = ct.NATed.Src.Port()
				}
				ok, why = matchPortList(o.Values, port, false)
			default:
				return unknown(o)
			}
			if why != "" {
				return false, fmt.Sprintf("-m %s --%s: %s", m.Name, o.Name, why)
			}
			if ok == o.Not {
				return false, ""
			}
		}
		return true, ""
	case "mark", "connmark":
		v := p.Mark
		if m.Name == "connmark" {
			if ct.State == CTUntracked {
				return false, ""
			}
			v = ct.Mark
		}
		for _, o := range m.Options {
			if o.Name != "mark" || len(o.Values) != 1 {
				return unknown(o)
			}
			val, mask, err := iptables.ParseMark(o.Values[0])
			if err != nil {
				return false, fmt.Sprintf("-m %s --mark %s: %v", m.Name, o.Values[0], err)
			}
			if (v&mask == val) == o.Not {
				return false, ""
			}
		}
		return true, ""
	case "addrtype":
		var limitIn, limitOut bool
		for _, o := range m.Options {
			switch o.Name {
			case "limit-iface-in":
				limitIn = true
			case "limit-iface-out":
				limitOut = true
			}
		}
		for _, o := range m.Options {
			var a netip.Addr
			switch o.Name {
			case "src-type":
				a = p.Src
			case "dst-type":
				a = p.Dst
			case "limit-iface-in", "limit-iface-out":
				continue
			default:
				return unknown(o)
			}
			dev := ""
			if limitIn {
				dev = p.IIF
			} else if limitOut {
				dev = p.OIF
			}
			typ := n.AddrType(a, dev)
			ok := false
			for _, v := range o.Values {
				for _, want := range strings.Split(v, ",") {
					if strings.EqualFold(want, typ) {
						ok = true
					}
				}
			}
			if ok == o.Not {
				return false, ""
			}
		}
		return true, ""
	case "iprange":
		for _, o := range m.Options {
			var a netip.Addr
			switch o.Name {
			case "src-range":
				a = p.Src
			case "dst-range":
				a = p.Dst
			default:
				return unknown(o)
			}
			if len(o.Values) != 1 {
				return unknown(o)
			}
			lo, hi, ok := strings.Cut(o.Values[0], "-")
			loA, err1 := netip.ParseAddr(lo)
			hiA, err2 := netip.ParseAddr(hi)
			if !ok || err1 != nil || err2 != nil {
				return false, fmt.Sprintf("-m iprange --%s %s: not an address range", o.Name, o.Values[0])
			}
			in := a.Compare(loA) >= 0 && a.Compare(hiA) <= 0
			if in == o.Not {
				return false, ""
			}
		}
		return true, ""
	case "rpfilter":
		return n.rpfilter(m, p)
	case "set":
		return n.matchSet(m, p)
	case "physdev":
		return matchPhysdev(m, p)
	case "pkttype":
		for _, o := range m.Options {
			if o.Name != "pkt-type" || len(o.Values) != 1 {
				return unknown(o)
			}
			typ := "unicast"
			switch n.AddrType(p.Dst, "") {
			case "BROADCAST":
				typ = "broadcast"
			case "MULTICAST":
				typ = "multicast"
			}
			if strings.EqualFold(o.Values[0], typ) == o.Not {
				return false, ""
			}
		}
		return true, ""
	}
	return false, fmt.Sprintf("match -m %s is not modelled", m.Name)
}

// rpfilter is the rpfilter match (net/ipv4/netfilter/ipt_rpfilter.c): a reverse lookup of the
// source from loopback (from the destination, with the mark only under
// --validmark) must give a unicast route out the interface the packet came in on (any
// interface with --loose; a local route too with --accept-local). It is the same check as the
// rp_filter sysctl, made by a rule.
func (n *Sim) rpfilter(m iptables.Match, p *Packet) (bool, string) {
	var loose, validMark, acceptLocal, invert bool
	for _, o := range m.Options {
		switch o.Name {
		case "loose":
			loose = true
		case "validmark":
			validMark = true
		case "accept-local":
			acceptLocal = true
		case "invert":
			invert = true
		default:
			return false, fmt.Sprintf("-m rpfilter --%s is not modelled", o.Name)
		}
	}
	if p.IIF == "" {
		return false, "-m rpfilter on a locally generated packet (it belongs in PREROUTING)"
	}
	if p.Dst.IsMulticast() {
		return !invert, "" // local multicast passes (rpfilter_mt)
	}
	// A plain FIB lookup from loopback (flowi4_iif = LOOPBACK_IFINDEX), as fib_lookup makes it:
	// an input lookup from lo, which unlike an output lookup does not require the source to
	// be this host's.
	fl := fib.Flow{Family: p.Family, Dst: p.Src, Src: p.Dst, IIF: "lo", Proto: p.Proto, SPort: p.DPort, DPort: p.SPort}
	if t := n.AddrType(p.Dst, ""); t != "LOCAL" && t != "UNICAST" {
		fl.Src = netip.Addr{}
	}
	if validMark {
		fl.Mark = p.Mark
	}
	r := n.fib.Lookup(fl)
	pass := false
	switch r.Verdict {
	case model.RouteUnicast:
		pass = loose || r.OIF == p.IIF
		if !pass && r.Route != nil {
			for _, nh := range r.Route.Nexthops {
				pass = pass || nh.Dev == p.IIF
			}
		}
	case model.RouteLocal:
		pass = acceptLocal
	case fib.VerdictInvalid:
		return false, "-m rpfilter: the reverse lookup is refused: " + r.Note
	}
	return pass != invert, ""
}

// matchPhysdev is the physdev match (net/netfilter/xt_physdev.c) over what br_netfilter
// recorded: without that record (not from a bridge port, or br_netfilter off) only inverted
// options match; --physdev-in compares the port when known; --physdev-out cannot be known for
// a bridged packet (the forwarding table decides) and matches when there is no out port.
func matchPhysdev(m iptables.Match, p *Packet) (bool, string) {
	if p.Phys == nil {
		for _, o := range m.Options {
			if !o.Not {
				return false, ""
			}
		}
		return true, ""
	}
	for _, o := range m.Options {
		var ok bool
		switch o.Name {
		case "physdev-is-in":
			ok = true
		case "physdev-is-bridged", "physdev-is-out":
			ok = p.Phys.Bridged
		case "physdev-in":
			if len(o.Values) != 1 {
				return false, "-m physdev --physdev-in needs one name"
			}
			if p.Phys.In == "" {
				return false, "-m physdev --physdev-in depends on the bridge port the packet came in on: give it as --iif"
			}
			ok = matchIface(o.Values[0], p.Phys.In)
		case "physdev-out":
			if !p.Phys.Bridged {
				continue // no out port: the option matches (inverted or not)
			}
			return false, "-m physdev --physdev-out depends on the bridge port the bridge's forwarding table sends the packet to"
		default:
			return false, fmt.Sprintf("-m physdev --%s is not modelled", o.Name)
		}
		if ok == o.Not {
			return false, ""
		}
	}
	return true, ""
}

// matchSet is the set match (xt_set, revision 4): the packet's addresses and ports named by
// the flags (src, dst, in the set type's order) must be a member of the set; of hash:net
// members the most specific containing the address decides, and a nomatch member makes the
// test fail (or, with --return-nomatch, succeed), as ip_set_test does. hash:ip, hash:net,
// hash:ip,port and hash:net,port are matched; other types leave the rule uncertain.
func (n *Sim) matchSet(m iptables.Match, p *Packet) (bool, string) {
	var name string
	var flags []string
	var not, returnNoMatch bool
	for _, o := range m.Options {
		switch o.Name {
		case "match-set", "set":
			if len(o.Values) != 2 {
				return false, "-m set --match-set needs a set name and flags"
			}
			name, flags, not = o.Values[0], strings.Split(o.Values[1], ","), o.Not
		case "return-nomatch":
			returnNoMatch = true
		case "update-counters", "update-subcounters":
		default:
			return false, fmt.Sprintf("-m set --%s (counters) is not modelled", o.Name)
		}
	}
	set := n.s.IPSetByName(name)
	if set == nil {
		return false, fmt.Sprintf("-m set: set %s is not in the state (ipsets not read, or created since)", name)
	}
	if set.Family != p.Family {
		return not, ""
	}
	dims := strings.Split(strings.TrimPrefix(strings.TrimPrefix(set.Type, "hash:"), "bitmap:"), ",")
	if !strings.HasPrefix(set.Type, "hash:") || len(dims) > 2 || dims[0] != "ip" && dims[0] != "net" || len(dims) == 2 && dims[1] != "port" {
		return false, fmt.Sprintf("-m set: set %s of type %s is not modelled (hash:ip, hash:net, hash:ip,port and hash:net,port are)", name, set.Type)
	}
	if len(flags) < len(dims) {
		return false, fmt.Sprintf("-m set --match-set %s: %d flags for a set of %d dimensions", name, len(flags), len(dims))
	}
	addr := p.Dst
	if flags[0] == "src" {
		addr = p.Src
	}
	if dims[0] == "ip" && set.Netmask > 0 && set.Netmask < addr.BitLen() {
		addr = netip.PrefixFrom(addr, set.Netmask).Masked().Addr()
	}
	var port uint16
	if len(dims) == 2 {
		switch p.Proto {
		case 6, 17, 132, 136:
		default:
			return not, "" // no ports: no member of a port type matches
		}
		port = p.DPort
		if flags[1] == "src" {
			port = p.SPort
		}
		if port == 0 {
			return false, fmt.Sprintf("-m set --match-set %s: the port is not known: give it in the trace (ADDR:PORT)", name)
		}
	}
	best := -1
	found, noMatch := false, false
	for _, mem := range set.Members {
		if !mem.Net.Contains(addr) || mem.Net.Bits() <= best {
			continue
		}
		if len(dims) == 2 && (mem.Port != port || mem.Proto != p.Proto) {
			continue
		}
		best, found, noMatch = mem.Net.Bits(), true, mem.NoMatch
	}
	in := found && (!noMatch || returnNoMatch)
	return in != not, ""
}

// matchAddrText matches an iptables address: "10.0.0.0/8", "10.0.0.1", "10.0.0.0/255.0.0.0".
// iptables-save prints non-contiguous masks in dotted form; those are honoured bit by bit.
func matchAddrText(text string, a netip.Addr) (bool, string) {
	if !a.IsValid() {
		return false, ""
	}
	addrS, maskS, hasMask := strings.Cut(text, "/")
	base, err := netip.ParseAddr(addrS)
	if err != nil {
		return false, fmt.Sprintf("address %q is not numeric (host names are not resolved)", text)
	}
	if base.Is4() != a.Is4() {
		return false, ""
	}
	if !hasMask {
		return base == a, ""
	}
	if bits, err := strconv.Atoi(maskS); err == nil {
		pfx, err := base.Prefix(bits)
		if err != nil {
			return false, fmt.Sprintf("address %q has an invalid prefix length", text)
		}
		return pfx.Contains(a), ""
	}
	mask, err := netip.ParseAddr(maskS)
	if err != nil || mask.Is4() != base.Is4() {
		return false, fmt.Sprintf("address %q has an invalid mask", text)
	}
	bb, mb, ab := base.AsSlice(), mask.AsSlice(), a.AsSlice()
	for i := range bb {
		if bb[i]&mb[i] != ab[i]&mb[i] {
			return false, ""
		}
	}
	return true, ""
}

// matchIface matches an interface name; a trailing '+' matches every name with that prefix.
func matchIface(pattern, name string) bool {
	if p, ok := strings.CutSuffix(pattern, "+"); ok {
		return strings.HasPrefix(name, p)
	}
	return pattern == name
}

// nfProtoNames are protocol names iptables-save may print (from /etc/protocols) beyond the ones
// ProtoNumber knows.
var nfProtoNames = map[string]int{"esp": 50, "ah": 51, "igmp": 2, "ospf": 89, "vrrp": 112, "pim": 103, "dccp": 33, "udplite": 136, "ipv6": 41, "ipv6-icmp": 58, "icmpv6": 58}

func matchProto(v string, proto int) (bool, string) {
	v = strings.ToLower(v)
	if v == "all" || v == "0" {
		return true, ""
	}
	if n, ok := nfProtoNames[v]; ok {
		return n == proto, ""
	}
	n, err := inet.ProtoNumber(v)
	if err != nil {
		return false, fmt.Sprintf("protocol %q is not known", v)
	}
	return n == proto, ""
}

// matchPortList matches a port against "80", "1000:2000", ":1024", "1024:" and, for multiport,
// comma-separated lists of those. Port 0 stands for a port the request did not give.
func matchPortList(values []string, port uint16, multi bool) (bool, string) {
	if len(values) != 1 {
		return false, "want one value"
	}
	items := []string{values[0]}
	if multi {
		items = strings.Split(values[0], ",")
	}
	if port == 0 {
		return false, "the port is not known: give it in the trace (ADDR:PORT)"
	}
	for _, it := range items {
		lo, hi, isRange := strings.Cut(it, ":")
		if !isRange {
			lo, hi = it, it
		}
		l, h := 0, 65535
		var err error
		if lo != "" {
			if l, err = strconv.Atoi(lo); err != nil {
				return false, fmt.Sprintf("port %q is not a number", it)
			}
		}
		if hi != "" {
			if h, err = strconv.Atoi(hi); err != nil {
				return false, fmt.Sprintf("port %q is not a number", it)
			}
		}
		if int(port) >= l && int(port) <= h {
			return true, ""
		}
	}
	return false, ""
}

func tcpFlags(s string) (uint8, error) {
	var f uint8
	for _, name := range strings.Split(s, ",") {
		switch strings.ToUpper(name) {
		case "FIN":
			f |= tcpFIN
		case "SYN":
			f |= TCPSYN
		case "RST":
			f |= tcpRST
		case "PSH":
			f |= tcpPSH
		case "ACK":
			f |= TCPACK
		case "URG":
			f |= tcpURG
		case "ALL":
			f |= 0x3f
		case "NONE":
		default:
			return 0, fmt.Errorf("unknown tcp flag %q", name)
		}
	}
	return f, nil
}

// matchICMPType compares an --icmp-type value with the packet's type. Traced ICMP flows are
// echo request and reply; any other named type does not match them.
func matchICMPType(v string, typ int) bool {
	switch strings.ToLower(v) {
	case "any":
		return true
	case "echo-request", "ping":
		return typ == 8 || typ == 128
	case "echo-reply", "pong":
		return typ == 0 || typ == 129
	}
	t, _, _ := strings.Cut(v, "/")
	n, err := strconv.Atoi(t)
	return err == nil && n == typ
}

func matchCTState(values []string, ct *Conn) bool {
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			switch strings.ToUpper(s) {
			case ct.State:
				return true
			case "DNAT":
				if ct.DNAT && ct.State != CTUntracked {
					return true
				}
			case "SNAT":
				if ct.SNAT && ct.State != CTUntracked {
					return true
				}
			}
		}
	}
	return false
}

// applyMark does what the MARK target does (net/netfilter/xt_mark.c: mark = (mark & ~mask) ^
// value; iptables translates --set-mark, --and-mark, --or-mark and --xor-mark into that).
func applyMark(mark *uint32, r *iptables.Rule) string {
	// The MARK target takes exactly one operation.
	if len(r.TargetOpts) == 0 {
		return "MARK without an option"
	}
	o := r.TargetOpts[0]
	if len(o.Values) != 1 {
		return fmt.Sprintf("MARK --%s needs one value", o.Name)
	}
	v, m, err := iptables.ParseMark(o.Values[0])
	if err != nil {
		return "MARK: " + err.Error()
	}
	switch o.Name {
	case "set-xmark":
		*mark = (*mark &^ m) ^ v
	case "set-mark":
		*mark = (*mark &^ m) | v
	case "and-mark":
		*mark &= v
	case "or-mark":
		*mark |= v
	case "xor-mark":
		*mark ^= v
	default:
		return fmt.Sprintf("MARK --%s is not modelled", o.Name)
	}
	return ""
}

// applyConnmark does what the CONNMARK target does (net/netfilter/xt_connmark.c, revision 1):
//
//	--set-xmark v/m:   ctmark = (ctmark & ~m) ^ v
//	--save-mark:       ctmark = (ctmark & ~ctmask) ^ (mark & nfmask)
//	--restore-mark:    mark   = (mark & ~nfmask) ^ (ctmark & ctmask)
//
// --mask m sets both masks; they default to all ones.
func applyConnmark(p *Packet, ct *Conn, r *iptables.Rule) string {
	nfmask, ctmask := uint32(0xffffffff), uint32(0xffffffff)
	var op string
	var opVal []string
	for _, o := range r.TargetOpts {
		switch o.Name {
		case "nfmask", "ctmask", "mask":
			if len(o.Values) != 1 {
				return fmt.Sprintf("CONNMARK --%s needs one value", o.Name)
			}
			v, err := iptables.ParseU32(o.Values[0])
			if err != nil {
				return fmt.Sprintf("CONNMARK --%s: %v", o.Name, err)
			}
			switch o.Name {
			case "nfmask":
				nfmask = v
			case "ctmask":
				ctmask = v
			default:
				nfmask, ctmask = v, v
			}
		case "set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark", "save-mark", "restore-mark":
			op, opVal = o.Name, o.Values
		default:
			return fmt.Sprintf("CONNMARK --%s is not modelled", o.Name)
		}
	}
	switch op {
	case "save-mark":
		ct.Mark = (ct.Mark &^ ctmask) ^ (p.Mark & nfmask)
	case "restore-mark":
		p.Mark = (p.Mark &^ nfmask) ^ (ct.Mark & ctmask)
	case "":
		return "CONNMARK without an operation"
	default:
		if len(opVal) != 1 {
			return fmt.Sprintf("CONNMARK --%s needs one value", op)
		}
		v, m, err := iptables.ParseMark(opVal[0])
		if err != nil {
			return "CONNMARK: " + err.Error()
		}
		switch op {
		case "set-xmark":
			ct.Mark = (ct.Mark &^ m) ^ v
		case "set-mark":
			ct.Mark = (ct.Mark &^ m) | v
		case "and-mark":
			ct.Mark &= v
		case "or-mark":
			ct.Mark |= v
		case "xor-mark":
			ct.Mark ^= v
		}
	}
	return ""
}

// NATRange is a --to-destination / --to-source / --to-ports value: addresses MinAddr-MaxAddr
// (invalid when the value names none) and ports MinPort-MaxPort (0 when it names none).
type NATRange struct {
	MinAddr, MaxAddr netip.Addr
	MinPort, MaxPort uint16
}

// ParseNATSpec parses "addr", "addr:port", "addr-addr:port-port", ":port", or for IPv6
// "[addr]:port".
func ParseNATSpec(f inet.Family, s string) (NATRange, error) {
	var addrS, portS string
	if f == inet.V6 && strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return NATRange{}, fmt.Errorf("%q: missing ]", s)
		}
		addrS = s[1:end]
		portS = strings.TrimPrefix(s[end+1:], ":")
		if rest, ok := strings.CutPrefix(portS, "-["); ok {
			// [a]-[b]:port
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return NATRange{}, fmt.Errorf("%q: missing ]", s)
			}
			addrS += "-" + rest[:end]
			portS = strings.TrimPrefix(rest[end+1:], ":")
		}
	} else if f == inet.V6 {
		addrS = s
	} else {
		addrS, portS, _ = strings.Cut(s, ":")
	}
	var r NATRange
	if addrS != "" {
		lo, hi, isRange := strings.Cut(addrS, "-")
		var err error
		if r.MinAddr, err = netip.ParseAddr(strings.Trim(lo, "[]")); err != nil {
			return NATRange{}, fmt.Errorf("%q: %q is not an address", s, lo)
		}
		r.MaxAddr = r.MinAddr
		if isRange {
			if r.MaxAddr, err = netip.ParseAddr(strings.Trim(hi, "[]")); err != nil {
				return NATRange{}, fmt.Errorf("%q: %q is not an address", s, hi)
			}
		}
	}
	var err error
	if r.MinPort, r.MaxPort, err = ParsePortRange(portS); err != nil {
		return NATRange{}, fmt.Errorf("%q: %w", s, err)
	}
	return r, nil
}

// ParseNATRange parses a --to-destination / --to-source value (ParseNATSpec) into its first
// address and first port.
func ParseNATRange(f inet.Family, s string) (netip.Addr, uint16, error) {
	r, err := ParseNATSpec(f, s)
	return r.MinAddr, r.MinPort, err
}

// ParsePortRange parses "", "80", "1024-65535" (or "1024:65535"); 0, 0 for "".
func ParsePortRange(s string) (lo, hi uint16, err error) {
	if s == "" {
		return 0, 0, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		a, b, isRange = strings.Cut(s, ":")
	}
	if lo, err = parsePort(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = parsePort(b); err != nil {
			return 0, 0, err
		}
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("port range %q runs backwards", s)
	}
	return lo, hi, nil
}

func parsePort(s string) (uint16, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a number 0-65535", s)
	}
	return uint16(p), nil
}

func FirstPort(s string) (uint16, error) {
	lo, _, err := ParsePortRange(s)
	return lo, err
}

// natPort is the port NAT leaves a packet with, as get_unique_tuple and
// nf_nat_l4proto_unique_tuple choose it (net/netfilter/nf_nat_core.c): the original port is
// kept when it is in the range (and no other connection holds the same tuple, which the model
// cannot see, so it assumes none does) unless --random or --random-fully is given. Otherwise a
// source port is picked at random from the range; a destination port is the range's first
// (off = 0 for DNAT), or random with --random. Without a range only --random moves a source
// port, into 1-511, 600-1023 or 1024-65535 by where it was. known is false when the port is
// random: then the caller shows the range, never a made-up number.
func natPort(orig, lo, hi uint16, src, random bool) (port uint16, known bool, rng string) {
	if lo == 0 && hi == 0 {
		if !random || !src {
			return orig, true, ""
		}
		switch {
		case orig == 0:
			return 0, false, "1-65535"
		case orig < 512:
			return 0, false, "1-511"
		case orig < 1024:
			return 0, false, "600-1023"
		}
		return 0, false, "1024-65535"
	}
	rng = fmt.Sprint(lo)
	if hi != lo {
		rng = fmt.Sprintf("%d-%d", lo, hi)
	}
	if lo == hi && !random {
		return lo, true, rng
	}
	if orig != 0 && orig >= lo && orig <= hi && !random {
		return orig, true, rng
	}
	if !src && !random {
		return lo, true, rng
	}
	return 0, false, rng
}

// setNATPort applies natPort to the packet's source or destination port and says how it was
// chosen when that is worth saying.
func setNATPort(p *Packet, r *iptables.Rule, lo, hi uint16, src bool) string {
	_, rnd := r.TargetOption("random")
	_, rndFully := r.TargetOption("random-fully")
	orig := p.DPort
	if src {
		orig = p.SPort
	}
	port, known, rng := natPort(orig, lo, hi, src, rnd || rndFully)
	pp, pr := &p.DPort, &p.DPortRange
	if src {
		pp, pr = &p.SPort, &p.SPortRange
	}
	*pp, *pr = port, ""
	switch {
	case !known:
		*pr = rng
		why := "not the original port, which is outside it"
		if rnd || rndFully {
			why = "random"
		} else if orig == 0 {
			why = "the original port is not known"
		}
		return fmt.Sprintf(" (port: a port in %s, %s)", rng, why)
	case rng == "":
		return ""
	case port == orig:
		return fmt.Sprintf(" (port %d kept: it is in %s and the kernel keeps a port in range while no other connection holds the same tuple)", port, rng)
	case lo != hi:
		return fmt.Sprintf(" (port %d: the original %d is outside %s, and the kernel tries the range's first port first)", port, orig, rng)
	}
	return ""
}

// applyNAT applies a NAT target to the packet and says what it did. An empty description with
// no error means the target drops the packet (MASQUERADE or REDIRECT without an address).
func (n *Sim) applyNAT(r *iptables.Rule, hook string, p *Packet) (string, string) {
	s := n.s
	hasPorts := p.Proto == 6 || p.Proto == 17 || p.Proto == 132 || p.Proto == 33 || p.Proto == 136
	optVal := func(names ...string) (string, bool) {
		for _, n := range names {
			if o, ok := r.TargetOption(n); ok && len(o.Values) > 0 {
				return o.Values[0], true
			}
		}
		return "", false
	}
	switch r.Target {
	case "DNAT", "SNAT":
		name := "to-destination"
		if r.Target == "SNAT" {
			name = "to-source"
		}
		v, ok := optVal(name, "to")
		if !ok {
			return "", fmt.Sprintf("%s without --%s", r.Target, name)
		}
		rng, err := ParseNATSpec(p.Family, v)
		if err != nil {
			return "", fmt.Sprintf("%s --%s %v", r.Target, name, err)
		}
		a := rng.MinAddr
		addrNote := ""
		if rng.MaxAddr != rng.MinAddr {
			addrNote = fmt.Sprintf(" (address: one of %s-%s, the kernel picks by a hash of the addresses; the first is shown)", rng.MinAddr, rng.MaxAddr)
		}
		if r.Target == "DNAT" {
			old := netip.AddrPortFrom(p.Dst, p.DPort)
			if a.IsValid() {
				p.Dst = a
			}
			note := ""
			if hasPorts {
				note = setNATPort(p, r, rng.MinPort, rng.MaxPort, false)
			}
			return fmt.Sprintf("DNAT %s -> %s%s%s", inet.Endpoint(old), portEndpoint(p.Dst, p.DPort, p.DPortRange), addrNote, note), ""
		}
		old := netip.AddrPortFrom(p.Src, p.SPort)
		if a.IsValid() {
			p.Src = a
		}
		note := ""
		if hasPorts {
			note = setNATPort(p, r, rng.MinPort, rng.MaxPort, true)
		}
		return fmt.Sprintf("SNAT %s -> %s%s%s", inet.Endpoint(old), portEndpoint(p.Src, p.SPort, p.SPortRange), addrNote, note), ""
	case "MASQUERADE":
		a := n.fib.MasqueradeAddr(p.OIF, p.NextHop, p.Dst)
		if !a.IsValid() {
			return "", ""
		}
		old := netip.AddrPortFrom(p.Src, p.SPort)
		p.Src = a
		note := ""
		if hasPorts {
			v, _ := optVal("to-ports")
			lo, hi, err := ParsePortRange(v)
			if err != nil {
				return "", "MASQUERADE --to-ports " + err.Error()
			}
			note = setNATPort(p, r, lo, hi, true)
		}
		return fmt.Sprintf("MASQUERADE %s -> %s (address of %s)%s", inet.Endpoint(old), portEndpoint(p.Src, p.SPort, p.SPortRange), p.OIF, note), ""
	case "REDIRECT":
		// nf_nat_redirect_ipv4: locally generated packets go to loopback, others to the first
		// address of the interface they came in on.
		var a netip.Addr
		if p.LocalOut {
			a = netip.IPv6Loopback()
			if p.Family == inet.V4 {
				a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			}
		} else if l := s.LinkByName(p.IIF); l != nil {
			for _, ad := range l.Addrs {
				if inet.FamilyOf(ad.Prefix.Addr()) == p.Family {
					a = ad.Prefix.Addr()
					break
				}
			}
		}
		if !a.IsValid() {
			return "", ""
		}
		old := netip.AddrPortFrom(p.Dst, p.DPort)
		p.Dst = a
		note := ""
		if v, ok := optVal("to-ports"); ok && hasPorts {
			lo, hi, err := ParsePortRange(v)
			if err != nil {
				return "", "REDIRECT --to-ports " + err.Error()
			}
			note = setNATPort(p, r, lo, hi, false)
		}
		return fmt.Sprintf("REDIRECT %s -> %s%s", inet.Endpoint(old), portEndpoint(p.Dst, p.DPort, p.DPortRange), note), ""
	case "NETMAP":
		v, ok := optVal("to")
		if !ok {
			return "", "NETMAP without --to"
		}
		to, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return "", fmt.Sprintf("NETMAP --to %s is not a prefix", v)
			}
			to = netip.PrefixFrom(a, a.BitLen())
		}
		mapAddr := func(a netip.Addr) netip.Addr {
			ab, tb := a.AsSlice(), to.Addr().AsSlice()
			if len(ab) != len(tb) {
				return a
			}
			for i := range ab {
				bits := min(max(to.Bits()-8*i, 0), 8)
				m := byte(0xff << (8 - bits))
				ab[i] = ab[i]&^m | tb[i]&m
			}
			out, _ := netip.AddrFromSlice(ab)
			return out
		}
		if hook == "PREROUTING" || hook == "OUTPUT" {
			old := p.Dst
			p.Dst = mapAddr(p.Dst)
			return fmt.Sprintf("NETMAP destination %s -> %s", old, p.Dst), ""
		}
		old := p.Src
		p.Src = mapAddr(p.Src)
		return fmt.Sprintf("NETMAP source %s -> %s", old, p.Src), ""
	}
	return "", fmt.Sprintf("target %s is not modelled", r.Target)
}

// portEndpoint writes an address with its port, or with the range its port is picked from
// when NAT left it unknown.
func portEndpoint(a netip.Addr, port uint16, rng string) string {
	if port == 0 && rng != "" {
		if a.Is6() {
			return fmt.Sprintf("[%s]:(%s)", a, rng)
		}
		return fmt.Sprintf("%s:(%s)", a, rng)
	}
	return inet.Endpoint(netip.AddrPortFrom(a, port))
}

// addrType classifies an address as the addrtype match does (inet_dev_addr_type): from the
// local routing table, optionally only the routes of one device.
func (n *Sim) AddrType(a netip.Addr, dev string) string {
	if !a.IsValid() || a.IsUnspecified() {
		return "UNSPEC"
	}
	if a.IsMulticast() {
		return "MULTICAST"
	}
	if a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return "BROADCAST"
	}
	if !n.localRead {
		for _, r := range n.s.Routes {
			if r.Table == model.TableLocal {
				n.local = append(n.local, r)
			}
		}
		n.localRead = true
	}
	best := -1
	typ := "UNICAST"
	for _, r := range n.local {
		if r.Family != inet.FamilyOf(a) || !r.Dst.Contains(a) || r.Dst.Bits() <= best {
			continue
		}
		if dev != "" && r.Dev != dev {
			continue
		}
		best = r.Dst.Bits()
		typ = strings.ToUpper(r.Type)
		if typ == "" {
			typ = "UNICAST"
		}
	}
	return typ
}
