package ui

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/google/go-cmp/cmp"

	"roundtrip/diagnose"
	"roundtrip/engine/apply"
	"roundtrip/engine/conntrack"
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/kernel"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
	"roundtrip/ui/common"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// testNow is the fixed clock of the tests: countdowns render the same every run.
var testNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// case1Host is the web server of field case 1 (SCENARIOS.md) as engine/lab builds it: a LAN
// NIC eth0 behind a firewall that DNATs its port 80 to the server, and a public NIC em1 with
// the "national route" toward the client's network.
func case1Host(t testing.TB) *model.State {
	t.Helper()
	s := &model.State{Host: "server", Sysctls: model.Sysctls{
		model.SysctlIPForward: "0", model.ConfKey("all", "rp_filter"): "0", model.ConfKey("default", "rp_filter"): "0",
		model.SysctlConntrackCount: "3", model.SysctlConntrackMax: "262144",
	}}
	link := func(i int, name, kind string, mtu int, addrs ...string) {
		l := model.Link{Index: i, Name: name, Kind: kind, Up: true, OperState: "up", MTU: mtu}
		for _, a := range addrs {
			p := netip.MustParsePrefix(a)
			l.Addrs = append(l.Addrs, model.Address{Prefix: p, Scope: "global"})
			s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: model.TableLocal, Type: model.RouteLocal,
				Dst: netip.PrefixFrom(p.Addr(), 32), Dev: name, Src: p.Addr(), Scope: "host", Protocol: "kernel"})
			if name != "lo" {
				s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast,
					Dst: p.Masked(), Dev: name, Src: p.Addr(), Scope: "link", Protocol: "kernel"})
			}
		}
		s.Links = append(s.Links, l)
	}
	link(1, "lo", "loopback", 65536, "127.0.0.1/8")
	s.Links[0].OperState = "unknown"
	link(2, "eth0", "veth", 1500, "10.72.1.2/24")
	link(3, "em1", "veth", 1500, "192.168.72.254/30")
	s.Routes = append(s.Routes,
		model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: netip.MustParsePrefix("0.0.0.0/0"),
			Gateway: netip.MustParseAddr("10.72.1.1"), Dev: "eth0", Protocol: "boot"},
		model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: netip.MustParsePrefix("198.18.72.0/24"),
			Gateway: netip.MustParseAddr("192.168.72.253"), Dev: "em1", Protocol: "boot"},
	)
	s.Rules = []model.Rule{
		{Family: inet.V4, Priority: 0, Action: model.ActionTable, Table: model.TableLocal},
		{Family: inet.V4, Priority: 32766, Action: model.ActionTable, Table: model.TableMain},
		{Family: inet.V4, Priority: 32767, Action: model.ActionTable, Table: model.TableDefault},
	}
	tables, err := iptables.ParseSave(inet.V4, []byte(`*nat
:PREROUTING ACCEPT [120:7200]
:INPUT ACCEPT [40:2400]
:OUTPUT ACCEPT [12:720]
:POSTROUTING ACCEPT [12:720]
:RT-PF-POST - [0:0]
[3:180] -A PREROUTING -i em1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.72.1.5:80
[0:0] -A POSTROUTING -j RT-PF-POST
[5:300] -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
[0:0] -A RT-PF-POST -d 10.72.1.5/32 -p tcp -m tcp --dport 80 -j SNAT --to-source 10.72.1.2
COMMIT
*filter
:INPUT ACCEPT [900:54000]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [800:48000]
COMMIT
`))
	if err != nil {
		t.Fatal(err)
	}
	s.Netfilter = iptables.Ruleset{Backend: "nf_tables", Tables: tables}
	if err := s.Validate(); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return s
}

// fakeBackend is a host in memory: it answers reads with its state, applies plans to its
// model (as the kernel would leave it), journals them, and fails calls a test did not expect.
type fakeBackend struct {
	t        testing.TB
	mu       sync.Mutex
	state    *model.State
	readErr  error
	block    chan struct{} // when set, ReadState waits for it or for ctx
	readOnly string
	live     bool
	reads    int

	applied   []*plan.Plan
	confirms  []time.Duration
	journals  []*apply.Journal
	pending   *apply.Journal
	confirmed int
	rollbacks []string

	conntrack      []conntrack.Entry
	conntrackCalls int
	events         []diagnose.Event
	filters        []*diagnose.CaptureFilter // what each capture was asked to select

	// netfilter, when set, is what Netfilter reads (the rules with newer counters).
	netfilter      *iptables.Ruleset
	netfilterCalls int
	neighbours     []model.Neighbour
}

func newFake(t testing.TB, s *model.State) *fakeBackend {
	return &fakeBackend{t: t, state: s, live: true}
}

func (f *fakeBackend) Where() string {
	if !f.live {
		return "snapshot host.json"
	}
	return "netns lab"
}
func (f *fakeBackend) Live() bool       { return f.live }
func (f *fakeBackend) ReadOnly() string { return f.readOnly }

func (f *fakeBackend) ReadState(ctx context.Context) (*model.State, error) {
	f.mu.Lock()
	f.reads++
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readErr != nil {
		return nil, f.readErr
	}
	return f.state, nil
}

func (f *fakeBackend) Apply(ctx context.Context, p *plan.Plan, opts apply.Options, progress func(string)) (*apply.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readOnly != "" {
		f.t.Errorf("Apply called on a read-only backend")
		return nil, common.ErrReadOnly
	}
	before := f.state
	// The Applier's SSH lockout check, as the live backend makes it.
	if _, err := kernel.CheckLockout(before, p, opts); err != nil {
		return nil, err
	}
	for i, c := range p.Changes {
		progress(fmt.Sprintf("step %d/%d: %s", i+1, len(p.Changes), c.Summary()))
	}
	f.state = p.Expect(before)
	f.applied = append(f.applied, p)
	f.confirms = append(f.confirms, opts.Confirm)
	j := &apply.Journal{Head: apply.Head{ID: fmt.Sprintf("20250301-120000-%04d", len(f.journals)), Intent: p.Intent, Steps: len(p.Changes), Changes: len(p.Changes)}, Status: apply.StatusApplied}
	if opts.Confirm > 0 {
		j.Status, j.ConfirmBy = apply.StatusPending, testNow.Add(opts.Confirm)
		f.pending = j
	}
	f.journals = append(f.journals, j)
	return &apply.Result{Journal: j, Changes: len(p.Changes), Pending: len(p.Changes), Before: before}, nil
}

func (f *fakeBackend) Confirm(ctx context.Context) (*apply.Journal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending == nil {
		return nil, kernel.ErrNothingToConfirm
	}
	j := f.pending
	j.Status, f.pending = apply.StatusConfirmed, nil
	f.confirmed++
	return j, nil
}

func (f *fakeBackend) Rollback(ctx context.Context, id string) (*apply.Journal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rollbacks = append(f.rollbacks, id)
	for i := len(f.journals) - 1; i >= 0; i-- {
		if j := f.journals[i]; j.Active() && (id == "" || id == j.ID) {
			j.Status = apply.StatusRolledBack
			if f.pending == j {
				f.pending = nil
			}
			return j, nil
		}
	}
	return nil, kernel.ErrNothingToRollBack
}

func (f *fakeBackend) History(ctx context.Context) ([]*apply.Journal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*apply.Journal(nil), f.journals...), nil
}

func (f *fakeBackend) Pending(ctx context.Context) (*apply.Journal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pending, nil
}

func (f *fakeBackend) JournalSteps(ctx context.Context, j *apply.Journal, max int) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, jj := range f.journals {
		if jj.ID != j.ID {
			continue
		}
		var out []string
		for k, c := range f.applied[i].Changes {
			if max > 0 && k == max {
				break
			}
			out = append(out, c.Summary())
		}
		return out, nil
	}
	return nil, fmt.Errorf("no journal %s", j.ID)
}

func (f *fakeBackend) Journal(ctx context.Context, id string) (*apply.Journal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, j := range f.journals {
		if j.ID == id {
			c := *j // as read from its file: a copy
			return &c, nil
		}
	}
	return nil, fmt.Errorf("no journal %s", id)
}

// expire does what the revert timer does at the deadline: it rolls the pending apply back.
func (f *fakeBackend) expire(before *model.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending == nil {
		f.t.Fatal("nothing pending to expire")
	}
	f.pending.Status, f.pending.Reason = apply.StatusRolledBack, "not confirmed within 1m0s"
	f.pending, f.state = nil, before
}

func (f *fakeBackend) Netfilter(ctx context.Context) (iptables.Ruleset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.netfilterCalls++
	if f.netfilter != nil {
		return *f.netfilter, nil
	}
	return f.state.Netfilter, nil
}

func (f *fakeBackend) Neighbours(ctx context.Context) ([]model.Neighbour, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.neighbours, nil
}

func (f *fakeBackend) Conntrack(ctx context.Context, max int) ([]conntrack.Entry, conntrack.Stats, error) {
	if !f.live {
		f.t.Errorf("Conntrack called on a snapshot")
		return nil, conntrack.Stats{}, errors.New("snapshot")
	}
	f.mu.Lock()
	f.conntrackCalls++
	f.mu.Unlock()
	return append([]conntrack.Entry(nil), f.conntrack...), conntrack.Stats{Count: len(f.conntrack), Max: 262144}, nil
}

func (f *fakeBackend) Capture(ctx context.Context, filter *diagnose.CaptureFilter, ready func(), emit func(diagnose.Event) error) (*diagnose.CaptureSummary, error) {
	if !f.live {
		f.t.Errorf("Capture called on a snapshot")
	}
	f.mu.Lock()
	f.filters = append(f.filters, filter)
	f.mu.Unlock()
	ready()
	for _, ev := range f.events {
		if err := emit(ev); err != nil {
			return nil, err
		}
	}
	return &diagnose.CaptureSummary{Packets: len(f.events)}, nil
}

// harness drives an App the way the bubbletea loop would, synchronously: it runs the
// commands a message returns and feeds their messages back, and leaves timers out (time
// does not pass in these tests; a test sends a timer's message itself).
type harness struct {
	t      testing.TB
	app    *App
	be     *fakeBackend
	timers []tea.Msg // messages of timers set, waiting for fire
	// others are the messages of commands the app does not take itself (the clipboard's).
	others []tea.Msg
}

func newHarness(t testing.TB, be *fakeBackend, w, h int) *harness {
	t.Helper()
	return newHarnessMode(t, be, w, h, common.ModePlain)
}

// newHarnessMode is newHarness with the styles of a mode (colour, or NO_COLOR's mono).
func newHarnessMode(t testing.TB, be *fakeBackend, w, h int, mode common.Mode) *harness {
	t.Helper()
	c := common.New(context.Background(), common.NewStyles(mode), be)
	c.Now = func() time.Time { return testNow }
	hs := &harness{t: t, be: be}
	c.After = func(_ time.Duration, msg tea.Msg) tea.Cmd {
		hs.timers = append(hs.timers, msg)
		return nil
	}
	hs.app = NewApp(c, true)
	hs.send(tea.WindowSizeMsg{Width: w, Height: h})
	hs.run(hs.app.Init())
	return hs
}

// send delivers a message and everything that follows from it.
func (h *harness) send(msg tea.Msg) {
	h.t.Helper()
	_, cmd := h.app.Update(msg)
	h.run(cmd)
}

func (h *harness) run(cmd tea.Cmd) {
	h.t.Helper()
	queue := []tea.Cmd{cmd}
	for steps := 0; len(queue) > 0; steps++ {
		if steps > 10000 {
			h.t.Fatal("the app does not settle: commands keep coming")
		}
		c := queue[0]
		queue = queue[1:]
		if c == nil {
			continue
		}
		msg := c()
		switch m := msg.(type) {
		case nil:
		case tea.BatchMsg:
			queue = append(queue, m...)
		default:
			if _, isQuit := msg.(tea.QuitMsg); isQuit {
				continue
			}
			h.others = append(h.others, msg)
			_, next := h.app.Update(msg)
			queue = append(queue, next)
		}
	}
}

// fire delivers the messages of every timer set so far, as if their time had come.
func (h *harness) fire() {
	h.t.Helper()
	ts := h.timers
	h.timers = nil
	for _, m := range ts {
		h.send(m)
	}
}

// keyMsg turns a key name ("enter", "shift+tab", "a") into the message a terminal sends.
func keyMsg(k string) tea.KeyPressMsg {
	special := map[string]tea.Key{
		"enter": {Code: tea.KeyEnter}, "tab": {Code: tea.KeyTab}, "shift+tab": {Code: tea.KeyTab, Mod: tea.ModShift},
		"esc": {Code: tea.KeyEscape}, "up": {Code: tea.KeyUp}, "down": {Code: tea.KeyDown}, "left": {Code: tea.KeyLeft},
		"right": {Code: tea.KeyRight}, "pgdown": {Code: tea.KeyPgDown}, "pgup": {Code: tea.KeyPgUp}, "home": {Code: tea.KeyHome},
		"end": {Code: tea.KeyEnd}, "backspace": {Code: tea.KeyBackspace}, "space": {Code: tea.KeySpace, Text: " "},
		"ctrl+c": {Code: 'c', Mod: tea.ModCtrl}, "ctrl+u": {Code: 'u', Mod: tea.ModCtrl}, "ctrl+r": {Code: 'r', Mod: tea.ModCtrl},
	}
	if k, ok := special[k]; ok {
		return tea.KeyPressMsg(k)
	}
	r := []rune(k)[0]
	return tea.KeyPressMsg{Code: r, Text: k}
}

// press sends keys; a key longer than one rune that is not a key name is typed rune by rune.
func (h *harness) press(keys ...string) {
	h.t.Helper()
	for _, k := range keys {
		if len([]rune(k)) > 1 && keyMsg(k).Text == k {
			for _, r := range k {
				h.send(keyMsg(string(r)))
			}
			continue
		}
		h.send(keyMsg(k))
	}
}

// screen is the frame as a terminal shows it, without styling.
func (h *harness) screen() string { return ansi.Strip(h.app.View().Content) }

func (h *harness) mustShow(want ...string) {
	h.t.Helper()
	s := h.screen()
	for _, w := range want {
		if !strings.Contains(s, w) {
			h.t.Fatalf("the screen lacks %q:\n%s", w, s)
		}
	}
}

// frameFits checks that the frame is exactly as wide and high as the terminal.
func (h *harness) frameFits(name string) {
	h.t.Helper()
	w, hh := h.app.size()
	lines := strings.Split(h.screen(), "\n")
	if len(lines) != hh {
		h.t.Errorf("%s: %d lines, want %d", name, len(lines), hh)
	}
	for i, l := range lines {
		if n := ansi.StringWidth(l); n != w {
			h.t.Errorf("%s: line %d is %d cells wide, want %d: %q", name, i+1, n, w, l)
		}
	}
}

// golden compares the screen with testdata/NAME.golden (rewritten with -update). Every line
// must be exactly as wide as the terminal and the frame exactly as high: the app pads, so a
// frame that does not fill the screen is a bug.
func (h *harness) golden(name string) {
	h.t.Helper()
	got := h.screen()
	h.frameFits(name)
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			h.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		h.t.Fatalf("%v (run go test ./ui -update to write it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		h.t.Errorf("%s differs from the golden file (-want +got):\n%s", name, d)
	}
}
