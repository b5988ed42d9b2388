package dropwatch

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"roundtrip/engine/capture"
)

// Packet is what the kernel's headers said about a dropped packet, in the shape of
// diagnose.Packet so that the two join.
type Packet struct {
	// L3 is "ipv4" or "ipv6", or for another packet its ethertype ("arp", "0x88cc").
	L3 string
	// Proto is the IP protocol; 0 when the packet is not IP or its header was unreadable.
	Proto    uint8
	Src, Dst netip.AddrPort // ports for TCP and UDP only
	// Flags are the TCP flags as in the TCP header.
	Flags uint8
	// ICMPType and ICMPCode for ICMP and ICMPv6; ICMPID for echo requests and replies.
	ICMPType, ICMPCode uint8
	ICMPID             uint16
	// Length is the packet's length in the kernel at the drop (skb->len): from the network
	// header on, or with the link-layer header where the drop happened before it was pulled.
	Length int
}

// FlagString writes TCP flags as tcpdump does: S, F, R, P, and "." for ACK.
func FlagString(f uint8) string { return string(capture.AppendTCPFlags(nil, f)) }

func endpoint(proto uint8, ap netip.AddrPort) string {
	if proto == unix.IPPROTO_TCP || proto == unix.IPPROTO_UDP {
		return ap.String()
	}
	return ap.Addr().String()
}

// String describes the packet on one line: "tcp 10.0.0.1:5000 > 10.0.0.2:80 [S] len 60".
func (p Packet) String() string { return string(p.AppendText(nil)) }

// AppendText appends String's text, without fmt (a capture may print a line a drop).
func (p Packet) AppendText(b []byte) []byte {
	if !p.Src.Addr().IsValid() {
		b = append(b, p.L3...)
		b = append(b, " len "...)
		return strconv.AppendInt(b, int64(p.Length), 10)
	}
	b = append(b, ProtoName(p.Proto)...)
	b = append(b, ' ')
	b = appendEndpoint(b, p.Proto, p.Src)
	b = append(b, " > "...)
	b = appendEndpoint(b, p.Proto, p.Dst)
	switch p.Proto {
	case unix.IPPROTO_TCP:
		b = append(b, " ["...)
		b = append(b, FlagString(p.Flags)...)
		b = append(b, ']')
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		b = append(b, " type "...)
		b = strconv.AppendUint(b, uint64(p.ICMPType), 10)
		b = append(b, " code "...)
		b = strconv.AppendUint(b, uint64(p.ICMPCode), 10)
	}
	b = append(b, " len "...)
	return strconv.AppendInt(b, int64(p.Length), 10)
}

func appendEndpoint(b []byte, proto uint8, ap netip.AddrPort) []byte {
	if proto == unix.IPPROTO_TCP || proto == unix.IPPROTO_UDP {
		return ap.AppendTo(b)
	}
	return ap.Addr().AppendTo(b)
}

// MarshalJSON writes the packet as {"l3":"ipv4","proto":"tcp","src":"10.0.0.1:5000",...}.
func (p Packet) MarshalJSON() ([]byte, error) {
	type icmp struct {
		Type uint8  `json:"type"`
		Code uint8  `json:"code"`
		ID   uint16 `json:"id,omitempty"`
	}
	v := struct {
		L3    string `json:"l3"`
		Proto string `json:"proto,omitempty"`
		Src   string `json:"src,omitempty"`
		Dst   string `json:"dst,omitempty"`
		Flags string `json:"flags,omitempty"`
		ICMP  *icmp  `json:"icmp,omitempty"`
		Len   int    `json:"len"`
	}{L3: p.L3, Len: p.Length}
	if p.Src.Addr().IsValid() {
		v.Proto = ProtoName(p.Proto)
		v.Src, v.Dst = endpoint(p.Proto, p.Src), endpoint(p.Proto, p.Dst)
	}
	switch p.Proto {
	case unix.IPPROTO_TCP:
		v.Flags = FlagString(p.Flags)
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		v.ICMP = &icmp{p.ICMPType, p.ICMPCode, p.ICMPID}
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads what MarshalJSON wrote (a drop read back from a summary).
func (p *Packet) UnmarshalJSON(b []byte) error {
	var v struct {
		L3    string `json:"l3"`
		Proto string `json:"proto"`
		Src   string `json:"src"`
		Dst   string `json:"dst"`
		Flags string `json:"flags"`
		ICMP  *struct {
			Type uint8  `json:"type"`
			Code uint8  `json:"code"`
			ID   uint16 `json:"id"`
		} `json:"icmp"`
		Len int `json:"len"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = Packet{L3: v.L3, Length: v.Len}
	if v.Proto != "" {
		n, ok := protoNumber(v.Proto)
		if !ok {
			return fmt.Errorf("dropped packet: unknown protocol %q", v.Proto)
		}
		p.Proto = n
	}
	var err error
	if p.Src, err = parseEndpoint(v.Src); err != nil {
		return err
	}
	if p.Dst, err = parseEndpoint(v.Dst); err != nil {
		return err
	}
	p.Flags = capture.ParseTCPFlags(v.Flags)
	if v.ICMP != nil {
		p.ICMPType, p.ICMPCode, p.ICMPID = v.ICMP.Type, v.ICMP.Code, v.ICMP.ID
	}
	return nil
}

// protoNumber is the inverse of ProtoName.
func protoNumber(s string) (uint8, bool) {
	if n, ok := strings.CutPrefix(s, "proto "); ok {
		v, err := strconv.ParseUint(n, 10, 8)
		return uint8(v), err == nil
	}
	for p := 0; p < 256; p++ {
		if ProtoName(uint8(p)) == s {
			return uint8(p), true
		}
	}
	return 0, false
}

// parseEndpoint reads "addr:port", "[v6]:port" or a bare address; "" is none.
func parseEndpoint(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dropped packet: bad endpoint %q", s)
	}
	return netip.AddrPortFrom(a, 0), nil
}

// IsEcho says whether an ICMP or ICMPv6 message is an echo request or reply: the only ones
// with an id, which conntrack uses as the flow's port.
func IsEcho(proto, icmpType uint8) bool {
	return proto == unix.IPPROTO_ICMP && (icmpType == 0 || icmpType == 8) ||
		proto == unix.IPPROTO_ICMPV6 && (icmpType == 128 || icmpType == 129)
}

// l3Name names an ethertype.
func l3Name(ethertype uint16) string {
	switch ethertype {
	case unix.ETH_P_IP:
		return "ipv4"
	case unix.ETH_P_IPV6:
		return "ipv6"
	case unix.ETH_P_ARP:
		return "arp"
	}
	return fmt.Sprintf("0x%04x", ethertype)
}

// packetOf converts the BPF program's view of the packet.
func packetOf(e *bpfEvent) Packet {
	p := Packet{L3: l3Name(e.L3proto), Length: int(e.Len)}
	switch e.Family {
	case 4:
		p.L3 = "ipv4"
	case 6:
		p.L3 = "ipv6"
	default:
		return p
	}
	p.Proto = e.Proto
	var sport, dport uint16
	if e.Proto == unix.IPPROTO_TCP || e.Proto == unix.IPPROTO_UDP {
		sport, dport = e.Sport, e.Dport
	}
	p.Src = netip.AddrPortFrom(wordsAddr(e.Family, e.Saddr), sport)
	p.Dst = netip.AddrPortFrom(wordsAddr(e.Family, e.Daddr), dport)
	switch e.Proto {
	case unix.IPPROTO_TCP:
		p.Flags = e.TcpFlags
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		p.ICMPType, p.ICMPCode = e.IcmpType, e.IcmpCode
		if IsEcho(e.Proto, p.ICMPType) {
			p.ICMPID = e.IcmpId
		}
	}
	return p
}
