package nft

// keyInfo describes a meta, ct, rt or socket key: its kernel number, nft's name, the datatype
// of the value it loads and its length (0: depends on the context, as ct saddr).
type keyInfo struct {
	num   uint32
	name  string
	dtype string
	len   uint32
	// host is true when the kernel stores the value in host byte order.
	host bool
	// dir is true for ct keys that take a direction (original/reply).
	dir bool
	// unqualified meta keys are printed without "meta " (iifname, oif, ...).
	unqualified bool
}

// metaKeys follows enum nft_meta_keys (linux/netfilter/nf_tables.h) and nftables src/meta.c.
var metaKeys = []keyInfo{
	{num: 0, name: "length", dtype: "integer", len: 4, host: true},
	{num: 1, name: "protocol", dtype: "ether_type", len: 2},
	{num: 2, name: "priority", dtype: "classid", len: 4, host: true},
	{num: 3, name: "mark", dtype: "mark", len: 4, host: true},
	{num: 4, name: "iif", dtype: "iface_index", len: 4, host: true, unqualified: true},
	{num: 5, name: "oif", dtype: "iface_index", len: 4, host: true, unqualified: true},
	{num: 6, name: "iifname", dtype: "ifname", len: 16, unqualified: true},
	{num: 7, name: "oifname", dtype: "ifname", len: 16, unqualified: true},
	{num: 8, name: "iiftype", dtype: "iface_type", len: 2, host: true},
	{num: 9, name: "oiftype", dtype: "iface_type", len: 2, host: true},
	{num: 10, name: "skuid", dtype: "uid", len: 4, host: true},
	{num: 11, name: "skgid", dtype: "gid", len: 4, host: true},
	{num: 12, name: "nftrace", dtype: "integer", len: 1, host: true},
	{num: 13, name: "rtclassid", dtype: "realm", len: 4, host: true},
	{num: 14, name: "secmark", dtype: "integer", len: 4, host: true},
	{num: 15, name: "nfproto", dtype: "nf_proto", len: 1, host: true},
	{num: 16, name: "l4proto", dtype: "inet_proto", len: 1, host: true},
	{num: 17, name: "ibrname", dtype: "ifname", len: 16},
	{num: 18, name: "obrname", dtype: "ifname", len: 16},
	{num: 19, name: "pkttype", dtype: "pkt_type", len: 1, host: true},
	{num: 20, name: "cpu", dtype: "integer", len: 4, host: true},
	{num: 21, name: "iifgroup", dtype: "devgroup", len: 4, host: true, unqualified: true},
	{num: 22, name: "oifgroup", dtype: "devgroup", len: 4, host: true, unqualified: true},
	{num: 23, name: "cgroup", dtype: "integer", len: 4, host: true},
	{num: 24, name: "random", dtype: "integer", len: 4},
	{num: 25, name: "ipsec", dtype: "boolean", len: 1, host: true},
	{num: 26, name: "iifkind", dtype: "ifkind", len: 16},
	{num: 27, name: "oifkind", dtype: "ifkind", len: 16},
	{num: 28, name: "ibrpvid", dtype: "integer", len: 2, host: true},
	{num: 29, name: "ibrvproto", dtype: "ether_type", len: 2},
	{num: 30, name: "time", dtype: "time", len: 8, host: true},
	{num: 31, name: "day", dtype: "day", len: 1, host: true},
	{num: 32, name: "hour", dtype: "hour", len: 4, host: true},
	{num: 33, name: "sdif", dtype: "iface_index", len: 4, host: true},
	{num: 34, name: "sdifname", dtype: "ifname", len: 16},
	{num: 35, name: "broute", dtype: "boolean", len: 1, host: true},
}

// ctKeys follows enum nft_ct_keys and nftables src/ct.c.
var ctKeys = []keyInfo{
	{num: 0, name: "state", dtype: "ct_state", len: 4, host: true},
	{num: 1, name: "direction", dtype: "ct_dir", len: 1, host: true},
	{num: 2, name: "status", dtype: "ct_status", len: 4, host: true},
	{num: 3, name: "mark", dtype: "mark", len: 4, host: true},
	{num: 4, name: "secmark", dtype: "integer", len: 4, host: true},
	{num: 5, name: "expiration", dtype: "time", len: 4, host: true},
	{num: 6, name: "helper", dtype: "string", len: 16},
	{num: 7, name: "l3proto", dtype: "nf_proto", len: 1, host: true, dir: true},
	{num: 8, name: "saddr", dtype: "", len: 0, dir: true},
	{num: 9, name: "daddr", dtype: "", len: 0, dir: true},
	{num: 10, name: "protocol", dtype: "inet_proto", len: 1, dir: true},
	{num: 11, name: "proto-src", dtype: "inet_service", len: 2, dir: true},
	{num: 12, name: "proto-dst", dtype: "inet_service", len: 2, dir: true},
	{num: 13, name: "label", dtype: "ct_label", len: 16, host: true},
	{num: 14, name: "packets", dtype: "integer", len: 8, host: true, dir: true},
	{num: 15, name: "bytes", dtype: "integer", len: 8, host: true, dir: true},
	{num: 16, name: "avgpkt", dtype: "integer", len: 8, host: true, dir: true},
	{num: 17, name: "zone", dtype: "integer", len: 2, host: true, dir: true},
	{num: 18, name: "event", dtype: "ct_event", len: 4, host: true},
	{num: 19, name: "ip saddr", dtype: "ipv4_addr", len: 4, dir: true},
	{num: 20, name: "ip daddr", dtype: "ipv4_addr", len: 4, dir: true},
	{num: 21, name: "ip6 saddr", dtype: "ipv6_addr", len: 16, dir: true},
	{num: 22, name: "ip6 daddr", dtype: "ipv6_addr", len: 16, dir: true},
	{num: 23, name: "id", dtype: "integer", len: 4},
}

// rtKeys follows enum nft_rt_keys.
var rtKeys = []keyInfo{
	{num: 0, name: "classid", dtype: "realm", len: 4, host: true},
	{num: 1, name: "nexthop", dtype: "ipv4_addr", len: 4},
	{num: 2, name: "nexthop6", dtype: "ipv6_addr", len: 16},
	{num: 3, name: "mtu", dtype: "integer", len: 2, host: true},
	{num: 4, name: "ipsec", dtype: "boolean", len: 1, host: true},
}

// socketKeys follows enum nft_socket_keys.
var socketKeys = []keyInfo{
	{num: 0, name: "transparent", dtype: "integer", len: 1, host: true},
	{num: 1, name: "mark", dtype: "mark", len: 4, host: true},
	{num: 2, name: "wildcard", dtype: "integer", len: 1, host: true},
	{num: 3, name: "cgroupv2", dtype: "cgroupsv2", len: 8, host: true},
}

func keyByNum(list []keyInfo, n uint32) (keyInfo, bool) {
	for _, k := range list {
		if k.num == n {
			return k, true
		}
	}
	return keyInfo{}, false
}

func keyByName(list []keyInfo, name string) (keyInfo, bool) {
	for _, k := range list {
		if k.name == name {
			return k, true
		}
	}
	return keyInfo{}, false
}

// MetaKeyName names NFT_META_* key n; ok is false for keys this package does not know.
func MetaKeyName(n uint32) (string, bool) { k, ok := keyByNum(metaKeys, n); return k.name, ok }

// CtKeyName names NFT_CT_* key n and says whether it takes a direction.
func CtKeyName(n uint32) (name string, dir bool, ok bool) {
	k, ok := keyByNum(ctKeys, n)
	return k.name, k.dir, ok
}

// RtKeyName names NFT_RT_* key n.
func RtKeyName(n uint32) (string, bool) { k, ok := keyByNum(rtKeys, n); return k.name, ok }

// SocketKeyName names NFT_SOCKET_* key n.
func SocketKeyName(n uint32) (string, bool) { k, ok := keyByNum(socketKeys, n); return k.name, ok }

// natFlagNames are the NF_NAT_RANGE_* bits in order.
var natFlagNames = []string{"map-ips", "proto-specified", "random", "persistent", "fully-random", "proto-offset", "netmap"}

// NatFlagNames names the bits of NF_NAT_RANGE_* flags; unknown bits are returned separately.
func NatFlagNames(flags uint32) (names []string, unknown uint32) {
	return bitNames(natFlagNames, flags)
}

func bitNames(names []string, flags uint32) ([]string, uint32) {
	var out []string
	for i, n := range names {
		if flags&(1<<i) != 0 {
			out = append(out, n)
			flags &^= 1 << i
		}
	}
	return out, flags
}

// fibFlagNames are NFTA_FIB_F_* bits in order.
var fibFlagNames = []string{"saddr", "daddr", "mark", "iif", "oif", "present"}

// FibFlagNames names NFTA_FIB_F_* bits.
func FibFlagNames(flags uint32) ([]string, uint32) { return bitNames(fibFlagNames, flags) }

// logFlagNames are NF_LOG_* bits in order.
var logFlagNames = []string{"tcp sequence", "tcp options", "ip options", "skuid", "nflog", "ether"}

// LogFlagNames names NF_LOG_* bits.
func LogFlagNames(flags uint32) ([]string, uint32) { return bitNames(logFlagNames, flags) }

// queueFlagNames are NFT_QUEUE_FLAG_* bits.
var queueFlagNames = []string{"bypass", "fanout"}

// QueueFlagNames names NFT_QUEUE_FLAG_* bits.
func QueueFlagNames(flags uint32) ([]string, uint32) { return bitNames(queueFlagNames, flags) }

// setFlagNames are NFT_SET_* bits in order.
var setFlagNames = []string{"anonymous", "constant", "interval", "map", "timeout", "eval", "object", "concat", "expr"}

// SetFlagNames names NFT_SET_* bits.
func SetFlagNames(flags uint32) ([]string, uint32) { return bitNames(setFlagNames, flags) }

// tableFlagNames are NFT_TABLE_F_* bits.
var tableFlagNames = []string{"dormant", "owner", "persist"}

// TableFlagNames names NFT_TABLE_F_* bits.
func TableFlagNames(flags uint32) ([]string, uint32) { return bitNames(tableFlagNames, flags) }

// chainFlagNames are NFT_CHAIN_* bits.
var chainFlagNames = []string{"base", "hw-offload", "binding"}

// ChainFlagNames names NFT_CHAIN_* bits ("base" is implied by a hook and left out).
func ChainFlagNames(flags uint32) ([]string, uint32) {
	names, rest := bitNames(chainFlagNames, flags)
	out := names[:0]
	for _, n := range names {
		if n != "base" {
			out = append(out, n)
		}
	}
	return out, rest
}

// hookNums maps the kernel's hook numbers per family group.
var inetHooks = []Hook{HookPrerouting, HookInput, HookForward, HookOutput, HookPostrouting, HookIngress}

// HookFromNum names hook n of a family (NF_INET_*, NF_ARP_*, NF_NETDEV_*).
func HookFromNum(f Family, n uint32) (Hook, bool) {
	switch f {
	case FamilyNetdev:
		switch n {
		case 0:
			return HookIngress, true
		case 1:
			return HookEgress, true
		}
		return "", false
	case FamilyARP:
		switch n {
		case 0:
			return HookInput, true
		case 1:
			return HookOutput, true
		}
		return "", false
	}
	if int(n) < len(inetHooks) {
		h := inetHooks[n]
		if h == HookIngress && f != FamilyInet {
			return "", false
		}
		return h, true
	}
	return "", false
}

// verdict codes (NF_* and NFT_* verdicts, as signed 32-bit numbers).
const (
	codeDrop     = 0
	codeAccept   = 1
	codeStolen   = 2
	codeQueue    = 3
	codeContinue = -1
	codeBreak    = -2
	codeJump     = -3
	codeGoto     = -4
	codeReturn   = -5
)

// VerdictFromCode names a kernel verdict code; queue verdicts carry the queue number in the
// upper bits and are all "queue".
func VerdictFromCode(code int32) (string, bool) {
	switch code {
	case codeDrop:
		return "drop", true
	case codeAccept:
		return "accept", true
	case codeStolen:
		return "stolen", true
	case codeContinue:
		return "continue", true
	case codeBreak:
		return "break", true
	case codeJump:
		return "jump", true
	case codeGoto:
		return "goto", true
	case codeReturn:
		return "return", true
	}
	if code >= 0 && code&0xff == codeQueue {
		return "queue", true
	}
	return "", false
}
