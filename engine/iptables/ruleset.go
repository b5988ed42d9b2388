// Package iptables models iptables tables, chains and rules as iptables-save prints them, parses
// that output and renders iptables-restore input.
package iptables

import (
	"fmt"
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
}

// Table is one iptables table (raw, mangle, nat, filter, security) of one family.
type Table struct {
	Family inet.Family `json:"family"`
	Name   string      `json:"name"`
	Chains []Chain     `json:"chains"`
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

// Table returns the table of that family and name, or nil.
func (n *Ruleset) Table(f inet.Family, name string) *Table {
	for i := range n.Tables {
		if n.Tables[i].Family == f && n.Tables[i].Name == name {
			return &n.Tables[i]
		}
	}
	return nil
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
