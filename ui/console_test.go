package ui

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"

	"roundtrip/diagnose"
	"roundtrip/engine/capture"
	"roundtrip/engine/conntrack"
	"roundtrip/engine/doctor"
	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/trace"
	"roundtrip/ui/common"
	"roundtrip/ui/pages"
)

// The tests of this file are the console as an operator used it at 80×24 over SSH (issue 15):
// one per thing that got in the way.

// TestFocusedFieldsShowNoEscapeCodes types into the Routing filter in colour and in NO_COLOR's
// mono style: what the terminal shows must be the text typed and a cursor, not the cursor's
// escape sequence printed as text ("Filter 100.72[7;37m [m").
func TestFocusedFieldsShowNoEscapeCodes(t *testing.T) {
	for _, mode := range []common.Mode{common.ModeColor, common.ModeMono} {
		h := newHarnessMode(t, newFake(t, case1Host(t)), 80, 24, mode)
		h.press("2", "/", "100.72")
		raw := h.app.View().Content
		var line string
		for _, l := range strings.Split(ansi.Strip(raw), "\n") {
			if strings.Contains(l, "Filter") {
				line = l
			}
		}
		if !strings.Contains(line, "Filter 100.72 ") || regexp.MustCompile(`\[[0-9;]*m`).MatchString(line) {
			t.Fatalf("mode %d: the focused filter shows %q", mode, line)
		}
		// Every escape sequence of the frame is whole: no ESC followed by another ESC.
		if strings.Contains(raw, "\x1b\x1b") {
			t.Fatalf("mode %d: a broken escape sequence in the frame", mode)
		}
		// The Diagnose form's fields, focused, the same.
		h.press("esc", "5", "e", "198.18.72.10")
		for _, l := range strings.Split(ansi.Strip(h.app.View().Content), "\n") {
			if strings.Contains(l, "Source") && (!strings.Contains(l, "198.18.72.10 ") || strings.Contains(l, "[")) {
				t.Fatalf("mode %d: the focused source field shows %q", mode, l)
			}
		}
	}
}

// TestLiveCaptureFromAnyClientPortAndItsClock traces a flow with the port the placeholder
// suggests (a client port) and starts the capture: the filter must select the flow from any
// client port, since a real client picks a new one each time, and still name the service's.
func TestLiveCaptureFromAnyClientPortAndItsClock(t *testing.T) {
	be := newFake(t, case1Host(t))
	ap := netip.MustParseAddrPort
	// The client's real connection, from a port the operator could not know.
	be.events = []diagnose.Event{{Type: diagnose.EventPacket, Packet: &diagnose.Packet{Time: testNow, Iface: "eth0", Dir: capture.In,
		Proto: 6, Src: ap("198.18.72.10:51234"), Dst: ap("10.72.1.2:80"), Flags: 0x02}}}
	h := newHarness(t, be, 80, 24)
	traceCase1(h) // Source 198.18.72.10:40000
	h.press("c")
	if len(be.filters) != 1 {
		t.Fatalf("%d captures", len(be.filters))
	}
	f := be.filters[0].String()
	if strings.Contains(f, "40000") || !strings.Contains(f, "port 80") || !strings.Contains(f, "198.18.72.10") {
		t.Fatalf("the capture filter is %q: it must take any client port and keep the service's", f)
	}
	h.mustShow("eth0 in 1 out 0")
}

// TestFixOfAFindingFillsTheFormOrSaysWhatIsMissing opens wizards from findings: a fix that
// names no flags says so and what is still needed, nowhere a line ending in a colon; a fix with
// a placeholder (<GATEWAY>) gets the gateway the console found, and says from where; a finding
// of the live capture whose fix has no flags is filled from what the trace of the flow knows.
func TestFixOfAFindingFillsTheFormOrSaysWhatIsMissing(t *testing.T) {
	be := newFake(t, case1Host(t))
	ap := netip.MustParseAddrPort
	// Another client of the same service, answered the wrong way too: the capture's finding
	// of it has the wizard and no flags.
	live := &diagnose.Finding{Finding: finding.Finding{ID: trace.FindingAsymmetricReturn, Severity: finding.SeverityError,
		Summary: "the request came in on eth0 but the reply left by em1", Evidence: []string{"SYN came in on eth0"},
		Fix: finding.Fix{Summary: "route replies back", Wizard: finding.WizardSourceReturn, Args: []string{}}},
		Ingress: "eth0", Egress: "em1", Conn: 1, Flow: conntrack.Tuple{Proto: 6, Src: ap("198.18.72.11:40000"), Dst: ap("10.72.1.2:80")}}
	be.events = []diagnose.Event{{Type: diagnose.EventFinding, Finding: live}}
	h := newHarness(t, be, 80, 24)
	w := h.app.Page(PageWizards).(*pages.Wizards)
	// The Overview's evidence of each finding: no line ends in a colon with nothing after it.
	for range 2 {
		h.press("enter")
		for _, l := range strings.Split(h.screen(), "\n") {
			if strings.HasSuffix(strings.TrimRight(l, " "), ":") {
				t.Fatalf("a line ends in a colon with nothing after it: %q\n%s", l, h.screen())
			}
		}
		h.press("enter", "down")
	}
	h.press("enter") // the second finding, the uplink's, stays selected
	h.mustShow("w opens the source-return wizard: --uplink em1:192.168.72.253")

	// A fix that names no flags.
	h.send(common.OpenWizardMsg{Wizard: finding.WizardSNATGateway, From: "reply-not-seen"})
	h.mustShow("from the finding reply-not-seen, whose fix names no flags", "still needed: Out (the interface toward the far network)")
	if strings.Contains(h.screen(), "filled from the finding") {
		t.Fatalf("the wizard says it was filled from a fix that names nothing:\n%s", h.screen())
	}
	if w.Current() != finding.WizardSNATGateway || w.Form().Current().Key != "out" {
		t.Fatalf("wizard %s, field %s", w.Current(), w.Form().Current().Key)
	}
	// A fix with a placeholder: the console knows em1's gateway (a route names it).
	h.press("esc")
	h.send(common.OpenWizardMsg{Wizard: finding.WizardMultiWAN, Args: []string{"--wan", "eth0:10.72.1.1", "--wan", "em1:<GATEWAY>"},
		Missing: "the gateway of em1: no route names it", From: doctor.FindingRPFilterStrict})
	if got := w.Form().Get("wan"); got != "eth0:10.72.1.1 em1:192.168.72.253" {
		t.Fatalf("the placeholder was filled as %q", got)
	}
	h.mustShow("filled from the finding "+doctor.FindingRPFilterStrict, "added em1: gateway 192.168.72.253 from a route")
	if strings.Contains(h.screen(), "still needed") {
		t.Fatalf("the gateway found is still asked for:\n%s", h.screen())
	}
	h.press("esc")

	// The live finding: its own row (another client), its fix completed from the trace's.
	h.press("esc")
	traceCase1(h)
	h.press("c")
	d := h.app.Page(PageDiagnose).(*pages.Diagnose)
	fs := d.Findings()
	last := fs[len(fs)-1]
	if !strings.HasPrefix(last.Summary, "live: ") || strings.Join(last.Fix.Args, " ") != "--uplink eth0:10.72.1.1" {
		t.Fatalf("the live finding's fix is %+v", last.Fix)
	}
	h.press("down", "w")
	if got := w.Form().Get("uplink"); got != "eth0:10.72.1.1" || w.Current() != finding.WizardSourceReturn {
		t.Fatalf("w on the live finding opened %s with uplink %q", w.Current(), got)
	}
	h.mustShow("filled from the finding asymmetric-return", "✓ plan: 4 change(s)")
}

// TestLiveFindingsGroupByProblemAndFlow has the capture find the trace's problem in three
// connections of the flow (a client that retries): one row, with the count, and one error.
func TestLiveFindingsGroupByProblemAndFlow(t *testing.T) {
	be := newFake(t, case1Host(t))
	ap := netip.MustParseAddrPort
	for i := range 3 {
		port := 40001 + i
		be.events = append(be.events, diagnose.Event{Type: diagnose.EventFinding, Finding: &diagnose.Finding{
			Finding: finding.Finding{ID: trace.FindingAsymmetricReturn, Severity: finding.SeverityError,
				Summary: "the request came in on eth0 but the reply left by em1", Evidence: []string{fmt.Sprintf("SYN from port %d came in on eth0", port)},
				Fix: finding.Fix{Wizard: finding.WizardSourceReturn, Args: []string{}}},
			Ingress: "eth0", Egress: "em1", Conn: i + 1,
			Flow: conntrack.Tuple{Proto: 6, Src: ap(fmt.Sprintf("198.18.72.10:%d", port)), Dst: ap("10.72.1.2:80")}}})
	}
	h := newHarness(t, be, 80, 24)
	traceCase1(h)
	h.press("c")
	d := h.app.Page(PageDiagnose).(*pages.Diagnose)
	if fs := d.Findings(); len(fs) != 1 || d.LiveCount(0) != 3 {
		t.Fatalf("%d rows, live count %d; want the trace's row seen live ×3", len(fs), d.LiveCount(0))
	}
	h.mustShow("(1 error(s): the round trip fails)", "✗ asymmetric-return ×3 the request comes in on eth0")
	// The evidence says how many connections and shows the first one's packets.
	h.press("v")
	h.mustShow("Seen live in 3 connection(s)", "SYN from port 40001 came in on eth0")
}

// TestHelpScrollsAndListsEachKeyOnce opens the full help on a small terminal: it takes the
// page's area, keeps the frame's size, marks that there is more, scrolls to the end, and lists
// every key once (the page's meaning of esc, not the app's as well).
func TestHelpScrollsAndListsEachKeyOnce(t *testing.T) {
	h := newHarness(t, newFake(t, case1Host(t)), 60, 12)
	for _, page := range []string{"1", "2", "3", "4", "5", "6"} {
		h.press(page, "?")
		h.frameFits("help of page " + page)
		h.mustShow("Keys of", "↓", "more (pgdn)")
		// Page through to the end, collecting every entry shown.
		var text []string
		for range 12 {
			for _, l := range strings.Split(h.screen(), "\n")[2 : 12-2] {
				if !strings.Contains(l, "more (pg") {
					text = append(text, l)
				}
			}
			h.press("pgdown")
		}
		h.mustShow("q         quit")
		entries := map[string]bool{}
		for _, l := range text {
			entries[strings.TrimSpace(l)] = true
		}
		for _, k := range []string{"esc", "enter", "tab", "?", "q", "y"} {
			n := 0
			for e := range entries {
				if strings.HasPrefix(e, k+" ") {
					n++
				}
			}
			if n > 1 {
				t.Fatalf("page %s: %s is listed %d times:\n%s", page, k, n, strings.Join(slices.Sorted(maps.Keys(entries)), "\n"))
			}
		}
		if !entries["q         quit"] || !entries["?         help"] && !entries["?/esc     close the help"] {
			t.Fatalf("page %s: the help does not reach its end:\n%s", page, strings.Join(text, "\n"))
		}
		h.press("?")
		if strings.Contains(h.screen(), "Keys of") {
			t.Fatal("? does not close the help")
		}
	}
}

// TestPlanDiffShowsOnlyWhatChanges plans a port forward on case 1's server, whose PREROUTING
// already holds the firewall-style DNAT: the plan inserts its jump above it, and the diff must
// show that one rule added, not the DNAT deleted and added again one place lower.
func TestPlanDiffShowsOnlyWhatChanges(t *testing.T) {
	h := newHarness(t, newFake(t, case1Host(t)), 160, 40)
	h.press("6", "]", "]", "]", "]", "e", "81", "tab", "tab", "10.72.1.5:80", "esc", "d")
	h.mustShow("+ iptables -t nat -A PREROUTING [1] -j RT-PF-PRE")
	if s := h.screen(); strings.Contains(s, "- iptables") || strings.Contains(s, "[2] -i em1") {
		t.Fatalf("the unchanged DNAT rule shows as changed:\n%s", s)
	}
}

// TestSelectionFollowsTheItem moves the cursor to an item and changes the list around it: a
// new route, a new rule above the one selected, a new apply on top of the history. The cursor
// stays on the item, not on its old position.
func TestSelectionFollowsTheItem(t *testing.T) {
	be := newFake(t, case1Host(t))
	h := newHarness(t, be, 80, 24)
	h.press("2", "down", "down", "down")
	h.mustShow("▸ 198.18.72.0/24")
	s := *be.state
	s.Routes = append(slices.Clone(s.Routes), model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast,
		Dst: netip.MustParsePrefix("10.0.0.0/8"), Gateway: netip.MustParseAddr("10.72.1.1"), Dev: "eth0", Protocol: "static"})
	slices.SortStableFunc(s.Routes, func(a, b model.Route) int { return a.Dst.Addr().Compare(b.Dst.Addr()) })
	be.state = &s
	h.press("r")
	h.mustShow("▸ 198.18.72.0/24")

	// NAT: the MASQUERADE rule, then a rule inserted at the top of POSTROUTING.
	h.press("3", "end")
	h.mustShow("▸              other     5       300     -A POSTROUTING -s 172.17.0.0/16")
	nf := cloneNetfilter(be.state.Netfilter)
	post := nf.Table(inet.V4, "nat").Chain("POSTROUTING")
	post.Rules = slices.Insert(post.Rules, 0, iptables.Rule{Spec: "-o em1 -j MASQUERADE", Target: "MASQUERADE"})
	be.netfilter = &nf
	h.fire()
	h.mustShow("▸              other     5       300     -A POSTROUTING -s 172.17.0.0/16")

	// History: the older apply stays selected when a newer one comes on top.
	h.press("6", "e", "eth0", "esc", "a", "right", "right", "right", "right", "enter", "y", "H")
	h.mustShow("▸ 20250301-120000-0000")
	h.press("]", "]", "]", "]", "e", "81", "tab", "tab", "10.72.1.5:80", "esc", "a", "right", "right", "right", "right", "enter", "H", "H")
	h.mustShow("▸ 20250301-120000-0000", "  20250301-120000-0001")
}

// cloneNetfilter copies the tables deeply enough to change a chain's rules.
func cloneNetfilter(nf iptables.Ruleset) iptables.Ruleset {
	out := nf
	out.Tables = slices.Clone(nf.Tables)
	for i := range out.Tables {
		out.Tables[i].Chains = slices.Clone(out.Tables[i].Chains)
		for j := range out.Tables[i].Chains {
			out.Tables[i].Chains[j].Rules = slices.Clone(out.Tables[i].Chains[j].Rules)
		}
	}
	return out
}

// TestEveryListShowsItsItemsWhole opens the detail of an item of each list at 80 columns,
// where the lists cut them: the NAT rule's DNAT target, the conntrack entry's destination (and
// its state, which the list shows), a route, a plan's steps; and the NAT counters follow the
// kernel's while the page is shown.
func TestEveryListShowsItsItemsWhole(t *testing.T) {
	be := newFake(t, case1Host(t))
	be.conntrack = conntrackFixture()
	h := newHarness(t, be, 80, 24)

	h.press("3", "down", "enter")
	h.mustShow("iptables -t nat -A PREROUTING -i em1 -p tcp -m tcp --dport 8080", "DNAT --to-destination 10.72.1.5:80", "Packets  3")
	h.press("esc")
	// The counters of the rules are read again while the page is shown.
	nf := cloneNetfilter(be.state.Netfilter)
	nf.Table(inet.V4, "nat").Chain("PREROUTING").Rules[0].Packets = 4321
	be.netfilter = &nf
	h.fire()
	h.mustShow("other     4321")

	h.press("4")
	h.mustShow("STATE", "ESTABLISHED", "SYN_RECV")
	h.press("end", "enter")
	h.mustShow("198.18.72.10:40100 → 192.168.72.254:8080", "10.72.1.5:80 → 10.72.1.2:40100",
		"192.168.72.254:8080 is answered by 10.72.1.5:80", "0x100")
	h.press("esc", "2", "end", "enter")
	h.mustShow("ip -4 route add 198.18.72.0/24 via 192.168.72.253 dev em1", "Protocol     boot")

	// The plan's lines wrap instead of being cut: the script's note reads to its end.
	h.press("esc")
	traceCase1(h)
	h.press("w")
	h.mustShow("for forwarded (DNAT) connections use --mode connmark")
	// The steps of an apply, whole.
	h.press("a", "enter")
	h.mustShow("step 1/4:", "step 4/4:")
	for _, l := range strings.Split(h.screen(), "\n") {
		if strings.Contains(l, "step ") && strings.HasSuffix(strings.TrimRight(l, " "), "…") {
			t.Fatalf("a step is cut: %q", l)
		}
	}
	// The history's applies, whole.
	h.press("H", "enter")
	h.mustShow("Apply 20250301-120000-0000", "Command", "roundtrip wizard source-return --uplink eth0:10.72.1.1 --mode from", "Step 1")
}

// TestSaveThePlanAndCopyTheCommand saves the plan's script from the Wizards page into a new
// file, refuses to replace a file or to write through a planted link, and copies the command
// (OSC 52) while showing it to copy by hand.
func TestSaveThePlanAndCopyTheCommand(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, newFake(t, case1Host(t)), 80, 24)
	w := h.app.Page(PageWizards).(*pages.Wizards)
	traceCase1(h)
	h.press("w", "s", "ctrl+u", filepath.Join(dir, "fix.sh"), "enter")
	h.mustShow("saved " + filepath.Join(dir, "fix.sh"))
	data, err := os.ReadFile(filepath.Join(dir, "fix.sh"))
	if err != nil || string(data) != string(w.Result().Script()) {
		t.Fatalf("the saved script: %v\n%s", err, data)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "fix.sh")); fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// Saved again under the same name: refused, the file as it was.
	h.press("s", "ctrl+u", filepath.Join(dir, "fix.sh"), "enter")
	h.mustShow("already exists")
	// A link planted where the script goes is not followed.
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep"), 0o600)
	os.Symlink(victim, filepath.Join(dir, "planted.sh"))
	h.press("s", "ctrl+u", filepath.Join(dir, "planted.sh"), "enter")
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Fatalf("the script was written through a planted link: %q", b)
	}
	h.mustShow("already exists")
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("files left behind: %v", entries)
	}

	h.others = nil
	h.press("c")
	cmd := "roundtrip wizard source-return --uplink eth0:10.72.1.1 --mode from"
	var copied string
	for _, m := range h.others {
		if v := reflect.ValueOf(m); fmt.Sprintf("%T", m) == "tea.setClipboardMsg" {
			copied = v.String()
		}
	}
	if copied != cmd {
		t.Fatalf("the clipboard got %q", copied)
	}
	h.mustShow("Copy the command", cmd)
}

// TestRouteFilterFindsText filters the routes by a piece of an address: every route whose text
// contains it matches, as a search would.
func TestRouteFilterFindsText(t *testing.T) {
	s := case1Host(t)
	for _, r := range []string{"100.72.0.0/16", "10.100.72.0/24", "172.16.0.0/12"} {
		s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast,
			Dst: netip.MustParsePrefix(r), Gateway: netip.MustParseAddr("10.72.1.1"), Dev: "eth0", Protocol: "static"})
	}
	h := newHarness(t, newFake(t, s), 80, 24)
	r := h.app.Page(PageRouting).(*pages.Routing)
	h.press("2", "/", "100.72")
	var got []string
	for _, i := range r.Rows() {
		got = append(got, s.Routes[i].Dst.String())
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"10.100.72.0/24", "100.72.0.0/16"}) {
		t.Fatalf("100.72 matches %v", got)
	}
	h.mustShow("2 of 7 routes match")
	// A gateway's piece finds the routes through it.
	h.press("ctrl+u", "72.253")
	if len(r.Rows()) != 1 || s.Routes[r.Rows()[0]].Dst.String() != "198.18.72.0/24" {
		t.Fatalf("72.253 matches %v", r.Rows())
	}
}

// TestConntrackSortsAndCountsMatches orders the connection table by destination, state and
// expiry, and says how many entries the filter keeps.
func TestConntrackSortsAndCountsMatches(t *testing.T) {
	be := newFake(t, case1Host(t))
	ap := netip.MustParseAddrPort
	be.conntrack = append(conntrackFixture(), conntrack.Entry{ID: 4, Family: inet.V4,
		Orig:  conntrack.Tuple{Proto: 17, Src: ap("10.72.1.50:5353"), Dst: ap("10.72.1.1:53")},
		Reply: conntrack.Tuple{Proto: 17, Src: ap("10.72.1.1:53"), Dst: ap("10.72.1.50:5353")}, Timeout: 25})
	h := newHarness(t, be, 120, 40)
	c := h.app.Page(PageConntrack).(*pages.Conntrack)
	h.press("4")
	order := func() []string {
		var out []string
		for _, l := range strings.Split(h.screen(), "\n") {
			if m := regexp.MustCompile(`(?:tcp|udp)\s+\S+\s+(\S+) → (\S+)`).FindStringSubmatch(l); m != nil {
				out = append(out, m[1])
			}
		}
		return out
	}
	want := map[string][]string{
		"source":      {"10.72.1.9:51000", "198.18.72.10:40000", "198.18.72.10:40100", "10.72.1.50:5353"},
		"destination": {"10.72.1.50:5353", "10.72.1.9:51000", "198.18.72.10:40000", "198.18.72.10:40100"},
		"state":       {"10.72.1.9:51000", "198.18.72.10:40100", "198.18.72.10:40000", "10.72.1.50:5353"},
		"expiry":      {"10.72.1.50:5353", "198.18.72.10:40000", "198.18.72.10:40100", "10.72.1.9:51000"},
	}
	for i, by := range []string{"source", "destination", "state", "expiry"} {
		if i > 0 {
			h.press("o")
		}
		if got := order(); c.SortedBy() != by || !slices.Equal(got, want[by]) {
			t.Fatalf("by %s: %v, want by %s: %v", c.SortedBy(), got, by, want[by])
		}
		h.mustShow("Conntrack by " + by + " (o)")
	}
	// The order holds across refreshes.
	h.fire()
	if got := order(); !slices.Equal(got, want["expiry"]) {
		t.Fatalf("after a refresh: %v", got)
	}
	h.press("/", "198.18.72.10")
	h.mustShow("2 of 4 match")
	h.press("ctrl+u", "unreplied", "enter")
	h.mustShow("2 of 4 match")
	h.press("/", "ctrl+u", "udp", "enter")
	h.mustShow("1 of 4 match")
}

// TestVerdictSaysWhenTheFlowWorks has the capture see twelve handshakes of the flow complete
// through the interface they came in on: the verdict says the round trip works.
func TestVerdictSaysWhenTheFlowWorks(t *testing.T) {
	be := newFake(t, case1Host(t))
	ap := netip.MustParseAddrPort
	for i := range 12 {
		client := ap(fmt.Sprintf("198.18.72.10:%d", 41000+i))
		pk := func(dir capture.Direction, src, dst netip.AddrPort, role string, flags uint8) diagnose.Event {
			return diagnose.Event{Type: diagnose.EventPacket, Packet: &diagnose.Packet{Time: testNow, Iface: "eth0", Dir: dir,
				Proto: 6, Src: src, Dst: dst, Flags: flags, Conn: i + 1, Role: role}}
		}
		server := ap("10.72.1.2:80")
		be.events = append(be.events, pk(capture.In, client, server, diagnose.RoleRequest, 0x02),
			pk(capture.Out, server, client, diagnose.RoleReply, 0x12), pk(capture.In, client, server, diagnose.RoleRequest, 0x10))
	}
	h := newHarness(t, be, 80, 24)
	traceCase1(h)
	h.press("c")
	h.mustShow("✓ round trip OK: 12 handshakes completed", "12 completed, 0 failed")
}

// TestUplinksOfferedWithTheirGateways opens the source-return wizard on a server whose public
// interface has no route naming its gateway: the neighbour table names it. The loopback is
// never offered, and → takes the suggestion.
func TestUplinksOfferedWithTheirGateways(t *testing.T) {
	s := case1Host(t)
	// No route through em1 names 192.168.72.253 (case 1 after its manual fix), and em1 is a
	// /24 now, where the other end of a /30 cannot be guessed.
	s.Routes = slices.DeleteFunc(slices.Clone(s.Routes), func(r model.Route) bool { return r.Dev == "em1" && r.Gateway.IsValid() })
	s.Links = slices.Clone(s.Links)
	s.Links[2].Addrs = []model.Address{{Prefix: netip.MustParsePrefix("192.168.72.254/24"), Scope: "global"}}
	be := newFake(t, s)
	be.neighbours = []model.Neighbour{
		{Dev: "em1", Addr: netip.MustParseAddr("192.168.72.253"), State: "reachable"},
		{Dev: "em1", Addr: netip.MustParseAddr("192.168.72.9"), State: "failed"},
		{Dev: "lo", Addr: netip.MustParseAddr("127.0.0.1"), State: "noarp"},
	}
	h := newHarness(t, be, 120, 40)
	w := h.app.Page(PageWizards).(*pages.Wizards)
	h.press("6")
	h.mustShow("e.g. eth0:10.72.1.1 (→)")
	h.press("e")
	h.mustShow("here: eth0:10.72.1.1 (gateway from a", "em1:192.168.72.253 (gateway from the neighbour table)")
	for _, l := range strings.Split(h.screen(), "\n") {
		if strings.Contains(l, "here:") && strings.Contains(l, "lo") {
			t.Fatalf("lo is offered as an uplink: %q", l)
		}
	}
	h.press("right")
	if got := w.Form().Get("uplink"); got != "eth0:10.72.1.1" {
		t.Fatalf("→ in the empty field gives %q", got)
	}
	h.press(" ", "e", "right")
	if got := w.Form().Get("uplink"); got != "eth0:10.72.1.1 em1:192.168.72.253" {
		t.Fatalf("→ after em gives %q", got)
	}
	// A finding that names the uplink without its gateway gets it, and says from where.
	h.send(common.OpenWizardMsg{Wizard: finding.WizardSourceReturn, Args: []string{"--uplink", "em1"}, From: trace.FindingAsymmetricReturn})
	if got := w.Form().Get("uplink"); got != "em1:192.168.72.253" {
		t.Fatalf("the finding's uplink is completed to %q", got)
	}
	h.mustShow("added em1: gateway 192.168.72.253 from the neighbour table")
}
