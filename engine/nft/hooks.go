package nft

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// How the kernel orders what runs on a hook (net/netfilter/core.c, nf_hook_entries_grow):
//
//   - Strictly by priority, lower first.
//   - At equal priority a new registration goes before the ones already there: the most
//     recently registered runs first. An nft base chain registers its hook when it is created
//     (or when its dormant table is woken); iptables-legacy tables when the table is first
//     used in the namespace; conntrack's hooks when the first rule needing conntrack arrives;
//     the NAT core's hook when the first nat chain arrives.
//   - nat-type chains do not sit on the hook at their own priority: they register with the NAT
//     core (nf_nat_register_fn), which has one hook at -100 (prerouting, output) or 100
//     (postrouting, input) and runs its nat chains in their priority order, stopping at the
//     first that sets up NAT. A nat chain at priority -150 therefore runs after a filter chain
//     at -120 (checked against the kernel in the oracle test).
//
// Netlink does not say when a hook was registered. Within one table, chain handles grow with
// creation, so the later chain runs first (defined, from handles); between tables, between
// nft and iptables-legacy, and against conntrack or the NAT core, the order at equal priority
// is not observable: those ties are reported as undefined, with the probable order.

// Slot kinds.
const (
	SlotChain     = "chain"           // an nft base chain (native or iptables-nft)
	SlotLegacy    = "iptables-legacy" // a built-in chain of an iptables-legacy table
	SlotNAT       = "nat"             // the NAT core, running the nat chains of NATChains
	SlotConntrack = "conntrack"       // conntrack's own hook (lookup at -200, confirm last)
	SlotDefrag    = "defrag"          // IPv4/IPv6 defragmentation (-400)
)

// Slot is one thing that runs on a hook.
type Slot struct {
	Kind     string `json:"kind"`
	Priority int32  `json:"priority"`
	// Chain slots: the table and chain; Origin is the table's ("" native, "iptables-nft").
	Table  *Table `json:"-"`
	Chain  *Chain `json:"-"`
	Origin string `json:"origin,omitempty"`
	// Legacy slots: the iptables-legacy table ("raw", "mangle", "nat", "filter", "security").
	Legacy string `json:"legacy,omitempty"`
	// Conntrack slots: "in" (lookup, -200) or "confirm" (last).
	Stage string `json:"stage,omitempty"`
	// NAT slots: the nat chains (nft and iptables-legacy) in the order the NAT core runs them.
	NATChains []Slot `json:"nat_chains,omitempty"`
	// NATTies are NATChains' own ties.
	NATTies []Tie `json:"nat_ties,omitempty"`
}

// Name describes the slot for findings ("inet filter forward", "iptables-legacy nat
// PREROUTING", "conntrack").
func (s *Slot) Name() string {
	switch s.Kind {
	case SlotChain:
		return fmt.Sprintf("%s %s %s", s.Table.Family, s.Table.Name, s.Chain.Name)
	case SlotLegacy:
		return "iptables-legacy " + s.Legacy
	case SlotNAT:
		return "the NAT core"
	case SlotConntrack:
		return "conntrack " + s.Stage
	}
	return s.Kind
}

// MarshalJSON-free accessors for callers that serialize orders: the chain's identity.
func (s *Slot) ChainRef() (Family, string, string) {
	if s.Table == nil || s.Chain == nil {
		return "", "", ""
	}
	return s.Table.Family, s.Table.Name, s.Chain.Name
}

// Tie is a run of slots of equal priority.
type Tie struct {
	Priority int32 `json:"priority"`
	// Slots index into the order's Slots (or NATChains), in the order given there.
	Slots []int `json:"slots"`
	// Defined says whether the kernel's order among them is known; Basis says how it was
	// determined or why it cannot be.
	Defined bool   `json:"defined"`
	Basis   string `json:"basis"`
}

// Order is what runs on one hook for one kind of packet, in the kernel's order.
type Order struct {
	// PF is the packet family the order is for: "ip" (IPv4 packets: ip and inet chains),
	// "ip6", "bridge", "arp", or "netdev" (the ingress/egress of Device).
	PF     Family `json:"pf"`
	Hook   Hook   `json:"hook"`
	Device string `json:"device,omitempty"`
	Slots  []Slot `json:"slots"`
	Ties   []Tie  `json:"ties,omitempty"`
}

// HookOptions add what is not in the nft ruleset.
type HookOptions struct {
	// Legacy lists the iptables-legacy tables present for this packet family ("raw",
	// "mangle", "nat", "filter", "security"): their built-in chains on the hook are slotted
	// at the fixed priorities of iptable_*.ko (issue 19).
	Legacy []string
	// Conntrack adds conntrack's hooks (present once any rule uses conntrack or NAT).
	Conntrack bool
	// Defrag adds the defragmentation hook (present with conntrack).
	Defrag bool
	// Device selects the interface for ingress/egress orders.
	Device string
}

// legacyPriorities are the iptables-legacy tables' hook priorities (NF_IP_PRI_*) and the
// hooks their built-in chains use.
var legacyPriorities = map[string]struct {
	prio  int32
	hooks []Hook
}{
	"raw":      {-300, []Hook{HookPrerouting, HookOutput}},
	"mangle":   {-150, []Hook{HookPrerouting, HookInput, HookForward, HookOutput, HookPostrouting}},
	"filter":   {0, []Hook{HookInput, HookForward, HookOutput}},
	"security": {50, []Hook{HookInput, HookForward, HookOutput}},
}

// natCorePriority is where the NAT core sits on each hook (NF_IP_PRI_NAT_DST/SRC).
func natCorePriority(h Hook) (int32, bool) {
	switch h {
	case HookPrerouting, HookOutput:
		return -100, true
	case HookPostrouting, HookInput:
		return 100, true
	}
	return 0, false
}

// HookOrder lists what runs on hook for packets of family pf, in the kernel's order, with the
// ties whose order the kernel does not define. Dormant tables are left out (their hooks are
// unregistered).
func HookOrder(rs *Ruleset, pf Family, hook Hook, opts HookOptions) *Order {
	o := &Order{PF: pf, Hook: hook, Device: opts.Device}
	var slots, nat []Slot
	for _, t := range rs.Tables {
		if slices.Contains(t.Flags, "dormant") || !tableOnPF(t.Family, pf, hook) {
			continue
		}
		for _, c := range t.Chains {
			if c.Hook != hook {
				continue
			}
			if (hook == HookIngress || hook == HookEgress) && opts.Device != "" && !slices.Contains(c.Devices, opts.Device) {
				continue
			}
			s := Slot{Kind: SlotChain, Priority: c.Priority, Table: t, Chain: c, Origin: t.Origin}
			if c.Type == TypeNAT {
				nat = append(nat, s)
			} else {
				slots = append(slots, s)
			}
		}
	}
	if pf == FamilyIP || pf == FamilyIP6 {
		for _, name := range opts.Legacy {
			if name == "nat" {
				if p, ok := natCorePriority(hook); ok {
					nat = append(nat, Slot{Kind: SlotLegacy, Priority: p, Legacy: name})
				}
				continue
			}
			lp, ok := legacyPriorities[name]
			if ok && slices.Contains(lp.hooks, hook) {
				slots = append(slots, Slot{Kind: SlotLegacy, Priority: lp.prio, Legacy: name})
			}
		}
		if opts.Conntrack {
			switch hook {
			case HookPrerouting, HookOutput:
				slots = append(slots, Slot{Kind: SlotConntrack, Priority: -200, Stage: "in"})
			case HookPostrouting, HookInput:
				slots = append(slots, Slot{Kind: SlotConntrack, Priority: math.MaxInt32, Stage: "confirm"})
			}
		}
		if opts.Defrag && (hook == HookPrerouting || hook == HookOutput) {
			slots = append(slots, Slot{Kind: SlotDefrag, Priority: -400})
		}
	}
	if len(nat) > 0 {
		if p, ok := natCorePriority(hook); ok {
			natTies := sortSlots(nat)
			slots = append(slots, Slot{Kind: SlotNAT, Priority: p, NATChains: nat, NATTies: natTies})
		}
	}
	o.Ties = sortSlots(slots)
	o.Slots = slots
	return o
}

// tableOnPF says whether a table's base chains on hook see packets of family pf: inet chains
// run for both IPv4 and IPv6 (and on a device's ingress).
func tableOnPF(tf, pf Family, hook Hook) bool {
	switch pf {
	case FamilyIP:
		return tf == FamilyIP || tf == FamilyInet
	case FamilyIP6:
		return tf == FamilyIP6 || tf == FamilyInet
	case FamilyNetdev:
		return tf == FamilyNetdev || (tf == FamilyInet && hook == HookIngress)
	}
	return tf == pf
}

// registrationRank estimates how recently a slot's hook was registered (higher: later): only
// meaningful between chains of the same table.
func registrationRank(s *Slot) (uint64, uint64) {
	if s.Kind != SlotChain {
		return 0, 0
	}
	return s.Table.Handle, s.Chain.Handle
}

// sortSlots sorts by priority, equal priorities most recently registered first as far as
// that can be known, and returns the ties.
func sortSlots(slots []Slot) []Tie {
	sort.SliceStable(slots, func(i, j int) bool {
		a, b := &slots[i], &slots[j]
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		// Probable order: nft chains before the kernel's and legacy hooks (rules are usually
		// loaded after boot-time modules), newer tables and chains first.
		ka, kb := kindRank(a.Kind), kindRank(b.Kind)
		if ka != kb {
			return ka < kb
		}
		ta, ca := registrationRank(a)
		tb, cb := registrationRank(b)
		if ta != tb {
			return ta > tb
		}
		return ca > cb
	})
	var ties []Tie
	for i := 0; i < len(slots); {
		j := i + 1
		for j < len(slots) && slots[j].Priority == slots[i].Priority {
			j++
		}
		if j-i > 1 {
			t := Tie{Priority: slots[i].Priority, Defined: true, Basis: "chains of one table: the later created (higher handle) runs first"}
			for k := i; k < j; k++ {
				t.Slots = append(t.Slots, k)
				if slots[k].Kind != SlotChain || slots[k].Table != slots[i].Table {
					t.Defined = false
				}
			}
			if !t.Defined {
				t.Basis = "the kernel runs the most recently registered first, and when each was registered is not visible; the order shown is only probable"
			}
			ties = append(ties, t)
		}
		i = j
	}
	return ties
}

func kindRank(k string) int {
	switch k {
	case SlotChain:
		return 0
	case SlotNAT:
		return 1
	case SlotLegacy:
		return 2
	}
	return 3
}
