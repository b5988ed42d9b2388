package kernel

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

// TestExecRunnerOutputBounded runs a tool with endless output (yes): the runner stops at its
// limit with an error instead of reading until the kernel kills a process for memory.
func TestExecRunnerOutputBounded(t *testing.T) {
	if _, err := exec.LookPath("yes"); err != nil {
		t.Skip("needs yes (coreutils)")
	}
	defer func(old int) { maxToolOutput = old }(maxToolOutput)
	maxToolOutput = 1 << 20
	_, err := ExecRunner{}.Run(context.Background(), nil, "yes")
	if err == nil || !strings.Contains(err.Error(), `running "yes": its output is over 1 MiB`) {
		t.Fatalf("endless output: %v, want an error naming the limit", err)
	}
	// Under the limit the output comes through whole.
	out, err := ExecRunner{}.Run(context.Background(), nil, "head", "-c", "1048576", "/dev/zero")
	if err != nil || len(out) != 1<<20 {
		t.Errorf("output at the limit: %d bytes, %v", len(out), err)
	}
}

func TestCheckCaptureMemory(t *testing.T) {
	if err := CheckCaptureMemory(DefaultCaptureBuffer); err != nil {
		t.Errorf("the default ring: %v", err)
	}
	if err := CheckCaptureMemory(MaxCaptureBuffer + 1<<20); err == nil || !strings.Contains(err.Error(), "over the maximum of 1024 MiB") {
		t.Errorf("a ring over the maximum: %v", err)
	}
	avail, err := memAvailable()
	if err != nil {
		t.Skipf("no MemAvailable: %v", err)
	}
	// Two rings of a third of the available memory each are two thirds of it: refused
	// whenever that is under the maximum ring size.
	if third := int(avail / 3); third <= MaxCaptureBuffer {
		if err := CheckCaptureMemory(third); err == nil || !strings.Contains(err.Error(), "more than half of the") {
			t.Errorf("rings of a third of the memory: %v", err)
		}
	}
	// OpenCapture itself refuses too, before allocating anything.
	if _, err := OpenCapture(Namespace{}, CaptureConfig{BufferSize: 100000 << 20}); err == nil || !strings.Contains(err.Error(), "over the maximum") {
		t.Errorf("OpenCapture with a 100000 MiB ring: %v", err)
	}
	if _, err := OpenCapture(Namespace{}, CaptureConfig{SnapLen: MaxSnapLen + 1}); err == nil || !strings.Contains(err.Error(), "snap length") {
		t.Errorf("OpenCapture with a snap length over the maximum: %v", err)
	}
}
