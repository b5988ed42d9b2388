package pages

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"roundtrip/engine/conntrack"
	"roundtrip/engine/inet"
	"roundtrip/ui/common"
	"roundtrip/ui/components"
)

// conntrackMax bounds how many entries one refresh reads: enough to find a flow by filter on
// a busy box, small enough to refresh every few seconds.
const conntrackMax = 100000

// conntrackEvery is how often the table is read again while the page is shown.
const conntrackEvery = 2 * time.Second

// Conntrack lists the connection tracking table live: both tuples of each entry, so a NAT
// shows as the original and the reply tuple disagreeing, with the entry's state and flags.
type Conntrack struct {
	c       *common.Common
	entries []conntrack.Entry
	stats   conntrack.Stats
	shown   []int
	list    *components.Table
	err     error
	loaded  bool
	at      time.Time
	active  bool
	paused  bool
	busy    bool
	gen     int // refresh generation: a tick of an older activation is dropped
	cancel  context.CancelFunc

	filter    *components.Form
	filtering bool
	listTop   int // the line of the list's header, as last drawn (for mouse clicks)
	sortBy    int // index into conntrackSorts
	detail    *components.Detail

	keys struct{ Pause, Filter, Refresh, Sort, Detail key.Binding }
}

// conntrackSort is an order the list can be shown in.
type conntrackSort struct {
	name string
	cmp  func(a, b *conntrack.Entry) int
}

func byOrig(a, b *conntrack.Entry) int {
	return cmp.Or(cmp.Compare(a.Orig.Proto, b.Orig.Proto), a.Orig.Src.Compare(b.Orig.Src), a.Orig.Dst.Compare(b.Orig.Dst))
}

// conntrackSorts are the orders o cycles through; each ends in the source order, so rows do
// not jump between refreshes (the kernel dumps in hash order).
var conntrackSorts = []conntrackSort{
	{"source", byOrig},
	{"destination", func(a, b *conntrack.Entry) int {
		return cmp.Or(a.Orig.Dst.Compare(b.Orig.Dst), byOrig(a, b))
	}},
	{"state", func(a, b *conntrack.Entry) int {
		return cmp.Or(cmp.Compare(conntrackState(a), conntrackState(b)), byOrig(a, b))
	}},
	{"expiry", func(a, b *conntrack.Entry) int { return cmp.Or(cmp.Compare(a.Timeout, b.Timeout), byOrig(a, b)) }},
}

// conntrackState is the entry's state column: the TCP state, or for other protocols whether a
// reply was seen.
func conntrackState(e *conntrack.Entry) string {
	switch {
	case e.TCPState != "":
		return e.TCPState
	case e.Unreplied():
		return "UNREPLIED"
	}
	return "REPLIED"
}

type conntrackMsg struct {
	entries []conntrack.Entry
	stats   conntrack.Stats
	err     error
	at      time.Time
	sortBy  string
}

type conntrackTick struct{ gen int }

// NewConntrack returns the Conntrack page.
func NewConntrack(c *common.Common) *Conntrack {
	p := &Conntrack{c: c}
	p.keys.Pause = common.Bind("p", "pause/resume", "p")
	p.keys.Filter = common.Bind("/", "filter (addr, port, proto, state, dnat, snat, unreplied)", "/")
	p.keys.Refresh = common.Bind("ctrl+r", "read now", "ctrl+r")
	p.keys.Sort = common.Bind("o", "order by source, destination, state, expiry", "o")
	p.keys.Detail = common.Bind("enter", "the entry in full", "enter")
	// The state shows at 80 columns: the tuples give up width first (enter shows them whole).
	p.list = components.NewTable(c.Styles,
		components.Column{Title: "PROTO", Width: 5},
		components.Column{Title: "STATE", Width: 11},
		components.Column{Title: "ORIGINAL (src → dst)", Width: 30, Flex: true, Min: 24},
		components.Column{Title: "REPLY (src → dst)", Width: 30, Flex: true, Min: 24},
		components.Column{Title: "FLAGS", Width: 9, Drop: 1},
		components.Column{Title: "MARK", Width: 6, Drop: 4},
		components.Column{Title: "TTL", Width: 6, Drop: 5},
	)
	p.list.Cell = p.cells
	p.list.RowStyle = p.rowStyle
	p.list.Key = func(i int) string {
		e := &p.entries[p.shown[i]]
		return tupleText(e.Orig) + "|" + strconv.Itoa(int(e.Orig.Proto))
	}
	p.list.Empty = "no entries"
	f := components.NewText(c.Styles, "filter", "Filter", "", "words: address, port, tcp/udp/icmp, state, dnat, snat, unreplied", nil)
	p.filter = components.NewForm(c.Styles, f)
	return p
}

// Title implements Page.
func (p *Conntrack) Title() string { return "Conntrack" }

// Capturing implements Page.
func (p *Conntrack) Capturing() bool { return p.filtering }

// ShortHelp implements Page.
func (p *Conntrack) ShortHelp() []key.Binding {
	if p.filtering {
		return []key.Binding{common.Bind("enter", "keep filter", "enter"), common.Bind("esc", "clear", "esc")}
	}
	if p.detail != nil {
		return []key.Binding{common.Keys.Down, common.Bind("esc", "back", "esc")}
	}
	return []key.Binding{common.Bind("/", "filter", "/"), common.Bind("enter", "details", "enter"), common.Bind("o", "order", "o"), p.keys.Pause, p.keys.Refresh}
}

// FullHelp implements Page.
func (p *Conntrack) FullHelp() [][]key.Binding {
	k := common.Keys
	return [][]key.Binding{{k.Up, k.Down, k.PageUp, k.PageDown, k.Home, k.End},
		{p.keys.Filter, common.Bind("esc", "clear the filter", "esc"), p.keys.Detail, p.keys.Sort, p.keys.Pause, p.keys.Refresh}}
}

// Activate implements Activator: reading starts when the page is shown.
func (p *Conntrack) Activate() tea.Cmd {
	p.active = true
	p.gen++
	return p.read()
}

// Deactivate implements Activator: reading stops when the page is hidden.
func (p *Conntrack) Deactivate() {
	p.active = false
	p.gen++
	if p.cancel != nil {
		p.cancel()
	}
}

func (p *Conntrack) read() tea.Cmd {
	if p.busy || !p.c.Backend.Live() {
		return nil
	}
	p.busy = true
	ctx, cancel := context.WithTimeout(p.c.Ctx, 30*time.Second)
	p.cancel = cancel
	b, now, order := p.c.Backend, p.c.Now, conntrackSorts[p.sortBy]
	return func() tea.Msg {
		defer cancel()
		es, st, err := b.Conntrack(ctx, conntrackMax)
		// Sorted here, off the screen's loop: a hundred thousand entries take a moment.
		slices.SortFunc(es, func(a, b conntrack.Entry) int { return order.cmp(&a, &b) })
		return conntrackMsg{entries: es, stats: st, err: err, at: now(), sortBy: order.name}
	}
}

// Update implements Page.
func (p *Conntrack) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case conntrackMsg:
		p.busy = false
		p.err = msg.err
		if msg.err == nil {
			// The list's Key keeps the cursor on its connection.
			p.entries, p.stats, p.loaded, p.at = msg.entries, msg.stats, true, msg.at
			if msg.sortBy != conntrackSorts[p.sortBy].name {
				p.sort()
			}
			p.applyFilter()
		}
		if p.active {
			return p.c.After(conntrackEvery, conntrackTick{gen: p.gen})
		}
	case conntrackTick:
		if msg.gen == p.gen && p.active && !p.paused {
			return p.read()
		}
		if msg.gen == p.gen && p.active {
			return p.c.After(conntrackEvery, conntrackTick{gen: p.gen})
		}
	case tea.KeyPressMsg:
		if p.detail != nil {
			if p.detail.Update(msg) {
				p.detail = nil
			}
			return nil
		}
		if p.filtering {
			switch msg.String() {
			case "enter":
				p.filtering, p.filter.Active = false, false
			case "esc":
				p.filtering, p.filter.Active = false, false
				p.filter.Fields[0].SetValue("")
				p.applyFilter()
			default:
				if changed, cmd := p.filter.Update(msg); changed {
					p.applyFilter()
					return cmd
				}
			}
			return nil
		}
		switch {
		case key.Matches(msg, p.keys.Pause):
			p.paused = !p.paused
		case key.Matches(msg, p.keys.Refresh):
			return p.read()
		case key.Matches(msg, p.keys.Filter):
			p.filtering, p.filter.Active = true, true
		case key.Matches(msg, p.keys.Sort):
			p.sortBy = (p.sortBy + 1) % len(conntrackSorts)
			p.sort()
			p.applyFilter()
		case key.Matches(msg, p.keys.Detail):
			if len(p.shown) > 0 {
				p.detail = conntrackDetail(p.c.Styles, &p.entries[p.shown[p.list.Cursor]])
			}
		case msg.String() == "esc":
			p.filter.Fields[0].SetValue("")
			p.applyFilter()
		default:
			p.list.Update(msg)
		}
	case tea.MouseWheelMsg:
		p.list.Update(msg)
	}
	return nil
}

// sort puts the entries in the chosen order.
func (p *Conntrack) sort() {
	order := conntrackSorts[p.sortBy]
	slices.SortFunc(p.entries, func(a, b conntrack.Entry) int { return order.cmp(&a, &b) })
}

// SortedBy names the order of the list.
func (p *Conntrack) SortedBy() string { return conntrackSorts[p.sortBy].name }

// conntrackDetail shows an entry whole: both tuples, the NAT they imply, state, mark, timer.
func conntrackDetail(st *common.Styles, e *conntrack.Entry) *components.Detail {
	d := components.NewDetail(st, fmt.Sprintf("Connection %s %s", inet.ProtoName(int(e.Orig.Proto)), tupleText(e.Orig)),
		"Original", tupleText(e.Orig), "Reply", tupleText(e.Reply), "State", conntrackState(e),
		"Status", e.Status.String())
	if e.DNAT() {
		d.Add("DNAT", fmt.Sprintf("%s is answered by %s", conntrack.Endpoint(e.Orig.Proto, e.Orig.Dst), conntrack.Endpoint(e.Orig.Proto, e.Reply.Src)))
	}
	if e.SNAT() {
		d.Add("SNAT", fmt.Sprintf("%s leaves as %s", conntrack.Endpoint(e.Orig.Proto, e.Orig.Src), conntrack.Endpoint(e.Orig.Proto, e.Reply.Dst)))
	}
	if e.Mark != 0 {
		d.Add("Mark", fmt.Sprintf("%#x", e.Mark))
	}
	if e.Zone != 0 {
		d.Add("Zone", fmt.Sprint(e.Zone))
	}
	d.Add("Expires in", fmt.Sprintf("%d s", e.Timeout))
	if e.OrigPackets+e.ReplyPackets > 0 {
		d.Add("Counters", fmt.Sprintf("%d packets (%d bytes) out, %d packets (%d bytes) back", e.OrigPackets, e.OrigBytes, e.ReplyPackets, e.ReplyBytes))
	}
	return d
}

// conntrackWord reports whether an entry matches one filter word.
func conntrackWord(e *conntrack.Entry, w string) bool {
	if a, err := netip.ParseAddr(w); err == nil {
		a = a.Unmap()
		for _, ap := range []netip.AddrPort{e.Orig.Src, e.Orig.Dst, e.Reply.Src, e.Reply.Dst} {
			if ap.Addr() == a {
				return true
			}
		}
		return false
	}
	if pf, err := netip.ParsePrefix(w); err == nil {
		for _, ap := range []netip.AddrPort{e.Orig.Src, e.Orig.Dst, e.Reply.Src, e.Reply.Dst} {
			if pf.Contains(ap.Addr()) {
				return true
			}
		}
		return false
	}
	if n, err := strconv.Atoi(w); err == nil {
		for _, ap := range []netip.AddrPort{e.Orig.Src, e.Orig.Dst, e.Reply.Src, e.Reply.Dst} {
			if int(ap.Port()) == n {
				return true
			}
		}
		return false
	}
	switch w {
	case "unreplied":
		return e.Unreplied()
	case "dnat":
		return e.DNAT()
	case "snat":
		return e.SNAT()
	case "nat":
		return e.DNAT() || e.SNAT()
	}
	if strings.EqualFold(inet.ProtoName(int(e.Orig.Proto)), w) || strings.EqualFold(e.TCPState, w) {
		return true
	}
	return strings.Contains(strings.ToLower(e.Status.String()), w)
}

func (p *Conntrack) applyFilter() {
	words := strings.Fields(strings.ToLower(p.filter.Get("filter")))
	p.shown = p.shown[:0]
	for i := range p.entries {
		ok := true
		for _, w := range words {
			if !conntrackWord(&p.entries[i], w) {
				ok = false
				break
			}
		}
		if ok {
			p.shown = append(p.shown, i)
		}
	}
	p.list.SetRows(len(p.shown))
}

func tupleText(t conntrack.Tuple) string {
	ep := func(ap netip.AddrPort) string {
		if ap.Port() == 0 || (t.Proto != 6 && t.Proto != 17 && t.Proto != 132) {
			return ap.Addr().String()
		}
		return ap.String()
	}
	return ep(t.Src) + " → " + ep(t.Dst)
}

func (p *Conntrack) cells(i int) []string {
	e := &p.entries[p.shown[i]]
	var flags []string
	if e.Unreplied() {
		flags = append(flags, "UNREPLIED")
	}
	if e.DNAT() {
		flags = append(flags, "DNAT")
	}
	if e.SNAT() {
		flags = append(flags, "SNAT")
	}
	mark := ""
	if e.Mark != 0 {
		mark = fmt.Sprintf("%#x", e.Mark)
	}
	return []string{inet.ProtoName(int(e.Orig.Proto)), conntrackState(e), tupleText(e.Orig), tupleText(e.Reply),
		strings.Join(flags, " "), mark, fmt.Sprint(e.Timeout)}
}

func (p *Conntrack) rowStyle(i int) lipgloss.Style {
	if p.entries[p.shown[i]].Unreplied() {
		return p.c.Styles.Warning
	}
	return lipgloss.NewStyle()
}

// View implements Page.
func (p *Conntrack) View(width, height int) string {
	st := p.c.Styles
	if p.detail != nil {
		return p.detail.View(width, height)
	}
	var b strings.Builder
	if !p.c.Backend.Live() {
		b.WriteString(st.Header.Render(components.Fit(" Conntrack", width)) + "\n")
		b.WriteString(st.Dim.Render("  the connection table is live state: a snapshot does not hold it"))
		return components.Lines(b.String(), width, height)
	}
	title := " Conntrack"
	var right string
	switch {
	case !p.loaded && p.err == nil:
		right = "reading…"
	case p.loaded:
		right = fmt.Sprintf("%d of %d entries", p.stats.Count, p.stats.Max)
		if len(p.entries) >= conntrackMax {
			right += fmt.Sprintf(" (first %d read)", conntrackMax)
		}
		if p.paused {
			right += "  paused"
		} else {
			right += fmt.Sprintf("  read %s", p.at.Format("15:04:05"))
		}
	}
	if p.loaded {
		title += " by " + conntrackSorts[p.sortBy].name + " (o)"
	}
	b.WriteString(st.Header.Render(components.Fit(title+strings.Repeat(" ", max(width-len(title)-len([]rune(right))-1, 1))+right, width)) + "\n")
	used := 1
	if p.err != nil {
		b.WriteString(st.Error.Render(components.Fit("  "+p.err.Error(), width)) + "\n")
		used++
	}
	if p.stats.Full() {
		b.WriteString(st.Error.Render(components.Fit("  the table is full: new connections are dropped", width)) + "\n")
		used++
	}
	if p.filtering || p.filter.Get("filter") != "" {
		line := p.filter.View(width)
		if p.filter.Get("filter") != "" {
			line = components.Cut(strings.TrimRight(line, " ")+fmt.Sprintf("   %d of %d match", len(p.shown), len(p.entries)), width)
		}
		b.WriteString(line + "\n")
		used++
		if n := p.filter.FocusNote(width); n != "" {
			b.WriteString(n + "\n")
			used += strings.Count(n, "\n") + 1
		}
	}
	p.listTop = used
	b.WriteString(p.list.View(width, height-used))
	return components.Lines(b.String(), width, height)
}

// Click implements Clicker: a click on a row selects it.
func (p *Conntrack) Click(x, y int) tea.Cmd {
	p.list.Click(y - p.listTop - 1)
	return nil
}
