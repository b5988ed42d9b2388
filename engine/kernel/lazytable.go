package kernel

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// TableSizes returns the number of routes (fib aliases) of every IPv4 table of the namespace, as
// /proc/net/fib_triestat counts them, without dumping a table: live trace dumps the small
// tables and asks the kernel about the large ones (TableOracle). The kernel walks its tries to
// count, which costs a fraction of a dump.
func TableSizes(ns Namespace) (map[int]int, error) {
	var data []byte
	err := ns.Do(func() error {
		var err error
		// /proc/net is the namespace of the process's main thread; thread-self's is this
		// thread's, which Do switched into the namespace.
		data, err = os.ReadFile("/proc/thread-self/net/fib_triestat")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the routing table sizes of %s: %w", ns, err)
	}
	return parseTrieStat(data)
}

// RouteCount returns how many routes (both families, every table) the namespace holds as its
// kernel counts them without a dump, or 0 when it cannot tell or the count is beyond belief
// (maxRouteHint): the room to make before a dump of every route (see routeCounts).
func RouteCount(ns Namespace) int {
	v4, v6 := routeCounts(ns)
	if n := v4 + v6; n <= maxRouteHint {
		return n
	}
	return 0
}

// routeCounts returns how many IPv4 and IPv6 routes the namespace holds, as its kernel counts
// them without a dump (fib_triestat's prefixes of every table, rt6_stats' route entries), or 0
// for a family it cannot tell. The reader sizes its slice of routes with them: grown by
// doubling instead, a full table's last copies are single memmoves of hundreds of MB that the
// garbage collector spins waiting to preempt (a third of a 1M-route read's CPU).
func routeCounts(ns Namespace) (v4, v6 int) {
	if sizes, err := TableSizes(ns); err == nil {
		for _, n := range sizes {
			v4 += n
		}
	}
	_ = ns.Do(func() error {
		if data, err := os.ReadFile("/proc/thread-self/net/rt6_stats"); err == nil {
			v6 = parseRT6Stats(data)
		}
		return nil
	})
	return v4, v6
}

// parseRT6Stats returns the fib_rt_entries of /proc/net/rt6_stats (seven hex numbers: nodes,
// route nodes, allocated, entries, cache, dst entries, discarded), or 0 when it cannot.
func parseRT6Stats(data []byte) int {
	f := strings.Fields(string(data))
	if len(f) < 4 {
		return 0
	}
	n, err := strconv.ParseUint(f[3], 16, 31)
	if err != nil {
		return 0
	}
	return int(n)
}

// parseTrieStat reads the per-table "Prefixes" counts of fib_triestat (fib_table_print names a
// table Local:, Main: or Id N:).
func parseTrieStat(data []byte) (map[int]int, error) {
	sizes := map[int]int{}
	table := -1
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "Local:":
			table = model.TableLocal
		case line == "Main:":
			table = model.TableMain
		case strings.HasPrefix(line, "Id ") && strings.HasSuffix(line, ":"):
			id, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(line, "Id "), ":"), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("fib_triestat: table line %q: %w", line, err)
			}
			table = int(uint32(int32(id))) // printed with %d
		case strings.HasPrefix(strings.TrimSpace(line), "Prefixes:") && table >= 0:
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "Prefixes:")))
			if err != nil {
				return nil, fmt.Errorf("fib_triestat: %q: %w", line, err)
			}
			sizes[table] += n
			table = -1
		case line != "" && line[0] != ' ' && line[0] != '\t':
			table = -1 // Basic info, Counters, ...
		}
	}
	if len(sizes) == 0 {
		return nil, errors.New("fib_triestat lists no table")
	}
	return sizes, nil
}

// TableOracle answers route lookups in single IPv4 tables from the kernel, as fib.TableSource
// wants them, so that a live trace need not dump a full table: NETLINK_FIB_LOOKUP runs the
// kernel's fib_table_lookup in one table (nl_fib_lookup: table ids up to 255) and answers with
// the prefix length, type and scope of the route found and its first usable path; the route
// itself (gateways, devices, metric, TOS) comes from RTM_GETROUTE with RTM_F_FIB_MATCH for the
// same flow, taken only when the kernel's whole lookup ends at that same table and prefix.
// A lookup answered with an error (a throw, blackhole, unreachable or prohibit route, which
// RTM_F_FIB_MATCH does not give) is answered from the table's routes of the types that give
// that error, read once per table and type by a dump the kernel filters by type. Whatever
// cannot be made certain is an error, never a guess: a lookup that ends elsewhere, two reject
// routes that cannot be told apart, a table above 255. It is not safe for concurrent use.
type TableOracle struct {
	ns      Namespace
	names   map[int]string
	index   map[string]int
	host    *LiveHost
	fibSk   *nl.NetlinkSocket
	seq     uint32
	buf     []byte
	routes  map[aliasKey]*model.Route
	rejects map[rejectKey][]*model.Route
	hosts   map[hostKey]bool
	scopes  map[answerKey]int
	// Asked counts the kernel's answers by kind, for tests and measurements.
	Asked struct{ Lookups, Matches, Dumps int }
}

type aliasKey struct {
	table, metric int
	dst           netip.Prefix
	tos           uint8
	typ           string
}

// answerKey is an answer of LookupTable, whose route's scope RouteFor checks.
type answerKey struct {
	table int
	dst   netip.Prefix
	typ   string
}

type hostKey struct {
	table int
	addr  netip.Addr
}

// OpenTableOracle opens the oracle's sockets in the namespace; names maps its ifindexes to link
// names (LinkNames). The caller closes it.
func OpenTableOracle(ns Namespace, names map[int]string) (*TableOracle, error) {
	host, err := OpenHost(ns, nil)
	if err != nil {
		return nil, err
	}
	sk, err := ns.socket(unix.NETLINK_FIB_LOOKUP)
	if err != nil {
		host.Close()
		return nil, fmt.Errorf("opening NETLINK_FIB_LOOKUP in %s: %w", ns, err)
	}
	o := &TableOracle{ns: ns, names: names, index: map[string]int{}, host: host, fibSk: sk, seq: 1,
		buf: make([]byte, 1<<16), routes: map[aliasKey]*model.Route{}, rejects: map[rejectKey][]*model.Route{}, hosts: map[hostKey]bool{}, scopes: map[answerKey]int{}}
	for i, n := range names {
		o.index[n] = i
	}
	return o, nil
}

// Close closes the oracle's sockets.
func (o *TableOracle) Close() {
	o.fibSk.Close()
	o.host.Close()
}

// fibAnswer is struct fib_result_nl after the kernel's lookup.
type fibAnswer struct {
	tbID, plen, nhSel, typ, scope uint8
	err                           syscall.Errno // 0, or the lookup's error (EAGAIN: no route or throw)
}

// fibLookup asks NETLINK_FIB_LOOKUP for fib_table_lookup in one table.
func (o *TableOracle) fibLookup(table int, dst netip.Addr, tos uint8, scope int) (fibAnswer, error) {
	o.Asked.Lookups++
	o.seq++
	b := make([]byte, 0, unix.NLMSG_HDRLEN+20)
	b = binary.NativeEndian.AppendUint32(b, unix.NLMSG_HDRLEN+20)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST)
	b = binary.NativeEndian.AppendUint32(b, o.seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	a := dst.As4()
	b = append(b, a[:]...)                     // fl_addr
	b = binary.NativeEndian.AppendUint32(b, 0) // fl_mark: fib_table_lookup does not read it
	b = append(b, tos, uint8(scope), uint8(table), 0, 0, 0, 0, 0)
	b = binary.NativeEndian.AppendUint32(b, 0) // err
	fd := int(o.fibSk.GetFd())
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fibAnswer{}, fmt.Errorf("asking NETLINK_FIB_LOOKUP: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(fd, o.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fibAnswer{}, fmt.Errorf("reading NETLINK_FIB_LOOKUP: %w", err)
		}
		m := o.buf[:n]
		if n < unix.NLMSG_HDRLEN+20 || binary.NativeEndian.Uint32(m[8:]) != o.seq {
			continue // not the answer to this question
		}
		r := m[unix.NLMSG_HDRLEN:]
		ans := fibAnswer{tbID: r[11], plen: r[12], nhSel: r[13], typ: r[14], scope: r[15]}
		if e := int32(binary.NativeEndian.Uint32(r[16:])); e < 0 {
			ans.err = syscall.Errno(-e)
		}
		return ans, nil
	}
}

// LookupTable answers fib_table_lookup of one table for q (fib.TableSource).
func (o *TableOracle) LookupTable(q fib.TableQuery) (fib.TableAnswer, error) {
	dst := q.Flow.Dst.Unmap()
	if q.Table < 1 || q.Table > 255 || !dst.Is4() {
		return fib.TableAnswer{}, fmt.Errorf("NETLINK_FIB_LOOKUP asks IPv4 tables 1-255 only, not table %d for %v", q.Table, dst)
	}
	a, err := o.fibLookup(q.Table, dst, q.Flow.TOS, q.Scope)
	if err != nil {
		return fib.TableAnswer{}, err
	}
	if a.err == unix.ENOENT {
		return fib.TableAnswer{}, nil // no such table: no route
	}
	if int(a.tbID) != q.Table {
		return fib.TableAnswer{}, fmt.Errorf("NETLINK_FIB_LOOKUP answered for table %d, not %d", a.tbID, q.Table)
	}
	if a.err != 0 {
		return o.rejectFor(q, dst, a.err)
	}
	typ, ok := routeTypes[int(a.typ)]
	if !ok {
		return fib.TableAnswer{}, fmt.Errorf("table %d answers a route of type %d", q.Table, a.typ)
	}
	o.scopes[answerKey{q.Table, netip.PrefixFrom(dst, int(a.plen)).Masked(), typ}] = int(a.scope)
	return fib.TableAnswer{Prefix: netip.PrefixFrom(dst, int(a.plen)).Masked(), Type: typ, Nexthop: int(a.nhSel)}, nil
}

// RouteFor returns the route of an answer of LookupTable (fib.TableSource). The kernel's whole
// lookup of the same flow reaches the same route whenever it ends in this table at this
// prefix: fib_table_lookup depends only on the destination, TOS, scope and output device,
// which are the same. It is asked first as the FIB made the lookup, then as an output lookup
// without a source (an input lookup can fail the source checks), and only an answer from that
// table, prefix, type and scope is taken.
func (o *TableOracle) RouteFor(q fib.TableQuery, a fib.TableAnswer) (*model.Route, error) {
	if a.Route != nil {
		return a.Route, nil
	}
	dst := q.Flow.Dst.Unmap()
	scope, ok := o.scopes[answerKey{q.Table, a.Prefix, a.Type}]
	if !ok {
		return nil, fmt.Errorf("table %d: %s %s is no answer of this oracle", q.Table, a.Type, a.Prefix)
	}
	tries := []fib.Flow{q.Flow, {Family: inet.V4, Dst: dst, Mark: q.Flow.Mark, Proto: q.Flow.Proto, SPort: q.Flow.SPort, DPort: q.Flow.DPort, TOS: q.Flow.TOS, UID: q.Flow.UID}}
	if q.Flow.IIF == "" && !q.Flow.Src.IsValid() {
		tries = tries[:1]
	}
	var why []string
	for _, fl := range tries {
		r, err := o.fibMatch(fl)
		if err != nil {
			why = append(why, err.Error())
			continue
		}
		if r.Table != q.Table || r.Dst != a.Prefix || r.Type != a.Type || parseScope(r.Scope) != scope {
			why = append(why, fmt.Sprintf("the whole lookup ends at %s %s table %d", r.Type, r.Dst, r.Table))
			continue
		}
		k := aliasKey{table: r.Table, metric: r.Metric, dst: r.Dst, tos: r.TOS, typ: r.Type}
		if p := o.routes[k]; p != nil {
			return p, nil
		}
		p := new(model.Route)
		*p = r
		o.routes[k] = p
		return p, nil
	}
	return nil, fmt.Errorf("table %d chooses %s %s for %s, whose details the kernel's whole lookup does not give (%s)", q.Table, a.Type, a.Prefix, dst, strings.Join(why, "; "))
}

// parseScope is the inverse of routeScope.
func parseScope(s string) int {
	switch s {
	case "", "global", "universe":
		return unix.RT_SCOPE_UNIVERSE
	case "site":
		return unix.RT_SCOPE_SITE
	case "link":
		return unix.RT_SCOPE_LINK
	case "host":
		return unix.RT_SCOPE_HOST
	case "nowhere":
		return unix.RT_SCOPE_NOWHERE
	}
	n, _ := strconv.Atoi(s)
	return n
}

// errTypes are the route types whose fib_table_lookup answer is each error (fib_props).
var errTypes = map[syscall.Errno][]uint8{
	unix.EAGAIN:       {unix.RTN_THROW},
	unix.EINVAL:       {unix.RTN_BLACKHOLE, unix.RTN_NAT, unix.RTN_XRESOLVE},
	unix.EHOSTUNREACH: {unix.RTN_UNREACHABLE},
	unix.EACCES:       {unix.RTN_PROHIBIT},
}

// rejectFor answers a lookup the table answered with an error: the kernel stopped at the first
// route of those types that holds dst and fits the lookup's TOS and scope, walking from the
// longest prefix, and at one prefix by TOS (highest first), then metric; so that is the route,
// read of the table's routes of those types (by dumps the kernel filters by type). EAGAIN
// without such a throw route is no route at all. Two routes alike in all three cannot be told
// apart: an error.
func (o *TableOracle) rejectFor(q fib.TableQuery, dst netip.Addr, errno syscall.Errno) (fib.TableAnswer, error) {
	types, ok := errTypes[errno]
	if !ok {
		return fib.TableAnswer{}, fmt.Errorf("the table answers %s for %s", errnoName(errno), dst)
	}
	var best *model.Route
	tie := false
	for _, typ := range types {
		routes, err := o.routesOfType(q.Table, typ)
		if err != nil {
			return fib.TableAnswer{}, err
		}
		for _, r := range routes {
			if !r.Dst.Contains(dst) || r.TOS != 0 && r.TOS != q.Flow.TOS&0x1c || parseScope(r.Scope) < q.Scope {
				continue
			}
			switch c := kernelOrder(r, best); {
			case best == nil || c < 0:
				best, tie = r, false
			case c == 0:
				tie = true
			}
		}
	}
	switch {
	case best == nil && errno == unix.EAGAIN:
		return fib.TableAnswer{}, nil
	case best == nil:
		return fib.TableAnswer{}, fmt.Errorf("the table answers %s for %s but holds no route of that kind for it", errnoName(errno), dst)
	case tie:
		return fib.TableAnswer{}, fmt.Errorf("the table answers %s for %s, and two of its routes alike in prefix, TOS and metric may give it", errnoName(errno), dst)
	}
	return fib.TableAnswer{Prefix: best.Dst, Type: best.Type, Route: best, Nexthop: -1}, nil
}

// kernelOrder compares two routes holding one address in the order fib_table_lookup tries
// them: longer prefix, then higher TOS, then lower metric first.
func kernelOrder(a, b *model.Route) int {
	if b == nil {
		return -1
	}
	if c := cmp.Compare(b.Dst.Bits(), a.Dst.Bits()); c != 0 {
		return c
	}
	if c := cmp.Compare(b.TOS, a.TOS); c != 0 {
		return c
	}
	return cmp.Compare(uint32(a.Metric), uint32(b.Metric))
}

// maxRejects bounds the routes of one reject type read of a table: a table of mostly such
// routes is dumped.
const maxRejects = 1 << 16

// ThrowRoutes reads the IPv4 throw routes of every table of the namespace by one dump the
// kernel filters by type, for TableOracle.SetThrows: live trace reads them while it reads the
// rest of the state rather than when a lookup first needs them.
func ThrowRoutes(ns Namespace) (map[int][]*model.Route, error) {
	o := &TableOracle{ns: ns}
	out := map[int][]*model.Route{}
	err := o.dump(0, unix.RTN_THROW, 0, func(r model.Route) bool {
		if len(out[r.Table]) <= maxRejects {
			p := new(model.Route)
			*p = r
			out[r.Table] = append(out[r.Table], p)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetThrows gives the oracle the throw routes of the tables listed, as ThrowRoutes read them:
// a table missing from throws has none. A table with more than the oracle takes is left for
// it to read (and fail).
func (o *TableOracle) SetThrows(tables []int, throws map[int][]*model.Route) {
	for _, t := range tables {
		if len(throws[t]) <= maxRejects {
			o.rejects[rejectKey{t, unix.RTN_THROW}] = throws[t]
		}
	}
}

type rejectKey struct {
	table int
	typ   uint8
}

// routesOfType returns the routes of one type of a table, read once by a dump the kernel
// filters by type.
func (o *TableOracle) routesOfType(table int, typ uint8) ([]*model.Route, error) {
	k := rejectKey{table, typ}
	if rs, ok := o.rejects[k]; ok {
		return rs, nil
	}
	var out []*model.Route
	err := o.dump(table, typ, 0, func(r model.Route) bool {
		p := new(model.Route)
		*p = r
		out = append(out, p)
		return len(out) <= maxRejects
	})
	if err != nil {
		return nil, err
	}
	if len(out) > maxRejects {
		return nil, fmt.Errorf("table %d has more than %d routes of type %d", table, maxRejects, typ)
	}
	o.rejects[k] = out
	return out, nil
}

// HostRoute reports whether a route of host scope or narrower covers addr in the table
// (fib.TableSource): fib_table_lookup at scope host skips every wider route.
func (o *TableOracle) HostRoute(table int, addr netip.Addr) (bool, error) {
	k := hostKey{table, addr}
	if v, ok := o.hosts[k]; ok {
		return v, nil
	}
	if table < 1 || table > 255 || !addr.Is4() {
		return false, fmt.Errorf("NETLINK_FIB_LOOKUP asks IPv4 tables 1-255 only, not table %d for %v", table, addr)
	}
	a, err := o.fibLookup(table, addr, 0, unix.RT_SCOPE_HOST)
	if err != nil {
		return false, err
	}
	var host bool
	switch a.err {
	case 0:
		host = true
	case unix.EAGAIN, unix.ENOENT:
		// No route of host scope; a throw route of host scope would not make a gateway
		// direct either (only a unicast or local route does).
	default:
		return false, fmt.Errorf("table %d answers %s for %s at host scope", table, errnoName(a.err), addr)
	}
	o.hosts[k] = host
	return host, nil
}

// fibMatch asks RTM_GETROUTE with RTM_F_FIB_MATCH | RTM_F_LOOKUP_TABLE: the route entry the
// kernel's whole lookup of the flow matched, as a dump would list it, with its table.
func (o *TableOracle) fibMatch(fl fib.Flow) (model.Route, error) {
	o.Asked.Matches++
	p, err := o.host.openPipe()
	if err != nil {
		return model.Route{}, err
	}
	q := routeQuestionOf(fl)
	seq := p.seq
	p.seq++
	b := make([]byte, 0, 128)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, unix.RTM_GETROUTE)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	srcLen := uint8(0)
	if q.Src.IsValid() {
		srcLen = 32
	}
	b = append(b, unix.AF_INET, 32, srcLen, fl.TOS, 0, 0, 0, 0)
	b = binary.NativeEndian.AppendUint32(b, unix.RTM_F_FIB_MATCH|unix.RTM_F_LOOKUP_TABLE)
	d := fl.Dst.Unmap().As4()
	b = appendAttr(b, unix.RTA_DST, d[:])
	if q.Src.IsValid() {
		s := q.Src.Unmap().As4()
		b = appendAttr(b, unix.RTA_SRC, s[:])
	}
	if fl.IIF != "" {
		i, ok := o.index[fl.IIF]
		if !ok {
			return model.Route{}, fmt.Errorf("no interface %s", fl.IIF)
		}
		b = appendAttr(b, unix.RTA_IIF, u32(uint32(i)))
	}
	if fl.Mark != 0 {
		b = appendAttr(b, unix.RTA_MARK, u32(fl.Mark))
	}
	b = appendAttr(b, unix.RTA_UID, u32(q.UID))
	if q.Proto != 0 {
		b = appendAttr(b, unix.RTA_IP_PROTO, []byte{uint8(q.Proto)})
	}
	if q.SPort != 0 {
		b = appendAttr(b, unix.RTA_SPORT, binary.BigEndian.AppendUint16(nil, q.SPort))
	}
	if q.DPort != 0 {
		b = appendAttr(b, unix.RTA_DPORT, binary.BigEndian.AppendUint16(nil, q.DPort))
	}
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	if err := unix.Sendto(p.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return model.Route{}, fmt.Errorf("ip route get fibmatch %s: %w", RouteGetArgs(fl), err)
	}
	for {
		n, _, err := unix.Recvfrom(p.fd, p.in, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return model.Route{}, fmt.Errorf("ip route get fibmatch %s: %w", RouteGetArgs(fl), err)
		}
		for m := p.in[:n]; len(m) >= unix.NLMSG_HDRLEN; {
			ml := int(binary.NativeEndian.Uint32(m))
			if ml < unix.NLMSG_HDRLEN || ml > len(m) {
				return model.Route{}, fmt.Errorf("ip route get fibmatch %s: a message of %d bytes in %d", RouteGetArgs(fl), ml, len(m))
			}
			msg := m[:ml]
			m = m[min(nlmAlign(ml), len(m)):]
			if binary.NativeEndian.Uint32(msg[8:]) != seq {
				continue
			}
			switch binary.NativeEndian.Uint16(msg[4:]) {
			case unix.NLMSG_ERROR:
				if err := ackError(msg); err != nil {
					return model.Route{}, fmt.Errorf("ip route get fibmatch %s: %w", RouteGetArgs(fl), err)
				}
				return model.Route{}, fmt.Errorf("ip route get fibmatch %s: no route in the answer", RouteGetArgs(fl))
			case unix.RTM_NEWROUTE:
				r, ok := parseRoute(msg[unix.NLMSG_HDRLEN:], inet.V4, o.names)
				if !ok {
					return model.Route{}, fmt.Errorf("ip route get fibmatch %s: an answer that is not an IPv4 route", RouteGetArgs(fl))
				}
				return r, nil
			}
		}
	}
}

// FirstGatewayRoutes returns, of the IPv4 routes of a table through dev (a single path with a
// gateway, as trace.RouteKeeper keeps them), the first in the kernel's dump order and the first
// default route, each zero when there is none. The kernel filters the dump by device and
// lists a table in key order, so every default route comes before any other prefix: the dump
// stops as soon as both are known.
func (o *TableOracle) FirstGatewayRoutes(table int, dev string) (first, def model.Route, err error) {
	i, ok := o.index[dev]
	if !ok {
		return first, def, nil // no such device: no route through it
	}
	pastDefaults := false
	err = o.dump(table, 0, i, func(r model.Route) bool {
		if r.Dst.Bits() == 0 && r.Dev == dev && r.Gateway.IsValid() && !def.Dst.IsValid() {
			def = r
		}
		if r.Dev == dev && r.Gateway.IsValid() && !first.Dst.IsValid() {
			first = r
		}
		if r.Dst.Addr() != netip.IPv4Unspecified() {
			pastDefaults = true
		}
		return !(first.Dst.IsValid() && (def.Dst.IsValid() || pastDefaults))
	})
	return first, def, err
}

// dump lists the IPv4 routes of one table (0: of every table) that the kernel filters by type and output device
// (0: any) to fn until fn returns false, on a socket of its own that is closed afterwards, so
// that a dump given up early costs no more of the kernel's time.
func (o *TableOracle) dump(table int, typ uint8, oif int, fn func(model.Route) bool) error {
	o.Asked.Dumps++
	if table < 0 || table > 255 {
		return fmt.Errorf("dumping table %d: only tables 1-255 (0: every table) are dumped this way", table)
	}
	sk, err := o.ns.socket(unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer sk.Close()
	fd := int(sk.GetFd())
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1); err != nil {
		return fmt.Errorf("enabling strict checking: %w", err)
	}
	b := make([]byte, 0, 64)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, unix.RTM_GETROUTE)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	b = binary.NativeEndian.AppendUint32(b, 1)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, unix.AF_INET, 0, 0, 0, uint8(table), 0, 0, typ, 0, 0, 0, 0)
	if oif != 0 {
		b = appendAttr(b, unix.RTA_OIF, u32(uint32(oif)))
	}
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("dumping table %d: %w", table, err)
	}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("dumping table %d: %w", table, err)
		}
		for m := buf[:n]; len(m) >= unix.NLMSG_HDRLEN; {
			ml := int(binary.NativeEndian.Uint32(m))
			if ml < unix.NLMSG_HDRLEN || ml > len(m) {
				return fmt.Errorf("dumping table %d: a message of %d bytes in %d", table, ml, len(m))
			}
			msg := m[:ml]
			m = m[min(nlmAlign(ml), len(m)):]
			if binary.NativeEndian.Uint16(msg[6:])&unix.NLM_F_DUMP_INTR != 0 {
				return fmt.Errorf("dumping table %d: the table changed while it was read; try again", table)
			}
			switch binary.NativeEndian.Uint16(msg[4:]) {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if err := ackError(msg); err != nil {
					return fmt.Errorf("dumping table %d: %w", table, err)
				}
				return nil
			case unix.RTM_NEWROUTE:
				if r, ok := parseRoute(msg[unix.NLMSG_HDRLEN:], inet.V4, o.names); ok && (table == 0 || r.Table == table) && !fn(r) {
					return nil
				}
			}
		}
	}
}

// DumpOrder sorts IPv4 table ids in the order a dump of every table lists them
// (inet_dump_fib walks the table hash, id mod 256, bucket by bucket). ok is false when two
// tables share a bucket, whose order the kernel does not say.
func DumpOrder(tables []int) (sorted []int, ok bool) {
	sorted = slices.Clone(tables)
	slices.SortFunc(sorted, func(a, b int) int { return cmp.Compare(uint32(a)%256, uint32(b)%256) })
	for i := 1; i < len(sorted); i++ {
		if uint32(sorted[i])%256 == uint32(sorted[i-1])%256 {
			return sorted, false
		}
	}
	return sorted, true
}

// ErrDumpInterrupted is what a dump's error wraps when the kernel interrupted it because the
// tables changed while it was read (NLM_F_DUMP_INTR): reading again may succeed.
var ErrDumpInterrupted = vnl.ErrDumpInterrupted
