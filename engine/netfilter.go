package engine

// Netfilter is the packet-filtering configuration as iptables-save and ip6tables-save show it,
// plus what cannot be modelled: native nftables tables that are not iptables-nft's own.
type Netfilter struct {
	// Backend is "legacy" or "nf_tables" (from `iptables -V`), or "" when iptables is missing.
	Backend string    `json:"backend,omitempty"`
	Tables  []NFTable `json:"tables,omitempty"`
	// Foreign lists native nftables tables ("inet fw4", "ip nat") that iptables-save does not
	// show; they are reported as present but not modelled, so a trace can say it may be wrong.
	Foreign []string `json:"foreign,omitempty"`
	// Unavailable says why netfilter could not be read (iptables tools missing, ...).
	Unavailable string `json:"unavailable,omitempty"`
}

// NFTable is one iptables table (raw, mangle, nat, filter, security) of one family.
type NFTable struct {
	Family Family    `json:"family"`
	Name   string    `json:"name"`
	Chains []NFChain `json:"chains"`
}

// NFChain is a built-in or user chain with its rules in order.
type NFChain struct {
	Name    string   `json:"name"`
	Policy  string   `json:"policy,omitempty"` // built-in chains only: ACCEPT or DROP
	Packets uint64   `json:"packets,omitempty"`
	Bytes   uint64   `json:"bytes,omitempty"`
	Rules   []NFRule `json:"rules,omitempty"`
}

// NFRule is one rule, parsed from an iptables-save "-A CHAIN ..." line. Spec keeps the exact
// text after the chain name so that a rule can always be shown and re-applied as it was, even
// when a match is not modelled.
type NFRule struct {
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
	Fragment *bool     `json:"fragment,omitempty"`
	Matches  []NFMatch `json:"matches,omitempty"`
	// Target is the -j target (ACCEPT, DNAT, a user chain, ...) or "" for a rule that only
	// counts; Goto is true for -g.
	Target     string     `json:"target,omitempty"`
	Goto       bool       `json:"goto,omitempty"`
	TargetOpts []NFOption `json:"target_opts,omitempty"`
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

// NFMatch is one -m module with its options, in order (`-m conntrack --ctstate NEW`).
type NFMatch struct {
	Name    string     `json:"name"`
	Options []NFOption `json:"options,omitempty"`
}

// NFOption is one --option of a match or target, with its values and negation.
type NFOption struct {
	Name   string   `json:"name"` // without the leading dashes
	Not    bool     `json:"not,omitempty"`
	Values []string `json:"values,omitempty"`
}

// Option returns the first option of the match with that name.
func (m NFMatch) Option(name string) (NFOption, bool) {
	for _, o := range m.Options {
		if o.Name == name {
			return o, true
		}
	}
	return NFOption{}, false
}

// TargetOption returns the first target option with that name.
func (r NFRule) TargetOption(name string) (NFOption, bool) {
	for _, o := range r.TargetOpts {
		if o.Name == name {
			return o, true
		}
	}
	return NFOption{}, false
}

// Table returns the table of that family and name, or nil.
func (n *Netfilter) Table(f Family, name string) *NFTable {
	for i := range n.Tables {
		if n.Tables[i].Family == f && n.Tables[i].Name == name {
			return &n.Tables[i]
		}
	}
	return nil
}

// Chain returns the chain with that name, or nil.
func (t *NFTable) Chain(name string) *NFChain {
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
