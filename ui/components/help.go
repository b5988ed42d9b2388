package components

import (
	"strings"

	"charm.land/bubbles/v2/key"
	"github.com/charmbracelet/x/ansi"

	"roundtrip/ui/common"
)

// HelpEntries flattens groups of bindings into one list with each key once: the first
// binding of a key wins, so a page's meaning of esc or enter is the one listed, not the
// app's as well.
func HelpEntries(groups ...[]key.Binding) []key.Binding {
	var out []key.Binding
	seen := map[string]bool{}
	for _, g := range groups {
		for _, b := range g {
			h := b.Help()
			if !b.Enabled() || h.Key == "" || seen[h.Key] {
				continue
			}
			seen[h.Key] = true
			out = append(out, b)
		}
	}
	return out
}

// FullHelp lays out every binding of groups (each key once, see HelpEntries) in as many
// columns as fit in width, column by column, each column as wide as its longest entry. It
// returns the lines; the caller shows them whole or scrolls them.
func FullHelp(st *common.Styles, groups [][]key.Binding, width int) []string {
	type entry struct{ k, d string }
	var es []entry
	for _, b := range HelpEntries(groups...) {
		h := b.Help()
		es = append(es, entry{h.Key, h.Desc})
	}
	if len(es) == 0 {
		return nil
	}
	const gap = 3
	layout := func(cols int) (rows int, kw, cw []int, fits bool) {
		rows = (len(es) + cols - 1) / cols
		kw, cw = make([]int, cols), make([]int, cols)
		total := 0
		for c := range cols {
			for _, e := range es[min(c*rows, len(es)):min((c+1)*rows, len(es))] {
				kw[c] = max(kw[c], ansi.StringWidth(e.k))
			}
			for _, e := range es[min(c*rows, len(es)):min((c+1)*rows, len(es))] {
				cw[c] = max(cw[c], kw[c]+1+ansi.StringWidth(e.d))
			}
			total += cw[c]
			if c > 0 {
				total += gap
			}
		}
		return rows, kw, cw, total <= width
	}
	cols := 1
	for c := len(es); c > 1; c-- {
		if _, _, _, ok := layout(c); ok {
			cols = c
			break
		}
	}
	rows, kw, cw, _ := layout(cols)
	if cols == 1 {
		// One column wider than the screen: only its longest entries are cut.
		cw[0] = min(cw[0], width)
	}
	lines := make([]string, rows)
	for i, e := range es {
		c, r := i/rows, i%rows
		cell := st.Help.FullKey.Render(Fit(e.k, kw[c])) + " " + st.Help.FullDesc.Render(e.d)
		if c > 0 {
			lines[r] += strings.Repeat(" ", gap)
		}
		lines[r] += Fit(cell, cw[c])
	}
	for i := range lines {
		lines[i] = strings.TrimRight(Cut(lines[i], width), " ")
	}
	return lines
}
