package diagnose

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"roundtrip/engine/finding"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// These tests rebuild field cases 1, 4 and 5 (engine/lab's builders) and watch real clients'
// connections with a live capture on the affected host: the failure shows as its finding,
// with the interfaces and the conntrack entry as evidence, and after the seed's fix the
// connection completes with no finding.

const dialTimeout = 1500 * time.Millisecond

// liveCapture runs Capture in the background and keeps its events.
type liveCapture struct {
	mu     sync.Mutex
	events []Event
	cancel context.CancelFunc
	done   chan struct{}
	sum    *CaptureSummary
	err    error
}

func startCapture(t *testing.T, opts CaptureOptions) *liveCapture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	w := &liveCapture{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.sum, w.err = Capture(ctx, opts, func(ev Event) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.events = append(w.events, ev)
			return nil
		})
	}()
	// Capture opens its rings before it reads the host state; give it that long.
	time.Sleep(300 * time.Millisecond)
	t.Cleanup(cancel)
	return w
}

// waitFinding waits until a finding with that id has been emitted.
func (w *liveCapture) waitFinding(id string, timeout time.Duration) *Finding {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for _, ev := range w.events {
			if ev.Type == EventFinding && ev.Finding.ID == id {
				f := *ev.Finding
				w.mu.Unlock()
				return &f
			}
		}
		w.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func (w *liveCapture) stop(t *testing.T) *CaptureSummary {
	t.Helper()
	// Let the last blocks of the rings reach user space.
	time.Sleep(200 * time.Millisecond)
	w.cancel()
	<-w.done
	if w.err != nil {
		t.Fatalf("capture: %v", w.err)
	}
	return w.sum
}

func (w *liveCapture) dump() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, ev := range w.events {
		switch ev.Type {
		case EventPacket:
			fmt.Fprintf(&b, "%s [conn %d %s]\n", ev.Packet, ev.Packet.Conn, ev.Packet.Role)
		case EventFinding:
			ev.Finding.Render(&b)
		case EventConntrack:
			fmt.Fprintf(&b, "conntrack %s %s\n", ev.Conntrack.Type, &ev.Conntrack.Entry)
		case EventNotice:
			fmt.Fprintf(&b, "notice: %s\n", ev.Notice)
		}
	}
	return b.String()
}

func mustFilter(t *testing.T, expr string) *kernel.CaptureFilter {
	t.Helper()
	f, err := kernel.ParseCaptureFilter(expr)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// httpGetFrom fetches / from addr over a connection from a fixed local address, so that the
// test knows the client's port.
func httpGetFrom(ns *lab.NS, addr, from string) (string, error) {
	conn, err := ns.Dial(addr, from, dialTimeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(dialTimeout))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return "", err
	}
	resp, err := io.ReadAll(conn)
	if err != nil {
		return "", err
	}
	_, body, _ := strings.Cut(string(resp), "\r\n\r\n")
	return body, nil
}

// connOf returns the one connection of the summary whose client port is port.
func connOf(t *testing.T, sum *CaptureSummary, port uint16, log string) ConnSummary {
	t.Helper()
	var found []ConnSummary
	for _, c := range sum.Conns {
		if c.Flow.Src.Port() == port {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d connections from client port %d, want 1: %+v\n%s", len(found), port, sum.Conns, log)
	}
	return found[0]
}

func findingsOf(sum *CaptureSummary, conn int) []string {
	var ids []string
	for _, f := range sum.Findings {
		if f.Conn == conn {
			ids = append(ids, f.ID)
		}
	}
	return ids
}

func TestPrivilegedCaptureCase1AsymmetricReturn(t *testing.T) {
	n := lab.Case1(t)
	ns := kernel.Namespace{Name: n.Server.Name}

	w := startCapture(t, CaptureOptions{Namespace: ns, Filter: mustFilter(t, "tcp and port 80")})
	if _, err := httpGetFrom(n.Client, n.Service, n.ClientAddr+":40001"); err == nil {
		t.Fatal("the client reaches the server through the firewall before the fix: the failure does not reproduce")
	}
	f := w.waitFinding(FindingAsymmetricReturn, 3*time.Second)
	sum := w.stop(t)
	if f == nil {
		t.Fatalf("no asymmetric-return finding; findings %v\n%s", findingsOf(sum, 0), w.dump())
	}
	if f.Ingress != n.ServerLAN || f.Egress != n.ServerPublic || f.Severity != finding.SeverityError ||
		!strings.Contains(f.Summary, "came in on eth0 but the reply left by em1") || f.Fix.Wizard != finding.WizardSourceReturn {
		t.Errorf("finding %+v: want ingress eth0, egress em1, the source-return wizard", f)
	}
	if f.Flow.Src.String() != n.ClientAddr+":40001" || f.Flow.Dst.String() != n.ServerAddr {
		t.Errorf("finding's flow %s, want %s:40001 -> %s", f.Flow, n.ClientAddr, n.ServerAddr)
	}
	if len(f.Packets) != 2 || f.Packets[0].Iface != "eth0" || f.Packets[0].Dir != kernel.In || f.Packets[0].Flags != tcpSYN ||
		f.Packets[1].Iface != "em1" || f.Packets[1].Dir != kernel.Out || f.Packets[1].Flags != tcpSYN|tcpACK {
		t.Errorf("evidence packets %v: want the SYN in on eth0 and the SYN-ACK out by em1", f.Packets)
	}
	if sum.Kernel.KernelDrops != 0 || sum.Kernel.Received == 0 {
		t.Errorf("kernel counters %+v", sum.Kernel)
	}

	// The seed's fix: a table for em1 used by em1's address, no national route.
	n.Fix()
	w = startCapture(t, CaptureOptions{Namespace: ns, Filter: mustFilter(t, "tcp and port 40002")})
	body, err := httpGetFrom(n.Client, n.Service, n.ClientAddr+":40002")
	if err != nil || body != n.Body {
		t.Fatalf("after the fix the client gets %q, %v", body, err)
	}
	sum = w.stop(t)
	c := connOf(t, sum, 40002, w.dump())
	if !c.Completed || !slices.Contains(c.Path, "eth0 in request") || !slices.Contains(c.Path, "eth0 out reply") || slices.ContainsFunc(c.Path, func(s string) bool { return strings.HasPrefix(s, "em1") }) {
		t.Errorf("connection after the fix: %+v; want a completed handshake in and out of eth0 only\n%s", c, w.dump())
	}
	if len(sum.Findings) != 0 {
		t.Errorf("findings after the fix: %v\n%s", findingsOf(sum, c.ID), w.dump())
	}
}

func TestPrivilegedCaptureCase5ReplyNotSeen(t *testing.T) {
	n := lab.Case5(t)
	ns := kernel.Namespace{Name: n.A.Name}
	filter := mustFilter(t, "tcp and port 81 or tcp and port 80")

	w := startCapture(t, CaptureOptions{Namespace: ns, Filter: filter, ReplyWait: time.Second})
	// The client's own view: the answer comes from an address it never spoke to.
	wc := startCapture(t, CaptureOptions{Namespace: kernel.Namespace{Name: n.Client.Name}, Filter: mustFilter(t, "tcp")})
	if _, err := httpGetFrom(n.Client, n.Service, n.ClientAddr+":40005"); err == nil {
		t.Fatal("the port forward works before the fix: the failure does not reproduce")
	}
	f := w.waitFinding(FindingReplyNotSeen, 3*time.Second)
	sum := w.stop(t)
	bypass := wc.waitFinding(FindingReplyBypassesNAT, time.Second)
	wc.stop(t)
	if bypass == nil || !strings.Contains(bypass.Summary, "the reply came from "+n.Backend+" but the client "+n.ClientAddr+":40005 spoke to "+n.Service) {
		t.Errorf("on the client: finding %+v, want reply-bypasses-nat naming %s and %s\n%s", bypass, n.Backend, n.Service, wc.dump())
	}
	if f == nil {
		t.Fatalf("no reply-not-seen finding\n%s", w.dump())
	}
	if f.Conntrack == nil || !f.Conntrack.Unreplied() || !f.Conntrack.DNAT() || f.Conntrack.SNAT() ||
		f.Conntrack.Orig.Dst.String() != n.Service || f.Conntrack.Reply.Src.String() != n.Backend {
		t.Errorf("finding's conntrack entry %v: want UNREPLIED, DNAT %s -> %s, no SNAT", f.Conntrack, n.Service, n.Backend)
	}
	if f.Ingress != n.AIface || f.Egress != n.AIface || !strings.Contains(f.Summary, "same link") ||
		!strings.Contains(strings.Join(f.Evidence, "\n"), "[UNREPLIED]") || f.Fix.Wizard != finding.WizardPortForward {
		t.Errorf("finding %+v: want the backend on the same link as the client, UNREPLIED, the port-forward wizard", f)
	}
	if len(f.Packets) != 2 || f.Packets[0].Dst.String() != n.Service || f.Packets[1].Dst.String() != n.Backend || f.Packets[0].Conn != f.Packets[1].Conn {
		t.Errorf("evidence %v: want the SYN to %s in and the SYN to %s out, one connection", f.Packets, n.Service, n.Backend)
	}
	_ = sum

	n.Fix()
	w = startCapture(t, CaptureOptions{Namespace: ns, Filter: filter, ReplyWait: time.Second})
	body, err := httpGetFrom(n.Client, n.Service, n.ClientAddr+":40006")
	if err != nil || body != n.Body {
		t.Fatalf("after the fix the client gets %q, %v", body, err)
	}
	sum = w.stop(t)
	c := connOf(t, sum, 40006, w.dump())
	ct := c.Conntrack
	if !c.Completed || ct == nil || ct.Unreplied() || ct.Orig.Dst.String() != n.Service || ct.Reply.Src.String() != n.Backend || ct.Reply.Dst.Addr().String() != n.AAddr {
		t.Fatalf("connection after the fix %+v (conntrack %v): want it completed, DNAT to %s and SNAT to %s\n%s", c, ct, n.Backend, n.AAddr, w.dump())
	}
	for _, step := range []string{"eth0 in request", "eth0 out request", "eth0 in reply", "eth0 out reply"} {
		if !slices.Contains(c.Path, step) {
			t.Errorf("path %v lacks %q", c.Path, step)
		}
	}
	if ids := findingsOf(sum, c.ID); len(ids) != 0 {
		t.Errorf("findings after the fix: %v\n%s", ids, w.dump())
	}
	// Both sides of the NAT line up in one connection: the client's packets and the backend's.
	w.mu.Lock()
	var legs []string
	for _, ev := range w.events {
		if ev.Type == EventPacket && ev.Packet.Conn == c.ID {
			legs = append(legs, ev.Packet.Src.String()+">"+ev.Packet.Dst.String())
		}
	}
	w.mu.Unlock()
	for _, leg := range []string{n.ClientAddr + ":40006>" + n.Service, ct.Reply.Dst.String() + ">" + n.Backend, n.Backend + ">" + ct.Reply.Dst.String(), n.Service + ">" + n.ClientAddr + ":40006"} {
		if !slices.Contains(legs, leg) {
			t.Errorf("connection %d has no packet %s; it has %v", c.ID, leg, legs)
		}
	}
}

func TestPrivilegedCaptureCase4ForwardedNotSeen(t *testing.T) {
	n := lab.Case4(t)
	ns := kernel.Namespace{Name: n.B.Name}
	filter := mustFilter(t, "tcp and port 80")

	w := startCapture(t, CaptureOptions{Namespace: ns, Filter: filter})
	if _, err := httpGetFrom(n.A, n.Service, n.AAddr+":40004"); err == nil {
		t.Fatal("A reaches the business network before forwarding is on: the failure does not reproduce")
	}
	f := w.waitFinding(FindingForwardedNotSeen, 3*time.Second)
	w.stop(t)
	if f == nil {
		t.Fatalf("no forwarded-not-seen finding\n%s", w.dump())
	}
	if f.Cause != trace.FindingForwardingDisabled || f.Ingress != n.BIn || f.Severity != finding.SeverityError ||
		len(f.Packets) != 1 || f.Packets[0].Iface != n.BIn || f.Packets[0].Dir != kernel.In || f.Packets[0].Dst.String() != n.Service {
		t.Errorf("finding %+v: want cause forwarding-disabled, the SYN in on %s", f, n.BIn)
	}

	// Forwarding on: the request leaves, but the business network has no way back.
	n.EnableForwarding()
	w = startCapture(t, CaptureOptions{Namespace: ns, Filter: filter, ReplyWait: time.Second})
	if _, err := httpGetFrom(n.A, n.Service, n.AAddr+":40014"); err == nil {
		t.Fatal("A reaches the business network without a way back")
	}
	f = w.waitFinding(FindingReplyNotSeen, 3*time.Second)
	w.stop(t)
	if f == nil || f.Ingress != n.BIn || f.Egress != n.BOut {
		t.Fatalf("finding %+v: want reply-not-seen, in on %s, out by %s\n%s", f, n.BIn, n.BOut, w.dump())
	}

	n.Fix()
	w = startCapture(t, CaptureOptions{Namespace: ns, Filter: filter})
	if body, err := httpGetFrom(n.A, n.Service, n.AAddr+":40024"); err != nil || body != n.Body {
		t.Fatalf("after the fix A gets %q, %v", body, err)
	}
	sum := w.stop(t)
	c := connOf(t, sum, 40024, w.dump())
	if !c.Completed || c.Conntrack == nil || c.Conntrack.Reply.Dst.Addr().String() != n.BBusiness {
		t.Errorf("connection after the fix %+v: want it completed, SNATed to %s", c, n.BBusiness)
	}
	if ids := findingsOf(sum, c.ID); len(ids) != 0 {
		t.Errorf("findings after the fix: %v\n%s", ids, w.dump())
	}
}
