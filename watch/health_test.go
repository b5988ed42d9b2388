package watch

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// epoch is the fake clock's start.
var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func probes(answers ...bool) []ProbeResult {
	var out []ProbeResult
	for i, ok := range answers {
		r := ProbeResult{Target: fmt.Sprintf("icmp:192.0.2.%d", i+1), OK: ok}
		if ok {
			r.RTT = time.Duration(i+1) * time.Millisecond
		} else {
			r.Err = "timeout"
		}
		out = append(out, r)
	}
	return out
}

func TestJudge(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  HealthConfig
		in   []ProbeResult
		good bool
		why  string
	}{
		{"one of three answers: reliability 1", HealthConfig{}, probes(false, true, false), true, ""},
		{"none answers", HealthConfig{}, probes(false, false, false), false, "100% lost (timeout)"},
		{"no probes", HealthConfig{}, nil, false, "no probes"},
		{"half lost with max-loss 50%", HealthConfig{MaxLoss: 0.5}, probes(true, false), false, "50% lost (timeout)"},
		{"a third lost with max-loss 50%", HealthConfig{MaxLoss: 0.5}, probes(true, false, true), true, ""},
		{"two thirds lost with max-loss 66.7%", HealthConfig{MaxLoss: 2.0 / 3}, probes(true, false, false), false, "67% lost (timeout)"},
		{"slow", HealthConfig{MaxRTT: 1500 * time.Microsecond}, probes(true, true, true), false, "rtt 2ms over 1.5ms"},
		{"fast enough", HealthConfig{MaxRTT: 2 * time.Millisecond}, probes(true, true, true), true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := c.cfg.Judge(c.in)
			if r.Good != c.good || r.Why != c.why {
				t.Errorf("Judge = good %v why %q, want good %v why %q", r.Good, r.Why, c.good, c.why)
			}
		})
	}
}

func TestHealthConfigCheck(t *testing.T) {
	for _, c := range []struct {
		cfg  HealthConfig
		want string
	}{
		{HealthConfig{DownAfter: -1}, "--down-after -1"},
		{HealthConfig{UpAfter: 5000}, "--up-after 5000"},
		{HealthConfig{MaxLoss: 1.5}, "--max-loss 150%"},
		{HealthConfig{MaxRTT: -time.Second}, "--max-rtt -1s"},
	} {
		err := c.cfg.Check()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%+v) = %v, want an error about %s", c.cfg, err, c.want)
		}
	}
	if err := (HealthConfig{}).Check(); err != nil {
		t.Errorf("the defaults are refused: %v", err)
	}
}

// TestTrackerHysteresis walks a scripted sequence of rounds with a fake clock: a WAN goes down
// only after DownAfter failed rounds in a row, and up only after UpAfter good ones in a row.
func TestTrackerHysteresis(t *testing.T) {
	tr, err := NewTracker(HealthConfig{DownAfter: 3, UpAfter: 4}, []string{"isp_a", "isp_b"}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	// '+' a good round, '-' a failed one; the letter after is the expected health after it.
	script := "+U -U -U +U -U -U -D +D +D +D -D +D +D +D +U -U -U +U"
	now := epoch
	for i, step := range strings.Fields(script) {
		now = now.Add(time.Second)
		good := step[0] == '+'
		_, got, err := tr.Observe("isp_a", now, probes(good, good))
		if err != nil {
			t.Fatal(err)
		}
		want := map[byte]Health{'U': HealthUp, 'D': HealthDown}[step[1]]
		h := tr.WANs()[0]
		if h.Health != want {
			t.Fatalf("round %d (%s): isp_a is %s, want %s", i+1, step, h.Health, want)
		}
		if got != nil && (got.To != want || !got.At.Equal(now)) {
			t.Errorf("round %d: transition %+v, want one to %s at %s", i+1, got, want, now)
		}
		if got != nil && got.To == HealthDown && got.Rounds != 3 {
			t.Errorf("round %d: went down after %d rounds, want 3", i+1, got.Rounds)
		}
	}
	h := tr.WANs()[0]
	if h.Transitions != 2 {
		t.Errorf("isp_a changed health %d times, want 2 (down once, up once)", h.Transitions)
	}
	if tr.WANs()[1].Health != HealthUnknown || tr.Known() {
		t.Errorf("isp_b was never probed and should be unknown: %+v", tr.WANs()[1])
	}
	if got := tr.Down(); len(got) != 0 {
		t.Errorf("Down() = %v after recovery", got)
	}
	if _, _, err := tr.Observe("isp_c", now, nil); err == nil {
		t.Error("observing an unknown WAN gives no error")
	}
}

// walk feeds a tracker rounds of targets probes, each lost with probability loss, and returns
// the transitions after the first (the first good round makes an unknown WAN up).
func walk(t *testing.T, seed uint64, cfg HealthConfig, targets, rounds int, loss float64) []Transition {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	tr, err := NewTracker(cfg, []string{"wan"}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	var out []Transition
	now := epoch
	for range rounds {
		now = now.Add(time.Second)
		answers := make([]bool, targets)
		for i := range answers {
			answers[i] = rng.Float64() >= loss
		}
		_, got, err := tr.Observe("wan", now, probes(answers...))
		if err != nil {
			t.Fatal(err)
		}
		if got != nil && got.From != HealthUnknown {
			out = append(out, *got)
		}
	}
	return out
}

// TestNoFlapUnder20PercentLoss walks random rounds with every probe lost with probability 0.2.
// With three targets a round fails only when all three are lost (0.8% of rounds) and a WAN
// goes down only after three such rounds in a row (about once in 2 million rounds): 10 seeds
// of 20000 rounds (55 hours at one round a second) never flap. The same walk with one target
// and one round to go down does flap, which shows the walk can see it.
func TestNoFlapUnder20PercentLoss(t *testing.T) {
	cfg := HealthConfig{DownAfter: 3, UpAfter: 5}
	for seed := range uint64(10) {
		if trs := walk(t, seed, cfg, 3, 20000, 0.2); len(trs) > 0 {
			t.Errorf("seed %d: %d health changes under 20%% loss, first: %s", seed, len(trs), trs[0])
		}
	}
	if trs := walk(t, 1, HealthConfig{DownAfter: 1, UpAfter: 1}, 1, 2000, 0.2); len(trs) < 100 {
		t.Errorf("one target, one round: %d health changes in 2000 rounds at 20%% loss, want hundreds", len(trs))
	}
	// A dead line is still found at once: every probe lost goes down after exactly 3 rounds,
	// and a line losing 20% comes back after exactly UpAfter rounds when all answer.
	tr, _ := NewTracker(cfg, []string{"wan"}, epoch)
	tr.Observe("wan", epoch, probes(true, true, true))
	for i := 1; i <= 3; i++ {
		_, got, _ := tr.Observe("wan", epoch.Add(time.Duration(i)*time.Second), probes(false, false, false))
		if (got != nil) != (i == 3) {
			t.Fatalf("round %d of a dead line: transition %v", i, got)
		}
	}
}

func TestRouteAround(t *testing.T) {
	all := []string{"a", "b"}
	if got := RouteAround([]string{"a"}, all, nil); !slices.Equal(got, []string{"a"}) {
		t.Errorf("one down: %v", got)
	}
	if got := RouteAround(all, all, []string{"a"}); !slices.Equal(got, []string{"a"}) {
		t.Errorf("all down: %v, want the routing kept as it was ([a])", got)
	}
	if !SameWANs([]string{"b", "a"}, []string{"a", "b"}) || SameWANs([]string{"a"}, nil) {
		t.Error("SameWANs compares sets")
	}
}
