package trace_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"roundtrip/engine/fib"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/trace"
)

// The differential suite of issue 12: rule sets that real software writes (Docker, kube-proxy,
// libvirt, ufw, firewalld, Tailscale; each file says where its layout comes from), loaded into
// a namespace whose addresses fit them, and a table of flows per software. For every flow real
// packets are sent and what the kernel did is read back (the client's result, the conntrack
// entry, the rule counters, the interfaces the request and the reply left by, from a capture
// on the host) and compared with trace: verdict, DNAT and SNAT address:port, egress interface,
// reply interface and source, and that every rule trace says acted counted packets. The only
// disagreement allowed is one trace announces: the kernel's outcome is one of the candidates
// trace names (a random branch, a rate) for the flow.

// rwHost is one software's topology: the host whose rules are under test, the namespaces that
// send and answer, and a capture on the host that runs while the flows are sent.
type rwHost struct {
	t     *testing.T
	lab   *lab.Lab
	host  *lab.NS
	peers map[string]*lab.NS // clients by name; "host" is the host itself
	st    *model.State

	mu      sync.Mutex
	pkts    []rwPacket
	masters map[string]string // interface → the bridge it is a port of
	port    uint16            // the next client port
}

// rwPacket is one captured TCP packet on the host.
type rwPacket struct {
	proto    uint8
	iface    string
	out      bool
	src, dst netip.AddrPort
	flags    uint8
}

// rwFlow is one row of a software's table.
type rwFlow struct {
	name     string
	client   string // the peer that dials ("host": the host itself, iif "")
	src, dst string // the client's address (its port is assigned) and what it dials
	iif      string // where the request reaches the host
	verdict  string // what trace must say of the request (the table's statement of the layout)
	// tries > 1 sends the flow that many times: a random branch is picked anew each time.
	tries int
	// quiet, for a rate rule: how many connections get trace's (quiet host) outcome; the
	// next one must get the other outcome trace names among its candidates.
	quiet int
	// port is the client's source port when it matters (a privileged port); 0: assigned.
	port uint16
	udp  bool // a UDP exchange (one datagram and its echo) instead of a TCP connection
}

// newRealWorld creates the lab (namespaces prefixed hdf) and the host under test.
func newRealWorld(t *testing.T, name string, forward bool) *rwHost {
	t.Helper()
	l := lab.NewPrefixed(t, "hdf")
	h := &rwHost{t: t, lab: l, host: lab.Host(l, name, forward), peers: map[string]*lab.NS{}, port: 42000}
	h.peers["host"] = h.host
	return h
}

// peer creates a client/server namespace linked to the host: hostIf on the host, eth0 in the
// peer with addr (CIDR); gw, when set, is the peer's default route.
func (h *rwHost) peer(name, hostIf, addr, gw string) *lab.NS {
	h.t.Helper()
	p := lab.Host(h.lab, name, false)
	h.lab.Veth(h.host, hostIf, p, "eth0")
	if addr != "" {
		p.Addr("eth0", addr)
	}
	if gw != "" {
		p.IP("route", "add", "default", "via", gw)
	}
	h.peers[name] = p
	return p
}

// load loads the rule set with iptables-restore, starts the capture, reads the state as the
// live trace does and checks doctor on it (expected: finding IDs the kernel confirms).
func (h *rwHost) load(rules string, expected ...string) {
	h.t.Helper()
	h.host.Run("sh", "-c", `printf '%s' "$1" | iptables-restore`, "sh", rules)
	h.startCapture()
	h.st = readState(h.t, h.host)
	checkDoctor(h.t, h.st, expected...)
}

func (h *rwHost) startCapture() {
	h.t.Helper()
	f, err := kernel.ParseCaptureFilter("tcp or udp or icmp")
	if err != nil {
		h.t.Fatal(err)
	}
	c, err := kernel.OpenCapture(kernel.Namespace{Name: h.host.Name}, kernel.CaptureConfig{Filter: f, BufferSize: 1 << 20})
	if err != nil {
		h.t.Fatalf("capturing on %s: %v", h.host.Name, err)
	}
	h.masters = map[string]string{}
	for _, ifc := range c.Interfaces() {
		h.masters[ifc.Name] = ifc.Master
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx, func(p *kernel.Packet) error {
			if pk, ok := decodeTCP(p); ok {
				h.mu.Lock()
				h.pkts = append(h.pkts, pk)
				h.mu.Unlock()
			}
			return nil
		})
	}()
	h.t.Cleanup(func() { cancel(); <-done; c.Close() })
}

// decodeTCP reads the addresses, ports and flags of an IPv4 TCP or UDP packet.
func decodeTCP(p *kernel.Packet) (rwPacket, bool) {
	d := p.Data
	if p.LinkType == kernel.LinkEthernet {
		if len(d) < 14 || binary.BigEndian.Uint16(d[12:]) != 0x0800 {
			return rwPacket{}, false
		}
		d = d[14:]
	}
	if len(d) < 20 || d[0]>>4 != 4 || d[9] != 6 && d[9] != 17 && d[9] != 1 {
		return rwPacket{}, false
	}
	ihl := int(d[0]&0xf) * 4
	if d[9] == 1 { // an ICMP error: who it goes to, and its type
		src, _ := netip.AddrFromSlice(d[12:16])
		dst, _ := netip.AddrFromSlice(d[16:20])
		if len(d) < ihl+1 {
			return rwPacket{}, false
		}
		return rwPacket{proto: 1, iface: p.Iface, out: p.Dir == kernel.Out, flags: d[ihl],
			src: netip.AddrPortFrom(src, 0), dst: netip.AddrPortFrom(dst, 0)}, true
	}
	if len(d) < ihl+8 || d[9] == 6 && len(d) < ihl+14 {
		return rwPacket{}, false
	}
	src, _ := netip.AddrFromSlice(d[12:16])
	dst, _ := netip.AddrFromSlice(d[16:20])
	tcp := d[ihl:]
	var flags uint8
	if d[9] == 6 {
		flags = tcp[13]
	}
	return rwPacket{
		proto: d[9], iface: p.Iface, out: p.Dir == kernel.Out, flags: flags,
		src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:])),
		dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:])),
	}, true
}

// sent returns the packets of the tuple the host sent (TCP: with exactly these SYN/ACK flags),
// waiting up to wait for the capture to deliver at least one.
func (h *rwHost) sent(proto uint8, src, dst netip.AddrPort, flags uint8, wait time.Duration) []rwPacket {
	deadline := time.Now().Add(wait)
	for {
		var out []rwPacket
		h.mu.Lock()
		for _, p := range h.pkts {
			if p.out && p.proto == proto && p.src == src && p.dst == dst && (proto != 6 || p.flags&(flagSYN|flagACK) == flags) {
				out = append(out, p)
			}
		}
		h.mu.Unlock()
		if len(out) > 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rwDialTimeout tells a dropped connection from one that works: in namespaces of one machine
// a handshake takes well under a millisecond.
const rwDialTimeout = 800 * time.Millisecond

// answers returns, of the packets captured since mark, the ICMP errors to the client's address and the TCP resets of the flow the
// host sent (a REJECT's answer).
func (h *rwHost) answers(mark int, src, dst netip.AddrPort) []rwPacket {
	var out []rwPacket
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.pkts[mark:] {
		if !p.out {
			continue
		}
		if p.proto == 1 && p.dst.Addr() == src.Addr() && p.flags == 3 || p.proto == 6 && p.src == dst && p.dst == src && p.flags&flagRST != 0 {
			out = append(out, p)
		}
	}
	return out
}

const (
	flagRST = 0x04
	flagSYN = 0x02
	flagACK = 0x10
)

// on reports whether the kernel sending on iface is what trace's oif says: the interface
// itself, or a port of the bridge trace names (the kernel sends a bridged or bridge-routed
// frame out of a port).
func (h *rwHost) on(iface, oif string) bool {
	return iface == oif || oif != "" && h.masters[iface] == oif
}

// run sends every flow of the table and compares the kernel's decisions with trace's.
func (h *rwHost) run(flows []rwFlow) {
	h.t.Helper()
	for _, f := range flows {
		tries := max(f.tries, 1)
		if f.quiet > 0 {
			tries = f.quiet + 1
		}
		agreed := false
		try := 0
		// A random branch: at least the tries asked, and on until the kernel has taken the
		// path trace follows once (its counters then checked), 16 at most (2^-16 at 50%).
		for ; try < tries || f.tries > 1 && !agreed && try < 16; try++ {
			ok := h.flow(f, try)
			agreed = agreed || ok
		}
		if f.tries > 1 && !agreed {
			h.t.Errorf("%s: in %d tries the kernel never took the branch trace follows", f.name, try)
		}
	}
}

// kernelResult is what the kernel did with one connection.
type kernelResult struct {
	err      error
	timeout  bool
	entry    *kernel.ConntrackEntry
	egress   []rwPacket // the request's SYN as the host sent it
	replyOut []rwPacket // the reply's SYN-ACK as the host sent it
	answer   []rwPacket // a REJECT's answer (ICMP error or TCP reset) as the host sent it
}

// flow sends one connection and compares. It reports whether the kernel followed the very
// path trace follows (not merely one of its candidates).
func (h *rwHost) flow(f rwFlow, try int) bool {
	t := h.t
	t.Helper()
	client := h.peers[f.client]
	h.port++
	src := netip.AddrPortFrom(netip.MustParseAddr(f.src), h.port)
	if f.port != 0 {
		src = netip.AddrPortFrom(src.Addr(), f.port+uint16(try))
	}
	dst := netip.MustParseAddrPort(f.dst)
	name := fmt.Sprintf("%s (%s -> %s, try %d)", f.name, src, dst, try+1)

	proto := uint8(6)
	if f.udp {
		proto = 17
	}
	res := trace.Run(h.st, fib.New(h.st), trace.Request{Proto: int(proto), Src: src, Dst: dst, IIF: f.iif})
	if res.Forward.Verdict != f.verdict {
		t.Errorf("%s: trace %s, the table says %s\n%s", name, res.Forward.Verdict, f.verdict, render(res))
	}
	if res.Has(trace.FindingUncertain) {
		t.Errorf("%s: trace is uncertain\n%s", name, render(res))
	}
	cand := ""
	if c := res.Finding(trace.FindingCandidates); c != nil {
		cand = strings.Join(c.Evidence, "\n")
	}

	before := ruleCounters(t, h.host)
	h.mu.Lock()
	mark := len(h.pkts)
	h.mu.Unlock()
	var k kernelResult
	var err error
	if f.udp {
		err = udpExchange(client, src, dst)
	} else {
		var conn net.Conn
		conn, err = client.Dial(f.dst, src.String(), rwDialTimeout)
		if conn != nil {
			conn.Close()
		}
	}
	k.err = err
	var ne net.Error
	k.timeout = errors.As(err, &ne) && ne.Timeout()
	if e, err := h.conntrack(proto, src, dst); err == nil {
		k.entry = &e
	} else if !errors.Is(err, kernel.ErrConntrackNotFound) {
		t.Fatalf("%s: %v", name, err)
	}
	// The request as it left: conntrack's reply tuple reversed, or the original tuple.
	outSrc, outDst := src, dst
	if k.entry != nil {
		outSrc, outDst = k.entry.Reply.Dst, k.entry.Reply.Src
	}
	wait := 150 * time.Millisecond
	if k.err == nil {
		wait = time.Second
	}
	k.egress = h.sent(proto, outSrc, outDst, flagSYN, wait)
	if f.client != "host" {
		k.replyOut = h.sent(proto, dst, src, flagSYN|flagACK, wait)
		if k.err != nil {
			k.replyOut = nil
		}
	}
	k.answer = h.answers(mark, src, dst)

	replyText := ""
	if res.Reply != nil {
		replyText = fmt.Sprintf(", reply out %q from %s", res.Reply.OIF, res.Reply.Packet.Src)
	}
	t.Logf("%s: kernel: %s; trace: %s out %q%s", name, k, res.Forward.Verdict, res.Forward.OIF, replyText)
	if cand != "" && try == 0 {
		t.Logf("%s: trace's candidates:\n%s", name, cand)
	}

	works := len(errorIDs(res)) == 0
	switch res.Forward.Verdict {
	case trace.LegLocal, trace.LegForward, trace.LegBridged, trace.LegOutput:
	default:
		works = false
	}

	// A rate rule: past the quiet connections, the kernel must take the other outcome, and
	// trace must have named it.
	if f.quiet > 0 && try >= f.quiet {
		other := "dropped"
		if !k.timeout {
			other = "rejected"
		}
		if k.err == nil || !strings.Contains(cand, other) {
			t.Errorf("%s: connection %d (past %d quiet ones): the kernel: %v; trace's candidates do not say %s:\n%s", name, try+1, f.quiet, k.err, other, cand)
		}
		return false
	}

	same := true // the kernel followed trace's own path
	after := ruleCounters(t, h.host)
	if strings.Contains(cand, "(probability ") && !allCounted(before, after, actedRules(&res.Forward)) {
		// A random branch: the counters show the kernel took another one than trace follows
		// (when no conntrack entry is left to tell, as for a dropped packet).
		same = false
	}
	if works && k.timeout && (res.Has(trace.FindingNoReturnRoute) || res.Has(trace.FindingAssumedReturnRoute)) {
		// The far end has no way back: beyond this host, and trace said the reply depends on
		// it. What the host did must still be what trace says.
		works = false
		if len(k.egress) == 0 {
			t.Errorf("%s: trace sends the request out %s (the reply depending on the far end), the capture saw it leave nowhere", name, res.Forward.OIF)
		}
	}
	if (k.err == nil) != works {
		t.Errorf("%s: the client: %v; trace says it %s (%s, errors %v)\n%s", name, k.err, tern(works, "works", "fails"), res.Forward.Verdict, errorIDs(res), render(res))
		return false
	}
	if !works {
		// A REJECT answers at once, by the route back to the client (which trace names when it
		// is not the way the request came in); a DROP answers nothing and leaves the client
		// waiting. The client's own result is not the judge of a REJECT: an ICMP error that
		// reaches a connecting socket while connect() still holds it is only a soft error
		// there (tcp_v4_err), and the client retries until it times out.
		if res.Forward.Verdict == trace.LegReject {
			elsewhere := res.Has(trace.FindingRejectElsewhere)
			limited := false // trace said the ICMP error depends on a rate limit
			if f := res.Finding(trace.FindingFiltered); f != nil {
				limited = strings.Contains(strings.Join(f.Evidence, "\n"), "net.ipv4.icmp_ratelimit")
			}
			if len(k.answer) == 0 && !(limited && k.timeout) {
				t.Errorf("%s: trace rejects, the host sent no ICMP error or reset (client: %v)", name, k.err)
			}
			for _, p := range k.answer {
				if h.on(p.iface, res.Forward.IIF) == elsewhere {
					t.Errorf("%s: the host sent the rejection out %s, trace: %s", name, p.iface, tern(elsewhere, "elsewhere than "+res.Forward.IIF, "back out "+res.Forward.IIF))
				}
			}
			if elsewhere && !k.timeout {
				t.Errorf("%s: the client: %v; trace says the rejection goes elsewhere", name, k.err)
			}
		} else if v := res.Forward.Verdict; v == trace.LegNoRoute || v == trace.LegUnreachable || v == trace.LegProhibit {
			// The routing decision answers: an ICMP error to a forwarded packet, an error of
			// connect() to a local one.
			if k.err == nil || k.timeout && len(k.answer) == 0 {
				t.Errorf("%s: the client: %v, the host answered %d times; trace %s", name, k.err, len(k.answer), v)
			}
		} else if !k.timeout || len(k.answer) > 0 && res.Forward.Verdict == trace.LegDrop {
			t.Errorf("%s: the client: %v (timeout %v), the host answered %d times; trace %s", name, k.err, k.timeout, len(k.answer), res.Forward.Verdict)
		}
	}

	// NAT: trace's request as it leaves against conntrack's.
	fp := res.Forward.Packet
	if k.entry != nil {
		if !addrPortIn(fp.Dst, fp.DstPortRange, outDst) {
			same = false
			if cand == "" || !strings.Contains(cand, outDst.String()) {
				t.Errorf("%s: trace sends to %s (range %q), the kernel DNATed to %s, not among trace's candidates:\n%s", name, fp.Dst, fp.DstPortRange, outDst, render(res))
			} else if line := candidateLine(cand, "-> "+outDst.String()); !strings.Contains(line, " as "+outSrc.Addr().String()+":") {
				// The candidate names where its branch leads: the source the kernel gave it too.
				t.Errorf("%s: the kernel sent the request as %s -> %s; trace's candidate says: %s", name, outSrc, outDst, line)
			}
		}
		// When the kernel took another branch than trace follows, the source is compared
		// with what that branch's candidate says above (the hairpin MASQUERADE of a
		// service's own endpoint), not with trace's own path.
		if same && !addrPortIn(fp.Src, fp.SrcPortRange, outSrc) {
			t.Errorf("%s: trace sends from %s (range %q), the kernel SNATed to %s\n%s", name, fp.Src, fp.SrcPortRange, outSrc, render(res))
		}
	} else if k.entry == nil && works && res.Forward.Verdict != trace.LegLocal {
		// No conntrack here (a bridged frame without br_netfilter): no NAT either.
		if fp.Src != src || fp.Dst != dst {
			t.Errorf("%s: trace NATs to %s -> %s, the kernel has no conntrack entry for the flow\n%s", name, fp.Src, fp.Dst, render(res))
		}
	}

	// Egress: the interface the kernel sent the request on.
	switch res.Forward.Verdict {
	case trace.LegForward, trace.LegBridged, trace.LegOutput:
		if same && len(k.egress) == 0 {
			t.Errorf("%s: trace sends the request out %s, the capture saw it leave nowhere\n%s", name, res.Forward.OIF, render(res))
		}
		for _, p := range k.egress {
			if !h.on(p.iface, res.Forward.OIF) {
				t.Errorf("%s: the kernel sent the request out %s, trace out %s\n%s", name, p.iface, res.Forward.OIF, render(res))
			}
		}
	default:
		for _, p := range k.egress {
			if p.iface != "lo" {
				t.Errorf("%s: trace %s, yet the kernel sent the request out %s", name, res.Forward.Verdict, p.iface)
			}
		}
	}

	// The reply: where it left and from which address.
	if works && f.client != "host" && res.Reply != nil {
		if len(k.replyOut) == 0 {
			t.Errorf("%s: the client connected, the capture saw no reply %s -> %s leave the host", name, dst, src)
		}
		for _, p := range k.replyOut {
			if !h.on(p.iface, res.Reply.OIF) || p.src != res.Reply.Packet.Src {
				t.Errorf("%s: the kernel sent the reply out %s from %s, trace out %s from %s\n%s", name, p.iface, p.src, res.Reply.OIF, res.Reply.Packet.Src, render(res))
			}
		}
	}

	// Counters: a rule trace says acted must have counted, unless the kernel took another of
	// the candidates (then trace's rules are not the kernel's).
	if same && try < max(f.quiet, 1) {
		checkCounted(t, name, before, after, res, k.err == nil)
	}
	return same
}

func (k kernelResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client %v", k.err)
	if k.entry != nil {
		fmt.Fprintf(&b, ", conntrack reply %s -> %s", k.entry.Reply.Src, k.entry.Reply.Dst)
	}
	for _, p := range k.egress {
		fmt.Fprintf(&b, ", request out %s", p.iface)
	}
	for _, p := range k.replyOut {
		fmt.Fprintf(&b, ", reply out %s from %s", p.iface, p.src)
	}
	for _, p := range k.answer {
		fmt.Fprintf(&b, ", rejection (proto %d) out %s", p.proto, p.iface)
	}
	return b.String()
}

// candidateLine returns the line of the candidates evidence that has sub.
func candidateLine(cand, sub string) string {
	for _, l := range strings.Split(cand, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// allCounted reports whether every rule counted packets between two readings.
func allCounted(before, after map[string]uint64, rules []string) bool {
	for _, r := range rules {
		if after[r] <= before[r] {
			return false
		}
	}
	return true
}

// udpEcho answers every datagram to addr inside the namespace with the same bytes, until the
// test ends.
func udpEcho(t *testing.T, ns *lab.NS, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", addr)
		return err
	}); err != nil {
		t.Fatalf("udp echo on %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}

// udpExchange sends one datagram from src to dst inside the namespace and waits for its echo:
// nil when it comes, a refused error when an ICMP error comes back, a timeout otherwise.
func udpExchange(ns *lab.NS, src, dst netip.AddrPort) error {
	var conn *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		conn, err = net.DialUDP("udp4", net.UDPAddrFromAddrPort(src), net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(rwDialTimeout))
	if _, err := conn.Write([]byte("roundtrip")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	_, err := conn.Read(buf)
	return err
}

// conntrack looks the flow up in the host's conntrack table.
func (h *rwHost) conntrack(proto uint8, src, dst netip.AddrPort) (kernel.ConntrackEntry, error) {
	ct, err := kernel.OpenConntrack(kernel.Namespace{Name: h.host.Name})
	if err != nil {
		return kernel.ConntrackEntry{}, err
	}
	defer ct.Close()
	return ct.Get(kernel.ConntrackTuple{Proto: proto, Src: src, Dst: dst})
}

// addrPortIn reports whether the kernel's got is trace's want: the same address:port, or the
// same address and a port in the range trace names instead of a number.
func addrPortIn(want netip.AddrPort, rng string, got netip.AddrPort) bool {
	if rng == "" {
		return want == got
	}
	lo, hi, _ := strings.Cut(rng, "-")
	l, err1 := strconv.Atoi(lo)
	u, err2 := strconv.Atoi(hi)
	p := int(got.Port())
	return err1 == nil && err2 == nil && want.Addr() == got.Addr() && p >= l && p <= u
}

func tern(c bool, a, b string) string {
	if c {
		return a
	}
	return b
}
