package cli

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/trace"
)

// lazyRouter builds a router whose tables hold what a table lookup can meet: TOS routes,
// reject routes of every kind, throw routes, multipath routes with a dead path, a route through
// a link without carrier (ignore_routes_with_linkdown), routes differing by metric, a default
// route a suppress_prefixlength rule suppresses, a fwmark rule, a table above 255.
func lazyRouter(t *testing.T) *lab.NS {
	t.Helper()
	lab.RequireTool(t, "ip")
	l := lab.NewPrefixed(t, "rtlv")
	r := l.NS("r")
	for _, v := range []struct{ dev, addr string }{
		{"up0", "10.1.0.1/24"}, {"up1", "10.2.0.1/24"}, {"dn0", "10.3.0.1/24"}, {"lk0", "10.4.0.1/24"},
		{"lan0", "10.98.0.1/24"}, {"lan1", "10.97.0.1/24"}, {"lan2", "10.95.0.1/24"},
	} {
		r.IP("link", "add", v.dev, "type", "veth", "peer", "name", v.dev+"p")
		r.IP("addr", "add", v.addr, "dev", v.dev)
		r.IP("link", "set", v.dev, "up")
		r.IP("link", "set", v.dev+"p", "up")
	}
	r.Sysctl("net.ipv4.ip_forward", "1")
	r.Sysctl("net.ipv4.conf.lk0.ignore_routes_with_linkdown", "1")
	r.Sysctl("net.ipv4.conf.lan2.rp_filter", "1")
	for _, args := range [][]string{
		{"route", "add", "default", "via", "10.1.0.2", "dev", "up0"},
		{"route", "add", "10.77.0.0/16", "via", "10.98.0.254", "dev", "lan0"},
		{"route", "add", "198.51.100.0/24", "via", "10.1.0.2", "dev", "up0", "table", "100"},
		{"route", "add", "198.51.100.128/25", "via", "10.1.0.3", "dev", "up0", "tos", "0x10", "table", "100"},
		{"route", "add", "198.51.0.0/16", "via", "10.2.0.2", "dev", "up1", "table", "100"},
		{"route", "add", "203.0.113.0/24", "via", "10.97.0.254", "dev", "lan1", "table", "100"},
		{"route", "add", "blackhole", "192.0.2.0/25", "table", "100"},
		{"route", "add", "unreachable", "192.0.2.128/26", "table", "100"},
		{"route", "add", "prohibit", "192.0.2.192/26", "table", "100"},
		{"route", "add", "xresolve", "192.0.2.64/27", "scope", "nowhere", "table", "100"},
		{"route", "add", "blackhole", "192.0.2.32/27", "metric", "20", "table", "100"},
		{"route", "add", "blackhole", "192.0.2.32/27", "metric", "7", "table", "100"},
		{"route", "add", "blackhole", "192.0.2.0/24", "tos", "0x10", "table", "100"},
		{"route", "add", "prohibit", "192.0.2.128/26", "metric", "10", "table", "100"},
		{"route", "add", "throw", "100.64.0.0/10", "table", "100"},
		{"route", "add", "100.64.5.0/24", "via", "10.1.0.2", "dev", "up0", "table", "100"},
		{"route", "add", "100.100.0.0/16", "table", "100", "nexthop", "via", "10.1.0.2", "dev", "up0", "nexthop", "via", "10.2.0.2", "dev", "up1"},
		{"route", "add", "100.101.0.0/16", "table", "100", "nexthop", "via", "10.3.0.2", "dev", "dn0", "nexthop", "via", "10.1.0.3", "dev", "up0"},
		{"route", "add", "198.18.5.0/24", "via", "10.4.0.2", "dev", "lk0", "table", "100"},
		{"route", "add", "198.18.0.0/16", "via", "10.1.0.2", "dev", "up0", "table", "100"},
		{"route", "add", "198.19.0.0/24", "via", "10.1.0.2", "dev", "up0", "metric", "10", "table", "100"},
		{"route", "add", "198.19.0.0/24", "via", "10.2.0.2", "dev", "up1", "metric", "20", "table", "100"},
		{"route", "add", "default", "via", "10.2.0.2", "dev", "up1", "table", "100"},
		{"route", "add", "default", "via", "10.1.0.3", "dev", "up0", "table", "200"},
		{"route", "add", "8.8.8.0/24", "via", "10.2.0.2", "dev", "up1", "table", "200"},
		{"route", "add", "default", "via", "10.2.0.2", "dev", "up1", "table", "300"},
		{"rule", "add", "pref", "50", "iif", "lan2", "lookup", "200"},
		{"rule", "add", "pref", "100", "fwmark", "0x1", "lookup", "200"},
		{"rule", "add", "pref", "200", "from", "10.96.0.0/24", "lookup", "300"},
		{"rule", "add", "pref", "1000", "lookup", "100", "suppress_prefixlength", "0"},
	} {
		r.IP(args...)
	}
	// A dead path (the device is down) and a link without carrier (its peer is down).
	r.IP("link", "set", "dn0", "down")
	r.IP("link", "set", "lk0p", "down")
	return r
}

// TestPrivilegedLiveTraceLazyTablesMatchFullDump traces flows that meet every kind of route
// with the tables left in the kernel (every table but local is lazy here) and with every table
// dumped, and checks that both give the same result, that the lazy answers were certain where
// the kernel can say everything (so the lazy path really answered) and that they fell back
// where it cannot (a route its whole lookup of the flow does not confirm).
func TestPrivilegedLiveTraceLazyTablesMatchFullDump(t *testing.T) {
	r := lazyRouter(t)
	defer func(v int) { lazyTableMin = v }(lazyTableMin)
	lazyTableMin = 1

	inv := &Invocation{Factory: &Factory{Ctx: context.Background()}, NetNS: r.Name}
	for _, c := range []struct {
		name, proto, src, dst, iif string
		mark                       uint32
		fallback                   bool
	}{
		{name: "unicast", proto: "tcp", src: "10.98.0.50:40000", dst: "198.51.100.10:443", iif: "lan0"},
		{name: "tos route skipped", proto: "tcp", src: "10.98.0.50:40000", dst: "198.51.100.200:443", iif: "lan0"},
		{name: "shorter prefix", proto: "tcp", src: "10.98.0.50:40000", dst: "198.51.7.7:443", iif: "lan0"},
		{name: "blackhole", proto: "tcp", src: "10.98.0.50:40000", dst: "192.0.2.10:443", iif: "lan0"},
		{name: "blackhole of the lower metric", proto: "tcp", src: "10.98.0.50:40000", dst: "192.0.2.40:443", iif: "lan0"},
		{name: "xresolve", proto: "tcp", src: "10.98.0.50:40000", dst: "192.0.2.70:443", iif: "lan0"},
		{name: "unreachable", proto: "tcp", src: "10.98.0.50:40000", dst: "192.0.2.130:443", iif: "lan0"},
		{name: "prohibit", proto: "udp", src: "10.98.0.50:40000", dst: "192.0.2.200:53", iif: "lan0"},
		{name: "throw", proto: "tcp", src: "10.98.0.50:40000", dst: "100.64.9.9:443", iif: "lan0"},
		{name: "inside a throw", proto: "tcp", src: "10.98.0.50:40000", dst: "100.64.5.5:443", iif: "lan0"},
		{name: "multipath", proto: "tcp", src: "10.98.0.50:40000", dst: "100.100.1.1:443", iif: "lan0"},
		{name: "multipath with a dead path", proto: "tcp", src: "10.98.0.50:40000", dst: "100.101.1.1:443", iif: "lan0"},
		{name: "linkdown backtracks", proto: "tcp", src: "10.98.0.50:40000", dst: "198.18.5.9:443", iif: "lan0"},
		{name: "metrics", proto: "tcp", src: "10.98.0.50:40000", dst: "198.19.0.9:443", iif: "lan0"},
		{name: "suppressed default", proto: "tcp", src: "10.98.0.50:40000", dst: "9.9.9.9:443", iif: "lan0"},
		{name: "fwmark rule", proto: "tcp", src: "10.98.0.50:40000", dst: "8.8.8.8:443", iif: "lan0", mark: 1},
		{name: "fwmark default", proto: "tcp", src: "10.98.0.50:40000", dst: "1.1.1.1:443", iif: "lan0", mark: 1},
		{name: "table above 255", proto: "tcp", src: "10.96.0.5:40000", dst: "9.9.9.9:443", iif: "lan0"},
		{name: "asymmetric reply (gateway on lan1 from table 100)", proto: "tcp", src: "198.51.100.10:40000", dst: "10.97.0.1:22", iif: "lan1"},
		{name: "asymmetric reply (gateway on lan0 from main)", proto: "tcp", src: "198.51.100.10:40000", dst: "10.98.0.1:22", iif: "lan0"},
		// The kernel refuses the input lookup (strict rp_filter), and the output lookup of
		// the same flow does not meet the iif rule: the route's details cannot be asked.
		{name: "whole lookup ends elsewhere", proto: "tcp", src: "10.98.0.77:40000", dst: "8.8.8.8:443", iif: "lan2", fallback: true},
		{name: "output", proto: "tcp", src: "0.0.0.0", dst: "198.51.100.10:443"},
		{name: "output inside a throw", proto: "udp", src: "10.1.0.1:5000", dst: "100.64.9.9:53"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := trace.ParseFlow(c.proto, c.src, c.dst)
			if err != nil {
				t.Fatal(err)
			}
			req.IIF, req.Mark = c.iif, c.mark
			lazy, err := traceState(inv)
			if err != nil {
				t.Fatal(err)
			}
			defer lazy.close()
			if lazy.oracle == nil {
				t.Fatal("traceState read every table: the lazy path was not taken")
			}
			// Every table up to 255 but local is left in the kernel; 300 cannot be asked
			// (NETLINK_FIB_LOOKUP's table id is a byte) and is dumped.
			slices.Sort(lazy.lazy)
			if want := []int{100, 200, 254}; !slices.Equal(lazy.lazy, want) {
				t.Fatalf("lazy tables %v, want %v", lazy.lazy, want)
			}
			got := trace.RunWith(lazy.s, lazy.fib, req, lazy.opts)
			uncertain := lazy.uncertain()
			full, err := traceStateFull(inv)
			if err != nil {
				t.Fatal(err)
			}
			want := trace.Run(full.s, full.fib, req)
			if c.fallback {
				if uncertain == nil || !errors.Is(uncertain, fib.ErrLazyUncertain) {
					t.Fatalf("the lazy answers were taken as certain (%v); want a fallback", uncertain)
				}
				t.Logf("falls back: %v", uncertain)
				return
			}
			if uncertain != nil {
				t.Fatalf("the lazy answers were uncertain: %v", uncertain)
			}
			if lazy.oracle.Asked.Lookups == 0 {
				t.Fatal("no lookup was asked of the kernel")
			}
			g, _ := json.MarshalIndent(got, "", " ")
			w, _ := json.MarshalIndent(want, "", " ")
			if string(g) != string(w) {
				t.Errorf("lazy trace differs from the full dump's:\nlazy: %s\nfull: %s", g, w)
			}
			var gb, wb strings.Builder
			got.Render(&gb, lazy.s)
			want.Render(&wb, full.s)
			if gb.String() != wb.String() {
				t.Errorf("lazy trace renders differently:\n%s\nfull:\n%s", gb.String(), wb.String())
			}
		})
	}

	// The command itself, fallback included, prints what a full dump gives.
	for _, args := range [][]string{
		{"tcp", "10.98.0.50:40000", "198.51.100.10:443", "--iif", "lan0"},
		{"tcp", "10.98.0.50:40000", "192.0.2.10:443", "--iif", "lan0"},
		{"tcp", "198.51.100.10:40000", "10.97.0.1:22", "--iif", "lan1"},
	} {
		lazyTableMin = 1
		codeL, outL, errL := runCLI(t, append(append([]string{"trace"}, args...), "--netns", r.Name, "--json")...)
		lazyTableMin = 1 << 30
		codeF, outF, errF := runCLI(t, append(append([]string{"trace"}, args...), "--netns", r.Name, "--json")...)
		if codeL != codeF || outL != outF || errL != errF {
			t.Errorf("trace %v: lazy exit %d differs from full %d:\n%s%s\nfull:\n%s%s", args, codeL, codeF, outL, errL, outF, errF)
		}
	}
}

// TestPrivilegedLazyGatewayOnAndSizes checks what the lazy path reads besides lookups against a
// full read: the routing table sizes, and trace's gateway per interface (dump order across
// tables, table 100's asked of the kernel) for every link.
func TestPrivilegedLazyGatewayOnAndSizes(t *testing.T) {
	r := lazyRouter(t)
	ns := kernel.Namespace{Name: r.Name}
	st, err := kernel.Read(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	sizes, err := kernel.TableSizes(ns)
	if err != nil {
		t.Fatal(err)
	}
	count := map[int]int{}
	var tables []int
	for _, rt := range st.Routes {
		if rt.Family == inet.V4 {
			if count[rt.Table] == 0 {
				tables = append(tables, rt.Table)
			}
			count[rt.Table]++
		}
	}
	for _, id := range tables {
		if sizes[id] != count[id] {
			t.Errorf("table %d: fib_triestat counts %d routes, the dump lists %d", id, sizes[id], count[id])
		}
	}
	order, ok := kernel.DumpOrder(tables)
	if !ok {
		t.Fatalf("tables %v share a hash bucket", tables)
	}
	for i, id := range order {
		if id != tables[i] {
			t.Fatalf("DumpOrder %v, the dump lists tables in order %v", order, tables)
		}
	}
	oracle, err := kernel.OpenTableOracle(ns, kernel.LinkNames(st))
	if err != nil {
		t.Fatal(err)
	}
	defer oracle.Close()
	kept := *st
	kept.Routes = nil
	var keep trace.RouteKeeper
	for _, rt := range st.Routes {
		if rt.Table != 100 && keep.Keep(&rt) {
			kept.Routes = append(kept.Routes, rt)
		}
	}
	checked := 0
	for _, l := range st.Links {
		// trace's gatewayOn on every route of the state.
		var want, any netip.Addr
		for _, rt := range st.Routes {
			if rt.Dev != l.Name || !rt.Gateway.IsValid() {
				continue
			}
			if rt.Dst.Bits() == 0 {
				want = rt.Gateway
				break
			}
			if !any.IsValid() {
				any = rt.Gateway
			}
		}
		if !want.IsValid() {
			want = any
		}
		got, err := gatewayOn(&kept, oracle, order, map[int]bool{100: true}, l.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("gateway on %s: %v, want %v", l.Name, got, want)
		}
		if want.IsValid() {
			checked++
		}
	}
	if checked < 3 {
		t.Errorf("only %d links have a gateway: the test does not test", checked)
	}
}

// TestPrivilegedLazyLookupsMatchFullDump asks many random lookups (input and output, TOS,
// marks, sources) of a FIB whose tables the kernel answers and of one built from a full dump:
// every answer the lazy FIB gives must be certain and the full one's.
func TestPrivilegedLazyLookupsMatchFullDump(t *testing.T) {
	r := lazyRouter(t)
	inv := &Invocation{Factory: &Factory{Ctx: context.Background()}, NetNS: r.Name}
	full, err := traceStateFull(inv)
	if err != nil {
		t.Fatal(err)
	}
	ns := kernel.Namespace{Name: r.Name}
	sizes, err := kernel.TableSizes(ns)
	if err != nil {
		t.Fatal(err)
	}
	var tables []int
	for id := range sizes {
		tables = append(tables, id)
	}
	order, _ := kernel.DumpOrder(tables)
	throws, err := kernel.ThrowRoutes(ns)
	if err != nil {
		t.Fatal(err)
	}
	bases := []string{"198.51.100.0", "198.51.100.128", "198.51.0.0", "203.0.113.0", "192.0.2.0", "100.64.0.0",
		"100.64.5.0", "100.100.0.0", "100.101.0.0", "198.18.5.0", "198.18.0.0", "198.19.0.0", "8.8.8.0", "10.98.0.0", "10.1.0.0", "9.9.9.0"}
	rng := uint32(7)
	next := func(n uint32) uint32 { rng = rng*1664525 + 1013904223; return (rng >> 8) % n }
	certain, uncertain := 0, 0
	for i := 0; i < 200; i++ {
		base := netip.MustParseAddr(bases[next(uint32(len(bases)))]).As4()
		base[2] += byte(next(2))
		base[3] = byte(next(256))
		fl := fib.Flow{Dst: netip.AddrFrom4(base), Proto: 6, SPort: 40000, DPort: 443, TOS: []uint8{0, 0x10}[next(2)], Mark: next(2)}
		switch next(3) {
		case 0:
			fl.IIF, fl.Src = "lan0", netip.MustParseAddr("10.98.0.50")
		case 1:
			fl.IIF, fl.Src = "lan0", netip.MustParseAddr("10.96.0.5")
		}
		st := *full.s
		st.Routes = nil
		lazy, err := traceStateLazy(inv, &st, order, []int{100, 200, 254}, throws, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, want := lazy.fib.Lookup(fl), full.fib.Lookup(fl)
		ok, rev, why := lazy.fib.RPFCheckFor(fl, got)
		wok, wrev, wwhy := full.fib.RPFCheckFor(fl, want)
		err = lazy.uncertain()
		lazy.close()
		if err != nil {
			uncertain++
			t.Errorf("%+v: uncertain (%v); the full answer: %s", fl, err, want.Explain(full.s.TableName))
			continue
		}
		certain++
		g, _ := json.Marshal([]any{got, ok, rev, why})
		w, _ := json.Marshal([]any{want, wok, wrev, wwhy})
		if string(g) != string(w) {
			t.Errorf("%+v:\nlazy: %s\nfull: %s", fl, g, w)
		}
	}
	t.Logf("%d lookups certain, %d uncertain", certain, uncertain)
}

// TestPrivilegedLiveTraceLazyMainWithoutRules leaves main in the kernel on a host without
// policy rules, where the kernel keeps local and main in one trie (fib_unmerge has not run):
// the traces must still be the full dump's.
func TestPrivilegedLiveTraceLazyMainWithoutRules(t *testing.T) {
	lab.RequireTool(t, "ip")
	l := lab.NewPrefixed(t, "rtlv")
	r := l.NS("m")
	for _, v := range []struct{ dev, addr string }{{"up0", "10.1.0.1/24"}, {"lan0", "10.98.0.1/24"}} {
		r.IP("link", "add", v.dev, "type", "veth", "peer", "name", v.dev+"p")
		r.IP("addr", "add", v.addr, "dev", v.dev)
		r.IP("link", "set", v.dev, "up")
		r.IP("link", "set", v.dev+"p", "up")
	}
	r.Sysctl("net.ipv4.ip_forward", "1")
	r.IP("route", "add", "default", "via", "10.1.0.2", "dev", "up0")
	r.IP("route", "add", "198.51.100.0/24", "via", "10.1.0.3", "dev", "up0")
	r.IP("route", "add", "throw", "100.64.0.0/10")
	defer func(v int) { lazyTableMin = v }(lazyTableMin)
	lazyTableMin = 1
	inv := &Invocation{Factory: &Factory{Ctx: context.Background()}, NetNS: r.Name}
	for _, c := range [][3]string{
		{"10.98.0.50:40000", "198.51.100.10:443", "lan0"},
		{"10.98.0.50:40000", "9.9.9.9:443", "lan0"},
		{"10.98.0.50:40000", "100.64.1.1:443", "lan0"},
		{"10.98.0.50:40000", "10.1.0.1:22", "lan0"},
		{"0.0.0.0", "198.51.100.10:443", ""},
	} {
		req, err := trace.ParseFlow("tcp", c[0], c[1])
		if err != nil {
			t.Fatal(err)
		}
		req.IIF = c[2]
		lazy, err := traceState(inv)
		if err != nil {
			t.Fatal(err)
		}
		got := trace.RunWith(lazy.s, lazy.fib, req, lazy.opts)
		uncertain := lazy.uncertain()
		lazy.close()
		full, err := traceStateFull(inv)
		if err != nil {
			t.Fatal(err)
		}
		want := trace.Run(full.s, full.fib, req)
		if !slices.Equal(lazy.lazy, []int{model.TableMain}) || uncertain != nil {
			t.Fatalf("%v: lazy tables %v (want main), uncertain: %v", c, lazy.lazy, uncertain)
		}
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if string(g) != string(w) {
			t.Errorf("%v: lazy trace differs from the full dump's:\nlazy: %s\nfull: %s", c, g, w)
		}
	}
	// Table 510 shares main's hash bucket: the order a dump lists them in is the kernel's
	// secret, so every table is read.
	r.IP("route", "add", "192.0.2.0/24", "via", "10.1.0.2", "table", "510")
	ts, err := traceState(inv)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.close()
	if ts.oracle != nil || ts.lazy != nil {
		t.Errorf("tables 254 and 510 share a bucket, yet tables %v were left in the kernel", ts.lazy)
	}
}
