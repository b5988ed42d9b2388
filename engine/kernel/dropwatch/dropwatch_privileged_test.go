package dropwatch_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/kernel/dropwatch/dwtest"
	"roundtrip/engine/lab"
)

func tcpFlow(dst netip.AddrPort) dropwatch.Flow {
	return dropwatch.Flow{Proto: unix.IPPROTO_TCP, Dst: dst.Addr(), DstPort: dst.Port()}
}

// expect checks a drop's reason, interface and location.
func expect(t *testing.T, d dropwatch.Drop, reason, iface string) {
	t.Helper()
	if d.Reason != reason || d.Iface != iface {
		t.Fatalf("drop = %s on %q; want %s on %q", d.Reason, d.Iface, reason, iface)
	}
	if d.Location.Symbol == "" {
		t.Errorf("drop location %s not resolved to a kernel symbol", d.Location)
	}
	if dropwatch.Describe(d.Reason) == "" {
		t.Errorf("no words for %s", d.Reason)
	}
}

// Strict reverse-path filtering: the client sends from its LAN address through a second link
// whose subnet does not route back to it; the router drops the SYN on that link.
func TestPrivilegedDropRPFilter(t *testing.T) {
	n := dwtest.NewNet(t)
	n.Lab.Veth(n.Client, "alt", n.Router, "alt")
	n.Client.Addr("alt", "10.71.4.2/24")
	n.Router.Addr("alt", "10.71.4.1/24")
	// ARP from the alt address, so the router answers it; the TCP source stays 10.71.1.2.
	n.Client.Sysctl("net.ipv4.conf.all.arp_announce", "2")
	n.Router.Sysctl("net.ipv4.conf.all.rp_filter", "1")
	n.Router.Sysctl("net.ipv4.conf.alt.rp_filter", "1")
	dst := netip.MustParseAddrPort("10.71.4.1:80")
	n.Router.Listen(dst.String())
	w := dwtest.Watch(t, n.Router, tcpFlow(dst))

	if err := dwtest.DialTCP(n.Client, dst, dwtest.ClientAddr.String()+":0", time.Second); err == nil {
		t.Fatal("the client connected through the wrong interface despite strict rp_filter")
	}
	d, _ := dwtest.WaitDrop(t, w, "SYN to "+dst.String(), dwtest.To(dst))
	expect(t, d, "IP_RPFILTER", "alt")
	if d.Packet.Proto != unix.IPPROTO_TCP || d.Packet.Src.Addr() != dwtest.ClientAddr || d.Packet.Flags&0x02 == 0 {
		t.Errorf("packet = %s; want the client's SYN from %s", d.Packet, dwtest.ClientAddr)
	}
	if d.NetnsInode != w.NetnsInode() || d.Netns != n.Router.Name {
		t.Errorf("drop in namespace %d (%q); want the router's %d (%q)", d.NetnsInode, d.Netns, w.NetnsInode(), n.Router.Name)
	}
}

// A route of type unreachable on the router. Linux 6.18 gives no specific reason here:
// ip_error frees the packet with NOT_SPECIFIED for EHOSTUNREACH (only ENETUNREACH, a missing
// route, is IP_INNOROUTES), so the location is what tells; Words says so.
func TestPrivilegedDropUnreachableRoute(t *testing.T) {
	n := dwtest.NewNet(t)
	n.Router.IP("route", "add", "unreachable", "10.71.9.0/24")
	dst := netip.MustParseAddrPort("10.71.9.9:80")
	w := dwtest.Watch(t, n.Router, tcpFlow(dst))
	if err := dwtest.DialTCP(n.Client, dst, "", time.Second); err == nil {
		t.Fatal("the client connected through an unreachable route")
	}
	d, _ := dwtest.WaitDrop(t, w, "SYN to "+dst.String(), dwtest.To(dst))
	expect(t, d, "NOT_SPECIFIED", "lan")
	if d.Location.Symbol != "ip_error" {
		t.Errorf("location = %s; want ip_error", d.Location)
	}
	if w := d.Words; !strings.Contains(w, "route") {
		t.Errorf("words for NOT_SPECIFIED in ip_error = %q; want them to name the route", w)
	}
}

// Forwarding turned off on the router.
func TestPrivilegedDropForwardingOff(t *testing.T) {
	n := dwtest.NewNet(t)
	n.Router.Sysctl("net.ipv4.ip_forward", "0")
	dst := netip.AddrPortFrom(dwtest.ServerAddr, 80)
	n.Server.Listen(dst.String())
	w := dwtest.Watch(t, n.Router, tcpFlow(dst))
	if err := dwtest.DialTCP(n.Client, dst, "", time.Second); err == nil {
		t.Fatal("the client connected through a router that does not forward")
	}
	d, _ := dwtest.WaitDrop(t, w, "SYN to "+dst.String(), dwtest.To(dst))
	expect(t, d, "IP_INADDRERRORS", "lan")
}

// A gateway that never answers ARP: the router queues the packet and drops it when
// resolution fails.
func TestPrivilegedDropNeighFailed(t *testing.T) {
	n := dwtest.NewNet(t)
	n.Router.IP("route", "add", "10.71.8.0/24", "via", "10.71.2.99")
	// Give up after one ARP request, 100 ms later, rather than three seconds.
	n.Router.Sysctl("net.ipv4.neigh.wan.mcast_solicit", "1")
	n.Router.Sysctl("net.ipv4.neigh.wan.retrans_time_ms", "100")
	dst := netip.MustParseAddrPort("10.71.8.8:53")
	w := dwtest.Watch(t, n.Router, dropwatch.Flow{Proto: unix.IPPROTO_UDP, Dst: dst.Addr(), DstPort: dst.Port()})
	if err := dwtest.SendUDP(n.Client, dst); err != nil {
		t.Fatal(err)
	}
	d, _ := dwtest.WaitDrop(t, w, "datagram to "+dst.String(), dwtest.To(dst))
	expect(t, d, "NEIGH_FAILED", "wan")
}

// A closed port on the server: the SYN finds no socket.
func TestPrivilegedDropClosedPort(t *testing.T) {
	n := dwtest.NewNet(t)
	dst := netip.AddrPortFrom(dwtest.ServerAddr, 81)
	w := dwtest.Watch(t, n.Server, tcpFlow(dst))
	if err := dwtest.DialTCP(n.Client, dst, "", 3*time.Second); err == nil {
		t.Fatal("the client connected to a closed port")
	}
	d, _ := dwtest.WaitDrop(t, w, "SYN to "+dst.String(), dwtest.To(dst))
	expect(t, d, "NO_SOCKET", "eth0")
}

// Drops in another namespace are not reported: the server's closed port drops a SYN first,
// then the router's; only the router's arrives, and the ring keeps the kernel's order.
func TestPrivilegedDropFilterNamespace(t *testing.T) {
	n := dwtest.NewNet(t)
	w := dwtest.Watch(t, n.Router) // every drop in the router, any flow
	if err := dwtest.DialTCP(n.Client, netip.AddrPortFrom(dwtest.ServerAddr, 81), "", 3*time.Second); err == nil {
		t.Fatal("the client connected to the server's closed port")
	}
	routerPort := netip.AddrPortFrom(dwtest.RouterLAN, 82)
	if err := dwtest.DialTCP(n.Client, routerPort, "", 3*time.Second); err == nil {
		t.Fatal("the client connected to the router's closed port")
	}
	d, before := dwtest.WaitDrop(t, w, "SYN to the router's closed port", dwtest.To(routerPort))
	expect(t, d, "NO_SOCKET", "lan")
	for _, b := range before {
		if b.Packet.Dst.Addr() == dwtest.ServerAddr || b.NetnsInode != w.NetnsInode() {
			t.Errorf("reported a drop outside the router's namespace: %s", b)
		}
	}
}

// Only the watched flows are reported, in both directions, and flows added later count.
func TestPrivilegedDropFilterFlows(t *testing.T) {
	n := dwtest.NewNet(t)
	port := func(p uint16) netip.AddrPort { return netip.AddrPortFrom(dwtest.ServerAddr, p) }
	// The flow is given from the server's side: the client's SYN matches it reversed.
	w := dwtest.Watch(t, n.Server, dropwatch.Flow{Proto: unix.IPPROTO_TCP, Src: dwtest.ServerAddr, SrcPort: 83, Dst: dwtest.ClientAddr})
	for _, p := range []uint16{84, 83} {
		if err := dwtest.DialTCP(n.Client, port(p), "", 3*time.Second); err == nil {
			t.Fatalf("the client connected to closed port %d", p)
		}
	}
	d, before := dwtest.WaitDrop(t, w, "SYN to port 83", dwtest.To(port(83)))
	expect(t, d, "NO_SOCKET", "eth0")
	if len(before) != 0 {
		t.Errorf("reported drops of unwatched flows: %s", dwtest.List(before))
	}

	// A flow with a wildcard source added while running: any client, UDP to port 85.
	if err := w.AddFlow(dropwatch.Flow{Proto: unix.IPPROTO_UDP, Dst: dwtest.ServerAddr, DstPort: 85}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []uint16{86, 85} {
		if err := dwtest.SendUDP(n.Client, port(p)); err != nil {
			t.Fatal(err)
		}
	}
	d, before = dwtest.WaitDrop(t, w, "datagram to port 85", dwtest.To(port(85)))
	expect(t, d, "NO_SOCKET", "eth0")
	if d.Packet.Proto != unix.IPPROTO_UDP || len(before) != 0 {
		t.Errorf("got %s after %s; want only the UDP datagram to port 85", d.Packet, dwtest.List(before))
	}
}

// IPv6: the headers are read and the flow matched for IPv6 too.
func TestPrivilegedDropIPv6(t *testing.T) {
	n := dwtest.NewNet(t)
	// The links exist already: DAD off on each, so the addresses work at once.
	for _, l := range []struct {
		ns    *lab.NS
		iface string
	}{{n.Client, "eth0"}, {n.Router, "lan"}, {n.Router, "wan"}, {n.Server, "eth0"}} {
		l.ns.Sysctl("net.ipv6.conf."+l.iface+".accept_dad", "0")
	}
	n.Client.Addr("eth0", "fd71:1::2/64")
	n.Router.Addr("lan", "fd71:1::1/64")
	n.Router.Addr("wan", "fd71:2::1/64")
	n.Server.Addr("eth0", "fd71:2::2/64")
	n.Client.IP("-6", "route", "add", "default", "via", "fd71:1::1")
	n.Server.IP("-6", "route", "add", "default", "via", "fd71:2::1")
	n.Router.Sysctl("net.ipv6.conf.all.forwarding", "1")
	dst := netip.MustParseAddrPort("[fd71:2::2]:87")
	w := dwtest.Watch(t, n.Server, tcpFlow(dst))
	if err := dwtest.DialTCP(n.Client, dst, "", 3*time.Second); err == nil {
		t.Fatal("the client connected to a closed port")
	}
	d, _ := dwtest.WaitDrop(t, w, "SYN to "+dst.String(), dwtest.To(dst))
	expect(t, d, "NO_SOCKET", "eth0")
	if d.Packet.L3 != "ipv6" || d.Packet.Src.Addr() != netip.MustParseAddr("fd71:1::2") {
		t.Errorf("packet = %s; want IPv6 from fd71:1::2", d.Packet)
	}
}

// The watcher stops when its context ends: Events is closed and AddFlow refuses.
func TestPrivilegedDropContextEnds(t *testing.T) {
	n := dwtest.NewNet(t)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := dropwatch.Start(ctx, dropwatch.Options{Netns: n.Router.Name})
	if errors.Is(err, dropwatch.ErrUnsupported) {
		t.Skipf("privileged test: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cancel()
	for range w.Events() {
	}
	if err := w.AddFlow(dropwatch.Flow{Proto: unix.IPPROTO_UDP}); err == nil {
		t.Error("AddFlow after the context ended succeeded")
	}
	if err := w.Err(); err != nil {
		t.Errorf("Err after the context ended = %v; want nil (a normal stop)", err)
	}
}
