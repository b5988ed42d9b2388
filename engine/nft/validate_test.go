package nft

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// ParseJSON is how a snapshot's ruleset would be loaded: strict decoding, then Validate.
func parseStrict(data []byte) (*Ruleset, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var rs Ruleset
	if err := dec.Decode(&rs); err != nil {
		return nil, err
	}
	return &rs, rs.Validate()
}

func validRuleset() *Ruleset {
	rs, _, _ := dualWAN()
	rs.Tables = append(rs.Tables, debianRouter().Tables...)
	pf, _, _ := portForward()
	rs.Tables = append(rs.Tables, pf.Tables...)
	r := NewRenderer(rs.HostOrder)
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			for _, rule := range c.Rules {
				rule.Text = r.Rule(t, rule)
			}
		}
	}
	return rs
}

func TestValidateAcceptsRoundTrip(t *testing.T) {
	rs := validRuleset()
	if err := rs.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	back, err := parseStrict(b)
	if err != nil {
		t.Fatalf("re-reading: %v", err)
	}
	b2, _ := json.Marshal(back)
	if !bytes.Equal(b, b2) {
		t.Errorf("JSON round trip changed the ruleset")
	}
}

func TestValidateRefuses(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(rs *Ruleset)
		want   string
	}{
		{"host order", func(rs *Ruleset) { rs.HostOrder = "middle" }, "host_order"},
		{"family", func(rs *Ruleset) { rs.Tables[0].Family = "ipx" }, "unknown family"},
		{"control char in table name", func(rs *Ruleset) { rs.Tables[0].Name = "a\x1b[2Jb" }, "control character"},
		{"bidi override in comment", func(rs *Ruleset) { rs.Tables[0].Chains[0].Rules[0].Comment = "x\u202ey" }, "control character"},
		{"quote in set name", func(rs *Ruleset) { rs.Tables[0].Sets[1].Name = `a"b` }, "contains"},
		{"long name", func(rs *Ruleset) { rs.Tables[0].Name = strings.Repeat("a", 256) }, "longer than"},
		{"duplicate table", func(rs *Ruleset) { rs.Tables = append(rs.Tables, rs.Tables[0]) }, "appears twice"},
		{"hook of another family", func(rs *Ruleset) { rs.Tables[0].Chains[0].Hook = HookEgress }, "does not exist in family"},
		{"nat on forward", func(rs *Ruleset) {
			rs.Tables[0].Chains[0].Type, rs.Tables[0].Chains[0].Hook = TypeNAT, HookForward
		}, "not allowed"},
		{"policy", func(rs *Ruleset) { rs.Tables[0].Chains[0].Policy = "reject" }, "policy"},
		{"regular chain with a policy", func(rs *Ruleset) { rs.Tables[0].Chains[1].Policy = "drop" }, "regular chain"},
		{"device name", func(rs *Ruleset) {
			c := rs.Tables[0].Chains[0]
			c.Hook, c.Devices = HookIngress, []string{"eth0/x"}
		}, "interface name"},
		{"jump to missing chain", func(rs *Ruleset) {
			rs.Tables[0].Chains[0].Rules[0].Exprs[4].Verdict = &Verdict{Kind: "jump", Chain: "nowhere"}
		}, "does not exist"},
		{"jump to base chain", func(rs *Ruleset) {
			rs.Tables[0].Chains[0].Rules[0].Exprs[4].Verdict = &Verdict{Kind: "goto", Chain: "prerouting"}
		}, "base chain"},
		{"two kinds in one expression", func(rs *Ruleset) { rs.Tables[0].Chains[0].Rules[0].Exprs[0].Counter = &Counter{} }, "exactly one kind"},
		{"no kind", func(rs *Ruleset) { rs.Tables[0].Chains[0].Rules[0].Exprs[0] = Expr{} }, "exactly one kind"},
		{"register out of range", func(rs *Ruleset) { rs.Tables[0].Chains[0].Rules[0].Exprs[0].Ct.Dreg = 24 }, "register 24"},
		{"register overflow", func(rs *Ruleset) {
			rs.Tables[0].Chains[0].Rules[0].Exprs[1] = cmp("eq", 23, make([]byte, 8))
		}, "do not fit"},
		{"unknown meta key", func(rs *Ruleset) { rs.Tables[0].Chains[0].Rules[1].Exprs[0].Meta.Key = "colour" }, "unknown meta key"},
		{"lookup of a missing set", func(rs *Ruleset) { rs.Tables[0].Chains[0].Rules[1].Exprs[5].Lookup.Set = "gone" }, "does not exist"},
		{"set key length", func(rs *Ruleset) { rs.Tables[0].Sets[1].Elements[0].Key = []byte{1} }, "key of 1 bytes"},
		{"interval end before start", func(rs *Ruleset) {
			el := &rs.Tables[0].Sets[1].Elements[0]
			el.Key, el.KeyEnd = el.KeyEnd, el.Key
		}, "end before its start"},
		{"vmap element without verdict", func(rs *Ruleset) { rs.Tables[0].Sets[0].Elements[0].Verdict = nil }, "verdict"},
		{"vmap jump to missing chain", func(rs *Ruleset) { rs.Tables[0].Sets[0].Elements[0].Verdict.Chain = "gone" }, "does not exist"},
		{"map data length", func(rs *Ruleset) { rs.Tables[0].Sets[1].Elements[0].Data = []byte{1} }, "map data"},
		{"unknown datatype", func(rs *Ruleset) { rs.Tables[0].Sets[1].KeyType = "colour" }, "unknown key type"},
		{"rule text with newline", func(rs *Ruleset) { rs.Tables[0].Chains[0].Rules[0].Text = "accept\naccept" }, "control character"},
		{"duplicate rule handle", func(rs *Ruleset) {
			rs.Tables[0].Chains[1].Rules[0].Handle = rs.Tables[0].Chains[0].Rules[0].Handle
		}, "appears twice"},
		{"nat flags", func(rs *Ruleset) {
			rs.Tables[2].Chains[0].Rules[0].Exprs[len(rs.Tables[2].Chains[0].Rules[0].Exprs)-1].Nat.Flags = []string{"sideways"}
		}, "unknown flag"},
		{"null table", func(rs *Ruleset) { rs.Tables[1] = nil }, "null"},
		{"jump loop through a verdict map", func(rs *Ruleset) {
			// isp_b is reached through the dst_route verdict map; make it go back there
			isp := rs.Tables[0].Chain("isp_b")
			isp.Rules = append(isp.Rules, rule(iifname("x"), load("network", 16, 4, 1), mapLookup("dst_route", 1, 0)))
		}, "loop"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := validRuleset()
			c.break_(rs)
			// through JSON, as a snapshot arrives
			b, err := json.Marshal(rs)
			if err != nil {
				t.Fatal(err)
			}
			_, err = parseStrict(b)
			if err == nil {
				t.Fatalf("accepted")
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want ErrInvalid mentioning %q", err, c.want)
			}
		})
	}
}

// FuzzRulesetJSON: whatever a snapshot holds, loading it either fails with an error or yields
// a ruleset that renders, orders and evaluates without panicking.
func FuzzRulesetJSON(f *testing.F) {
	b, _ := json.Marshal(validRuleset())
	f.Add(b)
	f.Add([]byte(`{"host_order":"little","tables":[{"family":"ip","name":"t","chains":[{"name":"c","type":"filter","hook":"input","policy":"drop","rules":[{"handle":1,"exprs":[{"payload":{"base":"network","offset":65535,"len":64,"dreg":1}},{"cmp":{"op":"gt","sreg":1,"data":"00"}}],"text":""}]}]}]}`))
	f.Add([]byte(`{"host_order":"big","tables":[{"family":"inet","name":"t","sets":[{"name":"s","key_type":"ipv4_addr . inet_service","key_len":8,"fields":[4,2],"flags":["interval","concat"],"elements":[{"key":"0a000000005000","key_end":"0a0000ff005a0000"}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := parseStrict(data)
		if err != nil {
			return
		}
		r := NewRenderer(rs.HostOrder)
		pkts := []Packet{
			tcpPkt("198.51.100.7", "192.0.2.1", 40000, 80, "new", "wan0", "lan0"),
			tcpPkt("2001:db8::1", "2001:db8::2", 40000, 80, "established", "", "wan0"),
			tcpPkt("10.0.0.1", "10.0.0.2", 1, 2, "", "lo", ""),
		}
		for _, tb := range rs.Tables {
			for _, c := range tb.Chains {
				for _, rule := range c.Rules {
					_ = r.Rule(tb, rule)
				}
				if c.Base() {
					for _, p := range pkts {
						rs.EvalChain(tb, c, p, &EvalOptions{MaxOutcomes: 4})
					}
				}
			}
		}
		for _, pf := range []Family{FamilyIP, FamilyIP6} {
			for _, h := range []Hook{HookPrerouting, HookForward, HookPostrouting} {
				o := HookOrder(rs, pf, h, HookOptions{Legacy: []string{"nat", "filter"}, Conntrack: true})
				rs.EvalHook(o, pkts[0], &HookEvalOptions{EvalOptions: EvalOptions{MaxOutcomes: 4}})
			}
		}
	})
}

// FuzzRuleExprs builds rules from arbitrary bytes, expression by expression, so that every
// combination the validator lets through (odd lengths, registers, datatypes) is rendered and
// evaluated: neither may panic.
func FuzzRuleExprs(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add([]byte("\x03\x10\x04\x08\x01\x02\x0b\x00\x07\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return b
		}
		regs := []uint32{1, 2, 8, 9, 10, 22, 23}
		reg := func() uint32 { return regs[int(next())%len(regs)] }
		bytesN := func() []byte {
			n := int(next()%20) + 1
			out := make([]byte, n)
			for i := range out {
				out[i] = next()
			}
			return out
		}
		set := &Set{Name: "s", KeyType: "ipv4_addr . inet_service", KeyLen: 8, Fields: []uint32{4, 2}, Flags: []string{"interval", "concat", "map"}, DataType: "mark", DataLen: 4,
			Elements: []Element{{Key: bytesN8(next), KeyEnd: bytesN8(next), Data: []byte{next(), 0, 0, 0}}}}
		vm := &Set{Name: "v", KeyType: "ifname", KeyLen: 16, Flags: []string{"map", "interval"}, DataType: "verdict",
			Elements: []Element{{Key: ifn("a"), KeyEnd: ifn("b"), Verdict: &Verdict{Kind: "jump", Chain: "sub"}}}}
		var exprs []Expr
		for len(data) > 0 && len(exprs) < 24 {
			switch next() % 16 {
			case 0:
				bases := []string{"ll", "network", "transport", "inner"}
				exprs = append(exprs, load(bases[next()%4], uint32(next()%48), uint32(next()%17)+1, reg()))
			case 1:
				exprs = append(exprs, metaLoad(metaKeys[int(next())%len(metaKeys)].name, reg()))
			case 2:
				k := ctKeys[int(next())%len(ctKeys)]
				e := Expr{Ct: &Ct{Key: k.name, Dreg: reg()}}
				if k.dir && next()%2 == 0 {
					e.Ct.Dir = "reply"
				}
				exprs = append(exprs, e)
			case 3:
				exprs = append(exprs, cmp(cmpOps[next()%6], reg(), bytesN()))
			case 4:
				m := bytesN()
				exprs = append(exprs, Expr{Bitwise: &Bitwise{Op: "bool", Sreg: reg(), Dreg: reg(), Len: uint32(len(m)), Mask: m, Xor: bytesN()[:0:0]}})
				exprs[len(exprs)-1].Bitwise.Xor = make([]byte, len(m))
			case 5:
				exprs = append(exprs, imm(reg(), bytesN()))
			case 6:
				exprs = append(exprs, Expr{Lookup: &Lookup{Set: "s", Sreg: reg(), HasDreg: next()%2 == 0, Dreg: reg()}})
			case 7:
				exprs = append(exprs, Expr{Lookup: &Lookup{Set: "v", Sreg: reg(), HasDreg: true}})
			case 8:
				types := []string{"snat", "dnat", "masquerade", "redirect"}
				exprs = append(exprs, Expr{Nat: &Nat{Type: types[next()%4], Family: []string{"", "ip", "ip6"}[next()%3], RegAddrMin: reg(), RegProtoMin: reg()}})
			case 9:
				exprs = append(exprs, metaSet([]string{"mark", "nftrace", "priority"}[next()%3], reg()))
			case 10:
				exprs = append(exprs, ctSet([]string{"mark", "zone", "label"}[next()%3], reg()))
			case 11:
				exprs = append(exprs, verdict([]string{"accept", "drop", "continue", "return", "break", "queue"}[next()%6]))
			case 12:
				exprs = append(exprs, jump([]string{"jump", "goto"}[next()%2], "sub"))
			case 13:
				exprs = append(exprs, Expr{Fib: &Fib{Result: []string{"oif", "oifname", "type"}[next()%3], Flags: []string{"saddr", "iif", "present"}[:next()%4], Dreg: reg()}})
			case 14:
				exprs = append(exprs, Expr{Range: &Range{Op: []string{"eq", "neq"}[next()%2], Sreg: reg(), From: []byte{next(), next()}, To: []byte{next(), next()}}})
			case 15:
				exprs = append(exprs, Expr{Byteorder: &Byteorder{Op: "hton", Sreg: reg(), Dreg: reg(), Len: 4, Size: []uint32{2, 4}[next()%2]}},
					Expr{Xt: &Xt{Kind: "target", Name: []string{"MARK", "CONNMARK", "DNAT", "REJECT"}[next()%4], Rev: uint32(next() % 3), Info: bytesN()}})
			}
		}
		sub := regular("sub", &Rule{Handle: 1, Exprs: exprs})
		ch := base("c", TypeFilter, HookPrerouting, 0, "accept", &Rule{Handle: 2, Exprs: exprs}, &Rule{Handle: 3, Exprs: []Expr{jump("jump", "sub")}})
		tbl := &Table{Family: []Family{FamilyIP, FamilyIP6, FamilyInet, FamilyBridge}[len(exprs)%4], Name: "t", Chains: []*Chain{ch, sub}, Sets: []*Set{set, vm}}
		rs := &Ruleset{HostOrder: []string{"little", "big"}[len(exprs)%2], Tables: []*Table{tbl}}
		if rs.Validate() != nil {
			return
		}
		_ = NewRenderer(rs.HostOrder).Rule(tbl, ch.Rules[0])
		rs.EvalChain(tbl, ch, tcpPkt("198.51.100.7", "192.0.2.1", 40000, 80, "new", "wan0", "lan0"), &EvalOptions{MaxOutcomes: 8})
		rs.EvalChain(tbl, ch, tcpPkt("2001:db8::1", "2001:db8::2", 1, 2, "", "", ""), &EvalOptions{MaxOutcomes: 8})
	})
}

func bytesN8(next func() byte) []byte {
	out := make([]byte, 8)
	for i := range out {
		out[i] = next()
	}
	out[6], out[7] = 0, 0
	return out
}
