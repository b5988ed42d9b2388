package netfilter

import (
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
)

// Both iptables backends can hold a table of one name at once. Their hooks register at the same
// priorities (x_tables' iptable_raw -300, iptable_mangle -150, the NAT core -100 for
// destination and 100 for source NAT, iptable_filter 0, iptable_security 50; iptables-nft's
// base chains take the same standard priorities), so tables of different names keep their
// order across backends, and the trace walks them in it. Between two tables of one name the
// kernel runs the most recently registered hook first (nf_hook_entries_grow), and when each
// registered is not visible: that order is undefined. This is the one place that decides it;
// engine/nft's HookOrder makes the same call for native nftables chains.

// TableOrder lists the backends that hold a table of that family and name, in the order the
// kernel probably runs them: nf_tables first (its chains are usually created after the
// x_tables modules registered at boot, and the newer registration runs first), as
// engine/nft's HookOrder ranks nft chains before legacy tables. Defined is false when more
// than one backend holds the table. A backend whose table has no chain at hook still counts:
// its hook is registered all the same, and an empty chain accepts.
func (n *Sim) TableOrder(f inet.Family, table string) (backends []string, defined bool) {
	nf := &n.s.Netfilter
	has := map[string]bool{}
	for i := range nf.Tables {
		t := &nf.Tables[i]
		if t.Family == f && t.Name == table {
			has[nf.TableBackend(t)] = true
		}
	}
	for _, b := range []string{iptables.BackendNFT, iptables.BackendLegacy, ""} {
		if has[b] {
			backends = append(backends, b)
		}
	}
	return backends, len(backends) <= 1
}
