package nft

// field is one header field: its offset and length in bits from the header's start and the
// datatype nft prints its values with (after nftables src/proto.c).
type field struct {
	name   string
	off    uint32 // bits
	bits   uint32
	dtype  string
	prefix bool // nft prints masked matches as address prefixes
}

// proto is a header nft knows by name, at a base ("ll", "network", "transport").
type proto struct {
	name   string
	base   string
	fields []field
	// l4 is the IP protocol number (transport headers), ethertype the LL protocol (network
	// headers) that select this header.
	l4        uint8
	ethertype uint16
	nfproto   uint8 // network headers: NFPROTO_IPV4/IPV6
}

var protoEther = &proto{name: "ether", base: "ll", fields: []field{
	{name: "daddr", off: 0, bits: 48, dtype: "ether_addr"},
	{name: "saddr", off: 48, bits: 48, dtype: "ether_addr"},
	{name: "type", off: 96, bits: 16, dtype: "ether_type"},
}}

var protoIP = &proto{name: "ip", base: "network", ethertype: 0x0800, nfproto: 2, fields: []field{
	{name: "version", off: 0, bits: 4, dtype: "integer"},
	{name: "hdrlength", off: 4, bits: 4, dtype: "integer"},
	{name: "dscp", off: 8, bits: 6, dtype: "dscp"},
	{name: "ecn", off: 14, bits: 2, dtype: "ecn"},
	{name: "length", off: 16, bits: 16, dtype: "integer"},
	{name: "id", off: 32, bits: 16, dtype: "integer"},
	{name: "frag-off", off: 48, bits: 16, dtype: "integer"},
	{name: "ttl", off: 64, bits: 8, dtype: "integer"},
	{name: "protocol", off: 72, bits: 8, dtype: "inet_proto"},
	{name: "checksum", off: 80, bits: 16, dtype: "integer"},
	{name: "saddr", off: 96, bits: 32, dtype: "ipv4_addr", prefix: true},
	{name: "daddr", off: 128, bits: 32, dtype: "ipv4_addr", prefix: true},
}}

var protoIP6 = &proto{name: "ip6", base: "network", ethertype: 0x86dd, nfproto: 10, fields: []field{
	{name: "version", off: 0, bits: 4, dtype: "integer"},
	{name: "dscp", off: 4, bits: 6, dtype: "dscp"},
	{name: "ecn", off: 10, bits: 2, dtype: "ecn"},
	{name: "flowlabel", off: 12, bits: 20, dtype: "integer"},
	{name: "length", off: 32, bits: 16, dtype: "integer"},
	{name: "nexthdr", off: 48, bits: 8, dtype: "inet_proto"},
	{name: "hoplimit", off: 56, bits: 8, dtype: "integer"},
	{name: "saddr", off: 64, bits: 128, dtype: "ipv6_addr", prefix: true},
	{name: "daddr", off: 192, bits: 128, dtype: "ipv6_addr", prefix: true},
}}

var protoARP = &proto{name: "arp", base: "network", ethertype: 0x0806, fields: []field{
	{name: "htype", off: 0, bits: 16, dtype: "integer"},
	{name: "ptype", off: 16, bits: 16, dtype: "ether_type"},
	{name: "hlen", off: 32, bits: 8, dtype: "integer"},
	{name: "plen", off: 40, bits: 8, dtype: "integer"},
	{name: "operation", off: 48, bits: 16, dtype: "arp_op"},
	{name: "saddr ether", off: 64, bits: 48, dtype: "ether_addr"},
	{name: "saddr ip", off: 112, bits: 32, dtype: "ipv4_addr", prefix: true},
	{name: "daddr ether", off: 144, bits: 48, dtype: "ether_addr"},
	{name: "daddr ip", off: 192, bits: 32, dtype: "ipv4_addr", prefix: true},
}}

var protoTCP = &proto{name: "tcp", base: "transport", l4: 6, fields: []field{
	{name: "sport", off: 0, bits: 16, dtype: "inet_service"},
	{name: "dport", off: 16, bits: 16, dtype: "inet_service"},
	{name: "sequence", off: 32, bits: 32, dtype: "integer"},
	{name: "ackseq", off: 64, bits: 32, dtype: "integer"},
	{name: "doff", off: 96, bits: 4, dtype: "integer"},
	{name: "reserved", off: 100, bits: 4, dtype: "integer"},
	{name: "flags", off: 104, bits: 8, dtype: "tcp_flag"},
	{name: "window", off: 112, bits: 16, dtype: "integer"},
	{name: "checksum", off: 128, bits: 16, dtype: "integer"},
	{name: "urgptr", off: 144, bits: 16, dtype: "integer"},
}}

var protoUDP = &proto{name: "udp", base: "transport", l4: 17, fields: []field{
	{name: "sport", off: 0, bits: 16, dtype: "inet_service"},
	{name: "dport", off: 16, bits: 16, dtype: "inet_service"},
	{name: "length", off: 32, bits: 16, dtype: "integer"},
	{name: "checksum", off: 48, bits: 16, dtype: "integer"},
}}

var protoUDPLite = &proto{name: "udplite", base: "transport", l4: 136, fields: []field{
	{name: "sport", off: 0, bits: 16, dtype: "inet_service"},
	{name: "dport", off: 16, bits: 16, dtype: "inet_service"},
	{name: "csumcov", off: 32, bits: 16, dtype: "integer"},
	{name: "checksum", off: 48, bits: 16, dtype: "integer"},
}}

var protoSCTP = &proto{name: "sctp", base: "transport", l4: 132, fields: []field{
	{name: "sport", off: 0, bits: 16, dtype: "inet_service"},
	{name: "dport", off: 16, bits: 16, dtype: "inet_service"},
	{name: "vtag", off: 32, bits: 32, dtype: "integer"},
	{name: "checksum", off: 64, bits: 32, dtype: "integer"},
}}

var protoICMP = &proto{name: "icmp", base: "transport", l4: 1, fields: []field{
	{name: "type", off: 0, bits: 8, dtype: "icmp_type"},
	{name: "code", off: 8, bits: 8, dtype: "icmp_code"},
	{name: "checksum", off: 16, bits: 16, dtype: "integer"},
	{name: "id", off: 32, bits: 16, dtype: "integer"},
	{name: "sequence", off: 48, bits: 16, dtype: "integer"},
	{name: "gateway", off: 32, bits: 32, dtype: "ipv4_addr"},
	{name: "mtu", off: 48, bits: 16, dtype: "integer"},
}}

var protoICMP6 = &proto{name: "icmpv6", base: "transport", l4: 58, fields: []field{
	{name: "type", off: 0, bits: 8, dtype: "icmpv6_type"},
	{name: "code", off: 8, bits: 8, dtype: "icmpv6_code"},
	{name: "checksum", off: 16, bits: 16, dtype: "integer"},
	{name: "parameter-problem", off: 32, bits: 32, dtype: "integer"},
	{name: "mtu", off: 32, bits: 32, dtype: "integer"},
	{name: "id", off: 32, bits: 16, dtype: "integer"},
	{name: "sequence", off: 48, bits: 16, dtype: "integer"},
	{name: "max-delay", off: 32, bits: 16, dtype: "integer"},
}}

var protoESP = &proto{name: "esp", base: "transport", l4: 50, fields: []field{
	{name: "spi", off: 0, bits: 32, dtype: "integer"},
	{name: "sequence", off: 32, bits: 32, dtype: "integer"},
}}

// protoTH is the generic transport header: ports at the offsets all port protocols share.
var protoTH = &proto{name: "th", base: "transport", fields: []field{
	{name: "sport", off: 0, bits: 16, dtype: "inet_service"},
	{name: "dport", off: 16, bits: 16, dtype: "inet_service"},
}}

var transportProtos = []*proto{protoTCP, protoUDP, protoUDPLite, protoSCTP, protoICMP, protoICMP6, protoESP}

func transportByL4(p uint8) *proto {
	for _, t := range transportProtos {
		if t.l4 == p {
			return t
		}
	}
	return nil
}

func networkByEthertype(et uint16) *proto {
	for _, p := range []*proto{protoIP, protoIP6, protoARP} {
		if p.ethertype == et {
			return p
		}
	}
	return nil
}

func networkByNFProto(n uint8) *proto {
	switch n {
	case 2:
		return protoIP
	case 10:
		return protoIP6
	}
	return nil
}

// fieldAt finds the field that starts at bit off and is bits long.
func (p *proto) fieldAt(off, bits uint32) *field {
	for i := range p.fields {
		f := &p.fields[i]
		if f.off == off && f.bits == bits {
			return f
		}
	}
	return nil
}

// fieldContaining finds the first field that covers bit off (for partial loads).
func (p *proto) fieldStarting(off uint32) *field {
	for i := range p.fields {
		if p.fields[i].off == off {
			return &p.fields[i]
		}
	}
	return nil
}

// tcpOptions names TCP option kinds and their fields (nftables src/tcpopt.c).
var tcpOptions = map[uint8]struct {
	name   string
	fields []field
}{
	0: {"eol", []field{{name: "kind", off: 0, bits: 8, dtype: "integer"}}},
	1: {"nop", []field{{name: "kind", off: 0, bits: 8, dtype: "integer"}}},
	2: {"maxseg", []field{{name: "kind", off: 0, bits: 8, dtype: "integer"}, {name: "length", off: 8, bits: 8, dtype: "integer"}, {name: "size", off: 16, bits: 16, dtype: "integer"}}},
	3: {"window", []field{{name: "kind", off: 0, bits: 8, dtype: "integer"}, {name: "length", off: 8, bits: 8, dtype: "integer"}, {name: "count", off: 16, bits: 8, dtype: "integer"}}},
	4: {"sack-perm", []field{{name: "kind", off: 0, bits: 8, dtype: "integer"}, {name: "length", off: 8, bits: 8, dtype: "integer"}}},
	5: {"sack", []field{{name: "kind", off: 0, bits: 8, dtype: "integer"}, {name: "length", off: 8, bits: 8, dtype: "integer"}, {name: "left", off: 16, bits: 32, dtype: "integer"}, {name: "right", off: 48, bits: 32, dtype: "integer"}}},
	8: {"timestamp", []field{{name: "kind", off: 0, bits: 8, dtype: "integer"}, {name: "length", off: 8, bits: 8, dtype: "integer"}, {name: "tsval", off: 16, bits: 32, dtype: "integer"}, {name: "tsecr", off: 48, bits: 32, dtype: "integer"}}},
}

// ipv6Exthdrs names IPv6 extension headers by next-header number.
var ipv6Exthdrs = map[uint8]string{0: "hbh", 43: "rt", 44: "frag", 60: "dst", 135: "mh"}
