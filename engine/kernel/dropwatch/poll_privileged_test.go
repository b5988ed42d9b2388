package dropwatch_test

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/kernel/dropwatch/dwtest"
	"roundtrip/engine/lab"
)

// loopNet is one namespace whose loopback drops UDP datagrams to closed ports (NO_SOCKET),
// watched for those drops, and a socket inside it to send them.
type loopNet struct {
	w    *dropwatch.Watcher
	conn net.PacketConn
}

func newLoopNet(t *testing.T) *loopNet {
	l := lab.NewPrefixed(t, "rbw")
	ns := l.NS("lo")
	w := dwtest.Watch(t, ns, dropwatch.Flow{Proto: unix.IPPROTO_UDP, Dst: netip.MustParseAddr("127.0.0.1")})
	var conn net.PacketConn
	// The socket belongs to the namespace it was opened in, wherever it is used later.
	err := ns.Do(func() error {
		var err error
		conn, err = net.ListenPacket("udp4", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &loopNet{w: w, conn: conn}
}

// send sends one datagram to each port, all closed.
func (n *loopNet) send(t *testing.T, ports ...uint16) {
	t.Helper()
	for _, p := range ports {
		if _, err := n.conn.WriteTo([]byte("rbw"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(p)}); err != nil {
			t.Fatal(err)
		}
	}
}

// receive collects the drops of datagrams to the ports (every other drop is an error) until
// each has come once, and returns when the last came; it fails the test when some do not
// come within limit, or one comes twice.
func (n *loopNet) receive(t *testing.T, ports []uint16, limit time.Duration) time.Time {
	t.Helper()
	want := make(map[uint16]bool, len(ports))
	for _, p := range ports {
		want[p] = true
	}
	seen := make(map[uint16]bool, len(ports))
	timeout := time.After(limit)
	for len(seen) < len(want) {
		select {
		case d, ok := <-n.w.Events():
			if !ok {
				t.Fatalf("the drop watcher stopped: %v", n.w.Err())
			}
			p := d.Packet.Dst.Port()
			if d.Reason != "NO_SOCKET" || !want[p] || seen[p] {
				t.Fatalf("unexpected drop %s (a duplicate, or not to a port sent to)", d)
			}
			seen[p] = true
		case <-timeout:
			lost, _ := n.w.Lost()
			t.Fatalf("%d of %d drops reported within %s (%d counted lost in the ring)", len(seen), len(want), limit, lost)
		}
	}
	return time.Now()
}

// A few drops, far fewer than the 32 KiB of records at which the program wakes the reader,
// are still reported, by the reader's poll (a reader waiting for a wakeup would get none and
// fail after 2 s). How long they wait is logged, not judged: speed is for benchmarks.
func TestPrivilegedDropFewArriveWithoutWakeup(t *testing.T) {
	n := newLoopNet(t)
	var delays []time.Duration
	for round := range 7 {
		base := uint16(20000 + 10*round)
		ports := []uint16{base, base + 1, base + 2}
		n.send(t, ports...)
		sent := time.Now()
		got := n.receive(t, ports, 2*time.Second)
		delays = append(delays, got.Sub(sent))
		// Rounds out of step with the poll.
		time.Sleep(time.Duration(3+round*7%10) * time.Millisecond)
	}
	slices.Sort(delays)
	t.Logf("time to report a burst of 3 drops: %v (poll interval %v)", delays, dropwatch.PollInterval)
}

// Drops reported just before Close, still in the ring because no wakeup came for them, are
// delivered before Events closes: Close reads the ring to its end first.
func TestPrivilegedDropCloseDeliversTheRest(t *testing.T) {
	n := newLoopNet(t)
	ports := []uint16{40000, 40001, 40002}
	n.send(t, ports...)
	n.w.Close()
	seen := map[uint16]bool{}
	for d := range n.w.Events() {
		seen[d.Packet.Dst.Port()] = true
	}
	for _, p := range ports {
		if !seen[p] {
			t.Errorf("the drop to port %d, reported before Close, was not delivered (got %v)", p, seen)
		}
	}
}

// Many drops at once, several times 32 KiB (the program wakes the reader at each), are
// all reported, each once, none counted lost.
func TestPrivilegedDropBurstNoneLost(t *testing.T) {
	n := newLoopNet(t)
	// 2000 records of 96 bytes: 5 wakeups, 18% of the 1 MiB ring, so that none is lost even if
	// the reader were scheduled late; what is tested is that every record is read.
	ports := make([]uint16, 2000)
	for i := range ports {
		ports[i] = uint16(30000 + i)
	}
	n.send(t, ports...)
	n.receive(t, ports, 10*time.Second)
	if lost, err := n.w.Lost(); err != nil || lost != 0 {
		t.Errorf("Lost = %d, %v; want 0", lost, err)
	}
}
