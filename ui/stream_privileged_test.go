package ui

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
)

// The console's Routing page on a real namespace lists, table by table, exactly the routes
// kernel.Read finds there (in the same order, every field), streamed from the kernel; the app's
// own read of every route (for the doctor) equals Read's too.
func TestPrivilegedStreamedRoutingMatchesRead(t *testing.T) {
	l := lab.NewPrefixed(t, "rttu")
	ns := l.NS("tui")
	ns.IP("link", "add", "u0", "type", "veth", "peer", "name", "u1")
	ns.IP("link", "set", "u0", "up")
	ns.IP("link", "set", "u1", "up")
	ns.Addr("u0", "10.77.0.1/24")
	ns.Addr("u1", "10.76.0.1/24")
	ns.IP("-6", "addr", "add", "fd77::1/64", "dev", "u0", "nodad")
	var batch strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&batch, "route add 198.%d.%d.0/24 via 10.77.0.%d dev u0 table 100 proto bgp\n", 18+i>>8, i&0xff, 2+i%2)
	}
	for i := range 300 {
		fmt.Fprintf(&batch, "route add 203.%d.%d.0/24 via 10.77.0.2 metric %d\n", i>>8, i&0xff, 10+i)
	}
	batch.WriteString("route add default via 10.77.0.2\n")
	batch.WriteString("route add blackhole 192.0.2.0/24 table 100\n")
	batch.WriteString("route add 192.0.3.0/24 table 100 nexthop via 10.77.0.2 dev u0 weight 2 nexthop via 10.76.0.2 dev u1\n")
	batch.WriteString("route add 192.0.4.0/24 src 10.77.0.1 dev u0 scope link\n")
	batch.WriteString("rule add pref 1000 lookup 100\n")
	file := filepath.Join(t.TempDir(), "routes")
	if err := os.WriteFile(file, []byte(batch.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.IP("-batch", file)
	ns.IP("-6", "route", "add", "fd00:1::/48", "via", "fd77::2", "dev", "u0", "table", "100")

	be := &LiveBackend{NS: kernel.Namespace{Name: ns.Name}}
	d := newDriver(t, be, 120, 40)
	d.press("2")
	p := d.routing()
	d.until("main read and the state", func() bool { return !p.Streaming() && d.app.State() != nil && !d.app.Loading() })
	want, err := kernel.Read(context.Background(), be.NS)
	if err != nil {
		t.Fatal(err)
	}
	sameRoutes(t, "the app's streamed state", want.Routes, d.app.State().Routes)
	seen := map[int]bool{}
	for !seen[p.TableID()] {
		table := p.TableID()
		seen[table] = true
		d.until(fmt.Sprintf("table %d read", table), func() bool { return !p.Streaming() })
		var got []model.Route
		for i := range p.Listed() {
			got = append(got, p.ListedRoute(i))
		}
		sameRoutes(t, fmt.Sprintf("table %d as the page lists it", table), tableRoutes(want, table), got)
		if table == 100 && len(got) != 3003 {
			t.Errorf("table 100 lists %d routes, want 3003", len(got))
		}
		d.press("]")
	}
	for _, table := range []int{model.TableMain, model.TableLocal, 100} {
		if !seen[table] {
			t.Errorf("table %d was not offered (tables seen: %v)", table, seen)
		}
	}
}

// sameRoutes checks that got holds exactly the routes of want, in order, every field equal.
func sameRoutes(t *testing.T, what string, want, got []model.Route) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d routes, kernel.Read has %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("%s: route %d is\n%#v\nkernel.Read has\n%#v", what, i, got[i], want[i])
			return
		}
	}
}
