package dropwatch

import (
	"errors"
	"fmt"
)

// ErrUnsupported is wrapped by the error of Start when this kernel, its configuration or the
// process's privileges do not allow watching drops. Everything else goes on without them.
var ErrUnsupported = errors.New("kernel drop reasons unavailable")

// UnsupportedError says in one line why drops cannot be watched here, and what still works.
type UnsupportedError struct {
	Why   string // "loading BPF needs root (CAP_BPF and CAP_PERFMON)"
	Cause error  // what the kernel or the library said; may be nil
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s: %s; capture and diagnosis go on without the kernel's drop reasons", ErrUnsupported, e.Why)
}

// Unwrap returns ErrUnsupported and the cause, for errors.Is.
func (e *UnsupportedError) Unwrap() []error {
	if e.Cause == nil {
		return []error{ErrUnsupported}
	}
	return []error{ErrUnsupported, e.Cause}
}

func unsupported(why string, cause error) error { return &UnsupportedError{Why: why, Cause: cause} }
