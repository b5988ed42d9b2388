package wizards

import (
	"context"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"roundtrip/engine/fib"
	"roundtrip/engine/kernel"
	_ "roundtrip/engine/kernel/nftread" // State.Nftables, as the roundtrip binary reads it
	"roundtrip/engine/lab"
	"roundtrip/engine/plan"
	"roundtrip/engine/trace"
)

// debianFilter is a router's whole firewall as Debian's /etc/nftables.conf writes it, with a
// forward policy of drop that lets through only what is established.
const debianFilter = `table inet filter {
	chain input {
		type filter hook input priority filter; policy accept;
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
	}
	chain output {
		type filter hook output priority filter; policy accept;
	}
}
`

var nftCounters = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// TestPrivilegedPortForwardThroughNFT applies case 5's wizard on a router whose firewall is
// native nftables: the plan goes into roundtrip's own table (nothing into iptables), the real
// client is dropped by the host's own forward chain until the operator adds the accept the
// note names, then gets through, trace sees the DNAT of roundtrip's table, a second forward
// works beside the first, and rollback leaves `nft list ruleset` as it was.
func TestPrivilegedPortForwardThroughNFT(t *testing.T) {
	t.Parallel()
	lab.RequireTool(t, "nft", "iptables-nft-save")
	l := lab.NewPrefixed(t, "hna")
	client, r, backend := lab.Host(l, "client", false), lab.Host(l, "r", true), lab.Host(l, "backend", false)
	l.Veth(client, "eth0", r, "eth0")
	l.Veth(r, "eth1", backend, "eth0")
	client.Addr("eth0", "10.73.1.2/24")
	r.Addr("eth0", "10.73.1.1/24")
	r.Addr("eth1", "10.73.2.1/24")
	backend.Addr("eth0", "10.73.2.2/24")
	client.IP("route", "add", "default", "via", "10.73.1.1")
	backend.IP("route", "add", "default", "via", "10.73.2.1")
	backend.ServeHTTP("0.0.0.0:80", "backend")
	loadNFT(t, r, debianFilter)
	get := func() (string, error) { return client.HTTPGet("10.73.1.1:8080", clientTimeout) }

	h := newE2EHost(t, r)
	h.settle()
	before := h.read()
	if !before.NativeNFT() || !before.UseNFT() {
		t.Fatalf("the router's firewall is native nft: UseNFT() = false")
	}
	rulesetBefore := nftCounters.ReplaceAllString(r.Run("nft", "list", "ruleset"), "counter")
	iptBefore := r.Run("iptables-nft-save")

	w := &PortForwardOptions{ListenAddr: netip.MustParseAddr("10.73.1.1"), ListenPort: 8080, To: netip.MustParseAddrPort("10.73.2.2:80")}
	res := h.plan(w)
	nfts := 0
	for _, c := range res.Plan.Changes {
		switch c.Kind {
		case plan.KindNFT:
			nfts++
		case plan.KindChain:
			t.Errorf("the plan writes an iptables chain on a native-nft host: %s", c.Summary())
		}
	}
	if nfts == 0 {
		t.Fatalf("the plan has no nft change:\n%s", res.Plan.Script())
	}
	notes := strings.Join(res.Notes, "\n")
	if !strings.Contains(notes, "inet filter forward drops by default") || !strings.Contains(notes, "ct status dnat accept") {
		t.Errorf("the notes do not name the host's forward drop and the accept to add: %q", notes)
	}

	h.apply(w)
	ruleset := r.Run("nft", "list", "ruleset")
	if !strings.Contains(ruleset, "table inet roundtrip {") || !strings.Contains(ruleset, "table inet filter {") ||
		!strings.Contains(ruleset, "dnat ip to 10.73.2.2:80") {
		t.Errorf("nft list ruleset after the apply lacks roundtrip's table beside the host's:\n%s", ruleset)
	}
	if ipt := r.Run("iptables-nft-save"); ipt != iptBefore {
		t.Errorf("the apply wrote into iptables-nft:\n%s", ipt)
	}
	// The host's forward chain still drops the forwarded connection: an accept in roundtrip's
	// table could not have changed that.
	_, err := get()
	fails(t, "the client before the operator's accept", err)
	flow := []string{"10.73.1.2:40000", "10.73.1.1:8080", "eth0"}
	if f := strings.Join(h.findings(flow[0], flow[1], flow[2]), "\n"); !strings.Contains(f, trace.FindingFiltered+":") {
		t.Errorf("trace does not find the host's forward drop after the DNAT of roundtrip's table: %q", f)
	}

	st := h.read()
	tr := trace.Run(st, fib.New(st), trace.Request{Proto: 6, Src: netip.MustParseAddrPort(flow[0]), Dst: netip.MustParseAddrPort(flow[1]), IIF: flow[2]})
	var rendered strings.Builder
	tr.Render(&rendered, st)
	t.Logf("trace after the apply:\n%s", rendered.String())
	if out := rendered.String(); !strings.Contains(out, "roundtrip") || !strings.Contains(out, "10.73.2.2") {
		t.Errorf("the trace does not show the DNAT of roundtrip's table:\n%s", out)
	}

	// The operator adds what the note says to their own table.
	r.Run("nft", "insert", "rule", "inet", "filter", "forward", "ct", "status", "dnat", "accept")
	body, err := get()
	gets(t, "the client after the operator's accept", body, err, "backend")
	h.expectNoFinding(flow[0], flow[1], flow[2])
	h.replanIsEmpty(w)

	// A second forward lives beside the first: each run has chains of its own in the table.
	w2 := &PortForwardOptions{ListenAddr: netip.MustParseAddr("10.73.1.1"), ListenPort: 8081, To: netip.MustParseAddrPort("10.73.2.2:80")}
	h.apply(w2)
	body, err = client.HTTPGet("10.73.1.1:8081", clientTimeout)
	gets(t, "the client through the second forward", body, err, "backend")
	body, err = get()
	gets(t, "the client through the first forward, after the second", body, err, "backend")
	h.replanIsEmpty(w)
	h.replanIsEmpty(w2)

	handle := regexp.MustCompile(`ct status dnat accept # handle (\d+)`).FindStringSubmatch(r.Run("nft", "-a", "list", "chain", "inet", "filter", "forward"))
	if handle == nil {
		t.Fatal("the operator's rule is not listed")
	}
	r.Run("nft", "delete", "rule", "inet", "filter", "forward", "handle", handle[1])

	h.rollbackAll()
	if after := nftCounters.ReplaceAllString(r.Run("nft", "list", "ruleset"), "counter"); after != rulesetBefore {
		t.Errorf("nft list ruleset after rollback differs from before:\n--- before\n%s\n--- after\n%s", rulesetBefore, after)
	}
	h.sameState(before)
}

func loadNFT(t *testing.T, ns *lab.NS, ruleset string) {
	t.Helper()
	k := kernel.Namespace{Name: ns.Name}
	if _, err := k.Runner().Run(context.Background(), []byte(ruleset), "nft", "-f", "-"); err != nil {
		t.Fatalf("loading the host's ruleset: %v", err)
	}
}

// TestPrivilegedSNATGatewayThroughNFT is case 4 on a gateway whose firewall is native nft
// with a forward policy of drop: the SNAT goes into roundtrip's table, the note's accept
// (taken from the note itself) added to the host's chain lets A through, and rollback (after
// the operator's rule is gone) leaves `nft list ruleset` and iptables as they were.
func TestPrivilegedSNATGatewayThroughNFT(t *testing.T) {
	t.Parallel()
	lab.RequireTool(t, "nft", "iptables-nft-save")
	l := lab.NewPrefixed(t, "hna")
	a, b, d := lab.Host(l, "a", false), lab.Host(l, "b", true), lab.Host(l, "d", false)
	l.Veth(a, "eth0", b, "eth1")
	l.Veth(b, "eth0", d, "eth0")
	a.Addr("eth0", "10.74.43.15/24")
	a.IP("route", "add", "10.74.44.0/24", "via", "10.74.43.101")
	b.Addr("eth1", "10.74.43.101/24")
	b.Addr("eth0", "10.74.44.63/24")
	b.IP("route", "add", "default", "via", "10.74.44.1", "dev", "eth0")
	d.Addr("eth0", "10.74.44.10/24")
	d.Addr("eth0", "10.74.44.1/24")
	d.ServeHTTP("0.0.0.0:80", "business web")
	loadNFT(t, b, debianFilter)
	get := func() (string, error) { return a.HTTPGet("10.74.44.10:80", clientTimeout) }
	_, err := get()
	fails(t, "A before the wizard (no way back from D)", err)

	h := newE2EHost(t, b)
	h.settle()
	before := h.read()
	rulesetBefore := nftCounters.ReplaceAllString(b.Run("nft", "list", "ruleset"), "counter")
	iptBefore := b.Run("iptables-nft-save")
	w := &SNATGatewayOptions{From: []netip.Prefix{netip.MustParsePrefix("10.74.43.0/24")}, To: []netip.Prefix{netip.MustParsePrefix("10.74.44.0/24")}, Out: "eth0"}
	res := h.apply(w)
	if ipt := b.Run("iptables-nft-save"); ipt != iptBefore {
		t.Errorf("the apply wrote into iptables-nft:\n%s", ipt)
	}
	if rs := b.Run("nft", "list", "table", "inet", "roundtrip"); !strings.Contains(rs, "snat ip to 10.74.44.63") {
		t.Errorf("roundtrip's table lacks the SNAT:\n%s", rs)
	}
	_, err = get()
	fails(t, "A through the host's forward drop", err)

	m := regexp.MustCompile(`nft insert rule inet filter forward ([^;]*accept)`).FindStringSubmatch(strings.Join(res.Notes, "\n"))
	if m == nil || !strings.Contains(m[1], `oifname "eth0"`) || !strings.Contains(m[1], "ip saddr 10.74.43.0/24") {
		t.Fatalf("the note names no accept for the SNAT: %q", res.Notes)
	}
	b.Run("sh", "-c", "nft insert rule inet filter forward "+m[1])
	body, err := get()
	gets(t, "A after the note's accept", body, err, "business web")
	h.replanIsEmpty(w)

	handle := regexp.MustCompile(`oifname "eth0" accept # handle (\d+)`).FindStringSubmatch(b.Run("nft", "-a", "list", "chain", "inet", "filter", "forward"))
	if handle == nil {
		t.Fatal("the operator's rule is not listed")
	}
	b.Run("nft", "delete", "rule", "inet", "filter", "forward", "handle", handle[1])
	h.rollbackAll()
	if after := nftCounters.ReplaceAllString(b.Run("nft", "list", "ruleset"), "counter"); after != rulesetBefore {
		t.Errorf("nft list ruleset after rollback differs from before:\n--- before\n%s\n--- after\n%s", rulesetBefore, after)
	}
	_, err = get()
	fails(t, "A after rollback", err)
	h.sameState(before)
}
