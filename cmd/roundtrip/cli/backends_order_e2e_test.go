package cli

import (
	"strings"
	"testing"
	"time"

	"roundtrip/engine/trace"
)

// TestPrivilegedIPTablesBackendsUndefinedOrder: both backends DNAT the same port to different
// ports of the server. The kernel runs the most recently registered nat hook first, which
// nothing shows: trace says `uncertain` naming both rules, and what the kernel did (read back
// from conntrack) is one of the two.
func TestPrivilegedIPTablesBackendsUndefinedOrder(t *testing.T) {
	for _, first := range []string{"iptables-legacy", "iptables-nft"} {
		t.Run(first+" first", func(t *testing.T) {
			n := newBackendsRouter(t)
			second := map[string]string{"iptables-legacy": "iptables-nft", "iptables-nft": "iptables-legacy"}[first]
			n.router.Run(first, "-t", "nat", "-A", "PREROUTING", "-i", "wan0", "-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", bkServer+":80")
			n.router.Run(second, "-t", "nat", "-A", "PREROUTING", "-i", "wan0", "-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", bkServer+":81")
			body, err := n.client.HTTPGet(bkRouterWAN+":8080", 3*time.Second)
			if err != nil {
				t.Fatalf("client: %v", err)
			}
			ct := n.conntrackDNAT(t, "8080")
			if want := map[string]string{"port80": bkServer + ":80", "port81": bkServer + ":81"}[body]; ct != want {
				t.Errorf("conntrack says %q, the server answered %q", ct, body)
			}
			r := traceLive(t, n.router, "tcp", bkClient+":40000", bkRouterWAN+":8080", "--iif", "wan0")
			f := r.finding(t, trace.FindingUncertain)
			ev := strings.Join(f.Evidence, "\n")
			for _, want := range []string{"iptables-legacy -t nat -A PREROUTING", "iptables-nft -t nat -A PREROUTING", bkServer + ":80", bkServer + ":81"} {
				if !strings.Contains(ev, want) {
					t.Errorf("uncertain finding does not name %q:\n%s", want, ev)
				}
			}
			if got := traceDNAT(&r.res); got != bkServer+":80" && got != bkServer+":81" {
				t.Errorf("trace DNATs to %q, neither rule's target", got)
			}
			t.Logf("rules added %s first: the kernel used %s; trace assumed %s", first, ct, traceDNAT(&r.res))
		})
	}
}
