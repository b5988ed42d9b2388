/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types the drop watcher reads, instead of a full vmlinux.h (5 MB, 130k lines,
 * generated from one kernel): with preserve_access_index every field access below is a CO-RE
 * relocation that the loader (cilium/ebpf) resolves by field name against the running
 * kernel's BTF, so the offsets written here do not matter and fields nested in anonymous
 * unions of the real structs (sk_buff's dev, mark and headers) are found where they are.
 */
#ifndef __ROUNDTRIP_KERNEL_TYPES_H
#define __ROUNDTRIP_KERNEL_TYPES_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
};

// bpf_ringbuf_submit's flags and bpf_ringbuf_query's questions (uapi linux/bpf.h).
enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

typedef struct {
	struct net *net;
} possible_net_t;

struct net_device {
	int ifindex;
	possible_net_t nd_net;
};

struct sock_common {
	possible_net_t skc_net;
};

struct sock {
	struct sock_common __sk_common;
};

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	unsigned int len;
	int skb_iif;
	__u32 mark;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	__u16 mac_header;
	unsigned char *head;
};

#pragma clang attribute pop

#endif
