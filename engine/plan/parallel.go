package plan

import (
	"bytes"
	"encoding/json"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
)

// A large plan's changes are decoded on every core: decoding is most of the work of reading
// a plan, and a million-route apply reads its plan before it changes anything. The array of
// changes is cut into chunks of parChunk bytes; a worker decodes (and checks and hashes) the
// changes that start in its chunk. Only the first chunk's start is known: every other worker
// guesses where the first change of its chunk starts (a '{' after a ',') and the guess is
// confirmed when the chunk before it ends exactly there. A wrong guess is decoded again from
// the confirmed offset. The changes are taken in order (elems.take), so fn, the problems and
// the duplicate check see exactly what the sequential loop gives them; anything a worker does
// not read plainly (a syntax error, an I/O error, a file that ends early) makes it stop, and
// the sequential loop takes over from the start of its chunk, with its own messages.

// parChunk is the size of a chunk; plans of less than two chunks are read sequentially.
// A few chunks are in flight at a time, decoded (~1000 changes each), so that the memory of
// an apply does not grow with its plan. Tests lower it.
var parChunk int64 = 128 << 10

// parWorkers is how many chunks are decoded at once: the machine's cores, up to 4.
var parWorkers = func() int { return min(runtime.GOMAXPROCS(0), 4) }

// parStats counts, for tests, the chunks whose guessed start was confirmed and those decoded
// again from the confirmed one.
var parStats struct{ confirmed, redone atomic.Int64 }

// chunkResult is what a worker found in its chunk.
type chunkResult struct {
	start  int64 // offset of its first change (-1: it found none)
	elems  []decoded
	next   int64 // offset of the first change after the chunk, or just after ']' when ended
	ended  bool  // the array of changes ends in this chunk
	failed bool  // not read plainly: the sequential loop reads from start
}

// parallel decodes the changes array whose '[' s has just read. It reports done when it read
// the whole array (s is then just after its ']'); otherwise s is where the sequential loop
// must go on (nothing or some of the changes taken).
func (f *File) parallel(s *jsonScanner, el *elems) (done bool, err error) {
	s0 := s.offset()
	workers := parWorkers()
	if workers < 2 || f.size-s0 < 2*parChunk {
		return false, nil
	}
	nchunks := int((f.size - s0 + parChunk - 1) / parChunk)
	bound := func(k int) int64 { return min(s0+int64(k)*parChunk, f.size) }

	type task struct {
		k   int
		out chan chunkResult
	}
	tasks := make(chan task, workers+2)
	// Lists of decoded changes the orderer is done with, for the workers to fill again.
	free := make(chan []decoded, workers+2)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, buf := &interner{}, []byte(nil)
			for t := range tasks {
				start := s0
				if t.k > 0 {
					start = f.guessStart(bound(t.k), bound(t.k+1))
				}
				var list []decoded
				select {
				case list = <-free:
				default:
				}
				var r chunkResult
				r, buf = f.decodeChunk(in, buf, list, start, bound(t.k+1), t.k == 0)
				t.out <- r
			}
		}()
	}
	var outs []chan chunkResult
	dispatch := func() {
		if k := len(outs); k < nchunks {
			c := make(chan chunkResult, 1)
			outs = append(outs, c)
			tasks <- task{k, c}
		}
	}
	defer func() {
		close(tasks)
		wg.Wait()
	}()
	for range workers + 1 {
		dispatch()
	}
	seek := func(off int64) {
		s.r.Reset(io.NewSectionReader(f.r, off, f.size-off))
		s.pos = off
	}
	in := &interner{} // for chunks decoded again here
	expect := s0      // the confirmed offset of the next change (after '[' for the first)
	for k := range nchunks {
		r := <-outs[k]
		outs[k] = nil
		dispatch()
		if k > 0 && expect >= bound(k+1) {
			continue // a change started in an earlier chunk spans this one
		}
		if r.start != expect {
			r, _ = f.decodeChunk(in, nil, r.elems, expect, bound(k+1), k == 0)
			parStats.redone.Add(1)
		} else if k > 0 {
			parStats.confirmed.Add(1)
		}
		if r.failed {
			seek(expect)
			return false, nil
		}
		for _, d := range r.elems {
			if err := el.take(d); err != nil {
				return false, err
			}
		}
		clear(r.elems) // fn has copied the changes it keeps
		select {
		case free <- r.elems[:0]:
		default:
		}
		if r.ended {
			seek(r.next)
			return true, nil
		}
		expect = r.next
	}
	// The file ended inside the array: the sequential loop says so as it always does.
	seek(expect)
	return false, nil
}

// guessStart returns the offset of the first '{' in [lo, hi) that follows a ',' and white
// space: where a change of the array likely starts (-1 when none does).
func (f *File) guessStart(lo, hi int64) int64 {
	const back = 256 // white space looked back over for the ','
	var buf [back + 8192]byte
	for at := lo; at < hi; at += int64(len(buf) - back) {
		base := max(at-back, 0)
		n, _ := f.r.ReadAt(buf[:min(int64(len(buf)), hi-base)], base)
		b := buf[:n]
		for i := at - base; i < int64(len(b)); i++ {
			j := bytes.IndexByte(b[i:], '{')
			if j < 0 {
				break
			}
			i += int64(j)
			p := i - 1
			for p >= 0 && isSpace(b[p]) {
				p--
			}
			if p >= 0 && b[p] == ',' {
				return base + i
			}
		}
		if n == 0 {
			break
		}
	}
	return -1
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// window is bytes of the file from base, read as they are needed.
type window struct {
	f    *File
	base int64
	b    []byte
	eof  bool
}

// need makes the window hold at least n bytes from offset i (or all the file has), and
// reports false on a read error.
func (w *window) need(i, n int) bool {
	for !w.eof && len(w.b) < i+n {
		grow := max(i+n-len(w.b), 32<<10)
		if len(w.b)+grow > cap(w.b) {
			nb := make([]byte, len(w.b), 2*cap(w.b)+grow)
			copy(nb, w.b)
			w.b = nb
		}
		off := w.base + int64(len(w.b))
		m, err := w.f.r.ReadAt(w.b[len(w.b):len(w.b)+grow], off)
		w.b = w.b[:len(w.b)+m]
		if err == io.EOF || off+int64(m) >= w.f.size {
			w.eof = true
			w.b = w.b[:min(int64(len(w.b)), w.f.size-w.base)]
		} else if err != nil {
			return false
		}
	}
	return true
}

// decodeChunk decodes the changes that start in [start, end), the first at start (first: the
// first chunk, whose start is just after the array's '[' and may be its ']'). buf is room
// for the bytes, returned for the next chunk: nothing decoded refers to it.
func (f *File) decodeChunk(in *interner, buf []byte, list []decoded, start, end int64, first bool) (chunkResult, []byte) {
	r := chunkResult{start: start, elems: list[:0]}
	if start < 0 {
		return r, buf
	}
	w := &window{f: f, base: start, b: buf[:0]}
	r = w.decode(in, end, first, r)
	return r, w.b
}

func (w *window) decode(in *interner, end int64, first bool, r chunkResult) chunkResult {
	start := w.base
	fail := func() chunkResult { r.failed, r.elems = true, nil; return r }
	i := 0
	skip := func() bool {
		for {
			if !w.need(i, 1) || i >= len(w.b) {
				return false
			}
			if !isSpace(w.b[i]) {
				return true
			}
			i++
		}
	}
	if first {
		if !skip() {
			return fail()
		}
		if w.b[i] == ']' {
			r.ended, r.next = true, start+int64(i)+1
			return r
		}
	}
	for {
		if !w.need(i, 4096) || i >= len(w.b) || w.b[i] != '{' {
			return fail()
		}
		c, n, ok := fastChange(w.b[i:], in)
		if !ok {
			if c, n, ok = w.slowChange(i); !ok {
				return fail()
			}
		}
		r.elems = append(r.elems, checked(c))
		i += n
		if !skip() {
			return fail()
		}
		switch w.b[i] {
		case ']':
			r.ended, r.next = true, start+int64(i)+1
			return r
		case ',':
			i++
		default:
			return fail()
		}
		if !skip() || w.b[i] != '{' {
			return fail() // the sequential loop has the message for it
		}
		if start+int64(i) >= end {
			r.next = start + int64(i)
			return r
		}
	}
}

// slowChange decodes the change object at i with encoding/json, as jsonScanner.change does
// for what fastChange does not take.
func (w *window) slowChange(i int) (Change, int, bool) {
	depth, inStr, esc := 0, false, false
	for j := i; ; j++ {
		if !w.need(j, 1) || j >= len(w.b) {
			return Change{}, 0, false
		}
		b := w.b[j]
		if inStr {
			switch {
			case esc:
				esc = false
			case b == '\\':
				esc = true
			case b == '"':
				inStr = false
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
			if depth < 0 {
				return Change{}, 0, false
			}
			if depth == 0 {
				dec := json.NewDecoder(bytes.NewReader(w.b[i : j+1]))
				dec.DisallowUnknownFields()
				var c Change
				if err := dec.Decode(&c); err != nil {
					return Change{}, 0, false
				}
				return c, j + 1 - i, true
			}
		}
	}
}
