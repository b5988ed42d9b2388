package components

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/x/ansi"

	"roundtrip/ui/common"
)

// Tabs is the bar of page names at the top of the screen.
type Tabs struct {
	Names  []string
	Active int
	// spans are the cell ranges of the tabs as last drawn, for mouse clicks.
	spans [][2]int
}

// View renders the bar in one line of width cells: "roundtrip  1 Overview  2 Routing ...",
// with right on the right when it fits. Narrow screens drop the product name, then shorten
// the names to their numbers except the active one.
func (t *Tabs) View(st *common.Styles, width int, right string) string {
	render := func(short, withApp bool) (string, [][2]int) {
		var b strings.Builder
		var spans [][2]int
		pos := 0
		if withApp {
			b.WriteString(st.App.Render("roundtrip") + " ")
			pos = 10
		}
		for i, n := range t.Names {
			label := fmt.Sprintf(" %d %s ", i+1, n)
			if short && i != t.Active {
				label = fmt.Sprintf(" %d ", i+1)
			}
			style := st.TabInactive
			if i == t.Active {
				style = st.TabActive
				if st.Mode == common.ModePlain {
					label = fmt.Sprintf("[%d %s]", i+1, n)
				}
			}
			spans = append(spans, [2]int{pos, pos + len(label)})
			b.WriteString(style.Render(label))
			pos += len(label)
		}
		return b.String(), spans
	}
	bar, spans := render(false, true)
	if ansi.StringWidth(bar) > width {
		bar, spans = render(false, false)
	}
	if ansi.StringWidth(bar) > width {
		bar, spans = render(true, false)
	}
	t.spans = spans
	if right != "" {
		gap := width - ansi.StringWidth(bar) - ansi.StringWidth(right)
		if gap >= 2 {
			bar += strings.Repeat(" ", gap) + st.Dim.Render(right)
		}
	}
	return Fit(bar, width)
}

// At returns the tab drawn at column x, or -1.
func (t *Tabs) At(x int) int {
	for i, s := range t.spans {
		if x >= s[0] && x < s[1] {
			return i
		}
	}
	return -1
}
