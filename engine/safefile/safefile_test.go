package safefile

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// victim is a file an attacker wants root to overwrite; it must come out of every test as it
// went in.
func victim(t *testing.T) (string, func()) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(p, []byte("root's secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil { // past the umask
		t.Fatal(err)
	}
	return p, func() {
		t.Helper()
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatalf("victim: %v", err)
		}
		b, _ := os.ReadFile(p)
		if string(b) != "root's secret\n" || fi.Mode() != 0o644 {
			t.Errorf("the victim was changed: mode %v, content %q", fi.Mode(), b)
		}
	}
}

func warnings() (*[]string, Warner) {
	var ws []string
	return &ws, func(m string) { ws = append(ws, m) }
}

// wantOutput checks that path is a regular file (not a link) with exactly mode and content.
func wantOutput(t *testing.T, path string, mode fs.FileMode, content string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want a regular file with %v", path, fi.Mode(), mode)
	}
	b, _ := os.ReadFile(path)
	if string(b) != content {
		t.Errorf("%s holds %q, want %q", path, b, content)
	}
	// Nothing else is left in the directory (no temporary file).
	ents, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestWriteFileReplacesPlantedLinks(t *testing.T) {
	// A restrictive umask must not matter, nor a permissive one: the mode is set with fchmod.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	for _, mode := range []fs.FileMode{ModePrivate, ModeScript} {
		vic, check := victim(t)
		dir := t.TempDir()

		// A symbolic link at the target.
		sym := filepath.Join(dir, "plan.json")
		if err := os.Symlink(vic, sym); err != nil {
			t.Fatal(err)
		}
		ws, warn := warnings()
		if err := WriteFile(sym, []byte("new\n"), mode, warn); err != nil {
			t.Fatal(err)
		}
		check()
		wantOutput(t, sym, mode, "new\n")
		if len(*ws) != 1 || !strings.Contains((*ws)[0], "symbolic link (to "+vic+")") {
			t.Errorf("warnings = %q, want one naming the replaced link", *ws)
		}

		// A hard link at the target: rename replaces the name, the other name keeps its data.
		hard := filepath.Join(filepath.Dir(vic), "hard")
		if err := os.Link(vic, hard); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(hard, []byte("new\n"), mode, nil); err != nil {
			t.Fatal(err)
		}
		check()
		wantOutput(t, hard, mode, "new\n")

		// A dangling link to where the attacker wants a file created.
		wanted := filepath.Join(t.TempDir(), "cron-job")
		dangling := filepath.Join(dir, "out.sh")
		if err := os.Symlink(wanted, dangling); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(dangling, []byte("#!/bin/sh\n"), mode, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(wanted); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the dangling link's target was created: %v", err)
		}
		wantOutput(t, dangling, mode, "#!/bin/sh\n")
	}
}

// TestCreateStreamsBesideTheTarget writes in pieces, as a capture does: until Commit the
// target is untouched (a planted link stays a link to an untouched file), and Abort leaves
// nothing.
func TestCreateStreamsBesideTheTarget(t *testing.T) {
	vic, check := victim(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "c.pcapng")
	if err := os.Symlink(vic, target); err != nil {
		t.Fatal(err)
	}
	f, err := Create(target, ModePrivate, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := f.Write([]byte("packet")); err != nil {
			t.Fatal(err)
		}
		check()
		if fi, err := os.Lstat(target); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Fatalf("the target changed before Commit: %v %v", fi.Mode(), err)
		}
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Abort() // after Commit: nothing
	check()
	wantOutput(t, target, ModePrivate, "packetpacketpacket")

	// Abort: the temporary file goes, the target stays.
	g, err := Create(target, ModePrivate, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.Write([]byte("half"))
	g.Abort()
	wantOutput(t, target, ModePrivate, "packetpacketpacket")
	if err := g.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
}

func TestCreateRefuses(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, want string }{
		{fifo, "is a named pipe, not a regular file"},
		{sub, "is a directory"},
		{"/dev/null", "/dev is not a place for files"},
		{"/dev/stdout", "/dev is not a place for files"},
		{"/proc/self/fd/1", "is not a place for files"},
		{filepath.Join(open, "plan.json"), "can be written by every user and has no sticky bit"},
		{filepath.Join(dir, "missing", "plan.json"), "no such file or directory"},
		{"", "no file name"},
	} {
		err := WriteFile(tt.path, []byte("x"), ModePrivate, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("WriteFile(%q) = %v, want an error with %q", tt.path, err, tt.want)
		}
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("the named pipe was replaced: %v", err)
	}
	if ents, _ := os.ReadDir(open); len(ents) != 0 {
		t.Errorf("something was written into the world-writable directory: %v", ents)
	}
}

func TestCreateDirectoryWarnings(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another group")
	}
	// Sticky and world-writable (as /tmp): others cannot swap the file, no warning.
	sticky := t.TempDir()
	if err := os.Chmod(sticky, 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	ws, warn := warnings()
	if err := WriteFile(filepath.Join(sticky, "a"), []byte("x"), ModePrivate, warn); err != nil || len(*ws) != 0 {
		t.Errorf("sticky directory: %v, warnings %q", err, *ws)
	}
	// Group-writable, of a group other than root's: written, with a warning.
	group := t.TempDir()
	if err := os.Chown(group, -1, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(group, 0o775); err != nil {
		t.Fatal(err)
	}
	ws, warn = warnings()
	if err := WriteFile(filepath.Join(group, "a"), []byte("x"), ModePrivate, warn); err != nil {
		t.Fatal(err)
	}
	if len(*ws) != 1 || !strings.Contains((*ws)[0], "can be written by group 65534") {
		t.Errorf("warnings = %q, want one about the group", *ws)
	}
	// A directory reached through another user's symbolic link: followed, with a warning.
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	ws, warn = warnings()
	if err := WriteFile(filepath.Join(link, "a"), []byte("x"), ModePrivate, warn); err != nil {
		t.Fatal(err)
	}
	if len(*ws) != 1 || !strings.Contains((*ws)[0], "symbolic link of user 65534: the file goes to "+real) {
		t.Errorf("warnings = %q, want one naming where the link leads", *ws)
	}
	wantOutput(t, filepath.Join(real, "a"), ModePrivate, "x")
}

func TestOpenRefusesSpecialAndLargeFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	var nr *NotRegularError
	for _, p := range []string{"/dev/zero", fifo, dir} {
		// A named pipe without a writer would block an ordinary open forever.
		if _, err := ReadFile(p, 1<<20); !errors.As(err, &nr) {
			t.Errorf("ReadFile(%s) = %v, want a NotRegularError", p, err)
		}
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 1001), 0o600); err != nil {
		t.Fatal(err)
	}
	var tl *TooLargeError
	if _, err := ReadFile(big, 1000); !errors.As(err, &tl) || err.Error() != big+": file too large (max 1000 bytes)" {
		t.Errorf("ReadFile over the limit = %v", err)
	}
	if b, err := ReadFile(big, 1001); err != nil || len(b) != 1001 {
		t.Errorf("ReadFile at the limit = %d bytes, %v", len(b), err)
	}
	// Standard input may be endless: ReadAll stops at the limit.
	if _, err := ReadAll(zeros{}, "standard input", 3<<20); !errors.As(err, &tl) || !strings.Contains(err.Error(), "standard input: file too large (max 3 MiB)") {
		t.Errorf("ReadAll of an endless reader = %v", err)
	}
	if b, err := ReadAll(io.LimitReader(zeros{}, 4096), "x", 4096); err != nil || len(b) != 4096 {
		t.Errorf("ReadAll at the limit = %d bytes, %v", len(b), err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestChangeableByOthers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to other users")
	}
	p := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	who := func(trusted ...int) string {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return ChangeableByOthers(fi, trusted...)
	}
	if w := who(); w != "" {
		t.Errorf("root's 0600 file: %q, want no one", w)
	}
	os.Chmod(p, 0o666)
	if w := who(); !strings.Contains(w, "every user can write it (mode 0666)") {
		t.Errorf("0666: %q", w)
	}
	os.Chmod(p, 0o620)
	if w := who(); w != "" {
		t.Errorf("group root may write: %q, want no one", w)
	}
	os.Chown(p, -1, 65534)
	if w := who(); !strings.Contains(w, "group") || !strings.Contains(w, "(65534) can write it") {
		t.Errorf("group-writable: %q", w)
	}
	os.Chmod(p, 0o600)
	os.Chown(p, 65534, 65534)
	if w := who(); !strings.Contains(w, "it belongs to user") || !strings.Contains(w, "65534") {
		t.Errorf("another user's file: %q", w)
	}
	if w := who(65534); w != "" {
		t.Errorf("the trusted user's own file: %q, want no one", w)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{2 << 30: "2 GiB", 256 << 20: "256 MiB", 1536 << 10: "1536 KiB", 100: "100 bytes", 1<<20 + 1: "1048577 bytes"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}
