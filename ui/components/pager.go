package components

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"roundtrip/ui/common"
)

// Pager scrolls a block of lines (a plan script, a diff, a finding's evidence). Only the
// visible lines are cut and padded.
type Pager struct {
	lines  []string
	Offset int
	height int
	// Marks says where the text goes on past the frame: the first line shown becomes
	// "↑ N more" and the last "↓ N more", so that nothing is cut without a sign.
	Marks  bool
	styles *common.Styles
}

// SetText replaces the content; the scroll position is kept when it still fits.
func (p *Pager) SetText(s string) {
	p.SetLines(strings.Split(strings.TrimSuffix(s, "\n"), "\n"))
}

// SetLines replaces the content with lines. Tabs are expanded: a terminal would move them
// to its own tab stops and break the frame.
func (p *Pager) SetLines(lines []string) {
	for i, l := range lines {
		if strings.Contains(l, "\t") {
			lines[i] = strings.ReplaceAll(l, "\t", "    ")
		}
	}
	p.lines = lines
	p.clamp()
}

// Len is the number of lines.
func (p *Pager) Len() int { return len(p.lines) }

func (p *Pager) clamp() {
	if p.Offset > len(p.lines)-max(p.height, 1) {
		p.Offset = len(p.lines) - max(p.height, 1)
	}
	if p.Offset < 0 {
		p.Offset = 0
	}
}

// ScrollTo makes line i visible.
func (p *Pager) ScrollTo(i int) {
	if i < p.Offset {
		p.Offset = i
	}
	if h := max(p.height, 1); i >= p.Offset+h {
		p.Offset = i - h + 1
	}
	p.clamp()
}

// Update scrolls on navigation keys and the wheel; it reports whether it used the message.
func (p *Pager) Update(msg tea.Msg) bool {
	page := max(p.height-1, 1)
	if p.Marks {
		// The first and last lines shown may be marks: a page moves by the lines between, so
		// that the line under a mark shows on the next page.
		page = max(p.height-2, 1)
	}
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		k := common.Keys
		switch {
		case key.Matches(msg, k.Up):
			p.Offset--
		case key.Matches(msg, k.Down):
			p.Offset++
		case key.Matches(msg, k.PageUp):
			p.Offset -= page
		case key.Matches(msg, k.PageDown):
			p.Offset += page
		case key.Matches(msg, k.Home):
			p.Offset = 0
		case key.Matches(msg, k.End):
			p.Offset = len(p.lines)
		default:
			return false
		}
	case tea.MouseWheelMsg:
		switch msg.Mouse().Button {
		case tea.MouseWheelUp:
			p.Offset -= 3
		case tea.MouseWheelDown:
			p.Offset += 3
		default:
			return false
		}
	default:
		return false
	}
	p.clamp()
	return true
}

// SetMarks turns the more-marks on, drawn in st's dim style.
func (p *Pager) SetMarks(st *common.Styles) { p.Marks, p.styles = true, st }

// View renders exactly height lines of width cells.
func (p *Pager) View(width, height int) string {
	p.height = max(height, 1)
	p.clamp()
	end := min(p.Offset+height, len(p.lines))
	shown := make([]string, 0, end-p.Offset)
	shown = append(shown, p.lines[p.Offset:end]...)
	if p.Marks && height >= 2 {
		dim := func(s string) string { return s }
		if p.styles != nil {
			dim = func(s string) string { return p.styles.Dim.Render(s) }
		}
		if p.Offset > 0 {
			shown[0] = dim(fmt.Sprintf("  ↑ %d more (pgup)", p.Offset+1))
		}
		if rest := len(p.lines) - end; rest > 0 {
			shown[len(shown)-1] = dim(fmt.Sprintf("  ↓ %d more (pgdn)", rest+1))
		}
	}
	return Lines(strings.Join(shown, "\n"), width, height)
}
