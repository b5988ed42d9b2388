// Package pages holds the console's pages: Overview, Routing, NAT, Conntrack, Diagnose and
// Wizards. Each keeps its own state, reads the host only through tea.Cmds, and draws itself
// into the area the app gives it.
package pages

import (
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// Page is one tab of the console.
type Page interface {
	// Title is the name in the tab bar.
	Title() string
	// Update handles a message: the app forwards every key when the page is active, and
	// every other message to every page.
	Update(msg tea.Msg) tea.Cmd
	// View draws the page in exactly width×height cells.
	View(width, height int) string
	// Capturing reports that a text field has the keyboard, so that the app leaves letters
	// and digits to the page.
	Capturing() bool
	// ShortHelp and FullHelp are the page's bindings for the help bar.
	ShortHelp() []key.Binding
	FullHelp() [][]key.Binding
}

// Activator is implemented by pages that start or stop work when they are shown or hidden
// (the conntrack page's refresh).
type Activator interface {
	Activate() tea.Cmd
	Deactivate()
}

// Clicker is implemented by pages that take mouse clicks at a position inside their area.
type Clicker interface {
	Click(x, y int) tea.Cmd
}
