.PHONY: test bench bench-quick bench-dualwan generate

# The README's test command (installs what the tests need when run as root, runs every test and
# lists the skipped ones); ./test.sh works without make, which a fresh machine lacks.
test:
	./test.sh $(TESTFLAGS)

# Benchmarks: roundtrip against ip -batch, ip route add, ip -j, ip route get, conntrack -L and
# tcpdump at real sizes, in network namespaces the benchmark creates and deletes itself (also on
# Ctrl-C). Run as root. Add flags of the bench command with BENCHFLAGS, for example
#   make bench BENCHFLAGS='-runs 5 -only load,snapshot'
# (go run ./cmd/roundtrip-bench -h lists them).
#
# The full run, written into BENCHMARKS.md (between its generated-block markers; the analysis
# after the block is kept): route loads of 10k, 100k and 1M routes, a 1M-route snapshot, live
# show, trace and doctor on it, lookups, 262144 conntrack entries, capture at 100-300k pps and
# the dual-WAN comparison with a 10k-CIDR list, each target of issue 14 judged. About 15-20
# minutes. A small run that still rewrites the block (a minute; its targets at 1M are not judged):
#   make bench BENCHFLAGS='-runs 1 -routes 1000,5000 -perline-max 1000 -probes 2000 -conntrack 2000 \
#     -capture-rates 50000 -capture-time 1s -dualwan-cidrs 100 -dualwan-time 1s -dualwan-probes 50'
# (add -o OTHER.md to write elsewhere, -ns-prefix P to name its namespaces P-PID-...).
bench:
	go run ./cmd/roundtrip-bench -o BENCHMARKS.md $(BENCHFLAGS)

# Smaller sizes, one run each, printed rather than written to BENCHMARKS.md: about a minute.
bench-quick:
	go run ./cmd/roundtrip-bench -o - -runs 1 -routes 10000,100000 -perline-max 10000 -probes 20000 \
		-conntrack 20000 -capture-rates 100000 -capture-time 1s \
		-dualwan-cidrs 1000 -dualwan-time 1s -dualwan-probes 200 $(BENCHFLAGS)

# Only seed case 2's question: which dual-WAN method forwards fastest, with a 10k-CIDR list.
bench-dualwan:
	go run ./cmd/roundtrip-bench -o - -only dualwan $(BENCHFLAGS)

# The BPF program of engine/kernel/dropwatch (skb:kfree_skb drop reasons), compiled from C by
# bpf2go into objects and Go wrappers that are committed, so `go build` needs no clang. Rerun
# after changing engine/kernel/dropwatch/bpf/*. Needs clang and libbpf's headers:
#   apt-get install -y clang llvm libbpf-dev
# Debian 12's clang-14 (the `clang` package) compiled the committed objects; another clang is
# chosen with BPF2GO_CC, for example: make generate BPF2GO_CC=clang-19.
BPF2GO_CC ?= clang
generate:
	BPF2GO_CC=$(BPF2GO_CC) go generate ./engine/kernel/dropwatch/...
