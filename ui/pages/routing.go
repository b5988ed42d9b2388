package pages

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/ui/common"
	"roundtrip/ui/components"
)

// syncFilterLimit is the table size up to which a filter runs in Update: below it a filter
// takes well under a millisecond, so the result shows in the same frame as the keystroke.
// Bigger tables are filtered in a command, and a newer keystroke cancels an older filter.
const syncFilterLimit = 50000

// firstScreen is how many routes of a streamed table make the first frame: more than a screen
// holds, so that the first frame is full.
const firstScreen = 256

// streamTick is how often the count and the rows of a table being read are brought up to date.
const streamTick = 100 * time.Millisecond

// Routing shows the policy rules in order and the routes of one table at a time, filtered by
// address, prefix or device.
type Routing struct {
	c      *common.Common
	state  *model.State
	index  *common.RouteIndex
	table  int // position in index.Tables
	rows   []int32
	rules  *components.Table
	routes *components.Table
	// rulesFocus says the rules list has the cursor rather than the routes.
	rulesFocus bool

	filter       *components.Form
	filtering    bool // the filter field has the keyboard
	filterGen    int
	filterBusy   bool
	filterCancel context.CancelFunc
	// rulesTop and routesTop are the lines of the two lists' headers, as last drawn.
	rulesTop, routesTop int
	// detail shows the route or rule under the cursor whole; detailRule is the rule shown.
	detail     *components.Detail
	detailRule *model.Rule

	keys struct{ NextTable, PrevTable, Focus, Filter, ClearFilter, Detail key.Binding }

	// With a backend that streams routes (common.RouteStreamer), the page reads only the
	// table it shows, into store, as the kernel dumps it, and never looks at state.Routes
	// (which the app fills later, for the doctor); rows (when a filter is set) are positions
	// in the store.
	stream       common.RouteStreamer
	store        *common.RouteStore
	storeResets  int
	streamGen    int
	streamSeq    int // the read whose state the stream started from
	streamCancel context.CancelFunc
	streaming    bool
	streamErr    error
	// firstSent says that FirstScreenMsg went out for the read streamSeq.
	firstSent bool
	// parsed is the filter as parsed; filteredTo is how many routes of the store it has seen.
	parsed     common.RouteFilter
	filteredTo int
	scratch    model.Route
}

type routeFilterMsg struct {
	gen      int
	from, to int
	rows     []int32
	err      error
}

// routeStreamMsg says that more routes of the streamed table are there (done: all of them,
// or the read failed with err).
type routeStreamMsg struct {
	gen  int
	tick bool
	done bool
	err  error
}

// NewRouting returns the Routing page.
func NewRouting(c *common.Common) *Routing {
	p := &Routing{c: c}
	p.stream, _ = c.Backend.(common.RouteStreamer)
	p.keys.NextTable = common.Bind("]/→", "next table", "]", "right", "l")
	p.keys.PrevTable = common.Bind("[/←", "previous table", "[", "left", "h")
	p.keys.Focus = common.Bind("s", "rules ⇄ routes", "s")
	p.keys.Filter = common.Bind("/", "filter by address, prefix, dev", "/")
	p.keys.ClearFilter = common.Bind("esc", "clear filter", "esc")
	p.keys.Detail = common.Bind("enter", "the route or rule in full", "enter")
	p.rules = components.NewTable(c.Styles,
		components.Column{Title: "PRIO", Width: 6},
		components.Column{Title: "FAM", Width: 4, Drop: 1},
		components.Column{Title: "SELECTOR", Width: 24, Flex: true, Min: 12},
		components.Column{Title: "ACTION", Width: 22, Flex: true, Min: 12},
	)
	p.rules.Focused = false
	p.rules.Empty = "no rules"
	p.rules.Cell = p.ruleCells
	p.rules.Key = func(i int) string { return p.state.Rules[i].Args(p.state.TableName) }
	p.routes = components.NewTable(c.Styles,
		components.Column{Title: "DESTINATION", Width: 18, Flex: true, Min: 14},
		components.Column{Title: "GATEWAY", Width: 15},
		components.Column{Title: "DEV", Width: 10},
		components.Column{Title: "SRC", Width: 15, Drop: 3},
		components.Column{Title: "METRIC", Width: 6, Drop: 2},
		components.Column{Title: "PROTO", Width: 7, Drop: 4},
		components.Column{Title: "SCOPE", Width: 6, Drop: 5},
	)
	p.routes.Cell = p.routeCells
	p.routes.Key = func(i int) string {
		// What tells routes of a table apart, formatted cheaply: SetRows may ask thousands.
		r := p.routeAt(i)
		b := r.Dst.AppendTo(make([]byte, 0, 48))
		b = append(b, ' ')
		b = append(b, r.Type...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(r.Metric), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(r.TOS), 10)
		return string(b)
	}
	p.routes.Empty = "no routes"
	filter := components.NewText(c.Styles, "filter", "Filter", "", "address, prefix, dev NAME, via GW, type; enter keeps, esc clears", nil)
	filter.SetPlaceholder("10.1.2.3, 10.0.0.0/8, dev eth0 …")
	p.filter = components.NewForm(c.Styles, filter)
	return p
}

// Title implements Page.
func (p *Routing) Title() string { return "Routing" }

// Capturing implements Page.
func (p *Routing) Capturing() bool { return p.filtering }

// ShortHelp implements Page.
func (p *Routing) ShortHelp() []key.Binding {
	if p.filtering {
		return []key.Binding{common.Bind("enter", "keep filter", "enter"), p.keys.ClearFilter}
	}
	if p.detail != nil {
		if p.detailRule != nil {
			return []key.Binding{common.Bind("enter", "show its table", "enter"), common.Bind("esc", "back", "esc")}
		}
		return []key.Binding{common.Keys.Down, common.Bind("esc", "back", "esc")}
	}
	return []key.Binding{common.Bind("/", "filter", "/"), common.Bind("enter", "details", "enter"), p.keys.PrevTable, p.keys.NextTable, p.keys.Focus}
}

// FullHelp implements Page.
func (p *Routing) FullHelp() [][]key.Binding {
	k := common.Keys
	return [][]key.Binding{{k.Up, k.Down, k.PageUp, k.PageDown, k.Home, k.End},
		{p.keys.PrevTable, p.keys.NextTable, p.keys.Focus, p.keys.Detail},
		{p.keys.Filter, p.keys.ClearFilter}}
}

// TableID returns the id of the table shown.
func (p *Routing) TableID() int {
	if p.index == nil || len(p.index.Tables) == 0 {
		return model.TableMain
	}
	return p.index.Tables[p.table]
}

// Rows returns the positions (in State.Routes) of the routes listed, after the filter. A page
// that streams its table lists them by ListedRoute instead.
func (p *Routing) Rows() []int32 { return p.rows }

// Tables returns the ids of the tables offered, in order (none before a state is read).
func (p *Routing) Tables() []int {
	if p.index == nil {
		return nil
	}
	return p.index.Tables
}

// Listed returns how many routes are listed (after the filter; of a streamed table, those read
// so far).
func (p *Routing) Listed() int { return p.routes.Rows }

// ListedRoute returns the i-th route listed.
func (p *Routing) ListedRoute(i int) model.Route { return *p.routeAt(i) }

// Streaming reports whether the table shown is still being read.
func (p *Routing) Streaming() bool { return p.streaming }

// Stop cancels the reading and filtering under way (the console quits).
func (p *Routing) Stop() {
	if p.streamCancel != nil {
		p.streamCancel()
	}
	if p.filterCancel != nil {
		p.filterCancel()
	}
}

// routeAt returns the i-th route listed; for a streamed table it is decoded into a scratch
// value, valid until the next call.
func (p *Routing) routeAt(i int) *model.Route {
	if p.stream == nil {
		return &p.state.Routes[p.rows[i]]
	}
	pos := i
	if !p.parsed.Empty() {
		if i >= len(p.rows) {
			p.scratch = model.Route{}
			return &p.scratch
		}
		pos = int(p.rows[i])
	}
	if p.store == nil || !p.store.Route(pos, &p.scratch) {
		p.scratch = model.Route{}
	}
	return &p.scratch
}

// total returns how many routes the table shown holds (of a streamed table: read so far).
func (p *Routing) total() int {
	if p.stream != nil {
		if p.store == nil {
			return 0
		}
		return p.store.Len()
	}
	return len(p.index.ByTable[p.TableID()])
}

// streamTables lists the tables a streaming page offers: those that hold routes (once the whole
// state is read) and those the rules look up, main first, as IndexRoutes orders them.
func streamTables(s *model.State, ix *common.RouteIndex) *common.RouteIndex {
	out := &common.RouteIndex{}
	if ix != nil {
		out.Defaults = ix.Defaults
		out.Tables = slices.Clone(ix.Tables)
	}
	cand := []int{model.TableMain, model.TableLocal}
	for _, r := range s.Rules {
		if (r.Action == model.ActionTable || r.Action == "") && r.Table != 0 {
			cand = append(cand, r.Table)
		}
	}
	for _, t := range cand {
		if !slices.Contains(out.Tables, t) {
			out.Tables = append(out.Tables, t)
		}
	}
	common.SortTables(out.Tables)
	return out
}

// startStream reads the table shown from the start, cancelling the read of the one before.
func (p *Routing) startStream() tea.Cmd {
	if p.streamCancel != nil {
		p.streamCancel()
	}
	p.streamGen++
	gen, table, b, base := p.streamGen, p.TableID(), p.stream, p.state
	ctx, cancel := context.WithCancel(p.c.Ctx)
	p.streamCancel = cancel
	store := common.NewRouteStore()
	p.store, p.storeResets, p.streaming, p.streamErr = store, 0, true, nil
	p.rows = nil
	p.routes.Refresh()
	ready := make(chan struct{})
	var once sync.Once
	signal := func() { once.Do(func() { close(ready) }) }
	read := func() tea.Msg {
		defer cancel()
		n := 0
		err := b.EachRoute(ctx, base, table, func() { store.Reset(); n = 0 }, func(r *model.Route) error {
			store.Add(r)
			if n++; n == firstScreen {
				store.Flush()
				signal()
			}
			return nil
		})
		store.Flush()
		signal()
		return routeStreamMsg{gen: gen, done: true, err: err}
	}
	wait := func() tea.Msg { <-ready; return routeStreamMsg{gen: gen} }
	return tea.Batch(read, wait, p.c.After(streamTick, routeStreamMsg{gen: gen, tick: true}), p.refilter())
}

// streamed takes what the stream brought: the new rows, filtered when a filter is set.
func (p *Routing) streamed(msg routeStreamMsg) tea.Cmd {
	if msg.gen != p.streamGen {
		return nil
	}
	var cmds []tea.Cmd
	if msg.done {
		p.streaming, p.streamErr = false, msg.err
		if msg.err != nil && !errors.Is(msg.err, context.Canceled) {
			cmds = append(cmds, common.StatusError(fmt.Errorf("reading table %s: %w", p.state.TableName(p.TableID()), msg.err)))
		}
	} else if msg.tick && p.streaming {
		cmds = append(cmds, p.c.After(streamTick, routeStreamMsg{gen: msg.gen, tick: true}))
	}
	if !p.firstSent && (msg.done || p.store.Len() >= firstScreen) {
		p.firstSent = true
		seq := p.streamSeq
		cmds = append(cmds, func() tea.Msg { return common.FirstScreenMsg{Seq: seq} })
	}
	if r := p.store.Resets(); r != p.storeResets {
		// The kernel interrupted the dump and it started again: so does the filter.
		p.storeResets = r
		cmds = append(cmds, p.refilter())
	} else {
		cmds = append(cmds, p.extendFilter())
	}
	return tea.Batch(cmds...)
}

// extendFilter brings the rows of a streamed table up to what the store holds: the routes
// added since the last time are filtered (at once when they are few, else in a command).
func (p *Routing) extendFilter() tea.Cmd {
	if p.store == nil {
		return nil
	}
	n := p.store.Len()
	if p.parsed.Empty() {
		p.routes.SetRows(n)
		return nil
	}
	if p.filterBusy || p.filteredTo >= n {
		return nil
	}
	from, f, store := p.filteredTo, p.parsed, p.store
	if n-from <= syncFilterLimit {
		rows, _ := store.Filter(context.Background(), from, n, f)
		p.filteredTo = n
		p.setRows(append(p.rows, rows...))
		return nil
	}
	ctx, cancel := context.WithCancel(p.c.Ctx)
	p.filterCancel = cancel
	p.filterBusy = true
	gen := p.filterGen
	return func() tea.Msg {
		defer cancel()
		rows, err := store.Filter(ctx, from, n, f)
		return routeFilterMsg{gen: gen, from: from, to: n, rows: rows, err: err}
	}
}

// FilterText returns the filter as typed.
func (p *Routing) FilterText() string { return p.filter.Get("filter") }

// Update implements Page.
func (p *Routing) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case common.BaseStateMsg:
		if p.stream == nil {
			return nil
		}
		p.takeState(msg.State, streamTables(msg.State, nil))
		p.streamSeq, p.firstSent = msg.Seq, false
		return p.startStream()
	case common.StateMsg:
		if msg.Err != nil {
			return nil
		}
		if p.stream != nil {
			cur := p.TableID()
			p.takeState(msg.State, streamTables(msg.State, msg.Routes))
			if msg.Seq == p.streamSeq && p.store != nil && cur == p.TableID() {
				// The whole state of the read whose table is streamed already.
				return nil
			}
			p.streamSeq = msg.Seq
			return p.startStream()
		}
		p.takeState(msg.State, msg.Routes)
		// The old positions mean nothing in the new state: no rows until the filter has run
		// (the cursor stays where it was, for the selection to be found again near it).
		p.rows, p.routes.Rows = nil, 0
		return p.refilter()
	case routeStreamMsg:
		return p.streamed(msg)
	case routeFilterMsg:
		if msg.gen != p.filterGen {
			return nil
		}
		p.filterBusy = false
		if msg.err != nil {
			return nil
		}
		if p.stream == nil {
			p.setRows(msg.rows)
			return nil
		}
		if msg.from == p.filteredTo {
			p.filteredTo = msg.to
			p.setRows(append(p.rows, msg.rows...))
		}
		return p.extendFilter()
	case tea.KeyPressMsg:
		return p.key(msg)
	case tea.MouseWheelMsg:
		if p.rulesFocus {
			p.rules.Update(msg)
		} else {
			p.routes.Update(msg)
		}
	}
	return nil
}

// takeState shows a state's rules and offers its tables, staying on the table shown.
func (p *Routing) takeState(s *model.State, ix *common.RouteIndex) {
	cur := p.TableID()
	p.state, p.index = s, ix
	p.table = 0
	for i, t := range p.index.Tables {
		if t == cur {
			p.table = i
		}
	}
	p.rules.SetRows(len(p.state.Rules))
}

func (p *Routing) key(msg tea.KeyPressMsg) tea.Cmd {
	if p.detail != nil {
		if r := p.detailRule; r != nil && msg.String() == "enter" {
			p.detail, p.detailRule = nil, nil
			return p.showTable(r)
		}
		if p.detail.Update(msg) {
			p.detail, p.detailRule = nil, nil
		}
		return nil
	}
	if p.filtering {
		switch msg.String() {
		case "enter":
			p.filtering = false
			p.filter.Active = false
			return nil
		case "esc":
			p.filtering = false
			p.filter.Active = false
			p.filter.Fields[0].SetValue("")
			return p.refilter()
		}
		changed, cmd := p.filter.Update(msg)
		if changed {
			return tea.Batch(cmd, p.refilter())
		}
		return cmd
	}
	switch {
	case key.Matches(msg, p.keys.Filter):
		p.filtering = true
		p.filter.Active = true
		return nil
	case key.Matches(msg, p.keys.ClearFilter):
		if p.FilterText() != "" {
			p.filter.Fields[0].SetValue("")
			return p.refilter()
		}
	case key.Matches(msg, p.keys.Focus):
		p.rulesFocus = !p.rulesFocus
		p.rules.Focused, p.routes.Focused = p.rulesFocus, !p.rulesFocus
	case key.Matches(msg, p.keys.NextTable):
		return p.switchTable(+1)
	case key.Matches(msg, p.keys.PrevTable):
		return p.switchTable(-1)
	case key.Matches(msg, p.keys.Detail):
		p.openDetail()
	default:
		if p.rulesFocus {
			p.rules.Update(msg)
		} else {
			p.routes.Update(msg)
		}
	}
	return nil
}

// openDetail shows the rule or route under the cursor whole.
func (p *Routing) openDetail() {
	if p.state == nil {
		return
	}
	names := p.state.TableName
	if p.rulesFocus {
		if p.rules.Cursor >= len(p.state.Rules) {
			return
		}
		r := p.state.Rules[p.rules.Cursor]
		p.detail = components.NewDetail(p.c.Styles, fmt.Sprintf("Rule %d", r.Priority),
			"Rule", "ip "+r.Family.Flag()+" rule add "+r.Args(names), "Selects", r.Selectors(), "Then", r.ActionString(names))
		if r.Action == model.ActionTable || r.Action == "" {
			p.detailRule = &r
			p.detail.Hint = "enter shows table " + names(r.Table)
		}
		return
	}
	if p.routes.Rows == 0 {
		return
	}
	rc := *p.routeAt(p.routes.Cursor)
	r := &rc
	cells := p.routeCells(p.routes.Cursor)
	p.detail = components.NewDetail(p.c.Styles, "Route in table "+names(r.Table),
		"Route", "ip "+r.Family.Flag()+" route add "+r.Args(names), "Destination", cells[0])
	for _, f := range [][2]string{{"Gateway", cells[1]}, {"Device", cells[2]}, {"Source", cells[3]}, {"Metric", cells[4]},
		{"Protocol", cells[5]}, {"Scope", cells[6]}} {
		if f[1] != "" {
			p.detail.Add(f[0], f[1])
		}
	}
}

// showTable shows the routes of the table a rule looks up.
func (p *Routing) showTable(r *model.Rule) tea.Cmd {
	for i, t := range p.index.Tables {
		if t == r.Table {
			p.table = i
			p.rulesFocus = false
			p.rules.Focused, p.routes.Focused = false, true
			p.routes.Reset()
			if p.stream != nil {
				return p.startStream()
			}
			return p.refilter()
		}
	}
	return common.Status(fmt.Sprintf("table %s holds no routes", p.state.TableName(r.Table)))
}

func (p *Routing) switchTable(d int) tea.Cmd {
	if p.index == nil || len(p.index.Tables) == 0 {
		return nil
	}
	p.table = (p.table + d + len(p.index.Tables)) % len(p.index.Tables)
	p.routes.Reset()
	if p.stream != nil {
		return p.startStream()
	}
	return p.refilter()
}

func (p *Routing) setRows(rows []int32) {
	p.rows = rows
	p.routes.SetRows(len(rows))
}

// refilter applies the filter to the current table: at once for small tables, in a command
// for big ones (the old command is cancelled).
func (p *Routing) refilter() tea.Cmd {
	if p.index == nil {
		return nil
	}
	p.filterGen++
	if p.filterCancel != nil {
		p.filterCancel()
		p.filterCancel = nil
	}
	if p.stream != nil {
		p.parsed = common.ParseRouteFilter(p.FilterText())
		p.filterBusy, p.filteredTo = false, 0
		if !p.parsed.Empty() {
			p.setRows(nil)
		}
		return p.extendFilter()
	}
	all := p.index.ByTable[p.TableID()]
	f := common.ParseRouteFilter(p.FilterText())
	if f.Empty() || len(all) <= syncFilterLimit {
		rows, _ := common.FilterRoutes(context.Background(), p.state, all, f)
		p.filterBusy = false
		p.setRows(rows)
		return nil
	}
	ctx, cancel := context.WithCancel(p.c.Ctx)
	p.filterCancel = cancel
	p.filterBusy = true
	gen, s := p.filterGen, p.state
	return func() tea.Msg {
		rows, err := common.FilterRoutes(ctx, s, all, f)
		return routeFilterMsg{gen: gen, rows: rows, err: err}
	}
}

func (p *Routing) ruleCells(i int) []string {
	r := &p.state.Rules[i]
	fam := "v4"
	if r.Family == inet.V6 {
		fam = "v6"
	}
	return []string{fmt.Sprint(r.Priority), fam, r.Selectors(), r.ActionString(p.state.TableName)}
}

func (p *Routing) routeCells(i int) []string {
	r := p.routeAt(i)
	dst := "default"
	if r.Dst.Bits() != 0 {
		dst = r.Dst.String()
	}
	if r.Type != "" && r.Type != model.RouteUnicast {
		dst = r.Type + " " + dst
	}
	gw, dev := "", r.Dev
	if r.Gateway.IsValid() {
		gw = r.Gateway.String()
	}
	if len(r.Nexthops) > 0 {
		var gws, devs []string
		for _, nh := range r.Nexthops {
			if nh.Gateway.IsValid() {
				gws = append(gws, nh.Gateway.String())
			}
			devs = append(devs, nh.Dev)
		}
		gw, dev = strings.Join(gws, ","), strings.Join(devs, ",")
	}
	if r.OnLink {
		gw += " onlink"
	}
	src, metric := "", ""
	if r.Src.IsValid() {
		src = r.Src.String()
	}
	if r.Metric != 0 {
		metric = fmt.Sprint(r.Metric)
	}
	scope := r.Scope
	if scope == "universe" {
		scope = "" // the default: ip route does not print it either
	}
	return []string{dst, gw, dev, src, metric, r.Protocol, scope}
}

// View implements Page.
func (p *Routing) View(width, height int) string {
	st := p.c.Styles
	if p.state == nil {
		return components.Lines(st.Dim.Render("  reading state…"), width, height)
	}
	if p.detail != nil {
		return p.detail.View(width, height)
	}
	// Rules get up to a third of the page: they are few but decide everything.
	rulesH := min(len(p.state.Rules)+1, max(height/3, 3))
	var b strings.Builder
	b.WriteString(st.Header.Render(components.Fit(fmt.Sprintf(" Rules (%d, in order)", len(p.state.Rules)), width)) + "\n")
	p.rulesTop = 1
	b.WriteString(p.rules.View(width, rulesH) + "\n")

	id := p.TableID()
	all := p.total()
	title := fmt.Sprintf(" Table ‹ %s › %d of %d", p.state.TableName(id), p.table+1, max(len(p.index.Tables), 1))
	count := fmt.Sprintf("%d routes", all)
	if ft := p.FilterText(); ft != "" {
		count = fmt.Sprintf("%d of %d routes match", len(p.rows), all)
		if p.filterBusy {
			count = "filtering…"
		}
	}
	switch {
	case p.streaming:
		count = "reading… " + count
	case p.streamErr != nil && !errors.Is(p.streamErr, context.Canceled):
		count = "read failed: " + count
	case p.streamErr != nil:
		count = "read cancelled: " + count
	}
	if all > 0 {
		count += "  " + p.routes.Position()
	}
	gap := width - len([]rune(title)) - len([]rune(count)) - 1
	b.WriteString(st.Header.Render(components.Fit(title+strings.Repeat(" ", max(gap, 1))+count, width)) + "\n")
	used := rulesH + 2
	if p.filtering || p.FilterText() != "" {
		b.WriteString(p.filter.View(width) + "\n")
		used++
		if n := p.filter.FocusNote(width); n != "" {
			b.WriteString(n + "\n")
			used += strings.Count(n, "\n") + 1
		}
	}
	p.routesTop = used
	b.WriteString(p.routes.View(width, max(height-used, 2)))
	return components.Lines(b.String(), width, height)
}

// Click implements Clicker: a click on a rule or a route selects it and its list.
func (p *Routing) Click(x, y int) tea.Cmd {
	switch {
	case y > p.routesTop:
		p.rulesFocus = false
		p.routes.Click(y - p.routesTop - 1)
	case y > p.rulesTop && y < p.routesTop-1:
		p.rulesFocus = true
		p.rules.Click(y - p.rulesTop - 1)
	}
	p.rules.Focused, p.routes.Focused = p.rulesFocus, !p.rulesFocus
	return nil
}
