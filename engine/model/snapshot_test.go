package model

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
)

// sampleState is a small but complete state: every section of the model holds something.
func sampleState() *State {
	five := 0
	return &State{
		Host: "gw1",
		Links: []Link{
			{Index: 1, Name: "lo", Kind: "loopback", Up: true, MTU: 65536, Addrs: []Address{{Prefix: netip.MustParsePrefix("127.0.0.1/8"), Scope: "host"}}},
			{Index: 2, Name: "eth0", Kind: "veth", Up: true, MTU: 1500, Addrs: []Address{{Prefix: netip.MustParsePrefix("192.0.2.1/24"), Scope: "global"}}},
			{Index: 3, Name: "vx0", Kind: "vxlan", MTU: 1450, Tunnel: &Tunnel{VNI: 42, Port: 4789, Remote: netip.MustParseAddr("192.0.2.9"), Dev: "eth0"}},
		},
		Rules: []Rule{
			{Family: inet.V4, Priority: 0, Action: ActionTable, Table: TableLocal},
			{Family: inet.V4, Priority: 100, Src: netip.MustParsePrefix("192.0.2.0/24"), Mark: &MarkMatch{Value: 1, Mask: 0xff}, SPort: &PortRange{1, 1024}, Action: ActionTable, Table: 100},
			{Family: inet.V4, Priority: 200, Not: true, IIF: "eth0", SuppressPrefixLen: &five, Action: ActionTable, Table: TableMain},
			{Family: inet.V6, Priority: 300, Dst: netip.MustParsePrefix("2001:db8::/32"), Action: ActionUnreachable},
		},
		Routes: []Route{
			{Family: inet.V4, Table: TableMain, Type: RouteUnicast, Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.254"), Dev: "eth0", Protocol: "static"},
			{Family: inet.V4, Table: 100, Type: RouteUnicast, Dst: netip.MustParsePrefix("198.51.100.0/24"), Nexthops: []Nexthop{{Gateway: netip.MustParseAddr("192.0.2.2"), Dev: "eth0", Weight: 1}, {Gateway: netip.MustParseAddr("192.0.2.3"), Dev: "eth0", Weight: 3}}},
			{Family: inet.V4, Table: 100, Type: RouteBlackhole, Dst: netip.MustParsePrefix("203.0.113.0/24"), Metric: 5},
		},
		TableNames: map[int]string{100: "isp_a"},
		Netfilter: iptables.Ruleset{Backend: "nf_tables", Tables: []iptables.Table{{Family: inet.V4, Name: "nat", Chains: []iptables.Chain{
			{Name: "POSTROUTING", Policy: "ACCEPT", Rules: []iptables.Rule{{Spec: "-o eth0 -j MASQUERADE", Out: &iptables.NegStr{Value: "eth0"}, Target: "MASQUERADE"}}},
		}}}},
		Sysctls: Sysctls{SysctlIPForward: "1", ConfKey("all", "rp_filter"): "2", ConfKey("eth0", "rp_filter"): "1", SysctlBridgeNFIPTables: "1"},
		IPSets: []IPSet{{Name: "blocked", Type: "hash:net", Family: inet.V4, Members: []IPSetMember{
			{Net: netip.MustParsePrefix("198.51.100.0/24")}, {Net: netip.MustParsePrefix("198.51.100.128/25"), NoMatch: true}}},
			{Name: "svc", Type: "hash:ip,port", Family: inet.V6, Members: []IPSetMember{{Net: netip.MustParsePrefix("2001:db8::1/128"), Proto: 6, Port: 22}}}},
	}
}

func TestSnapshotRoundTripIsByteStable(t *testing.T) {
	b1, err := NewSnapshot(sampleState(), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := ParseSnapshot(b1)
	if err != nil {
		t.Fatalf("parsing what we wrote: %v\n%s", err, b1)
	}
	if d := Diff(sampleState(), snap.State); d != "" {
		t.Fatalf("state changed through a snapshot:\n%s", d)
	}
	b2, err := snap.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatalf("snapshot not byte-stable:\n%s\n---\n%s", b1, b2)
	}
}

func TestParseSnapshotErrors(t *testing.T) {
	good, _ := NewSnapshot(sampleState(), time.Unix(0, 0)).Marshal()
	tests := []struct {
		name, data, want string
	}{
		{"empty", "", "empty"},
		{"not json", "hello", "line 1 column 1"},
		{"truncated", string(good[:len(good)/2]), "truncated"},
		{"other format", `{"format":"x","version":1}`, `format is "x"`},
		{"future", `{"format":"roundtrip-snapshot","version":99}`, "newer than this roundtrip"},
		{"no state", `{"format":"roundtrip-snapshot","version":1}`, "no state"},
		{"unknown field", `{"format":"roundtrip-snapshot","version":1,"state":{"links":[],"rules":[],"routes":[],"netfilter":{},"bogus":1}}`, "bogus"},
		{"bad family", strings.Replace(string(good), `"family": "inet6"`, `"family": "ipx"`, 1), "invalid address family"},
		{"bad prefix", strings.Replace(string(good), `"198.51.100.0/24"`, `"198.51.100.0/33"`, 1), "198.51.100.0/33"},
		{"unknown device", replaceLast(string(good), `"dev": "eth0"`, `"dev": "eth9"`), "device eth9"},
		{"bad action", strings.Replace(string(good), `"action": "unreachable"`, `"action": "teleport"`, 1), `unknown action "teleport"`},
		{"trailing", string(good) + "{}", "after top-level value"},
		{"bad ipset name", strings.Replace(string(good), `"name": "blocked"`, `"name": "bl\u001bocked"`, 1), "ipset name"},
		{"ipset member of another family", strings.Replace(string(good), `"2001:db8::1/128"`, `"192.0.2.1/32"`, 1), "not an address of the set's family"},
		{"wrong type", strings.Replace(string(good), `"priority": 100`, `"priority": "high"`, 1), "line "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSnapshot([]byte(tt.data))
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.want)
			}
			if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want ErrBadSnapshot containing %q", err, tt.want)
			}
		})
	}
}

func TestDiffNamesWhatChanged(t *testing.T) {
	a, b := sampleState(), sampleState()
	if d := Diff(a, b); d != "" {
		t.Fatalf("equal states differ:\n%s", d)
	}
	b.Rules = b.Rules[:len(b.Rules)-1]
	b.Sysctls[SysctlIPForward] = "0"
	b.Sysctls[SysctlConntrackCount] = "17" // volatile: ignored
	b.Netfilter.Tables[0].Chains[0].Rules[0].Packets = 99
	d := Diff(a, b)
	for _, want := range []string{"- ip -6 rule priority 300 from all to 2001:db8::/32 unreachable", "- sysctl net.ipv4.ip_forward=1", "+ sysctl net.ipv4.ip_forward=0"} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
	if strings.Count(d, "\n") != 3 {
		t.Errorf("diff has extra lines:\n%s", d)
	}
}

func FuzzParseSnapshot(f *testing.F) {
	good, _ := NewSnapshot(sampleState(), time.Unix(0, 0)).Marshal()
	f.Add(good)
	withNFT, _ := NewSnapshot(nftState("forward"), time.Unix(0, 0)).Marshal()
	f.Add(withNFT)
	f.Add([]byte(`{"format":"roundtrip-snapshot","version":1,"state":{"links":[{"name":"a"}],"rules":[{"family":"inet","action":"table","src":"1.2.3.0/24"}],"routes":[],"netfilter":{}}}`))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, err := ParseSnapshot(data)
		if err != nil {
			return
		}
		// Whatever loads must save and load again to the same configuration.
		b, err := snap.Marshal()
		if err != nil {
			t.Fatalf("loaded snapshot does not marshal: %v", err)
		}
		again, err := ParseSnapshot(b)
		if err != nil {
			t.Fatalf("re-parse of a saved snapshot failed: %v\n%s", err, b)
		}
		if d := Diff(snap.State, again.State); d != "" {
			t.Fatalf("snapshot changed through save/load:\n%s", d)
		}
		_ = snap.State.String()
	})
}

func replaceLast(s, old, new string) string {
	i := strings.LastIndex(s, old)
	return s[:i] + new + s[i+len(old):]
}
