package kernel

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// testPacket builds an IPv4 or IPv6 packet with a TCP/UDP header (ports) or an ICMP header,
// with or without an Ethernet header in front.
type testPacket struct {
	proto      uint8
	src, dst   string
	sport      uint16
	dport      uint16
	ihl        int // IPv4 header length in bytes (20 or more)
	fragOffset uint16
}

func (tp testPacket) bytes(ethernet bool) []byte {
	src, dst := netip.MustParseAddr(tp.src), netip.MustParseAddr(tp.dst)
	var b []byte
	if ethernet {
		b = make([]byte, 14)
		copy(b[0:6], []byte{2, 0, 0, 0, 0, 1})
		copy(b[6:12], []byte{2, 0, 0, 0, 0, 2})
		et := uint16(0x0800)
		if src.Is6() {
			et = 0x86dd
		}
		binary.BigEndian.PutUint16(b[12:], et)
	}
	var ip []byte
	if src.Is4() {
		ihl := max(tp.ihl, 20)
		ip = make([]byte, ihl)
		ip[0] = 0x40 | byte(ihl/4)
		binary.BigEndian.PutUint16(ip[6:], tp.fragOffset)
		ip[8] = 64
		ip[9] = tp.proto
		s, d := src.As4(), dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
	} else {
		ip = make([]byte, 40)
		ip[0] = 0x60
		ip[6] = tp.proto
		ip[7] = 64
		s, d := src.As16(), dst.As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	}
	l4 := make([]byte, 20)
	binary.BigEndian.PutUint16(l4[0:], tp.sport)
	binary.BigEndian.PutUint16(l4[2:], tp.dport)
	return append(append(b, ip...), l4...)
}

func TestCaptureFilterMatches(t *testing.T) {
	tcp4 := testPacket{proto: unix.IPPROTO_TCP, src: "10.72.1.10", dst: "10.72.1.2", sport: 40001, dport: 80}
	tcp4opts := tcp4
	tcp4opts.ihl = 32 // IPv4 options move the ports
	frag := tcp4
	frag.fragOffset = 185 // a later fragment carries no ports
	udp4 := testPacket{proto: unix.IPPROTO_UDP, src: "10.72.1.10", dst: "10.72.9.9", sport: 5353, dport: 53}
	icmp4 := testPacket{proto: unix.IPPROTO_ICMP, src: "10.72.1.10", dst: "10.72.1.2"}
	tcp6 := testPacket{proto: unix.IPPROTO_TCP, src: "2001:db8::10", dst: "2001:db8::2", sport: 40001, dport: 80}
	icmp6 := testPacket{proto: unix.IPPROTO_ICMPV6, src: "2001:db8::10", dst: "2001:db8::2"}

	cases := []struct {
		expr string
		yes  []testPacket
		no   []testPacket
	}{
		{"host 10.72.1.2", []testPacket{tcp4, tcp4opts, icmp4}, []testPacket{udp4, tcp6}},
		{"src host 10.72.1.10 and dst host 10.72.1.2", []testPacket{tcp4, icmp4}, []testPacket{udp4, tcp6}},
		{"dst host 10.72.1.10", nil, []testPacket{tcp4, udp4, icmp4}},
		{"net 10.72.0.0/16", []testPacket{tcp4, udp4, icmp4}, []testPacket{tcp6}},
		{"net 10.72.9.0/24", []testPacket{udp4}, []testPacket{tcp4}},
		{"port 80", []testPacket{tcp4, tcp4opts, tcp6}, []testPacket{udp4, icmp4, frag}},
		{"src port 80", nil, []testPacket{tcp4, tcp6}},
		{"dst port 80 and tcp", []testPacket{tcp4, tcp6}, []testPacket{udp4}},
		{"udp or icmp", []testPacket{udp4, icmp4, icmp6}, []testPacket{tcp4, tcp6}},
		{"proto tcp and ip6", []testPacket{tcp6}, []testPacket{tcp4, icmp6}},
		{"host 2001:db8::2 and port 80", []testPacket{tcp6}, []testPacket{tcp4, icmp6}},
		{"net 2001:db8::/100 and icmp", []testPacket{icmp6}, []testPacket{tcp6, icmp4}},
		{"host 10.72.9.9 or host 2001:db8::10 and tcp", []testPacket{udp4, tcp6}, []testPacket{tcp4, icmp6}},
		// A flow as trace takes it: both directions, nothing else.
		{"tcp 10.72.1.10:40001 10.72.1.2:80", []testPacket{tcp4, reverse(tcp4)}, []testPacket{udp4, tcp6, withSport(tcp4, 40002)}},
		{"udp 10.72.1.10 10.72.9.9:53", []testPacket{udp4, reverse(udp4)}, []testPacket{tcp4}},
	}
	for _, c := range cases {
		f, err := ParseCaptureFilter(c.expr)
		if err != nil {
			t.Fatalf("ParseCaptureFilter(%q): %v", c.expr, err)
		}
		// The rendered filter must parse back to the same program.
		again, err := ParseCaptureFilter(f.String())
		if err != nil || again.String() != f.String() {
			t.Errorf("%q renders as %q, which parses as %v, %v", c.expr, f, again, err)
		}
		for _, eth := range []bool{true, false} {
			prog, err := f.matchProgram(eth, 65535)
			if err != nil {
				t.Fatalf("%q: compiling: %v", c.expr, err)
			}
			vm, err := bpf.NewVM(prog)
			if err != nil {
				t.Fatalf("%q: %v", c.expr, err)
			}
			for _, want := range []bool{true, false} {
				pkts := c.yes
				if !want {
					pkts = c.no
				}
				for _, p := range pkts {
					n, err := vm.Run(p.bytes(eth))
					if err != nil {
						t.Fatalf("%q: running: %v", c.expr, err)
					}
					if got := n > 0; got != want {
						t.Errorf("filter %q (ethernet %v) on %+v: match %v, want %v", c.expr, eth, p, got, want)
					}
				}
			}
		}
	}
}

func reverse(p testPacket) testPacket {
	p.src, p.dst, p.sport, p.dport = p.dst, p.src, p.dport, p.sport
	return p
}

func withSport(p testPacket, port uint16) testPacket {
	p.sport = port
	return p
}

func TestCaptureFilterErrors(t *testing.T) {
	for expr, want := range map[string]string{
		"host":                          `"host" needs a value`,
		"host example.com":              "not an IP address",
		"port 0":                        "want a number 1-65535",
		"port 80 and":                   "a term must follow",
		"port 80 host 10.0.0.1":         `expected "and" or "or"`,
		"src tcp":                       "must be followed by host, net or port",
		"bogus":                         "unknown term",
		"host 10.0.0.1 and host 2001::": "can never match",
		"proto xyz":                     "unknown protocol",
		"tcp 10.0.0.1:5 2001:db8::1:80": "different address families",
	} {
		_, err := ParseCaptureFilter(expr)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCaptureFilter(%q) = %v, want an error containing %q", expr, err, want)
		}
	}
	if f, err := ParseCaptureFilter("  "); f != nil || err != nil {
		t.Errorf("empty filter = %v, %v; want nil, nil", f, err)
	}
}

// TestCaptureFilterLongProgram checks that filters longer than a conditional jump can span
// still assemble and are accepted by the verifier in the VM.
func TestCaptureFilterLongProgram(t *testing.T) {
	var terms []string
	for i := range 100 {
		terms = append(terms, "host 2001:db8::"+strconv.FormatInt(int64(i+1), 16))
	}
	f, err := ParseCaptureFilter(strings.Join(terms, " or "))
	if err != nil {
		t.Fatal(err)
	}
	prog, err := f.matchProgram(true, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) < 1000 {
		t.Fatalf("program has %d instructions; the test wants one longer than a jump's reach", len(prog))
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	last := testPacket{proto: unix.IPPROTO_UDP, src: "2001:db8::1", dst: "2001:db8::64"}
	if n, _ := vm.Run(last.bytes(true)); n != 100 {
		t.Errorf("packet to the last host: %d, want 100 (match)", n)
	}
	if _, err := f.socketProgram(false, []int{1, 2, 3}, 100); err != nil {
		t.Errorf("socket program: %v", err)
	}
}
