package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
)

// RouteAnswer is the kernel's answer to RTM_GETROUTE, shaped like the model's (fib.Result)
// so that the two can be compared: Verdict is the type of the route found (unicast, local,
// broadcast, ...), Table, OIF, Gateway and the sources as the kernel reports them, Nexthop -1.
// When the kernel refuses the lookup, Errno says how and Verdict what that means:
//   - ENETUNREACH: no-route (no rule gave a route; a rule's unreachable action gives it too,
//     fib4_rule_action);
//   - EHOSTUNREACH: unreachable (an unreachable route; for a received packet also forwarding
//     turned off, ip_route_input_slow);
//   - EACCES: prohibit;
//   - EINVAL: invalid (a blackhole route; for a received packet every refusal of the input
//     path: reverse-path filtering, martian source or destination).
type RouteAnswer struct {
	fib.Result
	Errno syscall.Errno
}

func (a RouteAnswer) String() string {
	if a.Errno != 0 {
		return errnoName(a.Errno)
	}
	s := fmt.Sprintf("%s table %d dev %s", a.Verdict, a.Table, a.OIF)
	if a.Gateway.IsValid() {
		s += " via " + a.Gateway.String()
	}
	if a.Src.IsValid() {
		s += " src " + a.Src.String()
	}
	return s
}

func errnoName(e syscall.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d (%v)", int(e), e)
}

// routeGetRefusals maps the errors of RTM_GETROUTE that are answers to the verdict they mean;
// any other error is a failure to ask.
var routeGetRefusals = map[syscall.Errno]string{
	unix.ENETUNREACH:  fib.VerdictNoRoute,
	unix.EHOSTUNREACH: fib.VerdictUnreachable,
	unix.EACCES:       fib.VerdictProhibit,
	unix.EINVAL:       fib.VerdictInvalid,
}

// RouteProber asks one namespace's kernel where it routes flows, as `ip route get` does, on one
// netlink socket: open it once to ask many questions. It remembers interface names and
// indexes once seen, so it suits a state that does not change while it is used. It is not
// safe for concurrent use.
type RouteProber struct {
	ns      Namespace
	h       *netlink.Handle // for interface names
	sockets map[int]*nl.SocketHandle
	index   map[string]int
	names   map[int]string
}

// OpenRouteProber opens a prober in the namespace; the caller closes it.
func (ns Namespace) OpenRouteProber() (*RouteProber, error) {
	h, err := ns.Handle()
	if err != nil {
		return nil, err
	}
	// Not a strict-checking socket: strict mode refuses RTM_F_LOOKUP_TABLE in an IPv6 request
	// with EINVAL (inet6_rtm_valid_getroute_req), which would read as a refusal of the route.
	sock, err := ns.socket(unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, err
	}
	return &RouteProber{ns: ns, h: h, sockets: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: sock}},
		index: map[string]int{}, names: map[int]string{}}, nil
}

// Close closes the prober's sockets.
func (p *RouteProber) Close() {
	p.sockets[unix.NETLINK_ROUTE].Socket.Close()
	p.h.Close()
}

// RouteGet asks the namespace's kernel once; see (*RouteProber).RouteGet.
func (ns Namespace) RouteGet(fl fib.Flow) (RouteAnswer, error) {
	p, err := ns.OpenRouteProber()
	if err != nil {
		return RouteAnswer{}, err
	}
	defer p.Close()
	return p.RouteGet(fl)
}

// RouteGet asks where the kernel routes a flow with every selector of the flow, as
// `ip route get` with the arguments RouteGetArgs writes: an input lookup when fl.IIF is set
// (with the kernel's source validation: rp_filter, forwarding, martians), an output lookup
// otherwise. A refusal is an answer (Errno set), not an error.
//
// What the kernel cannot be asked: RTM_GETROUTE accepts only TCP, UDP and ICMP (ICMPv6) as
// ipproto (rtm_getroute_parse_ip_proto answers EOPNOTSUPP), so a flow of another protocol is
// asked without its protocol and ports, and IPv4 looks up a flow without a protocol as UDP
// (inet_rtm_getroute). An IPv4 input lookup sees ports only through the TCP or UDP header the
// kernel builds for it (inet_rtm_getroute_build_skb).
func (p *RouteProber) RouteGet(fl fib.Flow) (RouteAnswer, error) {
	if !fl.Dst.IsValid() {
		return RouteAnswer{}, errors.New("route get: the flow has no destination")
	}
	q := routeQuestionOf(fl)
	req := nl.NewNetlinkRequest(unix.RTM_GETROUTE, unix.NLM_F_REQUEST)
	req.Sockets = p.sockets
	bitsLen := uint8(fl.Dst.BitLen())
	msg := &nl.RtMsg{RtMsg: unix.RtMsg{Family: uint8(q.Family), Dst_len: bitsLen, Tos: fl.TOS, Flags: unix.RTM_F_LOOKUP_TABLE}}
	if q.Src.IsValid() {
		msg.Src_len = bitsLen
	}
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.RTA_DST, fl.Dst.AsSlice()))
	if q.Src.IsValid() {
		req.AddData(nl.NewRtAttr(unix.RTA_SRC, q.Src.AsSlice()))
	}
	for _, dev := range []struct {
		attr int
		name string
	}{{unix.RTA_IIF, fl.IIF}, {unix.RTA_OIF, fl.OIF}} {
		if dev.name == "" {
			continue
		}
		i, err := p.ifindex(dev.name)
		if err != nil {
			return RouteAnswer{}, err
		}
		req.AddData(nl.NewRtAttr(dev.attr, nl.Uint32Attr(uint32(i))))
	}
	if fl.Mark != 0 {
		req.AddData(nl.NewRtAttr(unix.RTA_MARK, nl.Uint32Attr(fl.Mark)))
	}
	req.AddData(nl.NewRtAttr(unix.RTA_UID, nl.Uint32Attr(q.UID)))
	if q.Proto != 0 {
		req.AddData(nl.NewRtAttr(unix.RTA_IP_PROTO, []byte{uint8(q.Proto)}))
	}
	if q.SPort != 0 {
		req.AddData(nl.NewRtAttr(unix.RTA_SPORT, binary.BigEndian.AppendUint16(nil, q.SPort)))
	}
	if q.DPort != 0 {
		req.AddData(nl.NewRtAttr(unix.RTA_DPORT, binary.BigEndian.AppendUint16(nil, q.DPort)))
	}
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWROUTE)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			if v, ok := routeGetRefusals[errno]; ok {
				return RouteAnswer{Errno: errno, Result: fib.Result{Verdict: v, Nexthop: -1,
					Note: "the kernel answers " + errnoName(errno)}}, nil
			}
		}
		return RouteAnswer{}, fmt.Errorf("ip route get %s in %s: %w", RouteGetArgs(fl), p.ns, err)
	}
	if len(msgs) != 1 || len(msgs[0]) < unix.SizeofRtMsg {
		return RouteAnswer{}, fmt.Errorf("ip route get %s in %s: the kernel sent %d answers, want one route", RouteGetArgs(fl), p.ns, len(msgs))
	}
	hdr := nl.DeserializeRtMsg(msgs[0])
	attrs, err := parseAttrs(msgs[0][unix.SizeofRtMsg:])
	if err != nil {
		return RouteAnswer{}, fmt.Errorf("ip route get %s in %s: decoding the answer: %w", RouteGetArgs(fl), p.ns, err)
	}
	fam := q.Family
	a := RouteAnswer{Result: fib.Result{Verdict: routeTypes[int(hdr.Type)], Table: int(hdr.Table), Nexthop: -1}}
	if a.Verdict == "" {
		a.Verdict = fmt.Sprint(hdr.Type)
	}
	for _, at := range attrs {
		v := at.Value
		switch at.Attr.Type {
		case unix.RTA_TABLE:
			if len(v) >= 4 {
				a.Table = int(nl.NativeEndian().Uint32(v))
			}
		case unix.RTA_OIF:
			if len(v) >= 4 {
				if a.OIF, err = p.ifname(int(nl.NativeEndian().Uint32(v))); err != nil {
					return RouteAnswer{}, fmt.Errorf("ip route get %s in %s: %w", RouteGetArgs(fl), p.ns, err)
				}
			}
		case unix.RTA_GATEWAY:
			a.Gateway = addrIn(v, fam)
		case unix.RTA_VIA:
			// struct rtvia: a family, then the address (an IPv4 route via an IPv6 gateway).
			if len(v) > 2 {
				a.Gateway = addrIn(v[2:], inet.Family(nl.NativeEndian().Uint16(v)))
			}
		case unix.RTA_PREFSRC:
			a.PrefSrc = addrIn(v, fam)
		}
	}
	// IPv4 reports as RTA_PREFSRC the source the packet gets, only when it is not the one
	// asked for (rt_fill_info); IPv6 reports the route's preferred source whatever was asked
	// (rt6_fill_node), and a packet with a source keeps it.
	a.Src = a.PrefSrc
	if q.Src.IsValid() && (fam == inet.V6 || !a.Src.IsValid()) {
		a.Src = q.Src
	}
	return a, nil
}

// routeQuestion is what RouteGet asks of a flow, beyond its destination, devices, mark and
// TOS, which go as they are.
type routeQuestion struct {
	Family       inet.Family
	Src          netip.Addr // none for an unspecified source
	UID          uint32
	Proto        int // 0: not asked
	SPort, DPort uint16
}

func routeQuestionOf(fl fib.Flow) routeQuestion {
	q := routeQuestion{Family: fl.Family, Src: fl.Src, UID: fl.UID, Proto: fl.Proto, SPort: fl.SPort, DPort: fl.DPort}
	if q.Family == 0 {
		q.Family = inet.FamilyOf(fl.Dst)
	}
	if q.Src.IsValid() && q.Src.IsUnspecified() {
		q.Src = netip.Addr{}
	}
	// Received and forwarded packets are looked up as uid 0 (ip_route_input_slow uses
	// sock_net_uid(net, NULL); ip6_route_input leaves flowi6_uid zero), as the model does;
	// `ip -6 route get iif` would look up as the uid given, INVALID_UID when none.
	if fl.IIF != "" {
		q.UID = 0
	}
	// rtm_getroute_parse_ip_proto accepts TCP, UDP and the family's ICMP only. Ports without
	// a protocol are still used (fl4_sport, fl6_sport), as rules on ports alone use them.
	switch {
	case q.Proto == unix.IPPROTO_TCP, q.Proto == unix.IPPROTO_UDP, q.Proto == 0,
		q.Proto == unix.IPPROTO_ICMP && q.Family == inet.V4,
		q.Proto == unix.IPPROTO_ICMPV6 && q.Family == inet.V6:
	default:
		q.Proto, q.SPort, q.DPort = 0, 0, 0
	}
	return q
}

// RouteGetArgs writes the question RouteGet asks about a flow as the arguments of
// `ip route get`, for evidence and failure messages.
func RouteGetArgs(fl fib.Flow) string {
	q := routeQuestionOf(fl)
	var b strings.Builder
	b.WriteString(fl.Dst.String())
	if q.Src.IsValid() {
		b.WriteString(" from " + q.Src.String())
	}
	if fl.IIF != "" {
		b.WriteString(" iif " + fl.IIF)
	}
	if fl.OIF != "" {
		b.WriteString(" oif " + fl.OIF)
	}
	if fl.Mark != 0 {
		fmt.Fprintf(&b, " mark %#x", fl.Mark)
	}
	if q.Proto != 0 {
		b.WriteString(" ipproto " + inet.ProtoName(q.Proto))
	}
	if q.SPort != 0 {
		fmt.Fprintf(&b, " sport %d", q.SPort)
	}
	if q.DPort != 0 {
		fmt.Fprintf(&b, " dport %d", q.DPort)
	}
	if fl.TOS != 0 {
		fmt.Fprintf(&b, " tos %#x", fl.TOS)
	}
	fmt.Fprintf(&b, " uid %d", q.UID)
	return b.String()
}

// ifindex returns the index of the namespace's interface name, remembering it.
func (p *RouteProber) ifindex(name string) (int, error) {
	if i, ok := p.index[name]; ok {
		return i, nil
	}
	l, err := p.h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("interface %s in %s: %w (see `ip link`)", name, p.ns, err)
	}
	i := l.Attrs().Index
	p.index[name], p.names[i] = i, name
	return i, nil
}

// ifname returns the name of the namespace's interface index, remembering it.
func (p *RouteProber) ifname(i int) (string, error) {
	if n, ok := p.names[i]; ok {
		return n, nil
	}
	l, err := p.h.LinkByIndex(i)
	if err != nil {
		return "", fmt.Errorf("naming interface %d: %w", i, err)
	}
	n := l.Attrs().Name
	p.index[n], p.names[i] = i, n
	return n, nil
}
