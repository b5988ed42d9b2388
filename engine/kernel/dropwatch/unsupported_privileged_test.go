package dropwatch_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/lab"
)

// helperEnv makes the test binary, re-executed, act as a small program instead of testing.
const helperEnv = "DROPWATCH_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "start" {
		// Start as the user it runs as, and say what happened.
		w, err := dropwatch.Start(context.Background(), dropwatch.Options{})
		if err != nil {
			fmt.Printf("unsupported=%v\n%v\n", errors.Is(err, dropwatch.ErrUnsupported), err)
			os.Exit(0)
		}
		w.Close()
		fmt.Println("started")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// An unprivileged process gets ErrUnsupported and one line naming the privileges needed.
func TestPrivilegedDropUnprivileged(t *testing.T) {
	lab.Require(t)
	// A copy of the test binary that the unprivileged user can run.
	dir, err := os.MkdirTemp("", "dropwatch-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "dropwatch.test")
	copyFile(t, bin)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), helperEnv+"=start")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("running the helper as nobody: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || lines[0] != "unsupported=true" {
		t.Fatalf("unprivileged Start said %q; want an ErrUnsupported in one line", out)
	}
	if !strings.Contains(lines[1], "CAP_BPF") || !strings.Contains(lines[1], "go on without") {
		t.Errorf("error %q does not say what is needed and what still works", lines[1])
	}
}

func copyFile(t *testing.T, dst string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
