package engine

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

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
		if _, err := LoadPlanFile(p); !errors.As(err, &nr) {
			t.Errorf("LoadPlanFile(%s) = %v, want a refusal of a file that is not regular", p, err)
		}
		if _, err := LoadSnapshotFile(p); !errors.As(err, &nr) {
			t.Errorf("LoadSnapshotFile(%s) = %v, want a refusal of a file that is not regular", p, err)
		}
	}
}

// TestTableIDIs32Bits: a table id is a 32-bit number; 99999999999 is no table, not one
// truncated into another.
func TestTableIDIs32Bits(t *testing.T) {
	s := &State{TableNames: map[int]string{100: "uplink"}}
	for name, want := range map[string]int{"main": TableMain, "uplink": 100, "100": 100, "0": 0, "4294967295": 4294967295} {
		if id, err := s.TableID(name); err != nil || id != want {
			t.Errorf("TableID(%q) = %d, %v; want %d", name, id, err, want)
		}
	}
	for name, want := range map[string]string{
		"99999999999": "routing table 99999999999 is out of range: a table id is a number from 0 to 4294967295",
		"4294967296":  "out of range",
		"-1":          "not a number and not named",
		"nosuch":      `unknown routing table "nosuch"`,
		"":            "unknown routing table",
	} {
		if _, err := s.TableID(name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("TableID(%q) = %v, want an error with %q", name, err, want)
		}
	}
}
