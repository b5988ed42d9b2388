package trace_test

import (
	"fmt"
	"testing"

	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// Rules that test ipsets (-m set), as fail2ban, CrowdSec, firewalld and Docker 28 write them:
// the sets are read over netlink into the state and matched exactly; a real client's result
// agrees with trace's verdict for each flow.
func TestPrivilegedIPSetMatch(t *testing.T) {
	lab.RequireTool(t, "ipset")
	l := lab.New(t)
	client := lab.Host(l, "hbr-scli", false)
	router := lab.Host(l, "hbr-srtr", true)
	server := lab.Host(l, "hbr-ssrv", false)
	l.Veth(client, "eth0", router, "lan")
	l.Veth(router, "wan", server, "eth0")
	client.Addr("eth0", "10.81.0.2/24")
	client.Addr("eth0", "10.81.0.130/24")
	client.IP("route", "add", "default", "via", "10.81.0.1")
	router.Addr("lan", "10.81.0.1/24")
	router.Addr("wan", "198.18.81.1/24")
	server.Addr("eth0", "198.18.81.2/24")
	server.IP("route", "add", "default", "via", "198.18.81.1")
	for _, c := range [][]string{
		{"create", "blocked", "hash:net"},
		{"add", "blocked", "10.81.0.0/24"},
		{"add", "blocked", "10.81.0.128/25", "nomatch"},
		{"create", "svcdeny", "hash:ip,port"},
		{"add", "svcdeny", "198.18.81.2,tcp:81"},
	} {
		router.Run("ipset", c...)
	}
	router.Run("iptables", "-w", "-A", "FORWARD", "-m", "set", "--match-set", "blocked", "src", "-j", "DROP")
	router.Run("iptables", "-w", "-A", "FORWARD", "-p", "tcp", "-m", "set", "--match-set", "svcdeny", "dst,dst", "-j", "REJECT", "--reject-with", "tcp-reset")
	server.Listen("0.0.0.0:80")
	server.Listen("0.0.0.0:81")
	st := readState(t, router)
	if len(st.IPSets) != 2 {
		t.Fatalf("read %d ipsets, want 2", len(st.IPSets))
	}
	for i, c := range []struct {
		src, dst string
		verdict  string
	}{
		{"10.81.0.2", "198.18.81.2:80", trace.LegDrop},      // in blocked
		{"10.81.0.130", "198.18.81.2:80", trace.LegForward}, // the nomatch exception
		{"10.81.0.130", "198.18.81.2:81", trace.LegReject},  // in svcdeny
	} {
		src := fmt.Sprintf("%s:%d", c.src, 40400+i)
		conn, err := client.Dial(c.dst, src, dialTimeout)
		if conn != nil {
			conn.Close()
		}
		res := traceTCP(st, src, c.dst, "lan")
		if res.Forward.Verdict != c.verdict || res.Has(trace.FindingUncertain) {
			t.Errorf("%s -> %s: trace %s (findings %v), want %s\n%s", src, c.dst, res.Forward.Verdict, errorIDs(res), c.verdict, render(res))
		}
		if (err == nil) != (c.verdict == trace.LegForward) {
			t.Errorf("%s -> %s: the client's connection: %v; trace says %s", src, c.dst, err, res.Forward.Verdict)
		}
	}
}
