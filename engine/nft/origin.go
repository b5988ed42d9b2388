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
