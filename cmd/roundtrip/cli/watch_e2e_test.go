package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/watch"
	"roundtrip/wizards"
)

// syncBuffer is a log the watcher writes from its goroutine while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// watchLab is case 2's gateway with the multi-wan setup applied and the watcher running on it.
type watchLab struct {
	t      *testing.T
	c      *lab.Case2Net
	ns     kernel.Namespace
	store  *kernel.Store
	log    *syncBuffer
	routes []wizards.WANRoute
}

// keepAlive is an HTTP/1.1 connection from the LAN host to an echo server, reused for several
// requests: each answer is the client address the server sees.
type keepAlive struct {
	conn net.Conn
	r    *bufio.Reader
	port uint16
}

func (l *watchLab) open(server string) *keepAlive {
	l.t.Helper()
	conn, err := l.c.LANHost.Dial(server, "", 2*time.Second)
	if err != nil {
		l.t.Fatalf("connecting to %s from the LAN: %v", server, err)
	}
	l.t.Cleanup(func() { conn.Close() })
	return &keepAlive{conn: conn, r: bufio.NewReader(conn), port: uint16(conn.LocalAddr().(*net.TCPAddr).Port)}
}

func (k *keepAlive) get() (string, error) {
	k.conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(k.conn, "GET / HTTP/1.1\r\nHost: echo\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// seenAs fetches the echo server once on a new connection and returns the source it saw.
func (l *watchLab) seenAs(server string) string {
	l.t.Helper()
	body, err := l.c.LANHost.HTTPGet(server, 2*time.Second)
	if err != nil {
		return "error: " + err.Error()
	}
	return body
}

// entry returns the conntrack entry of the LAN host's connection from port.
func (l *watchLab) entry(port uint16) *kernel.ConntrackEntry {
	l.t.Helper()
	c, err := kernel.OpenConntrack(l.ns)
	if err != nil {
		l.t.Fatal(err)
	}
	defer c.Close()
	var found *kernel.ConntrackEntry
	src := netip.AddrPortFrom(netip.MustParseAddr(l.c.LANHostAddr), port)
	err = c.Dump(context.Background(), &kernel.ConntrackFilter{Src: src.Addr()}, func(e *kernel.ConntrackEntry) error {
		if e.Orig.Src == src {
			e := *e
			found = &e
		}
		return nil
	})
	if err != nil {
		l.t.Fatal(err)
	}
	return found
}

// natedTo counts the LAN host's entries source-NATed to addr.
func (l *watchLab) natedTo(addr string) int {
	l.t.Helper()
	c, err := kernel.OpenConntrack(l.ns)
	if err != nil {
		l.t.Fatal(err)
	}
	defer c.Close()
	n := 0
	err = c.Dump(context.Background(), &kernel.ConntrackFilter{Src: netip.MustParseAddr(l.c.LANHostAddr)}, func(e *kernel.ConntrackEntry) error {
		if e.Reply.Dst.Addr().String() == addr {
			n++
		}
		return nil
	})
	if err != nil {
		l.t.Fatal(err)
	}
	return n
}

func (l *watchLab) status() *watch.Status {
	l.t.Helper()
	s, err := watch.ReadStatus(l.store.Dir, time.Now(), nil)
	if err != nil {
		return &watch.Status{}
	}
	return s
}

func (l *watchLab) wan(s *watch.Status, name string) watch.WANStatus {
	for _, w := range s.WANs {
		if w.Name == name {
			return w
		}
	}
	return watch.WANStatus{}
}

// waitStatus polls the status file until ok holds; the deadline only bounds a broken test.
func (l *watchLab) waitStatus(what string, ok func(*watch.Status) bool) *watch.Status {
	l.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := l.status()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("waiting for %s: status %+v\nlog:\n%s", what, s, l.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func newWatchLab(t *testing.T, failback string) *watchLab {
	c := lab.Case2(t)
	ns := kernel.Namespace{Name: c.GW.Name}
	dirs := []string{t.TempDir()}
	l := &watchLab{t: t, c: c, ns: ns, store: &kernel.Store{Dir: t.TempDir(), NS: ns}, log: &syncBuffer{}}
	mw := &wizards.MultiWANOptions{
		WANs: []wizards.WAN{{Iface: c.WANA, Gateway: netip.MustParseAddr(c.GWA), Name: "isp_a"},
			{Iface: c.WANB, Gateway: netip.MustParseAddr(c.GWB), Name: "isp_b"}},
		LANs: []string{c.LAN}, Default: "isp_a",
		RouteLists: []wizards.RouteList{{WAN: "isp_b", Prefixes: []netip.Prefix{netip.MustParsePrefix(c.NetB)}}},
		SNAT:       true, Connmark: true,
	}
	st, err := kernel.ReadWith(context.Background(), ns, kernel.ReadOptions{RTTablesDirs: dirs})
	if err != nil {
		t.Fatal(err)
	}
	res, err := mw.Plan(st)
	if err != nil {
		t.Fatal(err)
	}
	a := &kernel.Applier{NS: ns, Store: l.store, RTTablesDirs: dirs, LockWait: 10 * time.Second}
	if _, err := a.Apply(context.Background(), res.Plan, kernel.ApplyOptions{}); err != nil {
		t.Fatalf("applying multi-wan: %v", err)
	}
	if l.routes, err = mw.Routes(st); err != nil {
		t.Fatal(err)
	}

	targets := []watch.Target{}
	for _, v := range []string{"198.18.76.200", "198.18.77.200", "tcp:" + c.ServerAAddr} {
		tg, err := watch.ParseTarget(v)
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, tg)
	}
	cfg := watch.Config{MultiWAN: mw, Targets: targets, Interval: 100 * time.Millisecond, Timeout: 200 * time.Millisecond,
		Health: watch.HealthConfig{DownAfter: 3, UpAfter: 5}, Failback: failback}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- watch.Live{Config: cfg, NS: ns, Log: l.log, LockWait: 10 * time.Second, Store: l.store, RTTablesDirs: dirs}.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the watcher ended with %v\n%s", err, l.log.String())
		}
		if s := l.status(); s.Running || !s.Stopped {
			t.Errorf("after the watcher stopped its status says running %v, stopped %v", s.Running, s.Stopped)
		}
	})
	l.waitStatus("both WANs up", func(s *watch.Status) bool {
		return s.Default == "isp_a" && l.wan(s, "isp_a").Health == watch.HealthUp && l.wan(s, "isp_b").Health == watch.HealthUp
	})
	return l
}

// TestPrivilegedWatchFailover is case 2's open question for real: two ISPs in namespaces, the
// watcher running on the gateway. ISP A dies (its link goes down, or it drops everything);
// new connections from the LAN move to ISP B within the detection time, the conntrack entries
// NATed to A are deleted while B's stay; A comes back and traffic fails back as the policy
// says; then 20% of the probes are lost on both ISPs and nothing flaps.
func TestPrivilegedWatchFailover(t *testing.T) {
	lab.Require(t)
	for _, tc := range []struct{ name, cut, failback string }{
		{"link-down-immediate", "link", watch.FailbackImmediate},
		{"isp-drops-new-flows", "drop", watch.FailbackNewFlows},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newWatchLab(t, tc.failback)
			c := l.c
			if got := l.seenAs(c.ServerAAddr); !strings.HasPrefix(got, c.PublicA+":") {
				t.Fatalf("before the cut, ISP A's server sees %q, want %s", got, c.PublicA)
			}
			connA, connB := l.open(c.ServerAAddr), l.open(c.ServerBAddr)
			if e := l.entry(connA.port); e == nil || e.Reply.Dst.Addr().String() != c.PublicA {
				t.Fatalf("the connection to ISP A's server is not NATed to A: %v", e)
			}
			if e := l.entry(connB.port); e == nil || e.Reply.Dst.Addr().String() != c.PublicB {
				t.Fatalf("the connection to ISP B's server is not NATed to B: %v", e)
			}

			// Cut ISP A.
			cut := time.Now()
			switch tc.cut {
			case "link":
				c.ISPA.IP("link", "set", "cust", "down")
			case "drop":
				for _, chain := range [][]string{{"INPUT", "-i"}, {"FORWARD", "-i"}, {"FORWARD", "-o"}} {
					c.ISPA.Run("iptables", "-w", "-I", chain[0], chain[1], "cust", "-j", "DROP")
				}
			}
			s := l.waitStatus("isp_a to be routed around", func(s *watch.Status) bool {
				return len(s.RoutedAround) == 1 && s.RoutedAround[0] == "isp_a" && s.Default == "isp_b"
			})
			t.Logf("isp_a routed around %s after the cut (configured: 3 failed rounds of 100ms, 200ms timeout)", time.Since(cut).Round(10*time.Millisecond))
			down := l.wan(s, "isp_a")
			if down.Health != watch.HealthDown || !strings.Contains(eventsText(s), "isp_a down: 3 rounds in a row failed") {
				t.Errorf("isp_a is %s; events:\n%s", down.Health, eventsText(s))
			}
			if got := l.seenAs(c.ServerAAddr); !strings.HasPrefix(got, c.PublicB+":") {
				t.Errorf("during the outage a new connection to ISP A's server is seen as %q, want from %s", got, c.PublicB)
			}
			if n := l.natedTo(c.PublicA); n != 0 {
				t.Errorf("%d conntrack entries of the LAN are still NATed to the dead WAN", n)
			}
			if e := l.entry(connB.port); e == nil || e.Reply.Dst.Addr().String() != c.PublicB {
				t.Errorf("the connection through ISP B lost its conntrack entry: %v", e)
			}
			if j := lastJournal(t, l.store); !strings.HasPrefix(j.Intent, "roundtrip watch: isp_a down") || j.Status != kernel.StatusApplied {
				t.Errorf("the failover is not journaled: %s", j)
			}
			// A connection made during the outage, to a destination that fails back.
			during := l.open(c.ServerAAddr)
			first, err := during.get()
			if err != nil || !strings.HasPrefix(first, c.PublicB+":") {
				t.Fatalf("a connection during the outage: %q, %v", first, err)
			}

			// ISP A comes back.
			switch tc.cut {
			case "link":
				c.ISPA.IP("link", "set", "cust", "up")
			case "drop":
				for _, chain := range [][]string{{"INPUT", "-i"}, {"FORWARD", "-i"}, {"FORWARD", "-o"}} {
					c.ISPA.Run("iptables", "-w", "-D", chain[0], chain[1], "cust", "-j", "DROP")
				}
			}
			l.waitStatus("the failback", func(s *watch.Status) bool {
				return len(s.RoutedAround) == 0 && s.Default == "isp_a" && l.wan(s, "isp_a").Health == watch.HealthUp
			})
			if got := l.seenAs(c.ServerAAddr); !strings.HasPrefix(got, c.PublicA+":") {
				t.Errorf("after the failback a new connection to ISP A's server is seen as %q, want from %s", got, c.PublicA)
			}
			if e := l.entry(connB.port); e == nil || e.Reply.Dst.Addr().String() != c.PublicB {
				t.Errorf("the failback deleted the connection through ISP B, whose path did not change: %v", e)
			}
			switch tc.failback {
			case watch.FailbackImmediate:
				if e := l.entry(during.port); e != nil && e.Reply.Dst.Addr().String() == c.PublicB {
					t.Errorf("immediate failback kept the outage's connection NATed to B, which now routes via A: %v", e)
				}
				// Its next request starts a new entry via A with A's address: the server resets it
				// at once instead of leaving it to hang.
				if body, err := during.get(); err == nil {
					t.Errorf("the outage's connection still answers after an immediate failback: %q", body)
				}
			case watch.FailbackNewFlows:
				e := l.entry(during.port)
				if e == nil || e.Mark&l.routes[1].Mark.Mask != l.routes[1].Mark.Value {
					t.Fatalf("the outage's connection is not pinned to isp_b's mark %#x: %v", l.routes[1].Mark.Value, e)
				}
				if again, err := during.get(); err != nil || again != first {
					t.Errorf("the outage's connection after a new-flows failback: %q, %v; want it still working as %q", again, err, first)
				}
			}
			if j := lastJournal(t, l.store); !strings.HasPrefix(j.Intent, "roundtrip watch: isp_a up") {
				t.Errorf("the failback is not journaled: %s", j)
			}

			// 20% of the probes lost through both ISPs: nothing flaps.
			for _, isp := range []*lab.NS{c.ISPA, c.ISPB} {
				isp.Run("iptables", "-w", "-A", "FORWARD", "-i", "cust", "-m", "statistic", "--mode", "random", "--probability", "0.2", "-j", "DROP")
			}
			start := l.status()
			end := l.waitStatus("40 rounds under 20% loss", func(s *watch.Status) bool { return s.Rounds >= start.Rounds+40 })
			for _, name := range []string{"isp_a", "isp_b"} {
				before, after := l.wan(start, name), l.wan(end, name)
				if after.Health != watch.HealthUp || after.Transitions != before.Transitions {
					t.Errorf("%s under 20%% loss: %s, %d health changes (before %d)\n%s", name, after.Health, after.Transitions, before.Transitions, eventsText(end))
				}
			}
			if len(end.RoutedAround) != 0 {
				t.Errorf("routed around %v under 20%% loss", end.RoutedAround)
			}
			lossA := l.wan(end, "isp_a").Loss
			t.Logf("isp_a's loss over the last rounds: %.0f%%", lossA*100)
			if t.Failed() {
				t.Logf("watcher log:\n%s", l.log.String())
			}
		})
	}
}

func eventsText(s *watch.Status) string {
	var b strings.Builder
	for _, e := range s.Events {
		fmt.Fprintf(&b, "%s\n", e)
	}
	return b.String()
}

func lastJournal(t *testing.T, s *kernel.Store) *kernel.Journal {
	t.Helper()
	js, err := s.List()
	if err != nil || len(js) == 0 {
		t.Fatalf("journals: %v (%d)", err, len(js))
	}
	return js[len(js)-1]
}
