package model

// Bounds on what roundtrip reads from files and tools: a file over its bound is refused with
// "file too large (max ...)" instead of being read into memory until the kernel kills a
// process. Each is far above what a real host needs (a plan of a million routes is about
// 250 MB), and README lists them under "Files and limits".
const (
	// MaxSnapshotFile bounds a snapshot file (--snapshot).
	MaxSnapshotFile = 2 << 30
	// MaxRouteListFile bounds a destination list (multi-wan --route-list).
	MaxRouteListFile = 256 << 20
	// MaxToolOutput bounds what roundtrip reads from a tool it runs (iptables-save).
	MaxToolOutput = 1 << 30
)
