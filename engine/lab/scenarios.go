package lab

import (
	"testing"
)

// This file builds field cases 1, 4 and 5 of SCENARIOS.md in namespaces, with a real web
// server, so that any package's tests can reproduce them, diagnose them and fix them. The
// addresses are the lab's own (10.72.x, 198.18.72-73.x), inside the case's namespaces only.

// Host makes a namespace's IPv4 settings independent of the machine's: new namespaces inherit
// net.ipv4.conf.{all,default} (rp_filter included) from the initial one. Forwarding is set as
// asked.
func Host(l *Lab, short string, forward bool) *NS {
	ns := l.NS(short)
	ns.Sysctl("net.ipv4.conf.all.rp_filter", "0")
	ns.Sysctl("net.ipv4.conf.default.rp_filter", "0")
	fwd := "0"
	if forward {
		fwd = "1"
	}
	ns.Sysctl("net.ipv4.ip_forward", fwd)
	return ns
}

// Case1Net is case 1 (seeds/000, source in, source out): a web server with a LAN NIC behind a
// firewall that DNATs its port 80 to the server, and a public NIC em1 with a "national route"
// toward the client's network. A client reaching the server through the firewall times out:
// the SYN comes in on the LAN NIC, the SYN-ACK leaves by em1.
//
//	client eth0 198.18.72.10/24 -- inet (router) -- fw pub 198.18.73.2 (DNAT :80 -> 10.72.1.2:80)
//	                                  |                 fw lan 10.72.1.1/24
//	                     inet e0 192.168.72.253/30      |
//	                                  |                 |
//	                     server em1 192.168.72.254/30   server eth0 10.72.1.2/24 (default via fw)
type Case1Net struct {
	Lab                                *Lab
	Client, Internet, Firewall, Server *NS
	ClientAddr                         string // the client's address
	Service                            string // what the client dials: the firewall's public address, port 80
	ServerAddr                         string // where the server listens: its LAN address, port 80
	ServerPublicAddr                   string // em1's address
	ServerLAN, ServerPublic            string // the server's interfaces: "eth0" (LAN), "em1" (public)
	Body                               string // what the server answers
}

// Case1 builds case 1 in its broken state.
func Case1(t testing.TB) *Case1Net {
	t.Helper()
	return Case1In(New(t))
}

// Case1In builds case 1 in the lab l (one made with NewPrefixed, say).
func Case1In(l *Lab) *Case1Net {
	l.t.Helper()
	c := &Case1Net{
		Lab: l, ClientAddr: "198.18.72.10", Service: "198.18.73.2:80", ServerAddr: "10.72.1.2:80",
		ServerPublicAddr: "192.168.72.254", ServerLAN: "eth0", ServerPublic: "em1", Body: "web server C",
	}
	c.Client = Host(l, "client", false)
	c.Internet = Host(l, "inet", true)
	c.Firewall = Host(l, "fw", true)
	c.Server = Host(l, "server", false)
	l.Veth(c.Client, "eth0", c.Internet, "c0")
	l.Veth(c.Internet, "f0", c.Firewall, "pub")
	l.Veth(c.Internet, "e0", c.Server, "em1")
	l.Veth(c.Firewall, "lan", c.Server, "eth0")

	c.Client.Addr("eth0", "198.18.72.10/24")
	c.Client.IP("route", "add", "default", "via", "198.18.72.1")
	c.Internet.Addr("c0", "198.18.72.1/24")
	c.Internet.Addr("f0", "198.18.73.1/24")
	c.Internet.Addr("e0", "192.168.72.253/30")
	c.Firewall.Addr("pub", "198.18.73.2/24")
	c.Firewall.Addr("lan", "10.72.1.1/24")
	c.Firewall.IP("route", "add", "default", "via", "198.18.73.1")
	c.Firewall.Run("iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-i", "pub", "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", "10.72.1.2:80")
	c.Firewall.Run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "pub", "-s", "10.72.1.0/24", "-j", "MASQUERADE")
	c.Server.Addr("eth0", "10.72.1.2/24")
	c.Server.Addr("em1", "192.168.72.254/30")
	c.Server.IP("route", "add", "default", "via", "10.72.1.1", "dev", "eth0")
	// The "national route": the client's network is reached directly by em1.
	c.Server.IP("route", "add", "198.18.72.0/24", "via", "192.168.72.253", "dev", "em1")
	c.Server.ServeHTTP("0.0.0.0:80", c.Body)
	return c
}

// Fix applies the seed's manual fix on the server: em1 gets a routing table of its own, used
// for traffic from em1's address, and the national route goes, so replies leave by the
// interface their request came in on.
func (c *Case1Net) Fix() {
	c.Server.IP("route", "del", "198.18.72.0/24", "via", "192.168.72.253", "dev", "em1")
	c.Server.IP("route", "add", "192.168.72.252/30", "dev", "em1", "src", "192.168.72.254", "table", "100")
	c.Server.IP("route", "add", "default", "via", "192.168.72.253", "dev", "em1", "table", "100")
	c.Server.IP("rule", "add", "from", "192.168.72.254", "table", "100")
}

// Case4Net is case 4 (seeds/003, reaching another network through a neighbour): host A in the
// management network reaches the business network through B, which has a NIC in each; B does
// not forward, and the business network has no route back to the management network. D is
// also the business network's router, B's default gateway, which knows nothing of the
// management network.
//
//	A eth0 10.72.43.15/24 -- B eth1 10.72.43.101/24 | B eth0 10.72.44.63/24 -- D eth0 10.72.44.10/24
//	                                                   (default via 10.72.44.1)   and 10.72.44.1/24
type Case4Net struct {
	Lab       *Lab
	A, B, D   *NS
	AAddr     string // A's address
	Service   string // what A dials: the web server on D
	BIn, BOut string // B's interfaces: "eth1" (management side), "eth0" (business side)
	BBusiness string // B's address in the business network
	Router    string // the business network's router (D), B's default gateway
	Body      string
}

// Case4 builds case 4 in its broken state: forwarding off on B, no way back from D.
func Case4(t testing.TB) *Case4Net {
	t.Helper()
	l := New(t)
	c := &Case4Net{Lab: l, AAddr: "10.72.43.15", Service: "10.72.44.10:80", BIn: "eth1", BOut: "eth0", BBusiness: "10.72.44.63",
		Router: "10.72.44.1", Body: "business web"}
	c.A = Host(l, "a", false)
	c.B = Host(l, "b", false)
	c.D = Host(l, "d", false)
	l.Veth(c.A, "eth0", c.B, "eth1")
	l.Veth(c.B, "eth0", c.D, "eth0")
	c.A.Addr("eth0", "10.72.43.15/24")
	c.A.IP("route", "add", "10.72.44.0/24", "via", "10.72.43.101")
	c.B.Addr("eth1", "10.72.43.101/24")
	c.B.Addr("eth0", "10.72.44.63/24")
	c.B.IP("route", "add", "default", "via", "10.72.44.1", "dev", "eth0")
	c.D.Addr("eth0", "10.72.44.10/24")
	c.D.Addr("eth0", "10.72.44.1/24")
	c.D.ServeHTTP("0.0.0.0:80", c.Body)
	return c
}

// EnableForwarding turns forwarding on on B: requests now leave, replies still have no way
// back.
func (c *Case4Net) EnableForwarding() { c.B.Sysctl("net.ipv4.ip_forward", "1") }

// Fix makes the flow work: forwarding on, and SNAT on B toward the business network.
func (c *Case4Net) Fix() {
	c.EnableForwarding()
	c.B.Run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-d", "10.72.44.0/24", "-o", "eth0", "-j", "SNAT", "--to", "10.72.44.63")
}

// Case5Net is case 5 (seeds/004, one-arm port forward): on one LAN, server A forwards its port
// 81 to server B's port 80 with DNAT only. B answers the client directly from its own
// address; the client resets the unexpected SYN-ACK, and A's conntrack entry stays UNREPLIED.
//
//	client eth0 10.72.5.185/24 --+
//	A      eth0 10.72.5.34/24  --+-- br0 in namespace "lan"
//	B      eth0 10.72.5.32/24  --+
type Case5Net struct {
	Lab                      *Lab
	Switch, Client, A, B     *NS
	ClientAddr, AAddr, BAddr string
	AIface                   string // A's only interface
	Service                  string // what the client dials: A's port 81
	Backend                  string // where B listens
	Body                     string
}

// Case5 builds case 5 in its broken state: DNAT on A without SNAT.
func Case5(t testing.TB) *Case5Net {
	t.Helper()
	l := New(t)
	c := &Case5Net{Lab: l, ClientAddr: "10.72.5.185", AAddr: "10.72.5.34", BAddr: "10.72.5.32", AIface: "eth0",
		Service: "10.72.5.34:81", Backend: "10.72.5.32:80", Body: "server B"}
	c.Switch = Host(l, "lan", false)
	c.Client = Host(l, "client", false)
	c.A = Host(l, "a", true)
	c.B = Host(l, "b", false)
	l.Veth(c.Switch, "p-client", c.Client, "eth0")
	l.Veth(c.Switch, "p-a", c.A, "eth0")
	l.Veth(c.Switch, "p-b", c.B, "eth0")
	c.Switch.Bridge("br0", "p-client", "p-a", "p-b")
	c.Client.Addr("eth0", "10.72.5.185/24")
	c.A.Addr("eth0", "10.72.5.34/24")
	c.B.Addr("eth0", "10.72.5.32/24")
	c.A.Run("iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-d", "10.72.5.34", "-p", "tcp", "--dport", "81", "-j", "DNAT", "--to-destination", "10.72.5.32:80")
	c.B.ServeHTTP("0.0.0.0:80", c.Body)
	return c
}

// Fix adds the SNAT the seed ends with, so B's reply returns through A and is un-NATed.
func (c *Case5Net) Fix() {
	c.A.Run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-d", "10.72.5.32", "-p", "tcp", "--dport", "80", "-j", "SNAT", "--to-source", "10.72.5.34")
}
