package kernel_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"roundtrip/engine/inet"
	. "roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
)

func TestConntrackFilterAndStatus(t *testing.T) {
	e := ConntrackEntry{
		Family: inet.V4,
		Orig:   ConntrackTuple{Proto: unix.IPPROTO_TCP, Src: netip.MustParseAddrPort("10.72.5.10:40001"), Dst: netip.MustParseAddrPort("10.72.5.34:81")},
		Reply:  ConntrackTuple{Proto: unix.IPPROTO_TCP, Src: netip.MustParseAddrPort("10.72.5.32:80"), Dst: netip.MustParseAddrPort("10.72.5.10:40001")},
		Status: CTStatusConfirmed | CTStatusDstNAT,
		Mark:   0x12,
	}
	if !e.DNAT() || e.SNAT() || !e.Unreplied() {
		t.Errorf("DNAT %v SNAT %v Unreplied %v; want true false true", e.DNAT(), e.SNAT(), e.Unreplied())
	}
	if got := e.Status.String(); got != "UNREPLIED|CONFIRMED|DST_NAT" {
		t.Errorf("status reads %q", got)
	}
	// Every packet of the connection, on both sides of the NAT, belongs to the entry.
	for _, tu := range []ConntrackTuple{e.Orig, e.Orig.Reverse(), e.Reply, e.Reply.Reverse()} {
		if !e.Has(tu) {
			t.Errorf("entry does not have %s", tu)
		}
	}
	unreplied, _ := parseStatus(t, "unreplied")
	assured, _ := parseStatus(t, "ASSURED")
	for _, c := range []struct {
		f    ConntrackFilter
		want bool
	}{
		{ConntrackFilter{}, true},
		{ConntrackFilter{Proto: unix.IPPROTO_UDP}, false},
		{ConntrackFilter{Addr: netip.MustParseAddr("10.72.5.32")}, true}, // the DNAT target
		{ConntrackFilter{Src: netip.MustParseAddr("10.72.5.32")}, false},
		{ConntrackFilter{Dst: netip.MustParseAddr("10.72.5.34")}, true},
		{ConntrackFilter{Port: 80}, true},
		{ConntrackFilter{Port: 8080}, false},
		{ConntrackFilter{Mark: &model.MarkMatch{Value: 0x10, Mask: 0xf0}}, true},
		{ConntrackFilter{Mark: &model.MarkMatch{Value: 0x20, Mask: 0xf0}}, false},
		{unreplied, true},
		{assured, false},
		{ConntrackFilter{Family: inet.V6}, false},
	} {
		if got := c.f.Match(&e); got != c.want {
			t.Errorf("filter %+v: %v, want %v", c.f, got, c.want)
		}
	}
	if _, _, err := ParseConntrackStatus("bogus"); err == nil {
		t.Error("ParseConntrackStatus(bogus) succeeded")
	}
	if _, err := ParseTCPState("established"); err != nil {
		t.Error(err)
	}
}

func parseStatus(t *testing.T, s string) (ConntrackFilter, error) {
	set, clear, err := ParseConntrackStatus(s)
	if err != nil {
		t.Fatal(err)
	}
	return ConntrackFilter{StatusSet: set, StatusClear: clear}, nil
}

func TestPrivilegedConntrackDumpWatchGetStats(t *testing.T) {
	l := lab.New(t)
	a, b := l.NS("a"), l.NS("b")
	l.Veth(a, "eth0", b, "eth1")
	a.Addr("eth0", "10.72.201.1/24")
	b.Addr("eth1", "10.72.201.2/24")
	// A rule that needs conntrack makes the namespace track connections.
	b.Run("iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT")
	b.Listen("10.72.201.2:8080")
	ns := Namespace{Name: b.Name}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var events []ConntrackEvent
	watching := make(chan error, 1)
	filter := &ConntrackFilter{Proto: unix.IPPROTO_TCP, Port: 8080}
	go func() {
		watching <- WatchConntrack(ctx, ns, filter, func(ev ConntrackEvent) error {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
			return nil
		})
	}()
	time.Sleep(100 * time.Millisecond) // let the watch subscribe

	conn, err := a.Dial("10.72.201.2:8080", "10.72.201.1:40200", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	orig := ConntrackTuple{Proto: unix.IPPROTO_TCP, Src: netip.MustParseAddrPort("10.72.201.1:40200"), Dst: netip.MustParseAddrPort("10.72.201.2:8080")}

	c, err := OpenConntrack(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// An unreplied entry, made by hand, for the status filter.
	half := conntrack.NewFlow(unix.IPPROTO_UDP, 0, netip.MustParseAddr("10.72.201.1"), netip.MustParseAddr("10.72.201.9"), 5000, 53, 60, 7)
	if err := ns.Do(func() error {
		cc, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer cc.Close()
		return cc.Create(half)
	}); err != nil {
		t.Fatal(err)
	}

	var all, unreplied []ConntrackEntry
	if err := c.Dump(ctx, nil, func(e *ConntrackEntry) error { all = append(all, *e); return nil }); err != nil {
		t.Fatal(err)
	}
	set, clr, _ := ParseConntrackStatus("UNREPLIED")
	if err := c.Dump(ctx, &ConntrackFilter{StatusSet: set, StatusClear: clr, Mark: &model.MarkMatch{Value: 7, Mask: ^uint32(0)}}, func(e *ConntrackEntry) error {
		unreplied = append(unreplied, *e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(all, func(e ConntrackEntry) bool { return e.Orig == orig })
	if i < 0 {
		t.Fatalf("dump has no entry for %s: %v", orig, all)
	}
	if e := all[i]; e.Unreplied() || e.TCPState != "ESTABLISHED" || e.Reply != orig.Reverse() || e.Timeout == 0 {
		t.Errorf("entry %s: want replied, ESTABLISHED, reply tuple %s, a timeout", &e, orig.Reverse())
	}
	if len(unreplied) != 1 || unreplied[0].Orig.Dst != netip.MustParseAddrPort("10.72.201.9:53") || !unreplied[0].Unreplied() {
		t.Errorf("unreplied entries with mark 7: %v; want the hand-made UDP one", unreplied)
	}

	got, err := c.Get(orig.Reverse().Reverse())
	if err != nil || got.Orig != orig {
		t.Errorf("Get(%s) = %v, %v", orig, &got, err)
	}
	if got, err := c.Get(orig.Reverse()); err != nil || got.Orig != orig {
		t.Errorf("Get by reply tuple = %v, %v", &got, err)
	}
	if _, err := c.Get(ConntrackTuple{Proto: unix.IPPROTO_TCP, Src: netip.MustParseAddrPort("10.72.201.1:1"), Dst: netip.MustParseAddrPort("10.72.201.2:2")}); !errors.Is(err, ErrConntrackNotFound) {
		t.Errorf("Get of an unknown tuple: %v, want ErrConntrackNotFound", err)
	}

	st, err := ReadConntrackStats(ns)
	if err != nil {
		t.Fatal(err)
	}
	if st.Count < 2 || st.Max <= 0 || len(st.CPUs) == 0 || st.Unavailable != "" {
		t.Errorf("stats %+v: want count >= 2, a max, per-CPU counters", st)
	}

	time.Sleep(200 * time.Millisecond)
	cancel()
	if err := <-watching; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var sawNew bool
	for _, ev := range events {
		if ev.Entry.Orig.Dst.Port() != 8080 {
			t.Errorf("the watch filter let through %s", &ev.Entry)
		}
		if ev.Type == EventNew && ev.Entry.Orig == orig {
			sawNew = true
		}
	}
	if !sawNew {
		t.Errorf("events %+v: want a new event for %s", events, orig)
	}
}

// TestPrivilegedConntrackDumpStreams fills a namespace's table with 262144 entries (the
// default maximum on a machine of this size) and checks that dumping it keeps the heap small:
// the entries are handed over one at a time, never gathered.
func TestPrivilegedConntrackDumpStreams(t *testing.T) {
	const entries = 1 << 18
	l := lab.New(t)
	n := l.NS("ct")
	ns := Namespace{Name: n.Name}
	fillConntrack(t, ns, entries)

	c, err := OpenConntrack(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	peak := base.HeapInuse
	count := 0
	err = c.Dump(context.Background(), nil, func(e *ConntrackEntry) error {
		if count++; count%16384 == 0 {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count != entries {
		t.Errorf("dumped %d entries, want %d", count, entries)
	}
	grew := int64(peak) - int64(base.HeapInuse)
	t.Logf("dumping %d entries grew the heap by at most %.1f MiB", count, float64(grew)/(1<<20))
	if grew > 32<<20 {
		t.Errorf("the heap grew by %.1f MiB during the dump; a streaming dump needs a few MiB", float64(grew)/(1<<20))
	}
}

// fillConntrack creates n UDP entries in the namespace's table. ti-mo's Create waits for the
// kernel's answer to each entry (about 80 µs); here the requests go out in batches of
// messages without NLM_F_ACK, and the table's count is checked at the end.
func fillConntrack(t testing.TB, ns Namespace, n int) {
	t.Helper()
	nested := func(typ uint16, children ...*nl.RtAttr) *nl.RtAttr {
		a := nl.NewRtAttr(int(typ)|unix.NLA_F_NESTED, nil)
		for _, c := range children {
			a.AddChild(c)
		}
		return a
	}
	be16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	tuple := func(typ uint16, src, dst [4]byte, sport, dport uint16) *nl.RtAttr {
		return nested(typ,
			nested(1, nl.NewRtAttr(1, src[:]), nl.NewRtAttr(2, dst[:])), // CTA_TUPLE_IP: V4_SRC, V4_DST
			nested(2, nl.NewRtAttr(1, []byte{unix.IPPROTO_UDP}), nl.NewRtAttr(2, be16(sport)), nl.NewRtAttr(3, be16(dport))))
	}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		dst := netip.MustParseAddr("10.74.0.1").As4()
		var batch []byte
		for i := range n {
			src := [4]byte{10, 73, byte(i >> 8), byte(i)}
			sport := uint16(1024 + i>>16)
			// IPCTNL_MSG_CT_NEW of NFNL_SUBSYS_CTNETLINK, after an nfgenmsg for AF_INET.
			req := nl.NewNetlinkRequest(1<<8 /* | IPCTNL_MSG_CT_NEW (0) */, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
			req.AddData(rawData{unix.AF_INET, 0, 0, 0})
			req.AddData(tuple(1, src, dst, sport, 53)) // CTA_TUPLE_ORIG
			req.AddData(tuple(2, dst, src, 53, sport)) // CTA_TUPLE_REPLY
			req.AddData(nl.NewRtAttr(7, be32(600)))    // CTA_TIMEOUT
			batch = append(batch, req.Serialize()...)
			if len(batch) > 32<<10 || i == n-1 {
				if err := unix.Sendto(fd, batch, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("filling the conntrack table of %s: %v", ns, err)
	}
	st, err := ReadConntrackStats(ns)
	if err != nil {
		t.Fatal(err)
	}
	if st.Count != n {
		t.Fatalf("the conntrack table of %s has %d entries after creating %d", ns, st.Count, n)
	}
}

// rawData is netlink request data given as bytes.
type rawData []byte

func (d rawData) Len() int          { return len(d) }
func (d rawData) Serialize() []byte { return d }

// BenchmarkPrivilegedConntrackDump compares the heap a dump of 262144 entries needs with
// the streaming Dump and with ti-mo's slice-returning Dump.
func BenchmarkPrivilegedConntrackDump(b *testing.B) {
	const entries = 1 << 18
	l := lab.New(b)
	n := l.NS("ct")
	ns := Namespace{Name: n.Name}
	fillConntrack(b, ns, entries)
	c, err := OpenConntrack(ns)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var timo *conntrack.Conn
	if err := ns.Do(func() error { timo, err = conntrack.Dial(nil); return err }); err != nil {
		b.Fatal(err)
	}
	defer timo.Close()
	b.Run("streaming", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Dump(context.Background(), nil, func(*ConntrackEntry) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ti-mo-slice", func(b *testing.B) {
		b.ReportAllocs()
		var peak uint64
		for b.Loop() {
			runtime.GC()
			flows, err := timo.Dump(nil)
			if err != nil {
				b.Fatal(err)
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			if len(flows) != entries {
				b.Fatalf("%d flows", len(flows))
			}
		}
		b.ReportMetric(float64(peak)/(1<<20), "MiB-heap")
	})
}
