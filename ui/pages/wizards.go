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
	"github.com/charmbracelet/x/ansi"

	"roundtrip/engine/apply"
	"roundtrip/engine/finding"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
	"roundtrip/engine/safefile"
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
	dialogSave // the file name to save the script to
	dialogCopy // the command, shown to copy by hand too
)

// Wizards fills a wizard's form, shows the plan as the script it stands for and as a diff of
// the host's state, applies it with a confirmation window and a one-key confirm, and lists
// the history of applies for rollback.
type Wizards struct {
	c     *common.Common
	state *model.State
	cur   int
	forms []*components.Form

	editing bool
	from    string // the finding the wizard was opened from
	fillErr error
	// fromArgs are the flags the finding filled in, guessed what the console guessed for it
	// (a gateway), and missing the fields still without a value when it was opened.
	fromArgs    []string
	fromGuessed []string
	fromMissing []string
	fromSays    string // the fix's own word on what it could not know

	// offers are the host's uplinks with the gateways found for them (routes, neighbours).
	offers   []uplinkOffer
	ifaces   []string
	neighGen int

	planGen  int
	planning bool
	result   *wizards.Result
	planErr  error
	diff     []string
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
	applied  *apply.Result
	applyErr error
	pending  *apply.Journal

	// lockout is the SSH lockout check of the plan in the apply dialog (nil while it runs or
	// when not over SSH).
	lockout      *plan.Lockout
	lockoutCheck bool

	rollingBack bool
	history     []*apply.Journal
	historyErr  error
	histSel     int
	detail      *components.Detail

	saveForm *components.Form
	copyFix  finding.Fix // the command copied, as the fix type renders and quotes it
	copyText string

	keys struct{ Prev, Next, Edit, Pane, Fold, Apply, Rollback, History, Save, Copy, Detail key.Binding }
}

type planMsg struct {
	gen  int
	res  *wizards.Result
	err  error
	diff []string
	args []string
}

type neighboursMsg struct {
	gen   int
	state *model.State
	neigh []model.Neighbour
}

type savedMsg struct {
	paths    []string
	warnings []string
	err      error
}

type applyProgressMsg struct {
	gen  int
	line string
}

type applyDoneMsg struct {
	gen int
	res *apply.Result
	err error
}

type lockoutMsg struct {
	plan *plan.Plan
	lo   plan.Lockout
}

type rollbackDoneMsg struct {
	j   *apply.Journal
	err error
}

type historyMsg struct {
	js  []*apply.Journal
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
	p.keys.Save = common.Bind("s", "save script", "s")
	p.keys.Copy = common.Bind("c", "copy command", "c")
	p.keys.Detail = common.Bind("enter", "history: the apply in full", "enter")
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
	case p.dialog == dialogSave:
		return []key.Binding{common.Bind("enter", "save", "enter"), common.Bind("esc", "cancel", "esc")}
	case p.dialog == dialogCopy:
		return []key.Binding{common.Bind("esc", "close", "esc")}
	case p.detail != nil:
		return []key.Binding{common.Keys.Down, common.Bind("esc", "back", "esc")}
	case p.editing:
		return []key.Binding{common.Bind("tab/↓", "next field", "tab"), common.Bind("←/→", "choice", "left"), common.Bind("esc", "done", "esc")}
	}
	return []key.Binding{p.keys.Edit, p.keys.Apply, p.keys.Pane, p.keys.Save, p.keys.Copy, p.keys.Rollback, p.keys.History, p.keys.Next}
}

// FullHelp implements Page.
func (p *Wizards) FullHelp() [][]key.Binding {
	if p.editing {
		return [][]key.Binding{{common.Bind("tab/↓", "next field", "tab"), common.Bind("shift+tab/↑", "previous field", "shift+tab"),
			common.Bind("←/→", "change a choice", "left"), common.Bind("→", "at the end: take the suggestion", "right"),
			common.Bind("esc/enter", "leave the form", "esc")}}
	}
	return [][]key.Binding{
		{p.keys.Prev, p.keys.Next, p.keys.Edit},
		{p.keys.Pane, p.keys.Fold, p.keys.History, p.keys.Detail, common.Keys.PageUp, common.Keys.PageDown},
		{p.keys.Apply, p.keys.Rollback, common.Keys.Confirm, p.keys.Save, p.keys.Copy},
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
func (p *Wizards) Applied() *apply.Result { return p.applied }

func (p *Wizards) replan() tea.Cmd {
	p.planGen++
	spec, form := specs[p.cur], p.forms[p.cur]
	p.result, p.diff, p.args = nil, nil, nil
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
			m.diff = planDiff(s, res.Plan.Expect(s))
		}
		return m
	}
}

// Open selects a wizard and fills its form from flags (a finding's fix). What the flags leave
// out is completed where the console knows it (an uplink's gateway) and otherwise named, so
// that the operator sees what the finding filled in and what is still needed.
func (p *Wizards) Open(msg common.OpenWizardMsg) tea.Cmd {
	i := specByName(msg.Wizard)
	if i < 0 {
		return common.Status(fmt.Sprintf("unknown wizard %q", msg.Wizard))
	}
	p.cur = i
	p.forms[i] = components.NewForm(p.c.Styles, specs[i].fields(p.c.Styles)...)
	form := p.forms[i]
	// What the fix could not know (<GATEWAY>) is left out: completed below from what the
	// console found, else named as still needed.
	args := withoutPlaceholders(msg.Args)
	p.fillErr = fill(specs[i], form, args)
	p.from, p.fromArgs, p.fromGuessed, p.fromSays = msg.From, args, nil, msg.Missing
	for _, k := range []string{"uplink", "wan"} {
		if fl := form.Field(k); fl != nil {
			p.fromGuessed = append(p.fromGuessed, p.completeGateways(fl)...)
		}
	}
	p.offer(form)
	p.fromMissing = missingFields(form)
	// A fix that does not say everything (a port forward knows the SNAT, not the port) opens
	// the form at the first field that still needs an answer.
	p.editing = false
	for _, fl := range form.Fields {
		if fl.Err != nil {
			p.editing = true
			form.FocusKey(fl.Key)
			break
		}
	}
	form.Active = p.editing
	p.pane, p.dialog, p.detail = paneScript, dialogNone, nil
	p.applied, p.applyErr = nil, nil
	return p.replan()
}

// completeGateways gives each uplink of fl named without a gateway the gateway the console
// found for it, and returns what it added ("em1: gateway 192.168.72.253 from the neighbour
// table").
func (p *Wizards) completeGateways(fl *components.Field) []string {
	var out, guessed []string
	for _, v := range strings.Fields(fl.Value()) {
		if !strings.Contains(v, ":") {
			for _, o := range p.offers {
				if o.Iface == v && o.Gateway.IsValid() {
					v = o.String()
					guessed = append(guessed, fmt.Sprintf("%s: gateway %s from %s", o.Iface, o.Gateway, o.From))
				}
			}
		}
		out = append(out, v)
	}
	if len(guessed) > 0 {
		fl.SetValue(strings.Join(out, " "))
	}
	return guessed
}

// offer puts the host's uplinks and interfaces into the fields that take them, as
// suggestions (→ takes one) and as the example shown in an empty field.
func (p *Wizards) offer(f *components.Form) {
	var ups, said []string
	for _, o := range p.offers {
		ups = append(ups, o.String())
		if o.From != "" {
			said = append(said, fmt.Sprintf("%s (gateway from %s)", o, o.From))
		} else {
			said = append(said, o.String()+" (no gateway found)")
		}
	}
	for _, fl := range f.Fields {
		var entries []string
		note := ""
		switch fl.Key {
		case "uplink", "wan":
			entries, note = ups, "here: "+strings.Join(said, ", ")
		case "in", "out", "lan":
			entries, note = p.ifaces, "here: "+strings.Join(p.ifaces, ", ")
		default:
			continue
		}
		fl.SetSuggestions(entries)
		if len(entries) > 0 {
			fl.SetPlaceholder(entries[0] + " (→)")
			fl.Note = note + "; → at the end of the field takes the one shown"
		}
	}
}

// readNeighbours reads the neighbour table for the gateway suggestions (a snapshot has none).
func (p *Wizards) readNeighbours(s *model.State) tea.Cmd {
	p.neighGen++
	gen, b, ctx := p.neighGen, p.c.Backend, p.c.Ctx
	return func() tea.Msg {
		var neigh []model.Neighbour
		if b.Live() {
			// Without the neighbours the gateways still come from routes: an error only
			// makes the suggestions poorer.
			neigh, _ = b.Neighbours(ctx)
		}
		return neighboursMsg{gen: gen, state: s, neigh: neigh}
	}
}

// Update implements Page.
func (p *Wizards) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case common.StateMsg:
		if msg.Err == nil {
			p.state = msg.State
			p.offers, p.ifaces = uplinkOffers(msg.State, nil), ifaceOffers(msg.State)
			for _, f := range p.forms {
				p.offer(f)
			}
			return tea.Batch(p.replan(), p.readNeighbours(msg.State))
		}
	case neighboursMsg:
		if msg.gen == p.neighGen && msg.state == p.state {
			p.offers = uplinkOffers(msg.state, msg.neigh)
			for _, f := range p.forms {
				p.offer(f)
			}
		}
	case common.OpenWizardMsg:
		return p.Open(msg)
	case common.PendingMsg:
		p.pending = msg.Journal
	case common.JournalMsg:
		// The journal as it is now: confirmed elsewhere, rolled back by the revert timer.
		j := msg.Journal
		if p.applied != nil && p.applied.Journal != nil && p.applied.Journal.ID == j.ID {
			p.applied.Journal = j
		}
		if p.pending != nil && p.pending.ID == j.ID && j.Status != apply.StatusPending {
			p.pending = nil
		}
		if p.pane == paneHistory || p.dialog == dialogRollback {
			return p.loadHistory()
		}
	case savedMsg:
		if msg.err != nil {
			return common.StatusError(msg.err)
		}
		text := "saved " + strings.Join(msg.paths, " and ") + ": run it as root (sh FILE)"
		if len(msg.warnings) > 0 {
			text += "; note: " + strings.Join(msg.warnings, "; ")
		}
		return common.Status(text)
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
		var lo *apply.LockoutError
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
	case journalStepsMsg:
		// Only if the detail of that journal is still the one open.
		if p.detail != nil && p.pane == paneHistory && p.histSel < len(p.history) && p.history[p.histSel].ID == msg.j.ID {
			p.detail = journalDetail(p.c.Styles, msg.j, msg.sums, msg.err)
		}
		return nil
	case historyMsg:
		// The selection stays on the same apply when a new one comes on top.
		var sel string
		if p.histSel < len(p.history) {
			sel = p.history[p.histSel].ID
		}
		p.history, p.historyErr = msg.js, msg.err
		p.histSel = min(p.histSel, max(len(p.history)-1, 0))
		for i, j := range p.history {
			if j.ID == sel {
				p.histSel = i
			}
		}
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
	case dialogSave:
		switch msg.String() {
		case "enter":
			p.dialog = dialogNone
			return p.save(p.saveForm.Get("path"))
		case "esc":
			p.dialog = dialogNone
			return nil
		}
		_, cmd := p.saveForm.Update(msg)
		return cmd
	case dialogCopy:
		switch msg.String() {
		case "esc", "enter", "c", "q":
			p.dialog = dialogNone
		}
		return nil
	}
	if p.detail != nil {
		if !key.Matches(msg, p.keys.Rollback) {
			if p.detail.Update(msg) {
				p.detail = nil
			}
			return nil
		}
		p.detail = nil
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
	case p.pane == paneHistory && key.Matches(msg, p.keys.Detail):
		if p.histSel < len(p.history) {
			j := p.history[p.histSel]
			p.detail = journalDetail(p.c.Styles, j, nil, nil)
			return p.loadSteps(j)
		}
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
	case key.Matches(msg, p.keys.Save):
		if p.result == nil || len(p.result.Plan.Changes) == 0 {
			return common.Status("no plan with changes to save")
		}
		path := components.NewText(p.c.Styles, "path", "Save to", "roundtrip-"+specs[p.cur].name+".sh",
			"a new file (an existing one is never replaced); the other end's script, if any, goes next to it", nil)
		p.saveForm = components.NewForm(p.c.Styles, path)
		p.saveForm.Active = true
		p.dialog = dialogSave
	case key.Matches(msg, p.keys.Copy):
		if p.args == nil {
			return common.Status("no command yet: the form does not plan")
		}
		p.copyFix = finding.Fix{Wizard: specs[p.cur].name, Args: p.args}
		p.copyText = p.copyFix.Command()
		p.dialog = dialogCopy
		// OSC 52 puts it in the terminal's clipboard, through SSH and tmux; terminals that do
		// not take it leave the box to copy from.
		return tea.Batch(tea.SetClipboard(p.copyText), common.Status("copied to the clipboard (OSC 52): "+p.copyText))
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
	sess, err := plan.ParseSSHConnection(p.c.SSH)
	if err != nil {
		return common.Status("cannot check the SSH lockout: " + err.Error())
	}
	p.lockoutCheck = true
	s, pl := p.state, p.result.Plan
	return func() tea.Msg { return lockoutMsg{plan: pl, lo: plan.CheckLockout(s, pl.Expect(s), sess)} }
}

// save writes the plan's script (and the other end's, when the plan has one) to new files.
func (p *Wizards) save(path string) tea.Cmd {
	if path == "" {
		return common.Status("no file name: nothing saved")
	}
	res := p.result
	if res == nil {
		return nil
	}
	return func() tea.Msg {
		abs, warnings, err := saveFile(path, res.Script(), safefile.ModeScript)
		if err != nil {
			return savedMsg{err: err}
		}
		paths := []string{abs}
		if res.Peer != nil {
			peer := strings.TrimSuffix(path, ".sh") + "-peer.sh"
			pabs, pw, err := saveFile(peer, []byte(res.PeerScript()), safefile.ModeScript)
			warnings = append(warnings, pw...)
			if err != nil {
				return savedMsg{err: fmt.Errorf("saved %s, but not the other end's script: %w", abs, err)}
			}
			paths = append(paths, pabs+" (for "+res.PeerHost+")")
		}
		return savedMsg{paths: paths, warnings: warnings}
	}
}

// journalDetail shows one apply of the history in full.
func journalDetail(st *common.Styles, j *apply.Journal, sums []string, err error) *components.Detail {
	d := components.NewDetail(st, "Apply "+j.ID, "Status", j.Status, "Command", j.Intent)
	if t := j.Head.Started; !t.IsZero() {
		d.Add("Started", t.Local().Format("2006-01-02 15:04:05"))
	}
	if !j.ConfirmBy.IsZero() {
		d.Add("Confirm by", j.ConfirmBy.Local().Format("15:04:05"))
	}
	if !j.ConfirmedAt.IsZero() {
		d.Add("Confirmed", j.ConfirmedAt.Local().Format("15:04:05"))
	}
	if !j.EndedAt.IsZero() {
		d.Add("Rolled back", j.EndedAt.Local().Format("15:04:05"))
	}
	if j.Reason != "" {
		d.Add("Why", j.Reason)
	}
	for _, e := range j.Errors {
		d.Add("Error", e)
	}
	for _, dr := range j.Drift {
		d.Add("Drift", dr)
	}
	// The steps live in the journal's steps file, read by loadSteps (nil until they come);
	// the detail shows the first ones (a journal of a full table holds hundreds of batches).
	switch {
	case err != nil:
		d.Add("Steps", "cannot read them: "+err.Error())
	case sums == nil:
		d.Add("Steps", fmt.Sprintf("%d, reading them…", j.Steps))
	default:
		for i, sum := range sums {
			d.Add(fmt.Sprintf("Step %d", i+1), sum)
		}
		if j.Steps > len(sums) {
			d.Add("Steps", fmt.Sprintf("… and %d more (roundtrip history)", j.Steps-len(sums)))
		}
	}
	d.Hint = "u rolls it back"
	return d
}

// journalStepsMsg carries the step lines of the journal whose detail is open.
type journalStepsMsg struct {
	j    *apply.Journal
	sums []string
	err  error
}

// loadSteps reads the first steps of a journal for its detail view.
func (p *Wizards) loadSteps(j *apply.Journal) tea.Cmd {
	b, ctx := p.c.Backend, p.c.Ctx
	return func() tea.Msg {
		const shown = 50
		sums, err := b.JournalSteps(ctx, j, shown)
		if sums == nil && err == nil {
			sums = []string{}
		}
		return journalStepsMsg{j: j, sums: sums, err: err}
	}
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
	gen, b, pl := p.applyGen, p.c.Backend, p.result.Plan
	// The Applier makes the SSH lockout check and refuses a plan that changes the route back
	// to the session without a confirmation window.
	opts := apply.Options{Confirm: confirmChoices[p.confirm]}
	if p.c.SSH != "" {
		if sess, err := plan.ParseSSHConnection(p.c.SSH); err == nil {
			opts.SSH = &sess
		}
	}
	// The apply must finish whatever happens to the console: it journals and undoes itself on
	// failure, and cancelling it half way would only make it undo.
	ctx := context.WithoutCancel(p.c.Ctx)
	go func() {
		res, err := b.Apply(ctx, pl, opts, func(line string) {
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
	top = append(top, p.fromLines(width)...)
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
	case p.dialog == dialogSave:
		title = " Save the plan as a script   (enter saves, esc cancels)"
		body = append(strings.Split(p.saveForm.View(width), "\n"), strings.Split(p.saveForm.FocusNote(width), "\n")...)
	case p.dialog == dialogCopy:
		title = " Copy the command   (esc closes)"
		body = p.copyBox(width)
	case p.detail != nil:
		p.pager.SetLines(nil)
		out := strings.Join(top, "\n") + "\n" + p.detail.View(width, rest+1)
		return components.Lines(out, width, height)
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
		body = p.diffLines(width)
	default:
		title = " Plan as a script   (d: as a diff of the state, z: unfold helpers, s: save)"
		if p.result != nil {
			body = strings.Split(strings.TrimSuffix(string(p.result.Script()), "\n"), "\n")
			if !p.unfold {
				body = foldFunctions(body)
			} else {
				title = " Plan as a script   (d: as a diff of the state, z: fold helpers, s: save)"
			}
			body = wrapLines(body, width, st.Dim.Render("  ↪ "), nil)
		}
	}
	p.pager.SetLines(body)
	out := strings.Join(top, "\n") + "\n" + st.Header.Render(components.Fit(title, width)) + "\n" + p.pager.View(width, rest)
	return components.Lines(out, width, height)
}

func (p *Wizards) diffLines(width int) []string {
	st := p.c.Styles
	if p.result == nil {
		return nil
	}
	if len(p.diff) == 0 {
		return []string{st.Dim.Render("  no difference")}
	}
	style := func(l string) string {
		switch {
		case strings.HasPrefix(l, "+"):
			return st.OK.Render(l)
		case strings.HasPrefix(l, "-"):
			return st.Error.Render(l)
		}
		return l
	}
	return wrapLines(p.diff, width, "    ", style)
}

// wrapLines breaks each line longer than width, continuation lines starting with cont, so that
// no line of a plan is cut; the text itself (a script's indentation) is kept as it is. style,
// when set, styles each piece as the whole line would be.
func wrapLines(lines []string, width int, cont string, style func(string) string) []string {
	var out []string
	cw := ansi.StringWidth(cont)
	for _, l := range lines {
		first := true
		for {
			limit := width
			if !first {
				limit = width - cw
			}
			if limit < 8 || ansi.StringWidth(l) <= limit {
				break
			}
			// Break at the last space that leaves something on the line, else mid-word.
			head := ansi.Truncate(l, limit, "")
			if i := strings.LastIndex(head, " "); i > 0 && strings.TrimSpace(head[:i]) != "" {
				head = head[:i+1]
			}
			out = append(out, wrapPiece(head, first, cont, style))
			l, first = strings.TrimLeft(l[len(head):], " "), false
		}
		out = append(out, wrapPiece(l, first, cont, style))
	}
	return out
}

func wrapPiece(piece string, first bool, cont string, style func(string) string) string {
	if style != nil {
		piece = style(piece)
	}
	if !first {
		piece = cont + piece
	}
	return piece
}

// copyBox shows the command to copy by hand where the terminal took no OSC 52: a flag with its
// value per line where the width asks for it, each line but the last ending in a backslash, so
// that pasting it runs it as one command.
func (p *Wizards) copyBox(width int) []string {
	st := p.c.Styles
	out := []string{st.Dim.Render("  sent to the terminal's clipboard; to copy by hand, select these lines:"), ""}
	return append(out, p.copyFix.CommandLines("  ", "      ", width-2)...)
}

// fromLines say where the form's values came from: the finding, what it filled in, what the
// console added, and what is still needed.
func (p *Wizards) fromLines(width int) []string {
	if p.from == "" {
		return nil
	}
	st := p.c.Styles
	var out []string
	add := func(style func(...string) string, text string) {
		for _, l := range components.Wrap(text, width-2, "  ") {
			out = append(out, style("  "+l))
		}
	}
	switch {
	case len(p.fromArgs) == 0:
		add(st.Dim.Render, "from the finding "+p.from+", whose fix names no flags")
	default:
		add(st.Dim.Render, "filled from the finding "+p.from)
	}
	for _, g := range p.fromGuessed {
		add(st.Dim.Render, "added "+g)
	}
	var needed []string
	if p.fromSays != "" && len(p.fromGuessed) == 0 {
		needed = append(needed, p.fromSays)
	}
	needed = append(needed, p.fromMissing...)
	if len(needed) > 0 {
		add(st.Warning.Render, "still needed: "+strings.Join(needed, "; "))
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
		j := p.applied.Journal
		head := fmt.Sprintf("journal %s, %d step(s)", j.ID, j.Steps)
		switch j.Status {
		case apply.StatusRolledBack:
			why := j.Reason
			if why == "" {
				why = "rolled back"
			}
			for _, l := range components.Wrap(fmt.Sprintf("↺ rolled back (%s): %s; the host is as before the apply", why, head), width-2, "  ") {
				out = append(out, st.Warning.Render("  "+l))
			}
		case apply.StatusRollbackFailed:
			out = append(out, st.Error.Render("  ✗ the rollback of "+head+" failed: the host is half way"))
			for _, e := range j.Errors {
				for _, l := range components.Wrap(e, width-4, "  ") {
					out = append(out, st.Error.Render("    "+l))
				}
			}
		case apply.StatusConfirmed:
			out = append(out, st.OK.Render("  ✓ applied and confirmed: "+head))
		default:
			out = append(out, st.OK.Render("  ✓ applied: "+head))
			if p.pending != nil && p.pending.ID == j.ID {
				left := p.pending.ConfirmBy.Sub(p.c.Now())
				out = append(out, st.Warning.Render(fmt.Sprintf("  ⚠ reverting in %s — press y to keep the changes", common.Countdown(left))))
			}
		}
		for _, d := range p.applied.Drift {
			out = append(out, st.Warning.Render("  drift: "+d))
		}
	}
	// Every step whole: a step cut at the edge is a step the operator cannot check.
	return append(out, wrapLines(prefixAll("  ", p.progress), width, "      ", nil)...)
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

func prefixAll(prefix string, lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = prefix + l
	}
	return out
}
