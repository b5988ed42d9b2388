package kernel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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

	"roundtrip/engine"
)

// StateDirEnv names the environment variable that moves roundtrip's journals away from
// DefaultStateDir (tests point it at a temporary directory).
const StateDirEnv = "ROUNDTRIP_STATE_DIR"

// DefaultStateDir holds the journals of every network namespace, one directory each.
const DefaultStateDir = "/var/lib/roundtrip"

// Store is the journal directory of one network namespace, with the lock that keeps two
// applies (or an apply and a revert timer) from interleaving there.
type Store struct {
	Dir string
	NS  Namespace
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

// OpenStore opens (creating it if needed) the journal directory of a namespace under
// $ROUNDTRIP_STATE_DIR or DefaultStateDir: netns/net-INODE, keyed by the namespace's inode so
// that each namespace has its own history and `ip netns exec X roundtrip rollback` touches X
// only. A namespace deleted and created again may get the inode of an old one; its journals
// then show up in history but cannot be confirmed or rolled back by mistake, since every
// rollback checks what it undoes.
func OpenStore(ns Namespace) (*Store, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(ns.netnsFile(), &st); err != nil {
		return nil, fmt.Errorf("identifying %s: %w (is it listed by `ip netns list`?)", ns, err)
	}
	base := os.Getenv(StateDirEnv)
	if base == "" {
		base = DefaultStateDir
	}
	dir := filepath.Join(base, "netns", fmt.Sprintf("net-%d", st.Ino))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the journal directory: %w (set %s to use another place)", err, StateDirEnv)
	}
	if ns.Name != "" {
		// For people browsing the directory: which name the namespace had.
		_ = os.WriteFile(filepath.Join(dir, "name"), []byte(ns.Name+"\n"), 0o600)
	}
	return &Store{Dir: dir, NS: ns}, nil
}

// ErrLocked is returned (wrapped) when another roundtrip holds the namespace's lock.
var ErrLocked = errors.New("another roundtrip is changing this namespace")

// Lock takes the namespace's apply lock (flock on Dir/lock), waiting up to wait for a holder
// to finish. The lock dies with its process, so a killed apply never leaves it stuck; the
// file descriptor is close-on-exec, so the revert timer does not inherit it.
func (s *Store) Lock(ctx context.Context, wait time.Duration) (release func(), err error) {
	path := filepath.Join(s.Dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the lock file: %w", err)
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
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// Journal statuses.
const (
	StatusApplying       = "applying"        // steps under way, or the apply died (see Interrupted)
	StatusApplied        = "applied"         // done, no confirmation asked
	StatusPending        = "pending-confirm" // done; reverts at ConfirmBy unless confirmed
	StatusConfirmed      = "confirmed"
	StatusRolledBack     = "rolled-back"
	StatusRollbackFailed = "rollback-failed" // some undo step failed: see Errors
)

// Step is one unit of an apply: one change, or all netfilter changes of one family (one
// iptables-restore transaction), or all routing table names (one file). Undo lists the
// changes that reverse it, computed from the state before the apply; File, for table names,
// holds the file's old content.
type Step struct {
	Changes []engine.Change `json:"changes"`
	Undo    []engine.Change `json:"undo,omitempty"`
	File    *FileUndo       `json:"file,omitempty"`
}

// FileUndo is a file a step rewrites, with its content before and after.
type FileUndo struct {
	Path    string `json:"path"`
	Existed bool   `json:"existed"`
	Old     []byte `json:"old,omitempty"`
	New     []byte `json:"new,omitempty"`
}

// Summary describes a step in one line.
func (s Step) Summary() string {
	if len(s.Changes) == 1 {
		return s.Changes[0].Summary()
	}
	if len(s.Changes) > 3 {
		return fmt.Sprintf("%s; ... and %d more %s changes", s.Changes[0].Summary(), len(s.Changes)-1, s.Changes[0].Kind)
	}
	var parts []string
	for _, c := range s.Changes {
		parts = append(parts, c.Summary())
	}
	return strings.Join(parts, "; ")
}

// record is one line of a journal file.
type record struct {
	Type      string       `json:"t"`
	Time      time.Time    `json:"time"`
	Step      int          `json:"step,omitempty"`
	Error     string       `json:"error,omitempty"`
	Reason    string       `json:"reason,omitempty"`
	ConfirmBy time.Time    `json:"confirm_by,omitzero"`
	PID       int          `json:"pid,omitempty"`
	Lines     []string     `json:"lines,omitempty"`
	Begin     *JournalHead `json:"begin,omitempty"`
}

// JournalHead is what a journal records before the first step: the plan and every step with
// its undo, so that a crash at any point can be rolled back.
type JournalHead struct {
	ID        string        `json:"id"`
	Started   time.Time     `json:"started"`
	Intent    string        `json:"intent"`
	Namespace string        `json:"namespace,omitempty"`
	PID       int           `json:"pid"`
	Confirm   time.Duration `json:"confirm,omitempty"`
	Plan      *engine.Plan  `json:"plan"`
	Steps     []Step        `json:"steps"`
}

// Journal is what was actually done by one apply, and what happened to it since. It is an
// append-only file of JSON lines, each written and fsynced before roundtrip moves on.
type Journal struct {
	JournalHead
	Path string `json:"-"`

	Started     map[int]bool `json:"-"` // steps begun
	Done        map[int]bool `json:"-"` // steps finished
	Undone      map[int]bool `json:"-"` // steps reversed
	Status      string       `json:"status"`
	AppliedAt   time.Time    `json:"applied_at,omitzero"`
	ConfirmBy   time.Time    `json:"confirm_by,omitzero"`
	ConfirmedAt time.Time    `json:"confirmed_at,omitzero"`
	EndedAt     time.Time    `json:"ended_at,omitzero"` // rolled back
	Reason      string       `json:"reason,omitempty"`  // why it was rolled back
	Errors      []string     `json:"errors,omitempty"`
	Drift       []string     `json:"drift,omitempty"`
	TimerPID    int          `json:"timer_pid,omitempty"`

	f *os.File
}

// newID returns a journal id that sorts by time: 20060102-150405-1a2b.
func newID(t time.Time) string {
	var r [2]byte
	_, _ = rand.Read(r[:])
	return t.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(r[:])
}

// Create writes a new journal's head and returns the journal, open for appending.
func (s *Store) Create(head JournalHead) (*Journal, error) {
	now := time.Now()
	head.ID, head.Started, head.PID = newID(now), now.UTC(), os.Getpid()
	path := filepath.Join(s.Dir, head.ID+".journal")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating journal: %w", err)
	}
	j := &Journal{JournalHead: head, Path: path, f: f, Status: StatusApplying,
		Started: map[int]bool{}, Done: map[int]bool{}, Undone: map[int]bool{}}
	if err := j.write(record{Type: "begin", Begin: &head}); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	// The new file's directory entry must survive a crash too.
	if d, err := os.Open(s.Dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return j, nil
}

// write appends a record and syncs it to disk.
func (j *Journal) write(r record) error {
	if j.f == nil {
		f, err := os.OpenFile(j.Path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("opening journal %s: %w", j.ID, err)
		}
		j.f = f
	}
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding journal record: %w", err)
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing journal %s: %w", j.ID, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("syncing journal %s: %w", j.ID, err)
	}
	j.apply(r)
	return nil
}

// Close closes the journal file.
func (j *Journal) Close() error {
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// apply folds a record into the journal's state.
func (j *Journal) apply(r record) {
	switch r.Type {
	case "start":
		j.Started[r.Step] = true
	case "done":
		j.Done[r.Step] = true
	case "failed":
		j.Errors = append(j.Errors, fmt.Sprintf("step %d: %s", r.Step+1, r.Error))
	case "timer":
		j.TimerPID = r.PID
	case "applied":
		j.Status, j.AppliedAt, j.ConfirmBy = StatusApplied, r.Time, r.ConfirmBy
		if !r.ConfirmBy.IsZero() {
			j.Status = StatusPending
		}
	case "drift":
		j.Drift = r.Lines
	case "confirmed":
		j.Status, j.ConfirmedAt = StatusConfirmed, r.Time
	case "undone":
		j.Undone[r.Step] = true
	case "undo-failed":
		j.Errors = append(j.Errors, fmt.Sprintf("undoing step %d: %s", r.Step+1, r.Error))
	case "rolled-back":
		j.Status, j.EndedAt, j.Reason = StatusRolledBack, r.Time, r.Reason
		if r.Error != "" {
			j.Status = StatusRollbackFailed
		}
	}
}

// Load reads a journal. A last line cut short by a crash is ignored: the record it was
// writing never happened as far as rollback is concerned.
func (s *Store) Load(id string) (*Journal, error) {
	if id == "" || strings.ContainsAny(id, "/\\") || strings.HasPrefix(id, ".") {
		return nil, fmt.Errorf("bad journal id %q: see roundtrip history", id)
	}
	path := filepath.Join(s.Dir, id+".journal")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no journal %s for %s: see roundtrip history", id, s.NS)
	}
	if err != nil {
		return nil, fmt.Errorf("reading journal %s: %w", id, err)
	}
	return parseJournal(path, data)
}

func parseJournal(path string, data []byte) (*Journal, error) {
	j := &Journal{Path: path, Started: map[int]bool{}, Done: map[int]bool{}, Undone: map[int]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 256<<20)
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r record
		if err := json.Unmarshal(line, &r); err != nil {
			// Only the last line may be torn.
			if !sc.Scan() {
				break
			}
			return nil, fmt.Errorf("journal %s line %d is corrupt: %w", filepath.Base(path), n+1, err)
		}
		n++
		if n == 1 {
			if r.Type != "begin" || r.Begin == nil {
				return nil, fmt.Errorf("journal %s does not start with its head", filepath.Base(path))
			}
			j.JournalHead = *r.Begin
			j.Status = StatusApplying
			continue
		}
		j.apply(r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading journal %s: %w", filepath.Base(path), err)
	}
	if n == 0 {
		return nil, fmt.Errorf("journal %s is empty", filepath.Base(path))
	}
	return j, nil
}

// List returns the namespace's journals, oldest first.
func (s *Store) List() ([]*Journal, error) {
	matches, err := filepath.Glob(filepath.Join(s.Dir, "*.journal"))
	if err != nil {
		return nil, fmt.Errorf("listing journals: %w", err)
	}
	var out []*Journal
	for _, m := range matches {
		data, err := os.ReadFile(m)
		if err != nil {
			return nil, fmt.Errorf("reading journal: %w", err)
		}
		j, err := parseJournal(m, data)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b *Journal) int {
		if c := a.JournalHead.Started.Compare(b.JournalHead.Started); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Active reports whether the journal's changes are (or may be, after a crash) on the host.
func (j *Journal) Active() bool {
	switch j.Status {
	case StatusApplying, StatusApplied, StatusPending, StatusConfirmed, StatusRollbackFailed:
		return true
	}
	return false
}

// Latest returns the most recent active journal, or nil when there is none.
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
// TUI shows its countdown from ConfirmBy), or nil.
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

// String renders a one-line history entry.
func (j *Journal) String() string {
	s := fmt.Sprintf("%s  %-15s %d step(s)  %s", j.ID, j.Status, len(j.Steps), j.Intent)
	if j.Status == StatusPending {
		s += fmt.Sprintf("  (reverts at %s unless confirmed)", j.ConfirmBy.Local().Format("15:04:05"))
	}
	if j.Reason != "" {
		s += "  (" + j.Reason + ")"
	}
	return s
}

// processArgs returns a process's command line, or nil.
func processArgs(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}
