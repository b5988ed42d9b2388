package diagnose

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"roundtrip/engine/finding"
	"roundtrip/engine/kernel"
	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/kernel/nftrace"
	"roundtrip/engine/trace"
)

// kwSession is a capture session with the kernel's word but no kernel: drops and rule steps
// are handed to it as the watchers would, the model's answer is explain's.
func kwSession(t *testing.T, filter string, explain func(kernel.ConntrackTuple, string) (Explanation, bool)) (*session, *[]Event) {
	t.Helper()
	f, err := kernel.ParseCaptureFilter(filter)
	if err != nil {
		t.Fatal(err)
	}
	var evs []Event
	s := &session{emit: func(e Event) error { evs = append(evs, e); return nil }, stop: func() {}, explain: explain}
	s.corr = NewCorrelator(CorrelateConfig{Explain: explain})
	s.kw = newKernelWord()
	s.kw.filter = f
	s.kw.flowsOn = true
	return s, &evs
}

var (
	kwClient = netip.MustParseAddrPort("10.0.1.2:40000")
	kwServer = netip.MustParseAddrPort("10.0.2.2:80")
	kwT0     = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
)

// kwHand hands a drop to the session as the watchers' reader does: the model asked first.
func kwHand(s *session, d *dropwatch.Drop) {
	var m *modelWord
	if isBlocking(d) {
		x, ok := s.explain(dropTuple(d.Packet), modelIif(d))
		m = &modelWord{x: x, ok: ok}
	}
	s.kernelDrop(d, m)
}

func kwSYN(s *session) {
	s.corr.Packet(&Packet{Time: kwT0, Iface: "lan", Dir: kernel.In, Type: kernel.PacketHost, Proto: unix.IPPROTO_TCP, L3: "ipv4", Src: kwClient, Dst: kwServer, Flags: tcpSYN})
}

func kwDrop(reason, iface, symbol string, dst netip.AddrPort) *dropwatch.Drop {
	return &dropwatch.Drop{
		Time: kwT0.Add(time.Millisecond), Netns: "rtr", Iface: iface, Reason: reason, Words: dropwatch.Describe(reason),
		Location: dropwatch.Location{Symbol: symbol},
		Packet:   dropwatch.Packet{L3: "ipv4", Proto: unix.IPPROTO_TCP, Src: kwClient, Dst: dst, Flags: tcpSYN, Length: 60},
	}
}

func kwFindings(evs []Event, id string) []*Finding {
	var out []*Finding
	for _, e := range evs {
		if e.Type == EventFinding && e.Finding.ID == id {
			out = append(out, e.Finding)
		}
	}
	return out
}

func explainAs(cause string) func(kernel.ConntrackTuple, string) (Explanation, bool) {
	return func(kernel.ConntrackTuple, string) (Explanation, bool) {
		if cause == "" {
			return Explanation{}, false
		}
		return Explanation{Cause: cause, Summary: "the model's " + cause, Fix: finding.Fix{Summary: "the model's fix", Args: []string{}}}, true
	}
}

// The model and the kernel agree: one kernel-drop finding with both words and the model's
// fix; the same drop again makes an event but no second finding.
func TestKernelDropModelAgrees(t *testing.T) {
	s, evs := kwSession(t, "tcp and port 80", explainAs(trace.FindingRPFilterDrop))
	kwSYN(s)
	kwHand(s, kwDrop("IP_RPFILTER", "lan", "ip_rcv_finish_core", kwServer))
	kwHand(s, kwDrop("IP_RPFILTER", "lan", "ip_rcv_finish_core", kwServer))
	drops := 0
	for _, e := range *evs {
		if e.Type == EventDrop {
			drops++
			if e.Conn != 1 {
				t.Errorf("drop event of connection %d, want 1", e.Conn)
			}
		}
	}
	kf := kwFindings(*evs, FindingKernelDrop)
	if drops != 2 || len(kf) != 1 || len(kwFindings(*evs, FindingModelKernelDisagree)) != 0 {
		t.Fatalf("%d drop events, %d kernel-drop findings, %d disagreements; want 2, 1, 0", drops, len(kf), len(kwFindings(*evs, FindingModelKernelDisagree)))
	}
	f := kf[0]
	if f.Severity != finding.SeverityError || f.Conn != 1 || f.Cause != trace.FindingRPFilterDrop || f.Fix.Summary != "the model's fix" ||
		f.Evidence[0] != "kernel: IP_RPFILTER on lan in ip_rcv_finish_core" || !strings.HasPrefix(f.Evidence[1], "model: rp-filter-drop: ") {
		t.Errorf("kernel-drop finding %+v", f)
	}
}

// The kernel drops what the model lets through, or for another reason than the model's:
// model-kernel-disagree says so with both words. A reason the model does not see (no socket)
// is no disagreement.
func TestKernelDropModelDisagrees(t *testing.T) {
	for _, tc := range []struct {
		name, model, reason, symbol string
		disagree                    bool
	}{
		{"lets through", "", "IP_RPFILTER", "ip_rcv_finish_core", true},
		{"another cause", trace.FindingFiltered, "IP_RPFILTER", "ip_rcv_finish_core", true},
		{"unreachable route", trace.FindingUnreachable, "NOT_SPECIFIED", "ip_error", false},
		{"route said nothing", "", "NOT_SPECIFIED", "ip_error", true},
		{"no socket", "", "NO_SOCKET", "tcp_v4_rcv", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, evs := kwSession(t, "tcp and port 80", explainAs(tc.model))
			kwSYN(s)
			kwHand(s, kwDrop(tc.reason, "lan", tc.symbol, kwServer))
			d := kwFindings(*evs, FindingModelKernelDisagree)
			if (len(d) == 1) != tc.disagree || len(d) > 1 {
				t.Fatalf("%d model-kernel-disagree findings, want one: %v", len(d), tc.disagree)
			}
			if tc.disagree && (d[0].Severity != finding.SeverityWarning || !strings.Contains(d[0].Summary, "kernel: "+tc.reason+" on lan in "+tc.symbol)) {
				t.Errorf("disagreement %+v: want a warning with the kernel's word", d[0])
			}
		})
	}
}

// A netfilter drop names the rule the tracer saw drop the packet; the filter keeps out drops
// of flows it does not select, unless conntrack tied them to a captured connection.
func TestKernelDropRuleAndFilter(t *testing.T) {
	s, evs := kwSession(t, "tcp and port 80", explainAs(""))
	kwSYN(s)
	d := kwDrop("NETFILTER_DROP", "lan", "nft_do_chain", kwServer)
	st := nftrace.Step{Time: d.Time.Add(time.Millisecond), Family: "ip", Table: "filter", Chain: "FORWARD", Handle: 7, Kind: "rule", Verdict: "drop",
		Rule: nftrace.RuleText{Iptables: "-A FORWARD -p tcp -j DROP"}, Packet: d.Packet}
	s.kw.dropSteps[canon(dropTuple(st.Packet))] = st
	kwHand(s, d)
	other := netip.MustParseAddrPort("10.0.2.2:8080")
	kwHand(s, kwDrop("NETFILTER_DROP", "lan", "nft_do_chain", other))
	kf := kwFindings(*evs, FindingKernelDrop)
	if len(kf) != 1 || kf[0].Evidence[1] != "rule: ip filter FORWARD handle 7: drop (-A FORWARD -p tcp -j DROP)" {
		t.Fatalf("kernel-drop findings %+v: want one naming the rule", kf)
	}
	// NAT: the port-8080 tuple belongs to a captured connection once conntrack says so.
	s.kw.added[canon(kernel.ConntrackTuple{Proto: unix.IPPROTO_TCP, Src: kwClient, Dst: other})] = true
	kwHand(s, kwDrop("NETFILTER_DROP", "lan", "nft_do_chain", other))
	var dsts []string
	for _, e := range *evs {
		if e.Type == EventDrop {
			dsts = append(dsts, e.Drop.Packet.Dst.String())
		}
	}
	if strings.Join(dsts, " ") != "10.0.2.2:80 10.0.2.2:8080" {
		t.Errorf("drops reported to %v; want port 80, then 8080 only once it is a NAT tuple of the capture", dsts)
	}
}

// The JSON of drop and rule events has their fields at the top, as the README says.
func TestKernelEventJSON(t *testing.T) {
	d := kwDrop("IP_RPFILTER", "rt-vxlan", "ip_rcv_finish_core", kwServer)
	b, err := json.Marshal(Event{Type: EventDrop, Time: d.Time, Drop: d, Conn: 3})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["type"] != "drop" || m["netns"] != "rtr" || m["iface"] != "rt-vxlan" || m["reason"] != "IP_RPFILTER" || m["location"] != "ip_rcv_finish_core" ||
		m["conn"] != 3.0 || m["time"] == nil || m["packet"].(map[string]any)["dst"] != "10.0.2.2:80" {
		t.Errorf("drop event JSON %s", b)
	}
	st := &nftrace.Step{Family: "ip", Table: "filter", Chain: "FORWARD", Handle: 7, Kind: "rule", Verdict: "drop", Rule: nftrace.RuleText{Nft: "tcp dport 80 drop"}, Packet: d.Packet}
	b, err = json.Marshal(Event{Type: EventRule, Rule: st, Conn: 3})
	if err != nil {
		t.Fatal(err)
	}
	m = nil
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["type"] != "rule" || m["table"] != "filter" || m["chain"] != "FORWARD" || m["handle"] != 7.0 || m["rule"] != "tcp dport 80 drop" || m["verdict"] != "drop" || m["conn"] != 3.0 || m["packet"] == nil {
		t.Errorf("rule event JSON %s", b)
	}
	// Other events are as before.
	b, _ = json.Marshal(Event{Type: EventNotice, Notice: "x"})
	if !strings.Contains(string(b), `"notice":"x"`) || strings.Contains(string(b), "reason") {
		t.Errorf("notice event JSON %s", b)
	}
}

// The reverse disagreement: the model says the flow is dropped, and it completed while the
// kernel's drops were watched.
func TestVerdictModelDropsWhatPassed(t *testing.T) {
	flow := kernel.ConntrackTuple{Proto: unix.IPPROTO_TCP, Src: kwClient, Dst: kwServer}
	mk := func(watched bool) *Verdict {
		return &Verdict{
			Trace: &trace.Result{Findings: []finding.Finding{{ID: trace.FindingRPFilterDrop, Severity: finding.SeverityError, Summary: "rp_filter drops it"}}},
			Capture: &CaptureSummary{DropsWatched: watched, Counts: map[string]int{}, Findings: []Finding{},
				Conns: []ConnSummary{{ID: 1, Flow: flow, Completed: true, Path: []string{"lan in request"}}}},
		}
	}
	match := matcher(trace.Request{Proto: unix.IPPROTO_TCP, Src: kwClient, Dst: kwServer})
	v := mk(true)
	v.conclude(match, time.Second)
	if v.Outcome != OutcomeCompleted || !strings.Contains(v.Summary, "model-kernel-disagree: the model says the flow is dropped (rp-filter-drop") || v.Capture.Counts[finding.SeverityWarning] != 1 {
		t.Errorf("verdict %s: %s; want completed with the disagreement", v.Outcome, v.Summary)
	}
	v = mk(false)
	v.conclude(match, time.Second)
	if strings.Contains(v.Summary, "disagree") {
		t.Errorf("without the drop watcher: %s; want no disagreement (the kernel was not asked)", v.Summary)
	}
}

// A drop that does not stop a flow (the queue purged when a socket closes) is an event, not
// a finding: a flow that works has none.
func TestKernelDropHarmless(t *testing.T) {
	s, evs := kwSession(t, "tcp and port 80", explainAs(""))
	kwSYN(s)
	kwHand(s, kwDrop("QUEUE_PURGE", "lan", "sk_stream_kill_queues", kwServer))
	if len(*evs) != 1 || (*evs)[0].Type != EventDrop || s.corr.Counts()[finding.SeverityError]+s.corr.Counts()[finding.SeverityWarning] != 0 {
		t.Errorf("events %+v, counts %v; want the drop event only", *evs, s.corr.Counts())
	}
}

// A packet dropped after DNAT, before conntrack confirmed (and so reported) the NAT, belongs
// to the connection whose client endpoint it still carries.
func TestKernelDropAfterNAT(t *testing.T) {
	s, evs := kwSession(t, "", explainAs(""))
	kwSYN(s)
	kwHand(s, kwDrop("NETFILTER_DROP", "lan", "nft_do_chain", netip.MustParseAddrPort("10.0.3.3:8080")))
	kf := kwFindings(*evs, FindingKernelDrop)
	if len(kf) != 1 || kf[0].Conn != 1 || kf[0].Flow.Dst != kwServer {
		t.Errorf("kernel-drop findings %+v: want one of connection 1, the flow as the client opened it", kf)
	}
}

// kwLive is a session whose kernel's word is read by the real reader from channels the test
// feeds, with a clock the test sets: rule tracing runs, the model is asked as it would be.
type kwLive struct {
	s     *session
	evs   *[]Event
	drops chan dropwatch.Drop
	steps chan nftrace.Step
	now   atomic.Int64 // the clock, in Unix nanoseconds
}

func newKWLive(t *testing.T, explain func(kernel.ConntrackTuple, string) (Explanation, bool)) *kwLive {
	t.Helper()
	s, evs := kwSession(t, "tcp and port 80", explain)
	s.hostReady = make(chan struct{})
	s.hostDone()
	l := &kwLive{s: s, evs: evs, drops: make(chan dropwatch.Drop), steps: make(chan nftrace.Step)}
	l.set(kwT0)
	s.kw.tracing = true
	s.kw.now = func() time.Time { return time.Unix(0, l.now.Load()) }
	go s.kw.readFrom(s, l.drops, l.steps)
	t.Cleanup(func() {
		close(l.drops)
		close(l.steps)
		<-s.kw.readers
	})
	return l
}

// release releases the kernel's events as the capture's ticker does, at the test's clock.
func (l *kwLive) release(now time.Time) {
	l.set(now)
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	l.s.releaseKernel(now.Add(-reorderDelay))
}

func (l *kwLive) set(now time.Time) { l.now.Store(now.UnixNano()) }

// until polls a condition (read under s.mu) for up to 5 s.
func (l *kwLive) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		l.s.mu.Lock()
		ok := cond()
		l.s.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("after 5s: not %s", what)
		}
	}
}

func forwardDropStep(d *dropwatch.Drop, at time.Time) nftrace.Step {
	return nftrace.Step{Time: at, Family: "ip", Table: "filter", Chain: "FORWARD", Handle: 3, Kind: "rule", Verdict: "drop",
		Rule: nftrace.RuleText{Iptables: "-A FORWARD -p tcp -j DROP"}, Packet: d.Packet}
}

// The flake of a loaded machine: the rule step of a dropped packet is read after the drop
// (netlink is slower than the BPF ring, and the model answered first), later than the
// reorder delay. The drop waits for its step, and the kernel-drop finding names the rule.
func TestKernelDropWaitsForItsRuleStep(t *testing.T) {
	l := newKWLive(t, explainAs(trace.FindingFiltered))
	l.s.mu.Lock()
	kwSYN(l.s)
	l.s.mu.Unlock()
	d := kwDrop("NETFILTER_DROP", "lan", "nft_do_chain", kwServer)
	l.set(d.Time)
	l.drops <- *d
	l.until(t, "the model asked", func() bool {
		if len(l.s.kw.pending) != 1 || l.s.kw.pending[0].model == nil {
			return false
		}
		select {
		case <-l.s.kw.pending[0].model.done:
			return true
		default:
			return false
		}
	})
	// Well past the reorder delay, the model has answered, the step is not there yet.
	l.release(d.Time.Add(600 * time.Millisecond))
	if kf := kwFindings(*l.evs, FindingKernelDrop); len(kf) != 0 {
		t.Fatalf("a kernel-drop finding before the rule step came or the wait ended: %q", kf[0].Evidence)
	}
	l.s.mu.Lock()
	waiting := l.s.kernelWaiting()
	l.s.mu.Unlock()
	if !waiting {
		t.Error("kernelWaiting false while a drop waits for its rule step: the capture could end without the finding")
	}
	l.steps <- forwardDropStep(d, d.Time.Add(700*time.Millisecond))
	l.until(t, "the step read", func() bool { return len(l.s.kw.pending) == 2 })
	l.release(d.Time.Add(850 * time.Millisecond))
	kf := kwFindings(*l.evs, FindingKernelDrop)
	if len(kf) != 1 || !slices.Contains(kf[0].Evidence, "rule: ip filter FORWARD handle 3: drop (-A FORWARD -p tcp -j DROP)") {
		t.Fatalf("kernel-drop findings %+v: want one naming the rule", kf)
	}
	if kf[0].Cause != trace.FindingFiltered {
		t.Errorf("cause %q: want the model's word beside the rule", kf[0].Cause)
	}
	var types []string
	for _, e := range *l.evs {
		types = append(types, e.Type)
	}
	if strings.Join(types, " ") != "drop finding rule" {
		t.Errorf("events %v: want the drop, its finding, then the rule step, in time order", types)
	}
}

// The wait is bounded: a netfilter drop whose rule step never comes (an iptables-legacy
// rule) makes its finding after ruleStepWait, saying the rule is not named; when the
// watchers have stopped, at once. A drop of another reason never waits.
func TestKernelDropRuleWaitBounded(t *testing.T) {
	l := newKWLive(t, explainAs(""))
	l.s.mu.Lock()
	kwSYN(l.s)
	l.s.mu.Unlock()
	d := kwDrop("NETFILTER_DROP", "lan", "nft_do_chain", kwServer)
	l.set(d.Time)
	l.drops <- *d
	l.until(t, "the drop queued", func() bool { return len(l.s.kw.pending) == 1 })
	l.until(t, "the model answered", func() bool {
		select {
		case <-l.s.kw.pending[0].model.done:
			return true
		default:
			return false
		}
	})
	l.release(d.Time.Add(ruleStepWait - 10*time.Millisecond))
	if kf := kwFindings(*l.evs, FindingKernelDrop); len(kf) != 0 {
		t.Fatal("the finding did not wait for the rule step")
	}
	l.release(d.Time.Add(ruleStepWait + 10*time.Millisecond))
	kf := kwFindings(*l.evs, FindingKernelDrop)
	if len(kf) != 1 || !hasPrefix(kf[0].Evidence, "rule: not named: ") {
		t.Fatalf("kernel-drop findings %+v: want one, the rule not named, once the wait is over", kf)
	}

	// Another connection's drop, with the watchers stopped: released at once.
	d2 := kwDrop("NETFILTER_DROP", "lan", "nft_do_chain", netip.MustParseAddrPort("10.0.2.3:80"))
	d2.Packet.Src = netip.MustParseAddrPort("10.0.1.2:40001")
	d2.Time = d.Time.Add(3 * time.Second)
	l.set(d2.Time)
	l.drops <- *d2
	l.until(t, "the second drop queued", func() bool { return len(l.s.kw.pending) == 1 })
	l.s.mu.Lock()
	l.s.kw.final = true
	l.s.mu.Unlock()
	l.until(t, "the second drop's model answered", func() bool {
		select {
		case <-l.s.kw.pending[0].model.done:
			return true
		default:
			return false
		}
	})
	l.release(d2.Time.Add(200 * time.Millisecond))
	if kf := kwFindings(*l.evs, FindingKernelDrop); len(kf) != 2 {
		t.Fatalf("%d kernel-drop findings: the last flush waits for no rule step", len(kf))
	}
}

// The model reads the host's state for a drop (up to a second on a busy machine); the rule
// steps that come meanwhile are read all the same, so that the drop, once the model has
// answered, names its rule.
func TestKernelDropModelDoesNotStallSteps(t *testing.T) {
	unblock := make(chan struct{})
	explain := func(kernel.ConntrackTuple, string) (Explanation, bool) {
		<-unblock
		return Explanation{Cause: trace.FindingFiltered, Summary: "filtered", Fix: finding.Fix{Args: []string{}}}, true
	}
	l := newKWLive(t, explain)
	l.s.mu.Lock()
	kwSYN(l.s)
	l.s.mu.Unlock()
	d := kwDrop("NETFILTER_DROP", "lan", "nft_do_chain", kwServer)
	l.set(d.Time)
	l.drops <- *d
	step := forwardDropStep(d, d.Time.Add(5*time.Millisecond))
	select {
	case l.steps <- step:
	case <-time.After(5 * time.Second):
		t.Fatal("the rule step is not read while the model reads the host")
	}
	l.until(t, "the step recorded", func() bool { return l.s.kw.ruleOf(d) != nil })
	close(unblock)
	l.until(t, "the model answered", func() bool {
		select {
		case <-l.s.kw.pending[0].model.done:
			return true
		default:
			return false
		}
	})
	l.release(d.Time.Add(200 * time.Millisecond))
	kf := kwFindings(*l.evs, FindingKernelDrop)
	if len(kf) != 1 || !hasPrefix(kf[0].Evidence, "rule: ip filter FORWARD handle 3: drop") {
		t.Fatalf("kernel-drop findings %+v: want one naming the rule", kf)
	}
}

// Rule traces the socket could not take (ENOBUFS) are said once, when it happens, and an
// unnamed rule says why.
func TestKernelTraceLostNoticed(t *testing.T) {
	s, evs := kwSession(t, "tcp and port 80", explainAs(""))
	var lost uint64
	s.kw.tracing = true
	s.kw.lostTraces = func() uint64 { return lost }
	s.releaseKernel(kwT0)
	lost = 3
	s.releaseKernel(kwT0)
	lost = 5
	s.releaseKernel(kwT0)
	var notices []string
	for _, e := range *evs {
		if e.Type == EventNotice {
			notices = append(notices, e.Notice)
		}
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "ENOBUFS, 3 time(s)") {
		t.Fatalf("notices %q: want one saying the traces overran", notices)
	}
	kwSYN(s)
	s.kw.final = true
	kwHand(s, kwDrop("NETFILTER_DROP", "lan", "nft_do_chain", kwServer))
	kf := kwFindings(*evs, FindingKernelDrop)
	if len(kf) != 1 || !hasPrefix(kf[0].Evidence, "rule: not named: no nf_tables rule step of the packet was read: 5 rule trace messages were lost") {
		t.Fatalf("kernel-drop findings %+v: want the rule not named for lost traces", kf)
	}
	var b strings.Builder
	RenderSummary(&b, &CaptureSummary{RuleTraceLost: 5, Counts: map[string]int{}})
	if !strings.Contains(b.String(), "rule traces lost 5 times") {
		t.Errorf("summary %q: want the lost rule traces said", b.String())
	}
}

func hasPrefix(lines []string, prefix string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, prefix) })
}
