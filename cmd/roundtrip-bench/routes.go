package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
	"roundtrip/engine/trace"
)

// The route host: a namespace with an uplink rt0 (10.99.0.1/24, gateways .2 and .3 on it)
// and a LAN link rt2 (10.98.0.1/24), forwarding on, a default route in main and the rule
// `pref 1000 lookup 100`, so that table 100 (the one loaded) decides lookups as a BGP-fed
// router's table does.
const (
	routeTable = 100
	routeDev   = "rt0"
	lanDev     = "rt2"
	lanClient  = "10.98.0.50"
)

var routeGateways = []string{"10.99.0.2", "10.99.0.3"}

func (b *bench) routeHost() (string, error) {
	ns, err := b.newNS("routes")
	if err != nil {
		return "", err
	}
	if err := b.ipBatch(ns, []string{
		"link add rt0 type veth peer name rt1",
		"link add rt2 type veth peer name rt3",
		"addr add 10.99.0.1/24 dev rt0",
		"addr add 10.98.0.1/24 dev rt2",
		"link set rt0 up", "link set rt1 up", "link set rt2 up", "link set rt3 up",
		"route add default via 10.99.0.3 dev rt0",
		fmt.Sprintf("rule add pref 1000 lookup %d", routeTable),
	}); err != nil {
		return "", err
	}
	return ns, b.sysctl(ns, "net.ipv4.ip_forward", "1")
}

// bgpPrefixes returns n distinct IPv4 prefixes with the lengths of an Internet routing table
// (mostly /24, then /22, /23, /20 and /21), outside 0/8, 10/8, 127/8 and multicast, always the
// same for the same n. They are routing table entries only: no packet is ever sent to them.
func bgpPrefixes(n int) []netip.Prefix {
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := []int{24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 22, 22, 23, 23, 20, 21, 16, 19, 18, 17, 12, 26, 28, 32}
	seen := make(map[netip.Prefix]struct{}, n)
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		first := byte(1 + rng.IntN(223))
		if first == 10 || first == 127 {
			continue
		}
		a := netip.AddrFrom4([4]byte{first, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		p := netip.PrefixFrom(a, lengths[rng.IntN(len(lengths))]).Masked()
		if p.Addr().As4()[0] != first { // a /12 of 10.x or 127.x masked into another octet
			continue
		}
		if _, dup := seen[p]; dup {
			continue
		}
		seen[p] = struct{}{}
		out = append(out, p)
	}
	return out
}

func gatewayFor(i int) string { return routeGateways[i%len(routeGateways)] }

// loadFiles writes the three forms of one route load: the roundtrip plan, the ip -batch file
// and the script of one `ip route add` per line (only when perLine).
type loadFiles struct {
	n                   int
	plan, batch, script string
}

func (b *bench) writeLoadFiles(ns string, n int, perLine bool) (*loadFiles, error) {
	ps := bgpPrefixes(n)
	lf := &loadFiles{n: n,
		plan:  filepath.Join(b.work, fmt.Sprintf("routes-%d.plan.json", n)),
		batch: filepath.Join(b.work, fmt.Sprintf("routes-%d.batch", n)),
	}
	var batch bytes.Buffer
	for i, p := range ps {
		fmt.Fprintf(&batch, "route add %s via %s dev %s table %d\n", p, gatewayFor(i), routeDev, routeTable)
	}
	if err := os.WriteFile(lf.batch, batch.Bytes(), 0o600); err != nil {
		return nil, err
	}
	if perLine {
		// The seeds' scripts: one ip command per route.
		lf.script = filepath.Join(b.work, fmt.Sprintf("routes-%d.sh", n))
		var sh bytes.Buffer
		sh.WriteString("set -e\n")
		for i, p := range ps {
			fmt.Fprintf(&sh, "ip -n %s route add %s via %s dev %s table %d\n", ns, p, gatewayFor(i), routeDev, routeTable)
		}
		if err := os.WriteFile(lf.script, sh.Bytes(), 0o600); err != nil {
			return nil, err
		}
	}
	// The plan roundtrip applies: Desired.Plan against the namespace as it is (table empty),
	// exactly what a wizard writes for a destination list.
	st, err := kernel.Read(b.ctx, kernel.Namespace{Name: ns})
	if err != nil {
		return nil, err
	}
	d := &plan.Desired{Intent: fmt.Sprintf("load %d routes into table %d", n, routeTable)}
	d.Routes = make([]model.Route, len(ps))
	for i, p := range ps {
		d.Routes[i] = model.Route{Family: inet.V4, Table: routeTable, Dst: p, Gateway: netip.MustParseAddr(gatewayFor(i)), Dev: routeDev}
	}
	p, err := d.Plan(st)
	if err != nil {
		return nil, fmt.Errorf("planning %d routes: %w", n, err)
	}
	data, err := p.Marshal()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(lf.plan, data, 0o600); err != nil {
		return nil, err
	}
	p, d, data = nil, nil, nil
	debug.FreeOSMemory()
	return lf, nil
}

// countRoutes counts the IPv4 routes of a table (0 for a table the kernel does not have yet).
func (b *bench) countRoutes(ns string, table int) (int, error) {
	out, err := b.output("ip", "-n", ns, "-4", "route", "show", "table", fmt.Sprint(table))
	if err != nil && strings.Contains(err.Error(), "FIB table does not exist") {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return bytes.Count(out, []byte("\n")), nil
}

// emptyTable flushes the table and roundtrip's journals, so that every load starts alike.
func (b *bench) emptyTable(ns, stateDir string) error {
	if n, err := b.countRoutes(ns, routeTable); err != nil {
		return err
	} else if n > 0 {
		if err := b.cmd("ip", "-n", ns, "route", "flush", "table", fmt.Sprint(routeTable)); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(stateDir); err != nil {
		return err
	}
	if n, err := b.countRoutes(ns, routeTable); err != nil || n != 0 {
		return fmt.Errorf("table %d still holds %d routes after the flush (%v)", routeTable, n, err)
	}
	return nil
}

// loadMethods are the ways a table gets n routes.
func (b *bench) loadMethods(ns, stateDir string, lf *loadFiles) []namedChild {
	m := []namedChild{
		{"roundtrip apply", child{Args: []string{b.bin, "apply", lf.plan, "--netns", ns}, Env: []string{kernel.StateDirEnv + "=" + stateDir}}},
		{"ip -batch", child{Args: []string{"ip", "-n", ns, "-batch", lf.batch}}},
	}
	if lf.script != "" {
		m = append(m, namedChild{"ip route add per line", child{Args: []string{"sh", lf.script}}})
	}
	return m
}

type namedChild struct {
	Name string
	child
}

// benchLoad measures loading each size with each method, runs times in rotating order, and
// leaves the largest table loaded for the snapshot and lookup sections.
func (b *bench) benchLoad(r *report, ns string, sizes []int, perLineMax int) error {
	stateDir := filepath.Join(b.work, "state")
	sec := r.section("Loading routes into a table",
		"Each method loads the same N routes (`via` one of two gateways, BGP-like prefix lengths) into the empty table 100 of a namespace. "+
			"roundtrip runs as the CLI (`roundtrip apply PLAN --netns NS`, the plan written by `engine.Desired.Plan` as wizards do); "+
			"the journal directory is emptied between runs. Time is wall clock of the whole process, RSS its peak.")
	sec.table("N", "method", "median time", "peak RSS", "CPU (user+sys)", "time vs ip -batch", "runs")
	for _, n := range sizes {
		b.logf("load: writing the files for %d routes", n)
		if err := b.emptyTable(ns, stateDir); err != nil { // the plan is made against an empty table
			return err
		}
		lf, err := b.writeLoadFiles(ns, n, n <= perLineMax)
		if err != nil {
			return err
		}
		methods := b.loadMethods(ns, stateDir, lf)
		res := make([]series, len(methods))
		for run := range b.runs {
			for k := range methods {
				i := (k + run) % len(methods)
				if methods[i].Name == "ip route add per line" && n > 10000 && run > 0 {
					continue // minutes per run; once is enough to see the ratio
				}
				if err := b.emptyTable(ns, stateDir); err != nil {
					return err
				}
				b.logf("load %d: %s (run %d)", n, methods[i].Name, run+1)
				m, err := b.measure(methods[i].child)
				if err != nil {
					return err
				}
				if got, err := b.countRoutes(ns, routeTable); err != nil || got != n {
					return fmt.Errorf("%s loaded %d routes of %d (%v)", methods[i].Name, got, n, err)
				}
				b.logf("  %.2fs, %s", m.Wall.Seconds(), mib(m.MaxRSS))
				res[i] = append(res[i], m)
			}
		}
		base := res[1].wall()
		for i, m := range methods {
			sec.row(fmt.Sprint(n), "`"+m.Name+"`", secs(res[i].wall()), mib(int64(res[i].rss())), cpu(res[i].cpu()), ratio(res[i].wall(), base), fmt.Sprint(len(res[i])))
		}
		rt := res[0]
		switch n {
		case 100000:
			r.verdict("100k routes loaded", "≤ 0.6× ip -batch", rt.wall()/base, 0.6, "×")
		case 1000000:
			r.verdict("1M routes loaded", "≤ 0.4× ip -batch", rt.wall()/base, 0.4, "×")
			r.verdict("1M routes loaded, peak RSS", "≤ 64 MB", rt.rss()/1e6, 64, " MB")
		}
		if n == sizes[len(sizes)-1] {
			sec.note(fmt.Sprintf("`ip -batch` at %d routes: peak RSS %s.", n, mib(int64(res[1].rss()))))
		}
	}
	sec.cmds(
		"roundtrip apply routes-N.plan.json --netns NS   # ROUNDTRIP_STATE_DIR=scratch",
		"ip -n NS -batch routes-N.batch                  # lines: route add P via GW dev rt0 table 100",
		"sh routes-N.sh                                  # lines: ip -n NS route add P via GW dev rt0 table 100",
	)
	// Leave the largest table loaded.
	n := sizes[len(sizes)-1]
	if got, _ := b.countRoutes(ns, routeTable); got != n {
		if err := b.emptyTable(ns, stateDir); err != nil {
			return err
		}
		if err := b.cmd("ip", "-n", ns, "-batch", filepath.Join(b.work, fmt.Sprintf("routes-%d.batch", n))); err != nil {
			return err
		}
	}
	return os.RemoveAll(stateDir)
}

// ensureLoaded loads n routes with ip -batch when the load section did not run.
func (b *bench) ensureLoaded(ns string, n int) error {
	if got, _ := b.countRoutes(ns, routeTable); got == n {
		return nil
	}
	batch := filepath.Join(b.work, fmt.Sprintf("routes-%d.batch", n))
	if _, err := os.Stat(batch); err != nil {
		var buf bytes.Buffer
		for i, p := range bgpPrefixes(n) {
			fmt.Fprintf(&buf, "route add %s via %s dev %s table %d\n", p, gatewayFor(i), routeDev, routeTable)
		}
		if err := os.WriteFile(batch, buf.Bytes(), 0o600); err != nil {
			return err
		}
	}
	if err := b.emptyTable(ns, filepath.Join(b.work, "state")); err != nil {
		return err
	}
	b.logf("loading %d routes with ip -batch for the snapshot and lookup sections", n)
	return b.cmd("ip", "-n", ns, "-batch", batch)
}

// benchSnapshot measures a snapshot of the loaded host against ip's JSON dump of every table.
func (b *bench) benchSnapshot(r *report, ns string, n int) (string, error) {
	snap := filepath.Join(b.work, "host.snapshot.json")
	methods := []namedChild{
		{"roundtrip snapshot", child{Args: []string{b.bin, "snapshot", "--netns", ns, "-o", snap}}},
		{"ip -j route show table all", child{Args: []string{"ip", "-n", ns, "-j", "route", "show", "table", "all"}, Stdout: filepath.Join(b.work, "ip-routes.json")}},
	}
	res := make([]series, len(methods))
	for run := range b.runs {
		for k := range methods {
			i := (k + run) % len(methods)
			b.logf("snapshot: %s (run %d)", methods[i].Name, run+1)
			m, err := b.measure(methods[i].child)
			if err != nil {
				return "", err
			}
			b.logf("  %.2fs, %s", m.Wall.Seconds(), mib(m.MaxRSS))
			res[i] = append(res[i], m)
		}
	}
	sizes := map[string]string{}
	for _, f := range []string{snap, filepath.Join(b.work, "ip-routes.json")} {
		if st, err := os.Stat(f); err == nil {
			sizes[f] = mib(st.Size())
		}
	}
	sec := r.section(fmt.Sprintf("Snapshot of a %d-route host", n),
		"roundtrip reads links, rules, the routes of every table of both families, iptables and sysctls and writes its versioned JSON; "+
			"ip dumps the routes of every table as JSON. Both write to a file.")
	sec.table("method", "median time", "peak RSS", "CPU (user+sys)", "time vs ip", "output")
	base := res[1].wall()
	outs := []string{sizes[snap], sizes[filepath.Join(b.work, "ip-routes.json")]}
	for i, m := range methods {
		sec.row("`"+m.Name+"`", secs(res[i].wall()), mib(int64(res[i].rss())), cpu(res[i].cpu()), ratio(res[i].wall(), base), outs[i])
	}
	sec.cmds("roundtrip snapshot --netns NS -o host.snapshot.json", "ip -n NS -j route show table all > ip-routes.json")
	if n >= 1000000 {
		r.verdict("snapshot of 1M routes", "≤ 0.6× ip -j route show table all", res[0].wall()/base, 0.6, "×")
		r.verdict("snapshot of 1M routes, peak RSS", "≤ 150 MB", res[0].rss()/1e6, 150, " MB")
	}
	return snap, nil
}

// benchReads measures what an operator reads on the loaded host, live: show against ip's
// listing of every table, a trace of one flow, and the doctor (issue 14's targets at 1M).
func (b *bench) benchReads(r *report, ns string, n int) error {
	probe := probeAddrs(1)[0].String()
	methods := []namedChild{
		{"roundtrip show --all", child{Args: []string{b.bin, "show", "--all", "--netns", ns}, Stdout: filepath.Join(b.work, "show.txt")}},
		{"ip route show table all", child{Args: []string{"ip", "-n", ns, "route", "show", "table", "all"}, Stdout: filepath.Join(b.work, "ip-routes.txt")}},
		{"roundtrip trace (live)", child{Args: []string{b.bin, "trace", "tcp", lanClient + ":40000", probe + ":443", "--iif", lanDev, "--netns", ns}, OKExit: []int{3}}},
		{"roundtrip doctor", child{Args: []string{b.bin, "doctor", "--netns", ns}, OKExit: []int{3}}},
	}
	res := make([]series, len(methods))
	for run := range b.runs {
		for k := range methods {
			i := (k + run) % len(methods)
			b.logf("reads: %s (run %d)", methods[i].Name, run+1)
			m, err := b.measure(methods[i].child)
			if err != nil {
				return err
			}
			b.logf("  %.2fs, %s", m.Wall.Seconds(), mib(m.MaxRSS))
			res[i] = append(res[i], m)
		}
	}
	sec := r.section(fmt.Sprintf("Live reads of a %d-route host", n),
		"Each command reads the namespace's kernel state itself: show lists every route of every table (to a file, as ip does), "+
			"trace follows one TCP flow both ways through rules, routes and netfilter, doctor checks the whole state.")
	sec.table("method", "median time", "peak RSS", "CPU (user+sys)", "time vs ip route show")
	base := res[1].wall()
	for i, m := range methods {
		vs := ratio(res[i].wall(), base)
		if i > 1 {
			vs = "" // trace and doctor do other work than listing
		}
		sec.row("`"+m.Name+"`", secs(res[i].wall()), mib(int64(res[i].rss())), cpu(res[i].cpu()), vs)
	}
	sec.cmds("roundtrip show --all --netns NS > file", "ip -n NS route show table all > file",
		"roundtrip trace tcp "+lanClient+":40000 ADDR:443 --iif "+lanDev+" --netns NS", "roundtrip doctor --netns NS")
	if n >= 1000000 {
		r.verdict("show of 1M routes", "≤ 1.5× ip route show table all", res[0].wall()/base, 1.5, "×")
		r.verdict("live trace at 1M routes", "≤ 0.5 s", res[2].wall(), 0.5, " s")
		r.verdict("live trace at 1M routes, peak RSS", "≤ 150 MB", res[2].rss()/1e6, 150, " MB")
		r.verdict("doctor at 1M routes", "≤ 3 s", res[3].wall(), 3, " s")
	}
	return nil
}

// probeAddrs returns n addresses spread over the IPv4 unicast space: most fall in a prefix of
// the loaded table, the rest take main's default route.
func probeAddrs(n int) []netip.Addr {
	rng := rand.New(rand.NewPCG(3, 4))
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{byte(1 + rng.IntN(223)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(1 + rng.IntN(254))})
	}
	return out
}

// benchLookups compares route lookups: the kernel answering `ip -batch` of `route get`, and
// roundtrip's simulator (FIB.Resolve, and FIB.Lookup with its explanation) on the snapshot,
// in-process; then a full two-leg trace, in-process and as the CLI.
func (b *bench) benchLookups(r *report, ns, snap string, n, probes int) error {
	addrs := probeAddrs(probes)
	var buf bytes.Buffer
	for _, a := range addrs {
		fmt.Fprintf(&buf, "route get %s\n", a)
	}
	probeFile := filepath.Join(b.work, "probes.batch")
	if err := os.WriteFile(probeFile, buf.Bytes(), 0o600); err != nil {
		return err
	}
	var kern series
	for run := range b.runs {
		b.logf("lookups: kernel, %d route get (run %d)", probes, run+1)
		m, err := b.measure(child{Args: []string{"ip", "-n", ns, "-batch", probeFile}})
		if err != nil {
			return err
		}
		kern = append(kern, m)
	}
	kernRate := float64(probes) / kern.wall()

	// The simulator, on the snapshot taken above (what `--snapshot` commands work on).
	runtime.GC()
	t0 := time.Now()
	sn, err := model.LoadSnapshotFile(snap)
	if err != nil {
		return err
	}
	loadT := time.Since(t0)
	t0 = time.Now()
	fibIdx := fib.New(sn.State)
	buildT := time.Since(t0)
	flows := make([]fib.Flow, len(addrs))
	for i, a := range addrs {
		flows[i] = fib.Flow{Dst: a}
	}
	rate := func(fn func(fib.Flow) fib.Result) float64 {
		var rates []float64
		for range max(b.runs, 3) {
			done := 0
			t0 := time.Now()
			for time.Since(t0) < 700*time.Millisecond {
				for _, f := range flows[:min(len(flows), 65536)] {
					if fn(f).Verdict == "" {
						panic("empty verdict")
					}
				}
				done += min(len(flows), 65536)
			}
			rates = append(rates, float64(done)/time.Since(t0).Seconds())
		}
		return medianOf(rates)
	}
	resolveRate := rate(fibIdx.Resolve)
	lookupRate := rate(fibIdx.Lookup)

	// Agreement with the kernel on a sample, so that the rates compare like with like.
	sample := addrs[:min(len(addrs), 2000)]
	var sb bytes.Buffer
	for _, a := range sample {
		fmt.Fprintf(&sb, "route get %s\n", a)
	}
	c := newCmd(b.ctx, "ip", "-n", ns, "-batch", "-")
	c.Stdin = &sb
	out, err := c.Output()
	if err != nil {
		return fmt.Errorf("ip route get sample: %w", err)
	}
	kernelGW := parseRouteGet(out)
	agree := 0
	var disagree []string
	for _, a := range sample {
		res := fibIdx.Resolve(fib.Flow{Dst: a})
		if gw, ok := kernelGW[a]; ok && res.Gateway == gw {
			agree++
		} else if len(disagree) < 5 {
			disagree = append(disagree, fmt.Sprintf("%s: kernel via %s, simulator %s via %s (route %v)", a, gw, res.Verdict, res.Gateway, res.Route))
		}
	}

	// A full two-leg trace: a LAN client's connection forwarded to the Internet, and the reply.
	reqs := make([]trace.Request, 256)
	for i := range reqs {
		reqs[i] = trace.Request{Proto: 6, Src: netip.AddrPortFrom(netip.MustParseAddr(lanClient), uint16(40000+i)),
			Dst: netip.AddrPortFrom(addrs[i], 443), IIF: lanDev}
	}
	var traceTimes []float64
	legs := 0
	for range max(b.runs, 3) {
		t0 := time.Now()
		for _, rq := range reqs {
			tr := trace.Run(sn.State, fibIdx, rq)
			if tr.Reply != nil {
				legs++
			}
		}
		traceTimes = append(traceTimes, time.Since(t0).Seconds()/float64(len(reqs)))
	}
	traceT := medianOf(traceTimes)

	var cli series
	for run := range b.runs {
		b.logf("lookups: roundtrip trace CLI on the snapshot (run %d)", run+1)
		m, err := b.measure(child{Args: []string{b.bin, "trace", "tcp", lanClient + ":40000", addrs[0].String() + ":443", "--iif", lanDev, "--snapshot", snap}, OKExit: []int{3}})
		if err != nil {
			return err
		}
		cli = append(cli, m)
	}

	sec := r.section(fmt.Sprintf("Route lookups on a %d-route table", n),
		fmt.Sprintf("%d probe addresses spread over the IPv4 space (most hit a prefix of table 100, the rest main's default route). "+
			"The kernel answers `route get` lines fed to `ip -batch` (one netlink request each, as a script would ask); "+
			"the simulator answers in-process on the snapshot above. On a sample of %d probes the simulator chose the kernel's gateway for %d.",
			probes, len(sample), agree))
	sec.table("what", "median", "rate")
	sec.row("kernel: `ip -batch` of `route get`", secs(kern.wall()), fmt.Sprintf("%.0f lookups/s", kernRate))
	sec.row("simulator: `FIB.Resolve` (verdict, route, gateway, source)", "", fmt.Sprintf("%.2fM lookups/s (%.2f× the kernel's)", resolveRate/1e6, resolveRate/kernRate))
	sec.row("simulator: `FIB.Lookup` (with every rule considered)", "", fmt.Sprintf("%.2fM lookups/s", lookupRate/1e6))
	sec.row("load the snapshot (`engine.LoadSnapshotFile`)", secs(loadT.Seconds()), "")
	sec.row("build the FIB (`engine.NewFIB`)", secs(buildT.Seconds()), "")
	sec.row("two-leg trace (`engine.Trace`, forward and reply)", fmt.Sprintf("%.1f µs", traceT*1e6), fmt.Sprintf("%d of %d traces had a reply leg", legs/max(b.runs, 3), len(reqs)))
	sec.row("`roundtrip trace ... --snapshot` CLI, end to end", secs(cli.wall()), "peak RSS "+mib(int64(cli.rss())))
	sec.cmds("ip -n NS -batch probes.batch   # lines: route get ADDR",
		"roundtrip trace tcp 10.98.0.50:40000 ADDR:443 --iif rt2 --snapshot host.snapshot.json")
	r.verdictMin(fmt.Sprintf("simulated lookups at %d prefixes", n), "≥ 2M/s", resolveRate/1e6, 2, "M/s")
	r.verdict("two-leg trace on that table", "< 1 ms", traceT*1e3, 1, " ms")
	if agree != len(sample) {
		sec.note(fmt.Sprintf("**The simulator disagreed with the kernel on %d of %d sampled lookups**, for example: %s.", len(sample)-agree, len(sample), strings.Join(disagree, "; ")))
	}
	sn, fibIdx = nil, nil
	debug.FreeOSMemory()
	return nil
}

// parseRouteGet reads ip route get answers ("[TYPE] A [via G] dev D ...") into the gateway per
// address (the zero address when the answer has none).
func parseRouteGet(out []byte) map[netip.Addr]netip.Addr {
	m := map[netip.Addr]netip.Addr{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), " ") || strings.HasPrefix(sc.Text(), "\t") {
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) > 0 && slices.Contains([]string{"local", "broadcast", "unreachable", "blackhole", "prohibit", "multicast"}, f[0]) {
			f = f[1:]
		}
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		m[a] = netip.Addr{}
		for i := 1; i+1 < len(f); i++ {
			if f[i] == "via" {
				if gw, err := netip.ParseAddr(f[i+1]); err == nil {
					m[a] = gw
				}
			}
		}
	}
	return m
}
