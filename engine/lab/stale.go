package lab

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// A test process that dies without its cleanups (a panic in a goroutine, the test binary's
// -timeout, SIGKILL) leaves its namespaces behind, and with them their veths, routes and
// servers, run after run. Each namespace a lab makes is therefore noted in registryDir with
// the process that owns it (pid and start time, so that a reused pid is not taken for the
// owner), and the first lab of every test process deletes the namespaces of owners that are
// gone. /run is a tmpfs, like /run/netns: both are empty after a reboot.

// registryDir holds one file per namespace of a running lab; a variable for tests.
var registryDir = "/run/roundtrip-lab"

var sweepOnce sync.Once

// processStart returns the start time of a process in clock ticks since boot (field 22 of
// /proc/PID/stat), or "" when there is no such process.
func processStart(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) is in parentheses and may hold spaces: count after it.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// registry returns registryDir when it is a private directory of this user (created if
// missing), or "" when it is not: then nothing is noted and nothing swept.
func registry() string {
	if privateDir(registryDir) {
		return registryDir
	}
	return ""
}

// note records that this process owns the namespace. It is written before the namespace is
// made: a process killed in between leaves a note of a namespace that does not exist, which
// the sweep removes.
func note(name string) {
	dir := registry()
	if dir == "" {
		return
	}
	pid := os.Getpid()
	content := fmt.Sprintf("%d %s\n", pid, processStart(pid))
	// O_EXCL|O_NOFOLLOW: a file planted under that name is not written through.
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return
	}
	f.WriteString(content)
	f.Close()
}

// forget removes the note of a namespace deleted by its owner.
func forget(name string) {
	if dir := registry(); dir != "" {
		os.Remove(filepath.Join(dir, name))
	}
}

// sweepStale deletes the namespaces noted by processes that are gone, and their notes; it
// returns the names it deleted.
func sweepStale() []string {
	dir := registry()
	if dir == "" {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var swept []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !validLabName(name) {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		f := strings.Fields(string(data))
		if len(f) != 2 {
			continue // being written, or not ours
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil || pid <= 0 || processStart(pid) == f[1] {
			continue // the owner still runs
		}
		if _, err := os.Stat(filepath.Join("/run/netns", name)); err == nil {
			if exec.Command("ip", "netns", "del", name).Run() != nil {
				continue
			}
			swept = append(swept, name)
		}
		os.Remove(path)
	}
	return swept
}

// validLabName accepts the names NS makes (prefix, hex, a dash, a short name): a note is read
// from a directory only root writes, but its name still goes to a command.
func validLabName(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '-' || name == "." || name == ".." {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
