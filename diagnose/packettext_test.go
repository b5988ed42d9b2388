package diagnose

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"roundtrip/engine/capture"
	"roundtrip/engine/conntrack"
	"roundtrip/engine/inet"
	"roundtrip/engine/quote"
)

// fmtPacketLine is the packet's line as it was written with fmt before AppendLine (String,
// What, flagString and icmpText of then, escaped as quote.TermFprintf("%s\n") did): the
// reference the appending code must match byte for byte.
func fmtPacketLine(p *Packet) string {
	flags := func(f uint8) string {
		var b strings.Builder
		for _, x := range []struct {
			bit uint8
			c   byte
		}{{tcpSYN, 'S'}, {tcpFIN, 'F'}, {tcpRST, 'R'}, {tcpPSH, 'P'}, {tcpACK, '.'}} {
			if f&x.bit != 0 {
				b.WriteByte(x.c)
			}
		}
		if b.Len() == 0 {
			return "none"
		}
		return b.String()
	}
	icmp := func(p *Packet) string {
		v6 := p.Proto == unix.IPPROTO_ICMPV6
		switch {
		case !v6 && p.ICMPType == 8, v6 && p.ICMPType == 128:
			return fmt.Sprintf("echo request id %d seq %d", p.ICMPID, p.ICMPSeq)
		case !v6 && p.ICMPType == 0, v6 && p.ICMPType == 129:
			return fmt.Sprintf("echo reply id %d seq %d", p.ICMPID, p.ICMPSeq)
		case !v6 && p.ICMPType == 3:
			return fmt.Sprintf("destination unreachable (code %d)", p.ICMPCode)
		case !v6 && p.ICMPType == 5:
			return "redirect"
		case !v6 && p.ICMPType == 11, v6 && p.ICMPType == 3:
			return "time exceeded"
		case v6 && p.ICMPType == 1:
			return fmt.Sprintf("destination unreachable (code %d)", p.ICMPCode)
		case v6 && p.ICMPType == 2:
			return "packet too big"
		}
		return fmt.Sprintf("type %d code %d", p.ICMPType, p.ICMPCode)
	}
	what := func(p *Packet) string {
		if p.Proto == 0 && p.Src.Addr().IsValid() {
			return fmt.Sprintf("%s %s > %s next header 0 (hop-by-hop options)", p.L3, p.Src.Addr(), p.Dst.Addr())
		}
		if p.Proto == 0 {
			return p.Info
		}
		s := fmt.Sprintf("%s %s > %s", inet.ProtoName(int(p.Proto)), conntrack.Endpoint(p.Proto, p.Src), conntrack.Endpoint(p.Proto, p.Dst))
		switch p.Proto {
		case unix.IPPROTO_TCP:
			s += fmt.Sprintf(" [%s] seq %d", flags(p.Flags), p.Seq)
			if p.Flags&tcpACK != 0 {
				s += fmt.Sprintf(" ack %d", p.Ack)
			}
			s += fmt.Sprintf(" len %d", p.Payload)
		case unix.IPPROTO_UDP:
			s += fmt.Sprintf(" len %d", p.Payload)
		case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
			s += " " + icmp(p)
		}
		return s
	}
	dir := p.Dir.String()
	if p.Dir == capture.In && p.Type != capture.PacketHost {
		dir += " (" + p.Type.String() + ")"
	}
	return quote.TermSprintf("%s", fmt.Sprintf("%s %-8s %-3s %s", p.Time.Format("15:04:05.000000"), p.Iface, dir, what(p)))
}

func textPackets() []Packet {
	t := time.Date(2026, 12, 3, 14, 5, 6, 789012345, time.UTC)
	ap := netip.MustParseAddrPort
	return []Packet{
		{Time: t, Iface: "eth0", Dir: capture.In, Type: capture.PacketHost, L3: "ip", Proto: unix.IPPROTO_TCP,
			Src: ap("10.0.0.1:5000"), Dst: ap("10.0.0.2:80"), Flags: tcpSYN, Seq: 4000000000},
		{Time: t, Iface: "wan-uplink0", Dir: capture.Out, L3: "ip", Proto: unix.IPPROTO_TCP,
			Src: ap("10.0.0.2:80"), Dst: ap("10.0.0.1:5000"), Flags: tcpSYN | tcpACK | tcpPSH | tcpFIN | tcpRST, Seq: 1, Ack: 2, Payload: 1448},
		{Time: t, Iface: "e", Dir: capture.In, Type: capture.PacketOtherHost, L3: "ip6", Proto: unix.IPPROTO_TCP,
			Src: ap("[2001:db8::1]:443"), Dst: ap("[2001:db8::2]:1"), Seq: 7},
		{Time: t, Iface: "eth1", Dir: capture.In, Type: capture.PacketBroadcast, L3: "ip", Proto: unix.IPPROTO_UDP,
			Src: ap("10.95.1.1:40000"), Dst: ap("10.95.1.2:9999"), Payload: 18},
		{Time: t, Iface: "eth1", Dir: capture.In, L3: "ip", Proto: unix.IPPROTO_ICMP, Src: ap("10.0.0.1:0"), Dst: ap("10.0.0.2:0"), ICMPType: 8, ICMPID: 77, ICMPSeq: 3},
		{Time: t, Iface: "eth1", Dir: capture.Out, L3: "ip", Proto: unix.IPPROTO_ICMP, Src: ap("10.0.0.2:0"), Dst: ap("10.0.0.1:0"), ICMPType: 0, ICMPID: 77, ICMPSeq: 3},
		{Time: t, Iface: "eth1", Dir: capture.Out, L3: "ip", Proto: unix.IPPROTO_ICMP, ICMPType: 3, ICMPCode: 13, Src: ap("10.0.0.2:0"), Dst: ap("10.0.0.1:0")},
		{Time: t, Iface: "eth1", Dir: capture.Out, L3: "ip", Proto: unix.IPPROTO_ICMP, ICMPType: 5, Src: ap("10.0.0.2:0"), Dst: ap("10.0.0.1:0")},
		{Time: t, Iface: "eth1", Dir: capture.Out, L3: "ip", Proto: unix.IPPROTO_ICMP, ICMPType: 11, Src: ap("10.0.0.2:0"), Dst: ap("10.0.0.1:0")},
		{Time: t, Iface: "eth1", Dir: capture.Out, L3: "ip", Proto: unix.IPPROTO_ICMP, ICMPType: 42, ICMPCode: 9, Src: ap("10.0.0.2:0"), Dst: ap("10.0.0.1:0")},
		{Time: t, Iface: "eth1", Dir: capture.In, L3: "ip6", Proto: unix.IPPROTO_ICMPV6, ICMPType: 128, ICMPID: 1, ICMPSeq: 65535, Src: ap("[fe80::1]:0"), Dst: ap("[fe80::2]:0")},
		{Time: t, Iface: "eth1", Dir: capture.In, L3: "ip6", Proto: unix.IPPROTO_ICMPV6, ICMPType: 129, Src: ap("[fe80::1]:0"), Dst: ap("[fe80::2]:0")},
		{Time: t, Iface: "eth1", Dir: capture.In, L3: "ip6", Proto: unix.IPPROTO_ICMPV6, ICMPType: 1, ICMPCode: 4, Src: ap("[fe80::1]:0"), Dst: ap("[fe80::2]:0")},
		{Time: t, Iface: "eth1", Dir: capture.In, L3: "ip6", Proto: unix.IPPROTO_ICMPV6, ICMPType: 2, Src: ap("[fe80::1]:0"), Dst: ap("[fe80::2]:0")},
		{Time: t, Iface: "eth1", Dir: capture.In, L3: "ip6", Proto: unix.IPPROTO_ICMPV6, ICMPType: 3, Src: ap("[fe80::1]:0"), Dst: ap("[fe80::2]:0")},
		{Time: t, Iface: "eth1", Dir: capture.In, Type: capture.PacketMulticast, L3: "ip6", Src: ap("[fe80::1]:0"), Dst: ap("[ff02::16]:0")},
		{Time: t, Iface: "br0", Dir: capture.In, Type: capture.PacketBroadcast, L3: "arp", Info: "arp who-has 10.0.0.2 tell 10.0.0.1"},
		{Time: t, Iface: "eth2", Dir: capture.In, L3: "ethertype-0x88cc", Info: "ethertype-0x88cc"},
		{Time: t, Iface: "sctp0", Dir: capture.In, L3: "ip", Proto: unix.IPPROTO_SCTP, Src: ap("10.0.0.1:9"), Dst: ap("10.0.0.2:10")},
		{Time: t, Iface: "gre1", Dir: capture.In, L3: "ip", Proto: unix.IPPROTO_GRE, Src: ap("10.0.0.1:0"), Dst: ap("10.0.0.2:0")},
		// Names a person did not choose: control characters, a terminal escape, not UTF-8,
		// wide runes that count once for the column.
		{Time: t, Iface: "e\x1b[31m", Dir: capture.In, L3: "arp", Info: "who\nhas\x00 \xff"},
		{Time: t, Iface: "ü\u202e", Dir: capture.Out, L3: "ip", Proto: unix.IPPROTO_UDP, Src: ap("10.0.0.1:1"), Dst: ap("10.0.0.2:2")},
		{Time: t, Iface: "exactly8", Dir: capture.Out, L3: "ip", Proto: unix.IPPROTO_UDP, Src: ap("10.0.0.1:1"), Dst: ap("10.0.0.2:2")},
	}
}

// TestAppendLineMatchesFmt: the appended line is byte for byte what fmt wrote, escaping
// and column padding included, for every kind of packet the decoder yields.
func TestAppendLineMatchesFmt(t *testing.T) {
	for _, p := range textPackets() {
		want := fmtPacketLine(&p)
		if got := string(p.AppendLine(nil)); got != want {
			t.Errorf("AppendLine:\n got %q\nwant %q", got, want)
		}
		if got := quote.Term(p.String()); got != want {
			t.Errorf("String:\n got %q\nwant %q", got, want)
		}
		if quote.HasControl(want) {
			t.Errorf("line not escaped: %q", want)
		}
	}
}

// TestAppendLineAllocs: the line of an ordinary packet is built without allocating (into a
// buffer that has room), so that capture's text output costs no garbage per packet.
func TestAppendLineAllocs(t *testing.T) {
	ps := textPackets()
	buf := make([]byte, 0, 512)
	for _, i := range []int{0, 1, 2, 3, 4, 10} {
		p := &ps[i]
		if n := testing.AllocsPerRun(200, func() { buf = p.AppendLine(buf[:0]) }); n != 0 {
			t.Errorf("%s: %.1f allocations per line, want 0", p.AppendLine(nil), n)
		}
	}
}
