// Package components holds the console's building blocks: a virtualised table, a pager, the
// tab bar, the help bar and form fields.
package components

import (
	"strings"

	"github.com/charmbracelet/x/ansi"

	"roundtrip/engine/quote"
)

// Fit cuts or pads a (possibly styled) string to exactly w cells.
func Fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	n := ansi.StringWidth(s)
	if n > w {
		return ansi.Truncate(s, w, "…")
	}
	return s + strings.Repeat(" ", w-n)
}

// Cut shortens a string to at most w cells, marking the cut with an ellipsis.
func Cut(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if ansi.StringWidth(s) > w {
		return ansi.Truncate(s, w, "…")
	}
	return s
}

// Lines cuts every line of s to w cells and pads or trims the block to exactly h lines, so
// that pages always fill their area and never push the help bar off the screen.
func Lines(s string, w, h int) string {
	if h <= 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) > h {
		lines = lines[:h]
	}
	for i, l := range lines {
		lines[i] = Fit(l, w)
	}
	for len(lines) < h {
		lines = append(lines, strings.Repeat(" ", w))
	}
	return strings.Join(lines, "\n")
}

// Wrap breaks plain text into lines of at most w cells at spaces; continuation lines start
// with indent. A word longer than a line is broken across lines, never cut: wrapped text is
// how a cut line is read whole. The text's words are escaped for the terminal
// (quote.Term): it holds names from the host or a snapshot.
func Wrap(text string, w int, indent string) []string {
	var out []string
	line := ""
	limit := max(w, ansi.StringWidth(indent)+1)
	empty := func() bool { return line == "" || line == indent }
	for _, word := range strings.Fields(text) {
		word = quote.Term(word)
		sep := " "
		if empty() {
			sep = ""
		}
		if ansi.StringWidth(line)+len(sep)+ansi.StringWidth(word) > limit && !empty() {
			out = append(out, line)
			line, sep = indent, ""
		}
		line += sep + word
		for ansi.StringWidth(line) > limit {
			out = append(out, ansi.Truncate(line, limit, ""))
			line = indent + ansi.TruncateLeft(line, limit, "")
		}
	}
	if !empty() {
		out = append(out, line)
	}
	if len(out) == 0 {
		out = []string{""}
	}
	return out
}
