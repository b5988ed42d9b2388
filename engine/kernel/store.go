package kernel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"roundtrip/engine/apply"
)

// StateDirEnv names the environment variable that moves roundtrip's journals away from
// DefaultStateDir (tests point it at a temporary directory).
const StateDirEnv = "ROUNDTRIP_STATE_DIR"

// DefaultStateDir holds the journals of every network namespace, one directory each.
const DefaultStateDir = "/var/lib/roundtrip"

// ErrNeedsRoot is returned (wrapped) when the journals cannot be reached for lack of privilege.
var ErrNeedsRoot = errors.New("needs root")

// ErrUntrustedStateDir is returned (wrapped) when the state directory, or a directory above
// it, could be changed by a user other than root: roundtrip runs the undo steps it finds there
// as root, so a journal planted there would run as root.
var ErrUntrustedStateDir = errors.New("the state directory is not safe")

// Store is the journal directory of one network namespace, with the lock that keeps two
// applies (or an apply and a revert timer) from interleaving there.
type Store struct {
	Dir string
	NS  Namespace
	// Notes are what the store set aside or found wrong on its way (an empty journal, a
	// corrupt one), for the command to show.
	Notes []string

	// fault, for tests, is asked before every write to a journal or steps file (op "write";
	// an error fails the write half way, as a full disk does) and after every sync ("synced").
	fault func(path, op string) error
}

// netnsFile is the file whose inode identifies a namespace: the bind mount `ip netns add`
// makes for a named one, the process's own otherwise. Both are nsfs inodes, so `roundtrip
// --netns X` and `ip netns exec X roundtrip` find the same journals.
func (ns Namespace) netnsFile() string {
	if ns.Name == "" {
		return "/proc/self/ns/net"
	}
	return filepath.Join("/run/netns", ns.Name)
}

// StateDir returns the base directory of the journals ($ROUNDTRIP_STATE_DIR or the default).
func StateDir() string {
	if d := os.Getenv(StateDirEnv); d != "" {
		return d
	}
	return DefaultStateDir
}

// OpenStore opens (creating it if needed) the journal directory of a namespace under
// StateDir(): netns/net-INODE, keyed by the namespace's inode so that each namespace has its
// own history and `ip netns exec X roundtrip rollback` touches X only. A namespace deleted and
// created again may get the inode of an old one; its journals then show up in history but
// cannot be confirmed or rolled back by mistake, since every rollback checks what it undoes.
//
// The directory and every directory above it must be owned by root (or by the user running
// roundtrip) and not writable by others (a world-writable directory with the sticky bit, such
// as /tmp, may be above it): otherwise OpenStore refuses with ErrUntrustedStateDir.
func OpenStore(ns Namespace) (*Store, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(ns.netnsFile(), &st); err != nil {
		return nil, fmt.Errorf("identifying %s: %w (is it listed by `ip netns list`?)", ns, err)
	}
	base := StateDir()
	dir := filepath.Join(base, "netns", fmt.Sprintf("net-%d", st.Ino))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("%w: the journals in %s belong to root: run it as root (sudo), or set %s to a directory of yours", ErrNeedsRoot, base, StateDirEnv)
		}
		return nil, fmt.Errorf("creating the journal directory: %w (set %s to use another place)", err, StateDirEnv)
	}
	if err := checkTrusted(dir); err != nil {
		return nil, err
	}
	s := &Store{Dir: dir, NS: ns}
	if ns.Name != "" {
		// For people browsing the directory: which name the namespace had.
		_ = writeFileAtomic(filepath.Join(dir, "name"), []byte(ns.Name+"\n"), 0o600)
	}
	return s, nil
}

// trustedOwner reports whether a file owned by uid may hold what roundtrip runs as root.
func trustedOwner(uid uint32) bool { return uid == 0 || uid == uint32(os.Geteuid()) }

// checkTrusted checks that nobody but root (or the user running roundtrip) can change what is
// in dir: it and every directory above it, along the path as given and as the symbolic links
// in it resolve, are owned by such a user and not writable by group or others, except for
// sticky directories (/tmp), whose entries only their owners can replace.
func checkTrusted(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", abs, err)
	}
	for _, path := range []string{abs, resolved} {
		for p := path; ; p = filepath.Dir(p) {
			fi, err := os.Lstat(p)
			if err != nil {
				if errors.Is(err, fs.ErrPermission) {
					return fmt.Errorf("%w: %s is not readable: run it as root (sudo)", ErrNeedsRoot, p)
				}
				return fmt.Errorf("checking %s: %w", p, err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			why := ""
			switch {
			case !trustedOwner(st.Uid):
				why = fmt.Sprintf("%s is owned by uid %d", p, st.Uid)
			case fi.Mode()&fs.ModeSymlink != 0:
				// A link owned by root in a safe directory is as safe as that directory.
			case fi.Mode()&0o022 != 0 && !(fi.Mode()&fs.ModeSticky != 0 && p != path):
				why = fmt.Sprintf("%s is writable by group or others (mode %04o)", p, fi.Mode().Perm())
			}
			if why != "" {
				return fmt.Errorf("%w: refusing %s: %s; roundtrip runs the undo steps it finds there as root, so only root may change it: chown root and chmod go-w it, or set %s to a directory only root can write",
					ErrUntrustedStateDir, dir, why, StateDirEnv)
			}
			if p == "/" || p == "." {
				break
			}
		}
	}
	return nil
}

// openTrusted opens a file of the store for reading without following a link, and checks that
// it is a regular file only root (or this user) can write.
func openTrusted(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is a symbolic link: not trusted", filepath.Base(path))
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		err = fmt.Errorf("%s is not a regular file: not trusted", filepath.Base(path))
	case !trustedOwner(st.Uid):
		err = fmt.Errorf("%s is owned by uid %d: not trusted", filepath.Base(path), st.Uid)
	case fi.Mode()&0o022 != 0:
		err = fmt.Errorf("%s is writable by group or others (mode %04o): not trusted", filepath.Base(path), fi.Mode().Perm())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// createExclusive creates a new file of the store, failing if anything is at its path.
func createExclusive(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
}

// ErrLocked is returned (wrapped) when another roundtrip holds the namespace's lock.
var ErrLocked = errors.New("another roundtrip is changing this namespace")

// Lock takes the namespace's apply lock (flock on Dir/lock), waiting up to wait for a holder
// to finish. The lock dies with its process, so a killed apply never leaves it stuck; the
// file descriptor is close-on-exec, so the revert timer does not inherit it. Holding it, the
// store sets aside what interrupted applies left behind (Notes says what).
func (s *Store) Lock(ctx context.Context, wait time.Duration) (release func(), err error) {
	path := filepath.Join(s.Dir, "lock")
	f, err := openLockFile(path)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			holder, _ := os.ReadFile(path)
			f.Close()
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "unknown process"
			}
			return nil, fmt.Errorf("%w (%s): wait for it to finish, or give it time with --lock-wait", ErrLocked, who)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the lock on %s: %w", s.NS, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d: %s since %s\n", os.Getpid(), strings.Join(os.Args, " "), time.Now().Format(time.RFC3339))), 0)
	s.Notes = nil // what this holder of the lock found
	s.tidy()
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// openLockFile opens (creating) a lock file of the store, refusing a link or a file not root's.
func openLockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("%w: opening %s: %w", ErrNeedsRoot, path, err)
		}
		return nil, fmt.Errorf("opening the lock file: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || !trustedOwner(fi.Sys().(*syscall.Stat_t).Uid) {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file of root's", ErrUntrustedStateDir, path)
	}
	return f, nil
}

// HeldError says who holds a lock TryLock could not take.
type HeldError struct{ Name, Holder string }

func (e *HeldError) Error() string { return fmt.Sprintf("%s is held by %s", e.Name, e.Holder) }

// Unwrap makes a HeldError ErrLocked.
func (e *HeldError) Unwrap() error { return ErrLocked }

// TryLock takes a lock of its own in the store (flock on Dir/name), beside the apply lock,
// without waiting: a daemon that must run once per namespace (roundtrip watch) takes it for
// as long as it runs. Held elsewhere, the error is a *HeldError (which is ErrLocked). The
// lock dies with the process.
func (s *Store) TryLock(name string) (release func(), err error) {
	path := filepath.Join(s.Dir, name)
	f, err := openLockFile(path)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &HeldError{Name: name, Holder: strings.TrimSpace(string(holder))}
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d\n", os.Getpid())), 0)
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func (s *Store) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// tidy, under the lock, removes what an apply killed before its journal existed left behind
// (temporary files, steps without a journal) and sets aside journals that record nothing done:
// empty ones, or ones whose apply died before its first step.
func (s *Store) tidy() {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return
	}
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".new") || strings.HasPrefix(name, ".") && strings.Contains(name, ".new-"):
			os.Remove(filepath.Join(s.Dir, name)) // written by a process that died before renaming it
		case strings.HasSuffix(name, stepsSuffix):
			if id := strings.TrimSuffix(name, stepsSuffix); !names[id+journalSuffix] {
				os.Remove(filepath.Join(s.Dir, name))
			}
		}
	}
	js, err := s.List()
	if err != nil {
		return
	}
	for _, j := range js {
		switch {
		case j.Empty:
			s.setAside(j.ID, "it is empty: an apply was killed as it started, before it changed anything")
		case j.Status == StatusApplying:
			full, err := s.Load(j.ID)
			if err == nil && len(full.Started) == 0 && len(full.Done) == 0 {
				s.setAside(j.ID, "its apply stopped before its first step: nothing was changed")
			}
		}
	}
}

// setAside renames a journal that records nothing done out of the way.
func (s *Store) setAside(id, why string) {
	from := filepath.Join(s.Dir, id+journalSuffix)
	to := from + ".aside"
	if err := os.Rename(from, to); err != nil {
		s.note("journal %s: %s; setting it aside failed: %v", id, why, err)
		return
	}
	os.Remove(filepath.Join(s.Dir, id+stepsSuffix))
	s.note("journal %s: %s; set aside as %s", id, why, to)
}

const (
	journalSuffix = ".journal"
	stepsSuffix   = ".steps"
	indexFile     = "index.json"
)

// indexEntry is the summary of one journal as of a size and change time of its file (which a
// write, a chmod or a chown moves on): history reads summaries, not journals.
type indexEntry struct {
	Size    int64    `json:"size"`
	ModTime int64    `json:"ctime"`
	Journal *Journal `json:"journal"`
}

func changeTime(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ctim.Nano()
	}
	return fi.ModTime().UnixNano()
}

func (s *Store) readIndex() map[string]indexEntry {
	f, err := openTrusted(filepath.Join(s.Dir, indexFile))
	if err != nil {
		return nil
	}
	defer f.Close()
	var idx map[string]indexEntry
	if json.NewDecoder(f).Decode(&idx) != nil {
		return nil // a cache: rebuilt from the journals
	}
	return idx
}

// List returns the summaries of the namespace's journals, oldest first (Load reads one in
// full). A journal that cannot be read is listed with status StatusUnreadable and its Problem;
// it is skipped by Latest, so one bad journal never blocks new work.
func (s *Store) List() ([]*Journal, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("%w: listing %s: %w", ErrNeedsRoot, s.Dir, err)
		}
		return nil, fmt.Errorf("listing journals: %w", err)
	}
	idx := s.readIndex()
	fresh := map[string]indexEntry{}
	var out []*Journal
	changed := false
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, journalSuffix) {
			continue
		}
		id := strings.TrimSuffix(name, journalSuffix)
		fi, err := os.Lstat(filepath.Join(s.Dir, name))
		if err != nil {
			continue // removed meanwhile
		}
		ent, ok := idx[id]
		if !ok || ent.Size != fi.Size() || ent.ModTime != changeTime(fi) || ent.Journal == nil {
			changed = true
			j, err := s.Load(id)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				j = &Journal{Journal: apply.Journal{Head: JournalHead{ID: id}, Path: filepath.Join(s.Dir, name), Status: StatusUnreadable, Problem: err.Error(),
					Empty: errors.Is(err, errNoHead)}}
				j.Head.Started = fi.ModTime().UTC()
			}
			ent = indexEntry{Size: fi.Size(), ModTime: changeTime(fi), Journal: j.summary()}
		}
		fresh[id] = ent
		j := ent.Journal
		j.Path = filepath.Join(s.Dir, name)
		j.store = s // for StepSummaries
		j.checkTimer()
		out = append(out, j)
	}
	if changed || len(fresh) != len(idx) {
		s.writeIndex(fresh)
	}
	slices.SortFunc(out, func(a, b *Journal) int {
		if c := a.Head.Started.Compare(b.Head.Started); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// writeIndex saves the summaries; a store that cannot (not root, disk full) reads the
// journals next time instead.
func (s *Store) writeIndex(idx map[string]indexEntry) {
	b, err := json.Marshal(idx)
	if err != nil {
		return
	}
	_ = writeFileAtomic(filepath.Join(s.Dir, indexFile), b, 0o600)
}

// Latest returns the most recent active journal, or nil when there is none. Unreadable
// journals are skipped (and reported in history).
func (s *Store) Latest() (*Journal, error) {
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	for _, j := range slices.Backward(all) {
		if j.Active() {
			return j, nil
		}
	}
	return nil, nil
}

// PendingConfirmation returns the journal waiting for `roundtrip confirm` in a namespace (the
// TUI shows its countdown from ConfirmBy, and whether its timer still runs), or nil.
func PendingConfirmation(ns Namespace) (*Journal, error) {
	s, err := OpenStore(ns)
	if err != nil {
		return nil, err
	}
	j, err := s.Latest()
	if err != nil || j == nil || j.Status != StatusPending {
		return nil, err
	}
	return j, nil
}

// processStart returns a process's start time (clock ticks after boot, /proc/PID/stat field
// 22): with the pid it identifies a process across pid reuse. A zombie counts as dead.
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold anything; fields follow the
	// last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("process %d is dead", pid) // a zombie its parent has not reaped
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 is the 20th after the name
}

// bootID identifies the running boot: a process of another boot is gone whatever its pid.
func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// processArgs returns a process's command line, or nil.
func processArgs(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// updateIndex records a journal's summary after a change to it.
func (s *Store) updateIndex(j *Journal) {
	if s == nil {
		return
	}
	fi, err := os.Lstat(j.Path)
	if err != nil {
		return
	}
	idx := s.readIndex()
	if idx == nil {
		idx = map[string]indexEntry{}
	}
	idx[j.ID] = indexEntry{Size: fi.Size(), ModTime: changeTime(fi), Journal: j.summary()}
	s.writeIndex(idx)
}
