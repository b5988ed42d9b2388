// Package diagnose watches flows live: it captures their packets on every interface, ties them
// together across NAT with conntrack, and says what went wrong, with the packets as evidence.
package diagnose

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/kernel"
	"roundtrip/engine/model"
	"roundtrip/engine/quote"
	"roundtrip/engine/trace"
)

// DiagnoseOptions names the flow to diagnose and where.
type DiagnoseOptions struct {
	Namespace kernel.Namespace
	// Request is the flow as trace takes it (a zero source port matches any client port).
	Request trace.Request
	// Timeout ends the watch when the flow neither completes nor fails (default 10 s).
	Timeout time.Duration
	// Ifaces limits the capture (empty: every interface).
	Ifaces []string
	// Pcap, when set, receives the captured packets as pcapng.
	Pcap io.Writer
	// ForwardWait and ReplyWait tune the correlator (0: defaults).
	ForwardWait, ReplyWait time.Duration
	// State is the namespace's state to trace with; nil reads it from the kernel.
	State *model.State
	// Ready, when set, is called once the capture keeps packets: a client started after it is
	// seen from its first packet.
	Ready func()
}

// Outcomes of a diagnosis.
const (
	OutcomeCompleted  = "completed"  // the flow went through this host both ways
	OutcomeFailed     = "failed"     // live findings say what broke it
	OutcomeIncomplete = "incomplete" // packets seen, not completed, no finding
	OutcomeNotSeen    = "not-seen"   // no packet of the flow was seen
	OutcomeModelOnly  = "model-only" // no live capture possible: the trace's word only
	verdictGrace      = 300 * time.Millisecond
)

// Verdict is the end of a diagnosis: what the model predicts, what the wire showed, and the
// conclusion.
type Verdict struct {
	Outcome string `json:"outcome"`
	Summary string `json:"summary"`
	// Trace is the model's view of the flow (trace.Run).
	Trace *trace.Result `json:"trace"`
	// Capture is what the live capture saw; nil when it was not possible (see Notice).
	Capture *CaptureSummary `json:"capture"`
	// Conntrack holds the flow's conntrack entries at the end: the NAT tuples.
	Conntrack []kernel.ConntrackEntry `json:"conntrack"`
	// Notice says why the live part was missing, when it was.
	Notice string `json:"notice,omitempty"`
}

// Errors counts the problems of severity error: live ones, or the model's when the flow was
// not seen live.
func (v *Verdict) Errors() int {
	switch v.Outcome {
	case OutcomeFailed:
		return v.Capture.Errors()
	case OutcomeNotSeen, OutcomeModelOnly, OutcomeIncomplete:
		return v.Trace.Errors()
	}
	return 0
}

// matcher selects the connections of the requested flow: the client (when given) and the
// server the client spoke to.
func matcher(req trace.Request) func(kernel.ConntrackTuple) bool {
	return func(t kernel.ConntrackTuple) bool {
		if int(t.Proto) != req.Proto {
			return false
		}
		ports := hasPortsProto(t.Proto)
		if a := req.Src.Addr(); a.IsValid() && !a.IsUnspecified() && t.Src.Addr() != a {
			return false
		}
		if ports && req.Src.Port() != 0 && t.Src.Port() != req.Src.Port() {
			return false
		}
		if t.Dst.Addr() != req.Dst.Addr() {
			return false
		}
		return !ports || req.Dst.Port() == 0 || t.Dst.Port() == req.Dst.Port()
	}
}

// Diagnose traces a flow with the model, then watches it live (capture and conntrack) until it
// completes, fails or the timeout passes, and ends with a verdict. Events of the watch are
// passed to emit as they happen. Without the capabilities to capture, the verdict rests on the
// model alone and says so.
func Diagnose(ctx context.Context, opts DiagnoseOptions, emit func(Event) error) (*Verdict, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	st := opts.State
	if st == nil {
		var err error
		if st, err = kernel.Read(ctx, opts.Namespace); err != nil {
			return nil, err
		}
	}
	req := opts.Request
	tr := trace.Run(st, fib.New(st), req)
	v := &Verdict{Trace: tr, Conntrack: []kernel.ConntrackEntry{}}

	// Capture the flow as the client sends it and as the model says it leaves after NAT, in
	// both directions.
	filter := FlowCaptureFilter(req, tr, false)
	match := matcher(req)
	var doneAt time.Time
	sum, err := Capture(ctx, CaptureOptions{
		Namespace: opts.Namespace, Ifaces: opts.Ifaces, Filter: filter, Duration: opts.Timeout,
		Pcap: opts.Pcap, ForwardWait: opts.ForwardWait, ReplyWait: opts.ReplyWait, Ready: opts.Ready,
		Done: func(c *Correlator, now time.Time) bool {
			completed, failed := c.state(match)
			if (completed || failed) && doneAt.IsZero() {
				// A little longer, for the packets and findings that follow.
				doneAt = now.Add(verdictGrace)
				if failed {
					doneAt = now.Add(time.Second)
				}
			}
			return !doneAt.IsZero() && now.After(doneAt)
		},
	}, emit)
	var ce *kernel.CapabilityError
	switch {
	case errors.As(err, &ce), errors.Is(err, kernel.ErrCapture32):
		// Without a capture (no CAP_NET_RAW, a 32-bit build) the model's trace still answers.
		v.Outcome, v.Notice = OutcomeModelOnly, err.Error()
		v.Summary = "no live capture: " + err.Error() + "; the model says: " + traceSummary(tr)
		return v, nil
	case err != nil:
		return nil, err
	}
	v.Capture = sum
	v.Conntrack = flowEntries(ctx, opts.Namespace, req, seenFlows(sum, match))
	v.conclude(match, opts.Timeout)
	return v, nil
}

// FlowCaptureFilter selects a traced flow's packets: as the client sends them and as each leg
// leaves after NAT, in both directions. With anyClientPort the client's port is left out: a
// client picks a new port for every connection, so a port given for the trace would select
// one connection that may never be made again.
func FlowCaptureFilter(req trace.Request, tr *trace.Result, anyClientPort bool) *kernel.CaptureFilter {
	client := func(ap netip.AddrPort) netip.AddrPort {
		ap = unspecifiedAsAny(ap)
		if anyClientPort {
			return netip.AddrPortFrom(ap.Addr(), 0)
		}
		return ap
	}
	proto := uint8(req.Proto)
	filter := kernel.FlowFilter(proto, client(req.Src), req.Dst)
	// A flow is added in both directions: one that is already there either way (a leg
	// without NAT is the request itself) only makes the kernel's program longer.
	seen := map[[2]netip.AddrPort]bool{{client(req.Src), req.Dst}: true}
	add := func(src, dst netip.AddrPort) {
		if !seen[[2]netip.AddrPort{src, dst}] && !seen[[2]netip.AddrPort{dst, src}] {
			seen[[2]netip.AddrPort{src, dst}] = true
			filter.AddFlow(proto, src, dst)
		}
	}
	if tr == nil {
		return filter
	}
	// The client is the forward leg's source and the reply leg's destination.
	if l := tr.Forward; l.Packet.Dst.Addr().IsValid() {
		add(client(l.Packet.Src), unspecifiedAsAny(l.Packet.Dst))
	}
	if l := tr.Reply; l != nil && l.Packet.Dst.Addr().IsValid() {
		add(unspecifiedAsAny(l.Packet.Src), client(l.Packet.Dst))
	}
	return filter
}

func unspecifiedAsAny(ap netip.AddrPort) netip.AddrPort {
	if ap.Addr().IsUnspecified() {
		return netip.AddrPortFrom(netip.Addr{}, ap.Port())
	}
	return ap
}

// state reports whether a connection of the flow completed, and whether one has an error
// finding.
func (c *Correlator) state(match func(kernel.ConntrackTuple) bool) (completed, failed bool) {
	for _, cn := range c.order {
		if !match(cn.flow()) {
			continue
		}
		if cn.completed(c) {
			completed = true
		}
		for _, f := range c.findings {
			if f.Conn == cn.id && f.Severity == finding.SeverityError {
				failed = true
			}
		}
	}
	return completed, failed
}

// seenFlows narrows a flow match to the connections the capture saw, when it saw any: entries
// of earlier attempts stay out of the verdict.
func seenFlows(sum *CaptureSummary, match func(kernel.ConntrackTuple) bool) func(kernel.ConntrackTuple) bool {
	seen := map[kernel.ConntrackTuple]bool{}
	for _, c := range sum.Conns {
		if match(c.Flow) {
			seen[c.Flow] = true
		}
	}
	if len(seen) == 0 {
		return match
	}
	return func(t kernel.ConntrackTuple) bool { return seen[t] }
}

// flowEntries lists the conntrack entries of the flow (nil when conntrack cannot be read).
func flowEntries(ctx context.Context, ns kernel.Namespace, req trace.Request, match func(kernel.ConntrackTuple) bool) []kernel.ConntrackEntry {
	out := []kernel.ConntrackEntry{}
	c, err := kernel.OpenConntrack(ns)
	if err != nil {
		return out
	}
	defer c.Close()
	_ = c.Dump(ctx, &kernel.ConntrackFilter{Proto: uint8(req.Proto), Addr: req.Dst.Addr()}, func(e *kernel.ConntrackEntry) error {
		if match(e.Orig) {
			out = append(out, *e)
		}
		return nil
	})
	return out
}

func (v *Verdict) conclude(match func(kernel.ConntrackTuple) bool, timeout time.Duration) {
	var conns []ConnSummary
	for _, cs := range v.Capture.Conns {
		if match(cs.Flow) {
			conns = append(conns, cs)
		}
	}
	var errs, kernelErrs []string
	for _, f := range v.Capture.Findings {
		if f.Severity != finding.SeverityError || !match(f.Flow) {
			continue
		}
		// The kernel's own word on a drop goes first: it is what happened, the rest is
		// inferred from the packets.
		if f.ID == FindingKernelDrop {
			kernelErrs = append(kernelErrs, f.ID+": "+f.Summary+kernelCause(&f))
		} else {
			errs = append(errs, f.ID+": "+f.Summary)
		}
	}
	errs = append(kernelErrs, errs...)
	completed := false
	for _, cs := range conns {
		completed = completed || cs.Completed
	}
	switch {
	case len(errs) > 0:
		v.Outcome = OutcomeFailed
		v.Summary = "the flow is broken: " + strings.Join(errs, "; ")
	case completed:
		v.Outcome = OutcomeCompleted
		v.Summary = "the flow completed through this host"
		for _, cs := range conns {
			if cs.Completed {
				v.Summary += ": " + strings.Join(cs.Path, ", ")
				break
			}
		}
		if f := v.modelDropsWhatPassed(conns); f != nil {
			v.Capture.Findings = append(v.Capture.Findings, *f)
			v.Capture.Counts[f.Severity]++
			v.Summary += "; " + f.ID + ": " + f.Summary
		}
	case len(conns) > 0:
		v.Outcome = OutcomeIncomplete
		v.Summary = fmt.Sprintf("packets of the flow were seen but it did not complete within %s and nothing explains it on the wire; the model says: %s", timeout, traceSummary(v.Trace))
	default:
		v.Outcome = OutcomeNotSeen
		v.Summary = fmt.Sprintf("no packet of the flow was seen within %s (is the client sending? is it reaching this host?); the model says: %s", timeout, traceSummary(v.Trace))
	}
}

// traceSummary is the model's conclusion in a sentence.
func traceSummary(tr *trace.Result) string {
	var errs []string
	for _, f := range tr.Findings {
		if f.Severity == finding.SeverityError {
			errs = append(errs, f.ID+": "+f.Summary)
		}
	}
	if len(errs) == 0 {
		return "the flow should work (forward leg " + tr.Forward.Verdict + ")"
	}
	return strings.Join(errs, "; ")
}

// RenderVerdict writes a verdict for a person (the trace itself is rendered by the caller).
func RenderVerdict(w io.Writer, v *Verdict) {
	if v.Capture != nil {
		RenderSummary(w, v.Capture)
	}
	if len(v.Conntrack) > 0 {
		fmt.Fprintln(w, "conntrack entries of the flow:")
		for i := range v.Conntrack {
			quote.TermFprintf(w, "  %s\n", EntryLine(&v.Conntrack[i]))
		}
	}
	quote.TermFprintf(w, "verdict: %s: %s\n", v.Outcome, v.Summary)
}

// RenderSummary writes the end of a capture: the connections, the kernel's counters and the
// conntrack table's state.
func RenderSummary(w io.Writer, s *CaptureSummary) {
	const maxShown = 50
	if len(s.Conns) > 0 {
		quote.TermFprintf(w, "connections (%d):\n", len(s.Conns))
	}
	for i, c := range s.Conns {
		if i == maxShown {
			quote.TermFprintf(w, "  ... and %d more (--json lists all)\n", len(s.Conns)-maxShown)
			break
		}
		state := "incomplete"
		if c.Completed {
			state = "completed"
		}
		quote.TermFprintf(w, "  conn %d %s: %d packets, %s; path %s\n", c.ID, c.Flow, c.Packets, state, strings.Join(c.Path, ", "))
		if c.Conntrack != nil {
			quote.TermFprintf(w, "    conntrack %s\n", EntryLine(c.Conntrack))
		}
		if len(c.Findings) > 0 {
			quote.TermFprintf(w, "    findings: %s\n", strings.Join(c.Findings, ", "))
		}
	}
	k := s.Kernel
	quote.TermFprintf(w, "captured %d packets on %d interfaces; kernel: %d matched the filter, %d dropped (ring full), %d ring freezes\n",
		s.Packets, len(s.Interfaces), k.KernelPackets, k.KernelDrops, k.QueueFreezes)
	if s.ConntrackEventsLost > 0 {
		quote.TermFprintf(w, "conntrack events lost %d times (socket buffer overrun): correlation may miss NAT links\n", s.ConntrackEventsLost)
	}
	if s.RuleTraceLost > 0 {
		quote.TermFprintf(w, "rule traces lost %d times (socket buffer overrun): a netfilter drop may go without its rule\n", s.RuleTraceLost)
	}
	if s.Conntrack != nil {
		RenderConntrackStats(w, s.Conntrack)
	}
	renderDrops(w, s)
	quote.TermFprintf(w, "findings: %d error(s), %d warning(s)\n", s.Counts[finding.SeverityError], s.Counts[finding.SeverityWarning])
}
