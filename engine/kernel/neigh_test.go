package kernel_test

import (
	"net/netip"
	"testing"
	"time"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
)

// TestPrivilegedReadNeighbours fills a namespace's neighbour table by talking to its peer and
// by a permanent entry, and reads both back with their devices and states.
func TestPrivilegedReadNeighbours(t *testing.T) {
	l := lab.New(t)
	a, b := l.NS("a"), l.NS("b")
	l.Veth(a, "eth0", b, "eth0")
	a.Addr("eth0", "10.98.0.1/24")
	b.Addr("eth0", "10.98.0.2/24")
	a.IP("neigh", "add", "10.98.0.9", "lladdr", "02:00:00:00:00:09", "dev", "eth0", "nud", "permanent")
	b.ServeHTTP("10.98.0.2:8080", "hi")
	if _, err := a.HTTPGet("10.98.0.2:8080", 3*time.Second); err != nil {
		t.Fatalf("talking to b: %v", err)
	}
	ns, err := kernel.ReadNeighbours(kernel.Namespace{Name: a.Name})
	if err != nil {
		t.Fatal(err)
	}
	found := map[netip.Addr]kernel.Neighbour{}
	for _, n := range ns {
		found[n.Addr] = n
	}
	peer, ok := found[netip.MustParseAddr("10.98.0.2")]
	if !ok || peer.Dev != "eth0" || !peer.Usable() || peer.MAC == "" {
		t.Fatalf("the peer is not listed as a usable neighbour on eth0: %+v (all: %+v)", peer, ns)
	}
	perm := found[netip.MustParseAddr("10.98.0.9")]
	if perm.State != "permanent" || perm.MAC != "02:00:00:00:00:09" {
		t.Fatalf("the permanent entry reads as %+v", perm)
	}
	if _, ok := found[netip.MustParseAddr("10.98.0.1")]; ok {
		t.Fatal("the namespace's own address is listed as a neighbour")
	}
}
