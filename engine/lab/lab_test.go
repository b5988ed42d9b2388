package lab

import (
	"strings"
	"testing"
	"time"
)

// TestPrivilegedLabTwoHosts proves the lab's plumbing: two namespaces on a veth pair, an HTTP
// server in one, a Go client and curl in the other.
func TestPrivilegedLabTwoHosts(t *testing.T) {
	l := New(t)
	a, b := l.NS("a"), l.NS("b")
	l.Veth(a, "eth0", b, "eth0")
	a.Addr("eth0", "10.99.0.1/24")
	b.Addr("eth0", "10.99.0.2/24")
	b.ServeHTTP("10.99.0.2:8080", "hello from b")

	body, err := a.HTTPGet("10.99.0.2:8080", 3*time.Second)
	if err != nil || body != "hello from b" {
		t.Fatalf("HTTPGet = %q, %v; want hello from b", body, err)
	}
	if out, err := a.Curl("http://10.99.0.2:8080/", 3*time.Second); err != nil || out != "hello from b" {
		t.Fatalf("curl = %q, %v", out, err)
	}
	// Nothing listens on 8081: the client must see a refusal, not success.
	if _, err := a.Dial("10.99.0.2:8081", "", time.Second); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial to closed port: err = %v, want connection refused", err)
	}
	// The namespaces are isolated: a's address is not b's.
	if out := b.IP("-br", "addr", "show", "dev", "eth0"); !strings.Contains(out, "10.99.0.2/24") || strings.Contains(out, "10.99.0.1") {
		t.Fatalf("b's eth0 = %q", out)
	}
}

func TestPrivilegedLabBridge(t *testing.T) {
	l := New(t)
	sw, h1, h2 := l.NS("sw"), l.NS("h1"), l.NS("h2")
	l.Veth(h1, "eth0", sw, "p1")
	l.Veth(h2, "eth0", sw, "p2")
	sw.Bridge("br0", "p1", "p2")
	h1.Addr("eth0", "10.98.0.1/24")
	h2.Addr("eth0", "10.98.0.2/24")
	h2.ServeHTTP("10.98.0.2:80", "ok")
	if body, err := h1.HTTPGet("10.98.0.2:80", 3*time.Second); err != nil || body != "ok" {
		t.Fatalf("through bridge: %q, %v", body, err)
	}
}
