package plan

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// planWith returns the JSON of a plan with one change, for the loader.
func planWith(t *testing.T, c Change) []byte {
	t.Helper()
	p := New("validation")
	p.Changes = []Change{c}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParsePlanRefusesHostileFields: every field that reaches a rendering or the kernel is
// checked on load, with an error that names the change and the field. The first cases are
// the exploits of issue 18.
func TestParsePlanRefusesHostileFields(t *testing.T) {
	route := func(mod func(*model.Route)) Change {
		r := model.Route{Family: inet.V4, Dst: pfx("10.1.0.0/16"), Dev: "eth0"}
		mod(&r)
		return Change{Kind: KindRoute, Op: OpAdd, Route: &r}
	}
	rule := func(mod func(*model.Rule)) Change {
		r := model.Rule{Family: inet.V4, Priority: 1000, Table: 100}
		mod(&r)
		return Change{Kind: KindRule, Op: OpAdd, Rule: &r}
	}
	chain := func(rules ...string) Change {
		return Change{Kind: KindChain, Op: OpSet, Chain: &ChainSpec{Family: inet.V4, Table: "mangle", Name: "RT-X", Rules: rules}}
	}
	link := func(mod func(*model.Link)) Change {
		l := model.Link{Name: "vx0", Kind: "vxlan", Tunnel: &model.Tunnel{VNI: 1, Remote: ip("192.0.2.2"), Port: 4789}}
		mod(&l)
		return Change{Kind: KindLink, Op: OpAdd, Link: &l}
	}
	sysctl := func(k, v string) Change {
		return Change{Kind: KindSysctl, Op: OpSet, Sysctl: &SysctlValue{Key: k, Value: v}}
	}
	cases := []struct {
		name string
		c    Change
		want string
	}{
		{"command in a route protocol", route(func(r *model.Route) { r.Protocol = "$(touch X)static" }), "field protocol"},
		{"rule table of 2^40", rule(func(r *model.Rule) { r.Table = 1 << 40 }), "field table 1099511627776 out of range"},
		{"route table of 2^40", route(func(r *model.Route) { r.Table = 1 << 40 }), "field table 1099511627776 out of range"},
		{"sysctl key out of /proc/sys", sysctl("net.ipv4.//.//..//tmp.x.secret", "1"), "field key"},
		{"sysctl interface ..", sysctl("net.ipv4.conf.//.rp_filter", "1"), "not allowed by the kernel"},
		{"sysctl component with a slash", sysctl("net.ipv4/../../../etc.x", "1"), "field key"},
		{"sysctl value of two lines", sysctl("net.ipv4.ip_forward", "1\ntouch /x"), "field value"},
		{"nft comment breakout", chain(`-m comment --comment "\"; }; }; flush ruleset; table ip evil {" -j ACCEPT`), "double quote"},
		{"rule with a control character", chain("-m comment --comment \"a\x1b[2Jb\" -j ACCEPT"), "printable"},
		{"iptables command inside a rule", chain("-p tcp -m tcp --dport 1 --delete-chain -j ACCEPT"), "iptables command"},
		{"table switch inside a rule", chain(`-m comment --comment "-table" -j ACCEPT`), "table switch"},
		{"route scope", route(func(r *model.Route) { r.Scope = "link; reboot" }), "field scope"},
		{"nexthop device", route(func(r *model.Route) {
			r.Dev = ""
			r.Nexthops = []model.Nexthop{{Gateway: ip("10.0.0.1"), Dev: "a/b", Weight: 1}}
		}), "nexthop 1: field dev"},
		{"rule iif with a space", rule(func(r *model.Rule) { r.IIF = "eth0 x" }), "field iif"},
		{"rule priority of 2^32", rule(func(r *model.Rule) { r.Priority = 1 << 32 }), "priority"},
		{"rule goto beyond 32 bits", rule(func(r *model.Rule) { r.Action, r.Goto = model.ActionGoto, 1<<32+5 }), "field goto"},
		{"rule ipproto", rule(func(r *model.Rule) { r.IPProto = 300 }), "field ipproto"},
		{"rule port range backwards", rule(func(r *model.Rule) { r.DPort = &model.PortRange{Start: 90, End: 80} }), "field dport"},
		{"link hwaddr", link(func(l *model.Link) { l.HardwareAddr = "02:00:00:00:00:01; id" }), "field hwaddr"},
		{"link master", link(func(l *model.Link) { l.Master = "br 0" }), "field master"},
		{"link mtu", link(func(l *model.Link) { l.MTU = 1 << 33 }), "field mtu"},
		{"tunnel ttl", link(func(l *model.Link) { l.Tunnel.TTL = 300 }), "ttl"},
		{"tunnel dev", link(func(l *model.Link) { l.Tunnel.Dev = "this-name-is-too-long" }), "tunnel field dev"},
		{"address scope", Change{Kind: KindAddress, Op: OpAdd, Address: &LinkAddress{Dev: "eth0", Address: model.Address{Prefix: pfx("10.0.0.9/24"), Scope: "nowhere"}}}, "field scope"},
		{"why of two lines", Change{Kind: KindTable, Op: OpAdd, Why: "a\nb", Table: &RTTable{ID: 300, Name: "x"}}, `field "why"`},
		{"why with an escape", Change{Kind: KindTable, Op: OpAdd, Why: "a\x1b]0;x\x07", Table: &RTTable{ID: 300, Name: "x"}}, `field "why"`},
		{"table name", Change{Kind: KindTable, Op: OpAdd, Table: &RTTable{ID: 300, Name: "x y"}}, "field name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(planWith(t, tc.c))
			if err == nil || !errors.Is(err, ErrBadPlan) || !strings.Contains(err.Error(), "change 1") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an ErrBadPlan naming change 1 and %q", err, tc.want)
			}
		})
	}

	p := New("a\x1b[2J")
	if err := p.Check(); err == nil || !strings.Contains(err.Error(), "intent") {
		t.Errorf("an intent with an escape sequence: %v", err)
	}
	p = New("ok")
	p.Namespace = "ns\nExecStartPre=/bin/touch /x"
	if err := p.Check(); err == nil || !strings.Contains(err.Error(), "field namespace") {
		t.Errorf("a namespace with a newline: %v", err)
	}
}

// TestParsePlanAcceptsLegalOddNames: interface names may hold shell syntax; the kernel allows
// them, so plans must carry them (and renderings quote them).
func TestParsePlanAcceptsLegalOddNames(t *testing.T) {
	for _, name := range []string{"l$(>PW)", "a;b`c`", `q"'\`, "x\x1by", "dot.ted", "-f"} {
		p := New("odd names")
		p.Changes = []Change{
			{Kind: KindRoute, Op: OpAdd, Route: &model.Route{Family: inet.V4, Dst: pfx("10.1.0.0/16"), Dev: name, Protocol: "static"}},
			{Kind: KindRule, Op: OpAdd, Rule: &model.Rule{Family: inet.V4, Priority: 1000, IIF: name, Table: 100}},
			{Kind: KindSysctl, Op: OpSet, Sysctl: &SysctlValue{Key: model.ConfKey(name, "rp_filter"), Value: "2"}},
		}
		if err := p.Check(); err != nil {
			t.Errorf("interface %q refused: %v", name, err)
		}
	}
}

// TestStateValidateRefusesHostileFields: a snapshot is checked field by field on load.
func TestStateValidateRefusesHostileFields(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*model.State)
		want string
	}{
		{"host name with escapes", func(s *model.State) { s.Host = "edge\x1b]0;owned\x07" }, "field host"},
		{"namespace with a newline", func(s *model.State) { s.Namespace = "ns\nrm -rf /" }, "field namespace"},
		{"namespace path", func(s *model.State) { s.Namespace = "../../x" }, "field namespace"},
		{"table name with escapes", func(s *model.State) { s.TableNames[100] = "isp\x1b[2J" }, "table_names"},
		{"table id beyond 32 bits", func(s *model.State) { s.TableNames[1<<40] = "big" }, "table id 1099511627776"},
		{"link name too long", func(s *model.State) { s.Links[1].Name = "a-very-long-link-name" }, "field name"},
		{"link name with a slash", func(s *model.State) { s.Links[1].Name = "a/b" }, "field name"},
		{"rule table beyond 32 bits", func(s *model.State) { s.Rules[1].Table = 1 << 40 }, "field table"},
		{"route table beyond 32 bits", func(s *model.State) { s.Routes[0].Table = 1 << 40 }, "field table"},
		{"route protocol", func(s *model.State) { s.Routes[0].Protocol = "$(id)" }, "field protocol"},
		{"hwaddr", func(s *model.State) { s.Links[1].HardwareAddr = "zz:zz" }, "field hwaddr"},
		{"sysctl key", func(s *model.State) { s.Sysctls["net.ipv4.//.//..//tmp.x"] = "1" }, "sysctl"},
		{"chain name", func(s *model.State) { s.Netfilter.Tables[0].Chains[4].Name = "DOCKER X" }, "chain name"},
		{"netfilter table", func(s *model.State) { s.Netfilter.Tables[0].Name = "evil" }, "field name"},
		{"rule spec of two lines", func(s *model.State) { s.Netfilter.Tables[0].Chains[0].Rules[0].Spec = "-j ACCEPT\n-A X" }, "one line"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := planHost()
			tc.mod(s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// The kernel lets link names hold escape sequences: a snapshot of such a host loads (and
	// printing escapes them).
	s := planHost()
	s.Links[1].Name = "e\x1b]0;x\x07"
	for i := range s.Routes {
		if s.Routes[i].Dev == "eth0" {
			s.Routes[i].Dev = s.Links[1].Name
		}
	}
	if err := s.Validate(); err != nil {
		t.Errorf("a kernel-legal link name was refused: %v", err)
	}
	if err := planHost().Validate(); err != nil {
		t.Errorf("the test host itself: %v", err)
	}
}
