package lab

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// This file builds field cases 2 and 3 of SCENARIOS.md in namespaces, in the style of
// scenarios.go. The addresses are the lab's own (10.73.x, 198.18.74-79.x), inside the case's
// namespaces only.

// ServeRemoteAddr runs an HTTP server inside the namespace that answers every request with the
// client's address as it sees it (ip:port), so that a test can tell which NAT and which path a
// connection took. It returns the listener's address.
func (n *NS) ServeRemoteAddr(addr string) string {
	n.lab.t.Helper()
	ln := n.Listen(addr)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.RemoteAddr)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	n.lab.t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// Case2Net is case 2 (seeds/001, a dual-WAN gateway): gateway gw with a LAN and two ISPs. The
// ISPs filter sources that are not their customer's (strict rp_filter toward gw, as BCP 38
// asks) and are joined by an interconnect, the "Internet". Port 80 of both public addresses is
// DNATed to the LAN web server by hand (-i WAN), as the seed's author did; there is no SNAT
// and no policy routing, and everything leaves by ISP A.
//
//	LAN host lan 10.73.20.50 --+                                    +-- A's client ca 198.18.76.10
//	web server web 10.73.20.100+-- br0 in "sw" -- gw lan0 10.73.20.1  |   A's server  sa 198.18.76.20
//	                                            gw wan1 198.18.74.2/30 -- ispa 198.18.74.1 --+
//	                                            gw wan2 198.18.75.2/30 -- ispb 198.18.75.1 --+
//	                                  ispa x0 198.18.78.1/30 -- ispb x0 198.18.78.2/30
//	                                  ispb: B's client cb 198.18.77.10, B's server sb 198.18.77.20
type Case2Net struct {
	Lab                      *Lab
	Switch, GW, LANHost, Web *NS
	ISPA, ISPB               *NS
	ClientA, ClientB         *NS // a client in each ISP's network
	ServerA, ServerB         *NS // a server in each ISP's network that echoes the client address
	LAN, WANA, WANB          string
	GWA, GWB                 string // the ISPs' gateway addresses
	PublicA, PublicB         string // gw's addresses at each ISP
	LANNet, LANAddr          string // "10.73.20.0/24", gw's LAN address
	LANHostAddr, WebAddr     string
	NetA, NetB               string // the ISPs' customer networks (B's is B's destination list)
	ServerAAddr, ServerBAddr string // host:port of the echo servers
	ClientAAddr, ClientBAddr string
	Body                     string // what the web server answers
}

// Case2 builds case 2 in its broken state.
func Case2(t testing.TB) *Case2Net {
	t.Helper()
	return Case2In(New(t))
}

// Case2In builds case 2 in the lab l (one made with NewPrefixed, say).
func Case2In(l *Lab) *Case2Net {
	l.t.Helper()
	c := &Case2Net{Lab: l, LAN: "lan0", WANA: "wan1", WANB: "wan2", GWA: "198.18.74.1", GWB: "198.18.75.1",
		PublicA: "198.18.74.2", PublicB: "198.18.75.2", LANNet: "10.73.20.0/24", LANAddr: "10.73.20.1",
		LANHostAddr: "10.73.20.50", WebAddr: "10.73.20.100", NetA: "198.18.76.0/24", NetB: "198.18.77.0/24",
		ClientAAddr: "198.18.76.10", ClientBAddr: "198.18.77.10", Body: "lan web server"}
	c.Switch = Host(l, "sw", false)
	c.GW = Host(l, "gw", true)
	c.LANHost = Host(l, "lanhost", false)
	c.Web = Host(l, "web", false)
	c.ISPA = Host(l, "ispa", true)
	c.ISPB = Host(l, "ispb", true)
	c.ClientA = Host(l, "ca", false)
	c.ClientB = Host(l, "cb", false)
	c.ServerA = Host(l, "sa", false)
	c.ServerB = Host(l, "sb", false)

	l.Veth(c.Switch, "p-gw", c.GW, "lan0")
	l.Veth(c.Switch, "p-lan", c.LANHost, "eth0")
	l.Veth(c.Switch, "p-web", c.Web, "eth0")
	c.Switch.Bridge("br0", "p-gw", "p-lan", "p-web")
	l.Veth(c.GW, "wan1", c.ISPA, "cust")
	l.Veth(c.GW, "wan2", c.ISPB, "cust")
	l.Veth(c.ISPA, "x0", c.ISPB, "x0")
	l.Veth(c.ISPA, "c0", c.ClientA, "eth0")
	l.Veth(c.ISPA, "s0", c.ServerA, "eth0")
	l.Veth(c.ISPB, "c0", c.ClientB, "eth0")
	l.Veth(c.ISPB, "s0", c.ServerB, "eth0")

	c.GW.Addr("lan0", "10.73.20.1/24")
	c.GW.Addr("wan1", "198.18.74.2/30")
	c.GW.Addr("wan2", "198.18.75.2/30")
	c.GW.IP("route", "add", "default", "via", c.GWA)
	for _, pub := range []struct{ wan, addr string }{{"wan1", c.PublicA}, {"wan2", c.PublicB}} {
		c.GW.Run("iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-i", pub.wan, "-d", pub.addr, "-p", "tcp", "--dport", "80",
			"-j", "DNAT", "--to-destination", c.WebAddr+":80")
	}
	c.LANHost.Addr("eth0", "10.73.20.50/24")
	c.LANHost.IP("route", "add", "default", "via", c.LANAddr)
	c.Web.Addr("eth0", "10.73.20.100/24")
	c.Web.IP("route", "add", "default", "via", c.LANAddr)
	c.Web.ServeHTTP("0.0.0.0:80", c.Body)

	isp := func(ns *NS, cust, x0, clientNet, serverNet, otherX0 string, otherNets ...string) {
		ns.Addr("cust", cust)
		ns.Addr("x0", x0)
		ns.Addr("c0", clientNet)
		ns.Addr("s0", serverNet)
		for _, n := range otherNets {
			ns.IP("route", "add", n, "via", otherX0)
		}
		// BCP 38: only the customer's own addresses may come from the customer.
		ns.Sysctl("net.ipv4.conf.cust.rp_filter", "1")
	}
	isp(c.ISPA, "198.18.74.1/30", "198.18.78.1/30", "198.18.76.1/25", "198.18.76.129/25", "198.18.78.2", "198.18.75.0/30", "198.18.77.0/24")
	isp(c.ISPB, "198.18.75.1/30", "198.18.78.2/30", "198.18.77.1/25", "198.18.77.129/25", "198.18.78.1", "198.18.74.0/30", "198.18.76.0/24")
	c.ClientA.Addr("eth0", "198.18.76.10/25")
	c.ClientA.IP("route", "add", "default", "via", "198.18.76.1")
	c.ClientB.Addr("eth0", "198.18.77.10/25")
	c.ClientB.IP("route", "add", "default", "via", "198.18.77.1")
	c.ServerA.Addr("eth0", "198.18.76.200/25")
	c.ServerA.IP("route", "add", "default", "via", "198.18.76.129")
	c.ServerB.Addr("eth0", "198.18.77.200/25")
	c.ServerB.IP("route", "add", "default", "via", "198.18.77.129")
	c.ServerAAddr = c.ServerA.ServeRemoteAddr("198.18.76.200:80")
	c.ServerBAddr = c.ServerB.ServeRemoteAddr("198.18.77.200:80")
	return c
}

// Case3Net is case 3 (seeds/002, an uplink-only tunnel): client A reaches server B through a
// border that drops HTTP (a filter on relay 2's side of the underlay), with relay 1 and relay 2
// on either side. B answers A's public address directly, through the Internet, not through
// the relays. Relay 1 routes B across the underlay, where the border drops it.
//
//	client a0 10.73.30.10/24 ---- relay1 l0 10.73.30.1/24
//	client p0 198.18.79.10/26 --+  relay1 u0 10.73.31.1/24 ---- relay2 u0 10.73.31.2/24 (drops tcp/80 in)
//	                            |                              relay2 l0 198.18.79.65/26 ---- B b0 198.18.79.70/26
//	          inet c0 198.18.79.1/26, inet s0 198.18.79.129/26 ------------------------------ B b1 198.18.79.130/26
type Case3Net struct {
	Lab                                  *Lab
	Client, Relay1, Relay2, Internet, B  *NS
	ClientPublic                         string // the address the client binds, so B sees it
	Service                              string // B's web server
	Relay1LAN, Relay1Underlay            string // relay 1's interfaces
	Relay1Addr, Relay2Addr, ServerAddr   string // the underlay addresses and B's address
	Body                                 string
	Relay2Underlay, Relay2LAN, Relay2Net string
}

// Case3 builds case 3 in its broken state: HTTP from the client to B is dropped at the border.
func Case3(t testing.TB) *Case3Net {
	t.Helper()
	l := New(t)
	c := &Case3Net{Lab: l, ClientPublic: "198.18.79.10", Service: "198.18.79.70:80", Relay1LAN: "l0", Relay1Underlay: "u0",
		Relay1Addr: "10.73.31.1", Relay2Addr: "10.73.31.2", ServerAddr: "198.18.79.70", Body: "server B",
		Relay2Underlay: "u0", Relay2LAN: "l0", Relay2Net: "198.18.79.64/26"}
	c.Client = Host(l, "client", false)
	c.Relay1 = Host(l, "relay1", true)
	c.Relay2 = Host(l, "relay2", true)
	c.Internet = Host(l, "inet", true)
	c.B = Host(l, "b", false)
	l.Veth(c.Client, "a0", c.Relay1, "l0")
	l.Veth(c.Client, "p0", c.Internet, "c0")
	l.Veth(c.Relay1, "u0", c.Relay2, "u0")
	l.Veth(c.Relay2, "l0", c.B, "b0")
	l.Veth(c.Internet, "s0", c.B, "b1")

	c.Client.Addr("a0", "10.73.30.10/24")
	c.Client.Addr("p0", "198.18.79.10/26")
	c.Client.IP("route", "add", "default", "via", "198.18.79.1")
	// The seed's host route: B is reached through relay 1.
	c.Client.IP("route", "add", "198.18.79.70/32", "via", "10.73.30.1")
	c.Relay1.Addr("l0", "10.73.30.1/24")
	c.Relay1.Addr("u0", "10.73.31.1/24")
	c.Relay1.IP("route", "add", "198.18.79.64/26", "via", "10.73.31.2")
	// Where relay 1's clients' public addresses are.
	c.Relay1.IP("route", "add", "198.18.79.0/26", "via", "10.73.30.10")
	c.Relay2.Addr("u0", "10.73.31.2/24")
	c.Relay2.Addr("l0", "198.18.79.65/26")
	c.Relay2.IP("route", "add", "default", "via", "10.73.31.1")
	// The border: HTTP crossing the underlay is dropped.
	c.Relay2.Run("iptables", "-w", "-A", "FORWARD", "-i", "u0", "-p", "tcp", "--dport", "80", "-j", "DROP")
	c.Internet.Addr("c0", "198.18.79.1/26")
	c.Internet.Addr("s0", "198.18.79.129/26")
	c.B.Addr("b0", "198.18.79.70/26")
	c.B.Addr("b1", "198.18.79.130/26")
	c.B.IP("route", "add", "default", "via", "198.18.79.129")
	c.B.ServeHTTP("0.0.0.0:80", c.Body)
	return c
}

// Get fetches B's page with curl from the client's public address, as the seed's wget
// --bind-address.
func (c *Case3Net) Get(timeout time.Duration) (string, error) {
	return c.Client.Try("curl", "-sS", "--max-time", fmt.Sprintf("%.1f", timeout.Seconds()), "--interface", c.ClientPublic, "http://"+c.Service+"/")
}
