package nftrace

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel/dropwatch"
)

// StateDirEnv moves roundtrip's state (journals, and here the trace table markers) away from
// DefaultStateDir, as for the apply journal.
const (
	StateDirEnv     = "ROUNDTRIP_STATE_DIR"
	DefaultStateDir = "/var/lib/roundtrip"
)

// markerDir is the subdirectory of the state directory that holds one marker per trace table.
const markerDir = "nftrace"

// tablePrefix starts the name of every trace table: roundtrip_trace_PID_START_SEQ, where
// START is the process's start time (clock ticks after boot, /proc/PID/stat), so that a
// table whose process died is told apart from one of a live process that got the same pid.
const tablePrefix = "roundtrip_trace_"

var tableName = regexp.MustCompile(`^roundtrip_trace_([0-9]{1,10})_([0-9]{1,20})_([0-9]{1,10})$`)

var tableSeq atomic.Uint32

// stateDir returns the state directory: the environment's, or the default.
func stateDir() string {
	if d := os.Getenv(StateDirEnv); d != "" {
		return d
	}
	return DefaultStateDir
}

// newTableName names a trace table of this process.
func newTableName() (string, error) {
	start, err := processStart(os.Getpid())
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s%d_%d_%d", tablePrefix, os.Getpid(), start, tableSeq.Add(1)), nil
}

// processStart returns a process's start time in clock ticks after boot (field 22 of
// /proc/PID/stat).
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// ownerAlive says whether the process that created a trace table still runs; false for a
// name that is not a trace table's.
func ownerAlive(table string) bool {
	m := tableName.FindStringSubmatch(table)
	if m == nil {
		return false
	}
	pid, err1 := strconv.Atoi(m[1])
	start, err2 := strconv.ParseUint(m[2], 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	got, err := processStart(pid)
	return err == nil && got == start
}

// Marker records a trace table while it exists, so that rollback can remove it after a crash
// (on kernels before 5.12 the table outlives its process).
type Marker struct {
	Netns   string    `json:"netns"` // a name of `ip netns list`; "" the namespace roundtrip ran in
	Family  string    `json:"family"`
	Table   string    `json:"table"`
	PID     int       `json:"pid"`
	Created time.Time `json:"created"`
}

func (m Marker) validate() error {
	if _, err := dropwatch.NetnsPath(m.Netns); err != nil {
		return err
	}
	if m.Family != "inet" {
		return fmt.Errorf("trace table family %q, want inet", m.Family)
	}
	if !tableName.MatchString(m.Table) {
		return fmt.Errorf("%q is not a trace table's name", m.Table)
	}
	if mm := tableName.FindStringSubmatch(m.Table); mm[1] != strconv.Itoa(m.PID) {
		return fmt.Errorf("trace table %s does not belong to pid %d", m.Table, m.PID)
	}
	return nil
}

// writeMarker records a trace table: a new file, written whole, then renamed into place.
func writeMarker(m Marker) (string, error) {
	dir := filepath.Join(stateDir(), markerDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("recording the trace table: %w (set %s to use another place)", err, StateDirEnv)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".marker-*")
	if err != nil {
		return "", fmt.Errorf("recording the trace table: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	path := filepath.Join(dir, m.Table+".json")
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("recording the trace table: %w", err)
	}
	return path, nil
}

// Markers returns the recorded trace tables. A marker that is not a regular file of valid
// content is an error, not trusted.
func Markers() ([]Marker, error) {
	dir := filepath.Join(stateDir(), markerDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the trace table markers: %w", err)
	}
	var out []Marker
	var errs []error
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		m, err := readMarker(filepath.Join(dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if m.Table+".json" != e.Name() {
			errs = append(errs, fmt.Errorf("trace table marker %s names table %s", e.Name(), m.Table))
			continue
		}
		out = append(out, m)
	}
	return out, errors.Join(errs...)
}

func readMarker(path string) (Marker, error) {
	var m Marker
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return m, fmt.Errorf("reading trace table marker %s: %w", path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return m, fmt.Errorf("trace table marker %s is not a regular file", path)
	}
	dec := json.NewDecoder(io.LimitReader(f, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("reading trace table marker %s: %w", path, err)
	}
	if err := m.validate(); err != nil {
		return m, fmt.Errorf("trace table marker %s: %w", path, err)
	}
	return m, nil
}

func removeMarker(table string) error {
	err := os.Remove(filepath.Join(stateDir(), markerDir, table+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Cleanup removes the trace tables left in a namespace ("" the current one) by processes
// that no longer run, and their markers; it returns the tables it removed. Tables of live
// processes are left alone.
func Cleanup(ns string) ([]string, error) {
	path, err := dropwatch.NetnsPath(ns)
	if err != nil {
		return nil, err
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("removing leftover trace tables: opening namespace %q: %w", ns, err)
	}
	defer h.Close()
	var opts []nftables.ConnOption
	if ns != "" {
		// Not for the current namespace: entering it again needs CAP_SYS_ADMIN.
		opts = append(opts, nftables.WithNetNSFd(int(h)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("removing leftover trace tables in %q: %w", ns, err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("removing leftover trace tables in %q: listing tables: %w", ns, err)
	}
	var removed []string
	for _, t := range tables {
		if !tableName.MatchString(t.Name) || ownerAlive(t.Name) {
			continue
		}
		c.DelTable(t)
		if err := c.Flush(); err != nil {
			return removed, fmt.Errorf("removing leftover trace table inet %s in %q: %w", t.Name, ns, err)
		}
		removed = append(removed, t.Name)
	}
	markers, merr := Markers()
	for _, m := range markers {
		if m.Netns == ns && !ownerAlive(m.Table) {
			if err := removeMarker(m.Table); err != nil {
				merr = errors.Join(merr, err)
			}
		}
	}
	return removed, merr
}

// CleanupRecorded removes every recorded trace table whose process no longer runs, in
// whichever namespace it was made (rollback after a crash); it returns the tables removed.
func CleanupRecorded() ([]string, error) {
	markers, err := Markers()
	var removed []string
	done := map[string]bool{}
	for _, m := range markers {
		if ownerAlive(m.Table) {
			continue
		}
		if _, serr := dropwatch.NetnsInode(m.Netns); errors.Is(serr, os.ErrNotExist) {
			// The namespace is gone, and its tables with it.
			err = errors.Join(err, removeMarker(m.Table))
			continue
		}
		if done[m.Netns] {
			continue
		}
		done[m.Netns] = true
		r, cerr := Cleanup(m.Netns)
		removed = append(removed, r...)
		err = errors.Join(err, cerr)
	}
	return removed, err
}
