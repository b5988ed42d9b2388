package ui

import (
	"errors"
	"syscall"
	"time"

	"roundtrip/engine/kernel"
	"roundtrip/wizards"
)

// WatchStatus implements common.WatchReader: the status file `roundtrip watch` writes in the
// namespace's journal directory.
func (b *LiveBackend) WatchStatus() (*wizards.WatchStatus, error) {
	s, err := kernel.OpenStore(b.NS)
	if err != nil {
		return nil, err
	}
	st, err := wizards.ReadWatchStatus(s.Dir, time.Now(), func(pid int) bool {
		err := syscall.Kill(pid, 0)
		return err == nil || errors.Is(err, syscall.EPERM)
	})
	if errors.Is(err, wizards.ErrNoWatch) {
		return nil, nil
	}
	return st, err
}
