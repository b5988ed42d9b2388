package kernel

import (
	"context"

	"roundtrip/engine/model"
)

// EachRouteOfTable streams the routes of one table, IPv4 then IPv6, to fn as the dumps deliver
// them (the kernel filters them, strict checking being on), converted as Read converts them.
// When the kernel interrupts a dump because the table changed meanwhile, it calls restart, so
// that the caller drops what it got (its error ends EachRouteOfTable), and dumps both families
// again. The console reads the table it shows this way.
func EachRouteOfTable(ctx context.Context, ns Namespace, table int, names map[int]string, restart func() error, fn func(*model.Route) error) error {
	return eachRouteRetrying(ctx, ns, table, names, restart, fn)
}
