package nftrace

// SetOwnerFlag lets tests create trace tables as on a kernel without owner tables (< 5.12),
// which outlive their process.
func SetOwnerFlag(on bool) { ownerFlag = on }
