package plan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/nft"
	"roundtrip/engine/quote"
)

// A plan for a host whose firewall is native nftables carries its netfilter rules as nft
// changes (KindNFT) instead of iptables chains: each is one of roundtrip's chains, written as
// iptables rules (so that it is checked exactly as a chain change is) and rendered at apply
// time into roundtrip's own table, `table inet roundtrip`, beside the host's tables. A chain
// becomes a regular nft chain of its name, and each built-in chain it was hooked from a base
// chain of its own (hook.HOOK.NAME) at iptables' priority that jumps to it for IPv4, so that
// chains of several plans live side by side and one plan's changes touch only its chains. All
// nft changes of a plan are one `nft -f` transaction; its undo is the table as `nft list
// table` printed it before (or its absence).

// NFTFamily and NFTTable name roundtrip's own nftables table.
const (
	NFTFamily = "inet"
	NFTTable  = "roundtrip"
)

// nftHookPrefix starts the names of the base chains that hook roundtrip's chains.
const nftHookPrefix = "hook."

// nftFingerprintPrefix starts the comment of each of roundtrip's nft chains: a hash of the
// chain as planned, by which a plan tells that the chain is in effect (nft prints some
// expressions differently from how they are written, so the rules' text cannot be compared).
const nftFingerprintPrefix = "roundtrip "

// nftBuiltins are the iptables built-in chains a base chain of roundtrip's table may stand
// for (whichever table: a chain deleted goes with the base chains of all of them).
var nftBuiltins = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// NFTHookChain is the name of the base chain that hooks chain name from an iptables built-in
// chain (PREROUTING...).
func NFTHookChain(builtin, name string) string {
	return nftHookPrefix + strings.ToLower(builtin) + "." + name
}

// checkNFT checks an nft change on its own: a chain change as checkChain does, IPv4 only (the
// IPv6 chains of a plan stay in ip6tables), no iptables backend, and rules that translate.
func checkNFT(c ChainSpec, op Op) error {
	if c.Family != inet.V4 {
		return fmt.Errorf("nft chain %s: only IPv4 chains go into table %s %s", c.Name, NFTFamily, NFTTable)
	}
	if c.Backend != "" {
		return fmt.Errorf("nft chain %s: field backend %q: an nft chain has no iptables backend", c.Name, c.Backend)
	}
	if err := checkChain(c, op); err != nil {
		return err
	}
	if op == OpDelete {
		return nil
	}
	if _, err := nftChainRules(c); err != nil {
		return err
	}
	return nil
}

// nftChainRules renders the rules of a chain for the inet table (NAT statements name their
// family there: `dnat ip to`).
func nftChainRules(c ChainSpec) ([]string, error) {
	out := make([]string, 0, len(c.Rules))
	for i, spec := range c.Rules {
		r, err := iptables.ParseRule(c.Family, spec)
		if err != nil {
			return nil, fmt.Errorf("nft chain %s rule %d: %w", c.Name, i+1, err)
		}
		line, err := nftRule(c.Family, r)
		if err != nil {
			return nil, fmt.Errorf("nft chain %s rule %d %s: %w", c.Name, i+1, quote.Term(spec), err)
		}
		// In an inet table a NAT statement must say which family its address is. The verdict
		// is the first "dnat to"/"snat to" of the line: the matches before it hold addresses,
		// ports and interface names (no spaces), the comment comes after it.
		if verb := strings.ToLower(r.Target); verb == "dnat" || verb == "snat" {
			line = strings.Replace(line, " "+verb+" to ", " "+verb+" ip to ", 1)
		}
		out = append(out, line)
	}
	return out, nil
}

// nftFingerprint is the comment of a planned chain: a hash of its normalized rules and hooks.
func nftFingerprint(c ChainSpec) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", c.Table, c.Name)
	for _, r := range canonicalRules(c.Family, c.Rules) {
		fmt.Fprintf(h, "r %s\x00", r)
	}
	var hooks []string
	for _, j := range c.Jumps {
		hooks = append(hooks, j.Chain)
	}
	slices.Sort(hooks)
	for _, j := range hooks {
		fmt.Fprintf(h, "h %s\x00", j)
	}
	return nftFingerprintPrefix + hex.EncodeToString(h.Sum(nil)[:12])
}

// nftTableOf returns roundtrip's table in a state's nft ruleset, or nil.
func nftTableOf(s *model.State) *nft.Table {
	if s == nil || s.Nftables == nil {
		return nil
	}
	for _, t := range s.Nftables.Tables {
		if string(t.Family) == NFTFamily && t.Name == NFTTable {
			return t
		}
	}
	return nil
}

func nftChainOf(t *nft.Table, name string) *nft.Chain {
	if t == nil {
		return nil
	}
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// nftInEffect reports whether roundtrip's table in s holds chain c as planned (its
// fingerprint, as many rules, and a base chain for each of its hooks and no other), or, for a
// deletion, holds neither it nor its base chains.
func nftInEffect(c Change, s *model.State) bool {
	t := nftTableOf(s)
	spec := c.NFT
	ch := nftChainOf(t, spec.Name)
	hooks := map[string]bool{}
	if t != nil {
		for _, b := range t.Chains {
			for _, builtin := range nftBuiltins {
				if b.Name == NFTHookChain(builtin, spec.Name) {
					hooks[builtin] = true
				}
			}
		}
	}
	if c.Op == OpDelete {
		return ch == nil && len(hooks) == 0
	}
	if ch == nil || ch.Comment != nftFingerprint(*spec) || len(ch.Rules) != len(spec.Rules) || len(hooks) != len(spec.Jumps) {
		return false
	}
	for _, j := range spec.Jumps {
		if !hooks[j.Chain] {
			return false
		}
	}
	return true
}

// NFTScript renders the nft changes of a plan as one `nft -f` transaction on roundtrip's own
// table: the table is created if missing; each chain set is created if missing, flushed and
// filled, with one base chain per hook that jumps to it for IPv4 (base chains of hooks it no
// longer has are deleted); each chain deleted goes with its base chains. Creating before
// deleting makes every statement succeed whether or not its object exists, so the script is
// idempotent. Every name is checked and every value quoted (nftRule).
func NFTScript(changes []Change) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("#!/usr/sbin/nft -f\n# roundtrip's chains in its own table; rendered by roundtrip apply\n")
	fmt.Fprintf(&b, "table %s %s {}\n", NFTFamily, NFTTable)
	tbl := NFTFamily + " " + NFTTable
	for i, c := range changes {
		if c.Kind != KindNFT || c.NFT == nil {
			return nil, fmt.Errorf("%w: change %d is not an nft chain change", ErrBadPlan, i+1)
		}
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("%w: change %d: %w", ErrBadPlan, i+1, err)
		}
		spec := *c.normalized().NFT
		name, err := quote.NFTIdent(spec.Name)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "# %s\n", quote.OneLine(c.Summary()))
		// The chain and its base chains go, then come back as planned: a chain's comment
		// (its fingerprint) is set only when it is created, and base chains go first since a
		// chain that is jumped to cannot be deleted.
		for _, builtin := range nftBuiltins {
			hc, err := quote.NFTIdent(NFTHookChain(builtin, spec.Name))
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&b, "add chain %s %s\ndelete chain %s %s\n", tbl, hc, tbl, hc)
		}
		fmt.Fprintf(&b, "add chain %s %s\ndelete chain %s %s\n", tbl, name, tbl, name)
		if c.Op == OpDelete {
			continue
		}
		rules, err := nftChainRules(spec)
		if err != nil {
			return nil, err
		}
		fp, err := quote.NFTString(nftFingerprint(spec))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "table %s {\n\tchain %s {\n\t\tcomment %s\n", tbl, name, fp)
		for _, r := range rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n}\n")
		wanted := map[string]bool{}
		for _, j := range spec.Jumps {
			wanted[j.Chain] = true
		}
		for _, builtin := range hookable[spec.Table] {
			if !wanted[builtin] {
				continue
			}
			hc, err := quote.NFTIdent(NFTHookChain(builtin, spec.Name))
			if err != nil {
				return nil, err
			}
			typ, prio := nftHook(spec.Table, builtin)
			fmt.Fprintf(&b, "add chain %s %s { type %s hook %s priority %s; policy accept; }\n", tbl, hc, typ, strings.ToLower(builtin), prio)
			fmt.Fprintf(&b, "add rule %s %s meta nfproto ipv4 jump %s\n", tbl, hc, name)
		}
	}
	return b.Bytes(), nil
}

// NFTRestoreScript renders the undo of an nft transaction: roundtrip's table as it was, from
// its listing before (CheckNFTListing), or no table when it did not exist.
func NFTRestoreScript(existed bool, listing string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "table %s %s {}\ndelete table %s %s\n", NFTFamily, NFTTable, NFTFamily, NFTTable)
	if existed {
		if err := CheckNFTListing(listing); err != nil {
			return nil, err
		}
		b.WriteString(listing)
		if !strings.HasSuffix(listing, "\n") {
			b.WriteString("\n")
		}
	}
	return b.Bytes(), nil
}

// MaxNFTListing bounds the listing of roundtrip's table kept as an undo.
const MaxNFTListing = 16 << 20

// CheckNFTListing checks the listing of roundtrip's table that an undo loads with `nft -f`
// (read from a journal, so it is not trusted blindly): printable text of lines, one block
// `table inet roundtrip { ... }` and nothing outside it, balanced braces outside strings, no
// nft variable ($), and no include or define, which could make nft read more than the table.
func CheckNFTListing(s string) error {
	if len(s) > MaxNFTListing {
		return fmt.Errorf("the listing of table %s %s is %d bytes: at most %d", NFTFamily, NFTTable, len(s), MaxNFTListing)
	}
	if !utf8.ValidString(s) || quote.HasControl(strings.NewReplacer("\n", "", "\t", "").Replace(s)) {
		return errors.New("the listing of roundtrip's nft table holds control characters or invalid UTF-8")
	}
	head := fmt.Sprintf("table %s %s {", NFTFamily, NFTTable)
	depth, blocks := 0, 0
	for n, line := range strings.Split(s, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			continue
		}
		if depth == 0 {
			if trimmed != head || blocks > 0 {
				return fmt.Errorf("line %d of the listing of roundtrip's nft table: %q is not the table's head", n+1, quote.Term(trimmed))
			}
			blocks++
		}
		first, _, _ := strings.Cut(trimmed, " ")
		switch first {
		case "include", "define", "redefine", "undefine":
			return fmt.Errorf("line %d of the listing of roundtrip's nft table: %s is not part of a table", n+1, first)
		}
		inString := false
		for i := 0; i < len(trimmed); i++ {
			switch ch := trimmed[i]; {
			case ch == '"':
				inString = !inString
			case inString:
			case ch == '{':
				depth++
			case ch == '}':
				depth--
				if depth < 0 {
					return fmt.Errorf("line %d of the listing of roundtrip's nft table: unbalanced }", n+1)
				}
			case ch == '$':
				return fmt.Errorf("line %d of the listing of roundtrip's nft table: an nft variable ($)", n+1)
			case ch == '#':
				i = len(trimmed) // a comment runs to the end of the line
			}
		}
		if inString {
			return fmt.Errorf("line %d of the listing of roundtrip's nft table: a string is not closed", n+1)
		}
	}
	if blocks != 1 || depth != 0 {
		return fmt.Errorf("the listing of roundtrip's nft table is not one table block")
	}
	return nil
}

// NFTTranslates reports whether a chain's rules can go into roundtrip's own nft table: nil,
// or the first rule that cannot (CONNMARK with masks, say, has no nft form roundtrip writes).
// Wizards ask it before they choose nft on their own.
func NFTTranslates(c ChainSpec) error {
	_, err := nftChainRules(c)
	return err
}
