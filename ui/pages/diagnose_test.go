package pages

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"roundtrip/diagnose"
	"roundtrip/engine/kernel"
	"roundtrip/ui/common"
)

// waitingBackend captures nothing until its context ends: a client that has not started yet.
type waitingBackend struct{ nopBackend }

func (waitingBackend) Capture(ctx context.Context, _ *kernel.CaptureFilter, ready func(), _ func(diagnose.Event) error) (*diagnose.CaptureSummary, error) {
	ready()
	<-ctx.Done()
	return &diagnose.CaptureSummary{}, nil
}

// TestCaptureClockRunsWithoutPackets starts a capture that sees no packet: the page must ask
// to be drawn again every second, so that its clock moves, and stop asking once it is off.
func TestCaptureClockRunsWithoutPackets(t *testing.T) {
	c := testCommon()
	c.Backend = waitingBackend{}
	now := c.Now()
	c.Now = func() time.Time { return now }
	var timers []tea.Msg
	c.After = func(_ time.Duration, msg tea.Msg) tea.Cmd {
		timers = append(timers, msg)
		return nil
	}
	s := bigTable(1)
	p := NewDiagnose(c)
	p.Update(common.StateMsg{State: s, Routes: common.IndexRoutes(s)})
	p.SetFlow("tcp", "198.18.7.7:40000", "10.0.0.5:80", "")
	msg := p.runTrace()()
	p.Update(msg)
	if p.Result() == nil {
		t.Fatal("no trace")
	}
	start := p.Update(tea.KeyPressMsg{Code: 'c', Text: "c"})
	defer p.stopCapture()
	if v := p.View(80, 24); !strings.Contains(v, "starting") {
		t.Fatalf("before the kernel keeps packets the capture says it runs:\n%s", v)
	}
	// The first message of the capture's channel: it runs. (The next wait would block: the
	// capture sees nothing.)
	switch m := start().(type) {
	case tea.BatchMsg:
		for _, cmd := range m {
			if cmd != nil {
				p.Update(cmd())
			}
		}
	default:
		p.Update(m)
	}
	for sec := 1; sec <= 3; sec++ {
		var tick tea.Msg
		for _, m := range timers {
			if fmt.Sprintf("%T", m) == "pages.captureTick" {
				tick = m
			}
		}
		if tick == nil {
			t.Fatalf("second %d: the running capture set no timer to redraw its clock", sec)
		}
		timers = nil
		now = now.Add(time.Second)
		p.Update(tick)
		if v := p.View(80, 24); !strings.Contains(v, fmt.Sprintf("running %ds", sec)) {
			t.Fatalf("second %d:\n%s", sec, v)
		}
	}
	p.stopCapture()
	timers = nil
	p.Update(captureTick{gen: p.capture.gen})
	if len(timers) != 0 {
		t.Fatal("a stopped capture keeps its clock running")
	}
}
