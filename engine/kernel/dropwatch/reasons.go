package dropwatch

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// reasonPrefix is the prefix of every drop reason of the core enum except the first two.
const reasonPrefix = "SKB_DROP_REASON_"

// Reasons maps this kernel's drop reason numbers to their names, read from its BTF (enum
// skb_drop_reason): the numbering changes between kernel versions, the names do not.
type Reasons map[uint32]string

// ReasonsFromBTF reads the drop reason names of the kernel whose BTF spec is given.
func ReasonsFromBTF(spec *btf.Spec) (Reasons, error) {
	var enum *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &enum); err != nil {
		return nil, fmt.Errorf("reading enum skb_drop_reason from the kernel's BTF: %w", err)
	}
	r := make(Reasons, len(enum.Values))
	for _, v := range enum.Values {
		if v.Value > 1<<32-1 || strings.HasSuffix(v.Name, "_MAX") || strings.HasSuffix(v.Name, "_SUBSYS_MASK") {
			continue
		}
		r[uint32(v.Value)] = strings.TrimPrefix(v.Name, reasonPrefix)
	}
	return r, nil
}

// Name returns the kernel's name of a reason ("IP_RPFILTER"). A reason of a subsystem with
// its own enum (mac80211, openvswitch) is named by its subsystem and code; an unknown one by
// its number.
func (r Reasons) Name(code uint32) string {
	if n, ok := r[code]; ok {
		return n
	}
	if sub := code >> 16; sub != 0 {
		return fmt.Sprintf("SUBSYS_%d_%d", sub, code&0xffff)
	}
	return fmt.Sprintf("REASON_%d", code)
}

// errNoReasons is the cause given when the kernel's kfree_skb carries no reason.
var errNoReasons = errors.New("this kernel's skb:kfree_skb tracepoint carries no drop reason (needs Linux 5.17 or later)")

// checkTracepoint verifies that the kernel's kfree_skb tracepoint passes a drop reason as its
// third argument, where the BPF program reads it.
func checkTracepoint(spec *btf.Spec) error {
	var td *btf.Typedef
	if err := spec.TypeByName("btf_trace_kfree_skb", &td); err != nil {
		return fmt.Errorf("%w: no kfree_skb tracepoint in the kernel's BTF: %v", errNoReasons, err)
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return fmt.Errorf("%w: btf_trace_kfree_skb is a %v, not a function pointer", errNoReasons, td.Type)
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok {
		return fmt.Errorf("%w: btf_trace_kfree_skb points to a %v, not a function", errNoReasons, ptr.Target)
	}
	// (void *ctx, struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...)
	if len(proto.Params) < 4 {
		return errNoReasons
	}
	if e, ok := btf.UnderlyingType(proto.Params[3].Type).(*btf.Enum); !ok || e.Name != "skb_drop_reason" {
		return fmt.Errorf("%w: its third argument is a %v", errNoReasons, proto.Params[3].Type)
	}
	return nil
}

// words are the reasons an operator meets on a router or server, said the way an operator
// would say them. The kernel's name is always shown next to them.
var words = map[string]string{
	"NOT_SPECIFIED":            "dropped without a specific reason",
	"NO_SOCKET":                "no socket listens on the destination port (closed port)",
	"SOCKET_FILTER":            "a socket filter (BPF on the socket) dropped it",
	"SOCKET_RCVBUFF":           "the receiving socket's buffer is full",
	"SOCKET_CLOSE":             "the socket was closed",
	"PKT_TOO_SMALL":            "the packet is shorter than its headers say",
	"TCP_CSUM":                 "bad TCP checksum",
	"UDP_CSUM":                 "bad UDP checksum",
	"IP_CSUM":                  "bad IP header checksum",
	"ICMP_CSUM":                "bad ICMP checksum",
	"NETFILTER_DROP":           "a netfilter rule (iptables or nftables) dropped it",
	"OTHERHOST":                "addressed to another host's MAC address (PACKET_OTHERHOST)",
	"IP_INHDR":                 "invalid IP header (bad version, length or TTL)",
	"IP_RPFILTER":              "reverse-path filter (rp_filter) dropped it: the reply to its source would leave by another interface",
	"UNICAST_IN_L2_MULTICAST":  "IP unicast inside a link-layer multicast or broadcast frame",
	"XFRM_POLICY":              "an IPsec (xfrm) policy rejected it",
	"IP_NOPROTO":               "no handler for its IP protocol on this host",
	"PROTO_MEM":                "the protocol is out of memory (socket memory limits)",
	"SOCKET_BACKLOG":           "the socket's backlog is full",
	"TCP_FLAGS":                "invalid TCP flags for the connection's state",
	"TCP_ZEROWINDOW":           "the receiver's TCP window is zero",
	"TCP_OLD_DATA":             "TCP data already received (retransmission)",
	"TCP_OVERWINDOW":           "TCP data beyond the receive window",
	"TCP_OFOMERGE":             "TCP out-of-order data already queued",
	"TCP_RFC7323_PAWS":         "TCP timestamp too old (PAWS check)",
	"TCP_LISTEN_OVERFLOW":      "the listening socket's accept queue is full",
	"TCP_OLD_SEQUENCE":         "TCP segment with an old sequence number",
	"TCP_INVALID_SEQUENCE":     "TCP segment outside the window",
	"TCP_INVALID_ACK_SEQUENCE": "TCP acknowledgement of data never sent",
	"TCP_RESET":                "TCP reset received for the connection",
	"TCP_INVALID_SYN":          "unexpected TCP SYN on an existing connection",
	"TCP_CLOSE":                "TCP segment for a closed connection",
	"TCP_OLD_ACK":              "TCP acknowledgement older than the last one",
	"IP_OUTNOROUTES":           "no route to send it out (locally sent packet)",
	"BPF_CGROUP_EGRESS":        "a cgroup BPF program dropped it on the way out",
	"IPV6DISABLED":             "IPv6 is disabled on the interface",
	"NEIGH_CREATEFAIL":         "could not create a neighbour (ARP/NDP) entry for the next hop",
	"NEIGH_FAILED":             "the next hop does not answer ARP/neighbour discovery",
	"NEIGH_QUEUEFULL":          "too many packets wait for the next hop's ARP/NDP answer",
	"NEIGH_DEAD":               "the neighbour entry for the next hop was removed",
	"TC_EGRESS":                "a tc egress filter dropped it",
	"TC_INGRESS":               "a tc ingress filter dropped it",
	"SECURITY_HOOK":            "a security module (LSM) dropped it",
	"QDISC_DROP":               "the interface's queue (qdisc) dropped it",
	"QDISC_OVERLIMIT":          "the interface's queue is over its limit",
	"CPU_BACKLOG":              "the CPU's receive backlog is full (netdev_max_backlog)",
	"XDP":                      "an XDP program dropped it",
	"UNHANDLED_PROTO":          "no handler for its ethertype",
	"DEV_READY":                "the interface is down or not ready",
	"FULL_RING":                "the device's ring is full",
	"NOMEM":                    "out of memory",
	"HDR_TRUNC":                "truncated header",
	"INVALID_PROTO":            "invalid protocol in the header",
	"IP_INADDRERRORS":          "invalid destination address (martian, or not forwardable)",
	"IP_INNOROUTES":            "no route for the incoming packet (unreachable, or forwarding is off)",
	"IP_LOCAL_SOURCE":          "its source is one of this host's own addresses (martian source)",
	"IP_INVALID_SOURCE":        "invalid source address (martian: multicast, broadcast or zero)",
	"IP_LOCALNET":              "source or destination in 127.0.0.0/8 arriving from outside (route_localnet off)",
	"IP_INVALID_DEST":          "invalid destination address",
	"PKT_TOO_BIG":              "larger than the path MTU and not to be fragmented",
	"FRAG_REASM_TIMEOUT":       "fragment reassembly timed out",
	"DUP_FRAG":                 "duplicate fragment",
	"FRAG_TOO_FAR":             "fragment too far ahead of the others",
	"TCP_MINTTL":               "TTL below the socket's IP_MINTTL",
	"IPV6_BAD_EXTHDR":          "invalid IPv6 extension header",
	"VXLAN_INVALID_HDR":        "invalid VXLAN header",
	"VXLAN_VNI_NOT_FOUND":      "no VXLAN device for the packet's VNI",
	"MAC_INVALID_SOURCE":       "invalid source MAC address",
	"LOCAL_MAC":                "frame from this host's own MAC address (a loop)",
	"BRIDGE_INGRESS_STP_STATE": "the bridge port is blocked by STP",
	"NO_TX_TARGET":             "no device to send it on",
	"TUNNEL_TXINFO":            "missing tunnel metadata to send it",
	"RECURSION_LIMIT":          "too many nested devices (recursion limit)",
}

// unspecifiedAt says what a NOT_SPECIFIED drop means by the function that dropped it, where
// kernels still drop without a reason.
var unspecifiedAt = map[string]string{
	"ip_error":        "the route refused it: an unreachable, prohibit or blackhole route, or no route (ip_error)",
	"ip6_pkt_drop":    "the IPv6 route refused it: an unreachable or prohibit route, or no route",
	"dst_discard_out": "a blackhole route or a dead route discarded it on the way out",
	"ip6_mc_input":    "IPv6 multicast for a group no one on this host joined",
	"dst_discard":     "a blackhole route or a dead route discarded it",
}

// Describe says what a reason means to an operator: a phrase for the common ones, the
// kernel's name made readable for the rest ("TCP_AO_FAILURE" → "tcp ao failure").
func Describe(name string) string {
	if w, ok := words[name]; ok {
		return w
	}
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, reasonPrefix), "_", " "))
}
