package plan

import (
	"strings"
	"testing"

	"roundtrip/engine/inet"
)

func TestCheckNFTListing(t *testing.T) {
	good := "table inet roundtrip {\n\tchain RT-X {\n\t\tcomment \"roundtrip ab\"\n\t\tip daddr 10.0.0.1 counter packets 1 bytes 2 accept comment \"a { b\"\n\t}\n}\n"
	if err := CheckNFTListing(good); err != nil {
		t.Fatalf("a listing nft prints is refused: %v", err)
	}
	for name, bad := range map[string]string{
		"other table":     "table inet filter {\n}\n",
		"second block":    good + "table inet filter {\n}\n",
		"statement after": good + "flush ruleset\n",
		"include":         "table inet roundtrip {\n\tinclude \"/etc/shadow\"\n}\n",
		"variable":        "table inet roundtrip {\n\tchain X {\n\t\tip daddr $x accept\n\t}\n}\n",
		"control":         "table inet roundtrip {\x1b[2J\n}\n",
		"unbalanced":      "table inet roundtrip {\n}\n}\n",
		"open string":     "table inet roundtrip {\n\tchain X { comment \"x }\n}\n",
		"unclosed":        "table inet roundtrip {\n",
	} {
		if err := CheckNFTListing(bad); err == nil {
			t.Errorf("%s: accepted:\n%s", name, bad)
		}
	}
}

func TestNFTScript(t *testing.T) {
	set := Change{Kind: KindNFT, Op: OpSet, NFT: &ChainSpec{Family: inet.V4, Table: "nat", Name: "RT-PF-PRE", Jumps: []Jump{{Chain: "PREROUTING"}},
		Rules: []string{"-d 10.0.0.1/32 -p tcp -m tcp --dport 81 -m comment --comment rt:pf -j DNAT --to-destination 10.0.0.2:80"}}}
	del := Change{Kind: KindNFT, Op: OpDelete, NFT: &ChainSpec{Family: inet.V4, Table: "filter", Name: "RT-OLD"}}
	b, err := NFTScript([]Change{set, del})
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		"table inet roundtrip {}\n",
		"add chain inet roundtrip RT-PF-PRE\ndelete chain inet roundtrip RT-PF-PRE\n",
		"ip daddr 10.0.0.1/32 tcp dport 81 counter dnat ip to 10.0.0.2:80 comment \"rt:pf\"",
		"add chain inet roundtrip hook.prerouting.RT-PF-PRE { type nat hook prerouting priority dstnat; policy accept; }\n",
		"add rule inet roundtrip hook.prerouting.RT-PF-PRE meta nfproto ipv4 jump RT-PF-PRE\n",
		"add chain inet roundtrip hook.forward.RT-OLD\ndelete chain inet roundtrip hook.forward.RT-OLD\n",
		"add chain inet roundtrip RT-OLD\ndelete chain inet roundtrip RT-OLD\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s[strings.Index(s, "RT-OLD"):], "table inet roundtrip {\n") {
		t.Errorf("a deleted chain is created again:\n%s", s)
	}
	// IPv6 chains, iptables backends and rules nft cannot express are refused.
	for _, c := range []ChainSpec{
		{Family: inet.V6, Table: "nat", Name: "RT-X"},
		{Family: inet.V4, Backend: "legacy", Table: "nat", Name: "RT-X"},
		{Family: inet.V4, Table: "nat", Name: "RT-X", Rules: []string{"-m comment --comment a\"b -j ACCEPT"}},
	} {
		if _, err := NFTScript([]Change{{Kind: KindNFT, Op: OpSet, NFT: &c}}); err == nil {
			t.Errorf("%+v: rendered", c)
		}
	}
}
