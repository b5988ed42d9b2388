package kernel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	mdnetlink "github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// ConntrackTuple is one direction of a tracked connection: protocol, source and destination.
// For ICMP echo the identifier stands in for the ports so that a request's tuple reversed is
// its reply's: an echo request is (id, 0), an echo reply (0, id).
type ConntrackTuple struct {
	Proto uint8          `json:"proto"`
	Src   netip.AddrPort `json:"src"`
	Dst   netip.AddrPort `json:"dst"`
}

// Reverse swaps source and destination.
func (t ConntrackTuple) Reverse() ConntrackTuple {
	return ConntrackTuple{Proto: t.Proto, Src: t.Dst, Dst: t.Src}
}

// IsZero reports whether the tuple is unset.
func (t ConntrackTuple) IsZero() bool { return t == ConntrackTuple{} }

func (t ConntrackTuple) String() string {
	return fmt.Sprintf("%s %s -> %s", inet.ProtoName(int(t.Proto)), Endpoint(t.Proto, t.Src), Endpoint(t.Proto, t.Dst))
}

// Endpoint writes an address with its port for protocols that have ports, the address alone
// for the others (ICMP's echo identifier is not a port to show).
func Endpoint(proto uint8, ap netip.AddrPort) string {
	if hasPorts(proto) {
		return ap.String()
	}
	return ap.Addr().String()
}

// ConntrackStatus holds the IPS_* status bits of an entry.
type ConntrackStatus uint32

// Status bits (include/uapi/linux/netfilter/nf_conntrack_common.h).
const (
	CTStatusExpected  ConntrackStatus = 1 << 0
	CTStatusSeenReply ConntrackStatus = 1 << 1
	CTStatusAssured   ConntrackStatus = 1 << 2
	CTStatusConfirmed ConntrackStatus = 1 << 3
	CTStatusSrcNAT    ConntrackStatus = 1 << 4
	CTStatusDstNAT    ConntrackStatus = 1 << 5
	CTStatusDying     ConntrackStatus = 1 << 9
	CTStatusOffload   ConntrackStatus = 1 << 14
)

var statusNames = []struct {
	bit  ConntrackStatus
	name string
}{
	{CTStatusExpected, "EXPECTED"}, {CTStatusSeenReply, "SEEN_REPLY"}, {CTStatusAssured, "ASSURED"},
	{CTStatusConfirmed, "CONFIRMED"}, {CTStatusSrcNAT, "SRC_NAT"}, {CTStatusDstNAT, "DST_NAT"},
	{1 << 6, "SEQ_ADJUST"}, {1 << 7, "SRC_NAT_DONE"}, {1 << 8, "DST_NAT_DONE"},
	{CTStatusDying, "DYING"}, {1 << 10, "FIXED_TIMEOUT"}, {1 << 11, "TEMPLATE"},
	{1 << 12, "UNTRACKED"}, {1 << 13, "HELPER"}, {CTStatusOffload, "OFFLOAD"},
}

// Names lists the set bits, with UNREPLIED for an entry that has not seen a reply (as
// conntrack -L prints it).
func (s ConntrackStatus) Names() []string {
	var out []string
	if s&CTStatusSeenReply == 0 {
		out = append(out, "UNREPLIED")
	}
	for _, n := range statusNames {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

func (s ConntrackStatus) String() string { return strings.Join(s.Names(), "|") }

// MarshalText writes the status as its names.
func (s ConntrackStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the names MarshalText writes.
func (s *ConntrackStatus) UnmarshalText(b []byte) error {
	var out ConntrackStatus
	for _, n := range strings.Split(string(b), "|") {
		if n == "" || n == "UNREPLIED" {
			continue
		}
		set, _, err := ParseConntrackStatus(n)
		if err != nil {
			return err
		}
		out |= set
	}
	*s = out
	return nil
}

// ParseConntrackStatus reads a status name (ASSURED, SEEN_REPLY, UNREPLIED, ...): the bits
// that must be set, and for UNREPLIED the bit that must be clear.
func ParseConntrackStatus(name string) (set, clear ConntrackStatus, err error) {
	n := strings.ToUpper(name)
	if n == "UNREPLIED" {
		return 0, CTStatusSeenReply, nil
	}
	for _, s := range statusNames {
		if s.name == n {
			return s.bit, 0, nil
		}
	}
	return 0, 0, fmt.Errorf("unknown conntrack status %q: want UNREPLIED, SEEN_REPLY, ASSURED, CONFIRMED, SRC_NAT, DST_NAT, DYING or OFFLOAD", name)
}

// tcpStates names the conntrack TCP states (enum tcp_conntrack).
var tcpStates = []string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// ParseTCPState checks a conntrack TCP state name (ESTABLISHED, SYN_SENT, ...).
func ParseTCPState(s string) (string, error) {
	u := strings.ToUpper(s)
	for _, n := range tcpStates {
		if n == u {
			return u, nil
		}
	}
	return "", fmt.Errorf("unknown TCP state %q: want one of %s", s, strings.Join(tcpStates, ", "))
}

// ConntrackEntry is one tracked connection. Orig is the tuple of the first packet as it
// arrived (before NAT); Reply is the tuple the answer is expected to arrive with (after NAT):
// a destination NAT shows as Reply.Src differing from Orig.Dst, a source NAT as Reply.Dst
// differing from Orig.Src.
type ConntrackEntry struct {
	ID       uint32          `json:"id"`
	Family   inet.Family     `json:"family"`
	Orig     ConntrackTuple  `json:"orig"`
	Reply    ConntrackTuple  `json:"reply"`
	Status   ConntrackStatus `json:"status"`
	TCPState string          `json:"tcp_state,omitempty"`
	Mark     uint32          `json:"mark,omitempty"`
	Zone     uint16          `json:"zone,omitempty"`
	// Timeout is how many seconds the entry has left (none in DESTROY events).
	Timeout uint32 `json:"timeout"`
	// Packet and byte counters, when net.netfilter.nf_conntrack_acct is on.
	OrigPackets  uint64 `json:"orig_packets,omitempty"`
	OrigBytes    uint64 `json:"orig_bytes,omitempty"`
	ReplyPackets uint64 `json:"reply_packets,omitempty"`
	ReplyBytes   uint64 `json:"reply_bytes,omitempty"`
}

// Unreplied reports whether the entry has not seen a packet in the reply direction.
func (e *ConntrackEntry) Unreplied() bool { return e.Status&CTStatusSeenReply == 0 }

// DNAT reports whether the destination was translated: the reply comes from elsewhere.
func (e *ConntrackEntry) DNAT() bool { return e.Reply.Src != e.Orig.Dst }

// SNAT reports whether the source was translated: the reply goes to elsewhere.
func (e *ConntrackEntry) SNAT() bool { return e.Reply.Dst != e.Orig.Src }

// Has reports whether a packet with tuple t belongs to the entry, in either direction and on
// either side of the NAT.
func (e *ConntrackEntry) Has(t ConntrackTuple) bool {
	return t == e.Orig || t == e.Reply || t == e.Orig.Reverse() || t == e.Reply.Reverse()
}

// String renders the entry as conntrack -L does, roughly.
func (e *ConntrackEntry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d", inet.ProtoName(int(e.Orig.Proto)), e.Timeout)
	if e.TCPState != "" {
		b.WriteString(" " + e.TCPState)
	}
	fmt.Fprintf(&b, " src=%s dst=%s", e.Orig.Src.Addr(), e.Orig.Dst.Addr())
	if hasPorts(e.Orig.Proto) {
		fmt.Fprintf(&b, " sport=%d dport=%d", e.Orig.Src.Port(), e.Orig.Dst.Port())
	}
	if e.Unreplied() {
		b.WriteString(" [UNREPLIED]")
	}
	fmt.Fprintf(&b, " src=%s dst=%s", e.Reply.Src.Addr(), e.Reply.Dst.Addr())
	if hasPorts(e.Orig.Proto) {
		fmt.Fprintf(&b, " sport=%d dport=%d", e.Reply.Src.Port(), e.Reply.Dst.Port())
	}
	if e.Status&CTStatusAssured != 0 {
		b.WriteString(" [ASSURED]")
	}
	fmt.Fprintf(&b, " mark=%d", e.Mark)
	if e.Zone != 0 {
		fmt.Fprintf(&b, " zone=%d", e.Zone)
	}
	return b.String()
}

func hasPorts(proto uint8) bool {
	switch proto {
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_SCTP, unix.IPPROTO_UDPLITE, unix.IPPROTO_DCCP:
		return true
	}
	return false
}

// convertFlow turns a ti-mo flow into an entry.
func convertFlow(f *conntrack.Flow) ConntrackEntry {
	e := ConntrackEntry{
		ID:           f.ID,
		Family:       inet.V4,
		Orig:         convertTuple(f.TupleOrig),
		Reply:        convertTuple(f.TupleReply),
		Status:       ConntrackStatus(f.Status),
		Mark:         f.Mark,
		Zone:         f.Zone,
		Timeout:      f.Timeout,
		OrigPackets:  f.CountersOrig.Packets,
		OrigBytes:    f.CountersOrig.Bytes,
		ReplyPackets: f.CountersReply.Packets,
		ReplyBytes:   f.CountersReply.Bytes,
	}
	if f.TupleOrig.IP.SourceAddress.Is6() && !f.TupleOrig.IP.SourceAddress.Is4In6() {
		e.Family = inet.V6
	}
	if f.ProtoInfo.TCP != nil && int(f.ProtoInfo.TCP.State) < len(tcpStates) {
		e.TCPState = tcpStates[f.ProtoInfo.TCP.State]
	}
	return e
}

func convertTuple(t conntrack.Tuple) ConntrackTuple {
	src, dst := t.IP.SourceAddress.Unmap(), t.IP.DestinationAddress.Unmap()
	sp, dp := t.Proto.SourcePort, t.Proto.DestinationPort
	if t.Proto.ICMPv4 || t.Proto.ICMPv6 {
		sp, dp = icmpPorts(t.Proto.ICMPType, t.Proto.ICMPID, t.Proto.ICMPv6)
	}
	return ConntrackTuple{Proto: t.Proto.Protocol, Src: netip.AddrPortFrom(src, sp), Dst: netip.AddrPortFrom(dst, dp)}
}

// icmpPorts maps an ICMP echo identifier to the ports of a tuple: requests (id, 0), replies
// (0, id); other types have no ports.
func icmpPorts(typ uint8, id uint16, v6 bool) (uint16, uint16) {
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

// ICMPEchoPorts is icmpPorts for decoders of captured packets, so that packets and conntrack
// entries agree on what an ICMP echo tuple is.
func ICMPEchoPorts(typ uint8, id uint16, v6 bool) (uint16, uint16) { return icmpPorts(typ, id, v6) }

// ConntrackFilter selects entries. Zero fields select everything.
type ConntrackFilter struct {
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
	StatusSet, StatusClear ConntrackStatus
	TCPState               string
}

// Match reports whether an entry passes the filter.
func (f *ConntrackFilter) Match(e *ConntrackEntry) bool {
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
	if f.Port != 0 && !hasPorts(e.Orig.Proto) {
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

func (e *ConntrackEntry) hasAddr(a netip.Addr) bool {
	return e.Orig.Src.Addr() == a || e.Orig.Dst.Addr() == a || e.Reply.Src.Addr() == a || e.Reply.Dst.Addr() == a
}

// Conntrack talks to the connection tracking table of one namespace over ctnetlink.
type Conntrack struct {
	ns   Namespace
	conn *conntrack.Conn
}

// OpenConntrack connects to the conntrack table of the namespace. Without CAP_NET_ADMIN the
// kernel refuses every ctnetlink request; that shows as a *CapabilityError from the first call.
func OpenConntrack(ns Namespace) (*Conntrack, error) {
	c := &Conntrack{ns: ns}
	err := ns.Do(func() error {
		var err error
		c.conn, err = conntrack.Dial(nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to conntrack in %s: %w", ns, capErr("reading conntrack", "CAP_NET_ADMIN", err))
	}
	return c, nil
}

// Close closes the connection.
func (c *Conntrack) Close() error { return c.conn.Close() }

// ErrConntrackNotFound is returned by Get when no entry has the tuple.
var ErrConntrackNotFound = errors.New("no conntrack entry")

// Get returns the entry whose original or reply tuple is t.
func (c *Conntrack) Get(t ConntrackTuple) (ConntrackEntry, error) {
	var f conntrack.Flow
	f.TupleOrig = toTiMoTuple(t)
	got, err := c.conn.Get(f)
	if errors.Is(err, unix.ENOENT) {
		// Get looks the tuple up as an original tuple; it may be a reply tuple.
		f = conntrack.Flow{TupleReply: toTiMoTuple(t)}
		got, err = c.conn.Get(f)
	}
	if errors.Is(err, unix.ENOENT) {
		return ConntrackEntry{}, fmt.Errorf("%w for %s", ErrConntrackNotFound, t)
	}
	if err != nil {
		return ConntrackEntry{}, fmt.Errorf("looking up %s in conntrack: %w", t, capErr("reading conntrack", "CAP_NET_ADMIN", err))
	}
	return convertFlow(&got), nil
}

func toTiMoTuple(t ConntrackTuple) conntrack.Tuple {
	var out conntrack.Tuple
	out.IP.SourceAddress, out.IP.DestinationAddress = t.Src.Addr(), t.Dst.Addr()
	out.Proto.Protocol = t.Proto
	switch t.Proto {
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		v6 := t.Proto == unix.IPPROTO_ICMPV6
		out.Proto.ICMPv4, out.Proto.ICMPv6 = !v6, v6
		req, rep := uint8(8), uint8(0)
		if v6 {
			req, rep = 128, 129
		}
		if t.Src.Port() != 0 {
			out.Proto.ICMPType, out.Proto.ICMPID = req, t.Src.Port()
		} else {
			out.Proto.ICMPType, out.Proto.ICMPID = rep, t.Dst.Port()
		}
	default:
		out.Proto.SourcePort, out.Proto.DestinationPort = t.Src.Port(), t.Dst.Port()
	}
	return out
}

// ctnetlink message types (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
const (
	nfnlSubsysCTNetlink = 1
	ipctnlMsgCTNew      = 0
	ipctnlMsgCTGet      = 1
	ctaMark             = 8
	ctaMarkMask         = 21
)

// nfgenmsg is the netfilter header after nlmsghdr.
type nfgenmsg struct{ family uint8 }

func (m nfgenmsg) Len() int { return 4 }
func (m nfgenmsg) Serialize() []byte {
	return []byte{m.family, 0 /* NFNETLINK_V0 */, 0, 0}
}

// Dump streams the table through fn, one entry at a time, with the filter applied.
//
// ti-mo/conntrack v0.6.0's Dump and DumpFilter return a slice: the library first reads every
// netlink message of the dump into memory, then decodes all flows, so a table of 262144
// entries needs hundreds of megabytes at once. Here the dump request is sent on a netlink
// socket of our own in the namespace and each message is decoded (with the library's decoder)
// and handed to fn as it arrives: memory stays at one receive buffer whatever the table size.
// The family and a mark are filtered by the kernel (CTA_MARK and CTA_MARK_MASK, Linux 4.x),
// the rest here.
func (c *Conntrack) Dump(ctx context.Context, f *ConntrackFilter, fn func(*ConntrackEntry) error) error {
	return c.dump(ctx, f, func(_ *conntrack.Flow, e *ConntrackEntry) error { return fn(e) })
}

// dump is Dump that also hands fn the library's flow, which goes back to the library (to
// delete the entry) with all the entry leaves out, such as the type of an ICMP tuple.
func (c *Conntrack) dump(ctx context.Context, f *ConntrackFilter, fn func(*conntrack.Flow, *ConntrackEntry) error) error {
	sock, err := c.ns.socket(unix.NETLINK_NETFILTER)
	if err != nil {
		return err
	}
	defer sock.Close()
	// The dump is only as fast as its reader; a larger buffer lets the kernel run ahead.
	_ = unix.SetsockoptInt(sock.GetFd(), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)

	req := nl.NewNetlinkRequest(nfnlSubsysCTNetlink<<8|ipctnlMsgCTGet, unix.NLM_F_DUMP)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: {Socket: sock}}
	var fam uint8 // AF_UNSPEC dumps both families
	if f != nil {
		fam = uint8(f.Family)
	}
	req.AddData(nfgenmsg{family: fam})
	if f != nil && f.Mark != nil {
		req.AddData(nl.NewRtAttr(ctaMark, binary.BigEndian.AppendUint32(nil, f.Mark.Value)))
		req.AddData(nl.NewRtAttr(ctaMarkMask, binary.BigEndian.AppendUint32(nil, f.Mark.Mask)))
	}
	var cbErr error
	n := 0
	err = req.ExecuteIter(unix.NETLINK_NETFILTER, nfnlSubsysCTNetlink<<8|ipctnlMsgCTNew, func(m []byte) bool {
		if n++; n%1024 == 0 && ctx.Err() != nil {
			cbErr = ctx.Err()
			return false
		}
		ev, err := decodeEvent(m, 0)
		if err != nil {
			cbErr = fmt.Errorf("decoding a conntrack entry: %w", err)
			return false
		}
		e := convertFlow(ev.Flow)
		if !f.Match(&e) {
			return true
		}
		if err := fn(ev.Flow, &e); err != nil {
			cbErr = err
			return false
		}
		return true
	})
	if err == nil {
		err = cbErr
	}
	if err != nil {
		return fmt.Errorf("dumping conntrack of %s: %w", c.ns, capErr("reading conntrack", "CAP_NET_ADMIN", err))
	}
	return nil
}

// decodeEvent decodes the payload of a ctnetlink message (after nlmsghdr) with ti-mo's decoder;
// the event it returns carries a flow.
func decodeEvent(data []byte, flags uint16) (conntrack.Event, error) {
	msg := mdnetlink.Message{
		Header: mdnetlink.Header{Type: mdnetlink.HeaderType(nfnlSubsysCTNetlink<<8 | ipctnlMsgCTNew), Flags: mdnetlink.HeaderFlags(flags)},
		Data:   data,
	}
	var ev conntrack.Event
	if err := ev.Unmarshal(msg); err != nil {
		return ev, err
	}
	if ev.Flow == nil {
		return ev, errors.New("message carries no flow")
	}
	return ev, nil
}

// decodeFlow decodes a ctnetlink message into an event of the table.
func decodeFlow(data []byte, flags uint16) (ConntrackEvent, error) {
	ev, err := decodeEvent(data, flags)
	if err != nil {
		return ConntrackEvent{}, err
	}
	out := ConntrackEvent{Entry: convertFlow(ev.Flow)}
	switch ev.Type {
	case conntrack.EventNew:
		out.Type = EventNew
	case conntrack.EventUpdate:
		out.Type = EventUpdate
	case conntrack.EventDestroy:
		out.Type = EventDestroy
	}
	return out, nil
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

// ConntrackEvent is a change of the table.
type ConntrackEvent struct {
	Type  string         `json:"type"`
	Time  time.Time      `json:"time"`
	Entry ConntrackEntry `json:"entry"`
	Lost  int            `json:"lost,omitempty"`
}

// WatchConntrack calls fn for every change of the table that passes the filter, until ctx
// ends or fn fails. Events the kernel could not deliver (its socket buffer overflowed) are
// reported as EventLost and the watch goes on; ti-mo's Listen would stop on them instead.
func WatchConntrack(ctx context.Context, ns Namespace, f *ConntrackFilter, fn func(ConntrackEvent) error) error {
	var sock *nl.NetlinkSocket
	err := ns.Do(func() error {
		var err error
		sock, err = nl.Subscribe(unix.NETLINK_NETFILTER,
			uint(netfilter.GroupCTNew), uint(netfilter.GroupCTUpdate), uint(netfilter.GroupCTDestroy))
		return err
	})
	if err != nil {
		return fmt.Errorf("watching conntrack in %s: %w", ns, capErr("watching conntrack", "CAP_NET_ADMIN", err))
	}
	defer sock.Close()
	// SO_RCVBUFFORCE goes past rmem_max when privileged; the plain one is the fallback.
	if unix.SetsockoptInt(sock.GetFd(), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
		_ = unix.SetsockoptInt(sock.GetFd(), unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	// Wake up now and then to notice that ctx ended.
	if err := sock.SetReceiveTimeout(&unix.Timeval{Usec: 200000}); err != nil {
		return fmt.Errorf("watching conntrack: %w", err)
	}
	for ctx.Err() == nil {
		msgs, _, err := sock.Receive()
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOBUFS):
			if err := fn(ConntrackEvent{Type: EventLost, Time: time.Now(), Lost: 1}); err != nil {
				return err
			}
			continue
		case errors.Is(err, os.ErrClosed):
			return nil
		case err != nil:
			return fmt.Errorf("watching conntrack in %s: %w", ns, err)
		}
		now := time.Now()
		for _, m := range msgs {
			if m.Header.Type>>8 != nfnlSubsysCTNetlink {
				continue
			}
			ev, err := decodeFlow(m.Data, m.Header.Flags)
			if err != nil {
				// One message the decoder does not understand must not end the watch.
				continue
			}
			// The type comes from the message: NEW with NLM_F_CREATE|EXCL is a new entry,
			// NEW without them an update, DELETE a destroyed entry.
			if m.Header.Type&0xff != ipctnlMsgCTNew {
				ev.Type = EventDestroy
			}
			ev.Time = now
			if !f.Match(&ev.Entry) {
				continue
			}
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// ConntrackCPUStats are the per-CPU counters of conntrack -S. Drop, EarlyDrop and
// InsertFailed growing mean the table is full or racing: packets are being dropped.
type ConntrackCPUStats struct {
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

// ConntrackStats describes the table: how full it is and what it dropped.
type ConntrackStats struct {
	Count int `json:"count"`
	Max   int `json:"max"`
	// Buckets is the hash table size (nf_conntrack_buckets).
	Buckets int                 `json:"buckets,omitempty"`
	CPUs    []ConntrackCPUStats `json:"cpus,omitempty"`
	Total   ConntrackCPUStats   `json:"total"`
	// Unavailable says why the per-CPU counters could not be read (no CAP_NET_ADMIN, ...):
	// the count and maximum come from sysctls, which anyone may read.
	Unavailable string `json:"unavailable,omitempty"`
}

// Full reports whether the table is at its maximum.
func (s *ConntrackStats) Full() bool { return s.Max > 0 && s.Count >= s.Max }

// ReadConntrackStats reads the table's size from sysctls and, when permitted, the per-CPU
// counters over ctnetlink. It fails only when conntrack is absent from the kernel.
func ReadConntrackStats(ns Namespace) (ConntrackStats, error) {
	var s ConntrackStats
	err := ns.Do(func() error {
		for key, dst := range map[string]*int{
			model.SysctlConntrackCount:           &s.Count,
			model.SysctlConntrackMax:             &s.Max,
			"net.netfilter.nf_conntrack_buckets": &s.Buckets,
		} {
			b, err := os.ReadFile(SysctlPath(key))
			if err != nil {
				return fmt.Errorf("reading sysctl %s: %w", key, err)
			}
			n, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				return fmt.Errorf("reading sysctl %s: %q is not a number", key, b)
			}
			*dst = n
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return s, fmt.Errorf("reading conntrack statistics of %s: connection tracking is not loaded (no %s): %w", ns, SysctlPath(model.SysctlConntrackCount), err)
	}
	if err != nil {
		return s, fmt.Errorf("reading conntrack statistics of %s: %w", ns, err)
	}
	c, err := OpenConntrack(ns)
	if err == nil {
		defer c.Close()
		var cpus []conntrack.Stats
		if cpus, err = c.conn.Stats(); err == nil {
			for _, st := range cpus {
				cs := ConntrackCPUStats{CPU: int(st.CPUID), Found: st.Found, Invalid: st.Invalid, Insert: st.Insert,
					InsertFailed: st.InsertFailed, Drop: st.Drop, EarlyDrop: st.EarlyDrop, Error: st.Error, SearchRestart: st.SearchRestart}
				s.CPUs = append(s.CPUs, cs)
				s.Total.Found += cs.Found
				s.Total.Invalid += cs.Invalid
				s.Total.Insert += cs.Insert
				s.Total.InsertFailed += cs.InsertFailed
				s.Total.Drop += cs.Drop
				s.Total.EarlyDrop += cs.EarlyDrop
				s.Total.Error += cs.Error
				s.Total.SearchRestart += cs.SearchRestart
			}
			s.Total.CPU = -1
			// The netlink count is exact at this instant; the sysctl was read a moment ago.
			if g, gerr := c.conn.StatsGlobal(); gerr == nil {
				s.Count = int(g.Entries)
				if g.MaxEntries > 0 {
					s.Max = int(g.MaxEntries)
				}
			}
		}
	}
	if err != nil {
		s.Unavailable = capErr("reading conntrack drop counters", "CAP_NET_ADMIN", err).Error()
	}
	return s, nil
}
