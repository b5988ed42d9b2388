package pages

import (
	"net/netip"
	"slices"
	"strconv"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// uplinkOffer is an interface the console offers as an uplink (or a WAN), with the gateway it
// found for it and where it found it.
type uplinkOffer struct {
	Iface   string
	Gateway netip.Addr
	From    string // "a route", "the neighbour table", "the other end of its /30"
}

// String is the offer as a form takes it: IFACE or IFACE:GATEWAY.
func (o uplinkOffer) String() string {
	if o.Gateway.IsValid() {
		return o.Iface + ":" + o.Gateway.String()
	}
	return o.Iface
}

// uplinkOffers lists the interfaces that can be uplinks: up, with an IPv4 address, never the
// loopback. Each gateway comes from a route through the interface (a default route first);
// when no route names one, from the neighbour table (the only neighbour heard from on the
// interface's networks, or the one that announced itself as a router); on a /30 or /31, the
// other end.
func uplinkOffers(s *model.State, neigh []model.Neighbour) []uplinkOffer {
	if s == nil {
		return nil
	}
	var out []uplinkOffer
	for _, l := range s.Links {
		if l.Kind == "loopback" || l.Name == "lo" || !l.Up {
			continue
		}
		var nets []netip.Prefix
		own := map[netip.Addr]bool{}
		for _, a := range l.Addrs {
			if a.Prefix.Addr().Is4() && a.Scope != "host" && a.Scope != "link" {
				nets = append(nets, a.Prefix)
				own[a.Prefix.Addr()] = true
			}
		}
		if len(nets) == 0 {
			continue
		}
		o := uplinkOffer{Iface: l.Name}
		if gw := routeGateway(s, l.Name); gw.IsValid() {
			o.Gateway, o.From = gw, "a route"
		} else if gw := neighbourGateway(neigh, l.Name, nets, own); gw.IsValid() {
			o.Gateway, o.From = gw, "the neighbour table"
		} else if gw, bits := otherEnd(nets); gw.IsValid() {
			o.Gateway, o.From = gw, "the other end of its /"+strconv.Itoa(bits)
		}
		out = append(out, o)
	}
	return out
}

// routeGateway is the IPv4 gateway of a route through dev in any table, a default route's
// first.
func routeGateway(s *model.State, dev string) netip.Addr {
	var first netip.Addr
	for i := range s.Routes {
		r := &s.Routes[i]
		if r.Family != inet.V4 {
			continue
		}
		gw := netip.Addr{}
		if r.Dev == dev && r.Gateway.Is4() {
			gw = r.Gateway
		}
		for _, nh := range r.Nexthops {
			if nh.Dev == dev && nh.Gateway.Is4() && !gw.IsValid() {
				gw = nh.Gateway
			}
		}
		switch {
		case !gw.IsValid():
		case r.Dst.Bits() == 0:
			return gw
		case !first.IsValid():
			first = gw
		}
	}
	return first
}

// neighbourGateway is the one neighbour on dev's networks that answered lately, or the one
// of several that is a router.
func neighbourGateway(neigh []model.Neighbour, dev string, nets []netip.Prefix, own map[netip.Addr]bool) netip.Addr {
	var cands []model.Neighbour
	for _, n := range neigh {
		if n.Dev != dev || !n.Addr.Is4() || !n.Usable() || own[n.Addr] {
			continue
		}
		if slices.ContainsFunc(nets, func(p netip.Prefix) bool { return p.Contains(n.Addr) }) {
			cands = append(cands, n)
		}
	}
	if len(cands) == 1 {
		return cands[0].Addr
	}
	var routers []netip.Addr
	for _, n := range cands {
		if n.Router {
			routers = append(routers, n.Addr)
		}
	}
	if len(routers) == 1 {
		return routers[0]
	}
	return netip.Addr{}
}

// otherEnd is the other address of a point-to-point network (/30 or /31).
func otherEnd(nets []netip.Prefix) (netip.Addr, int) {
	for _, p := range nets {
		switch p.Bits() {
		case 31:
			if a := p.Masked().Addr(); a != p.Addr() {
				return a, 31
			}
			return p.Masked().Addr().Next(), 31
		case 30:
			first := p.Masked().Addr().Next()
			if first == p.Addr() {
				return first.Next(), 30
			}
			return first, 30
		}
	}
	return netip.Addr{}, 0
}

// ifaceOffers are the names of the interfaces with an address, the loopback left out: what
// In, Out and LAN fields take.
func ifaceOffers(s *model.State) []string {
	if s == nil {
		return nil
	}
	var out []string
	for _, l := range s.Links {
		if l.Kind != "loopback" && l.Name != "lo" && len(l.Addrs) > 0 {
			out = append(out, l.Name)
		}
	}
	return out
}
