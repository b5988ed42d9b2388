package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// ReadOptions changes where Read looks for things outside the kernel.
type ReadOptions struct {
	// RTTablesDirs are the iproute2 configuration directories holding rt_tables and
	// rt_tables.d, highest precedence first; empty means DefaultRTTablesDirs.
	RTTablesDirs []string
	// NoRoutes and NoNetfilter leave routes and netfilter out (the change engine reads a
	// full table's routes as a stream, and netfilter only when a plan touches it).
	NoRoutes, NoNetfilter bool
}

// Read reads the network state of a namespace from the kernel: links and addresses, the policy
// rules and the routes of every table of both families, netfilter, the path-deciding sysctls and
// the routing table names.
func Read(ctx context.Context, ns Namespace) (*model.State, error) {
	return ReadWith(ctx, ns, ReadOptions{})
}

// ReadWith is Read with options.
func ReadWith(ctx context.Context, ns Namespace, opts ReadOptions) (*model.State, error) {
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("getting the host name: %w", err)
	}
	st := &model.State{Host: host, Namespace: ns.Name}

	h, err := ns.Handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()

	// The kernel counts its routes while the links and rules are read (a tenth of a second at
	// 1M routes); the route dump then fills a slice of the right size.
	counts := make(chan [2]int, 1)
	if !opts.NoRoutes {
		go func() {
			v4, v6 := routeCounts(ns)
			counts <- [2]int{v4, v6}
		}()
	}
	if st.Links, err = readLinks(h); err != nil {
		return nil, fmt.Errorf("reading links of %s: %w", ns, err)
	}
	if err := readBridgePorts(ns, st.Links); err != nil {
		return nil, err
	}
	names := make(map[int]string, len(st.Links))
	for _, l := range st.Links {
		names[l.Index] = l.Name
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", ns, err)
	}

	for _, fam := range []inet.Family{inet.V4, inet.V6} {
		rules, err := readRules(ns, fam)
		if err != nil {
			return nil, fmt.Errorf("reading %s rules of %s: %w", fam, ns, err)
		}
		st.Rules = append(st.Rules, rules...)
	}
	for i, fam := range []inet.Family{inet.V4, inet.V6} {
		if opts.NoRoutes {
			break
		}
		if i == 0 {
			c := <-counts
			st.Routes = growRoutes(st.Routes, c[0]+c[1])
		}
		if err := readRoutes(ctx, h, fam, names, st); err != nil {
			return nil, fmt.Errorf("reading %s routes of %s: %w", fam, ns, err)
		}
	}

	if st.Sysctls, err = readSysctls(ns, st.Links); err != nil {
		return nil, fmt.Errorf("reading sysctls of %s: %w", ns, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", ns, err)
	}

	// Without iptables tools ReadNetfilter says so in Netfilter.Unavailable rather than failing.
	if !opts.NoNetfilter {
		if st.Netfilter, err = ReadNetfilter(ctx, ns.Runner()); err != nil {
			return nil, fmt.Errorf("reading netfilter of %s: %w", ns, err)
		}
		// The sets the set match tests. Sets that cannot be read (without CAP_NET_ADMIN) do
		// not fail the read: the rules that test them stay uncertain, naming the set.
		if sets, err := ReadIPSets(ns); err == nil {
			st.IPSets = sets
		}
	}

	if st.TableNames, err = ReadTableNames(opts.RTTablesDirs); err != nil {
		return nil, err
	}
	if len(st.TableNames) == 0 {
		st.TableNames = nil // omitted from snapshots rather than written as {}
	}
	if !opts.NoNetfilter {
		if err := readNFTables(ctx, ns, st); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// LinkNames maps the ifindexes of a state's links to their names, as EachRoute wants them.
func LinkNames(st *model.State) map[int]string {
	names := make(map[int]string, len(st.Links))
	for _, l := range st.Links {
		names[l.Index] = l.Name
	}
	return names
}

// EachRoute streams the routes of every table of both families to fn as the dump delivers
// them, in the order Read stores them, converted as Read converts them (names maps ifindexes
// to link names, see LinkNames); fn may keep the route, and an error from it ends the dump
// with that error. When the kernel interrupts a dump because the tables changed meanwhile,
// EachRoute calls restart, so that the caller drops what it got (or gives up: its error ends
// EachRoute), and dumps both families again.
func EachRoute(ctx context.Context, ns Namespace, names map[int]string, restart func() error, fn func(*model.Route) error) error {
	return eachRouteRetrying(ctx, ns, 0, names, restart, fn)
}

// eachRouteRetrying dumps both families' routes of one table (every table when 0) to fn,
// calling restart and dumping again when the kernel interrupts a dump (EachRoute,
// EachRouteOfTable).
func eachRouteRetrying(ctx context.Context, ns Namespace, table int, names map[int]string, restart func() error, fn func(*model.Route) error) error {
	what := "the route dump"
	if table != 0 {
		what = fmt.Sprintf("the dump of table %d", table)
	}
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
				if table != 0 {
					err = fmt.Errorf("reading %s routes of table %d of %s: %w", fam, table, ns, err)
				} else {
					err = fmt.Errorf("reading %s routes of %s: %w", fam, ns, err)
				}
				break
			}
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
		if try+1 == dumpRetries {
			return fmt.Errorf("the kernel interrupted %s %d times because the tables kept changing; try again: %w", what, dumpRetries, err)
		}
	}
}

// eachRouteOf is one dump of the pipe's (decoded straight from the messages, as the change
// engine's drift check reads them, and as Read converts them: TestPrivilegedEachRouteMatches
// Read), of one table when table is not 0; an error of fn ends it.
func eachRouteOf(ctx context.Context, l *LiveHost, fam inet.Family, table int, names map[int]string, fn func(*model.Route) error) error {
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var fnErr error
	err := l.EachRoute(dctx, fam, table, names, func(r model.Route) {
		if fnErr == nil {
			if fnErr = fn(&r); fnErr != nil {
				cancel()
			}
		}
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// EachRouteOf streams the routes of one table and family to fn, as EachRoute does (the kernel
// filters the dump, strict checking being on). A dump the kernel interrupts is an error: what
// fn was given cannot be taken back.
func EachRouteOf(ctx context.Context, ns Namespace, fam inet.Family, table int, names map[int]string, fn func(*model.Route) error) error {
	l, err := OpenHost(ns, nil)
	if err != nil {
		return err
	}
	defer l.Close()
	err = eachRouteOf(ctx, l, fam, table, names, fn)
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("reading %s routes of table %d of %s: the table changed while it was read; try again: %w", fam, table, ns, err)
	}
	if err != nil {
		return fmt.Errorf("reading %s routes of table %d of %s: %w", fam, table, ns, err)
	}
	return nil
}
