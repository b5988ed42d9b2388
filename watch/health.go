package watch

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// This file is the pure half of WAN failover (case 2's open question: "probe each line and
// switch"): the health of each WAN judged from rounds of probe results, with hysteresis. It has
// no clock and no sockets of its own: the caller passes the time and the results, so that
// every decision can be replayed in tests.

// Health is what the watcher believes of a WAN.
type Health string

// Health values. A WAN starts unknown and is treated as up (nothing is moved) until it has
// failed DownAfter rounds in a row.
const (
	HealthUnknown Health = "unknown"
	HealthUp      Health = "up"
	HealthDown    Health = "down"
)

// Failback policies: what happens to connections when a WAN that was down comes back.
const (
	// FailbackImmediate moves everything back at once: the routes are restored and the
	// conntrack entries of connections whose path changes are deleted, so that they fail fast
	// and reconnect instead of hanging with the other WAN's source address.
	FailbackImmediate = "immediate"
	// FailbackNewFlows moves only new connections back: the connections made during the outage
	// are pinned with the connection mark of the WAN they use (multi-wan --connmark), and keep
	// using it until they end.
	FailbackNewFlows = "new-flows"
)

// Defaults of HealthConfig.
const (
	DefaultDownAfter = 3
	DefaultUpAfter   = 5
	DefaultMaxLoss   = 1.0
)

// HealthConfig is how probe results turn into a WAN's health. A round is one probe of every
// target through the WAN; it fails when too many probes are lost or the answers are too slow.
// A WAN goes down after DownAfter failed rounds in a row and comes back up after UpAfter good
// rounds in a row, so that one lost probe (or a few, with several targets) never moves
// traffic, and a line that recovers briefly between failures is not trusted at once.
type HealthConfig struct {
	DownAfter int `json:"down_after"`
	UpAfter   int `json:"up_after"`
	// MaxLoss is the share of a round's probes (0-1] whose loss fails the round: 1 fails it
	// only when no target answered (mwan3's reliability 1), 0.5 when half of them did not.
	MaxLoss float64 `json:"max_loss"`
	// MaxRTT fails a round whose median round-trip time is longer; 0 does not judge latency.
	MaxRTT time.Duration `json:"max_rtt_ns,omitempty"`
}

// withDefaults fills the zero fields.
func (c HealthConfig) withDefaults() HealthConfig {
	if c.DownAfter == 0 {
		c.DownAfter = DefaultDownAfter
	}
	if c.UpAfter == 0 {
		c.UpAfter = DefaultUpAfter
	}
	if c.MaxLoss == 0 {
		c.MaxLoss = DefaultMaxLoss
	}
	return c
}

// Check reports a configuration that cannot work.
func (c HealthConfig) Check() error {
	c = c.withDefaults()
	switch {
	case c.DownAfter < 1 || c.DownAfter > 1000:
		return fmt.Errorf("--down-after %d: want 1-1000 failed rounds", c.DownAfter)
	case c.UpAfter < 1 || c.UpAfter > 1000:
		return fmt.Errorf("--up-after %d: want 1-1000 good rounds", c.UpAfter)
	case c.MaxLoss <= 0 || c.MaxLoss > 1:
		return fmt.Errorf("--max-loss %g%%: want more than 0%% and at most 100%%", c.MaxLoss*100)
	case c.MaxRTT < 0:
		return fmt.Errorf("--max-rtt %s: want a positive duration, or 0 not to judge latency", c.MaxRTT)
	}
	return nil
}

// ProbeResult is the outcome of one probe of one target through one WAN.
type ProbeResult struct {
	Target string        `json:"target"`
	OK     bool          `json:"ok"`
	RTT    time.Duration `json:"rtt_ns,omitempty"`
	Err    string        `json:"error,omitempty"`
}

// Round is the verdict on one round of probes of a WAN.
type Round struct {
	Sent     int           `json:"sent"`
	Answered int           `json:"answered"`
	RTT      time.Duration `json:"rtt_ns,omitempty"` // median of the answers
	Good     bool          `json:"good"`
	Why      string        `json:"why,omitempty"` // why it failed
}

// Loss is the share of the round's probes that got no answer.
func (r Round) Loss() float64 {
	if r.Sent == 0 {
		return 1
	}
	return float64(r.Sent-r.Answered) / float64(r.Sent)
}

func (r Round) String() string {
	s := fmt.Sprintf("%d/%d answered", r.Answered, r.Sent)
	if r.Answered > 0 {
		s += fmt.Sprintf(", rtt %s", r.RTT.Round(10*time.Microsecond))
	}
	if r.Why != "" {
		s += ": " + r.Why
	}
	return s
}

// Judge turns a round's probe results into a verdict. A round without probes fails: a WAN that
// cannot be probed is not known to work.
func (c HealthConfig) Judge(results []ProbeResult) Round {
	c = c.withDefaults()
	r := Round{Sent: len(results)}
	var rtts []time.Duration
	var errs []string
	for _, p := range results {
		if p.OK {
			r.Answered++
			rtts = append(rtts, p.RTT)
		} else if p.Err != "" && !slices.Contains(errs, p.Err) {
			errs = append(errs, p.Err)
		}
	}
	if len(rtts) > 0 {
		slices.Sort(rtts)
		r.RTT = rtts[len(rtts)/2]
	}
	// A small epsilon keeps 2 of 3 lost (0.666...) from passing a limit written as 66.7%.
	switch {
	case r.Sent == 0:
		r.Why = "no probes"
	case r.Loss() >= c.MaxLoss-1e-9:
		r.Why = fmt.Sprintf("%.0f%% lost", r.Loss()*100)
		if len(errs) > 0 {
			r.Why += " (" + strings.Join(errs, "; ") + ")"
		}
	case c.MaxRTT > 0 && r.RTT > c.MaxRTT:
		r.Why = fmt.Sprintf("rtt %s over %s", r.RTT.Round(time.Millisecond), c.MaxRTT)
	default:
		r.Good = true
	}
	return r
}

// historyLen is how many rounds a WAN's loss and latency figures are averaged over, for
// display; decisions use the counts of rounds in a row only.
const historyLen = 20

// WANHealth is one WAN's health and the rounds that led to it.
type WANHealth struct {
	Name   string    `json:"name"`
	Health Health    `json:"health"`
	Since  time.Time `json:"since"`
	// Good and Bad count the rounds in a row that passed or failed; one of them is zero.
	Good        int   `json:"good_rounds"`
	Bad         int   `json:"bad_rounds"`
	Rounds      int   `json:"rounds"`
	Transitions int   `json:"transitions"`
	Last        Round `json:"last"`
	// Loss is the share of probes lost over the last rounds (up to 20), RTT their mean
	// round-trip time.
	Loss    float64       `json:"loss"`
	RTT     time.Duration `json:"rtt_ns,omitempty"`
	history []Round
}

// Transition is a change of a WAN's health.
type Transition struct {
	WAN  string    `json:"wan"`
	From Health    `json:"from"`
	To   Health    `json:"to"`
	At   time.Time `json:"at"`
	// Rounds is how many rounds in a row decided it (DownAfter or UpAfter, or 1 for the first
	// good round of an unknown WAN).
	Rounds int    `json:"rounds"`
	Last   Round  `json:"last"`
	Why    string `json:"why"`
}

func (t Transition) String() string {
	return fmt.Sprintf("%s %s: %s", t.WAN, t.To, t.Why)
}

// Tracker holds the health of every WAN and applies the hysteresis.
type Tracker struct {
	cfg  HealthConfig
	wans []*WANHealth
}

// NewTracker starts tracking the named WANs, all unknown.
func NewTracker(cfg HealthConfig, names []string, now time.Time) (*Tracker, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, errors.New("no WAN to watch")
	}
	t := &Tracker{cfg: cfg.withDefaults()}
	for _, n := range names {
		if slices.ContainsFunc(t.wans, func(w *WANHealth) bool { return w.Name == n }) {
			return nil, fmt.Errorf("WAN %s is given twice", n)
		}
		t.wans = append(t.wans, &WANHealth{Name: n, Health: HealthUnknown, Since: now})
	}
	return t, nil
}

// Config returns the configuration in use, defaults filled in.
func (t *Tracker) Config() HealthConfig { return t.cfg }

func (t *Tracker) wan(name string) *WANHealth {
	for _, w := range t.wans {
		if w.Name == name {
			return w
		}
	}
	return nil
}

// Observe judges one round of a WAN's probes and returns the transition it causes, if any.
func (t *Tracker) Observe(name string, now time.Time, results []ProbeResult) (Round, *Transition, error) {
	w := t.wan(name)
	if w == nil {
		return Round{}, nil, fmt.Errorf("unknown WAN %q", name)
	}
	r := t.cfg.Judge(results)
	w.Rounds++
	w.Last = r
	w.history = append(w.history, r)
	if len(w.history) > historyLen {
		w.history = w.history[len(w.history)-historyLen:]
	}
	w.Loss, w.RTT = averages(w.history)
	if r.Good {
		w.Good, w.Bad = w.Good+1, 0
	} else {
		w.Good, w.Bad = 0, w.Bad+1
	}
	to, rounds, why := w.Health, 0, ""
	switch {
	case w.Health == HealthUnknown && r.Good:
		// Nothing was moved for an unknown WAN, so there is nothing to be careful about.
		to, rounds, why = HealthUp, 1, "answering ("+r.String()+")"
	case w.Health != HealthDown && w.Bad >= t.cfg.DownAfter:
		to, rounds, why = HealthDown, w.Bad, fmt.Sprintf("%d rounds in a row failed (last: %s)", w.Bad, r)
	case w.Health == HealthDown && w.Good >= t.cfg.UpAfter:
		to, rounds, why = HealthUp, w.Good, fmt.Sprintf("%d good rounds in a row (last: %s)", w.Good, r)
	}
	if to == w.Health {
		return r, nil, nil
	}
	tr := &Transition{WAN: w.Name, From: w.Health, To: to, At: now, Rounds: rounds, Last: r, Why: why}
	w.Health, w.Since = to, now
	if tr.From != HealthUnknown {
		w.Transitions++
	}
	return r, tr, nil
}

func averages(rs []Round) (loss float64, rtt time.Duration) {
	sent, lost, n := 0, 0, 0
	var sum time.Duration
	for _, r := range rs {
		sent += r.Sent
		lost += r.Sent - r.Answered
		if r.Answered > 0 {
			sum += r.RTT
			n++
		}
	}
	if sent > 0 {
		loss = float64(lost) / float64(sent)
	}
	if n > 0 {
		rtt = sum / time.Duration(n)
	}
	return loss, rtt
}

// Down returns the names of the WANs that are down, in the order they were given.
func (t *Tracker) Down() []string {
	var out []string
	for _, w := range t.wans {
		if w.Health == HealthDown {
			out = append(out, w.Name)
		}
	}
	return out
}

// Known reports whether every WAN has been judged up or down at least once.
func (t *Tracker) Known() bool {
	return !slices.ContainsFunc(t.wans, func(w *WANHealth) bool { return w.Health == HealthUnknown })
}

// WANs returns a copy of every WAN's health, in the order they were given.
func (t *Tracker) WANs() []WANHealth {
	out := make([]WANHealth, len(t.wans))
	for i, w := range t.wans {
		out[i] = *w
		out[i].history = nil
	}
	return out
}

// RouteAround returns the WANs whose traffic must go elsewhere: the down ones, unless every WAN
// is down, in which case nothing is gained by moving anything and keep (what was routed
// around before) stays as it is.
func RouteAround(down, all, keep []string) []string {
	if len(down) == len(all) && len(all) > 0 {
		return slices.Clone(keep)
	}
	return slices.Clone(down)
}

// SameWANs reports whether two sets of WAN names are equal, in any order.
func SameWANs(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}
