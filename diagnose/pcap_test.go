package diagnose

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// gatedWriter blocks every Write until the gate is opened, like a file system in the middle of
// a journal commit, and fails once fail is set.
type gatedWriter struct {
	gate chan struct{}
	buf  bytes.Buffer
	fail error
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	<-g.gate
	if g.fail != nil {
		return 0, g.fail
	}
	return g.buf.Write(p)
}

// The pcap goes out through a goroutine: a stalled file does not hold up the capture until
// asyncQueue chunks wait; what is written comes out whole and in order; an error of the file
// comes back from a later Write and from Close.
func TestAsyncWriter(t *testing.T) {
	g := &gatedWriter{gate: make(chan struct{})}
	a := newAsyncWriter(g)
	var want bytes.Buffer
	rec := make([]byte, 0, 200)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		// About asyncQueue-2 chunks of records of varying sizes, none fitting a chunk exactly.
		for i := 0; want.Len() < (asyncQueue-2)*asyncChunk; i++ {
			rec = rec[:0]
			for j := range 60 + i%140 {
				rec = append(rec, byte(i+j))
			}
			if n, err := a.Write(rec); n != len(rec) || err != nil {
				t.Errorf("write %d: %d, %v", i, n, err)
				return
			}
			want.Write(rec)
		}
	}()
	select {
	case <-wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("Write blocked while the file stalled with fewer than asyncQueue chunks waiting")
	}
	close(g.gate)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.buf.Bytes(), want.Bytes()) {
		t.Fatalf("the file holds %d bytes, not the %d written in order", g.buf.Len(), want.Len())
	}

	// An error of the file: a later Write returns it, so does Close.
	bad := errors.New("no space left on device")
	g = &gatedWriter{gate: make(chan struct{}), fail: bad}
	close(g.gate)
	a = newAsyncWriter(g)
	chunk := make([]byte, asyncChunk)
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		_, err = a.Write(chunk)
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, bad) {
		t.Errorf("Write after the file failed: %v, want %v", err, bad)
	}
	if err := a.Close(); !errors.Is(err, bad) {
		t.Errorf("Close: %v, want %v", err, bad)
	}
}
