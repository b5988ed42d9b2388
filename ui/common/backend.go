package common

import (
	"context"
	"errors"

	"roundtrip/diagnose"
	"roundtrip/engine/apply"
	"roundtrip/engine/conntrack"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// Backend is everything the console asks of the host. The app and the pages call it only
// inside tea.Cmds, so the kernel never holds up the screen. The live backend talks to a
// network namespace through engine/kernel; the snapshot backend answers from a file and
// refuses every change; tests use fakes.
type Backend interface {
	// Where names what the console looks at: "this host", "netns lab1", "snapshot host.json".
	Where() string
	// Live reports whether the backend looks at a running kernel (false for a snapshot).
	Live() bool
	// ReadOnly says why changes cannot be made here ("" when they can).
	ReadOnly() string
	// ReadState reads links, rules, routes, netfilter and sysctls.
	ReadState(ctx context.Context) (*model.State, error)

	// Apply applies a plan; opts.Confirm > 0 starts a revert timer that undoes it unless
	// Confirm comes first. The apply refuses (apply.LockoutError) a plan that changes the
	// route back to opts.SSH's client without a confirmation window. progress receives one
	// line per step as the apply goes.
	Apply(ctx context.Context, p *plan.Plan, opts apply.Options, progress func(string)) (*apply.Result, error)
	// Confirm keeps the apply waiting for confirmation.
	Confirm(ctx context.Context) (*apply.Journal, error)
	// Rollback undoes the journal with that id (the latest active one when id is "").
	Rollback(ctx context.Context, id string) (*apply.Journal, error)
	// History lists the journals of applies, oldest first.
	History(ctx context.Context) ([]*apply.Journal, error)
	// Pending returns the apply waiting for confirmation, or nil.
	Pending(ctx context.Context) (*apply.Journal, error)
	// Journal returns the journal with that id as it is now: the console reads it again while
	// an apply waits, so that a confirm or a rollback made elsewhere (or by the revert timer)
	// shows at once.
	Journal(ctx context.Context, id string) (*apply.Journal, error)
	// JournalSteps returns one line for each of the first max steps of a journal (read from
	// its steps file, for the history's detail view).
	JournalSteps(ctx context.Context, j *apply.Journal, max int) ([]string, error)

	// Netfilter reads only the iptables rules and their counters: the NAT page refreshes them
	// without reading every route again.
	Netfilter(ctx context.Context) (iptables.Ruleset, error)
	// Neighbours lists the neighbour (ARP/NDP) table: a gateway no route names is suggested
	// from it.
	Neighbours(ctx context.Context) ([]model.Neighbour, error)

	// Conntrack lists up to max entries of the connection tracking table, with its size.
	Conntrack(ctx context.Context, max int) ([]conntrack.Entry, conntrack.Stats, error)
	// Capture watches the packets that pass filter on every interface, correlated into
	// connections, until ctx ends; ready is called once packets are kept (the capture runs),
	// and emit gets every packet and finding as it happens.
	Capture(ctx context.Context, filter *diagnose.CaptureFilter, ready func(), emit func(diagnose.Event) error) (*diagnose.CaptureSummary, error)
}

// ErrReadOnly is returned by a backend that cannot change anything.
var ErrReadOnly = errors.New("read-only")

// RouteStreamer is implemented by a backend that reads routes as a stream (the live one):
// the Routing page then reads only the table it shows, as the kernel dumps it, into a
// RouteStore, and shows the first screen long before a table of a million routes is read; the
// app reads the state without routes first, so that the page has its rules at once.
type RouteStreamer interface {
	// ReadStateWithoutRoutes reads what ReadState reads but the routes.
	ReadStateWithoutRoutes(ctx context.Context) (*model.State, error)
	// EachRoute streams the routes of one table (every table when table is 0), IPv4 then
	// IPv6, to fn as they are read, converted as ReadState converts them; fn's error ends it.
	// When the kernel interrupts the dump because the table changed, restart is called (the
	// caller drops what it got) and the dump starts again.
	EachRoute(ctx context.Context, s *model.State, table int, restart func(), fn func(*model.Route) error) error
	// RouteCount is about how many routes EachRoute of every table gives (0: unknown or
	// beyond belief), read without a dump: the room to make for them at once.
	RouteCount(ctx context.Context) int
}
