package conntrack

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"roundtrip/engine/inet"
)

// TestEntryJSONAndEcho checks what the console and the correlation code rely on without the
// kernel: an entry survives JSON (status bits as names), an ICMP echo request's tuple
// reversed is its reply's, and ports show only for protocols that have them.
func TestEntryJSONAndEcho(t *testing.T) {
	e := Entry{ID: 7, Family: inet.V4,
		Orig:   Tuple{Proto: 6, Src: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("192.0.2.1:80")},
		Reply:  Tuple{Proto: 6, Src: netip.MustParseAddrPort("10.0.1.5:8080"), Dst: netip.MustParseAddrPort("10.0.0.1:40000")},
		Status: StatusSeenReply | StatusAssured | StatusDstNAT, TCPState: "ESTABLISHED", Mark: 3}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var back Entry
	if err := json.Unmarshal(b, &back); err != nil || back != e {
		t.Fatalf("JSON round trip: %+v, %v\n%s", back, err, b)
	}
	if want := `"status":"SEEN_REPLY|ASSURED|DST_NAT"`; !json.Valid(b) || !strings.Contains(string(b), want) {
		t.Errorf("JSON %s lacks %s", b, want)
	}
	if !e.DNAT() || e.SNAT() || e.Unreplied() {
		t.Errorf("DNAT %v SNAT %v unreplied %v", e.DNAT(), e.SNAT(), e.Unreplied())
	}

	reqS, reqD := ICMPEchoPorts(8, 0x1234, false)
	repS, repD := ICMPEchoPorts(0, 0x1234, false)
	a, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.0.2.1")
	req := Tuple{Proto: 1, Src: netip.AddrPortFrom(a, reqS), Dst: netip.AddrPortFrom(c, reqD)}
	rep := Tuple{Proto: 1, Src: netip.AddrPortFrom(c, repS), Dst: netip.AddrPortFrom(a, repD)}
	if req.Reverse() != rep {
		t.Errorf("echo request %v reversed is %v, the reply is %v", req, req.Reverse(), rep)
	}
	if s, d := ICMPEchoPorts(3, 0x1234, false); s != 0 || d != 0 {
		t.Errorf("an unreachable has ports %d, %d", s, d)
	}
	if got := req.String(); got != "icmp 10.0.0.1 -> 192.0.2.1" {
		t.Errorf("echo tuple prints %q", got)
	}
	if got := e.Orig.String(); got != "tcp 10.0.0.1:40000 -> 192.0.2.1:80" {
		t.Errorf("tcp tuple prints %q", got)
	}
}
