package components

import (
	"strings"

	tea "charm.land/bubbletea/v2"

	"roundtrip/ui/common"
)

// Detail shows one item of a list whole: every field on its own line, long values wrapped
// rather than cut, scrollable. Lists open it on enter; esc (or enter) closes it.
type Detail struct {
	Title string
	// Fields are label and value pairs; a pair with an empty label is a line of its own.
	Fields [][2]string
	// Hint is the line under the title ("esc closes" is added).
	Hint string

	styles *common.Styles
	pager  Pager
}

// NewDetail returns a detail view of fields (label, value, label, value, ...).
func NewDetail(st *common.Styles, title string, fields ...string) *Detail {
	d := &Detail{Title: title, styles: st}
	d.pager.SetMarks(st)
	for i := 0; i+1 < len(fields); i += 2 {
		d.Fields = append(d.Fields, [2]string{fields[i], fields[i+1]})
	}
	return d
}

// Add appends a field.
func (d *Detail) Add(label, value string) *Detail {
	d.Fields = append(d.Fields, [2]string{label, value})
	return d
}

// Update scrolls; it reports whether the view is to be closed (esc, enter, backspace).
func (d *Detail) Update(msg tea.Msg) (closed bool) {
	if k, ok := msg.(tea.KeyPressMsg); ok {
		switch k.String() {
		case "esc", "enter", "backspace":
			return true
		}
	}
	d.pager.Update(msg)
	return false
}

// Lines renders the fields wrapped to width, as the view shows them (for tests and copy).
func (d *Detail) Lines(width int) []string {
	lw := 0
	for _, f := range d.Fields {
		lw = max(lw, len([]rune(f[0])))
	}
	lw = min(lw, 16)
	var out []string
	for _, f := range d.Fields {
		if f[0] == "" {
			for _, l := range Wrap(f[1], width-2, "  ") {
				out = append(out, " "+l)
			}
			continue
		}
		pad := strings.Repeat(" ", lw+3)
		for i, l := range Wrap(f[1], width-lw-4, "") {
			if i == 0 {
				out = append(out, " "+d.styles.Label.Render(Fit(f[0], lw))+"  "+l)
			} else {
				out = append(out, pad+l)
			}
		}
	}
	return out
}

// View draws the title, the hint and the fields in exactly height lines.
func (d *Detail) View(width, height int) string {
	st := d.styles
	hint := "esc closes"
	if d.Hint != "" {
		hint = d.Hint + " · " + hint
	}
	head := []string{st.Header.Render(Fit(" "+d.Title, width)), st.Dim.Render(Fit("  "+hint, width))}
	d.pager.SetLines(d.Lines(width))
	body := d.pager.View(width, max(height-len(head), 1))
	return Lines(strings.Join(head, "\n")+"\n"+body, width, height)
}
