package kernel

import (
	"net/netip"
	"testing"

	"roundtrip/engine/fib"
)

// TestRouteGetArgs checks the question RouteGet asks: received packets are looked up as uid 0
// whatever the flow says, an unspecified source is no source, and a protocol the kernel does
// not accept in RTM_GETROUTE is left out with its ports (the request would fail otherwise).
func TestRouteGetArgs(t *testing.T) {
	a := netip.MustParseAddr
	for _, c := range []struct {
		fl   fib.Flow
		want string
	}{
		{fib.Flow{Dst: a("10.0.0.1"), Src: a("198.18.0.1"), IIF: "eth0", Proto: 6, SPort: 40000, DPort: 80, UID: 1000},
			"10.0.0.1 from 198.18.0.1 iif eth0 ipproto tcp sport 40000 dport 80 uid 0"},
		{fib.Flow{Dst: a("10.0.0.1"), Src: a("0.0.0.0"), Mark: 0x10, Proto: 17, DPort: 53, TOS: 0x10, UID: 1000},
			"10.0.0.1 mark 0x10 ipproto udp dport 53 tos 0x10 uid 1000"},
		{fib.Flow{Dst: a("2001:db8::1"), OIF: "wan0", SPort: 1000, DPort: 80},
			"2001:db8::1 oif wan0 sport 1000 dport 80 uid 0"},
		{fib.Flow{Dst: a("2001:db8::1"), Proto: 58}, "2001:db8::1 ipproto ipv6-icmp uid 0"},
		{fib.Flow{Dst: a("2001:db8::1"), Proto: 1}, "2001:db8::1 uid 0"},
		{fib.Flow{Dst: a("10.0.0.1"), Proto: 132, SPort: 5000, DPort: 5001}, "10.0.0.1 uid 0"},
	} {
		if got := RouteGetArgs(c.fl); got != c.want {
			t.Errorf("RouteGetArgs(%+v) = %q, want %q", c.fl, got, c.want)
		}
	}
}
