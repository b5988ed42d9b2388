package plan

import (
	"net/netip"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// largeHost is planHost with n extra routes in table 100 (a full table of a BGP-fed router).
func largeHost(n int) *model.State {
	st := planHost()
	for i := range n {
		a := netip.AddrFrom4([4]byte{byte(20 + i>>16), byte(i >> 8), byte(i), 0})
		st.Routes = append(st.Routes, model.Route{Family: inet.V4, Table: 100, Type: model.RouteUnicast, Dst: netip.PrefixFrom(a, 24),
			Gateway: ip("10.0.0.1"), Dev: "eth0", Scope: "universe", Protocol: "bgp"})
	}
	return st
}

// BenchmarkPlanDestinationList plans a dual-WAN destination list (seed case 2: thousands of
// CIDRs routed by the second uplink) against a host with a large routing table.
func BenchmarkPlanDestinationList(b *testing.B) {
	st := largeHost(200000)
	d := &Desired{Intent: "isp b destinations"}
	for i := range 5000 {
		a := netip.AddrFrom4([4]byte{100, byte(i >> 8), byte(i), 0})
		d.Routes = append(d.Routes, model.Route{Family: inet.V4, Table: 200, Dst: netip.PrefixFrom(a, 24), Gateway: ip("192.168.1.253"), Dev: "em1"})
	}
	b.ResetTimer()
	for range b.N {
		p, err := d.Plan(st)
		if err != nil || len(p.Changes) != 5000 {
			b.Fatal(err, len(p.Changes))
		}
	}
}
