package kernel

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// EachRouteOfTable streams the routes of one table, IPv4 then IPv6, to fn as the dumps deliver
// them (the kernel filters them, strict checking being on), converted as Read converts them.
// When the kernel interrupts a dump because the table changed meanwhile, it calls restart, so
// that the caller drops what it got (its error ends EachRouteOfTable), and dumps both families
// again. The console reads the table it shows this way.
func EachRouteOfTable(ctx context.Context, ns Namespace, table int, names map[int]string, restart func() error, fn func(*model.Route) error) error {
	l, err := OpenHost(ns, nil)
	if err != nil {
		return err
	}
	defer l.Close()
	for try := 0; ; try++ {
		if try > 0 {
			if err := restart(); err != nil {
				return err
			}
		}
		err = nil
		for _, fam := range []inet.Family{inet.V4, inet.V6} {
			if err = eachRouteOf(ctx, l, fam, table, names, fn); err != nil {
				err = fmt.Errorf("reading %s routes of table %d of %s: %w", fam, table, ns, err)
				break
			}
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
		if try+1 == dumpRetries {
			return fmt.Errorf("the kernel interrupted the dump of table %d %d times because it kept changing; try again: %w", table, dumpRetries, err)
		}
	}
}
