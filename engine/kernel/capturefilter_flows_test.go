package kernel

import (
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCaptureFilterFlows(t *testing.T) {
	ap := netip.MustParseAddrPort
	a := func(s string) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(s), 0) }
	for _, tc := range []struct {
		expr string
		want []FilterFlow
		ok   bool
	}{
		{"", nil, true},
		{"tcp 10.0.0.1 10.0.0.2:80", []FilterFlow{{Proto: unix.IPPROTO_TCP, Src: a("10.0.0.1"), Dst: ap("10.0.0.2:80")}}, true},
		{"src host 10.0.0.1 and dst port 80", []FilterFlow{{Src: a("10.0.0.1"), Dst: netip.AddrPortFrom(netip.Addr{}, 80)}}, true},
		// Either side: tried on each; the reversed twin is the same flow both ways.
		{"host 10.0.0.1 and port 53 and udp", []FilterFlow{
			{Proto: unix.IPPROTO_UDP, Src: ap("10.0.0.1:53")},
			{Proto: unix.IPPROTO_UDP, Src: a("10.0.0.1"), Dst: netip.AddrPortFrom(netip.Addr{}, 53)},
		}, true},
		{"icmp or ip6", []FilterFlow{{Proto: unix.IPPROTO_ICMP}, {Proto: unix.IPPROTO_ICMPV6}, {}}, true},
		{"net 10.0.0.0/8", nil, false},
	} {
		f, err := ParseCaptureFilter(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := f.Flows()
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("%q: Flows = %v, %v; want %v, %v", tc.expr, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCaptureFilterMatch(t *testing.T) {
	ap := netip.MustParseAddrPort
	f, err := ParseCaptureFilter("src net 10.0.0.0/8 and tcp and dst port 80 or icmp")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		proto    uint8
		src, dst netip.AddrPort
		want     bool
	}{
		{unix.IPPROTO_TCP, ap("10.1.2.3:5000"), ap("192.0.2.1:80"), true},
		{unix.IPPROTO_TCP, ap("192.0.2.1:80"), ap("10.1.2.3:5000"), false}, // the filter has sides
		{unix.IPPROTO_UDP, ap("10.1.2.3:5000"), ap("192.0.2.1:80"), false},
		{unix.IPPROTO_ICMP, ap("192.0.2.1:0"), ap("192.0.2.2:0"), true},
		{unix.IPPROTO_ICMPV6, ap("[2001:db8::1]:0"), ap("[2001:db8::2]:0"), true},
		{unix.IPPROTO_ICMP, ap("[2001:db8::1]:0"), ap("[2001:db8::2]:0"), false},
	} {
		if got := f.Match(tc.proto, tc.src, tc.dst); got != tc.want {
			t.Errorf("Match(%d %s > %s) = %v, want %v", tc.proto, tc.src, tc.dst, got, tc.want)
		}
	}
	var none *CaptureFilter
	if !none.Match(unix.IPPROTO_TCP, ap("1.1.1.1:1"), ap("2.2.2.2:2")) {
		t.Error("a nil filter does not match everything")
	}
}
