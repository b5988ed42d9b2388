package trace_test

import (
	"testing"

	"roundtrip/engine/trace"
)

// ufwRules is ufw's layout (ufw 0.36 as Ubuntu 22.04 ships it: the chains of
// /etc/ufw/before.rules and after.rules, and the ufw-user-* rules ufw writes to user.rules)
// as iptables-save prints it after `ufw default deny incoming`, `ufw default deny routed`,
// `ufw limit 22/tcp`, `ufw allow 80/tcp`, `ufw allow from 198.18.93.0/25 to any port 3306
// proto tcp`, `ufw deny 8081/tcp`, `ufw reject 8082/tcp` and `ufw route allow in on eth0 out on
// eth1 to 10.93.1.2 port 80 proto tcp`. The limit rule uses the recent match: rejected from
// the 6th new connection within 30 s; the LOG rules are rate-limited (and irrelevant).
const ufwRules = `*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ufw-after-forward - [0:0]
:ufw-after-input - [0:0]
:ufw-after-logging-forward - [0:0]
:ufw-after-logging-input - [0:0]
:ufw-after-output - [0:0]
:ufw-before-forward - [0:0]
:ufw-before-input - [0:0]
:ufw-before-output - [0:0]
:ufw-logging-deny - [0:0]
:ufw-not-local - [0:0]
:ufw-reject-forward - [0:0]
:ufw-reject-input - [0:0]
:ufw-skip-to-policy-input - [0:0]
:ufw-track-forward - [0:0]
:ufw-track-input - [0:0]
:ufw-track-output - [0:0]
:ufw-user-forward - [0:0]
:ufw-user-input - [0:0]
:ufw-user-limit - [0:0]
:ufw-user-limit-accept - [0:0]
:ufw-user-output - [0:0]
-A INPUT -j ufw-before-input
-A INPUT -j ufw-after-input
-A INPUT -j ufw-after-logging-input
-A INPUT -j ufw-reject-input
-A INPUT -j ufw-track-input
-A FORWARD -j ufw-before-forward
-A FORWARD -j ufw-after-forward
-A FORWARD -j ufw-after-logging-forward
-A FORWARD -j ufw-reject-forward
-A FORWARD -j ufw-track-forward
-A OUTPUT -j ufw-before-output
-A OUTPUT -j ufw-after-output
-A OUTPUT -j ufw-track-output
-A ufw-after-input -p udp -m udp --dport 137 -j ufw-skip-to-policy-input
-A ufw-after-input -p udp -m udp --dport 138 -j ufw-skip-to-policy-input
-A ufw-after-input -p tcp -m tcp --dport 139 -j ufw-skip-to-policy-input
-A ufw-after-input -p tcp -m tcp --dport 445 -j ufw-skip-to-policy-input
-A ufw-after-input -p udp -m udp --dport 67 -j ufw-skip-to-policy-input
-A ufw-after-input -p udp -m udp --dport 68 -j ufw-skip-to-policy-input
-A ufw-after-input -m addrtype --dst-type BROADCAST -j ufw-skip-to-policy-input
-A ufw-after-logging-forward -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[UFW BLOCK] "
-A ufw-after-logging-input -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[UFW BLOCK] "
-A ufw-before-forward -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ufw-before-forward -p icmp -m icmp --icmp-type 3 -j ACCEPT
-A ufw-before-forward -p icmp -m icmp --icmp-type 11 -j ACCEPT
-A ufw-before-forward -p icmp -m icmp --icmp-type 12 -j ACCEPT
-A ufw-before-forward -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A ufw-before-forward -j ufw-user-forward
-A ufw-before-input -i lo -j ACCEPT
-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ufw-before-input -m conntrack --ctstate INVALID -j ufw-logging-deny
-A ufw-before-input -m conntrack --ctstate INVALID -j DROP
-A ufw-before-input -p icmp -m icmp --icmp-type 3 -j ACCEPT
-A ufw-before-input -p icmp -m icmp --icmp-type 11 -j ACCEPT
-A ufw-before-input -p icmp -m icmp --icmp-type 12 -j ACCEPT
-A ufw-before-input -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A ufw-before-input -p udp -m udp --sport 67 --dport 68 -j ACCEPT
-A ufw-before-input -j ufw-not-local
-A ufw-before-input -d 224.0.0.251/32 -p udp -m udp --dport 5353 -j ACCEPT
-A ufw-before-input -d 239.255.255.250/32 -p udp -m udp --dport 1900 -j ACCEPT
-A ufw-before-input -j ufw-user-input
-A ufw-before-output -o lo -j ACCEPT
-A ufw-before-output -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ufw-before-output -j ufw-user-output
-A ufw-logging-deny -m conntrack --ctstate INVALID -m limit --limit 3/min --limit-burst 10 -j RETURN
-A ufw-logging-deny -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[UFW BLOCK] "
-A ufw-not-local -m addrtype --dst-type LOCAL -j RETURN
-A ufw-not-local -m addrtype --dst-type MULTICAST -j RETURN
-A ufw-not-local -m addrtype --dst-type BROADCAST -j RETURN
-A ufw-not-local -m limit --limit 3/min --limit-burst 10 -j ufw-logging-deny
-A ufw-not-local -j DROP
-A ufw-skip-to-policy-input -j DROP
-A ufw-track-output -p tcp -m conntrack --ctstate NEW -j ACCEPT
-A ufw-track-output -p udp -m conntrack --ctstate NEW -j ACCEPT
-A ufw-user-forward -d 10.93.1.2/32 -i eth0 -o eth1 -p tcp -m tcp --dport 80 -j ACCEPT
-A ufw-user-input -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m recent --set --name DEFAULT --mask 255.255.255.255 --rsource
-A ufw-user-input -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m recent --update --seconds 30 --hitcount 6 --name DEFAULT --mask 255.255.255.255 --rsource -j ufw-user-limit
-A ufw-user-input -p tcp -m tcp --dport 22 -j ufw-user-limit-accept
-A ufw-user-input -p tcp -m tcp --dport 80 -j ACCEPT
-A ufw-user-input -s 198.18.93.0/25 -p tcp -m tcp --dport 3306 -j ACCEPT
-A ufw-user-input -p tcp -m tcp --dport 8081 -j DROP
-A ufw-user-input -p tcp -m tcp --dport 8082 -j REJECT --reject-with tcp-reset
-A ufw-user-limit -m limit --limit 3/min -j LOG --log-prefix "[UFW LIMIT BLOCK] "
-A ufw-user-limit -j REJECT --reject-with icmp-port-unreachable
-A ufw-user-limit-accept -j ACCEPT
COMMIT
`

// A ufw host with a routed backend: allowed, denied, rejected, routed and rate-limited flows,
// each compared with the kernel (realworld_test.go). The rate-limited port works for the
// first five new connections and is rejected from the sixth, as trace's candidates say.
func TestPrivilegedUfwHost(t *testing.T) {
	t.Parallel()
	h := newRealWorld(t, "ufw", true)
	client := h.peer("ucli", "eth0", "198.18.93.2/24", "")
	client.Addr("eth0", "198.18.93.200/24")
	client.IP("route", "add", "10.93.1.0/24", "via", "198.18.93.1")
	backend := h.peer("uback", "eth1", "10.93.1.2/24", "10.93.1.1")
	h.host.Addr("eth0", "198.18.93.1/24")
	h.host.Addr("eth1", "10.93.1.1/24")
	for _, p := range []string{"22", "80", "445", "3306", "8080", "8081", "8082"} {
		h.host.Listen("0.0.0.0:" + p)
	}
	backend.Listen("0.0.0.0:80")
	backend.Listen("0.0.0.0:81")
	client.Listen("0.0.0.0:80")
	h.load(ufwRules)

	h.run([]rwFlow{
		{name: "allowed port", client: "ucli", src: "198.18.93.2", dst: "198.18.93.1:80", iif: "eth0", verdict: trace.LegLocal},
		{name: "allowed port from another address", client: "ucli", src: "198.18.93.200", dst: "198.18.93.1:80", iif: "eth0", verdict: trace.LegLocal},
		{name: "port not allowed (policy DROP)", client: "ucli", src: "198.18.93.2", dst: "198.18.93.1:8080", iif: "eth0", verdict: trace.LegDrop},
		{name: "rate-limited ssh", client: "ucli", src: "198.18.93.2", dst: "198.18.93.1:22", iif: "eth0", verdict: trace.LegLocal, quiet: 5},
		{name: "port allowed from a subnet", client: "ucli", src: "198.18.93.2", dst: "198.18.93.1:3306", iif: "eth0", verdict: trace.LegLocal},
		{name: "port allowed from a subnet, other source", client: "ucli", src: "198.18.93.200", dst: "198.18.93.1:3306", iif: "eth0", verdict: trace.LegDrop},
		{name: "denied port", client: "ucli", src: "198.18.93.2", dst: "198.18.93.1:8081", iif: "eth0", verdict: trace.LegDrop},
		{name: "rejected port", client: "ucli", src: "198.18.93.2", dst: "198.18.93.1:8082", iif: "eth0", verdict: trace.LegReject},
		{name: "skipped to policy (smb)", client: "ucli", src: "198.18.93.2", dst: "198.18.93.1:445", iif: "eth0", verdict: trace.LegDrop},
		{name: "routed, allowed", client: "ucli", src: "198.18.93.2", dst: "10.93.1.2:80", iif: "eth0", verdict: trace.LegForward},
		{name: "routed, not allowed", client: "ucli", src: "198.18.93.2", dst: "10.93.1.2:81", iif: "eth0", verdict: trace.LegDrop},
		{name: "routed the other way, not allowed", client: "uback", src: "10.93.1.2", dst: "198.18.93.2:80", iif: "eth1", verdict: trace.LegDrop},
		{name: "host to outside", client: "host", src: "198.18.93.1", dst: "198.18.93.2:80", verdict: trace.LegOutput},
	})
}
