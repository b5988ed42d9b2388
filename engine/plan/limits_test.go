package plan

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"

	"roundtrip/engine/model"
	"roundtrip/engine/safefile"
)

// TestLoadRefusesSpecialFiles: /dev/zero as a plan or a snapshot grew without bound until
// the kernel killed a process; a named pipe blocked forever. Both are refused at once.
func TestLoadRefusesSpecialFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	var nr *safefile.NotRegularError
	for _, p := range []string{"/dev/zero", fifo} {
		if _, err := Load(p); !errors.As(err, &nr) {
			t.Errorf("LoadPlanFile(%s) = %v, want a refusal of a file that is not regular", p, err)
		}
		if _, err := model.LoadSnapshotFile(p); !errors.As(err, &nr) {
			t.Errorf("LoadSnapshotFile(%s) = %v, want a refusal of a file that is not regular", p, err)
		}
	}
}
