package model_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/model/modeltest"
)

func streamSnapshot(t *testing.T, s *model.State, taken time.Time) []byte {
	t.Helper()
	c := s.Clone()
	c.Routes = nil
	var out bytes.Buffer
	sw, err := model.NewSnapshotWriter(&out, c, taken)
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.Routes {
		if err := sw.Route(&s.Routes[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	if sw.Routes() != len(s.Routes) {
		t.Fatalf("wrote %d routes of %d", sw.Routes(), len(s.Routes))
	}
	return out.Bytes()
}

// TestSnapshotWriterMatchesMarshal: a snapshot streamed route by route is the file Marshal
// writes for the same state, byte for byte, for every field of a route and for names that
// need escaping, and ParseSnapshot reads it back to the same state.
func TestSnapshotWriterMatchesMarshal(t *testing.T) {
	taken := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	s := modeltest.ScaleHost(t, 2000)
	a, p := netip.MustParseAddr, netip.MustParsePrefix
	s.Routes = append(s.Routes,
		model.Route{Family: inet.V4, Table: 4294967000, Type: model.RouteUnicast, Dst: p("10.70.0.0/16"), TOS: 0x10,
			Gateway: a("192.0.2.1"), Dev: "eth0", Src: a("192.0.2.2"), Metric: 4294967295, Scope: "universe", Protocol: "186", OnLink: true},
		model.Route{Family: inet.V4, Table: 1000, Type: model.RouteUnicast, Dst: p("10.60.0.0/16"), Protocol: "static",
			Nexthops: []model.Nexthop{{Gateway: a("192.0.2.1"), Dev: "eth0", Weight: 3}, {Dev: "em1", Weight: 1, OnLink: true}, {Gateway: a("198.51.100.1"), Weight: 256}}},
		model.Route{Family: inet.V4, Table: model.TableMain, Type: model.RouteUnicast, Dst: p("203.0.113.0/24"), Gateway: a("fe80::1"), Dev: "eth0"},
		model.Route{Family: inet.V6, Table: model.TableMain, Type: model.RouteBlackhole, Dst: p("2001:db8::/32"), Metric: 1024},
		model.Route{Family: inet.V6, Table: model.TableMain, Type: model.RouteUnicast, Dst: p("::/0"), Gateway: a("fe80::1"), Dev: "em1", Protocol: "ra", Metric: 1024},
	)
	if b1, b2 := mustMarshal(t, s, taken), streamSnapshot(t, s, taken); !bytes.Equal(b1, b2) {
		t.Fatalf("streamed snapshot differs from Marshal's:\n%s", firstDiff(b1, b2))
	}
	snap, err := model.ParseSnapshot(streamSnapshot(t, s, taken))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustMarshal(t, snap.State, taken), mustMarshal(t, s, taken)) {
		t.Fatal("the streamed snapshot does not read back to the state")
	}

	// Names that JSON escapes (not valid link names, but the encoder must not care), a zone,
	// an invalid destination; Marshal and the writer must still agree.
	odd := &model.State{Links: s.Links, Rules: s.Rules}
	odd.Routes = []model.Route{
		{Family: inet.V4, Table: 5, Type: "weird\"<&>\\", Dst: netip.Prefix{}, Dev: "a\u2028é\x01", Scope: "\xff", Protocol: "<p>"},
		{Family: inet.V6, Table: 5, Type: model.RouteUnicast, Dst: p("fe80::/64"), Gateway: a("fe80::1%eth0"), Src: a("::ffff:1.2.3.4"),
			Nexthops: []model.Nexthop{{Gateway: a("fe80::2%em1"), Dev: "x>y", Weight: -1}}},
	}
	if b1, b2 := mustMarshal(t, odd, taken), streamSnapshot(t, odd, taken); !bytes.Equal(b1, b2) {
		t.Fatalf("streamed snapshot differs from Marshal's:\n%s", firstDiff(b1, b2))
	}
	// No routes at all: Marshal writes null.
	none := &model.State{Links: s.Links}
	if b1, b2 := mustMarshal(t, none, taken), streamSnapshot(t, none, taken); !bytes.Equal(b1, b2) {
		t.Fatalf("streamed snapshot differs from Marshal's:\n%s", firstDiff(b1, b2))
	}
	// A family Marshal refuses is refused.
	var out bytes.Buffer
	sw, err := model.NewSnapshotWriter(&out, none, taken)
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Route(&model.Route{Family: 7, Dst: p("10.0.0.0/8")}); err == nil {
		t.Fatal("a route of family 7 was written")
	}
}

func mustMarshal(t *testing.T, s *model.State, taken time.Time) []byte {
	t.Helper()
	b, err := model.NewSnapshot(s, taken).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func firstDiff(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	from := max(0, i-200)
	return "Marshal: ..." + string(a[from:min(len(a), i+200)]) + "\nwriter:  ..." + string(b[from:min(len(b), i+200)])
}
