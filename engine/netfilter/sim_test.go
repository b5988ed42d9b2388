package netfilter

import (
	"net/netip"
	"strings"
	"testing"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model/modeltest"
)

func TestMatchAddrText(t *testing.T) {
	for _, c := range []struct {
		pattern, addr string
		want          bool
		unknown       bool
	}{
		{"10.0.0.0/8", "10.200.1.1", true, false},
		{"10.0.0.0/8", "11.0.0.1", false, false},
		{"10.0.0.1", "10.0.0.1", true, false},
		{"10.0.0.1/32", "10.0.0.2", false, false},
		{"10.0.0.0/255.255.0.0", "10.0.9.9", true, false},
		{"10.0.0.1/255.0.0.255", "10.7.7.1", true, false}, // non-contiguous mask, bit by bit
		{"10.0.0.1/255.0.0.255", "10.7.7.2", false, false},
		{"2001:db8::/32", "2001:db8:1::1", true, false},
		{"2001:db8::/32", "10.0.0.1", false, false},
		{"gateway.example", "10.0.0.1", false, true},
	} {
		got, why := matchAddrText(c.pattern, netip.MustParseAddr(c.addr))
		if got != c.want || (why != "") != c.unknown {
			t.Errorf("%s ~ %s: %v %q", c.pattern, c.addr, got, why)
		}
	}
}

func TestMatchPortList(t *testing.T) {
	for _, c := range []struct {
		v       string
		port    uint16
		multi   bool
		want    bool
		unknown bool
	}{
		{"80", 80, false, true, false},
		{"1000:2000", 1500, false, true, false},
		{"1000:2000", 2001, false, false, false},
		{":1024", 22, false, true, false},
		{"1024:", 22, false, false, false},
		{"22,80,8000:8100", 8080, true, true, false},
		{"22,80", 443, true, false, false},
		{"80", 0, false, false, true}, // the request gave no port
	} {
		got, why := matchPortList([]string{c.v}, c.port, c.multi)
		if got != c.want || (why != "") != c.unknown {
			t.Errorf("%s ~ %d: %v %q", c.v, c.port, got, why)
		}
	}
}

func rule(t *testing.T, spec string) *iptables.Rule {
	t.Helper()
	r, err := iptables.ParseRule(inet.V4, spec)
	if err != nil {
		t.Fatal(err)
	}
	return &r
}

// The mark arithmetic of xt_mark and xt_connmark.
func TestMarkTargets(t *testing.T) {
	for _, c := range []struct {
		spec       string
		mark, want uint32
	}{
		{"-j MARK --set-xmark 0x1/0xffffffff", 0xf0, 0x1},
		{"-j MARK --set-xmark 0x1/0xf", 0xf0, 0xf1},
		{"-j MARK --set-mark 0x4/0x4", 0x1, 0x5},
		{"-j MARK --and-mark 0xf", 0xff, 0xf},
		{"-j MARK --or-mark 0x100", 0x1, 0x101},
		{"-j MARK --xor-mark 0x1", 0x3, 0x2},
	} {
		m := c.mark
		if err := applyMark(&m, rule(t, c.spec)); err != "" || m != c.want {
			t.Errorf("%s on %#x: %#x %q, want %#x", c.spec, c.mark, m, err, c.want)
		}
	}
	for _, c := range []struct {
		spec                 string
		mark, ct             uint32
		wantMark, wantCTMark uint32
	}{
		{"-j CONNMARK --set-xmark 0x2/0xff", 0, 0x1100, 0, 0x1102},
		{"-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff", 0x7, 0x100, 0x7, 0x7},
		{"-j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff", 0x1234, 0xab00, 0x1234, 0xab34},
		{"-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff", 0x9, 0x3, 0x3, 0x3},
		{"-j CONNMARK --restore-mark --mask 0xf", 0xf0, 0x35, 0xf5, 0x35},
	} {
		p := &Packet{Mark: c.mark}
		ct := &Conn{Mark: c.ct}
		if err := applyConnmark(p, ct, rule(t, c.spec)); err != "" || p.Mark != c.wantMark || ct.Mark != c.wantCTMark {
			t.Errorf("%s: mark %#x ctmark %#x %q, want %#x %#x", c.spec, p.Mark, ct.Mark, err, c.wantMark, c.wantCTMark)
		}
	}
}

func TestParseNATRange(t *testing.T) {
	for _, c := range []struct {
		f    inet.Family
		in   string
		addr string
		port uint16
	}{
		{inet.V4, "10.0.0.5", "10.0.0.5", 0},
		{inet.V4, "10.0.0.5:8080", "10.0.0.5", 8080},
		{inet.V4, "10.0.0.5-10.0.0.9:8000-8010", "10.0.0.5", 8000},
		{inet.V4, ":8080", "", 8080},
		{inet.V6, "[2001:db8::5]:443", "2001:db8::5", 443},
		{inet.V6, "2001:db8::5", "2001:db8::5", 0},
	} {
		a, p, err := ParseNATRange(c.f, c.in)
		if err != nil || p != c.port || (c.addr == "" && a.IsValid()) || (c.addr != "" && a != netip.MustParseAddr(c.addr)) {
			t.Errorf("%s: %v %d %v", c.in, a, p, err)
		}
	}
	if _, _, err := ParseNATRange(inet.V4, "10.0.0.5:http"); err == nil {
		t.Errorf("a service name was accepted")
	}
}

func TestNFMatches(t *testing.T) {
	s := modeltest.Host(t, "link eth0 10.0.0.1/24\n")
	n := New(s, fib.New(s))
	p := &Packet{Family: inet.V4, Proto: 6, Src: netip.MustParseAddr("10.0.0.9"), Dst: netip.MustParseAddr("10.0.0.1"), SPort: 40000, DPort: 443, IIF: "eth0", TCPFlags: TCPSYN, ICMPType: -1, Mark: 0x12}
	ct := &Conn{State: CTNew, Mark: 0x5, Orig: Tuple{netip.MustParseAddrPort("10.0.0.9:40000"), netip.MustParseAddrPort("10.0.0.1:443")}}
	for _, c := range []struct {
		spec    string
		want    bool
		unknown bool
	}{
		{"-i eth+ -j ACCEPT", true, false},
		{"! -i eth0 -j ACCEPT", false, false},
		{"-p udp -j ACCEPT", false, false},
		{"-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT", true, false},
		{"-p tcp -m tcp ! --syn -j ACCEPT", false, false},
		{"-p tcp -m multiport --dports 80,443 -j ACCEPT", true, false},
		{"-p tcp -m multiport ! --dports 80,443 -j ACCEPT", false, false},
		{"-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", false, false},
		{"-m conntrack --ctstate NEW --ctdir ORIGINAL -j ACCEPT", true, false},
		{"-m state --state NEW -j ACCEPT", true, false},
		{"-m conntrack --ctorigdst 10.0.0.1 --ctorigdstport 443 -j ACCEPT", true, false},
		{"-m mark --mark 0x2/0x2 -j ACCEPT", true, false},
		{"-m mark --mark 0x1 -j ACCEPT", false, false},
		{"-m connmark --mark 0x5 -j ACCEPT", true, false},
		{"-m addrtype --dst-type LOCAL -j ACCEPT", true, false},
		{"-m addrtype --src-type LOCAL -j ACCEPT", false, false},
		{"-m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT", true, false},
		{"-m iprange --src-range 10.0.0.5-10.0.0.10 -j ACCEPT", true, false},
		{"-m comment --comment \"hello world\" -j ACCEPT", true, false},
		{"-m pkttype --pkt-type unicast -j ACCEPT", true, false},
		{"-p icmp -m icmp --icmp-type 8 -j ACCEPT", false, false},
		{"-f -j DROP", false, false},
		{"-m set --match-set x src -j DROP", false, true},
		{"-m owner --uid-owner 0 -j DROP", false, false}, // a received packet has no socket
		{"-m u32 --u32 0x0&0xf=0x5 -j DROP", false, true},
		{"-s example.org -j DROP", false, true},
	} {
		got, why := n.matches(rule(t, c.spec), p, ct)
		if got != c.want || (why != "") != c.unknown {
			t.Errorf("%s: %v %q", c.spec, got, why)
		}
	}
}

func TestMasqueradeAddr(t *testing.T) {
	s := modeltest.Host(t, "link eth0 10.0.0.1/24 192.0.2.2/30\n")
	f := fib.New(s)
	if got := f.MasqueradeAddr("eth0", netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("8.8.8.8")); got != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("nexthop in the second subnet: %s", got)
	}
	if got := f.MasqueradeAddr("eth0", netip.MustParseAddr("172.16.0.1"), netip.MustParseAddr("8.8.8.8")); got != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("nexthop elsewhere: %s", got)
	}
}

// The port NAT leaves, as get_unique_tuple chooses it: the original port when it is in the
// range, otherwise a random one in the range for SNAT (never a made-up number: the range is
// said instead), the range's first for DNAT; --random(-fully) always randomises.
func TestNATPorts(t *testing.T) {
	s := modeltest.Host(t, "link wan 192.0.2.2/24\nlink lan 10.0.0.1/24\n")
	n := New(s, fib.New(s))
	for _, c := range []struct {
		spec, hook string
		sport      uint16
		want       string // the packet's endpoint that NAT rewrote, port range as (LO-HI)
		what       string // part of the step's text
	}{
		{"-o wan -j MASQUERADE --to-ports 1024-65535", "POSTROUTING", 40000, "192.0.2.2:40000", "port 40000 kept"},
		{"-o wan -j MASQUERADE --to-ports 1024-65535", "POSTROUTING", 123, "192.0.2.2:(1024-65535)", "a port in 1024-65535, not the original port"},
		{"-o wan -j MASQUERADE", "POSTROUTING", 123, "192.0.2.2:123", ""},
		{"-o wan -j MASQUERADE --random-fully", "POSTROUTING", 40000, "192.0.2.2:(1024-65535)", "random"},
		{"-o wan -j MASQUERADE --random-fully", "POSTROUTING", 700, "192.0.2.2:(600-1023)", "random"},
		{"-o wan -j SNAT --to-source 192.0.2.9:2000-2100", "POSTROUTING", 2050, "192.0.2.9:2050", "port 2050 kept"},
		{"-o wan -j SNAT --to-source 192.0.2.9:2000-2100", "POSTROUTING", 40000, "192.0.2.9:(2000-2100)", "a port in 2000-2100"},
		{"-o wan -j SNAT --to-source 192.0.2.9:2000-2100 --random", "POSTROUTING", 2050, "192.0.2.9:(2000-2100)", "random"},
		{"-o wan -j SNAT --to-source 192.0.2.9:5555", "POSTROUTING", 40000, "192.0.2.9:5555", ""},
		{"-o wan -j SNAT --to-source 192.0.2.9-192.0.2.12", "POSTROUTING", 40000, "192.0.2.9:40000", "one of 192.0.2.9-192.0.2.12"},
		{"-i wan -j DNAT --to-destination 10.0.0.5:8000-8010", "PREROUTING", 0, "10.0.0.5:8000", "the original 443 is outside 8000-8010"},
		{"-i wan -p tcp -j REDIRECT --to-ports 3000-3999", "PREROUTING", 0, "192.0.2.2:3000", "outside 3000-3999"},
	} {
		p := &Packet{Family: inet.V4, Proto: 6, Src: netip.MustParseAddr("10.0.0.7"), Dst: netip.MustParseAddr("203.0.113.5"),
			SPort: c.sport, DPort: 443, TCPFlags: TCPSYN, ICMPType: -1, OIF: "wan", NextHop: netip.MustParseAddr("192.0.2.1")}
		if c.hook == "PREROUTING" {
			p.Src, p.Dst, p.IIF, p.OIF, p.SPort = netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("192.0.2.2"), "wan", "", 50000
		}
		s.Netfilter = iptables.Ruleset{}
		r := rule(t, c.spec)
		s.Netfilter.Tables = []iptables.Table{{Family: inet.V4, Name: "nat", Chains: []iptables.Chain{{Name: c.hook, Policy: "ACCEPT", Rules: []iptables.Rule{*r}}}}}
		n := New(s, n.fib)
		res := n.Run("nat", c.hook, p, &Conn{State: CTNew})
		got := portEndpoint(p.Src, p.SPort, p.SPortRange)
		if c.hook == "PREROUTING" {
			got = portEndpoint(p.Dst, p.DPort, p.DPortRange)
		}
		if len(res.Steps) != 1 || len(res.Uncertain) > 0 {
			t.Errorf("%s: steps %+v uncertain %+v", c.spec, res.Steps, res.Uncertain)
			continue
		}
		if got != c.want || !strings.Contains(res.Steps[0].What, c.what) {
			t.Errorf("%s from port %d: %s (%q), want %s (%q)", c.spec, c.sport, got, res.Steps[0].What, c.want, c.what)
		}
	}
}
