package cli

import (
	"fmt"

	"roundtrip/engine/doctor"
	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/model"
	"roundtrip/engine/quote"
	"roundtrip/engine/trace"
)

func init() { RegisterNew(func(f *Factory) *Command { return NewCmdDoctor(f, nil) }) }

// notReadParts lists the parts of the host the state lacks, each with why: the doctor's
// checks of them did not run.
func notReadParts(s *model.State) []string {
	var out []string
	if s.Netfilter.Unavailable != "" {
		out = append(out, "netfilter: "+s.Netfilter.Unavailable)
	}
	for _, h := range s.Netfilter.Hidden {
		out = append(out, "netfilter: "+h)
	}
	return out
}

// DoctorOptions are the options of one run of roundtrip doctor: fresh for every run.
type DoctorOptions struct {
	*Invocation
}

// NewCmdDoctor returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdDoctor(f *Factory, runF func(*DoctorOptions) error) *Command {
	opts := &DoctorOptions{}
	return &Command{
		Name:    "doctor",
		Usage:   "[--json] [--snapshot FILE]",
		Summary: "check the whole host for routing and NAT pitfalls",
		Help: `Looks at the host as a whole, without a flow in mind, for the pitfalls behind the
field cases: forwarding off while NAT or forwarding rules exist, strict rp_filter
on a host with several uplinks, an uplink whose connections are answered through
another one, DNAT to a backend on its clients' network without SNAT, per-uplink
tables without the LAN routes, duplicated rules (a script run twice), rules on
empty tables, gateways that are not on-link, and a full conntrack table.
Each finding comes with its evidence and a fix; use trace to follow one flow.
Exit status 3 when a problem of severity error is found; otherwise 4 when part of
the host could not be read (netfilter needs root), which is then named: no problem
found there is not the same as none.`,
		Offline: true,
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			if len(inv.Args) > 0 {
				return Usagef("doctor takes no arguments, got %q", inv.Args[0])
			}
			s, err := inv.State()
			if err != nil {
				return err
			}
			bar := newProgress(inv, "doctor")
			findings, err := doctor.RunContext(inv.Ctx, s, fib.New(s), bar.Update)
			bar.Done()
			if err != nil {
				return err
			}
			notRead := notReadParts(s)
			if inv.JSON {
				if err := inv.PrintJSON(struct {
					Findings []finding.Finding `json:"findings"`
					// NotRead says what could not be read: the check is incomplete.
					NotRead []string `json:"not_read,omitempty"`
				}{findings, notRead}); err != nil {
					return err
				}
			} else {
				where := s.Host
				if s.Namespace != "" {
					where += " netns " + s.Namespace
				}
				if where != "" {
					quote.TermFprintf(inv.Stdout, "doctor: %s\n\n", where)
				}
				if len(findings) > 0 || len(notRead) == 0 {
					trace.RenderFindings(inv.Stdout, findings)
				}
				if len(notRead) > 0 {
					if len(findings) == 0 {
						fmt.Fprintln(inv.Stdout, "No problems found in what could be read, but the check is incomplete:")
					} else {
						fmt.Fprintln(inv.Stdout, "\nThe check is incomplete:")
					}
					for _, n := range notRead {
						quote.TermFprintf(inv.Stdout, "  not read: %s\n", n)
					}
				}
			}
			if n := finding.CountErrors(findings); n > 0 {
				return &FindingsError{Count: n}
			}
			if len(notRead) > 0 {
				return &IncompleteError{NotRead: notRead}
			}
			return nil
		},
	}
}
