package diagnose

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
)

// entryLineFmt is EntryLine as it was written with fmt: the reference the fast one must match.
func entryLineFmt(e *kernel.ConntrackEntry) string {
	var b strings.Builder
	state := e.TCPState
	if state == "" {
		state = "-"
	}
	fmt.Fprintf(&b, "%-5s %-11s %6ds  %s -> %s  reply %s -> %s",
		inet.ProtoName(int(e.Orig.Proto)), state, e.Timeout,
		kernel.Endpoint(e.Orig.Proto, e.Orig.Src), kernel.Endpoint(e.Orig.Proto, e.Orig.Dst),
		kernel.Endpoint(e.Orig.Proto, e.Reply.Src), kernel.Endpoint(e.Orig.Proto, e.Reply.Dst))
	var nat []string
	if e.DNAT() {
		nat = append(nat, "DNAT")
	}
	if e.SNAT() {
		nat = append(nat, "SNAT")
	}
	if len(nat) > 0 {
		fmt.Fprintf(&b, "  %s", strings.Join(nat, "+"))
	}
	var flags []string
	if e.Unreplied() {
		flags = append(flags, "UNREPLIED")
	}
	if e.Status&kernel.CTStatusAssured != 0 {
		flags = append(flags, "ASSURED")
	}
	if len(flags) > 0 {
		fmt.Fprintf(&b, "  [%s]", strings.Join(flags, " "))
	}
	if e.Mark != 0 {
		fmt.Fprintf(&b, "  mark 0x%x", e.Mark)
	}
	if e.Zone != 0 {
		fmt.Fprintf(&b, "  zone %d", e.Zone)
	}
	return b.String()
}

// TestEntryLineMatchesFmt: the listing's line, built without fmt, is the one fmt built, for
// every protocol, state, width of timeout, NAT and flag combination, mark and zone.
func TestEntryLineMatchesFmt(t *testing.T) {
	rng := rand.New(rand.NewPCG(26, 2144))
	addrs := []netip.Addr{netip.MustParseAddr("10.97.3.225"), netip.MustParseAddr("10.95.0.1"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fe80::1"), netip.MustParseAddr("192.0.2.9")}
	protos := []uint8{1, 6, 17, 58, 132, 47, 0, 255, 33}
	states := []string{"", "ESTABLISHED", "SYN_SENT", "TIME_WAIT", "CLOSE_WAIT", "état"}
	timeouts := []uint32{0, 5, 59, 3593, 99999, 999999, 1000000, 4294967295}
	stats := []kernel.ConntrackStatus{0, kernel.CTStatusSeenReply, kernel.CTStatusAssured | kernel.CTStatusSeenReply, kernel.CTStatusAssured,
		kernel.CTStatusSrcNAT, kernel.CTStatusDstNAT | kernel.CTStatusSrcNAT | kernel.CTStatusSeenReply}
	ap := func() netip.AddrPort {
		return netip.AddrPortFrom(addrs[rng.IntN(len(addrs))], []uint16{0, 53, 443, 65535}[rng.IntN(4)])
	}
	for range 20000 {
		e := &kernel.ConntrackEntry{TCPState: states[rng.IntN(len(states))], Timeout: timeouts[rng.IntN(len(timeouts))],
			Status: stats[rng.IntN(len(stats))], Mark: []uint32{0, 1, 0xdeadbeef}[rng.IntN(3)], Zone: []uint16{0, 7}[rng.IntN(2)]}
		p := protos[rng.IntN(len(protos))]
		e.Orig = kernel.ConntrackTuple{Proto: p, Src: ap(), Dst: ap()}
		e.Reply = kernel.ConntrackTuple{Proto: p, Src: ap(), Dst: ap()}
		if rng.IntN(2) == 0 {
			e.Reply = kernel.ConntrackTuple{Proto: p, Src: e.Orig.Dst, Dst: e.Orig.Src}
		}
		if got, want := EntryLine(e), entryLineFmt(e); got != want {
			t.Fatalf("EntryLine\n got %q\nwant %q", got, want)
		}
	}
}
