package diagnose

import (
	"fmt"
	"io"
	"strings"

	"roundtrip/engine/conntrack"
	"roundtrip/engine/inet"
	"roundtrip/engine/quote"
)

// The conntrack table as it is printed: plain values, no kernel access (ListConntrack in
// conntrack.go reads them).

// RenderConntrackStats writes the table's fill level and drop counters.
func RenderConntrackStats(w io.Writer, s *conntrack.Stats) {
	pct := 0.0
	if s.Max > 0 {
		pct = 100 * float64(s.Count) / float64(s.Max)
	}
	quote.TermFprintf(w, "conntrack: %d of %d entries (%.1f%%)", s.Count, s.Max, pct)
	if s.Buckets > 0 {
		quote.TermFprintf(w, ", %d buckets", s.Buckets)
	}
	if s.Full() {
		fmt.Fprint(w, " FULL: new connections are dropped")
	}
	fmt.Fprintln(w)
	if s.Unavailable != "" {
		quote.TermFprintf(w, "  drop counters unavailable: %s\n", s.Unavailable)
		return
	}
	t := s.Total
	quote.TermFprintf(w, "  drops: drop %d, early_drop %d, insert_failed %d, invalid %d, error %d (all CPUs)\n",
		t.Drop, t.EarlyDrop, t.InsertFailed, t.Invalid, t.Error)
}

// EntryLine renders an entry on one line: the original tuple, then the reply tuple, then
// what NAT did and the state.
func EntryLine(e *conntrack.Entry) string {
	var b strings.Builder
	state := e.TCPState
	if state == "" {
		state = "-"
	}
	fmt.Fprintf(&b, "%-5s %-11s %6ds  %s -> %s  reply %s -> %s",
		inet.ProtoName(int(e.Orig.Proto)), state, e.Timeout,
		conntrack.Endpoint(e.Orig.Proto, e.Orig.Src), conntrack.Endpoint(e.Orig.Proto, e.Orig.Dst),
		conntrack.Endpoint(e.Orig.Proto, e.Reply.Src), conntrack.Endpoint(e.Orig.Proto, e.Reply.Dst))
	var nat []string
	if e.DNAT() {
		nat = append(nat, "DNAT")
	}
	if e.SNAT() {
		nat = append(nat, "SNAT")
	}
	if len(nat) > 0 {
		fmt.Fprintf(&b, "  %s", strings.Join(nat, "+"))
	}
	var flags []string
	if e.Unreplied() {
		flags = append(flags, "UNREPLIED")
	}
	if e.Status&conntrack.StatusAssured != 0 {
		flags = append(flags, "ASSURED")
	}
	if len(flags) > 0 {
		fmt.Fprintf(&b, "  [%s]", strings.Join(flags, " "))
	}
	if e.Mark != 0 {
		fmt.Fprintf(&b, "  mark 0x%x", e.Mark)
	}
	if e.Zone != 0 {
		fmt.Fprintf(&b, "  zone %d", e.Zone)
	}
	return b.String()
}
