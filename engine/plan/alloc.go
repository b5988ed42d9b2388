package plan

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
)

// Ranges roundtrip allocates from. Rule priorities sit between the local rule (0) and main
// (32766), above the ranges other tools use (Tailscale 5210-5270, mwan3 1001-3255) and below
// wg-quick's automatic ones (32764-32765).
const (
	PriorityFirst = 10000
	PriorityLast  = 19999
)

// tableCandidates are tried in order: the traditional rt_tables range first, then higher ids.
var tableCandidates = [][2]int{{100, 252}, {1000, 65535}}

// Reservation is something the host (or a tool that may start later) uses, so the allocator
// avoids it.
type Reservation struct {
	By   string `json:"by"`   // Tailscale, wg-quick, ...
	What string `json:"what"` // "fwmark bits 0xff0000", "table 52", "priorities 5200-5299"
	Seen bool   `json:"seen"` // detected on this host, rather than reserved by convention
}

// Allocator hands out rule priorities, routing table ids and fwmark bits that no other user of
// the host has taken: what the state shows in use plus what well-known tools take when they
// start (Tailscale, wg-quick, mwan3, kube-proxy). It is deterministic: for the same state it
// gives the same answers, and it gives back what an earlier run of the same intent took (a
// rule that exists except for its priority keeps its priority; a named table keeps its id;
// marks used only in the intent's own chains are free to it), so re-planning an intent is a
// no-op.
type Allocator struct {
	state    *model.State
	owner    string // chain prefix of the intent, e.g. "RT-PF-"
	prios    map[int]bool
	tables   map[int]bool
	marks    uint32
	reserved []Reservation
}

// NewAllocator reads what s uses. owner is the chain name prefix of the intent (it must start
// with ChainPrefix); marks set or matched only in those chains count as the intent's own.
func NewAllocator(s *model.State, owner string) *Allocator {
	a := &Allocator{state: s, owner: owner, prios: map[int]bool{}, tables: map[int]bool{}}
	for _, r := range s.Rules {
		a.prios[r.Priority] = true
		if r.Table != 0 {
			a.tables[r.Table] = true
		}
		if r.Mark != nil && (r.Priority < PriorityFirst || r.Priority > PriorityLast) {
			a.marks |= markBitsUsed(r.Mark.Value, r.Mark.Mask)
		}
	}
	for _, r := range s.Routes {
		a.tables[r.Table] = true
	}
	for id := range s.TableNames {
		a.tables[id] = true
	}
	for _, t := range s.Netfilter.Tables {
		for _, c := range t.Chains {
			if owner != "" && strings.HasPrefix(c.Name, owner) {
				continue
			}
			for _, r := range c.Rules {
				a.marks |= ruleMarkBits(r)
			}
		}
	}
	a.detect()
	return a
}

// markBitsUsed returns the bits a mark match or MARK target claims: its mask, or, for a whole
// 32-bit value (wg-quick's fwmark 51820, MARK --set-mark 1), the bits of the value, which is
// what another user must not produce by accident.
func markBitsUsed(value, mask uint32) uint32 {
	if mask == 0xffffffff {
		return value
	}
	return mask
}

// ruleMarkBits returns the fwmark and connmark bits an iptables rule matches or sets.
func ruleMarkBits(r iptables.Rule) uint32 {
	var m uint32
	maskOf := func(v string) uint32 {
		val, mask, err := iptables.ParseMark(v)
		if err != nil {
			return 0xffffffff // unknown: assume every bit
		}
		return markBitsUsed(val, mask)
	}
	for _, mt := range r.Matches {
		if mt.Name != "mark" && mt.Name != "connmark" {
			continue
		}
		if o, ok := mt.Option("mark"); ok && len(o.Values) == 1 {
			m |= maskOf(o.Values[0])
		}
	}
	if r.Target == "MARK" || r.Target == "CONNMARK" {
		for _, o := range r.TargetOpts {
			if len(o.Values) != 1 {
				continue
			}
			switch o.Name {
			case "set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark":
				m |= maskOf(o.Values[0])
			case "nfmask", "ctmask", "mask":
				if v, err := iptables.ParseU32(o.Values[0]); err == nil {
					m |= v
				}
			}
		}
	}
	return m
}

// detect reserves what well-known tools use. Marks are reserved whether or not the tool runs
// now: a mark bit cannot be moved once rules depend on it, and these tools are often started
// after roundtrip's rules are in place.
func (a *Allocator) detect() {
	s := a.state
	hasChain := func(prefix string) bool {
		for _, t := range s.Netfilter.Tables {
			for _, c := range t.Chains {
				if strings.HasPrefix(c.Name, prefix) {
					return true
				}
			}
		}
		return false
	}
	hasLink := func(prefix string) bool {
		return slices.ContainsFunc(s.Links, func(l model.Link) bool { return strings.HasPrefix(l.Name, prefix) })
	}
	hasRule := func(f func(model.Rule) bool) bool { return slices.ContainsFunc(s.Rules, f) }
	reserve := func(by, what string, seen bool) {
		a.reserved = append(a.reserved, Reservation{By: by, What: what, Seen: seen})
	}

	// Tailscale (net/netmon, wgengine/router): rules 5210-5270, table 52, marks in 0xff0000.
	ts := hasLink("tailscale") || a.tables[52] || hasRule(func(r model.Rule) bool { return r.Priority >= 5200 && r.Priority < 5300 }) || hasChain("ts-")
	a.marks |= 0xff0000
	a.tables[52] = true
	for p := 5200; p < 5300; p++ {
		a.prios[p] = true
	}
	reserve("Tailscale", "fwmark bits 0xff0000, table 52, priorities 5200-5299", ts)

	// wg-quick: table and fwmark 51820 (0xca6c), rules just below main (32764-32765).
	wg := a.tables[51820] || hasRule(func(r model.Rule) bool { return r.Mark != nil && r.Mark.Value == 51820 })
	a.marks |= 0xffff
	a.tables[51820] = true
	a.prios[32764], a.prios[32765] = true, true
	reserve("wg-quick", "fwmark 0xca6c (bits 0xffff), table 51820, priorities 32764-32765", wg)

	// kube-proxy: 0x4000 masquerade and 0x8000 drop marks.
	a.marks |= 0xc000
	reserve("kube-proxy", "fwmark bits 0xc000", hasChain("KUBE-"))

	// mwan3 (OpenWrt): marks in mmx_mask 0x3f00, rules 1000-3999, a table per interface id.
	mw := hasChain("mwan3")
	a.marks |= 0x3f00
	for p := 1000; p < 4000; p++ {
		a.prios[p] = true
	}
	if mw {
		for t := 1; t <= 250; t++ {
			a.tables[t] = true
		}
	}
	reserve("mwan3", "fwmark bits 0x3f00, priorities 1000-3999 (and tables 1-250 when present)", mw)

	// Calico marks with 0xffff0000 by default; Cilium with 0x0f00 and 0xf000 nibbles.
	if hasChain("cali-") {
		a.marks |= 0xffff0000
		reserve("Calico", "fwmark bits 0xffff0000", true)
	}
	if hasChain("CILIUM_") {
		a.marks |= 0xff00
		reserve("Cilium", "fwmark bits 0xff00", true)
	}
	// Docker uses no marks, rules or tables of its own, but its chains sit in nat and filter:
	// roundtrip's jumps are inserted first and its NAT rules only match what it configured.
	if hasChain("DOCKER") || hasLink("docker0") {
		reserve("Docker", "iptables chains DOCKER*, bridge docker0", true)
	}
}

// Reserved lists what the allocator avoids, for display.
func (a *Allocator) Reserved() []Reservation { return slices.Clone(a.reserved) }

// Priority returns the priority for rule r: the priority of an existing rule that is r in
// everything but priority (and sits in roundtrip's range), or the lowest free priority in
// PriorityFirst-PriorityLast. The answer is taken, so the next call gets another.
func (a *Allocator) Priority(r model.Rule) (int, error) {
	for _, x := range a.state.Rules {
		if x.Priority < PriorityFirst || x.Priority > PriorityLast {
			continue
		}
		y := r
		y.Priority = x.Priority
		if sameRule(x, y) {
			a.prios[x.Priority] = true
			return x.Priority, nil
		}
	}
	for p := PriorityFirst; p <= PriorityLast; p++ {
		if !a.prios[p] {
			a.prios[p] = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free rule priority in %d-%d: remove unused rules (ip rule) first", PriorityFirst, PriorityLast)
}

// Table returns the id for a routing table named name: its id when rt_tables already names it,
// or the lowest id no rule, route or name uses.
func (a *Allocator) Table(name string) (int, error) {
	for id, n := range a.state.TableNames {
		if n == name {
			a.tables[id] = true
			return id, nil
		}
	}
	for _, r := range tableCandidates {
		for id := r[0]; id <= r[1]; id++ {
			if !a.tables[id] && id != model.TableDefault && id != model.TableMain && id != model.TableLocal {
				a.tables[id] = true
				return id, nil
			}
		}
	}
	return 0, fmt.Errorf("no free routing table id: remove unused tables first")
}

// MarkBits is a run of fwmark bits owned by one intent.
type MarkBits struct {
	Mask  uint32 `json:"mask"`
	Shift uint   `json:"shift"`
}

// Match returns the match for value v (0 < v < 2^bits) in these bits.
func (m MarkBits) Match(v uint32) model.MarkMatch {
	return model.MarkMatch{Value: (v << m.Shift) & m.Mask, Mask: m.Mask}
}

// Values returns how many distinct non-zero values the bits hold.
func (m MarkBits) Values() int { return 1<<bits.OnesCount32(m.Mask) - 1 }

// MarkBits returns n contiguous free fwmark bits, searched from bit 24 upward, then downward
// from bit 23: the top byte is what other tools leave alone most often.
func (a *Allocator) MarkBits(n int) (MarkBits, error) {
	if n < 1 || n > 16 {
		return MarkBits{}, fmt.Errorf("mark width %d: want 1-16 bits", n)
	}
	var order []uint
	for s := 24; s+n <= 32; s++ {
		order = append(order, uint(s))
	}
	for s := 24 - n; s >= 0; s-- {
		order = append(order, uint(s))
	}
	for _, s := range order {
		mask := uint32((uint64(1)<<n)-1) << s
		if a.marks&mask == 0 {
			a.marks |= mask
			return MarkBits{Mask: mask, Shift: s}, nil
		}
	}
	return MarkBits{}, fmt.Errorf("no %d free contiguous fwmark bits (in use: %#x)", n, a.marks)
}
