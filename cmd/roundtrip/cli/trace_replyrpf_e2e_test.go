package cli

import (
	"testing"

	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// Issue 12: when only the reply leg fails reverse-path filtering, the live trace asked the
// kernel about the request, got the same answer as the model, and still reported
// model-kernel-disagree. The request here is policy-routed by a mark out eth1; the reply
// (no mark) fails strict rp_filter on eth1.
func TestPrivilegedTraceReplyRPFilterNoDisagreement(t *testing.T) {
	l := lab.New(t)
	r := lab.Host(l, "hbr-rpf", true)
	a, b := l.NS("hbr-rpfa"), l.NS("hbr-rpfb")
	l.Veth(r, "eth0", a, "eth0")
	l.Veth(r, "eth1", b, "eth0")
	r.Addr("eth0", "10.0.0.1/24")
	r.Addr("eth1", "10.1.0.1/24")
	r.Sysctl("net.ipv4.conf.all.rp_filter", "1")
	r.IP("route", "add", "192.0.2.0/24", "via", "10.0.0.254", "dev", "eth0")
	r.IP("route", "add", "default", "via", "10.1.0.254", "dev", "eth1", "table", "100")
	r.IP("rule", "add", "fwmark", "0x1", "table", "100")
	r.Run("iptables", "-w", "-t", "mangle", "-A", "PREROUTING", "-i", "eth0", "-j", "MARK", "--set-mark", "0x1")

	run := traceLive(t, r, "udp", "10.0.0.5:5000", "192.0.2.9:53", "--iif", "eth0")
	if run.res.Forward.OIF != "eth1" || !run.res.Has(trace.FindingRPFilterDrop) || run.res.Reply == nil || run.res.Reply.Verdict != trace.LegDrop {
		t.Fatalf("want the request out eth1 and the reply dropped by rp_filter: %v\n%s", run.ids(), run.out)
	}
	if run.res.Has(trace.FindingKernelDisagrees) {
		t.Errorf("the kernel routes the request as the model does, yet: %s", run.res.Finding(trace.FindingKernelDisagrees).Summary)
	}
}
