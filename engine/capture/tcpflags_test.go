package capture

import "testing"

func TestTCPFlagsRoundTrip(t *testing.T) {
	for f := 0; f < 0x20; f++ {
		s := string(AppendTCPFlags(nil, uint8(f)))
		if got := ParseTCPFlags(s); got != uint8(f) {
			t.Errorf("flags %#x written %q read back as %#x", f, s, got)
		}
	}
	if s := string(AppendTCPFlags(nil, TCPSYN|TCPACK)); s != "S." {
		t.Errorf("SYN-ACK written %q, want tcpdump's S.", s)
	}
	if s := string(AppendTCPFlags(nil, 0)); s != "none" {
		t.Errorf("no flags written %q, want none", s)
	}
}
