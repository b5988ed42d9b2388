// Package common holds what the console's app, pages and components share: styles, key
// bindings, messages, the route index and the Backend through which every kernel call is made.
package common

import (
	"os"

	"charm.land/bubbles/v2/help"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/colorprofile"
)

// Mode is how much styling the terminal gets.
type Mode int

// Styling modes. Plain is for tests and terminals that take no escape sequences at all; Mono
// keeps bold, reverse and underline for NO_COLOR and monochrome terminals; Color is the rest.
const (
	ModePlain Mode = iota
	ModeMono
	ModeColor
)

// ModeFor picks the styling mode for a colour profile (colorprofile.Detect honours NO_COLOR,
// CLICOLOR_FORCE and TERM=dumb).
func ModeFor(p colorprofile.Profile) Mode {
	switch p {
	case colorprofile.NoTTY:
		return ModePlain
	case colorprofile.Ascii:
		return ModeMono
	}
	return ModeColor
}

// DetectMode picks the styling mode for the process's standard output and environment.
func DetectMode() Mode { return ModeFor(colorprofile.Detect(os.Stdout, os.Environ())) }

// Styles are every style the console uses. Meaning never rests on colour alone: selections
// carry a marker and mismatches a cross, so a dumb terminal shows everything too.
type Styles struct {
	Mode Mode

	App         lipgloss.Style // the product name in the tab bar
	TabActive   lipgloss.Style
	TabInactive lipgloss.Style
	Header      lipgloss.Style // column headers and section titles
	Selected    lipgloss.Style // the cursor row
	Dim         lipgloss.Style
	Bold        lipgloss.Style
	Error       lipgloss.Style
	Warning     lipgloss.Style
	Info        lipgloss.Style
	OK          lipgloss.Style
	Decisive    lipgloss.Style // the rule or route that decided a path
	Mismatch    lipgloss.Style // where the reply leg parts from the request leg
	Input       lipgloss.Style // a focused form field
	Label       lipgloss.Style
	Status      lipgloss.Style
	Help        help.Styles
}

// NewStyles returns the styles of a mode.
func NewStyles(m Mode) *Styles {
	s := &Styles{Mode: m}
	plain := lipgloss.NewStyle()
	s.App, s.TabActive, s.TabInactive, s.Header, s.Selected, s.Dim, s.Bold = plain, plain, plain, plain, plain, plain, plain
	s.Error, s.Warning, s.Info, s.OK, s.Decisive, s.Mismatch = plain, plain, plain, plain, plain, plain
	s.Input, s.Label, s.Status = plain, plain, plain
	s.Help = help.Styles{Ellipsis: plain, ShortKey: plain, ShortDesc: plain, ShortSeparator: plain,
		FullKey: plain, FullDesc: plain, FullSeparator: plain}
	if m == ModePlain {
		return s
	}
	bold := plain.Bold(true)
	s.App = bold
	s.TabActive = plain.Reverse(true).Bold(true)
	s.Header = bold
	s.Selected = plain.Reverse(true)
	s.Bold = bold
	s.Error = bold
	s.Warning = bold
	s.Decisive = bold
	s.Mismatch = plain.Bold(true).Underline(true)
	s.Input = plain.Underline(true)
	s.Help.ShortKey = bold
	s.Help.FullKey = bold
	if m == ModeMono {
		return s
	}
	red, yellow, green, cyan, grey := lipgloss.Color("1"), lipgloss.Color("3"), lipgloss.Color("2"), lipgloss.Color("6"), lipgloss.Color("8")
	s.App = bold.Foreground(cyan)
	s.TabActive = plain.Bold(true).Foreground(lipgloss.Color("0")).Background(cyan)
	s.TabInactive = plain.Foreground(lipgloss.Color("7"))
	s.Header = bold.Foreground(cyan)
	s.Selected = plain.Reverse(true)
	s.Dim = plain.Foreground(grey)
	s.Error = bold.Foreground(red)
	s.Warning = bold.Foreground(yellow)
	s.Info = plain.Foreground(cyan)
	s.OK = bold.Foreground(green)
	s.Decisive = bold.Foreground(yellow)
	s.Mismatch = bold.Foreground(red)
	s.Input = plain.Underline(true).Foreground(lipgloss.Color("15"))
	s.Label = plain.Foreground(cyan)
	s.Status = plain.Foreground(lipgloss.Color("7"))
	s.Help.ShortKey = bold.Foreground(cyan)
	s.Help.FullKey = bold.Foreground(cyan)
	s.Help.ShortDesc = plain.Foreground(lipgloss.Color("7"))
	s.Help.FullDesc = plain.Foreground(lipgloss.Color("7"))
	s.Help.ShortSeparator = plain.Foreground(grey)
	s.Help.FullSeparator = plain.Foreground(grey)
	s.Help.Ellipsis = plain.Foreground(grey)
	return s
}

// Severity returns the style of a finding severity.
func (s *Styles) Severity(sev string) lipgloss.Style {
	switch sev {
	case "error":
		return s.Error
	case "warning":
		return s.Warning
	}
	return s.Info
}
