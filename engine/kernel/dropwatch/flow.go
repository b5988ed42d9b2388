package dropwatch

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"
)

// Flow is one flow to watch, matched in both directions. A zero field is a wildcard: Proto 0
// is any protocol, an invalid (zero) address any address, port 0 any port. NAT tuples of the
// same connection are added as flows of their own when conntrack reports them.
type Flow struct {
	Proto   uint8 // unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_ICMP, ...; 0: any
	Src     netip.Addr
	Dst     netip.Addr
	SrcPort uint16
	DstPort uint16
}

func (f Flow) String() string {
	end := func(a netip.Addr, p uint16) string {
		s := "*"
		if a.IsValid() {
			s = a.String()
		}
		if p != 0 {
			return netip.AddrPortFrom(a, p).String()
		}
		if f.Proto == unix.IPPROTO_TCP || f.Proto == unix.IPPROTO_UDP || f.Proto == 0 {
			if a.Is6() {
				s = "[" + s + "]"
			}
			return s + ":*"
		}
		return s
	}
	return ProtoName(f.Proto) + " " + end(f.Src, f.SrcPort) + " <-> " + end(f.Dst, f.DstPort)
}

// The wildcard bits of a flow key's shape, as in bpf/dropwatch.c.
const (
	wildProto = 1 << iota
	wildSaddr
	wildDaddr
	wildSport
	wildDport
)

// key validates the flow and returns its BPF map key and shape.
func (f Flow) key() (bpfFlowKey, uint32, error) {
	var k bpfFlowKey
	var shape uint32
	src, dst := f.Src.Unmap(), f.Dst.Unmap()
	if src.IsValid() && dst.IsValid() && src.Is4() != dst.Is4() {
		return k, 0, fmt.Errorf("bad flow %s: source and destination are of different IP versions", f)
	}
	if (f.SrcPort != 0 || f.DstPort != 0) && f.Proto != 0 && f.Proto != unix.IPPROTO_TCP && f.Proto != unix.IPPROTO_UDP {
		return k, 0, fmt.Errorf("bad flow %s: ports need tcp or udp", f)
	}
	k.Proto = f.Proto
	if f.Proto == 0 {
		shape |= wildProto
	}
	for _, a := range []netip.Addr{src, dst} {
		if a.IsValid() {
			k.Family = family(a)
		}
	}
	if !src.IsValid() {
		shape |= wildSaddr
	}
	if !dst.IsValid() {
		shape |= wildDaddr
	}
	k.Saddr = addrWords(src)
	k.Daddr = addrWords(dst)
	k.Sport, k.Dport = f.SrcPort, f.DstPort
	if k.Sport == 0 {
		shape |= wildSport
	}
	if k.Dport == 0 {
		shape |= wildDport
	}
	return k, shape, nil
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return 4
	}
	return 6
}

// addrWords lays an address out as the BPF program does: its bytes in network order, an
// IPv4 address in the first word, the rest zero.
func addrWords(a netip.Addr) [4]uint32 {
	var w [4]uint32
	if !a.IsValid() {
		return w
	}
	var b [16]byte
	if a.Is4() {
		a4 := a.As4()
		copy(b[:], a4[:])
	} else {
		b = a.As16()
	}
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w
}

// wordsAddr is the inverse of addrWords for an address of the family (4 or 6).
func wordsAddr(fam uint8, w [4]uint32) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[4*i:], w[i])
	}
	switch fam {
	case 4:
		return netip.AddrFrom4([4]byte(b[:4]))
	case 6:
		return netip.AddrFrom16(b)
	}
	return netip.Addr{}
}

// ProtoName names an IP protocol number as iptables and nft do.
func ProtoName(p uint8) string {
	switch p {
	case 0:
		return "any"
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case unix.IPPROTO_ICMPV6:
		return "icmpv6"
	case unix.IPPROTO_SCTP:
		return "sctp"
	case unix.IPPROTO_GRE:
		return "gre"
	case unix.IPPROTO_ESP:
		return "esp"
	}
	return "proto " + strconv.Itoa(int(p))
}
