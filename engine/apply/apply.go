// Package apply holds the plain values of an apply (its options, its result, its journal's
// head, status and summary), apart from the kernel adapter that makes applies and writes their
// journals (engine/kernel), so that the console and the history need not import it.
package apply

import (
	"fmt"
	"time"

	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// Options are the choices of one apply.
type Options struct {
	// Confirm, when positive, starts a detached timer that rolls the apply back after this
	// long unless `roundtrip confirm` runs first.
	Confirm time.Duration
	// SSH is the operator's session; nil means the one SSH_CONNECTION names, if any. A plan
	// that changes how replies reach its client is refused unless Confirm or Force is given.
	SSH *plan.SSHSession
	// Force skips the SSH lockout check.
	Force bool
}

// Result is what an apply did.
type Result struct {
	Journal *Journal // nil when nothing needed changing
	Changes int      // in the plan
	Pending int      // of those, not in effect before
	Before  *model.State
	// Drift lists planned changes not in effect when the state was read back after the apply.
	Drift []string
	NoOp  bool
	// Lockout is set when the plan changes the route back to the operator's SSH client (the
	// apply went ahead with a confirmation window, or forced).
	Lockout *plan.Lockout
	// Notes are what the journal directory set aside on the way (an empty old journal).
	Notes []string
}

// Journal statuses.
const (
	StatusApplying       = "applying"        // steps under way, or the apply died (see Interrupted)
	StatusApplied        = "applied"         // done, no confirmation asked
	StatusPending        = "pending-confirm" // done; reverts at ConfirmBy unless confirmed
	StatusConfirmed      = "confirmed"
	StatusRolledBack     = "rolled-back"
	StatusRollbackFailed = "rollback-failed" // some undo step failed: see Errors
	StatusUnreadable     = "unreadable"      // corrupt or not trusted: see Problem; skipped
)

// Head is what a journal records before its first step.
type Head struct {
	ID        string        `json:"id"`
	Started   time.Time     `json:"started"`
	Intent    string        `json:"intent"`
	Namespace string        `json:"namespace,omitempty"`
	PID       int           `json:"pid"`
	Confirm   time.Duration `json:"confirm,omitempty"`
	Steps     int           `json:"steps"`   // in ID.steps
	Changes   int           `json:"changes"` // in the plan
	Pending   int           `json:"pending"` // of those, not in effect before the apply
}

// TimerID identifies a revert timer process across pid reuse and reboots.
type TimerID struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start,omitempty"` // clock ticks after boot (/proc/PID/stat)
	Boot  string `json:"boot,omitempty"`  // /proc/sys/kernel/random/boot_id
}

// Journal is what one apply actually did, and what happened to it since: the summary that
// history and the console show (the kernel adapter's journal adds what a rollback needs).
type Journal struct {
	Head

	Status      string    `json:"status"`
	AppliedAt   time.Time `json:"applied_at,omitzero"`
	ConfirmBy   time.Time `json:"confirm_by,omitzero"`
	ConfirmedAt time.Time `json:"confirmed_at,omitzero"`
	EndedAt     time.Time `json:"ended_at,omitzero"` // rolled back
	Reason      string    `json:"reason,omitempty"`  // why it was rolled back
	Errors      []string  `json:"errors,omitempty"`
	Drift       []string  `json:"drift,omitempty"`
	Timer       *TimerID  `json:"timer,omitempty"`
	// TimerDead is set (by List and Load) for a journal waiting for confirmation whose revert
	// timer process is gone: nothing will revert it by itself.
	TimerDead bool `json:"-"`
	// Problem says why an unreadable journal cannot be used.
	Problem string `json:"problem,omitempty"`
	// Empty is set for an unreadable journal without a head: its apply died before it
	// changed anything.
	Empty  bool `json:"empty,omitempty"`
	Legacy bool `json:"legacy,omitempty"` // written by roundtrip's first journal format

	Path string `json:"-"`
}

// Active reports whether the journal's changes are (or may be, after a crash) on the host.
func (j *Journal) Active() bool {
	switch j.Status {
	case StatusApplying, StatusApplied, StatusPending, StatusConfirmed, StatusRollbackFailed:
		return true
	}
	return false
}

// TimerPID returns the pid of the journal's revert timer (0 when it has none).
func (j *Journal) TimerPID() int {
	if j.Timer == nil {
		return 0
	}
	return j.Timer.PID
}

// String renders a one-line history entry.
func (j *Journal) String() string {
	s := fmt.Sprintf("%s  %-15s %d step(s)  %s", j.ID, j.Status, j.Steps, j.Intent)
	switch {
	case j.Status == StatusPending && j.TimerDead && time.Now().After(j.ConfirmBy):
		s += fmt.Sprintf("  (was due to revert at %s, but its revert timer died: the next apply or rollback reverts it; roundtrip confirm keeps it)", j.ConfirmBy.Local().Format("15:04:05"))
	case j.Status == StatusPending && j.TimerDead:
		s += fmt.Sprintf("  (its revert timer died: nothing reverts it at %s; run roundtrip confirm or roundtrip rollback)", j.ConfirmBy.Local().Format("15:04:05"))
	case j.Status == StatusPending:
		s += fmt.Sprintf("  (reverts at %s unless confirmed)", j.ConfirmBy.Local().Format("15:04:05"))
	case j.Status == StatusUnreadable:
		s += fmt.Sprintf("  (%s; it is skipped: check the host, then remove %s)", j.Problem, j.Path)
	}
	if j.Reason != "" {
		s += "  (" + j.Reason + ")"
	}
	return s
}

// LockoutError is returned when a plan would change how the server's replies reach the
// operator's SSH client and neither a confirmation window nor Force was given.
type LockoutError struct{ Lockout plan.Lockout }

func (e *LockoutError) Error() string {
	return "refusing to apply over SSH: " + e.Lockout.Reason + ", which may cut you off: apply with a confirmation window (it reverts unless confirmed from a new SSH session), or force it if you have another way in"
}
