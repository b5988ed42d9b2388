package kernel

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// ruleMsg builds an RTM_NEWRULE payload as net/core/fib_rules.c:fib_nl_fill_rule writes it.
func ruleMsg(hdr unix.RtMsg, attrs ...*nl.RtAttr) []byte {
	b := (&nl.RtMsg{RtMsg: hdr}).Serialize()
	for _, a := range attrs {
		b = append(b, a.Serialize()...)
	}
	return b
}

func attrU32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func attrPorts(start, end uint16) []byte {
	return binary.NativeEndian.AppendUint16(binary.NativeEndian.AppendUint16(nil, start), end)
}

type ruleCase struct {
	name string
	msg  []byte
	want model.Rule
}

func TestParseRule(t *testing.T) {
	three := 3
	tests := []ruleCase{
		{
			name: "every selector",
			msg: ruleMsg(unix.RtMsg{Family: unix.AF_INET, Src_len: 8, Dst_len: 16, Tos: 0x10, Table: 252,
				Type: unix.FR_ACT_TO_TBL, Flags: unix.FIB_RULE_INVERT},
				nl.NewRtAttr(unix.FRA_TABLE, attrU32(4294967000)),
				nl.NewRtAttr(unix.FRA_PRIORITY, attrU32(100)),
				nl.NewRtAttr(unix.FRA_SRC, []byte{10, 0, 0, 0}),
				nl.NewRtAttr(unix.FRA_DST, []byte{192, 168, 0, 0}),
				nl.NewRtAttr(unix.FRA_IIFNAME, []byte("v1\x00")),
				nl.NewRtAttr(unix.FRA_OIFNAME, []byte("eth0.100\x00")),
				nl.NewRtAttr(unix.FRA_FWMARK, attrU32(0x10)),
				nl.NewRtAttr(unix.FRA_FWMASK, attrU32(0xff)),
				nl.NewRtAttr(unix.FRA_IP_PROTO, []byte{6}),
				nl.NewRtAttr(unix.FRA_SPORT_RANGE, attrPorts(1000, 2000)),
				nl.NewRtAttr(unix.FRA_DPORT_RANGE, attrPorts(80, 80)),
				nl.NewRtAttr(unix.FRA_UID_RANGE, append(attrU32(100), attrU32(200)...)),
				nl.NewRtAttr(unix.FRA_SUPPRESS_PREFIXLEN, attrU32(0xffffffff)),
				nl.NewRtAttr(unix.FRA_SUPPRESS_IFGROUP, attrU32(3)),
				nl.NewRtAttr(unix.FRA_PROTOCOL, []byte{4}),
			),
			want: model.Rule{Family: inet.V4, Priority: 100, Not: true,
				Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("192.168.0.0/16"),
				IIF: "v1", OIF: "eth0.100", Mark: &model.MarkMatch{Value: 0x10, Mask: 0xff}, TOS: 0x10, IPProto: 6,
				SPort: &model.PortRange{Start: 1000, End: 2000}, DPort: &model.PortRange{Start: 80, End: 80},
				UIDRange: &model.UIDRange{Start: 100, End: 200}, SuppressIfGroup: &three,
				Action: model.ActionTable, Table: 4294967000, Protocol: 4},
		},
		{
			name: "no priority attribute is priority 0; table from the header without FRA_TABLE",
			msg:  ruleMsg(unix.RtMsg{Family: unix.AF_INET, Table: 255, Type: unix.FR_ACT_TO_TBL}),
			want: model.Rule{Family: inet.V4, Action: model.ActionTable, Table: 255},
		},
		{
			name: "mark without mask from an old kernel means the whole mark",
			msg: ruleMsg(unix.RtMsg{Family: unix.AF_INET, Type: unix.FR_ACT_TO_TBL},
				nl.NewRtAttr(unix.FRA_FWMARK, attrU32(5)), nl.NewRtAttr(unix.FRA_TABLE, attrU32(100))),
			want: model.Rule{Family: inet.V4, Mark: &model.MarkMatch{Value: 5, Mask: 0xffffffff}, Action: model.ActionTable, Table: 100},
		},
		{
			name: "suppress_prefixlength 0 is kept",
			msg: ruleMsg(unix.RtMsg{Family: unix.AF_INET, Type: unix.FR_ACT_TO_TBL},
				nl.NewRtAttr(unix.FRA_SUPPRESS_PREFIXLEN, attrU32(0)), nl.NewRtAttr(unix.FRA_SUPPRESS_IFGROUP, attrU32(0xffffffff)),
				nl.NewRtAttr(unix.FRA_TABLE, attrU32(254))),
			want: model.Rule{Family: inet.V4, SuppressPrefixLen: new(0), Action: model.ActionTable, Table: 254},
		},
		{
			name: "goto",
			msg: ruleMsg(unix.RtMsg{Family: unix.AF_INET6, Type: unix.FR_ACT_GOTO},
				nl.NewRtAttr(unix.FRA_PRIORITY, attrU32(5)), nl.NewRtAttr(unix.FRA_GOTO, attrU32(110)), nl.NewRtAttr(unix.FRA_TABLE, attrU32(0))),
			want: model.Rule{Family: inet.V6, Priority: 5, Action: model.ActionGoto, Goto: 110},
		},
		{
			name: "ipv4-mapped source of an IPv6 rule stays IPv6",
			msg: ruleMsg(unix.RtMsg{Family: unix.AF_INET6, Src_len: 104, Type: unix.FR_ACT_BLACKHOLE},
				nl.NewRtAttr(unix.FRA_SRC, netip.MustParseAddr("::ffff:10.0.0.0").AsSlice())),
			want: model.Rule{Family: inet.V6, Src: netip.MustParsePrefix("::ffff:10.0.0.0/104"), Action: model.ActionBlackhole},
		},
	}
	for _, act := range []struct {
		typ  uint8
		name string
	}{{unix.FR_ACT_NOP, "nop"}, {unix.FR_ACT_UNREACHABLE, "unreachable"}, {unix.FR_ACT_PROHIBIT, "prohibit"}, {42, "42"}} {
		tests = append(tests, ruleCase{"action " + act.name, ruleMsg(unix.RtMsg{Family: unix.AF_INET, Type: act.typ}),
			model.Rule{Family: inet.V4, Action: act.name}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRule(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("parseRule (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRuleErrors(t *testing.T) {
	for _, tt := range []struct {
		name, want string
		msg        []byte
	}{
		{"short header", "short rule message", []byte{2, 0, 0}},
		{"short priority", "rule attribute 6: 2 bytes, want 4",
			ruleMsg(unix.RtMsg{Family: unix.AF_INET}, nl.NewRtAttr(unix.FRA_PRIORITY, []byte{1, 0}))},
		{"prefix too long", "bad rule source",
			ruleMsg(unix.RtMsg{Family: unix.AF_INET, Src_len: 33}, nl.NewRtAttr(unix.FRA_SRC, []byte{10, 0, 0, 0}))},
		{"truncated attribute", "decoding rule attributes",
			append(ruleMsg(unix.RtMsg{Family: unix.AF_INET}), 8, 0, 6, 0, 1)},
	} {
		if _, err := parseRule(tt.msg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: parseRule error = %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
}

// FuzzParseRule feeds arbitrary rule messages: decoding what the kernel sends must never panic,
// and an accepted prefix is always valid.
func FuzzParseRule(f *testing.F) {
	f.Add(ruleMsg(unix.RtMsg{Family: unix.AF_INET, Src_len: 8, Type: 1},
		nl.NewRtAttr(unix.FRA_SRC, []byte{10, 0, 0, 0}), nl.NewRtAttr(unix.FRA_UID_RANGE, []byte{1, 2, 3})))
	f.Add(ruleMsg(unix.RtMsg{Family: unix.AF_INET6}, nl.NewRtAttr(unix.FRA_SPORT_RANGE, []byte{1})))
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := parseRule(msg)
		if err != nil {
			return
		}
		for _, p := range []netip.Prefix{r.Src, r.Dst} {
			if p != (netip.Prefix{}) && !p.IsValid() {
				t.Fatalf("invalid prefix %v accepted", p)
			}
		}
	})
}

func TestSysctlPath(t *testing.T) {
	for key, want := range map[string]string{
		model.SysctlIPForward:                  "/proc/sys/net/ipv4/ip_forward",
		model.ConfKey("eth0.100", "rp_filter"): "/proc/sys/net/ipv4/conf/eth0.100/rp_filter",
		model.SysctlConntrackMax:               "/proc/sys/net/netfilter/nf_conntrack_max",
	} {
		if got := SysctlPath(key); got != want {
			t.Errorf("SysctlPath(%q) = %q, want %q", key, got, want)
		}
	}
}
