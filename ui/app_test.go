package ui

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"

	"roundtrip/diagnose"
	"roundtrip/engine/apply"
	"roundtrip/engine/capture"
	"roundtrip/engine/conntrack"
	"roundtrip/engine/doctor"
	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/nft"
	"roundtrip/engine/trace"
	"roundtrip/ui/common"
	"roundtrip/ui/pages"
)

// conntrackFixture is what case 1's server shows: an established connection from a LAN
// client, and the client's connection through the firewall's DNAT, answered the wrong way.
func conntrackFixture() []conntrack.Entry {
	ap := netip.MustParseAddrPort
	return []conntrack.Entry{
		{ID: 1, Family: inet.V4, Orig: conntrack.Tuple{Proto: 6, Src: ap("10.72.1.9:51000"), Dst: ap("10.72.1.2:22")},
			Reply:  conntrack.Tuple{Proto: 6, Src: ap("10.72.1.2:22"), Dst: ap("10.72.1.9:51000")},
			Status: conntrack.StatusSeenReply, TCPState: "ESTABLISHED", Timeout: 431999},
		{ID: 2, Family: inet.V4, Orig: conntrack.Tuple{Proto: 6, Src: ap("198.18.72.10:40000"), Dst: ap("10.72.1.2:80")},
			Reply: conntrack.Tuple{Proto: 6, Src: ap("10.72.1.2:80"), Dst: ap("198.18.72.10:40000")}, TCPState: "SYN_RECV", Timeout: 58},
		{ID: 3, Family: inet.V4, Orig: conntrack.Tuple{Proto: 6, Src: ap("198.18.72.10:40100"), Dst: ap("192.168.72.254:8080")},
			Reply:  conntrack.Tuple{Proto: 6, Src: ap("10.72.1.5:80"), Dst: ap("10.72.1.2:40100")},
			Status: conntrack.StatusSeenReply, TCPState: "ESTABLISHED", Mark: 0x100, Timeout: 300},
	}
}

// traceCase1 opens Diagnose and traces the client's connection that case 1 breaks.
func traceCase1(h *harness) {
	h.t.Helper()
	h.press("5", "e", "198.18.72.10:40000", "tab", "10.72.1.2:80", "tab", "eth0", "enter")
}

func TestGoldenPages(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {120, 40}} {
		suffix := fmt.Sprintf("-%dx%d", size[0], size[1])
		be := newFake(t, case1Host(t))
		be.conntrack = conntrackFixture()
		h := newHarness(t, be, size[0], size[1])
		h.golden("overview" + suffix)
		h.press("2")
		h.golden("routing" + suffix)
		h.press("3")
		h.golden("nat" + suffix)
		h.press("4")
		h.golden("conntrack" + suffix)
		traceCase1(h)
		h.golden("diagnose" + suffix)
		h.press("w")
		h.golden("wizards" + suffix)
	}
}

func TestFirstFrameShowsBeforeTheStateAndReadCancels(t *testing.T) {
	be := newFake(t, case1Host(t))
	be.block = make(chan struct{})
	c := common.New(context.Background(), common.NewStyles(common.ModePlain), be)
	c.Now = func() time.Time { return testNow }
	c.After = func(time.Duration, tea.Msg) tea.Cmd { return nil }
	app := NewApp(c, false)
	init := app.Init()
	// The frame exists before any command ran: nothing waits for the kernel.
	frame := app.Render()
	for _, want := range []string{"Overview", "reading state…", "reading state of netns lab", "esc cancels"} {
		if !strings.Contains(frame, want) {
			t.Fatalf("first frame lacks %q:\n%s", want, frame)
		}
	}
	msgs := make(chan tea.Msg, 8)
	for _, cmd := range init().(tea.BatchMsg) {
		if cmd != nil {
			go func() { msgs <- cmd() }()
		}
	}
	app.Update(keyMsg("esc"))
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-msgs:
			app.Update(m)
			if sm, ok := m.(common.StateMsg); ok {
				if !errors.Is(sm.Err, context.Canceled) {
					t.Fatalf("the read was not cancelled: %+v", sm)
				}
				if app.Loading() || !strings.Contains(app.Status(), "cancelled") {
					t.Fatalf("loading %v, status %q", app.Loading(), app.Status())
				}
				return
			}
		case <-deadline:
			t.Fatal("cancelling did not end the read")
		}
	}
}

func TestReadErrorIsShownAndRetried(t *testing.T) {
	be := newFake(t, case1Host(t))
	be.readErr = errors.New("opening netns lab: no such file or directory")
	h := newHarness(t, be, 80, 24)
	h.mustShow("could not read the state of netns lab", "no such file or directory", "r tries again")
	be.readErr = nil
	h.press("r")
	h.mustShow("Findings", "eth0")
	if be.reads != 2 {
		t.Fatalf("%d reads, want 2", be.reads)
	}
}

func TestNavigation(t *testing.T) {
	h := newHarness(t, newFake(t, case1Host(t)), 80, 24)
	steps := []struct {
		key  string
		want int
	}{{"tab", PageRouting}, {"tab", PageNAT}, {"shift+tab", PageRouting}, {"6", PageWizards}, {"tab", PageOverview}, {"shift+tab", PageWizards}, {"1", PageOverview}}
	for _, s := range steps {
		h.press(s.key)
		if h.app.Active != s.want {
			t.Fatalf("after %s: page %d, want %d", s.key, h.app.Active, s.want)
		}
	}
	h.press("?")
	h.mustShow("previous page", "go to page", "re-read state")
	h.press("?")
	if strings.Contains(h.screen(), "go to page") {
		t.Fatal("? did not close the full help")
	}
	if _, cmd := h.app.Update(keyMsg("q")); cmd == nil {
		t.Fatal("q does not quit")
	} else if _, ok := cmd().(tea.QuitMsg); !ok {
		t.Fatal("q does not quit")
	}
	// A click on a tab opens its page.
	x := strings.Index(h.screen(), "3 NAT")
	h.send(tea.MouseClickMsg{X: x, Y: 0, Button: tea.MouseLeft})
	if h.app.Active != PageNAT {
		t.Fatalf("click at %d opened page %d", x, h.app.Active)
	}
}

func TestOverviewFindingOpensWizard(t *testing.T) {
	h := newHarness(t, newFake(t, case1Host(t)), 120, 40)
	o := h.app.Page(PageOverview).(*pages.Overview)
	// The doctor sees em1, the uplink whose connections are answered through eth0.
	for o.SelectedFinding() != nil && o.SelectedFinding().ID != doctor.FindingUplinkNoReturn {
		before := o.SelectedFinding().ID
		h.press("down")
		if o.SelectedFinding().ID == before {
			t.Fatal("no uplink-without-return-routing finding")
		}
	}
	h.press("enter")
	h.mustShow("evidence", "fix:", "w opens the source-return wizard")
	h.press("w")
	w := h.app.Page(PageWizards).(*pages.Wizards)
	if h.app.Active != PageWizards || w.Current() != finding.WizardSourceReturn || w.Form().Get("uplink") != "em1:192.168.72.253" {
		t.Fatalf("page %d wizard %s uplink %q", h.app.Active, w.Current(), w.Form().Get("uplink"))
	}
	if w.Result() == nil || len(w.Result().Plan.Changes) == 0 {
		t.Fatalf("no plan: %v", w.PlanError())
	}
}

func TestRoutingFilterTablesAndRules(t *testing.T) {
	s := case1Host(t)
	s.TableNames = map[int]string{100: "china"}
	s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: 100, Type: model.RouteUnicast,
		Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.168.72.253"), Dev: "em1", Protocol: "static"})
	s.Rules = slices.Insert(s.Rules, 1, model.Rule{Family: inet.V4, Priority: 100, Src: netip.MustParsePrefix("192.168.72.254/32"), Action: model.ActionTable, Table: 100})
	h := newHarness(t, newFake(t, s), 80, 24)
	r := h.app.Page(PageRouting).(*pages.Routing)
	h.press("2")
	if r.TableID() != model.TableMain || len(r.Rows()) != 4 {
		t.Fatalf("table %d with %d rows", r.TableID(), len(r.Rows()))
	}
	dsts := func() []string {
		var out []string
		for _, i := range r.Rows() {
			out = append(out, s.Routes[i].Dst.String())
		}
		return out
	}
	// An address selects the routes a lookup of it considers.
	h.press("/", "198.18.72.5")
	if got := dsts(); !slices.Equal(got, []string{"0.0.0.0/0", "198.18.72.0/24"}) {
		t.Fatalf("filter 198.18.72.5: %v", got)
	}
	h.mustShow("2 of 4 routes match")
	// Typing on narrows as it goes: a prefix selects what overlaps it, a word the device.
	h.press("ctrl+u", "10.0.0.0/8")
	if got := dsts(); !slices.Equal(got, []string{"10.72.1.0/24", "0.0.0.0/0"}) {
		t.Fatalf("filter 10.0.0.0/8: %v", got)
	}
	h.press("ctrl+u", "dev em1", "enter")
	if got := dsts(); !slices.Equal(got, []string{"192.168.72.252/30", "198.18.72.0/24"}) {
		t.Fatalf("filter dev em1: %v", got)
	}
	if r.Capturing() {
		t.Fatal("enter did not leave the filter field")
	}
	h.press("esc")
	if r.FilterText() != "" || len(r.Rows()) != 4 {
		t.Fatalf("esc left filter %q and %d rows", r.FilterText(), len(r.Rows()))
	}
	// The next table is china.
	h.press("]")
	if r.TableID() != 100 || len(r.Rows()) != 1 {
		t.Fatalf("] went to table %d (%d rows)", r.TableID(), len(r.Rows()))
	}
	h.mustShow("Table ‹ china ›", "192.168.72.253")
	// From the rules, enter shows the rule whole, and enter again its table: rule 32766 looks
	// up main.
	h.press("s", "down", "down", "enter")
	h.mustShow("ip -4 rule add priority 32766 from all lookup main", "enter shows table main")
	h.press("enter")
	if r.TableID() != model.TableMain {
		t.Fatalf("enter on rule 32766 showed table %d", r.TableID())
	}
}

func TestDiagnoseToWizardApplyAndConfirm(t *testing.T) {
	be := newFake(t, case1Host(t))
	h := newHarness(t, be, 80, 24)
	d := h.app.Page(PageDiagnose).(*pages.Diagnose)
	w := h.app.Page(PageWizards).(*pages.Wizards)

	// Mistakes show as they are typed, and a flow with one does not run.
	h.press("5", "e", "198.18.72.10:4x")
	h.mustShow(`✗ port "4x" is not a number`)
	h.press("enter")
	if d.Result() != nil || !d.Editing() {
		t.Fatal("a flow with a bad source was traced")
	}
	h.press("ctrl+u", "198.18.72.10:40000", "tab", "10.72.1.2:80", "tab", "eth9")
	h.mustShow("✗ no such interface; there are lo, eth0, em1")
	h.press("ctrl+u", "eth0", "enter")
	res := d.Result()
	if res == nil || !res.Has(trace.FindingAsymmetricReturn) {
		t.Fatalf("trace: %+v", res)
	}
	h.mustShow("✗ asymmetric-return", "REQUEST", "REPLY", "● in eth0", "✗ out em1 via 192.168.72.253", "but the request", "came in on eth0")

	h.press("w")
	if h.app.Active != PageWizards || w.Current() != finding.WizardSourceReturn {
		t.Fatalf("w opened page %d wizard %s", h.app.Active, w.Current())
	}
	if got := w.Form().Get("uplink"); got != "eth0:10.72.1.1" {
		t.Fatalf("uplink filled as %q", got)
	}
	h.mustShow("filled from the finding asymmetric-return", "✓ plan: 4 change(s)", "try() { … }")
	h.press("pgdown")
	h.mustShow("# name table 100 rt-eth0")
	h.press("d")
	h.mustShow("+ ip -4 rule priority", "from 10.72.1.2/32 lookup rt-eth0", "+ ip -4 route default via 10.72.1.1 dev eth0 table rt-eth0")

	h.press("a")
	h.mustShow("Apply 4 change(s) to netns lab?", "[1m]")
	h.press("right", "left", "left")
	h.mustShow("[30s]")
	h.press("right", "enter")
	if len(be.applied) != 1 || be.confirms[0] != time.Minute {
		t.Fatalf("applied %d plans, confirm windows %v", len(be.applied), be.confirms)
	}
	if h.app.Pending() == nil {
		t.Fatal("no countdown after an apply with a confirmation window")
	}
	h.mustShow("✓ applied: journal", "revert in 1:00 — press y to keep them", "step 4/4:")
	// The countdown goes on on every page.
	h.press("1")
	h.mustShow("revert in 1:00 — press y to keep them")
	h.press("y")
	if be.confirmed != 1 || h.app.Pending() != nil {
		t.Fatalf("confirmed %d, pending %v", be.confirmed, h.app.Pending())
	}
	h.mustShow("the changes stay")

	// The state was read again after the apply, and Diagnose traced the flow again on it.
	if res := d.Result(); res == nil || res.Has(trace.FindingAsymmetricReturn) || res.Reply.OIF != "eth0" {
		t.Fatalf("after the fix: %+v", res)
	}
	// Rolling back from the history.
	h.press("6", "H")
	h.mustShow("confirmed", "source-return")
	h.press("u", "enter")
	if len(be.rollbacks) != 1 || be.rollbacks[0] != be.journals[0].ID {
		t.Fatalf("rollbacks %v", be.rollbacks)
	}
	h.mustShow("rolled back journal")
}

func TestPendingCountdownAndExpiry(t *testing.T) {
	be := newFake(t, case1Host(t))
	be.pending = &apply.Journal{Head: apply.Head{ID: "j1", Intent: "roundtrip wizard source-return --uplink eth0"},
		Status: apply.StatusPending, ConfirmBy: testNow.Add(42 * time.Second)}
	be.journals = []*apply.Journal{be.pending}
	h := newHarness(t, be, 80, 24)
	h.mustShow("changes revert in 0:42 — press y to keep them (journal j1)")
	// Past the deadline, until the timer has rolled it back, the countdown says it is going.
	h.app.c.Now = func() time.Time { return testNow.Add(43 * time.Second) }
	h.send(pendingTick{})
	h.mustShow("not confirmed in time: journal j1 is being rolled back")
	// The timer rolls it back: the next read of the journal says so, and the state is read
	// again.
	reads := be.reads
	be.expire(be.state)
	h.send(pendingTick{})
	h.mustShow("journal j1 was rolled back (not confirmed within 1m0s)")
	if h.app.Pending() != nil {
		t.Fatal("the countdown goes on after the rollback")
	}
	if be.reads != reads+1 {
		t.Fatal("the state was not read again after the revert")
	}
}

// TestConsoleFollowsTheRevertTimer is the automatic rollback as an operator sees it: an apply
// with a confirmation window that nobody confirms. The Wizards page must stop saying "✓
// applied" and the status bar must stop saying "being rolled back" once the journal is rolled
// back, with no key pressed.
func TestConsoleFollowsTheRevertTimer(t *testing.T) {
	be := newFake(t, case1Host(t))
	before := be.state
	h := newHarness(t, be, 80, 24)
	traceCase1(h)
	h.press("w", "a", "enter")
	h.mustShow("✓ applied: journal", "revert in 1:00")
	h.app.c.Now = func() time.Time { return testNow.Add(61 * time.Second) }
	h.fire()
	h.mustShow("being rolled back")
	be.expire(before)
	h.fire()
	s := h.screen()
	for _, gone := range []string{"✓ applied", "being rolled back", "revert in", "press y"} {
		if strings.Contains(s, gone) {
			t.Fatalf("after the timer's rollback the screen still says %q:\n%s", gone, s)
		}
	}
	h.mustShow("↺ rolled back (not confirmed within 1m0s)", "was rolled back")
	// Every page: the Overview shows no countdown either.
	h.press("1")
	if strings.Contains(h.screen(), "revert in") {
		t.Fatalf("the Overview still counts down:\n%s", h.screen())
	}
	// A confirm from another session shows the same way.
	h.press("6", "a", "enter")
	be.mu.Lock()
	be.pending.Status, be.pending = apply.StatusConfirmed, nil
	be.mu.Unlock()
	h.fire()
	h.mustShow("✓ applied and confirmed", "was confirmed: the changes stay")
}

// TestPendingWithDeadTimer: a pending apply whose revert timer died is shown as such, before
// and after its deadline, rather than as a countdown that ends in nothing.
func TestPendingWithDeadTimer(t *testing.T) {
	be := newFake(t, case1Host(t))
	be.pending = &apply.Journal{Head: apply.Head{ID: "j1", Intent: "roundtrip wizard source-return --uplink eth0"},
		Status: apply.StatusPending, ConfirmBy: testNow.Add(42 * time.Second), TimerDead: true}
	h := newHarness(t, be, 160, 24)
	h.mustShow("the revert timer of journal j1 died: nothing reverts these changes")
	h.app.c.Now = func() time.Time { return testNow.Add(43 * time.Second) }
	h.send(pendingTick{})
	if h.app.Pending() == nil {
		t.Fatal("a pending apply whose timer died was taken as being rolled back")
	}
	h.mustShow("the revert timer of journal j1 died")
}

func TestSnapshotIsReadOnly(t *testing.T) {
	be := newFake(t, case1Host(t))
	be.live = false
	be.readOnly = "read-only: a snapshot is another host's state; run roundtrip on that host to change it"
	h := newHarness(t, be, 80, 24)
	h.mustShow("snapshot host.json", "read-only: a snapshot")
	h.press("4")
	h.mustShow("a snapshot does not hold it")
	traceCase1(h)
	h.press("c")
	h.mustShow("a snapshot has no packets")
	h.press("w")
	h.mustShow("read-only: a snapshot is another host's state")
	h.press("a")
	h.mustShow("read-only")
	h.press("u")
	if len(be.applied) != 0 || len(be.rollbacks) != 0 || h.app.Page(PageWizards).(*pages.Wizards).Dialog() {
		t.Fatal("a change was attempted on a snapshot")
	}
}

func TestWizardValidationAsYouType(t *testing.T) {
	h := newHarness(t, newFake(t, case1Host(t)), 120, 40)
	w := h.app.Page(PageWizards).(*pages.Wizards)
	h.press("6", "e", "eth9")
	if err := w.PlanError(); err == nil || !strings.Contains(err.Error(), `unknown interface "eth9"`) {
		t.Fatalf("plan error %v", err)
	}
	h.mustShow(`unknown interface "eth9"`)
	h.press("backspace", "0")
	if w.PlanError() != nil || w.Result() == nil {
		t.Fatalf("eth0 does not plan: %v", w.PlanError())
	}
	h.press("tab", "right")
	if w.Form().Get("mode") != "connmark" {
		t.Fatalf("mode %q", w.Form().Get("mode"))
	}
	h.press("esc", "]", "]", "]", "]")
	if w.Current() != finding.WizardPortForward {
		t.Fatalf("wizard %s", w.Current())
	}
	h.press("e", "8o")
	h.mustShow("✗ --listen: port \"8o\" is not a number")
	h.press("backspace", "0", "tab", "tab", "10.72.1.5:80")
	if w.PlanError() != nil || w.Result() == nil || len(w.Result().Plan.Changes) == 0 {
		t.Fatalf("port forward does not plan: %v", w.PlanError())
	}
}

func TestConntrackPage(t *testing.T) {
	be := newFake(t, case1Host(t))
	be.conntrack = conntrackFixture()
	h := newHarness(t, be, 120, 40)
	h.press("4")
	h.mustShow("3 of 262144 entries", "198.18.72.10:40100 → 192.168.72.25", "10.72.1.5:80 → 10.72.1.2:40100", "DNAT SNAT", "UNREPLIED")
	h.press("/", "unreplied", "enter")
	s := h.screen()
	if !strings.Contains(s, "198.18.72.10:40000") || strings.Contains(s, "10.72.1.9") {
		t.Fatalf("filter unreplied:\n%s", s)
	}
	h.press("esc", "/", "10.72.1.5")
	if s := h.screen(); !strings.Contains(s, "40100") || strings.Contains(s, "40000 →") {
		t.Fatalf("a NATed address does not find its connection:\n%s", s)
	}
	// The page reads again on its timer, and only while it is shown.
	h.press("esc")
	calls := be.conntrackCalls
	be.conntrack = be.conntrack[:1]
	h.fire()
	if be.conntrackCalls != calls+1 {
		t.Fatalf("the timer did not read again: %d calls, want %d", be.conntrackCalls, calls+1)
	}
	h.mustShow("1 of 262144 entries")
	h.press("1")
	h.fire()
	if be.conntrackCalls != calls+1 {
		t.Fatal("the table is read while the page is hidden")
	}
	h.press("4")
	if be.conntrackCalls != calls+2 {
		t.Fatal("showing the page again does not read the table")
	}
}

func TestLiveCapturePane(t *testing.T) {
	be := newFake(t, case1Host(t))
	ap := netip.MustParseAddrPort
	syn := &diagnose.Packet{Time: testNow, Iface: "eth0", Dir: capture.In, Proto: 6, Src: ap("198.18.72.10:40000"), Dst: ap("10.72.1.2:80"), Flags: 0x02}
	synack := &diagnose.Packet{Time: testNow, Iface: "em1", Dir: capture.Out, Proto: 6, Src: ap("10.72.1.2:80"), Dst: ap("198.18.72.10:40000"), Flags: 0x12}
	f := &diagnose.Finding{Finding: finding.Finding{ID: trace.FindingAsymmetricReturn, Severity: finding.SeverityError,
		Summary: "the request came in on eth0 and the reply left by em1",
		Fix:     finding.Fix{Wizard: finding.WizardSourceReturn, Args: []string{"--uplink", "eth0"}}}, Ingress: "eth0", Egress: "em1"}
	be.events = []diagnose.Event{{Type: diagnose.EventPacket, Packet: syn}, {Type: diagnose.EventPacket, Packet: synack}, {Type: diagnose.EventFinding, Finding: f}}
	h := newHarness(t, be, 120, 40)
	traceCase1(h)
	h.press("c")
	h.mustShow("Live capture", "eth0 in 1 out 0", "em1 in 0 out 1", "[S]", "✗ asymmetric-return: the request came in on eth0 and the reply left by em1")
	d := h.app.Page(PageDiagnose).(*pages.Diagnose)
	fs := d.Findings()
	if last := fs[len(fs)-1]; last.ID != trace.FindingAsymmetricReturn || !strings.HasPrefix(last.Summary, "live: ") {
		t.Fatalf("live finding not listed: %+v", fs)
	}
}

func TestStylesFollowTheTerminal(t *testing.T) {
	if m := ModeForEnv([]string{"TERM=xterm-256color", "NO_COLOR=1"}); m == common.ModeColor {
		t.Fatal("NO_COLOR does not turn colours off")
	}
	if m := ModeForEnv([]string{"TERM=dumb"}); m != common.ModePlain {
		t.Fatalf("TERM=dumb gives mode %d", m)
	}
	if common.ModeFor(colorprofile.ANSI256) != common.ModeColor || common.ModeFor(colorprofile.Ascii) != common.ModeMono {
		t.Fatal("profiles map to the wrong modes")
	}
	color := common.NewStyles(common.ModeColor).Error.Render("x")
	mono := common.NewStyles(common.ModeMono).Error.Render("x")
	plain := common.NewStyles(common.ModePlain).Error.Render("x")
	if !strings.Contains(color, "31") || strings.Contains(mono, "31") || !strings.Contains(mono, "\x1b[1") || plain != "x" {
		t.Fatalf("color %q mono %q plain %q", color, mono, plain)
	}
}

// ModeForEnv is the mode a terminal with this environment gets.
func ModeForEnv(env []string) common.Mode { return common.ModeFor(colorprofile.Env(env)) }

func TestApplyOverSSHWarnsOfLockout(t *testing.T) {
	be := newFake(t, case1Host(t))
	h := newHarness(t, be, 120, 40)
	// The operator is logged in from the client's network: its replies leave by em1 today, and
	// the source-return plan moves everything from 10.72.1.2 to eth0.
	h.app.c.SSH = "198.18.72.10 50000 10.72.1.2 22"
	traceCase1(h)
	h.press("w", "a")
	h.mustShow("⚠ replies to your SSH client 198.18.72.10 would leave via 10.72.1.1 dev eth0", "confirm from a new SSH session")
	// Without a timer it is refused; with one it goes.
	h.press("left", "left", "enter")
	h.mustShow("no timer", "apply it with a confirmation window")
	if len(be.applied) != 0 {
		t.Fatal("applied without a confirmation window over SSH")
	}
	h.press("right", "enter")
	if len(be.applied) != 1 || be.confirms[0] != 30*time.Second {
		t.Fatalf("applied %d, windows %v", len(be.applied), be.confirms)
	}
}

func TestNATPage(t *testing.T) {
	h := newHarness(t, newFake(t, case1Host(t)), 120, 40)
	n := h.app.Page(PageNAT).(*pages.NAT)
	h.press("3")
	// roundtrip's chain shows under the jump that reaches it, marked as roundtrip's.
	h.mustShow("POSTROUTING  policy ACCEPT  2 rule(s)", "roundtrip 0       0       -A POSTROUTING -j RT-PF-POST",
		"  -A RT-PF-POST -d 10.72.1.5/32", "other     5       300     -A POSTROUTING -s 172.17.0.0/16")
	h.press("/", "masquerade", "enter")
	s := h.screen()
	if !strings.Contains(s, "MASQUERADE") || strings.Contains(s, "DNAT") || strings.Contains(s, "PREROUTING  policy") {
		t.Fatalf("filter masquerade:\n%s", s)
	}
	h.press("esc", "t")
	if n.TableName() != "mangle" {
		t.Fatalf("t shows %s", n.TableName())
	}
	h.mustShow("iptables -t mangle", "no rules")
	h.press("t")
	h.mustShow("iptables -t filter", "INPUT  policy ACCEPT  0 rule(s)", "900")
}

func TestMouseSelectsRows(t *testing.T) {
	h := newHarness(t, newFake(t, case1Host(t)), 80, 24)
	r := h.app.Page(PageRouting).(*pages.Routing)
	h.press("2")
	// Screen line 10 is the third route (the tab bar, 5 lines of rules, the table line and
	// the column header come first).
	lines := strings.Split(h.screen(), "\n")
	if !strings.Contains(lines[10], "default") {
		t.Fatalf("line 10 is %q", lines[10])
	}
	h.send(tea.MouseClickMsg{X: 5, Y: 10, Button: tea.MouseLeft})
	if !strings.Contains(strings.Split(h.screen(), "\n")[10], "▸ default") {
		t.Fatalf("the click did not select the route:\n%s", h.screen())
	}
	h.send(tea.MouseClickMsg{X: 5, Y: 4, Button: tea.MouseLeft})
	if !strings.Contains(strings.Split(h.screen(), "\n")[4], "▸ 32766") {
		t.Fatalf("the click did not select rule 32766:\n%s", h.screen())
	}
	h.press("enter", "enter")
	if r.TableID() != model.TableMain {
		t.Fatalf("enter on the clicked rule showed table %d", r.TableID())
	}
	h.send(tea.MouseWheelMsg{X: 5, Y: 11, Button: tea.MouseWheelDown})
	if !strings.Contains(h.screen(), "▸ 198.18.72.0/24") {
		t.Fatalf("the wheel does not scroll:\n%s", h.screen())
	}
}

func TestOpenWizardWithAPartialFix(t *testing.T) {
	h := newHarness(t, newFake(t, case1Host(t)), 120, 40)
	w := h.app.Page(PageWizards).(*pages.Wizards)
	// doctor's fix for a one-armed DNAT knows the SNAT, not the port: the form opens there.
	h.send(common.OpenWizardMsg{Wizard: finding.WizardPortForward, Args: []string{"--snat", "auto", "--hairpin"}, From: doctor.FindingDNATWithoutSNAT})
	if h.app.Active != PageWizards || w.Current() != finding.WizardPortForward || !w.Capturing() || w.Form().Current().Key != "listen" {
		t.Fatalf("page %d wizard %s editing %v field %s", h.app.Active, w.Current(), w.Capturing(), w.Form().Current().Key)
	}
	if w.Form().Get("snat") != "auto" || w.Form().Get("hairpin") != "yes" {
		t.Fatalf("snat %q hairpin %q", w.Form().Get("snat"), w.Form().Get("hairpin"))
	}
	h.send(common.OpenWizardMsg{Wizard: finding.WizardSNATGateway, Args: []string{"--out", "em1", "--bogus", "1"}})
	h.mustShow("✗ the snat-gateway wizard has no option --bogus")
	if w.Form().Get("out") != "em1" {
		t.Fatalf("out %q", w.Form().Get("out"))
	}
}

func TestNATPageListsNativeNFTables(t *testing.T) {
	s := case1Host(t)
	s.Nftables = &nft.Ruleset{HostOrder: "little", Tables: []*nft.Table{{Family: nft.FamilyInet, Name: "fw", Chains: []*nft.Chain{
		{Name: "forward", Handle: 1, Type: nft.TypeFilter, Hook: nft.HookForward, Priority: 0, Policy: "drop", Rules: []*nft.Rule{
			{Handle: 4, Text: "ct state established,related counter packets 7 bytes 420 accept", Exprs: []nft.Expr{{Counter: &nft.Counter{Packets: 7, Bytes: 420}}}},
		}},
	}}, {Family: nft.FamilyIP, Name: "filter", Origin: "iptables-nft"}}}
	h := newHarness(t, newFake(t, s), 120, 40)
	n := h.app.Page(PageNAT).(*pages.NAT)
	h.press("3", "t", "t", "t", "t")
	if n.TableName() != "nft" {
		t.Fatalf("t four times shows %s", n.TableName())
	}
	h.mustShow("nft: native tables", "inet fw forward  hook forward priority filter policy drop  1 rule(s)",
		"nft       7       420     ct state established,related counter packets 7 bytes 420 accept # handle 4")
	if strings.Contains(h.screen(), "ip filter") {
		t.Fatalf("iptables-nft's own table is listed among the native ones:\n%s", h.screen())
	}
	h.press("t")
	h.mustShow("iptables -t nat")
}
