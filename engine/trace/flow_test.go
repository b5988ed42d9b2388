package trace

import (
	"net/netip"
	"strings"
	"testing"
)

// TestParseFlow checks the one flow parser of trace, diagnose and the console: ports only for
// protocols that have them (GRE and ICMP alike refuse them), one address family, a named
// destination, and the words of each refusal.
func TestParseFlow(t *testing.T) {
	tests := []struct {
		proto, src, dst string
		want            Request
		err             string
	}{
		{"tcp", "10.0.0.1:40000", "10.0.0.2:80", Request{Proto: 6, Src: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("10.0.0.2:80")}, ""},
		{"udp", "[2001:db8::1]:53", "2001:db8::2", Request{Proto: 17, Src: netip.MustParseAddrPort("[2001:db8::1]:53"), Dst: netip.MustParseAddrPort("[2001:db8::2]:0")}, ""},
		{"sctp", "10.0.0.1", "10.0.0.2:9", Request{Proto: 132, Src: netip.MustParseAddrPort("10.0.0.1:0"), Dst: netip.MustParseAddrPort("10.0.0.2:9")}, ""},
		{"gre", "10.0.0.1", "10.0.0.2", Request{Proto: 47, Src: netip.MustParseAddrPort("10.0.0.1:0"), Dst: netip.MustParseAddrPort("10.0.0.2:0")}, ""},
		{"::ffff:10.0.0.1", "", "", Request{}, "unknown protocol"},
		{"icmp", "10.0.0.1:1", "10.0.0.2", Request{}, "icmp has no ports: give addresses without :PORT"},
		{"gre", "10.0.0.1", "10.0.0.2:1723", Request{}, "gre has no ports"},
		{"47", "10.0.0.1:5", "10.0.0.2", Request{}, "gre has no ports"},
		{"tcp", "10.0.0.1:1", "[2001:db8::1]:80", Request{}, "source 10.0.0.1 and destination 2001:db8::1 are not of one address family"},
		{"tcp", "10.0.0.1", "0.0.0.0:80", Request{}, "destination 0.0.0.0 is unspecified"},
		{"tcp", "10.0.0.1:x", "10.0.0.2", Request{}, `source port "x" is not a number`},
		{"tcp", "10.0.0.1", "10.0.0.2:70000", Request{}, "destination port 70000 out of range 0-65535"},
		{"tcp", "10.0.0.1:1:2", "10.0.0.2", Request{}, `malformed source address "10.0.0.1:1:2": want ADDR or ADDR:PORT`},
		{"tcp", "fe80::1%eth0", "10.0.0.2", Request{}, `source "fe80::1%eth0": zones are not supported`},
	}
	for _, tt := range tests {
		got, err := ParseFlow(tt.proto, tt.src, tt.dst)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseFlow(%s %s %s) = %+v, %v; want %+v", tt.proto, tt.src, tt.dst, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseFlow(%s %s %s): error %v, want one with %q", tt.proto, tt.src, tt.dst, err, tt.err)
		}
	}
}
