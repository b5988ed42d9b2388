package kernel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"

	"roundtrip/engine/model"
	"roundtrip/engine/nft"
)

// The nftables reader lives in engine/kernel/nftread, which imports this package for
// Namespace and Runner, so Read cannot call it directly: nftread registers itself here when
// it is linked in (the roundtrip binary imports it).
var (
	nftMu     sync.Mutex
	nftReader func(context.Context, Namespace) (*nft.Ruleset, error)
)

// ErrNFTUnsupported is what a registered nftables reader wraps when the kernel has no
// nf_tables: Read then leaves State.Nftables nil without an error.
var ErrNFTUnsupported = errors.New("nf_tables not available")

// RegisterNFTReader sets the function Read uses to read a namespace's nftables ruleset.
func RegisterNFTReader(f func(context.Context, Namespace) (*nft.Ruleset, error)) {
	nftMu.Lock()
	defer nftMu.Unlock()
	nftReader = f
}

// readNFTables reads the nft ruleset into the state when it has native tables (tables nft
// wrote, not iptables-nft): a host whose firewall is only iptables-nft keeps State.Nftables
// nil, since iptables-save shows all of it already.
func readNFTables(ctx context.Context, ns Namespace, st *model.State) error {
	nftMu.Lock()
	read := nftReader
	nftMu.Unlock()
	if read == nil {
		return nil
	}
	rs, err := read(ctx, ns)
	switch {
	// Without root the dump is refused; Netfilter.Unavailable already says netfilter needs it.
	case errors.Is(err, ErrNFTUnsupported), errors.Is(err, syscall.EPERM), isPermissionDenied(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading nftables of %s: %w", ns, err)
	}
	st.Nftables = rs
	if !st.NativeNFT() {
		st.Nftables = nil
		return nil
	}
	// Foreign lists the native tables nothing models; now the trace models them. So are the
	// native base chains iptables-nft-save could only mention ("contains incompatible
	// base-chains"): they are in st.Nftables, not hidden.
	st.Netfilter.Foreign = nil
	st.Netfilter.Hidden = slices.DeleteFunc(st.Netfilter.Hidden, func(h string) bool {
		return strings.Contains(h, "incompatible base-chains")
	})
	return nil
}
