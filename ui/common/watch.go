package common

import (
	"time"

	tea "charm.land/bubbletea/v2"

	"roundtrip/watch"
)

// WatchReader is implemented by backends that can see the `roundtrip watch` of their
// namespace (the live one; a snapshot has no watcher).
type WatchReader interface {
	// WatchStatus returns the status the watcher last wrote, or nil when none has run here.
	WatchStatus() (*watch.Status, error)
}

// WatchMsg delivers the watcher's status; Seq tells reads apart, as StateMsg's does.
type WatchMsg struct {
	Seq    int
	Status *watch.Status
	Err    error
}

// WatchRefresh is how often a page showing a running watcher reads its status again.
const WatchRefresh = 2 * time.Second

// LoadWatch returns a command that reads the watcher's status, or nil when the backend cannot
// see one.
func LoadWatch(c *Common, seq int) tea.Cmd {
	r, ok := c.Backend.(WatchReader)
	if !ok {
		return nil
	}
	return func() tea.Msg {
		s, err := r.WatchStatus()
		return WatchMsg{Seq: seq, Status: s, Err: err}
	}
}
