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
