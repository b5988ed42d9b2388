package diagnose

import (
	"encoding/json"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"roundtrip/engine/capture"
	"roundtrip/engine/conntrack"
	"roundtrip/engine/finding"
	"roundtrip/engine/trace"
)

var t0 = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

// pkt builds a decoded TCP packet.
func pkt(ms int, iface string, dir capture.Direction, src, dst string, flags uint8) *Packet {
	typ := capture.PacketHost
	if dir == capture.Out {
		typ = capture.PacketOutgoing
	}
	return &Packet{Time: t0.Add(time.Duration(ms) * time.Millisecond), Iface: iface, Dir: dir, Type: typ, Length: 60,
		Proto: unix.IPPROTO_TCP, L3: "ip", Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst), Flags: flags, Seq: 1000}
}

func ids(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID)
	}
	slices.Sort(out)
	return out
}

// feed runs packets through a correlator and returns every finding, after a final tick.
func feed(c *Correlator, pkts ...*Packet) []Finding {
	var out []Finding
	for _, p := range pkts {
		out = append(out, c.Packet(p)...)
	}
	return append(out, c.Tick(t0.Add(time.Minute))...)
}

func TestCorrelateAsymmetricReturnInAnyOrder(t *testing.T) {
	syn := pkt(0, "eth0", capture.In, "198.18.72.10:40001", "10.72.1.2:80", tcpSYN)
	synack := pkt(1, "em1", capture.Out, "10.72.1.2:80", "198.18.72.10:40001", tcpSYN|tcpACK)
	// The rings hand over sent packets independently of received ones: either may come first.
	for _, order := range [][]*Packet{{syn, synack}, {synack, syn}} {
		c := NewCorrelator(CorrelateConfig{})
		fs := feed(c, order...)
		if len(fs) != 1 || fs[0].ID != FindingAsymmetricReturn || fs[0].Ingress != "eth0" || fs[0].Egress != "em1" ||
			fs[0].Flow.Src.String() != "198.18.72.10:40001" {
			t.Errorf("findings %+v; want one asymmetric-return, in eth0, out em1, from the client", fs)
		}
	}
	// The same through one interface is fine; a bridge port counts as its bridge.
	c := NewCorrelator(CorrelateConfig{L3: func(s string) string {
		if s == "port1" || s == "port2" {
			return "br0"
		}
		return s
	}})
	fs := feed(c, pkt(0, "port1", capture.In, "198.18.72.10:40001", "10.72.1.2:80", tcpSYN),
		pkt(1, "port2", capture.Out, "10.72.1.2:80", "198.18.72.10:40001", tcpSYN|tcpACK),
		pkt(2, "port1", capture.In, "198.18.72.10:40001", "10.72.1.2:80", tcpACK))
	if len(fs) != 0 {
		t.Errorf("findings through one bridge: %v", ids(fs))
	}
	if cs := c.Conns(); len(cs) != 1 || !cs[0].Completed {
		t.Errorf("conns %+v; want one completed", cs)
	}
}

// TestCorrelateNATAcrossInterfaces ties the two sides of a DNAT+SNAT box into one connection
// through the conntrack entry, whether it arrives before or after the packets.
func TestCorrelateNATAcrossInterfaces(t *testing.T) {
	e := conntrack.Entry{
		Orig:  conntrack.Tuple{Proto: unix.IPPROTO_TCP, Src: netip.MustParseAddrPort("10.72.5.185:40006"), Dst: netip.MustParseAddrPort("10.72.5.34:81")},
		Reply: conntrack.Tuple{Proto: unix.IPPROTO_TCP, Src: netip.MustParseAddrPort("10.72.5.32:80"), Dst: netip.MustParseAddrPort("10.72.5.34:61000")},
	}
	pkts := []*Packet{
		pkt(0, "eth0", capture.In, "10.72.5.185:40006", "10.72.5.34:81", tcpSYN),
		pkt(1, "eth1", capture.Out, "10.72.5.34:61000", "10.72.5.32:80", tcpSYN),
		pkt(2, "eth1", capture.In, "10.72.5.32:80", "10.72.5.34:61000", tcpSYN|tcpACK),
		pkt(3, "eth0", capture.Out, "10.72.5.34:81", "10.72.5.185:40006", tcpSYN|tcpACK),
		pkt(4, "eth0", capture.In, "10.72.5.185:40006", "10.72.5.34:81", tcpACK),
		pkt(5, "eth1", capture.Out, "10.72.5.34:61000", "10.72.5.32:80", tcpACK),
	}
	for _, viaLookup := range []bool{false, true} {
		cfg := CorrelateConfig{Local: func(a netip.Addr) bool { return a.String() == "10.72.5.34" }}
		if viaLookup {
			cfg.Lookup = func(tu conntrack.Tuple) (*conntrack.Entry, bool) { return &e, e.Has(tu) }
		}
		c := NewCorrelator(cfg)
		if !viaLookup {
			c.Conntrack(e, t0) // from an event, before any packet
		}
		fs := feed(c, pkts...)
		cs := c.Conns()
		if len(fs) != 0 || len(cs) != 1 || !cs[0].Completed || cs[0].Conntrack == nil || cs[0].Flow != e.Orig {
			t.Fatalf("lookup %v: findings %v, conns %+v; want one completed connection with the entry", viaLookup, ids(fs), cs)
		}
		want := []string{"eth0 in request", "eth1 out request", "eth1 in reply", "eth0 out reply"}
		if !slices.Equal(cs[0].Path, want) {
			t.Errorf("path %v, want %v", cs[0].Path, want)
		}
		for _, p := range pkts {
			if p.Conn != cs[0].ID {
				t.Errorf("packet %s is in connection %d, want %d", p, p.Conn, cs[0].ID)
			}
		}
	}
}

func TestCorrelateReplyNotSeenSameLink(t *testing.T) {
	e := conntrack.Entry{
		Orig:  conntrack.Tuple{Proto: unix.IPPROTO_TCP, Src: netip.MustParseAddrPort("10.72.5.185:40005"), Dst: netip.MustParseAddrPort("10.72.5.34:81")},
		Reply: conntrack.Tuple{Proto: unix.IPPROTO_TCP, Src: netip.MustParseAddrPort("10.72.5.32:80"), Dst: netip.MustParseAddrPort("10.72.5.185:40005")},
	}
	c := NewCorrelator(CorrelateConfig{
		ReplyWait: time.Second,
		Local:     func(a netip.Addr) bool { return a.String() == "10.72.5.34" },
		Lookup:    func(tu conntrack.Tuple) (*conntrack.Entry, bool) { return &e, e.Has(tu) },
	})
	var fs []Finding
	fs = append(fs, c.Packet(pkt(0, "eth0", capture.In, "10.72.5.185:40005", "10.72.5.34:81", tcpSYN))...)
	fs = append(fs, c.Packet(pkt(1, "eth0", capture.Out, "10.72.5.185:40005", "10.72.5.32:80", tcpSYN))...)
	if early := c.Tick(t0.Add(500 * time.Millisecond)); len(early) != 0 || len(fs) != 0 {
		t.Fatalf("findings before the reply wait is over: %v %v", ids(fs), ids(early))
	}
	fs = c.Tick(t0.Add(1100 * time.Millisecond))
	if len(fs) != 1 || fs[0].ID != FindingReplyNotSeen {
		t.Fatalf("findings %v, want reply-not-seen", ids(fs))
	}
	f := fs[0]
	ev := strings.Join(f.Evidence, "\n")
	if !strings.Contains(f.Summary, "same link") || !strings.Contains(ev, "[UNREPLIED]") || !strings.Contains(ev, "reply bypasses NAT") ||
		!strings.Contains(f.Fix.Summary, "-j SNAT --to-source 10.72.5.34") || f.Conntrack == nil {
		t.Errorf("finding %+v", f)
	}
	if again := c.Tick(t0.Add(5 * time.Second)); len(again) != 0 {
		t.Errorf("reported twice: %v", ids(again))
	}
}

func TestCorrelateForwardedNotSeen(t *testing.T) {
	var asked []string
	c := NewCorrelator(CorrelateConfig{
		Local: func(a netip.Addr) bool { return a.String() == "10.72.43.101" },
		Explain: func(tu conntrack.Tuple, iif string) (Explanation, bool) {
			asked = append(asked, tu.String()+" on "+iif)
			return Explanation{Cause: trace.FindingForwardingDisabled, Summary: "forwarding is off", Fix: finding.Fix{Wizard: finding.WizardSNATGateway}}, true
		},
	})
	fs := feed(c,
		pkt(0, "eth1", capture.In, "10.72.43.15:40004", "10.72.44.10:80", tcpSYN),
		// Packets for this host itself are delivered, not forwarded.
		pkt(0, "eth1", capture.In, "10.72.43.15:40005", "10.72.43.101:22", tcpSYN))
	if len(fs) != 1 || fs[0].ID != FindingForwardedNotSeen || fs[0].Cause != trace.FindingForwardingDisabled || fs[0].Ingress != "eth1" {
		t.Fatalf("findings %+v; want forwarded-not-seen caused by forwarding-disabled", fs)
	}
	if len(asked) != 1 || asked[0] != "tcp 10.72.43.15:40004 -> 10.72.44.10:80 on eth1" {
		t.Errorf("the trace engine was asked %v", asked)
	}
	// A packet that leaves in time is no finding.
	c = NewCorrelator(CorrelateConfig{Local: func(netip.Addr) bool { return false }})
	fs = feed(c, pkt(0, "eth1", capture.In, "10.72.43.15:40004", "10.72.44.10:80", tcpSYN),
		pkt(1, "eth0", capture.Out, "10.72.43.15:40004", "10.72.44.10:80", tcpSYN),
		pkt(2, "eth0", capture.In, "10.72.44.10:80", "10.72.43.15:40004", tcpSYN|tcpACK),
		pkt(3, "eth1", capture.Out, "10.72.44.10:80", "10.72.43.15:40004", tcpSYN|tcpACK))
	if len(fs) != 0 {
		t.Errorf("findings for a forwarded flow: %v", ids(fs))
	}
}

// TestCorrelateReplyBypassesNAT is the client's side of case 5: it sent a SYN to the port
// forward and got a SYN-ACK from the backend, which it resets.
func TestCorrelateReplyBypassesNAT(t *testing.T) {
	syn := pkt(0, "eth0", capture.Out, "10.72.5.185:40005", "10.72.5.34:81", tcpSYN)
	stray := pkt(1, "eth0", capture.In, "10.72.5.32:80", "10.72.5.185:40005", tcpSYN|tcpACK)
	rst := pkt(2, "eth0", capture.Out, "10.72.5.185:40005", "10.72.5.32:80", tcpRST)
	// The rings of two directions may hand the client's reset over before the reply it answers.
	for _, order := range [][]*Packet{{syn, stray, rst}, {stray, rst, syn}, {syn, rst, stray}} {
		c := NewCorrelator(CorrelateConfig{})
		fs := feed(c, order...)
		if got := ids(fs); !slices.Equal(got, []string{FindingReplyBypassesNAT, FindingResetByPeer}) {
			t.Fatalf("findings %v, want reply-bypasses-nat and reset-by-peer", got)
		}
		for _, f := range fs {
			if f.ID == FindingReplyBypassesNAT && (!strings.Contains(f.Summary, "the reply came from 10.72.5.32:80 but the client 10.72.5.185:40005 spoke to 10.72.5.34:81") || len(f.Packets) != 2) {
				t.Errorf("finding %+v", f)
			}
			if f.ID == FindingResetByPeer && !strings.Contains(f.Summary, "the client 10.72.5.185:40005 reset") {
				t.Errorf("finding %+v", f)
			}
		}
	}
	// Two servers answering one client port each from itself is no bypass.
	c := NewCorrelator(CorrelateConfig{})
	fs := feed(c,
		pkt(0, "eth0", capture.Out, "10.0.0.1:5000", "10.0.0.2:80", tcpSYN),
		pkt(1, "eth0", capture.In, "10.0.0.2:80", "10.0.0.1:5000", tcpSYN|tcpACK),
		pkt(2, "eth0", capture.Out, "10.0.0.1:5000", "10.0.0.3:80", tcpSYN),
		pkt(3, "eth0", capture.In, "10.0.0.3:80", "10.0.0.1:5000", tcpSYN|tcpACK))
	if len(fs) != 0 {
		t.Errorf("findings %v for two ordinary connections from one port", ids(fs))
	}
}

func TestCorrelateRetransmitsAndRefused(t *testing.T) {
	c := NewCorrelator(CorrelateConfig{})
	fs := feed(c,
		pkt(0, "eth0", capture.Out, "10.0.0.1:5000", "10.0.0.2:80", tcpSYN),
		pkt(1000, "eth0", capture.Out, "10.0.0.1:5000", "10.0.0.2:80", tcpSYN),
		pkt(1001, "eth0", capture.In, "10.0.0.2:80", "10.0.0.1:5000", tcpRST|tcpACK))
	if got := ids(fs); !slices.Equal(got, []string{FindingResetByPeer, FindingRetransmits}) {
		t.Fatalf("findings %v", got)
	}
	for _, f := range fs {
		if f.ID == FindingResetByPeer && (f.Severity != finding.SeverityError || !strings.Contains(f.Summary, "refused")) {
			t.Errorf("reset finding %+v: want a refused connection, an error", f)
		}
	}
}

func TestDecodeAndJSON(t *testing.T) {
	mac1, mac2 := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	ser := func(ls ...gopacket.SerializableLayer) []byte {
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	tcp := &layers.TCP{SrcPort: 5000, DstPort: 80, SYN: true, ACK: true, Seq: 7, Ack: 9}
	tcp.SetNetworkLayerForChecksum(ip4)
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	icmp6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	icmp6.SetNetworkLayerForChecksum(ip6)
	cases := []struct {
		kp   capture.Packet
		want string
	}{
		{capture.Packet{Iface: "eth0", Dir: capture.In, LinkType: capture.LinkEthernet,
			Data: ser(&layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeIPv4}, ip4, tcp, gopacket.Payload("hello"))},
			"tcp 10.0.0.1:5000 > 10.0.0.2:80 [S.] seq 7 ack 9 len 5"},
		{capture.Packet{Iface: "wg0", Dir: capture.Out, LinkType: capture.LinkRawIP,
			Data: ser(ip6, icmp6, &layers.ICMPv6Echo{Identifier: 42, SeqNumber: 3})},
			"ipv6-icmp 2001:db8::1 > 2001:db8::2 echo request id 42 seq 3"},
		{capture.Packet{Iface: "eth0", Dir: capture.In, LinkType: capture.LinkEthernet,
			Data: ser(&layers.Ethernet{SrcMAC: mac1, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
				&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
					SourceHwAddress: mac1, SourceProtAddress: []byte{10, 0, 0, 1}, DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 0, 0, 2}})},
			"arp who-has 10.0.0.2 tell 10.0.0.1"},
	}
	d := newDecoder()
	for _, c := range cases {
		var p Packet
		if !d.decode(&c.kp, &p) || p.What() != c.want {
			t.Errorf("decoded %q, want %q", p.What(), c.want)
			continue
		}
		// The JSON form reads back to the same packet.
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back Packet
		if err := json.Unmarshal(b, &back); err != nil || back.What() != p.What() || back.Tuple() != p.Tuple() {
			t.Errorf("JSON %s reads back as %q (%v), want %q", b, back.What(), err, p.What())
		}
	}
}
