package cli

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/lab"
)

// BenchmarkPrivilegedStreamedReads100k loads 100,000 routes (an Internet table's length mix)
// into a namespace with `ip -batch`, then runs, as child processes under GNU time, roundtrip
// snapshot, show, show --all and a live trace beside `ip -j route show table all` and `ip route
// show table all`, and reports each one's wall time and peak RSS (ms-NAME, KB-NAME). Run once:
//
//	go test ./cmd/roundtrip/cli -run NONE -bench StreamedReads -benchtime 1x
func BenchmarkPrivilegedStreamedReads100k(b *testing.B) {
	const gnuTime = "/usr/bin/time"
	if _, err := os.Stat(gnuTime); err != nil {
		b.Skip("GNU time (/usr/bin/time) is needed for the peak RSS")
	}
	l := lab.NewPrefixed(b, "hst")
	ns := l.NS("bench")
	ns.IP("link", "add", "v1", "type", "veth", "peer", "name", "v2")
	ns.IP("link", "set", "v1", "up")
	ns.IP("link", "set", "v2", "up")
	ns.Addr("v1", "10.0.0.1/16")
	ns.IP("route", "add", "default", "via", "10.0.0.2")
	ns.IP("rule", "add", "pref", "100", "lookup", "100")
	const n = 100_000
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := []int{24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 22, 22, 23, 23, 20, 21, 16, 19, 18, 17}
	seen := map[netip.Prefix]bool{}
	var batch strings.Builder
	for len(seen) < n {
		a := netip.AddrFrom4([4]byte{byte(11 + rng.IntN(212)), byte(rng.IntN(256)), byte(rng.IntN(256)), 0})
		p := netip.PrefixFrom(a, lengths[rng.IntN(len(lengths))]).Masked()
		if seen[p] || a.As4()[0] == 127 {
			continue
		}
		seen[p] = true
		fmt.Fprintf(&batch, "route add %s via 10.0.0.2 table 100\n", p)
	}
	dir := b.TempDir()
	file := filepath.Join(dir, "routes")
	if err := os.WriteFile(file, []byte(batch.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	ns.IP("-batch", file)
	bin := roundtripBinary(b)
	measure := func(name string, argv ...string) {
		stats := filepath.Join(dir, "stats")
		cmd := exec.Command(gnuTime, append([]string{"-f", "%e %M", "-o", stats}, argv...)...)
		out, err := os.Create(filepath.Join(dir, "out"))
		if err != nil {
			b.Fatal(err)
		}
		defer out.Close()
		cmd.Stdout = out
		start := time.Now()
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != ExitFindings {
				b.Fatalf("%s: %v", name, err)
			}
		}
		wall := time.Since(start)
		raw, _ := os.ReadFile(stats)
		f := strings.Fields(string(raw))
		kb, _ := strconv.Atoi(f[len(f)-1])
		b.ReportMetric(float64(wall.Milliseconds()), "ms-"+name)
		b.ReportMetric(float64(kb), "KB-"+name)
	}
	for b.Loop() {
		measure("snapshot", bin, "snapshot", "--netns", ns.Name, "-o", filepath.Join(dir, "snap.json"))
		measure("ip-j", "ip", "-n", ns.Name, "-j", "route", "show", "table", "all")
		measure("show", bin, "show", "--netns", ns.Name)
		measure("show-all", bin, "show", "--all", "--netns", ns.Name)
		measure("ip-show", "ip", "-n", ns.Name, "route", "show", "table", "all")
		measure("trace", bin, "trace", "tcp", "10.0.0.5:40000", "11.22.33.44:443", "--iif", "v1", "--netns", ns.Name)
	}
}
