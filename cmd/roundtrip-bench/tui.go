package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/metrics"
	"slices"
	"strings"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"

	"roundtrip/engine/kernel"
	"roundtrip/ui"
	"roundtrip/ui/common"
	"roundtrip/ui/pages"
)

// tuiChildEnv, set to a namespace's name, makes this binary time the console on that namespace
// instead of benchmarking (benchTUI starts itself again so, to measure the console's own peak
// RSS apart from the benchmark's).
const tuiChildEnv = "ROUNDTRIP_BENCH_TUI_NS"

// The console is timed at this size, on the Routing page showing the loaded table.
const (
	tuiWidth, tuiHeight = 120, 40
	// tuiScreenRows is how many routes fill the routes' part of the page at that size.
	tuiScreenRows = 25
	// tuiKeys is how many keys are timed while the console still reads, and again after.
	tuiKeys = 40
)

// tuiResult is what the child reports.
type tuiResult struct {
	FirstFrame  float64   `json:"first_frame_s"`
	FrameRoutes int       `json:"frame_routes"`
	TableRead   float64   `json:"table_read_s"`
	TableRoutes int       `json:"table_routes"`
	StateRead   float64   `json:"state_read_s"`
	DoctorDone  float64   `json:"doctor_done_s"`
	KeysReading []float64 `json:"keys_reading_ms"`
	KeysSettled []float64 `json:"keys_settled_ms"`
	// KeysReadingGC counts the keys while reading during which a GC cycle ended (the doctor's
	// state grows meanwhile); KeysReadingNoGCMax is the slowest of the others.
	KeysReadingGC      int     `json:"keys_reading_gc"`
	KeysReadingNoGCMax float64 `json:"keys_reading_nogc_max_ms"`
	FrameExcerpt       string  `json:"frame"`
}

// tuiTimer wraps the console's model: it opens the Routing page on the loaded table as an
// operator would (2, then ] until the table shows), notes when the first full frame can be
// drawn, then times keys, each with the frame after it, while the console still reads (the
// table, every route for the doctor, the doctor) and again once it is done.
type tuiTimer struct {
	app   *ui.App
	table int
	start time.Time
	phase int
	keyN  int
	res   tuiResult
}

type tuiKeyTick struct{}

var tuiKeySeq = []tea.KeyPressMsg{
	{Code: tea.KeyPgDown}, {Code: tea.KeyPgDown}, {Code: tea.KeyDown}, {Code: tea.KeyEnd}, {Code: tea.KeyPgUp},
	{Code: tea.KeyUp}, {Code: tea.KeyHome}, {Code: tea.KeyPgDown}, {Code: tea.KeyDown},
}

func (m *tuiTimer) Init() tea.Cmd {
	return tea.Batch(m.app.Init(), func() tea.Msg { return tea.KeyPressMsg{Code: '2', Text: "2"} })
}

func (m *tuiTimer) routing() *pages.Routing { return m.app.Page(ui.PageRouting).(*pages.Routing) }

func (m *tuiTimer) since() float64 { return time.Since(m.start).Seconds() }

// key times one key and the frame after it, in milliseconds, and says whether a GC cycle ended
// meanwhile.
func (m *tuiTimer) key() (float64, bool, tea.Cmd) {
	k := tuiKeySeq[m.keyN%len(tuiKeySeq)]
	m.keyN++
	gc := gcCycles()
	t := time.Now()
	_, cmd := m.app.Update(k)
	_ = m.app.Render()
	return float64(time.Since(t).Microseconds()) / 1e3, gcCycles() != gc, cmd
}

func (m *tuiTimer) tick() tea.Cmd {
	return tea.Tick(20*time.Millisecond, func(time.Time) tea.Msg { return tuiKeyTick{} })
}

func (m *tuiTimer) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	var cmds []tea.Cmd
	if _, ok := msg.(tuiKeyTick); !ok {
		_, cmd := m.app.Update(msg)
		cmds = append(cmds, cmd)
	}
	r := m.routing()
	if m.res.StateRead == 0 && m.app.State() != nil {
		m.res.StateRead = m.since()
	}
	if m.res.TableRead == 0 && m.phase > 0 && !r.Streaming() {
		m.res.TableRead, m.res.TableRoutes = m.since(), r.Listed()
	}
	switch m.phase {
	case 0:
		if m.app.Active != ui.PageRouting {
			break
		}
		for n := 0; r.TableID() != m.table && slices.Contains(r.Tables(), m.table) && n < len(r.Tables()); n++ {
			_, cmd := m.app.Update(tea.KeyPressMsg{Code: ']', Text: "]"})
			cmds = append(cmds, cmd)
		}
		if r.TableID() == m.table && r.Listed() >= tuiScreenRows {
			frame := m.app.Render()
			m.res.FirstFrame, m.res.FrameRoutes = m.since(), r.Listed()
			m.res.FrameExcerpt = strings.Join(strings.Split(frame, "\n")[:12], "\n")
			m.phase = 1
			cmds = append(cmds, m.tick())
		}
	case 1:
		if _, ok := msg.(tuiKeyTick); ok {
			ms, gc, cmd := m.key()
			m.res.KeysReading = append(m.res.KeysReading, ms)
			if gc {
				m.res.KeysReadingGC++
			} else {
				m.res.KeysReadingNoGCMax = max(m.res.KeysReadingNoGCMax, ms)
			}
			cmds = append(cmds, cmd)
			if len(m.res.KeysReading) == tuiKeys {
				m.phase = 2
			}
			cmds = append(cmds, m.tick())
		}
	case 2:
		// One tick is always pending: each looks whether the console is done, the one after
		// that times the first key of phase 3.
		if _, ok := msg.(tuiKeyTick); ok {
			if m.app.State() != nil && !m.app.Loading() && !m.app.Analysing() && !r.Streaming() {
				m.res.DoctorDone = m.since()
				m.phase = 3
			}
			cmds = append(cmds, m.tick())
		}
	case 3:
		if _, ok := msg.(tuiKeyTick); ok {
			ms, _, cmd := m.key()
			m.res.KeysSettled = append(m.res.KeysSettled, ms)
			cmds = append(cmds, cmd)
			if len(m.res.KeysSettled) < tuiKeys {
				cmds = append(cmds, m.tick())
			} else {
				m.app.Stop()
				return m, tea.Quit
			}
		}
	}
	return m, tea.Batch(cmds...)
}

func (m *tuiTimer) View() tea.View { return m.app.View() }

func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// tuiChild runs the console on ns (its output drawn to /dev/null, at 120×40) and prints what
// tuiTimer measured as JSON.
func tuiChild(ns string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer out.Close()
	mode := common.ModePlain
	m := &tuiTimer{app: ui.New(ctx, ui.Options{Namespace: ns, Mode: &mode, NoMouse: true}), table: routeTable, start: time.Now()}
	p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithInput(nil), tea.WithOutput(out),
		tea.WithWindowSize(tuiWidth, tuiHeight), tea.WithoutSignalHandler())
	if _, err := p.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "console:", err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(m.res); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// benchTUI times the console on the loaded host: its first full frame of the loaded table and
// its keys (issue 14's targets at 1M: ≤ 0.5 s, ≤ 50 ms per key).
func (b *bench) benchTUI(r *report, ns string, n int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var runs []tuiResult
	var ms series
	for run := range b.runs {
		b.logf("reads: the console (run %d)", run+1)
		file := filepath.Join(b.work, "tui.json")
		m, err := b.measure(child{Args: []string{self}, Env: []string{tuiChildEnv + "=" + ns, kernel.StateDirEnv + "=" + filepath.Join(b.work, "tuistate")}, Stdout: file})
		if err != nil {
			return err
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		var res tuiResult
		if err := json.Unmarshal(data, &res); err != nil {
			return fmt.Errorf("reading the console's timings %q: %w", data, err)
		}
		b.logf("  first frame %.3fs (%d routes read), keys ≤ %.1f ms, %s", res.FirstFrame, res.FrameRoutes,
			slices.Max(append(res.KeysReading, res.KeysSettled...)), mib(m.MaxRSS))
		runs = append(runs, res)
		ms = append(ms, m)
	}
	med := func(f func(tuiResult) float64) float64 {
		v := make([]float64, len(runs))
		for i, x := range runs {
			v[i] = f(x)
		}
		return medianOf(v)
	}
	keyStat := func(f func(tuiResult) []float64, agg func([]float64) float64) float64 {
		return med(func(x tuiResult) float64 { return agg(f(x)) })
	}
	reading := func(x tuiResult) []float64 { return x.KeysReading }
	settled := func(x tuiResult) []float64 { return x.KeysSettled }
	maxOf := func(v []float64) float64 { return slices.Max(v) }
	first := med(func(x tuiResult) float64 { return x.FirstFrame })
	sec := r.section(fmt.Sprintf("The console on a %d-route host", n),
		fmt.Sprintf("The console (`roundtrip` on a terminal; here its model in a bubbletea program drawing to /dev/null at %d×%d) opens the Routing page on table %d as an operator would (2, then ]). "+
			"The first full frame is the first that shows the rules and a screenful of that table's routes: the page streams the table it shows, while the app reads every route for the doctor. "+
			"Then %d keys (pgdown, down, end, pgup, up, home), 20 ms apart, are timed with the frame drawn after each: while the console still reads and checks, and again once it is done. Peak RSS is the whole console's, the doctor's state included.",
			tuiWidth, tuiHeight, routeTable, tuiKeys))
	sec.table("what", "median of runs")
	sec.row("first full frame", secs(first))
	sec.row("routes of the table read by then", fmt.Sprint(int(med(func(x tuiResult) float64 { return float64(x.FrameRoutes) }))))
	sec.row(fmt.Sprintf("table %d read whole", routeTable), secs(med(func(x tuiResult) float64 { return x.TableRead })))
	sec.row("every route read (the doctor's state)", secs(med(func(x tuiResult) float64 { return x.StateRead })))
	sec.row("every route read and the doctor done (looked at after the keys while reading)", secs(med(func(x tuiResult) float64 { return x.DoctorDone })))
	sec.row("a key while reading and checking: median / max", fmt.Sprintf("%.2f ms / %.2f ms", keyStat(reading, medianOf), keyStat(reading, maxOf)))
	sec.row("keys while reading during which a GC cycle ended; the slowest of the others",
		fmt.Sprintf("%d of %d; %.2f ms", int(med(func(x tuiResult) float64 { return float64(x.KeysReadingGC) })), tuiKeys,
			med(func(x tuiResult) float64 { return x.KeysReadingNoGCMax })))
	sec.row("a key after: median / max", fmt.Sprintf("%.2f ms / %.2f ms", keyStat(settled, medianOf), keyStat(settled, maxOf)))
	sec.row("peak RSS of the console", mib(int64(ms.rss())))
	sec.cmds("roundtrip --netns NS   # then 2, ] to table 100, and scroll")
	if n >= 1000000 {
		worst := max(keyStat(reading, maxOf), keyStat(settled, maxOf))
		r.verdict("TUI first full frame at 1M routes", "≤ 0.5 s", first, 0.5, " s")
		r.verdict("TUI scrolling at 1M routes, slowest key", "≤ 50 ms per key", worst, 50, " ms")
	}
	return nil
}
