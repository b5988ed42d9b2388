package ui

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/ui/common"
	"roundtrip/ui/pages"
)

// streamFake is a fakeBackend that streams routes as the live backend does
// (common.RouteStreamer). A stream can be held after gateAt routes until gate is closed, and
// can be interrupted once, as the kernel interrupts a dump of a table that changes.
type streamFake struct {
	*fakeBackend
	gate      chan struct{}
	gateAt    int
	interrupt int // when > 0, the first stream of a table starts again after that many routes

	smu       sync.Mutex
	asked     []int // the tables streamed, in order (0: all)
	cancelled []int // the tables whose stream ended because ctx did
}

func (f *streamFake) ReadStateWithoutRoutes(ctx context.Context) (*model.State, error) {
	s, err := f.ReadState(ctx)
	if err != nil {
		return nil, err
	}
	c := *s
	c.Routes = nil
	return &c, nil
}

// RouteCount answers like the kernel's count: what the state holds now.
func (f *streamFake) RouteCount(context.Context) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.state.Routes)
}

func (f *streamFake) EachRoute(ctx context.Context, _ *model.State, table int, restart func(), fn func(*model.Route) error) error {
	f.smu.Lock()
	f.asked = append(f.asked, table)
	interrupt := 0
	if table != 0 {
		interrupt, f.interrupt = f.interrupt, 0
	}
	f.smu.Unlock()
	f.mu.Lock()
	routes := f.state.Routes
	f.mu.Unlock()
	stop := func() error {
		f.smu.Lock()
		f.cancelled = append(f.cancelled, table)
		f.smu.Unlock()
		return ctx.Err()
	}
	n := 0
	for i := 0; i < len(routes); i++ {
		r := routes[i]
		if table != 0 && r.Table != table {
			continue
		}
		if f.gate != nil && n == f.gateAt {
			select {
			case <-f.gate:
			case <-ctx.Done():
				return stop()
			}
		}
		if ctx.Err() != nil {
			return stop()
		}
		if interrupt > 0 && n == interrupt {
			interrupt, n, i = 0, 0, -1
			restart()
			continue
		}
		if err := fn(&r); err != nil {
			return err
		}
		n++
	}
	return nil
}

func (f *streamFake) wasCancelled(table int) bool {
	f.smu.Lock()
	defer f.smu.Unlock()
	for _, t := range f.cancelled {
		if t == table {
			return true
		}
	}
	return false
}

// driver runs an App as bubbletea's loop does: every command in a goroutine of its own, the
// messages one at a time into Update, timers on the real clock.
type driver struct {
	t    testing.TB
	app  *App
	msgs chan tea.Msg
	done chan struct{}
}

func newDriver(t testing.TB, b common.Backend, w, h int) *driver {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := common.New(ctx, common.NewStyles(common.ModePlain), b)
	c.Now = func() time.Time { return testNow }
	c.After = func(d time.Duration, msg tea.Msg) tea.Cmd {
		return tea.Tick(d, func(time.Time) tea.Msg { return msg })
	}
	d := &driver{t: t, app: NewApp(c, false), msgs: make(chan tea.Msg, 64), done: make(chan struct{})}
	t.Cleanup(func() { cancel(); close(d.done) })
	d.send(tea.WindowSizeMsg{Width: w, Height: h})
	d.run(d.app.Init())
	return d
}

func (d *driver) run(cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	go func() {
		msg := cmd()
		select {
		case d.msgs <- msg:
		case <-d.done:
		}
	}()
}

func (d *driver) send(msg tea.Msg) {
	switch m := msg.(type) {
	case nil, tea.QuitMsg:
	case tea.BatchMsg:
		for _, c := range m {
			d.run(c)
		}
	default:
		_, cmd := d.app.Update(msg)
		d.run(cmd)
	}
}

func (d *driver) press(keys ...string) {
	for _, k := range keys {
		d.send(keyMsg(k))
	}
}

// until delivers messages until cond holds (checked after each), failing after 20 s.
func (d *driver) until(what string, cond func() bool) {
	d.t.Helper()
	timeout := time.After(20 * time.Second)
	for !cond() {
		select {
		case m := <-d.msgs:
			d.send(m)
		case <-timeout:
			d.t.Fatalf("waited 20 s for %s; the screen:\n%s", what, d.screen())
		}
	}
}

func (d *driver) screen() string { return ansi.Strip(d.app.Render()) }

func (d *driver) routing() *pages.Routing { return d.app.Page(PageRouting).(*pages.Routing) }

// streamHost is case 1's host with n more routes in main and n/10 in table 100.
func streamHost(t testing.TB, n int) *model.State {
	s := case1Host(t)
	gws := []netip.Addr{netip.MustParseAddr("10.72.1.1"), netip.MustParseAddr("192.168.72.253")}
	devs := []string{"eth0", "em1"}
	for i := range n {
		a := netip.AddrFrom4([4]byte{byte(11 + i>>16), byte(i >> 8), byte(i), 0})
		s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast,
			Dst: netip.PrefixFrom(a, 24), Gateway: gws[i%2], Dev: devs[i%2], Protocol: "bgp"})
		if i%10 == 0 {
			s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: 100, Type: model.RouteUnicast,
				Dst: netip.PrefixFrom(a, 24), Gateway: gws[1], Dev: devs[1], Protocol: "static"})
		}
	}
	s.Rules = append(s.Rules, model.Rule{Family: inet.V4, Priority: 1000, Action: model.ActionTable, Table: 100})
	return s
}

func tableRoutes(s *model.State, table int) []model.Route {
	var out []model.Route
	for _, r := range s.Routes {
		if r.Table == table {
			out = append(out, r)
		}
	}
	return out
}

// listed checks that the page lists exactly want, in order.
func listed(t testing.TB, p *pages.Routing, want []model.Route) {
	t.Helper()
	if p.Listed() != len(want) {
		t.Fatalf("the page lists %d routes, want %d", p.Listed(), len(want))
	}
	for i, w := range want {
		if got := p.ListedRoute(i); got.Dst != w.Dst || got.Gateway != w.Gateway || got.Dev != w.Dev || got.Table != w.Table {
			t.Fatalf("route %d listed is %v, want %v", i, got, w)
		}
	}
}

// With a backend that streams, the Routing page shows its first screen while the table is
// still being read (and while the app still reads every route for the doctor), then the whole
// table; scrolling to its end and back shows the right rows.
func TestStreamedRoutingFirstFrameBeforeAllRoutes(t *testing.T) {
	s := streamHost(t, 20000)
	be := &streamFake{fakeBackend: newFake(t, s), gate: make(chan struct{}), gateAt: 300}
	d := newDriver(t, be, 100, 30)
	d.press("2")
	p := d.routing()
	d.until("the first screen of main", func() bool { return p.Listed() >= 256 })
	if !p.Streaming() || !d.app.Loading() || d.app.State() != nil {
		t.Fatalf("streaming %v, app loading %v: the first frame should come before every route is read", p.Streaming(), d.app.Loading())
	}
	scr := d.screen()
	main := tableRoutes(s, model.TableMain)
	for _, w := range []string{"reading… ", "Rules (4, in order)", main[0].Dst.String(), "lookup 100"} {
		if !strings.Contains(scr, w) {
			t.Fatalf("the first frame lacks %q:\n%s", w, scr)
		}
	}
	// Only now does the app read every route (for the doctor); it says how far it got.
	d.until("the app reading every route", func() bool { return d.app.routesRead != nil })
	if scr := d.screen(); !strings.Contains(scr, "reading routes (") {
		t.Fatalf("the status line does not say that every route is read:\n%s", scr)
	}
	close(be.gate)
	d.until("the whole table and state", func() bool { return !p.Streaming() && d.app.State() != nil })
	listed(t, p, main)
	if len(d.app.State().Routes) != len(s.Routes) {
		t.Errorf("the app's state holds %d routes, want %d", len(d.app.State().Routes), len(s.Routes))
	}
	// Room for every route was made at once, from the backend's count (a large allocation is
	// rounded up to a page: 36 routes; appending would have grown the slice past it).
	if c := cap(d.app.State().Routes); c > len(s.Routes)+36 {
		t.Errorf("the app's routes have room for %d, want about the %d counted", c, len(s.Routes))
	}
	d.press("end")
	last := main[len(main)-1].Dst.String()
	if scr := d.screen(); !strings.Contains(scr, last) || !strings.Contains(scr, fmt.Sprintf("%d routes  %[1]d/%[1]d", len(main))) {
		t.Fatalf("at the end the screen lacks %s:\n%s", last, scr)
	}
	d.press("pgup", "pgup", "home", "down", "down", "down")
	if scr := d.screen(); !strings.Contains(scr, "▸ "+main[3].Dst.String()) || !strings.Contains(scr, fmt.Sprintf("4/%d", len(main))) {
		t.Fatalf("back at the top:\n%s", scr)
	}
	d.press("enter")
	if scr := d.screen(); !strings.Contains(scr, "ip -4 route add "+main[3].Args(s.TableName)) {
		t.Fatalf("the detail of the route under the cursor:\n%s", scr)
	}
}

// A filter typed while the table streams covers the routes read so far, then those that come
// (in commands once there are many); switching tables streams the other table and cancels the
// stream of the one left.
func TestStreamedRoutingFilterAndTableSwitch(t *testing.T) {
	s := streamHost(t, 120000)
	be := &streamFake{fakeBackend: newFake(t, s), gate: make(chan struct{}), gateAt: 2048}
	d := newDriver(t, be, 100, 30)
	d.press("2")
	p := d.routing()
	d.until("the first screen", func() bool { return p.Listed() >= 256 })
	for _, k := range []string{"/", "1", "1", ".", "1"} {
		d.press(k)
	}
	d.press("enter")
	f := common.ParseRouteFilter("11.1")
	var want []model.Route
	for _, r := range tableRoutes(s, model.TableMain) {
		if f.Match(&r) {
			want = append(want, r)
		}
	}
	d.until("the filter over the first routes", func() bool { return p.Listed() > 0 })
	if p.Listed() >= len(want) {
		t.Fatalf("%d routes match before the table is read, want fewer than %d", p.Listed(), len(want))
	}
	close(be.gate)
	d.until("the filter over the whole table and the state", func() bool {
		return !p.Streaming() && p.Listed() == len(want) && !d.app.Loading() && !d.app.analysing
	})
	listed(t, p, want)
	if scr := d.screen(); !strings.Contains(scr, fmt.Sprintf("%d of %d routes match", len(want), len(tableRoutes(s, model.TableMain)))) {
		t.Fatalf("the count of matches:\n%s", scr)
	}
	d.press("esc")
	d.until("the filter cleared", func() bool { return p.Listed() == len(tableRoutes(s, model.TableMain)) })

	// Table 100, while main is read again from a held stream: main's stream is cancelled.
	be.gate, be.gateAt = make(chan struct{}), 500
	d.press("r")
	d.until("main streaming again", func() bool { return p.Streaming() && p.Listed() >= 256 })
	d.press("]")
	if p.TableID() != 100 {
		t.Fatalf("after ] the page shows table %d, want 100", p.TableID())
	}
	d.until("main's stream cancelled", func() bool { return be.wasCancelled(model.TableMain) })
	close(be.gate)
	d.until("table 100", func() bool { return !p.Streaming() && d.app.State() != nil && !d.app.Loading() })
	listed(t, p, tableRoutes(s, 100))
}

// A dump the kernel interrupts starts again: the page drops what it had, lists no route twice.
func TestStreamedRoutingRestartedDump(t *testing.T) {
	s := streamHost(t, 5000)
	be := &streamFake{fakeBackend: newFake(t, s), interrupt: 3000}
	d := newDriver(t, be, 100, 30)
	d.press("2", "/", "e", "m", "1", "enter")
	p := d.routing()
	d.until("the table read", func() bool { return !p.Streaming() && d.app.State() != nil })
	var want []model.Route
	f := common.ParseRouteFilter("em1")
	for _, r := range tableRoutes(s, model.TableMain) {
		if f.Match(&r) {
			want = append(want, r)
		}
	}
	listed(t, p, want)
}

// Quitting cancels what still reads: the page's stream and the app's read of every route.
func TestStreamedRoutingCancelledOnQuit(t *testing.T) {
	s := streamHost(t, 2000)
	be := &streamFake{fakeBackend: newFake(t, s), gate: make(chan struct{}), gateAt: 300}
	d := newDriver(t, be, 100, 30)
	d.press("2")
	p := d.routing()
	d.until("the first screen, and the app reading every route", func() bool { return p.Listed() >= 256 && d.app.routesRead != nil })
	d.press("q")
	d.until("both streams cancelled", func() bool { return be.wasCancelled(model.TableMain) && be.wasCancelled(0) })
	d.until("the page's stream over", func() bool { return !p.Streaming() })
	if d.app.State() != nil {
		t.Error("the app took a state whose read was cancelled")
	}
}

// The app reads every route only once the Routing page has its first screen; esc before that
// cancels the read, and says so, without ever starting it.
func TestStreamedReadCancelledBeforeEveryRoute(t *testing.T) {
	s := streamHost(t, 2000)
	be := &streamFake{fakeBackend: newFake(t, s), gate: make(chan struct{}), gateAt: 10}
	d := newDriver(t, be, 100, 30)
	d.press("2")
	p := d.routing()
	d.until("the rules", func() bool { return len(p.Tables()) > 0 && strings.Contains(d.screen(), "lookup 100") })
	if d.app.routesRead != nil || !d.app.Loading() {
		t.Fatalf("the app reads every route before the page's first screen (loading %v)", d.app.Loading())
	}
	d.press("esc")
	d.until("the read cancelled", func() bool { return !d.app.Loading() })
	if !strings.Contains(d.app.Status(), "cancelled") {
		t.Errorf("status %q, want the read cancelled", d.app.Status())
	}
	be.smu.Lock()
	defer be.smu.Unlock()
	for _, table := range be.asked {
		if table == 0 {
			t.Error("every route was read after all")
		}
	}
	close(be.gate)
}

// r reads a streamed table again: the cursor comes back to the route it was on, at its place on
// the screen, once the stream reaches it (it used to end at the top of the table).
func TestStreamedRoutingReloadKeepsCursor(t *testing.T) {
	s := streamHost(t, 20000)
	be := &streamFake{fakeBackend: newFake(t, s)}
	d := newDriver(t, be, 100, 30)
	d.press("2")
	p := d.routing()
	main := tableRoutes(s, model.TableMain)
	d.until("main read", func() bool { return !p.Streaming() && d.app.State() != nil && !d.app.Loading() })
	d.press("end", "up", "up", "up", "up", "up")
	sel := "▸ " + main[len(main)-6].Dst.String()
	pos := fmt.Sprintf("%d/%d", len(main)-5, len(main))
	before := d.screen()
	if !strings.Contains(before, sel) || !strings.Contains(before, pos) {
		t.Fatalf("before r the cursor is not on %s (%s):\n%s", sel, pos, before)
	}
	be.gate, be.gateAt = make(chan struct{}), 500
	d.press("r")
	d.until("main streaming again", func() bool { return p.Streaming() && p.Listed() >= 256 })
	close(be.gate)
	d.until("main read again", func() bool { return !p.Streaming() && d.app.State() != nil && !d.app.Loading() })
	after := d.screen()
	if !strings.Contains(after, sel) || !strings.Contains(after, pos) {
		t.Fatalf("after r the cursor is not back on %s (%s):\n%s", sel, pos, after)
	}
	if strings.Index(before, sel) != strings.Index(after, sel) {
		t.Errorf("the cursor's row moved on the screen:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
