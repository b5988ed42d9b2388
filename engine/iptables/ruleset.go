// Package iptables models iptables tables, chains and rules as iptables-save prints them, parses
// that output and renders iptables-restore input.
package iptables

import (
	"fmt"
	"slices"
	"strings"

	"roundtrip/engine/inet"
	"roundtrip/engine/quote"
)

// Netfilter is the packet-filtering configuration as iptables-save and ip6tables-save show it,
// plus what cannot be modelled: native nftables tables that are not iptables-nft's own.
type Ruleset struct {
	// Backend is "legacy" or "nf_tables" (from `iptables -V`), or "" when iptables is missing.
	Backend string  `json:"backend,omitempty"`
	Tables  []Table `json:"tables,omitempty"`
	// Foreign lists native nftables tables ("inet fw4", "ip nat") that iptables-save does not
	// show; they are reported as present but not modelled, so a trace can say it may be wrong.
	Foreign []string `json:"foreign,omitempty"`
	// Unavailable says why netfilter could not be read (iptables tools missing, ...).
	Unavailable string `json:"unavailable,omitempty"`
	// Hidden says what is known to be loaded but could not be read, such as iptables-legacy
	// tables that iptables-nft-save warns about on a host without iptables-legacy-save: a
	// trace through them may be wrong, and says so.
	Hidden []string `json:"hidden,omitempty"`
	// WriteBackend is the backend a plan writes roundtrip's chains into when the user chose
	// one (--iptables-backend); "" lets the plan follow the host's own rules.
	WriteBackend string `json:"write_backend,omitempty"`
}

// PlanBackend is the backend a plan writes its chains of family f into (in tables, named
// chains): the one the user chose; else the one that already holds one of those chains (a
// chain roundtrip made before stays where it is); else the only backend whose tables of those
// names hold rules (a port forward goes where the host's NAT rules are); else the only backend
// that holds rules at all; else, with rules in both or in none, the iptables command's. It is
// "" when the tables were read from one backend only (an old userland), where plain iptables
// is the only way in.
func (n *Ruleset) PlanBackend(f inet.Family, tables, chains []string) string {
	if n.WriteBackend != "" {
		return n.WriteBackend
	}
	labelled := false
	holding := map[string]bool{}
	for i := range n.Tables {
		t := &n.Tables[i]
		labelled = labelled || t.Backend != ""
		if t.Backend == "" || t.Family != f || !slices.Contains(tables, t.Name) {
			continue
		}
		for _, c := range chains {
			if t.Chain(c) != nil {
				return t.Backend
			}
		}
		if t.Active() {
			holding[t.Backend] = true
		}
	}
	if !labelled {
		return ""
	}
	if len(holding) == 1 {
		for b := range holding {
			return b
		}
	}
	if b := n.Backends(); len(b) == 1 && b[0] != "" && len(holding) == 0 {
		return b[0]
	}
	return n.Backend
}

// The two iptables backends: x_tables ("legacy") and nf_tables. Both can hold rules at once,
// and the kernel runs both.
const (
	BackendLegacy = "legacy"
	BackendNFT    = "nf_tables"
)

// Table is one iptables table (raw, mangle, nat, filter, security) of one family.
type Table struct {
	Family inet.Family `json:"family"`
	Name   string      `json:"name"`
	// Backend is the backend the table lives in (BackendLegacy or BackendNFT); "" in a snapshot
	// from before both were read means the Ruleset's Backend.
	Backend string  `json:"backend,omitempty"`
	Chains  []Chain `json:"chains"`
}

// Chain is a built-in or user chain with its rules in order.
type Chain struct {
	Name    string `json:"name"`
	Policy  string `json:"policy,omitempty"` // built-in chains only: ACCEPT or DROP
	Packets uint64 `json:"packets,omitempty"`
	Bytes   uint64 `json:"bytes,omitempty"`
	Rules   []Rule `json:"rules,omitempty"`
}

// Rule is one rule, parsed from an iptables-save "-A CHAIN ..." line. Spec keeps the exact
// text after the chain name so that a rule can always be shown and re-applied as it was, even
// when a match is not modelled.
type Rule struct {
	Spec    string   `json:"spec"`
	Packets uint64   `json:"packets,omitempty"`
	Bytes   uint64   `json:"bytes,omitempty"`
	Src     *NegAddr `json:"src,omitempty"`
	Dst     *NegAddr `json:"dst,omitempty"`
	In      *NegStr  `json:"in,omitempty"`
	Out     *NegStr  `json:"out,omitempty"`
	Proto   *NegStr  `json:"proto,omitempty"`
	// Fragment is -f (true: second and later IPv4 fragments only) or ! -f (false: unfragmented
	// packets and first fragments); nil when the rule does not look at fragments.
	Fragment *bool   `json:"fragment,omitempty"`
	Matches  []Match `json:"matches,omitempty"`
	// Target is the -j target (ACCEPT, DNAT, a user chain, ...) or "" for a rule that only
	// counts; Goto is true for -g.
	Target     string   `json:"target,omitempty"`
	Goto       bool     `json:"goto,omitempty"`
	TargetOpts []Option `json:"target_opts,omitempty"`
}

// NegAddr is an address match that may be negated (`! -s 10.0.0.0/8`).
type NegAddr struct {
	Not    bool   `json:"not,omitempty"`
	Prefix string `json:"prefix"` // kept as text: iptables accepts hostnames and masks
}

// NegStr is a string match that may be negated (`! -i eth0`, `-p tcp`).
type NegStr struct {
	Not   bool   `json:"not,omitempty"`
	Value string `json:"value"`
}

// Match is one -m module with its options, in order (`-m conntrack --ctstate NEW`).
type Match struct {
	Name    string   `json:"name"`
	Options []Option `json:"options,omitempty"`
}

// Option is one --option of a match or target, with its values and negation.
type Option struct {
	Name   string   `json:"name"` // without the leading dashes
	Not    bool     `json:"not,omitempty"`
	Values []string `json:"values,omitempty"`
}

// Option returns the first option of the match with that name.
func (m Match) Option(name string) (Option, bool) {
	for _, o := range m.Options {
		if o.Name == name {
			return o, true
		}
	}
	return Option{}, false
}

// TargetOption returns the first target option with that name.
func (r Rule) TargetOption(name string) (Option, bool) {
	for _, o := range r.TargetOpts {
		if o.Name == name {
			return o, true
		}
	}
	return Option{}, false
}

// Table returns the table of that family and name, or nil. With both backends loaded it is
// the first one read; TableIn picks the backend.
func (n *Ruleset) Table(f inet.Family, name string) *Table {
	for i := range n.Tables {
		if n.Tables[i].Family == f && n.Tables[i].Name == name {
			return &n.Tables[i]
		}
	}
	return nil
}

// TableIn returns the table of that family and name in a backend ("" is the one the iptables
// command uses), or nil.
func (n *Ruleset) TableIn(backend string, f inet.Family, name string) *Table {
	if backend == "" {
		backend = n.Backend
	}
	for i := range n.Tables {
		if n.Tables[i].Family == f && n.Tables[i].Name == name && n.TableBackend(&n.Tables[i]) == backend {
			return &n.Tables[i]
		}
	}
	if n.Backend == "" && backend == "" {
		return n.Table(f, name)
	}
	return nil
}

// TablesNamed returns the tables of that family and name, one per backend that holds one.
func (n *Ruleset) TablesNamed(f inet.Family, name string) []*Table {
	var out []*Table
	for i := range n.Tables {
		if n.Tables[i].Family == f && n.Tables[i].Name == name {
			out = append(out, &n.Tables[i])
		}
	}
	return out
}

// FindChain returns the chain of that family, table and name in whichever backend holds it
// (the first one read when both do), or nil.
func (n *Ruleset) FindChain(f inet.Family, table, chain string) *Chain {
	for _, t := range n.TablesNamed(f, table) {
		if c := t.Chain(chain); c != nil {
			return c
		}
	}
	return nil
}

// TableBackend is the backend a table lives in: its own label, or for a table of an older
// snapshot the backend of the iptables command.
func (n *Ruleset) TableBackend(t *Table) string {
	if t.Backend != "" {
		return t.Backend
	}
	return n.Backend
}

// Backends lists the backends that hold rules or a policy other than ACCEPT (what decides
// anything), legacy first; a table that merely exists with empty accepting chains does not
// count.
func (n *Ruleset) Backends() []string {
	has := map[string]bool{}
	for i := range n.Tables {
		if t := &n.Tables[i]; t.Active() {
			has[n.TableBackend(t)] = true
		}
	}
	var out []string
	for _, b := range []string{BackendLegacy, BackendNFT, ""} {
		if has[b] {
			out = append(out, b)
		}
	}
	return out
}

// Mixed reports whether rules live in both backends.
func (n *Ruleset) Mixed() bool {
	b := n.Backends()
	return len(b) > 1
}

// Active reports whether the table has a rule or a policy other than ACCEPT.
func (t *Table) Active() bool {
	for _, c := range t.Chains {
		if len(c.Rules) > 0 || c.Policy != "" && c.Policy != "ACCEPT" {
			return true
		}
	}
	return false
}

// TableCommand is the command that reaches a table: "iptables" (or "ip6tables") when that is
// the table's backend and only one backend holds rules, otherwise the backend's own
// ("iptables-legacy", "ip6tables-nft"), so a person can always find the rule with it.
func (n *Ruleset) TableCommand(t *Table) string {
	b := n.TableBackend(t)
	if b == "" || b == n.Backend && !n.Mixed() {
		return Command(t.Family)
	}
	return BackendCommand(t.Family, b)
}

// BackendCommand is the backend's own iptables command: iptables-legacy, ip6tables-nft, ...;
// plain iptables for "".
func BackendCommand(f inet.Family, backend string) string {
	switch backend {
	case BackendLegacy:
		return Command(f) + "-legacy"
	case BackendNFT:
		return Command(f) + "-nft"
	}
	return Command(f)
}

// BackendName is how a backend is named to people: "legacy" or "nft".
func BackendName(backend string) string {
	switch backend {
	case BackendNFT:
		return "nft"
	case "":
		return "?"
	}
	return backend
}

// Chain returns the chain with that name, or nil.
func (t *Table) Chain(name string) *Chain {
	if t == nil {
		return nil
	}
	for i := range t.Chains {
		if t.Chains[i].Name == name {
			return &t.Chains[i]
		}
	}
	return nil
}

// RuleCommand renders a rule as the command that adds it, so it can be found in iptables-save.
func RuleCommand(f inet.Family, table, chain string, r *Rule) string {
	return fmt.Sprintf("%s -t %s -A %s %s", Command(f), table, chain, r.Spec)
}

// Command is the iptables command of a family: iptables or ip6tables.
func Command(f inet.Family) string {
	if f == inet.V6 {
		return "ip6tables"
	}
	return "iptables"
}

// KnownTables are the tables of iptables.
var KnownTables = map[string]bool{"raw": true, "mangle": true, "nat": true, "filter": true, "security": true}

// CheckChainName checks a chain name as iptables takes it: 1-28 bytes (XT_EXTENSION_MAXNAMELEN
// less the NUL), no white space or control characters, not starting with '-' or '!'.
func CheckChainName(name string) error {
	if name == "" || len(name) > 28 {
		return fmt.Errorf("chain name %q must be 1-28 bytes", name)
	}
	if name[0] == '-' || name[0] == '!' || strings.ContainsAny(name, " \"") || quote.HasControl(name) {
		return fmt.Errorf("chain name %q is not one iptables accepts (white space, quotes, control characters, or a leading '-' or '!')", name)
	}
	return nil
}
