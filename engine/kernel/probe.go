package kernel

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Probe is one reachability check of a target through one uplink, made natively (no ping or
// nc binary): an ICMP echo or a TCP connection from a socket created inside the namespace,
// bound to the uplink's interface (SO_BINDTODEVICE) and address and carrying a mark
// (SO_MARK), so that policy routing sends it out of that uplink whatever the main table says.
type Probe struct {
	// Proto is "icmp" (an echo request) or "tcp" (a connection to Target's port).
	Proto  string
	Target netip.AddrPort
	Iface  string     // SO_BINDTODEVICE; "" leaves the socket unbound
	Src    netip.Addr // the local address to bind; zero lets the kernel choose
	Mark   uint32     // SO_MARK; 0 sets none
	// Timeout bounds the probe; the context may end it sooner.
	Timeout time.Duration
}

// ErrNoAnswer is wrapped by the error of a probe that timed out.
var ErrNoAnswer = errors.New("no answer")

// ProbeResult is what a probe saw.
type ProbeResult struct {
	OK  bool
	RTT time.Duration
	// Method says how the probe was made: icmp-dgram (an unprivileged ping socket), icmp-raw
	// or tcp.
	Method string
	Err    error
}

// Probe runs one probe in the namespace. A TCP connection that is refused counts as an
// answer: the reset came back from the target, so the path works both ways.
func (ns Namespace) Probe(ctx context.Context, p Probe) ProbeResult {
	if !p.Target.Addr().Is4() {
		return ProbeResult{Err: fmt.Errorf("probe target %s: only IPv4 targets are supported", p.Target.Addr())}
	}
	if p.Timeout <= 0 {
		p.Timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	switch p.Proto {
	case "icmp":
		return ns.probeICMP(ctx, p)
	case "tcp":
		return ns.probeTCP(ctx, p)
	}
	return ProbeResult{Err: fmt.Errorf("probe protocol %q: want icmp or tcp", p.Proto)}
}

// bindProbe applies the uplink's socket options to a socket: SO_BINDTODEVICE and SO_MARK
// (both need CAP_NET_RAW or CAP_NET_ADMIN), then the source address.
func bindProbe(fd int, p Probe) error {
	if p.Iface != "" {
		if err := unix.BindToDevice(fd, p.Iface); err != nil {
			return fmt.Errorf("binding the probe to %s (SO_BINDTODEVICE): %w", p.Iface, capErr("probing", "CAP_NET_RAW", err))
		}
	}
	if p.Mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(p.Mark)); err != nil {
			return fmt.Errorf("marking the probe %#x (SO_MARK): %w", p.Mark, capErr("probing", "CAP_NET_ADMIN", err))
		}
	}
	return nil
}

// probeICMP sends one echo request and waits for its reply. It prefers an unprivileged ping
// socket (SOCK_DGRAM, IPPROTO_ICMP), which the kernel demultiplexes for us, and falls back to
// a raw socket when net.ipv4.ping_group_range does not admit our group (its default in a new
// namespace, "1 0", admits nobody).
func (ns Namespace) probeICMP(ctx context.Context, p Probe) ProbeResult {
	var fd int
	method := "icmp-dgram"
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_ICMP)
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EPROTONOSUPPORT) {
			method = "icmp-raw"
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_ICMP)
		}
		if err != nil {
			return fmt.Errorf("opening an ICMP socket in %s: %w", ns, capErr("probing", "CAP_NET_RAW", err))
		}
		return nil
	})
	if err != nil {
		return ProbeResult{Method: method, Err: err}
	}
	res := ProbeResult{Method: method}
	if err := bindProbe(fd, p); err != nil {
		unix.Close(fd)
		res.Err = err
		return res
	}
	if p.Src.IsValid() {
		// For a ping socket the port of the address is the echo identifier: 0 picks a free one.
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: p.Src.As4()}); err != nil {
			unix.Close(fd)
			res.Err = fmt.Errorf("binding the probe to %s: %w (is it an address of %s?)", p.Src, err, ns)
			return res
		}
	}
	// The socket joins the runtime's poller: reads honour deadlines without tying up a thread.
	f := os.NewFile(uintptr(fd), "icmp-probe")
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		res.Err = fmt.Errorf("opening the ICMP probe socket: %w", err)
		return res
	}
	defer pc.Close()
	stop := context.AfterFunc(ctx, func() { pc.SetReadDeadline(time.Now()) })
	defer stop()

	var idb [4]byte
	_, _ = rand.Read(idb[:])
	id, seq := binary.BigEndian.Uint16(idb[:2]), binary.BigEndian.Uint16(idb[2:])
	req := echoRequest(id, seq)
	var to net.Addr = &net.UDPAddr{IP: p.Target.Addr().AsSlice()}
	if method == "icmp-raw" {
		to = &net.IPAddr{IP: p.Target.Addr().AsSlice()}
	}
	start := time.Now()
	if _, err := pc.WriteTo(req, to); err != nil {
		res.Err = fmt.Errorf("sending an echo request to %s: %w", p.Target.Addr(), err)
		return res
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
				res.Err = fmt.Errorf("%w from %s within %s (echo request)", ErrNoAnswer, p.Target.Addr(), p.Timeout)
			} else {
				res.Err = fmt.Errorf("waiting for an echo reply from %s: %w", p.Target.Addr(), err)
			}
			return res
		}
		if !sameAddr(from, p.Target.Addr()) || n < 8 || buf[0] != 0 /* echo reply */ {
			continue
		}
		gotID, gotSeq := binary.BigEndian.Uint16(buf[4:6]), binary.BigEndian.Uint16(buf[6:8])
		// A ping socket rewrites the identifier to its own and only passes its replies up; a raw
		// socket sees every echo reply of the namespace, so ours is told by id and sequence.
		if gotSeq != seq || (method == "icmp-raw" && gotID != id) {
			continue
		}
		res.OK, res.RTT = true, time.Since(start)
		return res
	}
}

// sameAddr reports whether a socket address (UDP or IP) is a.
func sameAddr(from net.Addr, a netip.Addr) bool {
	var ip net.IP
	switch f := from.(type) {
	case *net.UDPAddr:
		ip = f.IP
	case *net.IPAddr:
		ip = f.IP
	default:
		return false
	}
	got, ok := netip.AddrFromSlice(ip)
	return ok && got.Unmap() == a
}

// echoRequest builds an ICMP echo request with a checksum (RFC 792).
func echoRequest(id, seq uint16) []byte {
	b := make([]byte, 16)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], "roundtrp")
	binary.BigEndian.PutUint16(b[2:], icmpChecksum(b))
	return b
}

// icmpChecksum is the Internet checksum (RFC 1071) of b.
func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// probeTCP connects to the target and closes at once with a reset (SO_LINGER 0), so that a
// probe leaves no TIME_WAIT behind on either end. The socket is made inside the namespace:
// the whole dial runs there.
func (ns Namespace) probeTCP(ctx context.Context, p Probe) ProbeResult {
	res := ProbeResult{Method: "tcp"}
	var bindErr error
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		if err := c.Control(func(fd uintptr) { bindErr = bindProbe(int(fd), p) }); err != nil {
			return err
		}
		return bindErr
	}}
	if p.Src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: p.Src.AsSlice()}
	}
	var start time.Time
	err := ns.Do(func() error {
		start = time.Now()
		conn, err := d.DialContext(ctx, "tcp4", p.Target.String())
		if err != nil {
			return err
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		return conn.Close()
	})
	rtt := time.Since(start)
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, unix.ECONNREFUSED):
		res.OK, res.RTT = true, rtt
	case bindErr != nil:
		res.Err = bindErr
	case ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout():
		res.Err = fmt.Errorf("%w from %s within %s (tcp connect)", ErrNoAnswer, p.Target, p.Timeout)
	default:
		res.Err = fmt.Errorf("connecting to %s: %w", p.Target, err)
	}
	return res
}
