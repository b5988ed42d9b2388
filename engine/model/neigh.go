package model

import "net/netip"

// Neighbour is one entry of the neighbour (ARP or NDP) table: an address on a link this host
// has heard from or resolved.
type Neighbour struct {
	Dev  string     `json:"dev"`
	Addr netip.Addr `json:"addr"`
	MAC  string     `json:"mac,omitempty"`
	// State is the NUD state in ip neigh's words: reachable, stale, delay, probe, failed,
	// incomplete, permanent, noarp.
	State string `json:"state"`
	// Router is set for IPv6 neighbours that announced themselves as routers.
	Router bool `json:"router,omitempty"`
}

// Usable reports whether the neighbour answered recently enough to be a gateway candidate.
func (n Neighbour) Usable() bool {
	switch n.State {
	case "reachable", "stale", "delay", "probe", "permanent":
		return true
	}
	return false
}
