package trace

import "roundtrip/engine/model"

// RouteKeeper chooses, from a stream of routes in the order of State.Routes, those that Run
// reads from State.Routes itself rather than asking the FIB: the local table's (the addrtype
// match) and, per device, the first route with a gateway and the first default route with one
// (gatewayOn). A State holding only the kept routes, with a FIB built from all of them
// (fib.Builder), traces exactly as the full State does, without a full table in memory.
type RouteKeeper struct {
	gw, def map[string]bool
}

// Keep reports whether r is to be kept in the State given to Run.
func (k *RouteKeeper) Keep(r *model.Route) bool {
	if r.Table == model.TableLocal {
		return true
	}
	if !r.Gateway.IsValid() {
		return false
	}
	if k.gw == nil {
		k.gw, k.def = map[string]bool{}, map[string]bool{}
	}
	keep := false
	if !k.gw[r.Dev] {
		k.gw[r.Dev] = true
		keep = true
	}
	if r.Dst.Bits() == 0 && !k.def[r.Dev] {
		k.def[r.Dev] = true
		keep = true
	}
	return keep
}
