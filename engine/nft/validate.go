package nft

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// ErrInvalid is wrapped by every error Validate returns.
var ErrInvalid = errors.New("invalid nftables ruleset")

// Limits on what a ruleset may hold, taken from the kernel (NFT_NAME_MAXLEN, IFNAMSIZ,
// NFT_USERDATA_MAXLEN, the register file) so that nothing the kernel could not hold passes.
const (
	maxNameLen    = 255
	maxIfnameLen  = 15
	maxCommentLen = 255
	maxTextLen    = 1 << 16
	maxDataLen    = 64 // NFT_DATA_VALUE_MAXLEN
	regFileBytes  = 80 // 20 32-bit registers, the first 16 bytes being the verdict
	maxDynsetNest = 4
)

// Validate checks every field of the ruleset as untrusted input (a snapshot from another
// machine): names as the kernel and nft allow them, families, hooks, chain types and
// priorities in range, registers inside the register file, set keys of the set's length,
// jump targets and set references that exist, and no control characters anywhere that is
// printed. The error names the table, chain, rule or set at fault.
func (rs *Ruleset) Validate() error {
	if rs == nil {
		return fmt.Errorf("%w: no ruleset", ErrInvalid)
	}
	if rs.HostOrder != "little" && rs.HostOrder != "big" {
		return fmt.Errorf("%w: host_order is %q, want \"little\" or \"big\"", ErrInvalid, rs.HostOrder)
	}
	for i, n := range rs.Notes {
		if err := checkText(n, maxTextLen); err != nil {
			return fmt.Errorf("%w: note %d: %v", ErrInvalid, i, err)
		}
	}
	seen := map[string]bool{}
	for i, t := range rs.Tables {
		if t == nil {
			return fmt.Errorf("%w: table %d is null", ErrInvalid, i)
		}
		key := string(t.Family) + " " + t.Name
		if seen[key] {
			return fmt.Errorf("%w: table %s appears twice", ErrInvalid, quoteForError(key))
		}
		seen[key] = true
		if err := t.validate(); err != nil {
			return fmt.Errorf("%w: table %s %s: %v", ErrInvalid, t.Family, quoteForError(t.Name), err)
		}
	}
	return nil
}

func (t *Table) validate() error {
	if hooksOf(t.Family) == nil {
		return fmt.Errorf("unknown family %q", t.Family)
	}
	if err := checkName(t.Name); err != nil {
		return fmt.Errorf("name: %v", err)
	}
	if err := checkFlags(t.Flags, tableFlagNames); err != nil {
		return err
	}
	if err := checkText(t.Comment, maxCommentLen); err != nil {
		return fmt.Errorf("comment: %v", err)
	}
	switch t.Origin {
	case "", "iptables-nft", "ebtables-nft", "arptables-nft":
	default:
		return fmt.Errorf("unknown origin %q", t.Origin)
	}
	if err := checkText(t.OriginWhy, maxCommentLen); err != nil {
		return fmt.Errorf("origin_why: %v", err)
	}
	sets := map[string]*Set{}
	for i, s := range t.Sets {
		if s == nil {
			return fmt.Errorf("set %d is null", i)
		}
		if sets[s.Name] != nil {
			return fmt.Errorf("set %s appears twice", quoteForError(s.Name))
		}
		sets[s.Name] = s
	}
	chains := map[string]*Chain{}
	for i, c := range t.Chains {
		if c == nil {
			return fmt.Errorf("chain %d is null", i)
		}
		if chains[c.Name] != nil {
			return fmt.Errorf("chain %s appears twice", quoteForError(c.Name))
		}
		chains[c.Name] = c
	}
	for _, s := range t.Sets {
		if err := s.validate(chains); err != nil {
			return fmt.Errorf("set %s: %v", quoteForError(s.Name), err)
		}
	}
	handles := map[uint64]bool{}
	for _, c := range t.Chains {
		if err := c.validate(t, chains, sets, handles); err != nil {
			return fmt.Errorf("chain %s: %v", quoteForError(c.Name), err)
		}
	}
	if err := checkLoops(t); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, f := range t.Flowtables {
		if f == nil {
			return fmt.Errorf("flowtable %d is null", i)
		}
		if err := checkName(f.Name); err != nil {
			return fmt.Errorf("flowtable name: %v", err)
		}
		if names[f.Name] {
			return fmt.Errorf("flowtable %s appears twice", quoteForError(f.Name))
		}
		names[f.Name] = true
		if f.Hook != HookIngress {
			return fmt.Errorf("flowtable %s: hook %q, want ingress", quoteForError(f.Name), f.Hook)
		}
		for _, d := range f.Devices {
			if err := checkIfname(d); err != nil {
				return fmt.Errorf("flowtable %s: device: %v", quoteForError(f.Name), err)
			}
		}
		if err := checkFlags(f.Flags, []string{"offload", "counter"}); err != nil {
			return fmt.Errorf("flowtable %s: %v", quoteForError(f.Name), err)
		}
	}
	objs := map[string]bool{}
	for i, o := range t.Objects {
		if o == nil {
			return fmt.Errorf("object %d is null", i)
		}
		if !slices.Contains(objectTypes, o.Type) {
			return fmt.Errorf("object %s: unknown type %q", quoteForError(o.Name), o.Type)
		}
		if err := checkName(o.Name); err != nil {
			return fmt.Errorf("object name: %v", err)
		}
		if objs[o.Type+" "+o.Name] {
			return fmt.Errorf("%s %s appears twice", o.Type, quoteForError(o.Name))
		}
		objs[o.Type+" "+o.Name] = true
		if err := checkText(o.Comment, maxCommentLen); err != nil {
			return fmt.Errorf("object %s: comment: %v", quoteForError(o.Name), err)
		}
		if o.Limit != nil {
			if err := o.Limit.validate(); err != nil {
				return fmt.Errorf("object %s: %v", quoteForError(o.Name), err)
			}
		}
	}
	return nil
}

// objectTypes are the stateful object types (NFT_OBJECT_*), as nft names them.
var objectTypes = []string{"counter", "quota", "ct helper", "limit", "ct timeout", "secmark", "ct expectation", "synproxy", "tunnel"}

func (c *Chain) validate(t *Table, chains map[string]*Chain, sets map[string]*Set, handles map[uint64]bool) error {
	if err := checkName(c.Name); err != nil {
		return fmt.Errorf("name: %v", err)
	}
	if err := checkText(c.Comment, maxCommentLen); err != nil {
		return fmt.Errorf("comment: %v", err)
	}
	if err := checkFlags(c.Flags, []string{"hw-offload", "binding"}); err != nil {
		return err
	}
	if c.Base() {
		if !slices.Contains(hooksOf(t.Family), c.Hook) {
			return fmt.Errorf("hook %q does not exist in family %s", c.Hook, t.Family)
		}
		if !typeAllowed(t.Family, c.Type, c.Hook) {
			return fmt.Errorf("chain type %q is not allowed on hook %s in family %s", c.Type, c.Hook, t.Family)
		}
		if c.Policy != "accept" && c.Policy != "drop" {
			return fmt.Errorf("policy %q, want accept or drop", c.Policy)
		}
		if c.Type == TypeNAT && c.Priority <= -200 {
			// The kernel refuses nat chains at conntrack's priority or before (nf_tables_api).
			return fmt.Errorf("nat chain priority %d is at or before conntrack (-200)", c.Priority)
		}
		for _, d := range c.Devices {
			if err := checkIfname(d); err != nil {
				return fmt.Errorf("device: %v", err)
			}
		}
		if len(c.Devices) > 0 && c.Hook != HookIngress && c.Hook != HookEgress {
			return fmt.Errorf("devices are only allowed on ingress and egress chains")
		}
	} else if c.Type != "" || c.Policy != "" || c.Priority != 0 || len(c.Devices) > 0 {
		return fmt.Errorf("a regular chain (no hook) has a type, policy, priority or device")
	}
	for i, r := range c.Rules {
		if r == nil {
			return fmt.Errorf("rule %d is null", i)
		}
		if r.Handle == 0 {
			return fmt.Errorf("rule %d has no handle", i)
		}
		if handles[r.Handle] {
			return fmt.Errorf("rule handle %d appears twice in the table", r.Handle)
		}
		handles[r.Handle] = true
		if err := r.validate(t, chains, sets); err != nil {
			return fmt.Errorf("rule handle %d: %v", r.Handle, err)
		}
	}
	return nil
}

func (r *Rule) validate(t *Table, chains map[string]*Chain, sets map[string]*Set) error {
	if err := checkText(r.Text, maxTextLen); err != nil {
		return fmt.Errorf("text: %v", err)
	}
	if err := checkText(r.Comment, maxCommentLen); err != nil {
		return fmt.Errorf("comment: %v", err)
	}
	if len(r.Exprs) > 4096 {
		return fmt.Errorf("%d expressions, more than the kernel allows (NFT_RULE_MAXEXPRS 128 per blob)", len(r.Exprs))
	}
	for i := range r.Exprs {
		if err := r.Exprs[i].validate(t, chains, sets, 0); err != nil {
			return fmt.Errorf("expression %d: %v", i+1, err)
		}
	}
	return nil
}

// regBytes checks that reg is a data register (or the verdict register when verdictOK) and
// that n bytes from it fit in the register file.
func regBytes(reg uint32, n uint32, verdictOK bool) error {
	if reg == 0 {
		if verdictOK {
			return nil
		}
		return fmt.Errorf("register 0 is the verdict register")
	}
	off, ok := regOffset(reg)
	if !ok {
		return fmt.Errorf("register %d does not exist", reg)
	}
	if n == 0 || n > maxDataLen || off+int(n) > regFileBytes {
		return fmt.Errorf("%d bytes from register %d do not fit in the register file", n, reg)
	}
	return nil
}

// regOffset is the byte offset of register reg in the register file (nft_parse_register).
func regOffset(reg uint32) (int, bool) {
	switch {
	case reg >= 1 && reg <= 4:
		return int(reg) * 16, true
	case reg >= 8 && reg <= 23:
		return 16 + int(reg-8)*4, true
	}
	return 0, false
}

var cmpOps = []string{"eq", "neq", "lt", "lte", "gt", "gte"}

func (e *Expr) validate(t *Table, chains map[string]*Chain, sets map[string]*Set, depth int) error {
	if n := e.count(); n != 1 {
		return fmt.Errorf("an expression must have exactly one kind, this one has %d", n)
	}
	switch {
	case e.Payload != nil:
		p := e.Payload
		if !slices.Contains([]string{"ll", "network", "transport", "inner"}, p.Base) {
			return fmt.Errorf("payload base %q", p.Base)
		}
		if p.Offset > 0xffff {
			return fmt.Errorf("payload offset %d out of range", p.Offset)
		}
		if p.Set {
			if p.CsumType > 2 || p.CsumFlags > 1 {
				return fmt.Errorf("payload checksum type %d flags %d", p.CsumType, p.CsumFlags)
			}
			return regBytes(p.Sreg, p.Len, false)
		}
		return regBytes(p.Dreg, p.Len, false)
	case e.Meta != nil:
		k, ok := keyByName(metaKeys, e.Meta.Key)
		if !ok {
			return fmt.Errorf("unknown meta key %q", e.Meta.Key)
		}
		if e.Meta.Set {
			return regBytes(e.Meta.Sreg, k.len, false)
		}
		return regBytes(e.Meta.Dreg, k.len, false)
	case e.Ct != nil:
		k, ok := keyByName(ctKeys, e.Ct.Key)
		if !ok {
			return fmt.Errorf("unknown ct key %q", e.Ct.Key)
		}
		switch e.Ct.Dir {
		case "":
		case "original", "reply":
			if !k.dir {
				return fmt.Errorf("ct %s takes no direction", k.name)
			}
		default:
			return fmt.Errorf("ct direction %q", e.Ct.Dir)
		}
		n := k.len
		if n == 0 {
			n = 16
		}
		if e.Ct.Set {
			return regBytes(e.Ct.Sreg, n, false)
		}
		return regBytes(e.Ct.Dreg, n, false)
	case e.Cmp != nil:
		if !slices.Contains(cmpOps, e.Cmp.Op) {
			return fmt.Errorf("cmp op %q", e.Cmp.Op)
		}
		return regBytes(e.Cmp.Sreg, uint32(len(e.Cmp.Data)), false)
	case e.Bitwise != nil:
		b := e.Bitwise
		switch b.Op {
		case "bool":
			if len(b.Mask) != int(b.Len) || len(b.Xor) != int(b.Len) {
				return fmt.Errorf("bitwise mask and xor must be %d bytes", b.Len)
			}
		case "lshift", "rshift":
			if b.Shift >= 32 || b.Len%4 != 0 {
				return fmt.Errorf("bitwise shift %d over %d bytes", b.Shift, b.Len)
			}
		default:
			return fmt.Errorf("bitwise op %q", b.Op)
		}
		if err := regBytes(b.Sreg, b.Len, false); err != nil {
			return err
		}
		return regBytes(b.Dreg, b.Len, false)
	case e.Byteorder != nil:
		b := e.Byteorder
		if b.Op != "ntoh" && b.Op != "hton" {
			return fmt.Errorf("byteorder op %q", b.Op)
		}
		if b.Size != 2 && b.Size != 4 && b.Size != 8 || b.Len%b.Size != 0 {
			return fmt.Errorf("byteorder size %d over %d bytes", b.Size, b.Len)
		}
		if err := regBytes(b.Sreg, b.Len, false); err != nil {
			return err
		}
		return regBytes(b.Dreg, b.Len, false)
	case e.Range != nil:
		r := e.Range
		if r.Op != "eq" && r.Op != "neq" {
			return fmt.Errorf("range op %q", r.Op)
		}
		if len(r.From) != len(r.To) {
			return fmt.Errorf("range bounds of different lengths")
		}
		return regBytes(r.Sreg, uint32(len(r.From)), false)
	case e.Lookup != nil:
		l := e.Lookup
		s := sets[l.Set]
		if s == nil {
			return fmt.Errorf("lookup in set %s, which does not exist", quoteForError(l.Set))
		}
		if err := regBytes(l.Sreg, s.KeyLen, false); err != nil {
			return err
		}
		if l.HasDreg {
			if !s.Has("map") {
				return fmt.Errorf("map lookup in %s, which is not a map", quoteForError(l.Set))
			}
			if s.DataType == "verdict" {
				if l.Dreg != 0 {
					return fmt.Errorf("verdict map lookup into data register %d", l.Dreg)
				}
			} else if err := regBytes(l.Dreg, s.DataLen, false); err != nil {
				return err
			}
		}
		return nil
	case e.Immediate != nil:
		return regBytes(e.Immediate.Dreg, uint32(len(e.Immediate.Data)), false)
	case e.Verdict != nil:
		return e.Verdict.validate(chains)
	case e.Nat != nil:
		n := e.Nat
		if !slices.Contains([]string{"snat", "dnat", "masquerade", "redirect"}, n.Type) {
			return fmt.Errorf("nat type %q", n.Type)
		}
		if n.Family != "" && n.Family != "ip" && n.Family != "ip6" {
			return fmt.Errorf("nat family %q", n.Family)
		}
		if err := checkFlags(n.Flags, natFlagNames); err != nil {
			return err
		}
		alen := uint32(4)
		if n.Family == "ip6" {
			alen = 16
		}
		for _, r := range []struct {
			reg uint32
			n   uint32
		}{{n.RegAddrMin, alen}, {n.RegAddrMax, alen}, {n.RegProtoMin, 2}, {n.RegProtoMax, 2}} {
			if r.reg != 0 {
				if err := regBytes(r.reg, r.n, false); err != nil {
					return err
				}
			}
		}
		return nil
	case e.Fib != nil:
		if !slices.Contains([]string{"oif", "oifname", "type"}, e.Fib.Result) {
			return fmt.Errorf("fib result %q", e.Fib.Result)
		}
		if err := checkFlags(e.Fib.Flags, fibFlagNames); err != nil {
			return err
		}
		return regBytes(e.Fib.Dreg, 4, false)
	case e.Limit != nil:
		return e.Limit.validate()
	case e.Log != nil:
		l := e.Log
		if err := checkText(l.Prefix, 127); err != nil {
			return fmt.Errorf("log prefix: %v", err)
		}
		if l.Level != nil && *l.Level > 8 {
			return fmt.Errorf("log level %d", *l.Level)
		}
		return checkFlags(l.Flags, logFlagNames)
	case e.FlowOffload != nil:
		if err := checkName(e.FlowOffload.Table); err != nil {
			return fmt.Errorf("flowtable name: %v", err)
		}
		return nil
	case e.Reject != nil:
		if !slices.Contains([]string{"icmp", "tcp reset", "icmpx"}, e.Reject.Type) {
			return fmt.Errorf("reject type %q", e.Reject.Type)
		}
		return nil
	case e.Queue != nil:
		if e.Queue.Sreg != 0 {
			if err := regBytes(e.Queue.Sreg, 2, false); err != nil {
				return err
			}
		}
		return checkFlags(e.Queue.Flags, queueFlagNames)
	case e.Dynset != nil:
		d := e.Dynset
		s := sets[d.Set]
		if s == nil {
			return fmt.Errorf("dynamic update of set %s, which does not exist", quoteForError(d.Set))
		}
		if !slices.Contains([]string{"add", "update", "delete"}, d.Op) {
			return fmt.Errorf("dynset op %q", d.Op)
		}
		if err := regBytes(d.SregKey, s.KeyLen, false); err != nil {
			return err
		}
		if d.SregData != 0 {
			if err := regBytes(d.SregData, s.DataLen, false); err != nil {
				return err
			}
		}
		if depth >= maxDynsetNest {
			return fmt.Errorf("dynset expressions nested too deep")
		}
		for i := range d.Exprs {
			if err := d.Exprs[i].validate(t, chains, sets, depth+1); err != nil {
				return fmt.Errorf("dynset expression %d: %v", i+1, err)
			}
		}
		return nil
	case e.Exthdr != nil:
		x := e.Exthdr
		if !slices.Contains([]string{"ipv6", "tcpopt", "ipv4", "sctp", "dccp"}, x.Op) {
			return fmt.Errorf("exthdr op %q", x.Op)
		}
		if x.Set {
			return regBytes(x.Sreg, x.Len, false)
		}
		return regBytes(x.Dreg, max(x.Len, 1), false)
	case e.Numgen != nil:
		if e.Numgen.Type != "inc" && e.Numgen.Type != "random" {
			return fmt.Errorf("numgen type %q", e.Numgen.Type)
		}
		return regBytes(e.Numgen.Dreg, 4, false)
	case e.Hash != nil:
		h := e.Hash
		if h.Type != "jhash" && h.Type != "symhash" {
			return fmt.Errorf("hash type %q", h.Type)
		}
		if h.Type == "jhash" {
			if err := regBytes(h.Sreg, h.Len, false); err != nil {
				return err
			}
		}
		return regBytes(h.Dreg, 4, false)
	case e.Objref != nil:
		o := e.Objref
		if o.Set != "" {
			if sets[o.Set] == nil {
				return fmt.Errorf("object map %s does not exist", quoteForError(o.Set))
			}
			return regBytes(o.Sreg, sets[o.Set].KeyLen, false)
		}
		if !slices.Contains(objectTypes, o.Type) {
			return fmt.Errorf("object type %q", o.Type)
		}
		return checkName(o.Name)
	case e.Rt != nil:
		k, ok := keyByName(rtKeys, e.Rt.Key)
		if !ok {
			return fmt.Errorf("unknown rt key %q", e.Rt.Key)
		}
		return regBytes(e.Rt.Dreg, k.len, false)
	case e.Socket != nil:
		k, ok := keyByName(socketKeys, e.Socket.Key)
		if !ok {
			return fmt.Errorf("unknown socket key %q", e.Socket.Key)
		}
		return regBytes(e.Socket.Dreg, k.len, false)
	case e.Xt != nil:
		if e.Xt.Kind != "match" && e.Xt.Kind != "target" {
			return fmt.Errorf("xt kind %q", e.Xt.Kind)
		}
		if err := checkText(e.Xt.Name, 28); err != nil || e.Xt.Name == "" {
			return fmt.Errorf("xt name %s", quoteForError(e.Xt.Name))
		}
		return nil
	case e.Unknown != nil:
		if err := checkText(e.Unknown.Name, 32); err != nil {
			return fmt.Errorf("unknown expression name: %v", err)
		}
		return checkText(e.Unknown.Text, maxTextLen)
	}
	// Counter, Quota, Connlimit, Notrack: any value is valid.
	return nil
}

func (l *Limit) validate() error {
	if l.Type != "packets" && l.Type != "bytes" {
		return fmt.Errorf("limit type %q", l.Type)
	}
	if l.Unit == 0 {
		return fmt.Errorf("limit unit of 0 seconds")
	}
	return nil
}

func (v *Verdict) validate(chains map[string]*Chain) error {
	switch v.Kind {
	case "accept", "drop", "continue", "return", "queue", "break", "stolen":
		if v.Chain != "" {
			return fmt.Errorf("verdict %s with a chain", v.Kind)
		}
		return nil
	case "jump", "goto":
		c := chains[v.Chain]
		if c == nil {
			return fmt.Errorf("%s to chain %s, which does not exist in the table", v.Kind, quoteForError(v.Chain))
		}
		if c.Base() {
			return fmt.Errorf("%s to base chain %s", v.Kind, quoteForError(v.Chain))
		}
		return nil
	}
	return fmt.Errorf("unknown verdict %q", v.Kind)
}

func (s *Set) validate(chains map[string]*Chain) error {
	if err := checkName(s.Name); err != nil {
		return fmt.Errorf("name: %v", err)
	}
	if err := checkFlags(s.Flags, setFlagNames); err != nil {
		return err
	}
	if err := checkText(s.Comment, maxCommentLen); err != nil {
		return fmt.Errorf("comment: %v", err)
	}
	if err := checkText(s.KeyTypeof, maxCommentLen); err != nil {
		return fmt.Errorf("typeof: %v", err)
	}
	if !knownDatatype(s.KeyType) {
		return fmt.Errorf("unknown key type %q", s.KeyType)
	}
	if s.KeyLen == 0 || s.KeyLen > maxDataLen {
		return fmt.Errorf("key length %d out of range 1-%d", s.KeyLen, maxDataLen)
	}
	if len(s.Fields) > 0 {
		var sum uint32
		for _, f := range s.Fields {
			if f == 0 || f > maxDataLen {
				return fmt.Errorf("concatenation field length %d", f)
			}
			sum += (f + 3) &^ 3
		}
		if sum != s.KeyLen {
			return fmt.Errorf("concatenation fields add up to %d bytes, the key has %d", sum, s.KeyLen)
		}
	}
	isMap := s.Has("map")
	vmap := isMap && s.DataType == "verdict"
	switch {
	case isMap && s.DataType == "":
		return fmt.Errorf("a map without a data type")
	case isMap && !vmap && !knownDatatype(s.DataType):
		return fmt.Errorf("unknown data type %q", s.DataType)
	case isMap && !vmap && (s.DataLen == 0 || s.DataLen > maxDataLen):
		return fmt.Errorf("data length %d out of range", s.DataLen)
	case !isMap && (s.DataType != "" || s.DataLen != 0):
		return fmt.Errorf("a set that is not a map has a data type")
	}
	if s.ObjType != "" && !slices.Contains(objectTypes, s.ObjType) {
		return fmt.Errorf("object type %q", s.ObjType)
	}
	interval := s.Has("interval")
	for i := range s.Elements {
		el := &s.Elements[i]
		if len(el.Key) != int(s.KeyLen) {
			return fmt.Errorf("element %d: key of %d bytes, the set's keys have %d", i, len(el.Key), s.KeyLen)
		}
		if el.KeyEnd != nil {
			if !interval {
				return fmt.Errorf("element %d: an interval in a set without the interval flag", i)
			}
			if len(el.KeyEnd) != len(el.Key) {
				return fmt.Errorf("element %d: interval end of %d bytes, the key has %d", i, len(el.KeyEnd), len(el.Key))
			}
			if len(s.Fields) == 0 && bytes.Compare(el.Key, el.KeyEnd) > 0 {
				return fmt.Errorf("element %d: interval end before its start", i)
			}
		}
		switch {
		case vmap:
			if el.Verdict == nil || el.Data != nil {
				return fmt.Errorf("element %d: a verdict map element needs a verdict and no data", i)
			}
			if err := el.Verdict.validate(chains); err != nil {
				return fmt.Errorf("element %d: %v", i, err)
			}
		case isMap:
			if el.Verdict != nil || len(el.Data) != int(s.DataLen) {
				return fmt.Errorf("element %d: map data of %d bytes, the map's values have %d", i, len(el.Data), s.DataLen)
			}
		case s.ObjType != "":
			if err := checkName(el.Object); err != nil {
				return fmt.Errorf("element %d: object: %v", i, err)
			}
		default:
			if el.Verdict != nil || el.Data != nil {
				return fmt.Errorf("element %d: a set element with map data", i)
			}
		}
		if err := checkText(el.Comment, maxCommentLen); err != nil {
			return fmt.Errorf("element %d: comment: %v", i, err)
		}
	}
	return nil
}

func checkFlags(flags []string, allowed []string) error {
	seen := map[string]bool{}
	for _, f := range flags {
		if !slices.Contains(allowed, f) {
			return fmt.Errorf("unknown flag %q", f)
		}
		if seen[f] {
			return fmt.Errorf("flag %q twice", f)
		}
		seen[f] = true
	}
	return nil
}

// checkName checks a table, chain, set, flowtable or object name: what the kernel stores
// (1 to 255 bytes) and what nft can write back (no quote or backslash), printable.
func checkName(s string) error {
	if s == "" {
		return fmt.Errorf("empty name")
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("name of %d bytes, longer than %d", len(s), maxNameLen)
	}
	if err := checkText(s, maxNameLen); err != nil {
		return err
	}
	for _, r := range s {
		if r == '"' || r == '\\' || r == '\'' {
			return fmt.Errorf("name %s contains %q", quoteForError(s), r)
		}
	}
	return nil
}

// checkIfname checks an interface name as the kernel's dev_valid_name does.
func checkIfname(s string) error {
	if s == "" || len(s) > maxIfnameLen || s == "." || s == ".." {
		return fmt.Errorf("interface name %s is not valid (1-%d bytes, not . or ..)", quoteForError(s), maxIfnameLen)
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f || r == '"' || r == '\\' {
			return fmt.Errorf("interface name %s contains %q", quoteForError(s), r)
		}
	}
	return checkText(s, maxIfnameLen)
}

// checkText refuses invalid UTF-8, control characters (C0, DEL, C1) and bidirectional
// overrides, which could disguise what a terminal shows, and text longer than limit bytes.
func checkText(s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%d bytes, longer than %d", len(s), limit)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}

// quoteForError quotes a possibly hostile string for an error message.
func quoteForError(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// checkLoops refuses jump/goto loops and chains nested deeper than the jump stack, as the
// kernel does when a ruleset is loaded (nf_tables_check_loops): the evaluator relies on it.
func checkLoops(t *Table) error {
	targets := map[string][]string{}
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			for i := range r.Exprs {
				targets[c.Name] = append(targets[c.Name], exprTargets(t, &r.Exprs[i])...)
			}
		}
	}
	const (
		unvisited = iota
		active
		done
	)
	state := map[string]int{}
	depth := map[string]int{}
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case active:
			return fmt.Errorf("chain %s jumps back to itself (a loop the kernel refuses)", quoteForError(name))
		case done:
			return nil
		}
		state[name] = active
		d := 0
		for _, next := range targets[name] {
			if err := visit(next); err != nil {
				return err
			}
			d = max(d, depth[next]+1)
		}
		if d > maxJumpStack {
			return fmt.Errorf("chain %s leads to jumps nested %d deep, more than the kernel's %d", quoteForError(name), d, maxJumpStack)
		}
		depth[name] = d
		state[name] = done
		return nil
	}
	for _, c := range t.Chains {
		if err := visit(c.Name); err != nil {
			return err
		}
	}
	return nil
}

// exprTargets lists the chains an expression may jump or go to: its verdict, or the verdicts
// of the verdict map it looks up.
func exprTargets(t *Table, e *Expr) []string {
	var out []string
	if v := e.Verdict; v != nil && (v.Kind == "jump" || v.Kind == "goto") {
		out = append(out, v.Chain)
	}
	if l := e.Lookup; l != nil && l.HasDreg {
		if s := t.Set(l.Set); s != nil {
			for _, el := range s.Elements {
				if v := el.Verdict; v != nil && (v.Kind == "jump" || v.Kind == "goto") {
					out = append(out, v.Chain)
				}
			}
		}
	}
	if d := e.Dynset; d != nil {
		for i := range d.Exprs {
			out = append(out, exprTargets(t, &d.Exprs[i])...)
		}
	}
	return out
}
