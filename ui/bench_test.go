package ui

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/ui/common"
)

// millionRoutes is a host with a full-table-sized main table: 1M routes over two uplinks.
func millionRoutes(b *testing.B) *model.State {
	s := case1Host(b)
	gws := []netip.Addr{netip.MustParseAddr("10.72.1.1"), netip.MustParseAddr("192.168.72.253")}
	devs := []string{"eth0", "em1"}
	for i := range 1_000_000 {
		a := netip.AddrFrom4([4]byte{byte(11 + i>>16), byte(i >> 8), byte(i), 0})
		s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast,
			Dst: netip.PrefixFrom(a, 24), Gateway: gws[i%2], Dev: devs[i%2], Protocol: "bgp"})
	}
	return s
}

// BenchmarkFirstFrame1M measures what an operator waits for on a host with a million routes,
// once the kernel has answered: the app starts, takes the state (indexing the routes by
// table), and draws the Routing page. The FIB and the doctor, which follow in the background,
// are not part of it.
func BenchmarkFirstFrame1M(b *testing.B) {
	s := millionRoutes(b)
	be := newFake(b, s)
	b.ResetTimer()
	for b.Loop() {
		c := common.New(context.Background(), common.NewStyles(common.ModePlain), be)
		c.After = func(time.Duration, tea.Msg) tea.Cmd { return nil }
		app := NewApp(c, false)
		app.Update(tea.WindowSizeMsg{Width: 120, Height: 40})
		var state tea.Msg
		for _, cmd := range app.Init()().(tea.BatchMsg) {
			if cmd == nil {
				continue
			}
			if m, ok := cmd().(common.StateMsg); ok {
				state = m
			}
		}
		app.Update(state)
		app.Update(keyMsg("2"))
		frame := app.View().Content
		if !strings.Contains(frame, "1000004 routes") {
			b.Fatalf("frame:\n%s", frame)
		}
	}
}

// BenchmarkStreamedFirstFrame1M measures the first full frame of the Routing page with a backend
// that streams (as the live one does) a main table of a million routes: from the app's start
// to a frame that shows the rules and a screenful of routes, while the table and the app's
// read of every route go on. The backend streams from memory, so this is the console's own
// cost; roundtrip-bench measures it against a kernel.
func BenchmarkStreamedFirstFrame1M(b *testing.B) {
	s := millionRoutes(b)
	be := &streamFake{fakeBackend: newFake(b, s)}
	for b.Loop() {
		d := newDriver(b, be, 120, 40)
		d.press("2")
		p := d.routing()
		d.until("the first screen", func() bool { return p.Listed() >= 40 })
		if frame := d.screen(); !strings.Contains(frame, "11.0.0.0/24") || !strings.Contains(frame, "reading…") {
			b.Fatalf("frame:\n%s", frame)
		}
		b.StopTimer()
		d.app.Stop()
		d.until("the reads stopped", func() bool { return !p.Streaming() && !d.app.Loading() })
		b.StartTimer()
	}
}

// BenchmarkScrollKey1M measures one key on the Routing page of a streamed main table of a
// million routes, read whole: the key (pgdown, down, end, pgup, up, home in turn) and the
// frame drawn after it. It costs what one screen costs, wherever the cursor is.
func BenchmarkScrollKey1M(b *testing.B) {
	s := millionRoutes(b)
	be := &streamFake{fakeBackend: newFake(b, s)}
	d := newDriver(b, be, 120, 40)
	d.press("2")
	p := d.routing()
	d.until("the table and the state read", func() bool { return !p.Streaming() && d.app.State() != nil })
	d.app.Stop() // the doctor, which would run beside the keys
	b.ReportAllocs()
	keys := []tea.KeyPressMsg{keyMsg("pgdown"), keyMsg("down"), keyMsg("end"), keyMsg("pgup"), keyMsg("up"), keyMsg("home")}
	i := 0
	b.ResetTimer()
	for b.Loop() {
		d.app.Update(keys[i%len(keys)])
		_ = d.app.View()
		i++
	}
	b.StopTimer()
	if p.Listed() != 1_000_004 {
		b.Fatalf("%d routes listed", p.Listed())
	}
}
