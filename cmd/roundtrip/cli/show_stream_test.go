package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"roundtrip/engine/lab"
)

// TestPrivilegedLiveShowMatchesState: show on the live host, which prints what it reads
// without holding the routes, prints what show prints for a snapshot of the same host (the
// State path), summarised, with --all and with --table; and the routes are counted right.
func TestPrivilegedLiveShowMatchesState(t *testing.T) {
	l := lab.NewPrefixed(t, "hst")
	a, b := l.NS("a"), l.NS("b")
	a.NoDAD()
	l.Veth(a, "v1", b, "eth0")
	l.Veth(a, "v2", b, "eth1")
	a.Addr("v1", "10.1.0.1/24")
	a.Addr("v2", "10.2.0.1/24")
	a.IP("addr", "add", "2001:db8:1::1/64", "dev", "v1", "nodad")
	a.IP("route", "add", "default", "via", "10.1.0.2")
	a.IP("route", "add", "default", "via", "10.2.0.2", "table", "100")
	a.IP("-6", "route", "add", "default", "via", "2001:db8:1::2", "table", "100")
	a.IP("route", "add", "10.60.0.0/16", "table", "1000", "nexthop", "via", "10.1.0.2", "dev", "v1", "weight", "3",
		"nexthop", "via", "10.2.0.2", "dev", "v2")
	a.IP("route", "add", "blackhole", "10.50.0.0/16", "table", "200", "metric", "7")
	a.IP("rule", "add", "pref", "100", "from", "10.1.0.0/24", "lookup", "100")
	var batch strings.Builder
	for i := range 700 {
		fmt.Fprintf(&batch, "route add 198.18.%d.%d/32 via 10.1.0.2 table %d\n", i/250, i%250, 100+i%2*900)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "batch"), []byte(batch.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	a.IP("-batch", filepath.Join(dir, "batch"))
	snap := filepath.Join(dir, "snap.json")
	if code, _, errs := runCLI(t, "snapshot", "--netns", a.Name, "-o", snap); code != ExitOK {
		t.Fatalf("snapshot: exit %d: %s", code, errs)
	}
	for _, args := range [][]string{{}, {"--all"}, {"--table", "100"}, {"--table", "1000", "--all"}, {"--limit", "3"}, {"--table", "local"}} {
		live, want := runShow(t, append([]string{"show", "--netns", a.Name}, args...)), runShow(t, append([]string{"show", "--snapshot", snap}, args...))
		if live != want {
			t.Errorf("show %v: live differs from the snapshot's:\nlive:\n%.3000s\nsnapshot:\n%.3000s", args, live, want)
		}
		if len(args) == 0 && !strings.Contains(live, "TABLE 100: 351 route(s)") {
			t.Errorf("show: table 100 not counted right:\n%.3000s", live)
		}
		if len(args) == 1 && !strings.Contains(live, "198.18.2.198/32 via 10.1.0.2 dev v1") {
			t.Errorf("show --all lacks the last route:\n%.3000s", live)
		}
	}
}

func runShow(t *testing.T, args []string) string {
	t.Helper()
	code, out, errs := runCLI(t, args...)
	if code != ExitOK {
		t.Fatalf("%v: exit %d: %s", args, code, errs)
	}
	return out
}
