package trace

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/model/modeltest"
)

func stepIndex(l *Leg, hook, contains string) int {
	for i, s := range l.Steps {
		if s.Hook == hook && strings.Contains(s.What+" "+s.Rule, contains) {
			return i
		}
	}
	return -1
}

func dumpLeg(l *Leg) string {
	if l == nil {
		return "<nil>"
	}
	var b strings.Builder
	for _, s := range l.Steps {
		b.WriteString("  " + s.Hook + ": " + s.What + " | " + s.Rule + "\n")
	}
	return b.String()
}

func wantFindings(t *testing.T, r *Result, want ...string) {
	t.Helper()
	got := finding.IDs(r.Findings)
	if !slices.Equal(got, want) {
		var b bytes.Buffer
		r.Render(&b, nil)
		t.Fatalf("findings %v, want %v\n%s", got, want, b.String())
	}
}

func TestTraceLocalDelivery(t *testing.T) {
	s := modeltest.Host(t, `
link eth0 10.0.0.1/24
route default via 10.0.0.254 dev eth0
`)
	r := trace(t, s, "tcp 10.0.0.2:40000 10.0.0.1:80 eth0")
	wantFindings(t, r)
	if r.Forward.Verdict != LegLocal || r.Forward.IIF != "eth0" {
		t.Fatalf("forward: %+v", r.Forward)
	}
	if r.Reply == nil || r.Reply.Verdict != LegOutput || r.Reply.OIF != "eth0" {
		t.Fatalf("reply: %+v", r.Reply)
	}
	if got := r.Reply.Packet.Src.String(); got != "10.0.0.1:80" {
		t.Errorf("reply source %s", got)
	}
	if r.Forward.Table != model.TableLocal || r.Forward.Rule == nil || *r.Forward.Rule != 0 {
		t.Errorf("forward chose table %d rule %v, want local by rule 0", r.Forward.Table, r.Forward.Rule)
	}
}

// DNAT in nat PREROUTING happens before the routing decision, which sees the new destination.
func TestTraceDNATBeforeRouting(t *testing.T) {
	s := modeltest.Host(t, `
link eth0 203.0.113.1/24
link eth1 10.1.0.1/24
sysctl net.ipv4.ip_forward=1
ipt nat -A PREROUTING -d 203.0.113.1/32 -i eth0 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.1.0.5:8080
ipt nat -A POSTROUTING -o eth0 -j MASQUERADE
`)
	r := trace(t, s, "tcp 203.0.113.9:40000 203.0.113.1:80 eth0")
	wantFindings(t, r, FindingAssumedReturnRoute)
	f := &r.Forward
	if f.Verdict != LegForward || f.OIF != "eth1" {
		t.Fatalf("forward %s out %s, want forwarded out eth1\n%s", f.Verdict, f.OIF, dumpLeg(f))
	}
	nat, route := stepIndex(f, "nat PREROUTING", "DNAT"), stepIndex(f, "routing", "")
	if nat < 0 || route < 0 || nat > route {
		t.Fatalf("DNAT step %d, routing step %d: DNAT must come first\n%s", nat, route, dumpLeg(f))
	}
	if got := f.Packet.Dst.String(); got != "10.1.0.5:8080" {
		t.Errorf("forward packet dst %s", got)
	}
	// The reply comes from the backend on eth1, is routed to the client on eth0, and
	// conntrack restores the source the client spoke to after routing. The MASQUERADE rule for
	// eth0 is not consulted: the reply is not a new connection.
	rp := r.Reply
	if rp == nil || rp.IIF != "eth1" || rp.OIF != "eth0" || rp.Verdict != LegForward {
		t.Fatalf("reply %+v\n%s", rp, dumpLeg(rp))
	}
	if rp.Packet.Src.String() != "203.0.113.1:80" || rp.Packet.Dst.String() != "203.0.113.9:40000" {
		t.Errorf("reply packet %s -> %s", rp.Packet.Src, rp.Packet.Dst)
	}
	if stepIndex(rp, "nat POSTROUTING", "MASQUERADE") >= 0 && !strings.Contains(rp.Steps[stepIndex(rp, "nat POSTROUTING", "MASQUERADE")].What, "not consulted") {
		t.Errorf("MASQUERADE applied to the reply\n%s", dumpLeg(rp))
	}
}

// A MARK in mangle PREROUTING changes the table the routing decision uses.
func TestTraceMarkChoosesTable(t *testing.T) {
	base := `
link eth0 10.0.0.1/24
link eth1 192.0.2.2/30
link eth2 198.51.100.2/30
sysctl net.ipv4.ip_forward=1
route default via 192.0.2.1 dev eth1
route table 100 default via 198.51.100.1 dev eth2
rule 100 fwmark 0x1 table 100
`
	r := trace(t, modeltest.Host(t, base), "tcp 10.0.0.7:40000 8.8.8.8:443 eth0")
	if r.Forward.OIF != "eth1" {
		t.Fatalf("without the mark: out %s, want eth1", r.Forward.OIF)
	}
	s := modeltest.Host(t, base+"ipt mangle -A PREROUTING -i eth0 -p tcp -m tcp --dport 443 -j MARK --set-xmark 0x1/0xffffffff\n")
	r = trace(t, s, "tcp 10.0.0.7:40000 8.8.8.8:443 eth0")
	f := &r.Forward
	if f.OIF != "eth2" || f.Table != 100 || f.Rule == nil || *f.Rule != 100 || f.Gateway != netip.MustParseAddr("198.51.100.1") {
		t.Fatalf("with the mark: out %s table %d rule %v gw %s, want eth2 by rule 100 in table 100\n%s", f.OIF, f.Table, f.Rule, f.Gateway, dumpLeg(f))
	}
	if f.Packet.Mark != 1 {
		t.Errorf("packet mark %#x", f.Packet.Mark)
	}
}

// Marking connections on ingress (CONNMARK) and restoring the mark for replies routes the
// replies back out the interface the connection came in on; without the restore, the reply
// takes the main table and the trace names the asymmetric return.
func TestTraceConnmarkRoutesReply(t *testing.T) {
	base := `
link eth1 192.0.2.2/30
link eth2 198.51.100.2/30
route default via 192.0.2.1 dev eth1
route table 200 default via 198.51.100.1 dev eth2
rule 100 fwmark 0x2/0xff table 200
ipt mangle -A PREROUTING -i eth2 -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x2/0xff
`
	flow := "tcp 203.0.113.50:40000 198.51.100.2:22 eth2"
	r := trace(t, modeltest.Host(t, base), flow)
	wantFindings(t, r, FindingAsymmetricReturn)
	if r.Reply.OIF != "eth1" {
		t.Fatalf("reply out %s, want eth1 (main table)", r.Reply.OIF)
	}
	f := r.Findings[0]
	if f.Fix.Wizard != finding.WizardSourceReturn || !strings.Contains(strings.Join(f.Evidence, "\n"), "eth2") || !strings.Contains(strings.Join(f.Evidence, "\n"), "192.0.2.1") {
		t.Errorf("finding %+v", f)
	}

	r = trace(t, modeltest.Host(t, base+"ipt mangle -A OUTPUT -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff\n"), flow)
	wantFindings(t, r)
	rp := r.Reply
	if rp.OIF != "eth2" || rp.Packet.Mark != 2 || rp.Table != 200 {
		t.Fatalf("reply out %s mark %#x table %d, want eth2 by mark 0x2 in table 200\n%s", rp.OIF, rp.Packet.Mark, rp.Table, dumpLeg(rp))
	}
	if stepIndex(rp, "routing", "routed again") < 0 {
		t.Errorf("no re-route after the mark changed in mangle OUTPUT\n%s", dumpLeg(rp))
	}
}

// connmarkRouter is a dual-WAN router that marks connections by their ingress WAN and routes
// marked replies through wan2's table (the CONNMARK method of seed case 2).
const connmarkRouter = `
link lan 10.0.0.1/24
link wan1 192.0.2.2/30
link wan2 198.51.100.2/30
sysctl net.ipv4.ip_forward=1
route default via 192.0.2.1 dev wan1
route table 2 default via 198.51.100.1 dev wan2
route table 2 10.0.0.0/24 dev lan
rule 100 fwmark 0x2 table 2
ipt mangle -A PREROUTING -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
ipt mangle -A PREROUTING -i wan2 -m conntrack --ctstate NEW -j MARK --set-xmark 0x2/0xffffffff
ipt mangle -A PREROUTING -m conntrack --ctstate NEW -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff`

// The same on a router: CONNMARK saved on the forward leg, restored in mangle PREROUTING for
// the reply, which then routes by fwmark.
func TestTraceConnmarkForwarded(t *testing.T) {
	s := modeltest.Host(t, connmarkRouter+`
ipt nat -A PREROUTING -i wan2 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.100
`)
	r := trace(t, s, "tcp 203.0.113.50:40000 198.51.100.2:80 wan2")
	wantFindings(t, r, FindingAssumedReturnRoute)
	if r.Forward.OIF != "lan" || r.Reply == nil || r.Reply.OIF != "wan2" || r.Reply.Packet.Mark != 2 {
		t.Fatalf("forward out %s, reply %+v\n%s", r.Forward.OIF, r.Reply, dumpLeg(r.Reply))
	}
}

// Seed case 5: DNAT on a one-armed host. The author's SNAT rule matched the reply direction
// (-s BACKEND), which the nat table never sees; the trace flags the bypass and names that rule.
// The corrected SNAT (-d BACKEND) fixes it.
func TestTraceReplyBypassesNAT(t *testing.T) {
	base := `
link eth0 192.168.1.34/24
sysctl net.ipv4.ip_forward=1
ipt nat -A PREROUTING -d 192.168.1.34/32 -p tcp -m tcp --dport 81 -j DNAT --to-destination 192.168.1.32:80
`
	flow := "tcp 192.168.1.185:61777 192.168.1.34:81 eth0"
	r := trace(t, modeltest.Host(t, base+"ipt nat -A POSTROUTING -s 192.168.1.32/32 -j SNAT --to-source 192.168.1.34\n"), flow)
	wantFindings(t, r, FindingReplyBypassesNAT)
	f := r.Findings[0]
	ev := strings.Join(f.Evidence, "\n")
	if f.Severity != finding.SeverityError || f.Fix.Wizard != finding.WizardPortForward || !slices.Contains(f.Fix.Args, "auto") {
		t.Errorf("finding %+v", f)
	}
	if !strings.Contains(ev, "-s 192.168.1.32/32 -j SNAT") || !strings.Contains(ev, "never fires") {
		t.Errorf("evidence does not name the reply-direction SNAT rule:\n%s", ev)
	}
	if !strings.Contains(f.Fix.Summary, "-d 192.168.1.32 -p tcp --dport 80 -j SNAT --to-source 192.168.1.34") {
		t.Errorf("fix %q", f.Fix.Summary)
	}
	if r.Forward.Packet.Src.Addr() != netip.MustParseAddr("192.168.1.185") {
		t.Errorf("the wrong SNAT rule changed the request: %s", r.Forward.Packet.Src)
	}

	r = trace(t, modeltest.Host(t, base+"ipt nat -A POSTROUTING -d 192.168.1.32/32 -p tcp -m tcp --dport 80 -j SNAT --to-source 192.168.1.34\n"), flow)
	wantFindings(t, r)
	if got := r.Forward.Packet; got.Src.String() != "192.168.1.34:61777" || got.Dst.String() != "192.168.1.32:80" {
		t.Errorf("request leaves as %+v", got)
	}
	rp := r.Reply
	if rp.IIF != "eth0" || rp.OIF != "eth0" || rp.Verdict != LegForward || rp.Packet.Src.String() != "192.168.1.34:81" || rp.Packet.Dst.String() != "192.168.1.185:61777" {
		t.Fatalf("reply %s -> %s in %s out %s %s\n%s", rp.Packet.Src, rp.Packet.Dst, rp.IIF, rp.OIF, rp.Verdict, dumpLeg(rp))
	}
}

// Seed case 1: the request comes in on the LAN NIC (DNATed by the firewall abroad), the reply
// follows the national route out em1. The seed's fix (a table for em1 selected by em1's
// address, the national route removed from main) makes the reply leave by the LAN NIC.
func TestTraceAsymmetricReturn(t *testing.T) {
	r := trace(t, modeltest.Host(t, `
link eth0 192.168.10.2/24
link em1 192.168.1.254/30
route default via 192.168.10.1 dev eth0
route 198.18.0.0/15 via 192.168.1.253 dev em1
`), "tcp 198.18.7.7:40000 192.168.10.2:80 eth0")
	wantFindings(t, r, FindingAsymmetricReturn)
	f := r.Findings[0]
	ev := strings.Join(f.Evidence, "\n")
	for _, want := range []string{"arrived on eth0", "leaves by em1", "198.18.0.0/15 via 192.168.1.253 dev em1", "rule 32766", "192.168.10.2:80"} {
		if !strings.Contains(ev, want) {
			t.Errorf("evidence lacks %q:\n%s", want, ev)
		}
	}
	if f.Severity != finding.SeverityError || f.Fix.Wizard != finding.WizardSourceReturn || !slices.Equal(f.Fix.Args, []string{"--uplink", "eth0:192.168.10.1"}) {
		t.Errorf("finding %+v", f)
	}

	fixed := modeltest.Host(t, `
name 1 china
link eth0 192.168.10.2/24
link em1 192.168.1.254/30
route default via 192.168.10.1 dev eth0
route table china 192.168.1.252/30 dev em1 src 192.168.1.254
route table china default via 192.168.1.253 dev em1
rule 100 from 192.168.1.254 table china
`)
	r = trace(t, fixed, "tcp 198.18.7.7:40000 192.168.10.2:80 eth0")
	wantFindings(t, r)
	if r.Reply.OIF != "eth0" {
		t.Fatalf("reply out %s", r.Reply.OIF)
	}
	// Management users reaching em1's own address get their replies back out em1.
	r = trace(t, fixed, "tcp 198.18.7.7:40000 192.168.1.254:22 em1")
	wantFindings(t, r)
	if r.Reply.OIF != "em1" || r.Reply.TableName != "china" || *r.Reply.Rule != 100 {
		t.Fatalf("reply out %s table %s", r.Reply.OIF, r.Reply.TableName)
	}
}

// Seed case 4 on host B: forwarding off first, then no route back for the management net,
// then SNAT fixes it.
func TestTraceForwardingThenReturnRoute(t *testing.T) {
	base := `
link eth0 10.0.44.63/24
link eth1 10.0.43.101/24
route default via 10.0.44.1 dev eth0
`
	flow := "icmp 10.0.43.15 10.0.44.1 eth1"
	r := trace(t, modeltest.Host(t, base), flow)
	wantFindings(t, r, FindingForwardingDisabled)
	f := r.Findings[0]
	if r.Forward.Verdict != LegDrop || r.Reply != nil || f.Severity != finding.SeverityError || f.Fix.Wizard != finding.WizardSNATGateway {
		t.Fatalf("forward %s reply %v finding %+v", r.Forward.Verdict, r.Reply, f)
	}
	if !strings.Contains(f.Summary, "eth1") || !strings.Contains(f.Summary, "eth0") || !strings.Contains(strings.Join(f.Evidence, " "), "net.ipv4.ip_forward = 0") {
		t.Errorf("finding %+v", f)
	}

	r = trace(t, modeltest.Host(t, base+"sysctl net.ipv4.ip_forward=1\n"), flow)
	wantFindings(t, r, FindingNoReturnRoute)
	f = r.Findings[0]
	if f.Severity != finding.SeverityWarning || r.Errors() != 0 || r.Forward.Verdict != LegForward || r.Forward.OIF != "eth0" {
		t.Fatalf("forward %s out %s finding %+v", r.Forward.Verdict, r.Forward.OIF, f)
	}
	if !strings.Contains(f.Fix.Summary, "-s 10.0.43.0/24 -o eth0 -j SNAT --to-source 10.0.44.63") || f.Fix.Wizard != finding.WizardSNATGateway {
		t.Errorf("fix %+v", f.Fix)
	}

	r = trace(t, modeltest.Host(t, base+"sysctl net.ipv4.ip_forward=1\nipt nat -A POSTROUTING -d 10.0.44.0/24 -o eth0 -j SNAT --to-source 10.0.44.63\n"), flow)
	wantFindings(t, r)
	if r.Reply == nil || r.Reply.OIF != "eth1" || r.Reply.Packet.Dst.Addr() != netip.MustParseAddr("10.0.43.15") {
		t.Fatalf("reply %+v", r.Reply)
	}
}

// A router that is its LAN's gateway (no other router on the LAN side) forwards without SNAT:
// no problem, but the answer rests on the backend routing the client back through it, which
// trace names as an assumption (info) with the diagnose command that checks it.
func TestTraceNoReturnRouteNotOnGateway(t *testing.T) {
	s := modeltest.Host(t, `
link wan 192.0.2.2/30
link lan 10.0.0.1/24
sysctl net.ipv4.ip_forward=1
route default via 192.0.2.1 dev wan
ipt nat -A PREROUTING -i wan -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.100
`)
	r := trace(t, s, "tcp 203.0.113.5:40000 192.0.2.2:80 wan")
	wantFindings(t, r, FindingAssumedReturnRoute)
	if r.Reply.OIF != "wan" || r.Reply.Packet.Src.String() != "192.0.2.2:80" {
		t.Fatalf("reply %+v", r.Reply)
	}
	f := r.Findings[0]
	if f.Severity != finding.SeverityInfo || r.Errors() != 0 ||
		!strings.Contains(f.Summary, "assumed that 10.0.0.100 (on lan) routes 203.0.113.5/32 back via this host (10.0.0.1)") ||
		!strings.Contains(f.Fix.Summary, "roundtrip diagnose tcp 203.0.113.5 192.0.2.2:80 --iif wan,") ||
		!strings.Contains(f.Fix.Summary, "roundtrip wizard snat-gateway --in wan --out lan") || f.Fix.Wizard != "" {
		t.Errorf("assumption %+v", f)
	}
	var b bytes.Buffer
	r.Render(&b, s)
	if out := b.String(); !strings.Contains(out, "No problems found, assuming what follows (1):\n\nINFO assumed-return-route\n") || strings.Contains(out, "FINDINGS") {
		t.Errorf("rendered:\n%s", out)
	}

	// Behind a router on the LAN side, the assumption is about that router.
	routed := `
link wan 192.0.2.2/30
link lan 10.0.0.1/24
sysctl net.ipv4.ip_forward=1
route default via 192.0.2.1 dev wan
route 10.9.0.0/16 via 10.0.0.254 dev lan
`
	r = trace(t, modeltest.Host(t, routed), "udp 203.0.113.5:40000 10.9.1.1:53 wan")
	wantFindings(t, r, FindingAssumedReturnRoute)
	if f := r.Findings[0]; !strings.Contains(f.Summary, "the router 10.0.0.254 on lan, and the hosts behind it, routes 203.0.113.5/32 back") {
		t.Errorf("assumption %+v", f)
	}
	// With SNAT the reply comes back to this host's own address: nothing is assumed.
	wantFindings(t, trace(t, modeltest.Host(t, routed+"ipt nat -A POSTROUTING -o lan -j MASQUERADE\n"), "udp 203.0.113.5:40000 10.9.1.1:53 wan"))
}

func TestTraceRPFilter(t *testing.T) {
	base := `
link eth0 10.0.0.1/24
link eth1 10.1.0.1/24
sysctl net.ipv4.ip_forward=1
route 10.9.0.0/16 via 10.0.0.254 dev eth0
`
	flow := "udp 10.9.9.9:5000 10.1.0.5:53 eth1"
	r := trace(t, modeltest.Host(t, base+"sysctl net.ipv4.conf.all.rp_filter=1\n"), flow)
	wantFindings(t, r, FindingRPFilterDrop)
	if r.Forward.Verdict != LegDrop || !strings.Contains(r.Findings[0].Evidence[0], "strict") {
		t.Fatalf("forward %s, finding %+v", r.Forward.Verdict, r.Findings[0])
	}
	r = trace(t, modeltest.Host(t, base+"sysctl net.ipv4.conf.all.rp_filter=2\n"), flow)
	if r.Has(FindingRPFilterDrop) || r.Forward.Verdict != LegForward {
		t.Fatalf("loose mode: %v %s", finding.IDs(r.Findings), r.Forward.Verdict)
	}
}

func TestTraceRouteFailures(t *testing.T) {
	s := modeltest.Host(t, `
link eth0 10.0.0.1/24
route blackhole 10.66.0.0/16
route unreachable 10.67.0.0/16
route prohibit 10.68.0.0/16
`)
	for _, c := range []struct{ dst, id, verdict string }{
		{"10.66.0.1:80", FindingBlackhole, LegBlackhole},
		{"10.67.0.1:80", FindingUnreachable, LegUnreachable},
		{"10.68.0.1:80", FindingProhibit, LegProhibit},
		{"10.69.0.1:80", FindingNoRoute, LegNoRoute},
	} {
		r := trace(t, s, "tcp 10.0.0.1:40000 "+c.dst)
		wantFindings(t, r, c.id)
		if r.Forward.Verdict != c.verdict || r.Reply != nil {
			t.Errorf("%s: verdict %s reply %v", c.dst, r.Forward.Verdict, r.Reply)
		}
	}
}

// A stateful FORWARD policy without an ESTABLISHED rule lets the request through and drops the
// reply; REJECT in INPUT rejects.
func TestTraceFiltered(t *testing.T) {
	s := modeltest.Host(t, `
link lan 10.0.0.1/24
link wan 192.0.2.2/30
sysctl net.ipv4.ip_forward=1
route default via 192.0.2.1 dev wan
ipt nat -A POSTROUTING -o wan -j MASQUERADE
ipt filter -P FORWARD DROP
ipt filter -A FORWARD -i lan -m conntrack --ctstate NEW -j ACCEPT
ipt filter -A INPUT -p tcp -m tcp --dport 22 -j REJECT --reject-with icmp-port-unreachable
`)
	r := trace(t, s, "tcp 10.0.0.5:40000 198.51.100.7:443 lan")
	wantFindings(t, r, FindingFiltered)
	if r.Forward.Verdict != LegForward || r.Forward.Packet.Src.Addr() != netip.MustParseAddr("192.0.2.2") {
		t.Fatalf("forward %s from %s", r.Forward.Verdict, r.Forward.Packet.Src)
	}
	if r.Reply.Verdict != LegDrop || !strings.Contains(r.Findings[0].Summary, "reply") || !strings.Contains(r.Findings[0].Evidence[0], "policy DROP") {
		t.Fatalf("reply %s finding %+v", r.Reply.Verdict, r.Findings[0])
	}
	// Reply dst is un-SNATed before routing: it goes back to the LAN client.
	if i := stepIndex(r.Reply, "nat PREROUTING", "reverses the SNAT"); i < 0 {
		t.Errorf("no reverse SNAT step\n%s", dumpLeg(r.Reply))
	}

	r = trace(t, s, "tcp 10.0.0.5:40000 10.0.0.1:22 lan")
	wantFindings(t, r, FindingFiltered)
	if r.Forward.Verdict != LegReject {
		t.Fatalf("verdict %s", r.Forward.Verdict)
	}
}

// Rules the model cannot evaluate make the result uncertain and are named; LOG rules with
// unmodelled matches do not matter.
func TestTraceUncertain(t *testing.T) {
	s := modeltest.Host(t, `
link eth0 10.0.0.1/24
ipt filter -A INPUT -m limit --limit 5/min -j LOG --log-prefix "in: "
ipt filter -A INPUT -m set --match-set blocked src -j DROP
`)
	r := trace(t, s, "tcp 10.0.0.2:40000 10.0.0.1:80 eth0")
	wantFindings(t, r, FindingUncertain)
	if r.Forward.Verdict != LegUncertain || !strings.Contains(r.Findings[0].Evidence[0], "--match-set blocked src -j DROP") {
		t.Fatalf("verdict %s finding %+v", r.Forward.Verdict, r.Findings[0])
	}
	// The trace goes on as if the rule did not match: the reply is still traced.
	if r.Reply == nil || r.Reply.OIF != "eth0" {
		t.Fatalf("reply %+v", r.Reply)
	}
}

func TestTraceUserChains(t *testing.T) {
	s := modeltest.Host(t, `
link eth0 10.0.0.1/24
ipt filter -N A
ipt filter -N B
ipt filter -N LOOP
ipt filter -A INPUT -j A
ipt filter -A INPUT -p tcp -m tcp --dport 80 -j DROP
ipt filter -A A -p tcp -m tcp --dport 80 -g B
ipt filter -A A -j DROP
ipt filter -A B -s 10.0.0.0/8 -j RETURN
ipt filter -A B -j DROP
ipt filter -A INPUT -p tcp -m tcp --dport 81 -j LOOP
ipt filter -A LOOP -j LOOP
`)
	// -g B then RETURN goes back to INPUT (not to A, whose next rule would drop): the next
	// INPUT rule drops port 80.
	r := trace(t, s, "tcp 10.0.0.2:40000 10.0.0.1:80 eth0")
	wantFindings(t, r, FindingFiltered)
	if !strings.Contains(r.Findings[0].Evidence[0], "-A INPUT -p tcp -m tcp --dport 80 -j DROP") {
		t.Fatalf("dropped by %q", r.Findings[0].Evidence[0])
	}
	// Port 22 is dropped by A's second rule.
	r = trace(t, s, "tcp 10.0.0.2:40000 10.0.0.1:22 eth0")
	if !strings.Contains(r.Findings[0].Evidence[0], "-A A -j DROP") {
		t.Fatalf("dropped by %q", r.Findings[0].Evidence[0])
	}
}

func TestTraceChainLoopIsBounded(t *testing.T) {
	s := modeltest.Host(t, `
link eth0 10.0.0.1/24
ipt filter -N LOOP
ipt filter -N OTHER
ipt filter -A INPUT -j LOOP
ipt filter -A LOOP -j OTHER
ipt filter -A OTHER -j LOOP
`)
	r := trace(t, s, "tcp 10.0.0.2:40000 10.0.0.1:81 eth0")
	wantFindings(t, r, FindingUncertain)
	if !strings.Contains(r.Findings[0].Summary, "loops") {
		t.Errorf("finding %+v", r.Findings[0])
	}
}

// Locally generated: the source is chosen by the route, nat OUTPUT DNAT re-routes, MASQUERADE
// picks the out interface's address.
func TestTraceLocalOutput(t *testing.T) {
	s := modeltest.Host(t, `
link eth0 10.0.0.1/24
link eth1 192.0.2.2/30
route default via 192.0.2.1 dev eth1
ipt nat -A OUTPUT -d 198.51.100.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.80:8080
ipt nat -A POSTROUTING -o eth1 -j MASQUERADE
`)
	r := trace(t, s, "tcp 0.0.0.0 198.51.100.10:80")
	wantFindings(t, r)
	f := &r.Forward
	if f.Verdict != LegOutput || f.OIF != "eth0" || f.Packet.Dst.String() != "10.0.0.80:8080" || f.Packet.Src.Addr() != netip.MustParseAddr("192.0.2.2") {
		t.Fatalf("forward %s out %s packet %+v\n%s", f.Verdict, f.OIF, f.Packet, dumpLeg(f))
	}
	if stepIndex(f, "routing", "routed again") < 0 {
		t.Errorf("no re-route after DNAT\n%s", dumpLeg(f))
	}
	// The reply arrives on eth0 and its source is put back to what the socket connected to.
	if r.Reply.IIF != "eth0" || r.Reply.Verdict != LegLocal || r.Reply.Packet.Src.String() != "198.51.100.10:80" {
		t.Fatalf("reply %+v\n%s", r.Reply, dumpLeg(r.Reply))
	}

	r = trace(t, s, "udp 0.0.0.0 203.0.113.1:53")
	if r.Forward.OIF != "eth1" || r.Forward.Packet.Src.Addr() != netip.MustParseAddr("192.0.2.2") {
		t.Fatalf("forward %+v", r.Forward)
	}
}

// A source that is not this host's with no ingress named: the ingress is assumed and said.
func TestTraceAssumedIngress(t *testing.T) {
	s := modeltest.Host(t, `
link eth0 10.0.0.1/24
`)
	r := trace(t, s, "tcp 10.0.0.2:40000 10.0.0.1:80")
	wantFindings(t, r, FindingAssumedIngress)
	if r.Forward.IIF != "eth0" || r.Findings[0].Severity != finding.SeverityInfo {
		t.Fatalf("iif %q finding %+v", r.Forward.IIF, r.Findings[0])
	}
}

func TestTraceRenderAndJSON(t *testing.T) {
	s := modeltest.Host(t, `
link eth0 192.168.1.34/24
sysctl net.ipv4.ip_forward=1
ipt nat -A PREROUTING -d 192.168.1.34/32 -p tcp -m tcp --dport 81 -j DNAT --to-destination 192.168.1.32:80
ipt nat -A POSTROUTING -s 192.168.1.32/32 -j SNAT --to-source 192.168.1.34
`)
	r := trace(t, s, "tcp 192.168.1.185:61777 192.168.1.34:81 eth0")
	var b bytes.Buffer
	r.Render(&b, s)
	out := b.String()
	for _, line := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(line); n > renderWidth {
			t.Errorf("line of %d columns: %q", n, line)
		}
	}
	for _, want := range []string{"REQUEST", "REPLY", "▶", "reply-bypasses-nat", "fix:", "run: roundtrip wizard port-forward --listen 192.168.1.34:81 --in eth0 \\\n         --to 192.168.1.32:80 --snat auto\n", "DNAT 192.168.1.34:81 -> 192.168.1.32:80"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("escape codes in output that is not a terminal")
	}

	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	keys := func(v any) []string {
		var ks []string
		for k := range v.(map[string]any) {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	if got := keys(m); !slices.Equal(got, []string{"findings", "flow", "forward", "reply"}) {
		t.Errorf("top-level keys %v", got)
	}
	if got := keys(m["forward"]); !slices.Equal(got, []string{"gateway", "iif", "oif", "packet", "rule", "src", "steps", "table", "table_name", "verdict"}) {
		t.Errorf("leg keys %v", got)
	}
	step := m["forward"].(map[string]any)["steps"].([]any)[0]
	if got := keys(step); !slices.Equal(got, []string{"decisive", "hook", "rule", "what"}) {
		t.Errorf("step keys %v", got)
	}
	finding := m["findings"].([]any)[0]
	if got := keys(finding); !slices.Equal(got, []string{"evidence", "fix", "id", "severity", "summary"}) {
		t.Errorf("finding keys %v", got)
	}
	if got := keys(finding.(map[string]any)["fix"]); !slices.Equal(got, []string{"args", "summary", "wizard"}) {
		t.Errorf("fix keys %v", got)
	}
}

func TestWrapText(t *testing.T) {
	got := wrapText("▶ hook ", "aaa bbb ccc ddd", 14, "  ")
	want := "▶ hook aaa bbb\n  ccc ddd"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestTraceIPv6(t *testing.T) {
	base := `
link eth0 2001:db8:1::1/64
link eth1 2001:db8:2::1/64
`
	flow := "tcp [2001:db8:1::5]:40000 [2001:db8:2::9]:443 eth0"
	r := trace(t, modeltest.Host(t, base), flow)
	wantFindings(t, r, FindingForwardingDisabled)
	if !strings.Contains(r.Findings[0].Fix.Summary, "net.ipv6.conf.all.forwarding=1") {
		t.Errorf("fix %q", r.Findings[0].Fix.Summary)
	}
	r = trace(t, modeltest.Host(t, base+"sysctl net.ipv6.conf.all.forwarding=1\n"), flow)
	wantFindings(t, r, FindingAssumedReturnRoute)
	if r.Forward.OIF != "eth1" || r.Reply.OIF != "eth0" {
		t.Fatalf("forward out %s, reply out %s", r.Forward.OIF, r.Reply.OIF)
	}
}

// Nothing a caller passes makes Trace panic: a zero request, an unknown interface, a family
// mix-up all end in a result that says why.
func TestTraceOddRequests(t *testing.T) {
	s := modeltest.Host(t, "link eth0 10.0.0.1/24\n")
	for _, req := range []Request{
		{},
		{Proto: 6, Dst: netip.MustParseAddrPort("10.0.0.1:80"), Src: netip.MustParseAddrPort("10.0.0.2:1"), IIF: "nosuch"},
		{Proto: 6, Dst: netip.MustParseAddrPort("10.0.0.1:80"), Src: netip.MustParseAddrPort("[2001:db8::1]:1")},
		{Proto: 1, Dst: netip.MustParseAddrPort("127.0.0.1:0")},
	} {
		r := Run(s, fib.New(s), req)
		if r.Forward.Verdict == "" {
			t.Errorf("%+v: no verdict", req)
		}
	}
}

// BenchmarkTrace traces a DNATed, marked, forwarded flow on a router with a few hundred
// iptables rules and a thousand routes.
func BenchmarkTrace(b *testing.B) {
	var host strings.Builder
	host.WriteString(connmarkRouter + `
ipt nat -A POSTROUTING -o wan1 -j MASQUERADE
`)
	for i := range 300 {
		host.WriteString("ipt filter -A FORWARD -s 172.16." + itoa(i) + ".0/24 -p tcp -m tcp --dport 22 -j DROP\n")
	}
	for i := range 1000 {
		host.WriteString("route 100." + itoa(i/250) + "." + itoa(i%250) + ".0/24 via 198.51.100.1 dev wan2\n")
	}
	host.WriteString("ipt nat -A PREROUTING -i wan2 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.100\n")
	s := modeltest.Host(b, host.String())
	f := fib.New(s)
	req := Request{Proto: 6, Src: netip.MustParseAddrPort("203.0.113.50:40000"), Dst: netip.MustParseAddrPort("198.51.100.2:80"), IIF: "wan2"}
	b.ReportAllocs()
	for b.Loop() {
		if r := Run(s, f, req); r.Reply == nil || r.Reply.OIF != "wan2" {
			b.Fatalf("reply %+v", r.Reply)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// trace runs Trace on a host for a flow written as "tcp 10.0.0.2:40000 10.0.0.1:80 eth0".
func trace(t testing.TB, s *model.State, flow string) *Result {
	t.Helper()
	w := strings.Fields(flow)
	proto, err := inet.ProtoNumber(w[0])
	if err != nil {
		t.Fatal(err)
	}
	ep := func(v string) netip.AddrPort {
		if ap, err := netip.ParseAddrPort(v); err == nil {
			return ap
		}
		return netip.AddrPortFrom(netip.MustParseAddr(v), 0)
	}
	req := Request{Proto: proto, Src: ep(w[1]), Dst: ep(w[2])}
	if len(w) > 3 {
		req.IIF = w[3]
	}
	return Run(s, fib.New(s), req)
}

// When only the reply fails rp_filter, the request itself passed the kernel's input checks:
// RequestStoppedAt says so, so a live comparison of the request's route does not call the
// kernel's (unicast) answer a disagreement.
func TestTraceReplyRPFilterIsNotTheRequests(t *testing.T) {
	s := modeltest.Host(t, `
link eth0 10.0.0.1/24
link eth1 10.1.0.1/24
sysctl net.ipv4.ip_forward=1
sysctl net.ipv4.conf.all.rp_filter=1
route 192.0.2.0/24 via 10.0.0.254 dev eth0
route table 100 default via 10.1.0.254 dev eth1
rule 100 fwmark 0x1 table 100
ipt mangle -A PREROUTING -i eth0 -j MARK --set-mark 0x1
`)
	r := trace(t, s, "udp 10.0.0.5:5000 192.0.2.9:53 eth0")
	if r.Forward.Verdict != LegForward || r.Forward.OIF != "eth1" {
		t.Fatalf("forward %s out %s\n%s", r.Forward.Verdict, r.Forward.OIF, dumpLeg(&r.Forward))
	}
	if !r.Has(FindingRPFilterDrop) || r.Reply == nil || r.Reply.Verdict != LegDrop {
		t.Fatalf("want the reply dropped by rp_filter: %v\n%s", finding.IDs(r.Findings), dumpLeg(r.Reply))
	}
	if r.RequestStoppedAt(HookRPFilter) {
		t.Errorf("RequestStoppedAt(rp_filter) = true for a reply-only drop")
	}
	// The request failing it is the request's.
	r = trace(t, s, "udp 192.0.2.9:5000 10.0.0.5:53 eth1")
	if !r.RequestStoppedAt(HookRPFilter) {
		t.Errorf("RequestStoppedAt(rp_filter) = false for a dropped request\n%s", dumpLeg(&r.Forward))
	}
}

// A node with pods on a bridge: a pod reaching a ClusterIP whose endpoint is on the same
// bridge. With br_netfilter on, the request is bridged after the DNAT and conntrack undoes the DNAT on the bridged reply; with it off, the request is routed
// (forwarding needed) and the reply bridged past conntrack: reply-bypasses-nat.
func TestTraceBridgeClusterIP(t *testing.T) {
	base := `
bridge cni0 10.244.0.1/24
port veth1 cni0
port veth2 cni0
link eth0 192.0.2.10/24
route default via 192.0.2.1 dev eth0
ipt nat -A PREROUTING -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.0.3:8080
`
	flow := "tcp 10.244.0.2:40000 10.96.0.10:80 veth1"
	on := base + "sysctl net.bridge.bridge-nf-call-iptables=1\nsysctl net.ipv4.ip_forward=1\n"
	r := trace(t, modeltest.Host(t, on), flow)
	wantFindings(t, r)
	f := &r.Forward
	if f.Verdict != LegBridged || f.IIF != "cni0" || f.OIF != "cni0" || f.Packet.Dst.String() != "10.244.0.3:8080" {
		t.Fatalf("forward %s %s -> %s %s\n%s", f.Verdict, f.IIF, f.OIF, f.Packet.Dst, dumpLeg(f))
	}
	if _, _, ok := r.ForwardLookup(); ok {
		t.Errorf("a bridged request has no input route the kernel could be asked about")
	}
	rp := r.Reply
	if rp == nil || rp.Verdict != LegBridged || rp.Packet.Src.String() != "10.96.0.10:80" || stepIndex(rp, "nat POSTROUTING", "reverses the DNAT") < 0 {
		t.Fatalf("reply %+v\n%s", rp, dumpLeg(rp))
	}

	// Off (the module not loaded: the sysctl absent), forwarding on: routed, reply bypasses.
	r = trace(t, modeltest.Host(t, base+"sysctl net.ipv4.ip_forward=1\n"), flow)
	wantFindings(t, r, FindingReplyBypassesNAT)
	if r.Forward.Verdict != LegForward || r.Reply.Verdict != LegBridged || r.Reply.Packet.Src.String() != "10.244.0.3:8080" {
		t.Fatalf("forward %s reply %s from %s\n%s", r.Forward.Verdict, r.Reply.Verdict, r.Reply.Packet.Src, dumpLeg(r.Reply))
	}
	if f := r.Findings[0]; !strings.Contains(strings.Join(f.Evidence, "\n"), "br_netfilter is off (net.bridge.bridge-nf-call-iptables absent") || !strings.Contains(f.Fix.Summary, "bridge-nf-call-iptables=1") {
		t.Errorf("finding %+v", f)
	}
	// Off with forwarding off: the kernel drops the routed request.
	r = trace(t, modeltest.Host(t, base+"sysctl net.bridge.bridge-nf-call-iptables=0\n"), flow)
	wantFindings(t, r, FindingForwardingDisabled)
	// On with forwarding off: the DNATed packet is routed again with an input route, which
	// forwarding off makes an error route: dropped (as the kernel does, whatever the comment
	// in br_nf_pre_routing_finish about bridged DNAT without forwarding says).
	r = trace(t, modeltest.Host(t, strings.Replace(on, "ip_forward=1", "ip_forward=0", 1)), flow)
	wantFindings(t, r, FindingForwardingDisabled)

	// Pod to pod on the bridge: bridged whatever ip_forward says; iptables FORWARD sees it
	// only with br_netfilter on.
	drop := "ipt filter -P FORWARD DROP\n"
	r = trace(t, modeltest.Host(t, base+drop), "tcp 10.244.0.2:40000 10.244.0.3:8080 veth1")
	wantFindings(t, r)
	if r.Forward.Verdict != LegBridged || r.Reply.Verdict != LegBridged {
		t.Fatalf("pod to pod, br_netfilter off: %s/%s\n%s", r.Forward.Verdict, r.Reply.Verdict, dumpLeg(&r.Forward))
	}
	r = trace(t, modeltest.Host(t, on+drop), "tcp 10.244.0.2:40000 10.244.0.3:8080 cni0")
	wantFindings(t, r, FindingFiltered)
	if r.Forward.Verdict != LegDrop || stepIndex(&r.Forward, "filter FORWARD", "policy DROP") < 0 {
		t.Fatalf("pod to pod, br_netfilter on, FORWARD DROP: %s\n%s", r.Forward.Verdict, dumpLeg(&r.Forward))
	}
	// To the bridge's own address: delivered, not bridged.
	r = trace(t, modeltest.Host(t, on), "tcp 10.244.0.2:40000 10.244.0.1:22 veth1")
	if r.Forward.Verdict != LegLocal {
		t.Errorf("to the bridge's address: %s", r.Forward.Verdict)
	}
}

// kube-proxy spreads a service over its endpoints with -m statistic: every endpoint is a
// candidate with its probability; a rate or history rule shows both outcomes.
func TestTraceCandidates(t *testing.T) {
	s := modeltest.Host(t, `
link eth0 192.0.2.10/24
link eth1 10.1.0.1/24
sysctl net.ipv4.ip_forward=1
ipt nat -N KUBE-SVC-X
ipt nat -N KUBE-SEP-A
ipt nat -N KUBE-SEP-B
ipt nat -N KUBE-SEP-C
ipt nat -A PREROUTING -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-X
ipt nat -A KUBE-SVC-X -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-A
ipt nat -A KUBE-SVC-X -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-B
ipt nat -A KUBE-SVC-X -j KUBE-SEP-C
ipt nat -A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 10.1.0.5:8080
ipt nat -A KUBE-SEP-B -p tcp -m tcp -j DNAT --to-destination 10.1.0.6:8080
ipt nat -A KUBE-SEP-C -p tcp -m tcp -j DNAT --to-destination 10.1.0.7:8080
ipt filter -A INPUT -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m recent --set --name SSH --rsource
ipt filter -A INPUT -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m recent --update --seconds 30 --hitcount 6 --name SSH --rsource -j REJECT --reject-with icmp-port-unreachable
ipt filter -A INPUT -p tcp -m tcp --dport 22 -m limit --limit 3/min -j LOG
`)
	r := trace(t, s, "tcp 192.0.2.99:40000 10.96.0.10:80 eth0")
	f := r.Finding(FindingCandidates)
	if f == nil || f.Severity != finding.SeverityInfo || len(f.Evidence) != 3 || r.Has(FindingUncertain) || r.Forward.Verdict != LegForward {
		t.Fatalf("findings %v, candidates %+v, forward %s", finding.IDs(r.Findings), f, r.Forward.Verdict)
	}
	for i, want := range []string{"(probability 33.33%): DNAT 10.96.0.10:80 -> 10.1.0.5:8080", "(probability 33.33%): DNAT 10.96.0.10:80 -> 10.1.0.6:8080", "none of them (probability 33.33%), the path this trace follows: DNAT 10.96.0.10:80 -> 10.1.0.7:8080"} {
		if !strings.Contains(f.Evidence[i], want) {
			t.Errorf("candidate %d: %q, want %q", i, f.Evidence[i], want)
		}
	}

	r = trace(t, s, "tcp 192.0.2.99:40000 192.0.2.10:22 eth0")
	f = r.Finding(FindingCandidates)
	if f == nil || f.Severity != finding.SeverityWarning || len(f.Evidence) != 2 || r.Forward.Verdict != LegLocal || r.Has(FindingUncertain) {
		t.Fatalf("findings %v, candidates %+v, forward %s", finding.IDs(r.Findings), f, r.Forward.Verdict)
	}
	if !strings.Contains(f.Evidence[1], "once the source address was seen 6 times within 30 s (recent list SSH): rejected by this rule") {
		t.Errorf("the other outcome: %q", f.Evidence[1])
	}
}

// A bridge without an address is a plain switch: whatever arrives on a port is bridged.
func TestTraceBridgeWithoutAddress(t *testing.T) {
	s := modeltest.Host(t, "bridge br0\nport p1 br0\nport p2 br0\n")
	r := trace(t, s, "tcp 10.72.0.2:40000 10.72.0.3:80 p1")
	wantFindings(t, r)
	if r.Forward.Verdict != LegBridged || r.Reply == nil || r.Reply.Verdict != LegBridged {
		t.Fatalf("forward %s\n%s", r.Forward.Verdict, dumpLeg(&r.Forward))
	}
}

// A DNAT back to the sender on a bridge needs hairpin mode on its port: decided from the
// port's flag, uncertain when the state does not hold it.
func TestTraceBridgeHairpin(t *testing.T) {
	host := func(hairpin string) string {
		return `
bridge docker0 172.17.0.1/16
port veth1 docker0` + hairpin + `
link eth0 192.0.2.10/24
sysctl net.ipv4.ip_forward=1
sysctl net.bridge.bridge-nf-call-iptables=1
ipt nat -A PREROUTING -d 192.0.2.10/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
ipt nat -A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE
`
	}
	flow := "tcp 172.17.0.2:40000 192.0.2.10:8080 "
	r := trace(t, modeltest.Host(t, host("")), flow+"veth1")
	if r.Forward.Verdict != LegUncertain || !r.Has(FindingUncertain) || !strings.Contains(r.Finding(FindingUncertain).Summary, "hairpin mode") {
		t.Fatalf("flag not read: forward %s, findings %v\n%s", r.Forward.Verdict, finding.IDs(r.Findings), dumpLeg(&r.Forward))
	}
	for _, iif := range []string{"veth1", "docker0"} {
		r = trace(t, modeltest.Host(t, host(" hairpin on")), flow+iif)
		if r.Forward.Verdict != LegBridged || r.Errors() > 0 || r.Forward.Packet.Src.String() != "172.17.0.1:40000" {
			t.Errorf("hairpin on, from %s: forward %s from %s, findings %v\n%s", iif, r.Forward.Verdict, r.Forward.Packet.Src, finding.IDs(r.Findings), dumpLeg(&r.Forward))
		}
		r = trace(t, modeltest.Host(t, host(" hairpin off")), flow+iif)
		wantFindings(t, r, FindingBridgeNoHairpin)
		if r.Forward.Verdict != LegDrop {
			t.Errorf("hairpin off, from %s: %s", iif, r.Forward.Verdict)
		}
	}
}

// IPv6 bridged traffic is decided by bridge-nf-call-ip6tables, not its IPv4 twin.
func TestTraceBridgeIPv6(t *testing.T) {
	base := "bridge br0 2001:db8:1::1/64\nport p1 br0\nsysctl net.bridge.bridge-nf-call-iptables=1\n"
	flow := "tcp [2001:db8:1::2]:40000 [2001:db8:1::3]:80 p1"
	r := trace(t, modeltest.Host(t, base), flow)
	if r.Forward.Verdict != LegBridged || stepIndex(&r.Forward, "bridge", "net.bridge.bridge-nf-call-ip6tables absent") < 0 {
		t.Fatalf("ip6tables off:\n%s", dumpLeg(&r.Forward))
	}
	r = trace(t, modeltest.Host(t, base+"sysctl net.bridge.bridge-nf-call-ip6tables=1\n"), flow)
	if r.Forward.Verdict != LegBridged || stepIndex(&r.Forward, "bridge", "br_netfilter is on (net.bridge.bridge-nf-call-ip6tables = 1)") < 0 {
		t.Fatalf("ip6tables on:\n%s", dumpLeg(&r.Forward))
	}
}

// A REJECT's answer is routed to the request's source like any packet the host sends: when
// that route leaves by another interface, the client does not hear it, and trace says so.
func TestTraceRejectAnswerElsewhere(t *testing.T) {
	s := modeltest.Host(t, `
link lan 192.168.122.1/24
link wan 198.18.92.1/24
sysctl net.ipv4.ip_forward=1
route default via 198.18.92.2 dev wan
ipt filter -A FORWARD -i lan ! -s 192.168.122.0/24 -j REJECT --reject-with icmp-port-unreachable
`)
	r := trace(t, s, "tcp 10.9.9.9:40000 198.18.92.2:80 lan")
	wantFindings(t, r, FindingFiltered, FindingRejectElsewhere)
	if f := r.Finding(FindingRejectElsewhere); r.Forward.Verdict != LegReject || !strings.Contains(f.Summary, "out wan") {
		t.Fatalf("verdict %s, finding %+v", r.Forward.Verdict, f)
	}
	// From the guest network the answer goes back out lan: nothing to say.
	s = modeltest.Host(t, `
link lan 192.168.122.1/24
link wan 198.18.92.1/24
sysctl net.ipv4.ip_forward=1
route default via 198.18.92.2 dev wan
ipt filter -A FORWARD -i lan -j REJECT --reject-with icmp-port-unreachable
`)
	r = trace(t, s, "tcp 192.168.122.10:40000 198.18.92.2:80 lan")
	wantFindings(t, r, FindingFiltered)
}

// A REJECT's ICMP error depends on the per-destination ICMP rate limit, which the model cannot
// see: the filtered finding says so; a TCP reset is not limited.
func TestTraceRejectICMPRateLimitNamed(t *testing.T) {
	for _, c := range []struct {
		with    string
		limited bool
	}{{"icmp-port-unreachable", true}, {"tcp-reset", false}} {
		s := modeltest.Host(t, `
link eth0 10.0.0.1/24
ipt filter -A INPUT -p tcp -m tcp --dport 22 -j REJECT --reject-with `+c.with+`
`)
		r := trace(t, s, "tcp 10.0.0.5:40000 10.0.0.1:22 eth0")
		f := r.Finding(FindingFiltered)
		if f == nil || strings.Contains(strings.Join(f.Evidence, "\n"), "icmp_ratelimit") != c.limited {
			t.Errorf("reject-with %s: %+v", c.with, f)
		}
	}
}

// A random branch's candidate says where the branch leads, not only what its chain does: the
// MASQUERADE in POSTROUTING that only that endpoint gets.
func TestTraceRandomCandidateSaysWhereItLeads(t *testing.T) {
	s := modeltest.Host(t, `
link lan 10.0.0.1/24
link wan 198.51.100.1/24
sysctl net.ipv4.ip_forward=1
ipt nat -A PREROUTING -d 198.51.100.1/32 -p tcp -m tcp --dport 80 -m statistic --mode random --probability 0.5 -j DNAT --to-destination 10.0.0.5:80
ipt nat -A PREROUTING -d 198.51.100.1/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.6:80
ipt nat -A POSTROUTING -d 10.0.0.5/32 -j MASQUERADE
`)
	r := trace(t, s, "tcp 198.51.100.9:40000 198.51.100.1:80 wan")
	c := r.Finding(FindingCandidates)
	if c == nil || len(c.Evidence) != 2 || !strings.HasSuffix(c.Evidence[0], "; the request then: forward out lan as 10.0.0.1:40000 -> 10.0.0.5:80") {
		t.Fatalf("candidates %+v", c)
	}
	// The trace itself follows the fall-through, unmasqueraded.
	if got := r.Forward.Packet.Src.String(); got != "198.51.100.9:40000" || r.Forward.Packet.Dst.String() != "10.0.0.6:80" {
		t.Errorf("traced path %s -> %s", got, r.Forward.Packet.Dst)
	}
}
