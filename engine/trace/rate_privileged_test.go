package trace_test

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// Rate and state rules (-m limit, -m connlimit): trace follows a quiet host's outcome and
// names the other with what it takes; the kernel gives the first connections the quiet
// host's outcome and the other once the condition is met.
func TestPrivilegedRateRules(t *testing.T) {
	l := lab.New(t)
	host := lab.Host(l, "hbr-rate", false)
	client := lab.Host(l, "hbr-ratec", false)
	l.Veth(client, "eth0", host, "eth0")
	client.Addr("eth0", "198.18.96.2/24")
	host.Addr("eth0", "198.18.96.1/24")
	for _, r := range [][]string{
		{"-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT"},
		{"-A", "INPUT", "-p", "tcp", "--dport", "81", "-m", "connlimit", "--connlimit-above", "2", "--connlimit-mask", "32", "-j", "REJECT", "--reject-with", "tcp-reset"},
		{"-A", "INPUT", "-p", "tcp", "--dport", "82", "-m", "conntrack", "--ctstate", "NEW", "-m", "limit", "--limit", "1/hour", "--limit-burst", "2", "-j", "ACCEPT"},
		{"-A", "INPUT", "-p", "tcp", "--dport", "82", "-j", "DROP"},
	} {
		host.Run("iptables", append([]string{"-w"}, r...)...)
	}
	host.Listen("0.0.0.0:81")
	host.Listen("0.0.0.0:82")
	st := readState(t, host)

	for _, c := range []struct {
		port      int
		other     string // the other outcome, as the candidates finding says it
		failsFrom int    // the first connection the kernel refuses
	}{
		{81, "once the source address/32 has more than 2 connections: rejected by this rule", 3},
		{82, "once matching packets exceed 1/hour (after a burst of 2): dropped", 3},
	} {
		res := traceTCP(st, fmt.Sprintf("198.18.96.2:%d", 41300+c.port), fmt.Sprintf("198.18.96.1:%d", c.port), "eth0")
		cand := res.Finding(trace.FindingCandidates)
		if res.Forward.Verdict != trace.LegLocal || cand == nil || !strings.Contains(strings.Join(cand.Evidence, "\n"), c.other) || res.Has(trace.FindingUncertain) {
			t.Errorf("port %d: trace %s\n%s", c.port, res.Forward.Verdict, render(res))
		}
		var open []net.Conn
		for n := 1; n <= 3; n++ {
			conn, err := client.Dial(fmt.Sprintf("198.18.96.1:%d", c.port), fmt.Sprintf("198.18.96.2:%d", 41400+10*c.port+n), dialTimeout)
			if conn != nil {
				open = append(open, conn) // kept open: connlimit counts open connections
			}
			if works := n < c.failsFrom; (err == nil) != works {
				t.Errorf("port %d, connection %d: %v, want working=%v (trace: %s)", c.port, n, err, works, c.other)
			}
		}
		for _, conn := range open {
			conn.Close()
		}
	}
}
