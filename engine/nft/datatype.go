package nft

import (
	"encoding/binary"
	"fmt"
	"math/big"
	"net/netip"
	"strconv"
	"strings"
)

// datatypes follows enum datatypes of nftables include/datatype.h: the numbers a set's key and
// data types are stored as (concatenations pack one per 6 bits).
var datatypes = map[uint32]string{
	1: "verdict", 2: "nf_proto", 3: "bitmask", 4: "integer", 5: "string", 6: "ll_addr",
	7: "ipv4_addr", 8: "ipv6_addr", 9: "ether_addr", 10: "ether_type", 11: "arp_op",
	12: "inet_proto", 13: "inet_service", 14: "icmp_type", 15: "tcp_flag", 16: "dccp_pkttype",
	17: "mh_type", 18: "time", 19: "mark", 20: "iface_index", 21: "iface_type", 22: "realm",
	23: "classid", 24: "uid", 25: "gid", 26: "ct_state", 27: "ct_dir", 28: "ct_status",
	29: "icmpv6_type", 30: "ct_label", 31: "pkt_type", 32: "icmp_code", 33: "icmpv6_code",
	34: "icmpx_code", 35: "devgroup", 36: "dscp", 37: "ecn", 38: "fib_addrtype", 39: "boolean",
	40: "ct_event", 41: "ifname", 42: "igmp_type", 43: "time", 44: "hour", 45: "day",
	46: "cgroupsv2",
}

// DatatypeName names an nft datatype number, splitting concatenations ("ipv4_addr .
// inet_service"). ok is false when a part is unknown.
func DatatypeName(magic uint32) (string, bool) {
	if magic == 0xffffff00 {
		return "verdict", true
	}
	if magic == 0 {
		return "", false
	}
	var parts []string
	for magic != 0 {
		name, ok := datatypes[magic&0x3f]
		if !ok {
			return "", false
		}
		parts = append([]string{name}, parts...)
		magic >>= 6
	}
	return strings.Join(parts, " . "), true
}

// knownDatatype reports whether name is an nft datatype name (or a concatenation of them).
func knownDatatype(name string) bool {
	for _, part := range strings.Split(name, " . ") {
		found := false
		for _, n := range datatypes {
			if n == part {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// hostEndianTypes are the datatypes nft keeps in host byte order.
var hostEndianTypes = map[string]bool{
	"mark": true, "iface_index": true, "iface_type": true, "realm": true, "classid": true,
	"uid": true, "gid": true, "ct_state": true, "ct_dir": true, "ct_status": true,
	"ct_label": true, "devgroup": true, "fib_addrtype": true, "ct_event": true, "time": true,
	"hour": true, "day": true, "cgroupsv2": true, "nf_proto": true, "pkt_type": true,
	"boolean": true,
}

// formatter prints values as nft does. host is the byte order host-order values are in;
// ifname resolves interface indexes (nil: print the number).
type formatter struct {
	host   binary.ByteOrder
	ifname func(index uint32) (string, bool)
}

// uint reads an unsigned value of up to 8 bytes, in host order when host is set.
func (f formatter) uint(b []byte, host bool) uint64 {
	if len(b) > 8 {
		b = b[:8]
	}
	var buf [8]byte
	if host && f.host == binary.LittleEndian {
		copy(buf[:], b)
		return binary.LittleEndian.Uint64(buf[:])
	}
	copy(buf[8-len(b):], b)
	return binary.BigEndian.Uint64(buf[:])
}

// value prints data of datatype dtype. host says the data is in host byte order when the
// datatype itself does not decide (integers).
func (f formatter) value(dtype string, data []byte, host bool) string {
	switch dtype {
	case "ipv4_addr":
		if len(data) == 4 {
			return netip.AddrFrom4([4]byte(data)).String()
		}
	case "ipv6_addr":
		if len(data) == 16 {
			return netip.AddrFrom16([16]byte(data)).String()
		}
	case "inet_service":
		return strconv.FormatUint(f.uint(data, false), 10)
	case "inet_proto":
		v := f.uint(data, false)
		if n, ok := inetProtoNames[v]; ok {
			return n
		}
		return strconv.FormatUint(v, 10)
	case "mark":
		return fmt.Sprintf("0x%08x", f.uint(data, true))
	case "ct_state":
		return f.flags(ctStateNames, f.uint(data, true))
	case "ct_status":
		return f.flags(ctStatusNames, f.uint(data, true))
	case "ct_event":
		return f.flags(ctEventNames, f.uint(data, true))
	case "tcp_flag":
		return f.flags(tcpFlagNames, f.uint(data, false))
	case "ct_dir":
		return symbol(ctDirNames, f.uint(data, true))
	case "nf_proto":
		return symbol(nfprotoNames, f.uint(data, true))
	case "pkt_type":
		return symbol(pktTypeNames, f.uint(data, true))
	case "fib_addrtype":
		return symbol(fibAddrNames, f.uint(data, true))
	case "icmp_type":
		return symbol(icmpTypeNames, f.uint(data, false))
	case "icmpv6_type":
		return symbol(icmp6TypeNames, f.uint(data, false))
	case "icmp_code":
		return symbol(icmpCodeNames, f.uint(data, false))
	case "icmpv6_code":
		return symbol(icmp6CodeNames, f.uint(data, false))
	case "icmpx_code":
		return symbol(icmpxCodeNames, f.uint(data, false))
	case "ether_type":
		v := f.uint(data, false)
		if n, ok := etherTypeNames[v]; ok {
			return n
		}
		return fmt.Sprintf("0x%04x", v)
	case "arp_op":
		return symbol(arpOpNames, f.uint(data, false))
	case "dscp":
		return symbol(dscpNames, f.uint(data, false))
	case "ecn":
		return symbol(ecnNames, f.uint(data, false))
	case "boolean":
		if f.uint(data, true) != 0 {
			return "exists"
		}
		return "missing"
	case "ifname", "string", "ifkind":
		return quoteString(trimNUL(data))
	case "iface_index":
		idx := uint32(f.uint(data, true))
		if f.ifname != nil {
			if n, ok := f.ifname(idx); ok {
				return quoteString(n)
			}
		}
		return strconv.FormatUint(uint64(idx), 10)
	case "ether_addr", "ll_addr":
		parts := make([]string, len(data))
		for i, b := range data {
			parts[i] = fmt.Sprintf("%02x", b)
		}
		return strings.Join(parts, ":")
	case "uid", "gid", "realm", "devgroup", "iface_type", "cgroupsv2", "hour", "day", "time":
		return strconv.FormatUint(f.uint(data, true), 10)
	case "classid":
		v := f.uint(data, true)
		return fmt.Sprintf("%x:%x", v>>16, v&0xffff)
	case "ct_label", "bitmask":
		return "0x" + Bytes(data).String()
	}
	// integer and anything unknown: a number in the byte order the caller says.
	if len(data) > 8 {
		if host && f.host == binary.LittleEndian {
			rev := make([]byte, len(data))
			for i := range data {
				rev[len(data)-1-i] = data[i]
			}
			data = rev
		}
		return new(big.Int).SetBytes(data).String()
	}
	return strconv.FormatUint(f.uint(data, host), 10)
}

func (f formatter) flags(names map[uint64]string, v uint64) string {
	if v == 0 {
		if n, ok := names[0]; ok {
			return n
		}
		return "0x0"
	}
	var parts []string
	for bit := uint(0); bit < 64; bit++ {
		if v&(1<<bit) == 0 {
			continue
		}
		if n, ok := names[1<<bit]; ok {
			parts = append(parts, n)
		} else {
			parts = append(parts, fmt.Sprintf("0x%x", uint64(1)<<bit))
		}
	}
	return strings.Join(parts, ",")
}

func symbol(names map[uint64]string, v uint64) string {
	if n, ok := names[v]; ok {
		return n
	}
	return strconv.FormatUint(v, 10)
}

func trimNUL(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// quoteString quotes a string value as nft prints it; control characters are escaped so that
// no value can break a terminal or a line-oriented output.
func quoteString(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&sb, "\\x%02x", r)
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

var inetProtoNames = map[uint64]string{
	0: "ip", 1: "icmp", 2: "igmp", 4: "ipencap", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre",
	50: "esp", 51: "ah", 58: "ipv6-icmp", 89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp",
	136: "udplite",
}

// InetProtoName is nft's name of IP protocol p ("tcp", "ipv6-icmp"), or its number.
func InetProtoName(p uint8) string { return symbol(inetProtoNames, uint64(p)) }

var ctStateNames = map[uint64]string{1: "invalid", 2: "established", 4: "related", 8: "new", 64: "untracked"}

var ctStatusNames = map[uint64]string{
	1: "expected", 2: "seen-reply", 4: "assured", 8: "confirmed", 16: "snat", 32: "dnat",
	512: "dying",
}

var ctEventNames = map[uint64]string{
	1: "new", 2: "related", 4: "destroy", 8: "reply", 16: "assured", 32: "protoinfo",
	64: "helper", 128: "mark", 256: "seqadj", 512: "secmark", 1024: "label",
}

var tcpFlagNames = map[uint64]string{1: "fin", 2: "syn", 4: "rst", 8: "psh", 16: "ack", 32: "urg", 64: "ecn", 128: "cwr"}

var ctDirNames = map[uint64]string{0: "original", 1: "reply"}

var nfprotoNames = map[uint64]string{2: "ipv4", 10: "ipv6"}

var pktTypeNames = map[uint64]string{0: "host", 1: "broadcast", 2: "multicast", 3: "other"}

var fibAddrNames = map[uint64]string{
	0: "unspec", 1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
	6: "blackhole", 7: "unreachable", 8: "prohibit",
}

var icmpTypeNames = map[uint64]string{
	0: "echo-reply", 3: "destination-unreachable", 4: "source-quench", 5: "redirect",
	8: "echo-request", 9: "router-advertisement", 10: "router-solicitation", 11: "time-exceeded",
	12: "parameter-problem", 13: "timestamp-request", 14: "timestamp-reply", 15: "info-request",
	16: "info-reply", 17: "address-mask-request", 18: "address-mask-reply",
}

var icmp6TypeNames = map[uint64]string{
	1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem",
	128: "echo-request", 129: "echo-reply", 130: "mld-listener-query", 131: "mld-listener-report",
	132: "mld-listener-done", 133: "nd-router-solicit", 134: "nd-router-advert",
	135: "nd-neighbor-solicit", 136: "nd-neighbor-advert", 137: "nd-redirect",
	138: "router-renumbering", 141: "ind-neighbor-solicit", 142: "ind-neighbor-advert",
	143: "mld2-listener-report",
}

var icmpCodeNames = map[uint64]string{
	0: "net-unreachable", 1: "host-unreachable", 2: "prot-unreachable", 3: "port-unreachable",
	4: "frag-needed", 9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited",
}

var icmp6CodeNames = map[uint64]string{
	0: "no-route", 1: "admin-prohibited", 2: "addr-unreachable", 3: "addr-unreachable",
	4: "port-unreachable", 5: "policy-fail", 6: "reject-route",
}

var icmpxCodeNames = map[uint64]string{0: "no-route", 1: "port-unreachable", 2: "host-unreachable", 3: "admin-prohibited"}

var etherTypeNames = map[uint64]string{0x0800: "ip", 0x0806: "arp", 0x86dd: "ip6", 0x8100: "8021q", 0x88a8: "8021ad", 0x8035: "rarp"}

var arpOpNames = map[uint64]string{1: "request", 2: "reply", 3: "rrequest", 4: "rreply", 8: "inrequest", 9: "inreply", 10: "nak"}

var dscpNames = map[uint64]string{
	0x00: "cs0", 0x08: "cs1", 0x0a: "af11", 0x0c: "af12", 0x0e: "af13", 0x10: "cs2", 0x12: "af21",
	0x14: "af22", 0x16: "af23", 0x18: "cs3", 0x1a: "af31", 0x1c: "af32", 0x1e: "af33", 0x20: "cs4",
	0x22: "af41", 0x24: "af42", 0x26: "af43", 0x28: "cs5", 0x2c: "va", 0x2e: "ef", 0x30: "cs6",
	0x38: "cs7",
}

var ecnNames = map[uint64]string{0: "not-ect", 1: "ect1", 2: "ect0", 3: "ce"}
