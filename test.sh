#!/usr/bin/env bash
# Runs every test of roundtrip, the way CI does (.ci/run calls this script).
#
# First it makes sure that what the tests need is installed: the tools the privileged tests run
# in their network namespaces (iproute2, iptables, conntrack, curl, nftables, tmux, tshark, ...)
# and the CA certificates Go needs to download modules. Run as root on Debian/Ubuntu, it
# installs the missing ones with apt-get; otherwise it says what to install and goes on (the
# tests that need them then skip, and say so at the end).
#
# Then it builds the binary, vets the code and runs `go test -count=1 -timeout 60m ./...`,
# printing one line per package, failures in full, and at the end how many tests were skipped
# and why: nobody should take a run with skipped tests for a full pass.
#
# With CI=true (as CI services set it) a privileged test that cannot run fails instead of
# skipping; only tests of kernel features this kernel lacks (ipip, gre) still skip, by name.
#
# Extra arguments go to go test, e.g. ./test.sh -run Case1 ./cmd/... (./... when no package is
# named). ./test.sh --deps-only installs what the tests need and stops there.
set -uo pipefail
cd "$(dirname "$0")"

# command -> Debian package that provides it. Keep in step with engine/lab (labTools and the
# RequireTool calls of the tests).
declare -A pkgs=(
  [ip]=iproute2
  [iptables]=iptables [iptables-save]=iptables [iptables-restore]=iptables
  [ip6tables]=iptables [ip6tables-save]=iptables [ip6tables-restore]=iptables
  [iptables-legacy]=iptables [iptables-nft]=iptables
  [conntrack]=conntrack [curl]=curl [nft]=nftables [tmux]=tmux
  [setpriv]=util-linux [tshark]=tshark [tcpdump]=tcpdump [ipset]=ipset
  [zsh]=zsh [fish]=fish
)
missing=()
for cmd in "${!pkgs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkgs[$cmd]}")
done
# Go verifies the module proxy's certificate against the system's CAs.
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)

if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
      echo "test.sh: apt-get install ${missing[*]} failed; the tests that need them will not run" >&2
    fi
  else
    echo "test.sh: missing ${missing[*]}: install them (as root: apt-get install ${missing[*]})," >&2
    echo "         or run ./test.sh as root on Debian/Ubuntu, which installs them; the tests that need them will not run" >&2
  fi
fi

# ./test.sh --deps-only: install what the tests need, run nothing (.ci/run does this first).
if [ "${1:-}" = --deps-only ]; then
  for cmd in "${!pkgs[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || { echo "test.sh: $cmd is still missing (package ${pkgs[$cmd]})" >&2; exit 1; }
  done
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "test.sh: go is not installed or not in PATH: roundtrip needs Go $(sed -n 's/^go //p' go.mod) or newer (https://go.dev/dl; e.g. /usr/local/go/bin)" >&2
  exit 1
fi
echo "test.sh: $(go version), kernel $(uname -r), uid $(id -u)${CI:+, CI=$CI}"
[ "$(id -u)" = 0 ] || echo "test.sh: not root: the privileged tests (TestPrivileged...) will not run; run ./test.sh as root" >&2

export CGO_ENABLED=0
go build -o /dev/null ./cmd/roundtrip || exit 1
# 32-bit boards and routers (armhf, MIPS) run roundtrip too: it has to keep building for them
# (TestPrivileged32BitBuild runs a 386 build against a namespace).
for arch in arm mipsle; do
  GOARCH=$arch go build -o /dev/null ./cmd/roundtrip || { echo "test.sh: roundtrip no longer builds for GOARCH=$arch (32-bit)" >&2; exit 1; }
done
go vet ./... || exit 1

args=("$@")
named=
for a in "${args[@]}"; do
  case "$a" in ./* | roundtrip*) named=1 ;; esac
done
[ -n "$named" ] || args+=(./...)
go test -json -count=1 -timeout 60m "${args[@]}" | go run .ci/testsum.go
status=("${PIPESTATUS[@]}")
[ "${status[0]}" = 0 ] && [ "${status[1]}" = 0 ] || exit 1

# The renderers' fuzzers run over their corpus in every go test above; under CI (or with
# FUZZTIME set) each also explores new inputs for a short while: the renderers write the
# scripts root runs, so a quoting hole must not wait for someone to fuzz by hand. New failing
# inputs land in engine/plan/testdata/fuzz and fail every later run until fixed.
# Longer by hand: FUZZTIME=10m ./test.sh ./engine/plan
fuzztime="${FUZZTIME:-}"
[ -z "$fuzztime" ] && [ "${CI:-}" = true ] && [ -z "$named" ] && fuzztime=10s
if [ -n "$fuzztime" ]; then
  for target in FuzzRenderScript FuzzRenderNFT FuzzRenderSystemd FuzzRenderNetworkd FuzzRenderIPTablesRestore; do
    echo "test.sh: fuzzing $target for $fuzztime"
    # -parallel 2: each worker holds a corpus in memory; more of them once used 24 GB.
    out=$(go test -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" -parallel 2 ./engine/plan 2>&1) || {
      printf '%s\n' "$out" | tail -40
      echo "test.sh: $target found a failing input (saved under engine/plan/testdata/fuzz/$target)" >&2
      exit 1
    }
  done
fi
