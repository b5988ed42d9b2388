// Package engine models a Linux host's network state, simulates the paths packets take through it,
// and plans changes to it; kernel access lives in engine/kernel.
package engine

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// Family is an address family. The zero value is invalid on purpose so that a missing family in
// a snapshot is an error rather than silently IPv4.
type Family uint8

// Address families, numbered as in the kernel (AF_INET, AF_INET6).
const (
	V4 Family = 2
	V6 Family = 10
)

func (f Family) String() string {
	switch f {
	case V4:
		return "inet"
	case V6:
		return "inet6"
	}
	return fmt.Sprintf("family(%d)", uint8(f))
}

// MarshalText writes the family as iproute2 names it.
func (f Family) MarshalText() ([]byte, error) {
	if f != V4 && f != V6 {
		return nil, fmt.Errorf("invalid address family %d", uint8(f))
	}
	return []byte(f.String()), nil
}

// UnmarshalText accepts "inet" or "inet6".
func (f *Family) UnmarshalText(b []byte) error {
	switch string(b) {
	case "inet":
		*f = V4
	case "inet6":
		*f = V6
	default:
		return fmt.Errorf("invalid address family %q: want inet or inet6", b)
	}
	return nil
}

// FamilyOf returns the family of an address.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() || a.Is4In6() {
		return V4
	}
	return V6
}

// Flag returns the iproute2 family flag ("-4" or "-6").
func (f Family) Flag() string {
	if f == V6 {
		return "-6"
	}
	return "-4"
}

// State is everything about a host (or one network namespace of it) that decides where a packet
// goes: links and addresses, policy rules, the routes of every table, netfilter and the sysctls
// on the path. It is plain data: it can be compared, diffed, saved as a snapshot and loaded on
// another machine.
type State struct {
	Host       string         `json:"host,omitempty"`
	Namespace  string         `json:"namespace,omitempty"`
	Links      []Link         `json:"links"`
	Rules      []Rule         `json:"rules"`
	Routes     []Route        `json:"routes"`
	TableNames map[int]string `json:"table_names,omitempty"`
	Netfilter  Netfilter      `json:"netfilter"`
	Sysctls    Sysctls        `json:"sysctls,omitempty"`
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
	return numericTable(id)
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
		if err != nil {
			return 0, fmt.Errorf("routing table %s is out of range: a table id is a number from 0 to %d", name, uint32(math.MaxUint32))
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
)

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
