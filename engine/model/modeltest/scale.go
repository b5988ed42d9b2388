package modeltest

import (
	"net/netip"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// ScaleHost is a router with a routing table of n routes, for tests of how work grows with the
// state: two uplinks (eth0 via 192.0.2.1, em1 via 198.51.100.1) and a LAN, NAT, and then, for
// every 10 routes, 9 routes of main via eth0's gateway and 1 via em1's (a full BGP table); for
// every 1000, one route whose gateway is on no network of its device, and one table
// with a default route via eth0 that an fwmark rule selects. Link routes of main stay few,
// as on a real router.
func ScaleHost(t testing.TB, n int) *model.State {
	t.Helper()
	s := Host(t, `
link eth0 192.0.2.2/24
link em1 198.51.100.2/24
link lan 10.0.0.1/16
route default via 192.0.2.1 dev eth0
route 10.1.0.0/24 dev lan
route 10.2.0.0/24 dev lan
sysctl net.ipv4.ip_forward=1
ipt nat -A PREROUTING -i eth0 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.100
ipt nat -A POSTROUTING -o eth0 -j MASQUERADE
`)
	gw0, gw1 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	offLink := netip.MustParseAddr("172.16.0.1")
	s.Routes = append(make([]model.Route, 0, len(s.Routes)+n), s.Routes...)
	for i := range n {
		// 11.0.0.0/24, 11.0.1.0/24, ...: distinct /24s from 11.0.0.0 on (65536 per /8).
		v := uint32(11)<<24 + uint32(i)<<8
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), 0}), 24)
		r := model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: dst, Gateway: gw0, Dev: "eth0", Protocol: "bgp"}
		switch {
		case i%1000 == 999:
			r.Gateway = offLink
		case i%1000 == 500:
			table := 1000 + i/1000
			r = model.Route{Family: inet.V4, Table: table, Type: model.RouteUnicast, Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: gw0, Dev: "eth0", Protocol: "static"}
			s.Rules = append(s.Rules, model.Rule{Family: inet.V4, Priority: 100 + i/1000, Mark: &model.MarkMatch{Value: uint32(i/1000 + 1), Mask: 0xffffffff}, Action: model.ActionTable, Table: table})
		case i%10 == 9:
			r.Gateway, r.Dev = gw1, "em1"
		}
		s.Routes = append(s.Routes, r)
	}
	return s
}
