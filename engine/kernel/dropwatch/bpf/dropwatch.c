// SPDX-License-Identifier: GPL-2.0
//
// Reports the packets the kernel drops, with the kernel's reason, for one namespace and the
// flows roundtrip watches. Attached to the skb:kfree_skb tracepoint, which since Linux 5.17
// carries an enum skb_drop_reason; consumed packets go to skb:consume_skb instead, so this
// runs for dropped packets only and a busy router's forwarding path never enters it.

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_HOPOPTS 0
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_ICMPV6 58
#define IPPROTO_DSTOPTS 60

// Wildcard bits of a flow key's shape: which fields a flow leaves open ("any").
#define WILD_PROTO (1 << 0)
#define WILD_SADDR (1 << 1)
#define WILD_DADDR (1 << 2)
#define WILD_SPORT (1 << 3)
#define WILD_DPORT (1 << 4)
#define NUM_SHAPES 32

// filter_config.flags
#define CFG_NETNS (1 << 0) // report only drops in config.netns

struct filter_config {
	__u32 netns;  // namespace inode (ns.inum) to watch, with CFG_NETNS
	__u32 flags;
	__u32 shapes; // bit s set: the flows map holds keys of shape s; 0: no flow filter
	__u32 _pad;
};

// flow_key is a packet's 5-tuple, or a watched flow's with its open fields zeroed (family 0
// when both addresses are open, so such a flow matches IPv4 and IPv6). Ports in host order,
// an IPv4 address in addr[0].
struct flow_key {
	__u8 family; // 4, 6, or 0
	__u8 proto;
	__u16 sport;
	__u16 dport;
	__u16 _pad;
	__u32 saddr[4];
	__u32 daddr[4];
};

struct event {
	__u64 time_ns; // CLOCK_MONOTONIC
	__u64 location;
	__u32 netns;
	__u32 ifindex;
	__u32 reason;
	__u32 len;
	__u32 mark;
	__u16 l3proto; // skb->protocol, host order
	__u8 family;   // 4, 6, or 0 when the packet is not IP or its header unreadable
	__u8 proto;
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;
	__u16 dport;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 _pad;
	__u16 icmp_id; // echo request and reply: conntrack's "port"
	__u16 _pad2;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct flow_key);
	__type(value, __u8);
} flows SEC(".maps");

// 1 MiB: about 10,900 drops, 50 ms of a flood of 200k reported drops per second, for the
// reader's stalls (at 256 KiB one trial in ten lost a few hundred drops on a busy 2-core VM).
#define EVENTS_BYTES (1024 * 1024)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_BYTES);
} events SEC(".maps");

// The reader is woken only each time another 32 KiB (about 340 records) wait unread;
// otherwise it finds the records when it polls (every 10 ms, dropwatch.go). A wakeup per
// record (submit's default when the reader has caught up, which it nearly always has) costs
// an irq_work, a self-IPI (a VM exit under a hypervisor) and a wakeup: most of a reported
// drop's cost. A record takes
// its 8-byte header and its size rounded up to 8 bytes; every record is a struct event, so the
// unread bytes step by REC_BYTES and cross each multiple of WAKE_BYTES within one record.
#define WAKE_BYTES (32 * 1024)
#define REC_BYTES (8 + ((sizeof(struct event) + 7) & ~7))

// lost counts the drops that matched but found the ring buffer full.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

// Puts struct event in the object's BTF (a local's type is not), for bpf2go's Go twin.
const struct event *unused_event __attribute__((unused));

struct iphdr_min {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6hdr_min {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u32 saddr[4];
	__u32 daddr[4];
};

// The kernel's structures are read by direct loads: in a tp_btf program the arguments are
// typed (BTF) pointers, which the verifier lets the program follow with loads that fault
// safely, much cheaper than a bpf_probe_read_kernel call per field. Field offsets are CO-RE
// relocations (kernel_types.h).

// skb_netns returns the namespace inode of the packet: its device's, or (on the way out,
// before a device is chosen) its socket's; 0 when it has neither.
static __always_inline __u32 skb_netns(struct sk_buff *skb)
{
	struct net_device *dev = skb->dev;
	if (dev)
		return dev->nd_net.net->ns.inum;
	struct sock *sk = skb->sk;
	if (sk)
		return sk->__sk_common.skc_net.net->ns.inum;
	return 0;
}

// parse fills the packet fields of e from the headers in the skb's linear data.
static __always_inline void parse(struct sk_buff *skb, struct event *e)
{
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	if (!head || nh == (__u16)~0U)
		return;
	unsigned char *l3 = head + nh;
	// One read covers an IPv6 header or an IPv4 header with its first options; a short
	// packet's buffer extends past it (the skb's shared info follows the data), and the read
	// is fault-safe anyway.
	union {
		struct iphdr_min v4;
		struct ipv6hdr_min v6;
	} ip;
	if (bpf_probe_read_kernel(&ip, sizeof(ip), l3))
		return;
	unsigned char *l4;
	__u8 proto;
	if (ip.v4.ver_ihl >> 4 == 4) {
		if ((ip.v4.ver_ihl & 0xf) < 5)
			return;
		e->family = 4;
		e->proto = proto = ip.v4.protocol;
		e->saddr[0] = ip.v4.saddr;
		e->daddr[0] = ip.v4.daddr;
		if (bpf_ntohs(ip.v4.frag_off) & 0x1fff)
			return; // a later fragment: no transport header
		l4 = l3 + (ip.v4.ver_ihl & 0xf) * 4;
	} else if (ip.v4.ver_ihl >> 4 == 6) {
		e->family = 6;
		__builtin_memcpy(e->saddr, ip.v6.saddr, 16);
		__builtin_memcpy(e->daddr, ip.v6.daddr, 16);
		proto = ip.v6.nexthdr;
		l4 = l3 + sizeof(ip.v6);
		// Skip a few extension headers to reach the transport header.
		for (int i = 0; i < 4; i++) {
			__u8 ext[2];
			if (proto != IPPROTO_HOPOPTS && proto != IPPROTO_ROUTING && proto != IPPROTO_DSTOPTS &&
			    proto != IPPROTO_FRAGMENT)
				break;
			if (bpf_probe_read_kernel(ext, sizeof(ext), l4))
				return;
			if (proto == IPPROTO_FRAGMENT) {
				__be16 off;
				if (bpf_probe_read_kernel(&off, sizeof(off), l4 + 2))
					return;
				proto = ext[0];
				if (bpf_ntohs(off) & 0xfff8) {
					e->proto = proto;
					return;
				}
				l4 += 8;
				continue;
			}
			proto = ext[0];
			l4 += (ext[1] + 1) * 8;
		}
		e->proto = proto;
	} else {
		return;
	}
	switch (proto) {
	case IPPROTO_TCP: {
		__u8 th[14];
		if (bpf_probe_read_kernel(th, sizeof(th), l4))
			return;
		e->sport = (__u16)th[0] << 8 | th[1];
		e->dport = (__u16)th[2] << 8 | th[3];
		e->tcp_flags = th[13];
		break;
	}
	case IPPROTO_UDP: {
		__u8 uh[4];
		if (bpf_probe_read_kernel(uh, sizeof(uh), l4))
			return;
		e->sport = (__u16)uh[0] << 8 | uh[1];
		e->dport = (__u16)uh[2] << 8 | uh[3];
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		__u8 ih[6];
		if (bpf_probe_read_kernel(ih, sizeof(ih), l4))
			return;
		e->icmp_type = ih[0];
		e->icmp_code = ih[1];
		e->icmp_id = (__u16)ih[4] << 8 | ih[5];
		break;
	}
	}
}

// flow_match says whether the packet belongs to a watched flow, in either direction: it looks
// the packet's tuple up once per shape present (and direction), with that shape's open
// fields zeroed. Shapes are tried in order and the loop ends after the highest present.
static __always_inline int flow_match(const struct event *e, __u32 shapes)
{
	struct flow_key k;
	for (__u32 s = 0; s < NUM_SHAPES; s++) {
		if (!(shapes >> s))
			break;
		if (!(shapes & (1u << s)))
			continue;
		for (int rev = 0; rev < 2; rev++) {
			__builtin_memset(&k, 0, sizeof(k));
			k.family = e->family;
			if (!(s & WILD_PROTO))
				k.proto = e->proto;
			if (!(s & WILD_SADDR))
				__builtin_memcpy(k.saddr, rev ? e->daddr : e->saddr, 16);
			if (!(s & WILD_DADDR))
				__builtin_memcpy(k.daddr, rev ? e->saddr : e->daddr, 16);
			if (!(s & WILD_SPORT))
				k.sport = rev ? e->dport : e->sport;
			if (!(s & WILD_DPORT))
				k.dport = rev ? e->sport : e->dport;
			if ((s & (WILD_SADDR | WILD_DADDR)) == (WILD_SADDR | WILD_DADDR))
				k.family = 0;
			if (bpf_map_lookup_elem(&flows, &k))
				return 1;
		}
	}
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(on_kfree_skb, struct sk_buff *skb, void *location, unsigned int reason)
{
	// SKB_NOT_DROPPED_YET and SKB_CONSUMED are not drops.
	if (reason <= 1)
		return 0;
	__u32 zero = 0;
	struct filter_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return 0;
	__u32 netns = skb_netns(skb);
	if ((cfg->flags & CFG_NETNS) && netns != cfg->netns)
		return 0;

	struct event ev = {};
	parse(skb, &ev);
	if (cfg->shapes) {
		if (!ev.family || !flow_match(&ev, cfg->shapes))
			return 0;
	}

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			__sync_fetch_and_add(n, 1);
		return 0;
	}
	__builtin_memcpy(e, &ev, sizeof(ev));
	e->time_ns = bpf_ktime_get_ns();
	e->location = (__u64)location;
	e->netns = netns;
	e->reason = reason;
	e->len = skb->len;
	e->mark = skb->mark;
	e->l3proto = bpf_ntohs(skb->protocol);
	struct net_device *dev = skb->dev;
	e->ifindex = dev ? dev->ifindex : skb->skb_iif;
	// The unread bytes include this record (reserved above). Another CPU's record reserved
	// in between may hide a crossing; the next 32 KiB's, or the reader's poll, makes up for it.
	__u64 unread = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (unread >= WAKE_BYTES && (unread & (WAKE_BYTES - 1)) < REC_BYTES)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
	return 0;
}
