package common

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// randomRoute returns routes of every kind the kernel reader produces, and the rare ones the
// compact form keeps whole (multipath, zoned addresses, empty nexthop lists).
func randomRoute(rng *rand.Rand) model.Route {
	v4 := func() netip.Addr {
		return netip.AddrFrom4([4]byte{byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
	}
	v6 := func() netip.Addr {
		var b [16]byte
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return netip.AddrFrom16(b)
	}
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	r := model.Route{Family: inet.V4, Table: []int{254, 255, 100, 253, 1000}[rng.IntN(5)],
		Type: pick("unicast", "local", "blackhole", "unreachable", ""), Dev: pick("eth0", "em1", "", "wan-2"),
		Scope: pick("", "link", "host", "universe"), Protocol: pick("bgp", "kernel", "static", "boot", "")}
	dst := v4()
	if rng.IntN(3) == 0 {
		r.Family, dst = inet.V6, v6()
	}
	r.Dst = netip.PrefixFrom(dst, rng.IntN(dst.BitLen()+1)).Masked()
	switch rng.IntN(4) {
	case 1:
		r.Gateway = v4()
	case 2:
		r.Gateway = v6()
	case 3:
		r.Gateway = netip.AddrFrom16(v4().As16()) // IPv4-mapped stays so
	}
	if rng.IntN(2) == 0 {
		r.Src = v4()
	}
	if rng.IntN(2) == 0 {
		r.Metric = rng.IntN(1 << 20)
	}
	r.TOS = uint8(rng.IntN(2) * 8)
	r.OnLink = rng.IntN(5) == 0
	switch rng.IntN(12) {
	case 0:
		r.Gateway, r.Dev = netip.Addr{}, ""
		r.Nexthops = []model.Nexthop{{Gateway: v4(), Dev: "eth0", Weight: 1}, {Gateway: v4(), Dev: "em1", Weight: 3, OnLink: true}}
	case 1:
		r.Nexthops = []model.Nexthop{}
	case 2:
		r.Gateway = v6().WithZone("eth0")
	}
	return r
}

func TestRouteStoreGivesBackEveryRoute(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 14))
	s := NewRouteStore()
	var want []model.Route
	for range 20000 {
		r := randomRoute(rng)
		want = append(want, r)
		s.Add(&r)
	}
	if s.Len() != len(want)/flushEvery*flushEvery {
		t.Fatalf("store publishes %d routes before Flush, want %d", s.Len(), len(want)/flushEvery*flushEvery)
	}
	s.Flush()
	if s.Len() != len(want) {
		t.Fatalf("store holds %d routes, want %d", s.Len(), len(want))
	}
	var got model.Route
	for i, w := range want {
		if !s.Route(i, &got) {
			t.Fatalf("route %d missing", i)
		}
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("route %d:\n got %#v\nwant %#v", i, got, w)
		}
	}
	if s.Route(len(want), &got) || s.Route(-1, &got) {
		t.Error("a route past the end was found")
	}
	// The filter sees the routes as they are.
	f := ParseRouteFilter("eth0")
	rows, err := s.Filter(context.Background(), 0, s.Len(), f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := range want {
		if f.Match(&want[i]) {
			if n >= len(rows) || int(rows[n]) != i {
				t.Fatalf("filter result %d is %v, want route %d", n, rows[n:min(n+1, len(rows))], i)
			}
			n++
		}
	}
	if n != len(rows) || n == 0 {
		t.Fatalf("filter gave %d routes, want %d", len(rows), n)
	}
	// A million plain routes stay small: ~16 bytes each, not a model.Route's ~200.
	big := NewRouteStore()
	gw := netip.MustParseAddr("10.99.0.2")
	for i := range 1_000_000 {
		r := model.Route{Family: inet.V4, Table: 100, Type: model.RouteUnicast, Dev: "rt0", Protocol: "bgp", Gateway: gw,
			Dst: netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(11 + i>>16), byte(i >> 8), byte(i), 0}), 24)}
		big.Add(&r)
	}
	big.Flush()
	if b := big.Bytes(); b > 40<<20 {
		t.Errorf("a million routes take %d bytes", b)
	}
	s.Reset()
	if s.Len() != 0 || s.Resets() != 1 || s.Route(0, &got) {
		t.Errorf("after Reset: %d routes, %d resets", s.Len(), s.Resets())
	}
}
