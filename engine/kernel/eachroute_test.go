package kernel_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
)

// TestPrivilegedEachRouteMatchesRead: the streamed routes are Read's, in Read's order, and a
// restart is not asked for when nothing changes.
func TestPrivilegedEachRouteMatchesRead(t *testing.T) {
	l := lab.NewPrefixed(t, "hst")
	a, b := l.NS("a"), l.NS("b")
	a.NoDAD()
	l.Veth(a, "v1", b, "eth0")
	l.Veth(a, "v2", b, "eth1")
	a.Addr("v1", "10.1.0.1/24")
	a.Addr("v2", "10.2.0.1/24")
	a.IP("addr", "add", "2001:db8:1::1/64", "dev", "v1", "nodad")
	for _, r := range [][]string{
		{"default", "via", "10.1.0.2", "table", "100"},
		{"172.16.0.0/12", "via", "10.9.9.9", "dev", "v1", "onlink", "table", "100"},
		{"10.70.0.0/16", "tos", "0x10", "via", "10.1.0.2", "table", "200", "proto", "static"},
		{"blackhole", "10.50.0.0/16", "table", "200"},
		{"10.60.0.0/16", "table", "1000", "nexthop", "via", "10.1.0.2", "dev", "v1", "weight", "3",
			"nexthop", "via", "10.2.0.2", "dev", "v2"},
		{"198.18.0.0/15", "via", "10.2.0.2", "metric", "10", "src", "10.2.0.1"},
		{"172.17.0.0/16", "dev", "v1", "src", "10.1.0.1", "metric", "50", "scope", "link", "table", "200"},
		{"unreachable", "10.51.0.0/16", "table", "200"},
		{"prohibit", "10.52.0.0/16", "table", "200"},
		{"throw", "10.53.0.0/16", "table", "4294967000"},
		{"10.54.0.0/16", "via", "10.1.0.2", "table", "4294967000", "proto", "bird"},
	} {
		a.IP(append([]string{"route", "add"}, r...)...)
	}
	a.IP("-6", "route", "add", "2001:db8:7::/48", "via", "2001:db8:1::2", "table", "100")
	a.IP("addr", "add", "2001:db8:2::1/64", "dev", "v2", "nodad")
	a.IP("-6", "route", "add", "2001:db8:8::/48", "table", "1000",
		"nexthop", "via", "2001:db8:1::2", "dev", "v1", "weight", "2",
		"nexthop", "via", "2001:db8:2::2", "dev", "v2", "weight", "5")
	a.IP("-6", "route", "add", "unreachable", "2001:db8:6::/48", "table", "200")
	a.IP("route", "add", "10.55.0.0/16", "via", "inet6", "2001:db8:1::2", "dev", "v1") // RFC 5549

	a.SettleIPv6() // the local routes of the addresses come from a work queue, later
	ns := kernel.Namespace{Name: a.Name}
	st, err := kernel.Read(t.Context(), ns)
	if err != nil {
		t.Fatal(err)
	}
	var got []model.Route
	restarts := 0
	err = kernel.EachRoute(t.Context(), ns, kernel.LinkNames(st), func() error { restarts++; got = nil; return nil }, func(r *model.Route) error {
		got = append(got, *r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if restarts != 0 {
		t.Errorf("%d restarts of an unchanging dump", restarts)
	}
	if len(got) < 25 {
		t.Fatalf("streamed %d routes, want the configured ones and the kernel's", len(got))
	}
	if d := cmp.Diff(st.Routes, got, addrCmp, prefixCmp); d != "" {
		t.Fatalf("EachRoute differs from Read (-Read +EachRoute):\n%s", d)
	}
}
