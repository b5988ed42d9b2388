package nft

import (
	"net/netip"
)

// Packet is what the evaluator may ask about a packet at the hook a chain runs on. A method
// that returns ok=false says the caller does not know (a field the trace cannot tell, such as
// the TTL): an expression that depends on it makes the outcome uncertain, never a guess.
// Presence is separate from knowledge where the kernel distinguishes them: a packet in the
// output hook has no input interface (Iif returns present=false, known=true).
type Packet interface {
	// NFProto is the packet's layer-3 protocol: 2 (IPv4) or 10 (IPv6).
	NFProto() uint8
	// L4Proto is the IP protocol (6 tcp, 17 udp, 1 icmp, 58 icmpv6, ...).
	L4Proto() uint8
	Addrs() (src, dst netip.Addr)
	// Ports returns the transport ports (tcp, udp, udplite, sctp, dccp); ok is false for
	// protocols without ports.
	Ports() (sport, dport uint16, ok bool)
	// Iif and Oif return the input and output interface; present is false where the hook has
	// none (no input interface on output, no output interface before routing).
	Iif() (ifc Iface, present bool)
	Oif() (ifc Iface, present bool)
	Mark() uint32
	// Conntrack returns the packet's conntrack entry; attached is false before the conntrack
	// hook has run (priority -200 in prerouting and output) and for untracked packets
	// (CT.Untracked tells which).
	Conntrack() (ct CT, attached bool)
	// Socket returns the owner of a locally generated packet: present is false for forwarded
	// packets, known is false when the caller cannot tell the uid.
	Socket() (uid, gid uint32, present, known bool)
	TCPFlags() (flags uint8, ok bool)
	ICMP() (typ, code uint8, ok bool)
	// Length is the IP packet length (the network header on); ok is false when unknown.
	Length() (uint32, bool)
	// FIB answers a `fib` expression's route lookup; ok is false when the caller cannot.
	FIB(q FIBQuery) (FIBResult, bool)
	// Extra returns the value of any other meta or ct key by nft's name ("meta priority",
	// "ct zone", "ip ttl", "ip dscp", ...) in the byte layout the kernel loads it in, for
	// callers that know more than the methods above can say; ok=false is "unknown".
	Extra(key string) ([]byte, bool)
}

// Iface is an interface as meta iif/iifname/iiftype/iifgroup/iifkind see it.
type Iface struct {
	Name  string
	Index uint32
	// Type is the ARPHRD type (1 ether, 772 loopback); 0 unknown.
	Type uint16
	// Group is the device group; GroupKnown says whether it was given.
	Group      uint32
	GroupKnown bool
	// Kind is the link kind ("veth", "bridge", ...), "" unknown.
	Kind string
	// Bridge is the bridge the interface is a port of (meta ibrname/obrname), "" none.
	Bridge string
}

// CT is a conntrack entry as the ct expression sees it from this packet.
type CT struct {
	// State is "new", "established", "related" or "invalid" for a tracked packet.
	State string
	// Reply is true when the packet travels in the reply direction.
	Reply bool
	// Status holds IPS_* bits (seen-reply 2, assured 4, confirmed 8, snat 16, dnat 32, ...).
	Status uint32
	Mark   uint32
	Zone   uint16
	Helper string
	Orig   Tuple
	ReplyT Tuple
	// Untracked is set for a packet marked untracked (notrack): ct state is "untracked".
	Untracked bool
}

// Tuple is one direction of a conntrack entry.
type Tuple struct {
	Src, Dst     netip.Addr
	SPort, DPort uint16
	Proto        uint8
}

// FIBQuery is a `fib` expression's lookup: which address of the packet is looked up
// (Daddr, else Saddr), whether the mark and the input/output interface take part, and what
// is asked (Result: "oif", "oifname", "type").
type FIBQuery struct {
	Saddr, Daddr bool
	Mark         bool
	Iif, Oif     bool
	Result       string
}

// FIBResult answers a FIBQuery: the output interface (Index 0 when there is no route, or for
// "type" queries) and the address type ("local", "unicast", "broadcast", "multicast", ...).
type FIBResult struct {
	Oif      Iface
	AddrType string
}

// PacketInfo is a plain Packet: fields the caller fills, with a flag per optional field.
type PacketInfo struct {
	Proto        uint8 // NFProto: 2 or 10
	L4           uint8
	Src, Dst     netip.Addr
	SPort, DPort uint16
	HasPorts     bool
	In, Out      *Iface
	FwMark       uint32
	CTEntry      *CT
	UID, GID     uint32
	HasSocket    bool
	UIDKnown     bool
	Flags        uint8
	HasFlags     bool
	ICMPType     uint8
	ICMPCode     uint8
	HasICMP      bool
	Len          uint32
	HasLen       bool
	FIBFunc      func(FIBQuery) (FIBResult, bool)
	Extras       map[string][]byte
}

// NFProto implements Packet.
func (p *PacketInfo) NFProto() uint8 { return p.Proto }

// L4Proto implements Packet.
func (p *PacketInfo) L4Proto() uint8 { return p.L4 }

// Addrs implements Packet.
func (p *PacketInfo) Addrs() (netip.Addr, netip.Addr) { return p.Src, p.Dst }

// Ports implements Packet.
func (p *PacketInfo) Ports() (uint16, uint16, bool) { return p.SPort, p.DPort, p.HasPorts }

// Iif implements Packet.
func (p *PacketInfo) Iif() (Iface, bool) {
	if p.In == nil {
		return Iface{}, false
	}
	return *p.In, true
}

// Oif implements Packet.
func (p *PacketInfo) Oif() (Iface, bool) {
	if p.Out == nil {
		return Iface{}, false
	}
	return *p.Out, true
}

// Mark implements Packet.
func (p *PacketInfo) Mark() uint32 { return p.FwMark }

// Conntrack implements Packet.
func (p *PacketInfo) Conntrack() (CT, bool) {
	if p.CTEntry == nil {
		return CT{}, false
	}
	return *p.CTEntry, !p.CTEntry.Untracked
}

// Socket implements Packet.
func (p *PacketInfo) Socket() (uint32, uint32, bool, bool) {
	return p.UID, p.GID, p.HasSocket, p.UIDKnown
}

// TCPFlags implements Packet.
func (p *PacketInfo) TCPFlags() (uint8, bool) { return p.Flags, p.HasFlags }

// ICMP implements Packet.
func (p *PacketInfo) ICMP() (uint8, uint8, bool) { return p.ICMPType, p.ICMPCode, p.HasICMP }

// Length implements Packet.
func (p *PacketInfo) Length() (uint32, bool) { return p.Len, p.HasLen }

// FIB implements Packet.
func (p *PacketInfo) FIB(q FIBQuery) (FIBResult, bool) {
	if p.FIBFunc == nil {
		return FIBResult{}, false
	}
	return p.FIBFunc(q)
}

// Extra implements Packet.
func (p *PacketInfo) Extra(key string) ([]byte, bool) {
	v, ok := p.Extras[key]
	return v, ok
}

// overlay is the packet as the chains of one hook have changed it so far: a mark set by an
// earlier rule or chain, a ct mark, the NAT already applied, notrack.
type overlay struct {
	Packet
	mark      *uint32
	ctMark    *uint32
	untracked bool
	src, dst  *netip.Addr
	sport     *uint16
	dport     *uint16
	nftrace   bool
}

func (o *overlay) Mark() uint32 {
	if o.mark != nil {
		return *o.mark
	}
	return o.Packet.Mark()
}

func (o *overlay) Conntrack() (CT, bool) {
	ct, ok := o.Packet.Conntrack()
	if o.untracked {
		return CT{Untracked: true}, false
	}
	if ok && o.ctMark != nil {
		ct.Mark = *o.ctMark
	}
	return ct, ok
}

func (o *overlay) Addrs() (netip.Addr, netip.Addr) {
	s, d := o.Packet.Addrs()
	if o.src != nil {
		s = *o.src
	}
	if o.dst != nil {
		d = *o.dst
	}
	return s, d
}

func (o *overlay) Ports() (uint16, uint16, bool) {
	s, d, ok := o.Packet.Ports()
	if o.sport != nil {
		s = *o.sport
	}
	if o.dport != nil {
		d = *o.dport
	}
	return s, d, ok
}
