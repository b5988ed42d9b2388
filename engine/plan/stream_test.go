package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// readAll streams a plan file into a Plan.
func readAll(t testing.TB, path string) (*Plan, error) {
	t.Helper()
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	h := f.Header()
	p := &Plan{Format: h.Format, Version: h.Version, Intent: h.Intent, Namespace: h.Namespace, Changes: []Change{}}
	if err := f.Each(func(i int, c Change) error {
		if i != len(p.Changes) {
			return fmt.Errorf("change %d came as %d", len(p.Changes), i)
		}
		p.Changes = append(p.Changes, c)
		return nil
	}); err != nil {
		return nil, err
	}
	h = f.Header()
	p.Format, p.Version, p.Intent, p.Namespace = h.Format, h.Version, h.Intent, h.Namespace
	return p, nil
}

func writeTemp(t testing.TB, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkAgrees decodes data with Parse and with File: both refuse it, or both return
// the same plan.
func checkAgrees(t *testing.T, data []byte) {
	t.Helper()
	want, werr := Parse(data)
	path := writeTemp(t, data)
	got, gerr := readAll(t, path)
	// In parallel chunks (of a few dozen bytes), the stream reads the same.
	seq, serr := readWith(t, path, 0, -1)
	par, perr := readWith(t, path, 29, -1)
	if fmt.Sprint(serr) != fmt.Sprint(perr) || !reflect.DeepEqual(seq, par) {
		t.Fatalf("read in parallel: %d changes, %v\nsequentially: %d changes, %v\ninput %s", len(par), perr, len(seq), serr, data)
	}
	switch {
	case werr != nil && gerr != nil:
		if !errors.Is(gerr, ErrBadPlan) {
			t.Fatalf("stream error does not wrap ErrBadPlan: %v", gerr)
		}
	case werr != nil:
		t.Fatalf("ParsePlan refuses (%v), the stream accepts:\n%s", werr, data)
	case gerr != nil:
		t.Fatalf("the stream refuses (%v), ParsePlan accepts:\n%s", gerr, data)
	default:
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("they disagree:\nParsePlan %+v\nstream    %+v\ninput %s", want, got, data)
		}
	}
}

func samplePlan() *Plan {
	pfx, ip := netip.MustParsePrefix, netip.MustParseAddr
	p := New("sample")
	p.Namespace = "lab"
	p.Changes = []Change{
		{Kind: KindRoute, Op: OpAdd, Why: "list", Route: &model.Route{Family: inet.V4, Table: 100, Dst: pfx("10.1.0.0/16"), Gateway: ip("10.0.0.1"), Dev: "eth0", Metric: 5, Protocol: "static", OnLink: true}},
		{Kind: KindRoute, Op: OpReplace, Route: &model.Route{Family: inet.V6, Dst: pfx("2001:db8::/32"), Gateway: ip("fe80::1"), Dev: "eth0", Src: ip("2001:db8::1"), TOS: 0, Scope: "universe"}},
		{Kind: KindRoute, Op: OpAdd, Route: &model.Route{Family: inet.V4, Table: 200, Type: model.RouteUnreachable, Dst: pfx("0.0.0.0/0"), Metric: 50}},
		{Kind: KindRoute, Op: OpAdd, Route: &model.Route{Family: inet.V4, Dst: pfx("10.9.0.0/16"), Nexthops: []model.Nexthop{{Gateway: ip("10.0.0.1"), Dev: "eth0", Weight: 2}, {Gateway: ip("10.0.0.2"), Weight: 1}}}},
		{Kind: KindRule, Op: OpAdd, Rule: &model.Rule{Family: inet.V4, Priority: 100, Not: true, Src: pfx("10.1.0.0/16"), Dst: pfx("10.2.0.0/16"), IIF: "eth0", OIF: "eth1",
			Mark: &model.MarkMatch{Value: 1, Mask: 0xff}, TOS: 4, IPProto: 6, SPort: &model.PortRange{Start: 1, End: 2}, DPort: &model.PortRange{Start: 80, End: 80},
			UIDRange: &model.UIDRange{Start: 1000, End: 2000}, SuppressPrefixLen: new(0), SuppressIfGroup: new(3), Action: model.ActionTable, Table: 1000, Protocol: 4}},
		{Kind: KindRule, Op: OpDelete, Rule: &model.Rule{Family: inet.V6, Priority: 200, Action: model.ActionGoto, Goto: 300}},
		{Kind: KindSysctl, Op: OpSet, Sysctl: &SysctlValue{Key: model.SysctlIPForward, Value: "1"}},
		{Kind: KindTable, Op: OpAdd, Table: &RTTable{ID: 100, Name: "isp"}},
		{Kind: KindConntrack, Op: OpFlush, Conntrack: &ConntrackFlush{Family: inet.V4, Proto: 6}},
	}
	return p
}

func TestPlanFileAgreesWithParsePlan(t *testing.T) {
	data, err := samplePlan().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	checkAgrees(t, data)
	// Every route and rule change of Marshal's output takes the fast path.
	in := &interner{}
	for _, c := range samplePlan().Changes {
		if c.Kind != KindRoute && c.Kind != KindRule || len(nexthopsOrNil(c.Route)) > 0 {
			continue
		}
		raw, _ := jsonMarshal(c)
		if _, n, ok := fastChange(raw, in); !ok || n != len(raw) {
			t.Errorf("not decoded by hand: %s", raw)
		}
	}
	for _, tc := range []string{
		``,
		`{}`,
		`[]`,
		`{"format":"roundtrip-plan","version":1,"changes":[]}`,
		`{"format":"roundtrip-plan","version":1,"changes":null}`,
		`{"changes":[],"format":"roundtrip-plan","version":1}`,
		`{"format":"roundtrip-plan","version":2,"changes":[]}`,
		`{"format":"other","version":1,"changes":[]}`,
		`{"Format":"roundtrip-plan","VERSION":1,"Changes":[]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[],"extra":1}`,
		`{"format":"roundtrip-plan","version":1,"changes":[]} x`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","dev":"eth0"}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","dev":"eth0","dev":"eth1"}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","Dev":"eth0"}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","dev":"e\u0074h0"}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","metric":1.0}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","metric":1e2}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","tos":256}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","tos":-1}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/33"}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"ipv4","dst":"10.0.0.0/8"}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":null}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8"}},{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","table":254}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8"}}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"rule","op":"add","rule":{"family":"inet","priority":5,"fwmark":{"value":1},"action":"table","table":5}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"rule","op":"add","rule":{"family":"inet","priority":5,"fwmark":{"value":1,"bogus":2},"action":"table","table":5}}]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"rule","op":"add","rule":{"family":"inet","priority":5,"sport":{"start":70000},"action":"table","table":5}}]}`,
		`{"format":"roundtrip-plan","version":1,"intent":"a\nb","changes":[]}`,
		`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","why":"caf\u00e9 \xff","route":{"family":"inet","dst":"10.0.0.0/8"}}]}`,
	} {
		t.Run(tc, func(t *testing.T) { checkAgrees(t, []byte(tc)) })
	}
}

func nexthopsOrNil(r *model.Route) []model.Nexthop {
	if r == nil {
		return nil
	}
	return r.Nexthops
}

// FuzzPlanFile feeds arbitrary files to both decoders: the hand-written fast path must never
// accept something encoding/json reads otherwise.
func FuzzPlanFile(f *testing.F) {
	data, _ := samplePlan().Marshal()
	f.Add(data)
	f.Add([]byte(`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"rule","op":"add","rule":{"family":"inet","priority":5,"action":"table","table":5}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		checkAgrees(t, data)
	})
}

func TestPlanFileReportsWhereAndWhat(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"{\n\"format\":\"roundtrip-plan\",\"version\":1,\n\"changes\":[\n{\"kind\":\"route\",\"op\":\"add\",\"route\":{\"family\":\"inet\",\"dst\":\"10.0.0.0/8\",\"metric\":\"x\"}}]}", "line 4"},
		{`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","dev":"a"}},{"kind":"route","op":"add","route":{"family":"inet","dst":"10.0.0.0/8","table":254,"dev":"b"}}]}`,
			"changes 1 and 2 both touch route inet 10.0.0.0/8 table 254"},
		{`{"format":"roundtrip-plan","version":1,"changes":[{"kind":"route","op":"add","route":{"family":"inet"`, "ends early"},
		{`{"format":"x","version":1,"changes":[]}`, `format is "x"`},
	} {
		_, err := readAll(t, writeTemp(t, []byte(tc.in)))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrBadPlan) {
			t.Errorf("%s: got %v, want %q", tc.in, err, tc.want)
		}
	}
}

func BenchmarkPlanFile(b *testing.B) {
	p := New("bench")
	for i := range 100000 {
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(1 + i>>16), byte(i >> 8), byte(i), 0}), 24)
		p.Changes = append(p.Changes, Change{Kind: KindRoute, Op: OpAdd,
			Route: &model.Route{Family: inet.V4, Table: 100, Dst: dst, Gateway: netip.MustParseAddr("10.99.0.2"), Dev: "rt0"}})
	}
	data, _ := p.Marshal()
	path := writeTemp(b, data)
	for _, par := range []bool{false, true} {
		b.Run(fmt.Sprintf("parallel=%v", par), func(b *testing.B) {
			if !par {
				old := parChunk
				parChunk = 1 << 50
				defer func() { parChunk = old }()
			}
			cpu0 := cpuTime()
			for range b.N {
				f, err := Open(path)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				if err := f.Each(func(int, Change) error { n++; return nil }); err != nil || n != 100000 {
					b.Fatal(err, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100000), "ns/change")
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*100000), "cpu-ns/change")
		})
	}
}

// cpuTime is the process's user and system time so far, in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// TestHashList: the interpolating lookup finds what a binary search finds, duplicates and all.
func TestHashList(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2, 3, 10, 1000, 20000} {
		var l HashList
		var all []uint64
		for i := range n {
			h := rng.Uint64()
			if i > 0 && rng.IntN(4) == 0 {
				h = all[rng.IntN(len(all))] // duplicates
			}
			all = append(all, h)
			l.Add(h)
		}
		for _, h := range []uint64{0, ^uint64(0), 1 << 56, 1<<56 - 1} {
			all = append(all, h)
			l.Add(h)
		}
		slices.Sort(all)
		l.Sort()
		if l.Len() != len(all) {
			t.Fatalf("n=%d: Len %d", n, l.Len())
		}
		for i := range all {
			if l.At(i) != all[i] {
				t.Fatalf("n=%d: At(%d)", n, i)
			}
		}
		for range 3000 {
			h := rng.Uint64()
			if rng.IntN(2) == 0 {
				h = all[rng.IntN(len(all))]
			}
			lo, _ := slices.BinarySearch(all, h)
			hi := lo
			for hi < len(all) && all[hi] == h {
				hi++
			}
			if glo, ghi := l.Find(h); glo != lo || ghi != hi {
				t.Fatalf("n=%d h=%x: [%d,%d), want [%d,%d)", n, h, glo, ghi, lo, hi)
			}
		}
		var dups []uint64
		for i := 1; i < len(all); i++ {
			if all[i] == all[i-1] && (len(dups) == 0 || dups[len(dups)-1] != all[i]) {
				dups = append(dups, all[i])
			}
		}
		if got := l.Dups(); !slices.Equal(got, dups) {
			t.Fatalf("n=%d: Dups %d, want %d", n, len(got), len(dups))
		}
	}
}
