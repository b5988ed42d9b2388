package model

// State.Nftables is the nf_tables ruleset as read over netlink, when the host has native nft
// tables (iptables-nft's own tables are in it too, marked by their Origin); nil when there
// are none or it was not read. Trace and doctor evaluate the native tables; the iptables
// model keeps evaluating iptables-nft's.

// NativeNFT reports whether the state holds nftables tables that are not iptables-nft's (or
// ebtables/arptables-nft's) own: a firewall written with nft.
func (s *State) NativeNFT() bool {
	if s.Nftables == nil {
		return false
	}
	for _, t := range s.Nftables.Tables {
		if t.HasNative() {
			return true
		}
	}
	return false
}
