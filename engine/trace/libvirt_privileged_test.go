package trace_test

import (
	"testing"

	"roundtrip/engine/trace"
)

// libvirtRules is the layout libvirt (5.1 and later, iptables backend) writes for its default
// NAT network virbr0 (192.168.122.0/24), as its network driver writes it
// (src/network/bridge_driver_linux.c, src/util/viriptables.c) and libvirt.org's "Firewall and
// network filtering" page describes it: LIBVIRT_* chains, MASQUERADE --to-ports 1024-65535
// for TCP and UDP, guests reachable only by connections they opened, DNS and DHCP to the host.
const libvirtRules = `*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:LIBVIRT_PRT - [0:0]
-A POSTROUTING -j LIBVIRT_PRT
-A LIBVIRT_PRT -o virbr0 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:LIBVIRT_PRT - [0:0]
-A POSTROUTING -j LIBVIRT_PRT
-A LIBVIRT_PRT -s 192.168.122.0/24 -d 224.0.0.0/24 -j RETURN
-A LIBVIRT_PRT -s 192.168.122.0/24 -d 255.255.255.255/32 -j RETURN
-A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -p tcp -j MASQUERADE --to-ports 1024-65535
-A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -p udp -j MASQUERADE --to-ports 1024-65535
-A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:LIBVIRT_FWI - [0:0]
:LIBVIRT_FWO - [0:0]
:LIBVIRT_FWX - [0:0]
:LIBVIRT_INP - [0:0]
:LIBVIRT_OUT - [0:0]
-A INPUT -j LIBVIRT_INP
-A FORWARD -j LIBVIRT_FWX
-A FORWARD -j LIBVIRT_FWI
-A FORWARD -j LIBVIRT_FWO
-A OUTPUT -j LIBVIRT_OUT
-A LIBVIRT_FWI -d 192.168.122.0/24 -o virbr0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A LIBVIRT_FWI -o virbr0 -j REJECT --reject-with icmp-port-unreachable
-A LIBVIRT_FWO -s 192.168.122.0/24 -i virbr0 -j ACCEPT
-A LIBVIRT_FWO -i virbr0 -j REJECT --reject-with icmp-port-unreachable
-A LIBVIRT_FWX -i virbr0 -o virbr0 -j ACCEPT
-A LIBVIRT_INP -i virbr0 -p udp -m udp --dport 53 -j ACCEPT
-A LIBVIRT_INP -i virbr0 -p tcp -m tcp --dport 53 -j ACCEPT
-A LIBVIRT_INP -i virbr0 -p udp -m udp --dport 67 -j ACCEPT
-A LIBVIRT_INP -i virbr0 -p tcp -m tcp --dport 67 -j ACCEPT
-A LIBVIRT_OUT -o virbr0 -p udp -m udp --dport 53 -j ACCEPT
-A LIBVIRT_OUT -o virbr0 -p tcp -m tcp --dport 53 -j ACCEPT
-A LIBVIRT_OUT -o virbr0 -p udp -m udp --dport 68 -j ACCEPT
-A LIBVIRT_OUT -o virbr0 -p tcp -m tcp --dport 68 -j ACCEPT
COMMIT
`

// A libvirt host (br_netfilter off, as without Docker) with two guests on virbr0 and a host
// outside: every flow's kernel decisions against trace's (realworld_test.go).
func TestPrivilegedLibvirtHost(t *testing.T) {
	t.Parallel()
	h := newRealWorld(t, "virt", true)
	vm1 := h.peer("vm1", "vnet0", "192.168.122.10/24", "192.168.122.1")
	vm2 := h.peer("vm2", "vnet1", "192.168.122.11/24", "192.168.122.1")
	out := h.peer("out", "eth0", "198.18.92.2/24", "")
	out.IP("route", "add", "192.168.122.0/24", "via", "198.18.92.1")
	vm1.Addr("eth0", "10.9.9.9/32") // a source the guest network does not own
	h.host.Bridge("virbr0", "vnet0", "vnet1")
	h.host.Addr("virbr0", "192.168.122.1/24")
	h.host.Addr("eth0", "198.18.92.1/24")
	h.host.IP("route", "add", "default", "via", "198.18.92.2")
	(&podNode{node: h.host}).brNetfilter(t, false)
	out.Listen("0.0.0.0:80")
	vm2.Listen("0.0.0.0:22")
	h.host.Listen("0.0.0.0:53") // dnsmasq
	h.host.Listen("0.0.0.0:22")
	udpEcho(t, h.host, "0.0.0.0:53")
	udpEcho(t, out, "0.0.0.0:5000")
	h.load(libvirtRules)

	h.run([]rwFlow{
		{name: "guest to outside", client: "vm1", src: "192.168.122.10", dst: "198.18.92.2:80", iif: "vnet0", verdict: trace.LegForward},
		{name: "guest to outside from a privileged port", client: "vm1", src: "192.168.122.10", dst: "198.18.92.2:80", iif: "vnet0", verdict: trace.LegForward, port: 700},
		{name: "guest to outside over UDP", client: "vm1", src: "192.168.122.10", dst: "198.18.92.2:5000", iif: "vnet0", verdict: trace.LegForward, udp: true},
		{name: "guest to outside over UDP from a privileged port", client: "vm1", src: "192.168.122.10", dst: "198.18.92.2:5000", iif: "vnet0", verdict: trace.LegForward, udp: true, port: 600},
		{name: "guest to dnsmasq over UDP", client: "vm2", src: "192.168.122.11", dst: "192.168.122.1:53", iif: "vnet1", verdict: trace.LegLocal, udp: true},
		{name: "guest to guest", client: "vm1", src: "192.168.122.10", dst: "192.168.122.11:22", iif: "vnet0", verdict: trace.LegBridged},
		{name: "outside to a guest", client: "out", src: "198.18.92.2", dst: "192.168.122.11:22", iif: "eth0", verdict: trace.LegReject},
		{name: "guest to dnsmasq", client: "vm2", src: "192.168.122.11", dst: "192.168.122.1:53", iif: "vnet1", verdict: trace.LegLocal},
		{name: "guest to the host's ssh", client: "vm2", src: "192.168.122.11", dst: "192.168.122.1:22", iif: "vnet1", verdict: trace.LegLocal},
		{name: "guest to the host's outside address", client: "vm1", src: "192.168.122.10", dst: "198.18.92.1:22", iif: "vnet0", verdict: trace.LegLocal},
		{name: "outside to the host", client: "out", src: "198.18.92.2", dst: "198.18.92.1:22", iif: "eth0", verdict: trace.LegLocal},
		{name: "outside to virbr0's address", client: "out", src: "198.18.92.2", dst: "192.168.122.1:22", iif: "eth0", verdict: trace.LegLocal},
		{name: "host to a guest", client: "host", src: "192.168.122.1", dst: "192.168.122.11:22", verdict: trace.LegOutput},
		{name: "guest with a foreign source address", client: "vm1", src: "10.9.9.9", dst: "198.18.92.2:80", iif: "vnet0", verdict: trace.LegReject},
		{name: "outside to a guest's closed port", client: "out", src: "198.18.92.2", dst: "192.168.122.10:22", iif: "eth0", verdict: trace.LegReject},
	})
}
