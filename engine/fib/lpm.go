package fib

import (
	"math/bits"
	"net/netip"
	"slices"

	"roundtrip/engine/inet"
)

// lpmTrie is the prefix index of one routing table: a multibit trie with a stride of 8 bits whose
// nodes are compressed with popcount bitmaps, so a lookup touches at most one node per address
// byte (4 for IPv4, 16 for IPv6) whatever the table's size.
//
// The root holds prefix lengths 0..8 and a node at depth d holds lengths 8d+1..8d+8, so a /24 sits
// in the node of its first two bytes: the common lengths (/16, /24, /32, /48, /64) need no node of
// their own. Inside a node the prefix of length l (0..8 bits of the node's byte) has the index
// 1<<l | byte>>(8-l), in 1..511, the layout of a complete binary tree; a set bit in pfx says the
// index holds an entry, and the entry's position in entries is the number of set bits below it.
//
// The kernel does not stop at the longest match: when none of the routes of the longest prefix
// qualifies (tos, dead nexthops, oif) it backtracks to shorter ones (fib_trie.c fib_table_lookup,
// ip6_fib.c fib6_backtrack). An lpmCursor therefore yields every matching prefix, longest first.
type lpmTrie struct {
	root  lpmNode
	bytes int // address length: 4 or 16
}

type lpmNode struct {
	pfx      [8]uint64 // indexes 1..511 that hold an entry
	entries  []lpmEntry
	kids     [4]uint64 // bytes that have a child node
	children []*lpmNode
}

// lpmEntry is one prefix of a table and its routes in the kernel's order. It is kept small and
// free of addresses (the prefix is its routes' destination) because nodes hold entries by value
// and a lookup reads them.
type lpmEntry struct {
	routes []fibRoute
	bits   int16 // the prefix length
}

// prefix returns the entry's prefix, which is the destination of each of its routes.
func (e *lpmEntry) prefix() netip.Prefix {
	if len(e.routes) == 0 {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(e.routes[0].dst.Addr().Unmap(), int(e.bits)).Masked()
}

func newLPMTrie(f inet.Family) *lpmTrie {
	if f == inet.V6 {
		return &lpmTrie{bytes: 16}
	}
	return &lpmTrie{bytes: 4}
}

// addrKey returns the address bytes, IPv4 in the first four.
func addrKey(a netip.Addr) (k [16]byte) {
	if a.Is4() {
		b := a.As4()
		copy(k[:], b[:])
		return k
	}
	return a.As16()
}

// position returns the depth of the node holding a prefix length and the prefix's length inside
// that node's byte.
func position(bitsLen int) (depth, l int) {
	if bitsLen == 0 {
		return 0, 0
	}
	depth = (bitsLen - 1) / 8
	return depth, bitsLen - 8*depth
}

func nodeIndex(l int, b byte) int { return 1<<l | int(b)>>(8-l) }

func rank512(s *[8]uint64, idx int) int {
	w := idx >> 6
	n := bits.OnesCount64(s[w] & (1<<(idx&63) - 1))
	for i := 0; i < w; i++ {
		n += bits.OnesCount64(s[i])
	}
	return n
}

func rank256(s *[4]uint64, idx int) int {
	w := idx >> 6
	n := bits.OnesCount64(s[w] & (1<<(idx&63) - 1))
	for i := 0; i < w; i++ {
		n += bits.OnesCount64(s[i])
	}
	return n
}

// entry returns the entry of a masked prefix, creating it when add is set.
func (t *lpmTrie) entry(p netip.Prefix, add bool) *lpmEntry {
	k := addrKey(p.Addr())
	depth, l := position(p.Bits())
	n := &t.root
	for d := 0; d < depth; d++ {
		b := k[d]
		has := n.kids[b>>6]&(1<<(b&63)) != 0
		r := rank256(&n.kids, int(b))
		if !has {
			if !add {
				return nil
			}
			n.kids[b>>6] |= 1 << (b & 63)
			n.children = slices.Insert(n.children, r, &lpmNode{})
		}
		n = n.children[r]
	}
	idx := nodeIndex(l, k[depth])
	r := rank512(&n.pfx, idx)
	if n.pfx[idx>>6]&(1<<(idx&63)) != 0 {
		return &n.entries[r]
	}
	if !add {
		return nil
	}
	n.pfx[idx>>6] |= 1 << (idx & 63)
	n.entries = slices.Insert(n.entries, r, lpmEntry{bits: int16(p.Bits())})
	return &n.entries[r] // valid until the next insertion into this node
}

// lpmCursor walks the prefixes that contain one address, longest first.
type lpmCursor struct {
	nodes [16]*lpmNode
	key   [16]byte
	depth int // node being read
	l     int // next prefix length inside that node's byte to try
}

// find positions the cursor on the deepest node on the address's path.
func (t *lpmTrie) find(a netip.Addr, c *lpmCursor) {
	c.key = addrKey(a)
	n := &t.root
	d := 0
	c.nodes[0] = n
	for d+1 < t.bytes {
		b := c.key[d]
		if n.kids[b>>6]&(1<<(b&63)) == 0 {
			break
		}
		n = n.children[rank256(&n.kids, int(b))]
		d++
		c.nodes[d] = n
	}
	c.depth, c.l = d, 8
}

// next returns the next shorter matching prefix, or nil when there is none.
func (c *lpmCursor) next() *lpmEntry {
	for c.depth >= 0 {
		n := c.nodes[c.depth]
		b := c.key[c.depth]
		low := 1
		if c.depth == 0 {
			low = 0 // only the root holds length 0
		}
		for ; c.l >= low; c.l-- {
			idx := nodeIndex(c.l, b)
			if n.pfx[idx>>6]&(1<<(idx&63)) != 0 {
				c.l--
				return &n.entries[rank512(&n.pfx, idx)]
			}
		}
		c.depth--
		c.l = 8
	}
	return nil
}
