package fib

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// fibHost builds the state of a host with loopback and links e1 (10.1.0.1/24, 2001:db8:1::1/64),
// e2 (10.2.0.1/24, 2001:db8:2::1/64) and e3 (10.3.0.1/24, up but without carrier), the
// kernel's default rules and the local and connected routes the kernel makes for the addresses.
func fibHost() *model.State {
	s := &model.State{
		Links: []model.Link{
			{Index: 1, Name: "lo", Kind: "loopback", Up: true, OperState: "UNKNOWN", Addrs: []model.Address{
				{Prefix: netip.MustParsePrefix("127.0.0.1/8"), Scope: "host"},
				{Prefix: netip.MustParsePrefix("::1/128"), Scope: "host"}}},
			{Index: 2, Name: "e1", Kind: "veth", Up: true, OperState: "UP", Addrs: []model.Address{
				{Prefix: netip.MustParsePrefix("10.1.0.1/24"), Scope: "global"},
				{Prefix: netip.MustParsePrefix("2001:db8:1::1/64"), Scope: "global"}}},
			{Index: 3, Name: "e2", Kind: "veth", Up: true, OperState: "UP", Addrs: []model.Address{
				{Prefix: netip.MustParsePrefix("10.2.0.1/24"), Scope: "global"},
				{Prefix: netip.MustParsePrefix("2001:db8:2::1/64"), Scope: "global"}}},
			{Index: 4, Name: "e3", Kind: "veth", Up: true, OperState: "LOWERLAYERDOWN", Addrs: []model.Address{
				{Prefix: netip.MustParsePrefix("10.3.0.1/24"), Scope: "global"}}},
		},
		Rules: []model.Rule{
			{Family: inet.V4, Priority: 0, Action: model.ActionTable, Table: model.TableLocal},
			{Family: inet.V4, Priority: 32766, Action: model.ActionTable, Table: model.TableMain},
			{Family: inet.V4, Priority: 32767, Action: model.ActionTable, Table: model.TableDefault},
			{Family: inet.V6, Priority: 0, Action: model.ActionTable, Table: model.TableLocal},
			{Family: inet.V6, Priority: 32766, Action: model.ActionTable, Table: model.TableMain},
		},
		Sysctls: model.Sysctls{},
	}
	for _, l := range s.Links {
		for _, a := range l.Addrs {
			fam := inet.FamilyOf(a.Prefix.Addr())
			s.Routes = append(s.Routes, model.Route{Family: fam, Table: model.TableLocal, Type: model.RouteLocal,
				Dst: netip.PrefixFrom(a.Prefix.Addr(), a.Prefix.Addr().BitLen()), Dev: l.Name, Src: a.Prefix.Addr(),
				Scope: "host", Protocol: "kernel"})
			if l.Name == "lo" {
				continue
			}
			r := model.Route{Family: fam, Table: model.TableMain, Dst: a.Prefix.Masked(), Dev: l.Name, Scope: "link", Protocol: "kernel", Type: model.RouteUnicast}
			if fam == inet.V4 {
				r.Src = a.Prefix.Addr()
			} else {
				r.Metric = 256
			}
			s.Routes = append(s.Routes, r)
		}
	}
	return s
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func route(table int, dst, gw, dev string, metric int) model.Route {
	r := model.Route{Table: table, Type: model.RouteUnicast, Dst: pfx(dst), Dev: dev, Metric: metric, Scope: "universe"}
	r.Family = inet.FamilyOf(r.Dst.Addr())
	if gw != "" {
		r.Gateway = ip(gw)
	} else {
		r.Scope = "link"
	}
	return r
}

func typed(table int, typ, dst string) model.Route {
	r := model.Route{Table: table, Type: typ, Dst: pfx(dst)}
	r.Family = inet.FamilyOf(r.Dst.Addr())
	return r
}

// check asserts the verdict, table, output device and gateway of a lookup.
func check(t *testing.T, f *FIB, fl Flow, verdict string, table int, oif, gw string) Result {
	t.Helper()
	res := f.Lookup(fl)
	var gotGW string
	if res.Gateway.IsValid() {
		gotGW = res.Gateway.String()
	}
	if res.Verdict != verdict || res.Table != table || res.OIF != oif || gotGW != gw {
		t.Errorf("lookup %+v:\n got %s table %d dev %q via %q\nwant %s table %d dev %q via %q\nsteps:\n%s",
			fl, res.Verdict, res.Table, res.OIF, gotGW, verdict, table, oif, gw, stepsText(res))
	}
	return res
}

func stepsText(res Result) string {
	var b strings.Builder
	for _, s := range res.Steps {
		b.WriteString("  " + s.Rule.Args(model.NumericTable) + " => " + s.Outcome + "\n")
	}
	if res.Note != "" {
		b.WriteString("  note: " + res.Note + "\n")
	}
	return b.String()
}

func TestFIBLongestPrefixMetricAndTOS(t *testing.T) {
	s := fibHost()
	s.Routes = append(s.Routes,
		route(model.TableMain, "0.0.0.0/0", "10.1.0.254", "e1", 0),
		route(model.TableMain, "10.50.0.0/16", "10.1.0.2", "e1", 0),
		route(model.TableMain, "10.50.1.0/24", "10.2.0.2", "e2", 20),
		route(model.TableMain, "10.50.1.0/24", "10.1.0.3", "e1", 10),
		route(model.TableMain, "10.60.0.0/16", "10.1.0.4", "e1", 5),
		route(model.TableMain, "10.60.0.0/16", "10.2.0.4", "e2", 5), // same key: the first added wins
	)
	tosRoute := route(model.TableMain, "10.50.1.0/24", "10.2.0.9", "e2", 30)
	tosRoute.TOS = 0x10
	s.Routes = append(s.Routes, tosRoute)
	f := New(s)
	check(t, f, Flow{Dst: ip("10.50.9.9")}, VerdictUnicast, model.TableMain, "e1", "10.1.0.2")
	check(t, f, Flow{Dst: ip("10.50.1.9")}, VerdictUnicast, model.TableMain, "e1", "10.1.0.3")
	check(t, f, Flow{Dst: ip("10.60.1.9")}, VerdictUnicast, model.TableMain, "e1", "10.1.0.4")
	check(t, f, Flow{Dst: ip("8.8.8.8")}, VerdictUnicast, model.TableMain, "e1", "10.1.0.254")
	// A route with a TOS comes before those without, whatever its metric, for flows with that
	// TOS; only the bits 0x1c of the flow's TOS count.
	check(t, f, Flow{Dst: ip("10.50.1.9"), TOS: 0x10}, VerdictUnicast, model.TableMain, "e2", "10.2.0.9")
	check(t, f, Flow{Dst: ip("10.50.1.9"), TOS: 0x30}, VerdictUnicast, model.TableMain, "e2", "10.2.0.9")
	check(t, f, Flow{Dst: ip("10.50.1.9"), TOS: 0x08}, VerdictUnicast, model.TableMain, "e1", "10.1.0.3")
	res := check(t, f, Flow{Dst: ip("10.50.9.9")}, VerdictUnicast, model.TableMain, "e1", "10.1.0.2")
	if res.Src != ip("10.1.0.1") || res.Nexthop != -1 || res.Rule == nil || res.Rule.Table != model.TableMain {
		t.Errorf("got src %v nexthop %d rule %v, want src 10.1.0.1, nexthop -1, rule lookup main", res.Src, res.Nexthop, res.Rule)
	}
}

func TestFIBLocalTableFirst(t *testing.T) {
	s := fibHost()
	s.Routes = append(s.Routes, route(model.TableMain, "10.1.0.1/32", "10.2.0.2", "e2", 0))
	f := New(s)
	res := check(t, f, Flow{Dst: ip("10.1.0.1")}, VerdictLocal, model.TableLocal, "lo", "")
	if res.Src != ip("10.1.0.1") {
		t.Errorf("local output source: got %v, want 10.1.0.1", res.Src)
	}
	check(t, f, Flow{Dst: ip("10.1.0.1"), Src: ip("10.9.9.9"), IIF: "e2"}, VerdictLocal, model.TableLocal, "lo", "")
	check(t, f, Flow{Dst: ip("10.1.0.7")}, VerdictUnicast, model.TableMain, "e1", "")
	// A lookup bound to another device skips the local route (its nexthop is on e1) and the
	// host route too, then falls back to sending on the bound link.
	res = check(t, f, Flow{Dst: ip("10.1.0.1"), OIF: "e3"}, VerdictUnicast, 0, "e3", "")
	if res.Src != ip("10.3.0.1") || res.Note == "" {
		t.Errorf("bound fallback: got src %v note %q, want 10.3.0.1 and a note", res.Src, res.Note)
	}
}

func TestFIBRuleSelectors(t *testing.T) {
	base := fibHost()
	base.Routes = append(base.Routes, route(100, "0.0.0.0/0", "10.2.0.100", "e2", 0), route(model.TableMain, "0.0.0.0/0", "10.1.0.254", "e1", 0))
	out := Flow{Dst: ip("10.77.0.1"), Src: ip("10.1.0.1"), Mark: 0x15, Proto: 6, SPort: 1000, DPort: 80, TOS: 0x10, UID: 1000}
	in := out
	in.IIF, in.Src = "e1", ip("10.1.0.9")
	cases := []struct {
		name      string
		rule      model.Rule
		flow      Flow
		matches   bool
		why       string
		notFlowOK bool
	}{
		{"fwmark", model.Rule{Mark: &model.MarkMatch{Value: 0x15, Mask: 0xffffffff}}, out, true, "", false},
		{"fwmark other", model.Rule{Mark: &model.MarkMatch{Value: 0x16, Mask: 0xffffffff}}, out, false, "fwmark", false},
		{"fwmark mask", model.Rule{Mark: &model.MarkMatch{Value: 0x05, Mask: 0x0f}}, out, true, "", false},
		{"from", model.Rule{Src: pfx("10.1.0.0/24")}, out, true, "", false},
		{"from other", model.Rule{Src: pfx("10.2.0.0/24")}, out, false, "from", false},
		{"from needs a source", model.Rule{Src: pfx("10.1.0.0/24")}, Flow{Dst: ip("10.77.0.1")}, false, "from", false},
		{"to", model.Rule{Dst: pfx("10.77.0.0/16")}, out, true, "", false},
		{"to other", model.Rule{Dst: pfx("10.78.0.0/16")}, out, false, "to", false},
		{"tos", model.Rule{TOS: 0x10}, out, true, "", false},
		{"tos other", model.Rule{TOS: 0x08}, out, false, "tos", false},
		{"ipproto", model.Rule{IPProto: 6}, out, true, "", false},
		{"ipproto other", model.Rule{IPProto: 17}, out, false, "ipproto", false},
		{"sport", model.Rule{SPort: &model.PortRange{Start: 900, End: 1100}}, out, true, "", false},
		{"sport other", model.Rule{SPort: &model.PortRange{Start: 1001, End: 1100}}, out, false, "sport", false},
		{"dport", model.Rule{DPort: &model.PortRange{Start: 80, End: 80}}, out, true, "", false},
		{"dport other", model.Rule{DPort: &model.PortRange{Start: 443, End: 443}}, out, false, "dport", false},
		{"uidrange", model.Rule{UIDRange: &model.UIDRange{Start: 1000, End: 1999}}, out, true, "", false},
		{"uidrange other", model.Rule{UIDRange: &model.UIDRange{Start: 0, End: 999}}, out, false, "uidrange", false},
		// Received packets are looked up as uid 0 whatever the flow says.
		{"uidrange input", model.Rule{UIDRange: &model.UIDRange{Start: 1000, End: 1999}}, in, false, "uidrange", false},
		{"uidrange input root", model.Rule{UIDRange: &model.UIDRange{Start: 0, End: 0}}, in, true, "", false},
		{"iif", model.Rule{IIF: "e1"}, in, true, "", false},
		{"iif other", model.Rule{IIF: "e2"}, in, false, "iif", false},
		// Locally generated packets are looked up with iif = loopback.
		{"iif lo output", model.Rule{IIF: "lo"}, out, true, "", false},
		{"iif lo input", model.Rule{IIF: "lo"}, in, false, "iif", false},
		{"iif missing device", model.Rule{IIF: "ghost0"}, in, false, "device not present", false},
		{"oif", model.Rule{OIF: "e2"}, Flow{Dst: ip("10.77.0.1"), OIF: "e2"}, true, "", false},
		{"oif unbound", model.Rule{OIF: "e2"}, out, false, "oif", false},
		{"oif input", model.Rule{OIF: "e2"}, in, false, "oif", false},
		{"not", model.Rule{Not: true, Mark: &model.MarkMatch{Value: 0x16, Mask: 0xffffffff}}, out, true, "", false},
		{"not matching", model.Rule{Not: true, Mark: &model.MarkMatch{Value: 0x15, Mask: 0xffffffff}}, out, false, "not: selectors match", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := *base
			r := c.rule
			r.Family, r.Priority, r.Action, r.Table = inet.V4, 100, model.ActionTable, 100
			s.Rules = append(slices.Clone(base.Rules), r)
			f := New(&s)
			res := f.Lookup(c.flow)
			wantTable, wantDev := model.TableMain, "e1"
			if c.matches {
				wantTable, wantDev = 100, "e2"
			}
			if res.Table != wantTable || res.OIF != wantDev {
				t.Fatalf("got table %d dev %s, want table %d dev %s\n%s", res.Table, res.OIF, wantTable, wantDev, stepsText(res))
			}
			var step *Step
			for i := range res.Steps {
				if res.Steps[i].Rule.Priority == 100 {
					step = &res.Steps[i]
				}
			}
			if step == nil || step.Matched != c.matches || !c.matches && step.Outcome != "no match ("+c.why+")" {
				t.Fatalf("step of the rule: got %+v, want matched=%v why %q", step, c.matches, c.why)
			}
		})
	}
}

// TestFIBSuppressPrefixLength is the wg-quick pattern: everything but the tunnel's own packets
// (fwmark 0xca6c) goes to the tunnel, except what main routes more specifically than default.
func TestFIBSuppressPrefixLength(t *testing.T) {
	s := fibHost()
	s.Links = append(s.Links, model.Link{Index: 9, Name: "wg0", Kind: "wireguard", Up: true, OperState: "UNKNOWN",
		Addrs: []model.Address{{Prefix: pfx("10.99.0.2/32"), Scope: "global"}}})
	zero := 0
	s.Rules = append(s.Rules,
		model.Rule{Family: inet.V4, Priority: 32764, Action: model.ActionTable, Table: model.TableMain, SuppressPrefixLen: &zero},
		model.Rule{Family: inet.V4, Priority: 32765, Not: true, Mark: &model.MarkMatch{Value: 0xca6c, Mask: 0xffffffff}, Action: model.ActionTable, Table: 51820},
	)
	s.Routes = append(s.Routes,
		route(model.TableMain, "0.0.0.0/0", "10.1.0.254", "e1", 0),
		route(51820, "0.0.0.0/0", "", "wg0", 0),
	)
	f := New(s)
	res := check(t, f, Flow{Dst: ip("8.8.8.8")}, VerdictUnicast, 51820, "wg0", "")
	if res.Src != ip("10.99.0.2") {
		t.Errorf("source through the tunnel: got %v, want 10.99.0.2", res.Src)
	}
	var suppressed bool
	for _, st := range res.Steps {
		suppressed = suppressed || strings.Contains(st.Outcome, "suppressed (prefix length 0 <= 0)")
	}
	if !suppressed {
		t.Errorf("no step says the default route of main was suppressed:\n%s", stepsText(res))
	}
	check(t, f, Flow{Dst: ip("10.1.0.77")}, VerdictUnicast, model.TableMain, "e1", "")
	check(t, f, Flow{Dst: ip("8.8.8.8"), Mark: 0xca6c}, VerdictUnicast, model.TableMain, "e1", "10.1.0.254")
}

func TestFIBGotoNopThrow(t *testing.T) {
	s := fibHost()
	s.Rules = append(s.Rules,
		model.Rule{Family: inet.V4, Priority: 100, Mark: &model.MarkMatch{Value: 1, Mask: 0xff}, Action: model.ActionGoto, Goto: 300},
		model.Rule{Family: inet.V4, Priority: 150, Action: model.ActionNop},
		model.Rule{Family: inet.V4, Priority: 160, Mark: &model.MarkMatch{Value: 2, Mask: 0xff}, Action: model.ActionGoto, Goto: 250}, // no rule 250
		model.Rule{Family: inet.V4, Priority: 200, Action: model.ActionTable, Table: 200},
		model.Rule{Family: inet.V4, Priority: 300, Action: model.ActionTable, Table: 300},
	)
	s.Routes = append(s.Routes,
		route(200, "10.50.0.0/16", "10.1.0.20", "e1", 0),
		route(300, "10.50.0.0/16", "10.2.0.30", "e2", 0),
		typed(200, model.RouteThrow, "10.51.0.0/16"),
		route(200, "10.0.0.0/8", "10.1.0.21", "e1", 0),
		route(model.TableMain, "10.51.0.0/16", "10.2.0.40", "e2", 0),
	)
	f := New(s)
	check(t, f, Flow{Dst: ip("10.50.0.1")}, VerdictUnicast, 200, "e1", "10.1.0.20")
	res := check(t, f, Flow{Dst: ip("10.50.0.1"), Mark: 0x101}, VerdictUnicast, 300, "e2", "10.2.0.30")
	if len(res.Steps) < 2 || res.Steps[1].Outcome != "goto 300" || res.Steps[2].Rule.Priority != 300 {
		t.Errorf("steps of the goto:\n%s", stepsText(res))
	}
	res = check(t, f, Flow{Dst: ip("10.50.0.1"), Mark: 2}, VerdictUnicast, 200, "e1", "10.1.0.20")
	if !strings.Contains(stepsText(res), "goto 250: no rule with that priority, ignored") {
		t.Errorf("unresolved goto not reported:\n%s", stepsText(res))
	}
	// throw ends the table's lookup, not the rule walk: main answers, not table 200's /8.
	res = check(t, f, Flow{Dst: ip("10.51.0.1")}, VerdictUnicast, model.TableMain, "e2", "10.2.0.40")
	if !strings.Contains(stepsText(res), "table 200: throw 10.51.0.0/16") {
		t.Errorf("throw not reported:\n%s", stepsText(res))
	}
}

func TestFIBRejects(t *testing.T) {
	s := fibHost()
	s.Rules = append(s.Rules,
		model.Rule{Family: inet.V4, Priority: 10, Dst: pfx("10.70.0.0/16"), Action: model.ActionBlackhole},
		model.Rule{Family: inet.V4, Priority: 11, Dst: pfx("10.71.0.0/16"), Action: model.ActionUnreachable},
		model.Rule{Family: inet.V4, Priority: 12, Dst: pfx("10.72.0.0/16"), Action: model.ActionProhibit},
	)
	s.Routes = append(s.Routes,
		typed(model.TableMain, model.RouteBlackhole, "10.60.0.0/16"),
		typed(model.TableMain, model.RouteUnreachable, "10.61.0.0/16"),
		typed(model.TableMain, model.RouteProhibit, "10.62.0.0/16"),
		route(model.TableMain, "10.0.0.0/8", "10.1.0.9", "e1", 0),
	)
	f := New(s)
	for _, c := range []struct {
		dst, verdict string
		byRoute      bool
	}{
		{"10.60.1.1", VerdictBlackhole, true}, {"10.61.1.1", VerdictUnreachable, true}, {"10.62.1.1", VerdictProhibit, true},
		{"10.70.1.1", VerdictBlackhole, false}, {"10.71.1.1", VerdictUnreachable, false}, {"10.72.1.1", VerdictProhibit, false},
		{"192.168.1.1", VerdictNoRoute, false},
	} {
		res := f.Lookup(Flow{Dst: ip(c.dst)})
		if res.Verdict != c.verdict || (res.Route != nil) != c.byRoute || res.OIF != "" {
			t.Errorf("%s: got %s route %v dev %q, want %s by route %v\n%s", c.dst, res.Verdict, res.Route, res.OIF, c.verdict, c.byRoute, stepsText(res))
		}
	}
	// A reject route does not hide a shorter prefix from a bound lookup either: the kernel
	// sends on the bound device.
	check(t, f, Flow{Dst: ip("10.60.1.1"), OIF: "e2"}, VerdictUnicast, 0, "e2", "")
}

func TestFIBOutputSourceChecks(t *testing.T) {
	s := fibHost()
	s.Routes = append(s.Routes, route(model.TableMain, "0.0.0.0/0", "10.1.0.254", "e1", 0))
	f := New(s)
	if res := f.Lookup(Flow{Dst: ip("8.8.8.8"), Src: ip("192.0.2.1")}); res.Verdict != VerdictNoRoute || res.Note == "" {
		t.Errorf("output from a foreign source: got %s (%q), want no-route with a note", res.Verdict, res.Note)
	}
	res := check(t, f, Flow{Dst: ip("8.8.8.8"), Src: ip("10.2.0.1")}, VerdictUnicast, model.TableMain, "e1", "10.1.0.254")
	if res.Src != ip("10.2.0.1") || res.PrefSrc != ip("10.1.0.1") {
		t.Errorf("got src %v prefsrc %v, want the flow's 10.2.0.1 and the selected 10.1.0.1", res.Src, res.PrefSrc)
	}
	// 127.0.0.0/8 is local by the local table even where no address is configured, but a
	// loopback source cannot leave by another device.
	s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: model.TableLocal, Type: model.RouteLocal, Dst: pfx("127.0.0.0/8"), Dev: "lo", Src: ip("127.0.0.1"), Scope: "host"})
	f = New(s)
	check(t, f, Flow{Dst: ip("127.0.0.9"), Src: ip("127.0.0.5")}, VerdictLocal, model.TableLocal, "lo", "")
	if res := f.Lookup(Flow{Dst: ip("8.8.8.8"), Src: ip("127.0.0.5")}); res.Verdict != VerdictInvalid {
		t.Errorf("output from 127.0.0.5 to a remote host: got %s, want invalid", res.Verdict)
	}
	if res := f.Lookup(Flow{Dst: ip("8.8.8.8"), Src: ip("224.0.0.1")}); res.Verdict != VerdictInvalid {
		t.Errorf("output from a multicast source: got %s, want invalid", res.Verdict)
	}
}

func TestFIBSourceSelection4(t *testing.T) {
	s := fibHost()
	l := &s.Links[1]
	l.Addrs = append(l.Addrs,
		model.Address{Prefix: pfx("10.1.0.2/24"), Scope: "global", Secondary: true},
		model.Address{Prefix: pfx("172.16.0.1/24"), Scope: "global"},
		model.Address{Prefix: pfx("169.254.0.1/16"), Scope: "link"},
	)
	withSrc := route(model.TableMain, "10.90.0.0/16", "10.1.0.254", "e1", 0)
	withSrc.Src = ip("10.2.0.1")
	s.Routes = append(s.Routes,
		route(model.TableMain, "10.80.0.0/16", "172.16.0.254", "e1", 0), // gateway on the second subnet
		route(model.TableMain, "10.81.0.0/16", "10.1.0.254", "e1", 0),
		withSrc,
		route(model.TableMain, "10.82.0.0/16", "", "e3", 0), // e3's own address
	)
	noGlobal := route(model.TableMain, "10.83.0.0/16", "", "e1", 0)
	s.Routes = append(s.Routes, noGlobal)
	f := New(s)
	for dst, want := range map[string]string{"10.80.0.1": "172.16.0.1", "10.81.0.1": "10.1.0.1", "10.90.0.1": "10.2.0.1", "10.83.0.1": "10.1.0.1"} {
		if res := f.Lookup(Flow{Dst: ip(dst)}); res.Src != ip(want) {
			t.Errorf("source for %s: got %v, want %s\n%s", dst, res.Src, want, stepsText(res))
		}
	}
	// Without carrier the route still counts unless ignore_routes_with_linkdown is set.
	check(t, f, Flow{Dst: ip("10.82.0.1")}, VerdictUnicast, model.TableMain, "e3", "")
	s.Sysctls[model.ConfKey("e3", "ignore_routes_with_linkdown")] = "1"
	check(t, New(s), Flow{Dst: ip("10.82.0.1")}, VerdictNoRoute, 0, "", "")
}

func TestFIBMultipath(t *testing.T) {
	s := fibHost()
	s.Links = append(s.Links, model.Link{Index: 5, Name: "e4", Kind: "veth", Up: false, OperState: "DOWN",
		Addrs: []model.Address{{Prefix: pfx("10.4.0.1/24"), Scope: "global"}}})
	s.Routes = append(s.Routes, model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: pfx("10.50.0.0/16"), Scope: "universe",
		Nexthops: []model.Nexthop{{Gateway: ip("10.1.0.2"), Dev: "e1", Weight: 1}, {Gateway: ip("10.4.0.2"), Dev: "e4", Weight: 1}, {Gateway: ip("10.2.0.2"), Dev: "e2", Weight: 3}}})
	f := New(s)
	res := f.Lookup(Flow{Dst: ip("10.50.1.1")})
	if !slices.Equal(res.Candidates, []int{0, 2}) || !slices.Contains(res.Candidates, res.Nexthop) {
		t.Fatalf("got candidates %v nexthop %d, want [0 2] (e4 is down) and one of them", res.Candidates, res.Nexthop)
	}
	for _, nh := range []int{0, 2} {
		p, err := f.PickNexthop(Flow{Dst: ip("10.50.1.1")}, res, nh)
		want := s.Routes[len(s.Routes)-1].Nexthops[nh]
		if err != nil || p.OIF != want.Dev || p.Gateway != want.Gateway || p.Src != p.PrefSrc || !p.Src.IsValid() {
			t.Errorf("pick %d: got %+v %v", nh, p, err)
		}
	}
	if _, err := f.PickNexthop(Flow{Dst: ip("10.50.1.1")}, res, 1); err == nil {
		t.Errorf("picking the dead nexthop succeeded")
	}
	// A source prefers the paths whose own source it is.
	if res := f.Lookup(Flow{Dst: ip("10.50.1.1"), Src: ip("10.2.0.1")}); !slices.Equal(res.Candidates, []int{2}) {
		t.Errorf("with source 10.2.0.1: candidates %v, want [2]", res.Candidates)
	}
	// Bound to a device the lookup takes that device's path and no hash.
	res = check(t, f, Flow{Dst: ip("10.50.1.1"), OIF: "e2"}, VerdictUnicast, model.TableMain, "e2", "10.2.0.2")
	if res.Nexthop != 2 || res.Candidates != nil {
		t.Errorf("bound: nexthop %d candidates %v, want 2 and none", res.Nexthop, res.Candidates)
	}
}

func TestFIBRPFCheck(t *testing.T) {
	s := fibHost()
	s.Rules = append(s.Rules, model.Rule{Family: inet.V4, Priority: 100, Mark: &model.MarkMatch{Value: 7, Mask: 0xffffffff}, Action: model.ActionTable, Table: 7})
	s.Routes = append(s.Routes,
		route(model.TableMain, "192.168.0.0/16", "10.2.0.254", "e2", 0),
		route(7, "192.168.0.0/16", "10.1.0.254", "e1", 0),
	)
	cases := []struct {
		name  string
		rpf   string
		vmark bool
		fl    Flow
		ok    bool
	}{
		{"strict, reply leaves by the input link", "1", false, Flow{IIF: "e2", Src: ip("192.168.1.1"), Dst: ip("10.1.0.1")}, true},
		{"strict, reply leaves by another link", "1", false, Flow{IIF: "e1", Src: ip("192.168.1.1"), Dst: ip("10.1.0.1")}, false},
		{"loose, reply leaves by another link", "2", false, Flow{IIF: "e1", Src: ip("192.168.1.1"), Dst: ip("10.1.0.1")}, true},
		{"loose, no route back", "2", false, Flow{IIF: "e1", Src: ip("203.0.113.1"), Dst: ip("10.1.0.1")}, false},
		{"off, no route back", "0", false, Flow{IIF: "e1", Src: ip("203.0.113.1"), Dst: ip("10.1.0.1")}, true},
		{"off, own address as source (policy rules make a full check)", "0", false, Flow{IIF: "e1", Src: ip("10.2.0.1"), Dst: ip("10.1.0.1")}, false},
		{"strict, mark ignored without src_valid_mark", "1", false, Flow{IIF: "e1", Src: ip("192.168.1.1"), Dst: ip("10.1.0.1"), Mark: 7}, false},
		{"strict, mark used with src_valid_mark", "1", true, Flow{IIF: "e1", Src: ip("192.168.1.1"), Dst: ip("10.1.0.1"), Mark: 7}, true},
		{"forwarded: reverse iif is the output link", "1", false, Flow{IIF: "e2", Src: ip("192.168.1.1"), Dst: ip("10.1.0.9")}, true},
		{"martian source", "0", false, Flow{IIF: "e1", Src: ip("0.1.2.3"), Dst: ip("10.1.0.1")}, false},
		{"loopback destination", "0", false, Flow{IIF: "e1", Src: ip("192.168.1.1"), Dst: ip("127.0.0.1")}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.Sysctls = model.Sysctls{model.ConfKey("all", "rp_filter"): "0", model.ConfKey(c.fl.IIF, "rp_filter"): c.rpf}
			if c.vmark {
				s.Sysctls[model.SysctlSrcValidMark] = "1"
			}
			ok, rev, why := New(s).RPFCheck(c.fl)
			if ok != c.ok || why == "" {
				t.Errorf("got ok=%v (%s), want %v\nreverse: %s table %d dev %s\n%s", ok, why, c.ok, rev.Verdict, rev.Table, rev.OIF, stepsText(rev))
			}
		})
	}
}

func TestFIBIPv6(t *testing.T) {
	s := fibHost()
	s.Links[1].Addrs = append(s.Links[1].Addrs, model.Address{Prefix: pfx("fd00:1::1/64"), Scope: "global"})
	s.Links[2].Addrs = append(s.Links[2].Addrs, model.Address{Prefix: pfx("fd00:2::1/64"), Scope: "global"})
	s.Rules = append(s.Rules,
		model.Rule{Family: inet.V6, Priority: 100, Src: pfx("2001:db8:1::/64"), Action: model.ActionTable, Table: 100},
		model.Rule{Family: inet.V6, Priority: 110, Dst: pfx("2001:db8:66::/48"), Action: model.ActionProhibit},
	)
	s.Routes = append(s.Routes,
		route(model.TableMain, "::/0", "2001:db8:1::fe", "e1", 1024),
		route(model.TableMain, "2001:db8:50::/48", "2001:db8:2::2", "e2", 1024),
		route(model.TableMain, "2001:db8:50::/48", "2001:db8:1::2", "e1", 1024),
		route(model.TableMain, "2001:db8:50:1::/64", "2001:db8:2::3", "e2", 2048),
		route(100, "::/0", "2001:db8:2::fe", "e2", 1024),
		typed(model.TableMain, model.RouteUnreachable, "2001:db8:60::/48"),
	)
	f := New(s)
	res := check(t, f, Flow{Dst: ip("2001:db8:50::9")}, VerdictUnicast, model.TableMain, "e2", "2001:db8:2::2")
	if res.Src != ip("2001:db8:2::1") {
		t.Errorf("source: got %v, want 2001:db8:2::1 (rule 5: the output device)", res.Src)
	}
	// The input device is preferred among routes of equal metric.
	check(t, f, Flow{Dst: ip("2001:db8:50::9"), Src: ip("2001:db8:9::9"), IIF: "e1"}, VerdictUnicast, model.TableMain, "e1", "2001:db8:1::2")
	// Bound without a source: only routes through the device qualify, whatever the metric.
	check(t, f, Flow{Dst: ip("2001:db8:50::9"), OIF: "e1"}, VerdictUnicast, model.TableMain, "e1", "2001:db8:1::2")
	check(t, f, Flow{Dst: ip("2001:db8:50:1::9")}, VerdictUnicast, model.TableMain, "e2", "2001:db8:2::3")
	// A source rule needs a source in IPv6.
	check(t, f, Flow{Dst: ip("2001:db8:99::9")}, VerdictUnicast, model.TableMain, "e1", "2001:db8:1::fe")
	check(t, f, Flow{Dst: ip("2001:db8:99::9"), Src: ip("2001:db8:1::1")}, VerdictUnicast, 100, "e2", "2001:db8:2::fe")
	if r := f.Lookup(Flow{Dst: ip("2001:db8:60::1")}); r.Verdict != VerdictUnreachable || r.Route == nil {
		t.Errorf("unreachable route: got %s", r.Verdict)
	}
	if r := f.Lookup(Flow{Dst: ip("2001:db8:66::1")}); r.Verdict != VerdictProhibit || r.Route != nil {
		t.Errorf("prohibit rule: got %s", r.Verdict)
	}
	res = check(t, f, Flow{Dst: ip("2001:db8:1::1")}, VerdictLocal, model.TableLocal, "lo", "")
	if res.Src != ip("2001:db8:1::1") {
		t.Errorf("local source: got %v", res.Src)
	}
	// Source selection: the output device's addresses first (rule 5), then the one whose label
	// matches the destination's (rule 6): a ULA for a ULA destination.
	s.Routes = append(s.Routes, route(model.TableMain, "fd00:9::/64", "2001:db8:1::9", "e1", 1024), route(model.TableMain, "2001:db8:70::/48", "2001:db8:1::9", "e1", 1024),
		route(model.TableMain, "fd00:2::/64", "", "e2", 256))
	f = New(s)
	for dst, want := range map[string]string{"fd00:9::1": "fd00:1::1", "2001:db8:70::1": "2001:db8:1::1", "fd00:2::99": "fd00:2::1"} {
		if r := f.Lookup(Flow{Dst: ip(dst)}); r.Src != ip(want) {
			t.Errorf("source for %s: got %v, want %s", dst, r.Src, want)
		}
	}
}

func TestFIBLPMIndex(t *testing.T) {
	for _, fam := range []inet.Family{inet.V4, inet.V6} {
		tr := newLPMTrie(fam)
		var prefixes []netip.Prefix
		if fam == inet.V4 {
			for _, p := range []string{"0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/9", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "10.1.2.0/25", "10.1.2.128/25", "11.0.0.0/8"} {
				prefixes = append(prefixes, pfx(p))
			}
		} else {
			for _, p := range []string{"::/0", "2001:db8::/32", "2001:db8::/33", "2001:db8:1::/48", "2001:db8:1:2::/64", "2001:db8:1:2::3/128", "2001:db8:1:2::/127"} {
				prefixes = append(prefixes, pfx(p))
			}
		}
		for _, p := range prefixes {
			slot, fresh := tr.value(p, true)
			if !fresh {
				t.Fatalf("%s: added twice", p)
			}
			*slot = fibValue(p.Bits())
		}
		addrs := []string{"10.1.2.3", "10.1.2.200", "10.200.0.1", "11.1.1.1", "12.0.0.1"}
		if fam == inet.V6 {
			addrs = []string{"2001:db8:1:2::3", "2001:db8:1:2::2", "2001:db8:ffff::1", "2001:db9::1"}
		}
		for _, a := range addrs {
			var want []netip.Prefix
			for _, p := range prefixes {
				if p.Contains(ip(a)) {
					want = append(want, p)
				}
			}
			slices.SortFunc(want, func(x, y netip.Prefix) int { return y.Bits() - x.Bits() })
			var got []netip.Prefix
			var c lpmCursor
			tr.find(ip(a), &c)
			for v, bits, ok := c.next(); ok; v, bits, ok = c.next() {
				if v != fibValue(bits) {
					t.Errorf("%s: /%d holds the value of a /%d", a, bits, v)
				}
				got = append(got, netip.PrefixFrom(ip(a), bits).Masked())
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: got %v, want %v", a, got, want)
			}
		}
	}
}

func TestFIBGatewayResolvedToLocalAddress(t *testing.T) {
	s := fibHost()
	// The gateway is one of the host's own addresses: the kernel gives the nexthop host scope
	// and sends to the destination itself. With onlink it trusts the gateway as given.
	s.Routes = append(s.Routes, route(model.TableMain, "10.70.0.0/16", "10.1.0.1", "e1", 0))
	onlink := route(model.TableMain, "10.71.0.0/16", "10.1.0.1", "e1", 0)
	onlink.OnLink = true
	s.Routes = append(s.Routes, onlink)
	f := New(s)
	check(t, f, Flow{Dst: ip("10.70.0.1")}, VerdictUnicast, model.TableMain, "e1", "")
	check(t, f, Flow{Dst: ip("10.71.0.1")}, VerdictUnicast, model.TableMain, "e1", "10.1.0.1")
}

func TestFIBLimitedBroadcastAndDevices(t *testing.T) {
	s := fibHost()
	s.Routes = append(s.Routes, route(model.TableMain, "0.0.0.0/0", "10.1.0.254", "e1", 0))
	f := New(s)
	bcast := ip("255.255.255.255")
	// Through the routing table, the default route's device without its gateway; from a
	// source, that source's device; bound, the bound device.
	check(t, f, Flow{Dst: bcast}, VerdictBroadcast, model.TableMain, "e1", "")
	check(t, f, Flow{Dst: bcast, Src: ip("10.2.0.1")}, VerdictBroadcast, 0, "e2", "")
	res := check(t, f, Flow{Dst: bcast, OIF: "e3"}, VerdictBroadcast, 0, "e3", "")
	if res.Src != ip("10.3.0.1") {
		t.Errorf("bound broadcast source: got %v, want 10.3.0.1", res.Src)
	}
	check(t, f, Flow{Dst: bcast, Src: ip("10.9.9.9"), IIF: "e1"}, VerdictBroadcast, 0, "lo", "")
	for _, fl := range []Flow{{Dst: ip("10.1.0.9"), IIF: "ghost0"}, {Dst: ip("10.1.0.9"), OIF: "ghost0"}} {
		if res := f.Lookup(fl); res.Verdict != VerdictInvalid || !strings.Contains(res.Note, "ENODEV") {
			t.Errorf("%+v: got %s (%s), want invalid: no such device", fl, res.Verdict, res.Note)
		}
	}
}

// TestFIBResolveIsLookupWithoutSteps checks the fast path against the full one on every flow of
// a small grid.
func TestFIBResolveIsLookupWithoutSteps(t *testing.T) {
	s := fibHost()
	s.Rules = append(s.Rules, model.Rule{Family: inet.V4, Priority: 100, Mark: &model.MarkMatch{Value: 1, Mask: 1}, Action: model.ActionTable, Table: 100})
	s.Routes = append(s.Routes, route(100, "10.50.0.0/16", "10.2.0.9", "e2", 0), route(model.TableMain, "0.0.0.0/0", "10.1.0.254", "e1", 0),
		route(model.TableMain, "::/0", "2001:db8:1::fe", "e1", 1024))
	f := New(s)
	for _, dst := range []string{"10.50.1.1", "10.1.0.1", "10.2.0.77", "8.8.8.8", "2001:db8:2::5", "2001:db8:9::1"} {
		for _, iif := range []string{"", "e1"} {
			for mark := uint32(0); mark < 2; mark++ {
				fl := Flow{Dst: ip(dst), IIF: iif, Mark: mark}
				full, fast := f.Lookup(fl), f.Resolve(fl)
				if len(full.Steps) == 0 || fast.Steps != nil {
					t.Fatalf("%+v: Lookup has %d steps, Resolve %d", fl, len(full.Steps), len(fast.Steps))
				}
				full.Steps = nil
				if !reflect.DeepEqual(full, fast) {
					t.Errorf("%+v:\nLookup  %+v\nResolve %+v", fl, full, fast)
				}
			}
		}
	}
}

// TestLPMTrieGrowsAndCompacts: thousands of prefixes crowded into a few nodes (so that nodes
// outgrow their blocks and move, children and values alike) keep their values, and every
// address yields exactly the prefixes that contain it, longest first, before and after the
// trie is compacted.
func TestLPMTrieGrowsAndCompacts(t *testing.T) {
	for _, fam := range []inet.Family{inet.V4, inet.V6} {
		rng := rand.New(rand.NewPCG(5, uint64(fam)))
		tr := newLPMTrie(fam)
		want := map[netip.Prefix]fibValue{}
		random := func() netip.Addr {
			var b [16]byte
			b[0], b[1], b[2] = 10, byte(rng.IntN(4)), byte(rng.IntN(256))
			b[3] = byte(rng.IntN(256))
			if fam == inet.V4 {
				return netip.AddrFrom4([4]byte(b[:4]))
			}
			b[0], b[15] = 0x20, byte(rng.IntN(256))
			return netip.AddrFrom16(b)
		}
		for len(want) < 4000 {
			a := random()
			p := netip.PrefixFrom(a, rng.IntN(a.BitLen()+1)).Masked()
			slot, fresh := tr.value(p, true)
			if _, ok := want[p]; ok == fresh {
				t.Fatalf("%s: fresh %v, but added before: %v", p, fresh, ok)
			}
			if fresh {
				want[p] = fibValue(rng.Uint64() &^ multiBit)
				*slot = want[p]
			}
		}
		check := func(stage string) {
			for p, v := range want {
				if slot, _ := tr.value(p, false); slot == nil || *slot != v {
					t.Fatalf("%s %s: value %v, want %x", stage, p, slot, v)
				}
			}
			for range 500 {
				a := random()
				var exp []netip.Prefix
				for p := range want {
					if p.Contains(a) {
						exp = append(exp, p)
					}
				}
				slices.SortFunc(exp, func(x, y netip.Prefix) int { return y.Bits() - x.Bits() })
				var got []netip.Prefix
				var c lpmCursor
				tr.find(a, &c)
				for v, bits, ok := c.next(); ok; v, bits, ok = c.next() {
					p := netip.PrefixFrom(a, bits).Masked()
					if want[p] != v {
						t.Fatalf("%s %s: %s holds %x, want %x", stage, a, p, v, want[p])
					}
					got = append(got, p)
				}
				if !slices.Equal(got, exp) {
					t.Fatalf("%s %s: got %v, want %v", stage, a, got, exp)
				}
			}
		}
		check("built")
		tr.compactNow()
		check("compacted")
		defer func(n int) { lpmIndexMin = n }(lpmIndexMin)
		lpmIndexMin = 1
		if tr.index(); fam == inet.V4 && tr.top2 == nil {
			t.Fatal("no top index")
		}
		check("indexed")
	}
}

// TestFIBStepOutcomes pins the words of the steps Lookup records for a chosen, a rejecting, a
// thrown and a suppressed route: they are built by appending to a buffer.
func TestFIBStepOutcomes(t *testing.T) {
	s := fibHost()
	zero := 0
	s.Rules = append(s.Rules,
		model.Rule{Family: inet.V4, Priority: 90, Action: model.ActionTable, Table: model.TableMain, SuppressPrefixLen: &zero},
		model.Rule{Family: inet.V4, Priority: 100, Action: model.ActionTable, Table: 100})
	bh := route(100, "10.61.0.0/16", "", "", 0)
	bh.Type, bh.Dev = model.RouteBlackhole, ""
	throw := route(100, "10.62.0.0/16", "", "", 0)
	throw.Type, throw.Dev = model.RouteThrow, ""
	s.Routes = append(s.Routes, route(100, "10.60.0.0/16", "10.1.0.254", "e1", 5), bh, throw,
		route(model.TableMain, "0.0.0.0/0", "10.1.0.254", "e1", 0))
	f := New(s)
	for dst, want := range map[string]string{
		"10.60.1.1": "table 100: chose 10.60.0.0/16 via 10.1.0.254 dev e1 metric 5",
		"10.61.1.1": "table 100: blackhole 10.61.0.0/16",
		"10.62.1.1": "table 100: throw 10.62.0.0/16",
		"8.8.8.8":   "table main: 0.0.0.0/0 suppressed (prefix length 0 <= 0)",
	} {
		res := f.Lookup(Flow{Dst: ip(dst)})
		found := false
		for _, st := range res.Steps {
			found = found || st.Outcome == want
		}
		if !found {
			t.Errorf("%s: no step %q in\n%s", dst, want, stepsText(res))
		}
	}
}
