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
// index holds a prefix, and the prefix's value in vals is at the number of set bits below it.
// A value is 8 bytes (see fibRouteValue), so a node holds its prefixes without pointers.
//
// The kernel does not stop at the longest match: when none of the routes of the longest prefix
// qualifies (tos, dead nexthops, oif) it backtracks to shorter ones (fib_trie.c fib_table_lookup,
// ip6_fib.c fib6_backtrack). An lpmCursor therefore yields every matching prefix, longest first.
type lpmTrie struct {
	root  lpmNode
	bytes int // address length: 4 or 16
}

type lpmNode struct {
	pfx      [8]uint64 // indexes 1..511 that hold a prefix
	vals     []uint64  // the value of each prefix, in index order
	kids     [4]uint64 // bytes that have a child node
	children []*lpmNode
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

// value returns the value slot of a masked prefix, creating it (zero, fresh) when add is set;
// nil when the prefix is not there and add is not set. The slot is valid until the next
// insertion.
func (t *lpmTrie) value(p netip.Prefix, add bool) (slot *uint64, fresh bool) {
	k := addrKey(p.Addr())
	depth, l := position(p.Bits())
	n := &t.root
	for d := 0; d < depth; d++ {
		b := k[d]
		has := n.kids[b>>6]&(1<<(b&63)) != 0
		r := rank256(&n.kids, int(b))
		if !has {
			if !add {
				return nil, false
			}
			n.kids[b>>6] |= 1 << (b & 63)
			n.children = slices.Insert(n.children, r, &lpmNode{})
		}
		n = n.children[r]
	}
	idx := nodeIndex(l, k[depth])
	r := rank512(&n.pfx, idx)
	if n.pfx[idx>>6]&(1<<(idx&63)) != 0 {
		return &n.vals[r], false
	}
	if !add {
		return nil, false
	}
	n.pfx[idx>>6] |= 1 << (idx & 63)
	n.vals = slices.Insert(n.vals, r, 0)
	return &n.vals[r], true
}

// each calls fn with every value slot of the trie.
func (n *lpmNode) each(fn func(*uint64)) {
	for i := range n.vals {
		fn(&n.vals[i])
	}
	for _, c := range n.children {
		c.each(fn)
	}
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

// next returns the value of the next shorter matching prefix and its length; ok is false when
// there is none.
func (c *lpmCursor) next() (v uint64, bits int, ok bool) {
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
				bits = 8*c.depth + c.l
				c.l--
				return n.vals[rank512(&n.pfx, idx)], bits, true
			}
		}
		c.depth--
		c.l = 8
	}
	return 0, 0, false
}
