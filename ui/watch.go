package ui

import (
	"errors"

	"roundtrip/watch"
)

// WatchStatus implements common.WatchReader: the status file `roundtrip watch` writes in the
// namespace's journal directory.
func (b *LiveBackend) WatchStatus() (*watch.Status, error) {
	st, err := watch.ReadLive(b.NS)
	if errors.Is(err, watch.ErrNoWatch) {
		return nil, nil
	}
	return st, err
}
