package watch

import (
	"net/netip"
	"testing"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
	"roundtrip/wizards"
)

// The host of the multi-wan tests, as the wizards' tests build it: links with their local and
// connected routes, the default rules and sysctls.

func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// case2Host is the dual-WAN gateway.
func case2Host(t testing.TB) *model.State {
	t.Helper()
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
	conf := func(iface string) {
		for _, k := range []string{"rp_filter", "src_valid_mark", "accept_local", "forwarding"} {
			s.Sysctls[model.ConfKey(iface, k)] = "0"
		}
	}
	conf("all")
	conf("default")
	link := func(name, kind, addr string) {
		p := mustPrefix(addr)
		l := model.Link{Index: len(s.Links) + 1, Name: name, Kind: kind, Up: true, MTU: 1500, Addrs: []model.Address{{Prefix: p, Scope: "global"}}}
		s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: model.TableLocal, Type: model.RouteLocal,
			Dst: netip.PrefixFrom(p.Addr(), 32), Dev: name, Src: p.Addr(), Scope: "host", Protocol: "kernel"})
		if p.Bits() < 32 {
			s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast,
				Dst: p.Masked(), Dev: name, Src: p.Addr(), Scope: "link", Protocol: "kernel"})
		}
		if kind == "loopback" {
			l.Addrs[0].Scope = "host"
		}
		s.Links = append(s.Links, l)
		conf(name)
	}
	link("lo", "loopback", "127.0.0.1/8")
	link("lan0", "veth", "10.73.20.1/24")
	link("wan1", "veth", "198.18.73.6/30")
	link("wan2", "veth", "198.18.73.10/30")
	s.Routes = append(s.Routes, plan.NormalizeRoute(model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast,
		Protocol: "boot", Dst: mustPrefix("0.0.0.0/0"), Gateway: mustAddr("198.18.73.5"), Dev: "wan1"}))
	return s
}

// multiWANCase2 is the multi-wan setup of case 2 on its test host: ISP A the default, ISP B's
// customer network on its list, NAT and connection marks.
func multiWANCase2() *wizards.MultiWANOptions {
	return &wizards.MultiWANOptions{
		WANs:       []wizards.WAN{{Iface: "wan1", Gateway: mustAddr("198.18.73.5"), Name: "isp_a"}, {Iface: "wan2", Gateway: mustAddr("198.18.73.9"), Name: "isp_b"}},
		LANs:       []string{"lan0"},
		Default:    "isp_a",
		RouteLists: []wizards.RouteList{{WAN: "isp_b", Prefixes: []netip.Prefix{mustPrefix("198.18.77.0/24")}}},
		SNAT:       true, Connmark: true,
	}
}

// appliedCase2 is case 2's host with the multi-wan setup in effect.
func appliedCase2(t testing.TB, s *model.State) (*wizards.MultiWANOptions, *model.State) {
	t.Helper()
	o := multiWANCase2()
	res, err := o.Plan(s)
	if err != nil {
		t.Fatal(err)
	}
	return o, res.Plan.Expect(s)
}

// egress routes a LAN client's packet to dst through the state and returns the interface it
// leaves by.
func egress(s *model.State, dst string) string {
	return fib.New(s).Resolve(fib.Flow{Src: mustAddr("10.73.20.50"), Dst: mustAddr(dst), IIF: "lan0", Proto: 6, SPort: 40000, DPort: 80}).OIF
}
