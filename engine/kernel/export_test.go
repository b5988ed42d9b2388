package kernel

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"roundtrip/engine/inet"
)

// SetFault makes every write to a journal or steps file of the store ask f first (op "write":
// an error fails the write half way, as a full disk does), and tells f after every sync (op
// "synced").
func SetFault(s *Store, f func(path, op string) error) { s.fault = f }

// RouteCountsForTest exposes routeCounts: the kernel's own counts of each family's routes.
func RouteCountsForTest(ns Namespace) (v4, v6 int) { return routeCounts(ns) }

// EncodeBatchForTest and DecodeBatchForTest are the steps file's codec for batches.
func EncodeBatchForTest(st *Step) []byte         { return encodeBatch(st) }
func DecodeBatchForTest(b []byte) (*Step, error) { return decodeBatch(b) }

// PickRestore exposes pickRestore: which iptables-restore a backend's transaction runs with.
func PickRestore(ctx context.Context, r Runner, f inet.Family, backend string) (string, RestoreCaps, error) {
	return pickRestore(ctx, r, map[string]RestoreCaps{}, f, backend)
}

// RewriteStepForTest replaces step k of a journal's steps file (properly framed, so that only
// the content's own checks can refuse it).
func RewriteStepForTest(s *Store, id string, k int, st *Step) error {
	j, err := s.Load(id)
	if err != nil {
		return err
	}
	if j.Steps != 1 || k != 0 {
		return errors.New("RewriteStepForTest handles journals of one step")
	}
	out, err := appendStep([]byte(stepsMagic), k, st, map[string]int{})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, id+stepsSuffix), out, 0o600)
}
