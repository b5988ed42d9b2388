package kernel

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"roundtrip/engine/inet"
)

// CaptureFilter selects the packets a capture keeps. It is compiled into a classic BPF program
// that the kernel runs on every packet, so nothing that does not match is ever copied to user
// space. The language is a small subset of tcpdump's:
//
//	expr := group { "or" group }
//	group := term { "and" term }
//	term := [src|dst] host ADDR | [src|dst] net CIDR | [src|dst] port N
//	      | proto tcp|udp|icmp|N | tcp | udp | icmp | ip | ip6
//
// "and" binds tighter than "or"; there are no parentheses. A flow written as trace takes it,
// "PROTO SRC[:PORT] DST[:PORT]", selects that flow in both directions.
type CaptureFilter struct {
	groups [][]filterTerm
}

type termKind uint8

const (
	termAddr termKind = iota + 1
	termPort
	termProto
	termFamily
)

// Which address or port of a packet a term looks at.
const (
	eitherSide = iota
	srcSide
	dstSide
)

type filterTerm struct {
	kind   termKind
	side   int
	prefix netip.Prefix
	port   uint16
	proto  uint8 // IP protocol; protoICMPAny is ICMP in IPv4 and ICMPv6 in IPv6
	family inet.Family
}

// protoICMPAny stands for "icmp": ICMP over IPv4 and ICMPv6 over IPv6.
const protoICMPAny = 255

// family returns the address family a term restricts packets to, or 0.
func (t filterTerm) familyOf() inet.Family {
	switch t.kind {
	case termAddr:
		return inet.FamilyOf(t.prefix.Addr())
	case termFamily:
		return t.family
	case termProto:
		switch t.proto {
		case unix.IPPROTO_ICMP:
			return inet.V4
		case unix.IPPROTO_ICMPV6:
			return inet.V6
		}
	}
	return 0
}

func (t filterTerm) String() string {
	side := [...]string{"", "src ", "dst "}[t.side]
	switch t.kind {
	case termAddr:
		if t.prefix.IsSingleIP() {
			return side + "host " + t.prefix.Addr().String()
		}
		return side + "net " + t.prefix.String()
	case termPort:
		return side + "port " + strconv.Itoa(int(t.port))
	case termProto:
		if t.proto == protoICMPAny {
			return "icmp"
		}
		return "proto " + inet.ProtoName(int(t.proto))
	case termFamily:
		if t.family == inet.V6 {
			return "ip6"
		}
		return "ip"
	}
	return "?"
}

// String renders the filter in its own language; parsing the result gives the same filter.
func (f *CaptureFilter) String() string {
	if f == nil || len(f.groups) == 0 {
		return ""
	}
	var b strings.Builder
	for i, g := range f.groups {
		if i > 0 {
			b.WriteString(" or ")
		}
		for j, t := range g {
			if j > 0 {
				b.WriteString(" and ")
			}
			b.WriteString(t.String())
		}
	}
	return b.String()
}

// ParseCaptureFilter parses a filter expression or a flow. An empty expression is a nil filter,
// which keeps every packet.
func ParseCaptureFilter(expr string) (*CaptureFilter, error) {
	words := strings.Fields(expr)
	if len(words) == 0 {
		return nil, nil
	}
	if f, ok, err := parseFlowFilter(words); ok {
		return f, err
	}
	f := &CaptureFilter{}
	var group []filterTerm
	for i := 0; i < len(words); {
		t, n, err := parseTerm(words[i:])
		if err != nil {
			return nil, fmt.Errorf("capture filter %q: %w", expr, err)
		}
		group = append(group, t)
		i += n
		if i == len(words) {
			break
		}
		switch strings.ToLower(words[i]) {
		case "and", "&&":
		case "or", "||":
			f.groups = append(f.groups, group)
			group = nil
		default:
			return nil, fmt.Errorf("capture filter %q: expected \"and\" or \"or\" before %q", expr, words[i])
		}
		i++
		if i == len(words) {
			return nil, fmt.Errorf("capture filter %q: ends with %q; a term must follow", expr, words[i-1])
		}
	}
	f.groups = append(f.groups, group)
	for _, g := range f.groups {
		if err := checkGroup(g); err != nil {
			return nil, fmt.Errorf("capture filter %q: %w", expr, err)
		}
	}
	return f, nil
}

// checkGroup rejects a group that can never match, such as an IPv4 host and an IPv6 host.
func checkGroup(g []filterTerm) error {
	var fam inet.Family
	var famTerm filterTerm
	for _, t := range g {
		tf := t.familyOf()
		if tf == 0 {
			continue
		}
		if fam != 0 && tf != fam {
			return fmt.Errorf("%q and %q can never match the same packet (one is IPv4, the other IPv6); join them with \"or\"", famTerm, t)
		}
		fam, famTerm = tf, t
	}
	return nil
}

// parseTerm reads one term and returns how many words it used.
func parseTerm(w []string) (filterTerm, int, error) {
	t := filterTerm{}
	n := 0
	switch strings.ToLower(w[0]) {
	case "src":
		t.side, n = srcSide, 1
	case "dst":
		t.side, n = dstSide, 1
	}
	if n >= len(w) {
		return t, 0, fmt.Errorf("%q must be followed by host, net or port", w[0])
	}
	kw := strings.ToLower(w[n])
	arg := func() (string, error) {
		if n+1 >= len(w) {
			return "", fmt.Errorf("%q needs a value", kw)
		}
		return w[n+1], nil
	}
	switch kw {
	case "host":
		v, err := arg()
		if err != nil {
			return t, 0, err
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return t, 0, fmt.Errorf("host %q: not an IP address (names are not resolved)", v)
		}
		a = a.Unmap()
		t.kind, t.prefix = termAddr, netip.PrefixFrom(a, a.BitLen())
		return t, n + 2, nil
	case "net":
		v, err := arg()
		if err != nil {
			return t, 0, err
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return t, 0, fmt.Errorf("net %q: not a prefix like 10.0.0.0/8", v)
		}
		t.kind, t.prefix = termAddr, p.Masked()
		return t, n + 2, nil
	case "port":
		v, err := arg()
		if err != nil {
			return t, 0, err
		}
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil || p == 0 {
			return t, 0, fmt.Errorf("port %q: want a number 1-65535", v)
		}
		t.kind, t.port = termPort, uint16(p)
		return t, n + 2, nil
	}
	if t.side != eitherSide {
		return t, 0, fmt.Errorf("%q must be followed by host, net or port, not %q", w[0], w[n])
	}
	switch kw {
	case "proto":
		v, err := arg()
		if err != nil {
			return t, 0, err
		}
		p, err := filterProto(v)
		if err != nil {
			return t, 0, err
		}
		t.kind, t.proto = termProto, p
		return t, 2, nil
	case "tcp", "udp", "icmp", "icmp6", "icmpv6", "sctp":
		p, _ := filterProto(kw)
		t.kind, t.proto = termProto, p
		return t, 1, nil
	case "ip":
		t.kind, t.family = termFamily, inet.V4
		return t, 1, nil
	case "ip6":
		t.kind, t.family = termFamily, inet.V6
		return t, 1, nil
	}
	return t, 0, fmt.Errorf("unknown term %q: want host, net, port, proto, tcp, udp, icmp, ip or ip6", w[0])
}

func filterProto(s string) (uint8, error) {
	if strings.EqualFold(s, "icmp") {
		return protoICMPAny, nil
	}
	p, err := inet.ProtoNumber(s)
	if err != nil || p == 0 || p == protoICMPAny {
		return 0, fmt.Errorf("unknown protocol %q: want tcp, udp, icmp, icmpv6, sctp or a number 1-254", s)
	}
	return uint8(p), nil
}

// parseFlowFilter recognises "PROTO SRC[:PORT] DST[:PORT]" (as trace takes a flow).
func parseFlowFilter(w []string) (*CaptureFilter, bool, error) {
	if len(w) != 3 {
		return nil, false, nil
	}
	proto, err := filterProto(w[0])
	if err != nil {
		return nil, false, nil
	}
	if proto == protoICMPAny {
		proto = unix.IPPROTO_ICMP
	}
	src, sok := parseEndpoint(w[1])
	dst, dok := parseEndpoint(w[2])
	if !sok || !dok {
		return nil, false, nil
	}
	if src.Addr().Is4() != dst.Addr().Is4() {
		return nil, true, fmt.Errorf("flow %q: source and destination are of different address families", strings.Join(w, " "))
	}
	if proto == unix.IPPROTO_ICMP && src.Addr().Is6() {
		proto = unix.IPPROTO_ICMPV6
	}
	return FlowFilter(proto, src, dst), true, nil
}

// parseEndpoint reads ADDR, ADDR:PORT or [V6]:PORT.
func parseEndpoint(s string) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 0), true
	}
	return netip.AddrPort{}, false
}

// FlowFilter selects one flow in both directions; a zero port matches any port.
func FlowFilter(proto uint8, src, dst netip.AddrPort) *CaptureFilter {
	f := &CaptureFilter{}
	f.AddFlow(proto, src, dst)
	return f
}

// AddFlow widens the filter to also select a flow in both directions (for example the same
// flow after NAT); a zero port matches any port and an invalid address any address.
func (f *CaptureFilter) AddFlow(proto uint8, src, dst netip.AddrPort) {
	for _, dir := range [2][2]netip.AddrPort{{src, dst}, {dst, src}} {
		g := []filterTerm{{kind: termProto, proto: proto}}
		for i, ep := range dir {
			side := srcSide + i
			if ep.Addr().IsValid() {
				a := ep.Addr().Unmap()
				g = append(g, filterTerm{kind: termAddr, side: side, prefix: netip.PrefixFrom(a, a.BitLen())})
			}
			if ep.Port() != 0 && (proto == unix.IPPROTO_TCP || proto == unix.IPPROTO_UDP || proto == unix.IPPROTO_SCTP) {
				g = append(g, filterTerm{kind: termPort, side: side, port: ep.Port()})
			}
		}
		f.groups = append(f.groups, g)
	}
}

// Ethernet types and Linux link types the program branches on.
const (
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	arphrdEther    = unix.ARPHRD_ETHER
	arphrdLoopback = unix.ARPHRD_LOOPBACK
	ethHeaderLen   = 14
	// pktTypeOutgoing is skb->pkt_type of a packet that this host sends (PACKET_OUTGOING): the
	// kernel hands taps a clone with that type in dev_queue_xmit_nit.
	pktTypeOutgoing = unix.PACKET_OUTGOING
)

// DefaultSnapLen is how many bytes of a packet a capture keeps, as tcpdump's default.
const DefaultSnapLen = 262144

// program is a BPF program under construction with symbolic jump targets. Conditional jumps
// in classic BPF reach at most 255 instructions ahead, so every jump to a label is written as a
// short conditional skip over an unconditional jump (32-bit offset): programs stay correct
// whatever their length, at the price of one extra instruction per test.
type program struct {
	ins    []pins
	labels []int // label -> index in ins, -1 until placed
}

type pins struct {
	ins    bpf.Instruction
	label  int // >= 0: a jump to this label
	cond   bpf.JumpTest
	val    uint32
	jumpOn bool // jump when the condition holds (true) or when it does not (false)
	always bool // unconditional jump
}

func (p *program) newLabel() int {
	p.labels = append(p.labels, -1)
	return len(p.labels) - 1
}

func (p *program) place(l int) { p.labels[l] = len(p.ins) }

func (p *program) add(ins ...bpf.Instruction) {
	for _, i := range ins {
		p.ins = append(p.ins, pins{ins: i, label: -1})
	}
}

// jumpIf jumps to l when A cond val holds.
func (p *program) jumpIf(cond bpf.JumpTest, val uint32, l int) {
	p.ins = append(p.ins, pins{label: l, cond: cond, val: val, jumpOn: true})
}

// jumpUnless jumps to l when A cond val does not hold.
func (p *program) jumpUnless(cond bpf.JumpTest, val uint32, l int) {
	p.ins = append(p.ins, pins{label: l, cond: cond, val: val, jumpOn: false})
}

func (p *program) jump(l int) { p.ins = append(p.ins, pins{label: l, always: true}) }

// assemble resolves labels into instructions.
func (p *program) assemble() ([]bpf.Instruction, error) {
	// Raw position of each pseudo instruction: conditional jumps take two slots.
	pos := make([]int, len(p.ins)+1)
	for i, in := range p.ins {
		n := 1
		if in.label >= 0 && !in.always {
			n = 2
		}
		pos[i+1] = pos[i] + n
	}
	out := make([]bpf.Instruction, 0, pos[len(p.ins)])
	for i, in := range p.ins {
		if in.label < 0 {
			out = append(out, in.ins)
			continue
		}
		at := p.labels[in.label]
		if at < 0 {
			return nil, fmt.Errorf("bpf: jump to a label that was never placed")
		}
		target := pos[at]
		if in.always {
			skip := target - (pos[i] + 1)
			if skip < 0 {
				return nil, fmt.Errorf("bpf: backward jump")
			}
			out = append(out, bpf.Jump{Skip: uint32(skip)})
			continue
		}
		// The conditional skips the long jump when the jump must not be taken.
		skip := target - (pos[i] + 2)
		if skip < 0 {
			return nil, fmt.Errorf("bpf: backward jump")
		}
		if in.jumpOn {
			out = append(out, bpf.JumpIf{Cond: in.cond, Val: in.val, SkipTrue: 0, SkipFalse: 1})
		} else {
			out = append(out, bpf.JumpIf{Cond: in.cond, Val: in.val, SkipTrue: 1, SkipFalse: 0})
		}
		out = append(out, bpf.Jump{Skip: uint32(skip)})
	}
	if len(out) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("capture filter too long: %d BPF instructions, the kernel takes at most %d", len(out), unix.BPF_MAXINSNS)
	}
	return out, nil
}

// matchProgram returns a program for one link layer (Ethernet framing or bare IP) that returns
// snaplen for matching packets and 0 otherwise. It needs no kernel extensions, so it also runs
// in bpf.VM for tests.
func (f *CaptureFilter) matchProgram(ethernet bool, snaplen uint32) ([]bpf.Instruction, error) {
	p := &program{}
	accept, reject := p.newLabel(), p.newLabel()
	emitL3Offset(p, ethernet, reject)
	f.emitMatch(p, accept)
	p.jump(reject)
	p.place(accept)
	p.add(bpf.RetConstant{Val: snaplen})
	p.place(reject)
	p.add(bpf.RetConstant{Val: 0})
	return p.assemble()
}

// emitL3Offset leaves the offset of the IP header in X and in scratch word 0, where the match
// code expects it, so that one copy of the match code serves every link layer. Ethernet frames
// that carry neither IPv4 nor IPv6 jump to reject.
func emitL3Offset(p *program, ethernet bool, reject int) {
	if ethernet {
		ip := p.newLabel()
		p.add(bpf.LoadAbsolute{Off: 12, Size: 2})
		p.jumpIf(bpf.JumpEqual, etherTypeIPv4, ip)
		p.jumpUnless(bpf.JumpEqual, etherTypeIPv6, reject)
		p.place(ip)
		p.add(bpf.LoadConstant{Dst: bpf.RegX, Val: ethHeaderLen})
	} else {
		p.add(bpf.LoadConstant{Dst: bpf.RegX, Val: 0})
	}
	p.add(bpf.StoreScratch{Src: bpf.RegX, N: 0})
}

// emitMatch appends code that jumps to accept when the packet matches and falls through
// otherwise. X and scratch word 0 hold the offset of the IP header.
func (f *CaptureFilter) emitMatch(p *program, accept int) {
	if f == nil || len(f.groups) == 0 {
		p.jump(accept)
		return
	}
	for _, g := range f.groups {
		fams := []inet.Family{inet.V4, inet.V6}
		for _, t := range g {
			if tf := t.familyOf(); tf != 0 {
				fams = []inet.Family{tf}
				break
			}
		}
		for _, fam := range fams {
			next := p.newLabel()
			emitGroup(p, g, fam, next)
			p.jump(accept)
			p.place(next)
		}
	}
}

// emitGroup appends the checks of one and-group for one family, jumping to fail on a mismatch.
func emitGroup(p *program, g []filterTerm, fam inet.Family, fail int) {
	// A failed group may have left X elsewhere (port checks move it to the transport header).
	p.add(bpf.LoadScratch{Dst: bpf.RegX, N: 0})
	v := uint32(0x40)
	if fam == inet.V6 {
		v = 0x60
	}
	p.add(bpf.LoadIndirect{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
	p.jumpUnless(bpf.JumpEqual, v, fail)
	for _, t := range g {
		switch t.kind {
		case termFamily:
			// The version check above already did it.
		case termProto:
			proto := uint32(t.proto)
			if t.proto == protoICMPAny {
				proto = unix.IPPROTO_ICMP
				if fam == inet.V6 {
					proto = unix.IPPROTO_ICMPV6
				}
			}
			p.add(loadProto(fam))
			p.jumpUnless(bpf.JumpEqual, proto, fail)
		case termAddr:
			emitAddr(p, t, fam, fail)
		case termPort:
			emitPort(p, t, fam, fail)
		}
	}
}

// loadProto loads the IPv4 protocol or the IPv6 next header. IPv6 extension headers are not
// walked (as tcpdump's "tcp" does not): a packet with them does not match a protocol or port.
func loadProto(fam inet.Family) bpf.Instruction {
	if fam == inet.V6 {
		return bpf.LoadIndirect{Off: 6, Size: 1}
	}
	return bpf.LoadIndirect{Off: 9, Size: 1}
}

func emitAddr(p *program, t filterTerm, fam inet.Family, fail int) {
	src, dst := uint32(12), uint32(16)
	if fam == inet.V6 {
		src, dst = 8, 24
	}
	switch t.side {
	case srcSide:
		emitPrefix(p, t.prefix, src, fail)
	case dstSide:
		emitPrefix(p, t.prefix, dst, fail)
	default:
		ok, trySrcFailed := p.newLabel(), p.newLabel()
		emitPrefix(p, t.prefix, src, trySrcFailed)
		p.jump(ok)
		p.place(trySrcFailed)
		emitPrefix(p, t.prefix, dst, fail)
		p.place(ok)
	}
}

// emitPrefix compares the address at off (from the IP header) with a prefix, word by word.
func emitPrefix(p *program, pfx netip.Prefix, off uint32, fail int) {
	b := pfx.Addr().AsSlice()
	bits := pfx.Bits()
	for w := 0; w*32 < len(b)*8; w++ {
		n := min(max(bits-w*32, 0), 32)
		if n == 0 {
			break
		}
		mask := ^uint32(0) << (32 - n)
		val := uint32(b[4*w])<<24 | uint32(b[4*w+1])<<16 | uint32(b[4*w+2])<<8 | uint32(b[4*w+3])
		p.add(bpf.LoadIndirect{Off: off + uint32(4*w), Size: 4})
		if n < 32 {
			p.add(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mask})
		}
		p.jumpUnless(bpf.JumpEqual, val&mask, fail)
	}
}

// emitPort checks a TCP, UDP or SCTP port. IPv4 fragments after the first carry no ports and
// never match; the IPv4 header length comes from IHL. X points at the transport header while
// the ports are read and at the IP header again afterwards.
func emitPort(p *program, t filterTerm, fam inet.Family, fail int) {
	hasPorts := p.newLabel()
	p.add(loadProto(fam))
	p.jumpIf(bpf.JumpEqual, unix.IPPROTO_TCP, hasPorts)
	p.jumpIf(bpf.JumpEqual, unix.IPPROTO_UDP, hasPorts)
	p.jumpUnless(bpf.JumpEqual, unix.IPPROTO_SCTP, fail)
	p.place(hasPorts)
	if fam == inet.V4 {
		p.add(bpf.LoadIndirect{Off: 6, Size: 2}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x1fff})
		p.jumpUnless(bpf.JumpEqual, 0, fail)
		// A = 4*IHL + X (the IP header's offset), then X = A.
		p.add(bpf.LoadIndirect{Off: 0, Size: 1},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f},
			bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
			bpf.ALUOpX{Op: bpf.ALUOpAdd},
			bpf.TAX{})
	} else {
		p.add(bpf.TXA{}, bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 40}, bpf.TAX{})
	}
	port := uint32(t.port)
	switch t.side {
	case srcSide:
		p.add(bpf.LoadIndirect{Off: 0, Size: 2})
		p.jumpUnless(bpf.JumpEqual, port, fail)
	case dstSide:
		p.add(bpf.LoadIndirect{Off: 2, Size: 2})
		p.jumpUnless(bpf.JumpEqual, port, fail)
	default:
		ok := p.newLabel()
		p.add(bpf.LoadIndirect{Off: 0, Size: 2})
		p.jumpIf(bpf.JumpEqual, port, ok)
		p.add(bpf.LoadIndirect{Off: 2, Size: 2})
		p.jumpUnless(bpf.JumpEqual, port, fail)
		p.place(ok)
	}
	p.add(bpf.LoadScratch{Dst: bpf.RegX, N: 0})
}

// socketProgram is the program attached to one capture socket: it keeps the packets of one
// direction (outgoing or not: skb->pkt_type through the SKF_AD_PKTTYPE extension), on the chosen
// interfaces (SKF_AD_IFINDEX), and then runs the filter for the link layer of the device
// (SKF_AD_HATYPE): Ethernet framing for Ethernet and loopback devices, bare IP for the rest
// (tunnels, wireguard, tun), whose SOCK_RAW packets start at the network header.
func (f *CaptureFilter) socketProgram(outgoing bool, ifindexes []int, snaplen uint32) ([]bpf.RawInstruction, error) {
	p := &program{}
	accept, reject := p.newLabel(), p.newLabel()
	p.add(bpf.LoadExtension{Num: bpf.ExtType})
	if outgoing {
		p.jumpUnless(bpf.JumpEqual, pktTypeOutgoing, reject)
	} else {
		p.jumpIf(bpf.JumpEqual, pktTypeOutgoing, reject)
	}
	if len(ifindexes) > 0 {
		ifOK := p.newLabel()
		p.add(bpf.LoadExtension{Num: bpf.ExtInterfaceIndex})
		for _, idx := range ifindexes {
			p.jumpIf(bpf.JumpEqual, uint32(idx), ifOK)
		}
		p.jump(reject)
		p.place(ifOK)
	}
	if f == nil || len(f.groups) == 0 {
		p.jump(accept)
	} else {
		eth, match := p.newLabel(), p.newLabel()
		p.add(bpf.LoadExtension{Num: bpf.ExtLinkLayerType})
		p.jumpIf(bpf.JumpEqual, arphrdEther, eth)
		p.jumpIf(bpf.JumpEqual, arphrdLoopback, eth)
		emitL3Offset(p, false, reject)
		p.jump(match)
		p.place(eth)
		emitL3Offset(p, true, reject)
		p.place(match)
		f.emitMatch(p, accept)
		p.jump(reject)
	}
	p.place(accept)
	p.add(bpf.RetConstant{Val: snaplen})
	p.place(reject)
	p.add(bpf.RetConstant{Val: 0})
	ins, err := p.assemble()
	if err != nil {
		return nil, err
	}
	return bpf.Assemble(ins)
}
