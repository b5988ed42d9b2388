package dropwatch_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/kernel/dropwatch/dwtest"
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
	out := dwtest.RunAsNobody(t, helperEnv+"=start")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != "unsupported=true" {
		t.Fatalf("unprivileged Start said %q; want an ErrUnsupported in one line", out)
	}
	if !strings.Contains(lines[1], "CAP_BPF") || !strings.Contains(lines[1], "go on without") {
		t.Errorf("error %q does not say what is needed and what still works", lines[1])
	}
}
