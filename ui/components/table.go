package components

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"roundtrip/engine/quote"
	"roundtrip/ui/common"
)

// Column is one column of a Table.
type Column struct {
	Title string
	Width int // preferred width in cells
	// Flex columns share the width left over (and give it up first when the screen is narrow,
	// down to Min).
	Flex bool
	Min  int
	// Drop is the order in which columns are left out when even the minimum widths do not fit:
	// the highest goes first; 0 is never dropped.
	Drop int
}

// Table shows rows of a source of any size, formatting only the rows on screen: Cell is asked
// for row i only when row i is visible, so a table of a million routes costs what a screenful
// costs. The source is the page's: typically a slice of positions into the state.
type Table struct {
	Columns []Column
	// Rows is how many rows the source has.
	Rows int
	// Cell formats the cells of row i, as plain text: View escapes control characters.
	Cell func(i int) []string
	// RowStyle, when set, styles row i (the cursor row is always shown selected).
	RowStyle func(i int) lipgloss.Style
	// Empty is shown when there are no rows.
	Empty string
	// Key, when set, names row i (a route by its destination, a rule by its text): when the
	// rows change, SetRows puts the cursor back on the row of the same name, so a refresh or a
	// new filter does not move the selection to another item that took its place.
	Key func(i int) string

	Cursor  int
	Offset  int
	Focused bool

	styles *common.Styles
	height int    // rows of data shown (without the header)
	sel    string // Key of the cursor row, as last seen
	// After Refresh, until the selected row is back (or cannot be): where the cursor was,
	// and how far below the top of the screen.
	waiting        bool
	want, wantDown int
}

// refreshSlack is how far past its old position Refresh waits for the selected row: a
// refresh moves rows by a few places.
const refreshSlack = 64

// keySearch bounds how far from the old position SetRows looks for the selected row: a
// refresh moves rows by a few places, and a million-row table must not be walked per
// keystroke of a filter that left the row out.
const keySearch = 10000

// NewTable returns a focused table.
func NewTable(st *common.Styles, cols ...Column) *Table {
	return &Table{Columns: cols, styles: st, Focused: true}
}

// SetRows changes the row count after the source changed, keeping the cursor on the row it
// was on (by Key, searched outward from the old position) or else in range.
func (t *Table) SetRows(n int) {
	t.Rows = n
	at := t.Cursor
	if t.waiting {
		at = t.want
	}
	found := false
	if t.Key != nil && t.sel != "" {
		// Outward from at, asking Key only of the rows there are (a refresh may not have
		// brought back as many as at yet).
		for d := 0; d < keySearch && (at-d >= 0 || at+d < n); d++ {
			if i := at - d; i >= 0 && i < n && t.Key(i) == t.sel {
				t.Cursor, found = i, true
				break
			}
			if i := at + d; d > 0 && i < n && t.Key(i) == t.sel {
				t.Cursor, found = i, true
				break
			}
		}
	}
	if !t.waiting {
		t.clamp()
		t.remember()
		return
	}
	if !found && n <= at+refreshSlack {
		// The rows have not come back as far as the selected one: follow them down to where
		// it was, keeping its name for when it comes.
		t.Cursor = min(at, n-1)
		t.clamp()
		return
	}
	if !found {
		t.Cursor = at // gone: stay where it was
	}
	t.waiting = false
	t.Offset = t.Cursor - t.wantDown
	t.clamp()
	t.remember()
}

// Refresh empties the table for its source to be read again from the start, the rows coming
// back through SetRows as they are read (a table streamed again on r): the cursor goes back to
// its row, found by Key, and to its place on the screen once the rows reach it, rather than
// staying at the top where the empty table put it.
func (t *Table) Refresh() {
	if !t.waiting && t.Key != nil && t.sel != "" && t.Rows > 0 {
		t.waiting, t.want, t.wantDown = true, t.Cursor, t.Cursor-t.Offset
	}
	t.SetRows(0)
}

// remember notes the Key of the cursor row.
func (t *Table) remember() {
	if t.Key != nil && t.Cursor < t.Rows {
		t.sel = t.Key(t.Cursor)
	}
}

// Selected returns the Key of the cursor row ("" without rows or Key).
func (t *Table) Selected() string {
	if t.Key == nil || t.Rows == 0 {
		return ""
	}
	return t.Key(t.Cursor)
}

func (t *Table) clamp() {
	if t.Cursor >= t.Rows {
		t.Cursor = t.Rows - 1
	}
	if t.Cursor < 0 {
		t.Cursor = 0
	}
	h := max(t.height, 1)
	if t.Offset > t.Cursor {
		t.Offset = t.Cursor
	}
	if t.Cursor >= t.Offset+h {
		t.Offset = t.Cursor - h + 1
	}
	if t.Offset > max(t.Rows-h, 0) {
		t.Offset = max(t.Rows-h, 0)
	}
	if t.Offset < 0 {
		t.Offset = 0
	}
}

// Reset puts the cursor on the first row and forgets the selected row: for a new source (an
// other table), where the old selection means nothing.
func (t *Table) Reset() {
	t.Cursor, t.Offset, t.sel, t.waiting = 0, 0, "", false
}

// MoveTo puts the cursor on row i (the operator moved it: a refresh stops looking for the row
// it was on).
func (t *Table) MoveTo(i int) {
	t.waiting = false
	t.Cursor = i
	t.clamp()
	t.remember()
}

// Update moves the cursor on navigation keys and the mouse wheel; it reports whether it used
// the message.
func (t *Table) Update(msg tea.Msg) bool {
	page := max(t.height-1, 1)
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		k := common.Keys
		switch {
		case key.Matches(msg, k.Up):
			t.MoveTo(t.Cursor - 1)
		case key.Matches(msg, k.Down):
			t.MoveTo(t.Cursor + 1)
		case key.Matches(msg, k.PageUp):
			t.Offset = max(t.Offset-page, 0)
			t.MoveTo(t.Cursor - page)
		case key.Matches(msg, k.PageDown):
			t.Offset += page
			t.MoveTo(t.Cursor + page)
		case key.Matches(msg, k.Home):
			t.MoveTo(0)
		case key.Matches(msg, k.End):
			t.MoveTo(t.Rows - 1)
		default:
			return false
		}
		return true
	case tea.MouseWheelMsg:
		switch msg.Mouse().Button {
		case tea.MouseWheelUp:
			t.MoveTo(t.Cursor - 3)
		case tea.MouseWheelDown:
			t.MoveTo(t.Cursor + 3)
		default:
			return false
		}
		return true
	}
	return false
}

// Click selects the row shown y lines below the table's header.
func (t *Table) Click(y int) {
	if y >= 0 && t.Offset+y < t.Rows {
		t.MoveTo(t.Offset + y)
	}
}

// layout decides which columns are shown and how wide.
func (t *Table) layout(width int) ([]int, []int) {
	idx := make([]int, 0, len(t.Columns))
	for i := range t.Columns {
		idx = append(idx, i)
	}
	avail := width - 2 // the cursor marker
	need := func(ix []int, minimum bool) int {
		n := 0
		for k, i := range ix {
			c := t.Columns[i]
			w := c.Width
			if minimum && c.Flex {
				w = max(c.Min, 1)
			}
			n += w
			if k > 0 {
				n++
			}
		}
		return n
	}
	for need(idx, true) > avail {
		worst, at := 0, -1
		for k, i := range idx {
			if d := t.Columns[i].Drop; d > worst {
				worst, at = d, k
			}
		}
		if at < 0 {
			break
		}
		idx = append(idx[:at], idx[at+1:]...)
	}
	widths := make([]int, len(idx))
	flex := 0
	for k, i := range idx {
		widths[k] = t.Columns[i].Width
		if t.Columns[i].Flex {
			flex++
		}
	}
	extra := avail - need(idx, false)
	if flex > 0 {
		share := extra / flex
		rest := extra - share*flex
		for k, i := range idx {
			if !t.Columns[i].Flex {
				continue
			}
			widths[k] = max(widths[k]+share+rest, max(t.Columns[i].Min, 1))
			rest = 0
		}
	}
	return idx, widths
}

// View renders the header and the visible rows in exactly height lines.
func (t *Table) View(width, height int) string {
	st := t.styles
	t.height = max(height-1, 1)
	t.clamp()
	if t.sel == "" {
		t.remember()
	}
	idx, widths := t.layout(width)
	var b strings.Builder
	head := make([]string, len(idx))
	for k, i := range idx {
		head[k] = Fit(t.Columns[i].Title, widths[k])
	}
	b.WriteString(st.Header.Render(Fit("  "+strings.Join(head, " "), width)))
	if t.Rows == 0 {
		empty := t.Empty
		if empty == "" {
			empty = "(none)"
		}
		b.WriteString("\n" + st.Dim.Render(Fit("  "+empty, width)))
		return Lines(b.String(), width, height)
	}
	end := min(t.Offset+t.height, t.Rows)
	for r := t.Offset; r < end; r++ {
		cells := t.Cell(r)
		parts := make([]string, len(idx))
		for k, i := range idx {
			c := ""
			if i < len(cells) {
				// Cells are plain text from the host or a snapshot: escape them.
				c = quote.Term(cells[i])
			}
			parts[k] = Fit(c, widths[k])
		}
		marker := "  "
		if r == t.Cursor && t.Focused {
			marker = "▸ "
		}
		line := Fit(marker+strings.Join(parts, " "), width)
		switch {
		case r == t.Cursor && t.Focused:
			line = st.Selected.Render(line)
		case t.RowStyle != nil:
			line = t.RowStyle(r).Render(line)
		}
		b.WriteString("\n" + line)
	}
	return Lines(b.String(), width, height)
}

// Position describes where the cursor is: "row 12 of 1000000".
func (t *Table) Position() string {
	if t.Rows == 0 {
		return "0 rows"
	}
	return fmt.Sprintf("%d/%d", t.Cursor+1, t.Rows)
}
