package wizards

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// This file reads what the wizards need to know of a host from its state, and says clearly
// what is wrong when the options do not fit it.

// linkNames lists the host's interfaces for error messages.
func linkNames(s *model.State) string {
	var names []string
	for _, l := range s.Links {
		names = append(names, l.Name)
	}
	if len(names) == 0 {
		return "no interfaces"
	}
	return strings.Join(names, ", ")
}

// needLink returns the link named by an option, or an error that lists the host's links.
func needLink(s *model.State, name, flag string) (*model.Link, error) {
	if name == "" {
		return nil, fmt.Errorf("%s: an interface name is required (this host has %s)", flag, linkNames(s))
	}
	l := s.LinkByName(name)
	if l == nil {
		return nil, fmt.Errorf("%s: unknown interface %q: this host has %s", flag, name, linkNames(s))
	}
	return l, nil
}

// v4Addrs returns the global IPv4 addresses of a link, primary first as the kernel lists them.
func v4Addrs(l *model.Link) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range l.Addrs {
		if a.Prefix.Addr().Is4() && (a.Scope == "" || a.Scope == "global") {
			out = append(out, a.Prefix)
		}
	}
	return out
}

// connected returns the IPv4 networks of a link's addresses.
func connected(l *model.Link) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range v4Addrs(l) {
		if p := a.Masked(); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func prefixList(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "none"
	}
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ", ")
}

// localAddr returns the link that holds address a, or nil.
func localAddr(s *model.State, a netip.Addr) *model.Link {
	for i := range s.Links {
		for _, x := range s.Links[i].Addrs {
			if x.Prefix.Addr() == a {
				return &s.Links[i]
			}
		}
	}
	return nil
}

// addrOn returns this host's address on link l in the network of a (the address a neighbour
// there reaches it by), else its first global IPv4 address on l.
func addrOn(l *model.Link, a netip.Addr) netip.Addr {
	addrs := v4Addrs(l)
	for _, p := range addrs {
		if p.Masked().Contains(a) {
			return p.Addr()
		}
	}
	if len(addrs) > 0 {
		return addrs[0].Addr()
	}
	return netip.Addr{}
}

// linkOf returns the link whose connected network holds a, or nil.
func linkOf(s *model.State, a netip.Addr) *model.Link {
	for i := range s.Links {
		for _, p := range connected(&s.Links[i]) {
			if p.Contains(a) {
				return &s.Links[i]
			}
		}
	}
	return nil
}

// checkOnLink checks that a gateway is reachable directly on an interface, as the kernel
// requires of a route's gateway (fib_check_nh: the gateway must be covered by a link-scope
// route of the device).
func checkOnLink(l *model.Link, gw netip.Addr, flag string) error {
	if !gw.Is4() {
		return fmt.Errorf("%s: gateway %s is not an IPv4 address", flag, gw)
	}
	for _, a := range l.Addrs {
		if a.Prefix.Addr() == gw {
			return fmt.Errorf("%s: gateway %s is this host's own address on %s: give the router's address", flag, gw, l.Name)
		}
	}
	for _, a := range l.Addrs {
		if a.Prefix.Masked().Contains(gw) || a.Peer.IsValid() && a.Peer.Contains(gw) {
			return nil
		}
	}
	return fmt.Errorf("%s: gateway %s is not on-link on %s: the networks connected there are %s; give a gateway inside one of them",
		flag, gw, l.Name, prefixList(connected(l)))
}

// gateways returns the distinct gateways that routes of any table use on an interface, those of
// default routes first.
func gateways(s *model.State, iface string) []netip.Addr {
	var def, other []netip.Addr
	for _, r := range s.Routes {
		if r.Family != inet.V4 || r.Table == model.TableLocal {
			continue
		}
		add := func(gw netip.Addr, dev string) {
			if !gw.IsValid() || dev != iface || slices.Contains(def, gw) || slices.Contains(other, gw) {
				return
			}
			if r.Dst.Bits() == 0 {
				def = append(def, gw)
			} else {
				other = append(other, gw)
			}
		}
		add(r.Gateway, r.Dev)
		for _, nh := range r.Nexthops {
			add(nh.Gateway, nh.Dev)
		}
	}
	return append(def, other...)
}

// GatewayError says that the gateway of an uplink cannot be told from the host's routes: none
// uses a gateway on it, or several do. A form (or a terminal) asks the operator and plans again
// with the answer.
type GatewayError struct {
	Flag       string       // the option to give it with, e.g. "--uplink em1:GATEWAY"
	Iface      string       // the uplink
	Candidates []netip.Addr // the gateways seen on it (none, or more than one)
	Connected  []netip.Prefix
}

func (e *GatewayError) Error() string {
	if len(e.Candidates) == 0 {
		return fmt.Sprintf("no gateway known for %s: no route uses a gateway on it (its networks: %s); give it as %s",
			e.Iface, prefixList(e.Connected), e.Flag)
	}
	var c []string
	for _, a := range e.Candidates {
		c = append(c, a.String())
	}
	return fmt.Sprintf("the gateway of %s is ambiguous: routes use %s there; give the right one as %s", e.Iface, strings.Join(c, " and "), e.Flag)
}

// gatewayOf returns the gateway of an uplink: the one given, checked to be on-link, or the one
// the host's routes use there when that is unambiguous.
func gatewayOf(s *model.State, l *model.Link, given netip.Addr, flag string) (netip.Addr, error) {
	if given.IsValid() {
		return given, checkOnLink(l, given, flag)
	}
	gws := gateways(s, l.Name)
	// Gateways of routes on the link that are not on-link (stale routes) do not count.
	gws = slices.DeleteFunc(gws, func(g netip.Addr) bool { return checkOnLink(l, g, flag) != nil })
	if len(gws) == 1 {
		return gws[0], nil
	}
	return netip.Addr{}, &GatewayError{Flag: flag, Iface: l.Name, Candidates: gws, Connected: connected(l)}
}

// tableName turns an interface name into a routing table name (letters, digits, '_', '.', '-').
func tableName(prefix, iface string) string {
	return prefix + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, iface)
}

// extraRoutes lists the routes of a table that a plan does not put there, for a note: a table
// name given by the operator may name a table that is used for something else too.
func extraRoutes(s *model.State, table int, want []model.Route) []string {
	var out []string
	for _, r := range s.Routes {
		if r.Table != table {
			continue
		}
		if slices.ContainsFunc(want, func(w model.Route) bool {
			return w.Table == table && w.Dst == r.Dst && w.Metric == r.Metric && w.TOS == r.TOS
		}) {
			continue
		}
		out = append(out, r.Args(s.TableName))
	}
	return out
}

// ParseAddr parses an IPv4 address given with an option (flag names it in errors).
func ParseAddr(v, flag string) (netip.Addr, error) {
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%s: %q is not an IPv4 address", flag, v)
	}
	return a, nil
}

// ParsePrefix parses an IPv4 network given with an option (flag names it in errors); a bare
// address is a /32. Host bits are an error, since the kernel would refuse the route.
func ParsePrefix(v, flag string) (netip.Prefix, error) {
	if !strings.Contains(v, "/") {
		a, err := ParseAddr(v, flag)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, 32), nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%s: %q is not an IPv4 network (want e.g. 10.0.44.0/24)", flag, v)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s: %s has host bits set: did you mean %s?", flag, p, p.Masked())
	}
	return p, nil
}

// parsePort parses a TCP or UDP port, 1-65535.
func parsePort(v, flag string) (uint16, error) {
	var n int
	if _, err := fmt.Sscanf(v, "%d", &n); err != nil || fmt.Sprint(n) != v {
		return 0, fmt.Errorf("%s: port %q is not a number", flag, v)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%s: port %d is out of range: want 1-65535", flag, n)
	}
	return uint16(n), nil
}

// LinkOf returns the link whose connected network holds a (nil when none does): the LAN a
// flow comes from, for the watcher.
func LinkOf(s *model.State, a netip.Addr) *model.Link { return linkOf(s, a) }
