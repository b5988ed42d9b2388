package trace

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"testing"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/model/modeltest"
)

// compact makes what live trace builds: a State holding only the routes a
// RouteKeeper keeps, and a FIB built by streaming every route into a fib.Builder.
func compact(full *model.State) (*model.State, *fib.FIB) {
	s := full.Clone()
	s.Routes = nil
	b := fib.NewBuilder(s)
	var keep RouteKeeper
	for i := range full.Routes {
		r := full.Routes[i]
		b.Add(r)
		if keep.Keep(&r) {
			s.Routes = append(s.Routes, r)
		}
	}
	return s, b.FIB()
}

// TestCompactTraceMatchesFullState traces random flows through a generated full table both
// ways, on the whole State with fib.New and the compact way live trace reads the host, and
// requires the same result, field for field and as rendered.
func TestCompactTraceMatchesFullState(t *testing.T) {
	s := modeltest.ScaleHost(t, 20000)
	a := netip.MustParseAddr
	pf := netip.MustParsePrefix
	gw0, gw1 := a("192.0.2.1"), a("198.51.100.1")
	// An address of this host as a gateway: the kernel does not use it (resolveGateways).
	lan := s.LinkByName("lan")
	lan.Addrs = append(lan.Addrs, model.Address{Prefix: pf("192.0.2.77/32"), Scope: "global"})
	s.Routes = append(s.Routes,
		model.Route{Family: inet.V4, Table: model.TableLocal, Type: model.RouteLocal, Dst: pf("192.0.2.77/32"), Dev: "lan", Src: a("192.0.2.77"), Scope: "host", Protocol: "kernel"},
		model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: pf("12.0.0.0/8"), Gateway: a("192.0.2.77"), Dev: "eth0", Protocol: "static"},
		model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: pf("13.0.0.0/16"), Gateway: gw0, Dev: "eth0", OnLink: true, Protocol: "static"},
		// The first default route on em1, after routes via gw1 on it: trace's uplink fix names it.
		model.Route{Family: inet.V4, Table: 7, Type: model.RouteUnicast, Dst: pf("0.0.0.0/0"), Gateway: a("198.51.100.254"), Dev: "em1", Protocol: "static"},
		model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: pf("14.0.0.0/8"), Protocol: "static",
			Nexthops: []model.Nexthop{{Gateway: gw0, Dev: "eth0", Weight: 1}, {Gateway: gw1, Dev: "em1", Weight: 2}}},
		model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnreachable, Dst: pf("15.1.0.0/16"), Protocol: "static"},
	)
	s.Rules = append(s.Rules,
		model.Rule{Family: inet.V4, Priority: 50, Src: pf("10.0.0.0/24"), Action: model.ActionTable, Table: 7},
		model.Rule{Family: inet.V4, Priority: 60, Dst: pf("11.0.3.0/24"), Action: model.ActionBlackhole})
	// addrtype reads the local table from State.Routes.
	extra := modeltest.Host(t, `
ipt nat -A PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 443 -j DNAT --to-destination 10.0.0.100
`)
	for ti := range s.Netfilter.Tables {
		if tb := &s.Netfilter.Tables[ti]; tb.Name == "nat" {
			for ci := range tb.Chains {
				if c := &tb.Chains[ci]; c.Name == "PREROUTING" {
					c.Rules = append(extra.Netfilter.Tables[0].Chains[0].Rules, c.Rules...)
				}
			}
		}
	}

	rng := rand.New(rand.NewPCG(14, 14))
	iifs := []string{"", "eth0", "em1", "lan"}
	srcs := []string{"10.0.0.7", "10.0.3.9", "198.18.0.5", "0.0.0.0", "11.0.2.9"}
	differ := 0
	fullFIB := fib.New(s)
	cs, cf := compact(s)
	verdicts := map[string]int{}
	for i := range 300 {
		dst := netip.AddrFrom4([4]byte{byte(10 + rng.IntN(6)), 0, byte(rng.IntN(80)), byte(1 + rng.IntN(250))})
		if i%7 == 0 {
			dst = netip.MustParseAddr("192.0.2.2") // the host itself, and the DNAT
		}
		req := Request{Proto: []int{6, 17, 1}[rng.IntN(3)], IIF: iifs[rng.IntN(len(iifs))],
			Src:  netip.AddrPortFrom(netip.MustParseAddr(srcs[rng.IntN(len(srcs))]), 40000),
			Dst:  netip.AddrPortFrom(dst, []uint16{80, 443}[rng.IntN(2)]),
			Mark: uint32(rng.IntN(25))}
		if req.Proto == 1 {
			req.Src, req.Dst = netip.AddrPortFrom(req.Src.Addr(), 0), netip.AddrPortFrom(req.Dst.Addr(), 0)
		}
		want := Run(s, fullFIB, req)
		got := Run(cs, cf, req)
		verdicts[want.Forward.Verdict]++
		wj, _ := json.Marshal(want)
		gj, _ := json.Marshal(got)
		var wr, gr bytes.Buffer
		want.Render(&wr, s)
		got.Render(&gr, s)
		if !bytes.Equal(wj, gj) || wr.String() != gr.String() {
			differ++
			if differ < 3 {
				t.Errorf("flow %d %+v: compact trace differs\nfull:\n%s\ncompact:\n%s", i, req, wr.String(), gr.String())
			}
		}
	}
	t.Logf("forward verdicts: %v", verdicts)
	if differ > 0 {
		t.Fatalf("%d of 300 flows traced differently", differ)
	}
}

// TestRouteKeeperKeepsLittle: of a full table the keeper keeps a handful of routes, not a
// share of them.
func TestRouteKeeperKeepsLittle(t *testing.T) {
	s := modeltest.ScaleHost(t, 20000)
	var keep RouteKeeper
	n := 0
	for i := range s.Routes {
		if keep.Keep(&s.Routes[i]) {
			n++
		}
	}
	if n == 0 || n > 30 {
		t.Fatalf("kept %d of %d routes, want a few", n, len(s.Routes))
	}
}
