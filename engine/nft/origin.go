package nft

// iptablesTables are the tables iptables-nft creates, and the built-in chains of each.
var iptablesTables = map[string][]string{
	"filter":   {"INPUT", "FORWARD", "OUTPUT"},
	"nat":      {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"mangle":   {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"raw":      {"PREROUTING", "OUTPUT"},
	"security": {"INPUT", "FORWARD", "OUTPUT"},
}

// DetectOrigins labels the tables written by the iptables-nft family of tools rather than
// natively. The evidence, strongest first: a compat (xt) expression in a rule, which only
// those tools write and which makes nft itself warn "table ... is managed by iptables-nft";
// or, for a table without any, the exact layout the tools create (table name, upper-case
// built-in chain names on their hooks at the standard priorities). A native table that merely
// shares a name keeps Origin "".
func DetectOrigins(rs *Ruleset) {
	for _, t := range rs.Tables {
		t.Origin, t.OriginWhy = detectOrigin(t)
	}
}

func detectOrigin(t *Table) (string, string) {
	tool := ""
	switch t.Family {
	case FamilyIP, FamilyIP6:
		tool = "iptables-nft"
	case FamilyBridge:
		tool = "ebtables-nft"
	case FamilyARP:
		tool = "arptables-nft"
	default:
		return "", ""
	}
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			for i := range r.Exprs {
				if x := r.Exprs[i].Xt; x != nil {
					return tool, "rule " + quoteName(c.Name) + " uses the compat " + x.Kind + " " + x.Name
				}
			}
		}
	}
	if tool != "iptables-nft" {
		return "", ""
	}
	builtins, ok := iptablesTables[t.Name]
	if !ok || len(t.Sets) > 0 || len(t.Flowtables) > 0 || len(t.Objects) > 0 {
		return "", ""
	}
	base := 0
	for _, c := range t.Chains {
		if !c.Base() {
			continue
		}
		base++
		if !contains(builtins, c.Name) || c.Hook != Hook(lower(c.Name)) || c.Priority != iptablesPriority(t.Name, c.Hook) {
			return "", ""
		}
	}
	if base == 0 {
		return "", ""
	}
	return tool, "table layout is iptables-nft's (built-in chain names and priorities)"
}

// iptablesPriority is the priority iptables-nft gives a table's built-in chains.
func iptablesPriority(table string, hook Hook) int32 {
	switch table {
	case "raw":
		return -300
	case "mangle":
		return -150
	case "nat":
		if hook == HookPrerouting || hook == HookOutput {
			return -100
		}
		return 100
	case "security":
		return 50
	}
	return 0
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Native reports whether chain c of table t was written natively, so that the iptables model
// does not cover it: every chain of a native table; in a table iptables-nft manages, a base
// chain that is not one of its built-ins, and the regular chains those jump or go to. Such a
// mixed table is what a hand-written `table ip nat` becomes once iptables-nft writes into it
// (iptables-nft uses the table of that name): the compat rules make it iptables-nft's, while
// its own chains still run, and iptables-nft-save only mentions them ("contains
// incompatible base-chains").
func (t *Table) Native(c *Chain) bool {
	if t.Origin == "" {
		return true
	}
	if t.Origin != "iptables-nft" {
		return false
	}
	return t.nativeChains()[c]
}

// HasNative reports whether any chain of t is native (see Native).
func (t *Table) HasNative() bool {
	return t.Origin == "" || t.Origin == "iptables-nft" && len(t.nativeChains()) > 0
}

// NativeView is t with only its native chains (t itself when all are); nil when it has none.
func (t *Table) NativeView() *Table {
	if t.Origin == "" {
		return t
	}
	if !t.HasNative() {
		return nil
	}
	v := *t
	v.Chains = nil
	for _, c := range t.Chains {
		if t.Native(c) {
			v.Chains = append(v.Chains, c)
		}
	}
	return &v
}

// nativeChains are the native chains of an iptables-nft table: the base chains that are not
// its built-ins, and what they reach by jump, goto or a verdict map.
func (t *Table) nativeChains() map[*Chain]bool {
	builtins := iptablesTables[t.Name]
	out := map[*Chain]bool{}
	var todo []*Chain
	for _, c := range t.Chains {
		if c.Base() && !(contains(builtins, c.Name) && c.Hook == Hook(lower(c.Name)) && c.Priority == iptablesPriority(t.Name, c.Hook)) {
			out[c] = true
			todo = append(todo, c)
		}
	}
	reach := func(name string) {
		if n := t.Chain(name); n != nil && !out[n] {
			out[n] = true
			todo = append(todo, n)
		}
	}
	for len(todo) > 0 {
		c := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, r := range c.Rules {
			for i := range r.Exprs {
				e := &r.Exprs[i]
				if e.Verdict != nil && e.Verdict.Chain != "" {
					reach(e.Verdict.Chain)
				}
				if e.Lookup != nil && e.Lookup.Set != "" {
					if s := t.Set(e.Lookup.Set); s != nil {
						for _, el := range s.Elements {
							if el.Verdict != nil && el.Verdict.Chain != "" {
								reach(el.Verdict.Chain)
							}
						}
					}
				}
			}
		}
	}
	return out
}
