package nftread

import (
	"context"

	"roundtrip/engine/kernel"
	"roundtrip/engine/nft"
)

func fillFromJSON(ctx context.Context, rs *nft.Ruleset, runner kernel.Runner) error { return nil }
