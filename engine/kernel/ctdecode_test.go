package kernel_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	. "roundtrip/engine/kernel"
	"roundtrip/engine/lab"
)

// TestPrivilegedConntrackDecodeMatchesTiMo: the listing's own decoder of ctnetlink messages
// gives, for every entry of a table with TCP (protoinfo), ICMP and UDP from real traffic with
// counters, and made-up IPv4 and IPv6 entries with NAT, marks and zones, the entry ti-mo's
// decoder and convertFlow give.
func TestPrivilegedConntrackDecodeMatchesTiMo(t *testing.T) {
	l := lab.NewPrefixed(t, "hst")
	a, b := l.NS("a"), l.NS("b")
	l.Veth(a, "eth0", b, "eth1")
	a.Addr("eth0", "10.72.202.1/24")
	b.Addr("eth1", "10.72.202.2/24")
	b.Sysctl("net.netfilter.nf_conntrack_acct", "1")
	b.Run("iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT")
	b.Listen("10.72.202.2:8080")
	conn, err := a.Dial("10.72.202.2:8080", "10.72.202.1:40300", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ns := Namespace{Name: b.Name}
	made := []conntrack.Flow{
		conntrack.NewFlow(unix.IPPROTO_UDP, 0, netip.MustParseAddr("10.97.0.1"), netip.MustParseAddr("10.96.0.1"), 5000, 53, 600, 0),
		conntrack.NewFlow(unix.IPPROTO_UDP, 0, netip.MustParseAddr("10.97.0.2"), netip.MustParseAddr("10.96.0.2"), 5001, 53, 600, 0xdeadbeef),
		conntrack.NewFlow(unix.IPPROTO_UDP, 0, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 5002, 443, 600, 7),
		conntrack.NewFlow(unix.IPPROTO_SCTP, 0, netip.MustParseAddr("10.97.0.3"), netip.MustParseAddr("10.96.0.3"), 5003, 80, 600, 0),
	}
	for _, v6 := range []bool{false, true} {
		src, dst, typ, reply, proto := "10.97.0.4", "10.96.0.4", uint8(8), uint8(0), uint8(unix.IPPROTO_ICMP)
		if v6 {
			src, dst, typ, reply, proto = "2001:db8::4", "2001:db8::5", 128, 129, unix.IPPROTO_ICMPV6
		}
		f := conntrack.NewFlow(proto, 0, netip.MustParseAddr(src), netip.MustParseAddr(dst), 0, 0, 30, 0)
		f.TupleOrig.Proto = conntrack.ProtoTuple{Protocol: proto, ICMPv4: !v6, ICMPv6: v6, ICMPType: typ, ICMPID: 77}
		f.TupleReply.Proto = conntrack.ProtoTuple{Protocol: proto, ICMPv4: !v6, ICMPv6: v6, ICMPType: reply, ICMPID: 77}
		made = append(made, f)
	}
	made[1].TupleReply.IP.DestinationAddress = netip.MustParseAddr("10.95.0.1")
	made[1].TupleReply.Proto.DestinationPort = 20000
	made[2].Zone = 5
	if err := ns.Do(func() error {
		c, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		for _, f := range made {
			if err := c.Create(f); err != nil {
				t.Logf("creating %v: %v", f.TupleOrig, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	msgs, err := ConntrackMessagesForTest(ns)
	if err != nil {
		t.Fatal(err)
	}
	protos := map[uint8]int{}
	fast := 0
	for _, m := range msgs {
		got, ok, want, err := DecodeEntryBothForTest(m)
		if err != nil {
			t.Fatalf("ti-mo cannot decode a message of the dump: %v", err)
		}
		protos[want.Orig.Proto]++
		if !ok {
			t.Logf("left to ti-mo: %+v", want)
			continue
		}
		fast++
		if d := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.AddrPort) bool { return x == y })); d != "" {
			t.Errorf("decoded entry differs from ti-mo's (-ti-mo +own):\n%s", d)
		}
	}
	t.Logf("%d messages, %d decoded by the listing's decoder, protocols %v", len(msgs), fast, protos)
	if protos[unix.IPPROTO_TCP] == 0 || protos[unix.IPPROTO_UDP] < 3 || protos[unix.IPPROTO_ICMP] == 0 || protos[unix.IPPROTO_ICMPV6] == 0 || fast < len(msgs)-1 {
		t.Fatalf("the table lacks what the test needs or the decoder gave up: protocols %v, %d of %d decoded", protos, fast, len(msgs))
	}
}
