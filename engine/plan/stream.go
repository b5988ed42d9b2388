package plan

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"roundtrip/engine/model"
	"roundtrip/engine/safefile"
)

// Header is what a plan file says besides its changes.
type Header struct {
	Format    string
	Version   int
	Intent    string
	Namespace string
}

// Source yields a plan's changes in order, one at a time, so that a plan of a million
// routes is never held whole (the change engine reads, journals and sends it in chunks). Each
// may be called again; every call starts from the first change. A source checks what it
// yields: every change is well formed on its own (Change.check) and no two touch the same
// object; Each returns the problems after the last change it passed on.
type Source interface {
	Header() Header
	Each(fn func(i int, c Change) error) error
}

// Source returns the plan as a Source.
func (p *Plan) Source() Source { return planSlice{p} }

type planSlice struct{ p *Plan }

func (s planSlice) Header() Header {
	return Header{Format: s.p.Format, Version: s.p.Version, Intent: s.p.Intent, Namespace: s.p.Namespace}
}

func (s planSlice) Each(fn func(int, Change) error) error {
	if err := s.p.Check(); err != nil {
		return err
	}
	for i, c := range s.p.Changes {
		if err := fn(i, c); err != nil {
			return err
		}
	}
	return nil
}

// File is a plan file read change by change. Decoding a change with encoding/json costs
// about 7µs, as much as the kernel takes to insert a route, so the common shapes (route and
// rule changes whose keys and values are written plainly, as Plan.Marshal writes them) are
// decoded by hand; anything else in a change goes to encoding/json, which defines the meaning.
// FuzzPlanFile checks that both ways agree with Parse.
type File struct {
	path string // for messages
	// r is the file opened once: every pass reads the same bytes, however the path changes
	// meanwhile (a plan checked in one pass and swapped before the next would run unchecked).
	r    io.ReaderAt
	size int64
	head Header
}

// Open opens a plan file for streaming: a regular file of at most MaxFileSize bytes,
// held open until Close. See NewFile.
func Open(path string) (*File, error) {
	r, err := safefile.Open(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("reading plan: %w", err)
	}
	f, err := NewFile(path, r, r.Info().Size())
	if err != nil {
		r.Close()
		return nil, err
	}
	return f, nil
}

// NewFile streams the plan held in r (size bytes; name is for messages). It reads the
// header fields that come before the changes (Plan.Marshal writes them first) and refuses a
// file that is not a plan; the changes are read and checked by Each. Close closes r when it is
// an io.Closer.
func NewFile(name string, r io.ReaderAt, size int64) (*File, error) {
	f := &File{path: name, r: r, size: size}
	err := f.scan(func(int, Change) error { return errStopScan }, true)
	if err != nil && !errors.Is(err, errStopScan) {
		return nil, fmt.Errorf("loading plan %s: %w", name, err)
	}
	return f, nil
}

// Close releases the file.
func (f *File) Close() error {
	if c, ok := f.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Header returns the plan's format, version, intent and namespace.
func (f *File) Header() Header { return f.head }

// Each decodes and checks the changes one by one, calling fn with each; it stops at the first
// problem and returns it (with up to model.MaxProblems problems found in the rest of the file).
// Decoding runs on a goroutine of its own, a chunk of changes ahead of fn, so that decoding
// and whatever fn does share the machine's cores.
func (f *File) Each(fn func(i int, c Change) error) error {
	type chunk struct {
		first   int
		changes []Change
	}
	const chunkSize = 512
	chunks := make(chan chunk, 4)
	free := make(chan []Change, 6)
	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(chunks)
		cur := chunk{changes: make([]Change, 0, chunkSize)}
		err := f.scan(func(i int, c Change) error {
			if len(cur.changes) == 0 {
				cur.first = i
			}
			cur.changes = append(cur.changes, c)
			if len(cur.changes) < chunkSize {
				return nil
			}
			select {
			case chunks <- cur:
			case <-stop:
				return errStopScan
			}
			select {
			case buf := <-free:
				cur = chunk{changes: buf[:0]}
			default:
				cur = chunk{changes: make([]Change, 0, chunkSize)}
			}
			return nil
		}, false)
		if err == nil && len(cur.changes) > 0 {
			select {
			case chunks <- cur:
			case <-stop:
			}
		}
		errc <- err
	}()
	var fnErr error
	for ch := range chunks {
		if fnErr != nil {
			continue
		}
		for k, c := range ch.changes {
			if fnErr = fn(ch.first+k, c); fnErr != nil {
				close(stop)
				break
			}
		}
		clear(ch.changes)
		select {
		case free <- ch.changes:
		default:
		}
	}
	err := <-errc
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("loading plan %s: %w", f.path, err)
	}
	return nil
}

var errStopScan = errors.New("stop")

// planKeys are Plan's JSON keys besides "changes", as encoding/json matches them (exactly,
// else ignoring case).
var planKeys = []string{"format", "version", "intent", "namespace"}

// scan reads the file once. With headOnly it stops at the changes.
func (f *File) scan(fn func(int, Change) error, headOnly bool) error {
	return f.scanPass(fn, headOnly, false)
}

// scanPass is scan; dupPass marks the second pass of duplicates, which must not start a
// third.
func (f *File) scanPass(fn func(int, Change) error, headOnly, dupPass bool) error {
	s := &jsonScanner{r: bufio.NewReaderSize(io.NewSectionReader(f.r, 0, f.size), 256<<10)}
	var head Header
	seen := map[string]bool{}
	var ps problems
	var keys HashList // object hashes, for duplicates
	in := &interner{}
	el := &elems{fn: fn, ps: &ps, keys: &keys}
	headerCheck := func() {
		if seen["format"] && head.Format != Format {
			ps.add("format is %q, want %q (was it written by a roundtrip wizard?)", head.Format, Format)
		}
		if seen["version"] && head.Version > Version {
			ps.add("version %d is newer than this roundtrip understands (%d): upgrade roundtrip", head.Version, Version)
		}
	}
	fail := func(err error) error { return f.jsonError(s, err) }

	if !s.skipSpace() {
		return fmt.Errorf("%w: the file is empty", ErrBadPlan)
	}
	if err := s.expect('{'); err != nil {
		return fail(err)
	}
	changesSeen := false
	for first := true; ; first = false {
		if !s.skipSpace() {
			return fail(io.ErrUnexpectedEOF)
		}
		if s.peek() == '}' {
			s.read()
			break
		}
		if !first {
			if err := s.expect(','); err != nil {
				return fail(err)
			}
			s.skipSpace()
		}
		keyRaw, err := s.capture()
		if err != nil {
			return fail(err)
		}
		var key string
		if err := json.Unmarshal(keyRaw, &key); err != nil {
			return fail(err)
		}
		s.skipSpace()
		if err := s.expect(':'); err != nil {
			return fail(err)
		}
		s.skipSpace()
		if matchKey(key, "changes") {
			if changesSeen {
				return fmt.Errorf("%w: \"changes\" is given twice", ErrBadPlan)
			}
			changesSeen = true
			headerCheck()
			if err := ps.err("invalid plan"); err != nil {
				return err
			}
			if headOnly {
				f.head = head
				return errStopScan
			}
			if s.peek() == 'n' { // null: no changes
				if _, err := s.capture(); err != nil {
					return fail(err)
				}
				continue
			}
			if err := s.expect('['); err != nil {
				return fail(err)
			}
			// Large plans are decoded in parallel; the loop below reads what that leaves to
			// it (all of a small plan, or the rest of one that is unusual from some point on).
			done, err := f.parallel(s, el)
			if err != nil {
				return err
			}
			if done {
				continue
			}
			for elem := 0; ; elem++ {
				if !s.skipSpace() {
					return fail(io.ErrUnexpectedEOF)
				}
				if s.peek() == ']' {
					s.read()
					break
				}
				if elem > 0 {
					if err := s.expect(','); err != nil {
						return fail(err)
					}
					s.skipSpace()
				}
				start := s.offset()
				c, err := s.change(in)
				if err != nil {
					return f.jsonError(s, offsetError{err, start})
				}
				if err := el.take(checked(c)); err != nil {
					return err
				}
			}
			continue
		}
		raw, err := s.capture()
		if err != nil {
			return fail(err)
		}
		i := slices.IndexFunc(planKeys, func(k string) bool { return matchKey(key, k) })
		if i < 0 {
			return fmt.Errorf("%w: json: unknown field %q", ErrBadPlan, key)
		}
		name := planKeys[i]
		seen[name] = true
		var target any
		switch name {
		case "format":
			target = &head.Format
		case "version":
			target = &head.Version
		case "intent":
			target = &head.Intent
		case "namespace":
			target = &head.Namespace
		}
		if err := json.Unmarshal(raw, target); err != nil {
			return fmt.Errorf("%w: field %s: %v", ErrBadPlan, name, err)
		}
	}
	if s.skipSpace() {
		return fmt.Errorf("%w: unexpected data after the plan object", ErrBadPlan)
	}
	if s.err != nil {
		return fail(s.err)
	}
	f.head = head
	if head.Format != Format {
		ps.add("format is %q, want %q (was it written by a roundtrip wizard?)", head.Format, Format)
	}
	if head.Version < 1 || head.Version > Version {
		ps.add("version %d is not supported (want 1-%d)", head.Version, Version)
	}
	// The same header checks as Plan.Check: a streamed plan is held to what a loaded one is.
	if err := model.CheckText("intent", head.Intent, model.MaxText); err != nil {
		ps.add("%w", err)
	}
	if head.Namespace != "" {
		if err := model.CheckNetnsName(head.Namespace); err != nil {
			ps.add("field namespace: %w", err)
		}
	}
	if headOnly {
		if err := ps.err("invalid plan"); err != nil {
			return err
		}
		return errStopScan
	}
	keys.Sort()
	if dups := keys.Dups(); len(dups) > 0 && !dupPass {
		set := map[uint64]bool{}
		for _, h := range dups {
			set[h] = true
		}
		f.duplicates(set, &ps)
	}
	return ps.err("invalid plan")
}

// elems takes the decoded changes of a plan in order: the same steps whether they were
// decoded here or in parallel (parallel.go).
type elems struct {
	fn      func(int, Change) error
	ps      *problems
	keys    *HashList // object hashes, for duplicates
	n       int       // changes taken
	stopped bool      // fn is no longer called once a problem is found
}

// decoded is a change with what checking it found: its problem, or its object's hash.
type decoded struct {
	c    Change
	err  error
	hash uint64
}

// checked checks a change on its own (Change.check) and hashes its object.
func checked(c Change) decoded {
	if err := c.check(); err != nil {
		return decoded{c: c, err: err}
	}
	d := decoded{c: c}
	if c.Kind != KindConntrack {
		d.hash = c.objectHash()
	}
	return d
}

// take takes the next change: it records its problem, or its hash and passes it to fn.
func (e *elems) take(d decoded) error {
	if d.err != nil {
		e.ps.add("change %d: %w", e.n+1, d.err)
		e.stopped = true
	} else {
		if d.c.Kind != KindConntrack {
			e.keys.Add(d.hash)
		}
		if !e.stopped {
			if err := e.fn(e.n, d.c); err != nil {
				return err
			}
		}
	}
	e.n++
	if len(e.ps.errs) >= model.MaxProblems {
		return e.ps.err("invalid plan")
	}
	return nil
}

// matchKey matches a JSON key to a field name as encoding/json does.
func matchKey(key, field string) bool { return key == field || strings.EqualFold(key, field) }

// duplicates reads the file again for the changes whose object hashes collide and reports
// those that really touch the same object (a hash collision alone is not an error).
func (f *File) duplicates(dups map[uint64]bool, ps *problems) {
	first := map[string]int{}
	_ = f.scanPass(func(i int, c Change) error {
		if c.Kind == KindConntrack || !dups[c.objectHash()] {
			return nil
		}
		id := c.object()
		if prev, ok := first[id]; ok {
			ps.add("changes %d and %d both touch %s: merge them into one", prev, i+1, id)
			if len(ps.errs) >= model.MaxProblems {
				return errStopScan
			}
			return nil
		}
		first[id] = i + 1
		return nil
	}, false, true)
}

// offsetError is an error at a byte offset of the file.
type offsetError struct {
	err error
	off int64
}

func (e offsetError) Error() string { return e.err.Error() }
func (e offsetError) Unwrap() error { return e.err }

// jsonError turns a decoding error into ErrBadPlan with the line and column where it happened.
func (f *File) jsonError(s *jsonScanner, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the JSON ends early (truncated file?)", ErrBadPlan)
	}
	off := s.offset()
	var oe offsetError
	if errors.As(err, &oe) {
		off = oe.off
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(oe.err, &se):
			off += se.Offset
		case errors.As(oe.err, &te):
			off += te.Offset
			if te.Field != "" {
				return fmt.Errorf("%w: at %s: field %s: %v", ErrBadPlan, f.lineCol(off), te.Field, oe.err)
			}
		}
		err = oe.err
	}
	return fmt.Errorf("%w: at %s: %v", ErrBadPlan, f.lineCol(off), err)
}

// lineCol finds the line and column of a byte offset by reading the file again (errors only).
func (f *File) lineCol(off int64) string {
	r := bufio.NewReader(io.NewSectionReader(f.r, 0, min(off, f.size)))
	line, col := 1, int64(1)
	for {
		b, err := r.ReadByte()
		if err != nil {
			break
		}
		if b == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("line %d column %d", line, max(col-1, 1))
}

// jsonScanner splits a JSON stream into values without decoding them.
type jsonScanner struct {
	r   *bufio.Reader
	pos int64  // bytes consumed, for error offsets
	err error  // first read error other than EOF
	buf []byte // reused by capture
}

func (s *jsonScanner) offset() int64 { return s.pos }

// peek returns the next byte without consuming it (0 at the end).
func (s *jsonScanner) peek() byte {
	b, err := s.r.Peek(1)
	if err != nil {
		if err != io.EOF && s.err == nil {
			s.err = err
		}
		return 0
	}
	return b[0]
}

func (s *jsonScanner) read() (byte, bool) {
	b, err := s.r.ReadByte()
	if err != nil {
		if err != io.EOF && s.err == nil {
			s.err = err
		}
		return 0, false
	}
	s.pos++
	return b, true
}

// skipSpace skips white space and reports whether anything follows.
func (s *jsonScanner) skipSpace() bool {
	for {
		b, err := s.r.Peek(1)
		if err != nil {
			if err != io.EOF && s.err == nil {
				s.err = err
			}
			return false
		}
		switch b[0] {
		case ' ', '\t', '\n', '\r':
			s.r.Discard(1)
			s.pos++
		default:
			return true
		}
	}
}

func (s *jsonScanner) expect(want byte) error {
	b, ok := s.read()
	if !ok {
		return io.ErrUnexpectedEOF
	}
	if b != want {
		return offsetError{fmt.Errorf("invalid character %q, want %q", b, want), s.offset() - 1}
	}
	return nil
}

// capture returns the bytes of the next value (an object, array, string or literal), checking
// only that brackets and strings are closed; the decoder checks the rest. It scans the reader's
// buffer a window at a time rather than byte by byte. The slice is reused by the next call.
func (s *jsonScanner) capture() ([]byte, error) {
	s.buf = s.buf[:0]
	first, err := s.r.Peek(1)
	if err != nil {
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if c := first[0]; c != '"' && c != '{' && c != '[' {
		// A literal (number, true, false, null) runs to the next delimiter.
		for {
			b, err := s.r.Peek(1)
			if err != nil && err != io.EOF {
				return nil, err
			}
			if err == io.EOF || bytes.IndexByte([]byte(",}] \t\n\r"), b[0]) >= 0 {
				if len(s.buf) == 0 {
					return nil, offsetError{fmt.Errorf("invalid character %q looking for a value", c), s.pos}
				}
				return s.buf, nil
			}
			s.buf = append(s.buf, b[0])
			s.r.Discard(1)
			s.pos++
		}
	}
	depth, inStr, esc := 0, false, false
	for {
		if _, err := s.r.Peek(1); err != nil {
			if err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		win, _ := s.r.Peek(s.r.Buffered())
		for i, b := range win {
			if inStr {
				switch {
				case esc:
					esc = false
				case b == '\\':
					esc = true
				case b == '"':
					inStr = false
					if depth == 0 {
						return s.take(win, i), nil
					}
				}
				continue
			}
			switch b {
			case '"':
				inStr = true
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return s.take(win, i), nil
				}
				if depth < 0 {
					return nil, offsetError{fmt.Errorf("invalid character %q", b), s.pos + int64(i)}
				}
			}
		}
		s.take(win, len(win)-1)
	}
}

// take moves win[:i+1] from the reader to the capture buffer.
func (s *jsonScanner) take(win []byte, i int) []byte {
	s.buf = append(s.buf, win[:i+1]...)
	s.r.Discard(i + 1)
	s.pos += int64(i + 1)
	return s.buf
}

// change decodes the next change object: by hand, in the reader's buffer, when it is a plain
// route or rule change; else with encoding/json (unknown fields refused, as Parse does).
func (s *jsonScanner) change(in *interner) (Change, error) {
	if s.r.Buffered() < 4096 {
		s.r.Peek(4096) // fills the buffer; a change object fits in it unless it is unusual
	}
	win, _ := s.r.Peek(s.r.Buffered())
	if c, n, ok := fastChange(win, in); ok {
		s.r.Discard(n)
		s.pos += int64(n)
		return c, nil
	}
	raw, err := s.capture()
	if err != nil {
		var oe offsetError
		if errors.As(err, &oe) {
			return Change{}, oe.err
		}
		return Change{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var c Change
	if err := dec.Decode(&c); err != nil {
		return Change{}, err
	}
	return c, nil
}
