package diagnose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/quote"
)

// ConntrackOptions says which entries to show and how.
type ConntrackOptions struct {
	Namespace kernel.Namespace
	Filter    kernel.ConntrackFilter
	// Watch shows changes as they happen instead of the table.
	Watch bool
	// JSON writes one JSON object per line: the statistics, then each entry or event.
	JSON bool
}

// ConntrackResult is what a listing found.
type ConntrackResult struct {
	Stats   kernel.ConntrackStats `json:"stats"`
	Entries int                   `json:"entries"` // entries shown (after the filter)
	// Err is why entries could not be read (typically no CAP_NET_ADMIN); the statistics
	// from sysctls are still there.
	Err error `json:"-"`
}

// Problem says what is wrong with the table as a whole, or "".
func (r *ConntrackResult) Problem() string {
	s := r.Stats
	switch {
	case s.Full():
		return fmt.Sprintf("the conntrack table is full (%d of %d entries): new connections are dropped; raise net.netfilter.nf_conntrack_max or shorten timeouts", s.Count, s.Max)
	case s.Total.Drop > 0 || s.Total.EarlyDrop > 0:
		return fmt.Sprintf("conntrack dropped packets (drop %d, early_drop %d): the table was full at some point; raise net.netfilter.nf_conntrack_max", s.Total.Drop, s.Total.EarlyDrop)
	}
	return ""
}

// ListConntrack writes the table's statistics and then its entries (or, with Watch, its
// changes until ctx ends), streaming: a table of any size is written in constant memory.
// Without CAP_NET_ADMIN it still writes the count and maximum, and says why the rest is
// missing in the result's Err.
func ListConntrack(ctx context.Context, opts ConntrackOptions, w io.Writer) (*ConntrackResult, error) {
	st, err := kernel.ReadConntrackStats(opts.Namespace)
	if err != nil {
		return nil, err
	}
	res := &ConntrackResult{Stats: st}
	enc := json.NewEncoder(w)
	if opts.JSON {
		if err := enc.Encode(struct {
			Type  string                `json:"type"`
			Stats kernel.ConntrackStats `json:"stats"`
		}{"stats", st}); err != nil {
			return nil, err
		}
	} else {
		RenderConntrackStats(w, &st)
	}
	if opts.Watch {
		err = kernel.WatchConntrack(ctx, opts.Namespace, &opts.Filter, func(ev kernel.ConntrackEvent) error {
			res.Entries++
			if opts.JSON {
				return enc.Encode(struct {
					Type  string                `json:"type"`
					Event kernel.ConntrackEvent `json:"event"`
				}{"event", ev})
			}
			if ev.Type == kernel.EventLost {
				_, err := quote.TermFprintf(w, "%s [LOST] the kernel dropped events: roundtrip read them too slowly\n", ev.Time.Format("15:04:05.000000"))
				return err
			}
			_, err := quote.TermFprintf(w, "%s %-8s %s\n", ev.Time.Format("15:04:05.000000"), "["+strings.ToUpper(ev.Type)+"]", EntryLine(&ev.Entry))
			return err
		})
	} else {
		c, oerr := kernel.OpenConntrack(opts.Namespace)
		if oerr != nil {
			err = oerr
		} else {
			defer c.Close()
			var line []byte
			err = c.Dump(ctx, &opts.Filter, func(e *kernel.ConntrackEntry) error {
				res.Entries++
				if opts.JSON {
					return enc.Encode(struct {
						Type  string                 `json:"type"`
						Entry *kernel.ConntrackEntry `json:"entry"`
					}{"entry", e})
				}
				line = AppendEntryLine(line[:0], e)
				if !plainASCII(line) {
					line = append([]byte(quote.Term(string(line))), '\n')
				} else {
					line = append(line, '\n')
				}
				_, err := w.Write(line)
				return err
			})
		}
	}
	var ce *kernel.CapabilityError
	if errors.As(err, &ce) {
		res.Err = err
		return res, nil
	}
	if err != nil {
		return res, err
	}
	return res, nil
}

// RenderConntrackStats writes the table's fill level and drop counters.
func RenderConntrackStats(w io.Writer, s *kernel.ConntrackStats) {
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
func EntryLine(e *kernel.ConntrackEntry) string { return string(AppendEntryLine(nil, e)) }

// AppendEntryLine appends EntryLine's text to b without fmt: a listing of a full table formats
// a quarter of a million lines, as `conntrack -L` does.
func AppendEntryLine(b []byte, e *kernel.ConntrackEntry) []byte {
	state := e.TCPState
	if state == "" {
		state = "-"
	}
	b = appendPadded(b, inet.ProtoName(int(e.Orig.Proto)), 5)
	b = append(b, ' ')
	b = appendPadded(b, state, 11)
	b = append(b, ' ')
	if n := decimalWidth(e.Timeout); n < 6 {
		b = append(b, "      "[:6-n]...)
	}
	b = strconv.AppendUint(b, uint64(e.Timeout), 10)
	b = append(b, "s  "...)
	b = appendEndpoint(b, e.Orig.Proto, e.Orig.Src)
	b = append(b, " -> "...)
	b = appendEndpoint(b, e.Orig.Proto, e.Orig.Dst)
	b = append(b, "  reply "...)
	b = appendEndpoint(b, e.Orig.Proto, e.Reply.Src)
	b = append(b, " -> "...)
	b = appendEndpoint(b, e.Orig.Proto, e.Reply.Dst)
	switch dnat, snat := e.DNAT(), e.SNAT(); {
	case dnat && snat:
		b = append(b, "  DNAT+SNAT"...)
	case dnat:
		b = append(b, "  DNAT"...)
	case snat:
		b = append(b, "  SNAT"...)
	}
	switch unreplied, assured := e.Unreplied(), e.Status&kernel.CTStatusAssured != 0; {
	case unreplied && assured:
		b = append(b, "  [UNREPLIED ASSURED]"...)
	case unreplied:
		b = append(b, "  [UNREPLIED]"...)
	case assured:
		b = append(b, "  [ASSURED]"...)
	}
	if e.Mark != 0 {
		b = append(b, "  mark 0x"...)
		b = strconv.AppendUint(b, uint64(e.Mark), 16)
	}
	if e.Zone != 0 {
		b = append(b, "  zone "...)
		b = strconv.AppendUint(b, uint64(e.Zone), 10)
	}
	return b
}

// plainASCII is quote.PlainASCII for bytes: a line that passes needs no escaping.
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// appendPadded appends s left-justified in width runes, as fmt's %-Ns does.
func appendPadded(b []byte, s string, width int) []byte {
	b = append(b, s...)
	for n := utf8.RuneCountInString(s); n < width; n++ {
		b = append(b, ' ')
	}
	return b
}

func decimalWidth(v uint32) int {
	n := 1
	for ; v >= 10; v /= 10 {
		n++
	}
	return n
}

// appendEndpoint appends kernel.Endpoint's text.
func appendEndpoint(b []byte, proto uint8, ap netip.AddrPort) []byte {
	if inet.HasPorts(int(proto)) {
		return ap.AppendTo(b)
	}
	return ap.Addr().AppendTo(b)
}
