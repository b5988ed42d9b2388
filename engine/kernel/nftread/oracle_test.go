package nftread

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/nft"
)

// requireNft skips unless the nft and the other tools the oracle needs are installed.
func requireNft(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range append([]string{"nft"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("privileged test: needs %s", tool)
		}
	}
}

type ruleKey struct {
	family, table, chain string
	handle               uint64
}

func (k ruleKey) String() string {
	return fmt.Sprintf("%s %s %s handle %d", k.family, k.table, k.chain, k.handle)
}

var (
	tableLine = regexp.MustCompile(`^table (\S+) (\S+) \{ # handle \d+$`)
	chainLine = regexp.MustCompile(`^\tchain (\S+) \{ # handle \d+$`)
	ruleLine  = regexp.MustCompile(`^\t\t(.*) # handle (\d+)$`)
)

// nftTexts parses `nft -a list ruleset`: each rule's text by table, chain and handle.
func nftTexts(t *testing.T, out string) map[ruleKey]string {
	t.Helper()
	texts := map[ruleKey]string{}
	var family, table, chain string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := sc.Text()
		if m := tableLine.FindStringSubmatch(line); m != nil {
			family, table, chain = m[1], unquote(m[2]), ""
			continue
		}
		if m := chainLine.FindStringSubmatch(line); m != nil {
			chain = unquote(m[1])
			continue
		}
		if strings.HasPrefix(line, "\t}") {
			chain = ""
			continue
		}
		if chain == "" {
			continue
		}
		if t := strings.TrimPrefix(line, "\t\t"); strings.HasPrefix(t, "type ") {
			texts[ruleKey{family, table, chain, 0}] = t
			continue
		}
		if m := ruleLine.FindStringSubmatch(line); m != nil {
			h, _ := strconv.ParseUint(m[2], 10, 64)
			texts[ruleKey{family, table, chain, h}] = m[1]
		}
	}
	return texts
}

func unquote(s string) string {
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return s
}

// oracle reads the namespace's ruleset through the reader and through nft, and compares
// every table, chain, rule, set and element. It returns the ruleset read.
func oracle(t *testing.T, ns *lab.NS) *nft.Ruleset {
	t.Helper()
	rs, err := Read(context.Background(), kernel.Namespace{Name: ns.Name}, Options{})
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	if err := rs.Validate(); err != nil {
		t.Fatalf("the ruleset read does not validate: %v", err)
	}
	b, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	var back nft.Ruleset
	if err := json.Unmarshal(b, &back); err != nil || back.Validate() != nil {
		t.Fatalf("JSON round trip: %v / %v", err, back.Validate())
	}

	// Rule texts against `nft -a list ruleset`.
	want := nftTexts(t, ns.Run("nft", "-a", "list", "ruleset"))
	got := map[ruleKey]string{}
	origin := map[ruleKey]string{}
	render := nft.NewRenderer(rs.HostOrder)
	for _, tb := range rs.Tables {
		for _, c := range tb.Chains {
			if c.Base() {
				// handle 0: the chain's declaration line
				got[ruleKey{string(tb.Family), tb.Name, c.Name, 0}] = render.ChainHeader(tb, c)
			}
			for _, r := range c.Rules {
				k := ruleKey{string(tb.Family), tb.Name, c.Name, r.Handle}
				got[k] = r.Text
				origin[k] = tb.Origin
			}
		}
	}
	var keys []ruleKey
	for k := range want {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	mismatches := 0
	for _, k := range keys {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: nft lists the rule, the reader does not: %q", k, want[k])
			continue
		}
		if g != want[k] {
			if origin[k] != "" && strings.Contains(g, "xt ") {
				// nft prints iptables-nft's compat expressions translated by libxtables;
				// those are compared by structure only.
				t.Logf("%s: compat rule, text differs as expected:\n  reader %q\n  nft    %q", k, g, want[k])
				continue
			}
			mismatches++
			t.Errorf("%s text:\n  reader %q\n  nft    %q", k, g, want[k])
		}
	}
	if len(got) != len(want) {
		t.Errorf("the reader has %d rules, nft lists %d", len(got), len(want))
	}

	// Structure against `nft -j list ruleset`.
	j, err := ParseJSON([]byte(ns.Run("nft", "-j", "list", "ruleset")))
	if err != nil {
		t.Fatal(err)
	}
	compareJSON(t, rs, j)
	return rs
}

// compareJSON checks tables, chains, rules, sets and elements against nft -j.
func compareJSON(t *testing.T, rs *nft.Ruleset, j *JSONRuleset) {
	t.Helper()
	type jTable struct {
		Family string `json:"family"`
		Name   string `json:"name"`
		Handle uint64 `json:"handle"`
	}
	type jChain struct {
		Family string `json:"family"`
		Table  string `json:"table"`
		Name   string `json:"name"`
		Handle uint64 `json:"handle"`
		Type   string `json:"type"`
		Hook   string `json:"hook"`
		Prio   *int32 `json:"prio"`
		Policy string `json:"policy"`
		Dev    any    `json:"dev"`
	}
	type jSet struct {
		Family string            `json:"family"`
		Table  string            `json:"table"`
		Name   string            `json:"name"`
		Handle uint64            `json:"handle"`
		Type   any               `json:"type"`
		Map    any               `json:"map"`
		Flags  []string          `json:"flags"`
		Elem   []json.RawMessage `json:"elem"`
	}
	nTables, nChains, nSets := 0, 0, 0
	for _, o := range j.Objects {
		switch o.Kind {
		case "table":
			var x jTable
			must(t, json.Unmarshal(o.Raw, &x))
			nTables++
			tb := rs.Table(nft.Family(x.Family), x.Name)
			if tb == nil || tb.Handle != x.Handle {
				t.Errorf("table %s %s (handle %d): reader has %+v", x.Family, x.Name, x.Handle, tb)
			}
		case "chain":
			var x jChain
			must(t, json.Unmarshal(o.Raw, &x))
			nChains++
			tb := rs.Table(nft.Family(x.Family), x.Table)
			if tb == nil || tb.Chain(x.Name) == nil {
				t.Errorf("chain %s %s %s missing", x.Family, x.Table, x.Name)
				continue
			}
			c := tb.Chain(x.Name)
			wantPrio := int32(0)
			if x.Prio != nil {
				wantPrio = *x.Prio
			}
			var dev []string
			switch d := x.Dev.(type) {
			case string:
				dev = []string{d}
			case []any:
				for _, v := range d {
					dev = append(dev, fmt.Sprint(v))
				}
			}
			if c.Handle != x.Handle || string(c.Type) != x.Type || string(c.Hook) != x.Hook || c.Priority != wantPrio || c.Policy != x.Policy || x.Dev != nil && strings.Join(c.Devices, ",") != strings.Join(dev, ",") {
				t.Errorf("chain %s %s %s: reader {handle %d type %q hook %q prio %d policy %q dev %v}, nft %+v (dev %v)", x.Family, x.Table, x.Name,
					c.Handle, c.Type, c.Hook, c.Priority, c.Policy, c.Devices, x, dev)
			}
		case "set", "map":
			var x jSet
			must(t, json.Unmarshal(o.Raw, &x))
			nSets++
			tb := rs.Table(nft.Family(x.Family), x.Table)
			var s *nft.Set
			if tb != nil {
				s = tb.Set(x.Name)
			}
			if s == nil {
				t.Errorf("%s %s %s %s missing", o.Kind, x.Family, x.Table, x.Name)
				continue
			}
			if (o.Kind == "map") != (s.Has("map") || s.Has("object")) || s.Handle != x.Handle {
				t.Errorf("%s %s: reader flags %v handle %d, nft handle %d", o.Kind, x.Name, s.Flags, s.Handle, x.Handle)
			}
			for _, f := range x.Flags {
				want := map[string]string{"dynamic": "eval"}[f]
				if want == "" {
					want = f
				}
				if !s.Has(want) {
					t.Errorf("set %s: nft has flag %s, reader %v", x.Name, f, s.Flags)
				}
			}
			compareElements(t, tb, s, x.Elem)
		case "rule":
			var r JSONRule
			must(t, json.Unmarshal(o.Raw, &r))
			tb := rs.Table(nft.Family(r.Family), r.Table)
			found := false
			if tb != nil && tb.Chain(r.Chain) != nil {
				for _, rr := range tb.Chain(r.Chain).Rules {
					if rr.Handle == r.Handle {
						found = true
						if rr.Comment != r.Comment {
							t.Errorf("rule %d comment %q, nft %q", r.Handle, rr.Comment, r.Comment)
						}
					}
				}
			}
			if !found {
				t.Errorf("rule %s %s %s %d missing", r.Family, r.Table, r.Chain, r.Handle)
			}
		}
	}
	gotTables, gotChains, gotSets := len(rs.Tables), 0, 0
	for _, tb := range rs.Tables {
		gotChains += len(tb.Chains)
		for _, s := range tb.Sets {
			if !s.Has("anonymous") {
				gotSets++
			}
		}
	}
	if gotTables != nTables || gotChains != nChains || gotSets != nSets {
		t.Errorf("counts: reader %d tables %d chains %d named sets; nft %d, %d, %d", gotTables, gotChains, gotSets, nTables, nChains, nSets)
	}
}

var hexNum = regexp.MustCompile(`\b0x[0-9a-f]+\b`)

// canonElem normalizes an element's printed form for comparison: no quotes, numbers decimal,
// timeouts and expiry left out (they change while the test runs).
func canonElem(s string) string {
	s = strings.ReplaceAll(s, `"`, "")
	s = hexNum.ReplaceAllStringFunc(s, func(h string) string {
		v, err := strconv.ParseUint(h[2:], 16, 64)
		if err != nil {
			return h
		}
		return strconv.FormatUint(v, 10)
	})
	if i := strings.Index(s, " timeout"); i >= 0 {
		s = s[:i]
	}
	return s
}

func compareElements(t *testing.T, tb *nft.Table, s *nft.Set, elems []json.RawMessage) {
	t.Helper()
	var want []string
	for _, e := range elems {
		want = append(want, canonElem(ElementText(e)))
	}
	var got []string
	r := nft.NewRenderer("little")
	for _, el := range s.Elements {
		one := *s
		one.Elements = []nft.Element{el}
		one.Flags = append([]string{"anonymous"}, s.Flags...)
		text := r.SetElements(tb, &one)
		got = append(got, canonElem(strings.TrimSuffix(strings.TrimPrefix(text, "{ "), " }")))
	}
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(want, "; ") != strings.Join(got, "; ") {
		t.Errorf("set %s elements:\n  reader %v\n  nft    %v", s.Name, got, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestPrivilegedReaderMatchesNft loads rulesets with nft -f and compares what the reader sees
// with what nft lists: every rule's text, every table, chain, set and element.
func TestPrivilegedReaderMatchesNft(t *testing.T) {
	requireNft(t)
	for _, file := range []string{"t1.nft", "debian.nft", "firewalld.nft", "dualwan.nft", "variety.nft", "hookorder.nft", "iptables.rules"} {
		t.Run(file, func(t *testing.T) {
			l := lab.New(t)
			ns := l.NS("fw")
			ns.IP("link", "add", "vx0", "type", "veth", "peer", "name", "vx1")
			load(t, ns, file)
			rs := oracle(t, ns)
			rules, sets, elems := 0, 0, 0
			for _, tb := range rs.Tables {
				for _, c := range tb.Chains {
					rules += len(c.Rules)
				}
				for _, s := range tb.Sets {
					sets++
					elems += len(s.Elements)
				}
				if strings.HasSuffix(file, ".rules") && tb.Origin != "iptables-nft" {
					t.Errorf("table %s loaded by iptables-nft-restore has origin %q", tb, tb.Origin)
				}
				if !strings.HasSuffix(file, ".rules") && tb.Origin != "" {
					t.Errorf("native table %s labelled %q (%s)", tb, tb.Origin, tb.OriginWhy)
				}
			}
			t.Logf("%s: %d tables, %d rules, %d sets with %d elements compared", file, len(rs.Tables), rules, sets, elems)
			if rules == 0 {
				t.Fatal("no rules read")
			}
		})
	}
}

// load loads a ruleset file into the namespace: nft -f, or iptables-nft-restore for *.rules.
func load(t *testing.T, ns *lab.NS, file string) {
	t.Helper()
	if strings.HasSuffix(file, ".rules") {
		requireNft(t, "iptables-nft-restore")
		ns.Run("iptables-nft-restore", "testdata/"+file)
		return
	}
	ns.Run("nft", "-f", "testdata/"+file)
}
