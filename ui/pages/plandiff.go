package pages

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"roundtrip/engine/model"
)

// ruleLine is an iptables rule in model.State.Lines syntax: the chain, its position, the
// rule.
var ruleLine = regexp.MustCompile(`^(ip6?tables -t \S+ -A \S+) \[(\d+)\] (.*)$`)

// lcsLimit bounds the table of the longest-common-subsequence diff of one chain (old rules ×
// new rules); past it a chain is compared as a bag of rules.
const lcsLimit = 4 << 20

// planDiff describes how b differs from a for an operator reading a plan: like model.Diff,
// one "-" or "+" line per item, except that the rules of a chain are compared by their text
// in order (a longest common subsequence), so that a rule inserted at the top of a chain shows
// as one "+" and not as every rule below it deleted and added one place lower.
func planDiff(a, b *model.State) []string {
	split := func(lines []string) ([]string, map[string][]string) {
		var other []string
		chains := map[string][]string{}
		pos := map[string][]int{}
		for _, l := range lines {
			m := ruleLine.FindStringSubmatch(l)
			if m == nil {
				other = append(other, l)
				continue
			}
			n, _ := strconv.Atoi(m[2])
			chains[m[1]] = append(chains[m[1]], m[3])
			pos[m[1]] = append(pos[m[1]], n)
		}
		// Lines sorts "[10]" before "[2]": put each chain back in rule order.
		for k, rules := range chains {
			idx := make([]int, len(rules))
			for i := range idx {
				idx[i] = i
			}
			slices.SortFunc(idx, func(x, y int) int { return pos[k][x] - pos[k][y] })
			sorted := make([]string, len(rules))
			for i, j := range idx {
				sorted[i] = rules[j]
			}
			chains[k] = sorted
		}
		return other, chains
	}
	ao, ac := split(a.Lines())
	bo, bc := split(b.Lines())

	type entry struct {
		key  string
		seq  int
		text string
	}
	var out []entry
	count := map[string]int{}
	for _, l := range ao {
		count[l]++
	}
	for _, l := range bo {
		count[l]--
	}
	for l, n := range count {
		for range max(n, -n) {
			sign := "-"
			if n < 0 {
				sign = "+"
			}
			out = append(out, entry{key: l, text: sign + " " + l})
		}
	}
	keys := map[string]bool{}
	for k := range ac {
		keys[k] = true
	}
	for k := range bc {
		keys[k] = true
	}
	for k := range keys {
		for i, op := range diffRules(ac[k], bc[k]) {
			out = append(out, entry{key: k, seq: i, text: fmt.Sprintf("%s %s [%d] %s", op.sign, k, op.pos, op.rule)})
		}
	}
	slices.SortFunc(out, func(x, y entry) int {
		if c := strings.Compare(x.key, y.key); c != 0 {
			return c
		}
		if x.seq != y.seq {
			return x.seq - y.seq
		}
		return strings.Compare(x.text, y.text)
	})
	lines := make([]string, len(out))
	for i, e := range out {
		lines[i] = e.text
	}
	return lines
}

// ruleOp is one changed rule of a chain: deleted at its old position or added at its new one.
type ruleOp struct {
	sign string
	pos  int
	rule string
}

// diffRules compares the rules of one chain before and after by their text, in order.
func diffRules(a, b []string) []ruleOp {
	var ops []ruleOp
	if len(a)*len(b) > lcsLimit {
		// Too big for the table: a bag of rules, which still ignores positions that shifted.
		n := map[string]int{}
		for _, r := range a {
			n[r]++
		}
		for _, r := range b {
			n[r]--
		}
		for i, r := range a {
			if n[r] > 0 {
				n[r]--
				ops = append(ops, ruleOp{"-", i + 1, r})
			}
		}
		for i, r := range b {
			if n[r] < 0 {
				n[r]++
				ops = append(ops, ruleOp{"+", i + 1, r})
			}
		}
		return ops
	}
	// l[i][j] is the length of the longest common subsequence of a[i:] and b[j:].
	l := make([][]int, len(a)+1)
	for i := range l {
		l[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				l[i][j] = l[i+1][j+1] + 1
			} else {
				l[i][j] = max(l[i+1][j], l[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || l[i][j+1] >= l[i+1][j]):
			ops = append(ops, ruleOp{"+", j + 1, b[j]})
			j++
		default:
			ops = append(ops, ruleOp{"-", i + 1, a[i]})
			i++
		}
	}
	return ops
}
