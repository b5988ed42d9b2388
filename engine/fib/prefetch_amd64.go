package fib

// prefetch asks the CPU to bring in the three cache lines from addr while the lookup goes on
// (PREFETCHT0), so that the wait for a trie node overlaps the work before its table is read.
// It never faults, whatever addr is.
//
//go:noescape
func prefetch(addr uintptr)
