package diagnose

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"roundtrip/engine/finding"
	"roundtrip/engine/kernel"
	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/kernel/nftrace"
	"roundtrip/engine/model"
)

// CaptureOptions says what to capture and how.
type CaptureOptions struct {
	Namespace kernel.Namespace
	// Ifaces limits the capture to these interfaces; empty means all of them.
	Ifaces []string
	// Filter selects packets in the kernel; nil keeps everything.
	Filter *kernel.CaptureFilter
	// Duration ends the capture after this long (0: when ctx ends).
	Duration time.Duration
	// Count ends the capture after this many packets (0: no limit).
	Count int
	// Pcap, when set, receives every captured packet as pcapng.
	Pcap io.Writer
	// SnapLen and BufferSize are passed to the kernel capture (0: defaults).
	SnapLen, BufferSize int
	// NoConntrack turns off the use of conntrack for correlation.
	NoConntrack bool
	// NoPackets leaves packet events out (findings and the summary still come).
	NoPackets bool
	// NoKernelDrops turns off the kernel's own word: the drop watcher (the reason of every
	// drop of the captured flows) and the rule tracer (the nf_tables rules they meet).
	NoKernelDrops bool
	// ForwardWait and ReplyWait tune the correlator (0: defaults).
	ForwardWait, ReplyWait time.Duration
	// Done, when set, is asked after every packet and every tick; true ends the capture.
	Done func(c *Correlator, now time.Time) bool
	// Ready, when set, is called once the kernel keeps the packets for the capture (its rings
	// are open and filtered): a client started after it is seen whole.
	Ready func()
}

// Event types of a capture's stream.
const (
	EventPacket    = "packet"
	EventFinding   = "finding"
	EventConntrack = "conntrack"
	EventNotice    = "notice"
)

// Event is one item of a capture's stream; with --json each is one line (NDJSON).
type Event struct {
	Type      string                 `json:"type"`
	Time      time.Time              `json:"time"`
	Packet    *Packet                `json:"packet,omitempty"`
	Finding   *Finding               `json:"finding,omitempty"`
	Conntrack *kernel.ConntrackEvent `json:"conntrack,omitempty"`
	// Conn is the connection a conntrack event belongs to.
	Conn   int    `json:"conn,omitempty"`
	Notice string `json:"notice,omitempty"`
	// Drop is the kernel's word on a dropped packet (EventDrop); Rule a rule step (EventRule).
	// Their fields are written at the top of the event's JSON (see MarshalJSON).
	Drop *dropwatch.Drop `json:"-"`
	Rule *nftrace.Step   `json:"-"`
}

// CaptureSummary is what a capture saw, at its end.
type CaptureSummary struct {
	Interfaces []kernel.CaptureInterface `json:"interfaces"`
	Filter     string                    `json:"filter,omitempty"`
	// Packets is how many packets were decoded; Kernel counts what the kernel matched and
	// dropped (ring full): drops are always reported, never hidden.
	Packets   int                    `json:"packets"`
	Kernel    kernel.CaptureStats    `json:"kernel"`
	Conntrack *kernel.ConntrackStats `json:"conntrack,omitempty"`
	// ConntrackEventsLost counts conntrack event overruns (ENOBUFS).
	ConntrackEventsLost int           `json:"conntrack_events_lost,omitempty"`
	Conns               []ConnSummary `json:"conns"`
	// Findings lists the findings (the first 10000; Counts has them all, by severity).
	Findings []Finding      `json:"findings"`
	Counts   map[string]int `json:"counts"`
	Notices  []string       `json:"notices,omitempty"`
	// Drops are the packets of the captured flows the kernel dropped, with its reason (the
	// first 1000; DropCount counts them all); DropsLost the ones its ring buffer could not
	// take; RuleTraceLost the rule traces the netlink socket overran on.
	DropsWatched  bool         `json:"drops_watched"`
	Drops         []KernelDrop `json:"drops,omitempty"`
	DropCount     int          `json:"drop_count,omitempty"`
	DropsLost     uint64       `json:"drops_lost,omitempty"`
	RuleTraceLost uint64       `json:"rule_trace_lost,omitempty"`
}

// Errors counts findings of severity error.
func (s *CaptureSummary) Errors() int { return s.Counts[finding.SeverityError] }

// session is one running capture.
type session struct {
	opts    CaptureOptions
	emit    func(Event) error
	mu      sync.Mutex
	corr    *Correlator
	dec     *decoder
	pcap    *pcapWriter
	ct      *kernel.Conntrack
	count   int
	lost    int
	notices []string
	stop    context.CancelFunc
	err     error
	ended   bool // Count or Done ended the capture: nothing more is emitted
	order   reorder
	ctx     context.Context
	kw      *kernelWord // nil: the kernel's word is off or unavailable
	// hostReady is closed once the host's state and the model are at hand (or cannot be).
	hostReady chan struct{}
	hostOnce  sync.Once
	explain   func(kernel.ConntrackTuple, string) (Explanation, bool)

	stateMu sync.Mutex
	state   *model.State
	stateAt time.Time
}

// Capture captures packets in a namespace, correlates them into connections and reports
// findings as they are made, calling emit for every event (serialised). It returns at the end
// of the capture: when ctx ends, after Duration or Count, or when Done says so. Without
// CAP_NET_RAW it returns a *kernel.CapabilityError.
func Capture(ctx context.Context, opts CaptureOptions, emit func(Event) error) (*CaptureSummary, error) {
	capt, err := kernel.OpenCapture(opts.Namespace, kernel.CaptureConfig{
		Ifaces: opts.Ifaces, Filter: opts.Filter, SnapLen: opts.SnapLen, BufferSize: opts.BufferSize,
	})
	if err != nil {
		return nil, err
	}
	defer capt.Close()
	s := &session{opts: opts, emit: emit, dec: newDecoder(), hostReady: make(chan struct{})}
	defer s.hostDone()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if opts.Duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	s.stop, s.ctx = cancel, ctx
	// The kernel's word is attached while the host's state is read (each takes a good part of
	// a second on a busy machine); the capture is ready once both rings and watchers are.
	kwStarted := make(chan struct{})
	go func() {
		if !opts.NoKernelDrops {
			s.startKernelWord()
		}
		close(kwStarted)
		if opts.Ready != nil {
			opts.Ready()
		}
	}()
	stopKernelWord := func() {
		<-kwStarted
		if s.kw != nil {
			// The drops and rule steps still on their way are read before the last flush.
			s.kw.stop(s)
		}
	}
	defer stopKernelWord()

	cfg := CorrelateConfig{ForwardWait: opts.ForwardWait, ReplyWait: opts.ReplyWait}
	// The host's state is also read for the findings made after the capture ends.
	s.hostConfig(context.WithoutCancel(ctx), &cfg)
	s.mu.Lock()
	s.explain = cfg.Explain
	s.mu.Unlock()
	s.hostDone()
	complete := cfg.Complete
	cfg.Complete = func(f *Finding) {
		if complete != nil {
			complete(f)
		}
		s.kernelEvidence(f)
	}
	if !opts.NoConntrack {
		s.conntrackConfig(&cfg)
	}
	if s.ct != nil {
		defer s.ct.Close()
	}
	s.corr = NewCorrelator(cfg)
	ifaces := capt.Interfaces()
	if opts.Pcap != nil {
		if s.pcap, err = newPcapWriter(opts.Pcap, ifaces, opts.Filter.String(), opts.SnapLen); err != nil {
			return nil, err
		}
	}

	var wg sync.WaitGroup
	wg.Go(func() { s.tick(ctx) })
	if s.ct != nil {
		wg.Go(func() { s.watch(ctx) })
	}
	err = capt.Run(ctx, s.packet)
	cancel()
	wg.Wait()
	stopKernelWord()
	// Everything still buffered is in order now, and the findings due are made.
	s.mu.Lock()
	s.flush(time.Now().Add(time.Hour))
	if !s.ended {
		s.findings(s.corr.Tick(time.Now()))
	}
	s.mu.Unlock()
	if err == nil {
		err = s.err
	}

	sum := &CaptureSummary{Interfaces: ifaces, Filter: opts.Filter.String(), Packets: s.count, ConntrackEventsLost: s.lost}
	st, serr := capt.Stats()
	sum.Kernel = st
	if s.pcap != nil {
		if perr := s.pcap.close(st); err == nil {
			err = perr
		}
	}
	if err == nil {
		err = serr
	}
	if cs, cerr := kernel.ReadConntrackStats(opts.Namespace); cerr == nil {
		sum.Conntrack = &cs
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sum.Conns = s.corr.Conns()
	sum.Findings = s.corr.Findings()
	sum.Counts = s.corr.Counts()
	sum.Notices = s.notices
	if s.kw != nil {
		s.kw.summary(sum)
	}
	if sum.Findings == nil {
		sum.Findings = []Finding{}
	}
	return sum, err
}

// hostDone says that the host's state and the model are at hand, or will not be.
func (s *session) hostDone() { s.hostOnce.Do(func() { close(s.hostReady) }) }

// notice reports something the user should know about the capture itself.
func (s *session) notice(msg string) {
	s.notices = append(s.notices, msg)
	s.send(Event{Type: EventNotice, Time: time.Now(), Notice: msg})
}

// send emits an event; the first emit error stops the capture. Called with s.mu held.
func (s *session) send(ev Event) {
	if s.err != nil {
		return
	}
	if err := s.emit(ev); err != nil {
		s.err = err
		s.stop()
	}
}

func (s *session) findings(fs []Finding) {
	for i := range fs {
		s.send(Event{Type: EventFinding, Time: fs[i].Time, Finding: &fs[i]})
	}
}

// hostConfig gives the correlator what it needs to know about the host: its addresses, its
// bridges, and the trace engine to explain packets that were not forwarded.
func (s *session) hostConfig(ctx context.Context, cfg *CorrelateConfig) {
	st, err := s.hostState(ctx)
	if err != nil {
		s.lockedNotice(fmt.Sprintf("reading the host's state failed, so packets that are not forwarded are not reported: %v", err))
		return
	}
	local := map[netip.Addr]bool{}
	l3 := map[string]string{}
	for _, l := range st.Links {
		for _, a := range l.Addrs {
			local[a.Prefix.Addr()] = true
		}
		if m := st.LinkByName(l.Master); m != nil && m.Kind == "bridge" {
			l3[l.Name] = m.Name
		}
	}
	cfg.Local = func(a netip.Addr) bool { return local[a] || a.IsLoopback() }
	cfg.L3 = func(iface string) string {
		if m, ok := l3[iface]; ok {
			return m
		}
		return iface
	}
	cfg.Explain = func(t kernel.ConntrackTuple, iif string) (Explanation, bool) {
		// The state is read again: what is being diagnosed may just have been changed.
		st, err := s.hostState(ctx)
		if err != nil {
			return Explanation{}, false
		}
		return ExplainWithTrace(st, t, iif)
	}
	cfg.Complete = func(f *Finding) {
		st, err := s.hostState(ctx)
		if err != nil {
			return // the fix made from the packets stands
		}
		CompleteFix(st, f)
	}
}

// hostState reads the namespace's state, at most once a second.
func (s *session) hostState(ctx context.Context) (*model.State, error) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.state != nil && time.Since(s.stateAt) < time.Second {
		return s.state, nil
	}
	st, err := kernel.Read(ctx, s.opts.Namespace)
	if err != nil {
		return nil, err
	}
	s.state, s.stateAt = st, time.Now()
	return st, nil
}

// conntrackConfig connects to conntrack for lookups; without it, packets are tied together by
// their own tuples only and NATed legs stay separate connections.
func (s *session) conntrackConfig(cfg *CorrelateConfig) {
	ct, err := kernel.OpenConntrack(s.opts.Namespace)
	if err != nil {
		s.lockedNotice(fmt.Sprintf("conntrack is not available, so the two sides of a NAT are not tied together: %v", err))
		return
	}
	s.ct = ct
	failed := false
	cfg.Lookup = func(t kernel.ConntrackTuple) (*kernel.ConntrackEntry, bool) {
		if failed {
			return nil, false
		}
		e, err := ct.Get(t)
		if errors.Is(err, kernel.ErrConntrackNotFound) {
			return nil, false
		}
		if err != nil {
			failed = true
			s.notice(fmt.Sprintf("conntrack lookups failed, so the two sides of a NAT are not tied together: %v", err))
			return nil, false
		}
		return &e, true
	}
}

// reorderDelay is how long packets wait to be put in timestamp order. The two rings (received
// and sent packets) hand their packets over block by block, a block at the latest 20 ms after
// its first packet, so a packet sent before a received one may be read after it.
const reorderDelay = 100 * time.Millisecond

// pendingPacket is a packet waiting in the reorder buffer.
type pendingPacket struct {
	raw     kernel.Packet // for the pcap file; Data is a copy
	p       Packet
	decoded bool
}

// fifo is a queue of packets of one ring, which come in timestamp order.
type fifo struct {
	items []pendingPacket
	head  int
}

func (q *fifo) push(p pendingPacket) { q.items = append(q.items, p) }

func (q *fifo) peek() *pendingPacket {
	if q.head < len(q.items) {
		return &q.items[q.head]
	}
	return nil
}

func (q *fifo) pop() pendingPacket {
	p := q.items[q.head]
	q.items[q.head] = pendingPacket{}
	q.head++
	switch {
	case q.head == len(q.items):
		q.items, q.head = q.items[:0], 0
	case q.head > 4096 && 2*q.head > len(q.items):
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return p
}

// reorder merges the packets of the two rings (received and sent) into timestamp order.
type reorder [2]fifo

func (r *reorder) push(p pendingPacket) {
	i := 0
	if p.raw.Dir == kernel.Out {
		i = 1
	}
	r[i].push(p)
}

// next returns the queue whose first packet is the earliest, or nil when both are empty.
func (r *reorder) next() *fifo {
	a, b := r[0].peek(), r[1].peek()
	switch {
	case a == nil && b == nil:
		return nil
	case b == nil || a != nil && !a.raw.Time.After(b.raw.Time):
		return &r[0]
	}
	return &r[1]
}

// packet takes one captured packet (capture calls are serialised): it is decoded now, while
// its bytes are in the ring, and handled once it is in timestamp order.
func (s *session) packet(kp *kernel.Packet) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	pp := pendingPacket{raw: *kp}
	pp.raw.Data = nil
	if s.pcap != nil {
		pp.raw.Data = append([]byte(nil), kp.Data...)
	}
	pp.decoded = s.dec.decode(kp, &pp.p)
	if pp.decoded || s.pcap != nil {
		s.order.push(pp)
	}
	s.flush(time.Now().Add(-reorderDelay))
	if s.err != nil {
		return s.err
	}
	if s.ended {
		return kernel.ErrStopCapture
	}
	return nil
}

// flush handles the buffered packets captured up to a time, in timestamp order, then the
// kernel's word on them. Called with s.mu held.
func (s *session) flush(upTo time.Time) {
	s.flushPackets(upTo)
	if !s.ended {
		s.releaseKernel(upTo)
	}
}

func (s *session) flushPackets(upTo time.Time) {
	for !s.ended && s.err == nil {
		q := s.order.next()
		if q == nil || q.peek().raw.Time.After(upTo) {
			return
		}
		pp := q.pop()
		if s.pcap != nil {
			if err := s.pcap.write(&pp.raw); err != nil {
				s.err = err
				s.stop()
				return
			}
		}
		if !pp.decoded {
			continue
		}
		p := &pp.p
		s.count++
		fs := s.corr.Packet(p)
		if !s.opts.NoPackets {
			s.send(Event{Type: EventPacket, Time: p.Time, Packet: p})
		}
		s.findings(fs)
		if s.opts.Count > 0 && s.count >= s.opts.Count || s.done(p.Time) {
			s.ended = true
			s.stop()
		}
	}
}

// done asks Done whether the capture has seen enough; not before the kernel's events it holds
// back (a drop waiting for the model or for its rule step, a bounded wait) are released, so
// that the finding they make is not lost. Called with s.mu held.
func (s *session) done(now time.Time) bool {
	return s.opts.Done != nil && s.opts.Done(s.corr, now) && !s.kernelWaiting()
}

// tick hands over the packets that are in order and makes the findings that are due, twenty
// times a second.
func (s *session) tick(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			s.flush(now.Add(-reorderDelay))
			if !s.ended {
				s.findings(s.corr.Tick(now))
				if s.done(now) {
					s.ended = true
					s.stop()
				}
			}
			s.mu.Unlock()
		}
	}
}

// watch feeds conntrack events to the correlator.
func (s *session) watch(ctx context.Context) {
	err := kernel.WatchConntrack(ctx, s.opts.Namespace, nil, func(ev kernel.ConntrackEvent) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if ev.Type == kernel.EventLost {
			s.lost += ev.Lost
			return nil
		}
		fs, conn := s.corr.conntrackEvent(ev.Entry, ev.Time)
		if conn != 0 {
			s.send(Event{Type: EventConntrack, Time: ev.Time, Conntrack: &ev, Conn: conn})
			s.watchConn(&ev.Entry)
		}
		s.findings(fs)
		return nil
	})
	if err != nil && ctx.Err() == nil {
		s.mu.Lock()
		s.notice(fmt.Sprintf("watching conntrack events stopped: %v", err))
		s.mu.Unlock()
	}
}

// conntrackEvent links an entry and says which connection it belongs to (0: none yet).
func (c *Correlator) conntrackEvent(e kernel.ConntrackEntry, now time.Time) ([]Finding, int) {
	fs := c.link(&e, now)
	if cn := c.conns[canon(e.Orig)]; cn != nil {
		return fs, cn.id
	}
	return fs, 0
}
