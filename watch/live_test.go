package watch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"roundtrip/engine/kernel"
)

// TestOneWatcherPerNamespace takes the watch lock as a running watcher does: a second
// watcher of the same namespace is refused, naming the first's pid, while the namespace's
// apply lock stays free (a watcher does not stop applies); released, the lock can be taken
// again.
func TestOneWatcherPerNamespace(t *testing.T) {
	t.Setenv(kernel.StateDirEnv, t.TempDir())
	store, err := kernel.OpenStore(kernel.Namespace{}) // journals in the temporary directory
	if err != nil {
		t.Fatal(err)
	}
	release, err := lock(store)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lock(store)
	if err == nil || !strings.Contains(err.Error(), "another roundtrip watch runs") || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("second watcher: %v", err)
	}
	var held *kernel.HeldError
	if _, err := store.TryLock(lockName); !errors.As(err, &held) || !errors.Is(err, kernel.ErrLocked) {
		t.Errorf("TryLock of a held lock: %v", err)
	}
	applyRelease, err := store.Lock(t.Context(), 0)
	if err != nil {
		t.Fatalf("the apply lock is not free while a watcher runs: %v", err)
	}
	applyRelease()
	release()
	again, err := lock(store)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again()
	// A link planted at the lock's name is not followed.
	path := filepath.Join(store.Dir, lockName)
	os.Remove(path)
	if err := os.Symlink(filepath.Join(t.TempDir(), "elsewhere"), path); err != nil {
		t.Fatal(err)
	}
	if _, err := lock(store); err == nil {
		t.Error("the lock was taken through a symbolic link")
	}
}
