// Package modeltest builds model.States from a few lines of an ip/iptables-like language for tests.
package modeltest

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
)

// newHost builds a State from lines in a small ip/iptables-like language, deriving what the
// kernel derives (local, broadcast and connected routes of addresses; the default rules), so
// that trace and doctor tests read like the host they describe:
//
//	link eth0 10.0.0.1/24 [more addresses]
//	bridge br0 [addresses]      (a link of kind bridge)
//	port veth1 br0 [hairpin on|off]  (a veth link enslaved to a bridge)
//	route [table T] [blackhole|unreachable|prohibit|throw] DST [via GW] [dev D] [src S] [metric M] [onlink]
//	rule PRIO [from P] [to P] [iif I] [oif O] [fwmark V[/M]] (table T | blackhole | unreachable | prohibit)
//	sysctl KEY=VALUE
//	ipt TABLE -P CHAIN POLICY | -N CHAIN | -A CHAIN SPEC
//	name T NAME
func Host(t testing.TB, text string) *model.State {
	t.Helper()
	s := &model.State{Sysctls: model.Sysctls{model.SysctlIPForward: "0"}}
	addLink := func(name, kind string, addrs []string) {
		l := model.Link{Index: len(s.Links) + 1, Name: name, Kind: kind, Up: true, OperState: "up", MTU: 1500}
		for _, a := range addrs {
			p := netip.MustParsePrefix(a)
			l.Addrs = append(l.Addrs, model.Address{Prefix: p, Scope: "global"})
			f := inet.FamilyOf(p.Addr())
			s.Routes = append(s.Routes, model.Route{Family: f, Table: model.TableLocal, Type: model.RouteLocal, Dst: netip.PrefixFrom(p.Addr(), p.Addr().BitLen()), Dev: name, Src: p.Addr(), Scope: "host", Protocol: "kernel"})
			if f == inet.V4 && p.Bits() < 31 {
				last := p.Masked().Addr().As4()
				hostBits := 32 - p.Bits()
				v := uint32(last[0])<<24 | uint32(last[1])<<16 | uint32(last[2])<<8 | uint32(last[3])
				v |= 1<<hostBits - 1
				bc := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
				s.Routes = append(s.Routes, model.Route{Family: f, Table: model.TableLocal, Type: model.RouteBroadcast, Dst: netip.PrefixFrom(bc, 32), Dev: name, Src: p.Addr(), Scope: "link", Protocol: "kernel"})
			}
			if p.Bits() < p.Addr().BitLen() && name != "lo" {
				s.Routes = append(s.Routes, model.Route{Family: f, Table: model.TableMain, Type: model.RouteUnicast, Dst: p.Masked(), Dev: name, Src: p.Addr(), Scope: "link", Protocol: "kernel"})
			}
		}
		s.Links = append(s.Links, l)
	}
	addLink("lo", "loopback", nil)
	s.Routes = append(s.Routes,
		model.Route{Family: inet.V4, Table: model.TableLocal, Type: model.RouteLocal, Dst: netip.MustParsePrefix("127.0.0.0/8"), Dev: "lo", Src: netip.MustParseAddr("127.0.0.1"), Scope: "host", Protocol: "kernel"},
		model.Route{Family: inet.V4, Table: model.TableLocal, Type: model.RouteLocal, Dst: netip.MustParsePrefix("127.0.0.1/32"), Dev: "lo", Src: netip.MustParseAddr("127.0.0.1"), Scope: "host", Protocol: "kernel"})
	s.Links[0].Addrs = []model.Address{{Prefix: netip.MustParsePrefix("127.0.0.1/8"), Scope: "host"}}
	s.Rules = []model.Rule{
		{Family: inet.V4, Priority: 0, Action: model.ActionTable, Table: model.TableLocal},
		{Family: inet.V4, Priority: 32766, Action: model.ActionTable, Table: model.TableMain},
		{Family: inet.V4, Priority: 32767, Action: model.ActionTable, Table: model.TableDefault},
		{Family: inet.V6, Priority: 0, Action: model.ActionTable, Table: model.TableLocal},
		{Family: inet.V6, Priority: 32766, Action: model.ActionTable, Table: model.TableMain},
	}
	type nfTable struct {
		policies map[string]string
		user     []string
		rules    []string
	}
	nf := map[string]*nfTable{}
	var nfOrder []string
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		w := strings.Fields(line)
		fail := func(format string, a ...any) {
			t.Helper()
			t.Fatalf("host line %d %q: %s", n+1, line, fmt.Sprintf(format, a...))
		}
		switch w[0] {
		case "link":
			addLink(w[1], "veth", w[2:])
		case "bridge":
			addLink(w[1], "bridge", w[2:])
		case "port":
			if len(w) != 3 && (len(w) != 5 || w[3] != "hairpin") {
				fail("want port NAME BRIDGE [hairpin on|off]")
			}
			addLink(w[1], "veth", nil)
			s.Links[len(s.Links)-1].Master = w[2]
			if len(w) == 5 {
				on := w[4] == "on"
				s.Links[len(s.Links)-1].Hairpin = &on
			}
		case "name":
			id, _ := strconv.Atoi(w[1])
			if s.TableNames == nil {
				s.TableNames = map[int]string{}
			}
			s.TableNames[id] = w[2]
		case "sysctl":
			k, v, ok := strings.Cut(w[1], "=")
			if !ok {
				fail("want KEY=VALUE")
			}
			s.Sysctls[k] = v
		case "route":
			r := model.Route{Table: model.TableMain, Type: model.RouteUnicast, Protocol: "static"}
			i := 1
			for i < len(w) {
				switch w[i] {
				case "table":
					id, err := s.TableID(w[i+1])
					if err != nil {
						fail("%v", err)
					}
					r.Table = id
					i += 2
				case "blackhole", "unreachable", "prohibit", "throw":
					r.Type = w[i]
					i++
				case "via":
					r.Gateway = netip.MustParseAddr(w[i+1])
					i += 2
				case "dev":
					r.Dev = w[i+1]
					i += 2
				case "src":
					r.Src = netip.MustParseAddr(w[i+1])
					i += 2
				case "metric":
					r.Metric, _ = strconv.Atoi(w[i+1])
					i += 2
				case "onlink":
					r.OnLink = true
					i++
				case "default":
					r.Dst = netip.MustParsePrefix("0.0.0.0/0")
					i++
				case "default6":
					r.Dst = netip.MustParsePrefix("::/0")
					i++
				default:
					p, err := netip.ParsePrefix(w[i])
					if err != nil {
						a, aerr := netip.ParseAddr(w[i])
						if aerr != nil {
							fail("unknown word %q", w[i])
						}
						p = netip.PrefixFrom(a, a.BitLen())
					}
					r.Dst = p
					i++
				}
			}
			r.Family = inet.FamilyOf(r.Dst.Addr())
			if r.Type == model.RouteUnicast && !r.Gateway.IsValid() {
				r.Scope = "link"
			}
			s.Routes = append(s.Routes, r)
		case "rule":
			prio, err := strconv.Atoi(w[1])
			if err != nil {
				fail("want a priority")
			}
			r := model.Rule{Family: inet.V4, Priority: prio}
			for i := 2; i < len(w); {
				switch w[i] {
				case "not":
					r.Not = true
					i++
				case "from", "to":
					p, err := netip.ParsePrefix(w[i+1])
					if err != nil {
						a := netip.MustParseAddr(w[i+1])
						p = netip.PrefixFrom(a, a.BitLen())
					}
					if w[i] == "from" {
						r.Src = p
					} else {
						r.Dst = p
					}
					i += 2
				case "iif":
					r.IIF = w[i+1]
					i += 2
				case "oif":
					r.OIF = w[i+1]
					i += 2
				case "fwmark":
					v, m, err := iptables.ParseMark(w[i+1])
					if err != nil {
						fail("%v", err)
					}
					r.Mark = &model.MarkMatch{Value: v, Mask: m}
					i += 2
				case "table", "lookup":
					id, err := s.TableID(w[i+1])
					if err != nil {
						fail("%v", err)
					}
					r.Action, r.Table = model.ActionTable, id
					i += 2
				case "blackhole", "unreachable", "prohibit":
					r.Action = w[i]
					i++
				default:
					fail("unknown word %q", w[i])
				}
			}
			s.Rules = append(s.Rules, r)
		case "ipt":
			name := w[1]
			tb := nf[name]
			if tb == nil {
				tb = &nfTable{policies: map[string]string{}}
				nf[name] = tb
				nfOrder = append(nfOrder, name)
			}
			switch w[2] {
			case "-P":
				tb.policies[w[3]] = w[4]
			case "-N":
				tb.user = append(tb.user, w[3])
			case "-A":
				tb.rules = append(tb.rules, strings.Join(w[2:], " "))
			default:
				fail("want -P, -N or -A")
			}
		default:
			fail("unknown line")
		}
	}
	builtin := map[string][]string{
		"raw":    {"PREROUTING", "OUTPUT"},
		"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
		"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
		"filter": {"INPUT", "FORWARD", "OUTPUT"},
	}
	var save strings.Builder
	for _, name := range nfOrder {
		tb := nf[name]
		fmt.Fprintf(&save, "*%s\n", name)
		for _, c := range builtin[name] {
			pol := tb.policies[c]
			if pol == "" {
				pol = "ACCEPT"
			}
			fmt.Fprintf(&save, ":%s %s [0:0]\n", c, pol)
		}
		for _, c := range tb.user {
			fmt.Fprintf(&save, ":%s - [0:0]\n", c)
		}
		for _, r := range tb.rules {
			fmt.Fprintln(&save, r)
		}
		save.WriteString("COMMIT\n")
	}
	tables, err := iptables.ParseSave(inet.V4, []byte(save.String()))
	if err != nil {
		t.Fatalf("host iptables: %v\n%s", err, save.String())
	}
	s.Netfilter = iptables.Ruleset{Backend: "legacy", Tables: tables}
	if err := s.Validate(); err != nil {
		t.Fatalf("host: %v", err)
	}
	return s
}
