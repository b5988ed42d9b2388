package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/kernel"
	"roundtrip/watch"
)

func TestWatchCommandLine(t *testing.T) {
	t.Setenv(kernel.StateDirEnv, t.TempDir())
	wans := []string{"--wan", "wan1:198.18.73.5:isp_a", "--wan", "wan2:198.18.73.9:isp_b"}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"watch", "--target", "192.0.2.1"}, ExitUsage, "no --wan given, and roundtrip history has no multi-wan apply in effect"},
		{append(slicesOf(wans), "--unit"), ExitUsage, "--target ADDR is needed"},
		{append(slicesOf(wans), "--target", "192.0.2.1", "--failback", "later"), ExitUsage, `--failback "later"`},
		{append(slicesOf(wans), "--target", "tcp:192.0.2.1"), ExitUsage, "tcp:ADDR:PORT"},
		{append(slicesOf(wans), "--target", "192.0.2.1", "--json"), ExitUsage, "--json goes with --status"},
		{[]string{"watch", "--status"}, ExitError, "no roundtrip watch has run here"},
		{[]string{"watch", "extra"}, ExitUsage, "takes no arguments"},
	} {
		code, _, errOut := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("roundtrip %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), code, errOut, c.code, c.want)
		}
	}

	code, out, errOut := runCLI(t, append(slicesOf(wans), "--target", "192.0.2.1", "--target", "tcp:192.0.2.2:443", "--interval", "500ms", "--max-loss", "50", "--unit")...)
	if code != ExitOK || !strings.Contains(out, " watch --wan wan1:198.18.73.5:isp_a --wan wan2:198.18.73.9:isp_b --target icmp:192.0.2.1 --target tcp:192.0.2.2:443 --interval 500ms --timeout 500ms --down-after 3 --up-after 5 --max-loss 50 --failback immediate\n") {
		t.Errorf("--unit: exit %d\n%s\n%s", code, out, errOut)
	}

	// Without --wan, the options of the latest multi-wan apply are used.
	store, err := kernel.OpenStore(kernel.Namespace{})
	if err != nil {
		t.Fatal(err)
	}
	intent := "roundtrip wizard multi-wan --wan wan1:198.18.73.5:isp_a --wan wan2:198.18.73.9:isp_b --lan lan0 --snat --connmark"
	j, err := store.Create(kernel.JournalHead{Intent: intent})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.MarkApplied(); err != nil {
		t.Fatal(err)
	}
	j.Close()
	code, out, errOut = runCLI(t, "watch", "--target", "192.0.2.1", "--unit")
	if code != ExitOK || !strings.Contains(errOut, "the WANs are those of the multi-wan apply "+j.ID) ||
		!strings.Contains(out, "watch --wan wan1:198.18.73.5:isp_a --wan wan2:198.18.73.9:isp_b --lan lan0 --snat --connmark --target icmp:192.0.2.1") {
		t.Errorf("options from history: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	// --status reads what the watcher wrote.
	s := &watch.Status{Format: watch.StatusFormat, PID: 1, Started: time.Now(), Updated: time.Now(), Interval: time.Second,
		Failback: watch.FailbackImmediate, Default: "isp_b", RoutedAround: []string{"isp_a"},
		WANs: []watch.WANStatus{{WANHealth: watch.WANHealth{Name: "isp_a", Health: watch.HealthDown}, Iface: "wan1"}}}
	if err := watch.WriteStatus(store.Dir, s); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, "watch", "--status")
	if code != ExitOK || !strings.Contains(out, "default route via isp_b; routed around: isp_a") || !strings.Contains(out, "isp_a  wan1   down") {
		t.Errorf("--status: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "watch", "--status", "--json")
	var got watch.Status
	if err := json.Unmarshal([]byte(out), &got); code != ExitOK || err != nil || got.Default != "isp_b" || !got.Running {
		t.Errorf("--status --json: exit %d, %v, %+v", code, err, got)
	}
}

func slicesOf(wans []string) []string { return append([]string{"watch"}, wans...) }
