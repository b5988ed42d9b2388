package ui

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"roundtrip/engine/model/modeltest"
	"roundtrip/ui/common"
)

// runAll runs a command and the commands of its batches, and returns the messages they made.
func runAll(cmd tea.Cmd) []tea.Msg {
	if cmd == nil {
		return nil
	}
	switch m := cmd().(type) {
	case nil:
		return nil
	case tea.BatchMsg:
		var out []tea.Msg
		for _, c := range m {
			out = append(out, runAll(c)...)
		}
		return out
	default:
		return []tea.Msg{m}
	}
}

// analysisOf returns the doctor's message among msgs.
func analysisOf(t *testing.T, msgs []tea.Msg) common.AnalysisMsg {
	t.Helper()
	for _, m := range msgs {
		if am, ok := m.(common.AnalysisMsg); ok {
			return am
		}
	}
	t.Fatalf("no analysis among %d messages", len(msgs))
	return common.AnalysisMsg{}
}

// TestDoctorProgressAndCancel: while the doctor runs the status line shows its progress and
// that esc cancels it; esc cancels it (the overview says the check was cancelled, not that it
// found nothing), and r cancels the run it replaces.
func TestDoctorProgressAndCancel(t *testing.T) {
	s := modeltest.ScaleHost(t, 20_000)
	c := common.New(context.Background(), common.NewStyles(common.ModePlain), newFake(t, s))
	c.Now = func() time.Time { return testNow }
	c.After = func(time.Duration, tea.Msg) tea.Cmd { return nil }
	app := NewApp(c, false)
	app.seq = 1
	_, cmd := app.Update(common.StateMsg{Seq: 1, State: s, Routes: common.IndexRoutes(s)})
	if !strings.Contains(app.Render(), "indexing routes and checking the host…") {
		t.Fatalf("no word of the doctor while it starts:\n%s", app.Render())
	}
	app.progress.total.Store(100)
	app.progress.done.Store(50)
	if frame := app.Render(); !strings.Contains(frame, "checking the host ██████████░░░░░░░░░░ 50% (esc cancels)") {
		t.Fatalf("no progress while the doctor runs:\n%s", frame)
	}
	app.Update(keyMsg("esc"))
	am := analysisOf(t, runAll(cmd))
	if !errors.Is(am.Err, context.Canceled) || am.Findings != nil || am.FIB == nil {
		t.Fatalf("esc did not cancel the doctor: err %v, %d findings", am.Err, len(am.Findings))
	}
	app.Update(am)
	frame := app.Render()
	if app.analysing || !strings.Contains(app.Status(), "cancelled") || !strings.Contains(frame, "the check was cancelled") || strings.Contains(frame, "found no problems") {
		t.Fatalf("after the cancel: analysing %v, status %q\n%s", app.analysing, app.Status(), frame)
	}

	// r reads again: the doctor of the state it replaces is cancelled, its answer dropped.
	app.seq = 5
	_, cmd = app.Update(common.StateMsg{Seq: 5, State: s, Routes: common.IndexRoutes(s)})
	app.Update(keyMsg("r"))
	if am := analysisOf(t, runAll(cmd)); !errors.Is(am.Err, context.Canceled) {
		t.Fatalf("r did not cancel the doctor it replaces: %v", am.Err)
	}

	// Uncancelled, the findings arrive and the progress reached its end.
	app.seq = 9
	_, cmd = app.Update(common.StateMsg{Seq: 9, State: s, Routes: common.IndexRoutes(s)})
	pr := app.progress
	am = analysisOf(t, runAll(cmd))
	if am.Err != nil || len(am.Findings) == 0 || pr.done.Load() != pr.total.Load() || pr.total.Load() == 0 {
		t.Fatalf("doctor: %v, %d findings, progress %d/%d", am.Err, len(am.Findings), pr.done.Load(), pr.total.Load())
	}
	app.Update(am)
	if strings.Contains(app.Render(), "cancelled") {
		t.Fatalf("a finished doctor shown as cancelled:\n%s", app.Render())
	}
}
