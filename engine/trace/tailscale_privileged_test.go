package trace_test

import (
	"testing"

	"roundtrip/engine/trace"
)

// tailscaleRules is the layout tailscaled (1.5x, iptables mode) writes on a subnet router and
// exit node, as its netfilter runner (util/linuxfw/iptables_runner.go: the base chains, the
// SNAT rule of --snat-subnet-routes) writes it and tailscale.com's "Subnet routers" and "Exit
// nodes" pages describe the masquerading:
// ts-input drops CGNAT-range sources that do not come from tailscale0, ts-forward marks what
// comes from the tailnet (0x40000/0xff0000) and accepts it, ts-postrouting MASQUERADEs what
// carries the mark. Here tailscale0 is a veth standing in for the TUN device (the rules match
// its name only).
const tailscaleRules = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ts-forward - [0:0]
:ts-input - [0:0]
-A INPUT -j ts-input
-A FORWARD -j ts-forward
-A ts-forward -i tailscale0 -j MARK --set-xmark 0x40000/0xff0000
-A ts-forward -m mark --mark 0x40000/0xff0000 -j ACCEPT
-A ts-forward -s 100.64.0.0/10 -o tailscale0 -j DROP
-A ts-forward -o tailscale0 -j ACCEPT
-A ts-input -s 100.100.1.1/32 -i lo -j ACCEPT
-A ts-input -s 100.115.92.0/23 ! -i tailscale0 -j RETURN
-A ts-input -s 100.64.0.0/10 ! -i tailscale0 -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:ts-postrouting - [0:0]
-A POSTROUTING -j ts-postrouting
-A ts-postrouting -m mark --mark 0x40000/0xff0000 -j MASQUERADE
COMMIT
`

// A Tailscale subnet router and exit node between the tailnet, a LAN and the internet: every
// flow's kernel decisions against trace's (realworld_test.go).
func TestPrivilegedTailscaleSubnetRouter(t *testing.T) {
	t.Parallel()
	h := newRealWorld(t, "ts", true)
	peer := h.peer("tpeer", "tailscale0", "", "")
	lan := h.peer("tlan", "eth0", "192.168.50.10/24", "")
	inet := h.peer("tinet", "wan", "198.18.97.2/24", "")
	h.host.Addr("tailscale0", "100.100.1.1/32")
	h.host.IP("route", "add", "100.100.1.2/32", "dev", "tailscale0")
	h.host.Addr("eth0", "192.168.50.1/24")
	h.host.Addr("wan", "198.18.97.1/24")
	h.host.IP("route", "add", "default", "via", "198.18.97.2")
	peer.Addr("eth0", "100.100.1.2/32")
	peer.IP("route", "add", "100.100.1.1/32", "dev", "eth0")
	peer.IP("route", "add", "default", "via", "100.100.1.1", "dev", "eth0", "onlink") // the exit node
	lan.Addr("eth0", "100.70.0.9/32")                                                 // a CGNAT-range source on the LAN side
	lan.Addr("eth0", "100.115.92.5/32")                                               // one in the ChromeOS VM range, which ts-input lets by
	lan.IP("route", "add", "100.100.1.0/24", "via", "192.168.50.1")
	lan.IP("route", "add", "default", "via", "192.168.50.1")
	lan.Listen("0.0.0.0:80")
	lan.Listen("0.0.0.0:22")
	peer.Listen("0.0.0.0:80")
	inet.Listen("0.0.0.0:80")
	h.host.Listen("0.0.0.0:22")
	h.load(tailscaleRules)

	h.run([]rwFlow{
		{name: "tailnet peer to a LAN host", client: "tpeer", src: "100.100.1.2", dst: "192.168.50.10:80", iif: "tailscale0", verdict: trace.LegForward},
		{name: "tailnet peer to another LAN port", client: "tpeer", src: "100.100.1.2", dst: "192.168.50.10:22", iif: "tailscale0", verdict: trace.LegForward},
		{name: "tailnet peer through the exit node", client: "tpeer", src: "100.100.1.2", dst: "198.18.97.2:80", iif: "tailscale0", verdict: trace.LegForward},
		{name: "LAN host to the tailnet peer", client: "tlan", src: "192.168.50.10", dst: "100.100.1.2:80", iif: "eth0", verdict: trace.LegForward},
		{name: "CGNAT source from the LAN to the router", client: "tlan", src: "100.70.0.9", dst: "192.168.50.1:22", iif: "eth0", verdict: trace.LegDrop},
		{name: "CGNAT source from the LAN to the tailnet", client: "tlan", src: "100.70.0.9", dst: "100.100.1.2:80", iif: "eth0", verdict: trace.LegDrop},
		{name: "ChromeOS VM range from the LAN to the router", client: "tlan", src: "100.115.92.5", dst: "192.168.50.1:22", iif: "eth0", verdict: trace.LegLocal},
		{name: "tailnet peer to the router's tailnet address", client: "tpeer", src: "100.100.1.2", dst: "100.100.1.1:22", iif: "tailscale0", verdict: trace.LegLocal},
		{name: "tailnet peer to the router's LAN address", client: "tpeer", src: "100.100.1.2", dst: "192.168.50.1:22", iif: "tailscale0", verdict: trace.LegLocal},
		{name: "LAN host to the router", client: "tlan", src: "192.168.50.10", dst: "192.168.50.1:22", iif: "eth0", verdict: trace.LegLocal},
		{name: "router to the tailnet peer", client: "host", src: "100.100.1.1", dst: "100.100.1.2:80", verdict: trace.LegOutput},
		{name: "LAN host to the internet (no masquerade: the reply has no way back)", client: "tlan", src: "192.168.50.10", dst: "198.18.97.2:80", iif: "eth0", verdict: trace.LegForward},
	})
}
