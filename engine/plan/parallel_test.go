package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// readWith reads a plan file with the parallel decoder's chunks of chunk bytes and two
// workers, or sequentially when chunk is 0. It returns the changes fn was given (stopping
// with an error at change stopAt when it is not negative) and the error.
func readWith(t *testing.T, path string, chunk int64, stopAt int) ([]Change, error) {
	t.Helper()
	oldChunk, oldWorkers := parChunk, parWorkers
	defer func() { parChunk, parWorkers = oldChunk, oldWorkers }()
	parChunk, parWorkers = 1<<50, func() int { return 2 }
	if chunk > 0 {
		parChunk = chunk
	}
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var got []Change
	err = f.Each(func(i int, c Change) error {
		if i != len(got) {
			return fmt.Errorf("change %d came as %d", len(got), i)
		}
		if i == stopAt {
			return fmt.Errorf("stop at %d", i)
		}
		got = append(got, c)
		return nil
	})
	return got, err
}

// variedPlan is n changes of every shape the decoders take differently: plain routes and
// rules (decoded by hand), routes with nexthops and other kinds (encoding/json), and texts
// that look like the start of a change (", {") to mislead a chunk's guess.
func variedPlan(n int) *Plan {
	p := New("varied, {\"kind\": \"route\"}")
	for i := range n {
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
		r := &model.Route{Family: inet.V4, Table: 100, Dst: dst, Gateway: netip.MustParseAddr("10.0.0.1"), Dev: "eth0"}
		c := Change{Kind: KindRoute, Op: OpAdd, Route: r}
		switch i % 9 {
		case 1:
			c.Why = fmt.Sprintf("line %d, {\"kind\": \"route\", \"op\": \"add\"}, {", i)
		case 2:
			r.Gateway, r.Dev = netip.Addr{}, ""
			r.Nexthops = []model.Nexthop{{Gateway: netip.MustParseAddr("10.0.0.1"), Dev: "eth0", Weight: 2}, {Gateway: netip.MustParseAddr("10.0.0.2"), Dev: "eth1"}}
		case 4:
			c = Change{Kind: KindRule, Op: OpAdd, Rule: &model.Rule{Family: inet.V4, Priority: 1000 + i, Src: dst, Action: model.ActionTable, Table: 100}}
		case 6:
			c = Change{Kind: KindSysctl, Op: OpSet, Why: "{,}", Sysctl: &SysctlValue{Key: model.ConfKey(fmt.Sprintf("eth%d", i), "rp_filter"), Value: "2"}}
		case 7:
			c = Change{Kind: KindAddress, Op: OpAdd, Address: &LinkAddress{Dev: fmt.Sprintf("v%d", i), Address: model.Address{Prefix: netip.PrefixFrom(dst.Addr().Next(), 24)}}}
		}
		p.Changes = append(p.Changes, c)
	}
	return p
}

// encodings are the plan as Marshal writes it and compact (no white space, so that ",{"
// also starts the objects of a nexthops array).
func encodings(t *testing.T, p *Plan) map[string][]byte {
	t.Helper()
	indented, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	compact, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{"indented": indented, "compact": compact}
}

var chunkSizes = []int64{17, 64, 200, 999, 4096}

// agree reads data sequentially and in parallel with every chunk size and fails unless they
// give the same changes and the same error.
func agree(t *testing.T, name string, data []byte, stopAt int) error {
	t.Helper()
	path := writeTemp(t, data)
	want, werr := readWith(t, path, 0, stopAt)
	for _, chunk := range chunkSizes {
		got, gerr := readWith(t, path, chunk, stopAt)
		if fmt.Sprint(werr) != fmt.Sprint(gerr) {
			t.Errorf("%s, chunks of %d: error\n%v\nwant (sequential)\n%v", name, chunk, gerr, werr)
		}
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s, chunks of %d: %d changes differ from the %d read sequentially", name, chunk, len(got), len(want))
		}
	}
	return werr
}

// TestParallelDecodeIsSequential: decoding a plan in parallel chunks gives exactly what the
// sequential decoder gives: the changes in order, and for broken plans the same error (the
// right change, line and column), whatever the chunk size and however the chunks' guessed
// starts are misled.
func TestParallelDecodeIsSequential(t *testing.T) {
	const n = 400
	p := variedPlan(n)
	confirmed, redone := parStats.confirmed.Load(), parStats.redone.Load()
	for enc, data := range encodings(t, p) {
		if err := agree(t, enc, data, -1); err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		got, _ := readWith(t, writeTemp(t, data), 64, -1)
		if !reflect.DeepEqual(got, p.Changes) {
			t.Fatalf("%s: the changes read are not the plan's", enc)
		}
		// fn's error stops the read there.
		if err := agree(t, enc+" stopped", data, n-5); err == nil || !strings.Contains(err.Error(), "stop at") {
			t.Errorf("%s: stopping at change %d: %v", enc, n-5, err)
		}
	}
	if parStats.confirmed.Load() == confirmed || parStats.redone.Load() == redone {
		t.Errorf("the parallel decoder confirmed %d and redid %d chunks: not both ways exercised",
			parStats.confirmed.Load()-confirmed, parStats.redone.Load()-redone)
	}

	broken := func(name, want string, edit func(enc string, data []byte) []byte) {
		t.Helper()
		for enc, data := range encodings(t, p) {
			b := edit(enc, bytes.Clone(data))
			err := agree(t, enc+": "+name, b, -1)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s, %s: got %v, want %q", enc, name, err, want)
			}
		}
	}
	// A change that is wrong on its own, late: named by its number.
	broken("bad change", fmt.Sprintf("change %d: route change without \"route\"", n-3), func(_ string, b []byte) []byte {
		q := variedPlan(n)
		q.Changes[n-4] = Change{Kind: KindRoute, Op: OpAdd, Rule: q.Changes[4].Rule}
		data, _ := q.Marshal()
		return data
	})
	// A syntax error late: named by its line and column.
	broken("syntax error", "line ", func(_ string, b []byte) []byte {
		i := bytes.LastIndex(b, []byte(`"op"`)) + 4
		return append(b[:i:i], append([]byte("x"), b[i:]...)...)
	})
	broken("truncated", "ends early", func(_ string, b []byte) []byte { return b[:len(b)*3/4] })
	broken("trailing comma", "invalid character", func(_ string, b []byte) []byte {
		i := bytes.LastIndexByte(b, ']')
		return append(b[:i:i], append([]byte(","), b[i:]...)...)
	})
	broken("duplicate", fmt.Sprintf("changes 1 and %d both touch", n+1), func(_ string, b []byte) []byte {
		q := variedPlan(n)
		q.Changes = append(q.Changes, q.Changes[0])
		data, _ := q.Marshal()
		return data
	})
	broken("many problems", "change 56:" /* the tenth */, func(_ string, b []byte) []byte {
		q := variedPlan(n)
		for i := 10; i < n; i += 5 {
			q.Changes[i] = Change{Kind: KindRoute, Op: OpAdd}
		}
		data, _ := q.Marshal()
		return data
	})
}

// TestParallelDecodeSmallAndOdd: arrays that are empty, end in the first chunk, or are
// followed by more of the plan object read as sequentially.
func TestParallelDecodeSmallAndOdd(t *testing.T) {
	for _, tc := range []string{
		`{"format":"roundtrip-plan","version":1,"changes":[]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[   ]                                                                        }`,
		`{"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","dev":"eth0"}}],"format":"roundtrip-plan","version":1,"intent":"after the changes, {"}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","dev":"eth0"}} , {"kind":"route","op":"add","route":{"family":"inet","dst":"10.1.0.0/16","dev":"eth0"}} ,
		    {"kind":"route","op":"add","route":{"family":"inet","dst":"10.2.0.0/16","dev":"eth0"}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","dev":"eth0"}},,{"kind":"route","op":"add","route":{"family":"inet","dst":"10.1.0.0/16","dev":"eth0"}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","dev":"eth0"}},["x"],{"kind":"route","op":"add","route":{"family":"inet","dst":"10.1.0.0/16","dev":"eth0"}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","dev":"eth0"}},{"kind":"route","op":"add","route":{"family":"inet","dst":"10.1.0.0/16","dev":"eth0"}}]`,
	} {
		err := agree(t, tc, []byte(tc), -1)
		if want, _ := Parse([]byte(tc)); (want == nil) != (err != nil) {
			t.Errorf("%s: Parse and the stream disagree: %v", tc, err)
		}
		if err != nil && !errors.Is(err, ErrBadPlan) {
			t.Errorf("%s: %v does not wrap ErrBadPlan", tc, err)
		}
	}
}

// FuzzParallelDecode: for any file, the parallel decoder with small chunks gives what the
// sequential one gives (changes and error).
func FuzzParallelDecode(f *testing.F) {
	data, _ := variedPlan(40).Marshal()
	f.Add(data)
	compact, _ := json.Marshal(variedPlan(40))
	f.Add(compact)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		path := writeTemp(t, data)
		want, werr := readWith(t, path, 0, -1)
		got, gerr := readWith(t, path, 61, -1)
		if fmt.Sprint(werr) != fmt.Sprint(gerr) || !reflect.DeepEqual(want, got) {
			t.Fatalf("parallel: %d changes, %v\nsequential: %d changes, %v", len(got), gerr, len(want), werr)
		}
	})
}
