package cli

// The nftables reader registers itself with kernel.Read: linking it in makes every command
// (and the console, and diagnose) read native nft rulesets.
import _ "roundtrip/engine/kernel/nftread"
