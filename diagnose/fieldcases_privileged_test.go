package diagnose

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel"
	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// diagnoseLive runs Diagnose in a namespace, starts the client once it watches, and returns
// the verdict and every event.
func diagnoseLive(t *testing.T, ns string, req trace.Request, client func()) (*Verdict, []Event) {
	t.Helper()
	var mu sync.Mutex
	var evs []Event
	ready := make(chan struct{})
	var once sync.Once
	type result struct {
		v   *Verdict
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := Diagnose(context.Background(), DiagnoseOptions{
			Namespace: kernel.Namespace{Name: ns}, Request: req, Timeout: 6 * time.Second,
			Ready: func() { once.Do(func() { close(ready) }) },
		}, func(ev Event) error {
			mu.Lock()
			defer mu.Unlock()
			evs = append(evs, ev)
			return nil
		})
		done <- result{v, err}
	}()
	select {
	case <-ready:
	case r := <-done:
		t.Fatalf("diagnose ended before it watched: %v", r.err)
	}
	client()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	mu.Lock()
	defer mu.Unlock()
	return r.v, slices.Clone(evs)
}

// requireDropWatch skips a test on a kernel that reports no drop reasons, naming why.
func requireDropWatch(t *testing.T) {
	t.Helper()
	lab.Require(t)
	w, err := dropwatch.Start(context.Background(), dropwatch.Options{})
	if errors.Is(err, dropwatch.ErrUnsupported) {
		lab.SkipKernel(t, "BPF drop reasons", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
}

func kernelDropOf(evs []Event, reason string) *Finding {
	for _, ev := range evs {
		if ev.Type == EventFinding && ev.Finding.ID == FindingKernelDrop && strings.Contains(ev.Finding.Summary, ": "+reason+" (") {
			return ev.Finding
		}
	}
	return nil
}

func evidenceWith(f *Finding, prefix string) bool {
	for _, e := range f.Evidence {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

// Field case 4 (seeds/003): B does not forward. The kernel says so on the interface the
// request came in by, beside the model's forwarding-disabled; forwarded-not-seen carries the
// kernel's word too, and the verdict leads with it.
func TestPrivilegedFieldCase4KernelWord(t *testing.T) {
	requireDropWatch(t)
	n := lab.Case4(t)
	req := trace.Request{Proto: unix.IPPROTO_TCP, Src: netip.MustParseAddrPort(n.AAddr + ":0"), Dst: netip.MustParseAddrPort(n.Service), IIF: n.BIn}
	v, evs := diagnoseLive(t, n.B.Name, req, func() {
		if _, err := n.A.Dial(n.Service, n.AAddr+":40031", 1500*time.Millisecond); err == nil {
			t.Error("A reaches the business network through a B that does not forward")
		}
	})
	kd := kernelDropOf(evs, "IP_INADDRERRORS")
	if kd == nil {
		t.Fatalf("no kernel-drop of IP_INADDRERRORS; verdict %s: %s", v.Outcome, v.Summary)
	}
	word := "kernel: IP_INADDRERRORS on " + n.BIn + " in "
	if !evidenceWith(kd, word) || !evidenceWith(kd, "model: forwarding-disabled: ") {
		t.Errorf("kernel-drop evidence %q: want %q... beside the model's forwarding-disabled", kd.Evidence, word)
	}
	for _, ev := range evs {
		if ev.Type == EventFinding && ev.Finding.ID == FindingForwardedNotSeen && !evidenceWith(ev.Finding, word) {
			t.Errorf("forwarded-not-seen evidence %q: want the kernel's word", ev.Finding.Evidence)
		}
	}
	if v.Outcome != OutcomeFailed || !strings.HasPrefix(v.Summary, "the flow is broken: kernel-drop: ") {
		t.Errorf("verdict %s: %s; want it to lead with the kernel's word", v.Outcome, v.Summary)
	}
}

// captureLive runs Capture in a namespace until the client is done (and a second more),
// starting the client once the capture is ready, and returns every event.
func captureLive(t *testing.T, ns, filter string, client func()) []Event {
	t.Helper()
	f, err := kernel.ParseCaptureFilter(filter)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var evs []Event
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Capture(ctx, CaptureOptions{Namespace: kernel.Namespace{Name: ns}, Filter: f, Ready: func() { close(ready) }}, func(ev Event) error {
			mu.Lock()
			defer mu.Unlock()
			evs = append(evs, ev)
			return nil
		})
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("capture ended before it was ready: %v", err)
	}
	client()
	time.Sleep(time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(evs)
}

// Field case 5 (seeds/004) seen from the client: the backend's SYN-ACK comes from an address
// the client never spoke to; the kernel drops it for want of a socket (and resets it), and
// says so beside the correlator's reply-bypasses-nat. The model of the client does not model
// sockets and says so.
func TestPrivilegedFieldCase5KernelWord(t *testing.T) {
	requireDropWatch(t)
	n := lab.Case5(t)
	evs := captureLive(t, n.Client.Name, "tcp", func() {
		if _, err := n.Client.Dial(n.Service, n.ClientAddr+":40032", 1500*time.Millisecond); err == nil {
			t.Error("the port forward works before the fix")
		}
	})
	kd := kernelDropOf(evs, "NO_SOCKET")
	if kd == nil {
		t.Fatal("no kernel-drop of NO_SOCKET for the backend's SYN-ACK")
	}
	if !evidenceWith(kd, "kernel: NO_SOCKET on eth0 in ") || !evidenceWith(kd, "model: lets it through; it does not model sockets") ||
		len(kd.Packets) == 0 || kd.Packets[0].Src.String() != n.Backend {
		t.Errorf("kernel-drop %s, evidence %q, packets %v: want the backend's SYN-ACK with the kernel's and the model's word", kd.Summary, kd.Evidence, kd.Packets)
	}
	bypass := false
	for _, ev := range evs {
		bypass = bypass || ev.Type == EventFinding && ev.Finding.ID == FindingReplyBypassesNAT
	}
	if !bypass {
		t.Error("no reply-bypasses-nat beside the kernel's word")
	}
}
