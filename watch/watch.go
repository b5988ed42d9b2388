// Package watch is roundtrip watch, the WAN failover daemon over the multi-wan wizard's setup:
// it probes each WAN, judges its health with hysteresis and moves routes and flows around dead
// ones through the change engine.
package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
	"roundtrip/engine/quote"
	"roundtrip/engine/safefile"
	"roundtrip/wizards"
)

// This file runs WAN failover on top of the multi-wan wizard: every interval it probes every
// target through every WAN, feeds the results to the Tracker, and when the set of dead WANs
// changes it plans the multi-wan setup with them routed around (PlanWithDown), applies the
// routes that move through the change engine (journaled, so `roundtrip history` shows them),
// and cleans up conntrack: connections NATed to a dead WAN are deleted, and on failback the
// ones whose path changes are deleted or pinned, as the failback policy says. The probes, the
// host and the conntrack table are interfaces: the command wires the kernel in, tests fakes.

// Target is an address every WAN probes: an ICMP echo, or a TCP connection to a port
// (a refused connection counts as an answer: the far end is reachable).
type Target struct {
	Proto string         `json:"proto"` // icmp or tcp
	Addr  netip.AddrPort `json:"addr"`  // the port is 0 for icmp
}

// ParseTarget reads a --target: ADDR or icmp:ADDR for an echo, tcp:ADDR:PORT for a
// connection.
func ParseTarget(v string) (Target, error) {
	proto, rest, ok := strings.Cut(v, ":")
	if !ok || (proto != "icmp" && proto != "tcp") {
		proto, rest = "icmp", v
	}
	if proto == "icmp" {
		a, err := netip.ParseAddr(rest)
		if err != nil || !a.Is4() {
			return Target{}, fmt.Errorf("--target %q: want an IPv4 address (icmp:ADDR) or tcp:ADDR:PORT", v)
		}
		return Target{Proto: "icmp", Addr: netip.AddrPortFrom(a, 0)}, nil
	}
	ap, err := netip.ParseAddrPort(rest)
	if err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
		return Target{}, fmt.Errorf("--target %q: want tcp:ADDR:PORT with an IPv4 address and a port 1-65535", v)
	}
	return Target{Proto: "tcp", Addr: ap}, nil
}

func (t Target) String() string {
	if t.Proto == "tcp" {
		return "tcp:" + t.Addr.String()
	}
	return "icmp:" + t.Addr.Addr().String()
}

// ProbeSpec is one probe of a target through one WAN: the socket is bound to the WAN's
// interface (SO_BINDTODEVICE) and address, so that the multi-wan `from ADDR` rule routes it by
// the WAN's own table whatever main says, and carries the WAN's connection mark (SO_MARK).
type ProbeSpec struct {
	WAN     string
	Iface   string
	Src     netip.Addr
	Mark    uint32
	Target  Target
	Timeout time.Duration
}

// Prober sends probes.
type Prober interface {
	Probe(ctx context.Context, p ProbeSpec) ProbeResult
}

// TrackedFlow is a conntrack entry as the watcher sees it: the original tuple, the reply tuple
// (whose destination is the address a source NAT chose) and the connection mark.
type TrackedFlow struct {
	Proto    uint8
	Src, Dst netip.AddrPort
	// ReplySrc and ReplyDst are the reply tuple: ReplyDst differs from Src when the source was
	// translated.
	ReplySrc, ReplyDst netip.AddrPort
	Mark               uint32
}

// Host is the host the watcher changes.
type Host interface {
	ReadState(ctx context.Context) (*model.State, error)
	// Apply applies a plan through the change engine and returns its journal's id.
	Apply(ctx context.Context, p *plan.Plan) (journal string, err error)
	// DeleteFlows deletes the IPv4 conntrack entries for which match is true.
	DeleteFlows(ctx context.Context, match func(TrackedFlow) bool) (int, error)
	// MarkFlows sets the mark bits of the IPv4 conntrack entries for which mark says so.
	MarkFlows(ctx context.Context, mark func(TrackedFlow) (model.MarkMatch, bool)) (int, error)
}

// Config is what `roundtrip watch` is asked to do.
type Config struct {
	MultiWAN *wizards.MultiWANOptions
	Targets  []Target
	Interval time.Duration
	// Timeout bounds each probe (default: the interval, at most 2s).
	Timeout  time.Duration
	Health   HealthConfig
	Failback string
}

// Watch defaults.
const (
	DefaultInterval   = time.Second
	maxDefaultTimeout = 2 * time.Second
	// repairRounds is how often (in rounds) the routes are checked while a WAN is routed
	// around, so that routes lost with a link (and the dead WAN's table, once its link is back)
	// are put back even without a change of health.
	repairRounds = 20
	// maxEvents bounds the events the status keeps.
	maxEvents = 50
)

func (c *Config) fill() {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout == 0 {
		c.Timeout = min(c.Interval, maxDefaultTimeout)
	}
	if c.Failback == "" {
		c.Failback = FailbackImmediate
	}
	c.Health = c.Health.withDefaults()
}

// Check validates the configuration on its own.
func (c *Config) Check() error {
	c.fill()
	var errs []error
	if c.MultiWAN == nil || len(c.MultiWAN.WANs) < 2 {
		errs = append(errs, errors.New("--wan IFACE:GATEWAY[:NAME] is needed for each WAN, at least twice, as given to the multi-wan wizard"))
	}
	if len(c.Targets) == 0 {
		errs = append(errs, errors.New("--target ADDR is needed at least once: an address each WAN probes (two or more, so that one target's failure is not a WAN's)"))
	}
	if c.Interval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("--interval %s: want at least 10ms", c.Interval))
	}
	if c.Timeout <= 0 || c.Timeout > c.Interval*10 {
		errs = append(errs, fmt.Errorf("--timeout %s: want more than 0 and at most ten intervals", c.Timeout))
	}
	if c.Failback != FailbackImmediate && c.Failback != FailbackNewFlows {
		errs = append(errs, fmt.Errorf("--failback %q: want %s or %s", c.Failback, FailbackImmediate, FailbackNewFlows))
	}
	if err := c.Health.Check(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Args renders the configuration as the flags of `roundtrip watch`.
func (c *Config) Args() []string {
	c.fill()
	a := slices.Clone(c.MultiWAN.Args())
	for i := 0; i+1 < len(a); i++ {
		if a[i] == "--route-list" && strings.Contains(a[i+1], "=(") {
			// Networks given inline cannot be written as a flag; the unit names the file.
			a[i+1] = strings.SplitN(a[i+1], "=", 2)[0] + "=FILE"
		}
	}
	for _, t := range c.Targets {
		a = append(a, "--target", t.String())
	}
	a = append(a, "--interval", c.Interval.String(), "--timeout", c.Timeout.String(),
		"--down-after", fmt.Sprint(c.Health.DownAfter), "--up-after", fmt.Sprint(c.Health.UpAfter))
	if c.Health.MaxLoss != DefaultMaxLoss {
		a = append(a, "--max-loss", fmt.Sprintf("%g", c.Health.MaxLoss*100))
	}
	if c.Health.MaxRTT > 0 {
		a = append(a, "--max-rtt", c.Health.MaxRTT.String())
	}
	return append(a, "--failback", c.Failback)
}

// Watcher is one running failover loop.
type Watcher struct {
	cfg    Config
	prober Prober
	host   Host
	// Now is the clock (time.Now when nil); Log receives one line per event.
	Now func() time.Time
	Log io.Writer
	// OnStatus is called with the status after every round.
	OnStatus func(*Status)

	tracker *Tracker
	routes  []wizards.WANRoute
	names   []string
	// around is what the host routes around now; known is false until the first reconcile.
	around []string
	known  bool
	// carrier is the WAN of main's default route after the last reconcile.
	carrier   string
	rounds    int
	sinceFix  int
	started   time.Time
	events    []Event
	lastErr   string
	driftSeen string
}

// New checks the configuration and prepares a watcher; Start reads the host.
func New(cfg Config, p Prober, h Host) (*Watcher, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	return &Watcher{cfg: cfg, prober: p, host: h}, nil
}

func (w *Watcher) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Watcher) logf(format string, a ...any) {
	if w.Log != nil {
		fmt.Fprintf(w.Log, "%s %s\n", w.now().Format("2006-01-02T15:04:05.000"), quote.TermSprintf(format, a...))
	}
}

// Start reads the host and checks that the multi-wan setup is in effect on it (the watcher
// moves routes, it does not build the setup): every table, rule, chain and setting the wizard
// plans must be there. Routes may differ: they are what the watcher manages.
func (w *Watcher) Start(ctx context.Context) error {
	w.started = w.now()
	st, err := w.host.ReadState(ctx)
	if err != nil {
		return err
	}
	routes, err := w.cfg.MultiWAN.Routes(st)
	if err != nil {
		return err
	}
	res, err := w.cfg.MultiWAN.PlanWithDown(st, nil)
	if err != nil {
		return err
	}
	if _, setup := splitRoutes(res.Plan); len(setup) > 0 {
		var ex []string
		for _, c := range setup {
			ex = append(ex, c.Summary())
		}
		return fmt.Errorf("the multi-wan setup is not in effect on this host (%d change(s) missing: %s): apply it first with `roundtrip wizard multi-wan %s --apply`",
			len(setup), limitList(ex, 3), strings.Join(w.cfg.MultiWAN.Args(), " "))
	}
	if w.cfg.Failback == FailbackNewFlows {
		for _, r := range routes {
			if r.Mark == nil {
				return fmt.Errorf("--failback new-flows keeps connections on the WAN they use with the connection marks of multi-wan --connmark, and %s has none: apply the wizard with --connmark, or use --failback immediate", r.Name)
			}
		}
	}
	w.routes = routes
	w.names = nil
	for _, r := range routes {
		w.names = append(w.names, r.Name)
	}
	w.tracker, err = NewTracker(w.cfg.Health, w.names, w.started)
	if err != nil {
		return err
	}
	w.logf("watching %s: %d target(s) each, every %s (down after %d failed rounds, up after %d good ones, failback %s)",
		strings.Join(w.names, ", "), len(w.cfg.Targets), w.cfg.Interval, w.cfg.Health.DownAfter, w.cfg.Health.UpAfter, w.cfg.Failback)
	return nil
}

// Run starts the watcher and runs a round every interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	if err := w.Start(ctx); err != nil {
		return err
	}
	return w.Loop(ctx)
}

// Loop runs a round every interval until ctx ends; Start must have succeeded. The routes stay
// as they are when it ends.
func (w *Watcher) Loop(ctx context.Context) error {
	next := time.Now()
	for {
		if err := w.Round(ctx); err != nil && ctx.Err() == nil {
			return err
		}
		next = next.Add(w.cfg.Interval)
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		} else {
			next = time.Now() // a round that overran does not cause a burst
		}
		if ctx.Err() != nil {
			w.logf("stopped; the routes stay as they are")
			return nil
		}
	}
}

// Round probes every target through every WAN at once, judges each WAN, and reconciles the
// host when the set of WANs to route around changed. Errors of the host (a failed apply) are
// reported in the status and retried next round; only a context error ends it.
func (w *Watcher) Round(ctx context.Context) error {
	if w.tracker == nil {
		return errors.New("the watcher is not started")
	}
	results := w.probeAll(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	now := w.now()
	w.rounds++
	var trs []Transition
	for i, r := range w.routes {
		_, tr, err := w.tracker.Observe(r.Name, now, results[i])
		if err != nil {
			return err
		}
		if tr != nil {
			trs = append(trs, *tr)
			w.logf("%s (%s) is %s: %s", tr.WAN, r.Iface, tr.To, tr.Why)
			w.event(Event{At: now, Kind: string(tr.To), WANs: []string{tr.WAN}, Detail: tr.Why})
		}
	}
	if w.tracker.Known() {
		want := RouteAround(w.tracker.Down(), w.names, w.around)
		w.sinceFix++
		switch {
		case !w.known || !SameWANs(want, w.around):
			w.reconcile(ctx, want, trs)
		case len(w.around) > 0 && w.sinceFix >= repairRounds:
			w.reconcile(ctx, want, nil)
		}
	}
	if w.OnStatus != nil {
		w.OnStatus(w.Status())
	}
	return nil
}

// probeAll runs every probe of a round concurrently and returns the results per WAN, in the
// order of the targets.
func (w *Watcher) probeAll(ctx context.Context) [][]ProbeResult {
	out := make([][]ProbeResult, len(w.routes))
	var wg sync.WaitGroup
	for i, r := range w.routes {
		out[i] = make([]ProbeResult, len(w.cfg.Targets))
		var src netip.Addr
		if len(r.Addrs) > 0 {
			src = r.Addrs[0]
		}
		var mark uint32
		if r.Mark != nil {
			mark = r.Mark.Value
		}
		for j, t := range w.cfg.Targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := w.prober.Probe(ctx, ProbeSpec{WAN: r.Name, Iface: r.Iface, Src: src, Mark: mark, Target: t, Timeout: w.cfg.Timeout})
				res.Target = t.String()
				out[i][j] = res
			}()
		}
	}
	wg.Wait()
	return out
}

// reconcile makes the host route around the WANs in around: it plans the multi-wan setup with
// them down, applies the routes that change, and cleans up conntrack. On failure the host is as
// it was (the change engine undoes a failed apply) and the next round tries again.
func (w *Watcher) reconcile(ctx context.Context, around []string, trs []Transition) {
	w.sinceFix = 0
	ev := Event{At: w.now(), Kind: "reroute", WANs: slices.Clone(around)}
	var why []string
	for _, t := range trs {
		why = append(why, t.WAN+" "+string(t.To))
	}
	switch {
	case !w.known:
		ev.Kind = "start"
	case len(trs) == 0:
		ev.Kind = "repair"
	case slices.ContainsFunc(trs, func(t Transition) bool { return t.To == HealthUp && t.From == HealthDown }):
		ev.Kind = "failback"
	case slices.ContainsFunc(trs, func(t Transition) bool { return t.To == HealthDown }):
		ev.Kind = "failover"
	}
	fail := func(err error) {
		ev.Err = err.Error()
		if ev.Err != w.lastErr {
			w.logf("%s failed, trying again next round: %v", ev.Kind, err)
			w.event(ev)
		}
		w.lastErr = ev.Err
	}
	st, err := w.host.ReadState(ctx)
	if err != nil {
		fail(err)
		return
	}
	if routes, err := w.cfg.MultiWAN.Routes(st); err == nil {
		w.routes = routes
	}
	res, err := w.cfg.MultiWAN.PlanWithDown(st, around)
	if err != nil {
		fail(err)
		return
	}
	moves, setup := splitRoutes(res.Plan)
	if len(setup) > 0 {
		var ex []string
		for _, c := range setup {
			ex = append(ex, c.Summary())
		}
		if d := limitList(ex, 3); d != w.driftSeen {
			w.driftSeen = d
			w.logf("warning: the multi-wan setup has drifted (%d change(s) not in effect: %s); the watcher only moves routes: re-run the multi-wan wizard to repair it", len(setup), d)
		}
	}
	if ev.Kind == "repair" && len(moves.Changes) == 0 {
		return
	}
	intent := "roundtrip watch: "
	switch ev.Kind {
	case "start":
		intent += "start"
	case "repair":
		intent += "repair routes"
	default:
		intent += strings.Join(why, ", ")
	}
	if len(around) > 0 {
		intent += "; routing around " + strings.Join(around, ", ")
	} else {
		intent += "; every WAN in use"
	}
	moves.Intent = intent
	after := moves.Expect(st)
	cl := w.classifier(after, around)

	// Pinning comes before the routes move, so that no packet of a pinned connection takes
	// the new path; deleting comes after, so that the next packet of a deleted connection
	// creates its new entry on the new path.
	if w.cfg.Failback == FailbackNewFlows {
		n, err := w.host.MarkFlows(ctx, cl.pin)
		if err != nil {
			fail(fmt.Errorf("pinning connections to their WAN: %w", err))
			return
		}
		ev.Marked = n
	}
	if len(moves.Changes) > 0 {
		j, err := w.host.Apply(ctx, moves)
		if err != nil {
			fail(err)
			return
		}
		ev.Journal, ev.Changes = j, len(moves.Changes)
	}
	n, err := w.host.DeleteFlows(ctx, cl.drop)
	if err != nil {
		// The routes moved: that is what matters most. The next reconcile deletes again.
		ev.Err = fmt.Sprintf("deleting conntrack entries: %v", err)
	}
	ev.Deleted = n
	w.around, w.known, w.lastErr = slices.Clone(around), true, ev.Err
	w.carrier = defaultCarrier(after, w.routes)
	ev.Detail = intent
	w.logf("%s: %s; %d route change(s)%s, default via %s, %d conntrack entr%s deleted, %d pinned",
		ev.Kind, strings.TrimPrefix(intent, "roundtrip watch: "), ev.Changes, journalNote(ev.Journal), orNone(w.carrier),
		ev.Deleted, plural(ev.Deleted, "y", "ies"), ev.Marked)
	w.event(ev)
}

func journalNote(j string) string {
	if j == "" {
		return ""
	}
	return " (journal " + j + ")"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// splitRoutes splits a plan into the route changes (the watcher's to make) and the rest (the
// wizard's setup).
func splitRoutes(p *plan.Plan) (routes *plan.Plan, setup []plan.Change) {
	routes = plan.New(p.Intent)
	routes.Namespace = p.Namespace
	for _, c := range p.Changes {
		if c.Kind == plan.KindRoute {
			routes.Changes = append(routes.Changes, c)
		} else {
			setup = append(setup, c)
		}
	}
	return routes, setup
}

// defaultCarrier names the WAN of main's best default route.
func defaultCarrier(s *model.State, routes []wizards.WANRoute) string {
	var best *model.Route
	for _, r := range s.RoutesOf(inet.V4, model.TableMain) {
		if r.Dst.Bits() == 0 && (best == nil || r.Metric < best.Metric) {
			best = &r
		}
	}
	if best == nil {
		return ""
	}
	for _, w := range routes {
		if w.Iface == best.Dev {
			return w.Name
		}
	}
	return best.Dev
}

// flowClassifier decides what happens to each connection when the routes move.
type flowClassifier struct {
	routes []wizards.WANRoute
	dead   map[string]bool
	fib    *fib.FIB
	after  *model.State
	policy string
}

func (w *Watcher) classifier(after *model.State, around []string) *flowClassifier {
	dead := map[string]bool{}
	for _, n := range around {
		dead[n] = true
	}
	return &flowClassifier{routes: w.routes, dead: dead, fib: fib.New(after), after: after, policy: w.cfg.Failback}
}

// natWAN returns the WAN a connection was source-NATed to, or -1.
func (c *flowClassifier) natWAN(f TrackedFlow) int {
	to := f.ReplyDst.Addr()
	if to == f.Src.Addr() {
		return -1
	}
	return slices.IndexFunc(c.routes, func(r wizards.WANRoute) bool { return slices.Contains(r.Addrs, to) })
}

// markWAN returns the WAN whose connection mark the connection carries, or -1.
func (c *flowClassifier) markWAN(f TrackedFlow) int {
	return slices.IndexFunc(c.routes, func(r wizards.WANRoute) bool {
		return r.Mark != nil && r.Mark.Value != 0 && f.Mark&r.Mark.Mask == r.Mark.Value
	})
}

// moved reports whether a connection NATed to WAN i would now leave by another WAN: its
// original direction, routed as a packet from the LAN with its mark, no longer goes out i.
func (c *flowClassifier) moved(f TrackedFlow, i int) bool {
	lan := wizards.LinkOf(c.after, f.Src.Addr())
	if lan == nil || slices.ContainsFunc(c.routes, func(r wizards.WANRoute) bool { return r.Iface == lan.Name }) {
		return false // not a LAN client's connection
	}
	res := c.fib.Resolve(fib.Flow{Src: f.Src.Addr(), Dst: f.Dst.Addr(), IIF: lan.Name, Mark: f.Mark,
		Proto: int(f.Proto), SPort: f.Src.Port(), DPort: f.Dst.Port()})
	return res.Verdict == fib.VerdictUnicast && res.OIF != c.routes[i].Iface
}

// drop selects the entries to delete: connections NATed to a dead WAN or carrying its mark
// (they cannot work any more: deleting them lets the next packet start over on a live WAN),
// and with immediate failback the connections whose path changes (their NAT would send the
// old WAN's address out of the new one, which the ISP drops: they would hang).
func (c *flowClassifier) drop(f TrackedFlow) bool {
	n, m := c.natWAN(f), c.markWAN(f)
	if n >= 0 && c.dead[c.routes[n].Name] || m >= 0 && c.dead[c.routes[m].Name] {
		return true
	}
	// With new-flows, the connections that move were pinned before the routes changed: their
	// mark routes them through their WAN, so they no longer count as moved here.
	return n >= 0 && c.moved(f, n)
}

// pin selects the connections to keep on their WAN (new-flows failback): those NATed to a
// live WAN whose path changes, not yet marked; they get the WAN's connection mark.
func (c *flowClassifier) pin(f TrackedFlow) (model.MarkMatch, bool) {
	n := c.natWAN(f)
	if n < 0 || c.dead[c.routes[n].Name] || c.routes[n].Mark == nil || c.markWAN(f) >= 0 {
		return model.MarkMatch{}, false
	}
	if !c.moved(f, n) {
		return model.MarkMatch{}, false
	}
	return *c.routes[n].Mark, true
}

func (w *Watcher) event(e Event) {
	w.events = append(w.events, e)
	if len(w.events) > maxEvents {
		w.events = w.events[len(w.events)-maxEvents:]
	}
}

// StatusFormat identifies the status file of `roundtrip watch`.
const StatusFormat = "roundtrip-watch"

// StatusFile is the status file's name in the namespace's journal directory.
const StatusFile = "watch.json"

// Status is what `roundtrip watch --status` and the console show.
type Status struct {
	Format   string        `json:"format"`
	PID      int           `json:"pid"`
	Started  time.Time     `json:"started"`
	Updated  time.Time     `json:"updated"`
	Interval time.Duration `json:"interval_ns"`
	Timeout  time.Duration `json:"timeout_ns"`
	Health   HealthConfig  `json:"health"`
	Failback string        `json:"failback"`
	Targets  []string      `json:"targets"`
	Rounds   int           `json:"rounds"`
	WANs     []WANStatus   `json:"wans"`
	// RoutedAround lists the WANs whose traffic goes elsewhere now; Default names the WAN of
	// the default route.
	RoutedAround []string `json:"routed_around"`
	Default      string   `json:"default,omitempty"`
	Events       []Event  `json:"events"`
	Error        string   `json:"error,omitempty"`
	// Stopped is set when the watcher ended; Running is decided by whoever reads the file.
	Stopped bool `json:"stopped,omitempty"`
	Running bool `json:"running"`
}

// WANStatus is one WAN in the status.
type WANStatus struct {
	WANHealth
	Iface   string     `json:"iface"`
	Addr    netip.Addr `json:"addr,omitzero"`
	Gateway netip.Addr `json:"gateway,omitzero"`
}

// Event is one thing that happened: a WAN went down or up, the routes were moved.
type Event struct {
	At   time.Time `json:"at"`
	Kind string    `json:"kind"` // down, up, failover, failback, reroute, repair, start
	WANs []string  `json:"wans,omitempty"`
	// Detail says why (for down and up) or what (for a reroute).
	Detail  string `json:"detail,omitempty"`
	Changes int    `json:"changes,omitempty"`
	Journal string `json:"journal,omitempty"`
	Deleted int    `json:"conntrack_deleted,omitempty"`
	Marked  int    `json:"conntrack_pinned,omitempty"`
	Err     string `json:"error,omitempty"`
}

// Status returns the watcher's status now.
func (w *Watcher) Status() *Status {
	s := &Status{Format: StatusFormat, PID: os.Getpid(), Started: w.started, Updated: w.now(),
		Interval: w.cfg.Interval, Timeout: w.cfg.Timeout, Health: w.cfg.Health, Failback: w.cfg.Failback,
		Rounds: w.rounds, RoutedAround: slices.Clone(w.around), Default: w.carrier, Events: slices.Clone(w.events),
		Error: w.lastErr, Running: true}
	if s.RoutedAround == nil {
		s.RoutedAround = []string{}
	}
	for _, t := range w.cfg.Targets {
		s.Targets = append(s.Targets, t.String())
	}
	if w.tracker != nil {
		for i, h := range w.tracker.WANs() {
			ws := WANStatus{WANHealth: h}
			if i < len(w.routes) {
				ws.Iface, ws.Gateway = w.routes[i].Iface, w.routes[i].Gateway
				if len(w.routes[i].Addrs) > 0 {
					ws.Addr = w.routes[i].Addrs[0]
				}
			}
			s.WANs = append(s.WANs, ws)
		}
	}
	return s
}

// WriteStatus writes the status file in dir atomically (a reader never sees half of it), the
// way the journal store writes its index: safefile's exclusive create and rename, never
// through a link planted at the name.
func WriteStatus(dir string, s *Status) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the watch status: %w", err)
	}
	if err := safefile.WriteFile(filepath.Join(dir, StatusFile), append(data, '\n'), safefile.ModePrivate, nil); err != nil {
		return fmt.Errorf("writing the watch status: %w", err)
	}
	return nil
}

// statusLimit bounds the status file read: a few WANs and the last events are a few kB.
const statusLimit = 1 << 20

// ErrNoWatch says that no watcher has written a status in a namespace.
var ErrNoWatch = errors.New("no roundtrip watch has run here")

// ReadStatus reads the status file in dir. Running is true when the watcher's process is
// alive (alive reports it; nil trusts the file) and has written within the last few rounds.
func ReadStatus(dir string, now time.Time, alive func(pid int) bool) (*Status, error) {
	data, err := safefile.ReadFile(filepath.Join(dir, StatusFile), statusLimit)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (start it with roundtrip watch)", ErrNoWatch)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the watch status: %w", err)
	}
	var s Status
	if err := json.Unmarshal(data, &s); err != nil || s.Format != StatusFormat {
		return nil, fmt.Errorf("reading the watch status %s: not a roundtrip watch status file", filepath.Join(dir, StatusFile))
	}
	stale := now.Sub(s.Updated) > 3*(s.Interval+s.Timeout)+5*time.Second
	s.Running = !s.Stopped && !stale && (alive == nil || alive(s.PID))
	return &s, nil
}

// Text renders the status for a terminal, every value escaped (quote.Term).
func (s *Status) Text() string {
	var b strings.Builder
	state := "running"
	if !s.Running {
		state = "not running (last update " + s.Updated.Local().Format("2006-01-02 15:04:05") + ")"
	}
	quote.TermFprintf(&b, "roundtrip watch: %s, pid %d, since %s\n", state, s.PID, s.Started.Local().Format("2006-01-02 15:04:05"))
	quote.TermFprintf(&b, "every %s, %d target(s) per WAN (%s), down after %d failed rounds, up after %d good ones, failback %s\n",
		s.Interval, len(s.Targets), strings.Join(s.Targets, " "), s.Health.DownAfter, s.Health.UpAfter, s.Failback)
	switch {
	case len(s.RoutedAround) > 0:
		quote.TermFprintf(&b, "default route via %s; routed around: %s\n", orNone(s.Default), strings.Join(s.RoutedAround, ", "))
	case s.Default != "":
		quote.TermFprintf(&b, "default route via %s; every WAN in use\n", s.Default)
	}
	if s.Error != "" {
		quote.TermFprintf(&b, "last error: %s\n", s.Error)
	}
	b.WriteString("\n")
	rows := [][]string{{"WAN", "IFACE", "HEALTH", "SINCE", "LOSS", "RTT", "LAST ROUND"}}
	for _, w := range s.WANs {
		rtt := "-"
		if w.RTT > 0 {
			rtt = w.RTT.Round(10 * time.Microsecond).String()
		}
		rows = append(rows, []string{w.Name, w.Iface, string(w.Health), w.Since.Local().Format("15:04:05"),
			fmt.Sprintf("%.0f%%", w.Loss*100), rtt, w.Last.String()})
	}
	b.WriteString(table(rows))
	if len(s.Events) > 0 {
		b.WriteString("\nevents:\n")
		for _, e := range s.Events[max(0, len(s.Events)-10):] {
			quote.TermFprintf(&b, "  %s  %s\n", e.At.Local().Format("15:04:05.000"), e.String())
		}
	}
	return b.String()
}

func (e Event) String() string {
	s := e.Kind
	if len(e.WANs) > 0 && (e.Kind == string(HealthUp) || e.Kind == string(HealthDown)) {
		s = strings.Join(e.WANs, ", ") + " " + e.Kind
	}
	if e.Detail != "" {
		s += ": " + strings.TrimPrefix(e.Detail, "roundtrip watch: ")
	}
	if e.Changes > 0 {
		s += fmt.Sprintf("; %d route change(s)%s", e.Changes, journalNote(e.Journal))
	}
	if e.Deleted > 0 {
		s += fmt.Sprintf("; %d conntrack entr%s deleted", e.Deleted, plural(e.Deleted, "y", "ies"))
	}
	if e.Marked > 0 {
		s += fmt.Sprintf("; %d connection(s) pinned to their WAN", e.Marked)
	}
	if e.Err != "" {
		s += "; error: " + e.Err
	}
	return s
}

// table aligns rows of cells in columns.
func table(rows [][]string) string {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			c = quote.Term(c)
			r[i] = c
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
			} else {
				fmt.Fprintf(&b, "%-*s  ", widths[i], c)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Unit renders a systemd service that runs `roundtrip watch` with args (the flags, as
// Config.Args gives them) from the binary at exe, restarted whenever it stops. It starts
// after the network, so that the multi-wan setup (applied by its own unit) is there.
func Unit(exe, netns string, args []string) []byte {
	var b strings.Builder
	b.WriteString("# roundtrip watch: WAN health probing with failover and failback. Install with:\n")
	b.WriteString("#   cp THIS-FILE /etc/systemd/system/roundtrip-watch.service\n")
	b.WriteString("#   systemctl daemon-reload && systemctl enable --now roundtrip-watch.service\n")
	b.WriteString("# Its state: roundtrip watch --status; its route changes: roundtrip history.\n")
	b.WriteString("[Unit]\nDescription=roundtrip watch: WAN failover")
	if netns != "" {
		b.WriteString(" in network namespace " + quote.SystemdText(netns))
	}
	b.WriteString("\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=simple\n")
	cmd := []string{exe, "watch"}
	if netns != "" {
		cmd = append(cmd, "--netns", netns)
	}
	cmd = append(cmd, args...)
	var q []string
	for _, a := range cmd {
		q = append(q, quote.Systemd(a))
	}
	fmt.Fprintf(&b, "ExecStart=%s\n", strings.Join(q, " "))
	b.WriteString("Restart=always\nRestartSec=2\n\n[Install]\nWantedBy=multi-user.target\n")
	return []byte(b.String())
}

// limitList joins up to n items with "; " and says how many more there are.
func limitList(items []string, n int) string {
	s := ""
	for i, it := range items {
		if i == n {
			return s + fmt.Sprintf("; and %d more", len(items)-n)
		}
		if i > 0 {
			s += "; "
		}
		s += it
	}
	return s
}
