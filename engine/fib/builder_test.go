package fib

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// TestBuilderMatchesNew: routes streamed into a Builder one by one (shared templates, a
// gateway that is a local address, multipath, IPv6) answer every lookup as New does on the
// State holding them, results and steps alike, and PickNexthop works on either.
func TestBuilderMatchesNew(t *testing.T) {
	s := fibHost()
	rng := rand.New(rand.NewPCG(7, 7))
	gws := []struct{ gw, dev string }{{"10.1.0.254", "e1"}, {"10.2.0.254", "e2"}, {"10.1.0.1", "e1"}}
	seen := map[netip.Prefix]bool{}
	for len(seen) < 5000 {
		a := netip.AddrFrom4([4]byte{byte(11 + rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256)), 0})
		p := netip.PrefixFrom(a, []int{24, 24, 23, 22, 16, 20}[rng.IntN(6)]).Masked()
		if seen[p] {
			continue
		}
		seen[p] = true
		g := gws[rng.IntN(len(gws))]
		r := route(100, p.String(), g.gw, g.dev, 0)
		if rng.IntN(10) == 0 {
			r.Metric = 10 // a second route of another metric
			s.Routes = append(s.Routes, route(100, p.String(), "10.2.0.254", "e2", 0))
		}
		s.Routes = append(s.Routes, r)
	}
	s.Routes = append(s.Routes,
		model.Route{Family: inet.V4, Table: 100, Type: model.RouteUnicast, Dst: pfx("15.0.0.0/8"), Scope: "universe",
			Nexthops: []model.Nexthop{{Gateway: netip.MustParseAddr("10.1.0.254"), Dev: "e1", Weight: 1}, {Gateway: netip.MustParseAddr("10.2.0.254"), Dev: "e2", Weight: 3}}},
		model.Route{Family: inet.V4, Table: 100, Type: model.RouteBlackhole, Dst: pfx("16.0.0.0/8")},
		route(100, "2001:db8:99::/48", "2001:db8:1::fe", "e1", 0),
	)
	s.Rules = append(s.Rules, model.Rule{Family: inet.V4, Priority: 100, Action: model.ActionTable, Table: 100},
		model.Rule{Family: inet.V6, Priority: 100, Action: model.ActionTable, Table: 100})
	full := New(s)
	// The streamed FIB's tables get the top index, the full one's not.
	defer func(n int) { lpmIndexMin = n }(lpmIndexMin)
	lpmIndexMin = 1
	c := s.Clone()
	c.Routes = nil
	b := NewBuilder(c)
	for _, r := range s.Routes {
		b.Add(r)
	}
	streamed := b.FIB()
	if streamed.fams[0].tables[100].top2 == nil || full.fams[0].tables[100].top2 != nil {
		t.Fatal("want the top index in the streamed FIB only")
	}
	picked := 0
	for i := range 3000 {
		dst := netip.AddrFrom4([4]byte{byte(10 + rng.IntN(8)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		if i%10 == 0 {
			dst = netip.MustParseAddr("2001:db8:99::5")
		}
		fl := Flow{Dst: dst, IIF: []string{"", "e1", "e2"}[rng.IntN(3)], Proto: 6, DPort: 443, SPort: 40000}
		if fl.IIF != "" && dst.Is4() {
			fl.Src = netip.MustParseAddr("198.18.0.9")
		}
		want, got := full.Lookup(fl), streamed.Lookup(fl)
		wj, _ := json.Marshal(want)
		gj, _ := json.Marshal(got)
		if string(wj) != string(gj) {
			t.Fatalf("%+v:\nNew:     %s\nBuilder: %s", fl, wj, gj)
		}
		_, wr, _ := full.RPFCheckFor(fl, want)
		_, gr, _ := streamed.RPFCheckFor(fl, got)
		wj, _ = json.Marshal(wr)
		gj, _ = json.Marshal(gr)
		if string(wj) != string(gj) {
			t.Fatalf("%+v: reverse lookups differ:\nNew:     %s\nBuilder: %s", fl, wj, gj)
		}
		for _, nh := range got.Candidates {
			p, err := streamed.PickNexthop(fl, got, nh)
			if err != nil {
				t.Fatalf("PickNexthop on the streamed FIB: %v", err)
			}
			w, _ := full.PickNexthop(fl, want, nh)
			if p.OIF != w.OIF || p.Gateway != w.Gateway {
				t.Fatalf("PickNexthop %d: %s via %s, want %s via %s", nh, p.OIF, p.Gateway, w.OIF, w.Gateway)
			}
			picked++
		}
		if got.Route != nil && got.Route.Dst.Addr().Is4() && got.Route.Nexthops == nil {
			if _, err := streamed.PickNexthop(fl, Result{Route: got.Route, Candidates: []int{-1}}, -1); err == nil {
				t.Fatal("PickNexthop accepted path -1")
			}
		}
	}
	if picked == 0 {
		t.Fatal("no multipath lookup was made")
	}
	for id, tb := range streamed.fams[0].tables {
		if full.fams[0].tables[id].block(uint32(full.fams[0].tables[id].root))[lpmHdr] != tb.block(uint32(tb.root))[lpmHdr] {
			t.Fatalf("table %d differs", id)
		}
	}
}
