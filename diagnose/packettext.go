package diagnose

import (
	"fmt"
	"net/netip"
	"strconv"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"roundtrip/engine/capture"
	"roundtrip/engine/conntrack"
	"roundtrip/engine/inet"
	"roundtrip/engine/quote"
)

// The packet's line is built by appending into a caller's buffer, not with fmt: capture
// prints one line per packet, and at a few hundred thousand packets a second fmt's
// reflection and allocations were most of its CPU (BENCHMARKS.md, capture).

// AppendLine appends the packet's line as String writes it, escaped for a terminal
// (quote.Term), without allocating for the usual TCP, UDP and ICMP packets.
func (p *Packet) AppendLine(b []byte) []byte { return p.appendText(b, true) }

// appendStr appends s, escaped with quote.Term when term is set.
func appendStr(b []byte, s string, term bool) []byte {
	if term && quote.HasControl(s) {
		s = quote.Term(s)
	}
	return append(b, s...)
}

// appendPaddedTerm is %-*s: s, then spaces up to width runes (counted before escaping, as
// quote.TermFprintf pads before it escapes).
func appendPaddedTerm(b []byte, s string, width int, term bool) []byte {
	b = appendStr(b, s, term)
	for n := utf8.RuneCountInString(s); n < width; n++ {
		b = append(b, ' ')
	}
	return b
}

func (p *Packet) appendText(b []byte, term bool) []byte {
	b = p.Time.AppendFormat(b, "15:04:05.000000")
	b = append(b, ' ')
	b = appendPaddedTerm(b, p.Iface, 8, term)
	b = append(b, ' ')
	if p.Dir == capture.In && p.Type != capture.PacketHost {
		// Longer than the column: no padding.
		b = append(b, p.Dir.String()...)
		b = append(b, " ("...)
		b = append(b, p.Type.String()...)
		b = append(b, ')')
	} else {
		b = appendPaddedTerm(b, p.Dir.String(), 3, term)
	}
	b = append(b, ' ')
	return p.appendWhat(b, term)
}

// appendPacketEndpoint is conntrack.Endpoint: address and port for protocols with ports.
func appendPacketEndpoint(b []byte, proto uint8, ap netip.AddrPort) []byte {
	if !ap.Addr().IsValid() {
		return append(b, conntrack.Endpoint(proto, ap)...)
	}
	if conntrack.HasPorts(proto) {
		return ap.AppendTo(b)
	}
	return ap.Addr().AppendTo(b)
}

func (p *Packet) appendWhat(b []byte, term bool) []byte {
	if p.Proto == 0 && p.Src.Addr().IsValid() {
		// IPv6 with a hop-by-hop header first (MLD, router alerts): not decoded further.
		return appendStr(b, fmt.Sprintf("%s %s > %s next header 0 (hop-by-hop options)", p.L3, p.Src.Addr(), p.Dst.Addr()), term)
	}
	if p.Proto == 0 {
		return appendStr(b, p.Info, term)
	}
	b = append(b, inet.ProtoName(int(p.Proto))...)
	b = append(b, ' ')
	b = appendPacketEndpoint(b, p.Proto, p.Src)
	b = append(b, " > "...)
	b = appendPacketEndpoint(b, p.Proto, p.Dst)
	switch p.Proto {
	case unix.IPPROTO_TCP:
		b = append(b, " ["...)
		b = appendFlags(b, p.Flags)
		b = append(b, "] seq "...)
		b = strconv.AppendUint(b, uint64(p.Seq), 10)
		if p.Flags&tcpACK != 0 {
			b = append(b, " ack "...)
			b = strconv.AppendUint(b, uint64(p.Ack), 10)
		}
		b = append(b, " len "...)
		b = strconv.AppendInt(b, int64(p.Payload), 10)
	case unix.IPPROTO_UDP:
		b = append(b, " len "...)
		b = strconv.AppendInt(b, int64(p.Payload), 10)
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		b = append(b, ' ')
		b = appendICMP(b, p)
	}
	return b
}

// appendFlags writes TCP flags as tcpdump does (capture.AppendTCPFlags).
func appendFlags(b []byte, f uint8) []byte { return capture.AppendTCPFlags(b, f) }

func appendICMP(b []byte, p *Packet) []byte {
	v6 := p.Proto == unix.IPPROTO_ICMPV6
	idSeq := func(b []byte) []byte {
		b = append(b, " id "...)
		b = strconv.AppendUint(b, uint64(p.ICMPID), 10)
		b = append(b, " seq "...)
		return strconv.AppendUint(b, uint64(p.ICMPSeq), 10)
	}
	unreach := func(b []byte) []byte {
		b = append(b, "destination unreachable (code "...)
		b = strconv.AppendUint(b, uint64(p.ICMPCode), 10)
		return append(b, ')')
	}
	switch {
	case !v6 && p.ICMPType == 8, v6 && p.ICMPType == 128:
		return idSeq(append(b, "echo request"...))
	case !v6 && p.ICMPType == 0, v6 && p.ICMPType == 129:
		return idSeq(append(b, "echo reply"...))
	case !v6 && p.ICMPType == 3:
		return unreach(b)
	case !v6 && p.ICMPType == 5:
		return append(b, "redirect"...)
	case !v6 && p.ICMPType == 11, v6 && p.ICMPType == 3:
		return append(b, "time exceeded"...)
	case v6 && p.ICMPType == 1:
		return unreach(b)
	case v6 && p.ICMPType == 2:
		return append(b, "packet too big"...)
	}
	b = append(b, "type "...)
	b = strconv.AppendUint(b, uint64(p.ICMPType), 10)
	b = append(b, " code "...)
	return strconv.AppendUint(b, uint64(p.ICMPCode), 10)
}
