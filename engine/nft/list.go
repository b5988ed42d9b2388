package nft

import (
	"fmt"
	"strings"
)

// maxListedElements bounds the elements List prints per set: a set of 100k addresses is
// summarised, not printed.
const maxListedElements = 16

// List renders a table the way `nft -a list table` prints it, one line per entry (tabs for
// indentation): sets and maps with their type, flags and elements (the first
// maxListedElements of them), chains with their hook, priority and policy, and rules with
// their handle. Nothing is escaped: the caller prints through quote.Term*.
func (r *Renderer) List(t *Table) []string {
	out := []string{fmt.Sprintf("table %s %s { # handle %d", t.Family, quoteName(t.Name), t.Handle)}
	if len(t.Flags) > 0 {
		out = append(out, "\tflags "+strings.Join(t.Flags, ","))
	}
	rc := &renderCtx{r: r, f: r.fmt(), family: t.Family, table: t}
	for _, s := range t.Sets {
		if s.Has("anonymous") {
			continue
		}
		kind := "set"
		if s.Has("map") {
			kind = "map"
		}
		out = append(out, fmt.Sprintf("\t%s %s { # handle %d", kind, quoteName(s.Name), s.Handle))
		typ := s.KeyType
		if s.KeyTypeof != "" {
			typ = "typeof " + s.KeyTypeof
		} else {
			typ = "type " + typ
		}
		if s.Has("map") {
			data := s.DataType
			if s.ObjType != "" {
				data = s.ObjType
			}
			typ += " : " + data
		}
		out = append(out, "\t\t"+typ)
		var flags []string
		for _, f := range s.Flags {
			switch f {
			case "constant", "interval", "timeout", "dynamic":
				flags = append(flags, f)
			case "eval":
				flags = append(flags, "dynamic")
			}
		}
		if len(flags) > 0 {
			out = append(out, "\t\tflags "+strings.Join(flags, ","))
		}
		if len(s.Elements) > 0 {
			shown := *s
			more := ""
			if len(s.Elements) > maxListedElements {
				shown.Elements = s.Elements[:maxListedElements]
				more = fmt.Sprintf(" # and %d more elements", len(s.Elements)-maxListedElements)
			}
			out = append(out, "\t\telements = "+rc.elementsText(&shown, nil, " ")+more)
		}
		out = append(out, "\t}")
	}
	for _, c := range t.Chains {
		out = append(out, fmt.Sprintf("\tchain %s { # handle %d", quoteName(c.Name), c.Handle))
		if c.Base() {
			dev := ""
			if len(c.Devices) == 1 {
				dev = fmt.Sprintf(" device %q", c.Devices[0])
			} else if len(c.Devices) > 1 {
				dev = " devices = { " + strings.Join(c.Devices, ", ") + " }"
			}
			out = append(out, fmt.Sprintf("\t\ttype %s hook %s%s priority %s; policy %s;", c.Type, c.Hook, dev, PriorityName(t.Family, c.Hook, c.Priority), c.Policy))
		}
		for _, rule := range c.Rules {
			text := rule.Text
			if text == "" {
				text = r.Rule(t, rule)
			}
			out = append(out, fmt.Sprintf("\t\t%s # handle %d", text, rule.Handle))
		}
		out = append(out, "\t}")
	}
	return append(out, "}")
}
