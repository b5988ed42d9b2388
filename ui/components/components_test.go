package components

import (
	"fmt"
	"strings"
	"testing"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"roundtrip/ui/common"
)

func TestTableDropsColumnsAndFillsWidth(t *testing.T) {
	tb := NewTable(common.NewStyles(common.ModePlain),
		Column{Title: "A", Width: 10},
		Column{Title: "FLEX", Width: 20, Flex: true, Min: 10},
		Column{Title: "LOW", Width: 12, Drop: 2},
		Column{Title: "MID", Width: 12, Drop: 1},
	)
	tb.SetRows(3)
	tb.Cell = func(i int) []string { return []string{"a", "a long cell that is cut", "low", "mid"} }
	wide := tb.View(80, 5)
	mid := tb.View(40, 5)
	narrow := tb.View(30, 5)
	for _, v := range []string{wide, mid, narrow} {
		lines := strings.Split(v, "\n")
		if len(lines) != 5 {
			t.Fatalf("%d lines:\n%s", len(lines), v)
		}
		for _, l := range lines {
			if w := ansi.StringWidth(l); w != ansi.StringWidth(lines[0]) {
				t.Fatalf("ragged lines:\n%s", v)
			}
		}
	}
	if !strings.Contains(wide, "LOW") || !strings.Contains(wide, "MID") {
		t.Fatalf("80 columns dropped a column:\n%s", wide)
	}
	// LOW (Drop 2) goes first, then MID.
	if strings.Contains(mid, "LOW") || !strings.Contains(mid, "MID") {
		t.Fatalf("40 columns:\n%s", mid)
	}
	if strings.Contains(narrow, "LOW") || strings.Contains(narrow, "MID") || !strings.Contains(narrow, "a long cell") {
		t.Fatalf("30 columns:\n%s", narrow)
	}
	tb.Update(tea.KeyPressMsg{Code: tea.KeyDown})
	tb.Update(tea.KeyPressMsg{Code: tea.KeyEnd})
	tb.Update(tea.KeyPressMsg{Code: tea.KeyDown})
	if tb.Cursor != 2 || tb.Position() != "3/3" {
		t.Fatalf("cursor %d", tb.Cursor)
	}
}

func TestWrap(t *testing.T) {
	got := Wrap("the reply 10.0.0.1:80 -> 10.0.0.2:5000 leaves by em1", 20, "  ")
	want := []string{"the reply", "  10.0.0.1:80 ->", "  10.0.0.2:5000", "  leaves by em1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q", got)
	}
	for _, l := range Wrap(strings.Repeat("x", 50), 20, "  ") {
		if ansi.StringWidth(l) > 20 {
			t.Fatalf("line %q is wider than 20", l)
		}
	}
}

func TestFormValidatesAsYouType(t *testing.T) {
	st := common.NewStyles(common.ModePlain)
	port := NewText(st, "port", "Port", "", "a port", func(v string) error {
		if v != "" && strings.Trim(v, "0123456789") != "" {
			return errBadPort
		}
		return nil
	})
	mode := NewChoice("mode", "Mode", []string{"from", "connmark"}, "from", "")
	f := NewForm(st, port, mode)
	f.Active = true
	for _, r := range "8x" {
		f.Update(tea.KeyPressMsg{Code: r, Text: string(r)})
	}
	if f.Valid() || !strings.Contains(f.FocusNote(80), "✗ not a port") {
		t.Fatalf("8x is accepted: %q", f.FocusNote(80))
	}
	f.Update(tea.KeyPressMsg{Code: tea.KeyBackspace})
	if !f.Valid() || f.Get("port") != "8" {
		t.Fatalf("after backspace: %q valid %v", f.Get("port"), f.Valid())
	}
	f.Update(tea.KeyPressMsg{Code: tea.KeyTab})
	f.Update(tea.KeyPressMsg{Code: tea.KeyRight})
	if f.Get("mode") != "connmark" {
		t.Fatalf("mode %q", f.Get("mode"))
	}
	if !strings.Contains(f.View(80), "‹ connmark ›") {
		t.Fatalf("view:\n%s", f.View(80))
	}
}

type portError struct{}

func (portError) Error() string { return "not a port" }

var errBadPort = portError{}

// TestFocusedFieldIsStyledOnce renders a focused field in colour and in mono: the text input's
// output, cursor included, must come through whole, not styled a second time rune by rune
// (which splits the cursor's escape sequence and prints it).
func TestFocusedFieldIsStyledOnce(t *testing.T) {
	for _, m := range []common.Mode{common.ModeMono, common.ModeColor} {
		st := common.NewStyles(m)
		f := NewForm(st, NewText(st, "filter", "Filter", "100.72", "", nil))
		f.Active = true
		v := f.View(60)
		if strings.Contains(v, "\x1b\x1b") || strings.ContainsAny(ansi.Strip(v), "[;") {
			t.Fatalf("mode %d: %q", m, v)
		}
		if got := strings.TrimRight(ansi.Strip(v), " "); got != "▸ Filter 100.72" {
			t.Fatalf("mode %d shows %q", m, got)
		}
		if !strings.Contains(v, "\x1b[") {
			t.Fatalf("mode %d: the focused field is not styled at all: %q", m, v)
		}
	}
}

func TestFullHelpListsEachKeyOnceInColumns(t *testing.T) {
	st := common.NewStyles(common.ModePlain)
	groups := [][]key.Binding{
		{common.Bind("esc", "leave the form", "esc"), common.Bind("enter", "trace", "enter")},
		{common.Bind("esc", "cancel / back", "esc"), common.Bind("q", "quit", "q"), common.Bind("x", strings.Repeat("long ", 20), "x")},
	}
	lines := FullHelp(st, groups, 40)
	text := strings.Join(lines, "\n")
	if strings.Count(text, "esc") != 1 || !strings.Contains(text, "leave the form") || strings.Contains(text, "cancel / back") {
		t.Fatalf("esc is not listed once with the page's meaning:\n%s", text)
	}
	for _, l := range lines {
		if ansi.StringWidth(l) > 40 {
			t.Fatalf("line wider than 40: %q", l)
		}
	}
	if !strings.Contains(text, "q     quit") && !strings.Contains(text, "q quit") {
		t.Fatalf("q is cut with the long entry:\n%s", text)
	}
}

func TestPagerMarksWhatIsOffTheFrame(t *testing.T) {
	var p Pager
	p.SetMarks(common.NewStyles(common.ModePlain))
	var lines []string
	for i := range 20 {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	p.SetLines(lines)
	seen := map[string]bool{}
	for range 10 {
		for _, l := range strings.Split(p.View(20, 6), "\n") {
			seen[strings.TrimSpace(l)] = true
		}
		p.Update(tea.KeyPressMsg{Code: tea.KeyPgDown})
	}
	for _, l := range lines {
		if !seen[l] {
			t.Fatalf("paging never shows %q (under a mark)", l)
		}
	}
	p.Offset = 0
	if v := p.View(20, 6); !strings.Contains(v, "↓ 15 more") || strings.Contains(v, "↑") {
		t.Fatalf("top:\n%s", v)
	}
}

// A table read again from the start (r on a streamed table) puts its cursor back on the row it
// was on, at the same place on the screen, once the rows come back that far; a route inserted
// before it moves it along; a key pressed meanwhile wins; a row gone leaves the cursor where
// it was.
func TestTableRefreshKeepsItsPlace(t *testing.T) {
	names := make([]string, 100000)
	for i := range names {
		names[i] = fmt.Sprintf("r%d", i)
	}
	tb := NewTable(common.NewStyles(common.ModePlain), Column{Title: "ROUTE", Width: 20})
	tb.Cell = func(i int) []string { return []string{names[i]} }
	tb.Key = func(i int) string { return names[i] }
	tb.SetRows(len(names))
	tb.View(40, 21) // 20 rows of data
	tb.MoveTo(60000)
	tb.Update(tea.KeyPressMsg{Code: tea.KeyUp})
	tb.Update(tea.KeyPressMsg{Code: tea.KeyUp})
	cur, down := tb.Cursor, tb.Cursor-tb.Offset
	if cur != 59998 || down != 17 {
		t.Fatalf("cursor %d, %d rows below the top; want 59998, 17", cur, down)
	}

	// The rows come back in chunks, one more route before the selected one.
	names = append([]string{"new"}, names...)
	tb.Refresh()
	for n := 0; n < 60000; n += 4096 {
		tb.SetRows(n)
		if tb.Cursor != max(n-1, 0) {
			t.Fatalf("with %d rows back the cursor is on %d, want the last row read", n, tb.Cursor)
		}
	}
	tb.SetRows(70000)
	if tb.Cursor != cur+1 || tb.Selected() != "r59998" || tb.Cursor-tb.Offset != down {
		t.Fatalf("cursor %d (%s), %d below the top; want %d (r59998), %d", tb.Cursor, tb.Selected(), tb.Cursor-tb.Offset, cur+1, down)
	}
	tb.SetRows(len(names))
	if tb.Selected() != "r59998" {
		t.Fatalf("the cursor left its row once every row was back: on %s", tb.Selected())
	}

	// A key pressed while the rows come back: the cursor is the operator's again.
	tb.Refresh()
	tb.SetRows(1000)
	tb.Update(tea.KeyPressMsg{Code: tea.KeyHome})
	tb.SetRows(len(names))
	if tb.Cursor != 0 {
		t.Fatalf("after home during the refresh the cursor is on %d, want 0", tb.Cursor)
	}

	// The row is gone: the cursor stays at its place.
	tb.MoveTo(500)
	names = append(names[:500:500], names[501:]...)
	tb.Refresh()
	tb.SetRows(len(names))
	if tb.Cursor != 500 {
		t.Fatalf("with its row gone the cursor went to %d, want 500", tb.Cursor)
	}

	// A table switch forgets the selection: no waiting for a row of another table.
	tb.MoveTo(700)
	tb.Reset()
	tb.Refresh()
	tb.SetRows(len(names))
	if tb.Cursor != 0 {
		t.Fatalf("after Reset the cursor is on %d, want 0", tb.Cursor)
	}
}
