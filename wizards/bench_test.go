package wizards

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// listOf returns a destination list of n /24 networks, with comments and blank lines.
func listOf(n int) string {
	var b strings.Builder
	b.WriteString("# generated\n")
	for i := range n {
		fmt.Fprintf(&b, "100.%d.%d.0/24 # entry %d\n", 64+i/256, i%256, i)
		if i%100 == 0 {
			b.WriteString("\n")
		}
	}
	return b.String()
}

func BenchmarkParseRouteList10k(b *testing.B) {
	text := listOf(10000)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := ParseRouteList("bench", strings.NewReader(text)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMultiWANPlan5k plans a dual-WAN gateway with a list of 5000 networks, and plans it
// again on the result (the re-run that must find nothing to do).
func BenchmarkMultiWANPlan5k(b *testing.B) {
	ps, err := ParseRouteList("bench", strings.NewReader(listOf(5000)))
	if err != nil {
		b.Fatal(err)
	}
	o := &MultiWANOptions{WANs: []WAN{{Iface: "wan1", Name: "isp_a"}, {Iface: "wan2", Gateway: netip.MustParseAddr("198.18.73.9"), Name: "isp_b"}},
		RouteLists: []RouteList{{WAN: "isp_b", Prefixes: ps}}, SNAT: true, Connmark: true}
	s := case2Host(b)
	for b.Loop() {
		res, err := o.Plan(s)
		if err != nil {
			b.Fatal(err)
		}
		again, err := o.Plan(res.Plan.Expect(s))
		if err != nil || len(again.Plan.Changes) != 0 {
			b.Fatalf("re-plan: %v, %d changes", err, len(again.Plan.Changes))
		}
	}
}
