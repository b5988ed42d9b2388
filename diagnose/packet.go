package diagnose

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"roundtrip/engine/capture"
	"roundtrip/engine/conntrack"
	"roundtrip/engine/inet"
)

// Packet is a captured packet, decoded: where it was seen and what it carries.
type Packet struct {
	Time   time.Time
	Iface  string
	Dir    capture.Direction
	Type   capture.PacketType
	Length int
	// Proto is the IP protocol; 0 for a packet that is not IP (then L3 names it, e.g. "arp").
	Proto    uint8
	L3       string
	Src, Dst netip.AddrPort // ports for TCP, UDP and SCTP only
	// TCP
	Flags    uint8
	Seq, Ack uint32
	Payload  int
	// ICMP and ICMPv6
	ICMPType, ICMPCode uint8
	ICMPID, ICMPSeq    uint16
	// Info is a one-line description of a non-IP packet (ARP who-has ...).
	Info string
	// Conn and Role are filled in by the correlator: the connection the packet belongs to and
	// whether it travels as its request or its reply.
	Conn int
	Role string
}

// TCP flags as in the TCP header.
const (
	tcpFIN = capture.TCPFIN
	tcpSYN = capture.TCPSYN
	tcpRST = capture.TCPRST
	tcpPSH = capture.TCPPSH
	tcpACK = capture.TCPACK
)

// Tuple is the packet's connection tuple, in conntrack's terms (ICMP echo ids as ports).
func (p *Packet) Tuple() conntrack.Tuple {
	t := conntrack.Tuple{Proto: p.Proto, Src: p.Src, Dst: p.Dst}
	if p.Proto == unix.IPPROTO_ICMP || p.Proto == unix.IPPROTO_ICMPV6 {
		sp, dp := conntrack.ICMPEchoPorts(p.ICMPType, p.ICMPID, p.Proto == unix.IPPROTO_ICMPV6)
		t.Src, t.Dst = netip.AddrPortFrom(p.Src.Addr(), sp), netip.AddrPortFrom(p.Dst.Addr(), dp)
	}
	return t
}

// isEcho reports whether an ICMP packet is an echo request or reply: the only ICMP that forms
// connections.
func (p *Packet) isEcho() bool {
	switch {
	case p.Proto == unix.IPPROTO_ICMP:
		return p.ICMPType == 8 || p.ICMPType == 0
	case p.Proto == unix.IPPROTO_ICMPV6:
		return p.ICMPType == 128 || p.ICMPType == 129
	}
	return false
}

// flagString writes TCP flags as tcpdump does: S, F, R, P, and "." for ACK.
func flagString(f uint8) string { return string(appendFlags(nil, f)) }

// What describes the packet's content: "tcp 10.0.0.1:5000 > 10.0.0.2:80 [S] seq 1 len 0".
func (p *Packet) What() string { return string(p.appendWhat(nil, false)) }

func icmpText(p *Packet) string { return string(appendICMP(nil, p)) }

// String is the packet as one line: time, interface, direction and content.
func (p *Packet) String() string { return string(p.appendText(nil, false)) }

// packetJSON is the stable JSON form of a packet.
type packetJSON struct {
	Time    time.Time          `json:"time"`
	Iface   string             `json:"iface"`
	Dir     capture.Direction  `json:"dir"`
	Type    capture.PacketType `json:"pkttype"`
	Length  int                `json:"len"`
	Proto   string             `json:"proto"`
	Src     string             `json:"src,omitempty"`
	Dst     string             `json:"dst,omitempty"`
	Flags   string             `json:"flags,omitempty"`
	Seq     *uint32            `json:"seq,omitempty"`
	Ack     *uint32            `json:"ack,omitempty"`
	Payload int                `json:"payload"`
	ICMP    string             `json:"icmp,omitempty"`
	// The ICMP header's fields, for ICMP packets only.
	ICMPType *uint8  `json:"icmp_type,omitempty"`
	ICMPCode *uint8  `json:"icmp_code,omitempty"`
	ICMPID   *uint16 `json:"icmp_id,omitempty"`
	ICMPSeq  *uint16 `json:"icmp_seq,omitempty"`
	Info     string  `json:"info,omitempty"`
	Conn     int     `json:"conn,omitempty"`
	Role     string  `json:"role,omitempty"`
}

// MarshalJSON writes the packet with addresses as text and only the fields of its protocol.
func (p Packet) MarshalJSON() ([]byte, error) {
	j := packetJSON{Time: p.Time, Iface: p.Iface, Dir: p.Dir, Type: p.Type, Length: p.Length,
		Payload: p.Payload, Info: p.Info, Conn: p.Conn, Role: p.Role, Proto: p.L3}
	if p.Proto != 0 {
		j.Proto = inet.ProtoName(int(p.Proto))
		j.Src, j.Dst = conntrack.Endpoint(p.Proto, p.Src), conntrack.Endpoint(p.Proto, p.Dst)
	}
	switch p.Proto {
	case unix.IPPROTO_TCP:
		j.Flags, j.Seq = flagString(p.Flags), &p.Seq
		if p.Flags&tcpACK != 0 {
			j.Ack = &p.Ack
		}
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		j.ICMP = icmpText(&p)
		j.ICMPType, j.ICMPCode, j.ICMPID, j.ICMPSeq = &p.ICMPType, &p.ICMPCode, &p.ICMPID, &p.ICMPSeq
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Packet) UnmarshalJSON(b []byte) error {
	var j packetJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*p = Packet{Time: j.Time, Iface: j.Iface, Dir: j.Dir, Type: j.Type, Length: j.Length, Payload: j.Payload,
		Info: j.Info, Conn: j.Conn, Role: j.Role}
	if j.Src == "" {
		p.L3 = j.Proto
		return nil
	}
	proto, err := inet.ProtoNumber(j.Proto)
	if err != nil {
		return fmt.Errorf("packet: %w", err)
	}
	p.Proto = uint8(proto)
	p.L3 = "ip"
	for _, ep := range []struct {
		s   string
		dst *netip.AddrPort
	}{{j.Src, &p.Src}, {j.Dst, &p.Dst}} {
		if ap, err := netip.ParseAddrPort(ep.s); err == nil {
			*ep.dst = ap
		} else if a, err := netip.ParseAddr(ep.s); err == nil {
			*ep.dst = netip.AddrPortFrom(a, 0)
		} else {
			return fmt.Errorf("packet: bad address %q", ep.s)
		}
	}
	if p.Src.Addr().Is6() {
		p.L3 = "ip6"
	}
	if j.Seq != nil {
		p.Seq = *j.Seq
	}
	if j.Ack != nil {
		p.Ack = *j.Ack
	}
	p.Flags = capture.ParseTCPFlags(j.Flags)
	if j.ICMPType != nil {
		p.ICMPType = *j.ICMPType
	}
	if j.ICMPCode != nil {
		p.ICMPCode = *j.ICMPCode
	}
	if j.ICMPID != nil {
		p.ICMPID = *j.ICMPID
	}
	if j.ICMPSeq != nil {
		p.ICMPSeq = *j.ICMPSeq
	}
	return nil
}

// decoder decodes captured frames with gopacket's DecodingLayerParser: no allocation per packet,
// one parser per first layer (Ethernet, or bare IPv4/IPv6 for tunnels).
type decoder struct {
	eth     layers.Ethernet
	dot1q   layers.Dot1Q
	arp     layers.ARP
	ip4     layers.IPv4
	ip6     layers.IPv6
	tcp     layers.TCP
	udp     layers.UDP
	icmp4   layers.ICMPv4
	icmp6   layers.ICMPv6
	echo6   layers.ICMPv6Echo
	payload gopacket.Payload
	parsers map[gopacket.LayerType]*gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
}

func newDecoder() *decoder {
	d := &decoder{parsers: map[gopacket.LayerType]*gopacket.DecodingLayerParser{}}
	for _, first := range []gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeIPv4, layers.LayerTypeIPv6} {
		p := gopacket.NewDecodingLayerParser(first, &d.eth, &d.dot1q, &d.arp, &d.ip4, &d.ip6, &d.tcp, &d.udp, &d.icmp4, &d.icmp6, &d.echo6, &d.payload)
		// Stop quietly at layers we do not decode (IPv6 extension headers, GRE, ...).
		p.IgnoreUnsupported = true
		d.parsers[first] = p
	}
	return d
}

// decode fills p from a captured packet. It returns false for a frame it cannot make sense of.
func (d *decoder) decode(kp *capture.Packet, p *Packet) bool {
	*p = Packet{Time: kp.Time, Iface: kp.Iface, Dir: kp.Dir, Type: kp.Type, Length: kp.Length}
	first := layers.LayerTypeEthernet
	if kp.LinkType == capture.LinkRawIP {
		if len(kp.Data) == 0 {
			return false
		}
		first = layers.LayerTypeIPv4
		if kp.Data[0]>>4 == 6 {
			first = layers.LayerTypeIPv6
		}
	}
	// A truncated packet still yields the layers before the cut.
	_ = d.parsers[first].DecodeLayers(kp.Data, &d.decoded)
	ok := false
	for _, lt := range d.decoded {
		switch lt {
		case layers.LayerTypeARP:
			p.L3, ok = "arp", true
			p.Info = arpText(&d.arp)
		case layers.LayerTypeIPv4:
			p.L3, ok = "ip", true
			p.Proto = uint8(d.ip4.Protocol)
			src, _ := netip.AddrFromSlice(d.ip4.SrcIP)
			dst, _ := netip.AddrFromSlice(d.ip4.DstIP)
			p.Src, p.Dst = netip.AddrPortFrom(src.Unmap(), 0), netip.AddrPortFrom(dst.Unmap(), 0)
		case layers.LayerTypeIPv6:
			p.L3, ok = "ip6", true
			p.Proto = uint8(d.ip6.NextHeader)
			src, _ := netip.AddrFromSlice(d.ip6.SrcIP)
			dst, _ := netip.AddrFromSlice(d.ip6.DstIP)
			p.Src, p.Dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
		case layers.LayerTypeTCP:
			p.Src = netip.AddrPortFrom(p.Src.Addr(), uint16(d.tcp.SrcPort))
			p.Dst = netip.AddrPortFrom(p.Dst.Addr(), uint16(d.tcp.DstPort))
			p.Seq, p.Ack, p.Payload = d.tcp.Seq, d.tcp.Ack, len(d.tcp.Payload)
			p.Flags = tcpFlags(&d.tcp)
		case layers.LayerTypeUDP:
			p.Src = netip.AddrPortFrom(p.Src.Addr(), uint16(d.udp.SrcPort))
			p.Dst = netip.AddrPortFrom(p.Dst.Addr(), uint16(d.udp.DstPort))
			p.Payload = len(d.udp.Payload)
		case layers.LayerTypeICMPv4:
			p.ICMPType, p.ICMPCode = d.icmp4.TypeCode.Type(), d.icmp4.TypeCode.Code()
			p.ICMPID, p.ICMPSeq = d.icmp4.Id, d.icmp4.Seq
		case layers.LayerTypeICMPv6:
			p.ICMPType, p.ICMPCode = d.icmp6.TypeCode.Type(), d.icmp6.TypeCode.Code()
		case layers.LayerTypeICMPv6Echo:
			p.ICMPID, p.ICMPSeq = d.echo6.Identifier, d.echo6.SeqNumber
		}
	}
	if !ok && len(kp.Data) >= 14 && kp.LinkType == capture.LinkEthernet {
		p.L3 = fmt.Sprintf("ethertype-0x%04x", uint16(kp.Data[12])<<8|uint16(kp.Data[13]))
		p.Info = p.L3
		return true
	}
	return ok
}

func tcpFlags(t *layers.TCP) uint8 {
	var f uint8
	for _, x := range []struct {
		set bool
		bit uint8
	}{{t.FIN, tcpFIN}, {t.SYN, tcpSYN}, {t.RST, tcpRST}, {t.PSH, tcpPSH}, {t.ACK, tcpACK}} {
		if x.set {
			f |= x.bit
		}
	}
	return f
}

func arpText(a *layers.ARP) string {
	sip, _ := netip.AddrFromSlice(a.SourceProtAddress)
	dip, _ := netip.AddrFromSlice(a.DstProtAddress)
	switch a.Operation {
	case layers.ARPRequest:
		return fmt.Sprintf("arp who-has %s tell %s", dip, sip)
	case layers.ARPReply:
		return fmt.Sprintf("arp reply %s is-at %x", sip, a.SourceHwAddress)
	}
	return fmt.Sprintf("arp operation %d", a.Operation)
}
