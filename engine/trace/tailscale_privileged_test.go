package trace_test

import (
	"fmt"
	"testing"

	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// tailscaleRules is the layout tailscaled (1.5x, iptables mode) writes on a subnet router:
// ts-input drops CGNAT-range sources that do not come from tailscale0, ts-forward marks what
// comes from the tailnet (0x40000/0xff0000) and accepts it, ts-postrouting MASQUERADEs what
// carries the mark. Here tailscale0 is a veth standing in for the TUN device (the rules match
// its name only).
const tailscaleRules = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ts-forward - [0:0]
:ts-input - [0:0]
-A INPUT -j ts-input
-A FORWARD -j ts-forward
-A ts-forward -i tailscale0 -j MARK --set-xmark 0x40000/0xff0000
-A ts-forward -m mark --mark 0x40000/0xff0000 -j ACCEPT
-A ts-forward -s 100.64.0.0/10 -o tailscale0 -j DROP
-A ts-forward -o tailscale0 -j ACCEPT
-A ts-input -s 100.100.1.1/32 -i lo -j ACCEPT
-A ts-input -s 100.115.92.0/23 ! -i tailscale0 -j RETURN
-A ts-input -s 100.64.0.0/10 ! -i tailscale0 -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:ts-postrouting - [0:0]
-A POSTROUTING -j ts-postrouting
-A ts-postrouting -m mark --mark 0x40000/0xff0000 -j MASQUERADE
COMMIT
`

// A Tailscale subnet router between the tailnet and a LAN: a tailnet peer reaches a LAN host
// masqueraded, a LAN host reaches the peer unmasqueraded, and CGNAT-range sources from the LAN
// are dropped; client results, conntrack and trace agree.
func TestPrivilegedTailscaleSubnetRouter(t *testing.T) {
	l := lab.New(t)
	router := lab.Host(l, "hbr-ts", true)
	peer, lan := lab.Host(l, "hbr-tpeer", false), lab.Host(l, "hbr-tlan", false)
	l.Veth(peer, "eth0", router, "tailscale0")
	l.Veth(lan, "eth0", router, "eth0")
	router.Addr("tailscale0", "100.100.1.1/32")
	router.IP("route", "add", "100.100.1.2/32", "dev", "tailscale0")
	router.Addr("eth0", "192.168.50.1/24")
	peer.Addr("eth0", "100.100.1.2/32")
	peer.IP("route", "add", "100.100.1.1/32", "dev", "eth0")
	peer.IP("route", "add", "192.168.50.0/24", "via", "100.100.1.1", "dev", "eth0", "onlink")
	lan.Addr("eth0", "192.168.50.10/24")
	lan.Addr("eth0", "100.70.0.9/32") // a CGNAT-range source on the LAN side
	lan.IP("route", "add", "100.100.1.2/32", "via", "192.168.50.1")
	router.Run("sh", "-c", `printf '%s' "$1" | iptables-restore`, "sh", tailscaleRules)
	lan.Listen("0.0.0.0:80")
	peer.Listen("0.0.0.0:80")
	router.Listen("0.0.0.0:22")
	st := readState(t, router)
	checkDoctor(t, st)

	for i, c := range []struct {
		name, src, dst, iif string
		client              *lab.NS
		verdict             string
		snat                string // the source conntrack expects the reply at, "" without SNAT
	}{
		{"tailnet peer to a LAN host", "100.100.1.2", "192.168.50.10:80", "tailscale0", peer, trace.LegForward, "192.168.50.1"},
		{"LAN host to the tailnet peer", "192.168.50.10", "100.100.1.2:80", "eth0", lan, trace.LegForward, ""},
		{"CGNAT source from the LAN to the router", "100.70.0.9", "192.168.50.1:22", "eth0", lan, trace.LegDrop, ""},
	} {
		src := fmt.Sprintf("%s:%d", c.src, 40900+i)
		before := ruleCounters(t, router)
		conn, err := c.client.Dial(c.dst, src, dialTimeout)
		if conn != nil {
			conn.Close()
		}
		res := traceTCP(st, src, c.dst, c.iif)
		checkCounted(t, c.name, before, ruleCounters(t, router), res, err == nil)
		works := len(errorIDs(res)) == 0
		if res.Forward.Verdict != c.verdict || (err == nil) != works || res.Has(trace.FindingUncertain) {
			t.Errorf("%s: the client: %v; trace %s with errors %v, want %s\n%s", c.name, err, res.Forward.Verdict, errorIDs(res), c.verdict, render(res))
			continue
		}
		if c.verdict != trace.LegForward {
			continue
		}
		e := conntrackEntry(t, router, src, c.dst)
		want := src
		if c.snat != "" {
			want = fmt.Sprintf("%s:%d", c.snat, 40900+i)
		}
		if e.Reply.Dst.String() != want || res.Forward.Packet.Src.String() != want {
			t.Errorf("%s: conntrack expects the reply at %s, trace sends from %s, want %s", c.name, e.Reply.Dst, res.Forward.Packet.Src, want)
		}
	}
}
