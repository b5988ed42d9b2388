package trace_test

import (
	"fmt"
	"strings"
	"testing"

	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// ufwRules is the part of ufw's layout (ufw 0.36, `ufw limit 22/tcp`, `ufw allow 80/tcp`,
// default deny incoming) that decides incoming TCP: ufw-before-input accepts established
// traffic, ufw-user-input allows port 80 and rate-limits port 22 with the recent match
// (rejected from the 6th new connection within 30 s), the INPUT policy drops the rest.
const ufwRules = `*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ufw-before-input - [0:0]
:ufw-user-input - [0:0]
:ufw-user-limit - [0:0]
:ufw-user-limit-accept - [0:0]
-A INPUT -j ufw-before-input
-A INPUT -j ufw-user-input
-A ufw-before-input -i lo -j ACCEPT
-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ufw-before-input -m conntrack --ctstate INVALID -j DROP
-A ufw-user-input -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m recent --set --name DEFAULT --mask 255.255.255.255 --rsource
-A ufw-user-input -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m recent --update --seconds 30 --hitcount 6 --name DEFAULT --mask 255.255.255.255 --rsource -j ufw-user-limit
-A ufw-user-input -p tcp -m tcp --dport 22 -j ufw-user-limit-accept
-A ufw-user-input -p tcp -m tcp --dport 80 -j ACCEPT
-A ufw-user-limit -m limit --limit 3/min -j LOG --log-prefix "[UFW LIMIT BLOCK] "
-A ufw-user-limit -j REJECT --reject-with icmp-port-unreachable
-A ufw-user-limit-accept -j ACCEPT
COMMIT
`

// A ufw host: allowed, dropped and rate-limited flows. The rate-limited one works for the
// first five new connections and is rejected from the sixth, as trace's candidates say; the
// rate-limited LOG rule is no candidate.
func TestPrivilegedUfwHost(t *testing.T) {
	l := lab.New(t)
	host := lab.Host(l, "hbr-ufw", false)
	client := lab.Host(l, "hbr-ucli", false)
	l.Veth(client, "eth0", host, "eth0")
	client.Addr("eth0", "198.18.93.2/24")
	host.Addr("eth0", "198.18.93.1/24")
	host.Run("sh", "-c", `printf '%s' "$1" | iptables-restore`, "sh", ufwRules)
	for _, p := range []string{"22", "80", "8080"} {
		host.Listen("0.0.0.0:" + p)
	}
	st := readState(t, host)
	checkDoctor(t, st)

	for i, c := range []struct {
		dst     string
		verdict string
	}{
		{"198.18.93.1:80", trace.LegLocal},
		{"198.18.93.1:8080", trace.LegDrop},
	} {
		src := fmt.Sprintf("198.18.93.2:%d", 40800+i)
		conn, err := client.Dial(c.dst, src, dialTimeout)
		if conn != nil {
			conn.Close()
		}
		res := traceTCP(st, src, c.dst, "eth0")
		if res.Forward.Verdict != c.verdict || (err == nil) != (c.verdict == trace.LegLocal) || res.Has(trace.FindingUncertain) {
			t.Errorf("%s: the client: %v; trace %s\n%s", c.dst, err, res.Forward.Verdict, render(res))
		}
	}

	res := traceTCP(st, "198.18.93.2:40810", "198.18.93.1:22", "eth0")
	cand := res.Finding(trace.FindingCandidates)
	if res.Forward.Verdict != trace.LegLocal || cand == nil || len(cand.Evidence) != 2 ||
		!strings.Contains(cand.Evidence[1], "once the source address was seen 6 times within 30 s (recent list DEFAULT): rejected") || res.Has(trace.FindingUncertain) {
		t.Fatalf("trace of the rate-limited port:\n%s", render(res))
	}
	for n := 1; n <= 7; n++ {
		src := fmt.Sprintf("198.18.93.2:%d", 40810+n)
		conn, err := client.Dial("198.18.93.1:22", src, dialTimeout)
		if conn != nil {
			conn.Close()
		}
		// The first outcome (accepted) holds until the condition trace names is met.
		if works := n < 6; (err == nil) != works {
			t.Errorf("connection %d to the rate-limited port: %v, want working=%v (trace: %s)", n, err, works, cand.Evidence[1])
		}
	}
}
