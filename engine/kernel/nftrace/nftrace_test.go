package nftrace

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel/dropwatch"
)

// ipv4TCP is the network and transport header of a SYN from 10.0.0.1:5000 to 10.0.0.2:80.
func ipv4TCP() (network, transport []byte) {
	network = []byte{0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
	transport = make([]byte, 20)
	binary.BigEndian.PutUint16(transport, 5000)
	binary.BigEndian.PutUint16(transport[2:], 80)
	transport[12], transport[13] = 0x50, 0x02
	return network, transport
}

func TestDecodeTrace(t *testing.T) {
	network, transport := ipv4TCP()
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.String(unix.NFTA_TRACE_TABLE, "filter")
	ae.String(unix.NFTA_TRACE_CHAIN, "FORWARD")
	ae.Uint64(unix.NFTA_TRACE_RULE_HANDLE, 7)
	ae.Uint32(unix.NFTA_TRACE_TYPE, unix.NFT_TRACETYPE_RULE)
	ae.Uint32(unix.NFTA_TRACE_ID, 0xdeadbeef)
	ae.Nested(unix.NFTA_TRACE_VERDICT, func(nae *netlink.AttributeEncoder) error {
		nae.Uint32(unix.NFTA_VERDICT_CODE, uint32(0xfffffffd)) // NFT_JUMP
		nae.String(unix.NFTA_VERDICT_CHAIN, "DOCKER")
		return nil
	})
	ae.Uint32(unix.NFTA_TRACE_IIF, 3)
	ae.Uint32(unix.NFTA_TRACE_MARK, 0x100)
	ae.Bytes(unix.NFTA_TRACE_NETWORK_HEADER, network)
	ae.Bytes(unix.NFTA_TRACE_TRANSPORT_HEADER, transport)
	ae.Uint32(attrTraceCtID, 42)
	ae.Uint8(attrTraceCtDirection, 1)
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := decodeTrace(append([]byte{unix.NFPROTO_IPV4, 0, 0, 0}, attrs...))
	if err != nil {
		t.Fatal(err)
	}
	want := trace{family: unix.NFPROTO_IPV4, id: 0xdeadbeef, typ: unix.NFT_TRACETYPE_RULE, table: "filter", chain: "FORWARD",
		handle: 7, verdict: unix.NFT_JUMP, hasVerdict: true, target: "DOCKER", iif: 3, mark: 0x100,
		network: network, transport: transport, ctID: 42, hasCt: true, ctDirection: 1}
	if fmt.Sprint(tr) != fmt.Sprint(want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", tr, want)
	}
	if _, err := decodeTrace([]byte{2, 0}); err == nil {
		t.Error("a two-byte trace message decoded")
	}
	if familyName(tr.family) != "ip" || verdictName(tr.verdict) != "jump" || typeName(tr.typ) != "rule" {
		t.Errorf("names: %s %s %s", familyName(tr.family), verdictName(tr.verdict), typeName(tr.typ))
	}
	for v, want := range map[int32]string{0: "drop", 1: "accept", -1: "continue", -5: "return", 3 | 5<<16: "queue", 77: "verdict 77"} {
		if got := verdictName(v); got != want {
			t.Errorf("verdictName(%d) = %s; want %s", v, got, want)
		}
	}
}

func TestDecodePacket(t *testing.T) {
	network, transport := ipv4TCP()
	if p := decodePacket(network, transport); p.String() != "tcp 10.0.0.1:5000 > 10.0.0.2:80 [S] len 60" {
		t.Errorf("IPv4 TCP = %s", p)
	}
	// IPv6 with a hop-by-hop header, then UDP.
	v6 := make([]byte, 48)
	v6[0], v6[6] = 0x60, unix.IPPROTO_HOPOPTS
	binary.BigEndian.PutUint16(v6[4:], 8+8+4)
	src, dst := netip.MustParseAddr("fd00::1").As16(), netip.MustParseAddr("fd00::2").As16()
	copy(v6[8:], src[:])
	copy(v6[24:], dst[:])
	v6[40] = unix.IPPROTO_UDP
	udp := []byte{0x13, 0x88, 0, 53, 0, 12, 0, 0}
	if p := decodePacket(v6, udp); p.String() != "udp [fd00::1]:5000 > [fd00::2]:53 len 60" {
		t.Errorf("IPv6 UDP after hop-by-hop = %s", p)
	}
	icmp := []byte{0x45, 0, 0, 84, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
	if p := decodePacket(icmp, []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1}); p.ICMPType != 8 || p.ICMPID != 0x1234 || p.Src.Port() != 0 {
		t.Errorf("ICMP echo = %+v", p)
	}
	if p := decodePacket([]byte{0x45}, nil); p.L3 != "" || p.Src.IsValid() {
		t.Errorf("a truncated header decoded as %+v", p)
	}
}

func TestFlowMatches(t *testing.T) {
	c, s := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	for _, tc := range []struct {
		f     dropwatch.Flow
		rules int
		err   string
	}{
		{dropwatch.Flow{Proto: unix.IPPROTO_TCP, Src: c, Dst: s, SrcPort: 5000, DstPort: 80}, 2, ""},
		{dropwatch.Flow{Proto: unix.IPPROTO_UDP, Dst: s, DstPort: 53}, 2, ""},
		{dropwatch.Flow{DstPort: 53}, 4, ""},              // tcp and udp, both directions
		{dropwatch.Flow{Proto: unix.IPPROTO_ICMP}, 1, ""}, // the same both ways
		{dropwatch.Flow{Src: c, Dst: netip.MustParseAddr("fd00::1")}, 0, "different IP versions"},
		{dropwatch.Flow{Proto: unix.IPPROTO_ICMP, DstPort: 1}, 0, "ports need tcp or udp"},
	} {
		m, err := flowMatches(tc.f)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v; want %q", tc.f, err, tc.err)
			}
			continue
		}
		if err != nil || len(m) != tc.rules {
			t.Errorf("%s: %d rules, %v; want %d", tc.f, len(m), err, tc.rules)
		}
	}
	// The forward direction of a full tuple: nfproto, l4proto, both addresses, both ports.
	m, _ := flowMatches(dropwatch.Flow{Proto: unix.IPPROTO_TCP, Src: c, Dst: s, SrcPort: 5000, DstPort: 80})
	var offs []string
	for _, e := range m[0] {
		if p, ok := e.(*expr.Payload); ok {
			offs = append(offs, fmt.Sprintf("%d@%d+%d", p.Base, p.Offset, p.Len))
		}
	}
	if got := strings.Join(offs, " "); got != "1@12+4 1@16+4 2@0+2 2@2+2" {
		t.Errorf("payload matches = %s", got)
	}
	rev := m[1][len(m[1])-1].(*expr.Cmp) // the reply's destination port is the source's
	if binary.BigEndian.Uint16(rev.Data) != 5000 {
		t.Errorf("reverse rule's last match = %v; want dport 5000", rev.Data)
	}
}

func TestParseNftChain(t *testing.T) {
	const listing = `table ip filter { # handle 3
	chain FORWARD { # handle 1
		type filter hook forward priority filter; policy accept;
		ip daddr 10.0.0.1 tcp dport 80 counter packets 12 bytes 720 drop # handle 2
		ct state invalid  counter packets 0 bytes 0 drop # handle 5
		jump DOCKER # handle 4
	}
}
`
	rules, order := parseNftChain([]byte(listing))
	if fmt.Sprint(order) != "[2 5 4]" || rules[2].Nft != "ip daddr 10.0.0.1 tcp dport 80 counter drop" || rules[4].Nft != "jump DOCKER" {
		t.Fatalf("parsed %v in order %v", rules, order)
	}
	addIptables(rules, order, []byte("-P FORWARD ACCEPT\n-A FORWARD -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j DROP\n-A FORWARD -m conntrack --ctstate INVALID -j DROP\n-A FORWARD -j DOCKER\n"))
	if rules[5].Iptables != "-A FORWARD -m conntrack --ctstate INVALID -j DROP" {
		t.Errorf("iptables text of handle 5 = %q", rules[5].Iptables)
	}
	// Counts that disagree (a rule iptables cannot show): no pairing rather than a wrong one.
	rules, order = parseNftChain([]byte(listing))
	addIptables(rules, order, []byte("-A FORWARD -j DOCKER\n"))
	if rules[4].Iptables != "" {
		t.Errorf("paired %q with counts that disagree", rules[4].Iptables)
	}
	for _, bad := range []string{"x; flush ruleset", "a b", "", `"q"`, strings.Repeat("a", 300)} {
		if nftName.MatchString(bad) {
			t.Errorf("%q passes as a name for nft's command line", bad)
		}
	}
}

func TestMarkers(t *testing.T) {
	t.Setenv(StateDirEnv, t.TempDir())
	table, err := newTableName()
	if err != nil {
		t.Fatal(err)
	}
	if !tableName.MatchString(table) || !ownerAlive(table) {
		t.Fatalf("own table %s: matches %v, alive %v", table, tableName.MatchString(table), ownerAlive(table))
	}
	// A pid that runs, with another start time: a reused pid, not the owner.
	if ownerAlive(fmt.Sprintf("%s%d_1_1", tablePrefix, os.Getpid())) {
		t.Error("a table of this pid with another start time counts as alive")
	}
	m := Marker{Netns: "rt-x", Family: "inet", Table: table, PID: os.Getpid(), Created: time.Now().UTC().Truncate(time.Second)}
	path, err := writeMarker(m)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("marker directory: %v, %v; want mode 0700", st.Mode(), err)
	}
	got, err := Markers()
	if err != nil || len(got) != 1 || got[0] != m {
		t.Fatalf("Markers = %+v, %v; want %+v", got, err, m)
	}
	// Planted or damaged markers are errors, not trusted.
	dir := filepath.Dir(path)
	os.Symlink(path, filepath.Join(dir, tablePrefix+"1_1_1.json"))
	os.WriteFile(filepath.Join(dir, tablePrefix+"2_1_1.json"), []byte(`{"netns":"../etc","family":"inet","table":"roundtrip_trace_2_1_1","pid":2}`), 0o600)
	os.WriteFile(filepath.Join(dir, tablePrefix+"3_1_1.json"), []byte(`{"netns":"","family":"inet","table":"filter","pid":3}`), 0o600)
	os.WriteFile(filepath.Join(dir, tablePrefix+"4_1_1.json"), []byte(`{"netns":"","family":"inet","table":"roundtrip_trace_4_1_1","pid":4,"cmd":"x"}`), 0o600)
	got, err = Markers()
	if len(got) != 1 || err == nil {
		t.Fatalf("Markers with planted files = %+v, %v; want the one good marker and errors", got, err)
	}
	for _, want := range []string{"not a regular file", "bad namespace name", "not a trace table", "unknown field"} {
		if !strings.Contains(err.Error(), want) && !(want == "not a regular file" && strings.Contains(err.Error(), "too many levels")) {
			t.Errorf("errors %q do not say %q", err, want)
		}
	}
	if err := removeMarker(table); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("marker still there: %v", err)
	}
}

func TestStepJSON(t *testing.T) {
	network, transport := ipv4TCP()
	s := Step{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), ID: 9, Family: "ip", Table: "filter", Chain: "FORWARD", Handle: 2,
		Kind: "rule", Verdict: "drop", Rule: RuleText{Nft: "tcp dport 80 counter drop", Iptables: "-A FORWARD -p tcp -m tcp --dport 80 -j DROP"},
		Iif: 3, IifName: "lan", Conntrack: 42, CtDirection: "original", Packet: decodePacket(network, transport)}
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-01-02T03:04:05Z","trace_id":9,"family":"ip","table":"filter","chain":"FORWARD","handle":2,"kind":"rule",` +
		`"verdict":"drop","rule":"-A FORWARD -p tcp -m tcp --dport 80 -j DROP","iif":"lan","conntrack_id":42,"ct_direction":"original",` +
		`"packet":{"l3":"ipv4","proto":"tcp","src":"10.0.0.1:5000","dst":"10.0.0.2:80","flags":"S","len":60}}`
	if string(j) != want {
		t.Errorf("JSON\n%s\nwant\n%s", j, want)
	}
	// A policy step has no rule.
	j, _ = json.Marshal(Step{Family: "inet", Table: "t", Chain: "c", Kind: "policy", Verdict: "accept"})
	if strings.Contains(string(j), `"rule"`) || strings.Contains(string(j), `"handle"`) {
		t.Errorf("policy step JSON = %s", j)
	}
}
