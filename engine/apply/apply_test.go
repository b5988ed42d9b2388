package apply

import (
	"strings"
	"testing"
	"time"
)

// A journal's one-line history entry says what the operator must do about it, and Active
// tells the journals whose changes may be on the host.
func TestJournalLine(t *testing.T) {
	later := time.Now().Add(time.Hour)
	for _, c := range []struct {
		j      Journal
		want   string
		active bool
	}{
		{Journal{Head: Head{ID: "j1", Intent: "roundtrip wizard x", Steps: 2}, Status: StatusApplied}, "j1  applied         2 step(s)  roundtrip wizard x", true},
		{Journal{Head: Head{ID: "j2"}, Status: StatusPending, ConfirmBy: later}, "unless confirmed", true},
		{Journal{Head: Head{ID: "j3"}, Status: StatusPending, ConfirmBy: later, TimerDead: true}, "its revert timer died: nothing reverts it", true},
		{Journal{Head: Head{ID: "j4"}, Status: StatusPending, ConfirmBy: time.Now().Add(-time.Hour), TimerDead: true}, "the next apply or rollback reverts it", true},
		{Journal{Head: Head{ID: "j5"}, Status: StatusUnreadable, Problem: "corrupt", Path: "/x/j5.journal"}, "corrupt; it is skipped: check the host, then remove /x/j5.journal", false},
		{Journal{Head: Head{ID: "j6"}, Status: StatusRolledBack, Reason: "not confirmed"}, "(not confirmed)", false},
		{Journal{Head: Head{ID: "j7"}, Status: StatusRollbackFailed}, "rollback-failed", true},
	} {
		if got := c.j.String(); !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want it to contain %q", c.j.ID, got, c.want)
		}
		if c.j.Active() != c.active {
			t.Errorf("%s (%s): active %v, want %v", c.j.ID, c.j.Status, c.j.Active(), c.active)
		}
	}
	if (&Journal{Timer: &TimerID{PID: 42}}).TimerPID() != 42 || (&Journal{}).TimerPID() != 0 {
		t.Error("TimerPID")
	}
}
