package cli

import (
	"flag"
	"fmt"
	"time"

	"roundtrip/diagnose"
	"roundtrip/engine/quote"
)

func init() { RegisterNew(func(f *Factory) *Command { return NewCmdDiagnose(f, nil) }) }

// DiagnoseOptions are the options of one run of roundtrip diagnose: fresh for every run.
type DiagnoseOptions struct {
	*Invocation
	cf      captureFlags
	iif     string
	mark    string
	timeout time.Duration
}

// NewCmdDiagnose returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdDiagnose(f *Factory, runF func(*DiagnoseOptions) error) *Command {
	opts := &DiagnoseOptions{}
	return &Command{
		Name:    "diagnose",
		Usage:   "PROTO SRC[:PORT] DST[:PORT] [--iif IF] [--mark N] [--timeout D] [--iface LIST] [--pcap FILE] [--json]",
		Summary: "trace a flow, then watch it live (capture and conntrack) and give a verdict",
		Help: `Traces the flow with the model of this host (as trace does), then watches it on
the wire: captures its packets on every interface, before and after the NAT the
model predicts, follows its conntrack entries and watches the kernel's drops of it
(the reason, interface and kernel function, and for netfilter the rule), until the
flow completes, fails or --timeout passes. Start the real client while it watches (a zero or missing
source port matches any client port). It ends with a verdict: completed, failed
(with the live findings: asymmetric-return, reply-not-seen, reply-bypasses-nat,
forwarded-not-seen, reset-by-peer, retransmits, and first the kernel's own word:
kernel-drop, with model-kernel-disagree where the model says otherwise), incomplete,
or not seen (with what the model says).

Without the capabilities to capture (root or CAP_NET_RAW) the verdict rests on the
model alone and says so. --json prints one JSON object per line: the trace, the
live events, then {"type":"verdict", ...}. Exit status 3 when the flow is broken.

Examples:
  roundtrip diagnose tcp 198.51.100.7 192.0.2.10:80 --iif eth0
  roundtrip diagnose tcp 10.0.43.15 10.0.44.1:80 --timeout 30s --pcap flow.pcapng`,
		Flags: func(fs *flag.FlagSet) {
			opts.cf.register(fs)
			fs.StringVar(&opts.iif, "iif", "", "the interface `IF` the flow arrives on (default: it starts on this host)")
			fs.StringVar(&opts.mark, "mark", "", "the fwmark `N` the packet carries (decimal or 0x-hex)")
			fs.DurationVar(&opts.timeout, "timeout", 10*time.Second, "give up watching after `D`")
		},
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			cf, iif, mark, timeout := opts.cf, opts.iif, opts.mark, opts.timeout
			req, err := parseTraceArgs(inv.Args, mark)
			if err != nil {
				return err
			}
			if timeout <= 0 {
				return Usagef("--timeout must be positive")
			}
			s, err := inv.State()
			if err != nil {
				return err
			}
			if iif != "" && s.LinkByName(iif) == nil {
				return Usagef("interface %s does not exist; interfaces: %s", iif, linkNames(s))
			}
			req.IIF = iif
			pcap, err := cf.openPcap(inv)
			if err != nil {
				return err
			}
			opts := diagnose.DiagnoseOptions{Namespace: inv.Namespace(), Request: req, Timeout: timeout, Ifaces: cf.ifaceList(), State: s}
			if pcap != nil {
				opts.Pcap = pcap
			}
			pr := newEventPrinter(inv)
			// Only once the rings are open is a client seen from its first packet: say "now"
			// then, not before (on stderr, so that --json output stays one object per line).
			opts.Ready = func() {
				fmt.Fprintf(inv.Stderr, "roundtrip diagnose: watching the flow for up to %s; start the client now\n", timeout)
			}
			v, err := diagnose.Diagnose(inv.Ctx, opts, pr.emit)
			if perr := pr.close(); err == nil {
				err = perr
			}
			// Without a live capture (no capability) nothing went into the file: it is not left.
			err = closePcap(pcap, err == nil && v.Capture != nil, err)
			if err != nil {
				return capabilityHint(err)
			}
			if v.Notice != "" {
				quote.TermFprintf(inv.Stderr, "roundtrip diagnose: %s\n", v.Notice)
			}
			if inv.JSON {
				if err := pr.final("verdict", v); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(inv.Stdout, "model:")
				v.Trace.Render(inv.Stdout, s)
				fmt.Fprintln(inv.Stdout)
				diagnose.RenderVerdict(inv.Stdout, v)
			}
			if n := v.Errors(); n > 0 {
				return &FindingsError{Count: n}
			}
			return nil
		},
	}
}
