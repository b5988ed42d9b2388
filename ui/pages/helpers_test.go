package pages

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
)

func TestDiffRulesByContent(t *testing.T) {
	a := []string{"-j A", "-j B", "-j C", "-j B"}
	b := []string{"-j NEW", "-j A", "-j B", "-j B"}
	var got []string
	for _, op := range diffRules(a, b) {
		got = append(got, op.sign+" ["+string(rune('0'+op.pos))+"] "+op.rule)
	}
	if want := []string{"+ [1] -j NEW", "- [3] -j C"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	// A moved rule is one deletion and one addition, whatever the sizes.
	if ops := diffRules([]string{"x", "y"}, []string{"y", "x"}); len(ops) != 2 {
		t.Fatalf("a swap gives %+v", ops)
	}
}

func TestPlanDiffKeepsOtherLinesAndRuleOrder(t *testing.T) {
	s := bigTable(0)
	nf, err := iptables.ParseSave(inet.V4, []byte("*nat\n:PREROUTING ACCEPT [0:0]\n"+
		"-A PREROUTING -p tcp --dport 1 -j DNAT --to-destination 10.0.0.1\n"+
		"-A PREROUTING -p tcp --dport 2 -j DNAT --to-destination 10.0.0.2\n"+
		"-A PREROUTING -p tcp --dport 3 -j DNAT --to-destination 10.0.0.3\n"+
		"-A PREROUTING -p tcp --dport 4 -j DNAT --to-destination 10.0.0.4\n"+
		"-A PREROUTING -p tcp --dport 5 -j DNAT --to-destination 10.0.0.5\n"+
		"-A PREROUTING -p tcp --dport 6 -j DNAT --to-destination 10.0.0.6\n"+
		"-A PREROUTING -p tcp --dport 7 -j DNAT --to-destination 10.0.0.7\n"+
		"-A PREROUTING -p tcp --dport 8 -j DNAT --to-destination 10.0.0.8\n"+
		"-A PREROUTING -p tcp --dport 9 -j DNAT --to-destination 10.0.0.9\n"+
		"-A PREROUTING -p tcp --dport 10 -j DNAT --to-destination 10.0.0.10\n"+
		"COMMIT\n"))
	if err != nil {
		t.Fatal(err)
	}
	s.Netfilter = iptables.Ruleset{Tables: nf}
	after := *s
	after.Netfilter.Tables = slices.Clone(nf)
	after.Netfilter.Tables[0].Chains = slices.Clone(nf[0].Chains)
	c := &after.Netfilter.Tables[0].Chains[0]
	c.Rules = slices.Insert(slices.Clone(c.Rules), 0, iptables.Rule{Spec: "-j RT-PF-PRE", Target: "RT-PF-PRE"})
	after.Sysctls = model.Sysctls{model.SysctlIPForward: "1"}
	got := planDiff(s, &after)
	want := []string{
		"+ iptables -t nat -A PREROUTING [1] -j RT-PF-PRE",
		"+ sysctl net.ipv4.ip_forward=1",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("planDiff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestUplinkOffers(t *testing.T) {
	s := &model.State{Links: []model.Link{
		{Index: 1, Name: "lo", Kind: "loopback", Up: true, Addrs: []model.Address{{Prefix: netip.MustParsePrefix("127.0.0.1/8"), Scope: "host"}}},
		{Index: 2, Name: "eth0", Up: true, Addrs: []model.Address{{Prefix: netip.MustParsePrefix("10.0.0.2/24"), Scope: "global"}}},
		{Index: 3, Name: "eth1", Up: true, Addrs: []model.Address{{Prefix: netip.MustParsePrefix("192.0.2.10/24"), Scope: "global"}}},
		{Index: 4, Name: "eth2", Up: true, Addrs: []model.Address{{Prefix: netip.MustParsePrefix("198.51.100.2/30"), Scope: "global"}}},
		{Index: 5, Name: "eth3", Up: true, Addrs: []model.Address{{Prefix: netip.MustParsePrefix("203.0.113.5/24"), Scope: "global"}}},
		{Index: 6, Name: "eth4", Up: false, Addrs: []model.Address{{Prefix: netip.MustParsePrefix("100.64.0.2/24"), Scope: "global"}}},
	}}
	s.Routes = []model.Route{{Family: inet.V4, Table: model.TableMain, Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.0.0.1"), Dev: "eth0"}}
	neigh := []model.Neighbour{
		{Dev: "eth1", Addr: netip.MustParseAddr("192.0.2.1"), State: "stale"},
		{Dev: "eth1", Addr: netip.MustParseAddr("192.0.2.99"), State: "failed"},
		{Dev: "eth3", Addr: netip.MustParseAddr("203.0.113.1"), State: "reachable"},
		{Dev: "eth3", Addr: netip.MustParseAddr("203.0.113.2"), State: "reachable"},
		{Dev: "lo", Addr: netip.MustParseAddr("127.0.0.1"), State: "noarp"},
	}
	var got []string
	for _, o := range uplinkOffers(s, neigh) {
		got = append(got, o.String()+" "+o.From)
	}
	want := []string{
		"eth0:10.0.0.1 a route",
		"eth1:192.0.2.1 the neighbour table",
		"eth2:198.51.100.1 the other end of its /30",
		"eth3 ", // two neighbours, neither a router: no guess
	}
	if !slices.Equal(got, want) {
		t.Fatalf("offers:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSaveFileNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.sh")
	if _, _, err := saveFile(path, []byte("one"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := saveFile(path, []byte("two"), 0o700); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("saving over a file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Fatalf("the file holds %q", b)
	}
	if _, _, err := saveFile(filepath.Join(dir, "missing", "b.sh"), []byte("x"), 0o700); err == nil {
		t.Fatal("saving into a missing directory worked")
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Fatalf("left behind: %v", es)
	}
	// Nothing is saved in /dev: /dev/null would be replaced, not written to.
	if _, _, err := saveFile("/dev/roundtrip-test.sh", []byte("x"), 0o700); err == nil {
		os.Remove("/dev/roundtrip-test.sh")
		t.Fatal("a script was saved in /dev")
	}

}

func TestFixWithPlaceholders(t *testing.T) {
	if got := withoutPlaceholders([]string{"--wan", "eth1:<GATEWAY>", "--wan", "eth2:198.51.100.1", "--to", "<ADDR:PORT>", "--hairpin"}); strings.Join(got, " ") != "--wan eth1 --wan eth2:198.51.100.1 --hairpin" {
		t.Fatalf("withoutPlaceholders: %q", got)
	}
	st := testCommon().Styles
	fp := planFix(st, finding.Fix{Wizard: finding.WizardPortForward, Args: []string{"--listen", "<PORT>", "--snat", "auto"}, Missing: "the port clients connect to"})
	if o := fp.Opens(); !strings.Contains(o, "still needed: the port clients connect to, Listen ([ADDR:]PORT clients connect to)") || !strings.Contains(o, "--listen <PORT> --snat auto") {
		t.Fatalf("Opens: %s", o)
	}
	if o := planFix(st, finding.Fix{Wizard: finding.WizardSNATGateway}).Opens(); o != "the snat-gateway wizard; still needed: Out (the interface toward the far network)" {
		t.Fatalf("a fix without flags: %s", o)
	}
}
