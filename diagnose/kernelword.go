package diagnose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"roundtrip/engine/finding"
	"roundtrip/engine/kernel"
	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/kernel/nftrace"
	"roundtrip/engine/quote"
	"roundtrip/engine/trace"
)

// Event types of the kernel's own word on the captured flows.
const (
	// EventDrop is a packet of a watched flow the kernel dropped, with its reason.
	EventDrop = "drop"
	// EventRule is one step of a watched flow's packet through the nf_tables rules.
	EventRule = "rule"
)

// Live finding ids of the kernel's word.
const (
	// FindingKernelDrop: the kernel dropped a packet of the flow and said why.
	FindingKernelDrop = "kernel-drop"
	// FindingModelKernelDisagree: the kernel dropped what the model lets through, for
	// another reason than the model's, or let through what the model drops. The id is
	// trace's, which uses it when the kernel's route lookup disagrees with the model.
	FindingModelKernelDisagree = trace.FindingKernelDisagrees
)

// MarshalJSON writes an event as one object: drop and rule events carry their fields at the
// top ({"type":"drop","time":...,"netns":...,"iface":...,"reason":...,"location":...,
// "packet":{...},"conn":N}), the others as they are.
func (e Event) MarshalJSON() ([]byte, error) {
	switch {
	case e.Type == EventDrop && e.Drop != nil:
		return json.Marshal(struct {
			Type string `json:"type"`
			*dropwatch.Drop
			Conn int `json:"conn"`
		}{e.Type, e.Drop, e.Conn})
	case e.Type == EventRule && e.Rule != nil:
		return json.Marshal(struct {
			Type string `json:"type"`
			*nftrace.Step
			Conn int `json:"conn"`
		}{e.Type, e.Rule, e.Conn})
	}
	type plain Event
	return json.Marshal(plain(e))
}

// KernelDrop is a drop of the capture's summary: the kernel's word, the connection, and the
// rule that dropped it when rule tracing named one.
type KernelDrop struct {
	dropwatch.Drop
	Conn int           `json:"conn"`
	Rule *nftrace.Step `json:"rule,omitempty"`
	// Count, on the first drop of its connection, reason, interface and kernel function,
	// is how many such drops there were in all: after the first maxDropLines only they are
	// counted (a flood is one line and a number, not a line a packet).
	Count int `json:"count,omitempty"`
}

// Line is the drop in the words of a finding's evidence: "kernel: IP_RPFILTER on lan in
// ip_rcv_finish_core".
func (d *KernelDrop) Line() string { return kernelLine(&d.Drop) }

func kernelLine(d *dropwatch.Drop) string {
	where := d.Iface
	if where == "" {
		where = fmt.Sprintf("ifindex %d", d.Ifindex)
	}
	loc := d.Location.Symbol
	if loc == "" {
		loc = d.Location.String()
	}
	return fmt.Sprintf("kernel: %s on %s in %s", d.Reason, where, loc)
}

// ruleLine is a rule step in the words of a finding's evidence: "rule: ip filter FORWARD
// handle 3: drop (-A FORWARD -p tcp -j DROP)".
func ruleLine(s *nftrace.Step) string {
	where := s.Family + " " + s.Table + " " + s.Chain
	if s.Handle != 0 {
		where += fmt.Sprintf(" handle %d", s.Handle)
	} else {
		where += " " + s.Kind
	}
	line := "rule: " + where + ": " + s.Verdict
	if text := s.Rule.String(); text != "" {
		line += " (" + text + ")"
	}
	return line
}

const (
	maxSummaryDrops = 1000 // drops kept in the summary (DropCount has them all)
	// maxDropLines is how many drops of one connection, reason, interface and kernel
	// function are reported each (an event, a summary entry); the rest are counted.
	maxDropLines    = 5
	maxWatchedFlows = 1024 // NAT tuples added to the watchers, beyond the filter's own flows
	ruleStepWindow  = 2 * time.Second
	// ruleStepWait is how long a netfilter drop that is to make a finding waits for the rule
	// step of its packet, from when the drop was read. The step comes by netlink, the drop by
	// the BPF ring: on a busy machine the step is read hundreds of milliseconds after the
	// drop, later than the packets' reorder delay.
	ruleStepWait = 1500 * time.Millisecond
	modelQueue   = 256 // drops waiting for the model to be asked
)

// kernelWord is the drop watcher and the rule tracer of one capture, and what they said.
type kernelWord struct {
	w  *dropwatch.Watcher
	tr *nftrace.Tracer
	// filter narrows what the watchers report to the capture's filter (nil: everything).
	filter *kernel.CaptureFilter
	// flowsOn: the watchers filter by flows, so the connections' NAT tuples are added.
	flowsOn bool
	added   map[kernel.ConntrackTuple]bool // canonical tuples added from conntrack
	// ruleUnavailable says why a netfilter drop has no rule ("" when rule tracing runs);
	// legacy names the iptables-legacy tables rule tracing cannot see.
	ruleUnavailable, legacy string

	pending []kernelEvent // held until the packets before them are correlated
	// unsorted: an event was queued before one queued earlier (the readers race): pending
	// is sorted once before it is released. Mostly each comes in order and is appended.
	unsorted bool
	// runs counts the drops of each connection, reason, interface and kernel function.
	runs map[dropRunKey]*dropRun
	// tracing: rule steps are reported (the tracer runs); a netfilter drop waits for its step.
	tracing bool
	// final: the watchers stopped and their readers are done: nothing waits any more.
	final bool
	// waiting: releaseKernel holds an event back (for the model, or for a rule step).
	waiting bool
	// traceLost is the count of lost rule trace messages already noticed.
	traceLost  uint64
	lostTraces func() uint64                          // the tracer's Lost; nil without one
	now        func() time.Time                       // time.Now; a test's clock
	dropSteps  map[kernel.ConntrackTuple]nftrace.Step // the last drop or reject step, by canonical tuple
	reported   map[dropFindingKey]bool                // kernel-drop findings made
	lastDrop   map[kernel.ConntrackTuple]*KernelDrop
	drops      []KernelDrop
	count      int
	readers    chan struct{} // closed when both readers stopped
	stopOnce   sync.Once
	lost       uint64 // drops the kernel's ring could not take, read before the watcher closes
}

type kernelEvent struct {
	at     time.Time
	queued time.Time // when the reader took it: a netfilter drop waits for its rule from then
	drop   *dropwatch.Drop
	model  *modelWord // what the model says of a blocking drop; nil: not asked
	step   *nftrace.Step
}

// modelWord is the model's explanation of a dropped packet (ok false: it lets it through),
// once done is closed; none: the model could not be asked (no host state).
type modelWord struct {
	done chan struct{}
	x    Explanation
	ok   bool
	none bool
}

// startKernelWord attaches the drop watcher (and, when the capture selects flows, the rule
// tracer) for the capture's filter. Where one cannot run, a notice says so in one line and the
// capture goes on without it. Called before the capture is ready, with no reader running.
func (s *session) startKernelWord() {
	ns := s.opts.Namespace.Name
	kw := newKernelWord()
	ff, exact := s.opts.Filter.Flows()
	var flows []dropwatch.Flow
	if exact {
		for _, f := range ff {
			flows = append(flows, dropFlow(f.Proto, f.Src, f.Dst))
		}
	}
	if !exact || s.opts.Filter != nil {
		// Flows are a superset (both directions, either side); the filter has the last word.
		kw.filter = s.opts.Filter
	}
	kw.flowsOn = len(flows) > 0
	// Closed by stop, not by the capture's context: stop reads the lost count first.
	ctx := context.WithoutCancel(s.ctx)
	w, err := dropwatch.Start(ctx, dropwatch.Options{Netns: ns, Flows: flows})
	if err != nil {
		if !errors.Is(err, dropwatch.ErrUnsupported) {
			err = fmt.Errorf("the kernel's drop reasons are not watched: %w", err)
		}
		// Rule verdicts need no BPF: they go on without the drops.
		s.lockedNotice(err.Error())
	}
	kw.w = w
	if kw.flowsOn {
		// What a killed run left behind goes first (the kernel removes an owned table with
		// its process; on kernels before 5.12 the marker tells).
		if removed, _ := nftrace.Cleanup(ns); len(removed) > 0 {
			s.lockedNotice(fmt.Sprintf("removed trace tables left by roundtrip processes that no longer run: %v", removed))
		}
		tr, err := nftrace.Start(ctx, nftrace.Options{Netns: ns, Flows: flows})
		switch {
		case err == nil:
			kw.tr, kw.tracing, kw.lostTraces = tr, true, tr.Lost
			for _, warn := range tr.Warnings() {
				s.lockedNotice(warn)
			}
			kw.legacy = strings.Join(tr.Warnings(), "; ")
		case errors.Is(err, nftrace.ErrUnsupported):
			kw.ruleUnavailable = err.Error()
			s.lockedNotice(err.Error())
		default:
			kw.ruleUnavailable = err.Error()
			s.lockedNotice(fmt.Sprintf("the rules that drop the flow are not named: %v", err))
		}
	} else {
		kw.ruleUnavailable = "rule tracing needs a flow to mark (a filter of hosts, ports and protocols)"
	}
	if kw.w == nil && kw.tr == nil {
		return
	}
	s.mu.Lock()
	s.kw = kw
	s.mu.Unlock()
	go kw.read(s)
}

// lockedNotice is notice for a caller that does not hold s.mu.
func (s *session) lockedNotice(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notice(msg)
}

func newKernelWord() *kernelWord {
	return &kernelWord{
		added: map[kernel.ConntrackTuple]bool{}, dropSteps: map[kernel.ConntrackTuple]nftrace.Step{},
		reported: map[dropFindingKey]bool{}, runs: map[dropRunKey]*dropRun{}, lastDrop: map[kernel.ConntrackTuple]*KernelDrop{}, readers: make(chan struct{}),
		now: time.Now,
	}
}

// dropFlow is a watcher's flow; ports only where the watchers take them (TCP, UDP, any).
func dropFlow(proto uint8, src, dst netip.AddrPort) dropwatch.Flow {
	f := dropwatch.Flow{Proto: proto, Src: src.Addr(), Dst: dst.Addr()}
	if proto == 0 || proto == unix.IPPROTO_TCP || proto == unix.IPPROTO_UDP {
		f.SrcPort, f.DstPort = src.Port(), dst.Port()
	}
	return f
}

// read takes the watchers' events and holds them until the packets captured before them are
// correlated (reorderDelay), so that a drop names its connection.
func (kw *kernelWord) read(s *session) {
	var drops <-chan dropwatch.Drop
	if kw.w != nil {
		drops = kw.w.Events()
	}
	var steps <-chan nftrace.Step
	if kw.tr != nil {
		steps = kw.tr.Events()
	}
	kw.readFrom(s, drops, steps)
}

// modelAsk is a drop the model is to explain.
type modelAsk struct {
	d dropwatch.Drop
	m *modelWord
}

// readFrom is read's loop over the two watchers' channels (nil: that watcher is off); it
// closes kw.readers when both are closed and the model has answered what was asked.
func (kw *kernelWord) readFrom(s *session, drops <-chan dropwatch.Drop, steps <-chan nftrace.Step) {
	// The model is asked by a goroutine of its own, one drop after the other: it reads the
	// host's state, which takes up to a second on a busy machine, and the rule steps that
	// name the dropped packet's rule must be taken meanwhile (by the time the model answers
	// and the drop is released, its step is to be known).
	asks := make(chan modelAsk, modelQueue)
	asked := make(chan struct{})
	go func() {
		defer close(asked)
		for a := range asks {
			s.askModel(&a.d, a.m)
		}
	}()
	defer func() {
		close(asks)
		<-asked
		close(kw.readers)
	}()
	seen := map[dropFindingKey]bool{}
	for drops != nil || steps != nil {
		select {
		case d, ok := <-drops:
			if !ok {
				drops = nil
				continue
			}
			// Queued at once, so that it keeps its place among the rule steps; released once
			// the model has answered.
			ev := kernelEvent{at: d.Time, queued: kw.now(), drop: &d}
			if kw.needsModel(&d, seen) {
				ev.model = &modelWord{done: make(chan struct{})}
			}
			s.mu.Lock()
			kw.queue(ev)
			s.mu.Unlock()
			if ev.model != nil {
				asks <- modelAsk{d, ev.model}
			}
		case st, ok := <-steps:
			if !ok {
				steps = nil
				continue
			}
			now := kw.now()
			s.mu.Lock()
			if st.Verdict == "drop" || st.Verdict == "reject" {
				kw.dropSteps[canon(dropTuple(st.Packet))] = st
			}
			kw.queue(kernelEvent{at: st.Time, queued: now, step: &st})
			s.mu.Unlock()
		}
	}
}

// queue adds an event to the pending ones, noting when it is out of time order (so that
// releaseKernel sorts only then, not at every packet). Called with s.mu held.
func (kw *kernelWord) queue(ev kernelEvent) {
	if n := len(kw.pending); n > 0 && ev.at.Before(kw.pending[n-1].at) {
		kw.unsorted = true
	}
	kw.pending = append(kw.pending, ev)
}

// needsModel says whether the model is to be asked about a drop: the first blocking drop of
// each flow, reason and interface.
func (kw *kernelWord) needsModel(d *dropwatch.Drop, asked map[dropFindingKey]bool) bool {
	if !isBlocking(d) || !d.Packet.Src.Addr().IsValid() {
		return false
	}
	key := dropFindingKey{tuple: canon(dropTuple(d.Packet)), reason: d.Reason, iface: d.Iface}
	if asked[key] {
		return false
	}
	asked[key] = true
	return true
}

// askModel asks the model about a drop outside the session's lock: the model reads the
// host's state, which takes long enough to stall the capture's readers (and so the order of
// their packets).
func (s *session) askModel(d *dropwatch.Drop, m *modelWord) {
	defer close(m.done)
	<-s.hostReady
	s.mu.Lock()
	explain := s.explain
	s.mu.Unlock()
	if explain == nil {
		m.none = true
		return
	}
	m.x, m.ok = explain(dropTuple(d.Packet), modelIif(d))
}

// modelIif is where the model is to start the dropped packet: on the interface it was
// dropped on, unless the drop happened on the way out (then it was routed already, and a
// packet the host sent started on the host itself).
func modelIif(d *dropwatch.Drop) string {
	switch d.Reason {
	case "IP_OUTNOROUTES", "NEIGH_FAILED", "NEIGH_CREATEFAIL", "NEIGH_QUEUEFULL", "TC_EGRESS", "BPF_CGROUP_EGRESS", "NO_TX_TARGET", "DEV_READY":
		return ""
	}
	if d.Location.Symbol == "dst_discard_out" {
		return ""
	}
	return d.Iface
}

// stop detaches the watchers and waits for their readers. Not called with s.mu held.
func (kw *kernelWord) stop(s *session) {
	kw.stopOnce.Do(func() { kw.detach(s) })
}

func (kw *kernelWord) detach(s *session) {
	s.hostDone() // a reader waiting for the model must not wait for ever
	if kw.w != nil {
		if n, err := kw.w.Lost(); err == nil {
			kw.lost = n
		}
	}
	if kw.tr != nil {
		if err := kw.tr.Close(); err != nil {
			s.mu.Lock()
			s.notice(fmt.Sprintf("removing the trace table: %v (roundtrip rollback removes it)", err))
			s.mu.Unlock()
		}
	}
	if kw.w != nil {
		kw.w.Close()
	}
	<-kw.readers
	// Every rule step there will be is known: the last flush waits for nothing.
	s.mu.Lock()
	kw.final = true
	s.mu.Unlock()
}

// dropTuple is a dropped packet's tuple in conntrack's terms (ICMP echo ids as ports).
func dropTuple(p dropwatch.Packet) kernel.ConntrackTuple {
	t := kernel.ConntrackTuple{Proto: p.Proto, Src: p.Src, Dst: p.Dst}
	if dropwatch.IsEcho(p.Proto, p.ICMPType) {
		sp, dp := kernel.ICMPEchoPorts(p.ICMPType, p.ICMPID, p.Proto == unix.IPPROTO_ICMPV6)
		t.Src, t.Dst = netip.AddrPortFrom(p.Src.Addr(), sp), netip.AddrPortFrom(p.Dst.Addr(), dp)
	}
	return t
}

// selected says whether a packet the watchers reported belongs to the capture: its filter
// selects it either way, or it is a NAT tuple of a captured connection.
func (kw *kernelWord) selected(p dropwatch.Packet) bool {
	if kw.filter == nil {
		return true
	}
	if !p.Src.Addr().IsValid() {
		return false
	}
	t := dropTuple(p)
	ports := func(ap netip.AddrPort) netip.AddrPort { return portsOnly(p.Proto, ap) }
	return kw.filter.Match(p.Proto, ports(p.Src), ports(p.Dst)) || kw.filter.Match(p.Proto, ports(p.Dst), ports(p.Src)) || kw.added[canon(t)]
}

// watchConn adds a captured connection's conntrack tuples to the watchers, so that its
// packets are watched after NAT too. Called with s.mu held.
func (s *session) watchConn(e *kernel.ConntrackEntry) {
	kw := s.kw
	if kw == nil || !kw.flowsOn {
		return
	}
	for _, t := range []kernel.ConntrackTuple{e.Orig, e.Reply} {
		k := canon(t)
		if kw.added[k] || len(kw.added) >= maxWatchedFlows {
			continue
		}
		kw.added[k] = true
		f := dropFlow(t.Proto, portsOnly(t.Proto, t.Src), portsOnly(t.Proto, t.Dst))
		if kw.w != nil {
			if err := kw.w.AddFlow(f); err != nil {
				s.notice(fmt.Sprintf("watching drops of %s: %v", f, err))
			}
		}
		if kw.tr != nil {
			if err := kw.tr.AddFlow(f); err != nil {
				s.notice(fmt.Sprintf("tracing the rules of %s: %v", f, err))
			}
		}
	}
}

// releaseKernel emits the kernel's events up to a time, in time order. Called with s.mu held.
func (s *session) releaseKernel(upTo time.Time) {
	kw := s.kw
	if kw == nil {
		return
	}
	s.noticeTraceLost()
	if len(kw.pending) == 0 {
		kw.waiting = false
		return
	}
	if kw.unsorted {
		slices.SortStableFunc(kw.pending, func(a, b kernelEvent) int { return a.at.Compare(b.at) })
		kw.unsorted = false
	}
	kw.waiting = false
	n := 0
	for n < len(kw.pending) && !kw.pending[n].at.After(upTo) && s.err == nil {
		ev := kw.pending[n]
		hold := false
		if ev.model != nil {
			select {
			case <-ev.model.done:
			default:
				// The model is still reading the host.
				hold = true
			}
		}
		if hold || ev.drop != nil && s.awaitsRule(&ev) {
			// This and what follows wait, in order.
			kw.waiting = true
			kw.dropFront(n)
			return
		}
		n++
		switch {
		case ev.drop != nil:
			s.kernelDrop(ev.drop, ev.model)
		case ev.step != nil:
			if kw.selected(ev.step.Packet) {
				s.send(Event{Type: EventRule, Time: ev.step.Time, Rule: ev.step, Conn: s.connOf(dropTuple(ev.step.Packet))})
			}
		}
	}
	kw.dropFront(n)
}

// dropFront forgets the first n pending events. It reslices rather than shifting the rest
// down: releaseKernel runs for every packet, and with many events read ahead of their
// packets a shift per packet was a quarter of capture's CPU at 200k packets/s (perf). append
// copies the live events into a new array when the old one is used up.
func (kw *kernelWord) dropFront(n int) {
	if n == 0 {
		return
	}
	clear(kw.pending[:n]) // the events' pointers are not kept alive by the array
	kw.pending = kw.pending[n:]
}

// noticeTraceLost says once, when it first happens, that rule trace messages were lost: the
// netlink socket overran (ENOBUFS), and the rule of a drop may go unnamed. Called with s.mu
// held.
func (s *session) noticeTraceLost() {
	kw := s.kw
	if kw.lostTraces == nil {
		return
	}
	n := kw.lostTraces()
	if n == 0 || kw.traceLost != 0 {
		kw.traceLost = max(kw.traceLost, n)
		return
	}
	kw.traceLost = n
	s.notice(fmt.Sprintf("nf_tables rule traces were lost: the trace socket's buffer overran (ENOBUFS, %d time(s) so far); some drops may go without their rule (the summary counts them)", n))
}

// awaitsRule says whether a drop waits for the rule step of its packet: a netfilter drop that
// is to make a kernel-drop finding while rules are traced, whose step has not been read, for
// up to ruleStepWait after the drop was read or until the watchers stopped. Called with s.mu
// held.
func (s *session) awaitsRule(ev *kernelEvent) bool {
	kw := s.kw
	d := ev.drop
	if !kw.tracing || kw.final || !isNetfilterDrop(d) || !kw.selected(d.Packet) {
		return false
	}
	if kw.tr != nil && kw.tr.Err() != nil {
		return false // the tracer stopped: no step comes
	}
	if kw.ruleOf(d) != nil || kw.now().Sub(ev.queued) >= ruleStepWait {
		return false
	}
	key, finding := s.dropKey(d)
	return finding && !kw.reported[key]
}

// ruleOf is the rule step that dropped the packet of a netfilter drop, nil when none was read.
func (kw *kernelWord) ruleOf(d *dropwatch.Drop) *nftrace.Step {
	st, ok := kw.dropSteps[canon(dropTuple(d.Packet))]
	if !ok || !isNetfilterDrop(d) || absDuration(st.Time.Sub(d.Time)) >= ruleStepWindow {
		return nil
	}
	return &st
}

// dropFindingKey is what a kernel-drop finding is made once for: a connection (or the
// canonical tuple of a packet of none), a reason and an interface.
type dropFindingKey struct {
	conn          int
	tuple         kernel.ConntrackTuple
	reason, iface string
}

// dropRunKey is what repeated drops are counted by: dropFindingKey and the kernel function.
type dropRunKey struct {
	dropFindingKey
	loc dropwatch.Location
}

// dropRun is the drops of one dropRunKey: how many, and the summary entry of the first (-1:
// the summary was full).
type dropRun struct {
	n, first int
}

// dropKey is what a drop's kernel-drop finding is made once for (connection, reason,
// interface), and whether the drop makes one at all. Called with s.mu held.
func (s *session) dropKey(d *dropwatch.Drop) (key dropFindingKey, finding bool) {
	t := dropTuple(d.Packet)
	key = findingKey(s.connFor(t), t, d)
	// Drops that do not stop a flow (old TCP data, queues purged at a close) are events
	// only: findings are for what breaks it.
	return key, d.Packet.Src.Addr().IsValid() && isBlocking(d)
}

func findingKey(cn *conn, t kernel.ConntrackTuple, d *dropwatch.Drop) dropFindingKey {
	if cn != nil {
		return dropFindingKey{conn: cn.id, reason: d.Reason, iface: d.Iface}
	}
	return dropFindingKey{tuple: canon(t), reason: d.Reason, iface: d.Iface}
}

// kernelWaiting says whether kernel events are held back (for the model or a rule step):
// the capture is not to end on Done before they are released. Called with s.mu held.
func (s *session) kernelWaiting() bool { return s.kw != nil && s.kw.waiting }

// connOf returns the id of the captured connection of a packet with the tuple (0: none).
func (s *session) connOf(t kernel.ConntrackTuple) int {
	if cn := s.connFor(t); cn != nil {
		return cn.id
	}
	return 0
}

// connFor finds the captured connection of a packet the kernel reported: by its tuple, or,
// for a packet NATed before its conntrack entry was confirmed (dropped after DNAT, so
// conntrack never reported the NAT), by the endpoint NAT left alone when exactly one
// connection has it.
func (s *session) connFor(t kernel.ConntrackTuple) *conn {
	if cn := s.corr.conns[canon(t)]; cn != nil {
		return cn
	}
	if !hasPortsProto(t.Proto) {
		return nil // an address alone is no connection's
	}
	for _, ep := range []netip.AddrPort{t.Src, t.Dst} {
		if list := s.corr.byEndpoint[endpointKey(t.Proto, ep)]; len(list) == 1 {
			return list[0]
		}
	}
	return nil
}

// kernelDrop reports one drop: the event, and the first time for its connection and reason a
// kernel-drop finding with the rule, the model's word beside the kernel's, and a
// model-kernel-disagree finding where they differ. Called with s.mu held.
func (s *session) kernelDrop(d *dropwatch.Drop, model *modelWord) {
	kw := s.kw
	if !kw.selected(d.Packet) {
		return
	}
	t := dropTuple(d.Packet)
	cn := s.connFor(t)
	kw.count++
	// Repeated drops (a flood the receiver cannot take) are counted on the first one's
	// summary entry: one map lookup each, no event, no finding (made by the first).
	fk := findingKey(cn, t, d)
	rk := dropRunKey{dropFindingKey: fk, loc: d.Location}
	run := kw.runs[rk]
	if run == nil {
		run = &dropRun{first: -1}
		kw.runs[rk] = run
	}
	run.n++
	if run.first >= 0 {
		kw.drops[run.first].Count = run.n
	}
	if run.n > maxDropLines {
		return
	}
	k := canon(t)
	kd := KernelDrop{Drop: *d}
	if cn != nil {
		kd.Conn = cn.id
	}
	kd.Rule = kw.ruleOf(d)
	if len(kw.drops) < maxSummaryDrops {
		if run.n == 1 {
			run.first = len(kw.drops)
			kd.Count = 1
		}
		kw.drops = append(kw.drops, kd)
	}
	kw.lastDrop[k] = &kd
	if cn != nil {
		kw.lastDrop[canon(cn.flow())] = &kd
	}
	s.send(Event{Type: EventDrop, Time: d.Time, Drop: d, Conn: kd.Conn})

	finding := d.Packet.Src.Addr().IsValid() && isBlocking(d)
	if kw.reported[fk] || !finding {
		return
	}
	kw.reported[fk] = true
	s.findings(s.corr.record(s.kernelFindings(&kd, cn, t, model)))
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func isNetfilterDrop(d *dropwatch.Drop) bool { return d.Reason == "NETFILTER_DROP" }

// blocking are the reasons that stop a flow: a drop for one of them fails it. Other drops
// (old TCP data, a full socket buffer, a closed socket) are warnings.
var blocking = map[string]bool{
	"IP_RPFILTER": true, "NETFILTER_DROP": true, "IP_INNOROUTES": true, "IP_OUTNOROUTES": true,
	"IP_INADDRERRORS": true, "NEIGH_FAILED": true, "NEIGH_CREATEFAIL": true, "NEIGH_QUEUEFULL": true,
	"NO_SOCKET": true, "XFRM_POLICY": true, "IP_LOCAL_SOURCE": true, "IP_INVALID_SOURCE": true,
	"IP_LOCALNET": true, "IP_INVALID_DEST": true, "PKT_TOO_BIG": true, "TC_EGRESS": true,
	"TC_INGRESS": true, "BPF_CGROUP_EGRESS": true, "SECURITY_HOOK": true, "IPV6DISABLED": true,
	"DEV_READY": true, "NO_TX_TARGET": true, "IP_NOPROTO": true, "XDP": true,
	"UNICAST_IN_L2_MULTICAST": true, "IP_INHDR": true,
}

// routeDropAt are the functions that drop without a reason where a route refuses a packet.
var routeDropAt = map[string]bool{"ip_error": true, "ip6_pkt_drop": true, "dst_discard": true, "dst_discard_out": true}

func isBlocking(d *dropwatch.Drop) bool {
	return blocking[d.Reason] || d.Reason == "NOT_SPECIFIED" && routeDropAt[d.Location.Symbol]
}

// modelCauses are the trace findings that explain a kernel reason: the model agrees with the
// kernel when it finds one of them. A reason not listed is one the model does not see
// (neighbours, sockets, queues): there it neither agrees nor disagrees.
var modelCauses = map[string][]string{
	"IP_RPFILTER":     {trace.FindingRPFilterDrop},
	"NETFILTER_DROP":  {trace.FindingFiltered, trace.FindingUncertain},
	"IP_INNOROUTES":   {trace.FindingNoRoute, trace.FindingForwardingDisabled, trace.FindingUnreachable, trace.FindingProhibit},
	"IP_INADDRERRORS": {trace.FindingForwardingDisabled, trace.FindingNoRoute},
	"IP_OUTNOROUTES":  {trace.FindingNoRoute, trace.FindingUnreachable, trace.FindingProhibit},
	// NOT_SPECIFIED, by where it happened.
	"ip_error":        {trace.FindingUnreachable, trace.FindingProhibit, trace.FindingNoRoute, trace.FindingBlackhole, trace.FindingForwardingDisabled},
	"ip6_pkt_drop":    {trace.FindingUnreachable, trace.FindingProhibit, trace.FindingNoRoute},
	"dst_discard":     {trace.FindingBlackhole},
	"dst_discard_out": {trace.FindingBlackhole},
}

func modelCausesOf(d *dropwatch.Drop) ([]string, bool) {
	if d.Reason == "NOT_SPECIFIED" {
		c, ok := modelCauses[d.Location.Symbol]
		return c, ok
	}
	c, ok := modelCauses[d.Reason]
	return c, ok
}

// unseenByModel says what the model does not look at, for a reason it cannot explain.
var unseenByModel = map[string]string{
	"NEIGH_FAILED":     "neighbour resolution (ARP/NDP): the next hop does not answer",
	"NEIGH_CREATEFAIL": "neighbour resolution (ARP/NDP)",
	"NEIGH_QUEUEFULL":  "neighbour resolution (ARP/NDP)",
	"NO_SOCKET":        "sockets: whether a program listens on the port",
}

// kernelFindings makes the findings of a drop: kernel-drop, and model-kernel-disagree where
// the model explains the packet's fate otherwise.
func (s *session) kernelFindings(kd *KernelDrop, cn *conn, t kernel.ConntrackTuple, model *modelWord) []Finding {
	d := &kd.Drop
	sev := finding.SeverityError
	where := d.Iface
	if where == "" {
		where = fmt.Sprintf("ifindex %d", d.Ifindex)
	}
	summary := fmt.Sprintf("the kernel dropped %s on %s: %s (%s)", d.Packet, where, d.Reason, d.Words)
	var f Finding
	if cn != nil {
		f = s.corr.finding(cn, FindingKernelDrop, sev, d.Time, summary, s.connPackets(cn, t))
	} else {
		f = s.corr.looseFinding(FindingKernelDrop, sev, d.Time, summary, t)
	}
	f.Ingress = d.Iface
	f.Evidence = append(f.Evidence, kd.Line())
	if kd.Rule != nil {
		f.Evidence = append(f.Evidence, ruleLine(kd.Rule))
	} else if isNetfilterDrop(d) {
		why := s.kw.ruleUnavailable
		if why == "" && s.kw.legacy != "" {
			why = s.kw.legacy + "; the rule is most likely in one of them"
		}
		if why == "" && s.kw.traceLost > 0 {
			why = fmt.Sprintf("no nf_tables rule step of the packet was read: %d rule trace messages were lost (the trace socket's buffer overran)", s.kw.traceLost)
		}
		if why == "" {
			why = "no nf_tables rule step of the packet was traced: the rule is in an iptables-legacy table, or the packet was not marked for tracing (a flow's first packets are, then " + strconv.Itoa(nftrace.TraceRate) + " a second)"
		}
		f.Evidence = append(f.Evidence, "rule: not named: "+why)
	}
	// The model's word beside the kernel's.
	var x Explanation
	explained := false
	if model != nil && model.none {
		model = nil
	}
	if model != nil {
		x, explained = model.x, model.ok
	}
	causes, modelled := modelCausesOf(d)
	out := []Finding{}
	switch {
	case model == nil:
		// Not asked: the host's state could not be read, or the same drop was explained before.
	case explained && slices.Contains(causes, x.Cause):
		f.Cause = x.Cause
		f.Evidence = append(f.Evidence, fmt.Sprintf("model: %s: %s", x.Cause, x.Summary))
		f.Evidence = append(f.Evidence, x.Evidence...)
		f.Fix = x.Fix
	case explained:
		f.Evidence = append(f.Evidence, fmt.Sprintf("model: %s: %s", x.Cause, x.Summary))
		if modelled {
			out = append(out, s.disagree(cn, t, d, fmt.Sprintf("the model says %s (%s) but the kernel dropped it for another reason: %s", x.Cause, x.Summary, kernelLine(d))))
		}
	case modelled:
		f.Evidence = append(f.Evidence, "model: the model of this host lets it through")
		out = append(out, s.disagree(cn, t, d, fmt.Sprintf("the kernel dropped what the model lets through: %s (%s)", kernelLine(d), d.Words)))
	default:
		if what, ok := unseenByModel[d.Reason]; ok {
			f.Evidence = append(f.Evidence, "model: lets it through; it does not model "+what)
		}
	}
	if f.Fix.Summary == "" {
		f.Fix = kernelFix(d)
	}
	return append([]Finding{f}, out...)
}

// kernelFix says what to do about a drop the model has no fix for.
func kernelFix(d *dropwatch.Drop) finding.Fix {
	fix := finding.Fix{Args: []string{}}
	switch d.Reason {
	case "NO_SOCKET":
		fix.Summary = fmt.Sprintf("nothing listens on %s %s: start the service there, or send the client to the port it listens on", dropwatch.ProtoName(d.Packet.Proto), kernel.Endpoint(d.Packet.Proto, d.Packet.Dst))
	case "NEIGH_FAILED", "NEIGH_QUEUEFULL", "NEIGH_CREATEFAIL":
		fix.Summary = fmt.Sprintf("the next hop on %s does not answer ARP/neighbour discovery: check that the gateway is up, on that link, and the route's gateway address", d.Iface)
	case "NETFILTER_DROP":
		fix.Summary = "remove or change the rule that drops the flow, or add an accept before it"
	default:
		fix.Summary = "the kernel's reason above says where to look: " + d.Words
	}
	return fix
}

// disagree makes a model-kernel-disagree finding.
func (s *session) disagree(cn *conn, t kernel.ConntrackTuple, d *dropwatch.Drop, summary string) Finding {
	var f Finding
	if cn != nil {
		f = s.corr.finding(cn, FindingModelKernelDisagree, finding.SeverityWarning, d.Time, summary, s.connPackets(cn, t))
	} else {
		f = s.corr.looseFinding(FindingModelKernelDisagree, finding.SeverityWarning, d.Time, summary, t)
	}
	f.Ingress = d.Iface
	f.Evidence = append(f.Evidence, kernelLine(d))
	f.Fix = finding.Fix{Summary: "the model of this host misses something the kernel does: a rule or setting it cannot read (nftables, ebtables, tc, a sysctl of another name); please report it with `roundtrip show --json`", Args: []string{}}
	return f
}

// connPackets are the connection's captured packets of the tuple's direction, for evidence.
func (s *session) connPackets(cn *conn, t kernel.ConntrackTuple) []Packet {
	role := cn.role(t)
	var out []Packet
	for _, p := range cn.obs {
		if len(out) == 4 {
			break
		}
		if role == "" || cn.role(p.Tuple()) == role {
			out = append(out, p)
		}
	}
	return out
}

// looseFinding starts a finding about packets of no captured connection.
func (c *Correlator) looseFinding(id, severity string, now time.Time, summary string, t kernel.ConntrackTuple) Finding {
	c.counts[severity]++
	return Finding{
		Finding: finding.Finding{ID: id, Severity: severity, Summary: summary, Evidence: []string{}, Fix: finding.Fix{Args: []string{}}},
		Time:    now, Flow: t, Packets: []Packet{},
	}
}

// kernelEvidence adds the kernel's word to another finding about a connection whose packet
// the kernel dropped (forwarded-not-seen: why it never left). Called with s.mu held.
func (s *session) kernelEvidence(f *Finding) {
	if s.kw == nil || f.ID == FindingKernelDrop || f.ID == FindingModelKernelDisagree {
		return
	}
	kd := s.kw.lastDrop[canon(f.Flow)]
	if kd == nil || kd.Conn != f.Conn {
		// Without the drop watcher, the rule that dropped the packet still tells.
		if st, ok := s.kw.dropSteps[canon(f.Flow)]; ok && s.kw.w == nil {
			if line := ruleLine(&st); !slices.Contains(f.Evidence, line) {
				f.Evidence = append(f.Evidence, line)
			}
		}
		return
	}
	line := kd.Line()
	if slices.Contains(f.Evidence, line) {
		return
	}
	f.Evidence = append(f.Evidence, line+" ("+kd.Words+")")
	if kd.Rule != nil {
		f.Evidence = append(f.Evidence, ruleLine(kd.Rule))
	}
}

// summary adds the drops to a capture's summary. Called with s.mu held.
func (kw *kernelWord) summary(sum *CaptureSummary) {
	sum.Drops, sum.DropCount = kw.drops, kw.count
	sum.DropsWatched = kw.w != nil
	sum.DropsLost = kw.lost
	if kw.tr != nil {
		sum.RuleTraceLost = kw.tr.Lost()
	}
}

// kernelCause adds the rule and the model's view of a kernel-drop finding to a verdict.
func kernelCause(f *Finding) string {
	var extra []string
	for _, e := range f.Evidence {
		if strings.HasPrefix(e, "rule: ") || strings.HasPrefix(e, "model: ") {
			extra = append(extra, e)
		}
	}
	if len(extra) == 0 {
		return ""
	}
	return " [" + strings.Join(extra, "; ") + "]"
}

// modelDropsWhatPassed is the other half of model-kernel-disagree: the model says the flow
// is dropped, and it completed while the kernel's drops were watched.
func (v *Verdict) modelDropsWhatPassed(conns []ConnSummary) *Finding {
	if !v.Capture.DropsWatched || v.Trace == nil {
		return nil
	}
	for _, id := range causeOrder {
		tf := v.Trace.Finding(id)
		if tf == nil || tf.Severity != finding.SeverityError || id == trace.FindingUncertain {
			continue
		}
		f := Finding{
			Finding: finding.Finding{ID: FindingModelKernelDisagree, Severity: finding.SeverityWarning,
				Summary:  fmt.Sprintf("the model says the flow is dropped (%s: %s) but it completed, and the kernel dropped none of its packets", tf.ID, tf.Summary),
				Evidence: []string{"model: " + tf.ID + ": " + tf.Summary, "kernel: no drop of the flow's packets"},
				Fix:      finding.Fix{Summary: "the model of this host misses something the kernel does; please report it with `roundtrip show --json`", Args: []string{}}},
			Time: time.Now(), Packets: []Packet{},
		}
		for _, cs := range conns {
			if cs.Completed {
				f.Conn, f.Flow = cs.ID, cs.Flow
				break
			}
		}
		return &f
	}
	return nil
}

// renderDrops writes the kernel's drops of a capture's summary.
func renderDrops(w io.Writer, s *CaptureSummary) {
	const maxShown = 10
	if !s.DropsWatched {
		return
	}
	quote.TermFprintf(w, "kernel drops of the captured flows: %d", s.DropCount)
	if s.DropsLost > 0 {
		quote.TermFprintf(w, " (%d more lost: the drop watcher's ring was full)", s.DropsLost)
	}
	fmt.Fprintln(w)
	for i := range s.Drops {
		if i == maxShown {
			quote.TermFprintf(w, "  ... and %d more (--json lists them)\n", len(s.Drops)-maxShown)
			break
		}
		d := &s.Drops[i]
		if d.Count > 1 {
			quote.TermFprintf(w, "  conn %d: %s (%d like it)\n", d.Conn, d.Drop.String(), d.Count)
		} else {
			quote.TermFprintf(w, "  conn %d: %s\n", d.Conn, d.Drop.String())
		}
		if d.Rule != nil {
			quote.TermFprintf(w, "    %s\n", ruleLine(d.Rule))
		}
	}
}
