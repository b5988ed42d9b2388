package cli

import (
	"flag"

	"roundtrip/ui"
)

func init() { RegisterNew(func(f *Factory) *Command { return NewCmdTUI(f, nil) }) }

// TUIOptions are the options of one run of roundtrip tui: fresh for every run.
type TUIOptions struct {
	*Invocation
	noMouse bool
}

// NewCmdTUI returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdTUI(f *Factory, runF func(*TUIOptions) error) *Command {
	opts := &TUIOptions{}
	return &Command{
		Name:    "tui",
		Usage:   "[--netns NAME | --snapshot FILE] [--no-mouse]",
		Summary: "open the console (what roundtrip alone does on a terminal)",
		Help: `The console an operator lives in over SSH: an overview with the doctor's findings,
the policy rules and every table's routes (filter by address or prefix), NAT rules
per hook with counters, the conntrack table live, Diagnose (trace a flow and see the
request and the reply side by side, with a live capture), and the wizards, with the
plan as a script and as a diff, applied with a confirmation window.

It works inside ip netns exec, on a named namespace (--netns), and on a snapshot
(--snapshot: read-only). Colours follow the terminal and NO_COLOR. Press ? for the
keys.`,
		Offline: true,
		NoJSON:  true,
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&opts.noMouse, "no-mouse", false, "leave the mouse to the terminal (to select text)")
		},
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			noMouse := opts.noMouse
			if len(inv.Args) > 0 {
				return Usagef("tui takes no arguments, got %q", inv.Args[0])
			}
			return ui.Run(inv.Ctx, ui.Options{Namespace: inv.NetNS, Snapshot: inv.Snapshot, NoMouse: noMouse})
		},
	}
}
