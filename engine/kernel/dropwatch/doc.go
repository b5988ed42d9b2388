// Package dropwatch reports the packets the kernel drops, with the kernel's own reason and
// location, for one namespace and the flows being watched, from a BPF program on skb:kfree_skb.
package dropwatch
