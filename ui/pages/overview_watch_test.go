package pages

import (
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"roundtrip/ui/common"
	"roundtrip/watch"
)

// watchBackend sees a watcher that routes around isp_a.
type watchBackend struct {
	nopBackend
	status *watch.Status
}

func (b watchBackend) WatchStatus() (*watch.Status, error) { return b.status, nil }

func TestOverviewShowsWatch(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	st := &watch.Status{Running: true, Failback: watch.FailbackNewFlows, Default: "isp_b", RoutedAround: []string{"isp_a"},
		WANs: []watch.WANStatus{
			{WANHealth: watch.WANHealth{Name: "isp_a", Health: watch.HealthDown, Since: at, Loss: 1}, Iface: "wan1"},
			{WANHealth: watch.WANHealth{Name: "isp_b", Health: watch.HealthUp, Since: at, RTT: 1200 * time.Microsecond}, Iface: "wan2"},
		},
		Events: []watch.Event{{At: at, Kind: "failover", Detail: "roundtrip watch: isp_a down; routing around isp_a", Changes: 1, Journal: "j1", Deleted: 2}}}
	c := testCommon()
	var ticks []tea.Msg
	c.After = func(_ time.Duration, msg tea.Msg) tea.Cmd { ticks = append(ticks, msg); return nil }
	c.Backend = watchBackend{status: st}
	o := NewOverview(c)
	s := bigTable(3)
	cmd := o.Update(common.StateMsg{State: s, Routes: common.IndexRoutes(s)})
	if cmd == nil {
		t.Fatal("a backend that sees a watcher gets no status read")
	}
	if cmd := o.Update(cmd()); cmd != nil {
		cmd()
	}
	if len(ticks) != 1 {
		t.Errorf("a running watcher is not read again: %d refreshes scheduled", len(ticks))
	}
	view := o.View(120, 60)
	for _, want := range []string{"WAN failover", "running, failback new-flows", "isp_a      wan1       down", "loss 100%",
		"isp_b      wan2       up", "rtt 1.2ms", "default via isp_b; routed around isp_a", "failover: isp_a down; routing around isp_a; 1 route change(s) (journal j1); 2 conntrack entries deleted"} {
		if !strings.Contains(view, want) {
			t.Errorf("the overview lacks %q:\n%s", want, view)
		}
	}
	// A stale refresh (from an earlier read) does nothing; without a watcher nothing shows.
	if cmd := o.Update(watchTick{seq: 0}); cmd != nil {
		t.Error("a superseded refresh read the status again")
	}
	p := NewOverview(testCommon())
	if cmd := p.Update(common.StateMsg{State: s, Routes: common.IndexRoutes(s)}); cmd != nil {
		t.Error("a backend without a watcher gets a status read")
	}
	if strings.Contains(p.View(120, 60), "WAN failover") {
		t.Error("the overview shows a watcher where there is none")
	}
}
