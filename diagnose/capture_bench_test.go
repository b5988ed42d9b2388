package diagnose

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/lab/pktgen"
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
	lab.RequireTool(b, "tcpdump") // to compare with
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		b.Fatal(err)
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
	defer send.Close()

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
			k, err := send.Batch()
			if err != nil {
				b.Fatal(err)
			}
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

// rawSender opens a sender on src's eth0 of frames to dst's eth1 (10.72.250.2:9999).
func rawSender(b *testing.B, src, dst *lab.NS) *pktgen.Sender {
	dstMAC, err := pktgen.InterfaceMAC(dst.Name, "eth1")
	if err != nil {
		b.Fatal(err)
	}
	srcMAC, err := pktgen.InterfaceMAC(src.Name, "eth0")
	if err != nil {
		b.Fatal(err)
	}
	f := pktgen.UDPv4Frame(dstMAC, srcMAC, netip.MustParseAddrPort("10.72.250.1:40000"), netip.MustParseAddrPort("10.72.250.2:9999"))
	s, err := pktgen.Open(src.Name, "eth0", [][]byte{f})
	if err != nil {
		b.Fatal(err)
	}
	return s
}
