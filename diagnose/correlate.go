package diagnose

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"roundtrip/engine/capture"
	"roundtrip/engine/conntrack"
	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
)

// Packet roles within a connection.
const (
	RoleRequest = "request" // travels from the client to the server (either side of a NAT)
	RoleReply   = "reply"
)

// CorrelateConfig tunes the correlator and gives it what it needs to know about the host.
type CorrelateConfig struct {
	// ForwardWait is how long a packet for another host may take to leave before it counts as
	// not forwarded (default 500 ms).
	ForwardWait time.Duration
	// ReplyWait is how long a forwarded request may wait for its reply (default 2 s: a TCP
	// client retransmits its SYN after 1 s).
	ReplyWait time.Duration
	// Local reports whether an address belongs to this host; nil disables forwarded-not-seen.
	Local func(netip.Addr) bool
	// L3 maps an interface to the one routing sees (a bridge port to its bridge), so that a
	// packet switched through a bridge is not taken for one that changed interfaces.
	L3 func(iface string) string
	// Lookup finds the conntrack entry of a tuple; nil when conntrack cannot be read.
	Lookup func(conntrack.Tuple) (*conntrack.Entry, bool)
	// Explain says why a packet that came in on iif was not forwarded (the trace engine).
	Explain func(t conntrack.Tuple, iif string) (Explanation, bool)
	// Complete, when set, completes a finding's fix with what the host's state knows (the
	// gateway of an uplink, connmark for forwarded flows) before the finding is reported.
	Complete func(f *Finding)
	// MaxConns bounds the connections kept (default 16384, a few KiB each); the oldest are
	// forgotten first.
	MaxConns int
}

// Correlator ties captured packets into connections, across interfaces and across NAT (by the
// conntrack entries it is given), and reports what goes wrong with them. It is not safe for
// concurrent use.
type Correlator struct {
	cfg        CorrelateConfig
	conns      map[conntrack.Tuple]*conn // by canonical tuple: both directions, each NAT side
	byEndpoint map[conntrack.Tuple][]*conn
	pending    map[conntrack.Tuple]*conntrack.Entry // entries that no packet matched yet
	pendingQ   []conntrack.Tuple
	waiting    map[*conn]bool // connections with a timed check still open
	order      []*conn
	nextID     int
	findings   []Finding
	counts     map[string]int // findings made, by severity (the list keeps the first maxFindings)
	lookupAt   time.Time
	lookupN    int
}

// conn is one connection: all packets of a flow, on every interface, on both sides of a NAT.
type conn struct {
	id       int
	proto    uint8
	keys     []conntrack.Tuple
	ct       *conntrack.Entry
	client   netip.AddrPort // in tuple terms (ICMP echo ids as ports)
	server   netip.AddrPort
	pinned   bool // client known for sure (conntrack, SYN, echo request) rather than guessed
	first    time.Time
	last     time.Time
	obs      []Packet
	count    int
	segs     map[segment]int
	retx     []Packet
	reported map[string]bool
	// legKeys are the (role, direction, layer-3 interface) combinations seen so far: a packet
	// that adds none, is no reset and no retransmission cannot change a finding, so the
	// connection is only evaluated again when one of those comes (most packets of a busy
	// connection do not).
	legKeys []legKey
}

type legKey struct {
	role  string
	dir   capture.Direction
	iface string
}

// segment identifies a TCP segment on one interface and direction, to spot retransmissions.
type segment struct {
	iface    string
	dir      capture.Direction
	src, dst netip.AddrPort
	seq      uint32
	payload  int
	synFin   uint8
}

const (
	maxObs      = 12   // packets kept per connection for evidence and analysis
	maxObsHard  = 24   // with the first packets of later legs and resets
	maxSegments = 64   // segments remembered per connection to spot retransmissions
	maxPending  = 4096 // conntrack entries waiting for their first packet
	maxFindings = 10000
)

// NewCorrelator returns a correlator.
func NewCorrelator(cfg CorrelateConfig) *Correlator {
	if cfg.ForwardWait <= 0 {
		cfg.ForwardWait = 500 * time.Millisecond
	}
	if cfg.ReplyWait <= 0 {
		cfg.ReplyWait = 2 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 16384
	}
	if cfg.L3 == nil {
		cfg.L3 = func(s string) string { return s }
	}
	return &Correlator{
		cfg: cfg, conns: map[conntrack.Tuple]*conn{}, byEndpoint: map[conntrack.Tuple][]*conn{},
		pending: map[conntrack.Tuple]*conntrack.Entry{}, waiting: map[*conn]bool{},
		counts: map[string]int{},
	}
}

// canon orders a tuple's endpoints so that both directions of a flow share one key.
func canon(t conntrack.Tuple) conntrack.Tuple {
	if t.Dst.Compare(t.Src) < 0 {
		return t.Reverse()
	}
	return t
}

// endpointKey names one endpoint of a protocol, for finding connections that share it.
func endpointKey(proto uint8, ap netip.AddrPort) conntrack.Tuple {
	return conntrack.Tuple{Proto: proto, Src: ap}
}

// Packet adds a captured packet. It sets p.Conn and p.Role and returns the findings the
// packet completes.
func (c *Correlator) Packet(p *Packet) []Finding {
	if p.Proto == 0 || (p.Proto == unix.IPPROTO_ICMP || p.Proto == unix.IPPROTO_ICMPV6) && !p.isEcho() {
		return nil // not part of a connection (ARP, ICMP errors)
	}
	if p.Proto != unix.IPPROTO_TCP && p.Proto != unix.IPPROTO_UDP && p.Proto != unix.IPPROTO_SCTP && !p.isEcho() {
		return nil
	}
	t := p.Tuple()
	k := canon(t)
	cn := c.conns[k]
	created := cn == nil
	if created {
		cn = c.newConn(k, p)
	}
	retx := len(cn.retx)
	cn.note(p, t)
	p.Conn, p.Role = cn.id, cn.role(t)
	key := legKey{role: p.Role, dir: p.Dir, iface: c.cfg.L3(p.Iface)}
	newLeg := p.Type != capture.PacketOtherHost && !slices.Contains(cn.legKeys, key)
	// The first packets are kept as evidence, and after them the first of every new leg and
	// every reset, up to a bound: a long connection costs no more than a short one.
	if len(cn.obs) < maxObs || (newLeg || p.Flags&tcpRST != 0) && len(cn.obs) < maxObsHard {
		cn.obs = append(cn.obs, *p)
	}
	var out []Finding
	if created {
		// Link the connection to its conntrack entry, if it is known already.
		if e, ok := c.pending[k]; ok {
			out = append(out, c.link(e, p.Time)...)
		} else if e, ok := c.lookup(t, p.Time); ok {
			out = append(out, c.link(e, p.Time)...)
		}
		cn = c.conns[k] // linking may have merged it into another connection
		p.Conn, p.Role = cn.id, cn.role(t)
		out = append(out, c.checkBypass(cn, p.Time)...)
		key.role = p.Role
		newLeg = p.Type != capture.PacketOtherHost && !slices.Contains(cn.legKeys, key)
	}
	if newLeg {
		cn.legKeys = append(cn.legKeys, key)
		c.waiting[cn] = true
		if !created {
			// The stray reply may come after the client's reset of it, which opened the
			// connection (the two directions' rings interleave late under load).
			out = append(out, c.checkBypass(cn, p.Time)...)
		}
	}
	if created || newLeg || len(cn.retx) != retx || p.Flags&tcpRST != 0 {
		out = append(out, c.evaluate(cn, p.Time)...)
	}
	return c.record(out)
}

func (c *Correlator) newConn(k conntrack.Tuple, p *Packet) *conn {
	if len(c.conns) >= c.cfg.MaxConns {
		c.evict()
	}
	c.nextID++
	cn := &conn{id: c.nextID, proto: p.Proto, keys: []conntrack.Tuple{k}, first: p.Time, segs: map[segment]int{}, reported: map[string]bool{}}
	c.conns[k] = cn
	c.order = append(c.order, cn)
	for _, ep := range []netip.AddrPort{k.Src, k.Dst} {
		ek := endpointKey(k.Proto, ep)
		c.byEndpoint[ek] = append(c.byEndpoint[ek], cn)
	}
	return cn
}

// evict forgets the oldest tenth of the connections.
func (c *Correlator) evict() {
	n := max(len(c.order)/10, 1)
	for _, cn := range c.order[:n] {
		c.forget(cn)
	}
	c.order = slices.Delete(c.order, 0, n)
}

func (c *Correlator) forget(cn *conn) {
	for _, k := range cn.keys {
		if c.conns[k] == cn {
			delete(c.conns, k)
		}
		for _, ep := range []netip.AddrPort{k.Src, k.Dst} {
			ek := endpointKey(k.Proto, ep)
			c.byEndpoint[ek] = slices.DeleteFunc(c.byEndpoint[ek], func(x *conn) bool { return x == cn })
			if len(c.byEndpoint[ek]) == 0 {
				delete(c.byEndpoint, ek)
			}
		}
	}
	delete(c.waiting, cn)
}

// lookup asks conntrack for a tuple's entry, at most 200 times a second so that a flood of new
// flows does not turn into a flood of netlink requests.
func (c *Correlator) lookup(t conntrack.Tuple, now time.Time) (*conntrack.Entry, bool) {
	if c.cfg.Lookup == nil {
		return nil, false
	}
	if now.Sub(c.lookupAt) > time.Second {
		c.lookupAt, c.lookupN = now, 0
	}
	if c.lookupN >= 200 {
		return nil, false
	}
	c.lookupN++
	return c.cfg.Lookup(t)
}

// Conntrack adds a conntrack entry (from an event or a lookup): packets of its original and
// reply tuples become one connection.
func (c *Correlator) Conntrack(e conntrack.Entry, now time.Time) []Finding {
	return c.record(c.link(&e, now))
}

func (c *Correlator) link(e *conntrack.Entry, now time.Time) []Finding {
	k1, k2 := canon(e.Orig), canon(e.Reply)
	c1, c2 := c.conns[k1], c.conns[k2]
	if c1 == nil && c2 == nil {
		// No packet yet: keep the entry for when one comes.
		if _, ok := c.pending[k1]; !ok {
			if len(c.pendingQ) >= maxPending {
				if old := c.pending[c.pendingQ[0]]; old != nil {
					delete(c.pending, canon(old.Orig))
					delete(c.pending, canon(old.Reply))
				}
				c.pendingQ = c.pendingQ[1:]
			}
			c.pendingQ = append(c.pendingQ, k1)
		}
		c.pending[k1], c.pending[k2] = e, e
		return nil
	}
	delete(c.pending, k1)
	delete(c.pending, k2)
	cn := c1
	switch {
	case cn == nil:
		cn = c2
	case c2 != nil && c2 != c1:
		cn = c.merge(c1, c2)
	}
	for _, k := range []conntrack.Tuple{k1, k2} {
		if c.conns[k] == nil {
			c.conns[k] = cn
			cn.keys = append(cn.keys, k)
		}
	}
	cn.ct = e
	cn.client, cn.server, cn.pinned = e.Orig.Src, e.Orig.Dst, true
	cn.legKeys = cn.legKeys[:0]
	for i := range cn.obs {
		o := &cn.obs[i]
		o.Conn, o.Role = cn.id, cn.role(o.Tuple())
		if key := (legKey{role: o.Role, dir: o.Dir, iface: c.cfg.L3(o.Iface)}); o.Type != capture.PacketOtherHost && !slices.Contains(cn.legKeys, key) {
			cn.legKeys = append(cn.legKeys, key)
		}
	}
	c.waiting[cn] = true
	return c.evaluate(cn, now)
}

// merge moves b's packets into a (the older connection) and forgets b.
func (c *Correlator) merge(a, b *conn) *conn {
	if b.id < a.id {
		a, b = b, a
	}
	a.obs = append(a.obs, b.obs...)
	slices.SortStableFunc(a.obs, func(x, y Packet) int { return x.Time.Compare(y.Time) })
	if len(a.obs) > maxObsHard {
		a.obs = a.obs[:maxObsHard]
	}
	a.count += b.count
	a.retx = append(a.retx, b.retx...)
	for s, n := range b.segs {
		a.segs[s] += n
	}
	if b.first.Before(a.first) {
		a.first = b.first
	}
	if b.last.After(a.last) {
		a.last = b.last
	}
	for id := range b.reported {
		a.reported[id] = true
	}
	for _, k := range b.keys {
		c.conns[k] = a
		if !slices.Contains(a.keys, k) {
			a.keys = append(a.keys, k)
		}
	}
	for ek, list := range c.byEndpoint {
		if i := slices.Index(list, b); i >= 0 {
			if slices.Contains(list, a) {
				c.byEndpoint[ek] = slices.Delete(list, i, i+1)
			} else {
				list[i] = a
			}
		}
	}
	c.order = slices.DeleteFunc(c.order, func(x *conn) bool { return x == b })
	delete(c.waiting, b)
	c.waiting[a] = true
	return a
}

// note counts a packet, learns the client from it and spots retransmissions.
func (cn *conn) note(p *Packet, t conntrack.Tuple) {
	cn.count++
	if p.Time.After(cn.last) {
		cn.last = p.Time
	}
	if p.Time.Before(cn.first) {
		cn.first = p.Time
	}
	if !cn.pinned {
		switch {
		case p.Proto == unix.IPPROTO_TCP && p.Flags&(tcpSYN|tcpACK) == tcpSYN,
			p.isEcho() && t.Src.Port() != 0:
			cn.client, cn.server, cn.pinned = t.Src, t.Dst, true
		case p.Proto == unix.IPPROTO_TCP && p.Flags&(tcpSYN|tcpACK) == tcpSYN|tcpACK,
			p.isEcho() && t.Dst.Port() != 0:
			cn.client, cn.server, cn.pinned = t.Dst, t.Src, true
		case !cn.client.IsValid() || !p.Time.After(cn.first):
			// Guess: the earliest packet comes from the client.
			cn.client, cn.server = t.Src, t.Dst
		}
	}
	if p.Proto == unix.IPPROTO_TCP && (p.Payload > 0 || p.Flags&(tcpSYN|tcpFIN) != 0) {
		s := segment{iface: p.Iface, dir: p.Dir, src: p.Src, dst: p.Dst, seq: p.Seq, payload: p.Payload, synFin: p.Flags & (tcpSYN | tcpFIN | tcpACK)}
		if n, seen := cn.segs[s]; seen {
			cn.segs[s] = n + 1
			if len(cn.retx) < 8 {
				cn.retx = append(cn.retx, *p)
			}
		} else {
			if len(cn.segs) >= maxSegments {
				// Retransmissions come soon after the original: an old window can go.
				clear(cn.segs)
			}
			cn.segs[s] = 1
		}
	}
}

// role says whether a tuple travels as the connection's request or its reply.
func (cn *conn) role(t conntrack.Tuple) string {
	if e := cn.ct; e != nil {
		switch t {
		case e.Orig, e.Reply.Reverse():
			return RoleRequest
		case e.Reply, e.Orig.Reverse():
			return RoleReply
		}
	}
	switch {
	case t.Src == cn.client:
		return RoleRequest
	case t.Dst == cn.client:
		return RoleReply
	}
	return ""
}

// flow is the connection as the client opened it.
func (cn *conn) flow() conntrack.Tuple {
	if cn.ct != nil {
		return cn.ct.Orig
	}
	return conntrack.Tuple{Proto: cn.proto, Src: cn.client, Dst: cn.server}
}

// legs sorts the connection's packets by role and direction: the first packet of each
// (role, direction, layer-3 interface), in time order. Packets to other hosts that a
// promiscuous interface picked up are left out: the host's stack never handled them.
type legs struct {
	reqIn, reqOut, repIn, repOut []Packet
	request, reply               bool // roles seen
}

func (c *Correlator) legsOf(cn *conn) legs {
	var l legs
	var seen [8]legKey
	keys := seen[:0]
	for i := range cn.obs {
		p := &cn.obs[i]
		if p.Type == capture.PacketOtherHost {
			continue
		}
		role := cn.role(p.Tuple())
		if role == "" {
			continue
		}
		if role == RoleRequest {
			l.request = true
		} else {
			l.reply = true
		}
		key := legKey{role: role, dir: p.Dir, iface: c.cfg.L3(p.Iface)}
		if slices.Contains(keys, key) {
			continue
		}
		keys = append(keys, key)
		switch {
		case role == RoleRequest && p.Dir == capture.In:
			l.reqIn = append(l.reqIn, *p)
		case role == RoleRequest:
			l.reqOut = append(l.reqOut, *p)
		case p.Dir == capture.In:
			l.repIn = append(l.repIn, *p)
		default:
			l.repOut = append(l.repOut, *p)
		}
	}
	return l
}

// sharesIface reports whether two packet lists were seen on a common layer-3 interface.
func (c *Correlator) sharesIface(a, b []Packet) bool {
	for _, x := range a {
		for _, y := range b {
			if c.cfg.L3(x.Iface) == c.cfg.L3(y.Iface) {
				return true
			}
		}
	}
	return false
}

// evaluate makes the findings that need no waiting.
func (c *Correlator) evaluate(cn *conn, now time.Time) []Finding {
	var out []Finding
	l := c.legsOf(cn)
	if !cn.reported[FindingAsymmetricReturn] {
		switch {
		case len(l.reqIn) > 0 && len(l.repOut) > 0 && !c.sharesIface(l.reqIn, l.repOut):
			in, out2 := l.reqIn[0], l.repOut[0]
			f := c.finding(cn, FindingAsymmetricReturn, finding.SeverityError, now,
				fmt.Sprintf("the request came in on %s but the reply left by %s", c.cfg.L3(in.Iface), c.cfg.L3(out2.Iface)),
				[]Packet{in, out2})
			f.Ingress, f.Egress = c.cfg.L3(in.Iface), c.cfg.L3(out2.Iface)
			f.Evidence = append(f.Evidence,
				fmt.Sprintf("%s came in on %s", in.What(), in.Iface),
				fmt.Sprintf("%s left by %s", out2.What(), out2.Iface),
				fmt.Sprintf("the reply's source %s is what the client sees; a NAT or stateful firewall in front of %s never sees the reply and the client drops or resets it", conntrack.Endpoint(out2.Proto, out2.Src), f.Ingress))
			// The gateway of the uplink is the wizard's to find (or the trace's, in Complete);
			// a forwarded reply has no local address to choose a table by: connmark.
			args := []string{"--uplink", f.Ingress}
			if len(l.reqOut) > 0 {
				args = append(args, "--mode", "connmark")
			}
			f.Fix = finding.Fix{
				Summary: fmt.Sprintf("route replies back out of the interface the request came in on: a routing table per uplink and `ip rule add from <address on %s> table <its table>`, or mark connections by ingress (CONNMARK) and route by fwmark", f.Ingress),
				Wizard:  finding.WizardSourceReturn, Args: args,
			}
			out = append(out, f)
		case len(l.reqOut) > 0 && len(l.repIn) > 0 && !c.sharesIface(l.reqOut, l.repIn):
			o, in := l.reqOut[0], l.repIn[0]
			f := c.finding(cn, FindingAsymmetricReturn, finding.SeverityError, now,
				fmt.Sprintf("the request left by %s but the reply came back on %s", c.cfg.L3(o.Iface), c.cfg.L3(in.Iface)),
				[]Packet{o, in})
			f.Ingress, f.Egress = c.cfg.L3(in.Iface), c.cfg.L3(o.Iface)
			f.Evidence = append(f.Evidence,
				fmt.Sprintf("%s left by %s", o.What(), o.Iface),
				fmt.Sprintf("%s came in on %s", in.What(), in.Iface),
				fmt.Sprintf("strict rp_filter on %s drops such replies; a stateful firewall on the way may too", f.Ingress))
			f.Fix = finding.Fix{Summary: "make the request leave by the interface its replies come back on (policy routing by source), or loosen rp_filter on " + f.Ingress,
				Wizard: finding.WizardSourceReturn, Args: []string{"--uplink", f.Ingress}}
			out = append(out, f)
		}
	}
	if !cn.reported[FindingResetByPeer] {
		for _, p := range cn.obs {
			if p.Proto != unix.IPPROTO_TCP || p.Flags&tcpRST == 0 || p.Type == capture.PacketOtherHost {
				continue
			}
			role := cn.role(p.Tuple())
			who := "the server " + conntrack.Endpoint(p.Proto, p.Src)
			if role == RoleRequest {
				who = "the client " + conntrack.Endpoint(p.Proto, p.Src)
			}
			sev, summary := finding.SeverityWarning, who+" reset the connection"
			if role == RoleReply && !cn.handshake(c).synAck {
				sev, summary = finding.SeverityError, who+" refused the connection: it answered with a reset (nothing listens, or a REJECT rule)"
			}
			f := c.finding(cn, FindingResetByPeer, sev, now, summary, []Packet{p})
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s on %s %s", p.What(), p.Iface, p.Dir))
			f.Fix.Summary = "a reset ends a connection at once: look at the other findings of this connection for why it was sent"
			if sev == finding.SeverityError {
				f.Fix.Summary = fmt.Sprintf("check that a server listens on %s and that no REJECT rule matches the flow", conntrack.Endpoint(p.Proto, p.Src))
			}
			if l.request && role == RoleRequest && !cn.handshake(c).synAck {
				f.Evidence = append(f.Evidence, "the client resets what it did not ask for: a reply from an unexpected address or port gets a reset")
			}
			out = append(out, f)
			break
		}
	}
	if len(cn.retx) > 0 && !cn.reported[FindingRetransmits] {
		r := cn.retx[0]
		f := c.finding(cn, FindingRetransmits, finding.SeverityWarning, now,
			fmt.Sprintf("%s sent a segment again: what should answer it did not arrive", conntrack.Endpoint(r.Proto, r.Src)),
			append([]Packet{}, cn.retx...))
		for _, x := range cn.retx {
			f.Evidence = append(f.Evidence, fmt.Sprintf("again at %s on %s %s: %s", x.Time.Format("15:04:05.000000"), x.Iface, x.Dir, x.What()))
		}
		f.Fix.Summary = "find where the answer is lost: the other findings of this connection, or `roundtrip trace` of the flow on each host on the way"
		out = append(out, f)
	}
	return out
}

// handshakeState is how far a TCP connection got.
type handshakeState struct{ syn, synAck, ack bool }

func (cn *conn) handshake(c *Correlator) handshakeState {
	var h handshakeState
	for _, p := range cn.obs {
		if p.Proto != unix.IPPROTO_TCP || p.Type == capture.PacketOtherHost {
			continue
		}
		h.see(cn.role(p.Tuple()), p.Flags)
	}
	return h
}

// see takes one TCP segment of the connection, travelling as role, into account.
func (h *handshakeState) see(role string, flags uint8) {
	switch {
	case role == RoleRequest && flags&(tcpSYN|tcpACK) == tcpSYN:
		h.syn = true
	case role == RoleReply && flags&(tcpSYN|tcpACK) == tcpSYN|tcpACK:
		h.synAck = true
	case role == RoleRequest && h.synAck && flags&(tcpSYN|tcpACK|tcpRST) == tcpACK:
		h.ack = true
	}
}

// done reports whether the handshake finished.
func (h handshakeState) done() bool { return h.syn && h.synAck && h.ack }

// Completed reports whether the connection went through this host both ways: a TCP handshake
// that finished, or for other protocols a reply to a request.
func (cn *conn) completed(c *Correlator) bool {
	if cn.proto == unix.IPPROTO_TCP {
		return cn.handshake(c).done()
	}
	l := c.legsOf(cn)
	return l.request && l.reply
}

// Tick makes the findings that are due by now: packets that were not forwarded in time and
// forwarded requests whose reply did not come.
func (c *Correlator) Tick(now time.Time) []Finding {
	var out []Finding
	for cn := range c.waiting {
		if cn.reported[FindingForwardedNotSeen] && cn.reported[FindingReplyNotSeen] || now.Sub(cn.last) > 5*time.Minute {
			delete(c.waiting, cn)
			continue
		}
		out = append(out, c.checkTimed(cn, now)...)
	}
	slices.SortFunc(out, func(a, b Finding) int { return a.Conn - b.Conn })
	return c.record(out)
}

func (c *Correlator) checkTimed(cn *conn, now time.Time) []Finding {
	l := c.legsOf(cn)
	if len(l.reqIn) == 0 || l.reply {
		// Nothing to wait for: nothing came in to forward, or the reply came. A new leg
		// puts the connection back on the list.
		delete(c.waiting, cn)
		return nil
	}
	in := l.reqIn[0]
	switch {
	case len(l.reqOut) == 0 && !cn.reported[FindingForwardedNotSeen] && now.Sub(in.Time) >= c.cfg.ForwardWait:
		if in.Type != capture.PacketHost || c.cfg.Local == nil {
			delete(c.waiting, cn)
			return nil
		}
		// Ask conntrack before deciding: the packet may have left NATed, as another tuple.
		if cn.ct == nil {
			if e, ok := c.lookup(in.Tuple(), now); ok {
				out := c.link(e, now)
				cn = c.conns[canon(in.Tuple())]
				if len(c.legsOf(cn).reqOut) > 0 {
					return out
				}
			}
		}
		dst := in.Dst.Addr()
		if cn.ct != nil {
			dst = cn.ct.Reply.Src.Addr() // where the packet goes after DNAT
		}
		if c.cfg.Local(dst) || !dst.IsGlobalUnicast() {
			delete(c.waiting, cn)
			return nil // delivered here, or not forwardable anyway
		}
		delete(c.waiting, cn)
		f := c.finding(cn, FindingForwardedNotSeen, finding.SeverityError, now,
			fmt.Sprintf("the %s packet from %s to %s came in on %s and never left", inet.ProtoName(int(in.Proto)), conntrack.Endpoint(in.Proto, in.Src), conntrack.Endpoint(in.Proto, in.Dst), in.Iface), []Packet{in})
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s came in on %s", in.What(), in.Iface))
		f.Ingress = c.cfg.L3(in.Iface)
		f.Evidence = append(f.Evidence, fmt.Sprintf("no copy of it left by any captured interface within %s", c.cfg.ForwardWait))
		if c.cfg.Explain != nil {
			// Routing sees the bridge, not the port a frame came in by.
			if x, ok := c.cfg.Explain(in.Tuple(), c.cfg.L3(in.Iface)); ok {
				f.Cause = x.Cause
				f.Summary += ": " + x.Summary
				f.Evidence = append(f.Evidence, x.Evidence...)
				f.Fix = x.Fix
			}
		}
		if f.Cause == "" {
			f.Evidence = append(f.Evidence, "the model of this host finds no reason: a rule it cannot evaluate (nftables, ebtables, tc) or a bridge netfilter setting may drop it")
		}
		return []Finding{f}
	case len(l.reqOut) > 0 && !cn.reported[FindingReplyNotSeen] && now.Sub(l.reqOut[0].Time) >= c.cfg.ReplyWait:
		o := l.reqOut[0]
		// conntrack has the last word: a reply that passed on an interface not captured.
		delete(c.waiting, cn)
		if e, ok := c.lookup(o.Tuple(), now); ok {
			cn.ct = e
			if !e.Unreplied() {
				return nil
			}
		}
		f := c.finding(cn, FindingReplyNotSeen, finding.SeverityError, now,
			fmt.Sprintf("the request was forwarded by %s to %s and no reply came back through this host", o.Iface, conntrack.Endpoint(o.Proto, o.Dst)),
			[]Packet{in, o})
		f.Ingress, f.Egress = c.cfg.L3(in.Iface), c.cfg.L3(o.Iface)
		f.Evidence = append(f.Evidence,
			fmt.Sprintf("%s came in on %s", in.What(), in.Iface),
			fmt.Sprintf("%s left by %s", o.What(), o.Iface),
			fmt.Sprintf("no reply within %s", c.cfg.ReplyWait))
		if cn.ct != nil {
			f.Conntrack = cn.ct
			if cn.ct.Unreplied() {
				f.Evidence = append(f.Evidence, "conntrack has the connection as [UNREPLIED]: no reply passed through this host")
			}
		}
		client := in.Src.Addr()
		if f.Ingress == f.Egress {
			f.Summary += fmt.Sprintf(": the backend %s is on the same link as the client %s", o.Dst.Addr(), client)
			f.Evidence = append(f.Evidence, fmt.Sprintf("the request left by %s, the interface it came in on: the backend answers the client %s directly, not through this host", o.Iface, client))
		}
		if cn.ct != nil && cn.ct.DNAT() && !cn.ct.SNAT() {
			f.Evidence = append(f.Evidence, fmt.Sprintf("the connection is DNATed (to %s) but not SNATed: the reply goes from %s straight to %s, which expects %s and drops or resets it (reply bypasses NAT)",
				conntrack.Endpoint(o.Proto, cn.ct.Reply.Src), conntrack.Endpoint(o.Proto, cn.ct.Reply.Src), client, conntrack.Endpoint(o.Proto, cn.ct.Orig.Dst)))
			f.Fix = finding.PortForwardFix(fmt.Sprintf("also SNAT the forwarded traffic to this host's address so the reply comes back through it: %s -t nat -A POSTROUTING -d %s -p %s --dport %d -j SNAT --to-source %s",
				iptablesCmd(cn.ct.Orig.Dst.Addr()), cn.ct.Reply.Src.Addr(), inet.ProtoName(int(o.Proto)), cn.ct.Reply.Src.Port(), cn.ct.Orig.Dst.Addr()),
				finding.PortForwardArgs(int(o.Proto), f.Ingress, cn.ct.Orig.Dst, cn.ct.Reply.Src))
		} else {
			f.Fix = finding.Fix{Summary: fmt.Sprintf("check that %s answers and that its route back to %s points at this host; otherwise SNAT the forwarded traffic to this host's address", o.Dst.Addr(), o.Src.Addr()), Args: []string{}}
			if f.Ingress != f.Egress && o.Dst.Addr().Is4() {
				f.Fix.Wizard, f.Fix.Args = finding.WizardSNATGateway, []string{"--in", f.Ingress, "--out", f.Egress}
			} else {
				// One arm, or IPv6: no gateway for the wizard to set up; the rule is the fix.
				f.Fix.Summary += fmt.Sprintf(": %s -t nat -A POSTROUTING -s %s -d %s -o %s -j MASQUERADE", iptablesCmd(o.Dst.Addr()), o.Src.Addr(), o.Dst.Addr(), f.Egress)
			}
		}
		return []Finding{f}
	}
	return nil
}

// checkBypass pairs a client's request with a "reply" that came from an address or port the
// client never spoke to (seed 004: the backend answers the client directly around the DNAT).
func (c *Correlator) checkBypass(cn *conn, now time.Time) []Finding {
	var out []Finding
	for _, ep := range []netip.AddrPort{cn.keys[0].Src, cn.keys[0].Dst} {
		for _, other := range c.byEndpoint[endpointKey(cn.proto, ep)] {
			if other == cn {
				continue
			}
			for _, pair := range [2][2]*conn{{cn, other}, {other, cn}} {
				if f, ok := c.bypass(pair[0], pair[1], ep, now); ok {
					out = append(out, f)
				}
			}
		}
	}
	return out
}

// bypass reports whether req is a client's connection from ep and stray holds only packets
// to ep from elsewhere: replies that bypassed the NAT the client spoke through.
func (c *Correlator) bypass(req, stray *conn, ep netip.AddrPort, now time.Time) (Finding, bool) {
	if req.reported[FindingReplyBypassesNAT] || req.client != ep || !req.pinned && req.proto == unix.IPPROTO_TCP {
		return Finding{}, false
	}
	var request *Packet
	for i := range req.obs {
		if req.obs[i].Tuple().Src == ep {
			request = &req.obs[i]
			break
		}
	}
	if request == nil {
		return Finding{}, false
	}
	var reply *Packet
	for i := range stray.obs {
		p := &stray.obs[i]
		t := p.Tuple()
		if t.Src == ep {
			if p.Proto == unix.IPPROTO_TCP && p.Flags&tcpRST != 0 {
				// The client's reset of the stray reply: the two capture rings may hand it
				// over before the reply it answers, but it is no sign of a connection.
				continue
			}
			return Finding{}, false // the client spoke to this peer itself
		}
		if t.Dst != ep || t.Src == req.server {
			continue
		}
		if p.Proto == unix.IPPROTO_TCP && p.Flags&(tcpSYN|tcpACK) == tcpSYN {
			continue // a new connection to the client, not a reply
		}
		if req.ct != nil && req.ct.Has(t) {
			return Finding{}, false
		}
		reply = p
		break
	}
	if reply == nil {
		return Finding{}, false
	}
	f := c.finding(req, FindingReplyBypassesNAT, finding.SeverityError, now,
		fmt.Sprintf("the reply came from %s but the client %s spoke to %s", conntrack.Endpoint(reply.Proto, reply.Src), conntrack.Endpoint(request.Proto, ep), conntrack.Endpoint(request.Proto, request.Dst)),
		[]Packet{*request, *reply})
	f.Ingress, f.Egress = request.Iface, reply.Iface
	f.Evidence = append(f.Evidence,
		fmt.Sprintf("%s on %s %s", request.What(), request.Iface, request.Dir),
		fmt.Sprintf("%s on %s %s", reply.What(), reply.Iface, reply.Dir),
		"the server behind a DNAT answered the client directly: its reply never went back through the NAT, so its source was never rewritten")
	// This host DNATs when conntrack says so; otherwise the NAT is another host's, and the
	// wizard runs there: the client spoke to request.Dst, the backend answered from reply.Src.
	listen, backend, in, where := request.Dst, reply.Src, "", "on the host that DNATs "+conntrack.Endpoint(request.Proto, request.Dst)
	if req.ct != nil && req.ct.DNAT() {
		listen, backend, in, where = req.ct.Orig.Dst, req.ct.Reply.Src, c.cfg.L3(request.Iface), "on this host, which DNATs "+conntrack.Endpoint(request.Proto, request.Dst)
	}
	f.Fix = finding.PortForwardFix(where+": also SNAT the forwarded traffic to its own address so that replies return through it",
		finding.PortForwardArgs(int(request.Proto), in, listen, backend))
	return f, true
}

func iptablesCmd(a netip.Addr) string {
	if a.Is4() {
		return "iptables"
	}
	return "ip6tables"
}

// finding starts a finding about a connection and marks it reported.
func (c *Correlator) finding(cn *conn, id, severity string, now time.Time, summary string, pkts []Packet) Finding {
	cn.reported[id] = true
	for i := range pkts {
		pkts[i].Conn, pkts[i].Role = cn.id, cn.role(pkts[i].Tuple())
	}
	f := Finding{
		Finding:   finding.Finding{ID: id, Severity: severity, Summary: summary, Evidence: []string{}, Fix: finding.Fix{Args: []string{}}},
		Time:      now,
		Conn:      cn.id,
		Flow:      cn.flow(),
		Packets:   pkts,
		Conntrack: cn.ct,
	}
	c.counts[severity]++
	return f
}

// record completes the findings that are about to be reported and keeps them for Findings. A
// finding is only kept once it is whole: the evidence and the fix are added after finding()
// starts it.
func (c *Correlator) record(out []Finding) []Finding {
	for i := range out {
		if c.cfg.Complete != nil {
			c.cfg.Complete(&out[i])
		}
		if len(c.findings) < maxFindings {
			c.findings = append(c.findings, out[i])
		}
	}
	return out
}

// Findings returns the findings made so far (the first 10000 of them).
func (c *Correlator) Findings() []Finding { return c.findings }

// Counts returns how many findings were made, by severity.
func (c *Correlator) Counts() map[string]int { return c.counts }

// ConnSummary describes one connection at the end of a capture.
type ConnSummary struct {
	ID        int              `json:"id"`
	Flow      conntrack.Tuple  `json:"flow"`
	Packets   int              `json:"packets"`
	Path      []string         `json:"path"` // "eth0 in request", ... in time order
	Completed bool             `json:"completed"`
	Conntrack *conntrack.Entry `json:"conntrack,omitempty"`
	Findings  []string         `json:"findings,omitempty"`
}

// Conns summarises the connections, oldest first.
func (c *Correlator) Conns() []ConnSummary {
	out := make([]ConnSummary, 0, len(c.order))
	for _, cn := range c.order {
		s := ConnSummary{ID: cn.id, Flow: cn.flow(), Packets: cn.count, Completed: cn.completed(c), Conntrack: cn.ct}
		seen := map[string]bool{}
		for _, p := range cn.obs {
			step := fmt.Sprintf("%s %s %s", p.Iface, p.Dir, cn.role(p.Tuple()))
			if !seen[step] {
				seen[step] = true
				s.Path = append(s.Path, strings.TrimSpace(step))
			}
		}
		for id := range cn.reported {
			s.Findings = append(s.Findings, id)
		}
		slices.Sort(s.Findings)
		out = append(out, s)
	}
	return out
}
