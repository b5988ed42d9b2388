package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"roundtrip/engine/finding"
	"roundtrip/engine/kernel"
	"roundtrip/engine/quote"
	"roundtrip/watch"
	"roundtrip/wizards"
)

func init() { RegisterNew(func(f *Factory) *Command { return NewCmdWatch(f, nil) }) }

const watchHelp = `Probes every WAN of a multi-wan gateway natively (ICMP echo, or a TCP connection with
tcp:ADDR:PORT targets), each probe bound to its WAN (SO_BINDTODEVICE, its address and its
connection mark), so that it leaves by that WAN whatever the main table says. A round
probes every target through every WAN at once; it fails when at least --max-loss of its
probes get no answer (default: all of them) or their median round-trip time is over
--max-rtt. A WAN goes down after --down-after failed rounds in a row and up again after
--up-after good rounds in a row, so that a lost probe never moves traffic.

When a WAN goes down, the default route and the destination lists it carried move to the
default WAN (or the first surviving one) through the change engine, journaled: roundtrip
history shows each move as "roundtrip watch: ...". The conntrack entries of connections
NATed to the dead WAN (or marked with its connection mark) are deleted, and only those:
their next packet starts over on a live WAN. When it comes back, the routes are restored as
the wizard made them; with --failback immediate the connections whose path changes are
deleted too (they would hang with the other WAN's address), with --failback new-flows they
are pinned to the WAN they use by its connection mark (multi-wan --connmark) and left alone.
When every WAN is down nothing is moved.

The WANs and lists are the multi-wan wizard's flags; without --wan they are taken from the
latest multi-wan apply in roundtrip history. The wizard's setup must be applied first.

  # Watch two ISPs through two public resolvers and a web server:
  roundtrip watch --wan eth1:203.0.113.1:isp_a --wan eth2:198.51.100.1:isp_b --lan eth0 \
      --default isp_a --route-list isp_b=/etc/isp_b.txt --snat --connmark \
      --target 192.0.2.53 --target 198.51.100.53 --target tcp:192.0.2.80:443
  # The same as a systemd service:
  roundtrip watch ... --unit > /etc/systemd/system/roundtrip-watch.service
  # What it sees, from another terminal:
  roundtrip watch --status`

// WatchOptions are the options of one run of roundtrip watch: fresh for every run.
type WatchOptions struct {
	*Invocation
	build    func() (wizards.Wizard, error) // the multi-wan wizard's flags, shared
	targets  []watch.Target
	cfg      watch.Config
	maxLoss  float64
	status   bool
	unit     bool
	lockWait time.Duration
}

// NewCmdWatch returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdWatch(f *Factory, runF func(*WatchOptions) error) *Command {
	opts := &WatchOptions{}
	return &Command{
		Name:    "watch",
		Usage:   "[--wan IFACE:GATEWAY[:NAME] ... (the multi-wan flags)] --target ADDR ... [--interval 1s] [--down-after N] [--up-after N] [--failback immediate|new-flows] | --status",
		Summary: "probe each WAN, fail over when one dies and fail back when it recovers (case 2)",
		Help:    watchHelp,
		Flags: func(fs *flag.FlagSet) {
			opts.build = bindMultiWAN(fs)
			repeated(fs, "target", "an address every WAN probes: `ADDR` (ICMP echo) or tcp:ADDR:PORT (repeat; give two or more)", func(v string) error {
				t, err := watch.ParseTarget(v)
				opts.targets = append(opts.targets, t)
				return err
			})
			fs.DurationVar(&opts.cfg.Interval, "interval", watch.DefaultInterval, "probe every `DURATION`")
			fs.DurationVar(&opts.cfg.Timeout, "timeout", 0, "wait up to `DURATION` for each answer (default: the interval, at most 2s)")
			fs.IntVar(&opts.cfg.Health.DownAfter, "down-after", watch.DefaultDownAfter, "a WAN is down after `N` failed rounds in a row")
			fs.IntVar(&opts.cfg.Health.UpAfter, "up-after", watch.DefaultUpAfter, "a down WAN is up after `N` good rounds in a row")
			fs.Float64Var(&opts.maxLoss, "max-loss", watch.DefaultMaxLoss*100, "a round fails when at least `PERCENT` of its probes are lost")
			fs.DurationVar(&opts.cfg.Health.MaxRTT, "max-rtt", 0, "a round fails when its median round-trip time is over `DURATION` (0: latency is not judged)")
			fs.StringVar(&opts.cfg.Failback, "failback", watch.FailbackImmediate, "`POLICY` when a WAN recovers: immediate (move everything back) or new-flows (only new connections)")
			fs.BoolVar(&opts.status, "status", false, "show what the running watcher sees, and exit")
			fs.BoolVar(&opts.unit, "unit", false, "print a systemd service that runs this watch, and exit")
			fs.DurationVar(&opts.lockWait, "lock-wait", defaultLockWait, "wait up to `DURATION` for another apply to finish before moving routes")
		},
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			targets, cfg, maxLoss, status, unit, lockWait := opts.targets, opts.cfg, opts.maxLoss, opts.status, opts.unit, opts.lockWait
			if len(inv.Args) > 0 {
				return Usagef("watch takes no arguments besides its flags, got %q", strings.Join(inv.Args, " "))
			}
			if status {
				return watchStatus(inv)
			}
			if inv.JSON {
				return Usagef("--json goes with --status (the watcher logs its events to stderr)")
			}
			// Zero would silently mean the default (WatchConfig fills zeros in): a 0 given on
			// the command line is refused instead.
			if err := checkRange("down-after", cfg.Health.DownAfter, 1, 1000, "failed rounds"); err != nil {
				return err
			}
			if err := checkRange("up-after", cfg.Health.UpAfter, 1, 1000, "good rounds"); err != nil {
				return err
			}
			if !(maxLoss > 0 && maxLoss <= 100) { // NaN included
				return Usagef("--max-loss %g: want a percentage above 0 and at most 100", maxLoss)
			}
			if cfg.Interval < 10*time.Millisecond {
				return Usagef("--interval %s: want at least 10ms", cfg.Interval)
			}
			w, err := opts.build()
			if err != nil {
				return err
			}
			cfg.MultiWAN = w.(*wizards.MultiWANOptions)
			if len(cfg.MultiWAN.WANs) == 0 {
				mw, id, err := multiWANFromHistory(inv)
				if err != nil {
					return err
				}
				quote.TermFprintf(inv.Stderr, "the WANs are those of the multi-wan apply %s: %s\n", id, quote.ShellJoin(mw.Args()...))
				cfg.MultiWAN = mw
			}
			cfg.Targets = targets
			cfg.Health.MaxLoss = maxLoss / 100
			if err := cfg.Check(); err != nil {
				return Usagef("%v", err)
			}
			if unit {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("finding roundtrip's own path for the unit: %w", err)
				}
				_, err = inv.Stdout.Write(watch.Unit(exe, inv.NetNS, cfg.Args()))
				return err
			}
			return watch.Live{Config: cfg, NS: inv.Namespace(), Log: inv.Stderr, LockWait: lockWait}.Run(inv.Ctx)
		},
	}
}

// bindMultiWAN declares the multi-wan wizard's flags, which watch shares, and returns what
// builds its options once they are parsed.
func bindMultiWAN(fs *flag.FlagSet) func() (wizards.Wizard, error) {
	spec := wizards.SpecFor(finding.WizardMultiWAN)
	v := spec.NewValues()
	bindFields(fs, spec, v)
	return func() (wizards.Wizard, error) { return buildWizard(spec, v) }
}

// multiWANIntent starts the intent of every multi-wan plan (the wizard's command line).
const multiWANIntent = "roundtrip wizard " + finding.WizardMultiWAN + " "

// multiWANFromHistory reads the options of the latest multi-wan apply still in effect from the
// namespace's journals: its intent is the wizard's command line.
func multiWANFromHistory(inv *Invocation) (*wizards.MultiWANOptions, string, error) {
	store, err := kernel.OpenStore(inv.Namespace())
	if err != nil {
		return nil, "", err
	}
	js, err := store.List()
	if err != nil {
		return nil, "", err
	}
	for _, j := range slices.Backward(js) {
		if !j.Active() || !strings.HasPrefix(j.Intent, multiWANIntent) {
			continue
		}
		fs := flag.NewFlagSet("multi-wan", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		build := bindMultiWAN(fs)
		if err := fs.Parse(strings.Fields(strings.TrimPrefix(j.Intent, multiWANIntent))); err != nil {
			return nil, "", fmt.Errorf("reading the multi-wan options of journal %s (%q): %w: give them as flags (--wan ...)", j.ID, j.Intent, err)
		}
		w, err := build()
		if err != nil {
			return nil, "", err
		}
		return w.(*wizards.MultiWANOptions), j.ID, nil
	}
	return nil, "", Usagef("no --wan given, and roundtrip history%s has no multi-wan apply in effect: give the WANs as the wizard was given them (--wan IFACE:GATEWAY[:NAME] ...)", netnsFlag(inv))
}

// watchStatus prints the status the watcher of the namespace last wrote.
func watchStatus(inv *Invocation) error {
	s, err := watch.ReadLive(inv.Namespace())
	if err != nil {
		return err
	}
	if inv.JSON {
		return inv.PrintJSON(s)
	}
	_, err = io.WriteString(inv.Stdout, s.Text())
	return err
}
