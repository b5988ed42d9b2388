// Command roundtrip-bench measures roundtrip against the tools operators use instead (ip -batch,
// one ip command per route, ip -j, ip route get, conntrack -L, tcpdump) at real sizes, in
// network namespaces it creates and deletes itself, and writes the medians and ratios to
// BENCHMARKS.md. It also answers seed case 2's question of which dual-WAN method forwards
// fastest. Run it as root: make bench (or make bench-quick).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var sections = []string{"load", "snapshot", "reads", "lookup", "conntrack", "capture", "dualwan"}

type options struct {
	bin, out, work, only, profile string
	label, nsPrefix               string
	runs                          int
	routes                        []int
	perLineMax, probes, ctEntries int
	captureRates                  []int
	captureTime                   time.Duration
	dwCIDRs, dwProbes             int
	dwTime                        time.Duration
	keep                          bool
}

func main() {
	if ns := os.Getenv(tuiChildEnv); ns != "" {
		os.Exit(tuiChild(ns))
	}
	var o options
	var routes, rates string
	flag.StringVar(&o.bin, "roundtrip", "", "the roundtrip `BINARY` to measure (default: build ./cmd/roundtrip with CGO_ENABLED=0)")
	flag.StringVar(&o.out, "o", "BENCHMARKS.md", "write the results between the generated-block markers of `FILE` (- for standard output)")
	flag.StringVar(&o.work, "workdir", "", "scratch `DIR` for plans, batch files and snapshots (default: a new directory under $TMPDIR)")
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch directory")
	flag.StringVar(&o.label, "label", "", "describe the roundtrip measured as `TEXT` (default: the git commit of the working directory)")
	flag.StringVar(&o.only, "only", strings.Join(sections, ","), "run only these `SECTIONS`")
	flag.StringVar(&o.profile, "profile", "", "also run roundtrip's apply, snapshot, doctor and conntrack listing in-process with CPU and heap profiles written to `DIR`")
	flag.StringVar(&o.nsPrefix, "ns-prefix", "rtbench", "name the namespaces it creates `PREFIX`-PID-...")
	flag.IntVar(&o.runs, "runs", 3, "measure each command `N` times and report the median")
	flag.StringVar(&routes, "routes", "10000,100000,1000000", "route table `SIZES` to load; the largest is snapshotted and looked up")
	flag.IntVar(&o.perLineMax, "perline-max", 100000, "run the one-ip-command-per-route script only up to `N` routes (it takes ~1 ms a route)")
	flag.IntVar(&o.probes, "probes", 100000, "`N` route lookups asked of the kernel and the simulator")
	flag.IntVar(&o.ctEntries, "conntrack", 262144, "conntrack entries to list (the kernel allows nf_conntrack_max, 262144 here)")
	flag.StringVar(&rates, "capture-rates", "100000,200000,300000", "capture at these `RATES` (packets/s)")
	flag.DurationVar(&o.captureTime, "capture-time", 3*time.Second, "send for `D` at each rate")
	flag.IntVar(&o.dwCIDRs, "dualwan-cidrs", 10000, "`N` CIDRs in ISP B's list (at most 16384)")
	flag.DurationVar(&o.dwTime, "dualwan-time", 3*time.Second, "flood each dual-WAN router for `D`")
	flag.IntVar(&o.dwProbes, "dualwan-probes", 1000, "`N` echo round trips per ISP and method")
	flag.Parse()
	var err error
	if o.routes, err = intList(routes); err != nil || len(o.routes) == 0 {
		fatal(fmt.Errorf("-routes %q: want sizes like 10000,100000", routes))
	}
	slices.Sort(o.routes)
	if o.captureRates, err = intList(rates); err != nil {
		fatal(fmt.Errorf("-capture-rates %q: want rates like 100000,300000", rates))
	}
	for _, s := range strings.Split(o.only, ",") {
		if !slices.Contains(sections, s) {
			fatal(fmt.Errorf("-only %q: unknown section %q (sections: %s)", o.only, s, strings.Join(sections, ", ")))
		}
	}
	if o.runs < 1 || o.dwCIDRs < 1 || o.dwCIDRs > 1<<14 {
		fatal(errors.New("-runs must be at least 1 and -dualwan-cidrs within 1-16384"))
	}
	if os.Geteuid() != 0 {
		fatal(errors.New("needs root: it creates network namespaces (sudo make bench)"))
	}
	if err := run(o); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "roundtrip-bench: %v\n", err)
	os.Exit(1)
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{ctx: ctx, runs: o.runs, log: os.Stderr, prefix: fmt.Sprintf("%s-%d", o.nsPrefix, os.Getpid())}
	var err error
	if o.work == "" {
		if b.work, err = os.MkdirTemp("", "rtbench-"); err != nil {
			return err
		}
	} else {
		b.work = o.work
		if err := os.MkdirAll(b.work, 0o700); err != nil {
			return err
		}
	}
	if !o.keep && o.work == "" {
		defer os.RemoveAll(b.work)
	}
	// Namespaces go on every way out, interrupts included (the context ends the children).
	defer b.cleanup()
	if o.bin == "" {
		b.bin = filepath.Join(b.work, "roundtrip")
		b.logf("building roundtrip into %s", b.bin)
		c := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "./cmd/roundtrip")
		c.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("building roundtrip (run from the repository root, or give -roundtrip): %w: %s", err, out)
		}
	} else if b.bin, err = filepath.Abs(o.bin); err != nil {
		return err
	}

	if t, err := exec.LookPath("time"); err == nil {
		if v, _ := exec.Command(t, "--version").CombinedOutput(); strings.Contains(string(v), "GNU") {
			b.gnuTime = t
		}
	}
	r := &report{}
	r.header = machine(o)
	if b.gnuTime != "" {
		r.header = append(r.header, "- peak RSS is GNU time's %M of each command (its own, within ~1 MiB)")
	} else {
		r.header = append(r.header, "- **GNU time is not installed (apt-get install time): peak RSS of each command includes the benchmark's own peak, since a child started with vfork keeps its parent's across exec**")
		b.logf("GNU time is not installed: the peak RSS of small commands will include the benchmark's own (apt-get install time)")
	}
	want := func(s string) bool { return slices.Contains(strings.Split(o.only, ","), s) }
	started := time.Now()
	if err := b.sections(r, o, want); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted; namespaces deleted")
		}
		return err
	}
	r.header = append(r.header, fmt.Sprintf("- finished after %s; load average at the end: %s", time.Since(started).Round(time.Second), loadavg()))
	if o.out == "-" {
		_, err := os.Stdout.Write(r.markdown())
		return err
	}
	if err := writeResults(o.out, r.markdown()); err != nil {
		return err
	}
	b.logf("results written to %s", o.out)
	return nil
}

func (b *bench) sections(r *report, o options, want func(string) bool) error {
	if want("load") || want("snapshot") || want("reads") || want("lookup") {
		ns, err := b.routeHost()
		if err != nil {
			return err
		}
		n := o.routes[len(o.routes)-1]
		if want("load") {
			if err := b.benchLoad(r, ns, o.routes, o.perLineMax); err != nil {
				return err
			}
			if o.profile != "" {
				if err := b.profileApply(o.profile, ns, n); err != nil {
					return err
				}
			}
		}
		if want("snapshot") || want("reads") || want("lookup") {
			if err := b.ensureLoaded(ns, n); err != nil {
				return err
			}
			snap := filepath.Join(b.work, "host.snapshot.json")
			if want("snapshot") {
				if snap, err = b.benchSnapshot(r, ns, n); err != nil {
					return err
				}
				if o.profile != "" {
					if err := b.profileSnapshot(o.profile, ns); err != nil {
						return err
					}
				}
			} else if err := b.cmd(b.bin, "snapshot", "--netns", ns, "-o", snap); err != nil {
				return err
			}
			if want("reads") {
				if err := b.benchReads(r, ns, n); err != nil {
					return err
				}
				if err := b.benchTUI(r, ns, n); err != nil {
					return err
				}
				if o.profile != "" {
					if err := b.profileDoctor(o.profile, ns); err != nil {
						return err
					}
				}
			}
			if want("lookup") {
				if err := b.benchLookups(r, ns, snap, n, o.probes); err != nil {
					return err
				}
			}
		}
		if err := b.delNS(ns); err != nil {
			return err
		}
	}
	if want("conntrack") {
		if err := b.benchConntrack(r, o.ctEntries, o.profile); err != nil {
			return err
		}
	}
	if want("capture") {
		if err := b.benchCapture(r, o.captureRates, o.captureTime, o.profile); err != nil {
			return err
		}
	}
	if want("dualwan") {
		if err := b.benchDualWAN(r, o.dwCIDRs, o.dwTime, o.dwProbes); err != nil {
			return err
		}
	}
	return nil
}

// machine describes where and how the benchmark ran.
func machine(o options) []string {
	first := func(path, prefix string) string {
		data, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, prefix) {
				return strings.TrimSpace(strings.TrimPrefix(l, prefix))
			}
		}
		return "?"
	}
	out := func(name string, args ...string) string {
		b, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	var uts syscall.Utsname
	syscall.Uname(&uts)
	kernelRel := strings.TrimRight(string(func() []byte {
		b := make([]byte, 0, len(uts.Release))
		for _, c := range uts.Release {
			b = append(b, byte(c))
		}
		return b
	}()), "\x00")
	commit := o.label
	if commit == "" {
		commit = "commit " + out("git", "rev-parse", "--short", "HEAD")
		if s := out("git", "status", "--porcelain", "--untracked-files=no"); s != "?" && s != "" {
			commit += " (with uncommitted changes)"
		}
	}
	return []string{
		"## Results",
		"",
		fmt.Sprintf("- run on %s: `roundtrip-bench %s`", time.Now().UTC().Format("2006-01-02 15:04 MST"), strings.Join(os.Args[1:], " ")),
		fmt.Sprintf("- machine: %d CPUs (%s), %s memory, kernel %s, %s; roundtrip %s", runtime.NumCPU(), first("/proc/cpuinfo", "model name\t: "),
			gib(first("/proc/meminfo", "MemTotal:")), kernelRel, runtime.Version(), commit),
		fmt.Sprintf("- tools: %s, %s, %s", out("ip", "-V"), out("conntrack", "--version"), out("tcpdump", "--version")),
		fmt.Sprintf("- load average at the start: %s (other work shares the machine: compare within a run, not across runs)", loadavg()),
		fmt.Sprintf("- medians of %d runs unless said otherwise; the methods take turns in rotating order", o.runs),
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// gib turns /proc/meminfo's "24684092 kB" into "23.5 GiB".
func gib(kb string) string {
	n, err := strconv.ParseFloat(strings.TrimSuffix(kb, " kB"), 64)
	if err != nil {
		return kb
	}
	return fmt.Sprintf("%.1f GiB", n/(1<<20))
}
