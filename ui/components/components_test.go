package components

import (
	"strings"
	"testing"

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
