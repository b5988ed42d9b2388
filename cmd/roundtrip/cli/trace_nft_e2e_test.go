package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"roundtrip/diagnose"
	"roundtrip/engine/doctor"
	"roundtrip/engine/finding"
	"roundtrip/engine/kernel"
	"roundtrip/engine/kernel/nftread"
	"roundtrip/engine/lab"
	"roundtrip/engine/nft"
	"roundtrip/engine/trace"
)

// The nftables oracle (issue 13): a router namespace whose whole firewall is native nft, real
// TCP clients through it, and for every flow the trace compared with what the kernel did: the
// verdict (the client got its answer or not), the NAT tuples and the mark (the conntrack entry
// read back), the egress interface (which uplink's server answered, the masquerade address),
// and the rule counters of the rules that dropped.

// nftRouter is: lan 10.83.1.2 -- lan0 [r] wan0 -- wanA 198.18.83.2 (and 203.0.113.10, .66)
// and wan1 -- wanB 198.18.84.2 (and 203.0.113.10). r routes by default via wanA; table 100,
// chosen by fwmark 1, via wanB.
type nftRouter struct {
	r, lan, wanA, wanB *lab.NS
}

func newNFTRouter(t *testing.T) *nftRouter {
	t.Helper()
	lab.RequireTool(t, "nft")
	l := lab.New(t)
	n := &nftRouter{
		r:    lab.Host(l, "hnf-r", true),
		lan:  lab.Host(l, "hnf-lan", false),
		wanA: lab.Host(l, "hnf-wana", false),
		wanB: lab.Host(l, "hnf-wanb", false),
	}
	l.Veth(n.r, "lan0", n.lan, "eth0")
	l.Veth(n.r, "wan0", n.wanA, "eth0")
	l.Veth(n.r, "wan1", n.wanB, "eth0")
	n.r.Addr("lan0", "10.83.1.1/24")
	n.r.Addr("wan0", "198.18.83.1/24")
	n.r.Addr("wan1", "198.18.84.1/24")
	n.lan.Addr("eth0", "10.83.1.2/24")
	n.lan.IP("route", "add", "default", "via", "10.83.1.1")
	n.wanA.Addr("eth0", "198.18.83.2/24")
	n.wanA.Addr("eth0", "203.0.113.10/32")
	n.wanA.Addr("eth0", "203.0.113.66/32")
	n.wanA.Addr("eth0", "192.0.2.10/32")
	n.wanB.Addr("eth0", "198.18.84.2/24")
	n.wanB.Addr("eth0", "203.0.113.10/32")
	n.r.IP("route", "add", "default", "via", "198.18.83.2", "dev", "wan0")
	n.r.IP("route", "add", "default", "via", "198.18.84.2", "dev", "wan1", "table", "100")
	n.r.IP("rule", "add", "fwmark", "0x1", "lookup", "100", "priority", "100")
	for _, port := range []string{"80", "443", "8081", "8443"} {
		n.wanA.ServeHTTP("0.0.0.0:"+port, "via wan0")
		n.wanB.ServeHTTP("0.0.0.0:"+port, "via wan1")
	}
	n.lan.ServeHTTP("0.0.0.0:8080", "lan server")
	n.r.ServeHTTP("0.0.0.0:22", "router ssh")
	return n
}

// load loads a ruleset with nft -f inside the router.
func (n *nftRouter) load(t *testing.T, ruleset string) {
	t.Helper()
	loadNFT(t, n.r, ruleset)
}

// nftFlow is one connection of the oracle.
type nftFlow struct {
	name     string
	from     *lab.NS
	src, dst string // addr:port
	iif      string // where the SYN reaches the router; "" for a connection the router makes
	// want: the body the client gets ("" when it must be blocked); the egress interface.
	body, oif string
	// rejected: blocked with an error sent back (the client is refused at once).
	rejected bool
}

// get makes the connection from a fixed source port and returns the body.
func (f nftFlow) get() (string, error) {
	conn, err := f.from.Dial(f.dst, f.src, clientTimeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(clientTimeout))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := io.ReadAll(conn)
	if err != nil {
		return "", err
	}
	_, body, _ := strings.Cut(string(resp), "\r\n\r\n")
	return body, nil
}

// checkAgainstKernel runs the flow for real and compares the trace with the kernel.
func (n *nftRouter) checkAgainstKernel(t *testing.T, f nftFlow) traceRun {
	t.Helper()
	body, err := f.get()
	args := []string{"tcp", f.src, f.dst}
	if f.iif != "" {
		args = append(args, "--iif", f.iif)
	}
	tr := traceLive(t, n.r, args...)
	fwd := tr.res.Forward
	if f.body == "" {
		if err == nil {
			t.Fatalf("%s: the client got %q; it must be blocked", f.name, body)
		}
		want := trace.LegDrop
		if f.rejected {
			want = trace.LegReject
		}
		if fwd.Verdict != want || !tr.res.Has(trace.FindingFiltered) {
			t.Errorf("%s: the kernel blocked the flow (%v) but trace says %s, findings %v\n%s", f.name, err, fwd.Verdict, tr.ids(), tr.out)
		}
		return tr
	}
	if err != nil || body != f.body {
		t.Fatalf("%s: the client got %q (%v), want %q; trace:\n%s", f.name, body, err, f.body, tr.out)
	}
	ct, cerr := kernel.OpenConntrack(kernel.Namespace{Name: n.r.Name})
	if cerr != nil {
		t.Fatal(cerr)
	}
	defer ct.Close()
	orig := kernel.ConntrackTuple{Proto: 6, Src: netip.MustParseAddrPort(f.src), Dst: netip.MustParseAddrPort(f.dst)}
	e, cerr := ct.Get(orig)
	if cerr != nil {
		t.Fatalf("%s: %v", f.name, cerr)
	}
	wantVerdict := trace.LegForward
	switch {
	case f.oif == "":
		wantVerdict = trace.LegLocal
	case f.iif == "":
		wantVerdict = trace.LegOutput
	}
	if fwd.Verdict != wantVerdict || fwd.OIF != f.oif {
		t.Errorf("%s: trace forward leg %s out %q; the kernel forwarded it out %s\n%s", f.name, fwd.Verdict, fwd.OIF, f.oif, tr.out)
	}
	// NAT tuples: the request leaves as the reply tuple reversed; the reply reaches the client
	// as the original tuple reversed.
	if fwd.Packet.Src != e.Reply.Dst || fwd.Packet.Dst != e.Reply.Src {
		t.Errorf("%s: trace says the request leaves as %s -> %s; conntrack's reply tuple is %s", f.name, fwd.Packet.Src, fwd.Packet.Dst, e.Reply)
	}
	if tr.res.Reply == nil {
		t.Fatalf("%s: no reply leg\n%s", f.name, tr.out)
	}
	rep := tr.res.Reply
	wantReply := trace.LegForward
	switch {
	case f.oif == "":
		wantReply = trace.LegOutput
	case f.iif == "":
		wantReply = trace.LegLocal
	}
	if rep.Packet.Src != e.Orig.Dst || rep.Packet.Dst != e.Orig.Src || rep.OIF != f.iif || rep.Verdict != wantReply {
		t.Errorf("%s: trace says the reply leaves %s as %s -> %s (%s); conntrack's original tuple is %s, the request came in on %s",
			f.name, rep.OIF, rep.Packet.Src, rep.Packet.Dst, rep.Verdict, e.Orig, f.iif)
	}
	// The ruleset copies the packet mark into the connmark: the mark trace gives the packet
	// is the one the kernel gave it.
	if fwd.Packet.Mark != e.Mark {
		t.Errorf("%s: trace's mark %#x, the kernel's (ct mark) %#x", f.name, fwd.Packet.Mark, e.Mark)
	}
	for _, id := range []string{trace.FindingFiltered, trace.FindingUncertain, trace.FindingKernelDisagrees} {
		if tr.res.Has(id) {
			t.Errorf("%s: unexpected %s finding: %+v", f.name, id, tr.res.Finding(id))
		}
	}
	return tr
}

// ruleCounter reads a rule's counter back from the kernel, by the start of its text.
func ruleCounter(t *testing.T, ns *lab.NS, table, chain, prefix string) (uint64, uint64) {
	t.Helper()
	return ruleCounterIn(t, ns, nft.FamilyInet, table, chain, prefix)
}

func ruleCounterIn(t *testing.T, ns *lab.NS, fam nft.Family, table, chain, prefix string) (uint64, uint64) {
	t.Helper()
	rs, err := nftread.Read(context.Background(), kernel.Namespace{Name: ns.Name}, nftread.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tb := rs.Table(fam, table)
	if tb == nil || tb.Chain(chain) == nil {
		t.Fatalf("no chain %s %s", table, chain)
	}
	for _, r := range tb.Chain(chain).Rules {
		if strings.HasPrefix(r.Text, prefix) {
			if c := r.Counter(); c != nil {
				return c.Packets, r.Handle
			}
		}
	}
	t.Fatalf("no rule %q with a counter in %s %s", prefix, table, chain)
	return 0, 0
}

const nftRouterRuleset = `
table inet hnf {
	set blocked {
		type ipv4_addr
		flags interval
		elements = { 203.0.113.64/28 }
	}
	set web_ports {
		type inet_service
		elements = { 80, 443 }
	}
	chain mangle_pre {
		type filter hook prerouting priority mangle; policy accept;
		iifname "lan0" tcp dport 443 meta mark set 0x1 ct mark set meta mark
	}
	chain dstnat {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan0" tcp dport 80 dnat ip to 10.83.1.2:8080
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ip daddr @blocked counter drop
		iifname "lan0" oifname { "wan0", "wan1" } tcp dport @web_ports counter accept
		iifname "wan0" oifname "lan0" ip daddr 10.83.1.2 tcp dport 8080 counter accept
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
		oifname { "wan0", "wan1" } masquerade
	}
	chain route_out {
		type route hook output priority mangle; policy accept;
		tcp dport 8443 meta mark set 0x1 ct mark set meta mark
	}
}
`

// A router whose whole firewall is one inet table: a set, a mangle-priority mark feeding
// policy routing, a DNAT, a masquerade and a forward chain with policy drop.
func TestPrivilegedTraceNFTRouter(t *testing.T) {
	n := newNFTRouter(t)
	n.load(t, nftRouterRuleset)

	flows := []nftFlow{
		{name: "lan to the internet, masqueraded out wan0", from: n.lan, src: "10.83.1.2:41001", dst: "203.0.113.10:80", iif: "lan0", body: "via wan0", oif: "wan0"},
		{name: "lan to port 443, marked, routed by table 100 out wan1", from: n.lan, src: "10.83.1.2:41002", dst: "203.0.113.10:443", iif: "lan0", body: "via wan1", oif: "wan1"},
		{name: "port forward from wan0 to the lan server", from: n.wanA, src: "198.18.83.2:41003", dst: "198.18.83.1:80", iif: "wan0", body: "lan server", oif: "lan0"},
		// The router's own connection: routed out wan0 first, marked by the route chain,
		// routed again out wan1 and masqueraded to wan1's address.
		{name: "the router's own connection, rerouted by a route chain's mark", from: n.r, src: "198.18.83.1:41006", dst: "203.0.113.10:8443", body: "via wan1", oif: "wan1"},
	}
	for _, f := range flows {
		tr := n.checkAgainstKernel(t, f)
		if t.Failed() {
			t.Logf("%s:\n%s", f.name, tr.out)
		}
	}
	// The marked flow's trace names the rule that marked it, as nft prints it.
	marked := traceLive(t, n.r, "tcp", "10.83.1.2:41002", "203.0.113.10:443", "--iif", "lan0")
	var sawMark, sawMasq bool
	for _, s := range marked.res.Forward.Steps {
		if s.Hook == "nft inet hnf mangle_pre" && strings.Contains(s.Rule, `iifname "lan0" tcp dport 443 meta mark set 0x00000001 ct mark set meta mark # handle `) {
			sawMark = true
		}
		if s.Hook == "nft inet hnf srcnat" && strings.Contains(s.What, "MASQUERADE 10.83.1.2:41002 -> 198.18.84.1:41002") {
			sawMasq = true
		}
	}
	t.Logf("marked flow:\n%s", marked.out)
	if !sawMark || !sawMasq {
		t.Errorf("the marked flow's steps do not name the mark rule (%v) or the masquerade (%v):\n%s", sawMark, sawMasq, marked.out)
	}

	// Dropped by the forward chain's policy: no rule accepts port 8081.
	pol := n.checkAgainstKernel(t, nftFlow{name: "lan to port 8081", from: n.lan, src: "10.83.1.2:41004", dst: "203.0.113.10:8081", iif: "lan0"})
	if f := pol.finding(t, trace.FindingFiltered); !strings.Contains(f.Summary, "nft chain inet hnf forward: its policy drop") ||
		len(f.Evidence) == 0 || f.Evidence[0] != "policy drop of chain inet hnf forward (hook forward)" {
		t.Errorf("the policy drop is not named: %+v", f)
	}

	// Dropped by the set: the rule's counter counts the kernel's drops, and trace names it.
	before, handle := ruleCounter(t, n.r, "hnf", "forward", "ip daddr @blocked")
	set := n.checkAgainstKernel(t, nftFlow{name: "lan to a blocked address", from: n.lan, src: "10.83.1.2:41005", dst: "203.0.113.66:80", iif: "lan0"})
	after, _ := ruleCounter(t, n.r, "hnf", "forward", "ip daddr @blocked")
	if after <= before {
		t.Errorf("the kernel did not count the drop in the @blocked rule: %d -> %d", before, after)
	}
	want := fmt.Sprintf("ip daddr @blocked counter packets %d bytes", after)
	if f := set.finding(t, trace.FindingFiltered); len(f.Evidence) == 0 || !strings.HasPrefix(f.Evidence[0], want) ||
		!strings.HasSuffix(f.Evidence[0], fmt.Sprintf("drop # handle %d", handle)) {
		t.Errorf("the set drop is not named as nft prints it (want %q... handle %d): %+v", want, handle, f)
	}

	// show lists the table as nft does.
	code, out, errs := runCLI(t, "show", "--netns", n.r.Name)
	for _, want := range []string{"NFTABLES (native tables", "table inet hnf {", "type filter hook forward priority filter; policy drop;",
		"elements = { 203.0.113.64/28 }", "ip daddr @blocked counter packets ", "oifname { \"wan0\", \"wan1\" } masquerade # handle "} {
		if code != ExitOK || !strings.Contains(out, want) {
			t.Errorf("show (exit %d) does not print %q:\n%s%s", code, want, out, errs)
		}
	}

	// A snapshot of the router traces the same.
	sameAsSnapshot(t, n.r, marked, "tcp", "10.83.1.2:41002", "203.0.113.10:443", "--iif", "lan0")
	sameAsSnapshot(t, n.r, pol, "tcp", "10.83.1.2:41004", "203.0.113.10:8081", "--iif", "lan0")
}

// A Debian-style /etc/nftables.conf for a router: `flush ruleset`, defines, an inet filter
// table with input and forward policy drop, and an `ip nat` table of nat chains (named as
// iptables-nft's would be, but written with nft).
const debianRouterConf = `#!/usr/sbin/nft -f

flush ruleset

define LAN = "lan0"
define WAN = "wan0"

table inet filter {
	chain input {
		type filter hook input priority filter; policy drop;
		iif lo accept
		ct state invalid drop
		ct state established,related accept
		iifname $LAN tcp dport { 22, 80 } accept
		meta l4proto { icmp, ipv6-icmp } accept
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname $LAN oifname $WAN accept
		iifname $WAN ct status dnat accept
	}
	chain output {
		type filter hook output priority filter; policy accept;
	}
}

table ip nat {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname $WAN tcp dport 8080 dnat to 10.83.1.2:8080
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname $WAN masquerade
	}
}
`

func TestPrivilegedTraceNFTDebianRouter(t *testing.T) {
	n := newNFTRouter(t)
	n.wanA.IP("route", "add", "10.83.1.0/24", "via", "198.18.83.1")
	n.load(t, debianRouterConf)
	for _, f := range []nftFlow{
		{name: "lan to the internet", from: n.lan, src: "10.83.1.2:42001", dst: "203.0.113.10:80", iif: "lan0", body: "via wan0", oif: "wan0"},
		{name: "port forward 8080 from wan0", from: n.wanA, src: "198.18.83.2:42002", dst: "198.18.83.1:8080", iif: "wan0", body: "lan server", oif: "lan0"},
		{name: "ssh to the router from the lan", from: n.lan, src: "10.83.1.2:42003", dst: "10.83.1.1:22", iif: "lan0", body: "router ssh"},
	} {
		tr := n.checkAgainstKernel(t, f)
		if t.Failed() {
			t.Fatalf("%s:\n%s", f.name, tr.out)
		}
		if f.oif == "lan0" && !hasStep(tr.res.Forward, "nft ip nat prerouting", "DNAT 198.18.83.1:8080 -> 10.83.1.2:8080") {
			t.Errorf("%s: the DNAT of the native ip nat table is not on the path:\n%s", f.name, tr.out)
		}
	}
	ssh := n.checkAgainstKernel(t, nftFlow{name: "ssh to the router from wan0", from: n.wanA, src: "198.18.83.2:42004", dst: "198.18.83.1:22", iif: "wan0"})
	if f := ssh.finding(t, trace.FindingFiltered); len(f.Evidence) == 0 || f.Evidence[0] != "policy drop of chain inet filter input (hook input)" {
		t.Errorf("the input policy drop is not named: %+v", f)
	}
	// Forwarding from wan0 to the lan without a DNAT: the forward policy drops it. The DNAT
	// rule matches (port 8080) but translates to the same address, which the kernel does not
	// count as DNAT (ct status dnat stays unset).
	fw := n.checkAgainstKernel(t, nftFlow{name: "wan0 straight to the lan server", from: n.wanA, src: "198.18.83.2:42005", dst: "10.83.1.2:8080", iif: "wan0"})
	if f := fw.finding(t, trace.FindingFiltered); len(f.Evidence) == 0 || f.Evidence[0] != "policy drop of chain inet filter forward (hook forward)" {
		t.Errorf("the forward policy drop is not named: %+v", f)
	}
	// An ingress chain on wan0 (a netdev table, as DDoS filters are written) drops the port
	// forward before prerouting.
	n.load(t, `table netdev hnf_edge {
	chain in {
		type filter hook ingress device "wan0" priority -500; policy accept;
		tcp dport 8080 counter drop
	}
}
`)
	edge := n.checkAgainstKernel(t, nftFlow{name: "port forward dropped at wan0's ingress", from: n.wanA, src: "198.18.83.2:42006", dst: "198.18.83.1:8080", iif: "wan0"})
	if f := edge.finding(t, trace.FindingFiltered); !strings.Contains(f.Summary, "nft chain netdev hnf_edge in") || !strings.HasPrefix(f.Evidence[0], "tcp dport 8080 counter packets ") {
		t.Errorf("the ingress drop is not named: %+v", f)
	}
	if n, _ := ruleCounterIn(t, n.r, nft.FamilyNetdev, "hnf_edge", "in", "tcp dport 8080"); n == 0 {
		t.Error("the kernel did not count the ingress drop")
	}
}

// A hand-written dual-WAN: a verdict map from destination prefixes to chains that set the
// mark (and save it in the connmark, restored for the connection's later packets from the
// lan); the mark picks the uplink by an ip rule; each uplink has its own source NAT.
const dualWANRuleset = `
table inet dualwan {
	map wan_select {
		type ipv4_addr : verdict
		flags interval
		elements = { 203.0.113.0/28 : jump via_b, 192.0.2.0/24 : jump via_a }
	}
	chain via_a {
		meta mark set 0x1 ct mark set meta mark
	}
	chain via_b {
		meta mark set 0x2 ct mark set meta mark
	}
	chain mark_pre {
		type filter hook prerouting priority mangle; policy accept;
		iifname "lan0" meta mark set ct mark
		iifname "lan0" ct state new ip daddr vmap @wan_select
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lan0" meta mark { 0x1, 0x2 } accept
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" masquerade
		oifname "wan1" snat ip to 198.18.84.1
	}
}
`

func TestPrivilegedTraceNFTDualWANVerdictMap(t *testing.T) {
	n := newNFTRouter(t)
	// mark 2 goes out wan1 (table 100); mark 1 stays in main (wan0).
	n.r.IP("rule", "del", "priority", "100")
	n.r.IP("rule", "add", "fwmark", "0x2", "lookup", "100", "priority", "90")
	n.load(t, dualWANRuleset)
	for _, f := range []nftFlow{
		{name: "203.0.113.0/28 by the map to wan1", from: n.lan, src: "10.83.1.2:43001", dst: "203.0.113.10:80", iif: "lan0", body: "via wan1", oif: "wan1"},
		{name: "192.0.2.0/24 by the map to wan0", from: n.lan, src: "10.83.1.2:43002", dst: "192.0.2.10:80", iif: "lan0", body: "via wan0", oif: "wan0"},
	} {
		tr := n.checkAgainstKernel(t, f)
		if t.Failed() {
			t.Fatalf("%s:\n%s", f.name, tr.out)
		}
	}
	// Not in the map: no mark, and the forward chain accepts only marked flows.
	un := n.checkAgainstKernel(t, nftFlow{name: "203.0.113.66 is in no prefix of the map", from: n.lan, src: "10.83.1.2:43003", dst: "203.0.113.66:80", iif: "lan0"})
	if f := un.finding(t, trace.FindingFiltered); len(f.Evidence) == 0 || f.Evidence[0] != "policy drop of chain inet dualwan forward (hook forward)" {
		t.Errorf("the unmarked flow's drop is not named: %+v", f)
	}
}

func hasStep(leg trace.Leg, hook, what string) bool {
	for _, s := range leg.Steps {
		if s.Hook == hook && strings.Contains(s.What, what) {
			return true
		}
	}
	return false
}

// Case 5 with nft-only rules (parity with TestPrivilegedTraceCase5ReplyBypassesNAT): A's port
// forward and the author's reply-direction SNAT are written with nft in a table of its own;
// trace names the bypass and that rule, doctor the DNAT without SNAT, and the fix (an snat of
// the forwarded request, added with nft) makes both quiet.
func TestPrivilegedTraceNFTCase5ReplyBypassesNAT(t *testing.T) {
	lab.RequireTool(t, "nft")
	n := lab.Case5(t)
	client, a := n.Client, n.A
	a.Run("iptables", "-w", "-t", "nat", "-F")
	loadNFT(t, a, `table ip hnf_fwd {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 10.72.5.34 tcp dport 81 dnat to 10.72.5.32:80
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.72.5.32 snat to 10.72.5.34
	}
}
`)
	if body, err := client.HTTPGet(n.Service, clientTimeout); err == nil {
		t.Fatalf("the port forward works before the fix (%q): the failure does not reproduce", body)
	}
	flow := []string{"tcp", n.ClientAddr + ":40000", n.Service, "--iif", n.AIface}
	live := traceLive(t, a, flow...)
	f := live.finding(t, trace.FindingReplyBypassesNAT)
	ev := strings.Join(f.Evidence, "\n")
	if live.code != ExitFindings || live.res.Forward.OIF != "eth0" || live.res.Forward.Packet.Dst.String() != n.Backend ||
		!strings.Contains(ev, "ip saddr 10.72.5.32 snat to 10.72.5.34 # handle ") || f.Fix.Wizard != finding.WizardPortForward {
		t.Errorf("exit %d forward %+v finding %+v\n%s", live.code, live.res.Forward.Packet, f, live.out)
	}
	if !hasStep(live.res.Forward, "nft ip hnf_fwd prerouting", "DNAT 10.72.5.34:81 -> 10.72.5.32:80") {
		t.Errorf("the nft DNAT is not on the path:\n%s", live.out)
	}
	sameAsSnapshot(t, a, live, flow...)
	code, out, _ := runCLI(t, "doctor", "--netns", a.Name, "--json")
	if code != ExitOK || !strings.Contains(out, doctor.FindingDNATWithoutSNAT) ||
		!strings.Contains(out, "nft add rule ip hnf_fwd postrouting ip daddr 10.72.5.32 tcp dport 80 snat to 10.72.5.34") {
		t.Errorf("doctor on A before the fix (exit %d, a warning is 0): %s", code, out)
	}

	// The fix, with nft: the reply-direction rule goes, the forwarded request is SNATed.
	a.Run("nft", "flush", "chain", "ip", "hnf_fwd", "postrouting")
	a.Run("nft", "add", "rule", "ip", "hnf_fwd", "postrouting", "ip", "daddr", "10.72.5.32", "tcp", "dport", "80", "snat", "to", "10.72.5.34")
	if body, err := client.HTTPGet(n.Service, clientTimeout); err != nil || body != n.Body {
		t.Fatalf("the port forward after the fix: %q %v", body, err)
	}
	fixed := traceLive(t, a, flow...)
	if fixed.code != ExitOK || len(fixed.res.Findings) != 0 || fixed.res.Reply == nil || fixed.res.Reply.Packet.Src.String() != n.Service {
		t.Errorf("after the fix: exit %d findings %v\n%s", fixed.code, fixed.ids(), fixed.out)
	}
	if ids := doctorIDs(t, a); len(ids) != 0 {
		t.Errorf("doctor on A after the fix: %v", ids)
	}
}

// firewalld's native layout (firewalld 1.x: one inet table, zones dispatched by interface,
// chains at the iptables priorities + 10): zone public on wan0 with ssh and a forward-port
// 8080 -> the lan server, masquerading; zone trusted on lan0.
func TestPrivilegedTraceNFTFirewalld(t *testing.T) {
	conf, err := os.ReadFile("../../../engine/kernel/nftread/testdata/firewalld.nft")
	if err != nil {
		t.Fatal(err)
	}
	n := newNFTRouter(t)
	n.wanA.IP("route", "add", "10.83.1.0/24", "via", "198.18.83.1")
	n.load(t, strings.ReplaceAll(string(conf), "10.81.1.2:80", "10.83.1.2:8080"))
	for _, f := range []nftFlow{
		{name: "public ssh", from: n.wanA, src: "198.18.83.2:44001", dst: "198.18.83.1:22", iif: "wan0", body: "router ssh"},
		{name: "forward-port 8080", from: n.wanA, src: "198.18.83.2:44003", dst: "198.18.83.1:8080", iif: "wan0", body: "lan server", oif: "lan0"},
		{name: "trusted lan out, masqueraded", from: n.lan, src: "10.83.1.2:44004", dst: "203.0.113.10:80", iif: "lan0", body: "via wan0", oif: "wan0"},
	} {
		tr := n.checkAgainstKernel(t, f)
		if t.Failed() {
			t.Fatalf("%s:\n%s", f.name, tr.out)
		}
	}
	for _, f := range []nftFlow{
		{name: "public port 8081 on the router is rejected", from: n.wanA, src: "198.18.83.2:44002", dst: "198.18.83.1:8081", iif: "wan0", rejected: true},
		{name: "public into the lan is rejected", from: n.wanA, src: "198.18.83.2:44005", dst: "10.83.1.2:8080", iif: "wan0", rejected: true},
	} {
		tr := n.checkAgainstKernel(t, f)
		if fd := tr.res.Finding(trace.FindingFiltered); fd == nil || !strings.Contains(fd.Evidence[0], "reject with icmpx admin-prohibited # handle ") {
			t.Errorf("%s: the reject rule is not named: %+v\n%s", f.name, fd, tr.out)
		}
	}
}

// diagnose on the nft router: the port-forwarded flow's packets, captured on both sides of
// the DNAT, agree with the trace of the nft ruleset (no capture finding, completed).
func TestPrivilegedDiagnoseNFTPortForward(t *testing.T) {
	n := newNFTRouter(t)
	n.load(t, nftRouterRuleset)
	done := runCLIAsync(t, "diagnose", "tcp", "198.18.83.2", "198.18.83.1:80", "--iif", "wan0", "--netns", n.r.Name, "--timeout", "5s", "--json")
	if body, err := (nftFlow{from: n.wanA, src: "198.18.83.2:45001", dst: "198.18.83.1:80"}).get(); err != nil || body != "lan server" {
		t.Fatalf("the port forward: %q %v", body, err)
	}
	r := <-done
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	var last struct {
		Type    string           `json:"type"`
		Verdict diagnose.Verdict `json:"verdict"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("last line of diagnose --json: %v\n%s", err, r.out)
	}
	v := last.Verdict
	if r.code != ExitOK || v.Outcome != diagnose.OutcomeCompleted || v.Capture == nil || len(v.Capture.Findings) != 0 || v.Trace == nil ||
		v.Trace.Forward.OIF != "lan0" || v.Trace.Forward.Packet.Dst.String() != "10.83.1.2:8080" {
		t.Errorf("diagnose: exit %d, verdict %+v\n%s\n%s", r.code, v, r.out, r.errs)
	}
}

// loadNFT loads a ruleset with nft -f inside a namespace.
func loadNFT(t *testing.T, ns *lab.NS, ruleset string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(p, []byte(ruleset), 0o600); err != nil {
		t.Fatal(err)
	}
	ns.Run("nft", "-f", p)
}

// Case 3 with the border written in nft (parity with the iptables border of lab.Case3): the
// trace on relay 2 names the nft rule that drops HTTP from the underlay, and the kernel's
// counter of that rule counts the client's SYNs.
func TestPrivilegedTraceNFTCase3Border(t *testing.T) {
	lab.RequireTool(t, "nft")
	c := lab.Case3(t)
	c.Relay2.Run("iptables", "-w", "-D", "FORWARD", "-i", "u0", "-p", "tcp", "--dport", "80", "-j", "DROP")
	loadNFT(t, c.Relay2, `table inet border {
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "u0" tcp dport 80 counter drop
	}
}
`)
	if body, err := c.Get(clientTimeout); err == nil {
		t.Fatalf("the client gets %q through the nft border: the failure does not reproduce", body)
	}
	tr := traceLive(t, c.Relay2, "tcp", c.ClientPublic+":40000", c.Service, "--iif", c.Relay2Underlay)
	f := tr.finding(t, trace.FindingFiltered)
	if tr.res.Forward.Verdict != trace.LegDrop || !strings.Contains(f.Summary, "the request is dropped by nft chain inet border forward") ||
		!strings.HasPrefix(f.Evidence[0], `iifname "u0" tcp dport 80 counter packets `) || !strings.Contains(f.Evidence[0], " drop # handle ") {
		t.Errorf("trace on relay 2: %+v\n%s", f, tr.out)
	}
	if n, _ := ruleCounter(t, c.Relay2, "border", "forward", `iifname "u0" tcp dport 80`); n == 0 {
		t.Error("the kernel's counter of the border rule is 0: the drop the trace names is not the kernel's")
	}
	sameAsSnapshot(t, c.Relay2, tr, "tcp", c.ClientPublic+":40000", c.Service, "--iif", c.Relay2Underlay)
}

// Case 4 with the fix written in nft (parity with lab.Case4's iptables SNAT): with forwarding
// off, trace says so and doctor names the nft rule as evidence that B forwards; with
// forwarding on, A reaches D and the trace shows the nft SNAT and the reply coming back.
func TestPrivilegedTraceNFTCase4SNAT(t *testing.T) {
	lab.RequireTool(t, "nft")
	n := lab.Case4(t)
	loadNFT(t, n.B, `table ip hnf_snat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip daddr 10.72.44.0/24 oifname "eth0" snat to 10.72.44.63
	}
}
`)
	flow := []string{"tcp", n.AAddr + ":40000", n.Service, "--iif", n.BIn}
	off := traceLive(t, n.B, flow...)
	off.finding(t, trace.FindingForwardingDisabled)
	code, out, _ := runCLI(t, "doctor", "--netns", n.B.Name, "--json")
	if !strings.Contains(out, "forwarding-off") || !strings.Contains(out, `nft chain ip hnf_snat postrouting: ip daddr 10.72.44.0/24 oifname \"eth0\" snat to 10.72.44.63 # handle `) {
		t.Errorf("doctor with forwarding off (exit %d) does not name the nft rule:\n%s", code, out)
	}
	n.EnableForwarding()
	if body, err := n.A.HTTPGet(n.Service, clientTimeout); err != nil || body != n.Body {
		t.Fatalf("A through B with the nft SNAT: %q %v", body, err)
	}
	fixed := traceLive(t, n.B, flow...)
	if fixed.code != ExitOK || len(fixed.res.Findings) != 0 || fixed.res.Forward.Packet.Src.Addr().String() != n.BBusiness ||
		fixed.res.Reply == nil || fixed.res.Reply.OIF != n.BIn || !hasStep(fixed.res.Forward, "nft ip hnf_snat postrouting", "SNAT 10.72.43.15:40000 -> 10.72.44.63:40000") {
		t.Errorf("after the fix: exit %d findings %v\n%s", fixed.code, fixed.ids(), fixed.out)
	}
	sameAsSnapshot(t, n.B, fixed, flow...)
}

// The same inet table for IPv6: the forward chain's set of ports and the masquerade apply to
// IPv6 flows too, the `ip daddr @blocked` rule (IPv4 only) does not.
func TestPrivilegedTraceNFTRouterIPv6(t *testing.T) {
	lab.RequireTool(t, "nft")
	l := lab.New(t)
	n := &nftRouter{r: lab.Host(l, "hnf-r6", true), lan: lab.Host(l, "hnf-lan6", false), wanA: lab.Host(l, "hnf-wan6", false)}
	for _, ns := range []*lab.NS{n.r, n.lan, n.wanA} {
		ns.NoDAD()
	}
	n.r.Sysctl("net.ipv6.conf.all.forwarding", "1")
	l.Veth(n.r, "lan0", n.lan, "eth0")
	l.Veth(n.r, "wan0", n.wanA, "eth0")
	n.r.Addr("lan0", "fd83:1::1/64")
	n.r.Addr("wan0", "fd83:83::1/64")
	n.lan.Addr("eth0", "fd83:1::2/64")
	n.lan.IP("-6", "route", "add", "default", "via", "fd83:1::1")
	n.wanA.Addr("eth0", "fd83:83::2/64")
	n.r.IP("-6", "route", "add", "default", "via", "fd83:83::2", "dev", "wan0")
	n.wanA.ServeHTTP("[fd83:83::2]:80", "via wan0, v6")
	n.wanA.ServeHTTP("[fd83:83::2]:8081", "via wan0, v6")
	n.load(t, nftRouterRuleset)
	tr := n.checkAgainstKernel(t, nftFlow{name: "lan to wan over IPv6, masqueraded", from: n.lan, src: "[fd83:1::2]:46001", dst: "[fd83:83::2]:80", iif: "lan0", body: "via wan0, v6", oif: "wan0"})
	if !hasStep(tr.res.Forward, "nft inet hnf srcnat", "MASQUERADE [fd83:1::2]:46001 -> [fd83:83::1]:46001") {
		t.Errorf("no IPv6 masquerade step:\n%s", tr.out)
	}
	pol := n.checkAgainstKernel(t, nftFlow{name: "IPv6 port 8081: the forward policy", from: n.lan, src: "[fd83:1::2]:46002", dst: "[fd83:83::2]:8081", iif: "lan0"})
	if f := pol.finding(t, trace.FindingFiltered); f.Evidence[0] != "policy drop of chain inet hnf forward (hook forward)" {
		t.Errorf("IPv6 policy drop: %+v", f)
	}
}
