package kernel_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	. "roundtrip/engine/kernel"
	"roundtrip/engine/lab"
)

// capturedTCP is what the tests keep of a captured TCP/IPv4 packet.
type capturedTCP struct {
	iface    string
	dir      Direction
	typ      PacketType
	src, dst netip.AddrPort
	flags    uint8
}

// decodeTCP4 reads an Ethernet/IPv4/TCP frame without gopacket (diagnose has the real decoder).
func decodeTCP4(p *Packet) (capturedTCP, bool) {
	d := p.Data
	if p.LinkType == LinkEthernet {
		if len(d) < 14 || binary.BigEndian.Uint16(d[12:]) != 0x0800 {
			return capturedTCP{}, false
		}
		d = d[14:]
	}
	if len(d) < 20 || d[0]>>4 != 4 || d[9] != 6 {
		return capturedTCP{}, false
	}
	ihl := int(d[0]&0xf) * 4
	if len(d) < ihl+14 {
		return capturedTCP{}, false
	}
	src := netip.AddrFrom4([4]byte(d[12:16]))
	dst := netip.AddrFrom4([4]byte(d[16:20]))
	t := d[ihl:]
	return capturedTCP{
		iface: p.Iface, dir: p.Dir, typ: p.Type,
		src:   netip.AddrPortFrom(src, binary.BigEndian.Uint16(t[0:])),
		dst:   netip.AddrPortFrom(dst, binary.BigEndian.Uint16(t[2:])),
		flags: t[13],
	}, true
}

// runCapture captures in the background until stop is called, then returns the packets.
func runCapture(t *testing.T, c *Capture) (stop func() []capturedTCP) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var got []capturedTCP
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func(p *Packet) error {
			if ct, ok := decodeTCP4(p); ok {
				mu.Lock()
				got = append(got, ct)
				mu.Unlock()
			}
			return nil
		})
	}()
	return func() []capturedTCP {
		// Blocks reach user space when full or after their 20 ms timeout.
		time.Sleep(150 * time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("capture: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		return got
	}
}

const (
	flagSYN = 0x02
	flagACK = 0x10
)

func TestPrivilegedCaptureDirectionsAndFilter(t *testing.T) {
	l := lab.New(t)
	a, b := l.NS("a"), l.NS("b")
	l.Veth(a, "eth0", b, "eth1")
	a.Addr("eth0", "10.72.200.1/24")
	b.Addr("eth1", "10.72.200.2/24")
	b.Listen("10.72.200.2:8080")
	b.Listen("10.72.200.2:8081")
	ns := Namespace{Name: b.Name}

	f, err := ParseCaptureFilter("tcp and port 8080")
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenCapture(ns, CaptureConfig{Filter: f, BufferSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A second capture limited to loopback must see none of the traffic on eth1.
	lo, err := OpenCapture(ns, CaptureConfig{Ifaces: []string{"lo"}, BufferSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	stop := runCapture(t, c)
	stopLo := runCapture(t, lo)

	for i, port := range []string{"8080", "8081"} {
		conn, err := a.Dial("10.72.200.2:"+port, "10.72.200.1:4010"+string(rune('0'+i)), 2*time.Second)
		if err != nil {
			t.Fatalf("dialing port %s: %v", port, err)
		}
		conn.Close()
	}
	got := stop()
	if pk := stopLo(); len(pk) != 0 {
		t.Errorf("capture on lo saw %d TCP packets of eth1's traffic: %+v", len(pk), pk)
	}

	client := netip.MustParseAddrPort("10.72.200.1:40100")
	server := netip.MustParseAddrPort("10.72.200.2:8080")
	var syn, synack bool
	for _, p := range got {
		if p.src.Port() == 8081 || p.dst.Port() == 8081 {
			t.Errorf("the filter let through a packet of port 8081: %+v", p)
		}
		if p.iface != "eth1" {
			t.Errorf("packet on %q, want eth1: %+v", p.iface, p)
		}
		if p.flags&(flagSYN|flagACK) == flagSYN {
			syn = true
			if p.dir != In || p.typ != PacketHost || p.src != client || p.dst != server {
				t.Errorf("SYN: %+v; want in on eth1, type host, %s -> %s", p, client, server)
			}
		}
		if p.flags&(flagSYN|flagACK) == flagSYN|flagACK {
			synack = true
			if p.dir != Out || p.typ != PacketOutgoing || p.src != server || p.dst != client {
				t.Errorf("SYN-ACK: %+v; want out on eth1, %s -> %s", p, server, client)
			}
		}
	}
	if !syn || !synack {
		t.Errorf("captured %+v; want the SYN in and the SYN-ACK out", got)
	}
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Received < 4 || st.KernelPackets < st.Received || st.KernelDrops != 0 {
		t.Errorf("stats %+v: want at least 4 received, kernel packets >= received, no drops", st)
	}
}

func TestPrivilegedCaptureErrors(t *testing.T) {
	l := lab.New(t)
	a := l.NS("a")
	_, err := OpenCapture(Namespace{Name: a.Name}, CaptureConfig{Ifaces: []string{"eth9"}})
	if err == nil || !strings.Contains(err.Error(), `no interface "eth9"`) {
		t.Errorf("capture on a missing interface: %v", err)
	}
	ce := &CapabilityError{What: "capturing packets", Cap: "CAP_NET_RAW", Err: errors.New("operation not permitted")}
	if !strings.Contains(ce.Error(), "capturing packets needs root or CAP_NET_RAW (try sudo)") {
		t.Errorf("capability error reads %q", ce)
	}
}
