package kernel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// Namespace names the network namespace to work in. The zero value is the namespace roundtrip
// itself runs in, as with `ip netns exec X roundtrip`; a Name is one of `ip netns list`.
type Namespace struct{ Name string }

func (ns Namespace) String() string {
	if ns.Name == "" {
		return "the current namespace"
	}
	return "namespace " + ns.Name
}

// open returns a handle on the namespace, or netns.None() for the current one.
func (ns Namespace) open() (netns.NsHandle, error) {
	if ns.Name == "" {
		return netns.None(), nil
	}
	h, err := netns.GetFromName(ns.Name)
	if err != nil {
		return netns.None(), fmt.Errorf("opening network namespace %s: %w (is it listed by `ip netns list`?)", ns.Name, err)
	}
	return h, nil
}

// Handle opens a netlink handle whose sockets live in the namespace, with strict checking on so
// that the kernel filters dumps itself and rejects requests it does not understand. The caller
// closes it.
func (ns Namespace) Handle() (*netlink.Handle, error) {
	var h *netlink.Handle
	var err error
	if ns.Name == "" {
		h, err = netlink.NewHandle()
	} else {
		nsh, oerr := ns.open()
		if oerr != nil {
			return nil, oerr
		}
		defer nsh.Close()
		h, err = netlink.NewHandleAt(nsh)
	}
	if err != nil {
		return nil, fmt.Errorf("opening netlink in %s: %w", ns, err)
	}
	if err := h.SetStrictCheck(true); err != nil {
		h.Close()
		return nil, fmt.Errorf("enabling netlink strict checking in %s: %w (needs Linux 4.20 or later)", ns, err)
	}
	return h, nil
}

// socket opens a netlink socket of the protocol (unix.NETLINK_ROUTE, ...) inside the
// namespace, for the requests the library cannot make; the caller closes it.
func (ns Namespace) socket(proto int) (*nl.NetlinkSocket, error) {
	nsh, err := ns.open()
	if err != nil {
		return nil, err
	}
	if nsh.IsOpen() {
		defer nsh.Close()
	}
	sock, err := nl.GetNetlinkSocketAt(nsh, netns.None(), proto)
	if err != nil {
		return nil, fmt.Errorf("opening netlink in %s: %w", ns, err)
	}
	return sock, nil
}

// Runner returns the command runner that runs tools (iptables-save, ...) inside the namespace.
func (ns Namespace) Runner() Runner { return ExecRunner{NetNS: ns.Name} }

// Do runs fn on an OS thread switched into the namespace. Files under /proc/sys/net belong to
// the network namespace of the thread that opens them, so sysctls must be read inside fn.
func (ns Namespace) Do(fn func() error) error {
	if ns.Name == "" {
		return fn()
	}
	h, err := ns.open()
	if err != nil {
		return err
	}
	defer h.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread is unlocked only once it is back in its own namespace; if switching back
		// fails the goroutine exits locked and the runtime throws the thread away.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("getting the current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("entering network namespace %s: %w", ns.Name, err)
			return
		}
		err = fn()
		if serr := netns.Set(orig); serr != nil {
			errc <- errors.Join(err, fmt.Errorf("leaving network namespace %s: %w", ns.Name, serr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// dumpRetries bounds how often a dump is restarted when the kernel reports that the table
// changed under it (NLM_F_DUMP_INTR): a half-old, half-new dump is worse than an error.
const dumpRetries = 5

// retryDump runs dump until it finishes without interruption.
func retryDump(what string, dump func() error) error {
	var err error
	for range dumpRetries {
		if err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
	}
	return fmt.Errorf("%s: the kernel interrupted the dump %d times because it kept changing; try again: %w", what, dumpRetries, err)
}

// readLinks dumps the links with their addresses, sorted by ifindex.
func readLinks(h *netlink.Handle) ([]model.Link, error) {
	var nls []netlink.Link
	err := retryDump("listing links", func() error {
		var err error
		nls, err = h.LinkList()
		return err
	})
	if err != nil {
		return nil, err
	}
	names := make(map[int]string, len(nls))
	for _, l := range nls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	links := make([]model.Link, 0, len(nls))
	for _, l := range nls {
		links = append(links, convertLink(l, names))
	}
	slices.SortFunc(links, func(a, b model.Link) int { return a.Index - b.Index })

	byIndex := make(map[int]*model.Link, len(links))
	for i := range links {
		byIndex[links[i].Index] = &links[i]
	}
	// One dump per family rather than one per link: AddrList filters a full dump in user space.
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		var addrs []netlink.Addr
		err := retryDump("listing addresses", func() error {
			var err error
			addrs, err = h.AddrList(nil, fam)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("listing %s addresses: %w", inet.Family(fam), err)
		}
		for _, a := range addrs {
			l := byIndex[a.LinkIndex]
			if l == nil || a.IPNet == nil {
				continue // the link went away between the two dumps
			}
			l.Addrs = append(l.Addrs, convertAddr(a, fam))
		}
	}
	return links, nil
}

func convertLink(l netlink.Link, names map[int]string) model.Link {
	a := l.Attrs()
	out := model.Link{
		Index:     a.Index,
		Name:      a.Name,
		Kind:      l.Type(),
		Up:        a.Flags&net.FlagUp != 0,
		OperState: operState(a.OperState),
		MTU:       a.MTU,
		Master:    names[a.MasterIndex],
	}
	if len(a.HardwareAddr) > 0 {
		out.HardwareAddr = a.HardwareAddr.String()
	}
	if a.Flags&net.FlagLoopback != 0 {
		out.Kind = "loopback"
	}
	switch t := l.(type) {
	case *netlink.Veth:
		// IFLA_LINK is the peer's ifindex; IFLA_LINK_NETNSID is only sent when the peer lives
		// in another namespace, where that index means nothing here.
		if a.NetNsID == -1 {
			out.Peer = names[a.ParentIndex]
		}
	case *netlink.Vxlan:
		tun := &model.Tunnel{VNI: uint32(t.VxlanId), Port: t.Port, TTL: t.TTL, Local: addrOf(t.SrcAddr), Dev: names[t.VtepDevIndex]}
		if g := addrOf(t.Group); g.IsMulticast() {
			tun.Group = g
		} else {
			tun.Remote = g
		}
		out.Tunnel = tun
	case *netlink.Iptun:
		out.Tunnel = &model.Tunnel{Local: addrOf(t.Local), Remote: addrOf(t.Remote), TTL: int(t.Ttl), Dev: names[int(t.Link)]}
	case *netlink.Sittun:
		out.Tunnel = &model.Tunnel{Local: addrOf(t.Local), Remote: addrOf(t.Remote), TTL: int(t.Ttl), Dev: names[int(t.Link)]}
	case *netlink.Ip6tnl:
		out.Tunnel = &model.Tunnel{Local: addrOf(t.Local), Remote: addrOf(t.Remote), TTL: int(t.Ttl), Dev: names[int(t.Link)]}
	case *netlink.Gretun:
		out.Tunnel = &model.Tunnel{Local: addrOf(t.Local), Remote: addrOf(t.Remote), TTL: int(t.Ttl), Key: greKey(t.IKey, t.OKey), Dev: names[int(t.Link)]}
	case *netlink.Gretap:
		out.Tunnel = &model.Tunnel{Local: addrOf(t.Local), Remote: addrOf(t.Remote), TTL: int(t.Ttl), Key: greKey(t.IKey, t.OKey), Dev: names[int(t.Link)]}
	}
	return out
}

// greKey returns the key of a GRE link. `ip link add ... key K` sets both directions; netlink
// v1.3.1 swaps ikey and okey when decoding gretap links, so take whichever is set.
func greKey(ikey, okey uint32) uint32 {
	if ikey != 0 {
		return ikey
	}
	return okey
}

// operState names an RFC 2863 operational state as `ip link` prints it.
func operState(s netlink.LinkOperState) string {
	switch s {
	case netlink.OperNotPresent:
		return "NOTPRESENT"
	case netlink.OperDown:
		return "DOWN"
	case netlink.OperLowerLayerDown:
		return "LOWERLAYERDOWN"
	case netlink.OperTesting:
		return "TESTING"
	case netlink.OperDormant:
		return "DORMANT"
	case netlink.OperUp:
		return "UP"
	}
	return "UNKNOWN"
}

func convertAddr(a netlink.Addr, fam int) model.Address {
	ones, _ := a.IPNet.Mask.Size()
	out := model.Address{
		Prefix: netip.PrefixFrom(addrIn(a.IPNet.IP, inet.Family(fam)), ones),
		Scope:  addrScope(a.Scope),
		// IFA_F_SECONDARY and IFA_F_TEMPORARY share a bit; only IPv4 has secondaries.
		Secondary: fam == netlink.FAMILY_V4 && a.Flags&unix.IFA_F_SECONDARY != 0,
	}
	if a.Peer != nil {
		pones, _ := a.Peer.Mask.Size()
		out.Peer = netip.PrefixFrom(addrIn(a.Peer.IP, inet.Family(fam)), pones)
	}
	return out
}

// addrScope names an address scope as `ip addr` prints it (rt_scopes).
func addrScope(s int) string {
	if s == unix.RT_SCOPE_UNIVERSE {
		return "global"
	}
	return scopeName(s)
}

// routeScope names a route scope as the model stores it: RT_SCOPE_UNIVERSE is "universe",
// which model.Route.Args leaves out.
func routeScope(s int) string {
	if s == unix.RT_SCOPE_UNIVERSE {
		return "universe"
	}
	return scopeName(s)
}

func scopeName(s int) string {
	switch s {
	case unix.RT_SCOPE_SITE:
		return "site"
	case unix.RT_SCOPE_LINK:
		return "link"
	case unix.RT_SCOPE_HOST:
		return "host"
	case unix.RT_SCOPE_NOWHERE:
		return "nowhere"
	}
	return fmt.Sprint(s)
}

// addrOf converts a netlink address of unknown family: net.IP may hold IPv4 in 16 bytes.
func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// addrIn converts an address of a known family. The kernel sends IPv4 as 4 bytes, so a 16-byte
// IPv4-mapped address is a real IPv6 address (::ffff:10.0.0.0/104 is a valid IPv6 rule) and
// stays IPv6.
func addrIn(ip net.IP, fam inet.Family) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	if fam == inet.V4 {
		return a.Unmap()
	}
	return a
}

// prefixOf converts a route or rule prefix, nil meaning the whole family.
func prefixOf(n *net.IPNet, fam inet.Family) netip.Prefix {
	if n == nil {
		if fam == inet.V6 {
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(addrIn(n.IP, fam), ones)
}

// routeTypes names RTN_* route types as iproute2 prints them.
var routeTypes = map[int]string{
	unix.RTN_UNICAST:     model.RouteUnicast,
	unix.RTN_LOCAL:       model.RouteLocal,
	unix.RTN_BROADCAST:   model.RouteBroadcast,
	unix.RTN_ANYCAST:     model.RouteAnycast,
	unix.RTN_MULTICAST:   model.RouteMulticast,
	unix.RTN_BLACKHOLE:   model.RouteBlackhole,
	unix.RTN_UNREACHABLE: model.RouteUnreachable,
	unix.RTN_PROHIBIT:    model.RouteProhibit,
	unix.RTN_THROW:       model.RouteThrow,
	unix.RTN_NAT:         model.RouteNAT,
	unix.RTN_XRESOLVE:    "xresolve",
}

// routeProtocols are iproute2's built-in rt_protos names.
var routeProtocols = model.RouteProtocolNames

// ProtocolName names a route protocol (RTPROT_*) as iproute2 does, or returns the number.
func ProtocolName(p int) string {
	if n, ok := routeProtocols[p]; ok {
		return n
	}
	return fmt.Sprint(p)
}

// readRoutes streams the routes of every table of one family into the state, in kernel order.
func readRoutes(ctx context.Context, h *netlink.Handle, fam inet.Family, names map[int]string, st *model.State) error {
	start := len(st.Routes)
	// RT_FILTER_TABLE with table RT_TABLE_UNSPEC makes the library pass routes of every table
	// through; without it RouteListFilteredIter drops all but the main table.
	filter := &netlink.Route{Table: unix.RT_TABLE_UNSPEC}
	return retryDump(fmt.Sprintf("listing %s routes", fam), func() error {
		st.Routes = st.Routes[:start]
		n := 0
		err := h.RouteListFilteredIter(int(fam), filter, netlink.RT_FILTER_TABLE, func(r netlink.Route) bool {
			// Looking at the context for every route would cost more than converting it.
			if n++; n%4096 == 0 && ctx.Err() != nil {
				return false
			}
			if len(st.Routes) == cap(st.Routes) {
				// Double: append's 1.25x growth for large slices would allocate about five
				// times the final size of a full table on the way there. Read sizes the slice
				// from the kernel's count; this is for routes added meanwhile.
				st.Routes = growRoutes(st.Routes, max(len(st.Routes), 256))
			}
			st.Routes = append(st.Routes, convertRoute(&r, fam, names))
			return true
		})
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return err
	})
}

// maxRouteHint bounds the room made for routes on a count read from the kernel (64M routes,
// 14 GB): a count beyond it is not believed.
const maxRouteHint = 1 << 26

// growRoutes makes room for n more routes, unless n is beyond belief.
func growRoutes(rs []model.Route, n int) []model.Route {
	if n <= 0 || n > maxRouteHint {
		return rs
	}
	return slices.Grow(rs, n)
}

func convertRoute(r *netlink.Route, fam inet.Family, names map[int]string) model.Route {
	typ, ok := routeTypes[r.Type]
	if !ok {
		typ = fmt.Sprint(r.Type)
	}
	out := model.Route{
		Family:   fam,
		Table:    r.Table,
		Type:     typ,
		Dst:      prefixOf(r.Dst, fam),
		TOS:      uint8(r.Tos),
		Gateway:  gatewayOf(r.Gw, r.Via, fam),
		Dev:      names[r.LinkIndex],
		Src:      addrIn(r.Src, fam),
		Metric:   r.Priority,
		Scope:    routeScope(int(r.Scope)),
		Protocol: ProtocolName(int(r.Protocol)),
		OnLink:   r.Flags&unix.RTNH_F_ONLINK != 0,
	}
	for _, nh := range r.MultiPath {
		out.Nexthops = append(out.Nexthops, model.Nexthop{
			Gateway: gatewayOf(nh.Gw, nh.Via, fam),
			Dev:     names[nh.LinkIndex],
			Weight:  nh.Hops + 1, // rtnh_hops is weight-1 (iproute2 prints hops+1)
			OnLink:  nh.Flags&unix.RTNH_F_ONLINK != 0,
		})
	}
	return out
}

// gatewayOf returns RTA_GATEWAY, or RTA_VIA for an IPv4 route via an IPv6 gateway (RFC 5549).
func gatewayOf(gw net.IP, via netlink.Destination, fam inet.Family) netip.Addr {
	if gw != nil {
		return addrIn(gw, fam)
	}
	if v, ok := via.(*netlink.Via); ok && v != nil {
		return addrIn(v.Addr, inet.Family(v.AddrFamily))
	}
	return netip.Addr{}
}

// ruleActions names FR_ACT_* actions as iproute2 prints them.
var ruleActions = map[uint8]string{
	unix.FR_ACT_TO_TBL:      model.ActionTable,
	unix.FR_ACT_GOTO:        model.ActionGoto,
	unix.FR_ACT_NOP:         model.ActionNop,
	unix.FR_ACT_BLACKHOLE:   model.ActionBlackhole,
	unix.FR_ACT_UNREACHABLE: model.ActionUnreachable,
	unix.FR_ACT_PROHIBIT:    model.ActionProhibit,
}

// readRules dumps the policy rules of one family in kernel (priority) order.
//
// netlink v1.3.1's RuleList cannot be used: it drops the action (fib_rule_hdr.action, so
// blackhole, unreachable, prohibit and nop rules read as "lookup 0"), and it sends an ifinfomsg
// as the request header, which a strict-checking socket rejects ("Invalid data after header in
// FIB rule dump request"). So the dump is done here with the library's message plumbing, on a
// socket of its own in the namespace.
func readRules(ns Namespace, fam inet.Family) ([]model.Rule, error) {
	sock, err := ns.socket(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer sock.Close()
	if err := unix.SetsockoptInt(int(sock.GetFd()), unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1); err != nil {
		return nil, fmt.Errorf("enabling netlink strict checking: %w (needs Linux 4.20 or later)", err)
	}
	sockets := map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: sock}}

	var rules []model.Rule
	var parseErr error
	err = retryDump(fmt.Sprintf("listing %s rules", fam), func() error {
		rules, parseErr = rules[:0], nil
		req := nl.NewNetlinkRequest(unix.RTM_GETRULE, unix.NLM_F_DUMP)
		req.Sockets = sockets
		// fib_rule_hdr has the layout of rtmsg; all zero but the family, as strict mode wants.
		req.AddData(&nl.RtMsg{RtMsg: unix.RtMsg{Family: uint8(fam)}})
		return req.ExecuteIter(unix.NETLINK_ROUTE, unix.RTM_NEWRULE, func(m []byte) bool {
			r, err := parseRule(m)
			if err != nil {
				parseErr = err
				return false
			}
			rules = append(rules, r)
			return true
		})
	})
	if err == nil {
		err = parseErr
	}
	if err != nil {
		return nil, err
	}
	return rules, nil
}

// parseRule decodes one RTM_NEWRULE message: a fib_rule_hdr and FRA_* attributes, as
// net/core/fib_rules.c:fib_nl_fill_rule writes them.
func parseRule(m []byte) (model.Rule, error) {
	if len(m) < unix.SizeofRtMsg {
		return model.Rule{}, fmt.Errorf("short rule message (%d bytes)", len(m))
	}
	hdr := nl.DeserializeRtMsg(m)
	attrs, err := parseAttrs(m[unix.SizeofRtMsg:])
	if err != nil {
		return model.Rule{}, fmt.Errorf("decoding rule attributes: %w", err)
	}
	fam := inet.Family(hdr.Family)
	r := model.Rule{
		Family: fam,
		Not:    hdr.Flags&unix.FIB_RULE_INVERT != 0,
		TOS:    hdr.Tos,
		Table:  int(hdr.Table), // FRA_TABLE below holds the full 32-bit id
	}
	if act, ok := ruleActions[hdr.Type]; ok {
		r.Action = act
	} else {
		r.Action = fmt.Sprint(hdr.Type)
	}
	var mark, mask uint32 = 0, 0xffffffff
	var hasMark bool
	for _, a := range attrs {
		v := a.Value
		u32 := func() uint32 {
			if len(v) < 4 {
				err = fmt.Errorf("rule attribute %d: %d bytes, want 4", a.Attr.Type, len(v))
				return 0
			}
			return nl.NativeEndian().Uint32(v)
		}
		switch a.Attr.Type {
		case unix.FRA_PRIORITY:
			r.Priority = int(u32())
		case unix.FRA_SRC:
			r.Src = netip.PrefixFrom(addrIn(v, fam), int(hdr.Src_len))
			if !r.Src.IsValid() {
				err = fmt.Errorf("bad rule source %x/%d", v, hdr.Src_len)
			}
		case unix.FRA_DST:
			r.Dst = netip.PrefixFrom(addrIn(v, fam), int(hdr.Dst_len))
			if !r.Dst.IsValid() {
				err = fmt.Errorf("bad rule destination %x/%d", v, hdr.Dst_len)
			}
		case unix.FRA_IIFNAME:
			r.IIF = cString(v)
		case unix.FRA_OIFNAME:
			r.OIF = cString(v)
		case unix.FRA_FWMARK:
			mark, hasMark = u32(), true
		case unix.FRA_FWMASK:
			mask, hasMark = u32(), true
		case unix.FRA_IP_PROTO:
			if len(v) > 0 {
				r.IPProto = int(v[0])
			}
		case unix.FRA_SPORT_RANGE:
			r.SPort = portRange(v)
		case unix.FRA_DPORT_RANGE:
			r.DPort = portRange(v)
		case unix.FRA_UID_RANGE:
			if len(v) >= 8 {
				r.UIDRange = &model.UIDRange{Start: nl.NativeEndian().Uint32(v), End: nl.NativeEndian().Uint32(v[4:])}
			}
		case unix.FRA_SUPPRESS_PREFIXLEN:
			// Always sent; (u32)-1 means not set.
			if n := int32(u32()); n != -1 {
				r.SuppressPrefixLen = new(int(n))
			}
		case unix.FRA_SUPPRESS_IFGROUP:
			if n := int32(u32()); n != -1 {
				r.SuppressIfGroup = new(int(n))
			}
		case unix.FRA_GOTO:
			r.Goto = int(u32())
		case unix.FRA_TABLE:
			r.Table = int(u32())
		case unix.FRA_PROTOCOL:
			if len(v) > 0 {
				r.Protocol = int(v[0])
			}
		}
	}
	if err != nil {
		return model.Rule{}, err
	}
	// The kernel sends FWMARK and FWMASK together when either is set; a mark given without a
	// mask is stored with mask 0xffffffff (fib_rules.c), which iproute2 prints as "fwmark 0x1".
	// Kernels older than 2.6.19 send no mask: iproute2 then shows the mark alone, as full mask.
	if hasMark {
		r.Mark = &model.MarkMatch{Value: mark, Mask: mask}
	}
	return r, nil
}

// parseAttrs splits netlink attributes. nl.ParseRouteAttr panics when the last attribute is
// not padded to 4 bytes; the kernel always pads, but decoding must not trust that.
func parseAttrs(b []byte) ([]syscall.NetlinkRouteAttr, error) {
	var attrs []syscall.NetlinkRouteAttr
	for len(b) >= unix.SizeofRtAttr {
		n := int(nl.NativeEndian().Uint16(b))
		if n < unix.SizeofRtAttr || n > len(b) {
			return nil, fmt.Errorf("attribute length %d with %d bytes left", n, len(b))
		}
		attrs = append(attrs, syscall.NetlinkRouteAttr{
			Attr:  syscall.RtAttr{Len: uint16(n), Type: nl.NativeEndian().Uint16(b[2:])},
			Value: b[unix.SizeofRtAttr:n],
		})
		b = b[min((n+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1), len(b)):]
	}
	return attrs, nil
}

func portRange(v []byte) *model.PortRange {
	if len(v) < 4 {
		return nil
	}
	return &model.PortRange{Start: nl.NativeEndian().Uint16(v), End: nl.NativeEndian().Uint16(v[2:])}
}

// cString returns a NUL-terminated netlink string without its terminator.
func cString(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
