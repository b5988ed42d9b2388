package common

import (
	"context"
	"fmt"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"roundtrip/engine/apply"
	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/model"
)

// Common is the context every page and component shares.
type Common struct {
	Ctx     context.Context
	Styles  *Styles
	Backend Backend
	// Now is the clock (tests fix it so that countdowns render the same every time).
	Now func() time.Time
	// After returns a command that delivers msg after d. Every timer of the console goes
	// through it, so tests can leave time out and send the messages themselves.
	After func(d time.Duration, msg tea.Msg) tea.Cmd
	// SSH is the operator's SSH_CONNECTION ("" when not logged in over SSH): an apply that
	// would change the route back to it is warned about and must keep a confirmation window.
	SSH string
}

// New returns a Common on the real clock.
func New(ctx context.Context, st *Styles, b Backend) *Common {
	return &Common{Ctx: ctx, Styles: st, Backend: b, Now: time.Now,
		After: func(d time.Duration, msg tea.Msg) tea.Cmd {
			return tea.Tick(d, func(time.Time) tea.Msg { return msg })
		}}
}

// StateMsg delivers a state read (or its failure). Seq tells reads apart, so that the answer
// of a read that was superseded is dropped.
type StateMsg struct {
	Seq    int
	State  *model.State
	Routes *RouteIndex
	Err    error
	Took   time.Duration
}

// BaseStateMsg delivers, from a backend that streams routes (RouteStreamer), the state without
// its routes, at once: the Routing page shows the rules and streams the table it shows while
// the app goes on reading every route (for the doctor), which then comes as a StateMsg of the
// same Seq.
type BaseStateMsg struct {
	Seq   int
	State *model.State
}

// FirstScreenMsg says that the Routing page has the first screen of the table it streams (or
// all of a smaller table): only then does the app start reading every route for the doctor,
// so that the two reads do not share the CPU before the first frame.
type FirstScreenMsg struct{ Seq int }

// AnalysisMsg delivers what is computed from a state after it arrives: the FIB that trace
// needs and the doctor's findings. It is computed in the background because a FIB of a
// million routes takes a while to build.
type AnalysisMsg struct {
	Seq      int
	State    *model.State
	FIB      *fib.FIB
	Findings []finding.Finding
	// Err is set when the doctor did not finish (cancelled with esc, or replaced by a new
	// read): Findings is nil then, the FIB is there.
	Err error
}

// OpenWizardMsg asks the app to open a wizard, filled from a finding's fix.
type OpenWizardMsg struct {
	Wizard string
	// Args are the fix's flags; a value it could not know is a placeholder (<GATEWAY>), which
	// the form leaves for the operator (or fills from what the console finds).
	Args    []string
	Missing string // the fix's word on what its placeholders stand for
	From    string // the finding it came from, for the title
}

// OpenFix returns the message that opens a finding's fix.
func OpenFix(f finding.Finding) OpenWizardMsg {
	return OpenWizardMsg{Wizard: f.Fix.Wizard, Args: f.Fix.Args, Missing: f.Fix.Missing, From: f.ID}
}

// ReloadMsg asks the app to read the state again (after an apply or rollback).
type ReloadMsg struct{}

// StatusMsg shows a line in the status bar until the next one.
type StatusMsg struct {
	Text  string
	Error bool
}

// PendingMsg tells the app which apply waits for confirmation (nil: none), so that the
// countdown shows on every page.
type PendingMsg struct {
	Journal *apply.Journal
	Err     error
}

// JournalMsg delivers a journal as it is now (confirmed, rolled back by the revert timer, ...),
// so that every page shows the apply's state as it is, not as it was when it was made.
type JournalMsg struct {
	Journal *apply.Journal
}

// Status returns a command that shows a status line.
func Status(text string) tea.Cmd {
	return func() tea.Msg { return StatusMsg{Text: text} }
}

// StatusError returns a command that shows an error in the status line.
func StatusError(err error) tea.Cmd {
	return func() tea.Msg { return StatusMsg{Text: err.Error(), Error: true} }
}

// Countdown writes the time left as m:ss (0:00 once it is over).
func Countdown(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	secs := int((d + time.Second - 1) / time.Second)
	return fmt.Sprintf("%d:%02d", secs/60, secs%60)
}

// Duration writes a duration the way people say it: 30s, 1m, 2m30s.
func Duration(d time.Duration) string {
	if d >= time.Minute && d%time.Minute == 0 {
		return strings.TrimSuffix(d.String(), "0s")
	}
	return d.String()
}
