package wizards

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// testHost builds a State by hand the way the kernel would show it: links with their addresses
// bring their local and connected routes, and the default rules and sysctls are there.
type testHost struct {
	t testing.TB
	s *model.State
}

func newTestHost(t testing.TB) *testHost {
	s := &model.State{
		Host: "test",
		Rules: []model.Rule{
			{Family: inet.V4, Priority: 0, Action: model.ActionTable, Table: model.TableLocal},
			{Family: inet.V4, Priority: 32766, Action: model.ActionTable, Table: model.TableMain},
			{Family: inet.V4, Priority: 32767, Action: model.ActionTable, Table: model.TableDefault},
		},
		Netfilter: iptables.Ruleset{Backend: "legacy"},
		Sysctls:   model.Sysctls{model.SysctlIPForward: "0"},
	}
	h := &testHost{t: t, s: s}
	for _, k := range []string{"all", "default"} {
		h.confDefaults(k)
	}
	h.link("lo", "loopback", "127.0.0.1/8")
	return h
}

func (h *testHost) confDefaults(iface string) {
	for _, k := range []string{"rp_filter", "src_valid_mark", "accept_local", "forwarding"} {
		h.s.Sysctls[model.ConfKey(iface, k)] = "0"
	}
}

// link adds an up link with addresses (CIDR strings).
func (h *testHost) link(name, kind string, addrs ...string) *testHost {
	l := model.Link{Index: len(h.s.Links) + 1, Name: name, Kind: kind, Up: true, MTU: 1500}
	for _, a := range addrs {
		p := netip.MustParsePrefix(a)
		l.Addrs = append(l.Addrs, model.Address{Prefix: p, Scope: "global"})
		h.s.Routes = append(h.s.Routes, model.Route{Family: inet.V4, Table: model.TableLocal, Type: model.RouteLocal,
			Dst: netip.PrefixFrom(p.Addr(), 32), Dev: name, Src: p.Addr(), Scope: "host", Protocol: "kernel"})
		if p.Bits() < 32 {
			h.s.Routes = append(h.s.Routes, model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast,
				Dst: p.Masked(), Dev: name, Src: p.Addr(), Scope: "link", Protocol: "kernel"})
		}
	}
	if kind == "loopback" {
		l.Addrs[0].Scope = "host"
	}
	h.s.Links = append(h.s.Links, l)
	h.confDefaults(name)
	return h
}

// route adds a route written as `ip route add` arguments: DST [via GW] [dev IF] [table N].
func (h *testHost) route(args string) *testHost {
	h.t.Helper()
	f := strings.Fields(args)
	r := model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Protocol: "boot"}
	if f[0] == "default" {
		r.Dst = netip.MustParsePrefix("0.0.0.0/0")
	} else {
		r.Dst = netip.MustParsePrefix(f[0])
	}
	for i := 1; i+1 < len(f); i += 2 {
		switch f[i] {
		case "via":
			r.Gateway = netip.MustParseAddr(f[i+1])
		case "dev":
			r.Dev = f[i+1]
		case "table":
			fmt.Sscan(f[i+1], &r.Table)
		default:
			h.t.Fatalf("route %q: unknown word %s", args, f[i])
		}
	}
	r = plan.NormalizeRoute(r)
	h.s.Routes = append(h.s.Routes, r)
	return h
}

// iptables adds iptables-save rules ("-A CHAIN ...") to a table, creating built-in chains.
func (h *testHost) iptables(table string, lines ...string) *testHost {
	h.t.Helper()
	t := h.s.Netfilter.Table(inet.V4, table)
	if t == nil {
		h.s.Netfilter.Tables = append(h.s.Netfilter.Tables, iptables.Table{Family: inet.V4, Name: table})
		t = &h.s.Netfilter.Tables[len(h.s.Netfilter.Tables)-1]
		builtins := map[string][]string{"nat": {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}, "filter": {"INPUT", "FORWARD", "OUTPUT"},
			"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}}[table]
		for _, b := range builtins {
			t.Chains = append(t.Chains, iptables.Chain{Name: b, Policy: "ACCEPT"})
		}
	}
	for _, line := range lines {
		chain, spec, _ := strings.Cut(strings.TrimPrefix(line, "-A "), " ")
		r, err := iptables.ParseRule(inet.V4, spec)
		if err != nil {
			h.t.Fatalf("rule %q: %v", line, err)
		}
		c := t.Chain(chain)
		if c == nil {
			t.Chains = append(t.Chains, iptables.Chain{Name: chain})
			c = &t.Chains[len(t.Chains)-1]
		}
		c.Rules = append(c.Rules, r)
	}
	return h
}

// The hosts of the five field cases, with the addresses the e2e tests use.

// case1Host is web server C: a LAN NIC behind a firewall that DNATs to it, and a public NIC
// em1 with the national route.
func case1Host(t testing.TB) *model.State {
	return newTestHost(t).
		link("lan0", "veth", "10.73.1.2/24").
		link("em1", "veth", "198.18.73.2/30").
		route("default via 10.73.1.1 dev lan0").
		route("198.18.74.0/24 via 198.18.73.1 dev em1").s
}

// case2Host is the dual-WAN gateway.
func case2Host(t testing.TB) *model.State {
	return newTestHost(t).
		link("lan0", "veth", "10.73.20.1/24").
		link("wan1", "veth", "198.18.73.6/30").
		link("wan2", "veth", "198.18.73.10/30").
		route("default via 198.18.73.5 dev wan1").s
}

// case3Host is relay 1, inside the border.
func case3Host(t testing.TB) *model.State {
	return newTestHost(t).
		link("l0", "veth", "10.73.30.1/24").
		link("u0", "veth", "10.73.31.1/24").
		route("198.18.76.0/24 via 10.73.31.2 dev u0").
		route("198.18.75.0/24 via 10.73.30.10 dev l0").s
}

// case4Host is host B with a NIC in the management and in the business network.
func case4Host(t testing.TB) *model.State {
	return newTestHost(t).
		link("b1", "veth", "10.73.43.101/24").
		link("b0", "veth", "10.73.44.63/24").
		route("default via 10.73.44.1 dev b0").s
}

// case5Host is server A, forwarding a port to B on the same LAN.
func case5Host(t testing.TB) *model.State {
	return newTestHost(t).
		link("eth0", "veth", "10.73.5.34/24").
		route("default via 10.73.5.1 dev eth0").s
}
