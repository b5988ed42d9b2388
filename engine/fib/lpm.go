package fib

import (
	"math/bits"
	"net/netip"
	"unsafe"

	"roundtrip/engine/inet"
)

// lpmTrie is the prefix index of one routing table: a multibit trie with a stride of 8 bits whose
// nodes are compressed with popcount bitmaps, so a lookup touches at most one node per address
// byte (4 for IPv4, 16 for IPv6) whatever the table's size.
//
// The root holds prefix lengths 0..8 and a node at depth d holds lengths 8d+1..8d+8, so a /24 sits
// in the node of its first two bytes: the common lengths (/16, /24, /32, /48, /64) need no node of
// their own. Inside a node the prefix of length l (0..8 bits of the node's byte) has the index
// 1<<l | byte>>(8-l), in 1..511, the layout of a complete binary tree; a set bit in the node's
// prefix bitmap says the index holds a prefix, and the prefix's value is at the number of set
// bits below it.
//
// A node is one block of words in the trie's arena (lpmBlock): bitmaps, values (8 bytes each,
// fibValue) and the offsets of its children. At a full table the nodes near the root stay in
// the cache and a lookup waits for memory about once, for the node of its address's first two
// or three bytes, where pointers to nodes and to their values cost two or three waits
// (BENCHMARKS.md, "Simulated lookups"), and there is no per-node allocation.
//
// The kernel does not stop at the longest match: when none of the routes of the longest prefix
// qualifies (tos, dead nexthops, oif) it backtracks to shorter ones (fib_trie.c fib_table_lookup,
// ip6_fib.c fib6_backtrack). An lpmCursor therefore yields every matching prefix, longest first.
type lpmTrie struct {
	// chunks are the arena: a node's offset is its chunk's index << lpmChunkBits | its first
	// word's index in the chunk. A chunk never grows beyond its capacity, so nodes do not move
	// unless the trie moves them.
	chunks [][]uint64
	root   uint64 // the offset of the root node
	bytes  int    // address length: 4 or 16
	used   int    // words the nodes use, of those the chunks hold
	// cur is the chunk each depth's nodes are taken from, +1 (0: none yet). A table's
	// prefixes, in order, fill one node per depth at a time, which then is its chunk's last
	// block and grows in place.
	cur [16]int
	// top indexes a large IPv4 table's nodes of depth 1 and 2 by the address's first byte
	// and first two bytes (offset+1, 0: none), so that a lookup goes straight to the node it
	// most often ends in: 256 KB, which stay in the cache, where the nodes of depth 1 hold
	// twice as much (index).
	top1 []uint32
	top2 []uint32
}

// lpmIndexMin is the number of nodes of depth 2 from which an IPv4 table gets a top index.
var lpmIndexMin = 4096

// index makes the top index of an IPv4 table with many nodes; the table must not change
// afterwards.
func (t *lpmTrie) index() {
	if t.bytes != 4 {
		return
	}
	top1, top2 := make([]uint32, 256), make([]uint32, 1<<16)
	n := 0
	root := t.block(uint32(t.root))
	for i := range 256 {
		o1, ok := t.child(root, byte(i))
		if !ok {
			continue
		}
		top1[i] = o1 + 1
		b1 := t.block(o1)
		for j := range 256 {
			if o2, ok := t.child(b1, byte(j)); ok {
				top2[i<<8|j] = o2 + 1
				n++
			}
		}
	}
	if n >= lpmIndexMin {
		t.top1, t.top2 = top1, top2
	}
}

// prefetch starts loading the node of depth 2 a lookup of the IPv4 address a will read, when
// the table has a top index: at a full table it is the lookup's one wait for memory, which
// then overlaps the rules and tables read before this one.
func (t *lpmTrie) prefetch(a [4]byte) {
	o2 := t.top2[int(a[0])<<8|int(a[1])]
	if o2 == 0 {
		return
	}
	o := o2 - 1
	c := t.chunks[o>>lpmChunkBits]
	prefetch(uintptr(unsafe.Pointer(unsafe.SliceData(c))) + uintptr(o&(1<<lpmChunkBits-1))*8)
}

// child returns the offset of a node's child for byte k.
func (t *lpmTrie) child(b []uint64, k byte) (uint32, bool) {
	kids := (*[4]uint64)(b[lpmKids:lpmHdr])
	if kids[k>>6]&(1<<(k&63)) == 0 {
		return 0, false
	}
	return uint32(b[lpmVals+int(uint32(b[lpmHdr]))+rank256(kids, int(k))]), true
}

// lpmBlock: the words of a node, from its offset.
const (
	lpmKids = 8  // words 0..7: the bitmap of the indexes 1..511 that hold a prefix; 8..11: the bitmap of the bytes that have a child
	lpmHdr  = 12 // the number of values (low 32 bits) and of words the node may use (high 32)
	lpmVals = 13 // then the values in index order, then the children's offsets in byte order

	lpmChunkBits = 20
	lpmMinChunk  = 64
)

func newLPMTrie(f inet.Family) *lpmTrie {
	t := &lpmTrie{bytes: 4}
	if f == inet.V6 {
		t.bytes = 16
	}
	t.root = uint64(t.newNode(0, lpmVals+3))
	return t
}

// block returns the words of a node, from its first to its chunk's last.
func (t *lpmTrie) block(o uint32) []uint64 {
	c := t.chunks[o>>lpmChunkBits]
	return c[o&(1<<lpmChunkBits-1) : cap(c)]
}

// alloc returns the offset of n fresh (zero) words for a node at depth d.
func (t *lpmTrie) alloc(d, n int) uint32 {
	ci := t.cur[d] - 1
	if ci < 0 || cap(t.chunks[ci])-len(t.chunks[ci]) < n {
		size := lpmMinChunk
		if ci >= 0 {
			size = min(2*cap(t.chunks[ci]), 1<<lpmChunkBits)
		}
		if len(t.chunks) == 1<<(32-lpmChunkBits) {
			panic("fib: a routing table too large for 32-bit node offsets (32 GB)")
		}
		t.chunks = append(t.chunks, make([]uint64, 0, max(size, n)))
		ci = len(t.chunks) - 1
		t.cur[d] = ci + 1
	}
	c := t.chunks[ci]
	t.chunks[ci] = c[:len(c)+n]
	return uint32(ci)<<lpmChunkBits | uint32(len(c))
}

// newNode returns the offset of an empty node at depth d with room for n words.
func (t *lpmTrie) newNode(d, n int) uint32 {
	o := t.alloc(d, n)
	t.block(o)[lpmHdr] = uint64(n) << 32
	t.used += lpmVals
	return o
}

// nodeSize returns the words a node uses.
func nodeSize(b []uint64) int {
	return lpmVals + int(uint32(b[lpmHdr])) + bits.OnesCount64(b[8]) + bits.OnesCount64(b[9]) +
		bits.OnesCount64(b[10]) + bits.OnesCount64(b[11])
}

// insertWord inserts w at position pos of the node whose offset *slot holds, growing the node
// when it is full: in place when it is the arena's last block (prefixes that come in order, as
// a dump delivers them, fill one node after the other), else by moving it to a larger block
// (and *slot with it). It returns the node's offset.
func (t *lpmTrie) insertWord(d int, slot *uint64, pos int, w uint64) uint32 {
	o := uint32(*slot)
	b := t.block(o)
	size := nodeSize(b)
	if room := int(b[lpmHdr] >> 32); size+1 > room {
		grown := max(size+1, room+room/2)
		ci, at := int(o>>lpmChunkBits), int(o&(1<<lpmChunkBits-1))
		if c := t.chunks[ci]; ci == t.cur[d]-1 && at+room == len(c) && at+grown <= cap(c) {
			t.chunks[ci] = c[:at+grown]
			b[lpmHdr] = uint64(uint32(b[lpmHdr])) | uint64(grown)<<32
		} else {
			no := t.alloc(d, grown)
			nb := t.block(no)
			copy(nb[:size], b[:size])
			nb[lpmHdr] = uint64(uint32(b[lpmHdr])) | uint64(grown)<<32
			*slot = uint64(no)
			o, b = no, nb
		}
	}
	copy(b[pos+1:size+1], b[pos:size])
	b[pos] = w
	t.used++
	return o
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
	at := &t.root // where the node's offset is kept
	for d := 0; d < depth; d++ {
		b := t.block(uint32(*at))
		c := k[d]
		kids := (*[4]uint64)(b[lpmKids:lpmHdr])
		r := rank256(kids, int(c))
		pos := lpmVals + int(uint32(b[lpmHdr])) + r
		if kids[c>>6]&(1<<(c&63)) == 0 {
			if !add {
				return nil, false
			}
			b = t.block(t.insertWord(d, at, pos, 0))
			b[lpmKids+c>>6] |= 1 << (c & 63)
			b[pos] = uint64(t.newNode(d+1, lpmVals+3))
		}
		at = &b[pos]
	}
	b := t.block(uint32(*at))
	idx := nodeIndex(l, k[depth])
	pfx := (*[8]uint64)(b[:8])
	r := rank512(pfx, idx)
	if pfx[idx>>6]&(1<<(idx&63)) != 0 {
		return &b[lpmVals+r], false
	}
	if !add {
		return nil, false
	}
	b = t.block(t.insertWord(depth, at, lpmVals+r, 0))
	b[idx>>6] |= 1 << (idx & 63)
	b[lpmHdr]++
	return &b[lpmVals+r], true
}

// each calls fn with every value slot of the trie.
func (t *lpmTrie) each(fn func(*uint64)) { t.eachIn(uint32(t.root), fn) }

func (t *lpmTrie) eachIn(o uint32, fn func(*uint64)) {
	b := t.block(o)
	nv := int(uint32(b[lpmHdr]))
	for i := range nv {
		fn(&b[lpmVals+i])
	}
	for i := lpmVals + nv; i < nodeSize(b); i++ {
		t.eachIn(uint32(b[i]), fn)
	}
}

// compact copies the nodes into a new arena when the blocks left behind as nodes grew are more
// than a quarter of it (prefixes that came out of order). A table built in order, as a dump
// delivers it, has next to none and is not copied, so building it never holds it twice.
func (t *lpmTrie) compact() {
	held := 0
	for _, c := range t.chunks {
		held += len(c)
	}
	if held-t.used > t.used/4 {
		t.compactNow()
	}
}

// compactNow copies the nodes into a new arena without the room and the blocks left behind,
// breadth first: the nodes of each depth together, so that those near the root, which every
// lookup reads, share few cache lines and pages.
func (t *lpmTrie) compactNow() {
	old := *t
	t.chunks, t.cur = nil, [16]int{} // one sequence, breadth first
	t.root = uint64(t.copyNode(&old, uint32(old.root)))
	queue := []uint32{uint32(t.root)}
	for len(queue) > 0 {
		b := t.block(queue[0])
		queue = queue[1:]
		for i := lpmVals + int(uint32(b[lpmHdr])); i < nodeSize(b); i++ {
			c := t.copyNode(&old, uint32(b[i]))
			b[i] = uint64(c) // b stays valid: chunks do not move
			queue = append(queue, c)
		}
	}
}

// copyNode copies a node of old, its children's offsets still old's.
func (t *lpmTrie) copyNode(old *lpmTrie, o uint32) uint32 {
	ob := old.block(o)
	size := nodeSize(ob)
	no := t.alloc(0, size)
	nb := t.block(no)
	copy(nb[:size], ob[:size])
	nb[lpmHdr] = uint64(uint32(ob[lpmHdr])) | uint64(size)<<32
	return no
}

// lpmShort holds, for the top five bits of a byte, the bits of the indexes of its prefixes of
// lengths 0..5 (nodeIndex), all in a node's first bitmap word.
var lpmShort = func() (m [32]uint64) {
	for k := range 32 {
		for l := 0; l <= 5; l++ {
			m[k] |= 1 << nodeIndex(l, byte(k<<3))
		}
	}
	return m
}()

// lpmCursor walks the prefixes that contain one address, longest first.
type lpmCursor struct {
	t     *lpmTrie
	nodes [16]uint32
	key   [16]byte
	depth int // node being read
	l     int // next prefix length inside that node's byte to try
}

// find positions the cursor on the deepest node on the address's path.
func (t *lpmTrie) find(a netip.Addr, c *lpmCursor) {
	c.t = t
	c.key = addrKey(a)
	o := uint32(t.root)
	d := 0
	c.nodes[0] = o
	if t.top2 != nil {
		if o2 := t.top2[int(c.key[0])<<8|int(c.key[1])]; o2 != 0 {
			c.nodes[1], c.nodes[2] = t.top1[c.key[0]]-1, o2-1
			o, d = o2-1, 2
		}
	}
	for d+1 < t.bytes {
		b := t.block(o)
		k := c.key[d]
		kids := (*[4]uint64)(b[lpmKids:lpmHdr])
		if kids[k>>6]&(1<<(k&63)) == 0 {
			break
		}
		o = uint32(b[lpmVals+int(uint32(b[lpmHdr]))+rank256(kids, int(k))])
		d++
		c.nodes[d] = o
	}
	c.depth, c.l = d, 8
}

// next returns the value of the next shorter matching prefix and its length; ok is false when
// there is none.
func (c *lpmCursor) next() (v uint64, plen int, ok bool) {
	for c.depth >= 0 {
		b := c.t.block(c.nodes[c.depth])
		pfx := (*[8]uint64)(b[:8])
		k := c.key[c.depth]
		low := 1
		if c.depth == 0 {
			low = 0 // only the root holds length 0
		}
		for ; c.l >= 6 && c.l >= low; c.l-- {
			idx := nodeIndex(c.l, k)
			if pfx[idx>>6]&(1<<(idx&63)) != 0 {
				plen = 8*c.depth + c.l
				c.l--
				return b[lpmVals+rank512(pfx, idx)], plen, true
			}
		}
		if c.l >= low {
			// Lengths 0..5 have their indexes (below 64) in the first word: the set bits
			// among those of k's prefixes no longer than c.l, the highest the longest.
			m := pfx[0] & lpmShort[k>>3] & (uint64(1)<<(2<<c.l) - 1)
			if low > 0 {
				m &^= 2 // index 1, length 0, is the root's only
			}
			if m != 0 {
				idx := 63 - bits.LeadingZeros64(m)
				l := bits.Len(uint(idx)) - 1
				c.l = l - 1
				return b[lpmVals+bits.OnesCount64(pfx[0]&(1<<idx-1))], 8*c.depth + l, true
			}
		}
		c.depth--
		c.l = 8
	}
	return 0, 0, false
}
