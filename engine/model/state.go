// Package model is the network state of a host as plain data (links, addresses, rules, routes,
// netfilter, sysctls), with its snapshot file format, its diff and its validation.
package model

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/nft"
)

// State is everything about a host (or one network namespace of it) that decides where a packet
// goes: links and addresses, policy rules, the routes of every table, netfilter and the sysctls
// on the path. It is plain data: it can be compared, diffed, saved as a snapshot and loaded on
// another machine.
type State struct {
	Host       string           `json:"host,omitempty"`
	Namespace  string           `json:"namespace,omitempty"`
	Links      []Link           `json:"links"`
	Rules      []Rule           `json:"rules"`
	Routes     []Route          `json:"routes"`
	TableNames map[int]string   `json:"table_names,omitempty"`
	Netfilter  iptables.Ruleset `json:"netfilter"`
	Nftables   *nft.Ruleset     `json:"nftables,omitempty"` // see NativeNFT
	Sysctls    Sysctls          `json:"sysctls,omitempty"`
	// IPSets are the ipsets the iptables set match tests (ipset list); nil when none exist
	// or they could not be read.
	IPSets []IPSet `json:"ipsets,omitempty"`
	// WriteFirewall is where wizards write roundtrip's netfilter rules when the user chose
	// (--firewall): FirewallNFT (roundtrip's own nft table) or FirewallIPTables; "" chooses
	// by the host (UseNFT). Not part of a snapshot.
	WriteFirewall string `json:"-"`
}

// Firewalls a plan can write its netfilter rules into.
const (
	FirewallNFT      = "nft"
	FirewallIPTables = "iptables"
)

// UseNFT reports whether a plan writes its netfilter rules into roundtrip's own nft table:
// when asked to, or, unasked, when the host's firewall is native nftables and it has no
// iptables rules of its own (of either backend) that roundtrip's chains would join.
func (s *State) UseNFT() bool {
	switch s.WriteFirewall {
	case FirewallNFT:
		return true
	case FirewallIPTables:
		return false
	}
	if !s.NativeNFT() {
		return false
	}
	for _, t := range s.Netfilter.Tables {
		for _, c := range t.Chains {
			if len(c.Rules) > 0 || c.Policy != "" && c.Policy != "ACCEPT" {
				return false
			}
		}
	}
	return true
}

// Link is a network interface.
type Link struct {
	Index        int       `json:"index"`
	Name         string    `json:"name"`
	Kind         string    `json:"kind"` // veth, bridge, vxlan, ipip, gre, loopback, device, ...
	Up           bool      `json:"up"`   // administratively up (IFF_UP)
	OperState    string    `json:"oper_state,omitempty"`
	MTU          int       `json:"mtu"`
	Master       string    `json:"master,omitempty"`
	HardwareAddr string    `json:"hwaddr,omitempty"`
	Peer         string    `json:"peer,omitempty"` // veth peer (by name when in this namespace)
	Tunnel       *Tunnel   `json:"tunnel,omitempty"`
	Addrs        []Address `json:"addrs,omitempty"`
	// Hairpin is a bridge port's hairpin mode (the bridge may send a frame back out the port
	// it came in on, which a DNAT back to its sender needs); nil when not read.
	Hairpin *bool `json:"hairpin,omitempty"`
}

// Tunnel holds the parameters of ipip, gre, sit and vxlan links.
type Tunnel struct {
	Local  netip.Addr `json:"local,omitzero"`
	Remote netip.Addr `json:"remote,omitzero"`
	TTL    int        `json:"ttl,omitempty"`
	Key    uint32     `json:"key,omitempty"`  // gre key
	VNI    uint32     `json:"vni,omitempty"`  // vxlan
	Port   int        `json:"port,omitempty"` // vxlan UDP destination port
	Group  netip.Addr `json:"group,omitzero"` // vxlan multicast group
	Dev    string     `json:"dev,omitempty"`  // underlying device
}

// Address is an address configured on a link.
type Address struct {
	Prefix    netip.Prefix `json:"prefix"`
	Peer      netip.Prefix `json:"peer,omitzero"`
	Scope     string       `json:"scope,omitempty"` // global, link, host
	Secondary bool         `json:"secondary,omitempty"`
}

// LinkByName returns the link with that name, or nil.
func (s *State) LinkByName(name string) *Link {
	for i := range s.Links {
		if s.Links[i].Name == name {
			return &s.Links[i]
		}
	}
	return nil
}

// LinkByIndex returns the link with that ifindex, or nil.
func (s *State) LinkByIndex(idx int) *Link {
	for i := range s.Links {
		if s.Links[i].Index == idx {
			return &s.Links[i]
		}
	}
	return nil
}

// Well-known routing tables (include/uapi/linux/rtnetlink.h).
const (
	TableUnspec  = 0
	TableDefault = 253
	TableMain    = 254
	TableLocal   = 255
)

// TableName returns the name of a table as `ip` would print it.
func (s *State) TableName(id int) string {
	if n, ok := s.TableNames[id]; ok && n != "" {
		return n
	}
	return NumericTable(id)
}

// TableID resolves a table name or number.
func (s *State) TableID(name string) (int, error) {
	switch name {
	case "default":
		return TableDefault, nil
	case "main":
		return TableMain, nil
	case "local":
		return TableLocal, nil
	}
	for id, n := range s.TableNames {
		if n == name {
			return id, nil
		}
	}
	if name != "" && strings.Trim(name, "0123456789") == "" {
		// Table ids are 32 bits: a bigger number is no table, not one truncated into another.
		id, err := strconv.ParseUint(name, 10, 32)
		if err != nil || id > MaxU32 {
			return 0, fmt.Errorf("routing table %s is out of range: a table id is a number from 0 to %d", name, MaxU32)
		}
		return int(id), nil
	}
	return 0, fmt.Errorf("unknown routing table %q: not a number and not named in rt_tables", name)
}

// Sysctls holds the path-deciding kernel settings, keyed by their dotted name
// (net.ipv4.ip_forward, net.ipv4.conf.eth0.rp_filter, net.netfilter.nf_conntrack_max, ...).
type Sysctls map[string]string

// Sysctl names that decide paths.
const (
	SysctlIPForward      = "net.ipv4.ip_forward"
	SysctlIPv6Forward    = "net.ipv6.conf.all.forwarding"
	SysctlSrcValidMark   = "net.ipv4.conf.all.src_valid_mark"
	SysctlConntrackCount = "net.netfilter.nf_conntrack_count"
	SysctlConntrackMax   = "net.netfilter.nf_conntrack_max"
	// Whether bridged IPv4/IPv6 packets pass iptables/ip6tables (and conntrack): present only
	// while br_netfilter is loaded, per namespace; absent means off.
	SysctlBridgeNFIPTables  = "net.bridge.bridge-nf-call-iptables"
	SysctlBridgeNFIP6Tables = "net.bridge.bridge-nf-call-ip6tables"
)

// BridgeNFKey returns the sysctl that decides whether bridged packets of a family pass
// iptables (SysctlBridgeNFIPTables or SysctlBridgeNFIP6Tables).
func BridgeNFKey(f inet.Family) string {
	if f == inet.V6 {
		return SysctlBridgeNFIP6Tables
	}
	return SysctlBridgeNFIPTables
}

// BridgeNFCall reports whether bridged packets of a family pass iptables and conntrack
// (br_netfilter loaded and its bridge-nf-call sysctl on).
func (s Sysctls) BridgeNFCall(f inet.Family) bool { return s.Int(BridgeNFKey(f), 0) == 1 }

// BridgeNFText says how the bridge-nf-call sysctl of a family is set, for findings.
func (s Sysctls) BridgeNFText(f inet.Family) string {
	k := BridgeNFKey(f)
	if _, ok := s[k]; !ok {
		return k + " absent: br_netfilter is not loaded"
	}
	return k + " = " + s[k]
}

// ConfKey returns the name of a per-interface net.ipv4.conf setting ("all", "default" or a link).
func ConfKey(iface, setting string) string {
	// Interface names with dots are written with slashes in sysctl's dotted notation.
	return "net.ipv4.conf." + strings.ReplaceAll(iface, ".", "/") + "." + setting
}

// ConfKey6 returns the name of a per-interface net.ipv6.conf setting, written as ConfKey's.
func ConfKey6(iface, setting string) string {
	return "net.ipv6.conf." + strings.ReplaceAll(iface, ".", "/") + "." + setting
}

// Int returns a sysctl as an integer, or def when it is absent or not a number.
func (s Sysctls) Int(key string, def int) int {
	v, ok := s[key]
	if !ok {
		return def
	}
	var n int
	if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d", &n); err != nil {
		return def
	}
	return n
}

// IPForward reports whether IPv4 forwarding is on.
func (s Sysctls) IPForward() bool { return s.Int(SysctlIPForward, 0) == 1 }

// RPFilter returns the effective reverse-path filter mode for an interface: the kernel uses
// max(all, iface) (net/ipv4/fib_frontend.c, IN_DEV_RPFILTER). 0 off, 1 strict, 2 loose.
func (s Sysctls) RPFilter(iface string) int {
	return max(s.Int(ConfKey("all", "rp_filter"), 0), s.Int(ConfKey(iface, "rp_filter"), 0))
}

// SrcValidMark reports whether the fwmark is used in the reverse-path lookup for an interface:
// like rp_filter, the kernel ORs all and the interface (IN_DEV_SRC_VMARK).
func (s Sysctls) SrcValidMark(iface string) bool {
	return s.Int(ConfKey("all", "src_valid_mark"), 0) == 1 || s.Int(ConfKey(iface, "src_valid_mark"), 0) == 1
}

// AcceptLocal reports whether packets with a local source address are accepted on an interface.
func (s Sysctls) AcceptLocal(iface string) bool {
	return s.Int(ConfKey("all", "accept_local"), 0) == 1 || s.Int(ConfKey(iface, "accept_local"), 0) == 1
}

// OnLink reports whether a gateway is reachable directly, as fib_check_nh_v4_gw requires: a
// route of link or host scope covers it (in the route's table or main), on dev when dev is
// given; or an address on the link covers it. IPv6 link-local gateways need only the device.
func OnLink(st *State, table int, gw netip.Addr, dev string) bool {
	return OnLinkIn(st.Routes, st.Links, table, gw, dev)
}

func OnLinkIn(routes []Route, links []Link, table int, gw netip.Addr, dev string) bool {
	if gw.Is6() && gw.IsLinkLocalUnicast() {
		return dev != ""
	}
	for _, r := range routes {
		if (r.Table != table && r.Table != TableMain) || r.Family != inet.FamilyOf(gw) || !r.Dst.Contains(gw) {
			continue
		}
		if r.Type != RouteUnicast && r.Type != "" {
			continue
		}
		if r.Gateway.IsValid() || len(r.Nexthops) > 0 {
			continue
		}
		if inet.FamilyOf(gw) == inet.V4 && r.Scope != "link" && r.Scope != "host" {
			continue
		}
		if dev == "" || r.Dev == dev {
			return true
		}
	}
	for _, l := range links {
		if dev != "" && l.Name != dev {
			continue
		}
		for _, a := range l.Addrs {
			if a.Prefix.Masked().Contains(gw) || a.Peer.IsValid() && a.Peer.Contains(gw) {
				return true
			}
		}
	}
	return false
}

// SysctlIface returns the interface of a per-interface sysctl (net.ipv4.conf.IF.x,
// net.ipv6.conf.IF.x, net.ipv4.neigh.IF.x), with slashes turned back into dots.
func SysctlIface(key string) (string, bool) {
	parts := strings.Split(key, ".")
	if len(parts) == 5 && parts[0] == "net" && (parts[2] == "conf" || parts[2] == "neigh") {
		return strings.ReplaceAll(parts[3], "/", "."), true
	}
	return "", false
}

// Clone deep-copies what changes of a state edit (planning, fakes of the kernel): slices and
// maps the model edits are copied, values they point to (nexthops, marks) are never edited in place and are shared.
func (s *State) Clone() *State {
	out := *s
	out.Links = make([]Link, len(s.Links))
	for i, l := range s.Links {
		l.Addrs = slices.Clone(l.Addrs)
		if l.Tunnel != nil {
			t := *l.Tunnel
			l.Tunnel = &t
		}
		if l.Hairpin != nil {
			h := *l.Hairpin
			l.Hairpin = &h
		}
		out.Links[i] = l
	}
	out.Rules = slices.Clone(s.Rules)
	out.Routes = slices.Clone(s.Routes)
	out.TableNames = maps.Clone(s.TableNames)
	out.Sysctls = maps.Clone(s.Sysctls)
	out.IPSets = cloneIPSets(s.IPSets)
	out.Netfilter.Foreign = slices.Clone(s.Netfilter.Foreign)
	out.Netfilter.Hidden = slices.Clone(s.Netfilter.Hidden)
	out.Netfilter.Tables = make([]iptables.Table, len(s.Netfilter.Tables))
	for i, t := range s.Netfilter.Tables {
		t.Chains = slices.Clone(t.Chains)
		for j := range t.Chains {
			t.Chains[j].Rules = slices.Clone(t.Chains[j].Rules)
		}
		out.Netfilter.Tables[i] = t
	}
	return &out
}

// Text returns a sysctl's value as shown in findings: "unset" when the state does not have it.
func (s Sysctls) Text(key string) string {
	if v, ok := s[key]; ok {
		return v
	}
	return "unset"
}

// connectedOn returns the prefixes of the addresses on an interface (its on-link networks).
func (s *State) Connected(iface string) []netip.Prefix {
	l := s.LinkByName(iface)
	if l == nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range l.Addrs {
		out = append(out, a.Prefix.Masked())
		if a.Peer.IsValid() {
			out = append(out, a.Peer.Masked())
		}
	}
	return out
}

func PrefixContaining(ps []netip.Prefix, a netip.Addr) (netip.Prefix, bool) {
	for _, p := range ps {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}
