package trace_test

import (
	"testing"

	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// firewalldRules is the layout firewalld 0.6 (iptables backend, as CentOS/RHEL 7 and 8 ship
// it) writes, as its ipXtables backend (src/firewall/core/ipXtables.py) builds it and
// iptables-save prints it: eth0 in zone public (services ssh and 8080/tcp; a rich rule
// `rule source ipset=blacklist drop` over `--new-ipset=blacklist --type=hash:net`; a rich rule
// `rule port port=2222 protocol=tcp accept limit value=2/m`; a forward port
// `port=8443:proto=tcp:toport=443:toaddr=10.94.1.2`), eth1 in zone internal (ssh only).
// INPUT_ZONES goes (-g) to the zone, the zone's _log, _deny, _allow chains, REJECT with
// icmp-host-prohibited at the end of INPUT and FORWARD.
const firewalldRules = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:OUTPUT_direct - [0:0]
:POSTROUTING_ZONES - [0:0]
:POSTROUTING_ZONES_SOURCE - [0:0]
:POSTROUTING_direct - [0:0]
:POST_internal - [0:0]
:POST_internal_allow - [0:0]
:POST_public - [0:0]
:POST_public_allow - [0:0]
:PREROUTING_ZONES - [0:0]
:PREROUTING_ZONES_SOURCE - [0:0]
:PREROUTING_direct - [0:0]
:PRE_internal - [0:0]
:PRE_internal_allow - [0:0]
:PRE_public - [0:0]
:PRE_public_allow - [0:0]
-A PREROUTING -j PREROUTING_direct
-A PREROUTING -j PREROUTING_ZONES_SOURCE
-A PREROUTING -j PREROUTING_ZONES
-A OUTPUT -j OUTPUT_direct
-A POSTROUTING -j POSTROUTING_direct
-A POSTROUTING -j POSTROUTING_ZONES_SOURCE
-A POSTROUTING -j POSTROUTING_ZONES
-A POSTROUTING_ZONES -o eth1 -g POST_internal
-A POSTROUTING_ZONES -o eth0 -g POST_public
-A POSTROUTING_ZONES -g POST_public
-A POST_internal -j POST_internal_allow
-A POST_public -j POST_public_allow
-A PREROUTING_ZONES -i eth1 -g PRE_internal
-A PREROUTING_ZONES -i eth0 -g PRE_public
-A PREROUTING_ZONES -g PRE_public
-A PRE_internal -j PRE_internal_allow
-A PRE_public -j PRE_public_allow
-A PRE_public_allow -p tcp -m tcp --dport 8443 -j DNAT --to-destination 10.94.1.2:443
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:FORWARD_IN_ZONES - [0:0]
:FORWARD_IN_ZONES_SOURCE - [0:0]
:FORWARD_OUT_ZONES - [0:0]
:FORWARD_OUT_ZONES_SOURCE - [0:0]
:FORWARD_direct - [0:0]
:FWDI_internal - [0:0]
:FWDI_internal_allow - [0:0]
:FWDI_public - [0:0]
:FWDI_public_allow - [0:0]
:FWDO_internal - [0:0]
:FWDO_internal_allow - [0:0]
:FWDO_public - [0:0]
:FWDO_public_allow - [0:0]
:INPUT_ZONES - [0:0]
:INPUT_ZONES_SOURCE - [0:0]
:INPUT_direct - [0:0]
:IN_internal - [0:0]
:IN_internal_allow - [0:0]
:IN_public - [0:0]
:IN_public_allow - [0:0]
:IN_public_deny - [0:0]
:IN_public_log - [0:0]
:OUTPUT_direct - [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -j INPUT_direct
-A INPUT -j INPUT_ZONES_SOURCE
-A INPUT -j INPUT_ZONES
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A INPUT -j REJECT --reject-with icmp-host-prohibited
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i lo -j ACCEPT
-A FORWARD -j FORWARD_direct
-A FORWARD -j FORWARD_IN_ZONES_SOURCE
-A FORWARD -j FORWARD_IN_ZONES
-A FORWARD -j FORWARD_OUT_ZONES_SOURCE
-A FORWARD -j FORWARD_OUT_ZONES
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -j REJECT --reject-with icmp-host-prohibited
-A OUTPUT -o lo -j ACCEPT
-A OUTPUT -j OUTPUT_direct
-A FORWARD_IN_ZONES -i eth1 -g FWDI_internal
-A FORWARD_IN_ZONES -i eth0 -g FWDI_public
-A FORWARD_IN_ZONES -g FWDI_public
-A FORWARD_OUT_ZONES -o eth1 -g FWDO_internal
-A FORWARD_OUT_ZONES -o eth0 -g FWDO_public
-A FORWARD_OUT_ZONES -g FWDO_public
-A FWDI_internal -j FWDI_internal_allow
-A FWDI_internal -p icmp -j ACCEPT
-A FWDI_public -j FWDI_public_allow
-A FWDI_public -p icmp -j ACCEPT
-A FWDI_public_allow -d 10.94.1.2/32 -p tcp -m tcp --dport 443 -m conntrack --ctstate NEW,UNTRACKED -j ACCEPT
-A FWDO_internal -j FWDO_internal_allow
-A FWDO_public -j FWDO_public_allow
-A INPUT_ZONES -i eth1 -g IN_internal
-A INPUT_ZONES -i eth0 -g IN_public
-A INPUT_ZONES -g IN_public
-A IN_internal -j IN_internal_allow
-A IN_internal -p icmp -j ACCEPT
-A IN_internal_allow -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW,UNTRACKED -j ACCEPT
-A IN_public -j IN_public_log
-A IN_public -j IN_public_deny
-A IN_public -j IN_public_allow
-A IN_public -p icmp -j ACCEPT
-A IN_public_allow -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW,UNTRACKED -j ACCEPT
-A IN_public_allow -p tcp -m tcp --dport 8080 -m conntrack --ctstate NEW,UNTRACKED -j ACCEPT
-A IN_public_allow -p tcp -m tcp --dport 2222 -m limit --limit 2/min -m conntrack --ctstate NEW,UNTRACKED -j ACCEPT
-A IN_public_deny -m set --match-set blacklist src -j DROP
COMMIT
`

// A firewalld host between a public and an internal zone: allowed and rejected services, a
// source in the blacklist ipset, a rate-limited rich rule, a forward port and routed flows,
// each compared with the kernel (realworld_test.go).
func TestPrivilegedFirewalldHost(t *testing.T) {
	t.Parallel()
	lab.RequireTool(t, "ipset")
	h := newRealWorld(t, "fwd", true)
	client := h.peer("fcli", "eth0", "198.18.94.2/24", "")
	client.Addr("eth0", "198.18.94.66/24")
	client.IP("route", "add", "10.94.1.0/24", "via", "198.18.94.1")
	backend := h.peer("fback", "eth1", "10.94.1.2/24", "10.94.1.1")
	h.host.Addr("eth0", "198.18.94.1/24")
	h.host.Addr("eth1", "10.94.1.1/24")
	h.host.Run("ipset", "create", "blacklist", "hash:net")
	h.host.Run("ipset", "add", "blacklist", "198.18.94.64/26")
	for _, p := range []string{"22", "80", "2222", "8080"} {
		h.host.Listen("0.0.0.0:" + p)
	}
	backend.Listen("0.0.0.0:443")
	backend.Listen("0.0.0.0:22")
	client.Listen("0.0.0.0:80")
	h.load(firewalldRules)

	h.run([]rwFlow{
		{name: "ssh allowed", client: "fcli", src: "198.18.94.2", dst: "198.18.94.1:22", iif: "eth0", verdict: trace.LegLocal},
		{name: "http not allowed", client: "fcli", src: "198.18.94.2", dst: "198.18.94.1:80", iif: "eth0", verdict: trace.LegReject},
		{name: "ssh from the blacklist", client: "fcli", src: "198.18.94.66", dst: "198.18.94.1:22", iif: "eth0", verdict: trace.LegDrop},
		{name: "an allowed port", client: "fcli", src: "198.18.94.2", dst: "198.18.94.1:8080", iif: "eth0", verdict: trace.LegLocal},
		{name: "a rate-limited rich rule", client: "fcli", src: "198.18.94.2", dst: "198.18.94.1:2222", iif: "eth0", verdict: trace.LegLocal, quiet: 5},
		{name: "forward port", client: "fcli", src: "198.18.94.2", dst: "198.18.94.1:8443", iif: "eth0", verdict: trace.LegForward},
		{name: "forward port from the blacklist (deny is INPUT only)", client: "fcli", src: "198.18.94.66", dst: "198.18.94.1:8443", iif: "eth0", verdict: trace.LegForward},
		{name: "routed to the forward port's target", client: "fcli", src: "198.18.94.2", dst: "10.94.1.2:443", iif: "eth0", verdict: trace.LegForward},
		{name: "routed to another port of the target", client: "fcli", src: "198.18.94.2", dst: "10.94.1.2:22", iif: "eth0", verdict: trace.LegReject},
		{name: "internal zone to outside", client: "fback", src: "10.94.1.2", dst: "198.18.94.2:80", iif: "eth1", verdict: trace.LegReject},
		{name: "internal zone to ssh", client: "fback", src: "10.94.1.2", dst: "10.94.1.1:22", iif: "eth1", verdict: trace.LegLocal},
		{name: "internal zone to a port public allows", client: "fback", src: "10.94.1.2", dst: "10.94.1.1:8080", iif: "eth1", verdict: trace.LegReject},
		{name: "internal zone to the public zone's forward port (not DNATed)", client: "fback", src: "10.94.1.2", dst: "10.94.1.1:8443", iif: "eth1", verdict: trace.LegReject},
		{name: "host to outside", client: "host", src: "198.18.94.1", dst: "198.18.94.2:80", verdict: trace.LegOutput},
	})
}
