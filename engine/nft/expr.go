package nft

// Expr is one expression of a rule, as the kernel runs it: exactly one field is set. The
// expressions work on registers (Reg fields hold the kernel's register numbers: 0 is the
// verdict register, 1-4 the 16-byte registers, 8-23 the 4-byte ones), so that evaluating them
// in order reproduces nft_do_chain, and rendering them reproduces `nft list`.
type Expr struct {
	Payload     *Payload     `json:"payload,omitempty"`
	Meta        *Meta        `json:"meta,omitempty"`
	Ct          *Ct          `json:"ct,omitempty"`
	Cmp         *Cmp         `json:"cmp,omitempty"`
	Bitwise     *Bitwise     `json:"bitwise,omitempty"`
	Byteorder   *Byteorder   `json:"byteorder,omitempty"`
	Range       *Range       `json:"range,omitempty"`
	Lookup      *Lookup      `json:"lookup,omitempty"`
	Immediate   *Immediate   `json:"immediate,omitempty"`
	Verdict     *Verdict     `json:"verdict,omitempty"`
	Nat         *Nat         `json:"nat,omitempty"`
	Fib         *Fib         `json:"fib,omitempty"`
	Limit       *Limit       `json:"limit,omitempty"`
	Quota       *Quota       `json:"quota,omitempty"`
	Connlimit   *Connlimit   `json:"connlimit,omitempty"`
	Counter     *Counter     `json:"counter,omitempty"`
	Log         *Log         `json:"log,omitempty"`
	Notrack     *Notrack     `json:"notrack,omitempty"`
	FlowOffload *FlowOffload `json:"flow_offload,omitempty"`
	Reject      *Reject      `json:"reject,omitempty"`
	Queue       *Queue       `json:"queue,omitempty"`
	Dynset      *Dynset      `json:"dynset,omitempty"`
	Exthdr      *Exthdr      `json:"exthdr,omitempty"`
	Numgen      *Numgen      `json:"numgen,omitempty"`
	Hash        *Hash        `json:"hash,omitempty"`
	Objref      *Objref      `json:"objref,omitempty"`
	Rt          *Rt          `json:"rt,omitempty"`
	Socket      *Socket      `json:"socket,omitempty"`
	Xt          *Xt          `json:"xt,omitempty"`
	Unknown     *Unknown     `json:"unknown,omitempty"`
}

// Payload loads Len bytes at Offset from a header into Dreg, or (Set) writes Sreg there,
// fixing the checksum as CsumType says.
type Payload struct {
	// Base is "ll", "network", "transport" or "inner".
	Base   string `json:"base"`
	Offset uint32 `json:"offset"`
	Len    uint32 `json:"len"`
	Dreg   uint32 `json:"dreg,omitempty"`
	Set    bool   `json:"set,omitempty"`
	Sreg   uint32 `json:"sreg,omitempty"`
	// CsumType is 0 (none), 1 (inet); CsumOffset where the checksum is; CsumFlags 1 = L4 too.
	CsumType   uint32 `json:"csum_type,omitempty"`
	CsumOffset uint32 `json:"csum_offset,omitempty"`
	CsumFlags  uint32 `json:"csum_flags,omitempty"`
}

// Meta loads a packet's meta key into Dreg, or (Set) sets it from Sreg (`meta mark set`).
type Meta struct {
	Key  string `json:"key"` // nft's name of the key: "mark", "iifname", "l4proto", ...
	Dreg uint32 `json:"dreg,omitempty"`
	Set  bool   `json:"set,omitempty"`
	Sreg uint32 `json:"sreg,omitempty"`
}

// Ct loads a conntrack key into Dreg, or (Set) sets it from Sreg (`ct mark set`).
type Ct struct {
	Key string `json:"key"` // "state", "status", "mark", "saddr", "proto-dst", ...
	// Dir is "original" or "reply" for the keys that have a direction, else "".
	Dir  string `json:"dir,omitempty"`
	Dreg uint32 `json:"dreg,omitempty"`
	Set  bool   `json:"set,omitempty"`
	Sreg uint32 `json:"sreg,omitempty"`
}

// Cmp compares Sreg's first len(Data) bytes with Data (memcmp order).
type Cmp struct {
	Op   string `json:"op"` // "eq", "neq", "lt", "lte", "gt", "gte"
	Sreg uint32 `json:"sreg"`
	Data Bytes  `json:"data"`
}

// Bitwise computes Dreg = (Sreg & Mask) ^ Xor (Op "bool"), or shifts each 32-bit word of Sreg
// by Shift bits (Op "lshift"/"rshift"), over Len bytes.
type Bitwise struct {
	Op    string `json:"op"`
	Sreg  uint32 `json:"sreg"`
	Dreg  uint32 `json:"dreg"`
	Len   uint32 `json:"len"`
	Mask  Bytes  `json:"mask,omitempty"`
	Xor   Bytes  `json:"xor,omitempty"`
	Shift uint32 `json:"shift,omitempty"`
}

// Byteorder converts Len bytes of Sreg between host and network order in units of Size bytes.
type Byteorder struct {
	Op   string `json:"op"` // "ntoh" or "hton"
	Sreg uint32 `json:"sreg"`
	Dreg uint32 `json:"dreg"`
	Len  uint32 `json:"len"`
	Size uint32 `json:"size"`
}

// Range matches when From <= Sreg <= To (Op "eq"), or outside it (Op "neq").
type Range struct {
	Op   string `json:"op"`
	Sreg uint32 `json:"sreg"`
	From Bytes  `json:"from"`
	To   Bytes  `json:"to"`
}

// Lookup looks Sreg up in Set: a set match (Invert: `!=`), or with Dreg a map lookup whose
// value goes to Dreg (0: a verdict map, the value is the verdict).
type Lookup struct {
	Set     string `json:"set"`
	Sreg    uint32 `json:"sreg"`
	HasDreg bool   `json:"has_dreg,omitempty"`
	Dreg    uint32 `json:"dreg,omitempty"`
	Invert  bool   `json:"invert,omitempty"`
}

// Immediate loads Data into Dreg.
type Immediate struct {
	Dreg uint32 `json:"dreg"`
	Data Bytes  `json:"data"`
}

// Verdict is a verdict: "accept", "drop", "continue", "return", "jump", "goto", "queue" or
// "break"; Chain is the target of jump and goto.
type Verdict struct {
	Kind  string `json:"kind"`
	Chain string `json:"chain,omitempty"`
}

// Nat is dnat, snat, masquerade or redirect. The address and port bounds are taken from the
// registers named (0: not given); Family is "ip" or "ip6" (dnat/snat only).
type Nat struct {
	Type        string `json:"type"` // "snat", "dnat", "masquerade", "redirect"
	Family      string `json:"family,omitempty"`
	RegAddrMin  uint32 `json:"reg_addr_min,omitempty"`
	RegAddrMax  uint32 `json:"reg_addr_max,omitempty"`
	RegProtoMin uint32 `json:"reg_proto_min,omitempty"`
	RegProtoMax uint32 `json:"reg_proto_max,omitempty"`
	// Flags are the kernel's NF_NAT_RANGE_* flags by name: "map-ips", "proto-specified",
	// "random", "persistent", "fully-random", "proto-offset", "netmap".
	Flags []string `json:"flags,omitempty"`
}

// Fib looks the packet up in the routing table (`fib saddr . iif oif`): Flags say which
// fields form the query, Result what is loaded into Dreg.
type Fib struct {
	Result string   `json:"result"` // "oif", "oifname", "type"
	Flags  []string `json:"flags"`  // "saddr", "daddr", "mark", "iif", "oif", "present"
	Dreg   uint32   `json:"dreg"`
}

// Limit is a rate limit: matches while under Rate per Unit seconds (Over inverts).
type Limit struct {
	Type  string `json:"type"` // "packets" or "bytes"
	Rate  uint64 `json:"rate"`
	Unit  uint64 `json:"unit"` // seconds
	Burst uint32 `json:"burst,omitempty"`
	Over  bool   `json:"over,omitempty"`
}

// Quota matches until Bytes have passed (Over: after).
type Quota struct {
	Bytes    uint64 `json:"bytes"`
	Consumed uint64 `json:"consumed,omitempty"`
	Over     bool   `json:"over,omitempty"`
}

// Connlimit matches by the number of connections in the set element (`ct count`).
type Connlimit struct {
	Count uint32 `json:"count"`
	Over  bool   `json:"over,omitempty"`
}

// Counter counts packets and bytes.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Log logs the packet.
type Log struct {
	Prefix     string   `json:"prefix,omitempty"`
	Level      *uint32  `json:"level,omitempty"`
	Group      *uint16  `json:"group,omitempty"`
	Snaplen    uint32   `json:"snaplen,omitempty"`
	QThreshold uint16   `json:"qthreshold,omitempty"`
	Flags      []string `json:"flags,omitempty"` // "tcp sequence", "tcp options", "ip options", "skuid", "ether"
}

// Notrack marks the packet untracked (`notrack`).
type Notrack struct{}

// FlowOffload adds the flow to a flowtable (`flow add @name`).
type FlowOffload struct {
	Table string `json:"table"`
}

// Reject rejects the packet: Type "icmp" (ICMP unreachable with Code), "tcp reset" or
// "icmpx" (family-independent Code).
type Reject struct {
	Type string `json:"type"`
	Code uint8  `json:"code"`
}

// Queue passes the packet to user space queue Num (..Num+Total-1), or from Sreg.
type Queue struct {
	Num   uint16   `json:"num"`
	Total uint16   `json:"total,omitempty"`
	Flags []string `json:"flags,omitempty"` // "bypass", "fanout"
	Sreg  uint32   `json:"sreg,omitempty"`
}

// Dynset adds or updates the key in SregKey (and data in SregData) in Set at run time
// (`add @s { ip saddr }`), optionally with expressions attached to the element.
type Dynset struct {
	Set       string `json:"set"`
	Op        string `json:"op"` // "add", "update", "delete"
	SregKey   uint32 `json:"sreg_key"`
	SregData  uint32 `json:"sreg_data,omitempty"`
	TimeoutMS uint64 `json:"timeout_ms,omitempty"`
	Invert    bool   `json:"invert,omitempty"`
	Exprs     []Expr `json:"exprs,omitempty"`
}

// Exthdr loads (or sets) an extension header or option field: Op "ipv6", "tcpopt", "ipv4",
// "sctp", "dccp"; Type the header/option number.
type Exthdr struct {
	Op     string `json:"op"`
	Type   uint8  `json:"type"`
	Offset uint32 `json:"offset"`
	Len    uint32 `json:"len"`
	Flags  uint32 `json:"flags,omitempty"` // 1: present (load a boolean)
	Dreg   uint32 `json:"dreg,omitempty"`
	Set    bool   `json:"set,omitempty"`
	Sreg   uint32 `json:"sreg,omitempty"`
}

// Numgen loads a number (incrementing or random) modulo Modulus plus Offset.
type Numgen struct {
	Type    string `json:"type"` // "inc" or "random"
	Modulus uint32 `json:"modulus"`
	Offset  uint32 `json:"offset,omitempty"`
	Dreg    uint32 `json:"dreg"`
}

// Hash loads a hash of Sreg (jhash) or of the flow (symhash) modulo Modulus.
type Hash struct {
	Type    string `json:"type"` // "jhash" or "symhash"
	Sreg    uint32 `json:"sreg,omitempty"`
	Dreg    uint32 `json:"dreg"`
	Len     uint32 `json:"len,omitempty"`
	Modulus uint32 `json:"modulus"`
	Seed    uint32 `json:"seed,omitempty"`
	HasSeed bool   `json:"has_seed,omitempty"`
	Offset  uint32 `json:"offset,omitempty"`
}

// Objref references a named object (`counter name "x"`, `ct helper set "ftp"`), directly or
// through an object map looked up with Sreg.
type Objref struct {
	Type string `json:"type,omitempty"` // "counter", "quota", "ct helper", "limit", ...
	Name string `json:"name,omitempty"`
	Set  string `json:"set,omitempty"`
	Sreg uint32 `json:"sreg,omitempty"`
}

// Rt loads routing information of the packet (`rt nexthop`, `rt mtu`).
type Rt struct {
	Key  string `json:"key"` // "classid", "nexthop", "nexthop6", "mtu", "ipsec"
	Dreg uint32 `json:"dreg"`
}

// Socket loads a property of the packet's socket (`socket transparent`).
type Socket struct {
	Key   string `json:"key"` // "transparent", "mark", "wildcard", "cgroupv2"
	Level uint32 `json:"level,omitempty"`
	Dreg  uint32 `json:"dreg"`
}

// Xt is an iptables-nft compat match or target (xt_*): the rule was written by
// iptables-nft with an extension that has no native nftables equivalent.
type Xt struct {
	Kind string `json:"kind"` // "match" or "target"
	Name string `json:"name"`
	Rev  uint32 `json:"rev"`
	Info Bytes  `json:"info,omitempty"`
}

// Unknown is an expression roundtrip cannot model. Text is how nft shows it (from `nft -j`
// when it could be read), so that a trace can name it.
type Unknown struct {
	Name string `json:"name"`
	Raw  Bytes  `json:"raw,omitempty"`
	Text string `json:"text,omitempty"`
}

// Kind names the expression's type ("payload", "cmp", ...), or "" if no field is set.
func (e *Expr) Kind() string {
	switch {
	case e.Payload != nil:
		return "payload"
	case e.Meta != nil:
		return "meta"
	case e.Ct != nil:
		return "ct"
	case e.Cmp != nil:
		return "cmp"
	case e.Bitwise != nil:
		return "bitwise"
	case e.Byteorder != nil:
		return "byteorder"
	case e.Range != nil:
		return "range"
	case e.Lookup != nil:
		return "lookup"
	case e.Immediate != nil:
		return "immediate"
	case e.Verdict != nil:
		return "verdict"
	case e.Nat != nil:
		return "nat"
	case e.Fib != nil:
		return "fib"
	case e.Limit != nil:
		return "limit"
	case e.Quota != nil:
		return "quota"
	case e.Connlimit != nil:
		return "connlimit"
	case e.Counter != nil:
		return "counter"
	case e.Log != nil:
		return "log"
	case e.Notrack != nil:
		return "notrack"
	case e.FlowOffload != nil:
		return "flow_offload"
	case e.Reject != nil:
		return "reject"
	case e.Queue != nil:
		return "queue"
	case e.Dynset != nil:
		return "dynset"
	case e.Exthdr != nil:
		return "exthdr"
	case e.Numgen != nil:
		return "numgen"
	case e.Hash != nil:
		return "hash"
	case e.Objref != nil:
		return "objref"
	case e.Rt != nil:
		return "rt"
	case e.Socket != nil:
		return "socket"
	case e.Xt != nil:
		return "xt"
	case e.Unknown != nil:
		return "unknown"
	}
	return ""
}

// count returns how many fields are set (exactly one is valid).
func (e *Expr) count() int {
	n := 0
	for _, set := range []bool{e.Payload != nil, e.Meta != nil, e.Ct != nil, e.Cmp != nil,
		e.Bitwise != nil, e.Byteorder != nil, e.Range != nil, e.Lookup != nil, e.Immediate != nil,
		e.Verdict != nil, e.Nat != nil, e.Fib != nil, e.Limit != nil, e.Quota != nil,
		e.Connlimit != nil, e.Counter != nil, e.Log != nil, e.Notrack != nil, e.FlowOffload != nil,
		e.Reject != nil, e.Queue != nil, e.Dynset != nil, e.Exthdr != nil, e.Numgen != nil,
		e.Hash != nil, e.Objref != nil, e.Rt != nil, e.Socket != nil, e.Xt != nil, e.Unknown != nil} {
		if set {
			n++
		}
	}
	return n
}
