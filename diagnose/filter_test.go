package diagnose

import (
	"net/netip"
	"strings"
	"testing"

	"roundtrip/engine/trace"
)

// TestFlowCaptureFilter selects a traced flow: the client's port is the trace's, and with
// anyClientPort it is left out (a real client picks a new one each time); the service's port
// stays; a leg that is the request again is not added twice.
func TestFlowCaptureFilter(t *testing.T) {
	ap := netip.MustParseAddrPort
	req := trace.Request{Proto: 6, Src: ap("198.18.72.10:40000"), Dst: ap("10.72.1.2:80")}
	tr := &trace.Result{Forward: trace.Leg{Packet: trace.Packet{Src: ap("198.18.72.10:40000"), Dst: ap("10.72.1.2:80")}},
		Reply: &trace.Leg{Packet: trace.Packet{Src: ap("10.72.1.2:80"), Dst: ap("198.18.72.10:40000")}}}
	exact := FlowCaptureFilter(req, tr, false).String()
	anyPort := FlowCaptureFilter(req, tr, true).String()
	if !strings.Contains(exact, "port 40000") || strings.Contains(anyPort, "40000") || !strings.Contains(anyPort, "port 80") {
		t.Fatalf("exact %q\nany port %q", exact, anyPort)
	}
	if n := strings.Count(anyPort, " or "); n != 1 {
		t.Fatalf("the request and its own legs make %d groups, want 2 (one flow, both ways): %q", n+1, anyPort)
	}
	// After a DNAT the forward leg leaves to another address: both are selected.
	tr.Forward.Packet.Dst = ap("10.72.1.5:8080")
	if f := FlowCaptureFilter(req, tr, true).String(); !strings.Contains(f, "10.72.1.5") || !strings.Contains(f, "10.72.1.2") {
		t.Fatalf("after DNAT: %q", f)
	}
}
