package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab/pktgen"
)

const captureFilter = "udp and port 9999"

// capturer is one capture tool as an operator runs it on the receiving interface.
type capturer struct {
	name string
	// vs is the tcpdump whose drops it must not exceed ("" for tcpdump itself).
	vs   string
	args func(ns string) []string
	// ready says from a line of its standard error that it listens (besides its packet socket
	// showing up); nil: the socket is enough.
	ready func(stderrLine string) bool
	// counts reads packets seen and kernel drops from its output when it ends.
	counts func(stdout, stderr string) (seen, drops int, err error)
}

var (
	rtSummary = regexp.MustCompile(`captured (\d+) packets on \d+ interfaces?; kernel: (\d+) matched the filter, (\d+) dropped`)
	tdCounter = regexp.MustCompile(`(\d+) (packets? [a-z ]+)`)
)

func tcpdumpCounts(_, stderr string) (seen, drops int, err error) {
	seen, drops = -1, -1
	for _, m := range tdCounter.FindAllStringSubmatch(stderr, -1) {
		v, _ := strconv.Atoi(m[1])
		switch {
		case strings.HasPrefix(m[2], "packets captured") || strings.HasPrefix(m[2], "packet captured"):
			seen = v
		case strings.HasPrefix(m[2], "packets dropped by kernel") || strings.HasPrefix(m[2], "packet dropped by kernel"):
			drops = v
		}
	}
	if seen < 0 || drops < 0 {
		return 0, 0, fmt.Errorf("tcpdump did not report its counters: %s", tail(stderr, 300))
	}
	return seen, drops, nil
}

// rtCounts reads roundtrip capture's closing summary.
func rtCounts(stdout, _ string) (int, int, error) {
	m := rtSummary.FindStringSubmatch(stdout)
	if m == nil {
		return 0, 0, fmt.Errorf("roundtrip capture printed no summary: %s", tail(stdout, 300))
	}
	seen, _ := strconv.Atoi(m[1])
	drops, _ := strconv.Atoi(m[3])
	return seen, drops, nil
}

const (
	tdPcap = "tcpdump -w /dev/null"
	tdText = "tcpdump -n (text)"
)

func (b *bench) capturers() []capturer {
	listening := func(l string) bool { return strings.Contains(l, "listening on") }
	rt := func(extra ...string) func(ns string) []string {
		return func(ns string) []string {
			return append([]string{b.bin, "capture", "--netns", ns, "--iface", "eth1", "--filter", captureFilter}, extra...)
		}
	}
	return []capturer{
		// By default the kernel's word is on: every drop of the flow is watched (the sink
		// below drops them all), its first packets traced through the rules.
		{name: "roundtrip capture", vs: tdText, args: rt(), counts: rtCounts},
		{name: "roundtrip capture --no-kernel-word", vs: tdText, args: rt("--no-kernel-word"), counts: rtCounts},
		// Text lines still go to standard output (read and discarded here), as --pcap writes
		// the file besides them.
		{name: "roundtrip capture --no-kernel-word --pcap", vs: tdPcap,
			args: rt("--no-kernel-word", "--pcap", filepath.Join(b.work, "capture.pcapng")), counts: rtCounts},
		{name: tdPcap, args: func(ns string) []string {
			return []string{"ip", "netns", "exec", ns, "tcpdump", "-i", "eth1", "-n", "-B", "8192", "-w", "/dev/null", captureFilter}
		}, ready: listening, counts: tcpdumpCounts},
		{name: tdText, args: func(ns string) []string {
			return []string{"ip", "netns", "exec", ns, "tcpdump", "-i", "eth1", "-n", "-l", "-B", "8192", captureFilter}
		}, ready: listening, counts: tcpdumpCounts},
	}
}

// captureRun is one capture of one paced burst.
type captureRun struct {
	sent, seen, drops int
	rate              float64 // achieved, packets/s
	m                 measurement
}

// runCapture starts the tool, waits until it listens, sends at rate pps for d, lets it drain
// and stops it with SIGINT, as an operator would.
func (b *bench) runCapture(c capturer, ns string, send *pktgen.Sender, rate int, d time.Duration) (captureRun, error) {
	var run captureRun
	// roundtrip capture records its temporary trace table in its state directory: the
	// scratch directory's, never the host's.
	cmd, finish, err := b.start(c.args(ns), []string{kernel.StateDirEnv + "=" + filepath.Join(b.work, "capstate")})
	if err != nil {
		return run, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return run, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return run, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return run, err
	}
	ready := make(chan struct{})
	var once sync.Once // closes ready when tcpdump says it listens
	var outKeep, errKeep bytes.Buffer
	var wg sync.WaitGroup
	// Standard output: packet lines are counted by the tool itself and discarded here; only
	// the closing summary is kept.
	wg.Go(func() {
		br := bufio.NewReaderSize(stdout, 1<<20)
		for {
			line, err := br.ReadSlice('\n')
			if len(line) > 0 {
				if bytes.HasPrefix(line, []byte("captured ")) {
					outKeep.Write(line)
				}
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				return
			}
		}
	})
	wg.Go(func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			errKeep.WriteString(sc.Text() + "\n")
			if c.ready != nil && c.ready(sc.Text()) {
				once.Do(func() { close(ready) })
			}
		}
	})
	// Until it listens: its packet socket shows in the namespace's /proc/net/packet (and, for
	// tcpdump, it says so).
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, err := packetSockets(ns)
		if err != nil {
			return run, err
		}
		if n > 0 {
			if c.ready == nil {
				break
			}
			select {
			case <-ready:
			default:
				n = 0
			}
			if n > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			b.signal(cmd, syscall.SIGKILL)
			cmd.Wait()
			return run, fmt.Errorf("%s did not start listening within 15s: %s", c.name, tail(errKeep.String(), 300))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	n, elapsed, err := paced(send, rate, d)
	if err != nil {
		return run, err
	}
	run.sent += n
	run.rate = float64(n) / elapsed.Seconds()
	time.Sleep(time.Second) // let it drain its ring
	b.signal(cmd, syscall.SIGINT)
	wg.Wait()
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() > 3 && ee.ExitCode() != 130) {
		return run, fmt.Errorf("%s: %w: %s", c.name, err, tail(errKeep.String(), 300))
	}
	if run.m, err = finish(cmd.ProcessState, time.Since(start)); err != nil {
		return run, err
	}
	run.seen, run.drops, err = c.counts(outKeep.String(), errKeep.String())
	return run, err
}

// paced sends batches of frames at rate packets per second for d; it returns how many went
// out and how long it took.
func paced(s *pktgen.Sender, rate int, d time.Duration) (int, time.Duration, error) {
	sent := 0
	start := time.Now()
	for {
		el := time.Since(start)
		if el >= d {
			return sent, el, nil
		}
		if float64(sent) >= el.Seconds()*float64(rate) {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		n, err := s.Batch()
		if err != nil {
			return sent, el, err
		}
		sent += n
	}
}

// benchCapture measures each capture tool alone on the same paced traffic, at each rate.
func (b *bench) benchCapture(r *report, rates []int, d time.Duration, profile string) error {
	src, err := b.newNS("capsrc")
	if err != nil {
		return err
	}
	defer b.delNS(src)
	dst, err := b.newNS("capdst")
	if err != nil {
		return err
	}
	defer b.delNS(dst)
	if err := b.cmd("ip", "-n", src, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1", "netns", dst); err != nil {
		return err
	}
	if err := b.ipBatch(src, []string{"addr add 10.95.1.1/24 dev eth0", "link set eth0 up"}); err != nil {
		return err
	}
	if err := b.ipBatch(dst, []string{"addr add 10.95.1.2/24 dev eth1", "link set eth1 up"}); err != nil {
		return err
	}
	// A socket that is never read: datagrams are dropped at its full buffer, with no ICMP.
	var sink net.PacketConn
	if err := (kernel.Namespace{Name: dst}).Do(func() error {
		var err error
		sink, err = net.ListenPacket("udp4", "10.95.1.2:9999")
		return err
	}); err != nil {
		return err
	}
	defer sink.Close()
	dstMAC, err := pktgen.InterfaceMAC(dst, "eth1")
	if err != nil {
		return err
	}
	srcMAC, err := pktgen.InterfaceMAC(src, "eth0")
	if err != nil {
		return err
	}
	frame := pktgen.UDPv4Frame(dstMAC, srcMAC, netip.MustParseAddrPort("10.95.1.1:40000"), netip.MustParseAddrPort("10.95.1.2:9999"))
	send, err := pktgen.Open(src, "eth0", [][]byte{frame})
	if err != nil {
		return err
	}
	defer send.Close()

	sec := r.section("Capture on a veth at a steady rate",
		fmt.Sprintf("60-byte UDP frames sent at a fixed rate for %s from a packet socket in one namespace to a veth in another, "+
			"while one tool at a time captures them there with the filter `%s` (roundtrip in its default text mode, which watches every drop of the flow, traces its first packets (then 20 a second) through the rules and reports the first drops of each connection and reason, counting the rest; "+
			"then without that, printing text, and writing a pcap file besides; its default 8 MiB ring; "+
			"tcpdump with the same 8 MiB buffer, writing a pcap to /dev/null, or printing a line per packet). "+
			"Packets seen and drops are each tool's own counters (the kernel's PACKET_STATISTICS).", d, captureFilter))
	sec.table("rate asked", "rate sent", "tool", "sent", "seen", "kernel drops", "CPU (user+sys)", "peak RSS")
	caps := b.capturers()
	worst := ""
	met := true
	for _, rate := range rates {
		runs := make([][]captureRun, len(caps))
		for run := range b.runs {
			for k := range caps {
				i := (k + run) % len(caps)
				b.logf("capture %d pps: %s (run %d)", rate, caps[i].name, run+1)
				cr, err := b.runCapture(caps[i], dst, send, rate, d)
				if err != nil {
					return err
				}
				b.logf("  sent %d at %.0f pps, seen %d, drops %d", cr.sent, cr.rate, cr.seen, cr.drops)
				runs[i] = append(runs[i], cr)
			}
		}
		med := func(rs []captureRun, f func(captureRun) float64) float64 {
			v := make([]float64, len(rs))
			for i, x := range rs {
				v[i] = f(x)
			}
			return medianOf(v)
		}
		drops := make([]float64, len(caps))
		for i, c := range caps {
			rs := runs[i]
			drops[i] = med(rs, func(x captureRun) float64 { return float64(x.drops) })
			var ser series
			for _, x := range rs {
				ser = append(ser, x.m)
			}
			sec.row(fmt.Sprintf("%dk pps", rate/1000), fmt.Sprintf("%.0fk pps", med(rs, func(x captureRun) float64 { return x.rate })/1000), "`"+c.name+"`",
				fmt.Sprintf("%.0f", med(rs, func(x captureRun) float64 { return float64(x.sent) })),
				fmt.Sprintf("%.0f", med(rs, func(x captureRun) float64 { return float64(x.seen) })),
				fmt.Sprintf("%.0f", drops[i]), cpu(ser.cpu()), mib(int64(ser.rss())))
		}
		// Text against tcpdump's text, the pcap file against tcpdump's.
		for i, c := range caps {
			for j, td := range caps {
				if c.vs != "" && c.vs == td.name && drops[i] > drops[j] {
					met = false
					worst += fmt.Sprintf("%dk pps `%s`: %.0f drops vs `%s`: %.0f; ", rate/1000, c.name, drops[i], td.name, drops[j])
				}
			}
		}
	}
	sec.cmds("roundtrip capture --netns NS --iface eth1 --filter '"+captureFilter+"' [--no-kernel-word] [--pcap FILE]",
		"ip netns exec NS tcpdump -i eth1 -n -B 8192 -w /dev/null '"+captureFilter+"'",
		"ip netns exec NS tcpdump -i eth1 -n -l -B 8192 '"+captureFilter+"'")
	if perf, err := exec.LookPath("perf"); profile != "" && err == nil {
		// roundtrip capture as the CLI under perf: its profile is the CLI's own.
		if err := os.MkdirAll(profile, 0o755); err != nil {
			return err
		}
		c := caps[0]
		args := c.args
		c.args = func(ns string) []string {
			return append([]string{perf, "record", "-F", "999", "-g", "-o", filepath.Join(profile, "capture.perf.data"), "--"}, args(ns)...)
		}
		rate := rates[len(rates)/2]
		b.logf("profile: roundtrip capture at %d pps under perf", rate)
		if _, err := b.runCapture(c, dst, send, rate, d); err != nil {
			return err
		}
	}
	rs := make([]string, len(rates))
	for i, x := range rates {
		rs[i] = fmt.Sprintf("%dk", x/1000)
	}
	got := "no more drops than the tcpdump compared, at " + strings.Join(rs, ", ") + " pps"
	if !met {
		got = strings.TrimSuffix(worst, "; ")
	}
	r.verdictText("capture", "no more kernel drops than tcpdump (text: -n; --pcap: -w)", got, met, "")
	return nil
}

// packetSockets counts the packet sockets open in the namespace (/proc/net/packet as the
// namespace sees it): the capture tool's, once it listens.
func packetSockets(ns string) (int, error) {
	var n int
	err := kernel.Namespace{Name: ns}.Do(func() error {
		data, err := os.ReadFile("/proc/thread-self/net/packet")
		if err != nil {
			return err
		}
		n = max(bytes.Count(data, []byte("\n"))-1, 0)
		return nil
	})
	return n, err
}
