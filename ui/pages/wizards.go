package pages

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"roundtrip/engine"
	"roundtrip/engine/kernel"
	"roundtrip/ui/common"
	"roundtrip/ui/components"
	"roundtrip/wizards"
)

// confirmChoices are the confirmation windows an apply can be given; the console always
// offers one, since a change to routing can cut off the SSH session it is made from.
var confirmChoices = []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 0}

// Plan panes.
const (
	paneScript = iota
	paneDiff
	paneHistory
)

// Dialogs.
const (
	dialogNone = iota
	dialogApply
	dialogRollback
)

// Wizards fills a wizard's form, shows the plan as the script it stands for and as a diff of
// the host's state, applies it with a confirmation window and a one-key confirm, and lists
// the history of applies for rollback.
type Wizards struct {
	c     *common.Common
	state *engine.State
	cur   int
	forms []*components.Form

	editing bool
	from    string // the finding the wizard was opened from
	fillErr error

	planGen  int
	planning bool
	result   *wizards.Result
	planErr  error
	diff     string
	args     []string

	pane   int
	pager  components.Pager
	unfold bool // show the script's shell helpers in full

	dialog  int
	confirm int // index into confirmChoices

	applyGen int
	applying bool
	progress []string
	applyCh  chan tea.Msg
	applied  *kernel.Result
	applyErr error
	pending  *kernel.Journal

	// lockout is the SSH lockout check of the plan in the apply dialog (nil while it runs or
	// when not over SSH).
	lockout      *engine.Lockout
	lockoutCheck bool

	rollingBack bool
	history     []*kernel.Journal
	historyErr  error
	histSel     int

	keys struct{ Prev, Next, Edit, Pane, Fold, Apply, Rollback, History key.Binding }
}

type planMsg struct {
	gen  int
	res  *wizards.Result
	err  error
	diff string
	args []string
}

type applyProgressMsg struct {
	gen  int
	line string
}

type applyDoneMsg struct {
	gen int
	res *kernel.Result
	err error
}

type lockoutMsg struct {
	plan *engine.Plan
	lo   engine.Lockout
}

type rollbackDoneMsg struct {
	j   *kernel.Journal
	err error
}

type historyMsg struct {
	js  []*kernel.Journal
	err error
}

// NewWizards returns the Wizards page.
func NewWizards(c *common.Common) *Wizards {
	p := &Wizards{c: c, confirm: 1}
	p.keys.Prev = common.Bind("[", "previous wizard", "[")
	p.keys.Next = common.Bind("]", "next wizard", "]")
	p.keys.Edit = common.Bind("e", "edit the form", "e", "enter")
	p.keys.Pane = common.Bind("d", "script ⇄ diff", "d")
	p.keys.Fold = common.Bind("z", "fold/unfold the script's helpers", "z")
	p.keys.Apply = common.Bind("a", "apply…", "a")
	p.keys.Rollback = common.Bind("u", "roll back…", "u")
	p.keys.History = common.Bind("H", "history", "H")
	for _, s := range specs {
		f := components.NewForm(c.Styles, s.fields(c.Styles)...)
		p.forms = append(p.forms, f)
	}
	return p
}

// Title implements Page.
func (p *Wizards) Title() string { return "Wizards" }

// Capturing implements Page.
func (p *Wizards) Capturing() bool { return p.editing || p.dialog != dialogNone }

// ShortHelp implements Page.
func (p *Wizards) ShortHelp() []key.Binding {
	switch {
	case p.dialog == dialogApply:
		return []key.Binding{common.Bind("enter", "apply", "enter"), common.Bind("←/→", "confirm window", "left"), common.Bind("esc", "cancel", "esc")}
	case p.dialog == dialogRollback:
		return []key.Binding{common.Bind("enter", "roll back", "enter"), common.Bind("esc", "cancel", "esc")}
	case p.editing:
		return []key.Binding{common.Bind("tab/↓", "next field", "tab"), common.Bind("←/→", "choice", "left"), common.Bind("esc", "done", "esc")}
	}
	return []key.Binding{p.keys.Edit, p.keys.Apply, p.keys.Pane, p.keys.Next, p.keys.Rollback, p.keys.History}
}

// FullHelp implements Page.
func (p *Wizards) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		{p.keys.Prev, p.keys.Next, p.keys.Edit, common.Bind("esc", "leave the form", "esc")},
		{p.keys.Pane, p.keys.Fold, p.keys.History, common.Keys.PageUp, common.Keys.PageDown},
		{p.keys.Apply, p.keys.Rollback, common.Keys.Confirm},
	}
}

// Current returns the name of the wizard shown.
func (p *Wizards) Current() string { return specs[p.cur].name }

// Form returns the form of the wizard shown.
func (p *Wizards) Form() *components.Form { return p.forms[p.cur] }

// Result returns the last plan, or nil.
func (p *Wizards) Result() *wizards.Result { return p.result }

// PlanError returns why the form does not plan, or nil.
func (p *Wizards) PlanError() error { return p.planErr }

// Dialog reports whether a confirmation dialog is open.
func (p *Wizards) Dialog() bool { return p.dialog != dialogNone }

// Applied returns the result of the last apply, or nil.
func (p *Wizards) Applied() *kernel.Result { return p.applied }

func (p *Wizards) replan() tea.Cmd {
	p.planGen++
	spec, form := specs[p.cur], p.forms[p.cur]
	p.result, p.diff, p.args = nil, "", nil
	if p.state == nil {
		p.planning, p.planErr = false, nil
		return nil
	}
	for _, fl := range form.Fields {
		if fl.Err != nil {
			p.planning = false
			p.planErr = fmt.Errorf("%s: %v", strings.ToLower(fl.Label), fl.Err)
			return nil
		}
	}
	w, err := spec.build(form)
	if err != nil {
		p.planning, p.planErr = false, err
		return nil
	}
	p.planning, p.planErr = true, nil
	gen, s := p.planGen, p.state
	// Validate and Plan walk the host's routes: with a big table that takes a moment, so it
	// happens in a command and a newer keystroke's plan supersedes it.
	return func() tea.Msg {
		res, err := w.Plan(s)
		m := planMsg{gen: gen, res: res, err: err, args: w.Args()}
		if err == nil {
			m.diff = engine.Diff(s, res.Plan.Expect(s))
		}
		return m
	}
}

// Open selects a wizard and fills its form from flags (a finding's fix).
func (p *Wizards) Open(name string, args []string, from string) tea.Cmd {
	i := specByName(name)
	if i < 0 {
		return common.Status(fmt.Sprintf("unknown wizard %q", name))
	}
	p.cur = i
	p.forms[i] = components.NewForm(p.c.Styles, specs[i].fields(p.c.Styles)...)
	p.fillErr = fill(specs[i], p.forms[i], args)
	p.from = from
	// A fix that does not say everything (a port forward knows the SNAT, not the port) opens
	// the form at the first field that still needs an answer.
	p.editing = false
	for _, fl := range p.forms[i].Fields {
		if fl.Err != nil {
			p.editing = true
			p.forms[i].FocusKey(fl.Key)
			break
		}
	}
	p.forms[i].Active = p.editing
	p.pane, p.dialog = paneScript, dialogNone
	p.applied, p.applyErr = nil, nil
	return p.replan()
}

// Update implements Page.
func (p *Wizards) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case common.StateMsg:
		if msg.Err == nil {
			p.state = msg.State
			return p.replan()
		}
	case common.OpenWizardMsg:
		return p.Open(msg.Wizard, msg.Args, msg.From)
	case common.PendingMsg:
		p.pending = msg.Journal
	case planMsg:
		if msg.gen == p.planGen {
			p.planning = false
			p.result, p.planErr, p.diff, p.args = msg.res, msg.err, msg.diff, msg.args
		}
	case applyProgressMsg:
		if msg.gen == p.applyGen {
			p.progress = append(p.progress, msg.line)
			return p.waitApply()
		}
	case applyDoneMsg:
		if msg.gen != p.applyGen {
			return nil
		}
		p.applying = false
		p.applied, p.applyErr = msg.res, msg.err
		var lo *kernel.LockoutError
		if errors.As(msg.err, &lo) {
			// Refused before anything changed: back to the dialog, to pick a window.
			p.applyErr, p.dialog = nil, dialogApply
			p.lockout = &lo.Lockout
			return common.Status("this plan changes the route back to your SSH session: apply it with a confirmation window")
		}
		if msg.err != nil {
			return tea.Batch(common.StatusError(msg.err), reload)
		}
		if msg.res.NoOp {
			return common.Status("nothing to change: the host already does what the plan asks")
		}
		return tea.Batch(common.Status(fmt.Sprintf("applied journal %s", msg.res.Journal.ID)), reload)
	case rollbackDoneMsg:
		p.rollingBack = false
		if msg.err != nil {
			return tea.Batch(common.StatusError(msg.err), reload)
		}
		p.applied = nil
		return tea.Batch(common.Status(fmt.Sprintf("rolled back journal %s (%s)", msg.j.ID, msg.j.Intent)), reload, p.loadHistory())
	case lockoutMsg:
		if p.result != nil && msg.plan == p.result.Plan {
			p.lockout, p.lockoutCheck = &msg.lo, false
		}
	case historyMsg:
		p.history, p.historyErr = msg.js, msg.err
		p.histSel = min(p.histSel, max(len(p.history)-1, 0))
	case tea.KeyPressMsg:
		return p.key(msg)
	case tea.MouseWheelMsg:
		p.pager.Update(msg)
	}
	return nil
}

func reload() tea.Msg { return common.ReloadMsg{} }

func (p *Wizards) key(msg tea.KeyPressMsg) tea.Cmd {
	switch p.dialog {
	case dialogApply:
		switch msg.String() {
		case "enter":
			if p.lockoutCheck {
				return common.Status("wait: the route back to your SSH session is being checked")
			}
			p.dialog = dialogNone
			return p.apply()
		case "esc", "n":
			p.dialog = dialogNone
		case "left", "h":
			p.confirm = (p.confirm - 1 + len(confirmChoices)) % len(confirmChoices)
		case "right", "l", "tab":
			p.confirm = (p.confirm + 1) % len(confirmChoices)
		}
		return nil
	case dialogRollback:
		switch msg.String() {
		case "enter", "y":
			p.dialog = dialogNone
			return p.rollback()
		case "esc", "n":
			p.dialog = dialogNone
		}
		return nil
	}
	if p.editing {
		switch msg.String() {
		case "esc", "enter":
			p.editing, p.forms[p.cur].Active = false, false
			return nil
		}
		changed, cmd := p.forms[p.cur].Update(msg)
		if changed {
			return tea.Batch(cmd, p.replan())
		}
		return cmd
	}
	switch {
	case key.Matches(msg, p.keys.Edit):
		p.editing, p.forms[p.cur].Active = true, true
	case key.Matches(msg, p.keys.Next):
		p.cur = (p.cur + 1) % len(specs)
		p.from, p.fillErr = "", nil
		return p.replan()
	case key.Matches(msg, p.keys.Prev):
		p.cur = (p.cur - 1 + len(specs)) % len(specs)
		p.from, p.fillErr = "", nil
		return p.replan()
	case key.Matches(msg, p.keys.Pane):
		if !p.applying && !p.rollingBack && (p.applied != nil || p.applyErr != nil) {
			// After an apply, d goes back to the plan.
			p.applied, p.applyErr, p.progress = nil, nil, nil
			return nil
		}
		if p.pane == paneScript {
			p.pane = paneDiff
		} else {
			p.pane = paneScript
		}
		p.pager.Offset = 0
	case key.Matches(msg, p.keys.Fold):
		p.unfold = !p.unfold
	case key.Matches(msg, p.keys.History):
		if !p.applying && !p.rollingBack {
			p.applied, p.applyErr, p.progress = nil, nil, nil
		}
		if p.pane == paneHistory {
			p.pane = paneScript
			return nil
		}
		p.pane = paneHistory
		return p.loadHistory()
	case key.Matches(msg, p.keys.Apply):
		if ro := p.c.Backend.ReadOnly(); ro != "" {
			return common.Status(ro)
		}
		switch {
		case p.applying:
			return common.Status("an apply is under way")
		case p.pending != nil:
			return common.Status("an apply waits for confirmation: press y to keep it or u to roll it back first")
		case p.result == nil:
			if p.planErr != nil {
				return common.Status("the plan cannot be made: " + p.planErr.Error())
			}
			return common.Status("no plan yet")
		case len(p.result.Plan.Changes) == 0:
			return common.Status("nothing to change: the host already does what the wizard asks")
		}
		p.dialog = dialogApply
		return p.checkLockout()
	case key.Matches(msg, p.keys.Rollback):
		if ro := p.c.Backend.ReadOnly(); ro != "" {
			return common.Status(ro)
		}
		p.dialog = dialogRollback
		return p.loadHistory()
	case p.pane == paneHistory && key.Matches(msg, common.Keys.Up):
		p.histSel = max(p.histSel-1, 0)
	case p.pane == paneHistory && key.Matches(msg, common.Keys.Down):
		p.histSel = min(p.histSel+1, max(len(p.history)-1, 0))
	default:
		p.pager.Update(msg)
	}
	return nil
}

// checkLockout simulates, over SSH, how the replies to the operator's SSH client are routed
// before and after the plan (two FIBs of the whole state: a command, not Update's work).
func (p *Wizards) checkLockout() tea.Cmd {
	p.lockout, p.lockoutCheck = nil, false
	if p.c.SSH == "" || p.state == nil {
		return nil
	}
	sess, err := engine.ParseSSHConnection(p.c.SSH)
	if err != nil {
		return common.Status("cannot check the SSH lockout: " + err.Error())
	}
	p.lockoutCheck = true
	s, plan := p.state, p.result.Plan
	return func() tea.Msg { return lockoutMsg{plan: plan, lo: engine.CheckLockout(s, plan.Expect(s), sess)} }
}

func (p *Wizards) loadHistory() tea.Cmd {
	b, ctx := p.c.Backend, p.c.Ctx
	return func() tea.Msg {
		js, err := b.History(ctx)
		slices.Reverse(js)
		return historyMsg{js: js, err: err}
	}
}

// apply runs the plan in a command; the applier's step lines come back as progress messages.
func (p *Wizards) apply() tea.Cmd {
	p.applyGen++
	p.applying, p.progress, p.applied, p.applyErr = true, nil, nil, nil
	ch := make(chan tea.Msg, 64)
	p.applyCh = ch
	gen, b, plan := p.applyGen, p.c.Backend, p.result.Plan
	// The Applier makes the SSH lockout check and refuses a plan that changes the route back
	// to the session without a confirmation window.
	opts := kernel.ApplyOptions{Confirm: confirmChoices[p.confirm]}
	if p.c.SSH != "" {
		if sess, err := engine.ParseSSHConnection(p.c.SSH); err == nil {
			opts.SSH = &sess
		}
	}
	// The apply must finish whatever happens to the console: it journals and undoes itself on
	// failure, and cancelling it half way would only make it undo.
	ctx := context.WithoutCancel(p.c.Ctx)
	go func() {
		res, err := b.Apply(ctx, plan, opts, func(line string) {
			select {
			case ch <- applyProgressMsg{gen: gen, line: line}:
			default:
			}
		})
		ch <- applyDoneMsg{gen: gen, res: res, err: err}
		close(ch)
	}()
	return p.waitApply()
}

func (p *Wizards) waitApply() tea.Cmd {
	ch := p.applyCh
	return func() tea.Msg {
		m, ok := <-ch
		if !ok {
			return nil
		}
		return m
	}
}

// rollbackTarget is the journal u rolls back: the one selected in the history, else the
// latest active one.
func (p *Wizards) rollbackTarget() string {
	if p.pane == paneHistory && p.histSel < len(p.history) {
		return p.history[p.histSel].ID
	}
	return ""
}

func (p *Wizards) rollback() tea.Cmd {
	p.rollingBack = true
	b, ctx, id := p.c.Backend, context.WithoutCancel(p.c.Ctx), p.rollbackTarget()
	return func() tea.Msg {
		j, err := b.Rollback(ctx, id)
		if err == nil && j == nil {
			err = errors.New("nothing was rolled back")
		}
		return rollbackDoneMsg{j: j, err: err}
	}
}

// View implements Page.
func (p *Wizards) View(width, height int) string {
	st := p.c.Styles
	spec, form := specs[p.cur], p.forms[p.cur]
	var top []string
	head := fmt.Sprintf(" Wizard ‹ %s › %d/%d  %s", spec.name, p.cur+1, len(specs), spec.summary)
	top = append(top, st.Header.Render(components.Fit(head, width)))
	if ro := p.c.Backend.ReadOnly(); ro != "" {
		top = append(top, st.Warning.Render(components.Fit("  "+ro, width)))
	}
	if p.from != "" {
		top = append(top, st.Dim.Render(components.Fit("  filled from the finding "+p.from, width)))
	}
	if p.fillErr != nil {
		top = append(top, st.Error.Render(components.Fit("  ✗ "+p.fillErr.Error(), width)))
	}
	top = append(top, strings.Split(form.View(width), "\n")...)
	if n := form.FocusNote(width); n != "" {
		top = append(top, strings.Split(n, "\n")...)
	}
	switch {
	case p.state == nil:
		top = append(top, st.Dim.Render("  reading state…"))
	case p.planErr != nil:
		for i, l := range components.Wrap("✗ "+p.planErr.Error(), width-2, "  ") {
			if i < 3 {
				top = append(top, st.Error.Render("  "+l))
			}
		}
	case p.planning:
		top = append(top, st.Dim.Render("  planning…"))
	case p.result != nil:
		n := len(p.result.Plan.Changes)
		if n == 0 {
			top = append(top, st.OK.Render("  ✓ nothing to change: the host already does this"))
		} else {
			top = append(top, st.OK.Render(fmt.Sprintf("  ✓ plan: %d change(s)", n))+st.Dim.Render("   a applies"))
		}
	}
	if p.args != nil {
		top = append(top, st.Dim.Render(components.Cut("  roundtrip wizard "+spec.name+" "+strings.Join(p.args, " "), width)))
	}
	showsApply := p.applying || p.rollingBack || p.applied != nil || p.applyErr != nil
	if p.pending != nil && (!showsApply || p.applied == nil || p.applied.Journal == nil || p.applied.Journal.ID != p.pending.ID) {
		left := p.pending.ConfirmBy.Sub(p.c.Now())
		top = append(top, st.Warning.Render(components.Fit(fmt.Sprintf("  ⚠ journal %s reverts in %s unless you press y to keep it", p.pending.ID, common.Countdown(left)), width)))
	}

	rest := max(height-len(top)-1, 1)
	var body []string
	title := ""
	switch {
	case p.dialog == dialogApply:
		title = " Apply"
		body = p.applyDialog(width)
	case p.dialog == dialogRollback:
		title = " Roll back"
		body = p.rollbackDialog(width)
	case showsApply:
		title = " Apply"
		body = p.applyStatus(width)
		if !p.applying && !p.rollingBack {
			title += "   (d shows the plan again)"
		}
	case p.pane == paneHistory:
		title = " History   (u rolls back the selected apply, H closes)"
		body = p.historyLines(width)
	case p.pane == paneDiff:
		title = " Plan as a diff of the state   (d: as a script)"
		body = p.diffLines()
	default:
		title = " Plan as a script   (d: as a diff of the state, z: unfold helpers)"
		if p.result != nil {
			body = strings.Split(strings.TrimSuffix(string(p.result.Script()), "\n"), "\n")
			if !p.unfold {
				body = foldFunctions(body)
				title = " Plan as a script   (d: as a diff of the state, z: unfold helpers)"
			} else {
				title = " Plan as a script   (d: as a diff of the state, z: fold helpers)"
			}
		}
	}
	p.pager.SetLines(body)
	out := strings.Join(top, "\n") + "\n" + st.Header.Render(components.Fit(title, width)) + "\n" + p.pager.View(width, rest)
	return components.Lines(out, width, height)
}

func (p *Wizards) diffLines() []string {
	st := p.c.Styles
	if p.result == nil {
		return nil
	}
	if p.diff == "" {
		return []string{st.Dim.Render("  no difference")}
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(p.diff, "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "+"):
			out = append(out, st.OK.Render(l))
		case strings.HasPrefix(l, "-"):
			out = append(out, st.Error.Render(l))
		default:
			out = append(out, l)
		}
	}
	return out
}

func (p *Wizards) applyDialog(width int) []string {
	st := p.c.Styles
	n := len(p.result.Plan.Changes)
	var choices []string
	for i, d := range confirmChoices {
		label := "no timer"
		if d > 0 {
			label = common.Duration(d)
		}
		if i == p.confirm {
			label = st.Selected.Render("[" + label + "]")
		} else {
			label = " " + label + " "
		}
		choices = append(choices, label)
	}
	out := []string{fmt.Sprintf("  Apply %d change(s) to %s?", n, p.c.Backend.Where())}
	switch {
	case p.lockoutCheck:
		out = append(out, st.Dim.Render("  checking the route back to your SSH session…"))
	case p.lockout != nil && p.lockout.Changed:
		for _, l := range components.Wrap("⚠ "+p.lockout.Reason+": keep a confirmation window, and confirm from a new SSH session", width-2, "  ") {
			out = append(out, st.Error.Render("  "+l))
		}
	case p.lockout != nil && p.lockout.Applies:
		out = append(out, st.OK.Render(components.Cut("  ✓ "+p.lockout.Reason, width)))
	}
	out = append(out, "", "  confirm window: "+strings.Join(choices, " ")+"   (←/→)")
	if d := confirmChoices[p.confirm]; d > 0 {
		for _, l := range components.Wrap(fmt.Sprintf("The changes are undone after %s unless you press y (or run roundtrip confirm): if they cut you off, they come back by themselves.", common.Duration(d)), width-2, "") {
			out = append(out, "  "+l)
		}
	} else {
		out = append(out, st.Warning.Render("  No timer: the changes stay at once; roll back with u."))
	}
	out = append(out, "", st.Bold.Render("  enter")+" applies   "+st.Bold.Render("esc")+" cancels")
	return out
}

func (p *Wizards) rollbackDialog(width int) []string {
	st := p.c.Styles
	target := "the latest active apply"
	if id := p.rollbackTarget(); id != "" {
		target = "journal " + id
	} else {
		for _, j := range p.history {
			if j.Active() {
				target = fmt.Sprintf("journal %s (%s)", j.ID, j.Intent)
				break
			}
		}
	}
	var out []string
	for _, l := range components.Wrap("Roll back "+target+" on "+p.c.Backend.Where()+"? Its steps are undone in reverse.", width-2, "") {
		out = append(out, "  "+l)
	}
	return append(out, "", st.Bold.Render("  enter")+" rolls back   "+st.Bold.Render("esc")+" cancels")
}

func (p *Wizards) applyStatus(width int) []string {
	st := p.c.Styles
	var out []string
	switch {
	case p.rollingBack:
		out = append(out, st.Dim.Render("  rolling back…"))
	case p.applying:
		out = append(out, st.Dim.Render(fmt.Sprintf("  applying to %s…", p.c.Backend.Where())))
	case p.applyErr != nil:
		for _, l := range components.Wrap("✗ "+p.applyErr.Error(), width-2, "  ") {
			out = append(out, st.Error.Render("  "+l))
		}
	case p.applied != nil && p.applied.Journal != nil:
		out = append(out, st.OK.Render(fmt.Sprintf("  ✓ applied: journal %s, %d step(s)", p.applied.Journal.ID, p.applied.Journal.Steps)))
		if p.pending != nil && p.pending.ID == p.applied.Journal.ID {
			left := p.pending.ConfirmBy.Sub(p.c.Now())
			out = append(out, st.Warning.Render(fmt.Sprintf("  ⚠ reverting in %s — press y to keep the changes", common.Countdown(left))))
		}
		for _, d := range p.applied.Drift {
			out = append(out, st.Warning.Render("  drift: "+d))
		}
	}
	for _, l := range p.progress {
		out = append(out, "  "+components.Cut(l, width-2))
	}
	return out
}

func (p *Wizards) historyLines(width int) []string {
	st := p.c.Styles
	if p.historyErr != nil {
		return []string{st.Error.Render("  " + p.historyErr.Error())}
	}
	if len(p.history) == 0 {
		return []string{st.Dim.Render("  no applies yet")}
	}
	var out []string
	for i, j := range p.history {
		line := components.Fit("  "+j.String(), width)
		if i == p.histSel {
			line = st.Selected.Render(components.Fit("▸ "+j.String(), width))
		}
		out = append(out, line)
	}
	return out
}

// foldFunctions shows each shell function of a script as one line: the plan's scripts start
// with helpers (try, rt_name) that push the changes themselves off the screen.
func foldFunctions(lines []string) []string {
	var out []string
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasSuffix(l, "() {") && !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "\t") {
			end := i + 1
			for end < len(lines) && lines[end] != "}" {
				end++
			}
			if end < len(lines) {
				// The comment that explains the helper goes with it.
				doc := 0
				for len(out) > 0 && strings.HasPrefix(out[len(out)-1], "#") && !strings.HasPrefix(out[len(out)-1], "#!") {
					out = out[:len(out)-1]
					doc++
				}
				out = append(out, fmt.Sprintf("%s … }   # shell helper, %d lines folded (z)", l, end-i+1+doc))
				i = end
				continue
			}
		}
		out = append(out, l)
	}
	return out
}
