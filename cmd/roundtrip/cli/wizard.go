package cli

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/quote"
	"roundtrip/engine/safefile"
	"roundtrip/wizards"
)

func init() { RegisterNew(func(f *Factory) *Command { return NewCmdWizard(f, nil) }) }

// fieldFlag is the flag of one wizard field (wizards.Field): each occurrence is checked by
// the field and recorded in the run's values, in order.
type fieldFlag struct {
	f *wizards.Field
	v *wizards.Values
}

func (x fieldFlag) String() string {
	if x.f == nil {
		return ""
	}
	return x.f.Default
}

func (x fieldFlag) Set(s string) error { return x.v.Add(x.f.Name, s) }

// boolFieldFlag is the flag of a Bool field: given bare.
type boolFieldFlag struct{ fieldFlag }

func (boolFieldFlag) IsBoolFlag() bool { return true }

func (boolFieldFlag) String() string { return "false" }

// bindFields declares the flags of a wizard's fields on fs; what they are given goes into v.
func bindFields(fs *flag.FlagSet, s *wizards.Spec, v *wizards.Values) {
	for i := range s.Fields {
		f := &s.Fields[i]
		usage := f.Help
		switch f.Kind {
		case wizards.List:
			repeated(fs, f.Name, usage, func(val string) error { return v.Add(f.Name, val) })
		case wizards.Bool:
			fs.Var(boolFieldFlag{fieldFlag{f, v}}, f.Name, usage)
		default:
			fs.Var(fieldFlag{f, v}, f.Name, usage)
		}
	}
}

// buildWizard turns the values of a command line into the wizard's options. A mistake in them
// is a usage error; so is a --route-list file that cannot be read, is empty or is not a list:
// it is part of the command line, found before anything is planned (the console leaves the
// reading to the wizard's Validate, inside a command).
func buildWizard(s *wizards.Spec, v *wizards.Values) (wizards.Wizard, error) {
	w, err := s.Build(v)
	if err != nil {
		return nil, Usagef("%v", err)
	}
	if o, ok := w.(*wizards.MultiWANOptions); ok {
		for i := range o.RouteLists {
			rl := &o.RouteLists[i]
			if rl.Prefixes != nil || rl.File == "" {
				continue
			}
			ps, err := wizards.LoadRouteList(rl.File)
			if err != nil {
				return nil, Usagef("--route-list %s=%s: %v", rl.WAN, rl.File, err)
			}
			rl.Prefixes = ps
		}
	}
	return w, nil
}

// NewCmdWizard returns the wizard command: a subcommand per wizard (wizards.Specs), each
// built by newCmdWizardRun. runF, when not nil, runs instead of a wizard with its options
// parsed.
func NewCmdWizard(f *Factory, runF func(*WizardOptions) error) *Command {
	var help strings.Builder
	help.WriteString("Wizards turn an intent into a plan for this host, checked against it first (interfaces,\n" +
		"gateways, ports, rules and tables already there). By default the plan is printed as an\n" +
		"idempotent shell script (with the other end's script, when there is one, in a part that\n" +
		"does not run here); --apply applies it as `roundtrip apply` does, journaled and reversible.\n\nWizards:\n")
	for _, s := range wizards.Specs() {
		fmt.Fprintf(&help, "  %-14s %s\n", s.Name, s.Summary)
	}
	help.WriteString("\nEach takes --help for its flags and examples, and these:\n" + wizardCommonHelp)
	c := &Command{
		Name:    "wizard",
		Usage:   "NAME [flags]",
		Summary: "plan a setup for a field case: source-return, multi-wan, port-forward, snat-gateway, tunnel",
		Help:    help.String(),
		SubNoun: "wizard",
	}
	for _, s := range wizards.Specs() {
		c.Subs = append(c.Subs, newCmdWizardRun(f, s, runF))
	}
	return c
}

// WizardOptions are the options of one run of roundtrip wizard NAME: fresh for every run.
type WizardOptions struct {
	*Invocation
	Spec   *wizards.Spec
	Values *wizards.Values // the wizard's own flags, as given
	wizardCommon
}

// newCmdWizardRun returns the command of one wizard: its flags are those its description
// (wizards.Spec) declares and those every wizard takes.
func newCmdWizardRun(f *Factory, s *wizards.Spec, runF func(*WizardOptions) error) *Command {
	opts := &WizardOptions{Spec: s, Values: s.NewValues()}
	return &Command{
		Name:         s.Name,
		Usage:        s.Usage,
		Summary:      s.Summary,
		Offline:      true,
		JSONHelp:     "print the plan, the peer's plan and the notes as JSON",
		SnapshotHelp: "plan against a saved state `FILE` instead of the live host",
		Flags: func(fs *flag.FlagSet) {
			opts.wizardCommon.bind(fs, opts.Invocation)
			bindFields(fs, s, opts.Values)
		},
		PrintHelp: func(w io.Writer) { printWizardHelp(w, s) },
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			return runWizard(opts)
		},
	}
}

const wizardCommonHelp = `  --apply                apply the plan (journaled; undo with roundtrip rollback)
  --confirm DURATION     with --apply: roll back after DURATION unless roundtrip confirm runs
  --wait                 with --confirm: wait here for the confirmation
  --force                with --apply over SSH: apply even if the route back to you changes
  --lock-wait DURATION   wait up to DURATION for another apply to finish (default 10s)
  -o FILE                save the plan (for roundtrip apply FILE, plan show, plan render)
  --peer-out FILE        save the other end's script
  --iptables-backend B   write iptables rules into legacy or nft (default: where the host's own are)
  --firewall F           write netfilter rules into nft (roundtrip's own table inet roundtrip)
                         or iptables (default: nft when the host's firewall is native nftables
                         and it has no iptables rules)
  --json                 print the plan, the other end's plan and the notes as JSON
  --netns NAME           work on the named network namespace (as ip -n)
  --snapshot FILE        plan against a saved state instead of the live host
`

// wizardCommon are the flags every wizard takes.
type wizardCommon struct {
	apply, wait, force bool
	confirm, lockWait  time.Duration
	out, peerOut       string
	backend            string // --iptables-backend
	firewall           string // --firewall
}

// bind declares the flags every wizard takes besides the shared ones (--json, --netns and
// --snapshot, declared for every command in flagSet).
func (c *wizardCommon) bind(fs *flag.FlagSet, _ *Invocation) {
	fs.BoolVar(&c.apply, "apply", false, "apply the plan (journaled; undo with roundtrip rollback)")
	fs.Var(confirmFlag{&c.confirm}, "confirm", "with --apply: roll back after `DURATION` unless roundtrip confirm runs")
	fs.BoolVar(&c.wait, "wait", false, "with --confirm: wait here for the confirmation")
	fs.BoolVar(&c.force, "force", false, "with --apply over SSH: apply even if the route back to you changes")
	fs.DurationVar(&c.lockWait, "lock-wait", defaultLockWait, "wait up to `DURATION` for another apply to finish")
	fs.StringVar(&c.out, "o", "", "save the plan to `FILE`")
	fs.StringVar(&c.peerOut, "peer-out", "", "save the other end's script to `FILE`")
	fs.StringVar(&c.firewall, "firewall", "", "write netfilter rules into `FIREWALL` nft (roundtrip's own table) or iptables (default: nft on a native-nftables host without iptables rules)")
	fs.StringVar(&c.backend, "iptables-backend", "", "write iptables rules into `BACKEND` legacy or nft (default: the backend the host's own rules use)")
}

// iptablesBackend reads --iptables-backend: "" (follow the host), legacy or nft.
func iptablesBackend(v string) (string, error) {
	switch v {
	case "":
		return "", nil
	case "legacy":
		return iptables.BackendLegacy, nil
	case "nft", "nf_tables":
		return iptables.BackendNFT, nil
	}
	return "", Usagef("--iptables-backend %q: want legacy or nft", v)
}

func runWizard(o *WizardOptions) error {
	inv, spec, common, pos := o.Invocation, o.Spec, &o.wizardCommon, o.Args
	if len(pos) > 0 {
		return Usagef("%s takes no arguments besides its flags, got %q", spec.Name, strings.Join(pos, " "))
	}
	if common.apply && inv.Snapshot != "" {
		return Usagef("--apply changes the live host: it cannot be combined with --snapshot")
	}
	if (common.confirm != 0 || common.wait || common.force) && !common.apply {
		return Usagef("--confirm, --wait and --force go with --apply")
	}
	w, err := buildWizard(spec, o.Values)
	if err != nil {
		return err
	}
	backend, err := iptablesBackend(common.backend)
	if err != nil {
		return err
	}
	st, err := inv.State()
	if err != nil {
		return err
	}
	st.Netfilter.WriteBackend = backend
	switch common.firewall {
	case "", model.FirewallNFT, model.FirewallIPTables:
		st.WriteFirewall = common.firewall
	default:
		return Usagef("--firewall %q: want nft or iptables", common.firewall)
	}
	if common.firewall == model.FirewallNFT && common.backend != "" {
		return Usagef("--iptables-backend goes with --firewall iptables, not nft")
	}
	res, err := planAsking(inv, w, st)
	if err != nil {
		return err
	}
	if inv.NetNS != "" {
		res.Plan.Namespace = inv.NetNS
	}
	if common.peerOut != "" && res.Peer == nil {
		if res.NoPeer != "" {
			return Usagef("--peer-out: no script for the other end: %s", res.NoPeer)
		}
		return Usagef("--peer-out: the %s wizard has no other end", spec.Name)
	}
	if common.out != "" {
		data, err := res.Plan.Marshal()
		if err != nil {
			return err
		}
		if err := safefile.WriteFile(common.out, data, safefile.ModePrivate, safefile.ToWriter(inv.Stderr)); err != nil {
			return fmt.Errorf("saving the plan: %w", err)
		}
		quote.TermFprintf(inv.Stderr, "plan saved to %s: apply it with roundtrip apply %s%s\n", common.out, quote.Shell(common.out), netnsFlag(inv))
	}
	if common.peerOut != "" {
		if err := safefile.WriteFile(common.peerOut, []byte(res.PeerScript()), safefile.ModeScript, safefile.ToWriter(inv.Stderr)); err != nil {
			return fmt.Errorf("saving the other end's script: %w", err)
		}
		quote.TermFprintf(inv.Stderr, "the other end's script is in %s: run it on %s\n", common.peerOut, res.PeerHost)
	}
	if !common.apply {
		if inv.JSON {
			return inv.PrintJSON(res)
		}
		_, err := inv.Stdout.Write(res.Script())
		return err
	}
	if !inv.JSON {
		for _, n := range res.Notes {
			quote.TermFprintf(inv.Stderr, "note: %s\n", n)
		}
		if res.Peer != nil && common.peerOut == "" {
			quote.TermFprintf(inv.Stdout, "# the other end: run this on %s\n", strings.Join(strings.Fields(res.PeerHost), " "))
			io.WriteString(inv.Stdout, res.PeerScript())
		}
	}
	return applyPlan(inv, res.Plan.Source(), applyChoices{Confirm: common.confirm, Wait: common.wait, Force: common.force, LockWait: common.lockWait})
}

// planAsking plans, and when an uplink's gateway cannot be told from the host's routes asks
// for it on a terminal; a script (or --json) gets the error, which names the flag to give.
func planAsking(inv *Invocation, w wizards.Wizard, st *model.State) (*wizards.Result, error) {
	var in *bufio.Reader
	for {
		res, err := w.Plan(st)
		var ge *wizards.GatewayError
		gs, canAsk := w.(wizards.GatewaySetter)
		if err == nil || !errors.As(err, &ge) || !canAsk || inv.JSON || !isTerminal(inv.Stdin) {
			return res, err
		}
		if in == nil {
			in = bufio.NewReader(inv.Stdin)
		}
		fmt.Fprintf(inv.Stderr, "%s\ngateway of %s: ", quote.TermLines(err.Error()), quote.Term(ge.Iface))
		line, rerr := in.ReadString('\n')
		if line = strings.TrimSpace(line); line == "" && rerr != nil {
			return nil, err
		}
		gw, perr := wizards.ParseAddr(line, "gateway of "+ge.Iface)
		if perr != nil {
			fmt.Fprintln(inv.Stderr, quote.TermLines(perr.Error()))
			continue
		}
		gs.SetGateway(ge.Iface, gw)
	}
}

func printWizardHelp(w io.Writer, s *wizards.Spec) {
	fmt.Fprintf(w, "usage: roundtrip wizard %s %s\n\n%s\n\nExamples:\n%s\n\nFlags:\n", s.Name, s.Usage, s.Summary, s.Examples)
	// In the order the usage line documents them, as the console's form asks for them.
	for _, f := range s.Fields {
		line := "  --" + f.Name
		if f.Arg != "" {
			line += " " + f.Arg
		}
		usage := f.Help
		switch {
		case f.Required:
			usage += " (required)"
		case f.Default != "":
			usage += fmt.Sprintf(" (default %s)", f.Default)
		}
		fmt.Fprintf(w, "%-30s %s\n", line, usage)
	}
	fmt.Fprint(w, "\nCommon to every wizard:\n"+wizardCommonHelp)
}
