package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// The namespaces of a test process that died (no cleanup ran) are deleted by the next lab:
// those whose noted owner is gone, or whose pid now names another process (its start time
// differs); a live owner's are kept; a note of a namespace never made goes too.
func TestPrivilegedSweepDeletesOrphans(t *testing.T) {
	Require(t)
	// A registry of this test's own: the notes of the host's other test processes stay.
	old := registryDir
	registryDir = filepath.Join(t.TempDir(), "registry")
	t.Cleanup(func() { registryDir = old })

	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	tag := fmt.Sprintf("rtsweep%d", self)
	cases := []struct {
		name, owner string
		make, swept bool
	}{
		{tag + "-dead", fmt.Sprintf("%d 123", exited.Process.Pid), true, true},
		{tag + "-reused", fmt.Sprintf("%d 1", self), true, true},
		{tag + "-live", fmt.Sprintf("%d %s", self, processStart(self)), true, false},
		{tag + "-never", fmt.Sprintf("%d 123", exited.Process.Pid), false, false},
	}
	if registry() == "" {
		t.Fatal("the test's registry is not usable")
	}
	for _, c := range cases {
		if c.make {
			if out, err := exec.Command("ip", "netns", "add", c.name).CombinedOutput(); err != nil {
				t.Fatalf("ip netns add %s: %v: %s", c.name, err, out)
			}
			t.Cleanup(func() { exec.Command("ip", "netns", "del", c.name).Run() })
		}
		if err := os.WriteFile(filepath.Join(registryDir, c.name), []byte(c.owner+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A planted name that is no namespace name of ours is left alone.
	if err := os.WriteFile(filepath.Join(registryDir, "-rf"), []byte("1 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	swept := sweepStale()
	for _, c := range cases {
		_, nsErr := os.Stat(filepath.Join("/run/netns", c.name))
		_, noteErr := os.Stat(filepath.Join(registryDir, c.name))
		switch {
		case c.swept && (nsErr == nil || noteErr == nil || !slices.Contains(swept, c.name)):
			t.Errorf("%s (owner %s): namespace there %v, note there %v, swept %v; want both gone", c.name, c.owner, nsErr == nil, noteErr == nil, swept)
		case c.make && !c.swept && (nsErr != nil || noteErr != nil):
			t.Errorf("%s of a live owner: namespace %v, note %v; want both kept", c.name, nsErr, noteErr)
		case !c.make && noteErr == nil:
			t.Errorf("the note of %s, a namespace never made, was kept", c.name)
		}
	}
	if _, err := os.Stat(filepath.Join(registryDir, "-rf")); err != nil {
		t.Errorf("the planted note was touched: %v", err)
	}

	// A lab's namespaces are noted while they live, and forgotten when deleted.
	l := New(t)
	n := l.NS("noted")
	if _, err := os.Stat(filepath.Join(registryDir, n.Name)); err != nil {
		t.Errorf("namespace %s is not noted: %v", n.Name, err)
	}
}
