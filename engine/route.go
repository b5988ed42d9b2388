package engine

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
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
	Family   Family       `json:"family"`
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

// Args renders the route as arguments of `ip route add` (family flag not included).
func (r Route) Args(names func(int) string) string {
	var b strings.Builder
	if r.Type != "" && r.Type != RouteUnicast {
		b.WriteString(r.Type + " ")
	}
	if r.Dst.Bits() == 0 {
		b.WriteString("default")
	} else {
		b.WriteString(r.Dst.String())
	}
	if r.TOS != 0 {
		fmt.Fprintf(&b, " tos 0x%02x", r.TOS)
	}
	if r.Gateway.IsValid() {
		fmt.Fprintf(&b, " via %s", r.Gateway)
	}
	if r.Dev != "" {
		fmt.Fprintf(&b, " dev %s", r.Dev)
	}
	if r.Table != TableMain {
		fmt.Fprintf(&b, " table %s", names(r.Table))
	}
	if r.Protocol != "" && r.Protocol != "boot" {
		fmt.Fprintf(&b, " proto %s", r.Protocol)
	}
	if r.Scope != "" && r.Scope != "universe" {
		fmt.Fprintf(&b, " scope %s", r.Scope)
	}
	if r.Src.IsValid() {
		fmt.Fprintf(&b, " src %s", r.Src)
	}
	if r.Metric != 0 {
		fmt.Fprintf(&b, " metric %d", r.Metric)
	}
	if r.OnLink {
		b.WriteString(" onlink")
	}
	for _, nh := range r.Nexthops {
		b.WriteString(" nexthop")
		if nh.Gateway.IsValid() {
			fmt.Fprintf(&b, " via %s", nh.Gateway)
		}
		if nh.Dev != "" {
			fmt.Fprintf(&b, " dev %s", nh.Dev)
		}
		fmt.Fprintf(&b, " weight %d", nh.Weight)
		if nh.OnLink {
			b.WriteString(" onlink")
		}
	}
	return b.String()
}

func (r Route) String() string {
	return fmt.Sprintf("ip %s route add %s", r.Family.Flag(), r.Args(numericTable))
}

// Key identifies a route the way the kernel does for replace/delete: table, dst, tos and
// metric (priority). Two routes with the same key cannot coexist (for IPv4; IPv6 appends
// multipath siblings under one key).
type RouteKey struct {
	Family Family
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
func (s *State) RoutesOf(f Family, table int) []Route {
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
	slices.Sort(ids)
	return ids
}
