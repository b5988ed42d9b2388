package diagnose

import (
	"bufio"
	"context"
	"encoding/binary"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
)

// BenchmarkPrivilegedCaptureBurst sends bursts of small UDP datagrams over a veth pair between
// two namespaces, as fast as one sender can (whole frames on a packet socket, sendmmsg in
// batches of 64, so that the sender's own IP stack costs nothing), while
// roundtrip's capture (decoding and correlating every packet) and tcpdump listen on the
// receiving end with the same filter and the same 8 MiB of kernel buffer. It reports how many
// packets each captured and how many the kernel dropped for each: the drops are the kernel's
// own counters, for both.
//
//	go test ./diagnose -run XXX -bench CaptureBurst -benchtime 3x
func BenchmarkPrivilegedCaptureBurst(b *testing.B) {
	const (
		burst  = 300000
		filter = "udp and port 9999"
	)
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		b.Skip("needs tcpdump (apt-get install tcpdump) to compare with")
	}
	l := lab.New(b)
	src, dst := lab.Host(l, "src", false), lab.Host(l, "dst", false)
	l.Veth(src, "eth0", dst, "eth1")
	src.Addr("eth0", "10.72.250.1/24")
	dst.Addr("eth1", "10.72.250.2/24")
	// A socket that is never read: datagrams are dropped at its full buffer, with no ICMP.
	var sink net.PacketConn
	if err := dst.Do(func() error { sink, err = net.ListenPacket("udp4", "10.72.250.2:9999"); return err }); err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	send := rawSender(b, src, dst)
	defer send.close()

	// tcpdump, as an operator would run it, with the same buffer size as ours.
	td := exec.Command("ip", "netns", "exec", dst.Name, tcpdump, "-i", "eth1", "-n", "-B", "8192", "-w", "/dev/null", filter)
	tdErr, _ := td.StderrPipe()
	if err := td.Start(); err != nil {
		b.Fatal(err)
	}
	tdOut := bufio.NewScanner(tdErr)
	for tdOut.Scan() && !strings.Contains(tdOut.Text(), "listening on") {
	}

	f, _ := kernel.ParseCaptureFilter(filter)
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		sum *CaptureSummary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := Capture(ctx, CaptureOptions{Namespace: kernel.Namespace{Name: dst.Name}, Ifaces: []string{"eth1"},
			Filter: f, NoPackets: true, NoConntrack: true}, func(Event) error { return nil })
		done <- result{sum, err}
	}()
	time.Sleep(500 * time.Millisecond)

	sent := 0
	start := time.Now()
	b.ResetTimer()
	for b.Loop() {
		for n := 0; n < burst; {
			k := send.batch(b)
			n += k
			sent += k
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()

	// Let both drain their rings, then stop them.
	time.Sleep(500 * time.Millisecond)
	cancel()
	r := <-done
	if r.err != nil {
		b.Fatal(r.err)
	}
	td.Process.Signal(syscall.SIGINT)
	var tdText strings.Builder
	for tdOut.Scan() {
		tdText.WriteString(tdOut.Text() + "\n")
	}
	td.Wait()
	tdCaptured := tcpdumpCount(b, tdText.String(), "packets captured")
	tdDropped := tcpdumpCount(b, tdText.String(), "packets dropped by kernel")

	ours := r.sum
	b.ReportMetric(float64(sent)/elapsed.Seconds()/1000, "kpps-sent")
	b.ReportMetric(float64(ours.Packets), "roundtrip-captured")
	b.ReportMetric(float64(ours.Kernel.KernelDrops), "roundtrip-kernel-drops")
	b.ReportMetric(float64(tdCaptured), "tcpdump-captured")
	b.ReportMetric(float64(tdDropped), "tcpdump-kernel-drops")
	b.Logf("sent %d datagrams in %s (%.0f kpps); roundtrip captured %d (kernel: %d matched, %d dropped); tcpdump captured %d, dropped %d",
		sent, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds()/1000, ours.Packets, ours.Kernel.KernelPackets, ours.Kernel.KernelDrops, tdCaptured, tdDropped)
	// Honest counters: what the kernel matched is what was read plus what it dropped.
	if got := ours.Kernel.Received + ours.Kernel.KernelDrops; got != ours.Kernel.KernelPackets {
		b.Errorf("roundtrip's counters disagree: %d read + %d dropped != %d matched", ours.Kernel.Received, ours.Kernel.KernelDrops, ours.Kernel.KernelPackets)
	}
}

var tcpdumpLine = regexp.MustCompile(`(\d+) (packets? [a-z ]+)`)

// tcpdumpCount reads one of tcpdump's closing counters ("N packets captured").
func tcpdumpCount(b *testing.B, text, what string) int {
	for _, m := range tcpdumpLine.FindAllStringSubmatch(text, -1) {
		if strings.HasPrefix(m[2], what) {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	b.Fatalf("tcpdump did not report %q:\n%s", what, text)
	return 0
}

// frameSender writes ready-made Ethernet frames on a packet socket.
type frameSender struct {
	fd    int
	frame []byte
	iov   unix.Iovec
	msgs  []mmsghdr
}

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// rawSender opens a packet socket on src's eth0 that sends UDP datagrams to dst's eth1
// (10.72.250.2:9999), bypassing the qdisc layer.
func rawSender(b *testing.B, src, dst *lab.NS) *frameSender {
	var dstMAC, srcMAC net.HardwareAddr
	if err := dst.Do(func() error {
		i, err := net.InterfaceByName("eth1")
		if err == nil {
			dstMAC = i.HardwareAddr
		}
		return err
	}); err != nil {
		b.Fatal(err)
	}
	s := &frameSender{}
	err := src.Do(func() error {
		i, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		srcMAC = i.HardwareAddr
		if s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return err
		}
		return unix.Bind(s.fd, &unix.SockaddrLinklayer{Protocol: 0x0008 /* htons(ETH_P_IP) */, Ifindex: i.Index})
	})
	if err != nil {
		b.Fatal(err)
	}
	// Ethernet + IPv4 + UDP + 18 bytes: a 60-byte frame, the smallest, the worst case for a capture.
	f := make([]byte, 60)
	copy(f[0:], dstMAC)
	copy(f[6:], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 46)
	copy(ip[12:], []byte{10, 72, 250, 1})
	copy(ip[16:], []byte{10, 72, 250, 2})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := f[34:42]
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], 9999)
	binary.BigEndian.PutUint16(udp[4:], 26) // checksum 0: none, allowed over IPv4
	s.frame = f
	s.iov = unix.Iovec{Base: &s.frame[0]}
	s.iov.SetLen(len(f))
	s.msgs = make([]mmsghdr, 64)
	for i := range s.msgs {
		s.msgs[i].hdr.Iov = &s.iov
		s.msgs[i].hdr.SetIovlen(1)
	}
	return s
}

// batch sends one batch and returns how many frames went out.
func (s *frameSender) batch(b *testing.B) int {
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msgs[0])), uintptr(len(s.msgs)), 0, 0, 0)
	if errno != 0 {
		b.Fatalf("sendmmsg: %v", errno)
	}
	return int(n)
}

func (s *frameSender) close() { unix.Close(s.fd) }
