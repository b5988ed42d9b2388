package nftrace

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// RuleText is a traced rule as the operator wrote it.
type RuleText struct {
	// Nft is the rule as `nft -a list chain` shows it, counters' numbers left out.
	Nft string
	// Iptables is the rule as `iptables -S` shows it, for a rule of an iptables-nft table.
	Iptables string
}

// String is the rule as the operator wrote it: iptables' text for an iptables-nft rule,
// else nft's.
func (r RuleText) String() string {
	if r.Iptables != "" {
		return r.Iptables
	}
	return r.Nft
}

// MarshalText writes String, for "rule":"..." in JSON.
func (r RuleText) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads String's text back: an iptables rule ("-A ...") or an nft one.
func (r *RuleText) UnmarshalText(b []byte) error {
	*r = RuleText{}
	if s := string(b); strings.HasPrefix(s, "-A ") {
		r.Iptables = s
	} else {
		r.Nft = s
	}
	return nil
}

type chainKey struct{ family, table, chain string }

// ruleTexts finds the text of rules by handle, from `nft -a list chain` (and `iptables-nft
// -S` for iptables' tables) run in the namespace once per chain, again when a rule is new.
type ruleTexts struct {
	ns     string
	mu     sync.Mutex
	chains map[chainKey]map[uint64]RuleText
}

func newRuleTexts(ns string) *ruleTexts {
	return &ruleTexts{ns: ns, chains: map[chainKey]map[uint64]RuleText{}}
}

// nftName is what the rule texts accept as a table or chain name: nft joins its arguments
// into one command line and parses it, so a name is passed only when it is a plain word.
var nftName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,255}$`)

func (r *ruleTexts) lookup(family, table, chain string, handle uint64) RuleText {
	if handle == 0 || !nftName.MatchString(table) || !nftName.MatchString(chain) {
		return RuleText{}
	}
	k := chainKey{family, table, chain}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.chains[k][handle]; ok {
		return t
	}
	rules := r.list(k)
	if _, ok := rules[handle]; !ok {
		// Not there even now (deleted already): remember that, so it is not listed again.
		rules[handle] = RuleText{}
	}
	r.chains[k] = rules
	return rules[handle]
}

// run runs a command in the namespace and returns its standard output.
func (r *ruleTexts) run(name string, args ...string) ([]byte, error) {
	if r.ns != "" {
		args = append([]string{"netns", "exec", r.ns, name}, args...)
		name = "ip"
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd.Output()
}

var (
	ruleHandle = regexp.MustCompile(`^(.*?)\s*# handle ([0-9]+)$`)
	counters   = regexp.MustCompile(`counter packets [0-9]+ bytes [0-9]+`)
	iptTables  = map[string]bool{"filter": true, "nat": true, "mangle": true, "raw": true, "security": true}
)

// list reads a chain's rules by handle.
func (r *ruleTexts) list(k chainKey) map[uint64]RuleText {
	out, err := r.run("nft", "-a", "list", "chain", k.family, k.table, k.chain)
	if err != nil {
		return map[uint64]RuleText{}
	}
	rules, order := parseNftChain(out)
	// An iptables-nft table: the same rules in the same order, as iptables shows them.
	if (k.family == "ip" || k.family == "ip6") && iptTables[k.table] {
		tool := "iptables-nft"
		if k.family == "ip6" {
			tool = "ip6tables-nft"
		}
		if out, err := r.run(tool, "-w", "-t", k.table, "-S", k.chain); err == nil {
			addIptables(rules, order, out)
		}
	}
	return rules
}

// parseNftChain reads the rules of `nft -a list chain` output by handle, and their order.
func parseNftChain(out []byte) (map[uint64]RuleText, []uint64) {
	rules := map[uint64]RuleText{}
	var order []uint64
	for _, line := range strings.Split(string(out), "\n") {
		m := ruleHandle.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil || strings.HasPrefix(m[1], "chain ") || strings.HasPrefix(m[1], "table ") {
			continue // the table's and the chain's own handles
		}
		h, err := strconv.ParseUint(m[2], 10, 64)
		if err != nil {
			continue
		}
		rules[h] = RuleText{Nft: counters.ReplaceAllString(m[1], "counter")}
		order = append(order, h)
	}
	return rules, order
}

// addIptables pairs `iptables -S CHAIN` output with the chain's rules in order; only when
// the counts agree, else a rule could be named by its neighbour's text.
func addIptables(rules map[uint64]RuleText, order []uint64, out []byte) {
	var lines []string
	for _, l := range bytes.Split(out, []byte("\n")) {
		if bytes.HasPrefix(l, []byte("-A ")) {
			lines = append(lines, string(l))
		}
	}
	if len(lines) != len(order) {
		return
	}
	for i, h := range order {
		t := rules[h]
		t.Iptables = lines[i]
		rules[h] = t
	}
}
