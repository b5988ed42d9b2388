// Package dwtest holds the lab network and helpers shared by the privileged tests of the
// drop watcher and the rule tracer.
package dwtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/lab"
)

// Addresses of Net.
var (
	ClientAddr = netip.MustParseAddr("10.71.1.2")
	RouterLAN  = netip.MustParseAddr("10.71.1.1")
	RouterWAN  = netip.MustParseAddr("10.71.2.1")
	ServerAddr = netip.MustParseAddr("10.71.2.2")
)

// Net is a client, a router and a server in their own namespaces:
//
//	client eth0 10.71.1.2 -- lan 10.71.1.1 [router] wan 10.71.2.1 -- eth0 10.71.2.2 server
//
// The router forwards; client and server route everything through it.
type Net struct {
	Lab                    *lab.Lab
	Client, Router, Server *lab.NS
}

// NewNet builds the network.
func NewNet(t testing.TB) *Net {
	t.Helper()
	l := lab.New(t)
	n := &Net{Lab: l, Client: l.NS("cli"), Router: l.NS("rtr"), Server: l.NS("srv")}
	l.Veth(n.Client, "eth0", n.Router, "lan")
	l.Veth(n.Router, "wan", n.Server, "eth0")
	n.Client.Addr("eth0", ClientAddr.String()+"/24")
	n.Router.Addr("lan", RouterLAN.String()+"/24")
	n.Router.Addr("wan", RouterWAN.String()+"/24")
	n.Server.Addr("eth0", ServerAddr.String()+"/24")
	n.Client.IP("route", "add", "default", "via", RouterLAN.String())
	n.Server.IP("route", "add", "default", "via", RouterWAN.String())
	n.Router.Sysctl("net.ipv4.ip_forward", "1")
	return n
}

// Watch starts a drop watcher on the namespace for the flows, closed when the test ends. It
// skips the test where the kernel cannot watch drops, saying why.
func Watch(t testing.TB, ns *lab.NS, flows ...dropwatch.Flow) *dropwatch.Watcher {
	t.Helper()
	w, err := dropwatch.Start(context.Background(), dropwatch.Options{Netns: ns.Name, Flows: flows})
	if errors.Is(err, dropwatch.ErrUnsupported) {
		t.Skipf("privileged test: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// Wait returns the first event that satisfies match, failing the test (listing every event
// seen) when none comes within 15 seconds or the source stops (err says why). The events
// seen before it are returned too.
func Wait[T fmt.Stringer](t testing.TB, events <-chan T, err func() error, what string, match func(T) bool) (T, []T) {
	t.Helper()
	var seen []T
	deadline := time.After(15 * time.Second)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("waiting for %s: the events stopped: %v; seen: %s", what, err(), List(seen))
			}
			t.Logf("%T: %s", e, e)
			if match(e) {
				return e, seen
			}
			seen = append(seen, e)
		case <-deadline:
			t.Fatalf("no %s reported within 15s; seen: %s", what, List(seen))
		}
	}
}

// WaitDrop waits for a drop as Wait does.
func WaitDrop(t testing.TB, w *dropwatch.Watcher, what string, match func(dropwatch.Drop) bool) (dropwatch.Drop, []dropwatch.Drop) {
	t.Helper()
	return Wait(t, w.Events(), w.Err, "drop of "+what, match)
}

// List writes events for a failure message.
func List[T fmt.Stringer](es []T) string {
	if len(es) == 0 {
		return "none"
	}
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "\n\t%s", e)
	}
	return b.String()
}

// PacketTo is a match for a packet to dst (any protocol, any source; any port for port 0).
func PacketTo(p dropwatch.Packet, dst netip.AddrPort) bool {
	return p.Dst.Addr() == dst.Addr() && (dst.Port() == 0 || p.Dst.Port() == dst.Port())
}

// To is a match for a drop of a packet to dst (any protocol, any source).
func To(dst netip.AddrPort) func(dropwatch.Drop) bool {
	return func(d dropwatch.Drop) bool { return PacketTo(d.Packet, dst) }
}

// DialTCP connects from the namespace to dst with a Go dialer and returns the error (the
// connection, if any, is closed): the real client whose packets the kernel drops.
func DialTCP(ns *lab.NS, dst netip.AddrPort, from string, timeout time.Duration) error {
	c, err := ns.Dial(dst.String(), from, timeout)
	if err == nil {
		c.Close()
	}
	return err
}

// SendUDP sends one datagram from the namespace to dst.
func SendUDP(ns *lab.NS, dst netip.AddrPort) error {
	return ns.Do(func() error {
		c, err := net.Dial("udp4", dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("roundtrip dropwatch test"))
		return err
	})
}

// RunAsNobody runs a copy of the test binary as the unprivileged user nobody (65534) with
// the extra environment, and returns its output: for a TestMain that acts as a small program
// when an environment variable says so.
func RunAsNobody(t testing.TB, env ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "roundtrip-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The temporary directory is private (0700): nobody could not run what is inside.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, filepath.Base(self))
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("running the test binary as nobody: %v: %s", err, b)
	}
	return string(b)
}
