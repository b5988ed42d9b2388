package cli

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the binary roundtripBinary built, so that test runs leave nothing in /tmp.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" && binErr == nil {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
