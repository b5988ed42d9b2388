package iptables

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"roundtrip/engine/inet"
)

// captures are real iptables-save outputs made by testdata/iptables/capture.sh.
var captures = []struct {
	file   string
	family inet.Family
}{
	{"legacy-v4.txt", inet.V4},
	{"legacy-v4-nocounters.txt", inet.V4},
	{"legacy-v4-kube-docker.txt", inet.V4},
	{"legacy-v6.txt", inet.V6},
	{"legacy-v6-nocounters.txt", inet.V6},
	{"nft-v4.txt", inet.V4},
	{"nft-v4-nocounters.txt", inet.V4},
	{"nft-v4-kube-docker.txt", inet.V4},
	{"nft-v4-native-rules.txt", inet.V4},
	{"nft-v6.txt", inet.V6},
}

func readCapture(t testing.TB, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "iptables", file))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func parseCapture(t testing.TB, file string, f inet.Family) *Ruleset {
	t.Helper()
	tables, err := ParseSave(f, readCapture(t, file))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return &Ruleset{Tables: tables}
}

// findRule returns the rule of table/chain whose Spec contains every one of the words, and
// fails the test unless there is exactly one.
func findRule(t *testing.T, nf *Ruleset, f inet.Family, table, chain string, words ...string) Rule {
	t.Helper()
	c := nf.Table(f, table).Chain(chain)
	if c == nil {
		t.Fatalf("no chain %s in table %s (%s)", chain, table, f)
	}
	var found []Rule
	for _, r := range c.Rules {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(r.Spec, w)
		}
		if ok {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s/%s: %d rules contain %q, want 1", table, chain, len(found), words)
	}
	return found[0]
}

func tableNames(nf *Ruleset) []string {
	var names []string
	for _, t := range nf.Tables {
		names = append(names, t.Name)
	}
	return names
}

func chainNames(t *Table) []string {
	var names []string
	for _, c := range t.Chains {
		names = append(names, c.Name)
	}
	return names
}

func opt(name string, not bool, values ...string) Option {
	return Option{Name: name, Not: not, Values: values}
}

func ptr[T any](v T) *T { return &v }

// checkBasicV4 asserts fields of the ruleset capture.sh writes with basic(), which both backends
// must read the same way.
func checkBasicV4(t *testing.T, nf *Ruleset, counters bool) {
	filter := nf.Table(inet.V4, "filter")
	if got, want := chainNames(filter), []string{"INPUT", "FORWARD", "OUTPUT", "INBOUND", "LOGDROP"}; !slices.Equal(got, want) {
		t.Errorf("filter chains = %q, want %q", got, want)
	}
	if p := filter.Chain("FORWARD").Policy; p != "DROP" {
		t.Errorf("FORWARD policy = %q, want DROP", p)
	}
	if p := filter.Chain("INBOUND").Policy; p != "" {
		t.Errorf("user chain INBOUND policy = %q, want empty", p)
	}
	if n := len(filter.Chain("INBOUND").Rules); n != 8 {
		t.Errorf("INBOUND has %d rules, want 8", n)
	}

	lo := findRule(t, nf, inet.V4, "filter", "INPUT", "-i lo")
	if diff := cmp.Diff(Rule{Spec: "-i lo -j ACCEPT", In: &NegStr{Value: "lo"}, Target: "ACCEPT"}, Rule{Spec: lo.Spec, In: lo.In, Target: lo.Target}); diff != "" {
		t.Errorf("-i lo rule (-want +got):\n%s", diff)
	}
	if counters && (lo.Packets != 6 || lo.Bytes != 273) {
		t.Errorf("-i lo counters = %d:%d, want 6:273 (from capture.sh's traffic)", lo.Packets, lo.Bytes)
	}
	if !counters && (lo.Packets != 0 || lo.Bytes != 0) {
		t.Errorf("-i lo counters = %d:%d without -c, want 0:0", lo.Packets, lo.Bytes)
	}

	want := []struct {
		table, chain string
		words        []string
		rule         Rule
	}{
		{"filter", "INPUT", []string{"INBOUND"}, Rule{Spec: "-g INBOUND", Target: "INBOUND", Goto: true}},
		{"filter", "INBOUND", []string{"--dports 22,80,443"}, Rule{
			Spec:  `-p tcp -m multiport --dports 22,80,443 -m comment --comment "roundtrip: a \"b\" c" -j ACCEPT`,
			Proto: &NegStr{Value: "tcp"},
			Matches: []Match{
				{Name: "multiport", Options: []Option{opt("dports", false, "22,80,443")}},
				{Name: "comment", Options: []Option{opt("comment", false, `roundtrip: a "b" c`)}},
			},
			Target: "ACCEPT",
		}},
		{"filter", "INBOUND", []string{"! --dport 22"}, Rule{
			Spec:  "-p tcp -m tcp ! --dport 22 -m comment --comment plain -j LOGDROP",
			Proto: &NegStr{Value: "tcp"},
			Matches: []Match{
				{Name: "tcp", Options: []Option{opt("dport", true, "22")}},
				{Name: "comment", Options: []Option{opt("comment", false, "plain")}},
			},
			Target: "LOGDROP",
		}},
		{"filter", "INBOUND", []string{"addrtype"}, Rule{
			Spec:    "-m addrtype ! --src-type LOCAL --dst-type LOCAL -j ACCEPT",
			Matches: []Match{{Name: "addrtype", Options: []Option{opt("src-type", true, "LOCAL"), opt("dst-type", false, "LOCAL")}}},
			Target:  "ACCEPT",
		}},
		{"filter", "INBOUND", []string{"recent"}, Rule{
			Spec: "-m recent --set --name probe --mask 255.255.255.255 --rsource",
			Matches: []Match{{Name: "recent", Options: []Option{
				opt("set", false), opt("name", false, "probe"), opt("mask", false, "255.255.255.255"), opt("rsource", false),
			}}},
		}},
		{"filter", "INBOUND", []string{"-j LOG "}, Rule{
			Spec:       `-m limit --limit 5/min -j LOG --log-prefix "rt drop: "`,
			Matches:    []Match{{Name: "limit", Options: []Option{opt("limit", false, "5/min")}}},
			Target:     "LOG",
			TargetOpts: []Option{opt("log-prefix", false, "rt drop: ")},
		}},
		{"filter", "INBOUND", []string{"REJECT"}, Rule{
			Spec: "-j REJECT --reject-with icmp-port-unreachable", Target: "REJECT",
			TargetOpts: []Option{opt("reject-with", false, "icmp-port-unreachable")},
		}},
		{"filter", "FORWARD", []string{"--tcp-flags"}, Rule{
			Spec:  "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m length --length 0:100 -j ACCEPT",
			Proto: &NegStr{Value: "tcp"},
			Matches: []Match{
				{Name: "tcp", Options: []Option{opt("tcp-flags", false, "FIN,SYN,RST,ACK", "SYN")}},
				{Name: "length", Options: []Option{opt("length", false, "0:100")}},
			},
			Target: "ACCEPT",
		}},
		{"filter", "FORWARD", []string{"-f -j"}, Rule{Spec: "-f -j DROP", Fragment: ptr(true), Target: "DROP"}},
		{"filter", "FORWARD", []string{"10.9.0.0"}, Rule{Spec: "-d 10.9.0.0/16 -j ACCEPT", Dst: &NegAddr{Prefix: "10.9.0.0/16"}, Target: "ACCEPT"}},
		{"filter", "FORWARD", []string{"-i eth1 -o eth0"}, Rule{
			Spec: "-i eth1 -o eth0 -m conntrack --ctstate NEW,RELATED,ESTABLISHED -j ACCEPT",
			In:   &NegStr{Value: "eth1"}, Out: &NegStr{Value: "eth0"},
			Matches: []Match{{Name: "conntrack", Options: []Option{opt("ctstate", false, "NEW,RELATED,ESTABLISHED")}}},
			Target:  "ACCEPT",
		}},
		{"nat", "PORTFWD", []string{"8080"}, Rule{
			Spec: "-i eth0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.10.5:80",
			In:   &NegStr{Value: "eth0"}, Proto: &NegStr{Value: "tcp"},
			Matches:    []Match{{Name: "tcp", Options: []Option{opt("dport", false, "8080")}}},
			Target:     "DNAT",
			TargetOpts: []Option{opt("to-destination", false, "192.168.10.5:80")},
		}},
		{"nat", "PORTFWD", []string{"! -i lo"}, Rule{
			Spec: "! -i lo -p udp -m multiport --dports 53,5353 -j DNAT --to-destination 192.168.10.53",
			In:   &NegStr{Not: true, Value: "lo"}, Proto: &NegStr{Value: "udp"},
			Matches:    []Match{{Name: "multiport", Options: []Option{opt("dports", false, "53,5353")}}},
			Target:     "DNAT",
			TargetOpts: []Option{opt("to-destination", false, "192.168.10.53")},
		}},
		{"nat", "POSTROUTING", []string{"MASQUERADE"}, Rule{
			Spec: "-s 192.168.10.0/24 ! -d 192.168.0.0/16 -o eth0 -j MASQUERADE",
			Src:  &NegAddr{Prefix: "192.168.10.0/24"}, Dst: &NegAddr{Not: true, Prefix: "192.168.0.0/16"},
			Out: &NegStr{Value: "eth0"}, Target: "MASQUERADE",
		}},
		{"nat", "POSTROUTING", []string{"SNAT"}, Rule{
			Spec: "-s 10.20.0.0/16 -o eth1 -j SNAT --to-source 198.18.0.1 --random",
			Src:  &NegAddr{Prefix: "10.20.0.0/16"}, Out: &NegStr{Value: "eth1"}, Target: "SNAT",
			TargetOpts: []Option{opt("to-source", false, "198.18.0.1"), opt("random", false)},
		}},
		{"nat", "PREROUTING", []string{"REDIRECT"}, Rule{
			Spec: "-i eth2 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128",
			In:   &NegStr{Value: "eth2"}, Proto: &NegStr{Value: "tcp"},
			Matches:    []Match{{Name: "tcp", Options: []Option{opt("dport", false, "80")}}},
			Target:     "REDIRECT",
			TargetOpts: []Option{opt("to-ports", false, "3128")},
		}},
		{"mangle", "PREROUTING", []string{"--restore-mark"}, Rule{
			Spec: "-j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff", Target: "CONNMARK",
			TargetOpts: []Option{opt("restore-mark", false), opt("nfmask", false, "0xff"), opt("ctmask", false, "0xff")},
		}},
		{"mangle", "PREROUTING", []string{"--save-mark"}, Rule{
			Spec:       "-m mark --mark 0x2/0xff -j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff",
			Matches:    []Match{{Name: "mark", Options: []Option{opt("mark", false, "0x2/0xff")}}},
			Target:     "CONNMARK",
			TargetOpts: []Option{opt("save-mark", false), opt("nfmask", false, "0xff"), opt("ctmask", false, "0xff")},
		}},
		{"mangle", "PREROUTING", []string{"! --mark"}, Rule{
			Spec:    "-m mark ! --mark 0x0/0xff -j RETURN",
			Matches: []Match{{Name: "mark", Options: []Option{opt("mark", true, "0x0/0xff")}}},
			Target:  "RETURN",
		}},
		{"mangle", "PREROUTING", []string{"0x3/"}, Rule{
			Spec: "-i eth1 -m conntrack --ctstate NEW -j MARK --set-xmark 0x3/0xffffffff",
			In:   &NegStr{Value: "eth1"},
			// iptables-save prints --set-mark 0x3 as the --set-xmark it is in the kernel.
			Matches:    []Match{{Name: "conntrack", Options: []Option{opt("ctstate", false, "NEW")}}},
			Target:     "MARK",
			TargetOpts: []Option{opt("set-xmark", false, "0x3/0xffffffff")},
		}},
		{"raw", "PREROUTING", []string{"--notrack"}, Rule{
			Spec: "-p udp -m udp --dport 123 -j CT --notrack", Proto: &NegStr{Value: "udp"},
			Matches: []Match{{Name: "udp", Options: []Option{opt("dport", false, "123")}}},
			Target:  "CT", TargetOpts: []Option{opt("notrack", false)},
		}},
	}
	for _, w := range want {
		got := findRule(t, nf, inet.V4, w.table, w.chain, w.words...)
		got.Packets, got.Bytes = 0, 0
		if diff := cmp.Diff(w.rule, got); diff != "" {
			t.Errorf("%s/%s rule with %q (-want +got):\n%s", w.table, w.chain, w.words, diff)
		}
	}
	// A rule with no match and no target only counts.
	var empty int
	for _, r := range filter.Chain("FORWARD").Rules {
		if r.Spec == "" {
			empty++
			if diff := cmp.Diff(Rule{}, r); diff != "" {
				t.Errorf("bare -A FORWARD rule (-want +got):\n%s", diff)
			}
		}
	}
	if empty != 1 {
		t.Errorf("%d bare -A FORWARD rules, want 1", empty)
	}
}

func TestParseIPTablesSaveBasicV4(t *testing.T) {
	for _, c := range []struct {
		file     string
		tables   []string
		counters bool
	}{
		{"legacy-v4.txt", []string{"raw", "filter", "mangle", "nat"}, true},
		{"legacy-v4-nocounters.txt", []string{"raw", "filter", "mangle", "nat"}, false},
		{"nft-v4.txt", []string{"mangle", "raw", "filter", "nat"}, true},
		{"nft-v4-nocounters.txt", []string{"mangle", "raw", "filter", "nat"}, false},
	} {
		t.Run(c.file, func(t *testing.T) {
			nf := parseCapture(t, c.file, inet.V4)
			if got := tableNames(nf); !slices.Equal(got, c.tables) {
				t.Errorf("tables = %q, want %q (file order)", got, c.tables)
			}
			for _, tb := range nf.Tables {
				if tb.Family != inet.V4 {
					t.Errorf("table %s family = %v, want inet", tb.Name, tb.Family)
				}
			}
			checkBasicV4(t, nf, c.counters)
		})
	}
}

func TestParseIPTablesSaveBasicV6(t *testing.T) {
	for _, file := range []string{"legacy-v6.txt", "legacy-v6-nocounters.txt", "nft-v6.txt"} {
		t.Run(file, func(t *testing.T) {
			nf := parseCapture(t, file, inet.V6)
			input := nf.Table(inet.V6, "filter").Chain("INPUT")
			if input.Policy != "DROP" || input.Packets != 3 || input.Bytes != 240 {
				t.Errorf("ip6 filter INPUT = %s [%d:%d], want DROP [3:240] (the SYNs to [::1]:22)", input.Policy, input.Packets, input.Bytes)
			}
			want := []struct {
				table, chain string
				words        []string
				rule         Rule
			}{
				{"filter", "INPUT", []string{"! -s"}, Rule{
					Spec: "! -s 2001:db8::/32 -i eth0 -j V6IN",
					Src:  &NegAddr{Not: true, Prefix: "2001:db8::/32"}, In: &NegStr{Value: "eth0"}, Target: "V6IN",
				}},
				{"filter", "V6IN", []string{"ssh"}, Rule{
					Spec: `-p tcp -m tcp --dport 22 -m comment --comment "ssh \\ back" -j ACCEPT`, Proto: &NegStr{Value: "tcp"},
					Matches: []Match{
						{Name: "tcp", Options: []Option{opt("dport", false, "22")}},
						{Name: "comment", Options: []Option{opt("comment", false, `ssh \ back`)}},
					},
					Target: "ACCEPT",
				}},
				{"nat", "PREROUTING", []string{"DNAT"}, Rule{
					Spec: "-d 2001:db8::1/128 -p tcp -m tcp --dport 443 -j DNAT --to-destination [fd00::5]:8443",
					Dst:  &NegAddr{Prefix: "2001:db8::1/128"}, Proto: &NegStr{Value: "tcp"},
					Matches:    []Match{{Name: "tcp", Options: []Option{opt("dport", false, "443")}}},
					Target:     "DNAT",
					TargetOpts: []Option{opt("to-destination", false, "[fd00::5]:8443")},
				}},
				{"mangle", "PREROUTING", []string{"--save-mark"}, Rule{
					Spec:       "-m mark --mark 0x4 -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff",
					Matches:    []Match{{Name: "mark", Options: []Option{opt("mark", false, "0x4")}}},
					Target:     "CONNMARK",
					TargetOpts: []Option{opt("save-mark", false), opt("nfmask", false, "0xffffffff"), opt("ctmask", false, "0xffffffff")},
				}},
			}
			for _, w := range want {
				got := findRule(t, nf, inet.V6, w.table, w.chain, w.words...)
				got.Packets, got.Bytes = 0, 0
				if diff := cmp.Diff(w.rule, got); diff != "" {
					t.Errorf("%s/%s rule with %q (-want +got):\n%s", w.table, w.chain, w.words, diff)
				}
			}
		})
	}
}

func TestParseIPTablesSaveKubeDocker(t *testing.T) {
	for _, file := range []string{"legacy-v4-kube-docker.txt", "nft-v4-kube-docker.txt"} {
		t.Run(file, func(t *testing.T) {
			nf := parseCapture(t, file, inet.V4)
			if got, want := chainNames(nf.Table(inet.V4, "nat")), []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING",
				"DOCKER", "KUBE-MARK-MASQ", "KUBE-POSTROUTING", "KUBE-SEP-1", "KUBE-SEP-2", "KUBE-SERVICES", "KUBE-SVC-ABCDEF0123456789"}; !slices.Equal(got, want) {
				t.Errorf("nat chains = %q, want %q", got, want)
			}
			want := []struct {
				table, chain string
				words        []string
				rule         Rule
			}{
				{"nat", "KUBE-SVC-ABCDEF0123456789", []string{"statistic"}, Rule{
					Spec: `-m comment --comment "kube-system/kube-dns:dns -> 10.244.0.2:53" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-1`,
					Matches: []Match{
						{Name: "comment", Options: []Option{opt("comment", false, "kube-system/kube-dns:dns -> 10.244.0.2:53")}},
						{Name: "statistic", Options: []Option{opt("mode", false, "random"), opt("probability", false, "0.50000000000")}},
					},
					Target: "KUBE-SEP-1",
				}},
				{"nat", "KUBE-POSTROUTING", []string{"--random-fully"}, Rule{
					Spec:       `-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully`,
					Matches:    []Match{{Name: "comment", Options: []Option{opt("comment", false, "kubernetes service traffic requiring SNAT")}}},
					Target:     "MASQUERADE",
					TargetOpts: []Option{opt("random-fully", false)},
				}},
				{"nat", "OUTPUT", []string{"127.0.0.0/8"}, Rule{
					Spec:    "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
					Dst:     &NegAddr{Not: true, Prefix: "127.0.0.0/8"},
					Matches: []Match{{Name: "addrtype", Options: []Option{opt("dst-type", false, "LOCAL")}}},
					Target:  "DOCKER",
				}},
				{"filter", "DOCKER-ISOLATION-STAGE-1", nil, Rule{
					Spec: "-i docker0 ! -o docker0 -j RETURN",
					In:   &NegStr{Value: "docker0"}, Out: &NegStr{Not: true, Value: "docker0"}, Target: "RETURN",
				}},
				{"filter", "INPUT", []string{"u32"}, Rule{
					Spec:    `-m u32 --u32 "0x0>>0x16&0x3c@0xc>>0x1a&0x3c@0x0=0x0" -j DROP`,
					Matches: []Match{{Name: "u32", Options: []Option{opt("u32", false, "0x0>>0x16&0x3c@0xc>>0x1a&0x3c@0x0=0x0")}}},
					Target:  "DROP",
				}},
				{"filter", "INPUT", []string{"string"}, Rule{
					Spec:    `-m string --string "GET /x y" --algo bm -j DROP`,
					Matches: []Match{{Name: "string", Options: []Option{opt("string", false, "GET /x y"), opt("algo", false, "bm")}}},
					Target:  "DROP",
				}},
				{"filter", "OUTPUT", nil, Rule{
					Spec: "-o eth0 -p tcp -m tcp --dport 443 -m owner ! --uid-owner 0 -j REJECT --reject-with tcp-reset",
					Out:  &NegStr{Value: "eth0"}, Proto: &NegStr{Value: "tcp"},
					Matches: []Match{
						{Name: "tcp", Options: []Option{opt("dport", false, "443")}},
						{Name: "owner", Options: []Option{opt("uid-owner", true, "0")}},
					},
					Target:     "REJECT",
					TargetOpts: []Option{opt("reject-with", false, "tcp-reset")},
				}},
				{"mangle", "PREROUTING", []string{"TPROXY"}, Rule{
					Spec: "-p tcp -m tcp --dport 80 -j TPROXY --on-port 3129 --on-ip 127.0.0.1 --tproxy-mark 0x1/0x1", Proto: &NegStr{Value: "tcp"},
					Matches:    []Match{{Name: "tcp", Options: []Option{opt("dport", false, "80")}}},
					Target:     "TPROXY",
					TargetOpts: []Option{opt("on-port", false, "3129"), opt("on-ip", false, "127.0.0.1"), opt("tproxy-mark", false, "0x1/0x1")},
				}},
			}
			for _, w := range want {
				got := findRule(t, nf, inet.V4, w.table, w.chain, w.words...)
				got.Packets, got.Bytes = 0, 0
				if diff := cmp.Diff(w.rule, got); diff != "" {
					t.Errorf("%s/%s rule with %q (-want +got):\n%s", w.table, w.chain, w.words, diff)
				}
			}
		})
	}
}

// TestParseIPTablesSaveNativeRules reads iptables-nft-save output for a table that native nft
// rules were added to: the set lookup is printed as a bare DROP, which must still parse.
func TestParseIPTablesSaveNativeRules(t *testing.T) {
	nf := parseCapture(t, "nft-v4-native-rules.txt", inet.V4)
	in := nf.Table(inet.V4, "filter").Chain("INPUT")
	last := in.Rules[len(in.Rules)-2:]
	want := []Rule{
		{Spec: "-p tcp -m tcp --dport 9999 -j ACCEPT", Proto: &NegStr{Value: "tcp"},
			Matches: []Match{{Name: "tcp", Options: []Option{opt("dport", false, "9999")}}}, Target: "ACCEPT"},
		{Spec: "-j DROP", Target: "DROP"},
	}
	if diff := cmp.Diff(want, last); diff != "" {
		t.Errorf("last INPUT rules (-want +got):\n%s", diff)
	}
}

// TestParseIPTablesSaveCounters: the same ruleset saved with and without -c differs only in
// the rule counters (iptables-save prints chain counters either way).
func TestParseIPTablesSaveCounters(t *testing.T) {
	for _, c := range []struct {
		with, without string
		f             inet.Family
	}{
		{"legacy-v4.txt", "legacy-v4-nocounters.txt", inet.V4},
		{"legacy-v6.txt", "legacy-v6-nocounters.txt", inet.V6},
		{"nft-v4.txt", "nft-v4-nocounters.txt", inet.V4},
	} {
		with := parseCapture(t, c.with, c.f).Tables
		without := parseCapture(t, c.without, c.f).Tables
		nonZero := 0
		for _, tb := range with {
			for _, ch := range tb.Chains {
				for i := range ch.Rules {
					if ch.Rules[i].Packets != 0 {
						nonZero++
					}
					ch.Rules[i].Packets, ch.Rules[i].Bytes = 0, 0
				}
			}
		}
		if c.f == inet.V4 && nonZero == 0 {
			t.Errorf("%s: no rule has packets: the capture should have counted traffic", c.with)
		}
		if diff := cmp.Diff(with, without); diff != "" {
			t.Errorf("%s vs %s, rule counters cleared (-with +without):\n%s", c.with, c.without, diff)
		}
	}
}

// TestArgsMatchesIPTablesSave: rendering every captured rule from its fields gives back the text
// iptables-save printed, so a rule built by a wizard compares equal to the kernel's.
func TestArgsMatchesIPTablesSave(t *testing.T) {
	for _, c := range captures {
		for _, tb := range parseCapture(t, c.file, c.family).Tables {
			for _, ch := range tb.Chains {
				for _, r := range ch.Rules {
					if got := r.Args(); got != r.Spec {
						t.Errorf("%s %s/%s:\n Args() = %s\n    Spec = %s", c.file, tb.Name, ch.Name, got, r.Spec)
					}
				}
			}
		}
	}
}

// withoutComments drops the "# Generated by" lines iptables-save adds.
func withoutComments(data []byte) []byte {
	var out []byte
	for line := range bytes.Lines(data) {
		if !bytes.HasPrefix(line, []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

// TestRenderIPTablesRestoreCaptured: rendering a captured file gives iptables-save's own text
// (less its comments), and reading that back gives the same tables.
func TestRenderIPTablesRestoreCaptured(t *testing.T) {
	for _, c := range captures {
		t.Run(c.file, func(t *testing.T) {
			data := readCapture(t, c.file)
			tables, err := ParseSave(c.family, data)
			if err != nil {
				t.Fatal(err)
			}
			out := RenderRestore(tables, !strings.Contains(c.file, "nocounters"))
			if diff := cmp.Diff(string(withoutComments(data)), string(out)); diff != "" {
				t.Errorf("render differs from the capture (-capture +render):\n%s", diff)
			}
			back, err := ParseSave(c.family, RenderRestore(tables, true))
			if err != nil {
				t.Fatalf("reading the render back: %v", err)
			}
			if diff := cmp.Diff(tables, back); diff != "" {
				t.Errorf("Parse(Render(x)) != x (-x +back):\n%s", diff)
			}
		})
	}
}

func TestParseIPTablesRule(t *testing.T) {
	for _, c := range []struct {
		spec string
		f    inet.Family
		want Rule
	}{
		{"-s ! 10.0.0.0/8 -p tcp --dport ! 22 -j ACCEPT", inet.V4, Rule{
			// old-style negation after the option, and the implicit match of -p tcp
			Src: &NegAddr{Not: true, Prefix: "10.0.0.0/8"}, Proto: &NegStr{Value: "tcp"},
			Matches: []Match{{Name: "tcp", Options: []Option{opt("dport", true, "22")}}}, Target: "ACCEPT",
		}},
		{"--source 1.2.3.4 --in-interface eth0 --protocol udp --match udp --sport=53 --jump ACCEPT", inet.V4, Rule{
			Src: &NegAddr{Prefix: "1.2.3.4"}, In: &NegStr{Value: "eth0"}, Proto: &NegStr{Value: "udp"},
			Matches: []Match{{Name: "udp", Options: []Option{opt("sport", false, "53")}}}, Target: "ACCEPT",
		}},
		{`-m comment --comment "!" -j LOG --log-prefix "-f"`, inet.V4, Rule{
			// quoted words are values, never a negation or an option
			Matches: []Match{{Name: "comment", Options: []Option{opt("comment", false, "!")}}},
			Target:  "LOG", TargetOpts: []Option{opt("log-prefix", false, "-f")},
		}},
		{`-m comment --comment a"b c"d -j ACCEPT`, inet.V4, Rule{
			Matches: []Match{{Name: "comment", Options: []Option{opt("comment", false, "ab cd")}}}, Target: "ACCEPT",
		}},
		{"! -f\t-m  set ! --match-set blocked src,dst -j DROP", inet.V4, Rule{
			Fragment: ptr(false),
			Matches:  []Match{{Name: "set", Options: []Option{opt("match-set", true, "blocked", "src,dst")}}}, Target: "DROP",
		}},
		{"-m recent --set ! --rcheck --seconds 60 -j DROP", inet.V4, Rule{
			// "--set ! --rcheck": the ! negates the option after it
			Matches: []Match{{Name: "recent", Options: []Option{opt("set", false), opt("rcheck", true), opt("seconds", false, "60")}}},
			Target:  "DROP",
		}},
		{"-j DNAT --to-destination 10.0.0.1 -m mark --mark 1 -s 10.0.0.0/8", inet.V4, Rule{
			// options in any order, as iptables-restore accepts them
			Src: &NegAddr{Prefix: "10.0.0.0/8"}, Target: "DNAT", TargetOpts: []Option{opt("to-destination", false, "10.0.0.1")},
			Matches: []Match{{Name: "mark", Options: []Option{opt("mark", false, "1")}}},
		}},
		{"-p ipv6-icmp --icmpv6-type 128 -j ACCEPT", inet.V6, Rule{
			Proto:   &NegStr{Value: "ipv6-icmp"},
			Matches: []Match{{Name: "icmp6", Options: []Option{opt("icmpv6-type", false, "128")}}}, Target: "ACCEPT",
		}},
		{"--src=1.2.3.4 --protocol=tcp -m tcp --dport -1 --x= -g CHAIN", inet.V4, Rule{
			Src: &NegAddr{Prefix: "1.2.3.4"}, Proto: &NegStr{Value: "tcp"},
			Matches: []Match{{Name: "tcp", Options: []Option{opt("dport", false, "-1"), opt("x", false, "")}}},
			Target:  "CHAIN", Goto: true,
		}},
	} {
		got, err := ParseRule(c.f, c.spec)
		if err != nil {
			t.Errorf("ParseIPTablesRule(%q): %v", c.spec, err)
			continue
		}
		c.want.Spec = c.spec
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("ParseIPTablesRule(%q) (-want +got):\n%s", c.spec, diff)
		}
		// The canonical form reads back to the same fields.
		again, err := ParseRule(c.f, got.Args())
		if err != nil {
			t.Errorf("ParseIPTablesRule(Args() = %q): %v", got.Args(), err)
			continue
		}
		again.Spec = got.Spec
		if diff := cmp.Diff(got, again); diff != "" {
			t.Errorf("%q: Args() = %q reads back differently (-first +again):\n%s", c.spec, got.Args(), diff)
		}
	}
}

func TestParseIPTablesSaveErrors(t *testing.T) {
	const header = "*filter\n:INPUT ACCEPT [0:0]\n"
	for _, c := range []struct {
		name, in string
		f        inet.Family
		want     string
	}{
		{"truncated", "# Generated\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j DROP\n", inet.V4,
			"iptables-save line 6: table nat has no COMMIT (truncated output?)"},
		{"truncated in a rule", "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j", inet.V4,
			"iptables-save line 3: rule in chain PREROUTING: option -j needs a value (the input ends in this line and table nat has no COMMIT: truncated output?)"},
		{"truncated in a quote", "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m comment --comment \"ab", inet.V4,
			"line 3: rule in chain PREROUTING: unterminated quote: \"ab has no closing \" (the input ends in this line"},
		{"next table before COMMIT", header + "*nat\nCOMMIT\n", inet.V4, "iptables-save line 3: table nat starts but table filter (line 1) has no COMMIT (truncated output?)"},
		{"undeclared chain", header + "-A FORWARD -j DROP\nCOMMIT\n", inet.V6, "ip6tables-save line 3: rule for chain FORWARD, which table filter does not declare (no :FORWARD line before it)"},
		{"rule outside table", "-A INPUT -j DROP\n", inet.V4, "iptables-save line 1: rule for chain INPUT outside a table"},
		{"chain outside table", ":INPUT ACCEPT [0:0]\n", inet.V4, "iptables-save line 1: chain declaration \":INPUT ACCEPT [0:0]\" outside a table"},
		{"COMMIT outside table", "COMMIT\n", inet.V4, "iptables-save line 1: COMMIT without a *table line"},
		{"garbage", header + "hello world\nCOMMIT\n", inet.V4, `iptables-save line 3: line not understood: "hello world"`},
		{"insert", header + "-I INPUT -j DROP\nCOMMIT\n", inet.V4, "iptables-save line 3: command -I is not iptables-save output"},
		{"unterminated quote", header + "-A INPUT -m comment --comment \"abc -j DROP\nCOMMIT\n", inet.V4,
			`iptables-save line 3: rule in chain INPUT: unterminated quote: "abc -j DROP has no closing "`},
		{"escaped closing quote", header + "-A INPUT -m comment --comment \"abc\\\"\nCOMMIT\n", inet.V4, "line 3: rule in chain INPUT: unterminated quote"},
		{"bad rule counter", header + "[1:x] -A INPUT -j DROP\nCOMMIT\n", inet.V4, `iptables-save line 3: bad counters "[1:x]": bytes: want a number below 2^64`},
		{"rule counter overflow", header + "[18446744073709551616:0] -A INPUT\nCOMMIT\n", inet.V4, "line 3: bad counters \"[18446744073709551616:0]\": packets"},
		{"unclosed rule counter", header + "[1:2 -A INPUT\nCOMMIT\n", inet.V4, "line 3: bad counters in"},
		{"bad chain counter", "*filter\n:INPUT ACCEPT [1-2]\nCOMMIT\n", inet.V4, `iptables-save line 2: chain INPUT: bad counters "[1-2]"`},
		{"bad policy", "*filter\n:INPUT REJECT [0:0]\nCOMMIT\n", inet.V4, `iptables-save line 2: chain INPUT has policy "REJECT": want ACCEPT, DROP or -`},
		{"no policy", "*filter\n:INPUT\nCOMMIT\n", inet.V4, "line 2: chain INPUT has no policy"},
		{"no chain name", "*filter\n: ACCEPT\nCOMMIT\n", inet.V4, "line 2: chain declaration \": ACCEPT\" has no chain name"},
		{"duplicate chain", header + ":INPUT DROP [0:0]\nCOMMIT\n", inet.V4, "line 3: chain INPUT is declared twice in table filter"},
		{"duplicate table", header + "COMMIT\n" + header + "COMMIT\n", inet.V4, "line 4: table filter appears twice (first on line 1)"},
		{"empty table name", "*\nCOMMIT\n", inet.V4, `line 1: bad table name ""`},
		{"no chain for -A", header + "-A\nCOMMIT\n", inet.V4, "line 3: -A without a chain name"},
		{"dangling value", header + "-A INPUT -j ACCEPT extra\nCOMMIT\n", inet.V4, `line 3: rule in chain INPUT: unexpected "extra" after "ACCEPT": values must follow an option`},
		{"value first", header + "-A INPUT tcp\nCOMMIT\n", inet.V4, `unexpected "tcp" after the chain name`},
		{"bang at end", header + "-A INPUT -j ACCEPT !\nCOMMIT\n", inet.V4, "! at the end of the rule"},
		{"bang bang", header + "-A INPUT ! ! -s 1.2.3.4\nCOMMIT\n", inet.V4, `! before "!"`},
		{"negated twice", header + "-A INPUT ! -s ! 1.2.3.4\nCOMMIT\n", inet.V4, "option -s negated twice"},
		{"negated target", header + "-A INPUT ! -j ACCEPT\nCOMMIT\n", inet.V4, "option -j cannot be negated"},
		{"two targets", header + "-A INPUT -j ACCEPT -g X\nCOMMIT\n", inet.V4, "option -g after a target"},
		{"two sources", header + "-A INPUT -s 1.1.1.1 -s 2.2.2.2\nCOMMIT\n", inet.V4, "option -s given twice"},
		{"no value", header + "-A INPUT -s\nCOMMIT\n", inet.V4, "option -s needs a value"},
		{"empty value", header + "-A INPUT -j \"\"\nCOMMIT\n", inet.V4, "option -j needs a value"},
		{"unknown short", header + "-A INPUT -c 1 2 -j ACCEPT\nCOMMIT\n", inet.V4, "unknown option -c"},
		{"option outside match", header + "-A INPUT --dport 22 -j ACCEPT\nCOMMIT\n", inet.V4, "option --dport before any -m match or -j target"},
		{"empty option name", header + "-A INPUT -m x --=1\nCOMMIT\n", inet.V4, "option --=1 has no name"},
		{"fragment with a value", header + "-A INPUT --fragment=1\nCOMMIT\n", inet.V4, "option --fragment=1 takes no value"},
		{"empty inline value", header + "-A INPUT --source= -j ACCEPT\nCOMMIT\n", inet.V4, "option --source= needs a value"},
		{"fragment in v6", header + "-A INPUT -f\nCOMMIT\n", inet.V6, "option -f is IPv4 only"},
		{"bad family", "", inet.Family(7), "invalid address family 7"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tables, err := ParseSave(c.f, []byte(c.in))
			if err == nil {
				t.Fatalf("no error, tables %+v; want %q", tables, c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error = %q, want it to contain %q", err, c.want)
			}
			if tables != nil {
				t.Errorf("tables = %+v with an error, want nil", tables)
			}
		})
	}
}

func TestParseIPTablesSaveAccepts(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     []Table
	}{
		{"empty", "", nil},
		{"only comments", "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n\n", nil},
		{"no counters on chains, CRLF, blank lines, indent", "*filter\r\n\r\n  :INPUT DROP\r\n:X -\r\n-A X  -j ACCEPT \t\r\n[5:6] -A INPUT -j X\r\nCOMMIT\r\n", []Table{{
			Family: inet.V4, Name: "filter", Chains: []Chain{
				{Name: "INPUT", Policy: "DROP", Rules: []Rule{{Spec: "-j X", Target: "X", Packets: 5, Bytes: 6}}},
				{Name: "X", Rules: []Rule{{Spec: "-j ACCEPT", Target: "ACCEPT"}}},
			},
		}}},
		{"interleaved chains keep per-chain order", "*nat\n:A - [0:0]\n:B - [0:0]\n-A B -j RETURN\n-A A -j B\n-A B\nCOMMIT\n", []Table{{
			Family: inet.V4, Name: "nat", Chains: []Chain{
				{Name: "A", Rules: []Rule{{Spec: "-j B", Target: "B"}}},
				{Name: "B", Rules: []Rule{{Spec: "-j RETURN", Target: "RETURN"}, {}}},
			},
		}}},
		{"empty table", "*raw\nCOMMIT", []Table{{Family: inet.V4, Name: "raw"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseSave(inet.V4, []byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// randomValues are words that stress quoting: spaces, quotes, backslashes, words that look like
// options or a negation, and empty strings.
var randomValues = []string{
	"ACCEPT", "10.0.0.0/8", "fd00::/64", "0x1/0xff", "NEW,ESTABLISHED", "80,443", "[fd00::5]:8443", "-1",
	"", "!", "-f", "--x", "---", "-", "--", "a b", `a "b" c`, `back\slash`, "it's", "tab\there", "#hash",
	"[1:2]", "COMMIT", "*nat", "ünï", `"`, `\`, `\"`, "cr\r", " lead", "trail ",
}

var randomNames = []string{"dport", "ctstate", "set-xmark", "to-destination", "comment", "log-prefix", "u32", "random", "name", "mask", "a1-b2"}

func randomRule(rng *rand.Rand, f inet.Family) Rule {
	var r Rule
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	word := func() string {
		// Addresses, interfaces and names must not be empty: iptables has no empty -s.
		for {
			if v := pick(randomValues); v != "" {
				return v
			}
		}
	}
	options := func() []Option {
		var os []Option
		for range rng.IntN(4) {
			o := Option{Name: pick(randomNames), Not: rng.IntN(4) == 0}
			for range rng.IntN(3) {
				o.Values = append(o.Values, pick(randomValues))
			}
			os = append(os, o)
		}
		return os
	}
	if rng.IntN(2) == 0 {
		r.Src = &NegAddr{Not: rng.IntN(3) == 0, Prefix: word()}
	}
	if rng.IntN(2) == 0 {
		r.Dst = &NegAddr{Not: rng.IntN(3) == 0, Prefix: word()}
	}
	if rng.IntN(2) == 0 {
		r.In = &NegStr{Not: rng.IntN(3) == 0, Value: word()}
	}
	if rng.IntN(2) == 0 {
		r.Out = &NegStr{Not: rng.IntN(3) == 0, Value: word()}
	}
	if rng.IntN(2) == 0 {
		r.Proto = &NegStr{Not: rng.IntN(3) == 0, Value: word()}
	}
	if f == inet.V4 && rng.IntN(4) == 0 {
		r.Fragment = ptr(rng.IntN(2) == 0)
	}
	for range rng.IntN(3) {
		r.Matches = append(r.Matches, Match{Name: word(), Options: options()})
	}
	if rng.IntN(5) != 0 {
		r.Target, r.Goto, r.TargetOpts = word(), rng.IntN(4) == 0, options()
	}
	r.Packets, r.Bytes = rng.Uint64N(3)*rng.Uint64(), rng.Uint64()
	return r
}

func randomTables(rng *rand.Rand, f inet.Family) []Table {
	var tables []Table
	names := []string{"filter", "nat", "mangle", "raw", "security"}
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	for _, name := range names[:rng.IntN(len(names)+1)] {
		t := Table{Family: f, Name: name}
		for i := range rng.IntN(4) {
			c := Chain{Name: fmt.Sprintf("CHAIN-%d_x", i), Packets: rng.Uint64(), Bytes: rng.Uint64()}
			if rng.IntN(2) == 0 {
				c.Policy = []string{"ACCEPT", "DROP"}[rng.IntN(2)]
			}
			for range rng.IntN(4) {
				c.Rules = append(c.Rules, randomRule(rng, f))
			}
			t.Chains = append(t.Chains, c)
		}
		tables = append(tables, t)
	}
	return tables
}

// TestRenderIPTablesRestoreRandom builds random tables field by field (Spec empty, as a wizard
// would), renders and parses them: every field must come back, and Spec must be Args().
func TestRenderIPTablesRestoreRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		f := []inet.Family{inet.V4, inet.V6}[i%2]
		tables := randomTables(rng, f)
		out := RenderRestore(tables, true)
		back, err := ParseSave(f, out)
		if err != nil {
			t.Fatalf("case %d: parsing the render: %v\n%s", i, err, out)
		}
		for ti := range tables {
			for ci := range tables[ti].Chains {
				for ri := range tables[ti].Chains[ci].Rules {
					r := &tables[ti].Chains[ci].Rules[ri]
					r.Spec = r.Args()
				}
			}
		}
		// reflect.DeepEqual first: cmp.Diff is slow and only needed to explain a failure.
		if !reflect.DeepEqual(tables, back) {
			t.Fatalf("case %d: Parse(Render(x)) != x (-x +back):\n%s\nrender:\n%s", i, cmp.Diff(tables, back), out)
		}
		// Without counters, the same tables come back with rule counters zero.
		noCounters, err := ParseSave(f, RenderRestore(tables, false))
		if err != nil {
			t.Fatalf("case %d: parsing the render without counters: %v", i, err)
		}
		if want := zeroRuleCounters(tables); !reflect.DeepEqual(want, noCounters) {
			t.Fatalf("case %d: render without counters (-want +got):\n%s", i, cmp.Diff(want, noCounters))
		}
	}
}

// zeroRuleCounters returns a deep enough copy of tables with every rule counter zero.
func zeroRuleCounters(tables []Table) []Table {
	out := slices.Clone(tables)
	for ti := range out {
		out[ti].Chains = slices.Clone(out[ti].Chains)
		for ci := range out[ti].Chains {
			c := &out[ti].Chains[ci]
			c.Rules = slices.Clone(c.Rules)
			for ri := range c.Rules {
				c.Rules[ri].Packets, c.Rules[ri].Bytes = 0, 0
			}
		}
	}
	return out
}

func BenchmarkParseIPTablesSave(b *testing.B) {
	data := readCapture(b, "legacy-v4-kube-docker.txt")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseSave(inet.V4, data); err != nil {
			b.Fatal(err)
		}
	}
}
