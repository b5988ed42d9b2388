package cli

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/kernel"
	"roundtrip/engine/model"
	"roundtrip/engine/quote"
	"roundtrip/engine/safefile"
)

func init() {
	RegisterNew(func(f *Factory) *Command { return NewCmdShow(f, nil) })
	RegisterNew(func(f *Factory) *Command { return NewCmdSnapshot(f, nil) })
}

// ShowOptions are the options of one run of roundtrip show: fresh for every run.
type ShowOptions struct {
	*Invocation
	table string
	all   bool
	limit int
}

// NewCmdShow returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdShow(f *Factory, runF func(*ShowOptions) error) *Command {
	opts := &ShowOptions{}
	return &Command{
		Name:    "show",
		Usage:   "[--table NAME] [--all] [--json] [--snapshot FILE]",
		Summary: "show interfaces, rules, routes of every table, NAT rules and key sysctls",
		Help: `Prints the host's network state as roundtrip models it. Tables with many routes are
summarised; --all prints every route, --table shows one table only.
--json prints the complete state (the same object a snapshot holds).`,
		Offline: true,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&opts.table, "table", "", "show only the routing table `NAME` (name or number)")
			fs.BoolVar(&opts.all, "all", false, "print every route, even of huge tables")
			fs.IntVar(&opts.limit, "limit", 20, "routes shown per table before summarising")
		},
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			table, all, limit := opts.table, opts.all, opts.limit
			if len(inv.Args) > 0 {
				return Usagef("show takes no arguments, got %q", inv.Args[0])
			}
			if limit < 0 {
				return Usagef("--limit %d: want a number of routes (--all shows every route)", limit)
			}
			if inv.Live() && !inv.JSON {
				return showLiveCommand(inv, table, all, limit)
			}
			s, err := inv.State()
			if err != nil {
				return err
			}
			only := -1
			if table != "" {
				if only, err = s.TableID(table); err != nil {
					return Usagef("%v", err)
				}
			}
			if inv.JSON {
				if only >= 0 {
					routes := []model.Route{}
					for _, r := range s.Routes {
						if r.Table == only {
							routes = append(routes, r)
						}
					}
					return inv.PrintJSON(routes)
				}
				return inv.PrintJSON(s)
			}
			if all {
				limit = -1
			}
			// Buffered: a full table is a million lines, not a million writes.
			bw := bufio.NewWriterSize(inv.Stdout, 64<<10)
			if err := renderShowContext(inv.Ctx, bw, s, only, limit); err != nil {
				return err
			}
			return bw.Flush()
		},
	}
}

// showLiveCommand is show on the live host, printed as it is read (showLive).
func showLiveCommand(inv *Invocation, table string, all bool, limit int) error {
	only := -1
	if table != "" {
		// Table names come from rt_tables, not from the routes.
		names, err := kernel.ReadTableNames(nil)
		if err != nil {
			return err
		}
		if only, err = (&model.State{TableNames: names}).TableID(table); err != nil {
			return Usagef("%v", err)
		}
	}
	if all {
		limit = -1
	}
	bw := bufio.NewWriterSize(inv.Stdout, 64<<10)
	if err := showLive(inv, bw, only, limit); err != nil {
		bw.Flush()
		return err
	}
	return bw.Flush()
}

// renderShow prints a state for a person at 80 columns. Every value from the state is escaped
// for the terminal (quote.TermFprintf): a snapshot can come from anywhere, and even a live
// host's link names may hold escape sequences.
func renderShow(w io.Writer, s *model.State, onlyTable, limit int) {
	_ = renderShowContext(context.Background(), w, s, onlyTable, limit)
}

// renderShowContext is renderShow that stops, with ctx's error, soon after ctx is done.
func renderShowContext(ctx context.Context, w io.Writer, s *model.State, onlyTable, limit int) error {
	if onlyTable < 0 {
		renderHeader(w, s)
		renderLinks(w, s)
		renderGateways(w, s)
		renderRules(w, s)
	}
	if err := renderRoutes(ctx, w, s, onlyTable, limit); err != nil {
		return err
	}
	if onlyTable < 0 {
		renderNetfilter(w, s)
		renderNFTables(w, s.Nftables)
	}
	return nil
}

func renderHeader(w io.Writer, s *model.State) {
	where := s.Host
	if s.Namespace != "" {
		where += " (netns " + s.Namespace + ")"
	}
	quote.TermFprintf(w, "%s\n", where)
	fw := "off"
	if s.Sysctls.IPForward() {
		fw = "on"
	}
	quote.TermFprintf(w, "  ip_forward %s   rp_filter all=%d default=%d", fw,
		s.Sysctls.Int(model.ConfKey("all", "rp_filter"), 0), s.Sysctls.Int(model.ConfKey("default", "rp_filter"), 0))
	if v, ok := s.Sysctls[model.SysctlSrcValidMark]; ok {
		quote.TermFprintf(w, "   src_valid_mark %s", v)
	}
	if maxc := s.Sysctls.Int(model.SysctlConntrackMax, 0); maxc > 0 {
		quote.TermFprintf(w, "   conntrack %d/%d", s.Sysctls.Int(model.SysctlConntrackCount, 0), maxc)
	}
	fmt.Fprintln(w)
}

func renderLinks(w io.Writer, s *model.State) {
	quote.TermFprintf(w, "\nINTERFACES\n")
	for _, l := range s.Links {
		state := "down"
		if l.Up {
			state = "up"
			switch strings.ToLower(l.OperState) {
			case "", "up", "unknown":
			case "lowerlayerdown", "down":
				// Admin up but no carrier: for a veth, the peer is down.
				state = "no-carrier"
			default:
				state = strings.ToLower(l.OperState)
			}
		}
		extra := l.Kind
		if l.Master != "" {
			extra += " master " + l.Master
		}
		if l.Peer != "" {
			extra += " peer " + l.Peer
		}
		if t := l.Tunnel; t != nil {
			if t.VNI != 0 {
				extra += fmt.Sprintf(" vni %d", t.VNI)
			}
			if t.Remote.IsValid() {
				extra += fmt.Sprintf(" %s->%s", t.Local, t.Remote)
			}
		}
		rp := s.Sysctls.RPFilter(l.Name)
		if rp != 0 {
			extra += []string{"", " rp_filter=strict", " rp_filter=loose"}[min(rp, 2)]
		}
		quote.TermFprintf(w, "  %-12s %-10s mtu %-5d %s\n", l.Name, state, l.MTU, extra)
		for _, a := range l.Addrs {
			scope := ""
			if a.Scope != "" && a.Scope != "global" {
				scope = " (" + a.Scope + ")"
			}
			quote.TermFprintf(w, "  %-12s   %s%s\n", "", a.Prefix, scope)
		}
	}
}

// renderGateways lists default routes of every table: the uplinks, which is what an operator
// looks for first on a multi-homed box.
func renderGateways(w io.Writer, s *model.State) {
	var lines []string
	for _, r := range s.Routes {
		if r.Dst.Bits() != 0 || r.Type != model.RouteUnicast {
			continue
		}
		table := s.TableName(r.Table)
		r.Table = model.TableMain // named in the first column already
		lines = append(lines, quote.TermSprintf("  %-10s %s", table, strings.TrimPrefix(r.Args(s.TableName), "default ")))
	}
	if len(lines) == 0 {
		quote.TermFprintf(w, "\nGATEWAYS\n  (no default route in any table)\n")
		return
	}
	// Each line is escaped already; the newlines between them are meant.
	fmt.Fprintf(w, "\nGATEWAYS (default routes by table)\n%s\n", strings.Join(lines, "\n"))
}

func renderRules(w io.Writer, s *model.State) {
	quote.TermFprintf(w, "\nRULES\n")
	for _, f := range []inet.Family{inet.V4, inet.V6} {
		for _, r := range s.Rules {
			if r.Family != f {
				continue
			}
			fam := ""
			if f == inet.V6 {
				fam = "v6 "
			}
			quote.TermFprintf(w, "  %s%-6d %s %s\n", fam, r.Priority, r.Selectors(), r.ActionString(s.TableName))
		}
	}
}

// showOps counts the routes show's rendering visits: the test that its work grows linearly
// with the state reads it (counting, not timing).
var showOps atomic.Int64

// routeGroup is the routes of one table and family: how many, and those to print (by their
// positions in State.Routes, or, read from a dump, as copies).
type routeGroup struct {
	count int
	shown []int
	kept  []model.Route
}

// routeKey names a routeGroup.
type routeKey struct {
	table int
	fam   inet.Family
}

// routeIndex groups routes by table and family in one pass, in stored order, keeping only
// those to print: a full table is read once, however many tables there are.
type routeIndex struct {
	onlyTable, limit int
	copies           bool // keep copies (a dump) rather than positions (a State)
	groups           map[routeKey]*routeGroup
	ids              []int
	seen             map[int]bool
	last             *routeGroup
	lastKey          routeKey
}

func newRouteIndex(onlyTable, limit int, copies bool) *routeIndex {
	return &routeIndex{onlyTable: onlyTable, limit: limit, copies: copies,
		groups: map[routeKey]*routeGroup{}, seen: map[int]bool{}, lastKey: routeKey{table: -1}}
}

// add counts route r, at position i of the state (ignored when keeping copies).
func (x *routeIndex) add(i int, r *model.Route) {
	if x.onlyTable >= 0 && r.Table != x.onlyTable {
		return
	}
	k := routeKey{r.Table, r.Family}
	if x.last == nil || k != x.lastKey {
		x.last = x.groups[k]
		if x.last == nil {
			x.last = &routeGroup{}
			x.groups[k] = x.last
			if !x.seen[r.Table] {
				x.seen[r.Table] = true
				x.ids = append(x.ids, r.Table)
			}
		}
		x.lastKey = k
	}
	g := x.last
	g.count++
	switch {
	case x.copies && x.limit >= 0 && len(g.kept) < x.limit:
		g.kept = append(g.kept, *r)
	case !x.copies && (x.limit < 0 || len(g.shown) < x.limit):
		g.shown = append(g.shown, i)
	}
}

// render prints the groups, main first, then the numbered and named tables, local last: the
// order of interest. each calls emit for the routes of a group to print, in order.
func (x *routeIndex) render(w io.Writer, tableName func(int) string,
	each func(k routeKey, g *routeGroup, emit func(*model.Route)) (int, error)) error {
	ids := x.ids
	slices.SortFunc(ids, model.CompareTables)
	slices.SortStableFunc(ids, func(a, b int) int { return tableRank(a) - tableRank(b) })
	for _, id := range ids {
		for _, f := range []inet.Family{inet.V4, inet.V6} {
			k := routeKey{id, f}
			g := x.groups[k]
			if g == nil || g.count == 0 {
				continue
			}
			fam := ""
			if f == inet.V6 {
				fam = " (IPv6)"
			}
			quote.TermFprintf(w, "\nTABLE %s%s: %d route(s)\n", tableName(id), fam, g.count)
			shown, err := each(k, g, func(r *model.Route) {
				c := *r
				c.Table = model.TableMain // the heading names the table already
				quote.TermFprintf(w, "  %s\n", c.Args(tableName))
			})
			if err != nil {
				return err
			}
			if shown < g.count {
				quote.TermFprintf(w, "  ... %d more (roundtrip show --table %s --all)\n", g.count-shown, tableName(id))
			}
		}
	}
	return nil
}

func renderRoutes(ctx context.Context, w io.Writer, s *model.State, onlyTable, limit int) error {
	x := newRouteIndex(onlyTable, limit, false)
	for i := range s.Routes {
		showOps.Add(1)
		if i%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		x.add(i, &s.Routes[i])
	}
	return x.render(w, s.TableName, func(_ routeKey, g *routeGroup, emit func(*model.Route)) (int, error) {
		for n, i := range g.shown {
			showOps.Add(1)
			if n%4096 == 4095 && ctx.Err() != nil {
				return n, ctx.Err()
			}
			emit(&s.Routes[i])
		}
		return len(g.shown), nil
	})
}

// showLive prints the live host as renderShowContext prints its State, without holding its
// routes: one dump counts the routes of each table and keeps the few to print (and the
// default routes, for GATEWAYS); with --all each table is then dumped again, on its own, and
// printed as the kernel delivers it.
func showLive(inv *Invocation, w io.Writer, onlyTable, limit int) error {
	ctx, ns := inv.Ctx, inv.Namespace()
	s, err := kernel.ReadWith(ctx, ns, kernel.ReadOptions{NoRoutes: true})
	if err != nil {
		return err
	}
	names := kernel.LinkNames(s)
	var x *routeIndex
	start := func() error {
		x, s.Routes = newRouteIndex(onlyTable, limit, true), nil
		return nil
	}
	start()
	err = kernel.EachRoute(ctx, ns, names, start, func(r *model.Route) error {
		if r.Dst.Bits() == 0 && r.Type == model.RouteUnicast {
			s.Routes = append(s.Routes, *r) // all renderGateways reads
		}
		x.add(-1, r)
		return nil
	})
	if err != nil {
		return err
	}
	if onlyTable < 0 {
		renderHeader(w, s)
		renderLinks(w, s)
		renderGateways(w, s)
		renderRules(w, s)
	}
	err = x.render(w, s.TableName, func(k routeKey, g *routeGroup, emit func(*model.Route)) (int, error) {
		if limit >= 0 {
			for i := range g.kept {
				emit(&g.kept[i])
			}
			return len(g.kept), nil
		}
		n := 0
		err := kernel.EachRouteOf(ctx, ns, k.fam, k.table, names, func(r *model.Route) error {
			n++
			emit(r)
			return nil
		})
		return n, err
	})
	if err != nil {
		return err
	}
	if onlyTable < 0 {
		renderNetfilter(w, s)
		renderNFTables(w, s.Nftables)
	}
	return nil
}

func tableRank(id int) int {
	switch id {
	case model.TableMain:
		return 0
	case model.TableLocal:
		return 2
	}
	return 1
}

func renderNetfilter(w io.Writer, s *model.State) {
	nf := s.Netfilter
	quote.TermFprintf(w, "\nNETFILTER")
	if nf.Backend != "" {
		quote.TermFprintf(w, " (iptables %s", nf.Backend)
		if nf.Mixed() {
			// Both backends hold rules and the kernel runs both; iptables shows only its own.
			quote.TermFprintf(w, "; rules in both backends, legacy and nft")
		}
		quote.TermFprintf(w, ")")
	}
	fmt.Fprintln(w)
	if nf.Unavailable != "" {
		quote.TermFprintf(w, "  not read: %s\n", nf.Unavailable)
	}
	any := false
	for _, t := range nf.Tables {
		if t.Name != "nat" && t.Name != "mangle" && t.Name != "raw" && t.Name != "filter" {
			continue
		}
		// Where both backends were read every chain says which one it lives in.
		tag := ""
		if t.Backend != "" {
			tag = "[" + iptables.BackendName(t.Backend) + "] "
		}
		for _, c := range t.Chains {
			if len(c.Rules) == 0 && (c.Policy == "" || c.Policy == "ACCEPT") {
				continue
			}
			any = true
			fam := ""
			if t.Family == inet.V6 {
				fam = "v6 "
			}
			pol := ""
			if c.Policy != "" {
				pol = " policy " + c.Policy
			}
			quote.TermFprintf(w, "  %s%s%s %s%s\n", tag, fam, t.Name, c.Name, pol)
			for _, r := range c.Rules {
				quote.TermFprintf(w, "    %s\n", r.Spec)
			}
		}
	}
	if !any && nf.Unavailable == "" {
		quote.TermFprintf(w, "  (no rules)\n")
	}
	for _, h := range nf.Hidden {
		quote.TermFprintf(w, "  not read: %s (traces may miss their effect)\n", h)
	}
	for _, f := range nf.Foreign {
		quote.TermFprintf(w, "  nftables table %s: present, not modelled (traces may miss its effect)\n", f)
	}
}

// SnapshotOptions are the options of one run of roundtrip snapshot: fresh for every run.
type SnapshotOptions struct {
	*Invocation
	out string
}

// NewCmdSnapshot returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdSnapshot(f *Factory, runF func(*SnapshotOptions) error) *Command {
	opts := &SnapshotOptions{}
	return &Command{
		Name:    "snapshot",
		Usage:   "[-o FILE]",
		Summary: "save the host's network state to a file, for work offline (--snapshot)",
		Help: `Writes the complete state (links, addresses, rules, routes of every table, iptables,
sysctls) as versioned JSON. Every read-only command accepts --snapshot FILE to work on it,
on any machine. Without -o the snapshot goes to standard output.`,
		NoJSON: true,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&opts.out, "o", "", "write to `FILE` instead of standard output")
		},
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			out := opts.out
			if len(inv.Args) > 0 {
				return Usagef("snapshot takes no arguments, got %q (did you mean -o %s?)", inv.Args[0], inv.Args[0])
			}
			if inv.Live() {
				return streamSnapshot(inv, out)
			}
			s, err := inv.State()
			if err != nil {
				return err
			}
			b, err := model.NewSnapshot(s, time.Now()).Marshal()
			if err != nil {
				return err
			}
			if err := inv.Ctx.Err(); err != nil {
				return err // interrupted: no snapshot rather than one the operator stopped
			}
			if out == "" || out == "-" {
				_, err = inv.Stdout.Write(b)
				return err
			}
			// A new file renamed over the target: an interrupted run never leaves a truncated
			// snapshot under the requested name, and a link planted there is not followed.
			if err := safefile.WriteFile(out, b, safefile.ModePrivate, safefile.ToWriter(inv.Stderr)); err != nil {
				return fmt.Errorf("writing snapshot: %w", err)
			}
			fmt.Fprintf(inv.Stderr, "snapshot written to %s (%d routes, %d rules)\n", out, len(s.Routes), len(s.Rules))
			return nil
		},
	}
}

// streamSnapshot writes a snapshot of the live host with its routes encoded as the dump
// delivers them: memory does not grow with the tables (model.SnapshotWriter writes what
// Snapshot.Marshal would). A file is written under a temporary name and renamed over out when
// complete, so an interrupted run leaves no snapshot; standard output gets what was written
// until then.
func streamSnapshot(inv *Invocation, out string) error {
	ns := inv.Namespace()
	s, err := kernel.ReadWith(inv.Ctx, ns, kernel.ReadOptions{NoRoutes: true})
	if err != nil {
		return err
	}
	taken := time.Now()
	var (
		file *safefile.File
		sw   *model.SnapshotWriter
	)
	defer func() {
		if file != nil {
			file.Abort() // nothing after Commit
		}
	}()
	start := func() error {
		var w io.Writer = inv.Stdout
		if out != "" && out != "-" {
			if file != nil {
				file.Abort()
			}
			if file, err = safefile.Create(out, safefile.ModePrivate, safefile.ToWriter(inv.Stderr)); err != nil {
				return fmt.Errorf("writing snapshot: %w", err)
			}
			w = file
		} else if sw != nil {
			return fmt.Errorf("the routes changed while they were written to standard output: try again, or write to a file with -o")
		}
		sw, err = model.NewSnapshotWriter(w, s, taken)
		return err
	}
	if err := start(); err != nil {
		return err
	}
	if err := kernel.EachRoute(inv.Ctx, ns, kernel.LinkNames(s), start, func(r *model.Route) error { return sw.Route(r) }); err != nil {
		return err
	}
	if err := inv.Ctx.Err(); err != nil {
		return err // interrupted: no snapshot rather than one the operator stopped
	}
	if err := sw.Close(); err != nil {
		return fmt.Errorf("writing snapshot: %w", err)
	}
	if file == nil {
		return nil
	}
	if err := file.Commit(); err != nil {
		return fmt.Errorf("writing snapshot: %w", err)
	}
	fmt.Fprintf(inv.Stderr, "snapshot written to %s (%d routes, %d rules)\n", out, sw.Routes(), len(s.Rules))
	return nil
}
