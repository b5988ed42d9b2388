package nft

import (
	"net/netip"
	"strings"
	"testing"
)

// debianRouter is a /etc/nftables.conf router as Debian users write it: inet filter with a
// drop policy, established traffic accepted, the LAN interfaces in a set.
func debianRouter() *Ruleset {
	lanIfs := &Set{Name: "lan_ifs", KeyType: "ifname", KeyLen: 16, Elements: []Element{{Key: ifn("lan0")}, {Key: ifn("lan1")}}}
	input := base("input", TypeFilter, HookInput, 0, "drop",
		rule(ctState(0x6), verdict("accept")),
		rule(ctState(0x1), verdict("drop")),
		rule(iifname("lo"), verdict("accept")),
		rule(metaLoad("iifname", 1), lookup("lan_ifs", 1), dport(6, 22), counter(), verdict("accept")),
	)
	forward := base("forward", TypeFilter, HookForward, 0, "drop",
		rule(ctState(0x6), verdict("accept")),
		rule(metaLoad("iifname", 1), lookup("lan_ifs", 1), oifname("wan0"), verdict("accept")),
	)
	t := &Table{Family: FamilyInet, Name: "filter", Handle: 1, Chains: []*Chain{input, forward}, Sets: []*Set{lanIfs}}
	return &Ruleset{HostOrder: "little", Tables: []*Table{t}}
}

func only(t *testing.T, r *Result) *Outcome {
	t.Helper()
	if !r.Certain() {
		t.Fatalf("want one certain outcome, got %d (truncated %v): %+v", len(r.Outcomes), r.Truncated, r.Outcomes)
	}
	return &r.Outcomes[0]
}

func lastStep(o *Outcome) Step { return o.Path[len(o.Path)-1] }

func TestEvalDebianRouter(t *testing.T) {
	rs := debianRouter()
	tbl := rs.Tables[0]
	fwd := tbl.Chain("forward")
	cases := []struct {
		name    string
		pkt     *PacketInfo
		verdict string
		last    string
	}{
		{"lan to wan, new", tcpPkt("192.168.1.10", "198.51.100.7", 40000, 443, "new", "lan1", "wan0"), "accept", `iifname @lan_ifs oifname "wan0" accept`},
		{"wan to lan, new", tcpPkt("198.51.100.7", "192.168.1.10", 443, 40000, "new", "wan0", "lan1"), "drop", "policy drop"},
		{"wan to lan, reply", tcpPkt("198.51.100.7", "192.168.1.10", 443, 40000, "established", "wan0", "lan1"), "accept", "ct state established,related accept"},
		{"lan to lan2 (not wan)", tcpPkt("192.168.1.10", "10.1.1.1", 40000, 443, "new", "lan0", "dmz0"), "drop", "policy drop"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := only(t, rs.EvalChain(tbl, fwd, c.pkt, nil))
			if o.Verdict != c.verdict {
				t.Fatalf("verdict %s, want %s (path %+v)", o.Verdict, c.verdict, o.Path)
			}
			if got := lastStep(o).Text; got != c.last {
				t.Errorf("deciding step %q, want %q", got, c.last)
			}
		})
	}
	in := tbl.Chain("input")
	ssh := tcpPkt("192.168.1.10", "192.168.1.1", 40000, 22, "new", "lan0", "")
	o := only(t, rs.EvalChain(tbl, in, ssh, nil))
	if o.Verdict != "accept" || lastStep(o).Handle != in.Rules[3].Handle {
		t.Errorf("ssh from the LAN: %s at %+v, want accept by the ssh rule", o.Verdict, lastStep(o))
	}
	// The same packet on a port the rule does not name falls to the policy.
	ssh.DPort = 23
	o = only(t, rs.EvalChain(tbl, in, ssh, nil))
	if o.Verdict != "drop" || lastStep(o).Action != "policy" {
		t.Errorf("telnet from the LAN: %s at %+v, want the drop policy", o.Verdict, lastStep(o))
	}
	// Before conntrack (no entry) ct state reads invalid: the invalid rule drops.
	ssh.CTEntry = nil
	o = only(t, rs.EvalChain(tbl, in, ssh, nil))
	if o.Verdict != "drop" || lastStep(o).Handle != in.Rules[1].Handle {
		t.Errorf("without conntrack: %s at %+v, want the ct state invalid rule", o.Verdict, lastStep(o))
	}
}

// portForward is a nat prerouting chain with a DNAT and a DNAT through an address map.
func portForward() (*Ruleset, *Table, *Chain) {
	m := &Set{Name: "__map0", KeyType: "ipv4_addr", KeyLen: 4, Flags: []string{"anonymous", "constant", "map"}, DataType: "ipv4_addr", DataLen: 4,
		Elements: []Element{{Key: ip4("203.0.113.10"), Data: ip4("10.0.0.3")}, {Key: ip4("203.0.113.11"), Data: ip4("10.0.0.4")}}}
	pre := base("prerouting", TypeNAT, HookPrerouting, -100, "accept",
		rule(iifname("wan0"), dport(6, 8080), imm(1, ip4("10.0.0.2")), imm(2, be16(80)),
			Expr{Nat: &Nat{Type: "dnat", Family: "ip", RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: 2, RegProtoMax: 2, Flags: []string{"map-ips", "proto-specified"}}}),
		rule(nfproto(2), load("network", 16, 4, 1), mapLookup("__map0", 1, 1),
			Expr{Nat: &Nat{Type: "dnat", Family: "ip", RegAddrMin: 1, RegAddrMax: 1, Flags: []string{"map-ips"}}}),
	)
	tbl := &Table{Family: FamilyInet, Name: "nat", Chains: []*Chain{pre}, Sets: []*Set{m}}
	return &Ruleset{HostOrder: "little", Tables: []*Table{tbl}}, tbl, pre
}

func TestEvalDNAT(t *testing.T) {
	rs, tbl, pre := portForward()
	o := only(t, rs.EvalChain(tbl, pre, tcpPkt("198.51.100.7", "192.0.2.1", 40000, 8080, "new", "wan0", ""), nil))
	n := o.Effects.Nat
	if o.Verdict != "accept" || n == nil || n.Type != "dnat" || n.AddrMin != netip.MustParseAddr("10.0.0.2") || n.ProtoMin != 80 || n.ProtoMax != 80 {
		t.Fatalf("port forward: %s, nat %+v", o.Verdict, n)
	}
	if n.Step.Text != `iifname "wan0" tcp dport 8080 dnat ip to 10.0.0.2:80` {
		t.Errorf("nat step text %q", n.Step.Text)
	}
	// dnat to ip daddr map: the address comes from the map element.
	o = only(t, rs.EvalChain(tbl, pre, tcpPkt("198.51.100.7", "203.0.113.11", 40000, 443, "new", "wan0", ""), nil))
	if o.Effects.Nat == nil || o.Effects.Nat.AddrMin != netip.MustParseAddr("10.0.0.4") {
		t.Fatalf("map dnat: %+v", o.Effects.Nat)
	}
	if !strings.Contains(o.Effects.Nat.Step.Text, "dnat ip to ip daddr map { 203.0.113.10 : 10.0.0.3, 203.0.113.11 : 10.0.0.4 }") {
		t.Errorf("map dnat text %q", o.Effects.Nat.Step.Text)
	}
	// A destination not in the map: the lookup fails, the rule does not match.
	o = only(t, rs.EvalChain(tbl, pre, tcpPkt("198.51.100.7", "203.0.113.12", 40000, 443, "new", "wan0", ""), nil))
	if o.Effects.Nat != nil || o.Verdict != "accept" || lastStep(o).Action != "policy" {
		t.Errorf("unmapped destination: %+v", o)
	}
	// nat without a conntrack entry cannot be set up.
	p := tcpPkt("198.51.100.7", "192.0.2.1", 40000, 8080, "", "wan0", "")
	o = only(t, rs.EvalChain(tbl, pre, p, nil))
	if o.Verdict != "drop" {
		t.Errorf("nat without conntrack: %s", o.Verdict)
	}
}

// dualWAN marks by destination: a verdict map from destination intervals to chains that set
// the mark, and a `meta mark set ip daddr map` for the rest.
func dualWAN() (*Ruleset, *Table, *Chain) {
	vmap := &Set{Name: "dst_route", KeyType: "ipv4_addr", KeyLen: 4, Flags: []string{"interval", "map"}, DataType: "verdict",
		Elements: []Element{
			{Key: ip4("100.64.0.0"), KeyEnd: ip4("100.127.255.255"), Verdict: &Verdict{Kind: "jump", Chain: "isp_b"}},
			{Key: ip4("203.0.113.0"), KeyEnd: ip4("203.0.113.255"), Verdict: &Verdict{Kind: "goto", Chain: "isp_a"}},
		}}
	marks := &Set{Name: "marks", KeyType: "ipv4_addr", KeyLen: 4, Flags: []string{"interval", "map"}, DataType: "mark", DataLen: 4,
		Elements: []Element{{Key: ip4("198.51.100.0"), KeyEnd: ip4("198.51.100.127"), Data: le32(0x3)}}}
	pre := base("prerouting", TypeFilter, HookPrerouting, -150, "accept",
		rule(ctLoad("mark", 1), cmp("neq", 1, le32(0)), ctLoad("mark", 1), metaSet("mark", 1), verdict("return")),
		rule(iifname("lan0"), nfproto(2), load("network", 16, 4, 1), mapLookup("dst_route", 1, 0)),
		rule(iifname("lan0"), nfproto(2), load("network", 16, 4, 1), mapLookup("marks", 1, 1), metaSet("mark", 1)),
		rule(metaLoad("mark", 1), ctSet("mark", 1)),
	)
	ispA := regular("isp_a", rule(imm(1, le32(0x1)), metaSet("mark", 1)), rule(metaLoad("mark", 1), ctSet("mark", 1)))
	ispB := regular("isp_b", rule(imm(1, le32(0x2)), metaSet("mark", 1)))
	tbl := &Table{Family: FamilyInet, Name: "mangle", Chains: []*Chain{pre, ispA, ispB}, Sets: []*Set{vmap, marks}}
	return &Ruleset{HostOrder: "little", Tables: []*Table{tbl}}, tbl, pre
}

func TestEvalVerdictMapAndMarks(t *testing.T) {
	rs, tbl, pre := dualWAN()
	mark := func(o *Outcome) uint32 {
		if o.Effects.Mark == nil {
			return 0
		}
		return *o.Effects.Mark
	}
	ctmark := func(o *Outcome) uint32 {
		if o.Effects.CtMark == nil {
			return 0
		}
		return *o.Effects.CtMark
	}
	// jump isp_b: the mark is set there, then evaluation returns and saves it to ct mark.
	o := only(t, rs.EvalChain(tbl, pre, tcpPkt("192.168.1.10", "100.100.1.1", 40000, 443, "new", "lan0", ""), nil))
	if mark(o) != 2 || ctmark(o) != 2 || o.Verdict != "accept" {
		t.Errorf("isp_b destination: mark %d ctmark %d verdict %s, path %+v", mark(o), ctmark(o), o.Verdict, o.Path)
	}
	// goto isp_a: the end of isp_a returns to the base chain's caller, i.e. the policy: the
	// rest of prerouting does not run, isp_a saves the mark itself.
	o = only(t, rs.EvalChain(tbl, pre, tcpPkt("192.168.1.10", "203.0.113.9", 40000, 443, "new", "lan0", ""), nil))
	if mark(o) != 1 || ctmark(o) != 1 || lastStep(o).Action != "policy" {
		t.Errorf("isp_a destination: mark %d ctmark %d, path %+v", mark(o), ctmark(o), o.Path)
	}
	// meta mark set ip daddr map @marks
	o = only(t, rs.EvalChain(tbl, pre, tcpPkt("192.168.1.10", "198.51.100.20", 40000, 443, "new", "lan0", ""), nil))
	if mark(o) != 3 || ctmark(o) != 3 {
		t.Errorf("marks map: mark %d ctmark %d", mark(o), ctmark(o))
	}
	// Outside every interval: no mark.
	o = only(t, rs.EvalChain(tbl, pre, tcpPkt("192.168.1.10", "198.51.100.200", 40000, 443, "new", "lan0", ""), nil))
	if o.Effects.Mark != nil {
		t.Errorf("unmarked destination got mark %d", mark(o))
	}
	// An established flow restores its connection mark and returns at once.
	p := tcpPkt("192.168.1.10", "100.100.1.1", 40000, 443, "established", "lan0", "")
	p.CTEntry.Mark = 2
	o = only(t, rs.EvalChain(tbl, pre, p, nil))
	if mark(o) != 2 || o.Path[0].Action != "return" {
		t.Errorf("restore: mark %d path %+v", mark(o), o.Path)
	}
	if got := o.Path[0].Text; got != "ct mark != 0x00000000 meta mark set ct mark return" {
		t.Errorf("restore rule text %q", got)
	}
}

func TestEvalRateIsUncertain(t *testing.T) {
	in := base("input", TypeFilter, HookInput, 0, "drop",
		rule(dport(6, 22), Expr{Limit: &Limit{Type: "packets", Rate: 10, Unit: 60, Burst: 5}}, verdict("accept")),
	)
	tbl := &Table{Family: FamilyInet, Name: "f", Chains: []*Chain{in}}
	rs := &Ruleset{HostOrder: "little", Tables: []*Table{tbl}}
	r := rs.EvalChain(tbl, in, tcpPkt("198.51.100.7", "192.0.2.1", 40000, 22, "new", "wan0", ""), nil)
	if len(r.Outcomes) != 2 || r.Certain() {
		t.Fatalf("want two outcomes, got %+v", r)
	}
	got := map[string]string{}
	for _, o := range r.Outcomes {
		if len(o.Conditions) != 1 || o.Conditions[0].Reason != "depends on rate" || o.Conditions[0].Expr != "limit rate 10/minute" {
			t.Errorf("outcome %s conditions %+v", o.Verdict, o.Conditions)
			continue
		}
		got[o.Verdict] = o.Conditions[0].Branch
	}
	if !strings.HasPrefix(got["accept"], "matched") || !strings.HasPrefix(got["drop"], "did not match") {
		t.Errorf("outcomes by verdict: %v", got)
	}
	// A port the rule does not name never reaches the limit: certain.
	only(t, rs.EvalChain(tbl, in, tcpPkt("198.51.100.7", "192.0.2.1", 40000, 80, "new", "wan0", ""), nil))
}

func TestEvalUnknownFieldForksOnceAndMasksKnownBits(t *testing.T) {
	in := base("input", TypeFilter, HookInput, 0, "accept",
		// ip frag-off & 0x1fff != 0 drop: the offset bits are known for a traced flow
		rule(nfproto(2), load("network", 6, 2, 1), mask(1, 1, []byte{0x1f, 0xff}), cmp("neq", 1, []byte{0, 0}), verdict("drop")),
		// ip ttl 1 drop, twice: the unknown TTL is one question, asked once
		rule(nfproto(2), load("network", 8, 1, 1), eq(1, []byte{1}), counter()),
		rule(nfproto(2), load("network", 8, 1, 1), eq(1, []byte{1}), verdict("drop")),
	)
	tbl := &Table{Family: FamilyInet, Name: "f", Chains: []*Chain{in}}
	rs := &Ruleset{HostOrder: "little", Tables: []*Table{tbl}}
	p := tcpPkt("198.51.100.7", "192.0.2.1", 40000, 22, "new", "wan0", "")
	r := rs.EvalChain(tbl, in, p, nil)
	if len(r.Outcomes) != 2 {
		t.Fatalf("want 2 outcomes (ttl 1 or not), got %d: %+v", len(r.Outcomes), r.Outcomes)
	}
	for _, o := range r.Outcomes {
		if len(o.Conditions) != 1 || o.Conditions[0].Expr != "ip ttl" {
			t.Errorf("conditions %+v", o.Conditions)
		}
		if (o.Verdict == "drop") != (o.Conditions[0].Branch == "matched") {
			t.Errorf("verdict %s with branch %s", o.Verdict, o.Conditions[0].Branch)
		}
	}
	// With the TTL given, the result is certain.
	p.Extras = map[string][]byte{"ip ttl": {64}}
	if o := only(t, rs.EvalChain(tbl, in, p, nil)); o.Verdict != "accept" {
		t.Errorf("ttl 64: %s", o.Verdict)
	}
}

func TestEvalConcatenatedIntervalSet(t *testing.T) {
	// ip saddr . tcp dport @allowed with allowed = { 10.0.0.0/24 . 80-90 }
	allowed := &Set{Name: "allowed", KeyType: "ipv4_addr . inet_service", KeyLen: 8, Fields: []uint32{4, 2}, Flags: []string{"interval", "concat"},
		Elements: []Element{{Key: append(ip4("10.0.0.0"), 0, 80, 0, 0), KeyEnd: append(ip4("10.0.0.255"), 0, 90, 0, 0)}}}
	in := base("input", TypeFilter, HookInput, 0, "drop",
		rule(nfproto(2), l4(6), load("network", 12, 4, 1), load("transport", 2, 2, 9), lookup("allowed", 1), verdict("accept")),
	)
	tbl := &Table{Family: FamilyInet, Name: "f", Chains: []*Chain{in}, Sets: []*Set{allowed}}
	rs := &Ruleset{HostOrder: "little", Tables: []*Table{tbl}}
	for _, c := range []struct {
		src  string
		port uint16
		want string
	}{{"10.0.0.7", 85, "accept"}, {"10.0.0.7", 91, "drop"}, {"10.0.1.7", 85, "drop"}, {"10.0.0.255", 80, "accept"}} {
		o := only(t, rs.EvalChain(tbl, in, tcpPkt(c.src, "192.0.2.1", 40000, c.port, "new", "eth0", ""), nil))
		if o.Verdict != c.want {
			t.Errorf("%s port %d: %s, want %s", c.src, c.port, o.Verdict, c.want)
		}
	}
	if got := NewRenderer("little").Rule(tbl, in.Rules[0]); got != "ip saddr . tcp dport @allowed accept" {
		t.Errorf("text %q", got)
	}
}

func TestEvalJumpReturnGoto(t *testing.T) {
	// base: jump a; counter; (policy drop). a: goto b. b: return.
	// The return in b pops to base's frame (goto does not push): base goes on after the jump.
	b := regular("b", rule(verdict("return")), rule(verdict("accept")))
	a := regular("a", rule(jump("goto", "b")), rule(verdict("accept")))
	in := base("input", TypeFilter, HookInput, 0, "drop", rule(jump("jump", "a")), rule(counter()))
	tbl := &Table{Family: FamilyIP, Name: "f", Chains: []*Chain{in, a, b}}
	rs := &Ruleset{HostOrder: "little", Tables: []*Table{tbl}}
	o := only(t, rs.EvalChain(tbl, in, tcpPkt("10.0.0.1", "10.0.0.2", 1, 2, "new", "eth0", ""), nil))
	var actions []string
	for _, s := range o.Path {
		actions = append(actions, s.Chain+":"+s.Action)
	}
	if got := strings.Join(actions, " "); got != "input:jump a:goto b:return input:match input:policy" || o.Verdict != "drop" {
		t.Errorf("path %s, verdict %s", got, o.Verdict)
	}
}

func TestEvalFIBAndWildcard(t *testing.T) {
	pre := base("prerouting", TypeFilter, HookPrerouting, -150, "accept",
		// fib saddr . iif oif missing drop
		rule(Expr{Fib: &Fib{Result: "oif", Flags: []string{"saddr", "iif", "present"}, Dreg: 1}}, eq(1, []byte{0}), verdict("drop")),
		// iifname "veth*" meta mark set 0x7
		rule(metaLoad("iifname", 1), eq(1, []byte("veth")), imm(1, le32(7)), metaSet("mark", 1)),
	)
	tbl := &Table{Family: FamilyInet, Name: "raw", Chains: []*Chain{pre}}
	rs := &Ruleset{HostOrder: "little", Tables: []*Table{tbl}}
	r := NewRenderer("little")
	if got := r.Rule(tbl, pre.Rules[0]); got != "fib saddr . iif oif missing drop" {
		t.Errorf("fib text %q", got)
	}
	if got := r.Rule(tbl, pre.Rules[1]); got != `iifname "veth*" meta mark set 0x00000007` {
		t.Errorf("wildcard text %q", got)
	}
	p := tcpPkt("198.51.100.7", "192.0.2.1", 40000, 22, "new", "veth3", "")
	// Without a FIB answer the rp-filter rule is uncertain.
	if res := rs.EvalChain(tbl, pre, p, nil); len(res.Outcomes) != 2 {
		t.Fatalf("no fib: want 2 outcomes, got %+v", res.Outcomes)
	}
	p.FIBFunc = func(q FIBQuery) (FIBResult, bool) {
		if !q.Saddr || !q.Iif || q.Result != "oif" {
			t.Errorf("fib query %+v", q)
		}
		return FIBResult{}, true // no route back: missing
	}
	if o := only(t, rs.EvalChain(tbl, pre, p, nil)); o.Verdict != "drop" {
		t.Errorf("no reverse route: %s", o.Verdict)
	}
	p.FIBFunc = func(FIBQuery) (FIBResult, bool) { return FIBResult{Oif: Iface{Name: "veth3", Index: 10}}, true }
	o := only(t, rs.EvalChain(tbl, pre, p, nil))
	if o.Verdict != "accept" || o.Effects.Mark == nil || *o.Effects.Mark != 7 {
		t.Errorf("reverse route exists: %s mark %v", o.Verdict, o.Effects.Mark)
	}
	p.In.Name = "vet"
	if o := only(t, rs.EvalChain(tbl, pre, p, nil)); o.Effects.Mark != nil {
		t.Errorf("iifname vet matched veth*")
	}
}

func TestEvalOutcomesAreCapped(t *testing.T) {
	var rules []*Rule
	for i := 0; i < 10; i++ {
		rules = append(rules, rule(Expr{Limit: &Limit{Type: "packets", Rate: uint64(i + 1), Unit: 1}}, counter()))
	}
	in := base("input", TypeFilter, HookInput, 0, "accept", rules...)
	tbl := &Table{Family: FamilyIP, Name: "f", Chains: []*Chain{in}}
	rs := &Ruleset{HostOrder: "little", Tables: []*Table{tbl}}
	r := rs.EvalChain(tbl, in, tcpPkt("10.0.0.1", "10.0.0.2", 1, 2, "new", "eth0", ""), &EvalOptions{MaxOutcomes: 5})
	if len(r.Outcomes) != 5 || !r.Truncated {
		t.Errorf("want 5 outcomes and truncated, got %d, %v", len(r.Outcomes), r.Truncated)
	}
}

func TestEvalIPv6(t *testing.T) {
	// ip6 saddr 2001:db8::/32 tcp dport 443 accept; icmpv6 type echo-request accept; policy drop
	in := base("input", TypeFilter, HookInput, 0, "drop",
		rule(nfproto(10), load("network", 8, 16, 1), mask(1, 1, append([]byte{0xff, 0xff, 0xff, 0xff}, make([]byte, 12)...)),
			eq(1, ip6("2001:db8::")), dport(6, 443), verdict("accept")),
		rule(nfproto(10), l4(58), load("transport", 0, 1, 1), eq(1, []byte{128}), verdict("accept")),
	)
	tbl := &Table{Family: FamilyInet, Name: "f", Chains: []*Chain{in}}
	rs := &Ruleset{HostOrder: "little", Tables: []*Table{tbl}}
	r := NewRenderer("little")
	for i, want := range []string{"ip6 saddr 2001:db8::/32 tcp dport 443 accept", "icmpv6 type echo-request accept"} {
		if got := r.Rule(tbl, in.Rules[i]); got != want {
			t.Errorf("rule %d: %q, want %q", i, got, want)
		}
	}
	if o := only(t, rs.EvalChain(tbl, in, tcpPkt("2001:db8:1::5", "2001:db8:2::1", 40000, 443, "new", "eth0", ""), nil)); o.Verdict != "accept" {
		t.Errorf("inside the prefix: %s", o.Verdict)
	}
	if o := only(t, rs.EvalChain(tbl, in, tcpPkt("2001:db9::5", "2001:db8:2::1", 40000, 443, "new", "eth0", ""), nil)); o.Verdict != "drop" {
		t.Errorf("outside the prefix: %s", o.Verdict)
	}
	// An IPv4 packet never matches the IPv6 rules (the nfproto dependency).
	if o := only(t, rs.EvalChain(tbl, in, tcpPkt("32.1.13.184", "10.0.0.1", 40000, 443, "new", "eth0", ""), nil)); o.Verdict != "drop" {
		t.Errorf("IPv4 packet: %s", o.Verdict)
	}
	ping := &PacketInfo{Proto: 10, L4: 58, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"),
		ICMPType: 128, HasICMP: true, In: &Iface{Name: "eth0", Index: 2}, CTEntry: &CT{State: "new"}}
	if o := only(t, rs.EvalChain(tbl, in, ping, nil)); o.Verdict != "accept" {
		t.Errorf("echo request: %s", o.Verdict)
	}
	ping.ICMPType = 129
	if o := only(t, rs.EvalChain(tbl, in, ping, nil)); o.Verdict != "drop" {
		t.Errorf("echo reply: %s", o.Verdict)
	}
}
