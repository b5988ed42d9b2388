package netfilter

import (
	"net/netip"
	"strings"
	"testing"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/model/modeltest"
)

// simOf builds a Sim over one chain of rules in a table.
func simOf(t *testing.T, s *model.State, table, hook string, specs ...string) *Sim {
	t.Helper()
	var rules []iptables.Rule
	for _, sp := range specs {
		rules = append(rules, *rule(t, sp))
	}
	s.Netfilter = iptables.Ruleset{Tables: []iptables.Table{{Family: inet.V4, Name: table, Chains: []iptables.Chain{{Name: hook, Policy: "ACCEPT", Rules: rules}}}}}
	return New(s, fib.New(s))
}

func synFrom(src, dst string, iif string) *Packet {
	return &Packet{Family: inet.V4, Proto: 6, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SPort: 40000, DPort: 22, IIF: iif, TCPFlags: TCPSYN, ICMPType: -1}
}

// State- and chance-dependent matches are branches: the quiet host's outcome is taken, the
// other described, and Force takes it instead.
func TestBranchMatches(t *testing.T) {
	s := modeltest.Host(t, "link eth0 10.0.0.1/24\n")
	for _, c := range []struct {
		spec    string
		taken   bool
		prob    float64 // -1: depends on state
		when    string  // part of Branch.When
		dropped bool    // the verdict as taken
	}{
		{"-m statistic --mode random --probability 0.25 -j DROP", false, 0.25, "probability 25%", false},
		{"-m statistic --mode nth --every 3 --packet 0 -j DROP", false, 1.0 / 3, "every 3rd packet", false},
		{"-m limit --limit 5/min --limit-burst 10 -j ACCEPT", true, -1, "under 5/min (burst 10)", false},
		{"-m hashlimit --hashlimit-above 20/sec --hashlimit-burst 5 --hashlimit-mode srcip --hashlimit-name in -j DROP", false, -1, "once each srcip exceeds 20/sec", false},
		{"-m hashlimit --hashlimit-upto 20/sec --hashlimit-mode srcip --hashlimit-name in -j ACCEPT", true, -1, "stays under 20/sec", false},
		{"-p tcp -m tcp --dport 22 -m connlimit --connlimit-above 3 --connlimit-mask 32 --connlimit-saddr -j REJECT --reject-with tcp-reset", false, -1, "more than 3 connections", false},
		{"-m recent --rcheck --seconds 60 --hitcount 4 --name SSH --mask 255.255.255.255 --rsource -j DROP", false, -1, "seen 4 times within 60 s (recent list SSH)", false},
		{"-m recent ! --rcheck --name SSH -j DROP", true, -1, "is not", true},
		{"-m time --timestart 08:00:00 --timestop 18:00:00 --weekdays Mon,Tue -j DROP", true, -1, "--timestart 08:00:00", true},
		{"-m policy --dir in --pol ipsec -j DROP", false, -1, "IPsec policy covers it", false},
		{"-m policy --dir in --pol none -j DROP", true, -1, "not IPsec-processed", true},
		{"-m string --string evil --algo bm -j DROP", false, -1, `payload contains "evil"`, false},
	} {
		n := simOf(t, s, "filter", "INPUT", c.spec)
		res := n.Run("filter", "INPUT", synFrom("10.0.0.9", "10.0.0.1", "eth0"), &Conn{State: CTNew})
		if len(res.Branches) != 1 || len(res.Uncertain) != 0 {
			t.Errorf("%s: branches %+v uncertain %+v", c.spec, res.Branches, res.Uncertain)
			continue
		}
		b := res.Branches[0]
		if b.Taken != c.taken || (c.prob < 0) != (b.Prob < 0) || (c.prob >= 0 && (b.Prob-c.prob) > 1e-9) || !strings.Contains(b.When, c.when) || (res.Verdict == Drop) != c.dropped {
			t.Errorf("%s: taken %v prob %v when %q verdict %s", c.spec, b.Taken, b.Prob, b.When, res.Verdict)
		}
		// Forcing the other outcome gives it.
		n.Force = map[*iptables.Rule]bool{b.Key(): !b.Taken}
		alt := n.Run("filter", "INPUT", synFrom("10.0.0.9", "10.0.0.1", "eth0"), &Conn{State: CTNew})
		if len(alt.Branches) != 1 || alt.Branches[0].Taken == b.Taken {
			t.Errorf("%s: forced: %+v", c.spec, alt.Branches)
		}
	}
}

// A rule that only logs at a rate changes nothing: it is no branch; a recent --set always
// matches; owner never matches a received packet but is a branch for a local one.
func TestBranchesThatAreNot(t *testing.T) {
	s := modeltest.Host(t, "link eth0 10.0.0.1/24\n")
	n := simOf(t, s, "filter", "INPUT",
		"-m limit --limit 3/min -j LOG --log-prefix \"in: \"",
		"-m recent --set --name SSH --rsource -j MARK --set-xmark 0x1/0xffffffff")
	res := n.Run("filter", "INPUT", synFrom("10.0.0.9", "10.0.0.1", "eth0"), &Conn{State: CTNew})
	if len(res.Branches) != 0 || len(res.Uncertain) != 0 {
		t.Fatalf("branches %+v uncertain %+v", res.Branches, res.Uncertain)
	}
	n = simOf(t, s, "filter", "OUTPUT", "-m owner --uid-owner 1000 -j DROP")
	p := synFrom("10.0.0.1", "10.0.0.9", "")
	p.LocalOut = true
	if res := n.Run("filter", "OUTPUT", p, &Conn{State: CTNew}); len(res.Branches) != 1 || !strings.Contains(res.Branches[0].When, "--uid-owner 1000") || res.Verdict != Accept {
		t.Errorf("owner on a local packet: %+v %s", res.Branches, res.Verdict)
	}
}

// kube-proxy's service chain: each endpoint a branch, the last the fall-through.
func TestBranchStatisticChain(t *testing.T) {
	s := modeltest.Host(t, "link eth0 10.0.0.1/24\n")
	n := simOf(t, s, "nat", "PREROUTING",
		"-m statistic --mode random --probability 0.33333333349 -j DNAT --to-destination 10.1.0.5:8080",
		"-m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.1.0.6:8080",
		"-j DNAT --to-destination 10.1.0.7:8080")
	p := synFrom("10.0.0.9", "10.96.0.10", "eth0")
	res := n.Run("nat", "PREROUTING", p, &Conn{State: CTNew})
	if len(res.Branches) != 2 || p.Dst != netip.MustParseAddr("10.1.0.7") {
		t.Fatalf("branches %d, dst %s", len(res.Branches), p.Dst)
	}
	for i, want := range []string{"10.1.0.5", "10.1.0.6"} {
		n.Force = map[*iptables.Rule]bool{res.Branches[i].Key(): true}
		q := synFrom("10.0.0.9", "10.96.0.10", "eth0")
		n.Run("nat", "PREROUTING", q, &Conn{State: CTNew})
		if q.Dst != netip.MustParseAddr(want) {
			t.Errorf("branch %d forced: dst %s, want %s", i, q.Dst, want)
		}
	}
}

// Named matches and targets the model does not evaluate say what they depend on; rpfilter is
// evaluated as the reverse lookup it is.
func TestNamedMatchesAndRPFilter(t *testing.T) {
	s := modeltest.Host(t, "link eth0 10.0.0.1/24\nlink eth1 192.0.2.2/24\nroute default via 192.0.2.1 dev eth1\n")
	for _, c := range []struct{ spec, why string }{
		{"-m u32 --u32 0x0>>0x16&0x3c@0x4>>0x10=0x0 -j DROP", "raw header"},
		{"-m length --length 0:100 -j DROP", "size"},
		{"-m ttl --ttl-lt 5 -j DROP", "TTL"},
		{"-m socket --transparent -j ACCEPT", "local socket"},
		{"-j NFQUEUE --queue-num 3 --queue-bypass", "queue 3"},
		{"-j SYNPROXY --sack-perm --timestamp --wscale 7 --mss 1460", "SYN"},
		{"-p tcp -j TPROXY --on-port 3129 --on-ip 0.0.0.0 --tproxy-mark 0x1/0x1", "0.0.0.0:3129"},
	} {
		n := simOf(t, s, "mangle", "PREROUTING", c.spec)
		res := n.Run("mangle", "PREROUTING", synFrom("10.0.0.9", "10.0.0.1", "eth0"), &Conn{State: CTNew})
		if len(res.Uncertain) != 1 || !strings.Contains(res.Uncertain[0].Why, c.why) {
			t.Errorf("%s: %+v", c.spec, res.Uncertain)
		}
	}
	for _, c := range []struct {
		spec, src, iif string
		dropped        bool
	}{
		{"-m rpfilter --invert -j DROP", "10.0.0.9", "eth0", false},
		{"-m rpfilter --invert -j DROP", "10.0.0.9", "eth1", true},
		{"-m rpfilter --loose --invert -j DROP", "10.0.0.9", "eth1", false},
		{"-m rpfilter --invert -j DROP", "198.51.100.7", "eth1", false},
		{"-m rpfilter --invert -j DROP", "198.51.100.7", "eth0", true},
	} {
		n := simOf(t, s, "raw", "PREROUTING", c.spec)
		res := n.Run("raw", "PREROUTING", synFrom(c.src, "10.0.0.1", c.iif), &Conn{State: CTNew})
		if len(res.Uncertain) != 0 || (res.Verdict == Drop) != c.dropped {
			t.Errorf("%s from %s on %s: %s %+v", c.spec, c.src, c.iif, res.Verdict, res.Uncertain)
		}
	}
}

// The set match over the sets of the state: the most specific hash:net member decides (a
// nomatch member is an exception), hash:ip with a netmask, hash:ip,port by protocol and port,
// the flags choosing source or destination.
func TestMatchSet(t *testing.T) {
	s := modeltest.Host(t, "link eth0 10.0.0.1/24\n")
	pfx := netip.MustParsePrefix
	s.IPSets = []model.IPSet{
		{Name: "nets", Type: "hash:net", Family: inet.V4, Members: []model.IPSetMember{
			{Net: pfx("198.51.100.0/24")}, {Net: pfx("198.51.100.128/25"), NoMatch: true}, {Net: pfx("198.51.100.200/32")}}},
		{Name: "hosts", Type: "hash:ip", Family: inet.V4, Netmask: 24, Members: []model.IPSetMember{{Net: pfx("203.0.113.0/32")}}},
		{Name: "svc", Type: "hash:ip,port", Family: inet.V4, Members: []model.IPSetMember{{Net: pfx("10.0.0.1/32"), Proto: 6, Port: 22}}},
		{Name: "macs", Type: "hash:mac", Family: inet.V4},
	}
	for _, c := range []struct {
		spec, src string
		want      bool
		unknown   bool
	}{
		{"-m set --match-set nets src -j DROP", "198.51.100.7", true, false},
		{"-m set --match-set nets src -j DROP", "198.51.100.130", false, false}, // nomatch exception
		{"-m set --match-set nets src --return-nomatch -j DROP", "198.51.100.130", true, false},
		{"-m set --match-set nets src -j DROP", "198.51.100.200", true, false}, // more specific than the exception
		{"-m set ! --match-set nets src -j DROP", "192.0.2.1", true, false},
		{"-m set --match-set nets dst -j DROP", "198.51.100.7", false, false},
		{"-m set --match-set hosts src -j DROP", "203.0.113.99", true, false}, // netmask 24
		{"-m set --match-set hosts src -j DROP", "203.0.114.1", false, false},
		{"-m set --match-set svc dst,dst -j DROP", "192.0.2.1", true, false},
		{"-m set --match-set svc dst,src -j DROP", "192.0.2.1", false, false},
		{"-m set --match-set macs src -j DROP", "192.0.2.1", false, true},
		{"-m set --match-set missing src -j DROP", "192.0.2.1", false, true},
	} {
		n := New(s, fib.New(s))
		got, why := n.matches(rule(t, c.spec), synFrom(c.src, "10.0.0.1", "eth0"), &Conn{State: CTNew})
		if got != c.want || (why != "") != c.unknown {
			t.Errorf("%s from %s: %v %q", c.spec, c.src, got, why)
		}
	}
}

// physdev reads what br_netfilter recorded of a packet from a bridge port.
func TestMatchPhysdev(t *testing.T) {
	s := modeltest.Host(t, "bridge br0 10.0.0.1/24\nport veth1 br0\n")
	n := New(s, fib.New(s))
	for _, c := range []struct {
		spec    string
		phys    *PhysDev
		want    bool
		unknown bool
	}{
		{"-m physdev --physdev-in veth1 -j ACCEPT", nil, false, false},
		{"-m physdev ! --physdev-is-bridged -j ACCEPT", nil, true, false},
		{"-m physdev --physdev-in veth1 -j ACCEPT", &PhysDev{In: "veth1"}, true, false},
		{"-m physdev --physdev-in veth+ -j ACCEPT", &PhysDev{In: "veth1"}, true, false},
		{"-m physdev --physdev-in tap0 -j ACCEPT", &PhysDev{In: "veth1"}, false, false},
		{"-m physdev --physdev-in veth1 -j ACCEPT", &PhysDev{}, false, true},
		{"-m physdev --physdev-is-bridged -j ACCEPT", &PhysDev{In: "veth1"}, false, false},
		{"-m physdev --physdev-is-bridged -j ACCEPT", &PhysDev{In: "veth1", Bridged: true}, true, false},
		{"-m physdev --physdev-is-in -j ACCEPT", &PhysDev{}, true, false},
		{"-m physdev --physdev-out veth2 -j ACCEPT", &PhysDev{In: "veth1"}, true, false},
		{"-m physdev --physdev-out veth2 -j ACCEPT", &PhysDev{In: "veth1", Bridged: true}, false, true},
	} {
		p := synFrom("10.0.0.9", "10.0.0.3", "br0")
		p.Phys = c.phys
		got, why := n.matches(rule(t, c.spec), p, &Conn{State: CTNew})
		if got != c.want || (why != "") != c.unknown {
			t.Errorf("%s with %+v: %v %q", c.spec, c.phys, got, why)
		}
	}
}
