package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"roundtrip/engine/fib"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// fakeProber answers the probes of the WANs whose interface is up, losing each with
// probability loss.
type fakeProber struct {
	mu    sync.Mutex
	up    map[string]bool
	loss  float64
	rng   *rand.Rand
	specs []ProbeSpec
}

func newFakeProber(ifaces ...string) *fakeProber {
	p := &fakeProber{up: map[string]bool{}, rng: rand.New(rand.NewPCG(7, 11))}
	for _, i := range ifaces {
		p.up[i] = true
	}
	return p
}

func (p *fakeProber) set(iface string, up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up[iface] = up
}

func (p *fakeProber) Probe(_ context.Context, s ProbeSpec) ProbeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.specs = append(p.specs, s)
	if !p.up[s.Iface] || p.rng.Float64() < p.loss {
		return ProbeResult{Err: "timeout"}
	}
	return ProbeResult{OK: true, RTT: time.Millisecond}
}

// fakeHost is a host modelled by its state: plans are validated and applied to the model, and
// the conntrack table is a list of flows.
type fakeHost struct {
	s       *model.State
	flows   []TrackedFlow
	applied []*plan.Plan
	fail    error
}

func (h *fakeHost) ReadState(context.Context) (*model.State, error) { return h.s, nil }

func (h *fakeHost) Apply(_ context.Context, p *plan.Plan) (string, error) {
	if h.fail != nil {
		return "", h.fail
	}
	if err := p.Validate(h.s); err != nil {
		return "", err
	}
	h.s = p.Expect(h.s)
	h.applied = append(h.applied, p)
	return fmt.Sprintf("j%d", len(h.applied)), nil
}

func (h *fakeHost) DeleteFlows(_ context.Context, match func(TrackedFlow) bool) (int, error) {
	n := len(h.flows)
	h.flows = slices.DeleteFunc(h.flows, match)
	return n - len(h.flows), nil
}

func (h *fakeHost) MarkFlows(_ context.Context, mark func(TrackedFlow) (model.MarkMatch, bool)) (int, error) {
	n := 0
	for i, f := range h.flows {
		if m, ok := mark(f); ok {
			h.flows[i].Mark = f.Mark&^m.Mask | m.Value
			n++
		}
	}
	return n, nil
}

func (h *fakeHost) flow(name string) *TrackedFlow {
	for i, f := range h.flows {
		if fmt.Sprint(f.Src.Port()) == name {
			return &h.flows[i]
		}
	}
	return nil
}

func (h *fakeHost) ports() []string {
	var out []string
	for _, f := range h.flows {
		out = append(out, fmt.Sprint(f.Src.Port()))
	}
	return out
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// snat is a LAN client's connection source-NATed to a WAN address.
func snat(port int, dst, wanAddr string) TrackedFlow {
	src := ap(fmt.Sprintf("10.73.20.50:%d", port))
	d := ap(dst)
	return TrackedFlow{Proto: 6, Src: src, Dst: d, ReplySrc: d, ReplyDst: netip.AddrPortFrom(mustAddr(wanAddr), src.Port())}
}

type watchRig struct {
	t      *testing.T
	w      *Watcher
	host   *fakeHost
	prober *fakeProber
	now    time.Time
	log    bytes.Buffer
	marks  map[string]model.MarkMatch
}

func newWatchRig(t *testing.T, failback string) *watchRig {
	o, s := appliedCase2(t, case2Host(t))
	r := &watchRig{t: t, host: &fakeHost{s: s}, prober: newFakeProber("wan1", "wan2"), now: epoch, marks: map[string]model.MarkMatch{}}
	routes, err := o.Routes(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range routes {
		r.marks[x.Name] = *x.Mark
	}
	targets := []Target{{Proto: "icmp", Addr: ap("192.0.2.1:0")}, {Proto: "icmp", Addr: ap("192.0.2.2:0")}, {Proto: "tcp", Addr: ap("192.0.2.3:443")}}
	r.w, err = New(Config{MultiWAN: o, Targets: targets, Interval: time.Second, Health: HealthConfig{DownAfter: 3, UpAfter: 5}, Failback: failback},
		r.prober, r.host)
	if err != nil {
		t.Fatal(err)
	}
	r.w.Now = func() time.Time { return r.now }
	r.w.Log = &r.log
	if err := r.w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// rounds runs n rounds, a second apart.
func (r *watchRig) rounds(n int) {
	r.t.Helper()
	for range n {
		r.now = r.now.Add(time.Second)
		if err := r.w.Round(context.Background()); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *watchRig) health(name string) Health {
	for _, w := range r.w.Status().WANs {
		if w.Name == name {
			return w.Health
		}
	}
	return ""
}

// TestWatcherFailoverAndFailback runs the watcher against a modelled case 2 gateway: a dead
// ISP A is routed around after exactly three failed rounds, its NATed connections (and those
// that came in on it) are deleted while the others stay, and after five good rounds the
// routes come back; the connections made through ISP B in between are deleted (immediate) or
// pinned to ISP B by their mark (new-flows).
func TestWatcherFailoverAndFailback(t *testing.T) {
	for _, policy := range []string{FailbackImmediate, FailbackNewFlows} {
		t.Run(policy, func(t *testing.T) {
			r := newWatchRig(t, policy)
			h := r.host
			h.flows = []TrackedFlow{
				snat(40001, "192.0.2.80:80", "198.18.73.6"),    // the Internet through ISP A
				snat(40002, "198.18.77.20:80", "198.18.73.10"), // ISP B's list through ISP B
				// The gateway's own connection from ISP A's address: not NATed, left alone.
				{Proto: 6, Src: ap("198.18.73.6:40003"), Dst: ap("192.0.2.80:80"), ReplySrc: ap("192.0.2.80:80"), ReplyDst: ap("198.18.73.6:40003")},
				// A port forward that came in on ISP A, marked with its mark.
				{Proto: 6, Src: ap("198.18.76.10:40004"), Dst: ap("198.18.73.6:80"), ReplySrc: ap("10.73.20.100:80"), ReplyDst: ap("198.18.76.10:40004"), Mark: r.marks["isp_a"].Value},
			}
			r.rounds(1)
			if r.health("isp_a") != HealthUp || r.health("isp_b") != HealthUp || len(h.applied) != 0 {
				t.Fatalf("after a good round: %s %s, %d applies", r.health("isp_a"), r.health("isp_b"), len(h.applied))
			}
			for _, s := range r.prober.specs {
				if s.WAN != "isp_a" {
					continue
				}
				if s.Iface != "wan1" || s.Src != mustAddr("198.18.73.6") || s.Mark != r.marks["isp_a"].Value || s.Timeout != time.Second {
					t.Errorf("isp_a's probe is not bound to isp_a: %+v", s)
				}
			}

			r.prober.set("wan1", false)
			r.rounds(2)
			if r.health("isp_a") != HealthUp || len(h.applied) != 0 {
				t.Fatalf("two failed rounds moved something: %s, %d applies", r.health("isp_a"), len(h.applied))
			}
			r.rounds(1)
			if r.health("isp_a") != HealthDown || len(h.applied) != 1 {
				t.Fatalf("three failed rounds: isp_a %s, %d applies", r.health("isp_a"), len(h.applied))
			}
			if p := h.applied[0]; p.Intent != "roundtrip watch: isp_a down; routing around isp_a" || len(p.Changes) != 1 {
				t.Errorf("failover plan %q:\n%s", p.Intent, p.Script())
			}
			if e := egress(h.s, "192.0.2.80"); e != "wan2" {
				t.Errorf("after failover the Internet leaves by %s", e)
			}
			if got := h.ports(); !slices.Equal(got, []string{"40002", "40003"}) {
				t.Errorf("after failover the conntrack table holds %v, want 40002 (ISP B's) and 40003 (not NATed)", got)
			}
			// A new connection during the outage leaves by ISP B.
			h.flows = append(h.flows, snat(40005, "192.0.2.80:80", "198.18.73.10"))

			// Flapping back for a few rounds is not enough.
			r.prober.set("wan1", true)
			r.rounds(4)
			r.prober.set("wan1", false)
			r.rounds(1)
			r.prober.set("wan1", true)
			r.rounds(4)
			if r.health("isp_a") != HealthDown || len(h.applied) != 1 {
				t.Fatalf("isp_a came back after fewer than 5 good rounds in a row: %s, %d applies", r.health("isp_a"), len(h.applied))
			}
			r.rounds(1)
			if r.health("isp_a") != HealthUp || len(h.applied) != 2 {
				t.Fatalf("five good rounds: isp_a %s, %d applies", r.health("isp_a"), len(h.applied))
			}
			if p := h.applied[1]; p.Intent != "roundtrip watch: isp_a up; every WAN in use" {
				t.Errorf("failback intent %q", p.Intent)
			}
			if e := egress(h.s, "192.0.2.80"); e != "wan1" {
				t.Errorf("after failback new connections leave by %s", e)
			}
			switch policy {
			case FailbackImmediate:
				if got := h.ports(); !slices.Equal(got, []string{"40002", "40003"}) {
					t.Errorf("immediate failback: conntrack holds %v, want 40005 (moved back to ISP A) deleted", got)
				}
			case FailbackNewFlows:
				if got := h.ports(); !slices.Equal(got, []string{"40002", "40003", "40005"}) {
					t.Errorf("new-flows failback: conntrack holds %v, want every connection kept", got)
				}
				f := h.flow("40005")
				if f == nil || f.Mark != r.marks["isp_b"].Value {
					t.Fatalf("the connection made during the outage is not pinned to isp_b: %+v", f)
				}
				if h.flow("40002").Mark != 0 {
					t.Errorf("isp_b's own list connection was marked: it does not move")
				}
				// Its packets, marked by CONNMARK --restore-mark, still leave by ISP B.
				res := fib.New(h.s).Resolve(fib.Flow{Src: f.Src.Addr(), Dst: f.Dst.Addr(), IIF: "lan0", Mark: f.Mark})
				if res.OIF != "wan2" {
					t.Errorf("the pinned connection leaves by %s, want wan2", res.OIF)
				}
			}
			st := r.w.Status()
			if len(st.RoutedAround) != 0 || st.Default != "isp_a" || st.WANs[0].Transitions != 2 {
				t.Errorf("status after failback: %+v", st)
			}
			kinds := []string{}
			for _, e := range st.Events {
				kinds = append(kinds, e.Kind)
			}
			if want := []string{"up", "up", "start", "down", "failover", "up", "failback"}; !slices.Equal(kinds, want) {
				t.Errorf("events %v, want %v", kinds, want)
			}
			if !strings.Contains(r.log.String(), "isp_a (wan1) is down: 3 rounds in a row failed") {
				t.Errorf("the log does not say why isp_a went down:\n%s", r.log.String())
			}
		})
	}
}

// TestWatcherNoFlapUnderLoss: 20% of probes lost on both WANs over 2000 rounds moves nothing.
func TestWatcherNoFlapUnderLoss(t *testing.T) {
	r := newWatchRig(t, FailbackImmediate)
	r.prober.loss = 0.2
	r.rounds(2000)
	st := r.w.Status()
	for _, w := range st.WANs {
		if w.Health != HealthUp || w.Transitions != 0 {
			t.Errorf("%s: %s after %d health changes under 20%% loss", w.Name, w.Health, w.Transitions)
		}
		if w.Loss == 0 || w.Loss > 0.5 {
			t.Errorf("%s: loss shown as %.2f, want about 0.2", w.Name, w.Loss)
		}
	}
	if len(r.host.applied) != 0 {
		t.Errorf("%d applies under 20%% loss", len(r.host.applied))
	}
}

// TestWatcherRetriesFailedApply: an apply that fails is reported and tried again next round.
func TestWatcherRetriesFailedApply(t *testing.T) {
	r := newWatchRig(t, FailbackImmediate)
	r.rounds(1)
	r.host.fail = errors.New("another roundtrip is changing this namespace")
	r.prober.set("wan1", false)
	r.rounds(3)
	st := r.w.Status()
	if !strings.Contains(st.Error, "another roundtrip") || len(st.RoutedAround) != 0 {
		t.Fatalf("a failed failover: error %q, routed around %v", st.Error, st.RoutedAround)
	}
	r.host.fail = nil
	r.rounds(1)
	st = r.w.Status()
	if st.Error != "" || !slices.Equal(st.RoutedAround, []string{"isp_a"}) || len(r.host.applied) != 1 {
		t.Errorf("the next round did not retry: error %q, routed around %v, %d applies", st.Error, st.RoutedAround, len(r.host.applied))
	}
}

// TestWatcherAllDown: when every WAN is down nothing is gained by moving routes: the last one
// used stays, and the first to come back gets the traffic.
func TestWatcherAllDown(t *testing.T) {
	r := newWatchRig(t, FailbackImmediate)
	r.rounds(1)
	r.prober.set("wan1", false)
	r.rounds(3)
	r.prober.set("wan2", false)
	r.rounds(5)
	if len(r.host.applied) != 1 || egress(r.host.s, "192.0.2.80") != "wan2" {
		t.Fatalf("all down: %d applies, default via %s", len(r.host.applied), egress(r.host.s, "192.0.2.80"))
	}
	r.prober.set("wan1", true)
	r.rounds(5)
	if len(r.host.applied) != 2 || egress(r.host.s, "192.0.2.80") != "wan1" || egress(r.host.s, "198.18.77.20") != "wan1" {
		t.Errorf("isp_a back while isp_b is down: %d applies, default via %s, isp_b's list via %s",
			len(r.host.applied), egress(r.host.s, "192.0.2.80"), egress(r.host.s, "198.18.77.20"))
	}
}

func TestWatcherRefusesWithoutSetup(t *testing.T) {
	o := multiWANCase2()
	w, err := New(Config{MultiWAN: o, Targets: []Target{{Proto: "icmp", Addr: ap("192.0.2.1:0")}}}, newFakeProber(), &fakeHost{s: case2Host(t)})
	if err != nil {
		t.Fatal(err)
	}
	err = w.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "the multi-wan setup is not in effect") || !strings.Contains(err.Error(), "roundtrip wizard multi-wan --wan wan1:198.18.73.5:isp_a") {
		t.Errorf("Start on a host without the setup: %v", err)
	}
	o.Connmark = false
	res, _ := o.Plan(case2Host(t))
	w, _ = New(Config{MultiWAN: o, Targets: []Target{{Proto: "icmp", Addr: ap("192.0.2.1:0")}}, Failback: FailbackNewFlows},
		newFakeProber(), &fakeHost{s: res.Plan.Expect(case2Host(t))})
	if err := w.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "--connmark") {
		t.Errorf("new-flows without connection marks: %v", err)
	}
}

func TestWatchConfigCheck(t *testing.T) {
	o := multiWANCase2()
	tg := []Target{{Proto: "icmp", Addr: ap("192.0.2.1:0")}}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Targets: tg}, "--wan IFACE:GATEWAY[:NAME] is needed"},
		{Config{MultiWAN: o}, "--target ADDR is needed"},
		{Config{MultiWAN: o, Targets: tg, Interval: time.Millisecond}, "--interval 1ms"},
		{Config{MultiWAN: o, Targets: tg, Failback: "later"}, `--failback "later"`},
		{Config{MultiWAN: o, Targets: tg, Health: HealthConfig{DownAfter: -2}}, "--down-after -2"},
	} {
		if err := c.cfg.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check = %v, want %q", err, c.want)
		}
	}
	cfg := Config{MultiWAN: o, Targets: tg, Interval: 200 * time.Millisecond, Health: HealthConfig{MaxLoss: 0.5}}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	want := "--wan wan1:198.18.73.5:isp_a --wan wan2:198.18.73.9:isp_b --lan lan0 --default isp_a --route-list isp_b=FILE --snat --connmark " +
		"--target icmp:192.0.2.1 --interval 200ms --timeout 200ms --down-after 3 --up-after 5 --max-loss 50 --failback immediate"
	if got := strings.Join(cfg.Args(), " "); got != want {
		t.Errorf("Args = %s\nwant   %s", got, want)
	}
}

func TestParseWatchTarget(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1": "icmp:192.0.2.1", "icmp:192.0.2.1": "icmp:192.0.2.1", "tcp:192.0.2.1:443": "tcp:192.0.2.1:443",
	} {
		got, err := ParseTarget(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseTarget(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "tcp:192.0.2.1", "tcp:192.0.2.1:0", "icmp:2001:db8::1", "example.com", "udp:192.0.2.1:53"} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q) accepted", bad)
		}
	}
}

func TestWatchStatusFile(t *testing.T) {
	r := newWatchRig(t, FailbackImmediate)
	r.rounds(1)
	r.prober.set("wan1", false)
	r.rounds(3)
	dir := t.TempDir()
	if err := WriteStatus(dir, r.w.Status()); err != nil {
		t.Fatal(err)
	}
	got, err := ReadStatus(dir, r.now.Add(time.Second), func(int) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if !got.Running || got.WANs[0].Health != HealthDown || got.Default != "isp_b" || got.Health.DownAfter != 3 {
		t.Errorf("read back: %+v", got)
	}
	text := got.Text()
	for _, want := range []string{"roundtrip watch: running", "default route via isp_b; routed around: isp_a",
		"isp_a  wan1   down", "0/3 answered: 100% lost (timeout)", "isp_a down: 3 rounds in a row failed", "failover: isp_a down; routing around isp_a; 1 route change(s) (journal j1)"} {
		if !strings.Contains(text, want) {
			t.Errorf("status text lacks %q:\n%s", want, text)
		}
	}
	if got, _ := ReadStatus(dir, r.now.Add(time.Hour), nil); got.Running {
		t.Error("a status not updated for an hour shows as running")
	}
	if got, _ := ReadStatus(dir, r.now, func(int) bool { return false }); got.Running {
		t.Error("a status whose process is gone shows as running")
	}
	if _, err := ReadStatus(t.TempDir(), r.now, nil); !errors.Is(err, ErrNoWatch) {
		t.Errorf("no status file: %v", err)
	}
}

func TestWatchUnit(t *testing.T) {
	u := string(Unit("/usr/local/bin/roundtrip", "gw 1", []string{"--wan", "eth1:203.0.113.1:isp_a", "--target", "icmp:192.0.2.1", "--max-loss", "50%"}))
	for _, want := range []string{"Type=simple", "Restart=always", "WantedBy=multi-user.target",
		`ExecStart=/usr/local/bin/roundtrip watch --netns "gw 1" --wan eth1:203.0.113.1:isp_a --target icmp:192.0.2.1 --max-loss 50%%`} {
		if !strings.Contains(u, want) {
			t.Errorf("unit lacks %q:\n%s", want, u)
		}
	}
}
