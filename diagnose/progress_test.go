package diagnose

import (
	"testing"

	"roundtrip/engine/capture"
)

// TestProgressCountsCompletedAndFailedConnections feeds a correlator's output to Progress as a
// capture emits it: two handshakes that finish through eth0, one answered through em1 (an
// asymmetric return: an error), and a SYN still waiting.
func TestProgressCountsCompletedAndFailedConnections(t *testing.T) {
	c := NewCorrelator(CorrelateConfig{})
	var p Progress
	emit := func(pk *Packet) {
		fs := c.Packet(pk)
		p.Observe(Event{Type: EventPacket, Packet: pk})
		for i := range fs {
			p.Observe(Event{Type: EventFinding, Finding: &fs[i]})
		}
	}
	for i, port := range []string{"40001", "40002"} {
		emit(pkt(0, "eth0", capture.In, "198.18.72.10:"+port, "10.72.1.2:80", tcpSYN))
		emit(pkt(1, "eth0", capture.Out, "10.72.1.2:80", "198.18.72.10:"+port, tcpSYN|tcpACK))
		if p.Completed() != i {
			t.Fatalf("handshake %d counts before its ACK: %d completed", i+1, p.Completed())
		}
		emit(pkt(2, "eth0", capture.In, "198.18.72.10:"+port, "10.72.1.2:80", tcpACK))
	}
	if p.Completed() != 2 || p.Failed() != 0 || !p.TCP() {
		t.Fatalf("after two handshakes: completed %d failed %d", p.Completed(), p.Failed())
	}
	emit(pkt(3, "eth0", capture.In, "198.18.72.10:40003", "10.72.1.2:80", tcpSYN))
	emit(pkt(4, "em1", capture.Out, "10.72.1.2:80", "198.18.72.10:40003", tcpSYN|tcpACK))
	emit(pkt(5, "eth0", capture.In, "198.18.72.10:40004", "10.72.1.2:80", tcpSYN))
	if p.Completed() != 2 || p.Failed() != 1 {
		t.Fatalf("with an asymmetric return and a waiting SYN: completed %d failed %d", p.Completed(), p.Failed())
	}
}
