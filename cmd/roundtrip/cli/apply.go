package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"roundtrip/engine/apply"
	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/plan"
	"roundtrip/engine/quote"
)

func init() {
	RegisterNew(func(f *Factory) *Command { return NewCmdApply(f, nil) })
	RegisterNew(func(f *Factory) *Command { return NewCmdConfirm(f, nil) })
	RegisterNew(func(f *Factory) *Command { return NewCmdRollback(f, nil) })
	RegisterNew(func(f *Factory) *Command { return NewCmdHistory(f, nil) })
	RegisterNew(func(f *Factory) *Command { return NewCmdPlan(f, nil) })
	RegisterNew(func(f *Factory) *Command { return NewCmdRevertTimer(f, nil) })
}

// defaultLockWait is how long apply, confirm and rollback wait for another roundtrip that is
// changing the same namespace.
const defaultLockWait = 10 * time.Second

// netnsFlag repeats --netns in the commands roundtrip tells the user to run next.
func netnsFlag(inv *Invocation) string {
	if inv.NetNS == "" {
		return ""
	}
	return " --netns " + inv.NetNS
}

// ApplyOptions are the options of one run of roundtrip apply: fresh for every run.
type ApplyOptions struct {
	*Invocation
	confirm  time.Duration
	wait     bool
	force    bool
	dryRun   bool
	lockWait time.Duration
}

// NewCmdApply returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdApply(f *Factory, runF func(*ApplyOptions) error) *Command {
	opts := &ApplyOptions{}
	return &Command{
		Name:    "apply",
		Usage:   "PLAN|- [--confirm DURATION] [--wait] [--dry-run] [--force]",
		Summary: "apply a plan, journaled and reversible; with --confirm, revert unless confirmed",
		Help: `Applies the changes of PLAN (a plan file written by a wizard, or - for standard
input) that are not yet in effect: applying a plan twice changes nothing. The plan is
checked against the host first (unknown interfaces, gateways that are not on-link, table
name clashes, rules iptables would refuse): a plan that does not fit changes nothing. Every step is journaled before the next;
if one fails, the completed ones are undone and the host is left as it was.

--confirm 2m starts a timer in a detached process that rolls the apply back after two
minutes unless ` + "`roundtrip confirm`" + ` runs first: open a new SSH session to check that you can
still get in, and confirm from there. The timer survives the end of this process and of the
SSH session. On a terminal (or with --wait) apply shows the countdown and keeps the changes
when you type yes. --confirm 0s is refused: leave --confirm out to apply without a timer. If
the timer process is killed, roundtrip says so (history, confirm, apply); once the deadline
has passed, the next apply or rollback reverts the changes, and confirm still keeps them.

Over SSH (SSH_CONNECTION set), apply simulates the plan and refuses a plan that changes the
route back to your SSH client, unless --confirm (or --force) is given.

The plan is read change by change and applied in steps of up to 4096 routes or rules, sent
to the kernel pipelined; memory does not grow with the plan. Ctrl-C (or SIGTERM) stops the
apply within a second and undoes what it did.`,
		Flags: func(fs *flag.FlagSet) {
			fs.Var(confirmFlag{&opts.confirm}, "confirm", "roll back after `DURATION` unless roundtrip confirm runs")
			fs.BoolVar(&opts.wait, "wait", false, "with --confirm: wait for the confirmation (the default on a terminal)")
			fs.BoolVar(&opts.force, "force", false, "apply even if the route back to your SSH session changes")
			fs.BoolVar(&opts.dryRun, "dry-run", false, "check the plan and show the steps without changing anything")
			fs.DurationVar(&opts.lockWait, "lock-wait", defaultLockWait, "wait up to `DURATION` for another apply to finish")
		},
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			confirm, wait, force, dryRun, lockWait := opts.confirm, opts.wait, opts.force, opts.dryRun, opts.lockWait
			if len(inv.Args) != 1 {
				return Usagef("apply needs one plan file")
			}
			// Streamed: a plan of a million routes is never held whole.
			src, err := openPlan(inv, inv.Args[0])
			if err != nil {
				return err
			}
			defer src.Close()
			return applyPlan(inv, src, applyChoices{Confirm: confirm, Wait: wait, Force: force, DryRun: dryRun, LockWait: lockWait})
		},
	}
}

// applyChoices are the options of one apply, shared by `roundtrip apply` and the wizards'
// --apply.
type applyChoices struct {
	Confirm             time.Duration
	Wait, Force, DryRun bool
	LockWait            time.Duration
}

// confirmFlag is --confirm: a duration of at least 1s. 0s and negative durations are refused:
// a zero window would apply for good, which is what leaving --confirm out says.
type confirmFlag struct{ d *time.Duration }

func (c confirmFlag) String() string {
	if c.d == nil || *c.d == 0 {
		return ""
	}
	return c.d.String()
}

func (c confirmFlag) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is not a duration (for example 2m)", v)
	}
	if d <= 0 {
		return fmt.Errorf("%s: give a positive duration, for example 2m (leave --confirm out to apply without a timer)", v)
	}
	if d < time.Second {
		return fmt.Errorf("%s: give at least 1s (for example 2m)", v)
	}
	*c.d = d
	return nil
}

// applyPlan applies a plan to the invocation's namespace: a dry run or the journaled apply
// (with its revert timer, and the SSH lockout check the Applier makes), and the report.
// `roundtrip apply` and every wizard's --apply go through it.
func applyPlan(inv *Invocation, src plan.Source, o applyChoices) error {
	a := &kernel.Applier{NS: inv.Namespace(), LockWait: o.LockWait}
	if !inv.JSON {
		a.Log = inv.Stderr
	}
	opts := kernel.ApplyOptions{Confirm: o.Confirm, Force: o.Force}
	if o.DryRun {
		// A dry run is "check this plan": check all of it on its own first, so that a bad plan
		// is named as such whatever the namespace (an apply checks it before its first change
		// too, after taking the namespace's lock).
		if err := src.Each(func(int, plan.Change) error { return nil }); err != nil {
			return err
		}
		return lockoutMessage(inv, dryRunApply(inv, a, src, opts))
	}
	// What an apply holds does not grow with the plan (8 bytes a route), but it allocates as
	// it goes: collect less often, for some 10% of a full table's load time and ~10 MB more.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(150)
	}
	// A dropped SSH session must not kill the apply between two steps; the journal and the
	// revert timer cover a kill, but finishing is better. Ctrl-C and SIGTERM cancel inv.Ctx:
	// the Applier stops and undoes what it did.
	signal.Ignore(syscall.SIGHUP)
	res, err := a.ApplySource(inv.Ctx, src, opts)
	signal.Reset(syscall.SIGHUP)
	if err != nil {
		return lockoutMessage(inv, err)
	}
	if !inv.JSON {
		for _, n := range res.Notes {
			quote.TermFprintf(inv.Stderr, "note: %s\n", n)
		}
	}
	if res.Lockout != nil {
		quote.TermFprintf(inv.Stderr, "warning: %s; it reverts unless confirmed\n", res.Lockout.Reason)
	}
	return reportApply(inv, res, o.Confirm > 0 && (o.Wait || isTerminal(inv.Stdin)))
}

// lockoutMessage words the Applier's SSH lockout refusal in the command line's terms.
func lockoutMessage(inv *Invocation, err error) error {
	var le *kernel.LockoutError
	if !errors.As(err, &le) {
		return err
	}
	return fmt.Errorf("refusing to apply over SSH: %s, which may cut you off; apply with --confirm 2m (it reverts unless you run `roundtrip confirm%s` from a new SSH session), or with --force if you have another way in", le.Lockout.Reason, netnsFlag(inv))
}

func dryRunApply(inv *Invocation, a *kernel.Applier, src plan.Source, opts kernel.ApplyOptions) error {
	prep, err := a.Prepare(inv.Ctx, src, opts)
	if err != nil {
		return err
	}
	if inv.JSON {
		return inv.PrintJSON(struct {
			Changes int               `json:"changes"`
			Pending int               `json:"pending"`
			Steps   []kernel.StepInfo `json:"steps"`
		}{prep.Changes, prep.Pending, prep.Steps})
	}
	if prep.Lockout != nil {
		quote.TermFprintf(inv.Stderr, "warning: %s; it reverts unless confirmed\n", prep.Lockout.Reason)
	}
	if len(prep.Steps) == 0 {
		fmt.Fprintln(inv.Stdout, "nothing to do: every change of the plan is already in effect")
		return nil
	}
	fmt.Fprintf(inv.Stdout, "would apply %d step(s) (%d of %d changes are not in effect yet):\n", len(prep.Steps), prep.Pending, prep.Changes)
	for i, s := range prep.Steps {
		quote.TermFprintf(inv.Stdout, "  %d. %s\n", i+1, s.Summary)
	}
	return nil
}

type applyJSON struct {
	NoOp      bool      `json:"noop"`
	Journal   string    `json:"journal,omitempty"`
	Steps     int       `json:"steps"`
	Status    string    `json:"status,omitempty"`
	ConfirmBy time.Time `json:"confirm_by,omitzero"`
	Drift     []string  `json:"drift,omitempty"`
}

func reportApply(inv *Invocation, res *kernel.Result, wait bool) error {
	if res.NoOp {
		if inv.JSON {
			return inv.PrintJSON(applyJSON{NoOp: true})
		}
		fmt.Fprintln(inv.Stdout, "nothing to do: every change of the plan is already in effect")
		return nil
	}
	j := res.Journal
	if inv.JSON {
		if err := inv.PrintJSON(applyJSON{Journal: j.ID, Steps: j.Steps, Status: j.Status, ConfirmBy: j.ConfirmBy, Drift: res.Drift}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(inv.Stdout, "applied %d step(s) (journal %s); undo with: roundtrip rollback%s\n", j.Steps, j.ID, netnsFlag(inv))
		if len(res.Drift) > 0 {
			fmt.Fprintln(inv.Stdout, "warning: reading the state back, some changes are not as planned (changed meanwhile, or read back differently):")
			for _, d := range res.Drift {
				quote.TermFprintf(inv.Stdout, "  %s\n", d)
			}
		}
		if !j.ConfirmBy.IsZero() {
			fmt.Fprintf(inv.Stdout, "the changes revert at %s (in %s) unless you run: roundtrip confirm%s\n",
				j.ConfirmBy.Local().Format("15:04:05"), time.Until(j.ConfirmBy).Round(time.Second), netnsFlag(inv))
		}
	}
	if !wait || j.ConfirmBy.IsZero() {
		return nil
	}
	return waitForConfirm(inv, j)
}

// waitForConfirm shows the countdown of a pending apply and confirms it when the operator types
// yes. It returns when the apply is confirmed (here or by `roundtrip confirm` elsewhere), when
// the timer rolls it back (an error), or when it is interrupted (the timer stays armed).
func waitForConfirm(inv *Invocation, j *apply.Journal) error {
	store, err := kernel.OpenStore(inv.Namespace())
	if err != nil {
		return err
	}
	answers := make(chan string)
	go func() {
		sc := bufio.NewScanner(inv.Stdin)
		for sc.Scan() {
			answers <- strings.TrimSpace(strings.ToLower(sc.Text()))
		}
		close(answers)
	}()
	term := isTerminal(inv.Stderr)
	if !term {
		fmt.Fprintf(inv.Stderr, "waiting for confirmation until %s: type yes and Enter, or run roundtrip confirm%s\n", j.ConfirmBy.Local().Format("15:04:05"), netnsFlag(inv))
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		cur, err := store.Load(j.ID)
		if err != nil {
			return err
		}
		switch cur.Status {
		case kernel.StatusConfirmed:
			if term {
				fmt.Fprintln(inv.Stderr)
			}
			fmt.Fprintln(inv.Stdout, "confirmed: the changes stay")
			return nil
		case kernel.StatusRolledBack, kernel.StatusRollbackFailed:
			if term {
				fmt.Fprintln(inv.Stderr)
			}
			return fmt.Errorf("the changes were rolled back (%s)", cur.Reason)
		}
		if cur.TimerDead {
			if term {
				fmt.Fprintln(inv.Stderr)
			}
			return fmt.Errorf("the revert timer of journal %s (pid %d) died, so nothing will revert the changes at %s: run roundtrip confirm%s to keep them or roundtrip rollback%s to undo them",
				cur.ID, cur.TimerPID(), cur.ConfirmBy.Local().Format("15:04:05"), netnsFlag(inv), netnsFlag(inv))
		}
		if term {
			left := max(time.Until(cur.ConfirmBy).Round(time.Second), 0)
			fmt.Fprintf(inv.Stderr, "\rreverting in %s: type yes and Enter to keep the changes ", left)
		}
		select {
		case a, ok := <-answers:
			if !ok {
				answers = nil // no more input; the timer or `roundtrip confirm` decides
				continue
			}
			if a == "yes" || a == "y" {
				if _, err := kernel.Confirm(inv.Ctx, inv.Namespace(), j.ID, defaultLockWait); err != nil {
					return err
				}
			}
		case <-tick.C:
		case <-inv.Ctx.Done():
			fmt.Fprintf(inv.Stderr, "\nstopped waiting: the changes still revert at %s unless you run roundtrip confirm%s\n", j.ConfirmBy.Local().Format("15:04:05"), netnsFlag(inv))
			return nil
		}
	}
}

// ConfirmOptions are the options of one run of roundtrip confirm: fresh for every run.
type ConfirmOptions struct {
	*Invocation
	lockWait time.Duration
}

// NewCmdConfirm returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdConfirm(f *Factory, runF func(*ConfirmOptions) error) *Command {
	opts := &ConfirmOptions{}
	return &Command{
		Name:    "confirm",
		Usage:   "[JOURNAL]",
		Summary: "keep the changes of an apply --confirm before its timer reverts them",
		Flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&opts.lockWait, "lock-wait", defaultLockWait, "wait up to `DURATION` for another apply to finish")
		},
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			lockWait := opts.lockWait
			if len(inv.Args) > 1 {
				return Usagef("confirm takes at most one journal id")
			}
			id := ""
			if len(inv.Args) == 1 {
				id = inv.Args[0]
			}
			j, err := kernel.Confirm(inv.Ctx, inv.Namespace(), id, lockWait)
			if err != nil {
				return err
			}
			if inv.JSON {
				return inv.PrintJSON(historyEntry(j))
			}
			if j.TimerDead {
				fmt.Fprintf(inv.Stderr, "note: the revert timer of %s (pid %d) had died: nothing would have reverted the changes\n", j.ID, j.TimerPID())
			}
			quote.TermFprintf(inv.Stdout, "confirmed %s (%s): the changes stay\n", j.ID, j.Intent)
			return nil
		},
	}
}

// RollbackOptions are the options of one run of roundtrip rollback: fresh for every run.
type RollbackOptions struct {
	*Invocation
	lockWait time.Duration
}

// NewCmdRollback returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdRollback(f *Factory, runF func(*RollbackOptions) error) *Command {
	opts := &RollbackOptions{}
	return &Command{
		Name:    "rollback",
		Usage:   "[JOURNAL]",
		Summary: "undo the last apply (or finish undoing an interrupted one)",
		Help: `Undoes the most recent apply in this namespace, step by step in reverse, from its
journal. An apply that was interrupted (the machine or the process died) is rolled back
from the step it had reached. Only the most recent active apply can be rolled back; roll
back later ones first. Journals are per network namespace: with --netns X (or under
ip netns exec X) only X is touched.

It also removes the temporary nf_tables trace tables (inet roundtrip_trace_...) that a
capture or diagnose killed before it could clean up left in the namespace, and their
records in the state directory.`,
		Flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&opts.lockWait, "lock-wait", defaultLockWait, "wait up to `DURATION` for another apply to finish")
		},
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			lockWait := opts.lockWait
			if len(inv.Args) > 1 {
				return Usagef("rollback takes at most one journal id")
			}
			id := ""
			if len(inv.Args) == 1 {
				id = inv.Args[0]
			}
			removed := removeTraceTables(inv)
			a := &kernel.Applier{NS: inv.Namespace(), LockWait: lockWait}
			if !inv.JSON {
				a.Log = inv.Stderr
			}
			j, err := a.Rollback(inv.Ctx, id, "roundtrip rollback")
			if errors.Is(err, kernel.ErrNothingToRollBack) && id == "" && len(removed) > 0 {
				// The trace tables were what was left to undo.
				if inv.JSON {
					return inv.PrintJSON(map[string]any{"trace_tables_removed": removed})
				}
				return nil
			}
			if err != nil {
				return err
			}
			if inv.JSON {
				return inv.PrintJSON(historyEntry(j))
			}
			quote.TermFprintf(inv.Stdout, "rolled back %s (%s): %d step(s) undone\n", j.ID, j.Intent, len(j.Undone))
			return nil
		},
	}
}

// historyJSON is one journal in `history --json`.
type historyJSON struct {
	ID        string    `json:"id"`
	Started   time.Time `json:"started"`
	Intent    string    `json:"intent"`
	Status    string    `json:"status"`
	Steps     int       `json:"steps"`
	ConfirmBy time.Time `json:"confirm_by,omitzero"`
	Reason    string    `json:"reason,omitempty"`
	Errors    []string  `json:"errors,omitempty"`
	Drift     []string  `json:"drift,omitempty"`
	// TimerDead: waiting for confirmation, but the revert timer is gone.
	TimerDead bool `json:"timer_dead,omitempty"`
	// Problem: why an unreadable journal is skipped.
	Problem string `json:"problem,omitempty"`
	Path    string `json:"path,omitempty"`
}

func historyEntry(j *kernel.Journal) historyJSON {
	h := historyJSON{ID: j.ID, Started: j.Head.Started, Intent: j.Intent, Status: j.Status, Steps: j.Steps,
		ConfirmBy: j.ConfirmBy, Reason: j.Reason, Errors: j.Errors, Drift: j.Drift, TimerDead: j.TimerDead, Problem: j.Problem}
	if j.Problem != "" {
		h.Path = j.Path
	}
	return h
}

// HistoryOptions are the options of one run of roundtrip history: fresh for every run.
type HistoryOptions struct {
	*Invocation
}

// NewCmdHistory returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdHistory(f *Factory, runF func(*HistoryOptions) error) *Command {
	opts := &HistoryOptions{}
	return &Command{
		Name:    "history",
		Usage:   "",
		Summary: "list the applies made in this namespace, with their status",
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			if len(inv.Args) > 0 {
				return Usagef("history takes no arguments")
			}
			store, err := kernel.OpenStore(inv.Namespace())
			if err != nil {
				return err
			}
			js, err := store.List()
			if err != nil {
				return err
			}
			if inv.JSON {
				out := []historyJSON{}
				for _, j := range js {
					out = append(out, historyEntry(j))
				}
				return inv.PrintJSON(out)
			}
			if len(js) == 0 {
				fmt.Fprintln(inv.Stdout, "no applies in this namespace yet")
				return nil
			}
			for _, j := range js {
				fmt.Fprintln(inv.Stdout, quote.Term(j.String()))
				for _, e := range j.Errors {
					quote.TermFprintf(inv.Stdout, "    %s\n", e)
				}
			}
			return nil
		},
	}
}

// planFormats are the renderings of `plan render`.
var planFormats = []string{"script", "iptables-restore", "ip6tables-restore", "nft", "systemd", "networkd", "json"}

// PlanOptions are the options of one run of roundtrip plan: fresh for every run.
type PlanOptions struct {
	*Invocation
	format     string
	name       string
	scriptPath string
}

// NewCmdPlan returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdPlan(f *Factory, runF func(*PlanOptions) error) *Command {
	opts := &PlanOptions{}
	return &Command{
		Name:    "plan",
		Usage:   "show PLAN | render PLAN --format " + strings.Join(planFormats, "|"),
		Summary: "preview a plan: its changes against this host, or as a script, iptables-restore, nft or systemd file",
		Help: `plan show PLAN checks the plan against the host (or --snapshot) and lists each change,
marked with whether it is already in effect.
plan render PLAN --format F prints one rendering of the same changes:
  script             an idempotent POSIX shell script of ip, iptables and conntrack commands
  iptables-restore   roundtrip's IPv4 chains as one iptables-restore --noflush transaction,
                     computed against the current rules (ip6tables-restore: IPv6)
  nft                roundtrip's chains as native nftables tables for nft -f
  systemd            a service that re-applies the script at boot (--name, --script-path)
  networkd           what systemd-networkd and sysctl.d can express, as file snippets
  json               the plan file, normalized`,
		Offline: true,
		NoJSON:  true,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&opts.format, "format", "script", "rendering `FORMAT`: "+strings.Join(planFormats, ", "))
			fs.StringVar(&opts.name, "name", "roundtrip-plan", "systemd: the service `NAME`")
			fs.StringVar(&opts.scriptPath, "script-path", "/etc/roundtrip/plan.sh", "systemd: where the script is installed (`PATH`)")
		},
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			format, name, scriptPath := opts.format, opts.name, opts.scriptPath
			if len(inv.Args) != 2 || (inv.Args[0] != "show" && inv.Args[0] != "render") {
				return Usagef("want plan show PLAN or plan render PLAN --format FORMAT")
			}
			p, err := loadPlan(inv, inv.Args[1], false)
			if err != nil {
				return err
			}
			if inv.Args[0] == "show" {
				return showPlan(inv, p)
			}
			var out []byte
			switch format {
			case "script":
				out = p.Script()
			case "iptables-restore", "ip6tables-restore":
				st, err := inv.State()
				if err != nil {
					return err
				}
				f := inet.V4
				if format == "ip6tables-restore" {
					f = inet.V6
				}
				out = p.IPTablesRestore(f, st)
			case "nft":
				if out, err = p.NFT(); err != nil {
					return err
				}
			case "systemd":
				if out, err = p.SystemdUnit(name, scriptPath); err != nil {
					return err
				}
			case "networkd":
				if out, err = p.Networkd(); err != nil {
					return err
				}
			case "json":
				if out, err = p.Marshal(); err != nil {
					return err
				}
			default:
				return Usagef("unknown format %q: want one of %s", format, strings.Join(planFormats, ", "))
			}
			_, err = inv.Stdout.Write(out)
			return err
		},
	}
}

func showPlan(inv *Invocation, p *plan.Plan) error {
	st, err := inv.State()
	if err != nil {
		return err
	}
	quote.TermFprintf(inv.Stdout, "plan: %s (%d changes)\n", p.Intent, len(p.Changes))
	if err := p.Validate(st); err != nil {
		return err
	}
	pending := 0
	for i, c := range p.Changes {
		mark := "pending  "
		if c.Kind != plan.KindConntrack && c.InEffect(st) {
			mark = "in effect"
		} else {
			pending++
		}
		quote.TermFprintf(inv.Stdout, "  %2d. [%s] %s\n", i+1, mark, c.Summary())
		if c.Why != "" {
			quote.TermFprintf(inv.Stdout, "      why: %s\n", c.Why)
		}
	}
	if pending == 0 {
		fmt.Fprintln(inv.Stdout, "everything is in effect: applying it changes nothing")
	}
	if conn := os.Getenv("SSH_CONNECTION"); conn != "" {
		if sess, err := plan.ParseSSHConnection(conn); err == nil {
			lo := plan.CheckLockout(st, p.Expect(st), sess)
			if lo.Applies {
				quote.TermFprintf(inv.Stdout, "SSH: %s\n", lo.Reason)
			}
		}
	}
	return nil
}

// RevertTimerOptions are the options of one run of roundtrip revert-timer: fresh for every run.
type RevertTimerOptions struct {
	*Invocation
	id    string
	after time.Duration
}

// NewCmdRevertTimer returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdRevertTimer(f *Factory, runF func(*RevertTimerOptions) error) *Command {
	opts := &RevertTimerOptions{}
	return &Command{
		Name:    kernel.RevertTimerCommand,
		Usage:   "--journal ID --after DURATION",
		Summary: "internal: the detached timer of apply --confirm",
		Hidden:  true,
		NoJSON:  true,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&opts.id, "journal", "", "the journal `ID` to revert")
			fs.DurationVar(&opts.after, "after", 0, "the confirmation `DURATION`")
		},
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			id, after := opts.id, opts.after
			if id == "" || after <= 0 {
				return Usagef("want --journal ID --after DURATION")
			}
			// The session this timer protects may end at any time; its SIGHUP must not.
			signal.Ignore(syscall.SIGHUP)
			err := kernel.RunRevertTimer(inv.Ctx, inv.Namespace(), id, after)
			if errors.Is(err, context.Canceled) {
				return nil // stopped by roundtrip confirm
			}
			return err
		},
	}
}
