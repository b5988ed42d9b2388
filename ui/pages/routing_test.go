package pages

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

// bigTable returns a state whose main table holds n routes: 10.0.0.0/24, 10.0.1.0/24, ...
func bigTable(n int) *model.State {
	s := &model.State{Links: []model.Link{{Index: 1, Name: "lo", Kind: "loopback", Up: true}, {Index: 2, Name: "eth0", Kind: "veth", Up: true}}}
	s.Routes = make([]model.Route, 0, n+1)
	gw := netip.MustParseAddr("192.0.2.1")
	for i := range n {
		a := netip.AddrFrom4([4]byte{byte(10 + i>>16), byte(i >> 8), byte(i), 0})
		s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast,
			Dst: netip.PrefixFrom(a, 24), Gateway: gw, Dev: "eth0", Protocol: "bgp"})
	}
	s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: model.TableLocal, Type: model.RouteLocal,
		Dst: netip.MustParsePrefix("127.0.0.1/32"), Dev: "lo", Scope: "host", Protocol: "kernel"})
	s.Rules = []model.Rule{{Family: inet.V4, Priority: 0, Action: model.ActionTable, Table: model.TableLocal},
		{Family: inet.V4, Priority: 32766, Action: model.ActionTable, Table: model.TableMain}}
	return s
}

type nopBackend struct{ common.Backend }

func (nopBackend) Live() bool       { return true }
func (nopBackend) ReadOnly() string { return "" }
func (nopBackend) Where() string    { return "test" }

func testCommon() *common.Common {
	c := common.New(context.Background(), common.NewStyles(common.ModePlain), nopBackend{})
	c.Now = func() time.Time { return time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC) }
	c.After = func(time.Duration, tea.Msg) tea.Cmd { return nil }
	return c
}

func TestRoutingFormatsOnlyVisibleRows(t *testing.T) {
	s := bigTable(200000)
	p := NewRouting(testCommon())
	p.Update(common.StateMsg{State: s, Routes: common.IndexRoutes(s)})
	calls := 0
	cell := p.routes.Cell
	p.routes.Cell = func(i int) []string { calls++; return cell(i) }
	view := p.View(80, 24)
	if calls == 0 || calls > 24 {
		t.Fatalf("%d rows formatted for a 24-line view of 200000 routes", calls)
	}
	if !strings.Contains(view, "200000 routes") || !strings.Contains(view, "10.0.0.0/24") {
		t.Fatalf("view:\n%s", view)
	}
	// The end of the table is as cheap as its start.
	calls = 0
	p.Update(tea.KeyPressMsg{Code: tea.KeyEnd})
	view = p.View(80, 24)
	if calls > 24 || !strings.Contains(view, "200000/200000") || !strings.Contains(view, s.Routes[199999].Dst.String()) {
		t.Fatalf("%d rows formatted at the end:\n%s", calls, view)
	}
}

func TestRoutingFiltersBigTablesInCommands(t *testing.T) {
	s := bigTable(200000)
	p := NewRouting(testCommon())
	p.Update(common.StateMsg{State: s, Routes: common.IndexRoutes(s)})
	p.Update(tea.KeyPressMsg{Code: '/', Text: "/"})
	// Each keystroke starts a filter in a command; an older one's answer is dropped.
	var cmds []tea.Cmd
	for _, r := range "10.1.2.0/24" {
		cmds = append(cmds, p.Update(tea.KeyPressMsg{Code: r, Text: string(r)}))
	}
	if !p.filterBusy {
		t.Fatal("a filter of a big table ran in Update")
	}
	run := func(cmd tea.Cmd) tea.Msg {
		msg := cmd()
		if b, ok := msg.(tea.BatchMsg); ok {
			for _, c := range b {
				if c != nil {
					if m, ok := c().(routeFilterMsg); ok {
						return m
					}
				}
			}
		}
		return msg
	}
	last := run(cmds[len(cmds)-1])
	stale := run(cmds[len(cmds)-2])
	p.Update(last)
	p.Update(stale)
	rows := p.Rows()
	if len(rows) != 1 || s.Routes[rows[0]].Dst.String() != "10.1.2.0/24" {
		t.Fatalf("rows after filter: %v", rows)
	}
	if !strings.Contains(p.View(80, 24), "1 of 200000 routes match") {
		t.Fatal("the count of matches is not shown")
	}
}
