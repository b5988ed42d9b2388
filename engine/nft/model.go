// Package nft models an nftables ruleset as the kernel holds it (tables, chains, rules as
// register-machine expressions, sets) and evaluates it for a packet the way nf_tables does.
package nft

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// Family is an nftables table family, spelled as nft spells it.
type Family string

// The table families of nf_tables.
const (
	FamilyIP     Family = "ip"
	FamilyIP6    Family = "ip6"
	FamilyInet   Family = "inet"
	FamilyARP    Family = "arp"
	FamilyBridge Family = "bridge"
	FamilyNetdev Family = "netdev"
)

// NFProto returns the kernel's NFPROTO_* number of the family.
func (f Family) NFProto() uint8 {
	switch f {
	case FamilyIP:
		return 2
	case FamilyIP6:
		return 10
	case FamilyInet:
		return 1
	case FamilyARP:
		return 3
	case FamilyBridge:
		return 7
	case FamilyNetdev:
		return 5
	}
	return 0
}

// FamilyFromNFProto maps NFPROTO_* to the family; ok is false for numbers nf_tables does not use.
func FamilyFromNFProto(n uint8) (Family, bool) {
	for _, f := range Families {
		if f.NFProto() == n {
			return f, true
		}
	}
	return "", false
}

// Families lists every family in the order `nft list ruleset` uses for tables of the same
// generation (it prints in kernel order; this is the order used to sort when needed).
var Families = []Family{FamilyIP, FamilyIP6, FamilyInet, FamilyARP, FamilyBridge, FamilyNetdev}

// Hook is a netfilter hook a base chain is attached to.
type Hook string

// The hooks of nf_tables base chains.
const (
	HookPrerouting  Hook = "prerouting"
	HookInput       Hook = "input"
	HookForward     Hook = "forward"
	HookOutput      Hook = "output"
	HookPostrouting Hook = "postrouting"
	HookIngress     Hook = "ingress"
	HookEgress      Hook = "egress"
)

// ChainType is the type of a base chain.
type ChainType string

// The base chain types.
const (
	TypeFilter ChainType = "filter"
	TypeNAT    ChainType = "nat"
	TypeRoute  ChainType = "route"
)

// Ruleset is every table of one network namespace, in the kernel's order.
type Ruleset struct {
	// HostOrder is the byte order ("little" or "big") of the machine the ruleset was read on:
	// values the kernel keeps in host order (marks, ct state, interface indexes) are stored in it
	// in registers, rule data and set keys, and the evaluator must load them the same way.
	HostOrder string   `json:"host_order"`
	Tables    []*Table `json:"tables,omitempty"`
	// Generation is the ruleset generation the read saw (NFT_MSG_GETGEN); two reads with the
	// same generation saw the same ruleset.
	Generation uint32 `json:"generation,omitempty"`
	// Notes say what the reader could not take from netlink and took from `nft -j` instead, or
	// could not read at all (for example a newer expression), so a trace can say so.
	Notes []string `json:"notes,omitempty"`
}

// Table is one nftables table.
type Table struct {
	Family Family `json:"family"`
	Name   string `json:"name"`
	Handle uint64 `json:"handle,omitempty"`
	// Flags are "dormant", "owner" and "persist".
	Flags   []string `json:"flags,omitempty"`
	Comment string   `json:"comment,omitempty"`
	// Origin says who manages the table: "" (native nft), "iptables-nft", "ebtables-nft" or
	// "arptables-nft"; OriginWhy is the evidence (see DetectOrigins).
	Origin     string       `json:"origin,omitempty"`
	OriginWhy  string       `json:"origin_why,omitempty"`
	Chains     []*Chain     `json:"chains,omitempty"`
	Sets       []*Set       `json:"sets,omitempty"`
	Flowtables []*Flowtable `json:"flowtables,omitempty"`
	Objects    []*Object    `json:"objects,omitempty"`
}

// Chain is a base chain (Hook set) or a regular chain (jump/goto target).
type Chain struct {
	Name   string    `json:"name"`
	Handle uint64    `json:"handle,omitempty"`
	Type   ChainType `json:"type,omitempty"`
	Hook   Hook      `json:"hook,omitempty"`
	// Priority orders base chains on a hook (lower first); see PriorityName.
	Priority int32 `json:"priority,omitempty"`
	// Policy is "accept" or "drop" for base chains.
	Policy string `json:"policy,omitempty"`
	// Devices are the interfaces an ingress/egress chain is bound to.
	Devices []string `json:"devices,omitempty"`
	// Flags are "hw-offload" (and "binding" for anonymous chains).
	Flags   []string `json:"flags,omitempty"`
	Comment string   `json:"comment,omitempty"`
	Rules   []*Rule  `json:"rules,omitempty"`
}

// Base reports whether the chain is attached to a hook.
func (c *Chain) Base() bool { return c.Hook != "" }

// Rule is one rule: the expressions the kernel runs, and the rule as nft prints it.
type Rule struct {
	Handle uint64 `json:"handle"`
	Exprs  []Expr `json:"exprs"`
	// Comment is the rule's comment (kept by nft in the rule's userdata).
	Comment string `json:"comment,omitempty"`
	// Text is the rule as `nft list ruleset` prints it, without the comment's handle suffix.
	Text string `json:"text"`
}

// Counter returns the rule's first counter, or nil.
func (r *Rule) Counter() *Counter {
	for i := range r.Exprs {
		if c := r.Exprs[i].Counter; c != nil {
			return c
		}
	}
	return nil
}

// Set is a named or anonymous set or map. A map has the "map" flag and a DataType
// ("verdict" for a verdict map).
type Set struct {
	Name   string `json:"name"`
	Handle uint64 `json:"handle,omitempty"`
	// KeyType is the key's datatype as nft names it, with " . " between the parts of a
	// concatenation ("ipv4_addr . inet_service").
	KeyType string `json:"key_type"`
	KeyLen  uint32 `json:"key_len"`
	// KeyTypeof is the expression a `typeof` set was declared with, when nft recorded it.
	KeyTypeof string `json:"key_typeof,omitempty"`
	// Fields are the byte lengths of a concatenation's parts (set with "concat").
	Fields []uint32 `json:"fields,omitempty"`
	// Flags: "anonymous", "constant", "interval", "map", "timeout", "eval" (dynamic),
	// "object", "concat".
	Flags    []string `json:"flags,omitempty"`
	DataType string   `json:"data_type,omitempty"`
	DataLen  uint32   `json:"data_len,omitempty"`
	// ObjType is the object type of an object map ("counter", "quota", ...).
	ObjType string `json:"obj_type,omitempty"`
	// TimeoutMS is the default element timeout; Size the maximum element count (0: none).
	TimeoutMS uint64    `json:"timeout_ms,omitempty"`
	Size      uint32    `json:"size,omitempty"`
	Comment   string    `json:"comment,omitempty"`
	Elements  []Element `json:"elements,omitempty"`
}

// Has reports whether the set carries a flag.
func (s *Set) Has(flag string) bool {
	for _, f := range s.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

// Element is one set element. An interval element covers Key..KeyEnd, both inclusive (the
// kernel's start/end-flag pairs are joined into one element when read).
type Element struct {
	Key    Bytes `json:"key"`
	KeyEnd Bytes `json:"key_end,omitempty"`
	// Data is a map element's value; Verdict a verdict map element's verdict.
	Data    Bytes    `json:"data,omitempty"`
	Verdict *Verdict `json:"verdict,omitempty"`
	// Object is an object map element's object name.
	Object    string   `json:"object,omitempty"`
	TimeoutMS uint64   `json:"timeout_ms,omitempty"`
	ExpiresMS uint64   `json:"expires_ms,omitempty"`
	Counter   *Counter `json:"counter,omitempty"`
	Comment   string   `json:"comment,omitempty"`
}

// Flowtable is a flowtable (`flow add @ft` offloads established flows to it).
type Flowtable struct {
	Name     string   `json:"name"`
	Handle   uint64   `json:"handle,omitempty"`
	Hook     Hook     `json:"hook"`
	Priority int32    `json:"priority"`
	Devices  []string `json:"devices,omitempty"`
	Flags    []string `json:"flags,omitempty"`
}

// Object is a named stateful object (counter, quota, limit, ct helper, ...).
type Object struct {
	Type   string `json:"type"`
	Name   string `json:"name"`
	Handle uint64 `json:"handle,omitempty"`
	// Counter and Quota carry the state of the two kinds the evaluator reports on.
	Counter *Counter `json:"counter,omitempty"`
	Quota   *Quota   `json:"quota,omitempty"`
	Limit   *Limit   `json:"limit,omitempty"`
	Comment string   `json:"comment,omitempty"`
}

// Bytes is binary data (register contents, set keys) written as hex in JSON.
type Bytes []byte

// MarshalText writes the bytes as lowercase hex.
func (b Bytes) MarshalText() ([]byte, error) {
	out := make([]byte, hex.EncodedLen(len(b)))
	hex.Encode(out, b)
	return out, nil
}

// UnmarshalText reads hex.
func (b *Bytes) UnmarshalText(text []byte) error {
	out := make([]byte, hex.DecodedLen(len(text)))
	if _, err := hex.Decode(out, text); err != nil {
		return fmt.Errorf("bad hex data: %w", err)
	}
	*b = out
	return nil
}

func (b Bytes) String() string { return hex.EncodeToString(b) }

// Table finds a table by family and name.
func (rs *Ruleset) Table(family Family, name string) *Table {
	for _, t := range rs.Tables {
		if t.Family == family && t.Name == name {
			return t
		}
	}
	return nil
}

// Chain finds a chain by name.
func (t *Table) Chain(name string) *Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Set finds a set or map by name.
func (t *Table) Set(name string) *Set {
	for _, s := range t.Sets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// String names the table as nft does ("inet filter").
func (t *Table) String() string { return string(t.Family) + " " + t.Name }

// standard priorities by name, as nft spells them (nftables src/rule.c std_prios).
var stdPriorities = []struct {
	name string
	prio int32
}{
	{"raw", -300}, {"mangle", -150}, {"dstnat", -100}, {"filter", 0}, {"security", 50}, {"srcnat", 100},
}

// bridgePriorities are the bridge family's own standard priorities.
var bridgePriorities = []struct {
	name string
	prio int32
}{
	{"dstnat", -300}, {"filter", -200}, {"out", 100}, {"srcnat", 300},
}

// PriorityValue resolves a standard priority name for a family ("mangle" → -150; bridge
// "filter" → -200). ok is false for names that family does not have.
func PriorityValue(family Family, name string) (int32, bool) {
	list := stdPriorities
	if family == FamilyBridge {
		list = bridgePriorities
	}
	for _, p := range list {
		if p.name == name {
			return p.prio, true
		}
	}
	return 0, false
}

// PriorityName spells a base chain's priority as `nft list` does: a standard name, a name
// with an offset ("mangle + 5", "filter - 7") or a number.
func PriorityName(family Family, hook Hook, prio int32) string {
	list := stdPriorities
	if family == FamilyBridge {
		list = bridgePriorities
	}
	compatible := func(name string) bool {
		switch family {
		case FamilyARP, FamilyNetdev:
			return name == "filter"
		}
		switch name {
		case "dstnat":
			return hook == HookPrerouting
		case "srcnat":
			return hook == HookPostrouting
		case "out":
			return hook == HookOutput
		}
		return true
	}
	// Mirrors nftables' prio2str: the first standard priority within 10 decides; if it is not
	// valid on this hook the number is printed.
	for _, p := range list {
		d := int64(prio) - int64(p.prio)
		if d < -10 || d > 10 {
			continue
		}
		if !compatible(p.name) {
			break
		}
		switch {
		case d > 0:
			return fmt.Sprintf("%s + %d", p.name, d)
		case d < 0:
			return fmt.Sprintf("%s - %d", p.name, -d)
		}
		return p.name
	}
	return fmt.Sprint(prio)
}

// hooksOf lists the hooks each family's base chains may use, and the chain types allowed.
func hooksOf(f Family) []Hook {
	switch f {
	case FamilyIP, FamilyIP6:
		return []Hook{HookPrerouting, HookInput, HookForward, HookOutput, HookPostrouting}
	case FamilyInet:
		return []Hook{HookPrerouting, HookInput, HookForward, HookOutput, HookPostrouting, HookIngress}
	case FamilyARP:
		return []Hook{HookInput, HookOutput}
	case FamilyBridge:
		return []Hook{HookPrerouting, HookInput, HookForward, HookOutput, HookPostrouting}
	case FamilyNetdev:
		return []Hook{HookIngress, HookEgress}
	}
	return nil
}

// typeAllowed says whether a chain type may sit on a hook in a family (kernel chain types).
func typeAllowed(f Family, t ChainType, h Hook) bool {
	switch t {
	case TypeFilter:
		return true
	case TypeNAT:
		switch f {
		case FamilyIP, FamilyIP6, FamilyInet:
			return h == HookPrerouting || h == HookInput || h == HookOutput || h == HookPostrouting
		}
	case TypeRoute:
		switch f {
		case FamilyIP, FamilyIP6, FamilyInet:
			return h == HookOutput
		}
	}
	return false
}

// quoteName renders a table/chain/set name as nft prints it.
func quoteName(s string) string {
	if isIdentifier(s) {
		return s
	}
	return `"` + s + `"`
}

// isIdentifier reports whether nft's scanner takes s as a bare identifier
// ({letter}|[_.])({letter}|{digit}|[/\-_\.])*.
func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		digit := r >= '0' && r <= '9'
		if i == 0 {
			if !letter && r != '_' && r != '.' {
				return false
			}
			continue
		}
		if !letter && !digit && !strings.ContainsRune("/-_.", r) {
			return false
		}
	}
	return true
}
