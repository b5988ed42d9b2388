package ui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"roundtrip/engine"
	"roundtrip/engine/kernel"
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

type pendingTick struct{}

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

	seq        int
	loading    bool
	loadStart  time.Time
	cancelLoad context.CancelFunc
	state      *engine.State
	loadErr    error
	analysing  bool

	status    string
	statusErr bool

	pending    *kernel.Journal
	confirming bool
}

// NewApp returns the app on a backend. Nothing is read until Init's command runs.
func NewApp(c *common.Common, mouse bool) *App {
	a := &App{c: c, mouse: mouse, help: help.New()}
	a.help.Styles = c.Styles.Help
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
func (a *App) State() *engine.State { return a.state }

// Loading reports whether a state read is under way.
func (a *App) Loading() bool { return a.loading }

// Status returns the status line's message.
func (a *App) Status() string { return a.status }

// Pending returns the apply waiting for confirmation, or nil.
func (a *App) Pending() *kernel.Journal { return a.pending }

// Init implements tea.Model: the first frame shows at once, the state arrives later.
func (a *App) Init() tea.Cmd {
	return tea.Batch(a.load(), a.checkPending())
}

func (a *App) load() tea.Cmd {
	a.seq++
	if a.cancelLoad != nil {
		a.cancelLoad()
	}
	ctx, cancel := context.WithCancel(a.c.Ctx)
	a.cancelLoad = cancel
	a.loading, a.loadStart = true, a.c.Now()
	seq, b := a.seq, a.c.Backend
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

func (a *App) checkPending() tea.Cmd {
	b, ctx := a.c.Backend, a.c.Ctx
	return func() tea.Msg {
		j, err := b.Pending(ctx)
		return common.PendingMsg{Journal: j, Err: err}
	}
}

// analyse builds the FIB and runs the doctor in the background.
func analyse(seq int, s *engine.State) tea.Cmd {
	return func() tea.Msg {
		fib := engine.NewFIB(s)
		return common.AnalysisMsg{Seq: seq, State: s, FIB: fib, Findings: engine.Doctor(s, fib)}
	}
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
		a.analysing = true
		return a, tea.Batch(a.broadcast(msg), analyse(msg.Seq, msg.State))
	case common.AnalysisMsg:
		if msg.Seq != a.seq {
			return a, nil
		}
		a.analysing = false
		return a, a.broadcast(msg)
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
		if a.c.Now().After(a.pending.ConfirmBy) && !a.pending.TimerDead {
			// The timer reverts it now: look again, and read the state it leaves.
			a.pending = nil
			a.status, a.statusErr = "not confirmed in time: the changes are being rolled back", true
			return a, tea.Batch(a.checkPending(), a.c.After(2*time.Second, common.ReloadMsg{}), a.broadcast(common.PendingMsg{}))
		}
		return a, a.c.After(time.Second, pendingTick{})
	case confirmedMsg:
		a.confirming = false
		if msg.err != nil {
			a.status, a.statusErr = "confirm: "+msg.err.Error(), true
			return a, a.checkPending()
		}
		a.pending = nil
		a.status, a.statusErr = fmt.Sprintf("confirmed %s: the changes stay", msg.j.ID), false
		return a, a.broadcast(common.PendingMsg{})
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

type confirmedMsg struct {
	j   *kernel.Journal
	err error
}

func (a *App) key(msg tea.KeyPressMsg) tea.Cmd {
	k := common.Keys
	if msg.String() == "ctrl+c" {
		return tea.Quit
	}
	page := a.pages[a.Active]
	if page.Capturing() {
		return page.Update(msg)
	}
	a.status, a.statusErr = "", false
	switch {
	case key.Matches(msg, k.Cancel) && a.loading:
		a.cancelLoad()
		return nil
	case key.Matches(msg, k.Help):
		a.showHelp = !a.showHelp
	case key.Matches(msg, k.Quit):
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

// ShortHelp implements help.KeyMap: the page's keys, then the app's.
func (a *App) ShortHelp() []key.Binding {
	k := common.Keys
	b := a.pages[a.Active].ShortHelp()
	if a.pending != nil {
		b = append([]key.Binding{k.Confirm}, b...)
	}
	if a.pages[a.Active].Capturing() {
		return b
	}
	return append(b, k.NextPage, k.Help, k.Quit)
}

// FullHelp implements help.KeyMap.
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
		if a.pending.TimerDead {
			// Nothing will revert them: say so rather than count down to nothing.
			text = fmt.Sprintf("⚠ the revert timer of journal %s died: nothing reverts these changes — press y to keep them, or roll back (u on the wizard page)", a.pending.ID)
		}
		if a.confirming {
			text = "confirming…"
		}
		return st.Warning.Render(components.Fit(" "+text, width))
	case a.loading:
		return st.Dim.Render(components.Fit(fmt.Sprintf(" reading state of %s… %.1fs (esc cancels)", a.c.Backend.Where(), a.c.Now().Sub(a.loadStart).Seconds()), width))
	case a.status != "" && a.statusErr:
		return st.Error.Render(components.Fit(" "+a.status, width))
	case a.status != "":
		return st.Status.Render(components.Fit(" "+a.status, width))
	case a.analysing:
		return st.Dim.Render(components.Fit(" indexing routes and checking the host…", width))
	}
	// Idle: say where the console looks (the tab bar has no room for it at 80 columns).
	where := a.c.Backend.Where()
	if ro := a.c.Backend.ReadOnly(); ro != "" {
		where += " · " + ro
	}
	return st.Dim.Render(components.Fit(" "+where, width))
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
	a.help.SetWidth(w)
	var helpView string
	if a.showHelp {
		helpView = components.FullHelp(st, a.FullHelp(), w-1)
	} else {
		helpView = a.help.ShortHelpView(a.ShortHelp())
	}
	helpLines := strings.Split(helpView, "\n")
	pageH := max(h-2-len(helpLines), 1)
	var body string
	if a.state == nil && a.loadErr != nil && !a.loading {
		body = components.Lines("\n  "+st.Error.Render("could not read the state of "+a.c.Backend.Where()+":")+"\n  "+a.loadErr.Error()+"\n\n  r tries again, q quits", w, pageH)
	} else {
		body = a.pages[a.Active].View(w, pageH)
	}
	for i, l := range helpLines {
		helpLines[i] = components.Fit(" "+l, w)
	}
	return bar + "\n" + body + "\n" + a.statusLine(w) + "\n" + strings.Join(helpLines, "\n")
}

// View implements tea.Model.
func (a *App) View() tea.View {
	v := tea.NewView(a.Render())
	v.AltScreen = true
	if a.mouse {
		v.MouseMode = tea.MouseModeCellMotion
	}
	v.WindowTitle = "roundtrip — " + a.c.Backend.Where()
	return v
}
