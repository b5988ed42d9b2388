package kernel

import (
	"encoding/binary"
	"net/netip"

	"roundtrip/engine/inet"
)

// ctnetlink attribute types decodeEntry reads (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
const (
	ctaTupleOrig     = 1
	ctaTupleReply    = 2
	ctaStatus        = 3
	ctaProtoInfo     = 4
	ctaTimeout       = 7
	ctaCountersOrig  = 9
	ctaCountersReply = 10
	ctaID            = 12
	ctaZone          = 18

	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaTupleZone  = 3

	ctaProtoNum     = 1
	ctaProtoSrcPort = 2
	ctaProtoDstPort = 3
	ctaProtoICMPID  = 4
	ctaProtoICMPTyp = 5
	ctaProtoICMPCod = 6
	ctaProtoICMP6ID = 7
	ctaProtoICMP6Ty = 8
	ctaProtoICMP6Co = 9

	ctaProtoInfoTCP      = 1
	ctaProtoInfoTCPState = 1
	ctaProtoInfoTCPMax   = 5 // TCP protoinfo children are 1..5

	ctaCountersPackets = 1
	ctaCountersBytes   = 2
	ctaCountersPad     = 5 // CTA_COUNTERS_PAD
)

const nlaTypeMask = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER

// nla iterates over netlink attributes.
type nla struct {
	b   []byte
	typ uint16
	nst bool // NLA_F_NESTED
	v   []byte
	bad bool
}

func (a *nla) next() bool {
	if len(a.b) < 4 {
		a.bad = a.bad || len(a.b) != 0
		return false
	}
	l := int(binary.NativeEndian.Uint16(a.b))
	t := binary.NativeEndian.Uint16(a.b[2:])
	if l < 4 || l > len(a.b) {
		a.bad = true
		return false
	}
	a.typ, a.nst, a.v = t&nlaTypeMask, t&0x8000 != 0, a.b[4:l]
	a.b = a.b[min((l+3)&^3, len(a.b)):]
	return true
}

// decodeEntry decodes a ctnetlink message's payload (nfgenmsg and attributes, as a dump
// delivers it) straight into an entry, as ti-mo's decoder and convertFlow together would, with
// no allocation. ok is false for anything it does not expect (an attribute ti-mo would refuse,
// a size it would not accept); the caller then decodes with ti-mo, which says what is wrong.
func decodeEntry(data []byte) (e ConntrackEntry, ok bool) {
	if len(data) < 4 {
		return e, false
	}
	a := nla{b: data[4:]}
	var origSrc netip.Addr
	tcpState := -1
	for a.next() {
		switch a.typ {
		case ctaTupleOrig, ctaTupleReply:
			if !a.nst {
				return e, false
			}
			t, src, ok := decodeTuple(a.v)
			if !ok {
				return e, false
			}
			if a.typ == ctaTupleOrig {
				e.Orig, origSrc = t, src
			} else {
				e.Reply = t
			}
		case ctaStatus:
			v, ok := be32(a.v)
			if !ok {
				return e, false
			}
			e.Status = ConntrackStatus(v)
		case ctaTimeout:
			v, ok := be32(a.v)
			if !ok {
				return e, false
			}
			e.Timeout = v
		case ctaID:
			v, ok := be32(a.v)
			if !ok {
				return e, false
			}
			e.ID = v
		case ctaMark:
			v, ok := be32(a.v)
			if !ok {
				return e, false
			}
			e.Mark = v
		case ctaZone:
			if len(a.v) != 2 {
				return e, false
			}
			e.Zone = binary.BigEndian.Uint16(a.v)
		case ctaCountersOrig, ctaCountersReply:
			if !a.nst {
				return e, false
			}
			p, b, ok := decodeCounters(a.v)
			if !ok {
				return e, false
			}
			if a.typ == ctaCountersOrig {
				e.OrigPackets, e.OrigBytes = p, b
			} else {
				e.ReplyPackets, e.ReplyBytes = p, b
			}
		case ctaProtoInfo:
			if !a.nst {
				return e, false
			}
			s, ok := decodeTCPState(a.v)
			if !ok {
				return e, false
			}
			tcpState = s
		}
	}
	if a.bad || !origSrc.IsValid() {
		return e, false
	}
	e.Family = inet.V4
	if origSrc.Is6() && !origSrc.Is4In6() {
		e.Family = inet.V6
	}
	if tcpState >= 0 && tcpState < len(tcpStates) {
		e.TCPState = tcpStates[tcpState]
	}
	return e, true
}

func be32(v []byte) (uint32, bool) {
	if len(v) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

// decodeTuple decodes CTA_TUPLE_*, as convertTuple converts ti-mo's; src is the source
// address before it is unmapped (the family is decided on it).
func decodeTuple(b []byte) (t ConntrackTuple, src netip.Addr, ok bool) {
	var (
		dst              netip.Addr
		sp, dp, icmpID   uint16
		icmpType         uint8
		icmp4, icmp6     bool
		haveIP, haveProt bool
	)
	a := nla{b: b}
	n := 0
	for a.next() {
		n++
		switch a.typ {
		case ctaTupleIP:
			if !a.nst {
				return t, src, false
			}
			ip := nla{b: a.v}
			children := 0
			for ip.next() {
				children++
				addr, ok := netip.AddrFromSlice(ip.v)
				if !ok {
					return t, src, false
				}
				switch ip.typ {
				case 1, 3: // CTA_IP_V4_SRC, CTA_IP_V6_SRC
					src = addr
				case 2, 4:
					dst = addr
				default:
					return t, src, false
				}
			}
			if ip.bad || children != 2 {
				return t, src, false
			}
			haveIP = true
		case ctaTupleProto:
			if !a.nst {
				return t, src, false
			}
			p := nla{b: a.v}
			children := 0
			for p.next() {
				children++
				switch p.typ {
				case ctaProtoNum:
					if len(p.v) != 1 {
						return t, src, false
					}
					t.Proto = p.v[0]
					icmp4, icmp6 = t.Proto == 1, t.Proto == 58
				case ctaProtoSrcPort, ctaProtoDstPort, ctaProtoICMPID, ctaProtoICMP6ID:
					if len(p.v) != 2 {
						return t, src, false
					}
					v := binary.BigEndian.Uint16(p.v)
					switch p.typ {
					case ctaProtoSrcPort:
						sp = v
					case ctaProtoDstPort:
						dp = v
					default:
						icmpID = v
					}
				case ctaProtoICMPTyp, ctaProtoICMP6Ty, ctaProtoICMPCod, ctaProtoICMP6Co:
					if len(p.v) != 1 {
						return t, src, false
					}
					if p.typ == ctaProtoICMPTyp || p.typ == ctaProtoICMP6Ty {
						icmpType = p.v[0]
					}
				default:
					return t, src, false
				}
			}
			if p.bad || children == 0 {
				return t, src, false
			}
			haveProt = true
		case ctaTupleZone:
			if len(a.v) != 2 {
				return t, src, false
			}
		default:
			return t, src, false
		}
	}
	if a.bad || n < 2 || !haveIP || !haveProt {
		return t, src, false
	}
	if icmp4 || icmp6 {
		sp, dp = icmpPorts(icmpType, icmpID, icmp6)
	}
	t.Src = netip.AddrPortFrom(src.Unmap(), sp)
	t.Dst = netip.AddrPortFrom(dst.Unmap(), dp)
	return t, src, true
}

func decodeCounters(b []byte) (packets, bytes uint64, ok bool) {
	a := nla{b: b}
	n := 0
	for a.next() {
		n++
		switch a.typ {
		case ctaCountersPackets, ctaCountersBytes:
			if len(a.v) != 8 {
				return 0, 0, false
			}
			if a.typ == ctaCountersPackets {
				packets = binary.BigEndian.Uint64(a.v)
			} else {
				bytes = binary.BigEndian.Uint64(a.v)
			}
		case ctaCountersPad:
		default:
			return 0, 0, false
		}
	}
	return packets, bytes, !a.bad && n >= 2
}

// decodeTCPState returns the TCP state of CTA_PROTOINFO, -1 when it holds none; protoinfo
// of other protocols (DCCP, SCTP) is left to ti-mo.
func decodeTCPState(b []byte) (int, bool) {
	a := nla{b: b}
	if !a.next() || a.typ != ctaProtoInfoTCP || !a.nst || a.next() || a.bad {
		return -1, false
	}
	state := -1
	t := nla{b: firstValue(b)}
	n := 0
	for t.next() {
		n++
		switch {
		case t.typ == ctaProtoInfoTCPState:
			if len(t.v) != 1 {
				return -1, false
			}
			state = int(t.v[0])
		case t.typ > ctaProtoInfoTCPMax || t.typ == 0:
			return -1, false
		}
	}
	if t.bad || n == 0 {
		return -1, false
	}
	return state, true
}

// firstValue returns the value of the first attribute in b.
func firstValue(b []byte) []byte {
	a := nla{b: b}
	if !a.next() {
		return nil
	}
	return a.v
}
