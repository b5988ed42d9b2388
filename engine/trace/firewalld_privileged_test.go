package trace_test

import (
	"fmt"
	"testing"

	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// firewalldRules is the layout firewalld 0.6 (iptables backend) writes for the public zone
// with ssh allowed and an ipset blacklist (firewall-cmd --permanent --new-ipset=blacklist
// --type=hash:net; a rich rule source ipset=blacklist drop): INPUT_ZONES goes (-g) to the zone,
// the zone's _deny, _allow chains, REJECT with icmp-host-prohibited at the end.
const firewalldRules = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:INPUT_ZONES - [0:0]
:INPUT_ZONES_SOURCE - [0:0]
:INPUT_direct - [0:0]
:IN_public - [0:0]
:IN_public_allow - [0:0]
:IN_public_deny - [0:0]
:IN_public_log - [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -j INPUT_direct
-A INPUT -j INPUT_ZONES_SOURCE
-A INPUT -j INPUT_ZONES
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A INPUT -j REJECT --reject-with icmp-host-prohibited
-A INPUT_ZONES -i eth0 -g IN_public
-A INPUT_ZONES -g IN_public
-A IN_public -j IN_public_log
-A IN_public -j IN_public_deny
-A IN_public -j IN_public_allow
-A IN_public -p icmp -j ACCEPT
-A IN_public_allow -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW,UNTRACKED -j ACCEPT
-A IN_public_deny -m set --match-set blacklist src -j DROP
COMMIT
`

// A firewalld host: an allowed service, a port rejected by the zone's final REJECT, and a
// source in the blacklist ipset dropped; client results and trace agree.
func TestPrivilegedFirewalldHost(t *testing.T) {
	lab.RequireTool(t, "ipset")
	l := lab.New(t)
	host := lab.Host(l, "hbr-fwd", false)
	client := lab.Host(l, "hbr-fcli", false)
	l.Veth(client, "eth0", host, "eth0")
	client.Addr("eth0", "198.18.94.2/24")
	client.Addr("eth0", "198.18.94.66/24")
	host.Addr("eth0", "198.18.94.1/24")
	host.Run("ipset", "create", "blacklist", "hash:net")
	host.Run("ipset", "add", "blacklist", "198.18.94.64/26")
	host.Run("sh", "-c", `printf '%s' "$1" | iptables-restore`, "sh", firewalldRules)
	host.Listen("0.0.0.0:22")
	host.Listen("0.0.0.0:80")
	st := readState(t, host)
	checkDoctor(t, st)

	for i, c := range []struct {
		name, src, dst string
		verdict        string
	}{
		{"ssh allowed", "198.18.94.2", "198.18.94.1:22", trace.LegLocal},
		{"http not allowed", "198.18.94.2", "198.18.94.1:80", trace.LegReject},
		{"ssh from the blacklist", "198.18.94.66", "198.18.94.1:22", trace.LegDrop},
	} {
		src := fmt.Sprintf("%s:%d", c.src, 41000+i)
		before := ruleCounters(t, host)
		conn, err := client.Dial(c.dst, src, dialTimeout)
		if conn != nil {
			conn.Close()
		}
		res := traceTCP(st, src, c.dst, "eth0")
		checkCounted(t, c.name, before, ruleCounters(t, host), res, err == nil)
		if res.Forward.Verdict != c.verdict || (err == nil) != (c.verdict == trace.LegLocal) || res.Has(trace.FindingUncertain) {
			t.Errorf("%s: the client: %v; trace %s\n%s", c.name, err, res.Forward.Verdict, render(res))
		}
	}
}
