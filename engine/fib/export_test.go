package fib

// SetIndexMin sets the number of nodes from which an IPv4 table gets its top index, for the
// tests of package fib_test, and returns the previous one.
func SetIndexMin(n int) int {
	old := lpmIndexMin
	lpmIndexMin = n
	return old
}
