// Package cli parses roundtrip's command line, dispatches to the commands and maps their
// outcome to the process exit code: the one place where exit codes and --json are decided.
package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel"
	"roundtrip/engine/model"
	"roundtrip/engine/quote"
)

// Exit codes. Scripts rely on them, so they only ever grow.
const (
	ExitOK       = 0 // success; for trace/doctor: nothing found
	ExitError    = 1 // the command failed
	ExitUsage    = 2 // bad command line
	ExitFindings = 3 // trace/doctor/diagnose ran and found problems of severity error
	// ExitIncomplete: doctor ran but could not read part of the host (netfilter without root,
	// iptables tools missing), so "no problems" would be a claim it cannot make. Problems found
	// in what it did read take precedence (ExitFindings).
	ExitIncomplete = 4
	// ExitInterrupted: Ctrl-C or SIGTERM stopped the command before it finished (128 + SIGINT,
	// as a shell reports a command a signal ended).
	ExitInterrupted = 130
)

// Version is set at build time with -ldflags "-X roundtrip/cmd/roundtrip/cli.Version=...".
var Version = "dev"

// Factory is what every command is built with (gh's cmdutil.Factory): the context and the
// streams of one run. Commands are built anew for every run (NewCmdX(f, runF)), so the
// options their flags fill start fresh each time, in tests that run many command lines in one
// process as on the command line.
type Factory struct {
	Ctx    context.Context
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Command is one subcommand. NewCmdX builds it around a fresh options struct: Flags binds the
// command's own flags to it, Run receives the parsed Invocation.
type Command struct {
	Name    string
	Usage   string // arguments after the name, e.g. "PROTO SRC[:PORT] DST[:PORT]"
	Summary string // one line for the command list
	Help    string // paragraphs shown by `roundtrip help NAME`
	// Offline marks read-only commands, which accept --snapshot FILE to work on a saved state.
	Offline bool
	// NoJSON marks commands without machine-readable output.
	NoJSON bool
	// Hidden commands are internal (the revert timer) and left out of the command list.
	Hidden bool
	// JSONHelp and SnapshotHelp say what --json and --snapshot mean for this command, when
	// that is more than the common words.
	JSONHelp, SnapshotHelp string
	Flags                  func(fs *flag.FlagSet)
	Run                    func(inv *Invocation) error
	// Subs are the command's subcommands (wizard NAME), named by its first argument; they take
	// the shared flags (--json, --netns, --snapshot) like any command. SubNoun names them in
	// messages ("wizard"). A command with Subs shows its Help alone for --help: it lists them.
	Subs    []*Command
	SubNoun string
	// PrintHelp replaces the generated --help (wizard NAME lists its flags in the documented
	// order, with examples).
	PrintHelp func(w io.Writer)
}

// Invocation is what a running command sees: its arguments, output streams and the common
// options.
type Invocation struct {
	*Factory
	Args     []string
	JSON     bool
	Snapshot string // --snapshot FILE: work on a saved state instead of the live host
	NetNS    string // --netns NAME: work on a named network namespace (like ip -n)
}

// Namespace is the network namespace the invocation works on.
func (inv *Invocation) Namespace() kernel.Namespace { return kernel.Namespace{Name: inv.NetNS} }

// State returns the host state: loaded from --snapshot, or read live from the kernel.
func (inv *Invocation) State() (*model.State, error) {
	if inv.Snapshot != "" {
		snap, err := model.LoadSnapshotFile(inv.Snapshot)
		if err != nil {
			return nil, err
		}
		return snap.State, nil
	}
	return kernel.Read(inv.Ctx, inv.Namespace())
}

// Live reports whether the invocation works on the live host rather than a snapshot.
func (inv *Invocation) Live() bool { return inv.Snapshot == "" }

// PrintJSON writes v as indented JSON.
func (inv *Invocation) PrintJSON(v any) error {
	enc := json.NewEncoder(inv.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// UsageError is a mistake on the command line; it exits with ExitUsage and shows the usage.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, a ...any) error { return &UsageError{fmt.Sprintf(format, a...)} }

// IncompleteError reports that a check completed on part of the host only. The command has
// already said what it could not read; the error only selects the exit code.
type IncompleteError struct{ NotRead []string }

func (e *IncompleteError) Error() string {
	return "incomplete: not read: " + strings.Join(e.NotRead, "; ")
}

// FindingsError reports that a diagnostic command completed and found problems. The command
// has already printed them; the error only selects the exit code.
type FindingsError struct{ Count int }

func (e *FindingsError) Error() string { return fmt.Sprintf("%d problem(s) found", e.Count) }

// constructors build the commands; each file registers its own from an init function.
var constructors []func(f *Factory) *Command

// RegisterNew adds a command's constructor (NewCmdX with runF nil), called for every run.
func RegisterNew(newCmd func(f *Factory) *Command) { constructors = append(constructors, newCmd) }

// Register adds a command built once, whose flags are bound to the same variables in every
// run; a command with flags is better built anew (RegisterNew).
func Register(c *Command) { RegisterNew(func(*Factory) *Command { return c }) }

// commandSet builds every command for one run.
func commandSet(f *Factory) map[string]*Command {
	cs := map[string]*Command{}
	for _, newCmd := range constructors {
		c := newCmd(f)
		if _, dup := cs[c.Name]; dup {
			panic("cli: command registered twice: " + c.Name)
		}
		cs[c.Name] = c
	}
	return cs
}

// Main runs roundtrip with the process's arguments and returns the exit code.
//
// Ctrl-C and SIGTERM cancel the context every command runs under; long loops look at it. A
// command that only reads (readOnly) and has not stopped within interruptGrace (it is inside
// something that cannot be cancelled, such as decoding a large snapshot) is left behind: the
// process ends anyway. A command that changes the host is always waited for: it undoes or
// journals what it started (kernel.Applier), however long that takes.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	args := os.Args[1:]
	done := make(chan int, 1)
	go func() { done <- Run(ctx, args, os.Stdin, os.Stdout, os.Stderr) }()
	select {
	case code := <-done:
		return code
	case <-ctx.Done():
	}
	if len(args) == 0 || !readOnly[args[0]] {
		return <-done
	}
	select {
	case code := <-done:
		return code
	case <-time.After(interruptGrace):
		reportInterrupted(os.Stderr, args[0])
		return ExitInterrupted
	}
}

// readOnly are the commands that change nothing (on the host or in files but their own
// output): when interrupted they may end without finishing what they were doing. Capture,
// diagnose and conntrack are not here: Ctrl-C is how they are ended, and they finish their
// summary and files on it.
var readOnly = map[string]bool{"doctor": true, "show": true, "snapshot": true, "trace": true, "plan": true, "history": true}

// interruptGrace is how long Main waits for an interrupted read-only command to stop on its own.
const interruptGrace = 500 * time.Millisecond

var interruptReported atomic.Bool

// reportInterrupted says, once, that the command was interrupted.
func reportInterrupted(w io.Writer, name string) {
	if interruptReported.CompareAndSwap(false, true) {
		fmt.Fprintf(w, "roundtrip %s: interrupted\n", name)
	}
}

// Run runs one command line; it is Main without the process around it, for tests.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	f := &Factory{Ctx: ctx, Stdin: stdin, Stdout: stdout, Stderr: stderr}
	commands := commandSet(f)
	if len(args) == 0 {
		if c, ok := commands["tui"]; ok && isTerminal(stdout) && isTerminal(stdin) {
			return run(f, nil, c, nil)
		}
		printCommands(stderr, commands)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				if sub := c.sub(args[2:]); sub != nil {
					printHelp(stdout, c, sub)
				} else {
					printHelp(stdout, nil, c)
				}
				return ExitOK
			}
			quote.TermFprintf(stderr, "roundtrip: unknown command %q\n", args[1])
			return ExitUsage
		}
		printCommands(stdout, commands)
		return ExitOK
	case "-v", "--version", "version":
		fmt.Fprintf(stdout, "roundtrip %s\n", Version)
		return ExitOK
	}
	c, ok := commands[name]
	if !ok {
		quote.TermFprintf(stderr, "roundtrip: unknown command %q\n\n", name)
		printCommands(stderr, commands)
		return ExitUsage
	}
	if len(c.Subs) == 0 {
		return run(f, nil, c, args[1:])
	}
	// A command of subcommands: the first argument names one.
	rest := args[1:]
	switch {
	case len(rest) == 0:
		return exitFor(f, c, Usagef("name a %s: %s", c.SubNoun, strings.Join(c.subNames(), ", ")))
	case rest[0] == "-h" || rest[0] == "--help" || rest[0] == "help":
		printHelp(stdout, nil, c)
		return ExitOK
	}
	sub := c.sub(rest)
	if sub == nil {
		return exitFor(f, c, Usagef("unknown %s %q: want one of %s", c.SubNoun, rest[0], strings.Join(c.subNames(), ", ")))
	}
	return run(f, c, sub, rest[1:])
}

// sub returns the subcommand args name, or nil.
func (c *Command) sub(args []string) *Command {
	if len(args) == 0 {
		return nil
	}
	for _, s := range c.Subs {
		if s.Name == args[0] {
			return s
		}
	}
	return nil
}

func (c *Command) subNames() []string {
	var out []string
	for _, s := range c.Subs {
		out = append(out, s.Name)
	}
	return out
}

// flagSet declares a command's flags: the shared ones (--json, --snapshot, --netns), declared
// here and nowhere else, bound to inv, then the command's own.
func flagSet(c *Command, inv *Invocation) *flag.FlagSet {
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if !c.NoJSON {
		fs.BoolVar(&inv.JSON, "json", false, cmp.Or(c.JSONHelp, "print machine-readable JSON"))
	}
	if c.Offline {
		fs.StringVar(&inv.Snapshot, "snapshot", "", cmp.Or(c.SnapshotHelp, "work offline on a snapshot `FILE` (from roundtrip snapshot)"))
	}
	fs.StringVar(&inv.NetNS, "netns", "", "work on the named network namespace `NAME` (as ip -n)")
	if c.Flags != nil {
		c.Flags(fs)
	}
	return fs
}

// run parses a command's flags and runs it. parent is the command of a subcommand (wizard for
// wizard tunnel), nil for a command of its own: messages and the usage line are the parent's.
func run(f *Factory, parent, c *Command, args []string) int {
	inv := &Invocation{Factory: f}
	fs := flagSet(c, inv)
	top := cmp.Or(parent, c)
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printHelp(f.Stdout, parent, c)
		return ExitOK
	}
	if err != nil {
		if parent != nil {
			err = Usagef("%s: %v (see roundtrip %s %s --help)", c.Name, err, parent.Name, c.Name)
		}
		fmt.Fprintf(f.Stderr, "roundtrip %s: %s\n", top.Name, quote.TermLines(err.Error()))
		printUsageLine(f.Stderr, top)
		return ExitUsage
	}
	if inv.Snapshot != "" && inv.NetNS != "" {
		fmt.Fprintf(f.Stderr, "roundtrip %s: --snapshot and --netns exclude each other: a snapshot is already one namespace's state\n", top.Name)
		return ExitUsage
	}
	if err := checkNetNSName(inv.NetNS); err != nil {
		fmt.Fprintf(f.Stderr, "roundtrip %s: %s\n", top.Name, quote.TermLines(err.Error()))
		printUsageLine(f.Stderr, top)
		return ExitUsage
	}
	inv.Args = pos
	return exitFor(f, top, c.Run(inv))
}

// exitFor reports a command's outcome and returns its exit code.
func exitFor(f *Factory, c *Command, err error) int {
	var ue *UsageError
	var fe *FindingsError
	var ie *IncompleteError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(f.Stderr, "roundtrip %s: %s\n", c.Name, quote.TermLines(err.Error()))
		printUsageLine(f.Stderr, c)
		return ExitUsage
	case errors.As(err, &fe):
		return ExitFindings
	case errors.As(err, &ie):
		return ExitIncomplete
	case errors.Is(err, context.Canceled) && f.Ctx.Err() != nil && (readOnly[c.Name] || strings.HasSuffix(err.Error(), context.Canceled.Error())):
		// A command that changes the host says itself what an interruption left (apply: "the
		// host is as it was"); one that only reads has nothing to say but that it stopped.
		reportInterrupted(f.Stderr, c.Name)
		return ExitInterrupted
	default:
		// Errors quote names from plans, snapshots and the host: escape them for the terminal.
		fmt.Fprintf(f.Stderr, "roundtrip %s: %s\n", c.Name, quote.TermLines(err.Error()))
		return ExitError
	}
}

// parseInterspersed lets flags follow positional arguments (`trace tcp A B --iif eth0`), as
// operators type them; "--" ends flag parsing. It is the one piece of parsing the standard
// library's flag package lacks (it stops at the first argument), used by every command.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at "--" and drops it; everything after it is positional.
		if len(args) >= len(rest)+1 && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func printCommands(w io.Writer, commands map[string]*Command) {
	fmt.Fprint(w, "roundtrip: policy routing, NAT and tunnels, and why a flow does not come back\n\nUsage:\n  roundtrip                 open the console (on a terminal)\n  roundtrip COMMAND [ARGS]  run one command; every command takes --help\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n, c := range commands {
		if !c.Hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].Summary)
	}
	fmt.Fprint(w, "\nExit codes: 0 ok, 1 error, 2 usage, 3 problems found (trace, doctor, diagnose),\n4 incomplete (doctor could not read everything, e.g. netfilter without root),\n130 interrupted (Ctrl-C or SIGTERM stopped the command).\n")
}

func printUsageLine(w io.Writer, c *Command) {
	fmt.Fprintf(w, "usage: roundtrip %s %s (see roundtrip %s --help)\n", c.Name, c.Usage, c.Name)
}

// printHelp prints --help of c (a subcommand of parent, when parent is not nil).
func printHelp(w io.Writer, parent, c *Command) {
	if c.PrintHelp != nil {
		c.PrintHelp(w)
		return
	}
	name := c.Name
	if parent != nil {
		name = parent.Name + " " + c.Name
	}
	fmt.Fprintf(w, "usage: roundtrip %s %s\n\n%s\n", name, c.Usage, c.Summary)
	if len(c.Subs) > 0 {
		// The help lists the subcommands and the flags they share.
		fmt.Fprintf(w, "\n%s", c.Help)
		return
	}
	if c.Help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.Help))
	}
	fs := flagSet(c, &Invocation{})
	fmt.Fprint(w, "\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if len(f.Name) == 1 {
			line = "  -" + f.Name
		}
		if name != "" {
			line += " " + name
		}
		switch f.DefValue {
		case "", "false", "0", "0s", "[]":
			// Zero values are not worth a "(default ...)".
		default:
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "%-28s %s\n", line, usage)
	})
}

// isTerminal reports whether v is a terminal (a tty, not just any character device such as
// /dev/null).
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
