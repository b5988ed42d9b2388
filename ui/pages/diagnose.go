package pages

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"roundtrip/diagnose"
	"roundtrip/engine/capture"
	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/quote"
	"roundtrip/engine/trace"
	"roundtrip/ui/common"
	"roundtrip/ui/components"
)

// captureLines is how many decoded packets the capture pane keeps.
const captureLines = 200

// Diagnose traces one flow through the host: the request and the reply drawn side by side,
// the rule or route that decided each leg highlighted, the point where the reply parts from
// the request marked, and the findings with their fixes. A live capture of the flow shows
// packets per interface and the findings the wire confirms.
type Diagnose struct {
	c     *common.Common
	state *model.State
	fib   *fib.FIB

	form    *components.Form
	editing bool
	formErr string

	gen      int
	busy     bool
	req      trace.Request
	res      *trace.Result
	findings []findingRow // the trace's, then the live capture's, one row per problem and flow
	selected int
	evidence bool
	diagram  components.Pager

	capture capturePane
	keys    struct{ Edit, Run, Wizard, Evidence, Capture key.Binding }
}

// findingRow is one problem of one flow: a finding of the trace, of the capture, or both, with
// the number of connections the capture saw it in. The capture finds a problem once per
// connection, and a client that retries makes many: listed once each, they would hide the
// rest.
type findingRow struct {
	finding.Finding
	key    string
	traced bool // the trace found it
	live   int  // connections the capture found it in
	// liveEvidence is the first live finding's evidence (the packets), shown with the trace's.
	liveEvidence []string
}

// rowKey groups findings by id and flow: protocol, client address, destination.
func rowKey(id string, proto int, client netip.Addr, dst netip.AddrPort) string {
	return fmt.Sprintf("%s|%d|%s|%s", id, proto, client, dst)
}

// capturePane is the state of the live capture.
type capturePane struct {
	on      bool
	running bool // the kernel keeps the packets: a client started now is seen whole
	gen     int
	cancel  context.CancelFunc
	started time.Time
	lines   []string
	counts  map[string]*[2]int // interface -> packets in, out
	order   []string
	total   int
	err     error
	done    bool
	ch      chan tea.Msg
	// completed and failed count the connections that made the round trip and those with an
	// error, as the capture's own goroutine saw every event (the screen may have dropped some).
	completed, failed int
	tcp               bool
	// drops counts the kernel's drops of the flow (drop events).
	drops int
}

// captureTick redraws the running capture's clock.
type captureTick struct{ gen int }

// captureReadyMsg says that the capture runs: from now on its packets are kept.
type captureReadyMsg struct {
	gen int
	ch  chan tea.Msg
	at  time.Time
}

type traceMsg struct {
	gen   int
	state *model.State
	fib   *fib.FIB
	res   *trace.Result
}

type captureEventMsg struct {
	gen      int
	ch       chan tea.Msg
	ev       diagnose.Event
	progress captureProgress
}

type captureDoneMsg struct {
	gen      int
	sum      *diagnose.CaptureSummary
	err      error
	progress captureProgress
}

// captureProgress is diagnose.Progress's count at the time of a message.
type captureProgress struct {
	completed, failed int
	tcp               bool
}

// NewDiagnose returns the Diagnose page.
func NewDiagnose(c *common.Common) *Diagnose {
	p := &Diagnose{c: c}
	p.keys.Edit = common.Bind("e", "edit the flow", "e", "/")
	p.keys.Run = common.Bind("enter", "trace", "enter")
	p.keys.Wizard = common.Bind("w", "fix with the wizard", "w")
	p.keys.Evidence = common.Bind("v", "evidence ⇄ diagram", "v")
	p.keys.Capture = common.Bind("c", "live capture on/off", "c")
	proto := components.NewChoice("proto", "Protocol", []string{"tcp", "udp", "icmp"}, "tcp", "←/→ changes")
	src := components.NewText(c.Styles, "src", "Source", "", "the client: ADDR[:PORT] (0.0.0.0 for this host)", requiredEndpoint)
	src.SetPlaceholder("198.18.7.7:40000")
	dst := components.NewText(c.Styles, "dst", "Destination", "", "where it goes: ADDR[:PORT]", requiredEndpoint)
	dst.SetPlaceholder("192.168.10.2:80")
	iif := components.NewText(c.Styles, "iif", "Arrives on", "", "the interface the request comes in on (empty: decide)", p.validIface)
	iif.SetPlaceholder("eth0")
	mark := components.NewText(c.Styles, "mark", "Fwmark", "", "the mark it carries, decimal or 0x-hex (optional)", validMark)
	p.form = components.NewForm(c.Styles, proto, src, dst, iif, mark)
	p.form.FocusKey("src")
	return p
}

// Title implements Page.
func (p *Diagnose) Title() string { return "Diagnose" }

// Capturing implements Page.
func (p *Diagnose) Capturing() bool { return p.editing }

// ShortHelp implements Page.
func (p *Diagnose) ShortHelp() []key.Binding {
	if p.editing {
		b := []key.Binding{p.keys.Run, common.Bind("tab/↓", "next field", "tab")}
		return append(b, common.Bind("esc", "leave the form", "esc"))
	}
	return []key.Binding{p.keys.Edit, common.Keys.Down, p.keys.Wizard, p.keys.Evidence, p.keys.Capture}
}

// FullHelp implements Page.
func (p *Diagnose) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		{p.keys.Edit, p.keys.Run, common.Bind("tab", "next field", "tab"), common.Bind("esc", "leave the form", "esc")},
		{common.Keys.Up, common.Keys.Down, p.keys.Wizard, p.keys.Evidence},
		{common.Keys.PageUp, common.Keys.PageDown, p.keys.Capture},
	}
}

// Result returns the last trace, or nil.
func (p *Diagnose) Result() *trace.Result { return p.res }

// Findings returns the findings listed, one per problem and flow: the trace's, then the live
// ones.
func (p *Diagnose) Findings() []finding.Finding {
	out := make([]finding.Finding, len(p.findings))
	for i, r := range p.findings {
		out[i] = r.Finding
	}
	return out
}

// LiveCount returns how many connections the capture saw the listed finding i in.
func (p *Diagnose) LiveCount(i int) int { return p.findings[i].live }

// Editing reports whether the flow form has the keyboard.
func (p *Diagnose) Editing() bool { return p.editing }

// SetFlow fills the form (from a finding, or a test).
func (p *Diagnose) SetFlow(proto, src, dst, iif string) {
	p.form.Field("proto").SetValue(proto)
	p.form.Field("src").SetValue(src)
	p.form.Field("dst").SetValue(dst)
	p.form.Field("iif").SetValue(iif)
}

func requiredEndpoint(s string) error {
	if s == "" {
		return errors.New("required")
	}
	_, err := inet.ParseEndpoint("", s)
	return err
}

func validMark(s string) error {
	if s == "" {
		return nil
	}
	if _, err := strconv.ParseUint(s, 0, 32); err != nil {
		return errors.New("not a 32-bit number")
	}
	return nil
}

func (p *Diagnose) validIface(s string) error {
	if s == "" || p.state == nil || p.state.LinkByName(s) != nil {
		return nil
	}
	var names []string
	for _, l := range p.state.Links {
		names = append(names, l.Name)
	}
	return fmt.Errorf("no such interface; there are %s", strings.Join(names, ", "))
}

// request checks the form as a whole and returns the trace request.
func (p *Diagnose) request() (trace.Request, error) {
	var req trace.Request
	for _, f := range p.form.Fields {
		if f.Err != nil {
			return req, fmt.Errorf("%s: %v", strings.ToLower(f.Label), f.Err)
		}
	}
	// The command line's parser: the same flows are refused with the same words.
	req, err := trace.ParseFlow(p.form.Get("proto"), p.form.Get("src"), p.form.Get("dst"))
	if err != nil {
		return req, err
	}
	req.IIF = p.form.Get("iif")
	if m := p.form.Get("mark"); m != "" {
		v, _ := strconv.ParseUint(m, 0, 32)
		req.Mark = uint32(v)
	}
	return req, nil
}

func (p *Diagnose) runTrace() tea.Cmd {
	p.form.Submitted = true
	req, err := p.request()
	if err != nil {
		p.formErr = err.Error()
		return nil
	}
	if p.state == nil {
		p.formErr = "the state is still being read"
		return nil
	}
	p.formErr = ""
	p.editing, p.form.Active = false, false
	p.gen++
	p.busy = true
	p.req = req
	gen, s, fi := p.gen, p.state, p.fib
	return func() tea.Msg {
		if fi == nil {
			fi = fib.New(s)
		}
		return traceMsg{gen: gen, state: s, fib: fi, res: trace.Run(s, fi, req)}
	}
}

// Update implements Page.
func (p *Diagnose) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case common.StateMsg:
		if msg.Err == nil {
			p.state, p.fib = msg.State, nil
			// Interface names may have changed: check the field again.
			if f := p.form.Field("iif"); f != nil {
				f.SetValue(f.Value())
			}
			if p.res != nil && !p.editing {
				return p.runTrace()
			}
		}
	case common.AnalysisMsg:
		if msg.State == p.state {
			p.fib = msg.FIB
		}
	case traceMsg:
		if msg.gen != p.gen {
			return nil
		}
		p.busy = false
		p.res = msg.res
		if msg.state == p.state {
			p.fib = msg.fib
		}
		var sel string
		if p.selected < len(p.findings) {
			sel = p.findings[p.selected].key
		}
		p.findings = nil
		for _, f := range msg.res.Findings {
			k := rowKey(f.ID, p.req.Proto, p.req.Src.Addr(), p.req.Dst)
			p.findings = append(p.findings, findingRow{Finding: f, key: k, traced: true})
		}
		// The same flow traced again keeps its selection; a new one starts at its first error.
		p.selected = 0
		for i, f := range p.findings {
			if f.Severity == finding.SeverityError {
				p.selected = i
				break
			}
		}
		for i, f := range p.findings {
			if f.key == sel {
				p.selected = i
			}
		}
		p.diagram.Offset = 0
		if p.capture.on {
			// The flow changed: watch the new one.
			p.stopCapture()
			return p.startCapture()
		}
	case captureEventMsg:
		if msg.gen != p.capture.gen {
			// A stopped capture still delivers what it had: read its channel to the end so
			// that its goroutine can finish.
			return waitOn(msg.ch)
		}
		p.captureEvent(msg.ev)
		p.capture.setProgress(msg.progress)
		return waitOn(msg.ch)
	case captureReadyMsg:
		if msg.gen == p.capture.gen && p.capture.on {
			p.capture.running, p.capture.started = true, msg.at
		}
		return waitOn(msg.ch)
	case captureTick:
		if msg.gen == p.capture.gen && p.capture.on {
			return p.c.After(time.Second, captureTick{gen: msg.gen})
		}
	case captureDoneMsg:
		if msg.gen != p.capture.gen {
			return nil
		}
		p.capture.setProgress(msg.progress)
		p.capture.done = true
		p.capture.err = msg.err
		p.capture.on = false
		if msg.err != nil {
			return common.StatusError(fmt.Errorf("live capture: %w", msg.err))
		}
	case tea.KeyPressMsg:
		return p.key(msg)
	case tea.MouseWheelMsg:
		p.diagram.Update(msg)
	}
	return nil
}

func (p *Diagnose) key(msg tea.KeyPressMsg) tea.Cmd {
	if p.editing {
		switch msg.String() {
		case "enter":
			return p.runTrace()
		case "esc":
			p.editing, p.form.Active = false, false
			return nil
		}
		_, cmd := p.form.Update(msg)
		p.formErr = ""
		return cmd
	}
	switch {
	case key.Matches(msg, p.keys.Edit), p.res == nil && key.Matches(msg, p.keys.Run):
		p.editing, p.form.Active = true, true
	case key.Matches(msg, common.Keys.Up):
		if p.selected > 0 {
			p.selected--
		}
	case key.Matches(msg, common.Keys.Down):
		if p.selected < len(p.findings)-1 {
			p.selected++
		}
	case key.Matches(msg, p.keys.Evidence), key.Matches(msg, p.keys.Run):
		p.evidence = !p.evidence
		p.diagram.Offset = 0
	case key.Matches(msg, p.keys.Wizard):
		if p.selected < len(p.findings) {
			f := p.findings[p.selected]
			if f.Fix.Wizard == "" {
				return common.Status("no wizard fixes " + f.ID + ": " + f.Fix.Summary)
			}
			return func() tea.Msg { return common.OpenFix(f.Finding) }
		}
	case key.Matches(msg, p.keys.Capture):
		if p.capture.on {
			p.stopCapture()
			return nil
		}
		return p.startCapture()
	default:
		p.diagram.Update(msg)
	}
	return nil
}

func (p *Diagnose) startCapture() tea.Cmd {
	if !p.c.Backend.Live() {
		return common.Status("live capture needs the live host: a snapshot has no packets")
	}
	if p.res == nil {
		return common.Status("trace a flow first (e), then capture it")
	}
	ctx, cancel := context.WithCancel(p.c.Ctx)
	p.capture = capturePane{on: true, gen: p.capture.gen + 1, cancel: cancel, started: p.c.Now(),
		counts: map[string]*[2]int{}, ch: make(chan tea.Msg, 1024)}
	gen, ch, b, now := p.capture.gen, p.capture.ch, p.c.Backend, p.c.Now
	// diagnose's own filter, from any client port: a port typed into Source (the placeholder
	// shows one) is the trace's, and a real client picks a new one for every connection.
	filter := diagnose.FlowCaptureFilter(p.req, p.res, true)
	go func() {
		var dropped int
		var prog diagnose.Progress
		count := func() captureProgress {
			return captureProgress{completed: prog.Completed(), failed: prog.Failed(), tcp: prog.TCP()}
		}
		ready := func() { ch <- captureReadyMsg{gen: gen, ch: ch, at: now()} }
		sum, err := b.Capture(ctx, filter, ready, func(ev diagnose.Event) error {
			// Counted before anything is dropped, so that the verdict holds every packet.
			prog.Observe(ev)
			m := captureEventMsg{gen: gen, ch: ch, ev: ev, progress: count()}
			select {
			case ch <- m:
			default:
				// The screen cannot keep up: drop packet lines, never findings or the
				// kernel's drops.
				if ev.Type == diagnose.EventFinding || ev.Type == diagnose.EventDrop {
					ch <- m
				} else {
					dropped++
				}
			}
			return nil
		})
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		if dropped > 0 {
			ch <- captureEventMsg{gen: gen, ch: ch, progress: count(),
				ev: diagnose.Event{Type: diagnose.EventNotice, Notice: fmt.Sprintf("%d packets were not shown: the screen could not keep up", dropped)}}
		}
		ch <- captureDoneMsg{gen: gen, sum: sum, err: err, progress: count()}
		close(ch)
	}()
	// The clock of the pane goes on while no packet comes.
	return tea.Batch(waitOn(ch), p.c.After(time.Second, captureTick{gen: gen}))
}

func (cp *capturePane) setProgress(pr captureProgress) {
	cp.completed, cp.failed, cp.tcp = pr.completed, pr.failed, pr.tcp
}

// waitOn delivers the next message of a capture's channel; it is issued again after each
// event, until the channel closes.
func waitOn(ch chan tea.Msg) tea.Cmd {
	return func() tea.Msg {
		m, ok := <-ch
		if !ok {
			return nil
		}
		return m
	}
}

func (p *Diagnose) stopCapture() {
	if p.capture.cancel != nil {
		p.capture.cancel()
	}
	p.capture.on = false
}

func (p *Diagnose) captureEvent(ev diagnose.Event) {
	cp := &p.capture
	switch ev.Type {
	case diagnose.EventPacket:
		pk := ev.Packet
		cp.total++
		n := cp.counts[pk.Iface]
		if n == nil {
			n = &[2]int{}
			cp.counts[pk.Iface] = n
			cp.order = append(cp.order, pk.Iface)
		}
		if pk.Dir == capture.Out {
			n[1]++
		} else {
			n[0]++
		}
		cp.add(pk.String())
	case diagnose.EventFinding:
		f := ev.Finding
		cp.add(fmt.Sprintf("%s %s: %s", sevMark(f.Severity), f.ID, f.Summary))
		p.addLive(f)
	case diagnose.EventDrop:
		// The kernel's own word: what dropped the packet, where, and why.
		cp.drops++
		cp.add(quote.Term(fmt.Sprintf("✗ kernel dropped [conn %d] %s", ev.Conn, ev.Drop)))
	case diagnose.EventRule:
		// Of the rule steps only the verdicts that end a packet: every step of every packet
		// would flood the pane (capture --json has them all).
		if v := ev.Rule.Verdict; v == "drop" || v == "reject" {
			cp.add(quote.Term(fmt.Sprintf("✗ rule [conn %d] %s", ev.Conn, ev.Rule)))
		}
	case diagnose.EventNotice:
		cp.add("note: " + ev.Notice)
	}
}

// addLive lists a finding of the capture: on the row of the same problem and flow when there
// is one (the trace's, or an earlier connection's), else on a new row whose fix is completed
// from the trace.
func (p *Diagnose) addLive(f *diagnose.Finding) {
	k := rowKey(f.ID, int(f.Flow.Proto), f.Flow.Src.Addr(), f.Flow.Dst)
	for i := range p.findings {
		if r := &p.findings[i]; r.key == k {
			r.live++
			if r.liveEvidence == nil {
				r.liveEvidence = f.Evidence
			}
			return
		}
	}
	live := f.Finding
	live.Summary = "live: " + live.Summary
	live.Fix = liveFix(f, p.res)
	p.findings = append(p.findings, findingRow{Finding: live, key: k, live: 1, liveEvidence: f.Evidence})
}

func (cp *capturePane) add(line string) {
	cp.lines = append(cp.lines, line)
	if len(cp.lines) > captureLines {
		cp.lines = cp.lines[len(cp.lines)-captureLines:]
	}
}

// View implements Page.
func (p *Diagnose) View(width, height int) string {
	st := p.c.Styles
	var top []string
	if p.editing || p.res == nil {
		top = append(top, st.Header.Render(components.Fit(" Flow to trace", width)))
		top = append(top, strings.Split(p.form.View(width), "\n")...)
		if n := p.form.FocusNote(width); n != "" {
			top = append(top, strings.Split(n, "\n")...)
		}
		switch {
		case p.formErr != "":
			top = append(top, st.Error.Render(components.Fit("  ✗ "+p.formErr, width)))
		case p.editing:
			top = append(top, st.Dim.Render(components.Fit("  enter traces the flow; tab moves between fields; esc leaves the form", width)))
		default:
			top = append(top, st.Dim.Render(components.Fit("  e (or enter) edits the flow", width)))
		}
	} else {
		top = append(top, st.Header.Render(components.Fit(" Flow "+flowText(p.req)+"   (e edits)", width)))
	}
	if p.res == nil {
		if p.busy {
			top = append(top, st.Dim.Render("  tracing…"))
		}
		return components.Lines(strings.Join(top, "\n"), width, height)
	}
	if p.busy {
		top = append(top, st.Dim.Render("  tracing…"))
	}

	// Findings: a short list, the selected one kept in view.
	verdict := p.verdictText()
	head := st.Header.Render(components.Fit(" Findings "+verdict, width))
	if strings.HasPrefix(verdict, "✓") {
		head = st.OK.Render(components.Fit(" Findings "+verdict, width))
	}
	top = append(top, head)
	if len(p.findings) == 0 {
		top = append(top, st.OK.Render(components.Fit("  ✓ the flow should make the round trip", width)))
	}
	show := min(len(p.findings), 4)
	first := max(min(p.selected-show+1, len(p.findings)-show), 0)
	if p.selected < first {
		first = p.selected
	}
	for i := first; i < first+show && i < len(p.findings); i++ {
		f := p.findings[i]
		marker := "  "
		if i == p.selected && !p.editing {
			marker = "▸ "
		}
		// ×N: seen live in N connections (the capture pane's findings).
		id, summary := f.ID, f.Summary
		if f.live > 0 {
			id += fmt.Sprintf(" ×%d", f.live)
		}
		text := fmt.Sprintf("%s%s %-18s %s", marker, sevMark(f.Severity), id, summary)
		line := components.Fit(text, width)
		switch {
		case i == p.selected && !p.editing:
			line = st.Selected.Render(line)
		default:
			line = st.Severity(f.Severity).Render(line)
		}
		top = append(top, line)
	}
	if f := p.current(); f != nil && f.Fix.Wizard != "" && !p.editing {
		top = append(top, st.Dim.Render(components.Fit("  w opens "+planFix(st, f.Fix).Opens(), width)))
	}

	rest := height - len(top)
	captureH := 0
	if p.capture.on || p.capture.done {
		captureH = min(max(rest/3, 6), rest-4)
	}
	diagH := rest - captureH
	var body string
	if p.evidence {
		p.diagram.SetLines(p.evidenceLines(width))
	} else {
		p.diagram.SetLines(p.diagramLines(width))
	}
	body = p.diagram.View(width, max(diagH, 1))
	out := strings.Join(top, "\n") + "\n" + body
	if captureH > 0 {
		out += "\n" + p.captureView(width, captureH)
	}
	return components.Lines(out, width, height)
}

func (p *Diagnose) current() *findingRow {
	if p.selected < 0 || p.selected >= len(p.findings) {
		return nil
	}
	return &p.findings[p.selected]
}

func flowText(r trace.Request) string {
	s := fmt.Sprintf("%s %s → %s", inet.ProtoName(r.Proto), endpointText(r.Src), endpointText(r.Dst))
	if r.IIF != "" {
		s += " in " + r.IIF
	}
	if r.Mark != 0 {
		s += fmt.Sprintf(" mark %#x", r.Mark)
	}
	return s
}

func endpointText(ap netip.AddrPort) string {
	if ap.Port() == 0 {
		return ap.Addr().String()
	}
	return ap.String()
}

// verdictText sums up the findings, one per problem and flow, and what the capture saw: when
// connections made the round trip and none failed, the flow works, whatever the trace said.
func (p *Diagnose) verdictText() string {
	errs := 0
	for _, f := range p.findings {
		if f.Severity == finding.SeverityError {
			errs++
		}
	}
	cp := &p.capture
	done := ""
	switch {
	case cp.completed > 0 && cp.tcp:
		done = plural(cp.completed, "handshake") + " completed"
	case cp.completed > 0:
		done = plural(cp.completed, "request") + " answered"
	}
	switch {
	case cp.completed > 0 && cp.failed == 0:
		v := "✓ round trip OK: " + done
		if errs > 0 {
			v += fmt.Sprintf(" (the trace predicted %d error(s))", errs)
		}
		return v
	case errs > 0 && done != "":
		return fmt.Sprintf("(%d error(s), %d connection(s) failed; %s)", errs, cp.failed, done)
	case errs > 0:
		return fmt.Sprintf("(%d error(s): the round trip fails)", errs)
	case len(p.findings) > 0:
		return "(no errors)"
	}
	return ""
}

// plural writes a count with its noun: "1 handshake", "12 handshakes".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func (p *Diagnose) evidenceLines(width int) []string {
	st := p.c.Styles
	f := p.current()
	if f == nil {
		return []string{st.Dim.Render("  no finding selected")}
	}
	out := []string{st.Bold.Render(" " + f.ID + " (" + f.Severity + ")")}
	for _, l := range components.Wrap(f.Summary, width-2, "") {
		out = append(out, " "+l)
	}
	evidence := func(es []string) {
		for _, e := range es {
			for _, l := range components.Wrap("• "+e, width-2, "  ") {
				out = append(out, " "+l)
			}
		}
	}
	// What the wire showed first: it is the proof; the trace's reasoning follows.
	if f.live > 0 {
		out = append(out, "", st.Header.Render(fmt.Sprintf(" Seen live in %d connection(s); the first:", f.live)))
		evidence(f.liveEvidence)
	}
	if f.traced {
		out = append(out, "", st.Header.Render(" Evidence of the trace"))
		evidence(f.Evidence)
	}
	if f.Fix.Summary != "" {
		out = append(out, "", st.Header.Render(" Fix"))
		for _, l := range components.Wrap(f.Fix.Summary, width-2, "") {
			out = append(out, " "+st.OK.Render(l))
		}
		if f.Fix.Wizard != "" {
			fp := planFix(st, f.Fix)
			// Lines that paste as one command (each but the last ends in a backslash).
			out = append(out, f.Fix.CommandLines(" ", "     ", width)...)
			if len(fp.Missing) > 0 {
				for _, l := range components.Wrap("still needed: "+strings.Join(fp.Missing, ", "), width-2, "  ") {
					out = append(out, " "+st.Warning.Render(l))
				}
			}
		}
	}
	return out
}

// diagramLines draws the two legs side by side (stacked on narrow screens).
func (p *Diagnose) diagramLines(width int) []string {
	fwd := &p.res.Forward
	if width < 70 {
		l := p.legLines("REQUEST", fwd, nil, width)
		l = append(l, "")
		return append(l, p.legLines("REPLY", p.res.Reply, fwd, width)...)
	}
	cw := (width - 3) / 2
	left := p.legLines("REQUEST", fwd, nil, cw)
	right := p.legLines("REPLY", p.res.Reply, fwd, cw)
	n := max(len(left), len(right))
	out := make([]string, n)
	for i := range n {
		var l, r string
		if i < len(left) {
			l = left[i]
		}
		if i < len(right) {
			r = right[i]
		}
		out[i] = components.Fit(l, cw) + " " + p.c.Styles.Dim.Render("│") + " " + r
	}
	return out
}

// legLines draws one leg as a column: where it starts, each step (the decisive ones marked
// ▶), and where it ends. For the reply, request is the forward leg: a reply that leaves by
// another interface than the request came in on is the mismatch drawn in red.
func (p *Diagnose) legLines(title string, l *trace.Leg, request *trace.Leg, w int) []string {
	st := p.c.Styles
	out := []string{st.Header.Render(title)}
	if l == nil {
		out = append(out, st.Mismatch.Render(components.Cut("✗ no reply: the request does not get through", w)))
		return out
	}
	out = append(out, components.Cut(fmt.Sprintf("%s → %s", endpointText(l.Packet.Src), endpointText(l.Packet.Dst)), w))
	if l.IIF != "" {
		out = append(out, "● in "+l.IIF)
	} else {
		out = append(out, "● from this host")
	}
	for _, s := range l.Steps {
		marker, style := "│ ", lipgloss.NewStyle()
		if s.Decisive {
			marker, style = "▶ ", st.Decisive
		}
		text := s.Hook + ": " + s.What
		if s.Backend != "" {
			text = s.Hook + " [" + s.Backend + "]: " + s.What
		}
		for i, line := range components.Wrap(text, w-2, "  ") {
			m := marker
			if i > 0 {
				m = "│ "
				if s.Decisive {
					m = "  "
				}
			}
			out = append(out, m+style.Render(line))
		}
		if s.Rule != "" {
			for _, line := range components.Wrap(s.Rule, w-4, "  ") {
				out = append(out, "│   "+st.Dim.Render(line))
			}
		}
	}
	end := legEnd(l)
	mismatch := request != nil && request.IIF != "" && request.IIF != "lo" && l.OIF != "" && l.OIF != request.IIF
	failed := l.Verdict != trace.LegLocal && l.Verdict != trace.LegForward && l.Verdict != trace.LegOutput && l.Verdict != trace.LegBridged
	switch {
	case mismatch:
		for _, line := range components.Wrap(fmt.Sprintf("✗ %s, but the request came in on %s", end, request.IIF), w, "  ") {
			out = append(out, st.Mismatch.Render(line))
		}
	case failed:
		for _, line := range components.Wrap("✗ "+end, w, "  ") {
			out = append(out, st.Mismatch.Render(line))
		}
	default:
		out = append(out, st.OK.Render(components.Cut("● "+end, w)))
	}
	return out
}

func legEnd(l *trace.Leg) string {
	var s string
	switch l.Verdict {
	case trace.LegLocal:
		s = "delivered to this host"
	case trace.LegForward, trace.LegOutput:
		s = "out " + l.OIF
		if l.Gateway.IsValid() {
			s += " via " + l.Gateway.String()
		}
	case trace.LegBridged:
		s = "bridged out " + l.OIF
	default:
		s = l.Verdict
	}
	if l.TableName != "" && (l.Verdict == trace.LegForward || l.Verdict == trace.LegOutput || l.Verdict == trace.LegLocal) {
		s += " (table " + l.TableName
		if l.Rule != nil {
			s += fmt.Sprintf(", rule %d", *l.Rule)
		}
		s += ")"
	}
	return s
}

func (p *Diagnose) captureView(width, height int) string {
	st := p.c.Styles
	cp := &p.capture
	state := "stopped (c starts again)"
	switch {
	case cp.on && !cp.running:
		state = "starting: opening the capture… (c stops)"
	case cp.on:
		state = fmt.Sprintf("running %s (c stops)", p.c.Now().Sub(cp.started).Truncate(time.Second))
	}
	head := fmt.Sprintf(" Live capture  %s", state)
	right := fmt.Sprintf("%d packets", cp.total)
	if cp.drops > 0 {
		right += fmt.Sprintf(" · %d kernel drops", cp.drops)
	}
	if cp.completed+cp.failed > 0 {
		right = fmt.Sprintf("%d completed, %d failed · ", cp.completed, cp.failed) + right
	}
	lines := []string{st.Header.Render(components.Fit(head+strings.Repeat(" ", max(width-len([]rune(head))-len(right)-1, 1))+right, width))}
	var counts []string
	for _, i := range cp.order {
		n := cp.counts[i]
		counts = append(counts, fmt.Sprintf("%s in %d out %d", i, n[0], n[1]))
	}
	switch {
	case len(counts) == 0 && cp.on && !cp.running:
		counts = []string{"start the client once the capture runs: packets before are not seen"}
	case len(counts) == 0:
		counts = []string{"no packets of the flow yet: start the client"}
	}
	lines = append(lines, components.Cut("  "+strings.Join(counts, "   "), width))
	if cp.err != nil {
		lines = append(lines, st.Error.Render(components.Cut("  "+cp.err.Error(), width)))
	}
	room := height - len(lines)
	from := max(len(cp.lines)-room, 0)
	for _, l := range cp.lines[from:] {
		style := lipgloss.NewStyle()
		if strings.HasPrefix(l, "✗") {
			style = st.Error
		} else if strings.HasPrefix(l, "!") {
			style = st.Warning
		}
		lines = append(lines, style.Render(components.Cut("  "+l, width)))
	}
	return components.Lines(strings.Join(lines, "\n"), width, height)
}
