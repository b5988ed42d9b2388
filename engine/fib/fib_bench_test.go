package fib

import (
	"cmp"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

var (
	bigFIBOnce  sync.Once
	bigFIBState *model.State
)

// bigFIB returns a host whose table 100 holds a million random IPv4 prefixes with the lengths of
// an Internet routing table (mostly /24, then /22, /23, /20 and /21), behind ten policy rules.
func bigFIB() *model.State {
	bigFIBOnce.Do(func() {
		s := fibHost()
		rng := rand.New(rand.NewPCG(1, 2))
		lengths := []int{24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 22, 22, 23, 23, 20, 21, 16, 19, 18, 17, 12, 26, 28, 32}
		gws := []struct{ gw, dev string }{{"10.1.0.254", "e1"}, {"10.2.0.254", "e2"}, {"10.1.0.253", "e1"}}
		seen := map[netip.Prefix]bool{}
		for len(seen) < 1_000_000 {
			a := netip.AddrFrom4([4]byte{byte(1 + rng.IntN(223)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			p := netip.PrefixFrom(a, lengths[rng.IntN(len(lengths))]).Masked()
			if seen[p] {
				continue
			}
			seen[p] = true
			g := gws[rng.IntN(len(gws))]
			s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: 100, Type: model.RouteUnicast, Dst: p, Gateway: netip.MustParseAddr(g.gw), Dev: g.dev, Scope: "universe"})
		}
		zero := 0
		s.Rules = append(s.Rules,
			model.Rule{Family: inet.V4, Priority: 100, Mark: &model.MarkMatch{Value: 0x100, Mask: 0xf00}, Action: model.ActionTable, Table: 200},
			model.Rule{Family: inet.V4, Priority: 110, Src: netip.MustParsePrefix("192.0.2.0/24"), Action: model.ActionTable, Table: 200},
			model.Rule{Family: inet.V4, Priority: 120, IIF: "e2", Action: model.ActionTable, Table: 200},
			model.Rule{Family: inet.V4, Priority: 130, UIDRange: &model.UIDRange{Start: 5000, End: 5999}, Action: model.ActionTable, Table: 200},
			model.Rule{Family: inet.V4, Priority: 140, IPProto: 17, DPort: &model.PortRange{Start: 53, End: 53}, Action: model.ActionTable, Table: 200},
			model.Rule{Family: inet.V4, Priority: 150, Dst: netip.MustParsePrefix("198.51.100.0/24"), Action: model.ActionBlackhole},
			model.Rule{Family: inet.V4, Priority: 160, Action: model.ActionTable, Table: model.TableMain, SuppressPrefixLen: &zero},
			model.Rule{Family: inet.V4, Priority: 170, Action: model.ActionTable, Table: 100},
		)
		s.Routes = append(s.Routes, route(model.TableMain, "0.0.0.0/0", "10.1.0.254", "e1", 0))
		bigFIBState = s
	})
	return bigFIBState
}

func BenchmarkFIBLookup1M(b *testing.B)  { benchmarkLookup(b, (*FIB).Lookup) }
func BenchmarkFIBResolve1M(b *testing.B) { benchmarkLookup(b, (*FIB).Resolve) }

func benchmarkLookup(b *testing.B, lookup func(*FIB, Flow) Result) {
	f := New(bigFIB())
	rng := rand.New(rand.NewPCG(3, 4))
	flows := make([]Flow, 1<<16)
	for i := range flows {
		flows[i] = Flow{Dst: netip.AddrFrom4([4]byte{byte(1 + rng.IntN(223)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))}), Proto: 6, DPort: 443, UID: 1000}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	n := 0
	for i := 0; b.Loop(); i++ {
		res := lookup(f, flows[i&(len(flows)-1)])
		if res.Verdict == "" {
			b.Fatal("empty verdict")
		}
		n++
	}
	// The CPU time the process spent, unlike ns/op, does not count the time other processes
	// of a busy machine had the CPU.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(n), "cpu-ns/op")
}

// cpuTime returns the CPU time (user and system) the process has used, in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func BenchmarkNewFIB1M(b *testing.B) {
	s := bigFIB()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if f := New(s); len(f.fams[0].tables) < 3 {
			b.Fatal("tables missing")
		}
	}
}

// BenchmarkStateValidate1M measures the field checks of a million-route snapshot (they run
// on every load).
func BenchmarkStateValidate1M(b *testing.B) {
	s := bigFIB()
	b.ResetTimer()
	for range b.N {
		if err := s.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuilder1M measures what live trace pays to index a full table: the routes of bigFIB
// streamed into a Builder one by one, as a dump delivers them. bytes/route is the heap the
// finished FIB keeps per route (after a collection); the allocation figures include the garbage
// made while building.
func BenchmarkBuilder1M(b *testing.B) {
	s := bigFIB()
	base := s.Clone()
	base.Routes = nil
	// A dump delivers a table's routes in the order of their destinations.
	routes := slices.Clone(s.Routes)
	slices.SortFunc(routes, func(x, y model.Route) int {
		if c := cmp.Compare(x.Table, y.Table); c != 0 {
			return c
		}
		if c := x.Dst.Addr().Compare(y.Dst.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(x.Dst.Bits(), y.Dst.Bits())
	})
	b.ReportAllocs()
	b.ResetTimer()
	var perRoute float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		bl := NewBuilder(base)
		for i := range routes {
			bl.Add(routes[i])
		}
		f := bl.FIB()
		runtime.GC()
		runtime.ReadMemStats(&after)
		if len(f.fams[0].tables) < 3 {
			b.Fatal("tables missing")
		}
		perRoute = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(len(routes))
		runtime.KeepAlive(f)
	}
	b.ReportMetric(perRoute, "bytes/route")
}
