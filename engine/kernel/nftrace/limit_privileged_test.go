package nftrace_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/kernel/dropwatch/dwtest"
	"roundtrip/engine/kernel/nftrace"
	"roundtrip/engine/lab"
)

// A flood of one flow, every datagram dropped by a rule: only its first packets (the trace
// rule's burst) and then TraceRate a second are traced, so the trace socket sees a few dozen
// packets, not the flood; the first dropped datagram's step names the rule.
func TestPrivilegedTraceLimitFlood(t *testing.T) {
	t.Setenv(nftrace.StateDirEnv, t.TempDir())
	requireTool(t, "nft", "nftables")
	l := lab.NewPrefixed(t, "hkp")
	cli, rtr, srv := l.NS("cli"), l.NS("rtr"), l.NS("srv")
	l.Veth(cli, "eth0", rtr, "lan")
	l.Veth(rtr, "wan", srv, "eth0")
	cli.Addr("eth0", dwtest.ClientAddr.String()+"/24")
	rtr.Addr("lan", dwtest.RouterLAN.String()+"/24")
	rtr.Addr("wan", dwtest.RouterWAN.String()+"/24")
	srv.Addr("eth0", dwtest.ServerAddr.String()+"/24")
	cli.IP("route", "add", "default", "via", dwtest.RouterLAN.String())
	srv.IP("route", "add", "default", "via", dwtest.RouterWAN.String())
	rtr.Sysctl("net.ipv4.ip_forward", "1")
	rtr.Run("nft", "add table inet hkpfilter")
	rtr.Run("nft", "add chain inet hkpfilter hkpfwd { type filter hook forward priority 0; }")
	rtr.Run("nft", "add rule inet hkpfilter hkpfwd udp dport 5353 counter drop")
	dst := netip.AddrPortFrom(dwtest.ServerAddr, 5353)
	tr := trace(t, rtr, dropwatch.Flow{Proto: unix.IPPROTO_UDP, Dst: dst.Addr(), DstPort: dst.Port()})

	const sent = 2000
	start := time.Now()
	err := cli.Do(func() error {
		c, err := net.Dial("udp4", dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		for range sent {
			if _, err := c.Write([]byte("flood")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Read what was traced until a second passes without a step.
	// Counted by drop step, one a traced datagram (trace ids are hashes of the packet's
	// buffer, reused at once by a flood).
	traced := 0
	var first *nftrace.Step
	for done := false; !done; {
		select {
		case s := <-tr.Events():
			if s.Verdict == "drop" && dwtest.PacketTo(s.Packet, dst) {
				traced++
				if first == nil {
					first = &s
				}
			}
		case <-time.After(time.Second):
			done = true
		}
	}
	elapsed := time.Since(start)
	if first == nil || first.Table != "hkpfilter" || first.Chain != "hkpfwd" || first.Handle == 0 {
		t.Fatalf("first traced drop %v; want the rule of inet hkpfilter hkpfwd", first)
	}
	most := nftrace.TraceBurst + int(elapsed.Seconds()*nftrace.TraceRate) + nftrace.TraceRate
	if traced > most || traced < nftrace.TraceBurst {
		t.Errorf("%d of %d dropped datagrams traced in %v; want the burst of %d and at most %d a second (≤ %d)",
			traced, sent, elapsed.Round(time.Millisecond), nftrace.TraceBurst, nftrace.TraceRate, most)
	}
}
