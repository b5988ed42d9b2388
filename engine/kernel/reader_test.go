package kernel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
)

// addrCmp lets go-cmp compare netip values (they have unexported fields).
var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
var prefixCmp = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

// TestPrivilegedReadMatchesKernel configures a namespace with `ip`, `iptables` and `sysctl`,
// reads it, checks what was configured and then checks every rule and route against what
// iproute2 itself dumps from the same kernel.
func TestPrivilegedReadMatchesKernel(t *testing.T) {
	l := lab.New(t)
	a, b := l.NS("a"), l.NS("b")
	// Without DAD, IPv6 addresses and their local routes exist as soon as links are up, so
	// nothing changes between Read and the iproute2 dumps it is compared with.
	a.NoDAD()
	l.Veth(a, "v1", b, "eth0")
	l.Veth(a, "v2", b, "eth1")
	// A veth pair inside a (so the peer resolves by name) with one end in a bridge.
	a.IP("link", "add", "vp0", "type", "veth", "peer", "name", "vp1")
	a.IP("link", "set", "vp0", "up")
	a.IP("link", "set", "vp1", "up")
	a.Bridge("br0", "vp1")
	a.IP("link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789", "local", "10.1.0.1",
		"remote", "10.1.0.2", "dev", "v1", "ttl", "5")

	a.Addr("v1", "10.1.0.1/24")
	a.Addr("v1", "10.1.0.100/24") // same subnet: becomes secondary
	a.IP("addr", "add", "2001:db8:1::1/64", "dev", "v1", "nodad")
	a.Addr("v2", "10.2.0.1/24")
	a.IP("addr", "add", "2001:db8:2::1/64", "dev", "v2", "nodad")
	a.Addr("br0", "192.168.50.1/24")
	a.Addr("vp0", "10.3.0.1/24")

	// Rules with every selector and every action.
	for _, r := range [][]string{
		{"pref", "100", "from", "10.0.0.0/8", "to", "192.168.0.0/16", "iif", "v1", "oif", "v2",
			"fwmark", "0x10/0xff", "tos", "0x10", "ipproto", "tcp", "sport", "1000-2000", "dport", "80",
			"uidrange", "100-200", "table", "100"},
		{"pref", "101", "not", "from", "10.0.0.0/8", "fwmark", "0x5", "lookup", "4294967000", "suppress_prefixlength", "0"},
		{"pref", "102", "goto", "110"},
		{"pref", "103", "to", "10.66.0.0/16", "blackhole"},
		{"pref", "104", "to", "10.67.0.0/16", "unreachable"},
		{"pref", "105", "to", "10.68.0.0/16", "prohibit"},
		{"pref", "106", "nop"},
		{"pref", "107", "fwmark", "0/0x1", "lookup", "200"},
		{"pref", "108", "ipproto", "udp", "dport", "53", "lookup", "1000", "protocol", "static"},
		{"pref", "110", "lookup", "main", "suppress_ifgroup", "5"},
	} {
		a.IP(append([]string{"rule", "add"}, r...)...)
	}
	a.IP("-6", "rule", "add", "pref", "200", "from", "2001:db8:1::/48", "lookup", "100")
	a.IP("-6", "rule", "add", "pref", "201", "to", "2001:db8:9::/48", "ipproto", "tcp", "dport", "443", "prohibit")

	for _, r := range [][]string{
		{"default", "via", "10.1.0.2", "table", "100"},
		{"172.16.0.0/12", "via", "10.9.9.9", "dev", "v1", "onlink", "table", "100"},
		{"172.17.0.0/16", "dev", "v1", "src", "10.1.0.1", "metric", "50", "scope", "link", "table", "200"},
		{"10.70.0.0/16", "tos", "0x10", "via", "10.1.0.2", "table", "200", "proto", "static"},
		{"blackhole", "10.50.0.0/16", "table", "200"},
		{"unreachable", "10.51.0.0/16", "table", "200"},
		{"prohibit", "10.52.0.0/16", "table", "200"},
		{"throw", "10.53.0.0/16", "table", "4294967000"},
		{"10.60.0.0/16", "table", "1000", "nexthop", "via", "10.1.0.2", "dev", "v1", "weight", "3",
			"nexthop", "via", "10.2.0.2", "dev", "v2", "weight", "1", "nexthop", "via", "10.99.0.1", "dev", "v2", "onlink"},
		{"198.18.0.0/15", "via", "10.2.0.2", "metric", "10"},
	} {
		a.IP(append([]string{"route", "add"}, r...)...)
	}
	a.IP("-6", "route", "add", "default", "via", "2001:db8:1::2", "dev", "v1", "metric", "100")
	a.IP("-6", "route", "add", "2001:db8:7::/48", "via", "2001:db8:2::2", "table", "100", "proto", "static")
	a.IP("-6", "route", "add", "2001:db8:8::/48", "table", "1000",
		"nexthop", "via", "2001:db8:1::2", "dev", "v1", "weight", "2",
		"nexthop", "via", "2001:db8:2::2", "dev", "v2", "weight", "5")
	a.IP("-6", "route", "add", "unreachable", "2001:db8:6::/48", "table", "200")

	a.Run("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "v2", "-j", "MASQUERADE")
	a.Run("iptables", "-t", "nat", "-A", "PREROUTING", "-i", "v1", "-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.2.0.2:80")
	a.Run("iptables", "-t", "mangle", "-A", "PREROUTING", "-i", "v1", "-j", "MARK", "--set-mark", "0x10")
	a.Run("ip6tables", "-t", "mangle", "-A", "PREROUTING", "-i", "v1", "-j", "MARK", "--set-mark", "0x20")

	a.Sysctl("net.ipv4.ip_forward", "1")
	a.Sysctl("net.ipv4.conf.v1.rp_filter", "2")
	a.Sysctl("net.ipv4.conf.all.src_valid_mark", "1")
	a.Sysctl("net.ipv4.conf.v2.route_localnet", "1")
	a.Sysctl("net.ipv4.conf.v1.ignore_routes_with_linkdown", "1")
	a.Sysctl("net.ipv6.conf.v2.ignore_routes_with_linkdown", "1")
	a.Sysctl("net.ipv4.conf.all.send_redirects", "0")

	ctx := t.Context()
	st, err := kernel.Read(ctx, kernel.Namespace{Name: a.Name})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}

	t.Run("configured", func(t *testing.T) {
		checkConfigured(t, st)
	})
	t.Run("rules match ip rule", func(t *testing.T) {
		for _, fam := range []inet.Family{inet.V4, inet.V6} {
			want := ipRules(t, a, st, fam)
			got := ofFamily(st.Rules, fam, func(r model.Rule) inet.Family { return r.Family })
			if diff := cmp.Diff(want, got, addrCmp, prefixCmp); diff != "" {
				t.Errorf("%s rules differ from `ip %s -d -j rule show` (-ip +read):\n%s", fam, fam.Flag(), diff)
			}
		}
	})
	t.Run("routes match ip route", func(t *testing.T) {
		for _, fam := range []inet.Family{inet.V4, inet.V6} {
			want := ipRoutes(t, a, st, fam)
			got := ofFamily(st.Routes, fam, func(r model.Route) inet.Family { return r.Family })
			if diff := cmp.Diff(want, got, addrCmp, prefixCmp); diff != "" {
				t.Errorf("%s routes differ from `ip %s -d -j route show table all` (-ip +read):\n%s", fam, fam.Flag(), diff)
			}
		}
	})
	t.Run("kernel's route counts size the read", func(t *testing.T) {
		// Read makes room for the routes the kernel counts before it dumps them (one slice,
		// no copies of a full table); the counts are right only if they are the dump's.
		v4, v6 := kernel.RouteCountsForTest(kernel.Namespace{Name: a.Name})
		fam := func(r model.Route) inet.Family { return r.Family }
		if n := len(ofFamily(st.Routes, inet.V4, fam)); v4 != n {
			t.Errorf("fib_triestat counts %d IPv4 routes, the dump gave %d", v4, n)
		}
		// IPv6 keeps a multipath route as sibling entries, one per nexthop, which the dump
		// gives as one route: rt6_stats counts the siblings.
		n6, siblings := 0, 0
		for _, r := range ofFamily(st.Routes, inet.V6, fam) {
			n6++
			siblings += max(len(r.Nexthops)-1, 0)
		}
		if siblings == 0 {
			t.Fatal("the namespace has no IPv6 multipath route; the count's siblings go untested")
		}
		if v6 != n6+siblings {
			t.Errorf("rt6_stats counts %d IPv6 routes, the dump gave %d with %d sibling nexthops", v6, n6, siblings)
		}
		// Room for the count, rounded up to the allocator's size class (1/8 at most), where
		// growing by doubling would start at 256.
		if c := cap(st.Routes); c < v4+v6 || c > (v4+v6)*9/8+1 {
			t.Errorf("the routes' slice has room for %d, want the %d counted", c, v4+v6)
		}
		if got := kernel.RouteCount(kernel.Namespace{Name: a.Name}); got != v4+v6 {
			t.Errorf("RouteCount = %d, want %d", got, v4+v6)
		}
	})
	t.Run("netfilter matches iptables-save", func(t *testing.T) {
		for _, c := range []struct {
			fam  inet.Family
			save string
		}{{inet.V4, "iptables-save"}, {inet.V6, "ip6tables-save"}} {
			want := 0
			for line := range strings.Lines(a.Run(c.save)) {
				if strings.HasPrefix(line, "-A ") {
					want++
				}
			}
			got := 0
			for _, tb := range st.Netfilter.Tables {
				if tb.Family == c.fam {
					for _, ch := range tb.Chains {
						got += len(ch.Rules)
					}
				}
			}
			if got != want || want == 0 {
				t.Errorf("%s: the state has %d rules, %s shows %d", c.fam, got, c.save, want)
			}
		}
	})
	t.Run("json round trip", func(t *testing.T) {
		b1, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		var back model.State
		if err := json.Unmarshal(b1, &back); err != nil {
			t.Fatal(err)
		}
		b2, err := json.Marshal(&back)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b1, b2) {
			t.Errorf("marshal, unmarshal, marshal changed the state:\n%s\n%s", b1, b2)
		}
	})
	t.Run("table names", func(t *testing.T) {
		etc := t.TempDir()
		writeFile(t, filepath.Join(etc, "rt_tables"), "255 local\n254 main\n100 isp1\n")
		writeFile(t, filepath.Join(etc, "rt_tables.d", "vpn.conf"), "# vpn\n0x3e8 vpn\n")
		st, err := kernel.ReadWith(ctx, kernel.Namespace{Name: a.Name}, kernel.ReadOptions{RTTablesDirs: []string{etc}})
		if err != nil {
			t.Fatal(err)
		}
		want := map[int]string{100: "isp1", 1000: "vpn"}
		if diff := cmp.Diff(want, st.TableNames); diff != "" {
			t.Errorf("TableNames (-want +got):\n%s", diff)
		}
		if got := st.TableName(1000); got != "vpn" {
			t.Errorf("TableName(1000) = %q, want vpn", got)
		}
	})
}

func checkConfigured(t *testing.T, st *model.State) {
	t.Helper()
	link := func(name string) *model.Link {
		l := st.LinkByName(name)
		if l == nil {
			t.Fatalf("link %s missing; links: %v", name, st.Links)
		}
		return l
	}
	if !slices.IsSortedFunc(st.Links, func(a, b model.Link) int { return a.Index - b.Index }) {
		t.Errorf("links not sorted by index")
	}
	if lo := link("lo"); lo.Kind != "loopback" || !lo.Up {
		t.Errorf("lo = %+v, want an up loopback", lo)
	}
	v1 := link("v1")
	if v1.Kind != "veth" || !v1.Up || v1.OperState != "UP" || v1.MTU != 1500 || v1.Peer != "" || len(v1.HardwareAddr) != 17 {
		t.Errorf("v1 = %+v, want an up veth with mtu 1500, a MAC and its peer in another namespace", v1)
	}
	wantAddrs := []model.Address{
		{Prefix: netip.MustParsePrefix("10.1.0.1/24"), Scope: "global"},
		{Prefix: netip.MustParsePrefix("10.1.0.100/24"), Scope: "global", Secondary: true},
		{Prefix: netip.MustParsePrefix("2001:db8:1::1/64"), Scope: "global"},
	}
	var gotAddrs []model.Address
	for _, ad := range v1.Addrs {
		if ad.Scope == "link" && ad.Prefix.Addr().IsLinkLocalUnicast() {
			continue // the kernel's fe80:: address, whose value is random
		}
		gotAddrs = append(gotAddrs, ad)
	}
	if diff := cmp.Diff(wantAddrs, gotAddrs, prefixCmp); diff != "" {
		t.Errorf("v1 addresses (-want +got):\n%s", diff)
	}
	if vp0 := link("vp0"); vp0.Peer != "vp1" {
		t.Errorf("vp0 peer = %q, want vp1", vp0.Peer)
	}
	if vp1 := link("vp1"); vp1.Master != "br0" || vp1.Peer != "vp0" {
		t.Errorf("vp1 = %+v, want master br0 and peer vp0", vp1)
	}
	if br := link("br0"); br.Kind != "bridge" {
		t.Errorf("br0 kind = %q, want bridge", br.Kind)
	}
	vx := link("vx0")
	wantTun := &model.Tunnel{VNI: 42, Port: 4789, TTL: 5, Dev: "v1",
		Local: netip.MustParseAddr("10.1.0.1"), Remote: netip.MustParseAddr("10.1.0.2")}
	if diff := cmp.Diff(wantTun, vx.Tunnel, addrCmp); vx.Kind != "vxlan" || vx.Up || diff != "" {
		t.Errorf("vx0 = %+v, want a down vxlan; tunnel (-want +got):\n%s", vx, diff)
	}

	rule := func(fam inet.Family, prio int) model.Rule {
		for _, r := range st.Rules {
			if r.Family == fam && r.Priority == prio {
				return r
			}
		}
		t.Fatalf("no %s rule with priority %d", fam, prio)
		return model.Rule{}
	}
	want100 := model.Rule{Family: inet.V4, Priority: 100,
		Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("192.168.0.0/16"),
		IIF: "v1", OIF: "v2", Mark: &model.MarkMatch{Value: 0x10, Mask: 0xff}, TOS: 0x10, IPProto: 6,
		SPort: &model.PortRange{Start: 1000, End: 2000}, DPort: &model.PortRange{Start: 80, End: 80},
		UIDRange: &model.UIDRange{Start: 100, End: 200}, Action: model.ActionTable, Table: 100}
	if diff := cmp.Diff(want100, rule(inet.V4, 100), prefixCmp); diff != "" {
		t.Errorf("rule 100 (-want +got):\n%s", diff)
	}
	zero := 0
	five := 5
	for _, c := range []struct {
		prio int
		want model.Rule
	}{
		{101, model.Rule{Not: true, Src: netip.MustParsePrefix("10.0.0.0/8"), Mark: &model.MarkMatch{Value: 5, Mask: 0xffffffff},
			Action: model.ActionTable, Table: 4294967000, SuppressPrefixLen: &zero}},
		{102, model.Rule{Action: model.ActionGoto, Goto: 110}},
		{103, model.Rule{Dst: netip.MustParsePrefix("10.66.0.0/16"), Action: model.ActionBlackhole}},
		{104, model.Rule{Dst: netip.MustParsePrefix("10.67.0.0/16"), Action: model.ActionUnreachable}},
		{105, model.Rule{Dst: netip.MustParsePrefix("10.68.0.0/16"), Action: model.ActionProhibit}},
		{106, model.Rule{Action: model.ActionNop}},
		{107, model.Rule{Mark: &model.MarkMatch{Value: 0, Mask: 1}, Action: model.ActionTable, Table: 200}},
		{108, model.Rule{IPProto: 17, DPort: &model.PortRange{Start: 53, End: 53}, Action: model.ActionTable, Table: 1000, Protocol: 4}},
		{110, model.Rule{Action: model.ActionTable, Table: model.TableMain, SuppressIfGroup: &five}},
	} {
		c.want.Family, c.want.Priority = inet.V4, c.prio
		if diff := cmp.Diff(c.want, rule(inet.V4, c.prio), prefixCmp); diff != "" {
			t.Errorf("rule %d (-want +got):\n%s", c.prio, diff)
		}
	}
	if r := rule(inet.V6, 201); r.Action != model.ActionProhibit || r.DPort == nil || r.DPort.Start != 443 || r.IPProto != 6 {
		t.Errorf("IPv6 rule 201 = %+v, want prohibit tcp dport 443", r)
	}

	route := func(fam inet.Family, table int, dst string) model.Route {
		p := netip.MustParsePrefix(dst)
		for _, r := range st.Routes {
			if r.Family == fam && r.Table == table && r.Dst == p {
				return r
			}
		}
		t.Fatalf("no %s route to %s in table %d", fam, dst, table)
		return model.Route{}
	}
	gw := netip.MustParseAddr
	for _, want := range []model.Route{
		{Table: 100, Type: "unicast", Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: gw("10.1.0.2"), Dev: "v1", Scope: "universe", Protocol: "boot"},
		{Table: 100, Type: "unicast", Dst: netip.MustParsePrefix("172.16.0.0/12"), Gateway: gw("10.9.9.9"), Dev: "v1", Scope: "universe", Protocol: "boot", OnLink: true},
		{Table: 200, Type: "unicast", Dst: netip.MustParsePrefix("172.17.0.0/16"), Dev: "v1", Src: gw("10.1.0.1"), Metric: 50, Scope: "link", Protocol: "boot"},
		{Table: 200, Type: "unicast", Dst: netip.MustParsePrefix("10.70.0.0/16"), TOS: 0x10, Gateway: gw("10.1.0.2"), Dev: "v1", Scope: "universe", Protocol: "static"},
		{Table: 200, Type: "blackhole", Dst: netip.MustParsePrefix("10.50.0.0/16"), Scope: "universe", Protocol: "boot"},
		{Table: 200, Type: "unreachable", Dst: netip.MustParsePrefix("10.51.0.0/16"), Scope: "universe", Protocol: "boot"},
		{Table: 200, Type: "prohibit", Dst: netip.MustParsePrefix("10.52.0.0/16"), Scope: "universe", Protocol: "boot"},
		{Table: 4294967000, Type: "throw", Dst: netip.MustParsePrefix("10.53.0.0/16"), Scope: "universe", Protocol: "boot"},
		{Table: 1000, Type: "unicast", Dst: netip.MustParsePrefix("10.60.0.0/16"), Scope: "universe", Protocol: "boot", Nexthops: []model.Nexthop{
			{Gateway: gw("10.1.0.2"), Dev: "v1", Weight: 3},
			{Gateway: gw("10.2.0.2"), Dev: "v2", Weight: 1},
			{Gateway: gw("10.99.0.1"), Dev: "v2", Weight: 1, OnLink: true},
		}},
		{Table: model.TableMain, Type: "unicast", Dst: netip.MustParsePrefix("198.18.0.0/15"), Gateway: gw("10.2.0.2"), Dev: "v2", Metric: 10, Scope: "universe", Protocol: "boot"},
		{Table: model.TableMain, Type: "unicast", Dst: netip.MustParsePrefix("10.1.0.0/24"), Dev: "v1", Src: gw("10.1.0.1"), Scope: "link", Protocol: "kernel"},
		{Table: model.TableLocal, Type: "local", Dst: netip.MustParsePrefix("10.1.0.100/32"), Dev: "v1", Src: gw("10.1.0.1"), Scope: "host", Protocol: "kernel"},
	} {
		want.Family = inet.V4
		if diff := cmp.Diff(want, route(inet.V4, want.Table, want.Dst.String()), addrCmp, prefixCmp); diff != "" {
			t.Errorf("route %s (-want +got):\n%s", want.Dst, diff)
		}
	}
	for _, want := range []model.Route{
		{Table: model.TableMain, Type: "unicast", Dst: netip.MustParsePrefix("::/0"), Gateway: gw("2001:db8:1::2"), Dev: "v1", Metric: 100, Scope: "universe", Protocol: "boot"},
		{Table: 100, Type: "unicast", Dst: netip.MustParsePrefix("2001:db8:7::/48"), Gateway: gw("2001:db8:2::2"), Dev: "v2", Metric: 1024, Scope: "universe", Protocol: "static"},
		{Table: 1000, Type: "unicast", Dst: netip.MustParsePrefix("2001:db8:8::/48"), Metric: 1024, Scope: "universe", Protocol: "boot", Nexthops: []model.Nexthop{
			{Gateway: gw("2001:db8:1::2"), Dev: "v1", Weight: 2},
			{Gateway: gw("2001:db8:2::2"), Dev: "v2", Weight: 5},
		}},
	} {
		want.Family = inet.V6
		if diff := cmp.Diff(want, route(inet.V6, want.Table, want.Dst.String()), addrCmp, prefixCmp); diff != "" {
			t.Errorf("route %s (-want +got):\n%s", want.Dst, diff)
		}
	}
	if r := route(inet.V6, 200, "2001:db8:6::/48"); r.Type != model.RouteUnreachable {
		t.Errorf("IPv6 route 2001:db8:6::/48 type = %q, want unreachable", r.Type)
	}

	for key, want := range map[string]string{
		model.SysctlIPForward:                  "1",
		model.ConfKey("v1", "rp_filter"):       "2",
		model.ConfKey("v2", "rp_filter"):       "0",
		model.ConfKey("all", "src_valid_mark"): "1",
		model.ConfKey("default", "forwarding"): "1",
		model.ConfKey("br0", "accept_local"):   "0",
		// What fib.FIB reads besides (with the kernel's defaults when absent).
		model.ConfKey("v2", "route_localnet"):                "1",
		model.ConfKey("v1", "route_localnet"):                "0",
		model.ConfKey("v1", "ignore_routes_with_linkdown"):   "1",
		model.ConfKey("all", "ignore_routes_with_linkdown"):  "0",
		model.ConfKey6("v2", "ignore_routes_with_linkdown"):  "1",
		model.ConfKey6("all", "ignore_routes_with_linkdown"): "0",
		model.ConfKey("all", "send_redirects"):               "0",
		model.ConfKey("v1", "send_redirects"):                "1",
	} {
		if got, ok := st.Sysctls[key]; !ok || got != want {
			t.Errorf("sysctl %s = %q (present %v), want %q", key, got, ok, want)
		}
	}
	if st.Sysctls.RPFilter("v1") != 2 || !st.Sysctls.IPForward() {
		t.Errorf("sysctls: rp_filter(v1) = %d, forwarding %v; want 2, true", st.Sysctls.RPFilter("v1"), st.Sysctls.IPForward())
	}
	if st.Namespace == "" || st.Host == "" {
		t.Errorf("Namespace = %q, Host = %q; want both set", st.Namespace, st.Host)
	}
}

func ofFamily[T any](all []T, fam inet.Family, familyOf func(T) inet.Family) []T {
	var out []T
	for _, x := range all {
		if familyOf(x) == fam {
			out = append(out, x)
		}
	}
	return out
}

// ipJSON runs `ip -d -j ARGS` inside the namespace and decodes its output.
func ipJSON(t *testing.T, ns *lab.NS, fam inet.Family, args ...string) []map[string]any {
	t.Helper()
	out := ns.Run("ip", append([]string{fam.Flag(), "-d", "-j"}, args...)...)
	var v []map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("decoding ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// ipRules turns `ip -d -j rule show` into model rules the way iproute2's print_rule
// (ip/iprule.c) writes them, independently of the reader.
func ipRules(t *testing.T, ns *lab.NS, st *model.State, fam inet.Family) []model.Rule {
	t.Helper()
	var out []model.Rule
	for _, j := range ipJSON(t, ns, fam, "rule", "show") {
		f := fields{t: t, m: j}
		r := model.Rule{Family: fam, Priority: f.int("priority"), Action: model.ActionTable}
		_, r.Not = j["not"]
		if s := f.str("src"); s != "" && s != "all" {
			r.Src = f.prefix("src", "srclen", fam)
		}
		if f.has("dst") {
			r.Dst = f.prefix("dst", "dstlen", fam)
		}
		r.IIF, r.OIF = f.str("iif"), f.str("oif")
		if f.has("fwmark") {
			r.Mark = &model.MarkMatch{Value: f.hex("fwmark"), Mask: 0xffffffff}
			if f.has("fwmask") {
				r.Mark.Mask = f.hex("fwmask")
			}
		}
		r.TOS = uint8(f.hex("tos"))
		if f.has("ipproto") {
			p, err := inet.ProtoNumber(f.str("ipproto"))
			if err != nil {
				t.Fatal(err)
			}
			r.IPProto = p
		}
		r.SPort, r.DPort = f.ports("sport"), f.ports("dport")
		if f.has("uid_start") {
			r.UIDRange = &model.UIDRange{Start: uint32(f.int("uid_start")), End: uint32(f.int("uid_end"))}
		}
		if f.has("suppress_prefixlen") {
			r.SuppressPrefixLen = new(f.int("suppress_prefixlen"))
		}
		if f.has("suppress_ifgroup") {
			g := f.str("suppress_ifgroup")
			n, err := strconv.Atoi(g)
			if g == "default" {
				n, err = 0, nil
			}
			if err != nil {
				t.Fatalf("suppress_ifgroup %q: %v", g, err)
			}
			r.SuppressIfGroup = &n
		}
		if f.has("table") {
			r.Table = f.table(st, "table")
		}
		switch {
		case f.has("goto"):
			r.Action, r.Goto = model.ActionGoto, f.int("goto")
		case f.has("nop"):
			r.Action = model.ActionNop
		case f.has("action"):
			r.Action = f.str("action")
		}
		r.Protocol = f.protocol(st, fam, r.Priority)
		f.done("priority", "not", "src", "srclen", "dst", "dstlen", "iif", "oif", "fwmark", "fwmask", "tos",
			"ipproto", "sport", "sport_start", "sport_end", "dport", "dport_start", "dport_end",
			"uid_start", "uid_end", "suppress_prefixlen", "suppress_ifgroup", "table", "goto", "nop",
			"action", "protocol")
		out = append(out, r)
	}
	return out
}

// ipRoutes turns `ip -d -j route show table all` into model routes as iproute2's print_route
// (ip/iproute.c) writes them.
func ipRoutes(t *testing.T, ns *lab.NS, st *model.State, fam inet.Family) []model.Route {
	t.Helper()
	var out []model.Route
	for _, j := range ipJSON(t, ns, fam, "route", "show", "table", "all") {
		f := fields{t: t, m: j}
		r := model.Route{Family: fam, Table: model.TableMain, Type: f.str("type"), Dev: f.str("dev"),
			Metric: f.int("metric"), Protocol: f.str("protocol"), Scope: f.str("scope")}
		if r.Scope == "global" {
			r.Scope = "universe" // rt_scopes calls RT_SCOPE_UNIVERSE global; the model, universe
		}
		if f.has("table") {
			r.Table = f.table(st, "table")
		}
		if d := f.str("dst"); d == "default" {
			r.Dst = netip.PrefixFrom(map[inet.Family]netip.Addr{inet.V4: netip.IPv4Unspecified(), inet.V6: netip.IPv6Unspecified()}[fam], 0)
		} else if p, err := netip.ParsePrefix(d); err == nil {
			r.Dst = p
		} else {
			r.Dst = netip.PrefixFrom(netip.MustParseAddr(d), map[inet.Family]int{inet.V4: 32, inet.V6: 128}[fam])
		}
		r.TOS = uint8(f.hex("tos"))
		r.Gateway = f.addr("gateway")
		r.Src = f.addr("prefsrc")
		r.OnLink = f.flag("onlink")
		if nhs, ok := j["nexthops"].([]any); ok {
			for _, n := range nhs {
				nf := fields{t: t, m: n.(map[string]any)}
				r.Nexthops = append(r.Nexthops, model.Nexthop{Gateway: nf.addr("gateway"), Dev: nf.str("dev"),
					Weight: nf.int("weight"), OnLink: nf.flag("onlink")})
				nf.done("gateway", "dev", "weight", "flags")
			}
		}
		f.done("type", "dst", "tos", "gateway", "dev", "table", "protocol", "scope", "prefsrc", "metric",
			"flags", "nexthops", "pref")
		out = append(out, r)
	}
	return out
}

// fields reads one object of ip's JSON output, failing the test on keys it does not expect so
// that a selector the oracle does not know cannot be silently skipped.
type fields struct {
	t *testing.T
	m map[string]any
}

func (f fields) has(k string) bool { _, ok := f.m[k]; return ok }

func (f fields) str(k string) string {
	switch v := f.m[k].(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		f.t.Fatalf("ip field %s = %v (%T), want a string", k, v, v)
	}
	return ""
}

func (f fields) int(k string) int {
	if !f.has(k) {
		return 0
	}
	n, err := strconv.Atoi(f.str(k))
	if err != nil {
		f.t.Fatalf("ip field %s: %v", k, err)
	}
	return n
}

func (f fields) hex(k string) uint32 {
	if !f.has(k) {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(f.str(k), "0x"), 16, 32)
	if err != nil {
		f.t.Fatalf("ip field %s: %v", k, err)
	}
	return uint32(n)
}

func (f fields) addr(k string) netip.Addr {
	if !f.has(k) {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(f.str(k))
	if err != nil {
		f.t.Fatalf("ip field %s: %v", k, err)
	}
	return a
}

func (f fields) prefix(addrKey, lenKey string, fam inet.Family) netip.Prefix {
	bits := 32
	if fam == inet.V6 {
		bits = 128
	}
	if f.has(lenKey) {
		bits = f.int(lenKey)
	}
	return netip.PrefixFrom(f.addr(addrKey), bits)
}

func (f fields) ports(k string) *model.PortRange {
	if f.has(k) {
		p := uint16(f.int(k))
		return &model.PortRange{Start: p, End: p}
	}
	if f.has(k + "_start") {
		return &model.PortRange{Start: uint16(f.int(k + "_start")), End: uint16(f.int(k + "_end"))}
	}
	return nil
}

func (f fields) flag(name string) bool {
	fl, _ := f.m["flags"].([]any)
	return slices.Contains(fl, any(name))
}

// table resolves a table as ip printed it, through the names the reader found in rt_tables.
func (f fields) table(st *model.State, k string) int {
	id, err := st.TableID(f.str(k))
	if err != nil {
		f.t.Fatalf("ip field %s: %v", k, err)
	}
	return id
}

// protocol checks the rule protocol's name as ip printed it and returns the model's number.
func (f fields) protocol(st *model.State, fam inet.Family, prio int) int {
	for _, r := range st.Rules {
		if r.Family == fam && r.Priority == prio {
			if got, want := kernel.ProtocolName(r.Protocol), f.str("protocol"); got != want {
				f.t.Errorf("%s rule %d: protocol %d named %q, ip says %q", fam, prio, r.Protocol, got, want)
			}
			return r.Protocol
		}
	}
	return -1 // no such rule: the comparison reports it
}

func (f fields) done(known ...string) {
	for k := range f.m {
		if !slices.Contains(known, k) {
			f.t.Errorf("ip printed %q = %v, which the oracle does not compare: %v", k, f.m[k], f.m)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPrivilegedReadRoutes reads a namespace holding 100,000 routes in one table.
func BenchmarkPrivilegedReadRoutes(b *testing.B) {
	l := lab.New(b)
	ns := l.NS("bench")
	ns.IP("link", "add", "v1", "type", "veth", "peer", "name", "v2")
	ns.IP("link", "set", "v1", "up")
	ns.IP("link", "set", "v2", "up")
	ns.Addr("v1", "10.0.0.1/16")
	const n = 100_000
	var batch strings.Builder
	base := netip.MustParseAddr("198.18.0.0").As4()
	for i := range n {
		a := base
		a[2], a[3] = byte(i>>8), byte(i)
		a[1] += byte(i >> 16)
		fmt.Fprintf(&batch, "route add %s/32 via 10.0.0.2 table 100\n", netip.AddrFrom4(a))
	}
	file := filepath.Join(b.TempDir(), "routes")
	if err := os.WriteFile(file, []byte(batch.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	ns.IP("-batch", file)

	ctx := context.Background()
	ko := kernel.Namespace{Name: ns.Name}
	b.ReportAllocs()
	for b.Loop() {
		st, err := kernel.Read(ctx, ko)
		if err != nil {
			b.Fatal(err)
		}
		if len(st.Routes) < n {
			b.Fatalf("read %d routes, want at least %d", len(st.Routes), n)
		}
	}
	b.ReportMetric(float64(n), "routes/op")
}
