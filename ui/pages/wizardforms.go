package pages

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"roundtrip/engine/finding"
	"roundtrip/ui/common"
	"roundtrip/ui/components"
	"roundtrip/wizards"
)

// This file describes the form of each wizard: its fields, named like the wizard's flags so
// that a finding's fix (`--uplink eth0:10.0.0.1`) fills the form, in the order the flags are
// documented (the usage line of `roundtrip wizard NAME --help`, then the rest), and how the
// fields become the wizard's options. Fields check their syntax as they are typed; the
// wizard's own Validate checks them against the host.

var yesNo = []string{"no", "yes"}

// wizardSpec is one wizard's form.
type wizardSpec struct {
	name    string
	summary string
	fields  func(st *common.Styles) []*components.Field
	build   func(f *components.Form) (wizards.Wizard, error)
}

// specs are the wizards in the order of the field cases they fix (wizards.Names).
var specs = []wizardSpec{
	{
		name:    finding.WizardSourceReturn,
		summary: "answer each connection through the interface it came in on (case 1)",
		fields: func(st *common.Styles) []*components.Field {
			return []*components.Field{
				components.NewText(st, "uplink", "Uplinks", "", "IFACE[:GATEWAY] …, each interface whose connections must return through it", listOf(func(v string) error {
					_, err := wizards.ParseUplink(v, "uplink")
					return err
				}, true)),
				components.NewChoice("mode", "Mode", []string{wizards.ModeFrom, wizards.ModeConnmark}, wizards.ModeFrom, "from: by local address; connmark: also forwarded (DNAT) connections"),
			}
		},
		build: func(f *components.Form) (wizards.Wizard, error) {
			o := &wizards.SourceReturnOptions{Mode: f.Get("mode")}
			for _, v := range strings.Fields(f.Get("uplink")) {
				u, err := wizards.ParseUplink(v, "--uplink")
				if err != nil {
					return nil, err
				}
				o.Uplinks = append(o.Uplinks, u)
			}
			return o, nil
		},
	},
	{
		name:    finding.WizardMultiWAN,
		summary: "a gateway with several ISPs: lists per WAN, NAT per WAN, replies back where they came in (case 2)",
		fields: func(st *common.Styles) []*components.Field {
			return []*components.Field{
				components.NewText(st, "wan", "WANs", "", "IFACE[:GATEWAY[:NAME]] …, one per ISP", listOf(func(v string) error {
					_, err := wizards.ParseWAN(v)
					return err
				}, true)),
				components.NewText(st, "lan", "LANs", "", "inside interfaces (empty: every other interface)", nil),
				components.NewText(st, "default", "Default WAN", "", "the WAN for everything no list claims (empty: the first)", nil),
				components.NewText(st, "route-list", "Route lists", "", "NAME=FILE …: networks (one a line) that leave by WAN NAME", listOf(func(v string) error {
					_, err := wizards.ParseRouteListFlag(v)
					return err
				}, false)),
				components.NewChoice("snat", "SNAT per WAN", yesNo, "yes", "translate the LANs' traffic to the address of the WAN it leaves by"),
				components.NewChoice("connmark", "Connmark", yesNo, "no", "also answer forwarded (DNAT) connections through the WAN they came in on"),
			}
		},
		build: func(f *components.Form) (wizards.Wizard, error) {
			o := &wizards.MultiWANOptions{Default: f.Get("default"), LANs: strings.Fields(f.Get("lan")),
				SNAT: f.Get("snat") == "yes", Connmark: f.Get("connmark") == "yes"}
			for _, v := range strings.Fields(f.Get("wan")) {
				w, err := wizards.ParseWAN(v)
				if err != nil {
					return nil, err
				}
				o.WANs = append(o.WANs, w)
			}
			for _, v := range strings.Fields(f.Get("route-list")) {
				l, err := wizards.ParseRouteListFlag(v)
				if err != nil {
					return nil, err
				}
				o.RouteLists = append(o.RouteLists, l)
			}
			return o, nil
		},
	},
	{
		name:    finding.WizardTunnel,
		summary: "an IP tunnel to a peer, routes into it, and the peer's side as a script (case 3)",
		fields: func(st *common.Styles) []*components.Field {
			return []*components.Field{
				components.NewChoice("type", "Type", []string{"ipip", "gre", "vxlan"}, "ipip", "the kernel needs the module of the type"),
				components.NewText(st, "local", "Local", "", "this host's underlay address", requiredAddr),
				components.NewText(st, "remote", "Remote", "", "the peer's underlay address", requiredAddr),
				components.NewText(st, "address", "Tunnel address", "", "this end's address in the tunnel, ADDR/LEN", requiredPrefix),
				components.NewText(st, "route", "Routes", "", "networks sent into the tunnel", listOf(validPrefix, false)),
				components.NewChoice("uplink-only", "Uplink only", yesNo, "no", "only the upstream goes through the tunnel; replies come back directly"),
				components.NewText(st, "peer-address", "Peer address", "", "the other end's (empty: the other address of the network)", optionalAddr),
				components.NewText(st, "peer-route", "Peer routes", "", "networks the peer sends back (empty: this host's)", listOf(validPrefix, false)),
				components.NewText(st, "name", "Interface", "", "the tunnel interface (empty: rt-TYPE)", nil),
				components.NewText(st, "vni", "VNI", "", fmt.Sprintf("vxlan only (empty: %d)", wizards.DefaultVNI), optionalNumber),
				components.NewText(st, "port", "UDP port", "", fmt.Sprintf("vxlan only (empty: %d)", wizards.DefaultVXLANPort), optionalNumber),
			}
		},
		build: func(f *components.Form) (wizards.Wizard, error) {
			o := &wizards.TunnelOptions{Type: f.Get("type"), UplinkOnly: f.Get("uplink-only") == "yes", Iface: f.Get("name")}
			var err error
			if o.Local, err = netip.ParseAddr(f.Get("local")); err != nil {
				return nil, fmt.Errorf("--local: %w", err)
			}
			if o.Remote, err = netip.ParseAddr(f.Get("remote")); err != nil {
				return nil, fmt.Errorf("--remote: %w", err)
			}
			if o.Address, err = netip.ParsePrefix(f.Get("address")); err != nil {
				return nil, fmt.Errorf("--address: %w", err)
			}
			if v := f.Get("peer-address"); v != "" {
				if o.PeerAddress, err = netip.ParseAddr(v); err != nil {
					return nil, fmt.Errorf("--peer-address: %w", err)
				}
			}
			if o.Routes, err = prefixes(f.Get("route")); err != nil {
				return nil, fmt.Errorf("--route: %w", err)
			}
			if o.PeerRoutes, err = prefixes(f.Get("peer-route")); err != nil {
				return nil, fmt.Errorf("--peer-route: %w", err)
			}
			if v := f.Get("vni"); v != "" {
				n, _ := strconv.ParseUint(v, 10, 32)
				o.VNI = uint32(n)
			}
			if v := f.Get("port"); v != "" {
				o.Port, _ = strconv.Atoi(v)
			}
			return o, nil
		},
	},
	{
		name:    finding.WizardSNATGateway,
		summary: "forward one network to another with SNAT, so the far side needs no route back (case 4)",
		fields: func(st *common.Styles) []*components.Field {
			return []*components.Field{
				components.NewText(st, "from", "From networks", "", "whose traffic is forwarded (empty: the networks of In)", listOf(validPrefix, false)),
				components.NewText(st, "to", "To networks", "", "the networks reached (empty: the networks of Out)", listOf(validPrefix, false)),
				components.NewText(st, "out", "Out", "", "the interface toward the far network", required),
				components.NewText(st, "in", "In", "", "where the traffic comes in (empty: where From is routed)", nil),
				components.NewText(st, "to-source", "SNAT to", "", "the address to translate to (empty: this host's on Out)", optionalAddr),
			}
		},
		build: func(f *components.Form) (wizards.Wizard, error) {
			o := &wizards.SNATGatewayOptions{In: f.Get("in"), Out: f.Get("out")}
			var err error
			if o.From, err = prefixes(f.Get("from")); err != nil {
				return nil, fmt.Errorf("--from: %w", err)
			}
			if o.To, err = prefixes(f.Get("to")); err != nil {
				return nil, fmt.Errorf("--to: %w", err)
			}
			if v := f.Get("to-source"); v != "" {
				if o.ToSource, err = netip.ParseAddr(v); err != nil {
					return nil, fmt.Errorf("--to-source: %w", err)
				}
			}
			return o, nil
		},
	},
	{
		name:    finding.WizardPortForward,
		summary: "forward a port to another host, with the SNAT that brings replies back (case 5)",
		fields: func(st *common.Styles) []*components.Field {
			return []*components.Field{
				components.NewText(st, "listen", "Listen", "", "[ADDR:]PORT clients connect to", func(v string) error {
					if v == "" {
						return errors.New("required")
					}
					_, _, err := wizards.ParseListen(v)
					return err
				}),
				components.NewText(st, "in", "In", "", "the interface clients come in on (empty: any)", nil),
				components.NewText(st, "to", "To", "", "the backend, ADDR[:PORT]", func(v string) error {
					if v == "" {
						return errors.New("required")
					}
					_, err := wizards.ParseTarget(v, 1)
					return err
				}),
				components.NewChoice("proto", "Protocol", []string{"tcp", "udp"}, "tcp", ""),
				components.NewText(st, "snat", "SNAT", wizards.SNATAuto, "auto (when the backend would answer directly), none, or an address", func(v string) error {
					if v == "" || v == wizards.SNATAuto || v == wizards.SNATNone {
						return nil
					}
					return optionalAddr(v)
				}),
				components.NewChoice("hairpin", "Hairpin", yesNo, "no", "also forward connections from the backend's own network"),
			}
		},
		build: func(f *components.Form) (wizards.Wizard, error) {
			o := &wizards.PortForwardOptions{In: f.Get("in"), Proto: f.Get("proto"), SNAT: f.Get("snat"), Hairpin: f.Get("hairpin") == "yes"}
			var err error
			if o.ListenAddr, o.ListenPort, err = wizards.ParseListen(f.Get("listen")); err != nil {
				return nil, err
			}
			if o.To, err = wizards.ParseTarget(f.Get("to"), o.ListenPort); err != nil {
				return nil, err
			}
			return o, nil
		},
	},
}

// WizardFields returns the flags a wizard's form asks for, in the form's order (nil for an
// unknown wizard).
func WizardFields(name string) []string {
	i := specByName(name)
	if i < 0 {
		return nil
	}
	var out []string
	for _, f := range specs[i].fields(common.NewStyles(common.ModePlain)) {
		out = append(out, f.Key)
	}
	return out
}

func specByName(name string) int {
	for i, s := range specs {
		if s.name == name {
			return i
		}
	}
	return -1
}

// fill sets a form from a wizard's flags: `--flag value`, `--flag=value`, and bare boolean
// flags for yes/no fields; a repeated flag collects its values. Unknown flags are an error.
func fill(spec wizardSpec, f *components.Form, args []string) error {
	collected := map[string][]string{}
	var order []string
	var errs []error
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			errs = append(errs, fmt.Errorf("unexpected argument %q", a))
			continue
		}
		name, value, hasValue := strings.Cut(name, "=")
		fl := f.Field(name)
		if fl != nil && fl.Choices != nil && len(fl.Choices) == 2 && fl.Choices[0] == "no" && !hasValue {
			value, hasValue = "yes", true
		}
		if !hasValue {
			if i+1 >= len(args) {
				errs = append(errs, fmt.Errorf("--%s needs a value", name))
				continue
			}
			i++
			value = args[i]
		}
		if fl == nil {
			errs = append(errs, fmt.Errorf("the %s wizard has no option --%s", spec.name, name))
			continue
		}
		if _, seen := collected[name]; !seen {
			order = append(order, name)
		}
		collected[name] = append(collected[name], value)
	}
	for _, k := range order {
		f.Field(k).SetValue(strings.Join(collected[k], " "))
	}
	return errors.Join(errs...)
}

func required(v string) error {
	if v == "" {
		return errors.New("required")
	}
	return nil
}

func requiredAddr(v string) error {
	if v == "" {
		return errors.New("required")
	}
	return optionalAddr(v)
}

func optionalAddr(v string) error {
	if v == "" {
		return nil
	}
	if _, err := netip.ParseAddr(v); err != nil {
		return errors.New("not an address")
	}
	return nil
}

func validPrefix(v string) error {
	if _, err := netip.ParsePrefix(v); err != nil {
		if _, aerr := netip.ParseAddr(v); aerr != nil {
			return fmt.Errorf("%q is not a network (ADDR/LEN)", v)
		}
	}
	return nil
}

func requiredPrefix(v string) error {
	if v == "" {
		return errors.New("required")
	}
	if _, err := netip.ParsePrefix(v); err != nil {
		return errors.New("want ADDR/LEN")
	}
	return nil
}

func optionalNumber(v string) error {
	if v == "" {
		return nil
	}
	if _, err := strconv.ParseUint(v, 10, 32); err != nil {
		return errors.New("not a number")
	}
	return nil
}

// listOf validates a space-separated list with one.
func listOf(one func(string) error, need bool) func(string) error {
	return func(v string) error {
		items := strings.Fields(v)
		if len(items) == 0 && need {
			return errors.New("required")
		}
		for _, it := range items {
			if err := one(it); err != nil {
				return err
			}
		}
		return nil
	}
}

// prefixes parses a space-separated list of networks; a bare address is a host route.
func prefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, it := range strings.Fields(v) {
		p, err := netip.ParsePrefix(it)
		if err != nil {
			a, aerr := netip.ParseAddr(it)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a network", it)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p)
	}
	return out, nil
}
