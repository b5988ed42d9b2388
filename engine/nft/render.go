package nft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
)

// Renderer prints rules as `nft list ruleset` does, from their expressions. It follows
// nftables' netlink_delinearize.c: registers are tracked to rebuild each match and statement,
// protocol dependencies (`meta l4proto tcp` before `tcp dport`) that nft adds implicitly are
// dropped again, and values are printed with the datatype of what they are compared with.
type Renderer struct {
	// HostOrder is the byte order host-order values were stored in (Ruleset.HostOrder).
	HostOrder binary.ByteOrder
	// Ifname names an interface index (`iif "eth0"`); nil prints the number, as nft does for
	// an index it cannot resolve.
	Ifname func(index uint32) (string, bool)
}

// NewRenderer returns a renderer for a ruleset read on a host of the given byte order.
func NewRenderer(hostOrder string) *Renderer {
	r := &Renderer{HostOrder: binary.LittleEndian}
	if hostOrder == "big" {
		r.HostOrder = binary.BigEndian
	}
	return r
}

func (r *Renderer) fmt() formatter { return formatter{host: r.HostOrder, ifname: r.Ifname} }

// hexpr is a value expression rebuilt from registers.
type hexpr struct {
	kind string // payload, meta, ct, const, binop, map, concat, text
	// payload
	base      string
	off, bits uint32 // in bits from the base
	proto     *proto
	field     *field
	// meta, ct, rt, socket
	key keyInfo
	dir string
	// const
	data []byte
	// binop: left & mask ^ xor, or left << / >> shift
	op         string
	left       *hexpr
	mask, xor  []byte
	shift      uint32
	set        *Set     // map lookup
	parts      []*hexpr // concat
	text       string   // printed form for kinds without structure (fib, numgen, ...)
	dtype      string
	host       bool
	length     uint32 // bytes
	fib        bool   // a fib expression (its boolean result prints exists/missing)
	fibPresent bool
}

// stmt is one printed part of a rule.
type stmt struct {
	text string
	// a match whose left side is built later (dependency killing needs the structure)
	left  *hexpr
	op    string // "", "!=", "<", ...
	right string
	// dependency bookkeeping: a protocol match that selects the header at depBase
	depBase string
	killed  bool
	xt      bool // an iptables-nft compat expression, printed translated
}

type renderCtx struct {
	r      *Renderer
	f      formatter
	family Family
	table  *Table
	regs   map[int]*hexpr
	stmts  []*stmt
	// protocol context per base, and the statement that established it
	protoAt map[string]*proto
	depAt   map[string]*stmt
}

// Rule prints rule r of table t (without its handle), including its comment.
func (r *Renderer) Rule(t *Table, rule *Rule) string {
	c := &renderCtx{r: r, f: r.fmt(), family: t.Family, table: t, regs: map[int]*hexpr{},
		protoAt: map[string]*proto{}, depAt: map[string]*stmt{}}
	switch t.Family {
	case FamilyIP:
		c.protoAt["network"] = protoIP
	case FamilyIP6:
		c.protoAt["network"] = protoIP6
	case FamilyARP:
		c.protoAt["network"] = protoARP
	case FamilyBridge, FamilyNetdev:
		c.protoAt["ll"] = protoEther
	}
	exprs := rule.Exprs
	for i := 0; i < len(exprs); i++ {
		i += c.expr(exprs, i)
	}
	var parts []string
	for _, s := range c.stmts {
		if s.killed {
			continue
		}
		if s.left != nil {
			parts = append(parts, c.matchText(s))
		} else if s.text != "" || s.xt {
			parts = append(parts, s.text)
		}
	}
	if rule.Comment != "" {
		parts = append(parts, "comment "+quoteString(rule.Comment))
	}
	return strings.Join(parts, " ")
}

func (c *renderCtx) set(reg uint32, e *hexpr) {
	if off, ok := regOffset(reg); ok {
		c.regs[off] = e
	}
}

func (c *renderCtx) get(reg uint32) *hexpr {
	off, ok := regOffset(reg)
	if !ok {
		return nil
	}
	return c.regs[off]
}

// getN returns the expression in reg, or the concatenation of the expressions in the
// registers from reg on that together fill n bytes (concatenated set keys).
func (c *renderCtx) getN(reg uint32, n uint32) *hexpr {
	off, ok := regOffset(reg)
	if !ok {
		return nil
	}
	first := c.regs[off]
	if first == nil {
		return nil
	}
	if first.length >= n || first.kind == "concat" {
		return first
	}
	var parts []*hexpr
	total := uint32(0)
	for total < n {
		e := c.regs[off+int(total)]
		if e == nil {
			return nil
		}
		parts = append(parts, e)
		// a part takes at least one 32-bit register (ct saddr has no fixed length)
		total += max((e.length+3)&^3, 4)
	}
	return &hexpr{kind: "concat", parts: parts, length: n}
}

func (c *renderCtx) emit(s string) { c.stmts = append(c.stmts, &stmt{text: s}) }

// expr handles exprs[i] and returns how many following expressions it consumed too.
func (c *renderCtx) expr(exprs []Expr, i int) int {
	e := &exprs[i]
	switch {
	case e.Payload != nil:
		p := e.Payload
		if p.Set {
			c.emit(c.payloadSet(p))
			return 0
		}
		c.set(p.Dreg, c.payload(p.Base, p.Offset*8, p.Len*8))
	case e.Meta != nil:
		k, _ := keyByName(metaKeys, e.Meta.Key)
		if e.Meta.Set {
			v := c.valueOf(c.get(e.Meta.Sreg), k.dtype, k.host)
			name := "meta " + k.name
			if k.unqualified {
				name = "meta " + k.name
			}
			c.emit(name + " set " + v)
			return 0
		}
		c.set(e.Meta.Dreg, &hexpr{kind: "meta", key: k, dtype: k.dtype, host: k.host, length: k.len})
	case e.Ct != nil:
		k, _ := keyByName(ctKeys, e.Ct.Key)
		name := "ct "
		if e.Ct.Dir != "" {
			name += e.Ct.Dir + " "
		}
		name += k.name
		if e.Ct.Set {
			c.emit(name + " set " + c.valueOf(c.get(e.Ct.Sreg), k.dtype, k.host))
			return 0
		}
		h := &hexpr{kind: "ct", key: k, dir: e.Ct.Dir, dtype: k.dtype, host: k.host, length: k.len, text: name}
		c.set(e.Ct.Dreg, h)
	case e.Cmp != nil:
		return c.cmp(exprs, i)
	case e.Bitwise != nil:
		b := e.Bitwise
		left := c.get(b.Sreg)
		if left == nil {
			left = &hexpr{kind: "text", text: "reg " + strconv.Itoa(int(b.Sreg))}
		}
		c.set(b.Dreg, &hexpr{kind: "binop", op: b.Op, left: left, mask: b.Mask, xor: b.Xor, shift: b.Shift,
			dtype: left.dtype, host: left.host, length: b.Len})
	case e.Byteorder != nil:
		// nft adds byteorder conversions around host-order values in interval lookups and
		// hashes; the value printed is the one before conversion.
		if src := c.get(e.Byteorder.Sreg); src != nil {
			c.set(e.Byteorder.Dreg, src)
		}
	case e.Range != nil:
		rg := e.Range
		left := c.get(rg.Sreg)
		if left == nil {
			left = &hexpr{kind: "text", text: "reg"}
		}
		op := ""
		if rg.Op == "neq" {
			op = "!="
		}
		c.stmts = append(c.stmts, &stmt{left: left, op: op, right: c.valueOf(constant(rg.From), left.dtype, left.host) + "-" + c.valueOf(constant(rg.To), left.dtype, left.host)})
	case e.Lookup != nil:
		c.lookup(e.Lookup)
	case e.Immediate != nil:
		c.set(e.Immediate.Dreg, &hexpr{kind: "const", data: e.Immediate.Data, length: uint32(len(e.Immediate.Data))})
	case e.Verdict != nil:
		c.emit(verdictText(e.Verdict))
	case e.Nat != nil:
		c.emit(c.nat(e.Nat))
	case e.Fib != nil:
		c.set(e.Fib.Dreg, fibExpr(e.Fib))
	case e.Limit != nil:
		c.emit(limitText(e.Limit))
	case e.Quota != nil:
		c.emit(quotaText(e.Quota))
	case e.Connlimit != nil:
		s := "ct count "
		if e.Connlimit.Over {
			s += "over "
		}
		c.emit(s + strconv.FormatUint(uint64(e.Connlimit.Count), 10))
	case e.Counter != nil:
		c.emit(fmt.Sprintf("counter packets %d bytes %d", e.Counter.Packets, e.Counter.Bytes))
	case e.Log != nil:
		c.emit(logText(e.Log))
	case e.Notrack != nil:
		c.emit("notrack")
	case e.FlowOffload != nil:
		c.emit("flow add @" + quoteName(e.FlowOffload.Table))
	case e.Reject != nil:
		c.emit(c.reject(e.Reject))
	case e.Queue != nil:
		c.emit(queueText(e.Queue))
	case e.Dynset != nil:
		c.emit(c.dynset(e.Dynset))
	case e.Exthdr != nil:
		c.exthdr(e.Exthdr)
	case e.Numgen != nil:
		n := e.Numgen
		s := fmt.Sprintf("numgen %s mod %d", n.Type, n.Modulus)
		if n.Offset != 0 {
			s += fmt.Sprintf(" offset %d", n.Offset)
		}
		c.set(n.Dreg, &hexpr{kind: "text", text: s, dtype: "integer", host: true, length: 4})
	case e.Hash != nil:
		c.hash(e.Hash)
	case e.Objref != nil:
		o := e.Objref
		if o.Set != "" {
			key := c.get(o.Sreg)
			c.emit(fmt.Sprintf("%s name %s map %s", objrefStmt(c.setType(o.Set)), c.exprText(key), c.setRef(o.Set, key)))
			return 0
		}
		if o.Type == "ct helper" || o.Type == "ct timeout" || o.Type == "ct expectation" {
			c.emit(fmt.Sprintf("%s set %s", o.Type, quoteString(o.Name)))
			return 0
		}
		c.emit(fmt.Sprintf("%s name %s", o.Type, quoteString(o.Name)))
	case e.Rt != nil:
		k, _ := keyByName(rtKeys, e.Rt.Key)
		text := "rt " + k.name
		switch k.name {
		case "nexthop":
			text = "rt ip nexthop"
		case "nexthop6":
			text = "rt ip6 nexthop"
		}
		c.set(e.Rt.Dreg, &hexpr{kind: "text", text: text, dtype: k.dtype, host: k.host, length: k.len})
	case e.Socket != nil:
		k, _ := keyByName(socketKeys, e.Socket.Key)
		text := "socket " + k.name
		if k.name == "cgroupv2" {
			text += fmt.Sprintf(" level %d", e.Socket.Level)
		}
		c.set(e.Socket.Dreg, &hexpr{kind: "text", text: text, dtype: k.dtype, host: k.host, length: k.len})
	case e.Xt != nil:
		if text, ok := c.xtText(e.Xt); ok {
			// nft prints what libxtables translates; an empty translation (the comment
			// match) still takes its place, which is why nft's line then starts with a space.
			c.stmts = append(c.stmts, &stmt{text: text, xt: true})
			return 0
		}
		c.emit(fmt.Sprintf("xt %s %s", e.Xt.Kind, quoteString(e.Xt.Name)))
	case e.Unknown != nil:
		if e.Unknown.Text != "" {
			c.emit(e.Unknown.Text)
		} else {
			c.emit("# unknown expression " + quoteString(e.Unknown.Name))
		}
	}
	return 0
}

func constant(b []byte) *hexpr { return &hexpr{kind: "const", data: b, length: uint32(len(b))} }

// payload builds a payload load expression, resolving it against the protocol context.
func (c *renderCtx) payload(base string, off, bits uint32) *hexpr {
	h := &hexpr{kind: "payload", base: base, off: off, bits: bits, dtype: "integer", length: (bits + 7) / 8}
	p := c.protoAt[base]
	if p == nil && base == "transport" {
		p = protoTH
	}
	if p == nil {
		return h
	}
	h.proto = p
	if f := p.fieldAt(off, bits); f != nil {
		h.field = f
		h.dtype = f.dtype
		c.resolved(base, p)
	} else if f := p.fieldStarting(off); f != nil && f.bits > bits {
		// a load of a field's first bytes: a prefix match (iptables-nft's `-s 10.0.0.0/8`)
		h.field = f
		h.dtype = f.dtype
		c.resolved(base, p)
	}
	return h
}

// resolved records that a header at base was used; a protocol dependency that made it known
// is implied by the use and is not printed (nft's payload_dependency_kill). In inet, bridge
// and netdev tables an `ip protocol`/`ip6 nexthdr` match also asserts the layer-3 protocol,
// so nft keeps it; only `meta l4proto` goes.
func (c *renderCtx) resolved(base string, p *proto) {
	if p == protoTH {
		return
	}
	if d := c.depAt[base]; d != nil {
		keep := base == "transport" && d.left != nil && d.left.kind == "payload" &&
			(c.family == FamilyInet || c.family == FamilyBridge || c.family == FamilyNetdev)
		if !keep {
			d.killed = true
		}
		delete(c.depAt, base)
	}
	// ICMP implies IPv4 and ICMPv6 IPv6: the family dependency goes too.
	if base == "transport" && (p == protoICMP || p == protoICMP6) {
		if d := c.depAt["network"]; d != nil {
			d.killed = true
			delete(c.depAt, "network")
		}
	}
}

// payloadName prints a payload expression: "tcp dport", or "@th,16,16" when nft could not
// name it either.
func payloadName(h *hexpr) string {
	if h.field != nil && h.proto != nil && h.bits == h.field.bits {
		return h.proto.name + " " + h.field.name
	}
	if h.field != nil && h.proto != nil && h.bits < h.field.bits {
		return h.proto.name + " " + h.field.name
	}
	base := map[string]string{"ll": "ll", "network": "nh", "transport": "th", "inner": "ih"}[h.base]
	return fmt.Sprintf("@%s,%d,%d", base, h.off, h.bits)
}

// exprText prints a value expression.
func (c *renderCtx) exprText(h *hexpr) string {
	if h == nil {
		return "?"
	}
	switch h.kind {
	case "payload":
		return payloadName(h)
	case "meta":
		if h.key.unqualified {
			return h.key.name
		}
		return "meta " + h.key.name
	case "ct", "text":
		return h.text
	case "const":
		return c.f.value(h.dtype, h.data, h.host)
	case "concat":
		parts := make([]string, len(h.parts))
		for i, p := range h.parts {
			parts[i] = c.exprText(p)
		}
		return strings.Join(parts, " . ")
	case "map":
		return c.exprText(h.left) + " map " + c.setRef(h.set.Name, h.left)
	case "binop":
		return c.binopText(h)
	}
	return "?"
}

func (c *renderCtx) binopText(h *hexpr) string {
	l := c.exprText(h.left)
	switch h.op {
	case "lshift":
		return fmt.Sprintf("%s << %d", l, h.shift)
	case "rshift":
		return fmt.Sprintf("%s >> %d", l, h.shift)
	}
	and, xor, or := bitwiseParts(h.mask, h.xor)
	v := func(b []byte) string { return c.f.value(h.dtype, b, h.host) }
	s := l
	if and != nil {
		s += " & " + v(and)
	}
	if xor != nil {
		s += " ^ " + v(xor)
	}
	if or != nil {
		s += " | " + v(or)
	}
	return s
}

// bitwiseParts splits (x & mask) ^ xor into the AND, XOR and OR nft prints, as
// netlink_parse_bitwise_bool does: or = xor & ^mask, xor &= mask, mask |= or; parts that
// are all ones (AND) or zero (XOR, OR) are nil.
func bitwiseParts(mask, xor []byte) (and, x, or []byte) {
	and = make([]byte, len(mask))
	x = make([]byte, len(mask))
	or = make([]byte, len(mask))
	allOnes, xZero, orZero := true, true, true
	for i := range mask {
		or[i] = xor[i] &^ mask[i]
		x[i] = xor[i] & mask[i]
		and[i] = mask[i] | or[i]
		allOnes = allOnes && and[i] == 0xff
		xZero = xZero && x[i] == 0
		orZero = orZero && or[i] == 0
	}
	if allOnes {
		and = nil
	}
	if xZero {
		x = nil
	}
	if orZero {
		or = nil
	}
	return and, x, or
}

// valueOf prints the value of a register used as the source of a statement: a constant in
// the statement's datatype, or the expression that produced it.
func (c *renderCtx) valueOf(h *hexpr, dtype string, host bool) string {
	if h == nil {
		return "?"
	}
	if h.kind == "const" {
		return c.f.value(dtype, h.data, host)
	}
	if h.kind == "binop" && h.left != nil {
		// `meta mark set ct mark | 0x10`: the mask and value take the destination's type.
		cp := *h
		if cp.dtype == "" || cp.dtype == "integer" {
			cp.dtype, cp.host = dtype, host
		}
		return c.binopText(&cp)
	}
	return c.exprText(h)
}

var cmpOpText = map[string]string{"eq": "", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}

func (c *renderCtx) cmp(exprs []Expr, i int) int {
	cm := exprs[i].Cmp
	left := c.get(cm.Sreg)
	if left == nil {
		left = &hexpr{kind: "text", text: "reg " + strconv.Itoa(int(cm.Sreg)), dtype: "integer"}
	}
	// nft writes `x 1000-2000` as cmp gte + cmp lte on the same register.
	if cm.Op == "gte" && i+1 < len(exprs) && exprs[i+1].Cmp != nil && exprs[i+1].Cmp.Op == "lte" && exprs[i+1].Cmp.Sreg == cm.Sreg {
		hi := exprs[i+1].Cmp
		c.stmts = append(c.stmts, &stmt{left: left, right: c.rangeValue(left, cm.Data, hi.Data)})
		return 1
	}
	s := &stmt{left: left, op: cmpOpText[cm.Op]}
	c.stmts = append(c.stmts, s)
	c.cmpRight(s, left, cm.Op, cm.Data)
	return 0
}

func (c *renderCtx) rangeValue(left *hexpr, lo, hi []byte) string {
	dtype, host := left.dtype, left.host
	if left.kind == "binop" {
		dtype, host = left.left.dtype, left.left.host
	}
	return c.f.value(dtype, lo, host) + "-" + c.f.value(dtype, hi, host)
}

// cmpRight fills in the right side of a match, turning masks into prefixes or flag lists and
// noting protocol dependencies.
func (c *renderCtx) cmpRight(s *stmt, left *hexpr, op string, data []byte) {
	switch left.kind {
	case "binop":
		c.binopMatch(s, left, op, data)
		return
	case "payload":
		if left.field != nil && left.bits < left.field.bits && left.field.prefix {
			// partial load of an address: a prefix
			full := make([]byte, left.field.bits/8)
			copy(full, data)
			s.right = c.f.value(left.dtype, full, false) + "/" + strconv.Itoa(int(left.bits))
			return
		}
		if left.field == nil && left.proto != nil && op == "eq" {
			if c.expandPayload(s, left, data) {
				return
			}
		}
	case "meta", "ct":
		if op == "eq" {
			c.noteDependency(s, left, data)
		}
	}
	if left.fib && left.fibPresent {
		s.right = c.f.value("boolean", data, true)
		if op == "neq" {
			// nft prints != missing as exists
			s.op = ""
			if s.right == "missing" {
				s.right = "exists"
			} else {
				s.right = "missing"
			}
		}
		return
	}
	if left.dtype == "ifname" && op == "eq" || left.dtype == "ifname" && op == "neq" {
		if uint32(len(data)) < left.length && !bytes.Contains(data, []byte{0}) {
			s.right = quoteString(string(data) + "*")
			return
		}
	}
	s.right = c.f.value(left.dtype, data, left.host)
	if left.kind == "payload" && left.field != nil && left.field.name == "protocol" || left.kind == "payload" && left.field != nil && left.field.name == "nexthdr" || left.kind == "payload" && left.field != nil && left.field.name == "type" && left.proto == protoEther {
		if op == "eq" {
			c.noteDependency(s, left, data)
		}
	}
}

// noteDependency records a match that selects a protocol (meta nfproto, meta l4proto, ip
// protocol, ether type): later uses of that protocol's header make it implicit.
func (c *renderCtx) noteDependency(s *stmt, left *hexpr, data []byte) {
	u := c.f.uint(data, left.host)
	switch {
	case left.kind == "meta" && left.key.name == "nfproto":
		if p := networkByNFProto(uint8(u)); p != nil {
			c.protoAt["network"] = p
			c.depAt["network"] = s
			s.depBase = "network"
		}
	case left.kind == "meta" && left.key.name == "protocol" || left.kind == "payload" && left.proto == protoEther && left.field != nil && left.field.name == "type":
		if p := networkByEthertype(uint16(c.f.uint(data, false))); p != nil {
			c.protoAt["network"] = p
			c.depAt["network"] = s
			s.depBase = "network"
		}
	case left.kind == "meta" && left.key.name == "l4proto" || left.kind == "payload" && left.field != nil && (left.field.name == "protocol" || left.field.name == "nexthdr"):
		if p := transportByL4(uint8(u)); p != nil {
			c.protoAt["transport"] = p
			c.depAt["transport"] = s
			s.depBase = "transport"
		}
	}
}

// expandPayload splits a load that covers several whole fields (nft merges adjacent
// matches into one load) into one match per field.
func (c *renderCtx) expandPayload(s *stmt, left *hexpr, data []byte) bool {
	var fields []*field
	pos := left.off
	for pos < left.off+left.bits {
		var f *field
		for i := range left.proto.fields {
			cand := &left.proto.fields[i]
			if cand.off == pos && cand.bits%8 == 0 && cand.off+cand.bits <= left.off+left.bits {
				if f == nil || cand.bits > f.bits {
					f = cand
				}
			}
		}
		if f == nil {
			return false
		}
		fields = append(fields, f)
		pos += f.bits
	}
	var parts []string
	for _, f := range fields {
		from := (f.off - left.off) / 8
		v := data[from : from+f.bits/8]
		parts = append(parts, left.proto.name+" "+f.name+" "+c.f.value(f.dtype, v, false))
	}
	s.left = nil
	s.text = strings.Join(parts, " ")
	c.resolved(left.base, left.proto)
	return true
}

// binopMatch prints `(x & mask) op value` as nft does: prefixes, flag lists, sub-byte fields.
func (c *renderCtx) binopMatch(s *stmt, b *hexpr, op string, data []byte) {
	inner := b.left
	if b.op != "bool" || inner == nil {
		s.right = c.f.value("integer", data, b.host)
		return
	}
	xorZero := !slices.ContainsFunc(b.xor, func(x byte) bool { return x != 0 })
	// Sub-byte header fields (ip dscp, tcp doff): the mask selects the field's bits.
	if inner.kind == "payload" && inner.proto != nil && xorZero {
		if f, shift, ok := maskedField(inner, b.mask, false); ok {
			v := new(big.Int).SetBytes(data)
			v.Rsh(v, shift)
			w := (f.bits + 7) / 8
			vb := v.FillBytes(make([]byte, max(w, uint32(len(v.Bytes())))))
			s.left = &hexpr{kind: "text", text: inner.proto.name + " " + f.name, dtype: f.dtype}
			s.right = c.f.value(f.dtype, vb[len(vb)-int(w):], false)
			c.resolved(inner.base, inner.proto)
			return
		}
	}
	prefixField := inner.kind == "payload" && inner.field != nil && inner.field.prefix ||
		inner.kind == "ct" && (inner.key.name == "saddr" || inner.key.name == "daddr") || prefixTypes[inner.dtype]
	// Host-order values (marks) are masks in numeric order, not byte order.
	numMask := b.mask
	if inner.host && c.f.host == binary.LittleEndian {
		numMask = slices.Clone(b.mask)
		slices.Reverse(numMask)
	}
	if xorZero && prefixField && isPrefixMask(numMask) && (op == "eq" || op == "neq") {
		ones := prefixLen(numMask)
		dtype := inner.dtype
		if dtype == "" {
			dtype = map[int]string{4: "ipv4_addr", 16: "ipv6_addr"}[len(data)]
		}
		s.left = inner
		s.right = c.f.value(dtype, data, inner.host) + "/" + strconv.Itoa(ones)
		return
	}
	flagType := inner.dtype == "ct_state" || inner.dtype == "ct_status" || inner.dtype == "tcp_flag" || inner.dtype == "ct_event"
	allZero := !slices.ContainsFunc(data, func(x byte) bool { return x != 0 })
	if flagType && xorZero {
		s.left = inner
		switch {
		case op == "neq" && allZero:
			s.op = ""
			s.right = c.f.value(inner.dtype, b.mask, inner.host)
			return
		case op == "eq" && allZero:
			s.op = "!"
			s.right = c.f.value(inner.dtype, b.mask, inner.host)
			return
		case op == "eq" || op == "neq":
			s.right = c.f.value(inner.dtype, data, inner.host) + " / " + c.f.value(inner.dtype, b.mask, inner.host)
			return
		}
	}
	// Generic: print the binary operation and compare explicitly.
	s.left = &hexpr{kind: "text", text: c.binopText(b)}
	if s.op == "" {
		s.op = "=="
	}
	s.right = c.f.value(b.dtype, data, b.host)
}

// maskedField finds the field whose bits a mask over a payload load selects, and the shift
// that brings the value down to bit 0.
func maskedField(p *hexpr, mask []byte, aligned bool) (*field, uint, bool) {
	first, last := -1, -1
	for i := 0; i < len(mask)*8; i++ {
		if mask[i/8]&(0x80>>(i%8)) != 0 {
			if first < 0 {
				first = i
			}
			if last >= 0 && last != i-1 {
				return nil, 0, false
			}
			last = i
		}
	}
	if first < 0 {
		return nil, 0, false
	}
	width := uint32(last - first + 1)
	if !aligned && width%8 == 0 && first%8 == 0 {
		return nil, 0, false
	}
	f := p.proto.fieldAt(p.off+uint32(first), width)
	if f == nil {
		return nil, 0, false
	}
	return f, uint(len(mask)*8 - 1 - last), true
}

// prefixTypes are the datatypes nft prints masked matches of as prefixes (DTYPE_F_PREFIX).
var prefixTypes = map[string]bool{"ipv4_addr": true, "ipv6_addr": true, "mark": true}

func isPrefixMask(m []byte) bool {
	seenZero := false
	for i := 0; i < len(m)*8; i++ {
		bit := m[i/8]&(0x80>>(i%8)) != 0
		if bit && seenZero {
			return false
		}
		if !bit {
			seenZero = true
		}
	}
	return true
}

func prefixLen(m []byte) int {
	n := 0
	for i := 0; i < len(m)*8; i++ {
		if m[i/8]&(0x80>>(i%8)) == 0 {
			break
		}
		n++
	}
	return n
}

// matchText prints a match statement.
func (c *renderCtx) matchText(s *stmt) string {
	l := c.exprText(s.left)
	switch s.op {
	case "":
		return l + " " + s.right
	case "!":
		return l + " ! " + s.right
	}
	return l + " " + s.op + " " + s.right
}

// lookup handles set matches, maps and verdict maps.
func (c *renderCtx) lookup(l *Lookup) {
	set := c.table.Set(l.Set)
	if set == nil {
		c.emit("lookup @" + quoteName(l.Set))
		return
	}
	key := c.getN(l.Sreg, set.KeyLen)
	if key == nil {
		key = &hexpr{kind: "text", text: "?"}
	}
	if key.kind == "payload" && key.field != nil {
		c.resolved(key.base, key.proto)
	}
	if key.kind == "concat" {
		for _, p := range key.parts {
			if p.kind == "payload" && p.field != nil {
				c.resolved(p.base, p.proto)
			}
		}
	}
	if !l.HasDreg {
		op := ""
		if l.Invert {
			op = "!="
		}
		c.stmts = append(c.stmts, &stmt{left: key, op: op, right: c.setRef(l.Set, key)})
		return
	}
	if set.DataType == "verdict" {
		c.emit(c.exprText(key) + " vmap " + c.setRef(l.Set, key))
		return
	}
	dt := set.DataType
	c.set(l.Dreg, &hexpr{kind: "map", left: key, set: set, dtype: dt, host: hostEndianTypes[dt], length: set.DataLen})
}

func (c *renderCtx) setType(name string) *Set { return c.table.Set(name) }

// setRef prints a set reference: @name, or an anonymous set's elements inline.
func (c *renderCtx) setRef(name string, key *hexpr) string {
	set := c.table.Set(name)
	if set == nil || !set.Has("anonymous") {
		return "@" + quoteName(name)
	}
	return c.elementsText(set, key, " ")
}

// keyTypes returns the datatype and byte order of each part of a set key: from the
// expression it is looked up with when there is one, else from the set's declared type.
func (c *renderCtx) keyTypes(set *Set, key *hexpr) ([]string, []bool) {
	var dts []string
	var hosts []bool
	if key != nil && key.kind == "concat" {
		for _, p := range key.parts {
			dts = append(dts, p.dtype)
			hosts = append(hosts, p.host)
		}
	} else if key != nil && key.kind != "text" && key.dtype != "" {
		dts, hosts = []string{key.dtype}, []bool{key.host}
	}
	declared := strings.Split(set.KeyType, " . ")
	if len(dts) != len(declared) {
		dts = declared
		hosts = make([]bool, len(dts))
		for i, d := range dts {
			hosts[i] = hostEndianTypes[d]
		}
	}
	for i, d := range dts {
		if d == "" || d == "integer" {
			if i < len(declared) && declared[i] != "integer" {
				dts[i] = declared[i]
				hosts[i] = hostEndianTypes[declared[i]]
			}
		}
	}
	return dts, hosts
}

// fieldLens splits a key of the set into its parts' lengths.
func fieldLens(set *Set, n int) []int {
	if len(set.Fields) > 0 {
		out := make([]int, len(set.Fields))
		for i, f := range set.Fields {
			out[i] = int(f)
		}
		return out
	}
	if n <= 1 {
		return []int{int(set.KeyLen)}
	}
	// Concatenations without a field list: split by the datatypes' sizes.
	out := make([]int, 0, n)
	for _, d := range strings.Split(set.KeyType, " . ") {
		out = append(out, int(datatypeLen(d)))
	}
	return out
}

// datatypeLen is the natural size of a datatype in bytes (for concatenations).
func datatypeLen(d string) uint32 {
	switch d {
	case "ipv4_addr", "mark", "iface_index", "ct_state", "ct_status", "uid", "gid", "integer", "realm", "classid", "devgroup", "fib_addrtype", "hour", "ct_event":
		return 4
	case "ipv6_addr", "ifname", "ct_label", "string":
		return 16
	case "inet_service", "ether_type", "arp_op", "iface_type":
		return 2
	case "ether_addr":
		return 6
	case "time", "cgroupsv2":
		return 8
	}
	return 1
}

// elementsText prints a set's elements as `{ a, b-c, d/8 }` (maps with ` : value`), sorted
// as nft sorts them.
func (c *renderCtx) elementsText(set *Set, key *hexpr, sep string) string {
	dts, hosts := c.keyTypes(set, key)
	lens := fieldLens(set, len(dts))
	type item struct {
		sortKey []byte
		text    string
	}
	items := make([]item, 0, len(set.Elements))
	for i := range set.Elements {
		el := &set.Elements[i]
		text := c.keyText(el.Key, el.KeyEnd, dts, hosts, lens)
		switch {
		case el.Verdict != nil:
			text += " : " + verdictText(el.Verdict)
		case set.Has("map") && el.Data != nil:
			text += " : " + c.dataText(set, el.Data)
		case el.Object != "":
			text += " : " + quoteString(el.Object)
		}
		items = append(items, item{sortKey: sortKey(el.Key, hosts, lens, c.f.host), text: text})
	}
	slices.SortStableFunc(items, func(a, b item) int { return bytes.Compare(a.sortKey, b.sortKey) })
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = it.text
	}
	if len(parts) == 0 {
		return "{ }"
	}
	return "{" + sep + strings.Join(parts, ","+sep) + sep + "}"
}

// dataText prints a map value (which may be a concatenation, as `addr . port` for dnat).
func (c *renderCtx) dataText(set *Set, data []byte) string {
	types := strings.Split(set.DataType, " . ")
	if len(types) == 1 {
		n := int(datatypeLen(types[0]))
		if len(data) == 2*n && (types[0] == "ipv4_addr" || types[0] == "ipv6_addr") {
			// interval data (`snat ip prefix to ip saddr map { a/16 : b/16 }`): start and end
			return c.intervalText(data[:n], data[n:], types[0], false)
		}
		return c.f.value(types[0], data, hostEndianTypes[types[0]])
	}
	var parts []string
	off := 0
	for _, t := range types {
		n := int(datatypeLen(t))
		if off+n > len(data) {
			break
		}
		parts = append(parts, c.f.value(t, data[off:off+n], hostEndianTypes[t]))
		off += (n + 3) &^ 3
	}
	return strings.Join(parts, " . ")
}

// sortKey orders keys numerically per part (host-order parts are reversed first).
func sortKey(key []byte, hosts []bool, lens []int, host binary.ByteOrder) []byte {
	out := make([]byte, 0, len(key))
	off := 0
	for i, n := range lens {
		if off+n > len(key) {
			break
		}
		part := key[off : off+n]
		if i < len(hosts) && hosts[i] && host == binary.LittleEndian {
			rev := make([]byte, n)
			for j := range part {
				rev[n-1-j] = part[j]
			}
			part = rev
		}
		out = append(out, part...)
		off += (n + 3) &^ 3
	}
	if off < len(key) && len(lens) == 1 {
		out = append(out, key[off:]...)
	}
	return out
}

// keyText prints one element key, split into its concatenated parts, with interval ends.
func (c *renderCtx) keyText(key, end []byte, dts []string, hosts []bool, lens []int) string {
	var parts []string
	off := 0
	for i, n := range lens {
		if off+n > len(key) || i >= len(dts) {
			break
		}
		lo := key[off : off+n]
		var hi []byte
		if end != nil {
			hi = end[off : off+n]
		}
		parts = append(parts, c.intervalText(lo, hi, dts[i], hosts[i]))
		off += (n + 3) &^ 3
	}
	return strings.Join(parts, " . ")
}

// intervalText prints lo..hi (inclusive): a single value, a prefix, an interface wildcard or
// a range.
func (c *renderCtx) intervalText(lo, hi []byte, dtype string, host bool) string {
	if hi == nil || bytes.Equal(lo, hi) {
		return c.f.value(dtype, lo, host)
	}
	if dtype == "ipv4_addr" || dtype == "ipv6_addr" {
		if n, ok := prefixOf(lo, hi); ok {
			return c.f.value(dtype, lo, host) + "/" + strconv.Itoa(n)
		}
	}
	if dtype == "ifname" || dtype == "string" {
		// a wildcard "eth*" is the interval from "eth" + zeros to "eth" + 0xff...
		i := 0
		for i < len(lo) && lo[i] == hi[i] {
			i++
		}
		if !slices.ContainsFunc(lo[i:], func(b byte) bool { return b != 0 }) && !slices.ContainsFunc(hi[i:], func(b byte) bool { return b != 0xff }) {
			return quoteString(trimNUL(lo[:i]) + "*")
		}
	}
	return c.f.value(dtype, lo, host) + "-" + c.f.value(dtype, hi, host)
}

// prefixOf reports whether lo..hi is exactly one CIDR prefix.
func prefixOf(lo, hi []byte) (int, bool) {
	n := 0
	for i := 0; i < len(lo)*8; i++ {
		lb := lo[i/8] & (0x80 >> (i % 8))
		hb := hi[i/8] & (0x80 >> (i % 8))
		if lb != hb {
			break
		}
		n++
	}
	for i := n; i < len(lo)*8; i++ {
		if lo[i/8]&(0x80>>(i%8)) != 0 || hi[i/8]&(0x80>>(i%8)) == 0 {
			return 0, false
		}
	}
	return n, true
}

func verdictText(v *Verdict) string {
	switch v.Kind {
	case "jump", "goto":
		return v.Kind + " " + quoteName(v.Chain)
	}
	return v.Kind
}

// nat prints dnat/snat/masquerade/redirect with the addresses and ports from its registers.
func (c *renderCtx) nat(n *Nat) string {
	s := n.Type
	alen, adt := uint32(4), "ipv4_addr"
	if n.Family == "ip6" || c.family == FamilyIP6 {
		alen, adt = 16, "ipv6_addr"
	}
	var addr, port string
	var addrMap *hexpr
	if n.RegAddrMin != 0 {
		lo := c.get(n.RegAddrMin)
		if lo != nil && lo.kind == "map" {
			addrMap = lo
			addr = c.exprText(lo)
		} else {
			addr = c.valueOf(lo, adt, false)
			if n.RegAddrMax != 0 && n.RegAddrMax != n.RegAddrMin {
				hi := c.get(n.RegAddrMax)
				addr += "-" + c.valueOf(hi, adt, false)
			}
		}
	}
	if n.RegProtoMin != 0 {
		inMap := false
		if addrMap != nil {
			// `dnat to ip daddr map { a : b . port }` fills address and port from one lookup.
			ao, _ := regOffset(n.RegAddrMin)
			po, _ := regOffset(n.RegProtoMin)
			inMap = po > ao && po < ao+int(addrMap.length)
		}
		if !inMap {
			lo := c.get(n.RegProtoMin)
			port = c.valueOf(lo, "inet_service", false)
			if n.RegProtoMax != 0 && n.RegProtoMax != n.RegProtoMin {
				port += "-" + c.valueOf(c.get(n.RegProtoMax), "inet_service", false)
			} else if hi := c.get(n.RegProtoMax); n.RegProtoMax == n.RegProtoMin && hi != nil && hi.kind == "const" && lo != nil && lo.kind == "const" && !bytes.Equal(hi.data, lo.data) {
				port += "-" + c.valueOf(hi, "inet_service", false)
			}
		}
	}
	_ = alen
	if addr != "" || port != "" {
		// nft names the family in inet tables, and wherever the address comes with a port or
		// a prefix from a map, or is a prefix (netmap).
		withFamily := c.family == FamilyInet || slices.Contains(n.Flags, "netmap") ||
			addrMap != nil && (port == "" && n.RegProtoMin != 0 || int(addrMap.length) == 2*int(alen))
		if withFamily && (n.Type == "dnat" || n.Type == "snat") && n.Family != "" {
			s += " " + n.Family
		}
		if slices.Contains(n.Flags, "netmap") && addr != "" {
			s += " prefix"
		}
		s += " to"
		if addr != "" {
			if port != "" && adt == "ipv6_addr" && addrMap == nil {
				s += " [" + addr + "]"
			} else {
				s += " " + addr
			}
		}
		if port != "" {
			if addr == "" {
				s += " "
			}
			s += ":" + port
		}
	}
	var fl []string
	for _, f := range []string{"random", "fully-random", "persistent"} {
		if slices.Contains(n.Flags, f) {
			fl = append(fl, f)
		}
	}
	if len(fl) > 0 {
		s += " " + strings.Join(fl, ",")
	}
	return s
}

func fibExpr(f *Fib) *hexpr {
	var flags []string
	for _, fl := range []string{"saddr", "daddr", "mark", "iif", "oif"} {
		if slices.Contains(f.Flags, fl) {
			flags = append(flags, fl)
		}
	}
	text := "fib " + strings.Join(flags, " . ") + " " + f.Result
	h := &hexpr{kind: "text", text: text, fib: true, fibPresent: slices.Contains(f.Flags, "present"), length: 4}
	switch f.Result {
	case "oif":
		h.dtype, h.host = "iface_index", true
	case "oifname":
		h.dtype, h.length = "ifname", 16
	case "type":
		h.dtype, h.host = "fib_addrtype", true
	}
	return h
}

var timeUnits = []struct {
	secs uint64
	name string
}{{604800, "week"}, {86400, "day"}, {3600, "hour"}, {60, "minute"}, {1, "second"}}

func unitName(secs uint64) string {
	for _, u := range timeUnits {
		if secs == u.secs {
			return u.name
		}
	}
	return strconv.FormatUint(secs, 10) + "s"
}

// byteUnits reduces a byte count as nft's get_rate does.
func byteUnits(n uint64) (uint64, string) {
	units := []string{"bytes", "kbytes", "mbytes"}
	i := 0
	for i < len(units)-1 && n >= 1024 && n%1024 == 0 {
		n /= 1024
		i++
	}
	return n, units[i]
}

func limitText(l *Limit) string {
	over := ""
	if l.Over {
		over = "over "
	}
	if l.Type == "bytes" {
		r, u := byteUnits(l.Rate)
		s := fmt.Sprintf("limit rate %s%d %s/%s", over, r, u, unitName(l.Unit))
		if l.Burst != 0 {
			b, bu := byteUnits(uint64(l.Burst))
			s += fmt.Sprintf(" burst %d %s", b, bu)
		}
		return s
	}
	s := fmt.Sprintf("limit rate %s%d/%s", over, l.Rate, unitName(l.Unit))
	if l.Burst != 0 && l.Burst != 5 {
		s += fmt.Sprintf(" burst %d packets", l.Burst)
	}
	return s
}

func quotaText(q *Quota) string {
	over := ""
	if q.Over {
		over = "over "
	}
	n, u := byteUnits(q.Bytes)
	s := fmt.Sprintf("quota %s%d %s", over, n, u)
	if q.Consumed > 0 {
		cn, cu := byteUnits(q.Consumed)
		s += fmt.Sprintf(" used %d %s", cn, cu)
	}
	return s
}

var logLevels = []string{"emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit"}

func logText(l *Log) string {
	s := "log"
	if l.Prefix != "" {
		s += " prefix " + quoteString(l.Prefix)
	}
	if l.Group != nil {
		s += fmt.Sprintf(" group %d", *l.Group)
	}
	if l.Snaplen != 0 {
		s += fmt.Sprintf(" snaplen %d", l.Snaplen)
	}
	if l.QThreshold != 0 {
		s += fmt.Sprintf(" queue-threshold %d", l.QThreshold)
	}
	if l.Level != nil && *l.Level != 4 && int(*l.Level) < len(logLevels) {
		s += " level " + logLevels[*l.Level]
	}
	if len(l.Flags) > 0 {
		// NF_LOG_MASK is every flag but nflog: nft prints it as "all".
		all := true
		for _, f := range []string{"tcp sequence", "tcp options", "ip options", "skuid", "ether"} {
			if !slices.Contains(l.Flags, f) {
				all = false
			}
		}
		if all {
			s += " flags all"
		} else {
			var tcp []string
			for _, f := range []string{"tcp sequence", "tcp options"} {
				if slices.Contains(l.Flags, f) {
					tcp = append(tcp, strings.TrimPrefix(f, "tcp "))
				}
			}
			if len(tcp) > 0 {
				s += " flags tcp " + strings.Join(tcp, ",")
			}
			for _, f := range []string{"ip options", "skuid", "ether"} {
				if slices.Contains(l.Flags, f) {
					s += " flags " + f
				}
			}
		}
	}
	return s
}

func (c *renderCtx) reject(r *Reject) string {
	switch r.Type {
	case "tcp reset":
		return "reject with tcp reset"
	case "icmpx":
		if r.Code == 1 {
			return "reject"
		}
		return "reject with icmpx " + symbol(icmpxCodeNames, uint64(r.Code))
	}
	// ICMP: the family is the table's, or the one a dependency selected in inet/bridge.
	fam := c.family
	if p := c.protoAt["network"]; p != nil && (fam == FamilyInet || fam == FamilyBridge || fam == FamilyNetdev) {
		if p == protoIP6 {
			fam = FamilyIP6
		} else {
			fam = FamilyIP
		}
		// the family dependency is part of what nft prints for reject in inet
		if d := c.depAt["network"]; d != nil {
			d.killed = true
		}
	}
	if fam == FamilyIP6 {
		if r.Code == 4 && c.family != FamilyInet {
			return "reject"
		}
		return "reject with icmpv6 " + symbol(icmp6CodeNames, uint64(r.Code))
	}
	if r.Code == 3 && c.family != FamilyInet {
		return "reject"
	}
	return "reject with icmp " + symbol(icmpCodeNames, uint64(r.Code))
}

func queueText(q *Queue) string {
	s := "queue"
	if len(q.Flags) > 0 {
		s += " flags " + strings.Join(q.Flags, ",")
	}
	if q.Sreg != 0 {
		return s + " to ?"
	}
	if q.Total > 1 {
		return s + fmt.Sprintf(" to %d-%d", q.Num, int(q.Num)+int(q.Total)-1)
	}
	return s + fmt.Sprintf(" to %d", q.Num)
}

func (c *renderCtx) dynset(d *Dynset) string {
	set := c.table.Set(d.Set)
	key := c.get(d.SregKey)
	if set != nil {
		key = c.getN(d.SregKey, set.KeyLen)
	}
	inner := c.exprText(key)
	if d.TimeoutMS != 0 {
		inner += " timeout " + durationText(d.TimeoutMS)
	}
	for i := range d.Exprs {
		sub := &renderCtx{r: c.r, f: c.f, family: c.family, table: c.table, regs: c.regs, protoAt: c.protoAt, depAt: map[string]*stmt{}}
		sub.expr(d.Exprs, i)
		for _, s := range sub.stmts {
			if s.text != "" {
				inner += " " + s.text
			}
		}
	}
	if d.SregData != 0 && set != nil {
		dt := set.DataType
		inner += " : " + c.valueOf(c.get(d.SregData), dt, hostEndianTypes[dt])
	}
	return fmt.Sprintf("%s @%s { %s }", d.Op, quoteName(d.Set), inner)
}

// durationText prints milliseconds as nft does ("1h30m", "10s", "500ms").
func durationText(ms uint64) string {
	if ms == 0 {
		return "0s"
	}
	var sb strings.Builder
	for _, u := range []struct {
		ms   uint64
		unit string
	}{{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}} {
		if ms >= u.ms {
			fmt.Fprintf(&sb, "%d%s", ms/u.ms, u.unit)
			ms %= u.ms
		}
	}
	return sb.String()
}

func (c *renderCtx) exthdr(x *Exthdr) {
	name := ""
	var dtype = "integer"
	switch x.Op {
	case "tcpopt":
		opt, ok := tcpOptions[x.Type]
		if !ok {
			name = fmt.Sprintf("tcp option @%d,%d,%d", x.Type, x.Offset*8, x.Len*8)
			break
		}
		name = "tcp option " + opt.name
		if x.Flags&1 == 0 {
			found := false
			for _, f := range opt.fields {
				if f.off == x.Offset*8 && f.bits == x.Len*8 {
					name += " " + f.name
					found = true
				}
			}
			if !found {
				name += fmt.Sprintf(" @%d,%d", x.Offset*8, x.Len*8)
			}
		}
	case "ipv6":
		n, ok := ipv6Exthdrs[x.Type]
		if !ok {
			n = strconv.Itoa(int(x.Type))
		}
		name = "exthdr " + n
		if x.Flags&1 == 0 {
			name += fmt.Sprintf(" @%d,%d", x.Offset*8, x.Len*8)
		}
	default:
		name = fmt.Sprintf("%s option %d @%d,%d", x.Op, x.Type, x.Offset*8, x.Len*8)
	}
	if x.Set {
		c.emit(name + " set " + c.valueOf(c.get(x.Sreg), dtype, false))
		return
	}
	h := &hexpr{kind: "text", text: name, dtype: dtype, length: x.Len}
	if x.Flags&1 != 0 {
		h.dtype, h.host, h.length = "boolean", true, 1
	}
	c.set(x.Dreg, h)
}

func (c *renderCtx) hash(h *Hash) {
	var s string
	if h.Type == "symhash" {
		s = fmt.Sprintf("symhash mod %d", h.Modulus)
	} else {
		src := c.get(h.Sreg)
		if src != nil && h.Len > src.length {
			src = c.getN(h.Sreg, h.Len)
		}
		s = fmt.Sprintf("jhash %s mod %d", c.exprText(src), h.Modulus)
		if h.HasSeed {
			s += fmt.Sprintf(" seed 0x%x", h.Seed)
		}
	}
	if h.Offset != 0 {
		s += fmt.Sprintf(" offset %d", h.Offset)
	}
	c.set(h.Dreg, &hexpr{kind: "text", text: s, dtype: "integer", host: true, length: 4})
}

// payloadSet prints `ip ttl set 64`, `tcp dport set 80`, `ip dscp set cs1`.
func (c *renderCtx) payloadSet(p *Payload) string {
	dst := c.payload(p.Base, p.Offset*8, p.Len*8)
	src := c.get(p.Sreg)
	// sub-byte fields are written as (load & ~mask) | value: find the field from the mask
	if src != nil && src.kind == "binop" && src.left != nil && src.left.kind == "payload" && dst.field == nil && dst.proto != nil {
		inv := make([]byte, len(src.mask))
		for i := range src.mask {
			inv[i] = ^src.mask[i]
		}
		if f, shift, ok := maskedField(dst, inv, true); ok {
			v := new(big.Int).SetBytes(src.xor)
			v.Rsh(v, shift)
			w := (f.bits + 7) / 8
			vb := v.FillBytes(make([]byte, 8))
			return dst.proto.name + " " + f.name + " set " + c.f.value(f.dtype, vb[8-w:], false)
		}
	}
	return payloadName(dst) + " set " + c.valueOf(src, dst.dtype, false)
}

func objrefStmt(set *Set) string {
	if set != nil && set.ObjType != "" {
		return set.ObjType
	}
	return "counter"
}

// SetElements prints a set's elements as `{ a, b-c : v }`, sorted as nft sorts them, with
// the set's declared key and data types.
func (r *Renderer) SetElements(t *Table, s *Set) string {
	c := &renderCtx{r: r, f: r.fmt(), family: t.Family, table: t}
	return c.elementsText(s, nil, " ")
}

// xtText prints the iptables-nft compat expressions nft shows translated (through
// libxtables' xlate, as nft 1.0 does): the conntrack/state matches, comment, and the NAT,
// MARK, CONNMARK and LOG targets in their usual forms. ok is false for the others.
func (c *renderCtx) xtText(x *Xt) (string, bool) {
	info := x.Info
	xi := xtInfo{info, c.f.host}
	u32 := xi.u32
	states := func(mask uint32) (string, bool) {
		// libxt_conntrack's state_xlate_print order
		var names []string
		for _, st := range []struct {
			bit  uint32
			name string
		}{{1, "invalid"}, {8, "new"}, {4, "related"}, {2, "established"}, {256, "untracked"}} {
			if mask&st.bit != 0 {
				names = append(names, st.name)
				mask &^= st.bit
			}
		}
		return "ct state " + strings.Join(names, ","), mask == 0 && len(names) > 0
	}
	switch x.Kind + " " + x.Name {
	case "match comment":
		return "", true
	case "match state":
		mask, ok := u32(0)
		if !ok {
			return "", false
		}
		if mask&64 != 0 { // XT_STATE_UNTRACKED
			mask = mask&^64 | 256
		}
		return states(mask)
	case "match conntrack":
		mask, inv, ok := xi.conntrackState(x.Rev)
		if !ok || inv {
			return "", false
		}
		switch mask {
		case 128:
			return "ct status dnat", true
		case 64:
			return "ct status snat", true
		}
		return states(mask)
	case "target DNAT", "target SNAT", "target MASQUERADE", "target REDIRECT":
		a, ok := xtNat(x, c.f.host, c.family == FamilyIP6)
		if !ok {
			return "", false
		}
		s := a.Type
		to := ""
		if a.AddrMin.IsValid() {
			to = a.AddrMin.String()
			if a.AddrMax != a.AddrMin {
				to += "-" + a.AddrMax.String()
			}
		}
		if a.ProtoMin != 0 {
			to += fmt.Sprintf(":%d", a.ProtoMin)
			if a.ProtoMax != a.ProtoMin {
				to += fmt.Sprintf("-%d", a.ProtoMax)
			}
		}
		if to != "" {
			s += " to " + to
		}
		for _, f := range []string{"random", "fully-random", "persistent"} {
			if slices.Contains(a.Flags, f) {
				s += " " + f
			}
		}
		return s, true
	case "target MARK":
		mark, ok1 := u32(0)
		mask, ok2 := u32(4)
		if x.Rev != 2 || !ok1 || !ok2 || mask != 0xffffffff {
			return "", false
		}
		return fmt.Sprintf("meta mark set 0x%x", mark), true
	case "target CONNMARK":
		ctmark, _ := u32(0)
		ctmask, _ := u32(4)
		nfmask, ok := u32(8)
		if !ok || ctmask != 0xffffffff || nfmask != 0xffffffff {
			return "", false
		}
		mode := byte(0)
		switch {
		case x.Rev == 1 && len(info) >= 13:
			mode = info[12]
		case x.Rev == 2 && len(info) >= 15 && info[13] == 0:
			mode = info[14]
		default:
			return "", false
		}
		switch mode {
		case 0:
			return fmt.Sprintf("ct mark set 0x%x", ctmark), true
		case 1:
			return "ct mark set mark", true
		case 2:
			return "meta mark set ct mark", true
		}
	case "target LOG":
		// struct xt_log_info: level, logflags, prefix[30]
		if len(info) < 32 || info[1] != 0 {
			return "", false
		}
		s := "log"
		if p := trimNUL(info[2:32]); p != "" {
			s += " prefix " + quoteString(p)
		}
		if info[0] != 4 && int(info[0]) < len(logLevels) {
			s += " level " + logLevels[info[0]]
		}
		return s, true
	}
	return "", false
}

// ChainHeader prints a base chain's declaration line as `nft list` does ("type filter hook
// input priority filter; policy drop;"), or "" for a regular chain.
func (r *Renderer) ChainHeader(t *Table, c *Chain) string {
	if !c.Base() {
		return ""
	}
	s := fmt.Sprintf("type %s hook %s", c.Type, c.Hook)
	switch len(c.Devices) {
	case 0:
	case 1:
		s += " device " + quoteString(c.Devices[0])
	default:
		quoted := make([]string, len(c.Devices))
		for i, d := range c.Devices {
			quoted[i] = quoteString(d)
		}
		s += " devices = { " + strings.Join(quoted, ", ") + " }"
	}
	return s + " priority " + PriorityName(t.Family, c.Hook, c.Priority) + "; policy " + c.Policy + ";"
}
