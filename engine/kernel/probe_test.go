package kernel_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
)

// probeLab is a gateway with two uplinks to two ISPs that both hold the target address
// 198.18.90.1; ISP 2 drops everything addressed to it, so a probe answers only when it leaves
// by uplink 1. Main routes by ISP 1; table 100 (chosen by source address or by fwmark 0x10)
// routes by ISP 2, as the multi-wan wizard's tables do.
type probeLab struct {
	gw, isp1, isp2 *lab.NS
	ns             kernel.Namespace
}

var (
	probeTarget = netip.MustParseAddr("198.18.90.1")
	probeSrc1   = netip.MustParseAddr("10.74.1.2")
	probeSrc2   = netip.MustParseAddr("10.74.2.2")
)

func newProbeLab(t *testing.T) *probeLab {
	l := lab.New(t)
	p := &probeLab{gw: l.NS("gw"), isp1: l.NS("isp1"), isp2: l.NS("isp2")}
	p.ns = kernel.Namespace{Name: p.gw.Name}
	l.Veth(p.gw, "up1", p.isp1, "cust")
	l.Veth(p.gw, "up2", p.isp2, "cust")
	p.gw.Addr("up1", "10.74.1.2/24")
	p.gw.Addr("up2", "10.74.2.2/24")
	p.gw.IP("route", "add", "default", "via", "10.74.1.1")
	p.gw.IP("route", "add", "default", "via", "10.74.2.1", "table", "100")
	p.gw.IP("rule", "add", "from", "10.74.2.2", "lookup", "100", "priority", "100")
	p.gw.IP("rule", "add", "fwmark", "0x10/0x10", "lookup", "100", "priority", "101")
	for i, isp := range []*lab.NS{p.isp1, p.isp2} {
		isp.Addr("cust", []string{"10.74.1.1/24", "10.74.2.1/24"}[i])
		isp.Addr("lo", "198.18.90.1/32")
		isp.IP("route", "add", "10.74.0.0/16", "via", []string{"10.74.1.2", "10.74.2.2"}[i])
	}
	p.isp1.Listen("198.18.90.1:8080")
	p.isp2.Run("iptables", "-w", "-A", "INPUT", "-d", "198.18.90.1", "-j", "DROP")
	return p
}

func (p *probeLab) probe(t *testing.T, pr kernel.Probe) kernel.ProbeResult {
	t.Helper()
	if pr.Timeout == 0 {
		pr.Timeout = 500 * time.Millisecond
	}
	return p.ns.Probe(context.Background(), pr)
}

func TestPrivilegedProbe(t *testing.T) {
	t.Parallel()
	p := newProbeLab(t)
	icmp := netip.AddrPortFrom(probeTarget, 0)
	listening := netip.AddrPortFrom(probeTarget, 8080)
	closed := netip.AddrPortFrom(probeTarget, 8081)
	for _, c := range []struct {
		name   string
		probe  kernel.Probe
		ok     bool
		method string
	}{
		{"icmp by main through isp1", kernel.Probe{Proto: "icmp", Target: icmp}, true, "icmp-raw"},
		{"icmp bound to uplink 1", kernel.Probe{Proto: "icmp", Target: icmp, Iface: "up1", Src: probeSrc1}, true, "icmp-raw"},
		{"icmp bound to uplink 2 goes to isp2, which drops it", kernel.Probe{Proto: "icmp", Target: icmp, Iface: "up2", Src: probeSrc2}, false, "icmp-raw"},
		{"icmp marked for table 100 goes to isp2", kernel.Probe{Proto: "icmp", Target: icmp, Mark: 0x10}, false, "icmp-raw"},
		{"tcp to a listener through uplink 1", kernel.Probe{Proto: "tcp", Target: listening, Iface: "up1", Src: probeSrc1}, true, "tcp"},
		{"tcp refused is an answer", kernel.Probe{Proto: "tcp", Target: closed, Iface: "up1", Src: probeSrc1}, true, "tcp"},
		{"tcp bound to uplink 2 is dropped", kernel.Probe{Proto: "tcp", Target: listening, Iface: "up2", Src: probeSrc2}, false, "tcp"},
		{"tcp marked for table 100 is dropped", kernel.Probe{Proto: "tcp", Target: listening, Mark: 0x10}, false, "tcp"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := p.probe(t, c.probe)
			if res.OK != c.ok || res.Method != c.method {
				t.Errorf("probe %+v: ok %v method %s (err %v), want ok %v method %s", c.probe, res.OK, res.Method, res.Err, c.ok, c.method)
			}
			if res.OK && (res.RTT <= 0 || res.RTT > 500*time.Millisecond) {
				t.Errorf("rtt %s", res.RTT)
			}
			if !res.OK && res.Err == nil {
				t.Error("a failed probe without an error")
			}
		})
	}

	// The link of uplink 1 down at the ISP: no carrier, no answer.
	p.isp1.IP("link", "set", "cust", "down")
	if res := p.probe(t, kernel.Probe{Proto: "icmp", Target: icmp, Iface: "up1", Src: probeSrc1}); res.OK {
		t.Error("a probe through a dead link answered")
	}
	if res := p.probe(t, kernel.Probe{Proto: "tcp", Target: listening, Iface: "up1", Src: probeSrc1, Timeout: 300 * time.Millisecond}); res.OK || !strings.Contains(res.Err.Error(), "within 300ms") {
		t.Errorf("a TCP probe through a dead link: ok %v, err %v", res.OK, res.Err)
	}
	p.isp1.IP("link", "set", "cust", "up")

	// With ping sockets admitted (ping_group_range), the unprivileged kind is used, bound alike.
	// The link just came back: the kernel turns its carrier on within a second (linkwatch).
	p.gw.Sysctl("net.ipv4.ping_group_range", "0 2147483647")
	var res kernel.ProbeResult
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if res = p.probe(t, kernel.Probe{Proto: "icmp", Target: icmp, Iface: "up1", Src: probeSrc1, Timeout: 200 * time.Millisecond}); res.OK {
			break
		}
	}
	if !res.OK || res.Method != "icmp-dgram" {
		t.Errorf("ping socket through uplink 1: ok %v method %s err %v", res.OK, res.Method, res.Err)
	}
	if res := p.probe(t, kernel.Probe{Proto: "icmp", Target: icmp, Iface: "up2", Src: probeSrc2}); res.OK || res.Method != "icmp-dgram" {
		t.Errorf("ping socket through uplink 2: ok %v method %s", res.OK, res.Method)
	}

	// Bad input is an error, not a probe.
	for _, bad := range []kernel.Probe{
		{Proto: "udp", Target: icmp},
		{Proto: "icmp", Target: netip.MustParseAddrPort("[2001:db8::1]:0")},
		{Proto: "icmp", Target: icmp, Iface: "nosuch0"},
		{Proto: "icmp", Target: icmp, Src: netip.MustParseAddr("192.0.2.99")},
	} {
		if res := p.probe(t, bad); res.OK || res.Err == nil {
			t.Errorf("probe %+v: ok %v err %v, want an error", bad, res.OK, res.Err)
		}
	}
}

// BenchmarkProbeICMP measures one echo probe through a bound uplink.
func BenchmarkProbeICMP(b *testing.B) {
	lab.Require(b)
	l := lab.New(b)
	gw, isp := l.NS("gw"), l.NS("isp")
	l.Veth(gw, "up1", isp, "cust")
	gw.Addr("up1", "10.74.1.2/24")
	isp.Addr("cust", "10.74.1.1/24")
	ns := kernel.Namespace{Name: gw.Name}
	pr := kernel.Probe{Proto: "icmp", Target: netip.MustParseAddrPort("10.74.1.1:0"), Iface: "up1", Src: probeSrc1, Timeout: time.Second}
	for b.Loop() {
		if res := ns.Probe(context.Background(), pr); !res.OK {
			b.Fatal(res.Err)
		}
	}
}
