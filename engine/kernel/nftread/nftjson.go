package nftread

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"roundtrip/engine/kernel"
	"roundtrip/engine/nft"
)

// JSONRuleset is `nft -j list ruleset` as far as roundtrip uses it: the objects in order,
// each kept raw under its kind ("table", "chain", "rule", "set", "map", ...).
type JSONRuleset struct {
	Objects []JSONObject
}

// JSONObject is one entry of the "nftables" array.
type JSONObject struct {
	Kind string
	Raw  json.RawMessage
}

// JSONRule is a rule object of `nft -j`.
type JSONRule struct {
	Family  string            `json:"family"`
	Table   string            `json:"table"`
	Chain   string            `json:"chain"`
	Handle  uint64            `json:"handle"`
	Comment string            `json:"comment"`
	Expr    []json.RawMessage `json:"expr"`
}

// maxJSON bounds what is read from nft (a 100k-element set lists in a few MB).
const maxJSON = 512 << 20

// ParseJSON decodes `nft -j list ruleset` output. Anything malformed is an error; objects of
// kinds roundtrip does not use are kept raw.
func ParseJSON(data []byte) (*JSONRuleset, error) {
	if len(data) > maxJSON {
		return nil, fmt.Errorf("nft -j output of %d bytes is larger than %d", len(data), maxJSON)
	}
	var top struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("parsing nft -j output: %w", err)
	}
	out := &JSONRuleset{}
	for i, obj := range top.Nftables {
		if len(obj) != 1 {
			return nil, fmt.Errorf("parsing nft -j output: entry %d has %d keys, want 1", i, len(obj))
		}
		for k, v := range obj {
			out.Objects = append(out.Objects, JSONObject{Kind: k, Raw: v})
		}
	}
	return out, nil
}

// Rules returns the rule objects.
func (j *JSONRuleset) Rules() ([]JSONRule, error) {
	var out []JSONRule
	for _, o := range j.Objects {
		if o.Kind != "rule" {
			continue
		}
		var r JSONRule
		if err := json.Unmarshal(o.Raw, &r); err != nil {
			return nil, fmt.Errorf("parsing a rule of nft -j: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// fillFromJSON gives unknown expressions the text nft shows for them: each rule with an
// expression netlink decoding could not model is looked up in `nft -j list ruleset`, and its
// statements that the model does not produce are named.
func fillFromJSON(ctx context.Context, rs *nft.Ruleset, runner kernel.Runner) error {
	out, err := runner.Run(ctx, nil, "nft", "-j", "list", "ruleset")
	if err != nil {
		return err
	}
	j, err := ParseJSON(out)
	if err != nil {
		return err
	}
	rules, err := j.Rules()
	if err != nil {
		return err
	}
	type key struct {
		family, table, chain string
		handle               uint64
	}
	byKey := map[key]JSONRule{}
	for _, r := range rules {
		byKey[key{r.Family, r.Table, r.Chain, r.Handle}] = r
	}
	filled := 0
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				var unknown []*nft.Unknown
				for i := range r.Exprs {
					if u := r.Exprs[i].Unknown; u != nil {
						unknown = append(unknown, u)
					}
				}
				if len(unknown) == 0 {
					continue
				}
				jr, ok := byKey[key{string(t.Family), t.Name, c.Name, r.Handle}]
				if !ok {
					continue
				}
				for _, u := range unknown {
					u.Text = statementFor(u.Name, jr.Expr)
					filled++
				}
			}
		}
	}
	if filled > 0 {
		rs.Notes = append(rs.Notes, fmt.Sprintf("%d expressions could not be decoded from netlink; their text is from `nft -j list ruleset`", filled))
	}
	return nil
}

// statementFor picks the statement of a rule that holds the expression named: one whose
// JSON mentions the name as a key, else the whole rule.
func statementFor(name string, stmts []json.RawMessage) string {
	for _, s := range stmts {
		if mentionsKey(s, name, 0) {
			return StatementText(s)
		}
	}
	parts := make([]string, len(stmts))
	for i, s := range stmts {
		parts[i] = StatementText(s)
	}
	return strings.Join(parts, " ")
}

func mentionsKey(raw json.RawMessage, name string, depth int) bool {
	if depth > 32 {
		return false
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) == nil {
		for k, v := range obj {
			if k == name || mentionsKey(v, name, depth+1) {
				return true
			}
		}
		return false
	}
	var arr []json.RawMessage
	if json.Unmarshal(raw, &arr) == nil {
		for _, v := range arr {
			if mentionsKey(v, name, depth+1) {
				return true
			}
		}
	}
	return false
}

// StatementText prints one JSON statement in nft's syntax, as far as a generic printer can:
// matches, verdicts, counters and the common statements exactly, anything else as its name and
// fields. Strings are quoted with control characters escaped.
func StatementText(raw json.RawMessage) string {
	return jsonText(raw, 0)
}

var verdictKeys = map[string]bool{"accept": true, "drop": true, "continue": true, "return": true, "queue": true}

func jsonText(raw json.RawMessage, depth int) string {
	if depth > 32 {
		return "..."
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "?"
		}
		return safe(s)
	case '[':
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) != nil {
			return "?"
		}
		parts := make([]string, len(arr))
		for i, v := range arr {
			parts[i] = jsonText(v, depth+1)
		}
		return strings.Join(parts, ",")
	case '{':
	default:
		// numbers, true, false, null
		return safe(string(raw))
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return "?"
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) != 1 {
		var parts []string
		for _, k := range keys {
			parts = append(parts, safe(k)+" "+jsonText(obj[k], depth+1))
		}
		return strings.Join(parts, " ")
	}
	k, v := keys[0], obj[keys[0]]
	field := func(name string) json.RawMessage {
		var m map[string]json.RawMessage
		if json.Unmarshal(v, &m) != nil {
			return nil
		}
		return m[name]
	}
	switch {
	case verdictKeys[k]:
		return k
	case k == "jump" || k == "goto":
		return k + " " + jsonText(field("target"), depth+1)
	case k == "match":
		op := jsonText(field("op"), depth+1)
		l, r := jsonText(field("left"), depth+1), jsonText(field("right"), depth+1)
		if op == "==" || op == "in" {
			return l + " " + r
		}
		return l + " " + op + " " + r
	case k == "payload":
		if p := field("protocol"); p != nil {
			return jsonText(p, depth+1) + " " + jsonText(field("field"), depth+1)
		}
		return "@" + jsonText(field("base"), depth+1) + "," + jsonText(field("offset"), depth+1) + "," + jsonText(field("len"), depth+1)
	case k == "meta":
		return "meta " + jsonText(field("key"), depth+1)
	case k == "ct":
		s := "ct "
		if d := field("dir"); d != nil {
			s += jsonText(d, depth+1) + " "
		}
		return s + jsonText(field("key"), depth+1)
	case k == "prefix":
		return jsonText(field("addr"), depth+1) + "/" + jsonText(field("len"), depth+1)
	case k == "range":
		var arr []json.RawMessage
		if json.Unmarshal(v, &arr) == nil && len(arr) == 2 {
			return jsonText(arr[0], depth+1) + "-" + jsonText(arr[1], depth+1)
		}
	case k == "set":
		var arr []json.RawMessage
		if json.Unmarshal(v, &arr) == nil {
			parts := make([]string, len(arr))
			for i, e := range arr {
				parts[i] = elemText(e, depth+1)
			}
			return "{ " + strings.Join(parts, ", ") + " }"
		}
		return "@" + jsonText(v, depth+1)
	case k == "concat":
		var arr []json.RawMessage
		if json.Unmarshal(v, &arr) == nil {
			parts := make([]string, len(arr))
			for i, e := range arr {
				parts[i] = jsonText(e, depth+1)
			}
			return strings.Join(parts, " . ")
		}
	case k == "&" || k == "|" || k == "^" || k == "<<" || k == ">>":
		var arr []json.RawMessage
		if json.Unmarshal(v, &arr) == nil && len(arr) == 2 {
			return jsonText(arr[0], depth+1) + " " + k + " " + jsonText(arr[1], depth+1)
		}
	case k == "counter":
		if p := field("packets"); p != nil {
			return "counter packets " + jsonText(p, depth+1) + " bytes " + jsonText(field("bytes"), depth+1)
		}
		return "counter"
	case k == "xt":
		return "xt " + jsonText(field("type"), depth+1) + " " + strconv.Quote(jsonText(field("name"), depth+1))
	case k == "elem":
		return jsonText(field("val"), depth+1)
	}
	if string(v) == "null" {
		return safe(k)
	}
	return safe(k) + " " + jsonText(v, depth+1)
}

// elemText prints a set element: a value, or [key, value] of a map.
func elemText(raw json.RawMessage, depth int) string {
	var pair []json.RawMessage
	if json.Unmarshal(raw, &pair) == nil && len(pair) == 2 {
		return jsonText(pair[0], depth) + " : " + jsonText(pair[1], depth)
	}
	return jsonText(raw, depth)
}

// ElementText prints a set element of `nft -j` (for comparisons with the model's elements).
func ElementText(raw json.RawMessage) string { return elemText(raw, 0) }

// safe escapes control characters, so that nothing nft printed can reach a terminal raw.
func safe(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			fmt.Fprintf(&sb, "\\u%04x", r)
			continue
		}
		sb.WriteRune(r)
	}
	return sb.String()
}
