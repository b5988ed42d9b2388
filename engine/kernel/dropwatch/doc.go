// Package dropwatch reports the packets the kernel drops, with the kernel's own reason and
// location, for one namespace and the flows being watched, from a BPF program on skb:kfree_skb.
//
// The program (bpf/dropwatch.c) runs for every dropped packet of the host (consumed packets
// take skb:consume_skb instead) and filters in the kernel: by the namespace's inode, then by
// a hash map of watched 5-tuples in which a flow may leave fields open (any address, any
// port, any protocol); matches go to user space through a ring buffer. Reason numbers are
// named from the running kernel's BTF (enum skb_drop_reason), since the numbering changes
// between kernel versions; locations from /proc/kallsyms.
//
// The C is compiled by `make generate` (bpf2go; clang and libbpf-dev) into bpf_bpfel.o and
// bpf_bpfeb.o with their Go wrappers, which are committed: `go build` needs no C compiler.
// Kernel types come from bpf/kernel_types.h, a hand-written subset of vmlinux.h whose field
// accesses are CO-RE relocations against the running kernel's BTF.
//
// Where it cannot run (no root, no BTF, kernel lockdown, Linux before 5.17) Start returns
// an *UnsupportedError wrapping ErrUnsupported whose text is one line for the operator.
package dropwatch
