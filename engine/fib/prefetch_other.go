//go:build !amd64

package fib

// prefetch does nothing where no assembly is written for it.
func prefetch(addr uintptr) {}
