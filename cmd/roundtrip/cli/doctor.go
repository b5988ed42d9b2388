package cli

import (
	"roundtrip/engine"
)

func init() { Register(doctorCommand()) }

func doctorCommand() *Command {
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
Exit status 3 when a problem of severity error is found.`,
		Offline: true,
		Run: func(inv *Invocation) error {
			if len(inv.Args) > 0 {
				return Usagef("doctor takes no arguments, got %q", inv.Args[0])
			}
			s, err := inv.State()
			if err != nil {
				return err
			}
			findings := engine.Doctor(s, engine.NewFIB(s))
			if inv.JSON {
				if err := inv.PrintJSON(struct {
					Findings []engine.Finding `json:"findings"`
				}{findings}); err != nil {
					return err
				}
			} else {
				where := s.Host
				if s.Namespace != "" {
					where += " netns " + s.Namespace
				}
				if where != "" {
					engine.TermFprintf(inv.Stdout, "doctor: %s\n\n", where)
				}
				engine.RenderFindings(inv.Stdout, findings)
			}
			if n := engine.CountErrors(findings); n > 0 {
				return &FindingsError{Count: n}
			}
			return nil
		},
	}
}
