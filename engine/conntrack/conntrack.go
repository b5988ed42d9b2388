// Package conntrack holds the connection tracking table's values as roundtrip sees them
// (tuples, entries, status bits, filters, events, statistics), apart from the kernel adapter
// that reads them (engine/kernel), so that the console and the pure correlation code need not
// import it.
package conntrack

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// Tuple is one direction of a tracked connection: protocol, source and destination.
// For ICMP echo the identifier stands in for the ports so that a request's tuple reversed is
// its reply's: an echo request is (id, 0), an echo reply (0, id).
type Tuple struct {
	Proto uint8          `json:"proto"`
	Src   netip.AddrPort `json:"src"`
	Dst   netip.AddrPort `json:"dst"`
}

// Reverse swaps source and destination.
func (t Tuple) Reverse() Tuple {
	return Tuple{Proto: t.Proto, Src: t.Dst, Dst: t.Src}
}

// IsZero reports whether the tuple is unset.
func (t Tuple) IsZero() bool { return t == Tuple{} }

func (t Tuple) String() string {
	return fmt.Sprintf("%s %s -> %s", inet.ProtoName(int(t.Proto)), Endpoint(t.Proto, t.Src), Endpoint(t.Proto, t.Dst))
}

// Endpoint writes an address with its port for protocols that have ports, the address alone
// for the others (ICMP's echo identifier is not a port to show).
func Endpoint(proto uint8, ap netip.AddrPort) string {
	if HasPorts(proto) {
		return ap.String()
	}
	return ap.Addr().String()
}

// Status holds the IPS_* status bits of an entry.
type Status uint32

// Status bits (include/uapi/linux/netfilter/nf_conntrack_common.h).
const (
	StatusExpected  Status = 1 << 0
	StatusSeenReply Status = 1 << 1
	StatusAssured   Status = 1 << 2
	StatusConfirmed Status = 1 << 3
	StatusSrcNAT    Status = 1 << 4
	StatusDstNAT    Status = 1 << 5
	StatusDying     Status = 1 << 9
	StatusOffload   Status = 1 << 14
)

var statusNames = []struct {
	bit  Status
	name string
}{
	{StatusExpected, "EXPECTED"}, {StatusSeenReply, "SEEN_REPLY"}, {StatusAssured, "ASSURED"},
	{StatusConfirmed, "CONFIRMED"}, {StatusSrcNAT, "SRC_NAT"}, {StatusDstNAT, "DST_NAT"},
	{1 << 6, "SEQ_ADJUST"}, {1 << 7, "SRC_NAT_DONE"}, {1 << 8, "DST_NAT_DONE"},
	{StatusDying, "DYING"}, {1 << 10, "FIXED_TIMEOUT"}, {1 << 11, "TEMPLATE"},
	{1 << 12, "UNTRACKED"}, {1 << 13, "HELPER"}, {StatusOffload, "OFFLOAD"},
}

// Names lists the set bits, with UNREPLIED for an entry that has not seen a reply (as
// conntrack -L prints it).
func (s Status) Names() []string {
	var out []string
	if s&StatusSeenReply == 0 {
		out = append(out, "UNREPLIED")
	}
	for _, n := range statusNames {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

func (s Status) String() string { return strings.Join(s.Names(), "|") }

// MarshalText writes the status as its names.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the names MarshalText writes.
func (s *Status) UnmarshalText(b []byte) error {
	var out Status
	for _, n := range strings.Split(string(b), "|") {
		if n == "" || n == "UNREPLIED" {
			continue
		}
		set, _, err := ParseStatus(n)
		if err != nil {
			return err
		}
		out |= set
	}
	*s = out
	return nil
}

// ParseStatus reads a status name (ASSURED, SEEN_REPLY, UNREPLIED, ...): the bits
// that must be set, and for UNREPLIED the bit that must be clear.
func ParseStatus(name string) (set, clear Status, err error) {
	n := strings.ToUpper(name)
	if n == "UNREPLIED" {
		return 0, StatusSeenReply, nil
	}
	for _, s := range statusNames {
		if s.name == n {
			return s.bit, 0, nil
		}
	}
	return 0, 0, fmt.Errorf("unknown conntrack status %q: want UNREPLIED, SEEN_REPLY, ASSURED, CONFIRMED, SRC_NAT, DST_NAT, DYING or OFFLOAD", name)
}

// TCPStates names the conntrack TCP states (enum tcp_conntrack).
var TCPStates = []string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// ParseTCPState checks a conntrack TCP state name (ESTABLISHED, SYN_SENT, ...).
func ParseTCPState(s string) (string, error) {
	u := strings.ToUpper(s)
	for _, n := range TCPStates {
		if n == u {
			return u, nil
		}
	}
	return "", fmt.Errorf("unknown TCP state %q: want one of %s", s, strings.Join(TCPStates, ", "))
}

// Entry is one tracked connection. Orig is the tuple of the first packet as it
// arrived (before NAT); Reply is the tuple the answer is expected to arrive with (after NAT):
// a destination NAT shows as Reply.Src differing from Orig.Dst, a source NAT as Reply.Dst
// differing from Orig.Src.
type Entry struct {
	ID       uint32      `json:"id"`
	Family   inet.Family `json:"family"`
	Orig     Tuple       `json:"orig"`
	Reply    Tuple       `json:"reply"`
	Status   Status      `json:"status"`
	TCPState string      `json:"tcp_state,omitempty"`
	Mark     uint32      `json:"mark,omitempty"`
	Zone     uint16      `json:"zone,omitempty"`
	// Timeout is how many seconds the entry has left (none in DESTROY events).
	Timeout uint32 `json:"timeout"`
	// Packet and byte counters, when net.netfilter.nf_conntrack_acct is on.
	OrigPackets  uint64 `json:"orig_packets,omitempty"`
	OrigBytes    uint64 `json:"orig_bytes,omitempty"`
	ReplyPackets uint64 `json:"reply_packets,omitempty"`
	ReplyBytes   uint64 `json:"reply_bytes,omitempty"`
}

// Unreplied reports whether the entry has not seen a packet in the reply direction.
func (e *Entry) Unreplied() bool { return e.Status&StatusSeenReply == 0 }

// DNAT reports whether the destination was translated: the reply comes from elsewhere.
func (e *Entry) DNAT() bool { return e.Reply.Src != e.Orig.Dst }

// SNAT reports whether the source was translated: the reply goes to elsewhere.
func (e *Entry) SNAT() bool { return e.Reply.Dst != e.Orig.Src }

// Has reports whether a packet with tuple t belongs to the entry, in either direction and on
// either side of the NAT.
func (e *Entry) Has(t Tuple) bool {
	return t == e.Orig || t == e.Reply || t == e.Orig.Reverse() || t == e.Reply.Reverse()
}

// String renders the entry as conntrack -L does, roughly.
func (e *Entry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d", inet.ProtoName(int(e.Orig.Proto)), e.Timeout)
	if e.TCPState != "" {
		b.WriteString(" " + e.TCPState)
	}
	fmt.Fprintf(&b, " src=%s dst=%s", e.Orig.Src.Addr(), e.Orig.Dst.Addr())
	if HasPorts(e.Orig.Proto) {
		fmt.Fprintf(&b, " sport=%d dport=%d", e.Orig.Src.Port(), e.Orig.Dst.Port())
	}
	if e.Unreplied() {
		b.WriteString(" [UNREPLIED]")
	}
	fmt.Fprintf(&b, " src=%s dst=%s", e.Reply.Src.Addr(), e.Reply.Dst.Addr())
	if HasPorts(e.Orig.Proto) {
		fmt.Fprintf(&b, " sport=%d dport=%d", e.Reply.Src.Port(), e.Reply.Dst.Port())
	}
	if e.Status&StatusAssured != 0 {
		b.WriteString(" [ASSURED]")
	}
	fmt.Fprintf(&b, " mark=%d", e.Mark)
	if e.Zone != 0 {
		fmt.Fprintf(&b, " zone=%d", e.Zone)
	}
	return b.String()
}

// HasPorts reports whether a protocol's tuples carry ports (inet.HasPorts).
func HasPorts(proto uint8) bool { return inet.HasPorts(int(proto)) }

// ICMPEchoPorts maps an ICMP echo identifier to the ports of a tuple: requests (id, 0), replies
// (0, id); other types have no ports. Decoders of captured packets use it too, so that packets
// and conntrack entries agree on what an ICMP echo tuple is.
func ICMPEchoPorts(typ uint8, id uint16, v6 bool) (uint16, uint16) {
	req, rep := uint8(8), uint8(0)
	if v6 {
		req, rep = 128, 129
	}
	switch typ {
	case req:
		return id, 0
	case rep:
		return 0, id
	}
	return 0, 0
}

// Filter selects entries. Zero fields select everything.
type Filter struct {
	Family inet.Family
	Proto  uint8
	// Addr matches an entry that has the address anywhere: either side of either tuple, so a
	// filter on a NATed address finds its connections.
	Addr netip.Addr
	// Src and Dst match the original tuple's source and destination.
	Src, Dst netip.Addr
	// Port matches any port of either tuple.
	Port uint16
	Mark *model.MarkMatch
	// StatusSet bits must all be set, StatusClear bits all clear (UNREPLIED is SEEN_REPLY clear).
	StatusSet, StatusClear Status
	TCPState               string
}

// Match reports whether an entry passes the filter.
func (f *Filter) Match(e *Entry) bool {
	if f == nil {
		return true
	}
	if f.Family != 0 && e.Family != f.Family {
		return false
	}
	if f.Proto != 0 && e.Orig.Proto != f.Proto {
		return false
	}
	if f.Addr.IsValid() && !e.hasAddr(f.Addr) {
		return false
	}
	if f.Src.IsValid() && e.Orig.Src.Addr() != f.Src {
		return false
	}
	if f.Dst.IsValid() && e.Orig.Dst.Addr() != f.Dst {
		return false
	}
	if f.Port != 0 && !HasPorts(e.Orig.Proto) {
		return false
	}
	if f.Port != 0 && e.Orig.Src.Port() != f.Port && e.Orig.Dst.Port() != f.Port && e.Reply.Src.Port() != f.Port && e.Reply.Dst.Port() != f.Port {
		return false
	}
	if f.Mark != nil && e.Mark&f.Mark.Mask != f.Mark.Value&f.Mark.Mask {
		return false
	}
	if e.Status&f.StatusSet != f.StatusSet || e.Status&f.StatusClear != 0 {
		return false
	}
	if f.TCPState != "" && e.TCPState != f.TCPState {
		return false
	}
	return true
}

func (e *Entry) hasAddr(a netip.Addr) bool {
	return e.Orig.Src.Addr() == a || e.Orig.Dst.Addr() == a || e.Reply.Src.Addr() == a || e.Reply.Dst.Addr() == a
}

// Conntrack event types.
const (
	EventNew     = "new"
	EventUpdate  = "update"
	EventDestroy = "destroy"
	// EventLost reports that the kernel dropped events because roundtrip read them too slowly
	// (ENOBUFS on the event socket); Lost says how many times.
	EventLost = "lost"
)

// Event is a change of the table.
type Event struct {
	Type  string    `json:"type"`
	Time  time.Time `json:"time"`
	Entry Entry     `json:"entry"`
	Lost  int       `json:"lost,omitempty"`
}

// CPUStats are the per-CPU counters of conntrack -S. Drop, EarlyDrop and
// InsertFailed growing mean the table is full or racing: packets are being dropped.
type CPUStats struct {
	CPU           int    `json:"cpu"`
	Found         uint32 `json:"found"`
	Invalid       uint32 `json:"invalid"`
	Insert        uint32 `json:"insert"`
	InsertFailed  uint32 `json:"insert_failed"`
	Drop          uint32 `json:"drop"`
	EarlyDrop     uint32 `json:"early_drop"`
	Error         uint32 `json:"error"`
	SearchRestart uint32 `json:"search_restart"`
}

// Stats describes the table: how full it is and what it dropped.
type Stats struct {
	Count int `json:"count"`
	Max   int `json:"max"`
	// Buckets is the hash table size (nf_conntrack_buckets).
	Buckets int        `json:"buckets,omitempty"`
	CPUs    []CPUStats `json:"cpus,omitempty"`
	Total   CPUStats   `json:"total"`
	// Unavailable says why the per-CPU counters could not be read (no CAP_NET_ADMIN, ...):
	// the count and maximum come from sysctls, which anyone may read.
	Unavailable string `json:"unavailable,omitempty"`
}

// Full reports whether the table is at its maximum.
func (s *Stats) Full() bool { return s.Max > 0 && s.Count >= s.Max }
