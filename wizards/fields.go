package wizards

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"roundtrip/engine/finding"
)

// This file is the one description of every wizard's inputs: each field's name (the flag and
// the form's key), kind, default, syntax check and help, in the order the usage line documents
// them. The command line (cmd/roundtrip/cli) declares its flags from it and the console
// (ui/pages) builds its forms from it; both turn what was given into the wizard's options
// with the same Build. So a default or a check cannot differ between the two.

// Kind says how a field takes its value on the command line and in a form.
type Kind int

const (
	// Text is one value: --flag VALUE, a text input.
	Text Kind = iota
	// List is repeatable: --flag VALUE for each, a space-separated list in a form.
	List
	// Bool is a bare flag, a yes/no choice in a form. A bare flag can only say yes, so a Bool
	// is always off unless given: a default of on could not be turned off by the scripts that
	// leave the flag out.
	Bool
	// Choice is one of Choices: --flag ONE, a choice in a form.
	Choice
)

// Field is one input of a wizard.
type Field struct {
	Name  string // the flag without "--", and the form's key
	Label string // the form's label
	Arg   string // what the value looks like in help ("IFACE[:GATEWAY]"); none for a Bool
	Kind  Kind
	// Choices are a Choice's values.
	Choices []string
	// Default is the value when the field is not given ("" for none; always "" for a Bool).
	Default string
	// Required fields have no default and the wizard refuses to plan without them; a form
	// shows them as missing.
	Required bool
	Help     string // the flag's help: a full line
	Hint     string // the form's hint while the field has the focus: a few words
	// Check checks the syntax of one value (of each item of a List); nil takes anything. The
	// host is not consulted: the wizard's Validate does that.
	Check func(v string) error
	// CLIOnly fields exist on the command line only: --gateway completes the --uplink before
	// it, which a form writes as IFACE:GATEWAY in one field.
	CLIOnly bool
}

// Validate checks one value of the field (an item of a List; "true" or "false", "yes" or "no"
// of a Bool) as the command line and the form both do.
func (f *Field) Validate(v string) error {
	switch f.Kind {
	case Bool:
		if _, ok := parseBool(v); !ok {
			return fmt.Errorf("--%s %q: want yes or no", f.Name, v)
		}
		return nil
	case Choice:
		if !slices.Contains(f.Choices, v) {
			return fmt.Errorf("--%s %q: want %s", f.Name, v, orList(f.Choices))
		}
	}
	if f.Check != nil {
		return f.Check(v)
	}
	return nil
}

func parseBool(v string) (on, ok bool) {
	switch strings.ToLower(v) {
	case "yes", "true", "1", "on":
		return true, true
	case "no", "false", "0", "off", "":
		return false, true
	}
	return false, false
}

// orList joins words as "a, b or c".
func orList(ws []string) string {
	if len(ws) < 2 {
		return strings.Join(ws, "")
	}
	return strings.Join(ws[:len(ws)-1], ", ") + " or " + ws[len(ws)-1]
}

// Spec describes one wizard's command line and form.
type Spec struct {
	Name     string
	Usage    string // the flags after `roundtrip wizard NAME`, as documented
	Summary  string // one line
	Examples string // command lines with comments, for --help
	Fields   []Field
	// Build turns the values given into the wizard's options. Its errors are mistakes of the
	// command line (a missing flag the wizard cannot plan without, a port out of range);
	// what depends on the host is left to the wizard's Validate.
	Build func(v *Values) (Wizard, error)
}

// Field returns the field named name, or nil.
func (s *Spec) Field(name string) *Field {
	for i := range s.Fields {
		if s.Fields[i].Name == name {
			return &s.Fields[i]
		}
	}
	return nil
}

// Values are the values given to a wizard, in the order given (--gateway completes the
// --uplink before it), each checked by its field.
type Values struct {
	spec  *Spec
	names []string
	vals  []string
}

// NewValues returns no values yet for s.
func (s *Spec) NewValues() *Values { return &Values{spec: s} }

// Add checks one value of the field named name and records it.
func (v *Values) Add(name, value string) error {
	f := v.spec.Field(name)
	if f == nil {
		return fmt.Errorf("the %s wizard has no option --%s", v.spec.Name, name)
	}
	if err := f.Validate(value); err != nil {
		return err
	}
	if f.Kind == Bool {
		on, _ := parseBool(value)
		value = strconv.FormatBool(on)
	}
	v.names, v.vals = append(v.names, name), append(v.vals, value)
	return nil
}

// Given reports whether the field was given.
func (v *Values) Given(name string) bool { return slices.Contains(v.names, name) }

// Get returns the field's last value, or its default.
func (v *Values) Get(name string) string {
	for i := len(v.names) - 1; i >= 0; i-- {
		if v.names[i] == name {
			return v.vals[i]
		}
	}
	if f := v.spec.Field(name); f != nil {
		return f.Default
	}
	return ""
}

// All returns every value of a List in the order given.
func (v *Values) All(name string) []string {
	var out []string
	for i, n := range v.names {
		if n == name {
			out = append(out, v.vals[i])
		}
	}
	return out
}

// On returns a Bool.
func (v *Values) On(name string) bool { return v.Get(name) == "true" }

// Each calls fn for every value in the order given.
func (v *Values) Each(fn func(name, value string) error) error {
	for i, n := range v.names {
		if err := fn(n, v.vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// Specs returns every wizard's description, in the order of wizards.Names.
func Specs() []*Spec { return specs }

// SpecFor returns the description of the wizard named name, or nil.
func SpecFor(name string) *Spec {
	for _, s := range specs {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func checkAddr(flag string) func(string) error {
	return func(v string) error { _, err := ParseAddr(v, flag); return err }
}

func checkPrefix(flag string) func(string) error {
	return func(v string) error { _, err := ParsePrefix(v, flag); return err }
}

func valuePrefixes(v *Values, name string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range v.All(name) {
		p, err := ParsePrefix(s, "--"+name)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// optAddr returns the address given with a field, or the zero address.
func optAddr(v *Values, name string) (netip.Addr, error) {
	if s := v.Get(name); s != "" {
		return ParseAddr(s, "--"+name)
	}
	return netip.Addr{}, nil
}

// checkNumber returns a check of a whole number from lo to hi; what names it in the error.
func checkNumber(flag string, lo, hi uint64, what string) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%s %q: want a number", flag, v)
		}
		if n < lo || n > hi {
			return fmt.Errorf("%s %d: %s", flag, n, what)
		}
		return nil
	}
}

func checkAddress(v string) error {
	if _, err := netip.ParsePrefix(v); err != nil {
		return fmt.Errorf("%q: want an address with its length, e.g. 10.255.0.1/30", v)
	}
	return nil
}

var specs = []*Spec{
	{
		Name:    finding.WizardSourceReturn,
		Usage:   "--uplink IFACE[:GATEWAY] ... [--mode from|connmark]",
		Summary: "answer connections through the interface they came in on (case 1)",
		Examples: `  # A web server with a LAN NIC behind a DNATing firewall and a public NIC em1 (case 1):
  roundtrip wizard source-return --uplink eth0 --uplink em1:192.168.1.253
  # The same by connection marks, which also covers forwarded (DNAT) connections:
  roundtrip wizard source-return --uplink eth0 --uplink em1 --mode connmark --apply --confirm 2m`,
		Fields: []Field{
			{Name: "uplink", Label: "Uplinks", Arg: "IFACE[:GATEWAY]", Kind: List, Required: true,
				Help:  "an uplink (repeat for each; the gateway is detected when unambiguous)",
				Hint:  "IFACE[:GATEWAY] …, each interface whose connections must return through it",
				Check: func(v string) error { _, err := ParseUplink(v, "--uplink"); return err }},
			{Name: "mode", Label: "Mode", Arg: "MODE", Kind: Choice, Choices: []string{ModeFrom, ModeConnmark}, Default: ModeFrom,
				Help: "from (a rule per uplink address) or connmark (mark connections by the interface they came in on)",
				Hint: "from: by local address; connmark: also forwarded (DNAT) connections"},
			// Given once after each --uplink that needs it, so a List.
			{Name: "gateway", Label: "Gateway", Arg: "GATEWAY", Kind: List, CLIOnly: true,
				Help:  "the gateway of the --uplink before it (as trace and doctor suggest)",
				Check: checkAddr("--gateway")},
		},
		Build: func(v *Values) (Wizard, error) {
			o := &SourceReturnOptions{Mode: v.Get("mode")}
			err := v.Each(func(name, val string) error {
				switch name {
				case "uplink":
					u, err := ParseUplink(val, "--uplink")
					o.Uplinks = append(o.Uplinks, u)
					return err
				case "gateway":
					if len(o.Uplinks) == 0 || o.Uplinks[len(o.Uplinks)-1].Gateway.IsValid() {
						return errors.New("--gateway follows an --uplink IFACE that has no gateway yet")
					}
					a, err := ParseAddr(val, "--gateway")
					o.Uplinks[len(o.Uplinks)-1].Gateway = a
					return err
				}
				return nil
			})
			return o, err
		},
	},
	{
		Name:    finding.WizardMultiWAN,
		Usage:   "--wan IFACE:GATEWAY[:NAME] ... [--lan IFACE] [--default NAME] [--route-list NAME=FILE] [--snat] [--connmark]",
		Summary: "a gateway with several ISPs: per-ISP tables, destination lists, NAT, replies back out the ISP they came from (case 2)",
		Examples: `  # eth0 LAN, eth1 to ISP A (the default), eth2 to ISP B with its address list:
  roundtrip wizard multi-wan --wan eth1:203.0.113.1:isp_a --wan eth2:198.51.100.1:isp_b \
      --lan eth0 --default isp_a --route-list isp_b=/etc/isp_b.txt --snat --connmark
  # Then forward port 80 of both public addresses to the LAN web server, with hairpin:
  roundtrip wizard port-forward --listen 198.51.100.2:80 --in eth2 --to 192.168.0.100:80 --hairpin`,
		Fields: []Field{
			{Name: "wan", Label: "WANs", Arg: "IFACE:GATEWAY[:NAME]", Kind: List, Required: true,
				Help:  "a WAN (repeat for each; NAME names its routing table)",
				Hint:  "IFACE[:GATEWAY[:NAME]] …, one per ISP",
				Check: func(v string) error { _, err := ParseWAN(v); return err }},
			{Name: "lan", Label: "LANs", Arg: "IFACE", Kind: List,
				Help: "a LAN interface (repeat; default: every interface that is not a WAN)",
				Hint: "inside interfaces (empty: every other interface)"},
			{Name: "default", Label: "Default WAN", Arg: "NAME", Kind: Text,
				Help: "the WAN for destinations no list claims (default: the first --wan)",
				Hint: "the WAN for everything no list claims (empty: the first)"},
			{Name: "route-list", Label: "Route lists", Arg: "NAME=FILE", Kind: List,
				Help:  "the networks in FILE (one a line, # comments) leave by WAN NAME",
				Hint:  "NAME=FILE …: networks (one a line) that leave by WAN NAME",
				Check: func(v string) error { _, err := ParseRouteListFlag(v); return err }},
			{Name: "snat", Label: "SNAT per WAN", Kind: Bool,
				Help: "translate the LAN's traffic to the address of the WAN it leaves by",
				Hint: "translate the LANs' traffic to the address of the WAN it leaves by"},
			{Name: "connmark", Label: "Connmark", Kind: Bool,
				Help: "also answer forwarded (port-forwarded) connections through the WAN they came in on",
				Hint: "also answer forwarded (DNAT) connections through the WAN they came in on"},
		},
		Build: func(v *Values) (Wizard, error) {
			o := &MultiWANOptions{LANs: v.All("lan"), Default: v.Get("default"), SNAT: v.On("snat"), Connmark: v.On("connmark")}
			for _, s := range v.All("wan") {
				w, err := ParseWAN(s)
				if err != nil {
					return nil, err
				}
				o.WANs = append(o.WANs, w)
			}
			for _, s := range v.All("route-list") {
				l, err := ParseRouteListFlag(s)
				if err != nil {
					return nil, err
				}
				o.RouteLists = append(o.RouteLists, l)
			}
			return o, nil
		},
	},
	{
		Name:    finding.WizardTunnel,
		Usage:   "--type ipip|gre|vxlan --local ADDR --remote ADDR --address CIDR --route CIDR ... [--uplink-only] | (receiving end) --uplink-only without --route",
		Summary: "an IP tunnel to a peer, routes into it, and the peer's side as a script (case 3)",
		Examples: `  # Relay 1 sends client traffic for 61.135.169.121 through an ipip tunnel to relay 2; the
  # answers come back directly (case 3); the peer script is relay 2's side:
  roundtrip wizard tunnel --type ipip --local 10.0.2.201 --remote 10.0.3.29 \
      --address 10.255.0.1/30 --route 61.135.169.121/32 --uplink-only
  # Relay 2's side is that run's peer script (--peer-out FILE saves it); or, planned on relay 2
  # itself (the receiving end: --uplink-only and no --route), applied with rollback there:
  roundtrip wizard tunnel --type ipip --local 10.0.3.29 --remote 10.0.2.201 \
      --address 10.255.0.2/30 --uplink-only --apply --confirm 2m
  # Both directions through a vxlan:
  roundtrip wizard tunnel --type vxlan --local 10.0.2.201 --remote 10.0.3.29 --address 10.255.0.1/30 --route 10.0.9.0/24`,
		Fields: []Field{
			// No default: the type decides what the network between the two ends must let
			// through (IP protocol 4 or 47, or UDP, which alone crosses a NAT), which this
			// host cannot see; the operator chooses.
			{Name: "type", Label: "Type", Arg: "TYPE", Kind: Choice, Choices: []string{"ipip", "gre", "vxlan"}, Required: true,
				Help: "the tunnel type: ipip, gre or vxlan",
				Hint: "what the network between the ends lets through (gre: protocol 47; vxlan: UDP); the kernel needs its module"},
			{Name: "local", Label: "Local", Arg: "ADDR", Kind: Text, Required: true,
				Help: "this end's address on the network between the two ends", Hint: "this host's underlay address",
				Check: checkAddr("--local")},
			{Name: "remote", Label: "Remote", Arg: "ADDR", Kind: Text, Required: true,
				Help: "the other end's address", Hint: "the peer's underlay address",
				Check: checkAddr("--remote")},
			{Name: "address", Label: "Tunnel address", Arg: "CIDR", Kind: Text, Required: true,
				Help: "this end's address inside the tunnel (a /30 or /31)", Hint: "this end's address in the tunnel, ADDR/LEN",
				Check: checkAddress},
			{Name: "route", Label: "Routes", Arg: "CIDR", Kind: List,
				Help:  "a destination to send through the tunnel (repeat; none on the receiving end of an --uplink-only tunnel)",
				Hint:  "networks sent into the tunnel",
				Check: checkPrefix("--route")},
			{Name: "uplink-only", Label: "Uplink only", Kind: Bool,
				Help: "only the upstream goes through the tunnel; the answers come back directly",
				Hint: "only the upstream goes through the tunnel; replies come back directly"},
			{Name: "peer-address", Label: "Peer address", Arg: "ADDR", Kind: Text,
				Help:  "the other end's address inside the tunnel (default: the other address of --address's network)",
				Hint:  "the other end's (empty: the other address of the network)",
				Check: checkAddr("--peer-address")},
			{Name: "peer-route", Label: "Peer routes", Arg: "CIDR", Kind: List,
				Help:  "a network the peer sends back through the tunnel (repeat; default: this host's networks)",
				Hint:  "networks the peer sends back (empty: this host's)",
				Check: checkPrefix("--peer-route")},
			{Name: "name", Label: "Interface", Arg: "NAME", Kind: Text,
				Help: "the tunnel interface name (default rt-TYPE)", Hint: "the tunnel interface (empty: rt-TYPE)"},
			{Name: "vni", Label: "VNI", Arg: "ID", Kind: Text, Default: strconv.Itoa(DefaultVNI),
				Help: "vxlan: the id", Hint: "vxlan only",
				Check: checkNumber("--vni", 0, 1<<24-1, "a vxlan id has 24 bits")},
			// 0 would silently mean the default port: refused as any other port out of range.
			{Name: "port", Label: "UDP port", Arg: "PORT", Kind: Text, Default: strconv.Itoa(DefaultVXLANPort),
				Help: "vxlan: the UDP port", Hint: "vxlan only",
				Check: checkNumber("--port", 1, 65535, "want a UDP port from 1 to 65535")},
		},
		Build: func(v *Values) (Wizard, error) {
			o := &TunnelOptions{Type: v.Get("type"), UplinkOnly: v.On("uplink-only"), Iface: v.Get("name")}
			var err error
			if o.Local, err = optAddr(v, "local"); err != nil {
				return nil, err
			}
			if o.Remote, err = optAddr(v, "remote"); err != nil {
				return nil, err
			}
			if s := v.Get("address"); s != "" {
				if err := checkAddress(s); err != nil {
					return nil, err
				}
				o.Address = netip.MustParsePrefix(s)
			}
			if o.PeerAddress, err = optAddr(v, "peer-address"); err != nil {
				return nil, err
			}
			if o.Routes, err = valuePrefixes(v, "route"); err != nil {
				return nil, err
			}
			if o.PeerRoutes, err = valuePrefixes(v, "peer-route"); err != nil {
				return nil, err
			}
			for _, n := range []string{"vni", "port"} {
				if err := v.spec.Field(n).Validate(v.Get(n)); err != nil {
					return nil, err
				}
			}
			vni, _ := strconv.ParseUint(v.Get("vni"), 10, 32)
			o.VNI = uint32(vni)
			o.Port, _ = strconv.Atoi(v.Get("port"))
			return o, nil
		},
	},
	{
		Name:    finding.WizardSNATGateway,
		Usage:   "--from CIDR --to CIDR --out IFACE [--in IFACE] [--to-source ADDR]",
		Summary: "forward one network to another through this host, SNATed, and print the route the other side needs (case 4)",
		Examples: `  # Host B, with eth1 in 10.0.43.0/24 and eth0 in 10.0.44.0/24, lets the management network
  # reach the business network (case 4); the peer script is the route for host A:
  roundtrip wizard snat-gateway --from 10.0.43.0/24 --to 10.0.44.0/24 --out eth0
  # The same, with the networks taken from the interfaces:
  roundtrip wizard snat-gateway --in eth1 --out eth0 --peer-out route-on-A.sh`,
		Fields: []Field{
			{Name: "from", Label: "From networks", Arg: "CIDR", Kind: List,
				Help:  "a source network (repeat; default: the networks of --in)",
				Hint:  "whose traffic is forwarded (empty: the networks of In)",
				Check: checkPrefix("--from")},
			{Name: "to", Label: "To networks", Arg: "CIDR", Kind: List,
				Help:  "a destination network (repeat; default: the networks of --out)",
				Hint:  "the networks reached (empty: the networks of Out)",
				Check: checkPrefix("--to")},
			{Name: "out", Label: "Out", Arg: "IFACE", Kind: Text, Required: true,
				Help: "the interface toward the destination network", Hint: "the interface toward the far network"},
			{Name: "in", Label: "In", Arg: "IFACE", Kind: Text,
				Help: "the interface the traffic comes in on (default: where this host routes --from)",
				Hint: "where the traffic comes in (empty: where From is routed)"},
			{Name: "to-source", Label: "SNAT to", Arg: "ADDR", Kind: Text,
				Help:  "SNAT to this address (default: this host's address on --out)",
				Hint:  "the address to translate to (empty: this host's on Out)",
				Check: checkAddr("--to-source")},
		},
		Build: func(v *Values) (Wizard, error) {
			o := &SNATGatewayOptions{In: v.Get("in"), Out: v.Get("out")}
			if o.Out == "" {
				return nil, errors.New("snat-gateway needs --out IFACE")
			}
			var err error
			if o.From, err = valuePrefixes(v, "from"); err != nil {
				return nil, err
			}
			if o.To, err = valuePrefixes(v, "to"); err != nil {
				return nil, err
			}
			if o.ToSource, err = optAddr(v, "to-source"); err != nil {
				return nil, err
			}
			return o, nil
		},
	},
	{
		Name:    finding.WizardPortForward,
		Usage:   "--listen [ADDR:]PORT [--in IFACE] --to ADDR:PORT [--proto tcp|udp] [--snat auto|none|ADDR] [--hairpin]",
		Summary: "forward a port to another host, with the SNAT it needs (case 5, and case 2's DNAT and hairpin)",
		Examples: `  # One-arm forward on one LAN: port 81 of this host to 192.168.1.32:80 (case 5); the SNAT
  # the backend needs to answer through this host is added automatically:
  roundtrip wizard port-forward --listen 192.168.1.34:81 --to 192.168.1.32:80
  # A public address of a gateway to a LAN server, reachable from the LAN too (case 2):
  roundtrip wizard port-forward --listen 198.51.100.2:80 --in eth2 --to 192.168.0.100:80 --hairpin`,
		Fields: []Field{
			{Name: "listen", Label: "Listen", Arg: "[ADDR:]PORT", Kind: Text, Required: true,
				Help:  "where clients connect (without ADDR, any address of this host)",
				Hint:  "[ADDR:]PORT clients connect to",
				Check: func(v string) error { _, _, err := ParseListen(v); return err }},
			{Name: "in", Label: "In", Arg: "IFACE", Kind: Text,
				Help: "the interface clients come in on (default: any)", Hint: "the interface clients come in on (empty: any)"},
			{Name: "to", Label: "To", Arg: "ADDR:PORT", Kind: Text, Required: true,
				Help: "the backend", Hint: "the backend, ADDR[:PORT]",
				// The port may be left out (it is the listening port): any port checks the rest.
				Check: func(v string) error { _, err := ParseTarget(v, 1); return err }},
			{Name: "proto", Label: "Protocol", Arg: "PROTO", Kind: Choice, Choices: []string{"tcp", "udp"}, Default: "tcp",
				Help: "tcp or udp"},
			{Name: "snat", Label: "SNAT", Arg: "SNAT", Kind: Text, Default: SNATAuto,
				Help: "auto (when the backend would answer clients directly), none, or an address of this host",
				Hint: "auto (when the backend would answer directly), none, or an address",
				Check: func(v string) error {
					if v == SNATAuto || v == SNATNone {
						return nil
					}
					_, err := ParseAddr(v, "--snat")
					return err
				}},
			{Name: "hairpin", Label: "Hairpin", Kind: Bool,
				Help: "also forward connections to the public address from the backend's own network",
				Hint: "also forward connections from the backend's own network"},
		},
		Build: func(v *Values) (Wizard, error) {
			o := &PortForwardOptions{In: v.Get("in"), Proto: v.Get("proto"), SNAT: v.Get("snat"), Hairpin: v.On("hairpin")}
			listen, to := v.Get("listen"), v.Get("to")
			if listen == "" || to == "" {
				return nil, errors.New("port-forward needs --listen [ADDR:]PORT and --to ADDR:PORT")
			}
			var err error
			if o.ListenAddr, o.ListenPort, err = ParseListen(listen); err != nil {
				return nil, err
			}
			if o.To, err = ParseTarget(to, o.ListenPort); err != nil {
				return nil, err
			}
			return o, nil
		},
	},
}
