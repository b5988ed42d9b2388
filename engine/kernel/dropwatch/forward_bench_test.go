package dropwatch_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/lab"
	"roundtrip/engine/lab/pktgen"
)

// fwdNet is a router between a traffic generator and a sink that drops every packet it gets
// (forwarding off, no route: IP_INNOROUTES), so that each forwarded packet also passes the
// kfree_skb tracepoint, on the same core, in the sender's softirq: the worst case for the
// drop watcher short of the router dropping everything itself.
//
//	gen eth0 10.72.1.2 -- lan 10.72.1.1 [rtr] wan 10.72.2.1 -- eth0 10.72.2.2 sink
type fwdNet struct {
	rtr, sink *lab.NS
	send      *pktgen.Sender
}

func newFwdNet(b *testing.B) *fwdNet {
	l := lab.New(b)
	gen, rtr, sink := l.NS("gen"), l.NS("rtr"), l.NS("sink")
	for _, ns := range []*lab.NS{gen, rtr, sink} {
		// No IPv6 chatter (router solicitations, MLD) in the counters.
		ns.Sysctl("net.ipv6.conf.default.disable_ipv6", "1")
		ns.Sysctl("net.ipv6.conf.all.disable_ipv6", "1")
	}
	l.Veth(gen, "eth0", rtr, "lan")
	l.Veth(rtr, "wan", sink, "eth0")
	gen.Addr("eth0", "10.72.1.2/24")
	rtr.Addr("lan", "10.72.1.1/24")
	rtr.Addr("wan", "10.72.2.1/24")
	sink.Addr("eth0", "10.72.2.2/24")
	rtr.IP("route", "add", "10.72.9.0/24", "via", "10.72.2.2")
	rtr.Sysctl("net.ipv4.ip_forward", "1")
	rtrMAC, err := pktgen.InterfaceMAC(rtr.Name, "lan")
	if err != nil {
		b.Fatal(err)
	}
	genMAC, err := pktgen.InterfaceMAC(gen.Name, "eth0")
	if err != nil {
		b.Fatal(err)
	}
	frames := make([][]byte, 256)
	for i := range frames {
		frames[i] = pktgen.UDPv4Frame(rtrMAC, genMAC, netip.AddrPortFrom(netip.MustParseAddr("10.72.1.2"), uint16(20000+i)),
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 72, 9, byte(1 + i%250)}), 9))
	}
	send, err := pktgen.Open(gen.Name, "eth0", frames)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { send.Close() })
	n := &fwdNet{rtr: rtr, sink: sink, send: send}
	// Warm up: the router resolves the sink's MAC.
	for range 10 {
		if _, err := send.Batch(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n
}

func (n *fwdNet) sinkRx(b *testing.B) uint64 {
	var rx uint64
	err := n.sink.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err == nil {
			rx = l.Attrs().Statistics.RxPackets
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return rx
}

// fwdMode is one way of running the drop watcher during a trial; nil opts: not at all.
type fwdMode struct {
	name string
	opts *dropwatch.Options
}

// trial sends for d at rate packets/s (0: as fast as one core sends) with the mode's watcher
// attached, and returns the packets/s the sink received, the program's average run time, and
// the drops the watcher reported and counted lost.
func (n *fwdNet) trial(b *testing.B, m fwdMode, rate int, d time.Duration) (pps float64, perRun time.Duration, reported, lost uint64) {
	var w *dropwatch.Watcher
	count := make(chan uint64, 1)
	if m.opts != nil {
		var err error
		w, err = dropwatch.Start(context.Background(), *m.opts)
		if errors.Is(err, dropwatch.ErrUnsupported) {
			b.Skipf("privileged benchmark: %v", err)
		}
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		go func() {
			var k uint64
			for range w.Events() {
				k++
			}
			count <- k
		}()
	}
	rx0 := n.sinkRx(b)
	sent := 0
	start := time.Now()
	for time.Since(start) < d {
		if rate != 0 {
			// Pace: a batch leaves no earlier than its share of the rate.
			due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				time.Sleep(wait)
			}
		}
		k, err := n.send.Batch()
		if err != nil {
			b.Fatal(err)
		}
		sent += k
	}
	el := time.Since(start)
	time.Sleep(100 * time.Millisecond) // what is in flight arrives
	pps = float64(n.sinkRx(b)-rx0) / el.Seconds()
	if w != nil {
		_, perRun, _ = w.Cost()
		var err error
		if lost, err = w.Lost(); err != nil {
			b.Fatal(err)
		}
		w.Close()
		reported = <-count
	}
	return pps, perRun, reported, lost
}

// BenchmarkPrivilegedForwardingDropWatch measures packets per second forwarded by a lab
// router, at 200k packets/s offered and as fast as one core sends, without the drop watcher
// and with it attached in three ways, in interleaved one-second trials (the machine's load
// drifts; interleaving spreads it over all modes). One op is a round of every mode at both
// rates; the metrics are medians over the rounds: forwarded packets/s per mode and rate, and
// the program's average run time per drop (BPF run-time statistics).
//
//	go test -run '^$' -bench ForwardingDropWatch -benchtime 5x ./engine/kernel/dropwatch/
func BenchmarkPrivilegedForwardingDropWatch(b *testing.B) {
	n := newFwdNet(b)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enabling BPF run-time statistics: %v", err)
	}
	defer stats.Close()
	other := dropwatch.Flow{Proto: unix.IPPROTO_TCP, Dst: netip.MustParseAddr("10.72.9.1"), DstPort: 443}
	modes := []fwdMode{
		{"off", nil},
		// The program runs for every drop and stops at the namespace check.
		{"other-netns", &dropwatch.Options{Netns: n.rtr.Name}},
		// The namespace matches: headers read, two flow lookups, no match.
		{"flow-miss", &dropwatch.Options{Netns: n.sink.Name, Flows: []dropwatch.Flow{other}}},
		// Every drop reported through the ring buffer to a reader that discards it.
		{"report-all", &dropwatch.Options{Netns: n.sink.Name}},
	}
	rates := []struct {
		name string
		pps  int
	}{{"200k", 200000}, {"max", 0}}
	pps := map[string][]float64{}
	runNs := map[string][]float64{}
	var lostAll uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range modes {
			m := modes[(k+i)%len(modes)]
			for _, r := range rates {
				p, per, reported, lost := n.trial(b, m, r.pps, time.Second)
				pps[m.name+"/"+r.name] = append(pps[m.name+"/"+r.name], p)
				if m.opts != nil {
					runNs[m.name] = append(runNs[m.name], float64(per.Nanoseconds()))
				}
				if reported != 0 || lost != 0 {
					// Every forwarded packet is dropped at the sink: reported + lost ≈ forwarded.
					b.Logf("%-18s %8.0f forwarded pps, %d drops reported, %d lost", m.name+"/"+r.name, p, reported, lost)
					lostAll += lost
				}
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(lostAll), "lost-drops")
	for _, m := range modes {
		for _, r := range rates {
			key := m.name + "/" + r.name
			med, base := median(pps[key]), median(pps["off/"+r.name])
			b.ReportMetric(med, key+"-fwd-pps")
			b.Logf("%-18s %8.0f forwarded pps (%+.1f%% vs off)  runs: %v", key, med, 100*(med/base-1), pps[key])
		}
		if m.opts != nil {
			b.ReportMetric(median(runNs[m.name]), m.name+"-ns/drop")
		}
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
