package model

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"roundtrip/engine/inet"
)

// Route types (RTN_* in include/uapi/linux/rtnetlink.h), named as iproute2 prints them.
const (
	RouteUnicast     = "unicast"
	RouteLocal       = "local"
	RouteBroadcast   = "broadcast"
	RouteAnycast     = "anycast"
	RouteMulticast   = "multicast"
	RouteBlackhole   = "blackhole"
	RouteUnreachable = "unreachable"
	RouteProhibit    = "prohibit"
	RouteThrow       = "throw"
	RouteNAT         = "nat"
)

// Route is one route of one table.
type Route struct {
	Family   inet.Family  `json:"family"`
	Table    int          `json:"table"`
	Type     string       `json:"type"`
	Dst      netip.Prefix `json:"dst"` // 0.0.0.0/0 for default
	TOS      uint8        `json:"tos,omitempty"`
	Gateway  netip.Addr   `json:"gateway,omitzero"`
	Dev      string       `json:"dev,omitempty"`
	Src      netip.Addr   `json:"prefsrc,omitzero"`
	Metric   int          `json:"metric,omitempty"`
	Scope    string       `json:"scope,omitempty"`    // universe, site, link, host, nowhere
	Protocol string       `json:"protocol,omitempty"` // kernel, boot, static, dhcp, ...
	OnLink   bool         `json:"onlink,omitempty"`
	Nexthops []Nexthop    `json:"nexthops,omitempty"` // multipath; Gateway/Dev empty then
}

// Nexthop is one path of a multipath route. Weight is as iproute2 shows it (hops+1).
type Nexthop struct {
	Gateway netip.Addr `json:"gateway,omitzero"`
	Dev     string     `json:"dev,omitempty"`
	Weight  int        `json:"weight"`
	OnLink  bool       `json:"onlink,omitempty"`
}

// Args renders the route as arguments of `ip route add` (family flag not included), for
// reading: the words of Argv joined by spaces.
func (r Route) Args(names func(int) string) string {
	return strings.Join(r.Argv(names), " ")
}

// Argv renders the route as the argument words of `ip route add` (family flag not included),
// each one word whatever it holds, for a command line (ShellJoin) or a program.
func (r Route) Argv(names func(int) string) []string {
	a := make([]string, 0, 16)
	if r.Type != "" && r.Type != RouteUnicast {
		a = append(a, r.Type)
	}
	if r.Dst.Bits() == 0 {
		a = append(a, "default")
	} else {
		a = append(a, r.Dst.String())
	}
	if r.TOS != 0 {
		a = append(a, "tos", fmt.Sprintf("0x%02x", r.TOS))
	}
	if r.Gateway.IsValid() {
		a = append(a, "via", r.Gateway.String())
	}
	if r.Dev != "" {
		a = append(a, "dev", r.Dev)
	}
	if r.Table != TableMain {
		a = append(a, "table", names(r.Table))
	}
	if r.Protocol != "" && r.Protocol != "boot" {
		a = append(a, "proto", r.Protocol)
	}
	if r.Scope != "" && r.Scope != "universe" {
		a = append(a, "scope", r.Scope)
	}
	if r.Src.IsValid() {
		a = append(a, "src", r.Src.String())
	}
	if r.Metric != 0 {
		a = append(a, "metric", strconv.Itoa(r.Metric))
	}
	if r.OnLink {
		a = append(a, "onlink")
	}
	for _, nh := range r.Nexthops {
		a = append(a, "nexthop")
		if nh.Gateway.IsValid() {
			a = append(a, "via", nh.Gateway.String())
		}
		if nh.Dev != "" {
			a = append(a, "dev", nh.Dev)
		}
		a = append(a, "weight", strconv.Itoa(nh.Weight))
		if nh.OnLink {
			a = append(a, "onlink")
		}
	}
	return a
}

func (r Route) String() string {
	return fmt.Sprintf("ip %s route add %s", r.Family.Flag(), r.Args(NumericTable))
}

// Key identifies a route the way the kernel does for replace/delete: table, dst, tos and
// metric (priority). Two routes with the same key cannot coexist (for IPv4; IPv6 appends
// multipath siblings under one key).
type RouteKey struct {
	Family inet.Family
	Table  int
	Dst    netip.Prefix
	TOS    uint8
	Metric int
	Type   string
}

// Key returns the route's identity.
func (r Route) Key() RouteKey {
	t := r.Type
	if t == "" {
		t = RouteUnicast
	}
	return RouteKey{r.Family, r.Table, r.Dst, r.TOS, r.Metric, t}
}

// RoutesOf returns the routes of one table and family, in stored order.
func (s *State) RoutesOf(f inet.Family, table int) []Route {
	var out []Route
	for _, r := range s.Routes {
		if r.Family == f && r.Table == table {
			out = append(out, r)
		}
	}
	return out
}

// Tables returns the ids of the tables that hold routes, in ascending order.
func (s *State) Tables() []int {
	seen := map[int]bool{}
	var ids []int
	for _, r := range s.Routes {
		if !seen[r.Table] {
			seen[r.Table] = true
			ids = append(ids, r.Table)
		}
	}
	slices.SortFunc(ids, CompareTables)
	return ids
}

// CompareTables orders table ids as the kernel's unsigned 32-bit numbers: the same as the ints
// in a 64-bit build; a 32-bit one holds an id above 2^31-1 as a negative int, which still
// sorts last.
func CompareTables(a, b int) int { return cmp.Compare(uint32(a), uint32(b)) }
