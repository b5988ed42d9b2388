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

	ct "roundtrip/engine/conntrack"
	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// The values of the table live in engine/conntrack; these names keep the adapter's callers
// as they were.
type (
	ConntrackTuple    = ct.Tuple
	ConntrackStatus   = ct.Status
	ConntrackEntry    = ct.Entry
	ConntrackFilter   = ct.Filter
	ConntrackEvent    = ct.Event
	ConntrackCPUStats = ct.CPUStats
	ConntrackStats    = ct.Stats
)

// Status bits and event types (engine/conntrack).
const (
	CTStatusExpected  = ct.StatusExpected
	CTStatusSeenReply = ct.StatusSeenReply
	CTStatusAssured   = ct.StatusAssured
	CTStatusConfirmed = ct.StatusConfirmed
	CTStatusSrcNAT    = ct.StatusSrcNAT
	CTStatusDstNAT    = ct.StatusDstNAT
	CTStatusDying     = ct.StatusDying
	CTStatusOffload   = ct.StatusOffload

	EventNew     = ct.EventNew
	EventUpdate  = ct.EventUpdate
	EventDestroy = ct.EventDestroy
	EventLost    = ct.EventLost
)

// Endpoint is ct.Endpoint.
func Endpoint(proto uint8, ap netip.AddrPort) string { return ct.Endpoint(proto, ap) }

// ParseConntrackStatus is ct.ParseStatus.
func ParseConntrackStatus(name string) (set, clear ConntrackStatus, err error) {
	return ct.ParseStatus(name)
}

// ParseTCPState is ct.ParseTCPState.
func ParseTCPState(s string) (string, error) { return ct.ParseTCPState(s) }

// ICMPEchoPorts is ct.ICMPEchoPorts.
func ICMPEchoPorts(typ uint8, id uint16, v6 bool) (uint16, uint16) {
	return ct.ICMPEchoPorts(typ, id, v6)
}

func icmpPorts(typ uint8, id uint16, v6 bool) (uint16, uint16) { return ct.ICMPEchoPorts(typ, id, v6) }

var tcpStates = ct.TCPStates

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
	return c.dump(ctx, f, false, func(_ *conntrack.Flow, e *ConntrackEntry) error { return fn(e) })
}

// dump is Dump that, withFlow, also hands fn the library's flow, which goes back to the library
// (to delete the entry) with all the entry leaves out, such as the type of an ICMP tuple.
func (c *Conntrack) dump(ctx context.Context, f *ConntrackFilter, withFlow bool, fn func(*conntrack.Flow, *ConntrackEntry) error) error {
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
		// Without the library's flow wanted, the entry is decoded straight from the message
		// (no allocation); ti-mo decodes what that decoder does not expect.
		var flow *conntrack.Flow
		e, ok := ConntrackEntry{}, false
		if !withFlow {
			e, ok = decodeEntry(m)
		}
		if !ok {
			ev, err := decodeEvent(m, 0)
			if err != nil {
				cbErr = fmt.Errorf("decoding a conntrack entry: %w", err)
				return false
			}
			flow, e = ev.Flow, convertFlow(ev.Flow)
		}
		if !f.Match(&e) {
			return true
		}
		if err := fn(flow, &e); err != nil {
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
