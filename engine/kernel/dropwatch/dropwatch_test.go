package dropwatch

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"roundtrip/engine/capture"
)

func TestFlowKey(t *testing.T) {
	c, s := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	v6 := netip.MustParseAddr("fd00::1")
	for _, tc := range []struct {
		f      Flow
		family uint8
		shape  uint32
		err    string
	}{
		{f: Flow{Proto: unix.IPPROTO_TCP, Src: c, Dst: s, SrcPort: 5000, DstPort: 80}, family: 4},
		{f: Flow{Proto: unix.IPPROTO_TCP, Dst: s, DstPort: 80}, family: 4, shape: wildSaddr | wildSport},
		{f: Flow{Proto: unix.IPPROTO_UDP, SrcPort: 53}, family: 0, shape: wildSaddr | wildDaddr | wildDport},
		{f: Flow{Src: v6}, family: 6, shape: wildProto | wildDaddr | wildSport | wildDport},
		{f: Flow{Proto: unix.IPPROTO_ICMP, Src: netip.MustParseAddr("::ffff:10.0.0.1"), Dst: s}, family: 4, shape: wildSport | wildDport},
		{f: Flow{Src: c, Dst: v6}, err: "different IP versions"},
		{f: Flow{Proto: unix.IPPROTO_ICMP, Dst: s, DstPort: 80}, err: "ports need tcp or udp"},
	} {
		k, shape, err := tc.f.key()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v; want %q", tc.f, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.f, err)
			continue
		}
		if k.Family != tc.family || shape != tc.shape || k.Proto != tc.f.Proto || k.Sport != tc.f.SrcPort || k.Dport != tc.f.DstPort {
			t.Errorf("%s: key %+v shape %05b; want family %d shape %05b", tc.f, k, shape, tc.family, tc.shape)
		}
		if tc.f.Src.IsValid() && wordsAddr(k.Family, k.Saddr) != tc.f.Src.Unmap() {
			t.Errorf("%s: source %v in the key reads back as %v", tc.f, tc.f.Src, wordsAddr(k.Family, k.Saddr))
		}
		if !tc.f.Dst.IsValid() && k.Daddr != [4]uint32{} {
			t.Errorf("%s: an open destination is not zero in the key: %v", tc.f, k.Daddr)
		}
	}
}

func TestAddrWordsNetworkOrder(t *testing.T) {
	// The BPF program copies the header's bytes as they are: 10.0.0.1 is 0a 00 00 01 in memory.
	w := addrWords(netip.MustParseAddr("10.0.0.1"))
	var b [4]byte
	for i := range b {
		b[i] = byte(w[0] >> (8 * i)) // little-endian memory order of the word
	}
	if w[1] != 0 || w[2] != 0 || w[3] != 0 {
		t.Errorf("IPv4 words = %v; want the address in the first word only", w)
	}
	if nativeLittle() && b != [4]byte{10, 0, 0, 1} {
		t.Errorf("10.0.0.1 lays out as %v in memory", b)
	}
	for _, a := range []string{"10.1.2.3", "fd00::1:2", "::1"} {
		ad := netip.MustParseAddr(a)
		if got := wordsAddr(family(ad), addrWords(ad)); got != ad {
			t.Errorf("%s reads back as %s", ad, got)
		}
	}
}

func nativeLittle() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

func TestKallsyms(t *testing.T) {
	const listing = `0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff820552b0 t ip_rcv_finish_core
ffffffff82055800 T ip_rcv
ffffffff82055900 d some_data
ffffffffc0a01000 t nft_do_chain	[nf_tables]
ffffffff81244246 t ip_rcv_finish_core.cold
`
	addrs, names, err := parseKallsyms(strings.NewReader(listing))
	if err != nil {
		t.Fatal(err)
	}
	s := &symbols{addrs: addrs, names: names}
	s.once.Do(func() {}) // loaded already
	for _, tc := range []struct {
		addr uint64
		want string
	}{
		{0xffffffff820552b0 + 0x260, "ip_rcv_finish_core+0x260"},
		{0xffffffff82055800, "ip_rcv+0x0"},
		{0xffffffff82055910, "ip_rcv+0x110"}, // data symbols are not functions
		{0xffffffffc0a01010, "nft_do_chain [nf_tables]+0x10"},
		{0xffffffff81244250, "ip_rcv_finish_core.cold+0xa"},
		{0x1000, "0x1000"},
	} {
		if got := s.resolve(tc.addr).String(); got != tc.want {
			t.Errorf("resolve(%#x) = %s; want %s", tc.addr, got, tc.want)
		}
	}
}

// kernelBTF builds a BTF spec with the drop reason enum and a kfree_skb tracepoint of the
// given parameter types after ctx.
func kernelBTF(t *testing.T, values []btf.EnumValue, params ...btf.Type) *btf.Spec {
	t.Helper()
	enum := &btf.Enum{Name: "skb_drop_reason", Size: 4, Values: values}
	fp := []btf.FuncParam{{Type: &btf.Pointer{Target: &btf.Void{}}}}
	for _, p := range params {
		if p == nil {
			p = enum
		}
		fp = append(fp, btf.FuncParam{Type: p})
	}
	td := &btf.Typedef{Name: "btf_trace_kfree_skb", Type: &btf.Pointer{Target: &btf.FuncProto{Return: &btf.Void{}, Params: fp}}}
	b, err := btf.NewBuilder([]btf.Type{enum, td}, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := b.Spec()
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestReasonsFromBTF(t *testing.T) {
	ptr := &btf.Pointer{Target: &btf.Void{}}
	// Numbers as some kernel has them; the names are what matter.
	spec := kernelBTF(t, []btf.EnumValue{
		{Name: "SKB_NOT_DROPPED_YET", Value: 0}, {Name: "SKB_CONSUMED", Value: 1},
		{Name: "SKB_DROP_REASON_NOT_SPECIFIED", Value: 2}, {Name: "SKB_DROP_REASON_IP_RPFILTER", Value: 21},
		{Name: "SKB_DROP_REASON_MAX", Value: 99}, {Name: "SKB_DROP_REASON_SUBSYS_MASK", Value: 0xffff0000},
	}, ptr, ptr, nil, ptr)
	if err := checkTracepoint(spec); err != nil {
		t.Fatalf("checkTracepoint: %v", err)
	}
	r, err := ReasonsFromBTF(spec)
	if err != nil {
		t.Fatal(err)
	}
	for code, want := range map[uint32]string{1: "SKB_CONSUMED", 21: "IP_RPFILTER", 2: "NOT_SPECIFIED", 99: "REASON_99", 0x30005: "SUBSYS_3_5"} {
		if got := r.Name(code); got != want {
			t.Errorf("Name(%#x) = %s; want %s", code, got, want)
		}
	}

	// A kernel before 5.17: kfree_skb(skb, location), no reason.
	if err := checkTracepoint(kernelBTF(t, nil, ptr, ptr)); !errors.Is(err, errNoReasons) {
		t.Errorf("checkTracepoint without a reason argument = %v; want errNoReasons", err)
	}
	// A third argument that is not the reason.
	if err := checkTracepoint(kernelBTF(t, nil, ptr, ptr, ptr)); !errors.Is(err, errNoReasons) {
		t.Errorf("checkTracepoint with a pointer for the reason = %v; want errNoReasons", err)
	}
}

func TestDescribe(t *testing.T) {
	// The reasons an operator meets first each have words of their own.
	for _, r := range []string{"IP_RPFILTER", "NETFILTER_DROP", "IP_INNOROUTES", "IP_OUTNOROUTES", "NEIGH_FAILED",
		"NEIGH_QUEUEFULL", "NO_SOCKET", "OTHERHOST", "TCP_FLAGS", "TCP_INVALID_SEQUENCE", "PKT_TOO_SMALL", "IP_INHDR",
		"UNICAST_IN_L2_MULTICAST", "IPV6DISABLED", "IP_INADDRERRORS", "TCP_CSUM", "UDP_CSUM", "IP_CSUM", "XFRM_POLICY",
		"IP_NOPROTO", "SOCKET_RCVBUFF", "QDISC_DROP", "CPU_BACKLOG", "TC_INGRESS", "TC_EGRESS", "IP_LOCAL_SOURCE",
		"IP_INVALID_SOURCE", "PKT_TOO_BIG", "NOT_SPECIFIED"} {
		if _, ok := words[r]; !ok {
			t.Errorf("no words for %s", r)
		}
	}
	if len(words) < 25 {
		t.Errorf("%d reasons in words; want at least 25", len(words))
	}
	if got := Describe("TCP_AOFAILURE"); got != "tcp aofailure" {
		t.Errorf("Describe(TCP_AOFAILURE) = %q", got)
	}
	if got := Describe("IP_RPFILTER"); !strings.Contains(got, "rp_filter") {
		t.Errorf("Describe(IP_RPFILTER) = %q", got)
	}
	if w := Explain("NOT_SPECIFIED", Location{Symbol: "ip_error"}); !strings.Contains(w, "route") {
		t.Errorf("Explain(NOT_SPECIFIED in ip_error) = %q", w)
	}
	if w := Explain("NOT_SPECIFIED", Location{Symbol: "tcp_v4_rcv"}); w != Describe("NOT_SPECIFIED") {
		t.Errorf("Explain(NOT_SPECIFIED elsewhere) = %q", w)
	}
}

func TestPacketOf(t *testing.T) {
	e := bpfEvent{Family: 4, Proto: unix.IPPROTO_TCP, L3proto: unix.ETH_P_IP, Len: 60, Sport: 5000, Dport: 80, TcpFlags: 0x12,
		Saddr: addrWords(netip.MustParseAddr("10.0.0.1")), Daddr: addrWords(netip.MustParseAddr("10.0.0.2"))}
	p := packetOf(&e)
	if got := p.String(); got != "tcp 10.0.0.1:5000 > 10.0.0.2:80 [S.] len 60" {
		t.Errorf("String = %q", got)
	}
	j, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(j) != `{"l3":"ipv4","proto":"tcp","src":"10.0.0.1:5000","dst":"10.0.0.2:80","flags":"S.","len":60}` {
		t.Errorf("JSON = %s", j)
	}
	e = bpfEvent{Family: 6, Proto: unix.IPPROTO_ICMPV6, IcmpType: 128, IcmpId: 7, Sport: 1, Len: 64,
		Saddr: addrWords(netip.MustParseAddr("fd00::1")), Daddr: addrWords(netip.MustParseAddr("fd00::2"))}
	p = packetOf(&e)
	if p.Src.Port() != 0 || p.ICMPID != 7 || p.String() != "icmpv6 fd00::1 > fd00::2 type 128 code 0 len 64" {
		t.Errorf("ICMPv6 echo = %+v, %s", p, p)
	}
	if p := packetOf(&bpfEvent{L3proto: unix.ETH_P_ARP, Len: 28}); p.String() != "arp len 28" {
		t.Errorf("ARP = %s", p)
	}
}

func TestDropJSON(t *testing.T) {
	d := Drop{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), NetnsInode: 4026532000, Netns: "rtr", Ifindex: 2, Iface: "lan",
		Reason: "IP_RPFILTER", ReasonCode: 16, Words: Describe("IP_RPFILTER"), Location: Location{Symbol: "ip_rcv_finish_core", Offset: 0x260},
		Packet: Packet{L3: "ipv4", Proto: unix.IPPROTO_UDP, Src: netip.MustParseAddrPort("10.0.0.1:5000"), Dst: netip.MustParseAddrPort("10.0.0.2:53"), Length: 40}}
	j, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-01-02T03:04:05Z","netns_inode":4026532000,"netns":"rtr","ifindex":2,"iface":"lan","reason":"IP_RPFILTER",` +
		`"words":` + strconv.Quote(Describe("IP_RPFILTER")) + `,"location":"ip_rcv_finish_core",` +
		`"packet":{"l3":"ipv4","proto":"udp","src":"10.0.0.1:5000","dst":"10.0.0.2:53","len":40}}`
	if string(j) != want {
		t.Errorf("JSON\n%s\nwant\n%s", j, want)
	}
	if d.Location.String() != "ip_rcv_finish_core+0x260" {
		t.Errorf("location = %s", d.Location)
	}
}

func TestUnsupportedError(t *testing.T) {
	cause := unix.EPERM
	err := loadError(cause)
	if !errors.Is(err, ErrUnsupported) || !errors.Is(err, unix.EPERM) {
		t.Errorf("loadError(EPERM) = %v; want ErrUnsupported wrapping EPERM", err)
	}
	if s := err.Error(); strings.Contains(s, "\n") || !strings.Contains(s, "CAP_BPF") {
		t.Errorf("loadError(EPERM) says %q; want one line naming CAP_BPF", s)
	}
	if s := loadError(errors.New("first\nsecond")).Error(); strings.Contains(s, "\n") || !strings.Contains(s, "first") {
		t.Errorf("loadError of a two-line error says %q", s)
	}
}

// A drop written as JSON reads back the same: summaries are read back by scripts and tests.
func TestDropJSONRoundTrip(t *testing.T) {
	for _, p := range []Packet{
		{L3: "ipv4", Proto: unix.IPPROTO_TCP, Src: netip.MustParseAddrPort("10.0.0.1:5000"), Dst: netip.MustParseAddrPort("10.0.0.2:80"), Flags: capture.TCPSYN | capture.TCPACK, Length: 60},
		{L3: "ipv6", Proto: unix.IPPROTO_ICMPV6, Src: netip.MustParseAddrPort("[fd00::1]:0"), Dst: netip.MustParseAddrPort("[fd00::2]:0"), ICMPType: 128, ICMPID: 7, Length: 64},
		{L3: "ipv4", Proto: 47, Src: netip.MustParseAddrPort("10.0.0.1:0"), Dst: netip.MustParseAddrPort("10.0.0.2:0"), Length: 100},
		{L3: "arp", Length: 42},
	} {
		d := Drop{Reason: "IP_RPFILTER", Location: Location{Symbol: "ip_rcv_finish_core"}, Packet: p}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var got Drop
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if got.Packet != p || got.Location.Symbol != "ip_rcv_finish_core" || got.Reason != d.Reason {
			t.Errorf("%s read back as %+v", b, got)
		}
	}
}

// TestDropTextMatchesFmt: the text built without fmt is what fmt wrote before, for every
// kind of packet and location.
func TestDropTextMatchesFmt(t *testing.T) {
	ref := func(d Drop) string {
		where := d.Iface
		if where == "" {
			where = fmt.Sprintf("ifindex %d", d.Ifindex)
		}
		loc := fmt.Sprintf("0x%x", d.Location.Addr)
		if d.Location.Symbol != "" {
			loc = fmt.Sprintf("%s+0x%x", d.Location.Symbol, d.Location.Offset)
		}
		p := d.Packet
		pkt := fmt.Sprintf("%s len %d", p.L3, p.Length)
		if p.Src.Addr().IsValid() {
			pkt = fmt.Sprintf("%s %s > %s", ProtoName(p.Proto), endpoint(p.Proto, p.Src), endpoint(p.Proto, p.Dst))
			switch p.Proto {
			case unix.IPPROTO_TCP:
				pkt += " [" + FlagString(p.Flags) + "]"
			case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
				pkt += fmt.Sprintf(" type %d code %d", p.ICMPType, p.ICMPCode)
			}
			pkt += fmt.Sprintf(" len %d", p.Length)
		}
		return fmt.Sprintf("%s (%s) on %s in %s: %s", d.Reason, d.Words, where, loc, pkt)
	}
	src, dst := netip.MustParseAddrPort("10.0.0.1:5000"), netip.MustParseAddrPort("[2001:db8::2]:80")
	for _, d := range []Drop{
		{Reason: "NETFILTER_DROP", Words: "w", Iface: "lan", Location: Location{Symbol: "nft_do_chain", Offset: 0x1a4},
			Packet: Packet{L3: "ipv4", Proto: unix.IPPROTO_TCP, Src: src, Dst: dst, Flags: 0x12, Length: 60}},
		{Reason: "SOCKET_RCVBUFF", Ifindex: 7, Location: Location{Addr: 0xffffffff81000000},
			Packet: Packet{L3: "ipv6", Proto: unix.IPPROTO_UDP, Src: src, Dst: dst, Length: 1200}},
		{Reason: "IP_INHDR", Iface: "eth0", Packet: Packet{L3: "ipv4", Proto: unix.IPPROTO_ICMP, Src: src, Dst: dst, ICMPType: 8, ICMPCode: 0, Length: 84}},
		{Reason: "NOT_SPECIFIED", Iface: "eth0", Packet: Packet{L3: "arp", Length: 42}},
		{Reason: "X", Iface: "eth0", Packet: Packet{L3: "ipv4", Proto: 47, Src: src, Dst: dst, Length: 100}},
	} {
		if got, want := d.String(), ref(d); got != want {
			t.Errorf("got  %q\nwant %q", got, want)
		}
	}
}
