package kernel

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"roundtrip/engine/apply"
)

// An apply writes two files in the namespace's state directory:
//
//	ID.steps    every step with what undoes it, written whole and synced before the apply
//	            changes anything; immutable afterwards
//	ID.journal  a head (intent, counts, confirmation window) and then one record per event:
//	            step k started (synced before step k touches the kernel), done, failed (and how
//	            much of it took effect), undone; timer started, applied, confirmed, rolled back
//
// Both are sequences of framed records after a magic line: a 4-byte length, the CRC-32C of
// the type byte and payload, the type byte, the payload. A record cut short by a crash (a torn
// tail) fails its length or checksum and is ignored: the event it was writing never happened as
// far as rollback is concerned, since every step's "started" record is synced before the step.
// A bad record followed by good ones is corruption: the journal is reported as unreadable and
// skipped. Journals are read with explicit lengths, never by lines, so their size is unbounded;
// history reads summaries kept in index.json (checked against each journal's size and mtime)
// rather than the journals.
//
// Journals of roundtrip's first format (JSON lines, the whole plan and every undo in the first
// line) are still read and rolled back.

const (
	journalMagic = "roundtrip journal 2\n"
	stepsMagic   = "roundtrip steps 2\n"
	maxRecord    = 1 << 30
	frameHeader  = 9

	recHead  = 'H' // journal head (JSON JournalHead)
	recEvent = 'E' // journal event (JSON record)
	recBatch = 'B' // steps: a batch of routes or rules (binary, stepcodec.go)
	recStep  = 'S' // steps: any other step (JSON Step)
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends one framed record.
func appendFrame(b []byte, typ byte, payload []byte) []byte {
	var h [frameHeader]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(len(payload)))
	crc := crc32.Update(crc32.Update(0, crcTable, []byte{typ}), crcTable, payload)
	binary.LittleEndian.PutUint32(h[4:], crc)
	h[8] = typ
	return append(append(b, h[:]...), payload...)
}

var (
	errTorn    = errors.New("torn record")
	errBadCRC  = errors.New("record fails its checksum")
	errNoHead  = errors.New("the journal has no head")
	errCorrupt = errors.New("corrupt")
)

// frameReader reads framed records.
type frameReader struct {
	r    *bufio.Reader
	off  int64 // offset of the next record
	size int64 // file size
	buf  []byte
}

// next returns the next record. At the clean end it returns io.EOF; a record cut short
// returns errTorn; one whose checksum fails returns errBadCRC (torn if nothing follows it).
func (fr *frameReader) next() (byte, []byte, error) {
	var h [frameHeader]byte
	n, err := io.ReadFull(fr.r, h[:])
	if err == io.EOF {
		return 0, nil, io.EOF
	}
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %d bytes of a record header at offset %d", errTorn, n, fr.off)
	}
	length := int64(binary.LittleEndian.Uint32(h[0:]))
	if length > maxRecord || fr.off+frameHeader+length > fr.size {
		return 0, nil, fmt.Errorf("%w: a record of %d bytes at offset %d of %d", errTorn, length, fr.off, fr.size)
	}
	if int64(cap(fr.buf)) < length {
		fr.buf = make([]byte, length)
	}
	p := fr.buf[:length]
	if _, err := io.ReadFull(fr.r, p); err != nil {
		return 0, nil, fmt.Errorf("%w: at offset %d", errTorn, fr.off)
	}
	crc := crc32.Update(crc32.Update(0, crcTable, h[8:9]), crcTable, p)
	if crc != binary.LittleEndian.Uint32(h[4:]) {
		return 0, nil, fmt.Errorf("%w: at offset %d", errBadCRC, fr.off)
	}
	fr.off += frameHeader + length
	return h[8], p, nil
}

// The values of an apply's journal live in engine/apply; these names keep the adapter's
// callers as they were.
type (
	JournalHead = apply.Head
	TimerID     = apply.TimerID
)

// Journal statuses (engine/apply).
const (
	StatusApplying       = apply.StatusApplying
	StatusApplied        = apply.StatusApplied
	StatusPending        = apply.StatusPending
	StatusConfirmed      = apply.StatusConfirmed
	StatusRolledBack     = apply.StatusRolledBack
	StatusRollbackFailed = apply.StatusRollbackFailed
	StatusUnreadable     = apply.StatusUnreadable
)

// Journal is what was actually done by one apply, and what happened to it since: the summary
// (apply.Journal, what history and the console show) and what a rollback needs.
type Journal struct {
	apply.Journal

	Started map[int]bool `json:"-"` // steps begun
	Done    map[int]bool `json:"-"` // steps finished
	Undone  map[int]bool `json:"-"` // steps reversed

	failures    map[int]stepFailure
	legacySteps []Step
	store       *Store
	f           *os.File
	size        int64 // of the good records: a torn tail is cut before appending
	prepared    int64 // size before the first step's record (cutToPrepared)
}

// stepFailure is how much of a failed step took effect.
type stepFailure struct {
	noEffect bool         // none of it
	batch    bool         // a batch: the changes before sent, except refused, took effect
	sent     int          // batch: how many changes were sent
	refused  map[int]bool // batch: the ones the kernel refused
}

// record is one event of a journal.
type record struct {
	Type      string    `json:"t"`
	Time      time.Time `json:"time"`
	Step      int       `json:"step,omitempty"`
	Error     string    `json:"error,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	ConfirmBy time.Time `json:"confirm_by,omitzero"`
	Timer     *TimerID  `json:"timer,omitempty"`
	Lines     []string  `json:"lines,omitempty"`
	// A failed step: NoEffect when none of it took effect; for a batch, the changes before
	// Sent took effect except Refused.
	NoEffect bool  `json:"no_effect,omitempty"`
	Batch    bool  `json:"batch,omitempty"`
	Sent     int   `json:"sent,omitempty"`
	Refused  []int `json:"refused,omitempty"`

	// The first format's fields.
	PID   int             `json:"pid,omitempty"`
	Begin json.RawMessage `json:"begin,omitempty"`
}

func newJournal(head JournalHead, path string) *Journal {
	return &Journal{Journal: apply.Journal{Head: head, Path: path, Status: StatusApplying},
		Started: map[int]bool{}, Done: map[int]bool{}, Undone: map[int]bool{}, failures: map[int]stepFailure{}}
}

// newID returns a journal id that sorts by time: 20060102-150405-1a2b3c.
func newID(t time.Time) string {
	var r [3]byte
	_, _ = rand.Read(r[:])
	return t.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(r[:])
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
		f := stepFailure{noEffect: r.NoEffect, batch: r.Batch, sent: r.Sent, refused: map[int]bool{}}
		for _, i := range r.Refused {
			f.refused[i] = true
		}
		j.failures[r.Step] = f
	case "timer":
		j.Timer = r.Timer
		if j.Timer == nil {
			j.Timer = &TimerID{PID: r.PID}
		}
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

// Close closes the journal file.
func (j *Journal) Close() error {
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// write appends a record; with sync it is on disk before write returns. A write that fails
// (a full disk) is cut off again, so that the journal never holds a torn record in the middle.
func (j *Journal) write(r record, sync bool) error {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding journal record: %w", err)
	}
	var b []byte
	if j.Legacy {
		b = append(payload, '\n')
	} else {
		b = appendFrame(nil, recEvent, payload)
	}
	if err := j.append(b, sync); err != nil {
		return fmt.Errorf("writing journal %s: %w", j.ID, err)
	}
	j.apply(r)
	return nil
}

// append writes b at the end of the good records.
func (j *Journal) append(b []byte, sync bool) error {
	if j.f == nil {
		f, err := os.OpenFile(j.Path, os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		// Cut a torn tail off first: appended records must follow good ones.
		if fi, err := f.Stat(); err == nil && fi.Size() != j.size {
			if err := f.Truncate(j.size); err != nil {
				f.Close()
				return err
			}
		}
		j.f = f
	}
	if err := j.store.faultAt(j.Path, "write"); err != nil {
		_, _ = j.f.Write(b[:len(b)/2])
		_ = j.f.Truncate(j.size)
		return err
	}
	if _, err := j.f.Write(b); err != nil {
		_ = j.f.Truncate(j.size)
		return err
	}
	j.size += int64(len(b))
	if sync {
		if err := j.f.Sync(); err != nil {
			j.size -= int64(len(b))
			_ = j.f.Truncate(j.size)
			return err
		}
		_ = j.store.faultAt(j.Path, "synced")
	}
	return nil
}

// faultAt asks the test hook about an operation on a file of the store: "write" before a
// write (an error fails it), "synced" after a sync.
func (s *Store) faultAt(path, op string) error {
	if s == nil || s.fault == nil {
		return nil
	}
	return s.fault(path, op)
}

// Load reads a journal in full. A tail cut short by a crash is ignored.
func (s *Store) Load(id string) (*Journal, error) {
	if id == "" || strings.ContainsAny(id, "/\\") || strings.HasPrefix(id, ".") {
		return nil, fmt.Errorf("bad journal id %q: see roundtrip history", id)
	}
	path := filepath.Join(s.Dir, id+journalSuffix)
	f, err := openTrusted(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no journal %s for %s: see roundtrip history: %w", id, s.NS, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading journal %s: %w", id, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	j, err := parseJournal(bufio.NewReaderSize(f, 64<<10), fi.Size(), path)
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", id, err)
	}
	j.store = s
	j.checkTimer()
	return j, nil
}

func parseJournal(r *bufio.Reader, size int64, path string) (*Journal, error) {
	first, err := r.Peek(1)
	if err != nil {
		return nil, fmt.Errorf("%w (it is empty)", errNoHead)
	}
	if first[0] == '{' {
		return parseLegacy(r, path)
	}
	magic := make([]byte, len(journalMagic))
	if _, err := io.ReadFull(r, magic); err != nil {
		return nil, fmt.Errorf("%w (it was cut short)", errNoHead)
	}
	if string(magic) != journalMagic {
		return nil, fmt.Errorf("%w: not a roundtrip journal", errCorrupt)
	}
	fr := &frameReader{r: r, off: int64(len(journalMagic)), size: size}
	var j *Journal
	for {
		typ, p, err := fr.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errTorn) || errors.Is(err, errBadCRC) && fr.off+frameHeader+int64(len(p)) >= size {
			break // a torn tail: what it was writing never happened
		}
		if errors.Is(err, errBadCRC) {
			return nil, fmt.Errorf("%w: %v, and records follow it", errCorrupt, err)
		}
		switch {
		case j == nil && typ == recHead:
			var head JournalHead
			if err := json.Unmarshal(p, &head); err != nil {
				return nil, fmt.Errorf("%w: its head: %v", errCorrupt, err)
			}
			j = newJournal(head, path)
		case j == nil:
			return nil, fmt.Errorf("%w: the first record is not the head", errCorrupt)
		case typ == recEvent:
			var rec record
			if err := json.Unmarshal(p, &rec); err != nil {
				return nil, fmt.Errorf("%w: record at offset %d: %v", errCorrupt, fr.off, err)
			}
			j.apply(rec)
		default:
			return nil, fmt.Errorf("%w: record of type %q at offset %d", errCorrupt, typ, fr.off)
		}
	}
	if j == nil {
		return nil, fmt.Errorf("%w (it was cut short)", errNoHead)
	}
	j.size = fr.off
	return j, nil
}

// legacyStep is a step as roundtrip's first journal format wrote it.
type legacyHead struct {
	JournalHead
	Steps []Step `json:"steps"`
}

// parseLegacy reads a journal of the first format: JSON lines, the first with the whole plan
// and every step with its undo.
func parseLegacy(r *bufio.Reader, path string) (*Journal, error) {
	var j *Journal
	var off int64
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return nil, err
		}
		if err == io.EOF {
			break // nothing, or a last line without its newline: cut short by a crash
		}
		trimmed := bytes.TrimSpace(line)
		if len(trimmed) > 0 {
			var rec record
			if jerr := json.Unmarshal(trimmed, &rec); jerr != nil {
				if _, perr := r.Peek(1); perr == io.EOF {
					break // the last line: torn
				}
				return nil, fmt.Errorf("%w: line %d: %v", errCorrupt, n, jerr)
			}
			if j == nil {
				var head legacyHead
				if rec.Type != "begin" || json.Unmarshal(rec.Begin, &head) != nil {
					return nil, fmt.Errorf("%w: it does not start with its head", errCorrupt)
				}
				h := head.JournalHead
				h.Steps = len(head.Steps)
				j = newJournal(h, path)
				j.Legacy, j.legacySteps = true, head.Steps
			} else {
				j.apply(rec)
			}
		}
		off += int64(len(line))
	}
	if j == nil {
		return nil, fmt.Errorf("%w (it is empty)", errNoHead)
	}
	j.size = off
	return j, nil
}

// summary returns the journal without what only a rollback needs.
func (j *Journal) summary() *Journal {
	s := &Journal{Journal: apply.Journal{Head: j.Head, Status: j.Status, AppliedAt: j.AppliedAt, ConfirmBy: j.ConfirmBy,
		ConfirmedAt: j.ConfirmedAt, EndedAt: j.EndedAt, Reason: j.Reason, Errors: j.Errors, Drift: j.Drift,
		Timer: j.Timer, Problem: j.Problem, Empty: j.Empty, Legacy: j.Legacy, Path: j.Path}}
	if len(s.Errors) > 20 {
		s.Errors = append(s.Errors[:20:20], fmt.Sprintf("... and %d more", len(j.Errors)-20))
	}
	if len(s.Drift) > 20 {
		s.Drift = append(s.Drift[:20:20], fmt.Sprintf("... and %d more", len(j.Drift)-20))
	}
	return s
}

// checkTimer sets TimerDead for a journal waiting for confirmation whose timer process is
// gone (killed, or the machine rebooted).
func (j *Journal) checkTimer() {
	j.TimerDead = j.Status == StatusPending && !timerAlive(j.Timer, j.ID)
}

// timerAlive reports whether a revert timer still runs. A timer of pid 0 runs inside the
// process that applied (tests) and is taken as alive; one recorded by the first journal format
// (pid only) is recognized by its command line.
func timerAlive(t *TimerID, id string) bool {
	if t == nil {
		return false
	}
	if t.PID == 0 {
		return true
	}
	if t.Start == 0 {
		args := processArgs(t.PID)
		return containsArg(args, RevertTimerCommand) && containsArg(args, id)
	}
	if t.Boot != "" && t.Boot != bootID() {
		return false
	}
	start, err := processStart(t.PID)
	return err == nil && start == t.Start
}

func containsArg(args []string, want string) bool {
	for _, a := range args {
		if a == want {
			return true
		}
	}
	return false
}

// stepsFile is the steps of a journal, read one at a time.
type stepsFile struct {
	f       *os.File
	offsets []int64 // by step number: offset of its record
	legacy  []Step
}

// openSteps opens the steps of a journal and indexes them.
func (s *Store) openSteps(j *Journal) (*stepsFile, error) {
	if j.Legacy {
		return &stepsFile{legacy: j.legacySteps}, nil
	}
	path := filepath.Join(s.Dir, j.ID+stepsSuffix)
	f, err := openTrusted(path)
	if err != nil {
		return nil, fmt.Errorf("the steps of journal %s: %w", j.ID, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	sf := &stepsFile{f: f, offsets: make([]int64, j.Steps)}
	for i := range sf.offsets {
		sf.offsets[i] = -1
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, fi.Size()), 256<<10)
	magic := make([]byte, len(stepsMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != stepsMagic {
		f.Close()
		return nil, fmt.Errorf("the steps of journal %s: %w: not a steps file", j.ID, errCorrupt)
	}
	fr := &frameReader{r: r, off: int64(len(stepsMagic)), size: fi.Size()}
	for {
		off := fr.off
		_, p, err := fr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("the steps of journal %s: %w: %v", j.ID, errCorrupt, err)
		}
		k, n := binary.Uvarint(p)
		if n <= 0 || k >= uint64(len(sf.offsets)) {
			f.Close()
			return nil, fmt.Errorf("the steps of journal %s: %w: step number %d of %d", j.ID, errCorrupt, k, len(sf.offsets))
		}
		sf.offsets[k] = off
	}
	for k, off := range sf.offsets {
		if off < 0 {
			f.Close()
			return nil, fmt.Errorf("the steps of journal %s: %w: step %d is missing", j.ID, errCorrupt, k+1)
		}
	}
	return sf, nil
}

// step reads step k.
func (sf *stepsFile) step(k int) (*Step, error) {
	if sf.legacy != nil {
		st := sf.legacy[k]
		return &st, nil
	}
	var h [frameHeader]byte
	if _, err := sf.f.ReadAt(h[:], sf.offsets[k]); err != nil {
		return nil, fmt.Errorf("reading step %d: %w", k+1, err)
	}
	p := make([]byte, binary.LittleEndian.Uint32(h[0:]))
	if _, err := sf.f.ReadAt(p, sf.offsets[k]+frameHeader); err != nil {
		return nil, fmt.Errorf("reading step %d: %w", k+1, err)
	}
	if crc32.Update(crc32.Update(0, crcTable, h[8:9]), crcTable, p) != binary.LittleEndian.Uint32(h[4:]) {
		return nil, fmt.Errorf("step %d: %w", k+1, errBadCRC)
	}
	_, n := binary.Uvarint(p)
	return decodeStep(h[8], p[n:])
}

// StepSummaries returns one line for each of the journal's first max steps (all when max is
// 0 or less), read from its steps file: for a person looking at one journal (the console's
// detail view). Journals of any size stay cheap to list because List does not do this.
func (j *Journal) StepSummaries(max int) ([]string, error) {
	if j.store == nil {
		return nil, fmt.Errorf("journal %s: its steps were not loaded", j.ID)
	}
	return j.store.StepSummaries(j.ID, max)
}

// StepSummaries returns one line for each of the first max steps of the journal with that id
// (Journal.StepSummaries), for callers that hold only its summary (apply.Journal).
func (s *Store) StepSummaries(id string, max int) ([]string, error) {
	// A journal from List is a summary: load it whole (legacy journals hold their steps).
	full, err := s.Load(id)
	if err != nil {
		return nil, err
	}
	sf, err := s.openSteps(full)
	if err != nil {
		return nil, err
	}
	defer sf.close()
	n := full.Steps
	if max > 0 && n > max {
		n = max
	}
	out := make([]string, 0, n)
	for k := range n {
		st, err := sf.step(k)
		if err != nil {
			return out, err
		}
		out = append(out, st.Summary())
	}
	return out, nil
}

func (sf *stepsFile) close() {
	if sf != nil && sf.f != nil {
		sf.f.Close()
	}
}

func decodeStep(typ byte, p []byte) (*Step, error) {
	switch typ {
	case recBatch:
		return decodeBatch(p)
	case recStep:
		var st Step
		if err := json.Unmarshal(p, &st); err != nil {
			return nil, err
		}
		return &st, nil
	}
	return nil, fmt.Errorf("%w: step record of type %q", errCorrupt, typ)
}

// appendStep appends step k, framed, to b.
func appendStep(b []byte, k int, st *Step, strs map[string]int) ([]byte, error) {
	start := len(b)
	b = append(b, make([]byte, frameHeader)...)
	b = binary.AppendUvarint(b, uint64(k))
	typ := byte(recStep)
	if st.Batch {
		typ = recBatch
		b = appendBatch(b, st, strs)
	} else {
		js, err := json.Marshal(st)
		if err != nil {
			return b[:start], err
		}
		b = append(b, js...)
	}
	payload := b[start+frameHeader:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	b[start+8] = typ
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Update(crc32.Update(0, crcTable, []byte{typ}), crcTable, payload))
	return b, nil
}

// stepsWriter writes the steps of a new journal to ID.steps.new, renamed to ID.steps once
// complete and synced.
type stepsWriter struct {
	store   *Store
	path    string
	f       *os.File
	w       *bufio.Writer
	off     int64
	offsets map[int]int64
	buf     []byte         // reused for each step
	strs    map[string]int // reused string table
}

func (s *Store) newSteps(id string) (*stepsWriter, error) {
	path := filepath.Join(s.Dir, id+stepsSuffix)
	f, err := createExclusive(path + ".new")
	if err != nil {
		return nil, fmt.Errorf("creating the steps of journal %s: %w", id, err)
	}
	w := &stepsWriter{store: s, path: path, f: f, w: bufio.NewWriterSize(f, 256<<10), offsets: map[int]int64{}}
	if err := w.write([]byte(stepsMagic)); err != nil {
		w.abort()
		return nil, err
	}
	return w, nil
}

func (w *stepsWriter) write(b []byte) error {
	if err := w.store.faultAt(w.path, "write"); err != nil {
		return fmt.Errorf("writing the steps: %w", err)
	}
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("writing the steps: %w", err)
	}
	w.off += int64(len(b))
	return nil
}

func (w *stepsWriter) add(k int, st *Step) error {
	if w.strs == nil {
		w.strs = map[string]int{}
	}
	b, err := appendStep(w.buf[:0], k, st, w.strs)
	if err != nil {
		return err
	}
	w.buf = b
	w.offsets[k] = w.off
	return w.write(b)
}

// finish syncs the steps and puts them in place.
func (w *stepsWriter) finish() error {
	err := w.w.Flush()
	if err == nil {
		err = w.store.faultAt(w.path, "write")
	}
	if err == nil {
		err = w.f.Sync()
	}
	if err == nil {
		err = os.Rename(w.path+".new", w.path)
	}
	if err != nil {
		w.abort()
		return fmt.Errorf("writing the steps: %w", err)
	}
	w.f.Close()
	return nil
}

func (w *stepsWriter) abort() {
	w.f.Close()
	os.Remove(w.path + ".new")
}

// create writes a new journal's head (its steps are in place already) and returns the
// journal, open for appending. The head goes to ID.journal.new, renamed once synced: a
// journal is never seen without its head.
func (s *Store) create(head JournalHead) (*Journal, error) {
	path := filepath.Join(s.Dir, head.ID+journalSuffix)
	f, err := createExclusive(path + ".new")
	if err != nil {
		return nil, fmt.Errorf("creating journal: %w", err)
	}
	hb, err := json.Marshal(head)
	if err != nil {
		f.Close()
		os.Remove(path + ".new")
		return nil, err
	}
	b := appendFrame([]byte(journalMagic), recHead, hb)
	err = s.faultAt(path, "write")
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(path+".new", path)
	}
	if err != nil {
		f.Close()
		os.Remove(path + ".new")
		return nil, fmt.Errorf("creating journal %s: %w", head.ID, err)
	}
	syncDir(s.Dir)
	j := newJournal(head, path)
	j.store, j.size = s, int64(len(b))
	if err := f.Close(); err != nil {
		return nil, err
	}
	return j, nil
}

// Create writes a new journal with no steps, for tests and tools that need one in history
// (an apply creates its journals itself).
func (s *Store) Create(head JournalHead) (*Journal, error) {
	now := time.Now()
	head.ID, head.Started, head.PID, head.Steps = newID(now), now.UTC(), os.Getpid(), 0
	w, err := s.newSteps(head.ID)
	if err != nil {
		return nil, err
	}
	if err := w.finish(); err != nil {
		return nil, err
	}
	return s.create(head)
}

// MarkApplied records a journal made by Create as applied (a tool's way to put an apply in
// history, as `roundtrip watch` tests need).
func (j *Journal) MarkApplied() error { return j.write(record{Type: "applied"}, true) }
