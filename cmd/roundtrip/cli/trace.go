package cli

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/model"
	"roundtrip/engine/quote"
	"roundtrip/engine/trace"
)

func init() { RegisterNew(func(f *Factory) *Command { return NewCmdTrace(f, nil) }) }

// TraceOptions are the options of one run of roundtrip trace: fresh for every run.
type TraceOptions struct {
	*Invocation
	iif  string
	mark string
}

// NewCmdTrace returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdTrace(f *Factory, runF func(*TraceOptions) error) *Command {
	opts := &TraceOptions{}
	return &Command{
		Name:    "trace",
		Usage:   "PROTO SRC[:PORT] DST[:PORT] [--iif IF] [--mark N] [--json] [--snapshot FILE]",
		Summary: "follow a flow through this host and back, and say why it fails",
		Help: `Follows the first packet of a flow through the host the way the kernel does
(raw, mangle and nat PREROUTING, rp_filter, the policy rules and routes, INPUT or
FORWARD, POSTROUTING), then the reply the far end sends back, as conntrack sees it.
It names what breaks the round trip: a reply leaving by another interface
(asymmetric-return), a DNAT whose reply bypasses this host (reply-bypasses-nat),
forwarding off, rp_filter drops, no way back without SNAT, missing routes and
filtering rules, each with its evidence and a fix.

PROTO is tcp, udp, icmp or a protocol number. SRC and DST are addresses with an
optional port (ADDR:PORT, [ADDR]:PORT for IPv6). --iif names the interface the
packet arrives on; without it the flow starts on this host (SRC may be 0.0.0.0 to
let routing choose the source), or, when SRC is another host's address, arrives
where the route back to SRC points.

On a live host the routing decision is also asked of the kernel (ip route get);
when the kernel disagrees with the model, its answer is printed and the
difference reported. Exit status 3 when a problem of severity error is found.

Examples:
  roundtrip trace tcp 198.18.100.10:40000 10.71.1.10:80 --iif eth0
  roundtrip trace icmp 10.0.43.15 10.0.44.1 --iif eth1 --json
  roundtrip trace tcp 0.0.0.0 192.0.2.80:443 --mark 0x2 --snapshot host.json`,
		Offline: true,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&opts.iif, "iif", "", "the interface `IF` the packet arrives on (default: it starts on this host)")
			fs.StringVar(&opts.mark, "mark", "", "the fwmark `N` the packet carries (decimal or 0x-hex)")
		},
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			iif, mark := opts.iif, opts.mark
			req, err := parseTraceArgs(inv.Args, mark)
			if err != nil {
				return err
			}
			ts, err := traceState(inv)
			if err != nil {
				return err
			}
			defer ts.close()
			s := ts.s
			if iif != "" && s.LinkByName(iif) == nil {
				return Usagef("interface %s does not exist; interfaces: %s", iif, linkNames(s))
			}
			req.IIF = iif
			res := trace.RunWith(s, ts.fib, req, ts.opts)
			if ts.uncertain() != nil {
				// A table left in the kernel could not answer for certain: trace again with
				// every table read whole, rather than risk a wrong answer.
				ts.close()
				if ts, err = traceStateFull(inv); err != nil {
					return err
				}
				s = ts.s
				res = trace.Run(s, ts.fib, req)
			}
			if inv.Live() {
				compareWithKernel(inv, res)
			}
			if inv.JSON {
				if err := inv.PrintJSON(res); err != nil {
					return err
				}
			} else {
				res.Render(inv.Stdout, s)
			}
			if n := res.Errors(); n > 0 {
				return &FindingsError{Count: n}
			}
			return nil
		},
	}
}

// traceInput is what a trace runs on: the state, its FIB, and, live, how the tables the
// kernel answers for (kernel.TableOracle) are asked.
type traceInput struct {
	s      *model.State
	fib    *fib.FIB
	opts   trace.Options
	oracle *kernel.TableOracle
	lazy   []int // the tables oracle answers for
	gwErr  error // a question of opts.GatewayOn that the kernel did not answer
}

// uncertain returns why an answer from a table left in the kernel cannot be trusted.
func (ts *traceInput) uncertain() error {
	if ts.gwErr != nil {
		return ts.gwErr
	}
	return ts.fib.LazyErr()
}

func (ts *traceInput) close() {
	if ts.oracle != nil {
		ts.oracle.Close()
		ts.oracle = nil
	}
}

// lazyTableMin is the number of routes from which live trace leaves an IPv4 table in the
// kernel and asks it (kernel.TableOracle) rather than dumping the table: below it a dump
// costs less than the kernel's walk of the table for its throw routes.
var lazyTableMin = 50000

// traceState reads what trace needs and indexes it. Live, the small tables are dumped into
// the FIB and the large IPv4 tables (lazyTableMin, by /proc/net/fib_triestat) are left in the
// kernel, which answers each lookup in them (fib.TableSource, kernel.TableOracle); when that
// cannot be done the whole state is read as traceStateFull reads it.
func traceState(inv *Invocation) (*traceInput, error) {
	if !inv.Live() {
		return traceStateFull(inv)
	}
	ns := inv.Namespace()
	type sizesOf struct {
		sizes map[int]int
		err   error
	}
	type throwsOf struct {
		throws map[int][]*model.Route
		err    error
	}
	// The kernel walks every table to count its routes and again to find the throw routes;
	// both walks run while the rest of the state is read.
	sc, tc := make(chan sizesOf, 1), make(chan throwsOf, 1)
	go func() {
		sizes, err := kernel.TableSizes(ns)
		sc <- sizesOf{sizes, err}
	}()
	go func() {
		throws, err := kernel.ThrowRoutes(ns)
		tc <- throwsOf{throws, err}
	}()
	s, err := kernel.ReadWith(inv.Ctx, ns, kernel.ReadOptions{NoRoutes: true})
	sz, th := <-sc, <-tc
	if err != nil {
		return nil, err
	}
	var lazy, tables []int
	for id, n := range sz.sizes {
		tables = append(tables, id)
		if n >= lazyTableMin && id >= 1 && id <= 255 && id != model.TableLocal {
			lazy = append(lazy, id)
		}
	}
	order, distinct := kernel.DumpOrder(tables)
	if sz.err != nil || len(lazy) == 0 || !distinct {
		return traceStateFullOf(inv, s)
	}
	ts, err := traceStateLazy(inv, s, order, lazy, th.throws, th.err)
	if err != nil {
		return nil, err
	}
	if ts == nil {
		return traceStateFull(inv)
	}
	return ts, nil
}

// traceStateLazy dumps the IPv4 tables but the lazy ones, in the order a dump of every table
// lists them, then the IPv6 routes, and leaves the lazy tables to a kernel.TableOracle. It
// returns nil when the tables changed while they were read.
func traceStateLazy(inv *Invocation, s *model.State, order, lazy []int, throws map[int][]*model.Route, throwsErr error) (*traceInput, error) {
	ns := inv.Namespace()
	names := kernel.LinkNames(s)
	oracle, err := kernel.OpenTableOracle(ns, names)
	if err != nil {
		return nil, err
	}
	if throwsErr == nil {
		oracle.SetThrows(lazy, throws)
	}
	s.Routes = nil
	b, keep := fib.NewBuilder(s), trace.RouteKeeper{}
	add := func(r *model.Route) error {
		b.Add(*r)
		if keep.Keep(r) {
			s.Routes = append(s.Routes, *r)
		}
		return nil
	}
	isLazy := map[int]bool{}
	for _, t := range lazy {
		isLazy[t] = true
	}
	for _, t := range order {
		if isLazy[t] {
			continue
		}
		if err := kernel.EachRouteOf(inv.Ctx, ns, inet.V4, t, names, add); err != nil {
			oracle.Close()
			if errors.Is(err, kernel.ErrDumpInterrupted) {
				return nil, nil
			}
			return nil, err
		}
	}
	if err := kernel.EachRouteOf(inv.Ctx, ns, inet.V6, 0, names, add); err != nil {
		oracle.Close()
		if errors.Is(err, kernel.ErrDumpInterrupted) {
			return nil, nil
		}
		return nil, err
	}
	b.SetTableSource(oracle, lazy...)
	ts := &traceInput{s: s, fib: b.FIB(), oracle: oracle, lazy: lazy}
	ts.opts.GatewayOn = func(iface string) netip.Addr {
		gw, err := gatewayOn(s, oracle, order, isLazy, iface)
		if err != nil && ts.gwErr == nil {
			ts.gwErr = err
		}
		return gw
	}
	return ts, nil
}

// gatewayOn answers trace's gatewayOn as State.Routes would with every table read: the first
// default route with a gateway through iface in dump order (IPv4 tables in order, then IPv6),
// else the first route with a gateway through it; the lazy tables' are asked of the kernel.
func gatewayOn(s *model.State, oracle *kernel.TableOracle, order []int, isLazy map[int]bool, iface string) (netip.Addr, error) {
	for _, defaults := range []bool{true, false} {
		match := func(r *model.Route) bool {
			return r.Dev == iface && r.Gateway.IsValid() && (!defaults || r.Dst.Bits() == 0)
		}
		for _, t := range order {
			if isLazy[t] {
				first, def, err := oracle.FirstGatewayRoutes(t, iface)
				if err != nil {
					return netip.Addr{}, err
				}
				if defaults && def.Gateway.IsValid() {
					return def.Gateway, nil
				}
				if !defaults && first.Gateway.IsValid() {
					return first.Gateway, nil
				}
				continue
			}
			for i := range s.Routes {
				if r := &s.Routes[i]; r.Family == inet.V4 && r.Table == t && match(r) {
					return r.Gateway, nil
				}
			}
		}
		for i := range s.Routes {
			if r := &s.Routes[i]; r.Family == inet.V6 && match(r) {
				return r.Gateway, nil
			}
		}
	}
	return netip.Addr{}, nil
}

// traceStateFull reads what trace needs and indexes it. Live, the routes go into the FIB as
// the dump delivers them and the state keeps only the few that trace reads itself
// (trace.RouteKeeper), so a full table is held once, indexed, rather than also as a State.
func traceStateFull(inv *Invocation) (*traceInput, error) {
	if !inv.Live() {
		s, err := inv.State()
		if err != nil {
			return nil, err
		}
		return &traceInput{s: s, fib: fib.New(s)}, nil
	}
	s, err := kernel.ReadWith(inv.Ctx, inv.Namespace(), kernel.ReadOptions{NoRoutes: true})
	if err != nil {
		return nil, err
	}
	return traceStateFullOf(inv, s)
}

// traceStateFullOf is traceStateFull with the state but its routes read.
func traceStateFullOf(inv *Invocation, s *model.State) (*traceInput, error) {
	ns := inv.Namespace()
	var (
		b    *fib.Builder
		keep trace.RouteKeeper
	)
	start := func() error {
		s.Routes = nil
		b, keep = fib.NewBuilder(s), trace.RouteKeeper{}
		return nil
	}
	start()
	err := kernel.EachRoute(inv.Ctx, ns, kernel.LinkNames(s), start, func(r *model.Route) error {
		b.Add(*r)
		if keep.Keep(r) {
			s.Routes = append(s.Routes, *r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &traceInput{s: s, fib: b.FIB()}, nil
}

// parseTraceArgs checks the positional arguments and --mark; every mistake is a usage error
// that says what is expected.
func parseTraceArgs(args []string, mark string) (trace.Request, error) {
	var req trace.Request
	if len(args) != 3 {
		return req, Usagef("want PROTO SRC[:PORT] DST[:PORT], got %d argument(s)", len(args))
	}
	req, err := trace.ParseFlow(args[0], args[1], args[2])
	if err != nil {
		return req, Usagef("%v", err)
	}
	if mark != "" {
		m, err := strconv.ParseUint(mark, 0, 32)
		if err != nil {
			return req, Usagef("--mark %q is not a 32-bit number (decimal or 0x-hex)", mark)
		}
		req.Mark = uint32(m)
	}
	return req, nil
}

func linkNames(s *model.State) string {
	var names []string
	for _, l := range s.Links {
		names = append(names, l.Name)
	}
	return strings.Join(names, ", ")
}

// compareWithKernel asks the kernel the routing question the model answered for the request
// and reports a disagreement; the kernel's answer wins for the printed output interface.
func compareWithKernel(inv *Invocation, res *trace.Result) {
	fl, model, ok := res.ForwardLookup()
	if !ok {
		return
	}
	kern, err := inv.Namespace().RouteGet(fl)
	if err != nil {
		quote.TermFprintf(inv.Stderr, "roundtrip trace: could not ask the kernel for comparison: %v\n", err)
		return
	}
	if kernelAgrees(res, model, kern.Result) {
		return
	}
	kernText, modelText := routeText(kern.Result), routeText(model)
	f := finding.Finding{ID: trace.FindingKernelDisagrees, Severity: finding.SeverityWarning,
		Summary: fmt.Sprintf("the kernel routes the request differently from the model: %s (the kernel) vs %s (the model); the kernel's interface is shown", kernText, modelText),
		Evidence: []string{
			fmt.Sprintf("ip route get %s: %s", kernel.RouteGetArgs(fl), kernText),
			"model: " + modelText,
		},
		Fix: finding.Fix{Summary: "the model misses something of this host (a native nftables table, a VRF, an unmodelled rule selector): trust the kernel, and please report it", Args: []string{}}}
	res.Findings = append(res.Findings, f)
	if kern.OIF != "" && (kern.Verdict == fib.VerdictUnicast) {
		res.Forward.OIF = kern.OIF
		res.Forward.Gateway = kern.Gateway
	}
}

// routeText says where a lookup sends the request: "unicast out eth0 via 10.0.0.1".
func routeText(r fib.Result) string {
	text := r.Verdict
	if r.OIF != "" {
		text += " out " + r.OIF
		if r.Gateway.IsValid() {
			text += " via " + r.Gateway.String()
		}
	}
	return text
}

// kernelAgrees compares the kernel's answer with the model's. A kernel refusal agrees with the
// model's reason for stopping the request: forwarding off and unreachable routes both give
// EHOSTUNREACH, and every refusal of the input path (rp_filter, martians) EINVAL, as a blackhole
// route does. Only the request's own stop counts: the kernel was asked about the request, so a
// reply that fails rp_filter does not make its unicast answer a disagreement.
func kernelAgrees(res *trace.Result, model, kern fib.Result) bool {
	rpDrop := res.RequestStoppedAt(trace.HookRPFilter)
	fwdOff := res.RequestStoppedAt(trace.HookForwarding)
	switch kern.Verdict {
	case fib.VerdictUnicast:
		return model.Verdict == fib.VerdictUnicast && mayChoose(model, kern) && !fwdOff && !rpDrop
	case fib.VerdictLocal:
		return model.Verdict == fib.VerdictLocal && !rpDrop
	case fib.VerdictUnreachable:
		return fwdOff || model.Verdict == fib.VerdictUnreachable
	case fib.VerdictNoRoute:
		return model.Verdict == fib.VerdictNoRoute || model.Verdict == fib.VerdictUnreachable
	case fib.VerdictInvalid:
		return model.Verdict == fib.VerdictBlackhole || model.Verdict == fib.VerdictInvalid || rpDrop
	}
	return model.Verdict == kern.Verdict
}

// mayChoose reports whether the kernel's output device and gateway are the model's, or, for a
// multipath route, those of any path the kernel may hash the flow to: the hash seed is random
// per boot (fib_multipath_hash_seed), so the model cannot know which one it takes.
func mayChoose(model, kern fib.Result) bool {
	if model.OIF == kern.OIF && model.Gateway == kern.Gateway {
		return true
	}
	for _, c := range model.Candidates {
		if model.Route != nil && c < len(model.Route.Nexthops) {
			if nh := model.Route.Nexthops[c]; nh.Dev == kern.OIF && nh.Gateway == kern.Gateway {
				return true
			}
		}
	}
	return false
}
