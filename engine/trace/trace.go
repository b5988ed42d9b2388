// Package trace follows one flow through a host and back (ip rules, routes, netfilter hooks,
// conntrack) and finds what breaks it.
package trace

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/netfilter"
	"roundtrip/engine/quote"
)

// This file follows one flow through a host in both directions: the request (the "forward
// leg") through the netfilter hooks and the routing decisions in the kernel's order, then the
// packet the far end sends back (the "reply leg") as conntrack sees it. Comparing the two legs
// finds the failures of the field cases (SCENARIOS.md): a reply that leaves by another NIC
// (case 1), forwarding off and no way back (case 4), a DNAT whose reply bypasses this host
// (case 5).

// Finding ids of trace. They are stable: scripts and the ui match on them.
const (
	FindingAsymmetricReturn   = "asymmetric-return"
	FindingReplyBypassesNAT   = "reply-bypasses-nat"
	FindingForwardingDisabled = "forwarding-disabled"
	FindingRPFilterDrop       = "rp-filter-drop"
	FindingNoReturnRoute      = "no-return-route"
	FindingNoRoute            = "no-route"
	FindingBlackhole          = "blackhole"
	FindingUnreachable        = "unreachable"
	FindingProhibit           = "prohibit"
	FindingFiltered           = "filtered"
	FindingUncertain          = "uncertain"
	// FindingAssumedIngress says which interface the trace assumed a flow arrives on when the
	// request named none and its source is not an address of this host.
	FindingAssumedIngress = "assumed-ingress"
	// FindingAssumedReturnRoute says what a forwarded flow without SNAT relies on when nothing
	// else is wrong: hosts this one cannot see must route the client back through it.
	FindingAssumedReturnRoute = "assumed-return-route"
	// FindingCandidates lists the outcomes of rules that depend on chance or state (a
	// random load-balancing branch, a rate limit, a recent list): the trace follows one and
	// names every other with what it depends on.
	FindingCandidates = "candidates"
	// FindingBridgeNoHairpin: a DNAT sends a packet back to its sender through a bridge port
	// without hairpin mode, which the bridge drops.
	FindingBridgeNoHairpin = "bridge-no-hairpin"
	// FindingRejectElsewhere: a REJECT's answer (ICMP error or TCP reset) is routed toward the
	// client's address by another interface than the request came in on, so the client never
	// hears it and waits as for a DROP.
	FindingRejectElsewhere = "reject-answer-elsewhere"
	// FindingKernelDisagrees is added by the live trace command when the kernel's own route
	// lookup (ip route get) differs from the model's.
	FindingKernelDisagrees = "model-kernel-disagree"
)

// Leg verdicts: how a leg ends. The routing failures share the FIB's verdict names.
const (
	LegLocal       = fib.VerdictLocal // delivered to a socket on this host
	LegForward     = "forward"        // routed through this host and sent on
	LegOutput      = "output"         // generated here and sent out
	LegBridged     = "bridged"        // forwarded by a bridge between two of its ports, not routed
	LegDrop        = "drop"
	LegReject      = "reject"
	LegUncertain   = "uncertain" // a rule the model cannot evaluate may change the path
	LegNoRoute     = fib.VerdictNoRoute
	LegBlackhole   = fib.VerdictBlackhole
	LegUnreachable = fib.VerdictUnreachable
	LegProhibit    = fib.VerdictProhibit
)

// Request is the flow to trace: its first packet as it reaches this host.
type Request struct {
	Proto    int            // IP protocol number (6 tcp, 17 udp, 1 icmp, ...)
	Src, Dst netip.AddrPort // port 0: any (or no ports, as for icmp)
	// IIF is the interface the packet arrives on; "" means the flow starts on this host (or,
	// when Src is not an address of this host, arrives where the route back to Src points).
	IIF  string
	Mark uint32 // fwmark the packet carries when it arrives
}

// Result is a traced flow: both legs and what is wrong with them. Its JSON form is
// stable: the ui and diagnose build on it.
type Result struct {
	Flow    Flow `json:"flow"`
	Forward Leg  `json:"forward"`
	// Reply is nil when the request does not get through, so no reply can come.
	Reply    *Leg              `json:"reply"`
	Findings []finding.Finding `json:"findings"`

	// forwardLookup is the routing decision that chose where the request goes, for comparison
	// with the kernel's own lookup.
	forwardLookup *routingDecision
}

// Flow is the request as it was asked for.
type Flow struct {
	Proto string         `json:"proto"`
	Src   netip.AddrPort `json:"src"`
	Dst   netip.AddrPort `json:"dst"`
	IIF   string         `json:"iif"`
	Mark  uint32         `json:"mark"`
}

// Leg is one direction of a flow through the host.
type Leg struct {
	IIF       string     `json:"iif"` // "" when generated on this host
	OIF       string     `json:"oif"` // "" when delivered locally or stopped
	Table     int        `json:"table"`
	TableName string     `json:"table_name"`
	Rule      *int       `json:"rule"` // priority of the ip rule that chose the table
	Gateway   netip.Addr `json:"gateway"`
	Src       netip.Addr `json:"src"` // the source address routing prefers toward the destination
	Verdict   string     `json:"verdict"`
	Steps     []Step     `json:"steps"`
	Packet    Packet     `json:"packet"` // the packet as it leaves or is delivered, after NAT

	outcome   string // the verdict before uncertainty overrides it
	uncertain bool
	route     fib.Result
}

// Step is one thing that happened to a packet: a netfilter rule, a routing decision, a check.
type Step struct {
	Hook     string `json:"hook"` // "nat PREROUTING", "routing", "rp_filter", "conntrack", ...
	What     string `json:"what"`
	Rule     string `json:"rule"` // the rule or route that did it, as a command
	Decisive bool   `json:"decisive"`
	// Backend is the iptables backend of the table ("legacy", "nft") when rules live in
	// both; "" otherwise.
	Backend string `json:"backend,omitempty"`
}

// Packet is a packet's addresses as it leaves (or is delivered).
type Packet struct {
	Proto string         `json:"proto"`
	Src   netip.AddrPort `json:"src"`
	Dst   netip.AddrPort `json:"dst"`
	Mark  uint32         `json:"mark"`
	// SrcPortRange and DstPortRange are set when NAT gave the packet a port the model cannot
	// know (its port is then 0): the range the kernel picks it from, "1024-65535".
	SrcPortRange string `json:"src_port_range,omitempty"`
	DstPortRange string `json:"dst_port_range,omitempty"`
}

// routingDecision is one FIB lookup with the flow it was asked for.
type routingDecision struct {
	Flow   fib.Flow
	Result fib.Result
}

// ForwardLookup returns the flow and the model's answer of the routing decision that chose
// where the request goes, so that a live trace can ask the kernel the same question.
func (r *Result) ForwardLookup() (fib.Flow, fib.Result, bool) {
	if r.forwardLookup == nil {
		return fib.Flow{}, fib.Result{}, false
	}
	return r.forwardLookup.Flow, r.forwardLookup.Result, true
}

// Hooks of the steps that end a leg in the kernel's input-path checks, which RTM_GETROUTE
// makes too (ip_route_input_slow, fib_validate_source).
const (
	HookRPFilter   = "rp_filter"
	HookForwarding = "forwarding"
)

// RequestStoppedAt reports whether the request itself (not its reply) was stopped by the step
// of that hook (HookRPFilter, HookForwarding): a route lookup of the request meets that check,
// one of the reply does not, so only the request's is an answer the kernel can confirm.
func (r *Result) RequestStoppedAt(hook string) bool {
	steps := r.Forward.Steps
	if len(steps) == 0 {
		return false
	}
	last := steps[len(steps)-1]
	return last.Decisive && last.Hook == hook
}

// Errors returns how many findings have severity error.
func (r *Result) Errors() int { return finding.CountErrors(r.Findings) }

// Has reports whether a finding with that id was made.
func (r *Result) Has(id string) bool { return r.Finding(id) != nil }

// Finding returns the first finding with that id, or nil.
func (r *Result) Finding(id string) *finding.Finding {
	for i := range r.Findings {
		if r.Findings[i].ID == id {
			return &r.Findings[i]
		}
	}
	return nil
}

type tracer struct {
	req  Request
	sub  bool // a trace of one random branch's path, inside candidates: no candidates of its own
	s    *model.State
	fib  *fib.FIB
	nf   *netfilter.Sim
	res  *Result
	seen map[string]bool // uncertain rules already reported
	// natSetUp is set when an nft nat chain set up NAT in the current NAT core round, even
	// one that changed nothing.
	natSetUp bool
	gwOn     func(string) netip.Addr // Options.GatewayOn
}

// Trace follows a flow through the host and back. It only reads the state: no kernel.
func Run(s *model.State, f *fib.FIB, req Request) *Result {
	return RunWith(s, f, req, Options{})
}

// Options change where RunWith reads what it does not ask the FIB.
type Options struct {
	// GatewayOn, when set, answers which gateway this host uses on an interface (the first
	// default route with a gateway through it in State.Routes' order, else the first route
	// with one) instead of State.Routes: a live trace whose FIB leaves a full table in the
	// kernel (fib.TableSource) holds none of that table's routes.
	GatewayOn func(iface string) netip.Addr
}

// RunWith is Run with options.
func RunWith(s *model.State, f *fib.FIB, req Request, opts Options) *Result {
	t := &tracer{s: s, fib: f, nf: netfilter.New(s, f), res: &Result{}, seen: map[string]bool{}, gwOn: opts.GatewayOn}
	return t.run(req)
}

// run traces the request into t.res.
func (t *tracer) run(req Request) *Result {
	t.req = req
	f := t.fib
	res := t.res
	fam := inet.FamilyOf(req.Dst.Addr())
	res.Flow = Flow{Proto: inet.ProtoName(req.Proto), Src: req.Src, Dst: req.Dst, IIF: req.IIF, Mark: req.Mark}
	res.Findings = []finding.Finding{}
	t.modelLimits()

	p := &netfilter.Packet{Family: fam, Proto: req.Proto, Src: req.Src.Addr(), Dst: req.Dst.Addr(),
		SPort: req.Src.Port(), DPort: req.Dst.Port(), IIF: req.IIF, Mark: req.Mark, ICMPType: -1}
	switch req.Proto {
	case 6:
		p.TCPFlags = netfilter.TCPSYN
	case 1:
		p.ICMPType = 8
	case 58:
		p.ICMPType = 128
	}
	if p.IIF == "" && p.Src.IsValid() && !p.Src.IsUnspecified() && !t.isLocal(p.Src) {
		// A flow from elsewhere that names no ingress: assume it comes in where this host's
		// route to its source points, and say so, since asymmetric setups break exactly there.
		back := f.Lookup(fib.Flow{Family: fam, Dst: p.Src, Proto: req.Proto})
		if back.OIF != "" {
			p.IIF = back.OIF
			t.add(finding.Finding{ID: FindingAssumedIngress, Severity: finding.SeverityInfo,
				Summary:  fmt.Sprintf("assumed the flow arrives on %s, where this host routes %s; give --iif if it arrives elsewhere", back.OIF, p.Src),
				Evidence: []string{t.lookupText(back)},
				Fix:      finding.Fix{Summary: "name the ingress interface with --iif", Args: []string{}}})
		}
	}
	ct := &netfilter.Conn{State: netfilter.CTNew, Orig: netfilter.Tuple{Src: req.Src, Dst: req.Dst}}
	fwd := &res.Forward
	if p.IIF != "" {
		t.receive(fwd, p, ct, true)
	} else {
		t.send(fwd, p, ct, true)
	}
	ct.NATed = netfilter.Tuple{Src: netip.AddrPortFrom(p.Src, p.SPort), Dst: netip.AddrPortFrom(p.Dst, p.DPort)}
	t.finishLeg(fwd, p)

	switch fwd.outcome {
	case LegLocal, LegForward, LegOutput, LegBridged:
	case LegReject:
		t.checkRejectAnswer(fwd, p)
		return res
	default:
		return res // no reply can come
	}

	// The reply: what the far end sends back, as conntrack sees it (ESTABLISHED, with the
	// connmark of the request), entering where the request left.
	rp := &netfilter.Packet{Family: fam, Proto: req.Proto, Src: p.Dst, Dst: p.Src, SPort: p.DPort, DPort: p.SPort, ICMPType: -1,
		SPortRange: p.DPortRange, DPortRange: p.SPortRange}
	switch req.Proto {
	case 6:
		rp.TCPFlags = netfilter.TCPSYN | netfilter.TCPACK
	case 1:
		rp.ICMPType = 0
	case 58:
		rp.ICMPType = 129
	}
	rct := &netfilter.Conn{State: netfilter.CTEstablished, Reply: true, Mark: ct.Mark, Orig: ct.Orig, NATed: ct.NATed, DNAT: ct.DNAT, SNAT: ct.SNAT, DNATBy: ct.DNATBy, SNATBy: ct.SNATBy}
	if ct.State == netfilter.CTUntracked {
		rct.State = netfilter.CTUntracked
	}
	reply := &Leg{}
	res.Reply = reply
	bypass := t.checkReplyBypassesNAT(fwd, ct)
	if bypass && t.bridgeOf(fwd.OIF) == "" {
		reply.Steps = append(reply.Steps, Step{Hook: "reply", What: fmt.Sprintf("%s answers %s directly on the shared link; this leg is what would happen if the reply came back through this host", ct.NATed.Dst.Addr(), ct.Orig.Src.Addr())})
	}
	switch fwd.outcome {
	case LegForward, LegOutput, LegBridged:
		rp.IIF = fwd.OIF
		t.receive(reply, rp, rct, false)
	case LegLocal:
		// A socket of this host answers: the reply is locally generated.
		t.send(reply, rp, rct, false)
	}
	t.finishLeg(reply, rp)
	t.checkReplyDirectionNAT(reply, rp, rct)
	t.checkAsymmetric(fwd, reply, ct)
	if !bypass {
		t.checkNoReturnRoute(fwd, ct)
		t.checkAssumedReturn(fwd, reply, ct)
	}
	return res
}

// checkRejectAnswer follows the answer a REJECT sends for a request that came in on an
// interface: the kernel routes it to the request's source like any packet this host sends
// (icmp_send, nf_send_reset), so when that route leaves elsewhere the client never hears the
// rejection and waits as for a DROP.
func (t *tracer) checkRejectAnswer(fwd *Leg, p *netfilter.Packet) {
	in := fwd.IIF
	if in == "" || !p.Src.IsValid() || t.isLocal(p.Src) {
		return
	}
	r := t.fib.Lookup(fib.Flow{Family: p.Family, Dst: p.Src, Proto: 1})
	if r.OIF == in || r.OIF != "" && t.bridgeOf(r.OIF) == in || t.bridgeOf(in) == r.OIF {
		return
	}
	where := "nowhere (" + r.Verdict + ")"
	if r.OIF != "" {
		where = "out " + r.OIF
	}
	fwd.Steps = append(fwd.Steps, Step{Hook: "reject", What: fmt.Sprintf("the rejection is routed to %s %s, not back out %s", p.Src, where, in), Rule: t.routeText(r)})
	t.add(finding.Finding{ID: FindingRejectElsewhere, Severity: finding.SeverityWarning,
		Summary:  fmt.Sprintf("the rejection of this request goes to %s %s, not out %s where the request came in: the client does not hear it and times out as if dropped", p.Src, where, in),
		Evidence: []string{t.lookupText(r)},
		Fix:      finding.Fix{Summary: fmt.Sprintf("route %s back out %s if the client should be told", p.Src, in), Args: []string{}}})
}

// modelLimits reports the parts of the state the trace cannot see.
func (t *tracer) modelLimits() {
	nf := t.s.Netfilter
	if nf.Unavailable != "" {
		t.add(finding.Finding{ID: FindingUncertain, Severity: finding.SeverityWarning,
			Summary:  "netfilter was not read, so the trace ignores iptables rules and NAT",
			Evidence: []string{nf.Unavailable},
			Fix:      finding.Fix{Summary: "make netfilter readable as the reason says (install iptables, or run as root) and trace again", Args: []string{}}})
	}
	for _, h := range nf.Hidden {
		t.add(finding.Finding{ID: FindingUncertain, Severity: finding.SeverityWarning,
			Summary:  "netfilter rules are loaded that could not be read; they may drop or rewrite this flow",
			Evidence: []string{h},
			Fix:      finding.Fix{Summary: "look at those rules as the reason says (iptables-legacy-save comes with the iptables package; native nft chains show with `nft list ruleset`) and check the flow against them", Args: []string{}}})
	}
	if len(nf.Foreign) > 0 {
		t.add(finding.Finding{ID: FindingUncertain, Severity: finding.SeverityWarning,
			Summary:  "native nftables tables are loaded that the trace does not model; they may drop or rewrite this flow",
			Evidence: []string{"nft tables: " + strings.Join(nf.Foreign, ", ")},
			Fix:      finding.Fix{Summary: "check those tables with `nft list ruleset`", Args: []string{}}})
	}
	t.nftLimits()
}

func (t *tracer) add(f finding.Finding) {
	if f.Evidence == nil {
		f.Evidence = []string{}
	}
	if f.Fix.Args == nil {
		f.Fix.Args = []string{}
	}
	t.res.Findings = append(t.res.Findings, f)
}

// table runs one netfilter table at one hook, in every iptables backend that holds it, and
// records what it did. It returns false when the packet is dropped or rejected.
func (t *tracer) table(leg *Leg, table, hook string, p *netfilter.Packet, ct *netfilter.Conn) bool {
	backends, defined := t.nf.TableOrder(p.Family, table)
	if len(backends) == 0 {
		return true // no such table: the kernel has no hook for it
	}
	if !defined && t.checkTableOrder(table, hook, backends, p, ct) {
		leg.uncertain = true
	}
	mixed := t.s.Netfilter.Mixed()
	for _, b := range backends {
		label := ""
		if mixed {
			label = iptables.BackendName(b)
		}
		pIn, ctIn := *p, *ct
		r := t.nf.RunIn(b, table, hook, p, ct)
		if !t.recordTable(leg, label, b, table, hook, r, &pIn, &ctIn, p, ct) {
			return false
		}
		if table == "nat" && natDecided(r) {
			// The NAT core runs its nat chains until one sets up the mapping
			// (nf_nat_inet_fn): the other backend's nat table is not consulted.
			break
		}
	}
	return true
}

// tableRun runs a table's backends in one order on copies of the packet, as table does,
// for comparing orders.
func (t *tracer) tableRun(table, hook string, backends []string, p netfilter.Packet, ct netfilter.Conn) (netfilter.Packet, netfilter.Conn, string, string, []string) {
	// Which rule drops does not matter, only whether the packet is dropped: the verdict is
	// compared, the decider only told.
	verdict, text := netfilter.Accept, netfilter.Accept
	var acted []string
	for _, b := range backends {
		r := t.nf.RunIn(b, table, hook, &p, &ct)
		for _, s := range r.Steps {
			if s.Rule != "" && !strings.HasPrefix(s.What, "uncertain") {
				acted = append(acted, s.Rule)
			}
		}
		if r.Verdict != netfilter.Accept {
			verdict, text = r.Verdict, r.Verdict+" by "+r.Decider
			break
		}
		if table == "nat" && natDecided(r) {
			break
		}
	}
	outcome := fmt.Sprintf("%s first: %s, %s", iptables.BackendName(backends[0]), text, packetText(&p))
	if p.Mark != 0 || ct.Mark != 0 {
		outcome += fmt.Sprintf(", mark %#x, connmark %#x", p.Mark, ct.Mark)
	}
	return p, ct, verdict, outcome, acted
}

// natDecided reports whether a nat table set up the connection's mapping (a NAT target ends
// the table with a decisive step), after which the NAT core consults no other nat table.
func natDecided(r netfilter.Result) bool {
	for _, s := range r.Steps {
		if s.Decisive && s.Rule != "" {
			return true
		}
	}
	return false
}

// checkTableOrder reports a table both backends hold when the order the kernel runs them in,
// which is not defined, changes what happens to the packet: the rules of each backend that
// acted are named. It reports whether the order matters.
func (t *tracer) checkTableOrder(table, hook string, backends []string, p *netfilter.Packet, ct *netfilter.Conn) bool {
	reversed := []string{backends[1], backends[0]}
	pa, ca, va, oa, acted := t.tableRun(table, hook, backends, *p, *ct)
	pb, cb, vb, ob, actedB := t.tableRun(table, hook, reversed, *p, *ct)
	if pa == pb && ca == cb && va == vb {
		return false
	}
	key := "order " + table + " " + hook
	if t.seen[key] {
		return true
	}
	t.seen[key] = true
	for _, r := range actedB {
		if !slices.Contains(acted, r) {
			acted = append(acted, r)
		}
	}
	t.add(finding.Finding{ID: FindingUncertain, Severity: finding.SeverityWarning,
		Summary: fmt.Sprintf("%s %s is in both iptables backends (%s) at the same priority, where the kernel runs the most recently registered first and nothing shows which that is; the outcome depends on it, and the trace assumed %s first",
			table, hook, strings.Join(backendNames(backends), " and "), iptables.BackendName(backends[0])),
		Evidence: append(acted, oa, ob),
		Fix:      finding.Fix{Summary: "keep the rules of one table in one backend: move them with " + quote.ShellJoin(iptables.BackendCommand(p.Family, iptables.BackendLegacy)+"-save", "-t", table) + " and " + quote.ShellJoin(iptables.BackendCommand(p.Family, iptables.BackendNFT)+"-restore", "--noflush")}})
	return true
}

func backendNames(bs []string) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = iptables.BackendName(b)
	}
	return out
}

// recordTable records what one backend's table did at a hook; false when it dropped or
// rejected the packet.
func (t *tracer) recordTable(leg *Leg, label, backend, table, hook string, r netfilter.Result, pIn *netfilter.Packet, ctIn *netfilter.Conn, p *netfilter.Packet, ct *netfilter.Conn) bool {
	hookName := table + " " + hook
	for _, s := range r.Steps {
		leg.Steps = append(leg.Steps, Step{Hook: hookName, What: s.What, Rule: s.Rule, Decisive: s.Decisive, Backend: label})
	}
	if label != "" {
		hookName += " (" + label + ")"
	}
	cmd := iptables.Command(p.Family)
	if tb := t.s.Netfilter.TableIn(backend, p.Family, table); tb != nil {
		cmd = t.s.Netfilter.TableCommand(tb)
	}
	if len(r.Branches) > 0 && !t.sub {
		t.candidates(leg, backend, table, hook, pIn, ctIn, p, r)
	}
	for _, u := range r.Uncertain {
		leg.uncertain = true
		if t.seen[u.Rule] {
			continue
		}
		t.seen[u.Rule] = true
		t.add(finding.Finding{ID: FindingUncertain, Severity: finding.SeverityWarning,
			Summary:  fmt.Sprintf("a rule in %s cannot be evaluated (%s); the trace assumed it does not match", hookName, u.Why),
			Evidence: []string{u.Rule},
			Fix:      finding.Fix{Summary: "check by hand whether this rule matches the flow (" + quote.ShellJoin(cmd, "-t", table, "-L", hook, "-v", "-n") + " shows its counters)"}})
	}
	switch r.Verdict {
	case netfilter.Drop, netfilter.Reject:
		leg.outcome = LegDrop
		if r.Verdict == netfilter.Reject {
			leg.outcome = LegReject
		}
		dir := "request"
		if ct.Reply {
			dir = "reply"
		}
		ev := []string{r.Decider, "packet: " + packetText(p)}
		if r.Verdict == netfilter.Reject && !strings.Contains(r.Decider, "tcp-reset") {
			ev = append(ev, icmpRateLimitNote)
		}
		t.add(finding.Finding{ID: FindingFiltered, Severity: finding.SeverityError,
			Summary:  fmt.Sprintf("the %s is %s by %s", dir, map[string]string{netfilter.Drop: "dropped", netfilter.Reject: "rejected"}[r.Verdict], hookName),
			Evidence: ev,
			Fix:      finding.Fix{Summary: fmt.Sprintf("allow the flow in %s before that rule (or remove the rule) if it should pass", hookName)}})
		return false
	}
	return true
}

// icmpRateLimitNote says what a REJECT's ICMP error depends on that the model cannot know:
// icmp_send's per-destination limit (icmpv4_xrlim_allow over the inet_peer's tokens, whose
// refill time ICMP redirects to the same host reset too, ip_rt_send_redirect).
const icmpRateLimitNote = "the ICMP error is rate-limited per destination (net.ipv4.icmp_ratelimit, 1 s after a burst of 6; ICMP redirects this host sent to the client hold it back too): past the limit the client hears nothing and times out as for a DROP"

// candidates reports the outcomes of a table's branch rules (chance or state): the one the
// evaluation took and, for each branch, the other, evaluated again from the packet as it
// entered the table with that rule's outcome forced. Random branches get their probability
// of being the one taken (kube-proxy's endpoints: 1/3, 1/2 of the rest, the rest).
func (t *tracer) candidates(leg *Leg, backend, table, hook string, pIn *netfilter.Packet, ctIn *netfilter.Conn, pOut *netfilter.Packet, r netfilter.Result) {
	key := table + " " + hook
	for _, b := range r.Branches {
		key += "\x00" + b.Rule
	}
	if t.seen[key] {
		return
	}
	t.seen[key] = true
	random := true
	for _, b := range r.Branches {
		random = random && b.Prob >= 0 && !b.Taken
	}
	taken := outcomeText(r, pOut)
	differs := false
	rest := 1.0
	var ev []string
	for _, b := range r.Branches {
		pc, cc := *pIn, *ctIn
		t.nf.Force = map[*iptables.Rule]bool{b.Key(): !b.Taken}
		alt := t.nf.RunIn(backend, table, hook, &pc, &cc)
		t.nf.Force = nil
		differs = differs || alt.Verdict != r.Verdict
		cond := b.When
		if b.Taken {
			cond = b.Else
		}
		if random {
			ev = append(ev, fmt.Sprintf("%s (probability %s): %s%s", b.Rule, percentText(rest*b.Prob), outcomeText(alt, &pc), t.branchPath(b.Key())))
			rest *= 1 - b.Prob
			continue
		}
		out := outcomeText(alt, &pc)
		if alt.Decider == b.Rule {
			out = map[string]string{netfilter.Drop: "dropped", netfilter.Reject: "rejected"}[alt.Verdict] + " by this rule"
		}
		ev = append(ev, fmt.Sprintf("%s: %s; the rule: %s", cond, out, b.Rule))
	}
	sev := finding.SeverityInfo
	if differs {
		sev = finding.SeverityWarning
	}
	var summary string
	if random {
		ev = append(ev, fmt.Sprintf("none of them (probability %s), the path this trace follows: %s", percentText(rest), taken))
		summary = fmt.Sprintf("%s %s picks at random among %d branches (-m statistic); this trace follows one, every one is listed with its probability", table, hook, len(r.Branches)+1)
	} else {
		var assumed []string
		for _, b := range r.Branches {
			assumed = append(assumed, tern(b.Taken, b.When, b.Else))
		}
		ev = append([]string{fmt.Sprintf("as traced (assumed %s): %s", strings.Join(assumed, "; "), taken)}, ev...)
		summary = fmt.Sprintf("%s %s has rules whose outcome depends on rates or history; the trace assumes a quiet host and shows the other outcome", table, hook)
	}
	t.add(finding.Finding{ID: FindingCandidates, Severity: sev, Summary: summary, Evidence: ev,
		Fix: finding.Fix{Summary: "nothing to fix by itself: check the rule counters (" + quote.ShellJoin(iptables.Command(pIn.Family), "-t", table, "-L", hook, "-v", "-n") + ") or conntrack to see which outcome the kernel took", Args: []string{}}})
	leg.Steps = append(leg.Steps, Step{Hook: table + " " + hook, What: fmt.Sprintf("the outcome depends on chance or state: the %s finding lists every outcome", FindingCandidates)})
}

// branchPath follows the whole flow with a random branch rule forced to match, and says how
// the request ends: what the branch leads to later (kube-proxy's hairpin MASQUERADE of a pod
// that reaches itself through its service) is not in its own chain's outcome.
func (t *tracer) branchPath(key *iptables.Rule) string {
	if key == nil {
		return ""
	}
	saved := t.nf.Force
	t.nf.Force = map[*iptables.Rule]bool{key: true}
	sub := &tracer{s: t.s, fib: t.fib, nf: t.nf, res: &Result{}, seen: map[string]bool{}, sub: true, gwOn: t.gwOn}
	r := sub.run(t.req)
	t.nf.Force = saved
	l := r.Forward
	end := "; the request then: " + l.Verdict
	switch l.Verdict {
	case LegForward, LegOutput, LegBridged:
		p := l.Packet
		end += fmt.Sprintf(" out %s as %s -> %s", l.OIF, rangeEndpoint(p.Src, p.SrcPortRange), rangeEndpoint(p.Dst, p.DstPortRange))
	}
	if errs := finding.CountErrors(r.Findings); errs > 0 {
		end += fmt.Sprintf(" (%d error(s): %s)", errs, strings.Join(errorIDs(r.Findings), ", "))
	}
	return end
}

// errorIDs lists the ids of the error findings.
func errorIDs(fs []finding.Finding) []string {
	var out []string
	for _, f := range fs {
		if f.Severity == finding.SeverityError {
			out = append(out, f.ID)
		}
	}
	return out
}

// outcomeText says what a table did: dropped, rejected, or what NAT it applied.
func outcomeText(r netfilter.Result, p *netfilter.Packet) string {
	switch r.Verdict {
	case netfilter.Drop:
		return "dropped (" + r.Decider + ")"
	case netfilter.Reject:
		return "rejected (" + r.Decider + ")"
	}
	for i := len(r.Steps) - 1; i >= 0; i-- {
		if st := r.Steps[i]; st.Decisive || strings.HasPrefix(st.What, "mark ") {
			return st.What
		}
	}
	if len(r.Steps) > 0 && r.Steps[len(r.Steps)-1].What == "accepted" {
		return "accepted"
	}
	return "goes on: " + packetText(p)
}

func percentText(p float64) string { return strconv.FormatFloat(p*100, 'g', 4, 64) + "%" }

// natBeforeRouting runs the nat table of PREROUTING or OUTPUT for a connection's first packet.
// For a reply of an SNATed connection, conntrack instead puts the request's original source
// back as the destination at that hook, before routing (nf_nat_ipv4_pre_routing,
// nf_nat_ipv4_local_fn). It reports whether the packet goes on.
func (t *tracer) natBeforeRouting(leg *Leg, hook string, p *netfilter.Packet, ct *netfilter.Conn) bool {
	switch {
	case ct.State == netfilter.CTNew:
		return t.table(leg, "nat", hook, p, ct)
	case ct.Reply && ct.SNAT && ct.State != netfilter.CTUntracked:
		old := rangeEndpoint(netip.AddrPortFrom(p.Dst, p.DPort), p.DPortRange)
		p.Dst, p.DPort, p.DPortRange = ct.Orig.Src.Addr(), ct.Orig.Src.Port(), ""
		leg.Steps = append(leg.Steps, Step{Hook: reverseNATHook("nat "+hook, "SNAT", ct.SNATBy), What: fmt.Sprintf("conntrack reverses the SNAT: destination %s -> %s", old, netip.AddrPortFrom(p.Dst, p.DPort))})
	}
	return true
}

// route makes the routing decision of a leg and records it; the request's is kept for
// comparison with the kernel (ForwardLookup).
func (t *tracer) route(leg *Leg, fl fib.Flow, request bool) fib.Result {
	r := t.fib.Lookup(fl)
	if request {
		t.res.forwardLookup = &routingDecision{fl, r}
	}
	t.routingSteps(leg, "routing", r)
	leg.route = r
	return r
}

// receive follows a packet that arrives on p.IIF: PREROUTING, the routing decision, then
// INPUT or FORWARD and POSTROUTING (net/ipv4/ip_input.c, ip_forward.c).
func (t *tracer) receive(leg *Leg, p *netfilter.Packet, ct *netfilter.Conn, request bool) {
	leg.IIF = p.IIF
	if t.s.LinkByName(p.IIF) == nil {
		leg.Steps = append(leg.Steps, Step{Hook: "input", What: fmt.Sprintf("interface %s is not among this host's links", p.IIF)})
	}
	br := t.bridgeOf(p.IIF)
	brnf := br != "" && t.s.Sysctls.BridgeNFCall(p.Family)
	port := ""
	if br != "" && br != p.IIF {
		port = p.IIF
		// A bridge port hands its frames to the bridge: the IP layer, and iptables under
		// br_netfilter, see them on the bridge device (brnf_get_logical_dev).
		leg.Steps = append(leg.Steps, Step{Hook: "bridge", What: fmt.Sprintf("arrives on %s, a port of bridge %s: routing and iptables see it on %s", p.IIF, br, br)})
		p.IIF, leg.IIF = br, br
	}
	if brnf {
		p.Phys = &netfilter.PhysDev{In: port}
	}
	if br != "" && !brnf {
		if pfx, ok := t.bridgedOn(br, p.Src, p.Dst); ok {
			leg.Steps = append(leg.Steps, Step{Hook: "bridge", What: fmt.Sprintf("br_netfilter is off (%s): iptables and conntrack do not see bridged packets", t.s.Sysctls.BridgeNFText(p.Family))})
			t.bridged(leg, p, ct, br, port, pfx, false)
			return
		}
	}
	dstBefore := p.Dst
	if !t.hook(leg, "PREROUTING", p, ct,
		t.iptStage(leg, "raw", "PREROUTING", p, ct),
		stage{prio: prioConntrack, conntrack: true, run: func() bool { t.conntrackStep(leg, ct); return true }},
		t.iptStage(leg, "mangle", "PREROUTING", p, ct),
		stage{prio: prioNATDst, nat: true, run: func() bool { return t.natBeforeRouting(leg, "PREROUTING", p, ct) }}) {
		return
	}
	fl := fib.Flow{Family: p.Family, Src: p.Src, Dst: p.Dst, IIF: p.IIF, Mark: p.Mark, Proto: p.Proto, SPort: p.SPort, DPort: p.DPort}
	if brnf {
		// br_netfilter ran PREROUTING at the bridge, before the bridge decided between
		// bridging and passing the frame up (br_nf_pre_routing).
		if p.Dst != dstBefore {
			// br_nf_pre_routing_finish: a destination NAT changed is routed again (an input
			// route, so forwarding and rp_filter apply: with forwarding off the route is an
			// error route to this host, and the packet is dropped as on a routed path); when
			// the route leaves by the same bridge the frame stays bridged, to the new
			// destination's MAC address; otherwise it goes up to be routed.
			r := t.fib.Lookup(fl)
			if _, fwdOn := t.forwardingOn(br, p.Family); fwdOn && r.Verdict == model.RouteUnicast && r.OIF == br {
				t.routingSteps(leg, "routing", r)
				leg.route = r
				if !t.rpFilter(leg, p, r) {
					return
				}
				leg.Steps = append(leg.Steps, Step{Hook: "bridge", What: fmt.Sprintf("br_netfilter (%s): the new destination %s is on %s too, so the frame stays bridged", t.s.Sysctls.BridgeNFText(p.Family), p.Dst, br)})
				pfx := netip.PrefixFrom(p.Dst, p.Dst.BitLen())
				if r.Route != nil {
					pfx = r.Route.Dst
				}
				t.bridged(leg, p, ct, br, port, pfx, true)
				return
			}
		} else if pfx, ok := t.bridgedOn(br, p.Src, p.Dst); ok {
			leg.Steps = append(leg.Steps, Step{Hook: "bridge", What: fmt.Sprintf("br_netfilter is on (%s): the bridged packet passes iptables PREROUTING, FORWARD and POSTROUTING, seen on %s", t.s.Sysctls.BridgeNFText(p.Family), br)})
			t.bridged(leg, p, ct, br, port, pfx, true)
			return
		}
	}
	r := t.route(leg, fl, request)
	switch r.Verdict {
	case model.RouteLocal, model.RouteBroadcast:
		if !t.rpFilter(leg, p, r) {
			return
		}
		t.deliver(leg, p, ct)
	case model.RouteUnicast:
		if !t.forwarding(leg, p) {
			return
		}
		if !t.rpFilter(leg, p, r) {
			return
		}
		p.OIF, p.NextHop = r.OIF, nextHop(r, p.Dst)
		leg.OIF, leg.Gateway = r.OIF, r.Gateway
		if !t.hook(leg, "FORWARD", p, ct, t.iptStage(leg, "mangle", "FORWARD", p, ct), t.iptStage(leg, "filter", "FORWARD", p, ct)) {
			return
		}
		if !t.postrouting(leg, p, ct) {
			return
		}
		leg.outcome = LegForward
	default:
		t.routeFailure(leg, p, r)
	}
}

// hairpin decides a frame DNATed back to its sender: it must leave by the port it came in
// on, which the bridge does only with hairpin mode on that port (br_forward's should_deliver).
// The port is the one the flow was traced from, or, when the flow names the bridge, any port
// when all agree; otherwise the leg is uncertain. It returns false when the frame is dropped.
func (t *tracer) hairpin(leg *Leg, p *netfilter.Packet, br, port string) bool {
	var on *bool
	name := port
	if port != "" {
		if l := t.s.LinkByName(port); l != nil {
			on = l.Hairpin
		}
	} else {
		for _, l := range t.s.Links {
			if l.Master != br {
				continue
			}
			if l.Hairpin == nil || on != nil && *on != *l.Hairpin {
				on = nil
				break
			}
			on = l.Hairpin
			name = "every port of " + br
		}
	}
	switch {
	case on == nil:
		why := fmt.Sprintf("the DNAT sends the packet back to its sender %s: %s forwards it out the port it came in on only with hairpin mode on that port, and the state does not say which port that is or whether it has hairpin mode (give the port as --iif)", p.Dst, br)
		leg.uncertain = true
		leg.Steps = append(leg.Steps, Step{Hook: "bridge", What: "uncertain: " + why})
		t.add(finding.Finding{ID: FindingUncertain, Severity: finding.SeverityWarning,
			Summary:  "hairpin on a bridge: " + why,
			Evidence: []string{packetText(p)},
			Fix:      finding.Fix{Summary: "check the ports' hairpin flags with `bridge -d link show`", Args: []string{}}})
		return true
	case *on:
		leg.Steps = append(leg.Steps, Step{Hook: "bridge", What: fmt.Sprintf("back to its sender %s: hairpin mode is on (%s), so %s sends the frame back out the port it came in on", p.Dst, name, br)})
		return true
	}
	leg.outcome = LegDrop
	leg.Steps = append(leg.Steps, Step{Hook: "bridge", What: fmt.Sprintf("dropped: the DNAT sends the packet back to its sender %s, out the port it came in on, and hairpin mode is off (%s)", p.Dst, name), Decisive: true})
	// A placeholder stays unquoted: pasted as it is, it fails rather than naming a port.
	target := finding.Placeholder("PORT")
	if port != "" {
		target = quote.Shell(port)
	}
	t.add(finding.Finding{ID: FindingBridgeNoHairpin, Severity: finding.SeverityError,
		Summary:  fmt.Sprintf("the request is DNATed back to its sender %s on bridge %s, which does not send a frame back out the port it came in on without hairpin mode", p.Dst, br),
		Evidence: []string{packetText(p), fmt.Sprintf("hairpin mode is off (%s)", name)},
		Fix:      finding.Fix{Summary: "turn hairpin mode on for the port the sender is on: " + "bridge link set dev " + target + " hairpin on" + " (Docker does it when its userland proxy is off)", Args: []string{}}})
	return false
}

// bridgeOf returns the bridge an interface belongs to: itself when it is a bridge, its master
// when it is a port of one, "" otherwise.
func (t *tracer) bridgeOf(iface string) string {
	l := t.s.LinkByName(iface)
	if l == nil {
		return ""
	}
	if l.Kind == "bridge" {
		return l.Name
	}
	if m := t.s.LinkByName(l.Master); m != nil && m.Kind == "bridge" {
		return m.Name
	}
	return ""
}

// bridgedOn reports whether a packet from src to dst arriving on bridge br is bridged rather
// than routed: the sender reaches dst directly when both are in one network of the bridge,
// so the frame carries dst's MAC address, not the bridge's, and the bridge forwards it between
// its ports. The network is returned for the explanation.
func (t *tracer) bridgedOn(br string, src, dst netip.Addr) (netip.Prefix, bool) {
	if !src.IsValid() || !dst.IsValid() || t.nf.AddrType(dst, "") != "UNICAST" {
		return netip.Prefix{}, false // to this host (or broadcast): passed up, not bridged
	}
	own := false
	for _, pfx := range t.s.Connected(br) {
		if pfx.Addr().Is4() != dst.Is4() || pfx.Addr().IsLinkLocalUnicast() && dst.Is6() && !dst.IsLinkLocalUnicast() {
			continue
		}
		own = true
		if pfx.Bits() < pfx.Addr().BitLen() && pfx.Contains(src) && pfx.Contains(dst) {
			return pfx, true
		}
	}
	if !own {
		// A bridge without an address of the family is a plain switch: no sender addresses
		// the bridge itself, everything it gets is bridged.
		return netip.PrefixFrom(dst, 0).Masked(), true
	}
	return netip.Prefix{}, false
}

// bridged ends a leg that the bridge forwards between two of its ports: not routed, so
// ip_forward and rp_filter do not apply. With br_netfilter on (brnf) the packet passes
// FORWARD and POSTROUTING, seen on the bridge, and conntrack undoes NAT there as on a routed
// path (br_nf_forward_ip, br_nf_post_routing); PREROUTING has run already. port is the port it
// came in on, when known.
func (t *tracer) bridged(leg *Leg, p *netfilter.Packet, ct *netfilter.Conn, br, port string, pfx netip.Prefix, brnf bool) {
	why := fmt.Sprintf("%s and %s are both on %s (%s)", p.Src, p.Dst, br, pfx)
	if pfx.Bits() == 0 {
		why = fmt.Sprintf("%s has no address of this family, so it only switches", br)
	}
	leg.Steps = append(leg.Steps, Step{Hook: "bridge", What: why + fmt.Sprintf(": the frame is bridged between ports of %s, not routed (ip_forward does not apply)", br), Decisive: true})
	p.OIF, p.NextHop = br, p.Dst
	leg.OIF, leg.Gateway = br, netip.Addr{}
	if !ct.Reply && p.Dst == ct.Orig.Src.Addr() && !t.hairpin(leg, p, br, port) {
		return
	}
	if brnf {
		p.Phys.Bridged = true
		if !t.table(leg, "mangle", "FORWARD", p, ct) || !t.table(leg, "filter", "FORWARD", p, ct) {
			return
		}
		if !t.postrouting(leg, p, ct) {
			return
		}
	}
	leg.outcome = LegBridged
}

// deliver runs the INPUT hooks of a packet routed to this host.
func (t *tracer) deliver(leg *Leg, p *netfilter.Packet, ct *netfilter.Conn) {
	p.OIF = ""
	natInput := func() bool {
		switch {
		case ct.State == netfilter.CTNew && !ct.SNAT && !p.LocalOut:
			// nat INPUT holds SNAT rules for local delivery; a packet that looped back from
			// OUTPUT already had its source manipulation chosen at POSTROUTING.
			return t.table(leg, "nat", "INPUT", p, ct)
		case ct.Reply && ct.DNAT && ct.State != netfilter.CTUntracked:
			t.reverseDNAT(leg, "nat INPUT", p, ct)
		}
		return true
	}
	if !t.hook(leg, "INPUT", p, ct, t.iptStage(leg, "mangle", "INPUT", p, ct), t.iptStage(leg, "filter", "INPUT", p, ct),
		stage{prio: prioNATSrc, nat: true, run: natInput}) {
		return
	}
	leg.outcome = LegLocal
}

// send follows a packet generated on this host: the output route lookup (which picks the
// source address), OUTPUT, re-routing when a hook changed the mark or the destination
// (ip_route_me_harder), POSTROUTING, and loopback delivery for local destinations.
func (t *tracer) send(leg *Leg, p *netfilter.Packet, ct *netfilter.Conn, request bool) {
	p.LocalOut = true
	p.IIF = ""
	fl := fib.Flow{Family: p.Family, Src: p.Src, Dst: p.Dst, Mark: p.Mark, Proto: p.Proto, SPort: p.SPort, DPort: p.DPort}
	if p.Src.IsValid() && p.Src.IsUnspecified() {
		fl.Src = netip.Addr{}
	}
	r := t.route(leg, fl, request)
	if !fl.Src.IsValid() && r.Src.IsValid() {
		p.Src = r.Src
		leg.Steps = append(leg.Steps, Step{Hook: "routing", What: fmt.Sprintf("source address %s chosen by the route", r.Src)})
	}
	if request {
		ct.Orig.Src = netip.AddrPortFrom(p.Src, p.SPort)
	}
	if !t.outputRoute(leg, p, r) {
		return
	}
	// mangle OUTPUT (and nft chains of type route) route again when they change the mark;
	// the NAT core when it changes the destination.
	markBefore := p.Mark
	mangle := func() bool {
		if !t.table(leg, "mangle", "OUTPUT", p, ct) {
			return false
		}
		return p.Mark == markBefore || t.reroute(leg, p, fmt.Sprintf("mark changed %#x -> %#x", markBefore, p.Mark))
	}
	natOutput := func() bool {
		dstBefore := p.Dst
		if !t.natBeforeRouting(leg, "OUTPUT", p, ct) {
			return false
		}
		return p.Dst == dstBefore || t.reroute(leg, p, fmt.Sprintf("destination changed %s -> %s", dstBefore, p.Dst))
	}
	if !t.hook(leg, "OUTPUT", p, ct,
		t.iptStage(leg, "raw", "OUTPUT", p, ct),
		stage{prio: prioConntrack, conntrack: true, run: func() bool { t.conntrackStep(leg, ct); return true }},
		stage{prio: prioMangle, run: mangle},
		stage{prio: prioNATDst, nat: true, run: natOutput},
		t.iptStage(leg, "filter", "OUTPUT", p, ct)) {
		return
	}
	if !t.postrouting(leg, p, ct) {
		return
	}
	if leg.route.Verdict == model.RouteLocal || leg.route.Verdict == model.RouteBroadcast {
		// Local destinations loop back through lo and come in again: PREROUTING (without nat,
		// whose choices for this connection are made) and INPUT.
		leg.OIF, leg.Gateway = "", netip.Addr{}
		p.IIF, p.OIF = "lo", ""
		leg.Steps = append(leg.Steps, Step{Hook: "loopback", What: "delivered to this host through lo"})
		if !t.hook(leg, "PREROUTING", p, ct, t.iptStage(leg, "raw", "PREROUTING", p, ct), t.iptStage(leg, "mangle", "PREROUTING", p, ct)) {
			return
		}
		t.deliver(leg, p, ct)
		return
	}
	leg.outcome = LegOutput
}

// outputRoute applies an output route result to the packet; false when there is no way out.
func (t *tracer) outputRoute(leg *Leg, p *netfilter.Packet, r fib.Result) bool {
	switch r.Verdict {
	case model.RouteLocal, model.RouteBroadcast:
		p.OIF, p.NextHop = "lo", p.Dst
		leg.OIF, leg.Gateway = "", netip.Addr{}
		return true
	case model.RouteUnicast:
		p.OIF, p.NextHop = r.OIF, nextHop(r, p.Dst)
		leg.OIF, leg.Gateway = r.OIF, r.Gateway
		return true
	}
	t.routeFailure(leg, p, r)
	return false
}

// reroute repeats the output lookup after a hook changed the packet, as ip_route_me_harder does
// (the source address stays as it is).
func (t *tracer) reroute(leg *Leg, p *netfilter.Packet, why string) bool {
	fl := fib.Flow{Family: p.Family, Src: p.Src, Dst: p.Dst, Mark: p.Mark, Proto: p.Proto, SPort: p.SPort, DPort: p.DPort}
	r := t.fib.Lookup(fl)
	leg.Steps = append(leg.Steps, Step{Hook: "routing", What: "routed again: " + why})
	t.routingSteps(leg, "routing", r)
	leg.route = r
	return t.outputRoute(leg, p, r)
}

// postrouting runs mangle and nat POSTROUTING, or conntrack's reverse DNAT for a reply.
func (t *tracer) postrouting(leg *Leg, p *netfilter.Packet, ct *netfilter.Conn) bool {
	nat := func() bool {
		switch {
		case ct.State == netfilter.CTNew:
			return t.table(leg, "nat", "POSTROUTING", p, ct)
		case ct.Reply && ct.DNAT && ct.State != netfilter.CTUntracked:
			t.reverseDNAT(leg, "nat POSTROUTING", p, ct)
		}
		return true
	}
	return t.hook(leg, "POSTROUTING", p, ct, t.iptStage(leg, "mangle", "POSTROUTING", p, ct), stage{prio: prioNATSrc, nat: true, run: nat})
}

// reverseDNAT puts back the address the client spoke to as the reply's source (conntrack does
// it at the source-NAT hooks, after routing: the reply is routed from the backend's address).
func (t *tracer) reverseDNAT(leg *Leg, hook string, p *netfilter.Packet, ct *netfilter.Conn) {
	old := rangeEndpoint(netip.AddrPortFrom(p.Src, p.SPort), p.SPortRange)
	p.Src, p.SPort, p.SPortRange = ct.Orig.Dst.Addr(), ct.Orig.Dst.Port(), ""
	leg.Steps = append(leg.Steps, Step{Hook: reverseNATHook(hook, "DNAT", ct.DNATBy), What: fmt.Sprintf("conntrack reverses the DNAT: source %s -> %s", old, netip.AddrPortFrom(p.Src, p.SPort))})
}

// reverseNATHook labels conntrack's undoing of a NAT: by the iptables hook where it happens
// when an iptables nat table set the NAT up, else by the native nft chain that did (an
// nft-only host has no iptables nat table to name).
func reverseNATHook(iptHook, kind, by string) string {
	if by == "" {
		return iptHook
	}
	return fmt.Sprintf("conntrack (reverse of the %s by nft %s)", kind, by)
}

func (t *tracer) conntrackStep(leg *Leg, ct *netfilter.Conn) {
	switch {
	case ct.State == netfilter.CTUntracked:
		leg.Steps = append(leg.Steps, Step{Hook: "conntrack", What: "untracked: no NAT"})
	case ct.State == netfilter.CTNew:
		leg.Steps = append(leg.Steps, Step{Hook: "conntrack", What: "new connection (state NEW): the nat table is consulted"})
	default:
		what := "reply of a known connection (state ESTABLISHED): NAT is undone by conntrack, the nat table is not consulted"
		if ct.Mark != 0 {
			what += fmt.Sprintf("; connmark %#x", ct.Mark)
		}
		leg.Steps = append(leg.Steps, Step{Hook: "conntrack", What: what})
	}
}

// forwarding checks that the ingress interface forwards. The kernel checks the ingress
// device's forwarding flag (IN_DEV_FORWARD in ip_route_input_slow) and drops the packet
// without an ICMP error when it is off.
func (t *tracer) forwarding(leg *Leg, p *netfilter.Packet) bool {
	key, on := t.forwardingOn(p.IIF, p.Family)
	if on {
		return true
	}
	leg.outcome = LegDrop
	leg.Steps = append(leg.Steps, Step{Hook: HookForwarding, What: fmt.Sprintf("dropped: forwarding is off on %s", p.IIF), Rule: fmt.Sprintf("sysctl %s=%s", key, t.s.Sysctls.Text(key)), Decisive: true})
	if t.res.Has(FindingForwardingDisabled) {
		return false
	}
	cmd := quote.ShellJoin("sysctl", "-w", model.SysctlIPForward+"=1")
	if p.Family == inet.V6 {
		cmd = quote.ShellJoin("sysctl", "-w", model.SysctlIPv6Forward+"=1")
	}
	t.add(finding.Finding{ID: FindingForwardingDisabled, Severity: finding.SeverityError,
		Summary: fmt.Sprintf("the %s %s arrives on %s and is routed out %s, but forwarding is off: the kernel drops it", tern(leg == &t.res.Forward, "request", "reply"), packetText(p), p.IIF, leg.route.OIF),
		Evidence: []string{
			fmt.Sprintf("%s = %s", key, t.s.Sysctls.Text(key)),
			t.lookupText(leg.route),
		},
		Fix: finding.Fix{Summary: "turn forwarding on (" + cmd + ", persisted in /etc/sysctl.d) and make sure replies can come back (SNAT here or a route on the far side)",
			Wizard: finding.WizardSNATGateway, Args: []string{"--in", p.IIF, "--out", leg.route.OIF}}})
	return false
}

// forwardingOn returns the sysctl that decides forwarding for packets arriving on iface.
func (t *tracer) forwardingOn(iface string, f inet.Family) (string, bool) {
	if f == inet.V6 {
		// IPv6 forwarding is decided by all.forwarding (ip6_forward checks devconf_all).
		return model.SysctlIPv6Forward, t.s.Sysctls.Int(model.SysctlIPv6Forward, 0) == 1
	}
	key := model.ConfKey(iface, "forwarding")
	if _, ok := t.s.Sysctls[key]; ok {
		return key, t.s.Sysctls.Int(key, 0) == 1
	}
	return model.SysctlIPForward, t.s.Sysctls.IPForward()
}

// rpFilter runs the reverse-path check the kernel makes after the input route lookup
// (fib_validate_source).
func (t *tracer) rpFilter(leg *Leg, p *netfilter.Packet, r fib.Result) bool {
	fl := fib.Flow{Family: p.Family, Src: p.Src, Dst: p.Dst, IIF: p.IIF, Proto: p.Proto, SPort: p.SPort, DPort: p.DPort}
	if t.s.Sysctls.SrcValidMark(p.IIF) {
		fl.Mark = p.Mark
	}
	ok, rev, why := t.fib.RPFCheck(fl)
	mode := t.s.Sysctls.RPFilter(p.IIF)
	modeText := fmt.Sprintf("rp_filter %s (%s=%s, %s=%s)", rpModeName(mode),
		model.ConfKey("all", "rp_filter"), t.s.Sysctls.Text(model.ConfKey("all", "rp_filter")),
		model.ConfKey(p.IIF, "rp_filter"), t.s.Sysctls.Text(model.ConfKey(p.IIF, "rp_filter")))
	if ok {
		if mode != 0 {
			leg.Steps = append(leg.Steps, Step{Hook: HookRPFilter, What: modeText + ": passes; " + why})
		}
		return true
	}
	leg.outcome = LegDrop
	leg.Steps = append(leg.Steps, Step{Hook: HookRPFilter, What: modeText + ": dropped; " + why, Rule: t.routeText(rev), Decisive: true})
	dir := "request"
	if leg != &t.res.Forward {
		dir = "reply"
	}
	t.add(finding.Finding{ID: FindingRPFilterDrop, Severity: finding.SeverityError,
		Summary: fmt.Sprintf("the %s from %s arriving on %s fails the reverse-path filter: the kernel drops it as a martian", dir, p.Src, p.IIF),
		Evidence: []string{
			modeText,
			"reverse lookup: " + t.lookupText(rev),
			why,
		},
		Fix: finding.Fix{Summary: fmt.Sprintf("route %s back via %s (policy routing), or make rp_filter loose on %s: %s and %s", p.Src, p.IIF, p.IIF,
			quote.ShellJoin("sysctl", "-w", model.ConfKey("all", "rp_filter")+"=2"), quote.ShellJoin("sysctl", "-w", model.ConfKey(p.IIF, "rp_filter")+"=2"))}})
	return false
}

func rpModeName(m int) string {
	switch m {
	case 0:
		return "off"
	case 1:
		return "strict"
	case 2:
		return "loose"
	}
	return fmt.Sprint(m)
}

// routeFailure records a routing decision that ends the leg.
func (t *tracer) routeFailure(leg *Leg, p *netfilter.Packet, r fib.Result) {
	id, verdict, what := FindingNoRoute, LegNoRoute, "no route"
	switch r.Verdict {
	case model.RouteBlackhole:
		id, verdict, what = FindingBlackhole, LegBlackhole, "a blackhole route or rule discards it silently"
	case model.RouteUnreachable:
		id, verdict, what = FindingUnreachable, LegUnreachable, "an unreachable route or rule rejects it (ICMP host unreachable)"
	case model.RouteProhibit:
		id, verdict, what = FindingProhibit, LegProhibit, "a prohibit route or rule rejects it (ICMP administratively prohibited)"
	case fib.VerdictInvalid:
		verdict, what = LegDrop, "the kernel refuses the lookup: "+r.Note
	default:
		what = fmt.Sprintf("no table has a route to %s", p.Dst)
	}
	leg.outcome = verdict
	dir := "request"
	if leg != &t.res.Forward {
		dir = "reply"
	}
	t.add(finding.Finding{ID: id, Severity: finding.SeverityError,
		Summary:  fmt.Sprintf("the %s %s cannot be routed: %s", dir, packetText(p), what),
		Evidence: []string{t.lookupText(r)},
		Fix:      finding.Fix{Summary: fmt.Sprintf("add a route to %s (or remove the %s route/rule that catches it)", p.Dst, r.Verdict)}})
}

// routingSteps records a FIB lookup: the rules that matched but did not decide, then the
// decision.
func (t *tracer) routingSteps(leg *Leg, hook string, r fib.Result) {
	for i, st := range r.Steps {
		if !st.Matched || i == len(r.Steps)-1 || isDefaultRule(st.Rule) {
			continue
		}
		leg.Steps = append(leg.Steps, Step{Hook: hook, What: fmt.Sprintf("rule %d matched: %s", st.Rule.Priority, st.Outcome), Rule: fmt.Sprintf("ip rule %s", st.Rule.Args(t.s.TableName))})
	}
	leg.Steps = append(leg.Steps, Step{Hook: hook, What: r.ExplainDecision(t.s.TableName), Rule: t.routeText(r), Decisive: true})
	leg.Table, leg.TableName = r.Table, t.s.TableName(r.Table)
	leg.Rule = nil
	if r.Rule != nil {
		prio := r.Rule.Priority
		leg.Rule = &prio
	}
	leg.Src = r.PrefSrc
	if r.Src.IsValid() && !r.Src.IsUnspecified() && leg.IIF == "" {
		leg.Src = r.Src
	}
}

func (t *tracer) lookupText(r fib.Result) string { return r.Explain(t.s.TableName) }

// isDefaultRule reports whether a rule is one of the three the kernel installs (local, main,
// default lookups from all), whose fall-through says nothing worth showing.
func isDefaultRule(r model.Rule) bool {
	return r.Selectors() == "from all" && (r.Action == model.ActionTable || r.Action == "") &&
		(r.Table == model.TableLocal || r.Table == model.TableMain || r.Table == model.TableDefault)
}

// routeText is the deciding route (or rule) as an ip command.
func (t *tracer) routeText(r fib.Result) string {
	if r.Route != nil {
		return fmt.Sprintf("ip route %s", r.Route.Args(t.s.TableName))
	}
	if r.Rule != nil {
		return fmt.Sprintf("ip rule %s", r.Rule.Args(t.s.TableName))
	}
	return ""
}

func nextHop(r fib.Result, dst netip.Addr) netip.Addr {
	if r.Gateway.IsValid() {
		return r.Gateway
	}
	return dst
}

func (t *tracer) finishLeg(leg *Leg, p *netfilter.Packet) {
	leg.Packet = Packet{Proto: inet.ProtoName(p.Proto), Src: netip.AddrPortFrom(p.Src, p.SPort), Dst: netip.AddrPortFrom(p.Dst, p.DPort), Mark: p.Mark,
		SrcPortRange: p.SPortRange, DstPortRange: p.DPortRange}
	leg.Verdict = leg.outcome
	if leg.uncertain {
		leg.Verdict = LegUncertain
	}
	if leg.Steps == nil {
		leg.Steps = []Step{}
	}
}

func packetText(p *netfilter.Packet) string {
	return fmt.Sprintf("%s %s -> %s", inet.ProtoName(p.Proto), rangeEndpoint(netip.AddrPortFrom(p.Src, p.SPort), p.SPortRange), rangeEndpoint(netip.AddrPortFrom(p.Dst, p.DPort), p.DPortRange))
}

// isLocal reports whether an address is one of this host's (a local route in table local).
func (t *tracer) isLocal(a netip.Addr) bool { return t.nf.AddrType(a, "") == "LOCAL" }

// checkAsymmetric finds a reply that leaves by another interface than the request came in on
// (case 1): the next hop there never saw the request, and the client sees a source it never
// spoke to.
func (t *tracer) checkAsymmetric(fwd, reply *Leg, ct *netfilter.Conn) {
	if fwd.IIF == "" || fwd.IIF == "lo" || reply.OIF == "" || reply.OIF == fwd.IIF {
		return
	}
	if reply.outcome != LegForward && reply.outcome != LegOutput {
		return
	}
	ev := []string{
		fmt.Sprintf("the request %s arrived on %s", tupleText(ct.Orig), fwd.IIF),
		fmt.Sprintf("the reply %s -> %s leaves by %s: %s", inet.Endpoint(reply.Packet.Src), inet.Endpoint(reply.Packet.Dst), reply.OIF, t.lookupText(reply.route)),
		t.replySourceText(reply, ct),
	}
	if by := markSetter(reply); by != "" && reply.route.Rule != nil && reply.route.Rule.Mark != nil {
		// The mark that chose the route is the firewall's doing: name the rule that set it.
		ev = append(ev, fmt.Sprintf("the reply's mark %#x, which rule %d matches, was set by %s", reply.Packet.Mark, reply.route.Rule.Priority, by))
	}
	gw := t.gatewayOn(fwd.IIF)
	// The wizard's --uplink is IFACE[:GATEWAY]; the gateway is left out when it is not known
	// so the wizard detects it or asks.
	uplink := fwd.IIF
	if gw.IsValid() {
		uplink += ":" + gw.String()
	}
	args := []string{"--uplink", uplink}
	fix := fmt.Sprintf("send replies back out %s: a table per uplink with its default route and an ip rule that selects it", fwd.IIF)
	if fwd.outcome == LegLocal {
		if gw.IsValid() {
			fix += fmt.Sprintf(" (%s table T; ip rule add from %s table T)", quote.ShellJoin("ip", "route", "add", "default", "via", gw.String(), "dev", fwd.IIF), ct.NATed.Dst.Addr())
		} else {
			fix += fmt.Sprintf(" (ip route add ... dev %s table T; ip rule add from %s table T)", quote.Shell(fwd.IIF), ct.NATed.Dst.Addr())
		}
	} else {
		// A forwarded flow's reply has no local source address to select a table by.
		fix += fmt.Sprintf(", chosen by a connmark set on ingress (CONNMARK on %s, ip rule fwmark)", fwd.IIF)
		args = append(args, "--mode", "connmark")
	}
	t.add(finding.Finding{ID: FindingAsymmetricReturn, Severity: finding.SeverityError,
		Summary:  fmt.Sprintf("the request comes in on %s but the reply leaves by %s", fwd.IIF, reply.OIF),
		Evidence: ev,
		Fix:      finding.Fix{Summary: fix, Wizard: finding.WizardSourceReturn, Args: args}})
}

// markSetter names the last step of a leg that changed its packet's mark, with the rule (an
// nft rule's text is on the step before its "mark a -> b" step); "" when none did.
func markSetter(leg *Leg) string {
	by := ""
	for i, st := range leg.Steps {
		if !strings.HasPrefix(st.What, "mark ") || !strings.Contains(st.What, " -> ") {
			continue
		}
		rule := st.Rule
		if rule == "" && i > 0 && leg.Steps[i-1].Hook == st.Hook {
			rule = leg.Steps[i-1].Rule
		}
		by = st.Hook
		if rule != "" {
			by += ": " + rule
		}
	}
	return by
}

func tern(c bool, a, b string) string {
	if c {
		return a
	}
	return b
}

func tupleText(tu netfilter.Tuple) string {
	return inet.Endpoint(tu.Src) + " -> " + inet.Endpoint(tu.Dst)
}

// gatewayOn returns a gateway this host uses on an interface (its default route's there first).
func (t *tracer) gatewayOn(iface string) netip.Addr {
	if t.gwOn != nil {
		return t.gwOn(iface)
	}
	var any netip.Addr
	for _, r := range t.s.Routes {
		if r.Dev != iface || !r.Gateway.IsValid() {
			continue
		}
		if r.Dst.Bits() == 0 {
			return r.Gateway
		}
		if !any.IsValid() {
			any = r.Gateway
		}
	}
	return any
}

// checkReplyBypassesNAT finds a DNAT whose backend answers the client without passing through
// this host (case 5, and hairpin NAT): the request was DNATed and forwarded without SNAT, and
// the client is on the backend's link, so the backend replies straight to it from its own
// address, which the client never spoke to; conntrack here never sees the reply to undo the
// DNAT. The backend's routes cannot be seen from here; being on one link is what makes the
// bypass certain (the backend does not use a gateway for an on-link client).
func (t *tracer) checkReplyBypassesNAT(fwd *Leg, ct *netfilter.Conn) bool {
	if fwd.outcome != LegForward || !ct.DNAT || ct.SNAT || ct.State == netfilter.CTUntracked {
		return false
	}
	backend, client := ct.NATed.Dst.Addr(), ct.Orig.Src.Addr()
	onOIF := t.s.Connected(fwd.OIF)
	pfx, backendOnLink := model.PrefixContaining(onOIF, backend)
	if !backendOnLink || fwd.Gateway.IsValid() {
		return false
	}
	_, clientOnLink := model.PrefixContaining(onOIF, client)
	if !clientOnLink {
		return false
	}
	fam := inet.FamilyOf(backend)
	br := t.bridgeOf(fwd.OIF)
	if br != "" && t.s.Sysctls.BridgeNFCall(fam) {
		// This host is the switch between them: the reply is bridged through it, and with
		// br_netfilter on conntrack sees it and undoes the DNAT (the pod-to-ClusterIP case).
		return false
	}
	self := fwd.Src
	if !self.IsValid() {
		self = t.fib.MasqueradeAddr(fwd.OIF, backend, backend)
	}
	rule := finding.SNATCommand(fam, backend, inet.ProtoName(t.protoOf()), ct.NATed.Dst.Port(), self)
	ev := []string{
		fmt.Sprintf("the request %s is DNATed to %s and sent out %s", tupleText(ct.Orig), inet.Endpoint(ct.NATed.Dst), fwd.OIF),
		fmt.Sprintf("no SNAT: the backend sees the client's own address %s", client),
		fmt.Sprintf("%s and %s are both on %s (%s), so %s answers %s directly from %s, an address the client never spoke to; the client resets or ignores it and conntrack here stays [UNREPLIED]", backend, client, fwd.OIF, pfx, backend, client, inet.Endpoint(ct.NATed.Dst)),
	}
	fixText := "also SNAT the forwarded traffic to this host's address so the backend answers through it: " + rule
	if br != "" {
		cmd := quote.ShellJoin("sysctl", "-w", model.BridgeNFKey(fam)+"=1")
		ev = append(ev, fmt.Sprintf("the reply is bridged by %s, this host's own bridge, but br_netfilter is off (%s): bridged packets bypass iptables and conntrack", br, t.s.Sysctls.BridgeNFText(fam)))
		fixText = fmt.Sprintf("turn br_netfilter on so conntrack sees bridged replies (modprobe br_netfilter; %s), as Docker and kube-proxy expect; or %s", cmd, fixText)
	}
	summary := fmt.Sprintf("the reply from %s bypasses this host, so the DNAT of %s is never undone", backend, inet.Endpoint(ct.Orig.Dst))
	if br != "" {
		summary = fmt.Sprintf("the reply from %s is bridged by %s past conntrack (br_netfilter is off), so the DNAT of %s is never undone", backend, br, inet.Endpoint(ct.Orig.Dst))
	}
	t.add(finding.Finding{ID: FindingReplyBypassesNAT, Severity: finding.SeverityError,
		Summary:  summary,
		Evidence: ev,
		Fix:      finding.PortForwardFix(fixText, finding.PortForwardArgs(t.protoOf(), fwd.IIF, ct.Orig.Dst, ct.NATed.Dst))})
	return true
}

func (t *tracer) protoOf() int {
	n, err := inet.ProtoNumber(t.res.Flow.Proto)
	if err != nil {
		return 0
	}
	return n
}

// checkReplyDirectionNAT explains a NAT rule that matches the reply instead of the request:
// the nat table only sees the first packet of a connection, so such a rule never fires (seed
// case 5: `-s BACKEND -j SNAT` in POSTROUTING).
func (t *tracer) checkReplyDirectionNAT(reply *Leg, rp *netfilter.Packet, rct *netfilter.Conn) {
	if rct.State != netfilter.CTEstablished {
		return
	}
	for _, hook := range []string{"PREROUTING", "POSTROUTING"} {
		// Evaluate the chain as if the reply were a new connection, on a copy: only to find
		// the rule, never to change the packet.
		// The reply as the far end sends it, before conntrack undoes any NAT.
		p := *rp
		p.Src, p.SPort = rct.NATed.Dst.Addr(), rct.NATed.Dst.Port()
		p.Dst, p.DPort = rct.NATed.Src.Addr(), rct.NATed.Src.Port()
		p.IIF, p.OIF = reply.IIF, reply.OIF
		if hook == "PREROUTING" {
			p.OIF = ""
		}
		var steps []netfilter.Step
		backends, _ := t.nf.TableOrder(p.Family, "nat")
		for _, b := range backends {
			q, ct := p, &netfilter.Conn{State: netfilter.CTNew}
			steps = append(steps, t.nf.RunIn(b, "nat", hook, &q, ct).Steps...)
		}
		for _, st := range steps {
			if !st.Decisive || st.Rule == "" || !strings.Contains(st.What, "NAT") && !strings.Contains(st.What, "MASQUERADE") {
				continue
			}
			reply.Steps = append(reply.Steps, Step{Hook: "nat " + hook, What: "not consulted for replies: this rule matches the reply but the nat table only sees a connection's first packet, so it never fires", Rule: st.Rule})
			if f := t.res.Finding(FindingReplyBypassesNAT); f != nil {
				f.Evidence = append(f.Evidence, "this rule matches the reply direction and never fires: "+st.Rule)
			}
		}
		t.nftReplyDirectionNAT(reply, hook, &p)
	}
}

// checkNoReturnRoute warns about a forwarded, un-SNATed request whose reply depends on routes
// this host cannot see (case 4). The heuristic, chosen to be explainable:
//   - the request is forwarded without SNAT, so the far host answers the original source;
//   - the destination is on-link on the egress interface (a neighbour on that network), and
//     the source is not on that network;
//   - this host itself routes via another router on that interface (a gateway on it), so the
//     network has its own router, which its hosts use for networks they do not know.
//
// Then the neighbour's reply most likely goes to that router, not back here. When this host
// has no gateway on the egress network it is most likely that network's gateway, and nothing
// is said.
func (t *tracer) checkNoReturnRoute(fwd *Leg, ct *netfilter.Conn) {
	if fwd.outcome != LegForward || ct.SNAT || fwd.Gateway.IsValid() {
		return
	}
	src, dst := ct.Orig.Src.Addr(), ct.NATed.Dst.Addr()
	if _, ok := model.PrefixContaining(t.s.Connected(fwd.OIF), src); ok {
		return
	}
	other := t.gatewayOn(fwd.OIF)
	if !other.IsValid() {
		return
	}
	srcNet := netip.PrefixFrom(src, src.BitLen())
	back := t.fib.Lookup(fib.Flow{Family: inet.FamilyOf(src), Dst: src})
	if back.Route != nil && back.Route.Dst.Bits() > 0 {
		srcNet = back.Route.Dst
	}
	self := fwd.Src
	if !self.IsValid() {
		self = t.fib.MasqueradeAddr(fwd.OIF, dst, dst)
	}
	rule := quote.ShellJoin(iptables.Command(inet.FamilyOf(dst)), "-t", "nat", "-A", "POSTROUTING", "-s", srcNet.String(), "-o", fwd.OIF, "-j", "SNAT", "--to-source", self.String())
	t.add(finding.Finding{ID: FindingNoReturnRoute, Severity: finding.SeverityWarning,
		Summary: fmt.Sprintf("%s is forwarded to %s on %s without SNAT; the hosts there must route %s back via this host (%s), or the reply is lost", inet.Endpoint(ct.Orig.Src), dst, fwd.OIF, srcNet, self),
		Evidence: []string{
			fmt.Sprintf("the request leaves %s with its original source %s (no SNAT)", fwd.OIF, src),
			fmt.Sprintf("%s is on-link on %s; %s is not on that network", dst, fwd.OIF, src),
			fmt.Sprintf("the network on %s has its own router %s (this host routes via it), which its hosts use for networks they do not know", fwd.OIF, other),
		},
		Fix: finding.Fix{Summary: fmt.Sprintf("SNAT here (%s) or add a route to %s via %s on the hosts of %s's network", rule, srcNet, self, fwd.OIF),
			Wizard: finding.WizardSNATGateway, Args: []string{"--in", fwd.IIF, "--out", fwd.OIF}}})
}

// checkAssumedReturn names the assumption behind "no problems" for a forwarded request without
// SNAT: the far host answers the client's own address, so the reply comes back here only if
// that host (or the router the request goes on to) routes the client's network via this host,
// and those routes are on hosts roundtrip cannot see. diagnose checks it on the wire.
func (t *tracer) checkAssumedReturn(fwd, reply *Leg, ct *netfilter.Conn) {
	if fwd.outcome != LegForward || ct.SNAT || reply == nil || reply.outcome != LegForward ||
		finding.CountErrors(t.res.Findings) > 0 || t.res.Has(FindingNoReturnRoute) {
		return
	}
	src, dst := ct.Orig.Src.Addr(), ct.NATed.Dst.Addr()
	srcNet := netip.PrefixFrom(src, src.BitLen())
	if back := t.fib.Lookup(fib.Flow{Family: inet.FamilyOf(src), Dst: src}); back.Route != nil && back.Route.Dst.Bits() > 0 {
		srcNet = back.Route.Dst
	}
	self := fwd.Src
	if !self.IsValid() {
		self = t.fib.MasqueradeAddr(fwd.OIF, dst, dst)
	}
	who := fmt.Sprintf("%s (on %s)", dst, fwd.OIF)
	where := fmt.Sprintf("%s is on-link on %s and this host has no other router there, so it is taken for that network's gateway", dst, fwd.OIF)
	if fwd.Gateway.IsValid() {
		who = fmt.Sprintf("the router %s on %s, and the hosts behind it,", fwd.Gateway, fwd.OIF)
		where = fmt.Sprintf("%s is reached via the router %s on %s", dst, fwd.Gateway, fwd.OIF)
	}
	fl := t.res.Flow
	check := fmt.Sprintf("roundtrip diagnose %s %s %s --iif %s", fl.Proto, src, inet.Endpoint(ct.Orig.Dst), fwd.IIF)
	if fl.Mark != 0 {
		check += fmt.Sprintf(" --mark %#x", fl.Mark)
	}
	snat := "" // the snat-gateway wizard is IPv4 only
	if src.Is4() && fwd.IIF != fwd.OIF {
		snat = fmt.Sprintf(" (roundtrip wizard snat-gateway --in %s --out %s)", fwd.IIF, fwd.OIF)
	}
	t.add(finding.Finding{ID: FindingAssumedReturnRoute, Severity: finding.SeverityInfo,
		Summary: fmt.Sprintf("assumed that %s routes %s back via this host (%s): roundtrip cannot see that host's routes; diagnose checks it live", who, srcNet, self),
		Evidence: []string{
			fmt.Sprintf("the request leaves %s with its original source %s (no SNAT), so the answer goes to %s itself", fwd.OIF, src, src),
			where,
		},
		Fix: finding.Fix{Summary: fmt.Sprintf("check it on the wire: %s, then start the client; if no reply comes back, SNAT here%s or route %s via %s there", check, snat, srcNet, self),
			Args: []string{}}})
}

// replySourceText says what the client makes of the reply's source address.
func (t *tracer) replySourceText(reply *Leg, ct *netfilter.Conn) string {
	src := inet.Endpoint(reply.Packet.Src)
	if reply.Packet.Src == ct.Orig.Dst {
		return fmt.Sprintf("the reply's source %s is the address the request was sent to, but the reply takes another path: the next hop on %s never saw the request, so a NAT or stateful firewall that forwarded the request (and would undo its NAT) never sees the reply", src, reply.OIF)
	}
	return fmt.Sprintf("the reply's source is %s but the request was sent to %s: the client does not recognise the reply", src, inet.Endpoint(ct.Orig.Dst))
}
