package kernel

import (
	"maps"
	"testing"
)

// fib_triestat as Linux 6.18 prints it (fib_table_print, trie_show_stats), with a table id
// above 2^31, which %d prints negative.
const trieStat = `Basic info: size of leaf: 48 bytes, size of tnode: 40 bytes.
Id 100:
	Aver depth:     1.38
	Max depth:      4
	Leaves:         940540
	Prefixes:       1000000
	Internal nodes: 168734
	  1: 10  2: 167378  3: 1345  21: 1
	Pointers: 2777444
Null ptrs: 1668171
Total size: 127066  kB
Id -94967296:
	Aver depth:     1.00
	Prefixes:       2
Main:
	Aver depth:     1.66
	Max depth:      2
	Leaves:         3
	Prefixes:       3
Local:
	Prefixes:       7
Null ptrs: 10
Total size: 2  kB

Counters:
---------
gets = 12
`

func TestParseTrieStat(t *testing.T) {
	got, err := parseTrieStat([]byte(trieStat))
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]int{100: 1000000, 4200000000: 2, 254: 3, 255: 7}
	if !maps.Equal(got, want) {
		t.Errorf("sizes %v, want %v", got, want)
	}
	if _, err := parseTrieStat([]byte("Basic info: nothing\n")); err == nil {
		t.Error("a listing without tables parsed")
	}
}

func TestParseRT6Stats(t *testing.T) {
	for in, want := range map[string]int{
		"0027 0012 0000 0014 0000 0003 0000\n": 0x14,
		"0001 0001 0000 ffff 0000 0000 0000":   0xffff,
		"0001 0001 0000\n":                     0, // too short: unknown
		"0001 0001 0000 zz 0000 0000 0000\n":   0,
		"":                                     0,
	} {
		if got := parseRT6Stats([]byte(in)); got != want {
			t.Errorf("parseRT6Stats(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestDumpOrder(t *testing.T) {
	got, ok := DumpOrder([]int{255, 100, 254, 300, 1})
	if !ok || len(got) != 5 || got[0] != 1 || got[1] != 300 || got[2] != 100 || got[3] != 254 || got[4] != 255 {
		t.Errorf("DumpOrder = %v, %v; want [1 300 100 254 255] (300 is in bucket 44)", got, ok)
	}
	if _, ok := DumpOrder([]int{100, 356}); ok {
		t.Error("tables 100 and 356 share bucket 100, whose order the kernel does not say")
	}
}
