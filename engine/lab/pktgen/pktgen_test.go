package pktgen

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
)

func TestUDPv4Frame(t *testing.T) {
	dst, _ := net.ParseMAC("02:00:00:00:00:02")
	src, _ := net.ParseMAC("02:00:00:00:00:01")
	f := UDPv4Frame(dst, src, netip.MustParseAddrPort("10.1.2.3:40000"), netip.MustParseAddrPort("10.4.5.6:9999"))
	if len(f) != 60 {
		t.Fatalf("frame of %d bytes, want 60", len(f))
	}
	if net.HardwareAddr(f[0:6]).String() != dst.String() || net.HardwareAddr(f[6:12]).String() != src.String() {
		t.Errorf("MACs %x %x", f[0:6], f[6:12])
	}
	ip := f[14:34]
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	if sum != 0xffff {
		t.Errorf("IPv4 header checksum does not verify: %#x", sum)
	}
	if netip.AddrFrom4([4]byte(ip[12:16])).String() != "10.1.2.3" || netip.AddrFrom4([4]byte(ip[16:20])).String() != "10.4.5.6" {
		t.Errorf("addresses %v %v", ip[12:16], ip[16:20])
	}
	if sp, dp := binary.BigEndian.Uint16(f[34:]), binary.BigEndian.Uint16(f[36:]); sp != 40000 || dp != 9999 {
		t.Errorf("ports %d %d", sp, dp)
	}
}

func TestOpenRefusesNoFrames(t *testing.T) {
	if _, err := Open("", "lo", nil); err == nil {
		t.Error("no error for a sender without frames")
	}
}

// TestPrivilegedSenderDelivers sends frames of several flows over a veth and counts them where
// they arrive.
func TestPrivilegedSenderDelivers(t *testing.T) {
	l := lab.New(t)
	src, dst := lab.Host(l, "pgsrc", false), lab.Host(l, "pgdst", false)
	l.Veth(src, "eth0", dst, "eth1")
	src.Addr("eth0", "10.72.251.1/24")
	dst.Addr("eth1", "10.72.251.2/24")
	dstMAC, err := InterfaceMAC(dst.Name, "eth1")
	if err != nil {
		t.Fatal(err)
	}
	srcMAC, err := InterfaceMAC(src.Name, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for i := range 3 {
		frames = append(frames, UDPv4Frame(dstMAC, srcMAC, netip.AddrPortFrom(netip.MustParseAddr("10.72.251.1"), uint16(40000+i)), netip.MustParseAddrPort("10.72.251.2:9")))
	}
	s, err := Open(src.Name, "eth0", frames)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := rxPackets(t, dst.Name, "eth1")
	sent := 0
	for sent < 1000 {
		n, err := s.Batch()
		if err != nil {
			t.Fatal(err)
		}
		sent += n
	}
	deadline := time.Now().Add(2 * time.Second)
	for rxPackets(t, dst.Name, "eth1")-before < uint64(sent) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := rxPackets(t, dst.Name, "eth1") - before; got < uint64(sent) {
		t.Errorf("sent %d frames, %d arrived", sent, got)
	}
}

func rxPackets(t *testing.T, ns, dev string) uint64 {
	t.Helper()
	var n uint64
	err := kernel.Namespace{Name: ns}.Do(func() error {
		// /sys shows the mounting namespace's devices; the thread's own view is in /proc.
		data, err := os.ReadFile(filepath.Join("/proc/thread-self/net/dev"))
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(data), "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
			if ok && name == dev {
				n, err = strconv.ParseUint(strings.Fields(rest)[1], 10, 64)
				return err
			}
		}
		return os.ErrNotExist
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
