package trace_test

import (
	"fmt"
	"testing"

	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// The rpfilter match, as firewalld writes it in raw PREROUTING (strict, --invert -j DROP),
// evaluated as the kernel's reverse lookup: a source routed back by the interface it came in
// on passes, one routed elsewhere is dropped (with the rp_filter sysctl off); --loose lets the
// latter through. Client results and trace agree.
func TestPrivilegedRPFilterMatch(t *testing.T) {
	for i, loose := range []bool{false, true} {
		t.Run(fmt.Sprintf("loose=%v", loose), func(t *testing.T) {
			l := lab.New(t)
			client := lab.Host(l, "hbr-rcli", false)
			router := lab.Host(l, "hbr-rrtr", true)
			server := lab.Host(l, "hbr-rsrv", false)
			l.Veth(client, "eth0", router, "lan")
			l.Veth(router, "wan", server, "eth0")
			client.Addr("eth0", "10.82.0.2/24")
			client.Addr("eth0", "203.0.113.5/32") // routed by the router via wan, not lan
			client.IP("route", "add", "default", "via", "10.82.0.1")
			router.Addr("lan", "10.82.0.1/24")
			router.Addr("wan", "198.18.82.1/24")
			// The reverse lookup (from lo) sends 203.0.113.0/24 out wan; replies coming in on
			// wan go back to the client by a rule for them, so the flow can work when the
			// request passes.
			router.IP("route", "add", "203.0.113.0/24", "via", "198.18.82.2")
			router.IP("route", "add", "203.0.113.0/24", "via", "10.82.0.2", "table", "100")
			router.IP("rule", "add", "iif", "wan", "to", "203.0.113.0/24", "lookup", "100")
			server.Addr("eth0", "198.18.82.2/24")
			server.IP("route", "add", "default", "via", "198.18.82.1")
			args := []string{"-w", "-t", "raw", "-A", "PREROUTING", "-m", "rpfilter", "--invert", "-j", "DROP"}
			if loose {
				args = []string{"-w", "-t", "raw", "-A", "PREROUTING", "-m", "rpfilter", "--loose", "--invert", "-j", "DROP"}
			}
			router.Run("iptables", args...)
			server.Listen("0.0.0.0:80")
			st := readState(t, router)
			for j, c := range []struct {
				src   string
				works bool
			}{
				{"10.82.0.2", true},
				{"203.0.113.5", loose},
			} {
				src := fmt.Sprintf("%s:%d", c.src, 41200+10*i+j)
				conn, err := client.Dial("198.18.82.2:80", src, dialTimeout)
				if conn != nil {
					conn.Close()
				}
				if (err == nil) != c.works {
					t.Fatalf("from %s: the client: %v, want working=%v", src, err, c.works)
				}
				res := traceTCP(st, src, "198.18.82.2:80", "lan")
				if works := res.Forward.Verdict == trace.LegForward; works != c.works || res.Has(trace.FindingUncertain) {
					t.Errorf("from %s: trace %s\n%s", src, res.Forward.Verdict, render(res))
				}
			}
		})
	}
}
