package ui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"roundtrip/engine/apply"
	"roundtrip/engine/doctor"
	"roundtrip/engine/fib"
	"roundtrip/engine/model"
	"roundtrip/engine/quote"
	"roundtrip/ui/common"
	"roundtrip/ui/components"
	"roundtrip/ui/pages"
)

// Page positions in the tab bar.
const (
	PageOverview = iota
	PageRouting
	PageNAT
	PageConntrack
	PageDiagnose
	PageWizards
)

// defaultWidth and defaultHeight are used until the terminal reports its size.
const (
	defaultWidth  = 80
	defaultHeight = 24
)

type loadTick struct{ seq int }

// analysisTick redraws the doctor's progress while it runs.
type analysisTick struct{ seq int }

// analysisProgress is how far the doctor got: written by its command, read by the status line.
type analysisProgress struct{ done, total atomic.Int64 }

type pendingTick struct{}

// routesDue starts the read of every route if the Routing page has not asked for it by then
// (FirstScreenMsg).
type routesDue struct{ seq int }

// routesWait is how long the read of every route waits for the Routing page's first screen.
const routesWait = time.Second

// App is the console's root model: the tab bar, the active page, the status line and the
// help bar. It reads the state (in a command), hands it to every page, and keeps the
// countdown of an apply that waits for confirmation on every page.
type App struct {
	c     *common.Common
	pages []pages.Page
	tabs  components.Tabs
	// Active is the index of the page shown.
	Active int

	width, height int
	mouse         bool
	help          help.Model
	showHelp      bool
	// helpPager scrolls the full help in the page's area: at 80×24 it does not fit whole.
	helpPager components.Pager

	seq        int
	loading    bool
	loadStart  time.Time
	cancelLoad context.CancelFunc
	state      *model.State
	loadErr    error
	analysing  bool
	// cancelAnalysis stops the doctor (esc, or a new read that replaces its state).
	cancelAnalysis context.CancelFunc
	progress       *analysisProgress
	// base is the state without routes of a streaming backend's read, until the app reads
	// every route into a copy of it (on FirstScreenMsg, or routesDue at the latest).
	base *model.State
	// stopped says the console quits: nothing more is started.
	stopped bool
	// routesRead counts the routes read so far by a streaming backend's read (nil otherwise).
	routesRead *atomic.Int64

	status    string
	statusErr bool

	pending    *apply.Journal
	confirming bool
}

// stalledAfter is how long past its deadline a journal may still wait before the console says
// that its revert timer seems not to run.
const stalledAfter = 30 * time.Second

// NewApp returns the app on a backend. Nothing is read until Init's command runs.
func NewApp(c *common.Common, mouse bool) *App {
	a := &App{c: c, mouse: mouse, help: help.New()}
	a.help.Styles = c.Styles.Help
	a.helpPager.SetMarks(c.Styles)
	a.pages = []pages.Page{
		pages.NewOverview(c), pages.NewRouting(c), pages.NewNAT(c),
		pages.NewConntrack(c), pages.NewDiagnose(c), pages.NewWizards(c),
	}
	for _, p := range a.pages {
		a.tabs.Names = append(a.tabs.Names, p.Title())
	}
	return a
}

// Page returns the page at position i.
func (a *App) Page(i int) pages.Page { return a.pages[i] }

// State returns the state shown, or nil while the first read runs.
func (a *App) State() *model.State { return a.state }

// Loading reports whether a state read is under way.
func (a *App) Loading() bool { return a.loading }

// Analysing reports whether the doctor runs on the state read.
func (a *App) Analysing() bool { return a.analysing }

// Status returns the status line's message.
func (a *App) Status() string { return a.status }

// Pending returns the apply waiting for confirmation, or nil.
func (a *App) Pending() *apply.Journal { return a.pending }

// Init implements tea.Model: the first frame shows at once, the state arrives later.
func (a *App) Init() tea.Cmd {
	return tea.Batch(a.load(), a.checkPending())
}

func (a *App) load() tea.Cmd {
	a.seq++
	if a.cancelLoad != nil {
		a.cancelLoad()
	}
	a.stopAnalysis()
	ctx, cancel := context.WithCancel(a.c.Ctx)
	a.cancelLoad = cancel
	a.loading, a.loadStart = true, a.c.Now()
	seq, b := a.seq, a.c.Backend
	a.routesRead, a.base = nil, nil
	if rs, ok := b.(common.RouteStreamer); ok {
		// The state without its routes first: the pages show it at once (the Routing page
		// streams the table it shows), then every route, for the doctor.
		base := func() tea.Msg {
			s, err := rs.ReadStateWithoutRoutes(ctx)
			if err != nil {
				cancel()
				return common.StateMsg{Seq: seq, Err: err}
			}
			return common.BaseStateMsg{Seq: seq, State: s}
		}
		return tea.Batch(base, a.c.After(250*time.Millisecond, loadTick{seq}))
	}
	read := func() tea.Msg {
		defer cancel()
		start := time.Now()
		s, err := b.ReadState(ctx)
		if err != nil {
			return common.StateMsg{Seq: seq, Err: err}
		}
		return common.StateMsg{Seq: seq, State: s, Routes: common.IndexRoutes(s), Took: time.Since(start)}
	}
	return tea.Batch(read, a.c.After(250*time.Millisecond, loadTick{seq}))
}

// readRoutes reads every route of a streaming backend into a copy of the state read without
// them: the whole state the doctor, the FIB and the other pages work on.
func (a *App) readRoutes(seq int, base *model.State) tea.Cmd {
	rs := a.c.Backend.(common.RouteStreamer)
	ctx, cancel := context.WithCancel(a.c.Ctx)
	prev := a.cancelLoad
	a.cancelLoad = func() { cancel(); prev() }
	n := &atomic.Int64{}
	a.routesRead = n
	return func() tea.Msg {
		defer cancel()
		start := time.Now()
		s := *base
		// Room for every route at once: grown by append instead, the last copies of a full
		// table are memmoves of a hundred MB that stall the garbage collector and the keys.
		s.Routes = make([]model.Route, 0, max(rs.RouteCount(ctx), 0))
		err := rs.EachRoute(ctx, base, 0, func() { s.Routes = s.Routes[:0]; n.Store(0) }, func(r *model.Route) error {
			s.Routes = append(s.Routes, *r)
			n.Add(1)
			return nil
		})
		if err != nil {
			return common.StateMsg{Seq: seq, Err: err}
		}
		return common.StateMsg{Seq: seq, State: &s, Routes: common.IndexRoutes(&s), Took: time.Since(start)}
	}
}

// startRoutes reads every route of the read seq, once.
func (a *App) startRoutes(seq int) tea.Cmd {
	if seq != a.seq || a.base == nil || a.stopped {
		return nil
	}
	base := a.base
	a.base = nil
	return a.readRoutes(seq, base)
}

// Stop cancels everything the console runs in the background (it quits): the state's read,
// the doctor, and what the pages read.
func (a *App) Stop() {
	a.stopped = true
	if a.base != nil {
		// Every route was not being read yet, and will not be.
		a.base, a.loading = nil, false
	}
	if a.cancelLoad != nil {
		a.cancelLoad()
	}
	a.stopAnalysis()
	for _, p := range a.pages {
		if s, ok := p.(interface{ Stop() }); ok {
			s.Stop()
		}
	}
}

// checkJournal reads a journal again: the countdown's journal, whose fate is decided
// elsewhere (roundtrip confirm in another session, the revert timer).
func (a *App) checkJournal(id string) tea.Cmd {
	b, ctx := a.c.Backend, a.c.Ctx
	return func() tea.Msg {
		j, err := b.Journal(ctx, id)
		if err != nil || j == nil {
			// Unreadable for now: the next tick tries again.
			return nil
		}
		return common.JournalMsg{Journal: j}
	}
}

func (a *App) checkPending() tea.Cmd {
	b, ctx := a.c.Backend, a.c.Ctx
	return func() tea.Msg {
		j, err := b.Pending(ctx)
		return common.PendingMsg{Journal: j, Err: err}
	}
}

// analyse builds the FIB and runs the doctor in the background, until ctx is done.
func analyse(ctx context.Context, seq int, s *model.State, pr *analysisProgress) tea.Cmd {
	return func() tea.Msg {
		fib := fib.New(s)
		fs, err := doctor.RunContext(ctx, s, fib, func(done, total int) {
			pr.total.Store(int64(total))
			pr.done.Store(int64(done))
		})
		return common.AnalysisMsg{Seq: seq, State: s, FIB: fib, Findings: fs, Err: err}
	}
}

// startAnalysis runs the doctor on a state just read, with a way to cancel it.
func (a *App) startAnalysis(seq int, s *model.State) tea.Cmd {
	a.stopAnalysis()
	ctx, cancel := context.WithCancel(a.c.Ctx)
	a.cancelAnalysis, a.progress, a.analysing = cancel, &analysisProgress{}, true
	run := analyse(ctx, seq, s, a.progress)
	return tea.Batch(func() tea.Msg { defer cancel(); return run() }, a.c.After(250*time.Millisecond, analysisTick{seq}))
}

// stopAnalysis cancels the doctor's run, if one is under way.
func (a *App) stopAnalysis() {
	if a.cancelAnalysis != nil {
		a.cancelAnalysis()
		a.cancelAnalysis = nil
	}
	a.analysing = false
}

// broadcast gives a message to every page.
func (a *App) broadcast(msg tea.Msg) tea.Cmd {
	var cmds []tea.Cmd
	for _, p := range a.pages {
		cmds = append(cmds, p.Update(msg))
	}
	return tea.Batch(cmds...)
}

func (a *App) activate(i int) tea.Cmd {
	if i == a.Active {
		return nil
	}
	if d, ok := a.pages[a.Active].(pages.Activator); ok {
		d.Deactivate()
	}
	a.Active = i
	a.tabs.Active = i
	if ac, ok := a.pages[i].(pages.Activator); ok {
		return ac.Activate()
	}
	return nil
}

// Update implements tea.Model.
func (a *App) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		a.width, a.height = msg.Width, msg.Height
		return a, nil
	case common.BaseStateMsg:
		if msg.Seq != a.seq {
			return a, nil
		}
		// The Routing page streams the table it shows; every route (for the doctor) is read
		// once its first screen is there, not before: the first frame does not wait for it.
		a.base = msg.State
		return a, tea.Batch(a.broadcast(msg), a.c.After(routesWait, routesDue{msg.Seq}))
	case common.FirstScreenMsg:
		return a, a.startRoutes(msg.Seq)
	case routesDue:
		return a, a.startRoutes(msg.seq)
	case common.StateMsg:
		if msg.Seq != a.seq {
			return a, nil
		}
		a.loading = false
		if msg.Err != nil {
			a.loadErr = msg.Err
			if errors.Is(msg.Err, context.Canceled) {
				a.status, a.statusErr = "reading the state was cancelled: r reads it again", true
			} else {
				a.status, a.statusErr = "reading the state failed: "+msg.Err.Error(), true
			}
			return a, nil
		}
		a.state, a.loadErr = msg.State, nil
		return a, tea.Batch(a.broadcast(msg), a.startAnalysis(msg.Seq, msg.State))
	case common.AnalysisMsg:
		if msg.Seq != a.seq {
			return a, nil
		}
		a.analysing, a.cancelAnalysis = false, nil
		if msg.Err != nil {
			a.status, a.statusErr = "checking the host was cancelled: r reads the state and checks it again", true
		}
		return a, a.broadcast(msg)
	case analysisTick:
		if a.analysing && msg.seq == a.seq {
			return a, a.c.After(250*time.Millisecond, analysisTick{a.seq})
		}
		return a, nil
	case loadTick:
		if a.loading && msg.seq == a.seq {
			return a, a.c.After(250*time.Millisecond, loadTick{a.seq})
		}
		return a, nil
	case common.PendingMsg:
		had := a.pending != nil
		a.pending = msg.Journal
		cmd := a.broadcast(msg)
		if a.pending != nil && !had {
			return a, tea.Batch(cmd, a.c.After(time.Second, pendingTick{}))
		}
		return a, cmd
	case pendingTick:
		if a.pending == nil {
			return a, nil
		}
		// Every second: the countdown moves, and the journal is read again, so that a confirm
		// from another session or the revert timer's rollback shows as soon as it happens.
		return a, tea.Batch(a.checkJournal(a.pending.ID), a.c.After(time.Second, pendingTick{}))
	case common.JournalMsg:
		return a, tea.Batch(a.journalChanged(msg.Journal), a.broadcast(msg))
	case confirmedMsg:
		a.confirming = false
		if msg.err != nil {
			a.status, a.statusErr = "confirm: "+msg.err.Error(), true
			return a, a.checkPending()
		}
		a.pending = nil
		a.status, a.statusErr = fmt.Sprintf("confirmed %s: the changes stay", msg.j.ID), false
		return a, tea.Batch(a.broadcast(common.PendingMsg{}), a.broadcast(common.JournalMsg{Journal: msg.j}))
	case common.ReloadMsg:
		return a, tea.Batch(a.load(), a.checkPending())
	case common.StatusMsg:
		a.status, a.statusErr = msg.Text, msg.Error
		return a, nil
	case common.OpenWizardMsg:
		cmd := a.activate(PageWizards)
		return a, tea.Batch(cmd, a.pages[PageWizards].Update(msg))
	case tea.KeyPressMsg:
		return a, a.key(msg)
	case tea.MouseClickMsg:
		m := msg.Mouse()
		if m.Y == 0 {
			if i := a.tabs.At(m.X); i >= 0 {
				return a, a.activate(i)
			}
			return a, nil
		}
		if c, ok := a.pages[a.Active].(pages.Clicker); ok && m.Button == tea.MouseLeft {
			return a, c.Click(m.X, m.Y-1)
		}
		return a, nil
	case tea.MouseWheelMsg:
		return a, a.pages[a.Active].Update(msg)
	}
	return a, a.broadcast(msg)
}

// journalChanged takes the journal of the countdown as it is now: once it is no longer
// pending, the countdown ends and the status says what became of it.
func (a *App) journalChanged(j *apply.Journal) tea.Cmd {
	if a.pending == nil || j.ID != a.pending.ID {
		return nil
	}
	if j.Status == apply.StatusPending {
		a.pending = j
		return nil
	}
	a.pending = nil
	switch j.Status {
	case apply.StatusConfirmed:
		a.status, a.statusErr = fmt.Sprintf("journal %s was confirmed: the changes stay", j.ID), false
	case apply.StatusRolledBack:
		why := j.Reason
		if why == "" {
			why = "rolled back"
		}
		a.status, a.statusErr = fmt.Sprintf("journal %s was rolled back (%s): the host is as before it", j.ID, why), true
	case apply.StatusRollbackFailed:
		a.status, a.statusErr = fmt.Sprintf("the rollback of journal %s failed: %s", j.ID, strings.Join(j.Errors, "; ")), true
	default:
		a.status, a.statusErr = fmt.Sprintf("journal %s is %s", j.ID, j.Status), false
	}
	// What the host is now: read it again, and tell every page the countdown ended.
	return tea.Batch(a.load(), a.broadcast(common.PendingMsg{}))
}

type confirmedMsg struct {
	j   *apply.Journal
	err error
}

func (a *App) key(msg tea.KeyPressMsg) tea.Cmd {
	k := common.Keys
	if msg.String() == "ctrl+c" {
		a.Stop()
		return tea.Quit
	}
	page := a.pages[a.Active]
	if page.Capturing() {
		return page.Update(msg)
	}
	a.status, a.statusErr = "", false
	if a.showHelp {
		switch {
		case key.Matches(msg, k.Help), msg.String() == "esc":
			a.showHelp = false
			return nil
		case a.helpPager.Update(msg):
			return nil
		}
		// Any other key closes the help and does what it does.
		a.showHelp = false
	}
	switch {
	case key.Matches(msg, k.Cancel) && a.loading:
		a.cancelLoad()
		if a.base != nil {
			// Every route was not being read yet: nothing will say it was cancelled but this.
			a.base = nil
			seq := a.seq
			return func() tea.Msg { return common.StateMsg{Seq: seq, Err: context.Canceled} }
		}
		return nil
	case key.Matches(msg, k.Cancel) && a.analysing && a.cancelAnalysis != nil:
		a.cancelAnalysis() // the doctor's message comes back cancelled, and says so
		return nil
	case key.Matches(msg, k.Help):
		a.showHelp, a.helpPager.Offset = true, 0
	case key.Matches(msg, k.Quit):
		a.Stop()
		return tea.Quit
	case key.Matches(msg, k.NextPage):
		return a.activate((a.Active + 1) % len(a.pages))
	case key.Matches(msg, k.PrevPage):
		return a.activate((a.Active - 1 + len(a.pages)) % len(a.pages))
	case key.Matches(msg, k.Pages):
		return a.activate(int(msg.String()[0] - '1'))
	case key.Matches(msg, k.Refresh):
		return a.load()
	case key.Matches(msg, k.Confirm) && a.pending != nil:
		if a.confirming {
			return nil
		}
		a.confirming = true
		b, ctx := a.c.Backend, context.WithoutCancel(a.c.Ctx)
		return func() tea.Msg {
			j, err := b.Confirm(ctx)
			return confirmedMsg{j: j, err: err}
		}
	default:
		return page.Update(msg)
	}
	return nil
}

// ShortHelp implements help.KeyMap: the page's keys, then the app's, each key once.
func (a *App) ShortHelp() []key.Binding {
	k := common.Keys
	if a.showHelp {
		return []key.Binding{common.Bind("↑/↓ pgup/pgdn", "scroll", "down"), common.Bind("?/esc", "close the help", "?")}
	}
	b := a.pages[a.Active].ShortHelp()
	if a.pending != nil {
		b = append([]key.Binding{k.Confirm}, b...)
	}
	if a.pages[a.Active].Capturing() {
		return components.HelpEntries(b)
	}
	return components.HelpEntries(b, []key.Binding{k.NextPage, k.Help, k.Quit})
}

// FullHelp implements help.KeyMap: the page's keys first, so that where a page gives a key
// its own meaning (esc, enter) that is the one listed.
func (a *App) FullHelp() [][]key.Binding {
	k := common.Keys
	return append(a.pages[a.Active].FullHelp(), []key.Binding{k.NextPage, k.PrevPage, k.Pages, k.Refresh, k.Confirm, k.Cancel, k.Help, k.Quit})
}

func (a *App) size() (int, int) {
	w, h := a.width, a.height
	if w <= 0 || h <= 0 {
		w, h = defaultWidth, defaultHeight
	}
	return w, h
}

// statusLine says what is going on: a read in progress, a countdown, a message.
func (a *App) statusLine(width int) string {
	st := a.c.Styles
	switch {
	case a.pending != nil:
		left := a.pending.ConfirmBy.Sub(a.c.Now())
		text := fmt.Sprintf("⚠ changes revert in %s — press y to keep them (journal %s)", common.Countdown(left), a.pending.ID)
		switch {
		case a.confirming:
			text = "confirming…"
		case a.pending.TimerDead:
			// Nothing will revert them: say so rather than count down to nothing.
			text = fmt.Sprintf("⚠ the revert timer of journal %s died: nothing reverts these changes — press y to keep them, or roll back (u on the wizard page)", a.pending.ID)
		case left < -stalledAfter:
			text = fmt.Sprintf("⚠ journal %s is past its deadline and not rolled back: is its revert timer running? u on Wizards rolls it back", a.pending.ID)
		case left < 0:
			text = fmt.Sprintf("⚠ not confirmed in time: journal %s is being rolled back…", a.pending.ID)
		}
		return statusLines(st.Warning, text, width)
	case a.loading:
		what := "state"
		if n := a.routesRead; n != nil {
			what = fmt.Sprintf("routes (%d so far)", n.Load())
		}
		return st.Dim.Render(components.Fit(fmt.Sprintf(" reading %s of %s… %.1fs (esc cancels)", what, a.c.Backend.Where(), a.c.Now().Sub(a.loadStart).Seconds()), width))
	case a.status != "" && a.statusErr:
		return statusLines(st.Error, a.status, width)
	case a.status != "":
		return statusLines(st.Status, a.status, width)
	case a.analysing:
		text := " indexing routes and checking the host…"
		if pr := a.progress; pr != nil && pr.total.Load() > 0 {
			const barWidth = 20
			done, total := pr.done.Load(), pr.total.Load()
			full := int(barWidth * min(done, total) / total)
			text = fmt.Sprintf(" checking the host %s%s %d%% (esc cancels)", strings.Repeat("█", full), strings.Repeat("░", barWidth-full), 100*min(done, total)/total)
		}
		return st.Dim.Render(components.Fit(text, width))
	}
	// Idle: say where the console looks (the tab bar has no room for it at 80 columns).
	where := a.c.Backend.Where()
	if ro := a.c.Backend.ReadOnly(); ro != "" {
		where += " · " + ro
	}
	return st.Dim.Render(components.Fit(" "+where, width))
}

// statusMax is how many lines a long status message may take (a path, an error with its
// context): it is read whole rather than cut.
const statusMax = 3

// statusLines wraps a status message to the width, in up to statusMax lines.
func statusLines(style lipgloss.Style, text string, width int) string {
	lines := components.Wrap(text, width-1, "  ")
	if len(lines) > statusMax {
		lines = lines[:statusMax]
		lines[statusMax-1] = components.Cut(lines[statusMax-1]+" …", width-1)
	}
	for i, l := range lines {
		lines[i] = style.Render(components.Fit(" "+l, width))
	}
	return strings.Join(lines, "\n")
}

// Render draws the whole screen as text (View wraps it; tests compare it with golden files).
func (a *App) Render() string {
	w, h := a.size()
	st := a.c.Styles
	right := a.c.Backend.Where()
	if a.state != nil && a.state.Host != "" && a.c.Backend.Live() {
		right = a.state.Host + " " + right
	}
	bar := a.tabs.View(st, w, right)
	a.help.SetWidth(w - 1)
	helpLines := strings.Split(a.help.ShortHelpView(a.ShortHelp()), "\n")
	status := a.statusLine(w)
	pageH := max(h-1-strings.Count(status, "\n")-1-len(helpLines), 1)
	var body string
	switch {
	case a.showHelp:
		// The full help takes the page's area and scrolls there, marked where it goes on:
		// nothing is cut without a sign, and the frame keeps its height.
		title := st.Header.Render(components.Fit(" Keys of "+a.pages[a.Active].Title()+"   (? or esc closes)", w))
		a.helpPager.SetLines(components.FullHelp(st, a.FullHelp(), w-2))
		body = title + "\n" + a.helpPager.View(w, max(pageH-1, 1))
	case a.state == nil && a.loadErr != nil && !a.loading:
		body = components.Lines("\n  "+st.Error.Render("could not read the state of "+a.c.Backend.Where()+":")+"\n  "+a.loadErr.Error()+"\n\n  r tries again, q quits", w, pageH)
	default:
		body = a.pages[a.Active].View(w, pageH)
	}
	for i, l := range helpLines {
		helpLines[i] = components.Fit(" "+l, w)
	}
	// The backstop behind the escaping of each value: nothing but colours and line breaks
	// reaches the terminal, whatever a page put in its view.
	return quote.TermStyled(bar + "\n" + body + "\n" + status + "\n" + strings.Join(helpLines, "\n"))
}

// View implements tea.Model.
func (a *App) View() tea.View {
	v := tea.NewView(a.Render())
	v.AltScreen = true
	if a.mouse {
		v.MouseMode = tea.MouseModeCellMotion
	}
	v.WindowTitle = "roundtrip — " + quote.Term(a.c.Backend.Where())
	return v
}
