// Package nftrace names the netfilter rules that see a watched flow's packets: it marks the
// flow for nf_tables tracing from a temporary table and reports the kernel's trace events.
//
// The table, inet roundtrip_trace_PID_START_SEQ, has a chain on prerouting and one on
// output at priority raw - 1 whose rules set `meta nftrace 1` for the flows (both
// directions), the first TraceBurst packets of each and then TraceRate a second (a flood of
// dropped packets is not a flood of traces); every nf_tables chain the packet then meets, iptables-nft's included, emits
// NFT_MSG_TRACE events on NFNLGRP_NFTRACE, decoded here into Steps. The table is owned by its
// netlink socket (NFT_TABLE_F_OWNER, Linux 5.12), so the kernel removes it when the process
// dies however it dies; it is also recorded in STATE_DIR/nftrace/TABLE.json until Close, and
// Cleanup / CleanupRecorded remove tables (and markers) of processes that no longer run.
// Rules of iptables-legacy live outside nf_tables and are not traced (Warnings says so).
package nftrace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel/dropwatch"
)

// Step is one step of a traced packet through the ruleset: a rule that matched (and its
// verdict), a chain's policy, or a return from a chain. The JSON names are those of the
// `{"type":"rule",...}` events (the caller adds type and the connection).
type Step struct {
	Time time.Time `json:"time"` // when roundtrip received it
	// ID is the kernel's trace id: the same for every step of one packet in one hook.
	ID      uint32 `json:"trace_id"`
	Family  string `json:"family"` // "ip", "ip6", "inet", "bridge", ...
	Table   string `json:"table"`
	Chain   string `json:"chain"`
	Handle  uint64 `json:"handle,omitempty"` // the rule's handle; 0 for a policy
	Kind    string `json:"kind"`             // "rule", "policy" or "return"
	Verdict string `json:"verdict"`          // "accept", "drop", "continue", "jump", "goto", "return", "queue", ...
	Target  string `json:"target,omitempty"` // the chain of a jump or goto
	// Rule is the rule's text, when it could be read (nft, and iptables for iptables-nft).
	Rule    RuleText `json:"rule,omitzero"`
	Iif     int      `json:"-"`
	Oif     int      `json:"-"`
	IifName string   `json:"iif,omitempty"`
	OifName string   `json:"oif,omitempty"`
	Mark    uint32   `json:"mark,omitempty"`
	// Conntrack is the id of the packet's conntrack entry (as in `conntrack -L -o id`), when
	// the kernel reports it (Linux 6.16 and later) and the packet has one.
	Conntrack   uint32           `json:"conntrack_id,omitempty"`
	CtDirection string           `json:"ct_direction,omitempty"` // "original" or "reply"
	Packet      dropwatch.Packet `json:"packet"`
}

// String is the step on one line: "ip filter FORWARD handle 2: drop (-A FORWARD ... -j
// DROP) tcp 10.0.0.1:5000 > 10.0.0.2:80 [S] len 60".
func (s Step) String() string {
	where := s.Family + " " + s.Table + " " + s.Chain
	if s.Handle != 0 {
		where += fmt.Sprintf(" handle %d", s.Handle)
	} else {
		where += " " + s.Kind
	}
	v := s.Verdict
	if s.Target != "" {
		v += " " + s.Target
	}
	if text := s.Rule.String(); text != "" {
		v += " (" + text + ")"
	}
	return fmt.Sprintf("%s: %s %s", where, v, s.Packet)
}

// ErrUnsupported is wrapped by the error of Start where rule tracing cannot run.
var ErrUnsupported = errors.New("netfilter rule tracing unavailable")

// UnsupportedError says in one line why rules cannot be traced here, and what still works.
type UnsupportedError struct {
	Why   string
	Cause error
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s: %s; drop reasons and diagnosis go on without rule names", ErrUnsupported, e.Why)
}

// Unwrap returns ErrUnsupported and the cause, for errors.Is.
func (e *UnsupportedError) Unwrap() []error { return []error{ErrUnsupported, e.Cause} }

// Options says what to trace.
type Options struct {
	// Netns is the namespace, by its name in `ip netns list`; "" is roundtrip's own.
	Netns string
	// Flows are traced in both directions; more can be added with AddFlow.
	Flows []dropwatch.Flow
	// Buffer is how many steps wait in Events for the reader; 1024 when 0.
	Buffer int
}

// Tracer marks flows for tracing and reports their steps until closed.
type Tracer struct {
	ns       string
	table    string
	ctl      *netlink.Conn // owns the trace table
	mon      *netlink.Conn // NFNLGRP_NFTRACE
	texts    *ruleTexts
	events   chan Step
	warnings []string
	lost     atomic.Uint64
	links    sync.Map // ifindex → name

	mu     sync.Mutex // ctl
	closed bool
	once   sync.Once
	done   chan struct{}
	stop   chan struct{}
	err    error
}

// Start creates the trace table in the namespace (recording it in the state directory's
// nftrace/ markers until Close removes it), marks the flows for tracing and starts
// reporting their steps. It stops when ctx ends or Close is called. Where nf_tables is
// missing or not permitted, the error wraps ErrUnsupported.
func Start(ctx context.Context, o Options) (*Tracer, error) {
	path, err := dropwatch.NetnsPath(o.Netns)
	if err != nil {
		return nil, fmt.Errorf("tracing rules: %w", err)
	}
	for _, f := range o.Flows {
		if _, err := flowMatches(f); err != nil {
			return nil, fmt.Errorf("tracing rules: %w", err)
		}
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("tracing rules: opening namespace %q: %w (is it listed by `ip netns list`?)", o.Netns, err)
	}
	defer h.Close()
	t := &Tracer{ns: o.Netns, texts: newRuleTexts(o.Netns), done: make(chan struct{}), stop: make(chan struct{})}
	if t.table, err = newTableName(); err != nil {
		return nil, fmt.Errorf("tracing rules: naming the trace table: %w", err)
	}
	// The current namespace is not entered again: setns needs CAP_SYS_ADMIN, which rule
	// tracing in roundtrip's own namespace does not.
	cfg := &netlink.Config{NetNS: int(h)}
	if o.Netns == "" {
		cfg = nil
	}
	// Listen first, so that no step of the first packets is missed.
	if t.mon, err = netlink.Dial(unix.NETLINK_NETFILTER, cfg); err != nil {
		return nil, unsupportedOrErr(err)
	}
	if err := t.mon.JoinGroup(unix.NFNLGRP_NFTRACE); err != nil {
		t.mon.Close()
		return nil, unsupportedOrErr(fmt.Errorf("subscribing to nf_tables traces: %w", err))
	}
	setReadBuffer(t.mon, traceReadBuffer)
	if t.ctl, err = netlink.Dial(unix.NETLINK_NETFILTER, cfg); err != nil {
		t.mon.Close()
		return nil, unsupportedOrErr(err)
	}
	if err := t.create(o); err != nil {
		t.ctl.Close()
		t.mon.Close()
		return nil, err
	}
	t.warnings = legacyWarnings(o.Netns)
	buf := o.Buffer
	if buf <= 0 {
		buf = 1024
	}
	t.events = make(chan Step, buf)
	go t.read()
	go func() {
		select {
		case <-ctx.Done():
			t.Close()
		case <-t.stop:
		}
	}()
	return t, nil
}

// traceReadBuffer is the trace socket's receive buffer. Every chain a traced packet meets
// sends a message of a few hundred bytes; while the reader waits for a CPU the kernel queues
// them here, and past it drops them (ENOBUFS, counted in Lost).
const traceReadBuffer = 4 << 20

// setReadBuffer sets a socket's receive buffer beyond net.core.rmem_max where the process may
// (SO_RCVBUFFORCE, CAP_NET_ADMIN, which tracing needs anyway), else up to rmem_max.
func setReadBuffer(c *netlink.Conn, n int) {
	if rc, err := c.SyscallConn(); err == nil {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		}); err == nil && serr == nil {
			return
		}
	}
	_ = c.SetReadBuffer(n) // best effort: the default still works, with more ENOBUFS under load
}

// create makes the table, its chains and the flows' rules in one transaction, recorded in a
// marker first.
func (t *Tracer) create(o Options) error {
	if _, err := writeMarker(Marker{Netns: o.Netns, Family: "inet", Table: t.table, PID: os.Getpid(), Created: time.Now().UTC()}); err != nil {
		return fmt.Errorf("tracing rules: %w", err)
	}
	var flows []netlink.Message
	for _, f := range o.Flows {
		fo, err := flowOps(t.table, f)
		if err != nil {
			removeMarker(t.table)
			return fmt.Errorf("tracing rules: %w", err)
		}
		flows = append(flows, fo...)
	}
	try := func(owner bool) error {
		ops, err := tableOps(t.table, owner)
		if err != nil {
			return err
		}
		return transact(t.ctl, append(ops, flows...))
	}
	err := try(ownerFlag)
	if err != nil && ownerFlag && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)) {
		// A kernel before 5.12 knows no owner tables: the marker is what cleans up there.
		err = try(false)
	}
	if err != nil {
		removeMarker(t.table)
		return unsupportedOrErr(fmt.Errorf("creating trace table inet %s: %w", t.table, err))
	}
	return nil
}

// unsupportedOrErr classifies an nf_tables failure: missing or forbidden is unsupported.
func unsupportedOrErr(err error) error {
	switch {
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return &UnsupportedError{Why: "tracing rules needs root (CAP_NET_ADMIN)", Cause: err}
	case errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP):
		// No nfnetlink socket, or no nf_tables subsystem behind it.
		return &UnsupportedError{Why: "rule tracing needs nf_tables, which this kernel lacks (iptables-legacy only)", Cause: err}
	}
	return err
}

// Table is the name of the temporary trace table (family inet).
func (t *Tracer) Table() string { return t.table }

// Warnings says what the trace cannot see, in the operator's words: iptables-legacy rules
// in the namespace, which live outside nf_tables.
func (t *Tracer) Warnings() []string { return t.warnings }

// Events delivers the steps of traced packets until the tracer is closed, then is closed.
// The trace table's own rule is left out.
func (t *Tracer) Events() <-chan Step { return t.events }

// Lost counts trace messages the kernel could not deliver (the socket's buffer overran).
func (t *Tracer) Lost() uint64 { return t.lost.Load() }

// Err returns why the tracer stopped on its own, if it did.
func (t *Tracer) Err() error {
	select {
	case <-t.done:
		return t.err
	default:
		return nil
	}
}

// AddFlow marks one more flow for tracing (both directions), for example a NAT tuple of the
// watched connection that conntrack reported.
func (t *Tracer) AddFlow(f dropwatch.Flow) error {
	ops, err := flowOps(t.table, f)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("adding a flow to trace: the rule tracer is closed")
	}
	if err := transact(t.ctl, ops); err != nil {
		return fmt.Errorf("adding flow %s to trace table inet %s: %w", f, t.table, err)
	}
	return nil
}

// Close deletes the trace table and its marker and stops the events.
func (t *Tracer) Close() error {
	var err error
	t.once.Do(func() {
		t.mu.Lock()
		t.closed = true
		del, derr := delTableOp(t.table)
		if derr == nil {
			derr = transact(t.ctl, []netlink.Message{del})
		}
		if derr != nil && !errors.Is(derr, unix.ENOENT) {
			err = fmt.Errorf("removing trace table inet %s: %w", t.table, derr)
		}
		// Closing the owner socket would remove an owned table anyway.
		t.ctl.Close()
		t.mu.Unlock()
		if err == nil {
			err = removeMarker(t.table)
		}
		close(t.stop)
		t.mon.Close()
		<-t.done
	})
	return err
}

func (t *Tracer) read() {
	defer close(t.done)
	defer close(t.events)
	for {
		msgs, err := t.mon.Receive()
		if err != nil {
			select {
			case <-t.stop:
				return
			default:
			}
			if errors.Is(err, unix.ENOBUFS) {
				t.lost.Add(1)
				continue
			}
			t.err = fmt.Errorf("reading nf_tables traces: %w", err)
			return
		}
		now := time.Now()
		for _, m := range msgs {
			if m.Header.Type != nftType(unix.NFT_MSG_TRACE) {
				continue
			}
			tr, err := decodeTrace(m.Data)
			if err != nil || tr.table == t.table {
				continue
			}
			s := t.step(tr, now)
			select {
			case t.events <- s:
			case <-t.stop:
				return
			}
		}
	}
}

func (t *Tracer) step(tr trace, now time.Time) Step {
	s := Step{
		Time: now, ID: tr.id, Family: familyName(tr.family), Table: tr.table, Chain: tr.chain,
		Handle: tr.handle, Kind: typeName(tr.typ), Target: tr.target,
		Iif: int(tr.iif), Oif: int(tr.oif), Mark: tr.mark,
		Packet: decodePacket(tr.network, tr.transport),
	}
	switch {
	case tr.hasVerdict:
		s.Verdict = verdictName(tr.verdict)
	case tr.hasPolicy:
		s.Verdict = verdictName(int32(tr.policy))
	}
	if tr.hasCt {
		s.Conntrack = tr.ctID
		s.CtDirection = "original"
		if tr.ctDirection == 1 {
			s.CtDirection = "reply"
		}
	}
	s.IifName, s.OifName = t.linkName(s.Iif), t.linkName(s.Oif)
	if s.Kind == "rule" {
		s.Rule = t.texts.lookup(s.Family, s.Table, s.Chain, s.Handle)
	}
	return s
}

func (t *Tracer) linkName(ifindex int) string {
	if ifindex == 0 {
		return ""
	}
	if n, ok := t.links.Load(ifindex); ok {
		return n.(string)
	}
	n := dropwatch.LinkName(t.ns, ifindex)
	if n != "" {
		t.links.Store(ifindex, n)
	}
	return n
}

// legacyWarnings reports iptables-legacy tables in the namespace: their rules run outside
// nf_tables and never show in a trace.
func legacyWarnings(ns string) []string {
	var w []string
	for _, f := range []struct{ file, tool string }{{"ip_tables_names", "iptables"}, {"ip6_tables_names", "ip6tables"}} {
		names, err := readNetFile(ns, f.file)
		if err != nil || len(names) == 0 {
			continue
		}
		w = append(w, fmt.Sprintf("%s-legacy tables (%s) are not traced: rule tracing needs nf_tables (iptables-nft); their drops still show as NETFILTER_DROP",
			f.tool, strings.Join(names, ", ")))
	}
	return w
}
