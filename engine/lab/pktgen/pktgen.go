// Package pktgen sends ready-made Ethernet frames out of an interface of a network namespace as
// fast as one core can, for capture and forwarding benchmarks in the lab's namespaces.
package pktgen

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel"
)

// BatchSize is how many frames one Batch hands to the kernel (one sendmmsg).
const BatchSize = 64

// Sender writes frames on a packet socket bound to one interface. The socket bypasses the
// qdisc layer (PACKET_QDISC_BYPASS), so the sender's own IP stack and queueing cost nothing:
// what is measured is the receiving side.
type Sender struct {
	fd     int
	frames [][]byte
	iovs   []unix.Iovec
	msgs   []mmsghdr
	next   int // the frame the next batch starts with
}

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// Open opens a sender on iface of the named namespace ("" is the current one) that sends
// frames in turn, wrapping around. The frames are not copied; the caller keeps them unchanged.
func Open(ns, iface string, frames [][]byte) (*Sender, error) {
	if len(frames) == 0 {
		return nil, fmt.Errorf("opening a frame sender on %s: no frames to send", iface)
	}
	s := &Sender{fd: -1, frames: frames}
	err := kernel.Namespace{Name: ns}.Do(func() error {
		i, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		if s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return fmt.Errorf("opening a packet socket: %w", err)
		}
		if err := unix.SetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return fmt.Errorf("setting PACKET_QDISC_BYPASS: %w", err)
		}
		return unix.Bind(s.fd, &unix.SockaddrLinklayer{Protocol: 0x0008 /* htons(ETH_P_IP) */, Ifindex: i.Index})
	})
	if err != nil {
		if s.fd >= 0 {
			unix.Close(s.fd)
		}
		return nil, fmt.Errorf("opening a frame sender on %s in %s: %w", iface, kernel.Namespace{Name: ns}, err)
	}
	s.iovs = make([]unix.Iovec, len(frames))
	for i, f := range frames {
		s.iovs[i] = unix.Iovec{Base: &f[0]}
		s.iovs[i].SetLen(len(f))
	}
	s.msgs = make([]mmsghdr, BatchSize)
	for i := range s.msgs {
		s.msgs[i].hdr.SetIovlen(1)
	}
	return s, nil
}

// Batch sends up to BatchSize frames with one sendmmsg and returns how many went out.
func (s *Sender) Batch() (int, error) {
	for i := range s.msgs {
		s.msgs[i].hdr.Iov = &s.iovs[(s.next+i)%len(s.iovs)]
	}
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msgs[0])), uintptr(len(s.msgs)), 0, 0, 0)
	if errno != 0 {
		return 0, fmt.Errorf("sendmmsg: %w", errno)
	}
	s.next = (s.next + int(n)) % len(s.iovs)
	return int(n), nil
}

// Close closes the socket.
func (s *Sender) Close() error { return unix.Close(s.fd) }

// InterfaceMAC returns the hardware address of iface in the named namespace.
func InterfaceMAC(ns, iface string) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := kernel.Namespace{Name: ns}.Do(func() error {
		i, err := net.InterfaceByName(iface)
		if err == nil {
			mac = i.HardwareAddr
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the address of %s in %s: %w", iface, kernel.Namespace{Name: ns}, err)
	}
	return mac, nil
}

// UDPv4Frame builds the smallest Ethernet frame (60 bytes) carrying a UDP datagram from src to
// dst with an 18-byte payload: the worst case for a capture or a router, per byte.
func UDPv4Frame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.AddrPort) []byte {
	f := make([]byte, 60)
	copy(f[0:], dstMAC)
	copy(f[6:], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 46)
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := f[34:42]
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], 26) // checksum 0: none, allowed over IPv4
	return f
}
