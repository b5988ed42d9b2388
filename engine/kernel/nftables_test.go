package kernel

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"roundtrip/engine/model"
	"roundtrip/engine/nft"
)

func TestReadNFTablesKeepsOnlyNativeRulesets(t *testing.T) {
	defer RegisterNFTReader(nil)
	iptablesNFT := &nft.Table{Family: nft.FamilyIP, Name: "filter", Origin: "iptables-nft"}
	native := &nft.Table{Family: nft.FamilyInet, Name: "fw"}
	for _, tc := range []struct {
		name       string
		rs         *nft.Ruleset
		err        error
		wantNative bool
		wantErr    bool
	}{
		{name: "iptables-nft only", rs: &nft.Ruleset{Tables: []*nft.Table{iptablesNFT}}},
		{name: "a native table", rs: &nft.Ruleset{Tables: []*nft.Table{iptablesNFT, native}}, wantNative: true},
		{name: "no nf_tables", err: fmt.Errorf("reading: %w", ErrNFTUnsupported)},
		{name: "another error", err: errors.New("netlink: boom"), wantErr: true},
	} {
		RegisterNFTReader(func(context.Context, Namespace) (*nft.Ruleset, error) { return tc.rs, tc.err })
		st := &model.State{}
		st.Netfilter.Foreign = []string{"inet fw"}
		err := readNFTables(context.Background(), Namespace{Name: "x"}, st)
		if (err != nil) != tc.wantErr || (st.Nftables != nil) != tc.wantNative || (len(st.Netfilter.Foreign) == 0) != tc.wantNative {
			t.Errorf("%s: err %v, nftables %v, foreign %v", tc.name, err, st.Nftables, st.Netfilter.Foreign)
		}
	}
	// Without root the dump is refused (EPERM): no ruleset, no error.
	RegisterNFTReader(func(context.Context, Namespace) (*nft.Ruleset, error) {
		return nil, fmt.Errorf("dumping tables: %w", syscall.EPERM)
	})
	st := &model.State{}
	if err := readNFTables(context.Background(), Namespace{}, st); err != nil || st.Nftables != nil {
		t.Fatalf("without root: %v %v", err, st.Nftables)
	}
}
