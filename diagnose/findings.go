package diagnose

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"roundtrip/engine/capture"
	"roundtrip/engine/conntrack"
	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/model"
	"roundtrip/engine/quote"
	"roundtrip/engine/trace"
)

// Live finding ids. The ones trace can also make share its ids, so that a script matches one
// name whether the model or the wire found the problem.
const (
	// FindingAsymmetricReturn: the request came in on one NIC and the reply left by another.
	FindingAsymmetricReturn = trace.FindingAsymmetricReturn
	// FindingReplyNotSeen: the request was forwarded and no reply came back through this host.
	FindingReplyNotSeen = "reply-not-seen"
	// FindingReplyBypassesNAT: a reply came from an address the client never spoke to.
	FindingReplyBypassesNAT = trace.FindingReplyBypassesNAT
	// FindingForwardedNotSeen: a packet for another host came in and never went out.
	FindingForwardedNotSeen = "forwarded-not-seen"
	// FindingResetByPeer: a TCP reset ended the connection.
	FindingResetByPeer = "reset-by-peer"
	// FindingRetransmits: the same segment was sent again: what it answers never arrived.
	FindingRetransmits = "retransmits"
)

// Finding is a problem seen on the wire, with the packets that show it.
type Finding struct {
	finding.Finding
	Time time.Time `json:"time"`
	// Conn is the correlator's id of the connection, as in packet events.
	Conn int `json:"conn"`
	// Flow is the connection as the client opened it.
	Flow conntrack.Tuple `json:"flow"`
	// Ingress and Egress are the interfaces the finding is about (asymmetric-return: where
	// the request came in, where the reply left; forwarded-not-seen: where the packet came in).
	Ingress string `json:"ingress,omitempty"`
	Egress  string `json:"egress,omitempty"`
	// Cause explains forwarded-not-seen with the trace engine's finding id
	// (forwarding-disabled, rp-filter-drop, filtered, no-route, ...).
	Cause     string           `json:"cause,omitempty"`
	Packets   []Packet         `json:"packets"`
	Conntrack *conntrack.Entry `json:"conntrack,omitempty"`
}

// Render writes the finding for a person.
func (f *Finding) Render(w io.Writer) {
	quote.TermFprintf(w, "FINDING %s (%s) conn %d: %s\n", f.ID, f.Severity, f.Conn, f.Summary)
	if f.Cause != "" {
		quote.TermFprintf(w, "  cause: %s\n", f.Cause)
	}
	for _, e := range f.Evidence {
		quote.TermFprintf(w, "  evidence: %s\n", e)
	}
	if f.Conntrack != nil {
		quote.TermFprintf(w, "  conntrack: %s\n", f.Conntrack)
	}
	for i := range f.Packets {
		quote.TermFprintf(w, "    %s\n", f.Packets[i].String())
	}
	if f.Fix.Summary != "" {
		quote.TermFprintf(w, "  fix: %s\n", f.Fix.Summary)
	}
	if lines := f.Fix.CommandLines("  run: ", "         ", 80); len(lines) > 0 {
		fmt.Fprintln(w, quote.TermLines(strings.Join(lines, "\n")))
		if f.Fix.Missing != "" {
			quote.TermFprintf(w, "       missing: %s\n", f.Fix.Missing)
		}
	}
}

// Explanation is why a packet that came in was not forwarded, as the trace engine sees it.
type Explanation struct {
	Cause    string // a trace finding id: forwarding-disabled, rp-filter-drop, filtered, ...
	Summary  string
	Evidence []string
	Fix      finding.Fix
}

// causeOrder ranks trace findings as causes of a packet that came in and never left: the
// first one the trace made is the one reported.
var causeOrder = []string{
	trace.FindingForwardingDisabled, trace.FindingRPFilterDrop, trace.FindingFiltered,
	trace.FindingNoRoute, trace.FindingBlackhole, trace.FindingUnreachable, trace.FindingProhibit,
	trace.FindingUncertain,
}

// ExplainWithTrace asks the trace engine why a packet arriving on iif with tuple t is not
// forwarded. ok is false when the model finds no reason (it thinks the packet leaves).
func ExplainWithTrace(s *model.State, t conntrack.Tuple, iif string) (Explanation, bool) {
	res := trace.Run(s, fib.New(s), trace.Request{Proto: int(t.Proto), Src: portsOnly(t.Proto, t.Src), Dst: portsOnly(t.Proto, t.Dst), IIF: iif})
	for _, id := range causeOrder {
		if f := res.Finding(id); f != nil {
			return Explanation{Cause: f.ID, Summary: f.Summary, Evidence: f.Evidence, Fix: f.Fix}, true
		}
	}
	return Explanation{}, false
}

// modelTwins are the trace findings that see, in the model, what a live finding saw on the wire.
var modelTwins = map[string][]string{
	FindingAsymmetricReturn: {trace.FindingAsymmetricReturn},
	FindingReplyNotSeen:     {trace.FindingNoReturnRoute, trace.FindingReplyBypassesNAT, trace.FindingForwardingDisabled},
	FindingReplyBypassesNAT: {trace.FindingReplyBypassesNAT},
}

// CompleteFix gives a live finding the trace engine's fix for the same flow when the model sees
// the same problem and suggests the same wizard: the model knows what the packets do not (the
// gateway of an uplink, whether a flow is forwarded and so needs connmark). The trace starts
// where the request came in, so only findings whose first packet is that request qualify; the
// others keep the fix made from the packets, which is already a whole command.
func CompleteFix(st *model.State, f *Finding) {
	if st == nil || f.Fix.Wizard == "" || len(f.Packets) == 0 || f.Ingress == "" {
		return
	}
	if first := f.Packets[0]; first.Role != RoleRequest || first.Dir != capture.In {
		return
	}
	res := trace.Run(st, fib.New(st), trace.Request{Proto: int(f.Flow.Proto), Src: portsOnly(f.Flow.Proto, f.Flow.Src), Dst: portsOnly(f.Flow.Proto, f.Flow.Dst), IIF: f.Ingress})
	for _, id := range modelTwins[f.ID] {
		if tf := res.Finding(id); tf != nil && tf.Fix.Wizard == f.Fix.Wizard && len(tf.Fix.Args) > 0 {
			f.Fix.Args, f.Fix.Missing = slices.Clone(tf.Fix.Args), tf.Fix.Missing
			return
		}
	}
}

// portsOnly drops the ICMP echo id that conntrack tuples carry as ports: trace wants none.
func portsOnly(proto uint8, ap netip.AddrPort) netip.AddrPort {
	if hasPortsProto(proto) {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr(), 0)
}

func hasPortsProto(p uint8) bool {
	return p == unix.IPPROTO_TCP || p == unix.IPPROTO_UDP || p == unix.IPPROTO_SCTP
}
