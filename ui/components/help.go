package components

import (
	"strings"

	"charm.land/bubbles/v2/key"
	"github.com/charmbracelet/x/ansi"

	"roundtrip/ui/common"
)

// FullHelp lays out every binding of groups in as many columns as fit in width, column by
// column, so that the whole list shows even at 80 columns (bubbles' full help would cut the
// columns that do not fit).
func FullHelp(st *common.Styles, groups [][]key.Binding, width int) string {
	type entry struct{ k, d string }
	var es []entry
	seen := map[string]bool{}
	kw := 0
	for _, g := range groups {
		for _, b := range g {
			h := b.Help()
			if !b.Enabled() || h.Key == "" || seen[h.Key+h.Desc] {
				continue
			}
			seen[h.Key+h.Desc] = true
			es = append(es, entry{h.Key, h.Desc})
			kw = max(kw, ansi.StringWidth(h.Key))
		}
	}
	if len(es) == 0 {
		return ""
	}
	cw := 0
	for _, e := range es {
		cw = max(cw, kw+1+ansi.StringWidth(e.d))
	}
	cw = min(cw+3, width)
	cols := max(width/cw, 1)
	rows := (len(es) + cols - 1) / cols
	lines := make([]string, rows)
	for i, e := range es {
		r := i % rows
		cell := st.Help.FullKey.Render(Fit(e.k, kw)) + " " + st.Help.FullDesc.Render(e.d)
		lines[r] += Fit(cell, cw)
	}
	for i := range lines {
		lines[i] = strings.TrimRight(Cut(lines[i], width), " ")
	}
	return strings.Join(lines, "\n")
}
