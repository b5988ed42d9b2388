package nft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// Result is what evaluating a chain (or a hook's chains) gives. With everything the rules
// look at known, it has one outcome without conditions. An expression whose result cannot
// be known (a rate limit, a quota, a field the caller does not know, an expression not
// modelled) splits the evaluation: each outcome then lists the conditions it rests on, and
// trace names them in an `uncertain` finding instead of guessing.
type Result struct {
	Outcomes []Outcome `json:"outcomes"`
	// Truncated is set when there were more possible outcomes than MaxOutcomes.
	Truncated bool `json:"truncated,omitempty"`
}

// Certain reports whether the result has a single, unconditional outcome.
func (r *Result) Certain() bool {
	return len(r.Outcomes) == 1 && len(r.Outcomes[0].Conditions) == 0 && !r.Truncated
}

// Outcome is one possible end of the evaluation.
type Outcome struct {
	// Verdict is "accept", "drop", "reject" (dropped with an ICMP error or TCP reset sent),
	// "queue" or "stolen". For a hook, "accept" means every chain let the packet through.
	Verdict string `json:"verdict"`
	// Path lists the rules that matched, the jumps taken and the policy applied, in order.
	Path       []Step      `json:"path"`
	Effects    Effects     `json:"effects"`
	Conditions []Condition `json:"conditions,omitempty"`
}

// Step is one rule (or policy) on the path.
type Step struct {
	Family Family `json:"family"`
	Table  string `json:"table"`
	Chain  string `json:"chain"`
	// Handle is the rule's handle; 0 for a chain's policy.
	Handle uint64 `json:"handle,omitempty"`
	Text   string `json:"text"`
	// Action is what the step did: "match" (the rule matched and evaluation went on),
	// "accept", "drop", "reject", "queue", "jump", "goto", "return", "nat", "policy".
	Action string `json:"action"`
	// Origin is the table's origin ("iptables-nft", ...; "" native).
	Origin string `json:"origin,omitempty"`
}

// Condition is something an outcome depends on that the evaluator could not decide.
type Condition struct {
	Step Step `json:"step"`
	// Expr names what was undecidable: "limit rate 10/second", "ip ttl", "xt match multiport".
	Expr string `json:"expr"`
	// Reason is why: "depends on rate", "depends on a field the trace does not know", ...
	Reason string `json:"reason"`
	// Branch is the alternative this outcome took ("matched", "did not match", "element
	// 10.0.0.1 : 0x00000001").
	Branch string `json:"branch"`
}

// Effects are what the rules did to the packet besides the verdict.
type Effects struct {
	// Mark and CtMark are the packet and connection marks after the rules (nil: unchanged).
	Mark        *uint32    `json:"mark,omitempty"`
	CtMark      *uint32    `json:"ct_mark,omitempty"`
	Nat         *NatAction `json:"nat,omitempty"`
	Notrack     bool       `json:"notrack,omitempty"`
	Nftrace     bool       `json:"nftrace,omitempty"`
	FlowOffload string     `json:"flow_offload,omitempty"`
	Reject      *Reject    `json:"reject,omitempty"`
	Queue       *Queue     `json:"queue,omitempty"`
	// Other lists effects not modelled further, as nft prints them (log, payload mangling,
	// ct zone/helper, dynamic set updates, ...).
	Other []string `json:"other,omitempty"`
}

// NatAction is the NAT a rule set up: the address and port ranges (zero values: not given,
// the kernel keeps the packet's own) and flags. Masquerade and redirect take their address
// from the interface, which the caller resolves.
type NatAction struct {
	Type     string     `json:"type"`
	AddrMin  netip.Addr `json:"addr_min,omitzero"`
	AddrMax  netip.Addr `json:"addr_max,omitzero"`
	ProtoMin uint16     `json:"proto_min,omitempty"`
	ProtoMax uint16     `json:"proto_max,omitempty"`
	Flags    []string   `json:"flags,omitempty"`
	// Unknown says why the range could not be computed (registers from unknown fields).
	Unknown string `json:"unknown,omitempty"`
	Step    Step   `json:"step"`
}

// EvalOptions tune an evaluation.
type EvalOptions struct {
	// MaxOutcomes bounds how many outcomes are explored (default 16).
	MaxOutcomes int
}

// maxJumpStack is NFT_JUMP_STACK_SIZE: deeper jumps make the kernel drop the packet.
const maxJumpStack = 16

// EvalChain evaluates base chain c of table t for the packet as nft_do_chain does: rule by
// rule, expression by expression, following jumps, gotos and returns, down to a verdict or the
// chain's policy.
func (rs *Ruleset) EvalChain(t *Table, c *Chain, pkt Packet, opts *EvalOptions) *Result {
	return explore(opts, func(m *machine) {
		m.init(rs, pkt)
		m.finish(m.runChain(t, c))
	})
}

// explore runs the evaluation once per combination of choices at the undecidable points,
// depth first, up to MaxOutcomes.
func explore(opts *EvalOptions, run func(m *machine)) *Result {
	max := 16
	if opts != nil && opts.MaxOutcomes > 0 {
		max = opts.MaxOutcomes
	}
	res := &Result{}
	stack := [][]int{nil}
	for len(stack) > 0 {
		if len(res.Outcomes) >= max {
			res.Truncated = true
			break
		}
		prefix := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		m := &machine{decisions: prefix}
		run(m)
		res.Outcomes = append(res.Outcomes, m.outcome)
		// Alternatives at choice points past the prefix, pushed so that the first
		// alternatives are explored first.
		for i := len(m.taken) - 1; i >= len(prefix); i-- {
			for alt := m.choices[i] - 1; alt >= 1; alt-- {
				d := append(append([]int{}, m.taken[:i]...), alt)
				stack = append(stack, d)
			}
		}
	}
	return res
}

// machine is one run of the evaluator: the register file, the packet as changed so far and
// the choices made at undecidable points.
type machine struct {
	rs   *Ruleset
	host binary.ByteOrder
	r    *Renderer
	pkt  *overlay

	decisions []int // choices to take (a prefix), then 0
	taken     []int
	choices   []int // number of alternatives at each point
	memo      map[string]int

	regs  [regFileBytes]byte
	known [regFileBytes]byte // bit set: the register bit is known
	why   [regFileBytes / 4]string

	hdr  map[string]*header
	cond []Condition

	// the rule being evaluated
	table *Table
	chain *Chain
	rule  *Rule

	outcome Outcome
	payload []payloadWrite
	steps   int
}

// maxRuleRuns bounds the rules one run may evaluate.
const maxRuleRuns = 1 << 20

type payloadWrite struct {
	base      string
	off       int
	val, know []byte
}

func (m *machine) init(rs *Ruleset, pkt Packet) {
	m.rs = rs
	m.host = binary.LittleEndian
	if rs.HostOrder == "big" {
		m.host = binary.BigEndian
	}
	m.r = NewRenderer(rs.HostOrder)
	m.pkt = &overlay{Packet: pkt}
	m.memo = map[string]int{}
}

// choose picks one of n alternatives at an undecidable point.
func (m *machine) choose(n int) int {
	i := len(m.taken)
	c := 0
	if i < len(m.decisions) {
		c = m.decisions[i]
	}
	m.taken = append(m.taken, c)
	m.choices = append(m.choices, n)
	return c
}

// decide makes a two-way choice, remembering it so that the same question gets the same
// answer throughout the run (two rules testing `ip ttl 64` cannot disagree).
func (m *machine) decide(key, expr, reason string) bool {
	if v, ok := m.memo[key]; ok {
		return v == 1
	}
	c := m.choose(2)
	branch := "matched"
	if c == 1 {
		branch = "did not match"
	}
	m.cond = append(m.cond, Condition{Step: m.step(""), Expr: expr, Reason: reason, Branch: branch})
	m.memo[key] = 1 - c
	return c == 0
}

func (m *machine) step(action string) Step {
	s := Step{Action: action}
	if m.table != nil {
		s.Family, s.Table, s.Origin = m.table.Family, m.table.Name, m.table.Origin
	}
	if m.chain != nil {
		s.Chain = m.chain.Name
	}
	if m.rule != nil {
		s.Handle = m.rule.Handle
		s.Text = m.rule.Text
		if s.Text == "" {
			s.Text = m.r.Rule(m.table, m.rule)
		}
	}
	return s
}

// rule outcomes besides verdicts
const (
	vBreak    = "break"
	vContinue = "continue"
)

type frame struct {
	chain *Chain
	next  int
}

// runChain is nft_do_chain: it returns the chain's verdict ("accept", "drop", "reject",
// "queue", "stolen"), recording the path and effects.
func (m *machine) runChain(t *Table, base *Chain) string {
	m.table = t
	m.buildHeaders(t)
	chain := base
	var stack []frame
	ri := 0
	for {
		for ri < len(chain.Rules) {
			// Validate refuses loops as the kernel does; this bounds a run all the same.
			if m.steps++; m.steps > maxRuleRuns {
				m.other("evaluation stopped after too many rules (a jump loop?)")
				return "drop"
			}
			m.chain, m.rule = chain, chain.Rules[ri]
			v, target := m.runRule(t)
			ri++
			switch v {
			case vBreak:
				continue
			case vContinue:
				m.outcome.Path = append(m.outcome.Path, m.step("match"))
				continue
			case "jump", "goto":
				m.outcome.Path = append(m.outcome.Path, m.step(v))
				next := t.Chain(target)
				if next == nil {
					m.other("jump to a chain that does not exist: the kernel drops the packet")
					return "drop"
				}
				if v == "jump" {
					if len(stack) >= maxJumpStack {
						m.other("more than 16 nested jumps: the kernel drops the packet")
						return "drop"
					}
					stack = append(stack, frame{chain, ri})
				}
				chain, ri = next, 0
				continue
			case "return":
				m.outcome.Path = append(m.outcome.Path, m.step("return"))
				ri = len(chain.Rules)
				continue
			}
			// accept, drop, reject, queue, stolen; nat accepts
			action := v
			if v == "nat" {
				v = "accept"
			}
			m.outcome.Path = append(m.outcome.Path, m.step(action))
			return v
		}
		if len(stack) > 0 {
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			chain, ri = f.chain, f.next
			continue
		}
		m.chain, m.rule = base, nil
		s := m.step("policy")
		s.Text = "policy " + base.Policy
		m.outcome.Path = append(m.outcome.Path, s)
		return base.Policy
	}
}

// finish closes the run: the verdict and the conditions met on the way.
func (m *machine) finish(verdict string) {
	m.outcome.Verdict = verdict
	m.outcome.Conditions = append(m.outcome.Conditions, m.cond...)
	m.cond = nil
}

// runRule evaluates one rule's expressions; it returns break (no match), continue (matched
// without a verdict) or the verdict.
func (m *machine) runRule(t *Table) (string, string) {
	for i := range m.known {
		m.known[i] = 0
	}
	for i := range m.rule.Exprs {
		v, target := m.eval(t, &m.rule.Exprs[i])
		if v != vContinue {
			return v, target
		}
	}
	return vContinue, ""
}

// eval runs one expression; vContinue means go on with the next one.
func (m *machine) eval(t *Table, e *Expr) (string, string) {
	switch {
	case e.Payload != nil:
		return m.evalPayload(e.Payload)
	case e.Meta != nil:
		return m.evalMeta(t, e.Meta)
	case e.Ct != nil:
		return m.evalCt(e.Ct)
	case e.Cmp != nil:
		return m.evalCmp(e.Cmp)
	case e.Bitwise != nil:
		m.evalBitwise(e.Bitwise)
	case e.Byteorder != nil:
		m.evalByteorder(e.Byteorder)
	case e.Range != nil:
		return m.evalRange(e.Range)
	case e.Lookup != nil:
		return m.evalLookup(t, e.Lookup)
	case e.Immediate != nil:
		m.store(e.Immediate.Dreg, e.Immediate.Data, nil, "")
	case e.Verdict != nil:
		return verdictResult(e.Verdict)
	case e.Nat != nil:
		return m.evalNat(e.Nat)
	case e.Fib != nil:
		m.evalFib(e.Fib)
	case e.Limit != nil:
		return m.rate(limitText(e.Limit))
	case e.Quota != nil:
		return m.rate(quotaText(e.Quota))
	case e.Connlimit != nil:
		c := "ct count "
		if e.Connlimit.Over {
			c += "over "
		}
		return m.rate(c + fmt.Sprint(e.Connlimit.Count))
	case e.Counter != nil:
	case e.Log != nil:
		m.other(logText(e.Log))
	case e.Notrack != nil:
		m.outcome.Effects.Notrack = true
		m.pkt.untracked = true
	case e.FlowOffload != nil:
		m.outcome.Effects.FlowOffload = e.FlowOffload.Table
	case e.Reject != nil:
		r := *e.Reject
		m.outcome.Effects.Reject = &r
		return "reject", ""
	case e.Queue != nil:
		q := *e.Queue
		m.outcome.Effects.Queue = &q
		return "queue", ""
	case e.Dynset != nil:
		return m.evalDynset(t, e.Dynset)
	case e.Exthdr != nil:
		x := e.Exthdr
		if x.Set {
			m.other(fmt.Sprintf("exthdr %s %d set (%d bytes at %d)", x.Op, x.Type, x.Len, x.Offset))
			return vContinue, ""
		}
		m.unknown(x.Dreg, max(x.Len, 1), "an extension header or TCP option (not modelled)")
	case e.Numgen != nil:
		m.unknown(e.Numgen.Dreg, 4, "numgen "+e.Numgen.Type+" (depends on earlier packets or chance)")
	case e.Hash != nil:
		m.unknown(e.Hash.Dreg, 4, e.Hash.Type+" (a hash not computed here)")
	case e.Objref != nil:
		return m.evalObjref(t, e.Objref)
	case e.Rt != nil:
		k, _ := keyByName(rtKeys, e.Rt.Key)
		if v, ok := m.pkt.Extra("rt " + e.Rt.Key); ok {
			m.store(e.Rt.Dreg, v, nil, "")
		} else {
			m.unknown(e.Rt.Dreg, k.len, "rt "+e.Rt.Key+" (routing detail not given)")
		}
	case e.Socket != nil:
		k, _ := keyByName(socketKeys, e.Socket.Key)
		if v, ok := m.pkt.Extra("socket " + e.Socket.Key); ok {
			m.store(e.Socket.Dreg, v, nil, "")
		} else {
			m.unknown(e.Socket.Dreg, k.len, "socket "+e.Socket.Key+" (socket lookup not modelled)")
		}
	case e.Xt != nil:
		return m.evalXt(e.Xt)
	case e.Unknown != nil:
		return m.notModelled(e.Unknown.Name, e.Unknown.Text)
	}
	return vContinue, ""
}

// verdictResult turns a verdict into what ends (or continues) a rule.
func verdictResult(v *Verdict) (string, string) {
	switch v.Kind {
	case "continue":
		return vContinue, ""
	case "break":
		return vBreak, ""
	}
	return v.Kind, v.Chain
}

func (m *machine) other(s string) {
	m.outcome.Effects.Other = append(m.outcome.Effects.Other, s)
}

// rate handles a rate- or quota-dependent match: both outcomes are explored.
func (m *machine) rate(expr string) (string, string) {
	return m.fork(expr, "depends on rate", "matched (under the rate or quota)", "did not match (over the rate or quota)")
}

// notModelled handles an expression the evaluator cannot run: whether the rule goes on is
// explored both ways.
func (m *machine) notModelled(name, text string) (string, string) {
	if text == "" {
		text = name
	}
	return m.fork(text, "not modelled", "matched", "did not match")
}

// fork explores both ways of an undecidable expression: the rule goes on, or ends there.
func (m *machine) fork(expr, reason, yes, no string) (string, string) {
	c := m.choose(2)
	branch := yes
	if c == 1 {
		branch = no
	}
	m.cond = append(m.cond, Condition{Step: m.step(""), Expr: expr, Reason: reason, Branch: branch})
	if c == 0 {
		return vContinue, ""
	}
	return vBreak, ""
}

// --- registers

// store writes data into reg (zero-padding the last 32-bit word, as the kernel does); a nil
// know means every bit is known.
func (m *machine) store(reg uint32, data, know []byte, why string) {
	off, ok := regOffset(reg)
	if !ok || off+len(data) > regFileBytes {
		return
	}
	end := off + ((len(data) + 3) &^ 3)
	if end > regFileBytes {
		end = regFileBytes
	}
	for i := off; i < end; i++ {
		m.regs[i], m.known[i] = 0, 0xff
	}
	copy(m.regs[off:], data)
	if know != nil {
		copy(m.known[off:], know)
	}
	for w := off / 4; w < (end+3)/4 && w < len(m.why); w++ {
		m.why[w] = why
	}
}

// unknown fills n bytes of reg with unknown bits and says why.
func (m *machine) unknown(reg uint32, n uint32, why string) {
	m.store(reg, make([]byte, n), make([]byte, n), why)
}

func (m *machine) load(reg uint32, n int) (val, know []byte, why string) {
	off, ok := regOffset(reg)
	if !ok || off+n > regFileBytes {
		return make([]byte, n), make([]byte, n), "an invalid register"
	}
	val = append([]byte(nil), m.regs[off:off+n]...)
	know = append([]byte(nil), m.known[off:off+n]...)
	for w := off / 4; w < (off+n+3)/4; w++ {
		if m.why[w] != "" && !allSet(m.known[w*4:min(w*4+4, off+n)]) {
			why = m.why[w]
			break
		}
	}
	return
}

func allSet(b []byte) bool {
	for _, x := range b {
		if x != 0xff {
			return false
		}
	}
	return true
}

// --- comparisons with unknown bits

// cmpResult compares val (with known bits) against data as memcmp does; ok is false when the
// unknown bits could change the answer.
func cmpResult(op string, val, know, data []byte) (bool, bool) {
	lo := make([]byte, len(val))
	hi := make([]byte, len(val))
	for i := range val {
		lo[i] = val[i] & know[i]
		hi[i] = val[i] | ^know[i]
	}
	test := func(v []byte) bool {
		c := bytes.Compare(v, data)
		switch op {
		case "eq":
			return c == 0
		case "neq":
			return c != 0
		case "lt":
			return c < 0
		case "lte":
			return c <= 0
		case "gt":
			return c > 0
		case "gte":
			return c >= 0
		}
		return false
	}
	if op == "eq" || op == "neq" {
		full := allSet(know)
		mismatch := false
		for i := range val {
			if (val[i]^data[i])&know[i] != 0 {
				mismatch = true
			}
		}
		switch {
		case mismatch:
			return op == "neq", true
		case full:
			return op == "eq", true
		}
		return false, false
	}
	a, b := test(lo), test(hi)
	return a, a == b
}

func (m *machine) evalCmp(c *Cmp) (string, string) {
	val, know, why := m.load(c.Sreg, len(c.Data))
	ok, certain := cmpResult(c.Op, val, know, c.Data)
	if !certain {
		ok = m.decide("cmp "+c.Op+" "+why+" "+Bytes(c.Data).String(), why, "depends on a value the evaluator does not know")
	}
	if ok {
		return vContinue, ""
	}
	return vBreak, ""
}

func (m *machine) evalRange(r *Range) (string, string) {
	val, know, why := m.load(r.Sreg, len(r.From))
	ge, c1 := cmpResult("gte", val, know, r.From)
	le, c2 := cmpResult("lte", val, know, r.To)
	in := ge && le
	certain := (c1 && c2) || (c1 && !ge) || (c2 && !le)
	if !certain {
		in = m.decide("range "+why+" "+Bytes(r.From).String()+"-"+Bytes(r.To).String(), why, "depends on a value the evaluator does not know")
	}
	if in == (r.Op == "eq") {
		return vContinue, ""
	}
	return vBreak, ""
}

func (m *machine) evalBitwise(b *Bitwise) {
	val, know, why := m.load(b.Sreg, int(b.Len))
	out := make([]byte, b.Len)
	ok := make([]byte, b.Len)
	switch b.Op {
	case "bool":
		for i := range out {
			out[i] = (val[i] & b.Mask[i]) ^ b.Xor[i]
			// bits cleared by the mask are known whatever the input was
			ok[i] = know[i] | ^b.Mask[i]
		}
	case "lshift", "rshift":
		// shifts work on host-order 32-bit words (nft_bitwise_eval_lshift/rshift)
		for w := 0; w+4 <= int(b.Len); w += 4 {
			v := m.host.Uint32(val[w:])
			k := m.host.Uint32(know[w:])
			if b.Op == "lshift" {
				v, k = v<<b.Shift, k<<b.Shift|(1<<b.Shift-1)
			} else {
				v, k = v>>b.Shift, k>>b.Shift|^(^uint32(0)>>b.Shift)
			}
			m.host.PutUint32(out[w:], v)
			m.host.PutUint32(ok[w:], k)
		}
	}
	m.store(b.Dreg, out, ok, why)
}

func (m *machine) evalByteorder(b *Byteorder) {
	val, know, why := m.load(b.Sreg, int(b.Len))
	out := make([]byte, b.Len)
	ok := make([]byte, b.Len)
	n := int(b.Size)
	for w := 0; w+n <= int(b.Len); w += n {
		// Host and network order differ only on little-endian hosts.
		if m.host == binary.LittleEndian {
			for i := 0; i < n; i++ {
				out[w+i] = val[w+n-1-i]
				ok[w+i] = know[w+n-1-i]
			}
		} else {
			copy(out[w:w+n], val[w:w+n])
			copy(ok[w:w+n], know[w:w+n])
		}
	}
	m.store(b.Dreg, out, ok, why)
}

// --- lookups

// matchElement says whether key (with known bits) falls in element el of set s: yes, no,
// or maybe (unknown bits decide).
func matchElement(s *Set, el *Element, key, know []byte) (yes, maybe bool) {
	if len(s.Fields) > 0 && el.KeyEnd != nil {
		yes, maybe = true, true
		off := 0
		for _, f := range s.Fields {
			n := int(f)
			y, mb := inRange(key[off:off+n], know[off:off+n], el.Key[off:off+n], el.KeyEnd[off:off+n])
			yes = yes && y
			maybe = maybe && mb
			off += (n + 3) &^ 3
		}
		return yes, maybe && !yes
	}
	hi := el.KeyEnd
	if hi == nil {
		hi = el.Key
	}
	y, mb := inRange(key, know, el.Key, hi)
	return y, mb && !y
}

// inRange reports whether lo <= key <= hi for certain (yes) or possibly (maybe).
func inRange(key, know, lo, hi []byte) (yes, maybe bool) {
	min := make([]byte, len(key))
	max := make([]byte, len(key))
	for i := range key {
		min[i] = key[i] & know[i]
		max[i] = key[i] | ^know[i]
	}
	yes = bytes.Compare(min, lo) >= 0 && bytes.Compare(max, hi) <= 0
	maybe = bytes.Compare(max, lo) >= 0 && bytes.Compare(min, hi) <= 0
	if maybe && !yes && bytes.Equal(lo, hi) {
		// an exact key: only the unknown bits decide
		for i := range key {
			if (key[i]^lo[i])&know[i] != 0 {
				return false, false
			}
		}
	}
	return yes, maybe
}

// lookup finds the element a key selects; with unknown bits it chooses among the elements
// that might match and "no element".
func (m *machine) lookup(t *Table, s *Set, sreg uint32, label string) *Element {
	key, know, why := m.load(sreg, int(s.KeyLen))
	var maybe []int
	for i := range s.Elements {
		yes, mb := matchElement(s, &s.Elements[i], key, know)
		if yes {
			return &s.Elements[i]
		}
		if mb {
			maybe = append(maybe, i)
		}
	}
	if len(maybe) == 0 {
		return nil
	}
	if len(maybe) > 3 {
		maybe = maybe[:3]
	}
	memoKey := "lookup " + s.Name + " " + why
	if v, ok := m.memo[memoKey]; ok {
		if v == 0 {
			return nil
		}
		return &s.Elements[maybe[v-1]]
	}
	c := m.choose(len(maybe) + 1)
	m.memo[memoKey] = c
	branch := "no element matched"
	var el *Element
	if c > 0 {
		el = &s.Elements[maybe[c-1]]
		rc := &renderCtx{r: m.r, f: m.r.fmt(), family: t.Family, table: t}
		branch = "element " + rc.elementsText(&Set{Name: s.Name, KeyType: s.KeyType, KeyLen: s.KeyLen, Fields: s.Fields, Flags: s.Flags, DataType: s.DataType, DataLen: s.DataLen, Elements: []Element{*el}}, nil, " ")
	}
	m.cond = append(m.cond, Condition{Step: m.step(""), Expr: label + " @" + s.Name + " (key from " + why + ")", Reason: "depends on a value the evaluator does not know", Branch: branch})
	return el
}

func (m *machine) evalLookup(t *Table, l *Lookup) (string, string) {
	s := t.Set(l.Set)
	if s == nil {
		return m.notModelled("lookup", "lookup in missing set @"+l.Set)
	}
	el := m.lookup(t, s, l.Sreg, "lookup in")
	found := el != nil
	if !l.HasDreg {
		if found != l.Invert {
			return vContinue, ""
		}
		return vBreak, ""
	}
	if !found {
		return vBreak, ""
	}
	if s.DataType == "verdict" {
		return verdictResult(el.Verdict)
	}
	m.store(l.Dreg, el.Data, nil, "")
	return vContinue, ""
}

func (m *machine) evalDynset(t *Table, d *Dynset) (string, string) {
	m.other(m.r.Rule(t, &Rule{Exprs: []Expr{{Dynset: d}}}))
	for i := range d.Exprs {
		v, target := m.eval(t, &d.Exprs[i])
		if v != vContinue {
			return v, target
		}
	}
	return vContinue, ""
}

func (m *machine) evalObjref(t *Table, o *Objref) (string, string) {
	typ, name := o.Type, o.Name
	if o.Set != "" {
		s := t.Set(o.Set)
		if s == nil {
			return m.notModelled("objref", "object map @"+o.Set)
		}
		el := m.lookup(t, s, o.Sreg, "object map")
		if el == nil {
			return vBreak, ""
		}
		typ, name = s.ObjType, el.Object
	}
	switch typ {
	case "counter":
		return vContinue, ""
	case "quota", "limit":
		return m.rate(typ + " name " + quoteString(name))
	}
	m.other(typ + " " + quoteString(name))
	return vContinue, ""
}

// --- NAT

func (m *machine) evalNat(n *Nat) (string, string) {
	a := &NatAction{Type: n.Type, Flags: n.Flags, Step: m.step("nat")}
	alen := 4
	if n.Family == "ip6" || n.Family == "" && m.pkt.NFProto() == 10 {
		alen = 16
	}
	addr := func(reg uint32) netip.Addr {
		val, know, why := m.load(reg, alen)
		if !allSet(know) {
			a.Unknown = "the address comes from " + why
			return netip.Addr{}
		}
		ip, _ := netip.AddrFromSlice(val)
		return ip
	}
	port := func(reg uint32) uint16 {
		val, know, why := m.load(reg, 2)
		if !allSet(know) {
			a.Unknown = "the port comes from " + why
			return 0
		}
		return binary.BigEndian.Uint16(val)
	}
	if n.RegAddrMin != 0 {
		a.AddrMin = addr(n.RegAddrMin)
		a.AddrMax = a.AddrMin
		if n.RegAddrMax != 0 {
			a.AddrMax = addr(n.RegAddrMax)
		}
	}
	if n.RegProtoMin != 0 {
		a.ProtoMin = port(n.RegProtoMin)
		a.ProtoMax = a.ProtoMin
		if n.RegProtoMax != 0 {
			a.ProtoMax = port(n.RegProtoMax)
		}
	}
	if _, ok := m.pkt.Conntrack(); !ok {
		// nft_nat_eval needs a conntrack entry; without one NAT cannot be set up
		m.other("nat without a conntrack entry: the kernel drops the packet")
		return "drop", ""
	}
	m.outcome.Effects.Nat = a
	return "nat", ""
}

func (m *machine) evalFib(f *Fib) {
	q := FIBQuery{Result: f.Result}
	for _, fl := range f.Flags {
		switch fl {
		case "saddr":
			q.Saddr = true
		case "daddr":
			q.Daddr = true
		case "mark":
			q.Mark = true
		case "iif":
			q.Iif = true
		case "oif":
			q.Oif = true
		}
	}
	res, ok := m.pkt.FIB(q)
	present := false
	for _, fl := range f.Flags {
		present = present || fl == "present"
	}
	n := uint32(4)
	if f.Result == "oifname" {
		n = 16
	}
	if !ok {
		m.unknown(f.Dreg, n, "fib "+strings.Join(f.Flags, ",")+" "+f.Result+" (route lookup not available)")
		return
	}
	out := make([]byte, n)
	switch f.Result {
	case "oif":
		m.host.PutUint32(out, res.Oif.Index)
	case "oifname":
		copy(out, res.Oif.Name)
	case "type":
		for k, v := range fibAddrNames {
			if v == res.AddrType {
				m.host.PutUint32(out, uint32(k))
			}
		}
	}
	if present {
		// NFTA_FIB_F_PRESENT turns the result into a boolean (nft_fib_store_result)
		b := byte(0)
		if !bytes.Equal(out, make([]byte, n)) {
			b = 1
		}
		out = []byte{b, 0, 0, 0}
	}
	m.store(f.Dreg, out, nil, "")
}
