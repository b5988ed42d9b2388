package dropwatch

// The BPF program is compiled by `make generate` (needs clang and libbpf-dev; BPF2GO_CC picks
// the compiler) and the object and its Go wrapper are committed, so `go build` needs neither.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cflags "-O2 -g -Wall -Werror" -type event -type flow_key -type filter_config bpf bpf/dropwatch.c
