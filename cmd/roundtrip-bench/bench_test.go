package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"roundtrip/diagnose"
	"roundtrip/engine/kernel"
)

func TestBGPPrefixes(t *testing.T) {
	ps := bgpPrefixes(20000)
	if len(ps) != 20000 {
		t.Fatalf("got %d prefixes, want 20000", len(ps))
	}
	seen := map[netip.Prefix]bool{}
	lens := map[int]int{}
	for _, p := range ps {
		if seen[p] {
			t.Fatalf("%s twice", p)
		}
		seen[p] = true
		if p != p.Masked() {
			t.Errorf("%s is not masked", p)
		}
		if first := p.Addr().As4()[0]; first == 0 || first == 10 || first == 127 || first >= 224 {
			t.Errorf("%s is in a range the bench host uses or the kernel refuses", p)
		}
		lens[p.Bits()]++
	}
	if lens[24] < len(ps)/3 {
		t.Errorf("only %d of %d prefixes are /24s: not an Internet table's shape", lens[24], len(ps))
	}
	// The same n gives the same table, so that runs and methods load identical routes.
	if again := bgpPrefixes(20000); again[19999] != ps[19999] {
		t.Error("bgpPrefixes is not deterministic")
	}
}

func TestParseRouteGet(t *testing.T) {
	out := []byte(`1.2.3.4 via 10.99.0.2 dev rt0 table 100 src 10.99.0.1 uid 0 
    cache 
local 127.5.5.5 dev lo table local src 127.0.0.1 uid 0 
    cache <local> 
10.99.0.7 dev rt0 src 10.99.0.1 uid 0 
    cache 
`)
	got := parseRouteGet(out)
	want := map[netip.Addr]netip.Addr{
		netip.MustParseAddr("1.2.3.4"):   netip.MustParseAddr("10.99.0.2"),
		netip.MustParseAddr("127.5.5.5"): {},
		netip.MustParseAddr("10.99.0.7"): {},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for a, gw := range want {
		if g, ok := got[a]; !ok || g != gw {
			t.Errorf("%s: got %v (%v), want %v", a, g, ok, gw)
		}
	}
}

// The capture section reads roundtrip's closing summary line: it must still parse what
// diagnose prints.
func TestRoundtripCaptureSummaryParses(t *testing.T) {
	var b bytes.Buffer
	diagnose.RenderSummary(&b, &diagnose.CaptureSummary{Packets: 299968, Interfaces: make([]kernel.CaptureInterface, 1),
		Kernel: kernel.CaptureStats{Received: 299968, KernelPackets: 300032, KernelDrops: 64}})
	var line string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "captured ") {
			line = l
		}
	}
	c := (&bench{}).capturers()[0]
	seen, drops, err := c.counts(line+"\n", "")
	if err != nil {
		t.Fatalf("%v (summary:\n%s)", err, b.String())
	}
	if seen != 299968 || drops != 64 {
		t.Errorf("got seen %d drops %d, want 299968 and 64", seen, drops)
	}
}

func TestTcpdumpCounts(t *testing.T) {
	stderr := "tcpdump: listening on eth1, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n" +
		"300032 packets captured\n300100 packets received by filter\n68 packets dropped by kernel\n"
	seen, drops, err := tcpdumpCounts("", stderr)
	if err != nil || seen != 300032 || drops != 68 {
		t.Errorf("got %d, %d, %v; want 300032, 68", seen, drops, err)
	}
	if _, _, err := tcpdumpCounts("", "tcpdump: eth1: No such device exists\n"); err == nil {
		t.Error("no error for output without counters")
	}
}

// Re-running the benchmark replaces its generated block and keeps the analysis around it.
func TestWriteResultsKeepsAnalysis(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := writeResults(path, []byte("first\n")); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	edited := "# Benchmarks\n\nintro by a person\n\n" + strings.TrimPrefix(string(data), "# Benchmarks\n\n") + "\n## Analysis\n\nkept\n"
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeResults(path, []byte("second\n")); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	s := string(data)
	for _, want := range []string{"intro by a person", "second\n", "## Analysis\n\nkept\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in:\n%s", want, s)
		}
	}
	if strings.Contains(s, "first") || strings.Count(s, beginMarker) != 1 || strings.Count(s, endMarker) != 1 {
		t.Errorf("the old block was not replaced exactly once:\n%s", s)
	}
}

func TestDualWANList(t *testing.T) {
	list, probe := dwList(10000)
	if len(list) != 10000 {
		t.Fatalf("got %d CIDRs", len(list))
	}
	blk := netip.MustParsePrefix("10.64.0.0/10")
	seen := map[netip.Prefix]bool{}
	for _, p := range list {
		if !blk.Contains(p.Addr()) || p.Bits() != 24 || seen[p] {
			t.Fatalf("%s: want distinct /24s of %s", p, blk)
		}
		seen[p] = true
	}
	if !list[len(list)/2].Contains(probe) {
		t.Errorf("probe %s is not in the middle entry %s", probe, list[len(list)/2])
	}
}
