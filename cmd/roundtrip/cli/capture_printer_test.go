package cli

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"roundtrip/diagnose"
	"roundtrip/engine/capture"
	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/kernel/nftrace"
	"roundtrip/engine/quote"
)

// lockedBuffer is a bytes.Buffer the printer's flusher and the test may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	n  int // writes
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testPacket() *diagnose.Packet {
	return &diagnose.Packet{Time: time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC), Iface: "eth1", Dir: capture.In, L3: "ip",
		Proto: unix.IPPROTO_UDP, Src: netip.MustParseAddrPort("10.95.1.1:40000"), Dst: netip.MustParseAddrPort("10.95.1.2:9999"),
		Payload: 18, Conn: 12, Role: "request"}
}

// TestEventPrinterBuffersPacketLines: a thousand packet lines reach standard output in a few
// writes, as the same text fmt wrote, and all of it is out once close returns.
func TestEventPrinterBuffersPacketLines(t *testing.T) {
	out := &lockedBuffer{}
	inv := &Invocation{Factory: &Factory{Ctx: context.Background(), Stdout: out, Stderr: io.Discard}}
	pr := newEventPrinter(inv)
	pk := testPacket()
	for range 1000 {
		if err := pr.emit(diagnose.Event{Type: diagnose.EventPacket, Time: pk.Time, Packet: pk}); err != nil {
			t.Fatal(err)
		}
	}
	if err := pr.close(); err != nil {
		t.Fatal(err)
	}
	want := "14:00:00.000000 eth1     in  udp 10.95.1.1:40000 > 10.95.1.2:9999 len 18  [conn 12 request]\n"
	got := out.String()
	if got != strings.Repeat(want, 1000) {
		t.Fatalf("output is not 1000 times %q:\n%.300s", want, got)
	}
	if out.n > 10 {
		t.Errorf("%d writes for 1000 lines: the output is not buffered", out.n)
	}
}

// TestEventPrinterFlushesWhileIdle: a line is shown within the flush interval even when no
// further event comes (a person watching a quiet capture sees each packet).
func TestEventPrinterFlushesWhileIdle(t *testing.T) {
	out := &lockedBuffer{}
	inv := &Invocation{Factory: &Factory{Ctx: context.Background(), Stdout: out, Stderr: io.Discard}}
	pr := newEventPrinter(inv)
	defer pr.close()
	pk := testPacket()
	if err := pr.emit(diagnose.Event{Type: diagnose.EventPacket, Time: pk.Time, Packet: pk}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for out.String() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the line was not written out within 2s of the last event")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEventPrinterPacketAllocs: printing a packet's line allocates nothing (no fmt, one
// reused line buffer) once the buffers have grown.
func TestEventPrinterPacketAllocs(t *testing.T) {
	inv := &Invocation{Factory: &Factory{Ctx: context.Background(), Stdout: io.Discard, Stderr: io.Discard}}
	pr := newEventPrinter(inv)
	defer pr.close()
	pk := testPacket()
	ev := diagnose.Event{Type: diagnose.EventPacket, Time: pk.Time, Packet: pk}
	if n := testing.AllocsPerRun(1000, func() { pr.emit(ev) }); n > 0 {
		t.Errorf("%.2f allocations per packet line, want 0", n)
	}
}

// TestKernelLinesMatchFmt: drop and rule lines are what quote.TermFprintf wrote before they
// were appended, escaping included.
func TestKernelLinesMatchFmt(t *testing.T) {
	at := time.Date(2026, 12, 3, 14, 0, 0, 123456789, time.UTC)
	d := &dropwatch.Drop{Time: at, Iface: "eth\x1b[2J1", Reason: "SOCKET_RCVBUFF", Words: "the socket's receive buffer is full",
		Packet: dropwatch.Packet{Proto: unix.IPPROTO_UDP, Src: netip.MustParseAddrPort("10.95.1.1:40000"), Dst: netip.MustParseAddrPort("10.95.1.2:9999")}}
	clean := *d
	clean.Iface, clean.Location = "eth1", dropwatch.Location{Symbol: "sk_filter_trim_cap", Offset: 0x11c}
	clean.Packet.Proto, clean.Packet.Flags, clean.Packet.Length = unix.IPPROTO_TCP, 0x02, 60
	st := &nftrace.Step{Time: at, Family: "inet", Table: "t\nx", Chain: "input", Handle: 4, Kind: "rule", Verdict: "drop", Packet: d.Packet}
	for _, c := range []struct {
		ev   diagnose.Event
		want string
	}{
		{diagnose.Event{Type: diagnose.EventDrop, Time: at, Conn: 3, Drop: d}, quote.TermSprintf("%s drop      [conn %d] %s\n", at.Format("15:04:05.000000"), 3, d)},
		{diagnose.Event{Type: diagnose.EventDrop, Time: at, Conn: 12, Drop: &clean}, quote.TermSprintf("%s drop      [conn %d] %s\n", at.Format("15:04:05.000000"), 12, &clean)},
		{diagnose.Event{Type: diagnose.EventRule, Time: at, Conn: 0, Rule: st}, quote.TermSprintf("%s rule      [conn %d] %s\n", at.Format("15:04:05.000000"), 0, st)},
	} {
		out := &lockedBuffer{}
		pr := newEventPrinter(&Invocation{Factory: &Factory{Ctx: context.Background(), Stdout: out, Stderr: io.Discard}})
		if err := pr.emit(c.ev); err != nil {
			t.Fatal(err)
		}
		if err := pr.close(); err != nil {
			t.Fatal(err)
		}
		if got := out.String(); got != c.want {
			t.Errorf("%s line:\n got %q\nwant %q", c.ev.Type, got, c.want)
		}
	}
}

// TestEventPrinterDropAllocs: a drop's line (no control characters) allocates nothing.
func TestEventPrinterDropAllocs(t *testing.T) {
	inv := &Invocation{Factory: &Factory{Ctx: context.Background(), Stdout: io.Discard, Stderr: io.Discard}}
	pr := newEventPrinter(inv)
	defer pr.close()
	at := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	d := &dropwatch.Drop{Time: at, Iface: "eth1", Reason: "SOCKET_RCVBUFF", Words: "the socket's receive buffer is full",
		Location: dropwatch.Location{Symbol: "sk_filter_trim_cap", Offset: 0x11c},
		Packet:   dropwatch.Packet{L3: "ipv4", Proto: unix.IPPROTO_UDP, Src: netip.MustParseAddrPort("10.95.1.1:40000"), Dst: netip.MustParseAddrPort("10.95.1.2:9999"), Length: 100}}
	ev := diagnose.Event{Type: diagnose.EventDrop, Time: at, Conn: 1, Drop: d}
	if n := testing.AllocsPerRun(1000, func() { pr.emit(ev) }); n > 0 {
		t.Errorf("%.2f allocations per drop line, want 0", n)
	}
}
