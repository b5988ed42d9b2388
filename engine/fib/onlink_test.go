package fib

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// TestOnLinkAgreesWithModel asks the index and model.OnLink (the scan it replaces) the same
// questions on random states: routes of every kind in two tables, and gateways near them.
func TestOnLinkAgreesWithModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	devs := []string{"", "e1", "e2", "e3", "nope"}
	scopes := []string{"", "link", "host", "universe"}
	types := []string{"", model.RouteUnicast, model.RouteBlackhole, model.RouteLocal}
	addr4 := func() netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(4)), byte(rng.IntN(4))})
	}
	addr6 := func() netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(rng.IntN(4)), 14: byte(rng.IntN(4)), 15: byte(rng.IntN(4))})
	}
	checks, yes := 0, 0
	for range 200 {
		s := fibHost()
		for range 30 {
			r := model.Route{Family: inet.V4, Table: []int{model.TableMain, 100, model.TableLocal}[rng.IntN(3)],
				Type: types[rng.IntN(len(types))], Scope: scopes[rng.IntN(len(scopes))], Dev: devs[1+rng.IntN(3)]}
			a, bits := addr4(), []int{8, 16, 24, 30, 32}[rng.IntN(5)]
			if rng.IntN(3) == 0 {
				r.Family, a, bits = inet.V6, addr6(), []int{32, 64, 120, 128}[rng.IntN(4)]
			}
			r.Dst = netip.PrefixFrom(a, bits).Masked()
			switch rng.IntN(5) {
			case 0:
				r.Gateway = a
			case 1:
				r.Nexthops = []model.Nexthop{{Dev: r.Dev, Weight: 1}}
			}
			s.Routes = append(s.Routes, r)
		}
		f := New(s)
		for range 100 {
			gw := addr4()
			if rng.IntN(3) == 0 {
				gw = addr6()
			}
			table := []int{model.TableMain, 100, 7}[rng.IntN(3)]
			dev := devs[rng.IntN(len(devs))]
			want := model.OnLink(s, table, gw, dev)
			if got := f.OnLink(table, gw, dev); got != want {
				t.Fatalf("OnLink(%d, %s, %q) = %v, model says %v; routes:\n%v", table, gw, dev, got, want, s.Routes)
			}
			checks++
			if want {
				yes++
			}
			p := netip.PrefixFrom(gw, []int{16, 24, 32}[rng.IntN(3)])
			fam := inet.FamilyOf(gw)
			covered := false
			for _, r := range s.RoutesOf(fam, table) {
				if r.Dst.Bits() > 0 && r.Dst.Contains(p.Addr()) && r.Dst.Bits() <= p.Bits() {
					covered = true
				}
			}
			if got := f.Covers(fam, table, p); got != covered {
				t.Fatalf("Covers(%s, %d, %s) = %v, want %v", fam, table, p, got, covered)
			}
		}
	}
	if yes == 0 || yes == checks {
		t.Fatalf("%d of %d gateways on-link: the states do not test both answers", yes, checks)
	}
}
