package pages

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"roundtrip/diagnose"
	"roundtrip/engine/kernel"
	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/kernel/nftrace"
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

// dropBackend's capture reports one packet and the kernel's drop of it, with the rule.
type dropBackend struct{ nopBackend }

func (dropBackend) Capture(ctx context.Context, _ *kernel.CaptureFilter, ready func(), emit func(diagnose.Event) error) (*diagnose.CaptureSummary, error) {
	ready()
	pkt := dropwatch.Packet{L3: "ipv4", Proto: 6, Src: netip.MustParseAddrPort("198.18.7.7:40000"), Dst: netip.MustParseAddrPort("10.0.0.5:80"), Flags: 0x02, Length: 60}
	emit(diagnose.Event{Type: diagnose.EventDrop, Conn: 1, Drop: &dropwatch.Drop{Iface: "rt-vxlan", Reason: "IP_RPFILTER", Words: dropwatch.Describe("IP_RPFILTER"),
		Location: dropwatch.Location{Symbol: "ip_rcv_finish_core"}, Packet: pkt}})
	emit(diagnose.Event{Type: diagnose.EventRule, Conn: 1, Rule: &nftrace.Step{Family: "ip", Table: "filter", Chain: "FORWARD", Handle: 4, Kind: "rule", Verdict: "accept", Packet: pkt}})
	emit(diagnose.Event{Type: diagnose.EventRule, Conn: 1, Rule: &nftrace.Step{Family: "ip", Table: "filter", Chain: "FORWARD", Handle: 5, Kind: "rule", Verdict: "drop",
		Rule: nftrace.RuleText{Iptables: "-A FORWARD -j DROP\x1b[31m"}, Packet: pkt}})
	<-ctx.Done()
	return &diagnose.CaptureSummary{}, nil
}

// The Diagnose page shows the kernel's drops of the flow and the rule verdicts that end a
// packet, with control characters escaped, and counts the drops.
func TestCaptureShowsKernelDrops(t *testing.T) {
	c := testCommon()
	c.Backend = dropBackend{}
	c.After = func(time.Duration, tea.Msg) tea.Cmd { return nil }
	s := bigTable(1)
	p := NewDiagnose(c)
	p.Update(common.StateMsg{State: s, Routes: common.IndexRoutes(s)})
	p.SetFlow("tcp", "198.18.7.7:40000", "10.0.0.5:80", "")
	p.Update(p.runTrace()())
	p.Update(tea.KeyPressMsg{Code: 'c', Text: "c"})
	defer p.stopCapture()
	// Ready, the drop, two rule steps: the page reads them as its commands would.
	for range 4 {
		m := <-p.capture.ch
		p.Update(m)
	}
	v := p.View(200, 30)
	for _, want := range []string{"kernel dropped [conn 1] IP_RPFILTER", "on rt-vxlan in ip_rcv_finish_core", "rule [conn 1] ip filter FORWARD handle 5: drop (-A FORWARD -j DROP\\x1b[31m)", "1 kernel drops"} {
		if !strings.Contains(v, want) {
			t.Errorf("the page does not show %q:\n%s", want, v)
		}
	}
	if strings.Contains(v, "handle 4") {
		t.Errorf("an accept step is shown:\n%s", v)
	}
}
