// Package safefile writes roundtrip's output files without ever writing through a link planted
// at their path, and reads its input files only when they are regular files within a size limit.
//
// roundtrip runs as root. An output file (a plan, a snapshot, a capture, a script) is written to
// a new file created exclusively (O_CREAT|O_EXCL|O_NOFOLLOW, random name) in the target's own
// directory, synced, given its final mode and renamed over the target: rename replaces a
// symbolic or hard link at the target instead of following it, and readers see either the old
// file or the complete new one.
package safefile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// File modes of roundtrip's outputs. They are set with fchmod after writing, so the umask does
// not change them.
const (
	// ModePrivate is for plans, snapshots and packet captures: they describe the host's
	// network (and captures hold its traffic), which is no one else's business.
	ModePrivate fs.FileMode = 0o600
	// ModeScript is for shell scripts roundtrip writes for root to run.
	ModeScript fs.FileMode = 0o700
)

// Warner receives a warning about an output (a link at the target that is replaced, a
// directory that others may write); nil discards warnings.
type Warner func(msg string)

func (w Warner) warn(format string, a ...any) {
	if w != nil {
		w(fmt.Sprintf(format, a...))
	}
}

// File is an output being written: a temporary file next to its target until Commit renames it
// over the target. A File that is neither committed nor aborted leaves its temporary file
// behind (named .TARGET.RANDOM.tmp), never a partial target.
type File struct {
	f      *os.File
	target string
	tmp    string
	mode   fs.FileMode
	done   bool
}

// Create starts writing the output file path with the given mode. It refuses a target that is
// a directory or a special file (a device, a pipe, a socket: /dev/null would be replaced, not
// written to), a directory in /dev, /proc or /sys, and a directory that every user may write
// and that has no sticky bit (anyone could swap the file after it is written). A symbolic link
// at the target, a directory that the group may write, and a directory that is a symbolic link
// owned by another user are warned about.
func Create(path string, mode fs.FileMode, warn Warner) (*File, error) {
	if path == "" {
		return nil, errors.New("no file name given")
	}
	target := filepath.Clean(path)
	dir, base := filepath.Dir(target), filepath.Base(target)
	if base == "" || base == "." || base == ".." {
		return nil, fmt.Errorf("writing %s: not a file name", path)
	}
	if err := checkDir(dir, base, warn); err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := checkTarget(target, warn); err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	// The temporary name starts with a dot (hidden from ls and shell globs) and stays within
	// NAME_MAX however long the target's name is.
	prefix := base
	if len(prefix) > 200 {
		prefix = prefix[:200]
	}
	var lastErr error
	for range 10 {
		var rnd [8]byte
		if _, err := rand.Read(rnd[:]); err != nil {
			return nil, fmt.Errorf("writing %s: %w", path, err)
		}
		tmp := filepath.Join(dir, "."+prefix+"."+hex.EncodeToString(rnd[:])+".tmp")
		// 0600 until Commit: nothing is readable by others before it is complete.
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
		if errors.Is(err, fs.ErrExist) {
			lastErr = err
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("writing %s: %w", path, err)
		}
		return &File{f: f, target: target, tmp: tmp, mode: mode}, nil
	}
	return nil, fmt.Errorf("writing %s: no free temporary name in %s: %w", path, dir, lastErr)
}

// Name returns the target's path.
func (f *File) Name() string { return f.target }

// Write writes to the temporary file.
func (f *File) Write(p []byte) (int, error) {
	if f.done {
		return 0, fmt.Errorf("writing %s: already closed", f.target)
	}
	return f.f.Write(p)
}

// Commit syncs the file, gives it its mode, renames it over the target and syncs the directory,
// so that the target is complete after a crash. On error the target is left as it was.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("writing %s: already closed", f.target)
	}
	f.done = true
	err := errors.Join(f.f.Sync(), f.f.Chmod(f.mode))
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// rename(2) replaces whatever name is at the target, a symbolic link included,
		// without following it.
		err = os.Rename(f.tmp, f.target)
	}
	if err != nil {
		os.Remove(f.tmp)
		return fmt.Errorf("writing %s: %w", f.target, err)
	}
	if err := syncDir(filepath.Dir(f.target)); err != nil {
		return fmt.Errorf("writing %s: syncing its directory: %w", f.target, err)
	}
	return nil
}

// Abort removes the temporary file and leaves the target as it was. It does nothing after
// Commit, so `defer f.Abort()` is safe.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.f.Close()
	os.Remove(f.tmp)
}

// WriteFile writes data to path as Create and Commit do.
func WriteFile(path string, data []byte, mode fs.FileMode, warn Warner) error {
	f, err := Create(path, mode, warn)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Commit()
}

// checkDir checks the directory an output is written to. Symbolic links to directories are
// followed, as every tool does (/var/run is one); only the directory they lead to counts.
func checkDir(dir, base string, warn Warner) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("its directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("its directory: %w", err)
	}
	if abs, err := filepath.Abs(resolved); err == nil {
		resolved = abs
	}
	if resolved == "/dev" || under(resolved, "/proc") || under(resolved, "/sys") || under(resolved, "/dev/fd") {
		return fmt.Errorf("%s is not a place for files (roundtrip writes regular files only; to write to standard output, leave the file out or give -)", resolved)
	}
	if li, err := os.Lstat(dir); err == nil && li.Mode()&fs.ModeSymlink != 0 {
		if st, ok := li.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
			warn.warn("%s is a symbolic link of user %d: the file goes to %s", dir, st.Uid, resolved)
		}
	}
	perm := fi.Mode()
	if perm&fs.ModeSticky != 0 {
		// As in /tmp: others cannot rename or remove what they do not own.
		return nil
	}
	if perm&0o002 != 0 {
		return fmt.Errorf("its directory %s can be written by every user and has no sticky bit, so anyone could replace the file once it is written: write it to another directory (or chmod o-w %s)", resolved, resolved)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && perm&0o020 != 0 && st.Gid != 0 {
		warn.warn("the directory %s can be written by group %d: its members could replace %s once it is written", resolved, st.Gid, base)
	}
	return nil
}

// checkTarget looks at what is at the target now: nothing, a regular file or a symbolic link
// (replaced) are fine.
func checkTarget(target string, warn Warner) error {
	fi, err := os.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		return nil
	case m&fs.ModeSymlink != 0:
		to, _ := os.Readlink(target)
		warn.warn("%s was a symbolic link (to %s): it is replaced by the file, not followed", target, to)
		return nil
	case m.IsDir():
		return fmt.Errorf("%s is a directory: give a file name", target)
	default:
		return fmt.Errorf("%s is %s, not a regular file: roundtrip only replaces regular files; give another name", target, kind(m))
	}
}

func under(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		// Some file systems cannot sync a directory (EINVAL); the rename is done either way.
		return err
	}
	return nil
}

// kind names a file type for a message.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "not a regular file"
}

// ToWriter returns a Warner that prints "warning: MSG" lines to w.
func ToWriter(w io.Writer) Warner {
	return func(msg string) { fmt.Fprintf(w, "warning: %s\n", msg) }
}
