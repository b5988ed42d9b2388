package nftrace

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel/dropwatch"
)

// Trace attributes newer than golang.org/x/sys knows (Linux 6.16): the packet's conntrack
// entry.
const (
	attrTraceCtID        = 18
	attrTraceCtDirection = 19
	attrTraceCtStatus    = 20
	attrTraceCtState     = 21
)

// trace is one NFT_MSG_TRACE message, decoded.
type trace struct {
	family       uint8
	id           uint32
	typ          uint32
	table, chain string
	handle       uint64
	verdict      int32
	hasVerdict   bool
	target       string
	policy       uint32
	hasPolicy    bool
	iif, oif     uint32
	mark         uint32
	nfproto      uint32
	network      []byte
	transport    []byte
	ctID         uint32
	hasCt        bool
	ctDirection  uint8
}

// decodeTrace decodes the payload of an NFT_MSG_TRACE message: struct nfgenmsg, then the
// NFTA_TRACE_* attributes (integers in network order).
func decodeTrace(data []byte) (trace, error) {
	var t trace
	if len(data) < 4 {
		return t, fmt.Errorf("trace message of %d bytes", len(data))
	}
	t.family = data[0]
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return t, fmt.Errorf("decoding a trace message: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_TRACE_TABLE:
			t.table = ad.String()
		case unix.NFTA_TRACE_CHAIN:
			t.chain = ad.String()
		case unix.NFTA_TRACE_RULE_HANDLE:
			t.handle = ad.Uint64()
		case unix.NFTA_TRACE_TYPE:
			t.typ = ad.Uint32()
		case unix.NFTA_TRACE_ID:
			t.id = ad.Uint32()
		case unix.NFTA_TRACE_VERDICT:
			t.hasVerdict = true
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					switch nad.Type() {
					case unix.NFTA_VERDICT_CODE:
						t.verdict = int32(nad.Uint32())
					case unix.NFTA_VERDICT_CHAIN:
						t.target = nad.String()
					}
				}
				return nil
			})
		case unix.NFTA_TRACE_POLICY:
			t.policy, t.hasPolicy = ad.Uint32(), true
		case unix.NFTA_TRACE_IIF:
			t.iif = ad.Uint32()
		case unix.NFTA_TRACE_OIF:
			t.oif = ad.Uint32()
		case unix.NFTA_TRACE_MARK:
			t.mark = ad.Uint32()
		case unix.NFTA_TRACE_NFPROTO:
			t.nfproto = ad.Uint32()
		case unix.NFTA_TRACE_NETWORK_HEADER:
			t.network = ad.Bytes()
		case unix.NFTA_TRACE_TRANSPORT_HEADER:
			t.transport = ad.Bytes()
		case attrTraceCtID:
			t.ctID, t.hasCt = ad.Uint32(), true
		case attrTraceCtDirection:
			t.ctDirection = ad.Uint8()
		}
	}
	if err := ad.Err(); err != nil {
		return t, fmt.Errorf("decoding a trace message: %w", err)
	}
	return t, nil
}

// familyName names an nf_tables family as nft does.
func familyName(f uint8) string {
	switch f {
	case unix.NFPROTO_INET:
		return "inet"
	case unix.NFPROTO_IPV4:
		return "ip"
	case unix.NFPROTO_IPV6:
		return "ip6"
	case unix.NFPROTO_ARP:
		return "arp"
	case unix.NFPROTO_BRIDGE:
		return "bridge"
	case unix.NFPROTO_NETDEV:
		return "netdev"
	}
	return fmt.Sprintf("family %d", f)
}

// Netfilter verdicts (linux/netfilter.h), which golang.org/x/sys does not define.
const (
	nfDrop        = 0
	nfAccept      = 1
	nfStolen      = 2
	nfQueue       = 3
	nfRepeat      = 4
	nfStop        = 5
	nfVerdictMask = 0xff
)

// verdictName names a verdict as nft does.
func verdictName(v int32) string {
	switch v {
	case unix.NFT_CONTINUE:
		return "continue"
	case unix.NFT_BREAK:
		return "break"
	case unix.NFT_JUMP:
		return "jump"
	case unix.NFT_GOTO:
		return "goto"
	case unix.NFT_RETURN:
		return "return"
	}
	switch uint32(v) & nfVerdictMask {
	case nfDrop:
		return "drop"
	case nfAccept:
		return "accept"
	case nfStolen:
		return "stolen"
	case nfQueue:
		return "queue"
	case nfRepeat:
		return "repeat"
	case nfStop:
		return "stop"
	}
	return fmt.Sprintf("verdict %d", v)
}

// typeName names a trace type.
func typeName(t uint32) string {
	switch t {
	case unix.NFT_TRACETYPE_RULE:
		return "rule"
	case unix.NFT_TRACETYPE_POLICY:
		return "policy"
	case unix.NFT_TRACETYPE_RETURN:
		return "return"
	}
	return "unspec"
}

// decodePacket reads the packet from the headers the trace carries: the network header
// (with its options or extension headers) and the first bytes of the transport header.
func decodePacket(network, transport []byte) dropwatch.Packet {
	var p dropwatch.Packet
	if len(network) < 1 {
		return p
	}
	var src, dst netip.Addr
	switch network[0] >> 4 {
	case 4:
		if len(network) < 20 {
			return p
		}
		p.L3, p.Proto = "ipv4", network[9]
		p.Length = int(binary.BigEndian.Uint16(network[2:]))
		src, dst = netip.AddrFrom4([4]byte(network[12:16])), netip.AddrFrom4([4]byte(network[16:20]))
		if binary.BigEndian.Uint16(network[6:])&0x1fff != 0 {
			transport = nil // a later fragment
		}
	case 6:
		if len(network) < 40 {
			return p
		}
		p.L3, p.Proto = "ipv6", network[6]
		p.Length = 40 + int(binary.BigEndian.Uint16(network[4:]))
		src, dst = netip.AddrFrom16([16]byte(network[8:24])), netip.AddrFrom16([16]byte(network[24:40]))
		// The transport header follows the extension headers, which the trace includes in
		// the network header: the protocol is the last "next header".
		p.Proto = lastNextHeader(network)
	default:
		return p
	}
	var sport, dport uint16
	switch p.Proto {
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP:
		if len(transport) >= 4 {
			sport, dport = binary.BigEndian.Uint16(transport), binary.BigEndian.Uint16(transport[2:])
		}
		if p.Proto == unix.IPPROTO_TCP && len(transport) >= 14 {
			p.Flags = transport[13]
		}
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		if len(transport) >= 2 {
			p.ICMPType, p.ICMPCode = transport[0], transport[1]
		}
		if dropwatch.IsEcho(p.Proto, p.ICMPType) && len(transport) >= 6 {
			p.ICMPID = binary.BigEndian.Uint16(transport[4:])
		}
	}
	p.Src, p.Dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	return p
}

// lastNextHeader follows an IPv6 header's extension headers within b.
func lastNextHeader(b []byte) uint8 {
	next, off := b[6], 40
	for range 8 {
		switch next {
		case unix.IPPROTO_HOPOPTS, unix.IPPROTO_ROUTING, unix.IPPROTO_DSTOPTS:
			if off+2 > len(b) {
				return next
			}
			next, off = b[off], off+(int(b[off+1])+1)*8
		case unix.IPPROTO_FRAGMENT:
			if off+8 > len(b) {
				return next
			}
			next, off = b[off], off+8
		default:
			return next
		}
	}
	return next
}
