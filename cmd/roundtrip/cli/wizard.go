package cli

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/quote"
	"roundtrip/engine/safefile"
	"roundtrip/wizards"
)

func init() { Register(wizardCommand()) }

// wizardSpec is the command line of one wizard: its flags and how they become its options.
type wizardSpec struct {
	name     string
	usage    string
	summary  string
	examples string
	// bind declares the wizard's flags on fs and returns what builds the options once the
	// flags are parsed.
	bind func(fs *flag.FlagSet) func() (wizards.Wizard, error)
}

// addr returns a flag function that sets an IPv4 address.
func addr(flag string, dst *netip.Addr) func(string) error {
	return func(v string) error {
		a, err := wizards.ParseAddr(v, flag)
		*dst = a
		return err
	}
}

// prefixes returns a flag function that adds an IPv4 network to dst.
func prefixes(flag string, dst *[]netip.Prefix) func(string) error {
	return func(v string) error {
		p, err := wizards.ParsePrefix(v, flag)
		if err != nil {
			return err
		}
		*dst = append(*dst, p)
		return nil
	}
}

func wizardSpecs() []wizardSpec {
	return []wizardSpec{
		{
			name:    "source-return",
			usage:   "--uplink IFACE[:GATEWAY] ... [--mode from|connmark]",
			summary: "answer connections through the interface they came in on (case 1)",
			examples: `  # A web server with a LAN NIC behind a DNATing firewall and a public NIC em1 (case 1):
  roundtrip wizard source-return --uplink eth0 --uplink em1:192.168.1.253
  # The same by connection marks, which also covers forwarded (DNAT) connections:
  roundtrip wizard source-return --uplink eth0 --uplink em1 --mode connmark --apply --confirm 2m`,
			bind: func(fs *flag.FlagSet) func() (wizards.Wizard, error) {
				o := &wizards.SourceReturnOptions{}
				repeated(fs, "uplink", "an uplink `IFACE[:GATEWAY]` (repeat for each; the gateway is detected when unambiguous)", func(v string) error {
					u, err := wizards.ParseUplink(v, "--uplink")
					o.Uplinks = append(o.Uplinks, u)
					return err
				})
				// Given once after each --uplink that needs it, so repeatable.
				repeated(fs, "gateway", "the `GATEWAY` of the --uplink before it (as trace and doctor suggest)", func(v string) error {
					if len(o.Uplinks) == 0 || o.Uplinks[len(o.Uplinks)-1].Gateway.IsValid() {
						return errors.New("--gateway follows an --uplink IFACE that has no gateway yet")
					}
					a, err := wizards.ParseAddr(v, "--gateway")
					o.Uplinks[len(o.Uplinks)-1].Gateway = a
					return err
				})
				fs.StringVar(&o.Mode, "mode", wizards.ModeFrom, "`MODE`: from (a rule per uplink address) or connmark (mark connections by the interface they came in on)")
				return func() (wizards.Wizard, error) { return o, nil }
			},
		},
		{
			name:    "multi-wan",
			usage:   "--wan IFACE:GATEWAY[:NAME] ... [--lan IFACE] [--default NAME] [--route-list NAME=FILE] [--snat] [--connmark]",
			summary: "a gateway with several ISPs: per-ISP tables, destination lists, NAT, replies back out the ISP they came from (case 2)",
			examples: `  # eth0 LAN, eth1 to ISP A (the default), eth2 to ISP B with its address list:
  roundtrip wizard multi-wan --wan eth1:203.0.113.1:isp_a --wan eth2:198.51.100.1:isp_b \
      --lan eth0 --default isp_a --route-list isp_b=/etc/isp_b.txt --snat --connmark
  # Then forward port 80 of both public addresses to the LAN web server, with hairpin:
  roundtrip wizard port-forward --listen 198.51.100.2:80 --in eth2 --to 192.168.0.100:80 --hairpin`,
			bind: func(fs *flag.FlagSet) func() (wizards.Wizard, error) {
				o := &wizards.MultiWANOptions{}
				repeated(fs, "wan", "a WAN `IFACE:GATEWAY[:NAME]` (repeat for each; NAME names its routing table)", func(v string) error {
					w, err := wizards.ParseWAN(v)
					o.WANs = append(o.WANs, w)
					return err
				})
				repeated(fs, "lan", "a LAN `IFACE` (repeat; default: every interface that is not a WAN)", func(v string) error {
					o.LANs = append(o.LANs, v)
					return nil
				})
				fs.StringVar(&o.Default, "default", "", "the WAN `NAME` for destinations no list claims (default: the first --wan)")
				repeated(fs, "route-list", "`NAME=FILE`: the networks in FILE (one a line, # comments) leave by WAN NAME", func(v string) error {
					l, err := wizards.ParseRouteListFlag(v)
					o.RouteLists = append(o.RouteLists, l)
					return err
				})
				fs.BoolVar(&o.SNAT, "snat", false, "translate the LAN's traffic to the address of the WAN it leaves by")
				fs.BoolVar(&o.Connmark, "connmark", false, "also answer forwarded (port-forwarded) connections through the WAN they came in on")
				return func() (wizards.Wizard, error) {
					// A list file is part of the command line: one that cannot be read, is
					// empty or is not a list is a usage error, found before anything is planned.
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
					return o, nil
				}
			},
		},
		{
			name:    "tunnel",
			usage:   "--type ipip|gre|vxlan --local ADDR --remote ADDR --address CIDR --route CIDR ... [--uplink-only] | (receiving end) --uplink-only without --route",
			summary: "an IP tunnel to a peer, routes into it, and the peer's side as a script (case 3)",
			examples: `  # Relay 1 sends client traffic for 61.135.169.121 through an ipip tunnel to relay 2; the
  # answers come back directly (case 3); the peer script is relay 2's side:
  roundtrip wizard tunnel --type ipip --local 10.0.2.201 --remote 10.0.3.29 \
      --address 10.255.0.1/30 --route 61.135.169.121/32 --uplink-only
  # Relay 2's side is that run's peer script (--peer-out FILE saves it); or, planned on relay 2
  # itself (the receiving end: --uplink-only and no --route), applied with rollback there:
  roundtrip wizard tunnel --type ipip --local 10.0.3.29 --remote 10.0.2.201 \
      --address 10.255.0.2/30 --uplink-only --apply --confirm 2m
  # Both directions through a vxlan:
  roundtrip wizard tunnel --type vxlan --local 10.0.2.201 --remote 10.0.3.29 --address 10.255.0.1/30 --route 10.0.9.0/24`,
			bind: func(fs *flag.FlagSet) func() (wizards.Wizard, error) {
				o := &wizards.TunnelOptions{}
				var vni uint
				fs.StringVar(&o.Type, "type", "", "the tunnel `TYPE`: ipip, gre or vxlan")
				fs.Func("local", "this end's `ADDR` on the network between the two ends", addr("--local", &o.Local))
				fs.Func("remote", "the other end's `ADDR`", addr("--remote", &o.Remote))
				fs.Func("address", "this end's address inside the tunnel, `CIDR` (a /30 or /31)", func(v string) error {
					p, err := netip.ParsePrefix(v)
					if err != nil {
						return fmt.Errorf("%q: want an address with its length, e.g. 10.255.0.1/30", v)
					}
					o.Address = p
					return nil
				})
				fs.Func("peer-address", "the other end's `ADDR` inside the tunnel (default: the other address of --address's network)", addr("--peer-address", &o.PeerAddress))
				repeated(fs, "route", "a destination `CIDR` to send through the tunnel (repeat; none on the receiving end of an --uplink-only tunnel)", prefixes("--route", &o.Routes))
				repeated(fs, "peer-route", "a `CIDR` the peer sends back through the tunnel (repeat; default: this host's networks)", prefixes("--peer-route", &o.PeerRoutes))
				fs.BoolVar(&o.UplinkOnly, "uplink-only", false, "only the upstream goes through the tunnel; the answers come back directly")
				fs.StringVar(&o.Iface, "name", "", "the tunnel interface `NAME` (default rt-TYPE)")
				fs.UintVar(&vni, "vni", wizards.DefaultVNI, "vxlan: the `ID`")
				fs.IntVar(&o.Port, "port", wizards.DefaultVXLANPort, "vxlan: the UDP `PORT`")
				return func() (wizards.Wizard, error) {
					if vni >= 1<<24 {
						return nil, Usagef("--vni %d: a vxlan id has 24 bits", vni)
					}
					// 0 would silently mean the default port: refuse it as any other port
					// out of range.
					if err := checkRange("port", o.Port, 1, 65535, "a UDP port"); err != nil {
						return nil, err
					}
					o.VNI = uint32(vni)
					return o, nil
				}
			},
		},
		{
			name:    "snat-gateway",
			usage:   "--from CIDR --to CIDR --out IFACE [--in IFACE] [--to-source ADDR]",
			summary: "forward one network to another through this host, SNATed, and print the route the other side needs (case 4)",
			examples: `  # Host B, with eth1 in 10.0.43.0/24 and eth0 in 10.0.44.0/24, lets the management network
  # reach the business network (case 4); the peer script is the route for host A:
  roundtrip wizard snat-gateway --from 10.0.43.0/24 --to 10.0.44.0/24 --out eth0
  # The same, with the networks taken from the interfaces:
  roundtrip wizard snat-gateway --in eth1 --out eth0 --peer-out route-on-A.sh`,
			bind: func(fs *flag.FlagSet) func() (wizards.Wizard, error) {
				o := &wizards.SNATGatewayOptions{}
				repeated(fs, "from", "a source network `CIDR` (repeat; default: the networks of --in)", prefixes("--from", &o.From))
				repeated(fs, "to", "a destination network `CIDR` (repeat; default: the networks of --out)", prefixes("--to", &o.To))
				fs.StringVar(&o.In, "in", "", "the `IFACE` the traffic comes in on (default: where this host routes --from)")
				fs.StringVar(&o.Out, "out", "", "the `IFACE` toward the destination network")
				fs.Func("to-source", "SNAT to `ADDR` (default: this host's address on --out)", addr("--to-source", &o.ToSource))
				return func() (wizards.Wizard, error) {
					if o.Out == "" {
						return nil, Usagef("snat-gateway needs --out IFACE")
					}
					return o, nil
				}
			},
		},
		{
			name:    "port-forward",
			usage:   "--listen [ADDR:]PORT [--in IFACE] --to ADDR:PORT [--proto tcp|udp] [--snat auto|none|ADDR] [--hairpin]",
			summary: "forward a port to another host, with the SNAT it needs (case 5, and case 2's DNAT and hairpin)",
			examples: `  # One-arm forward on one LAN: port 81 of this host to 192.168.1.32:80 (case 5); the SNAT
  # the backend needs to answer through this host is added automatically:
  roundtrip wizard port-forward --listen 192.168.1.34:81 --to 192.168.1.32:80
  # A public address of a gateway to a LAN server, reachable from the LAN too (case 2):
  roundtrip wizard port-forward --listen 198.51.100.2:80 --in eth2 --to 192.168.0.100:80 --hairpin`,
			bind: func(fs *flag.FlagSet) func() (wizards.Wizard, error) {
				o := &wizards.PortForwardOptions{}
				var listen, to string
				fs.StringVar(&listen, "listen", "", "where clients connect: `[ADDR:]PORT` (without ADDR, any address of this host)")
				fs.StringVar(&o.In, "in", "", "the `IFACE` clients come in on (default: any)")
				fs.StringVar(&to, "to", "", "the backend `ADDR:PORT`")
				fs.StringVar(&o.Proto, "proto", "tcp", "`PROTO`: tcp or udp")
				fs.StringVar(&o.SNAT, "snat", wizards.SNATAuto, "`SNAT`: auto (when the backend would answer clients directly), none, or an address of this host")
				fs.BoolVar(&o.Hairpin, "hairpin", false, "also forward connections to the public address from the backend's own network")
				return func() (wizards.Wizard, error) {
					if listen == "" || to == "" {
						return nil, Usagef("port-forward needs --listen [ADDR:]PORT and --to ADDR:PORT")
					}
					var err error
					if o.ListenAddr, o.ListenPort, err = wizards.ParseListen(listen); err != nil {
						return nil, Usagef("%v", err)
					}
					if o.To, err = wizards.ParseTarget(to, o.ListenPort); err != nil {
						return nil, Usagef("%v", err)
					}
					return o, nil
				}
			},
		},
	}
}

func wizardCommand() *Command {
	var help strings.Builder
	help.WriteString("Wizards turn an intent into a plan for this host, checked against it first (interfaces,\n" +
		"gateways, ports, rules and tables already there). By default the plan is printed as an\n" +
		"idempotent shell script (with the other end's script, when there is one, in a part that\n" +
		"does not run here); --apply applies it as `roundtrip apply` does, journaled and reversible.\n\nWizards:\n")
	for _, s := range wizardSpecs() {
		fmt.Fprintf(&help, "  %-14s %s\n", s.name, s.summary)
	}
	help.WriteString("\nEach takes --help for its flags and examples, and these:\n" + wizardCommonHelp)
	return &Command{
		Name:     "wizard",
		Usage:    "NAME [flags]",
		Summary:  "plan a setup for a field case: source-return, multi-wan, port-forward, snat-gateway, tunnel",
		Help:     help.String(),
		OwnFlags: true,
		Run:      runWizard,
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
}

func (c *wizardCommon) bind(fs *flag.FlagSet, inv *Invocation) {
	fs.BoolVar(&inv.JSON, "json", false, "print the plan, the peer's plan and the notes as JSON")
	fs.StringVar(&inv.NetNS, "netns", "", "work on the named network namespace `NAME` (as ip -n)")
	fs.StringVar(&inv.Snapshot, "snapshot", "", "plan against a saved state `FILE` instead of the live host")
	fs.BoolVar(&c.apply, "apply", false, "apply the plan (journaled; undo with roundtrip rollback)")
	fs.Var(confirmFlag{&c.confirm}, "confirm", "with --apply: roll back after `DURATION` unless roundtrip confirm runs")
	fs.BoolVar(&c.wait, "wait", false, "with --confirm: wait here for the confirmation")
	fs.BoolVar(&c.force, "force", false, "with --apply over SSH: apply even if the route back to you changes")
	fs.DurationVar(&c.lockWait, "lock-wait", defaultLockWait, "wait up to `DURATION` for another apply to finish")
	fs.StringVar(&c.out, "o", "", "save the plan to `FILE`")
	fs.StringVar(&c.peerOut, "peer-out", "", "save the other end's script to `FILE`")
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

func runWizard(inv *Invocation) error {
	specs := wizardSpecs()
	if len(inv.Args) == 0 || inv.Args[0] == "-h" || inv.Args[0] == "--help" || inv.Args[0] == "help" {
		if len(inv.Args) == 0 {
			return Usagef("name a wizard: %s", strings.Join(wizards.Names, ", "))
		}
		c := wizardCommand()
		fmt.Fprintf(inv.Stdout, "usage: roundtrip wizard %s\n\n%s\n\n%s", c.Usage, c.Summary, c.Help)
		return nil
	}
	var spec *wizardSpec
	for i := range specs {
		if specs[i].name == inv.Args[0] {
			spec = &specs[i]
		}
	}
	if spec == nil {
		return Usagef("unknown wizard %q: want one of %s", inv.Args[0], strings.Join(wizards.Names, ", "))
	}
	fs := flag.NewFlagSet("wizard "+spec.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var common wizardCommon
	common.bind(fs, inv)
	build := spec.bind(fs)
	pos, err := parseFlags(fs, inv.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		printWizardHelp(inv.Stdout, spec, fs)
		return nil
	}
	if err != nil {
		return Usagef("%s: %v (see roundtrip wizard %s --help)", spec.name, err, spec.name)
	}
	if err := checkNetNSName(inv.NetNS); err != nil {
		return err
	}
	if len(pos) > 0 {
		return Usagef("%s takes no arguments besides its flags, got %q", spec.name, strings.Join(pos, " "))
	}
	if inv.Snapshot != "" && inv.NetNS != "" {
		return Usagef("--snapshot and --netns exclude each other: a snapshot is already one namespace's state")
	}
	if common.apply && inv.Snapshot != "" {
		return Usagef("--apply changes the live host: it cannot be combined with --snapshot")
	}
	if (common.confirm != 0 || common.wait || common.force) && !common.apply {
		return Usagef("--confirm, --wait and --force go with --apply")
	}
	w, err := build()
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
		return Usagef("--peer-out: the %s wizard has no other end", spec.name)
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

func printWizardHelp(w io.Writer, s *wizardSpec, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: roundtrip wizard %s %s\n\n%s\n\nExamples:\n%s\n\nFlags:\n", s.name, s.usage, s.summary, s.examples)
	common := flag.NewFlagSet("", flag.ContinueOnError)
	(&wizardCommon{}).bind(common, &Invocation{})
	fs.VisitAll(func(f *flag.Flag) {
		if common.Lookup(f.Name) != nil {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if len(f.Name) == 1 {
			line = "  -" + f.Name
		}
		if name != "" {
			line += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "%-30s %s\n", line, usage)
	})
	fmt.Fprint(w, "\nCommon to every wizard:\n"+wizardCommonHelp)
}
