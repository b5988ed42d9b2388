package model

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// SnapshotWriter writes a snapshot whose routes are given one at a time, as a dump delivers
// them, so that a full table is never held whole: the file is the one Snapshot.Marshal
// writes for the same state, byte for byte (TestSnapshotWriterMatchesMarshal). Memory is that
// of the state without its routes and of the output buffer.
type SnapshotWriter struct {
	w      *bufio.Writer
	suffix []byte // the encoding after the routes
	buf    []byte // one route's encoding, reused
	routes int
	err    error
}

// routesMark is where an indented encoding of a Snapshot holds State.Routes when it is nil.
// It cannot occur inside a JSON string, which has no raw newline.
const routesMark = "\n    \"routes\": null"

// NewSnapshotWriter writes to w what comes before the routes of a snapshot of s, which must
// hold no routes yet (Route adds them).
func NewSnapshotWriter(w io.Writer, s *State, taken time.Time) (*SnapshotWriter, error) {
	if len(s.Routes) != 0 {
		return nil, fmt.Errorf("encoding snapshot: the state given to NewSnapshotWriter holds routes already")
	}
	routes := s.Routes
	s.Routes = nil
	b, err := NewSnapshot(s, taken).Marshal()
	s.Routes = routes
	if err != nil {
		return nil, err
	}
	i := bytes.Index(b, []byte(routesMark))
	if i < 0 {
		return nil, fmt.Errorf("encoding snapshot: no routes in the encoding of the state")
	}
	at := i + len(routesMark) - len("null")
	sw := &SnapshotWriter{w: bufio.NewWriterSize(w, 256<<10), suffix: b[at+len("null"):]}
	_, sw.err = sw.w.Write(b[:at])
	return sw, sw.err
}

// Routes returns the number of routes written.
func (sw *SnapshotWriter) Routes() int { return sw.routes }

// Route writes the next route.
func (sw *SnapshotWriter) Route(r *Route) error {
	if sw.err != nil {
		return sw.err
	}
	b := sw.buf[:0]
	if sw.routes == 0 {
		b = append(b, "[\n      "...)
	} else {
		b = append(b, ",\n      "...)
	}
	b, err := appendRoute(b, r)
	if err != nil {
		sw.err = err
		return err
	}
	sw.buf = b
	sw.routes++
	_, sw.err = sw.w.Write(b)
	return sw.err
}

// Close writes the rest of the snapshot and flushes it; it does not close the writer below.
func (sw *SnapshotWriter) Close() error {
	if sw.err != nil {
		return sw.err
	}
	if sw.routes == 0 {
		_, sw.err = sw.w.WriteString("null") // as Marshal writes a nil slice
	} else {
		_, sw.err = sw.w.WriteString("\n    ]")
	}
	if sw.err == nil {
		_, sw.err = sw.w.Write(sw.suffix)
	}
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	if sw.err == nil {
		sw.err = errClosed
		return nil
	}
	return sw.err
}

var errClosed = fmt.Errorf("encoding snapshot: the writer is closed")

// appendRoute appends r as json.MarshalIndent encodes it as an element of State.Routes (six
// spaces in, two per level), without reflection.
func appendRoute(b []byte, r *Route) ([]byte, error) {
	fam, err := r.Family.MarshalText()
	if err != nil {
		return b, fmt.Errorf("encoding snapshot: route %s: %w", r.Dst, err)
	}
	const in = "\n        "
	b = append(b, '{')
	b = append(b, in+`"family": `...)
	b = appendJSONString(b, string(fam))
	b = append(b, ","+in+`"table": `...)
	b = strconv.AppendInt(b, int64(r.Table), 10)
	b = append(b, ","+in+`"type": `...)
	b = appendJSONString(b, r.Type)
	b = append(b, ","+in+`"dst": `...)
	b = appendPrefix(b, r.Dst)
	if r.TOS != 0 {
		b = append(b, ","+in+`"tos": `...)
		b = strconv.AppendUint(b, uint64(r.TOS), 10)
	}
	if r.Gateway.IsValid() {
		b = append(b, ","+in+`"gateway": `...)
		b = appendAddr(b, r.Gateway)
	}
	if r.Dev != "" {
		b = append(b, ","+in+`"dev": `...)
		b = appendJSONString(b, r.Dev)
	}
	if r.Src.IsValid() {
		b = append(b, ","+in+`"prefsrc": `...)
		b = appendAddr(b, r.Src)
	}
	if r.Metric != 0 {
		b = append(b, ","+in+`"metric": `...)
		b = strconv.AppendInt(b, int64(r.Metric), 10)
	}
	if r.Scope != "" {
		b = append(b, ","+in+`"scope": `...)
		b = appendJSONString(b, r.Scope)
	}
	if r.Protocol != "" {
		b = append(b, ","+in+`"protocol": `...)
		b = appendJSONString(b, r.Protocol)
	}
	if r.OnLink {
		b = append(b, ","+in+`"onlink": true`...)
	}
	if len(r.Nexthops) > 0 {
		const nin = "\n            "
		b = append(b, ","+in+`"nexthops": [`...)
		for i, nh := range r.Nexthops {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, "\n          {"...)
			sep := ""
			if nh.Gateway.IsValid() {
				b = append(b, nin+`"gateway": `...)
				b = appendAddr(b, nh.Gateway)
				sep = ","
			}
			if nh.Dev != "" {
				b = append(b, sep+nin+`"dev": `...)
				b = appendJSONString(b, nh.Dev)
				sep = ","
			}
			b = append(b, sep+nin+`"weight": `...)
			b = strconv.AppendInt(b, int64(nh.Weight), 10)
			if nh.OnLink {
				b = append(b, ","+nin+`"onlink": true`...)
			}
			b = append(b, "\n          }"...)
		}
		b = append(b, "\n        ]"...)
	}
	return append(b, "\n      }"...), nil
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Zone() != "" {
		t, _ := a.MarshalText()
		return appendJSONString(b, string(t))
	}
	b = append(b, '"')
	b = a.AppendTo(b)
	return append(b, '"')
}

func appendPrefix(b []byte, p netip.Prefix) []byte {
	if !p.IsValid() || p.Addr().Zone() != "" {
		t, _ := p.MarshalText()
		return appendJSONString(b, string(t))
	}
	b = append(b, '"')
	b = p.AppendTo(b)
	return append(b, '"')
}

// appendJSONString appends s quoted as encoding/json quotes it (HTML characters escaped too);
// the names of routes' fields are plain ASCII, so the library is called only for the others.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
