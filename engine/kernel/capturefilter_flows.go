package kernel

import (
	"net/netip"

	"golang.org/x/sys/unix"

	"roundtrip/engine/inet"
)

// FilterFlow is one flow a capture filter selects, for watchers that match flows exactly (the
// drop watcher's BPF map): an invalid address is any address, port 0 any port, Proto 0 any
// protocol. It is meant to be matched in both directions.
type FilterFlow struct {
	Proto    uint8
	Src, Dst netip.AddrPort
}

// maxFilterFlows bounds the flows a filter is turned into: each either-side term doubles them.
const maxFilterFlows = 64

// Flows turns the filter into flows matched in both directions, a superset of what it
// selects: sides given as "src"/"dst" are kept, a term of either side is tried on each, and
// "ip"/"ip6" are left open. ok is false when a term cannot be a flow's field (a net wider
// than one address): then the caller filters with Match. A nil filter is no flow, ok.
func (f *CaptureFilter) Flows() (flows []FilterFlow, ok bool) {
	if f == nil {
		return nil, true
	}
	seen := map[FilterFlow]bool{}
	add := func(fl FilterFlow) {
		r := FilterFlow{Proto: fl.Proto, Src: fl.Dst, Dst: fl.Src}
		if !seen[fl] && !seen[r] {
			seen[fl] = true
			flows = append(flows, fl)
		}
	}
	for _, g := range f.groups {
		partial := []FilterFlow{{}}
		for _, t := range g {
			var next []FilterFlow
			for _, fl := range partial {
				switch t.kind {
				case termAddr:
					if !t.prefix.IsSingleIP() {
						return nil, false
					}
					for _, side := range sidesOf(t.side) {
						if n, ok := fl.setAddr(side, t.prefix.Addr()); ok {
							next = append(next, n)
						}
					}
				case termPort:
					for _, side := range sidesOf(t.side) {
						if n, ok := fl.setPort(side, t.port); ok {
							next = append(next, n)
						}
					}
				case termProto:
					protos := []uint8{t.proto}
					if t.proto == protoICMPAny {
						protos = []uint8{unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6}
					}
					for _, p := range protos {
						if fl.Proto == 0 || fl.Proto == p {
							n := fl
							n.Proto = p
							next = append(next, n)
						}
					}
				case termFamily:
					next = append(next, fl)
				}
			}
			if len(next) > maxFilterFlows {
				return nil, false
			}
			partial = next
		}
		for _, fl := range partial {
			add(fl)
		}
	}
	if len(flows) > maxFilterFlows {
		return nil, false
	}
	return flows, true
}

func sidesOf(side int) []int {
	if side == eitherSide {
		return []int{srcSide, dstSide}
	}
	return []int{side}
}

func (fl FilterFlow) setAddr(side int, a netip.Addr) (FilterFlow, bool) {
	ep := &fl.Src
	if side == dstSide {
		ep = &fl.Dst
	}
	if ep.Addr().IsValid() && ep.Addr() != a {
		return fl, false
	}
	other := fl.Dst.Addr()
	if side == dstSide {
		other = fl.Src.Addr()
	}
	if other.IsValid() && other.Is4() != a.Is4() {
		return fl, false
	}
	*ep = netip.AddrPortFrom(a, ep.Port())
	return fl, true
}

func (fl FilterFlow) setPort(side int, p uint16) (FilterFlow, bool) {
	ep := &fl.Src
	if side == dstSide {
		ep = &fl.Dst
	}
	if ep.Port() != 0 && ep.Port() != p {
		return fl, false
	}
	*ep = netip.AddrPortFrom(ep.Addr(), p)
	return fl, true
}

// Match reports whether the filter selects an IP packet with this protocol and these
// endpoints (ports 0 for protocols without ports), as the kernel program does; a nil filter
// selects everything.
func (f *CaptureFilter) Match(proto uint8, src, dst netip.AddrPort) bool {
	if f == nil || len(f.groups) == 0 {
		return true
	}
	for _, g := range f.groups {
		if matchGroup(g, proto, src, dst) {
			return true
		}
	}
	return false
}

func matchGroup(g []filterTerm, proto uint8, src, dst netip.AddrPort) bool {
	v4 := src.Addr().Unmap().Is4()
	hasPorts := proto == unix.IPPROTO_TCP || proto == unix.IPPROTO_UDP || proto == unix.IPPROTO_SCTP
	for _, t := range g {
		ok := false
		switch t.kind {
		case termAddr:
			for _, side := range sidesOf(t.side) {
				ep := src
				if side == dstSide {
					ep = dst
				}
				ok = ok || t.prefix.Contains(ep.Addr().Unmap())
			}
		case termPort:
			for _, side := range sidesOf(t.side) {
				ep := src
				if side == dstSide {
					ep = dst
				}
				ok = ok || hasPorts && ep.Port() == t.port
			}
		case termProto:
			if t.proto == protoICMPAny {
				ok = v4 && proto == unix.IPPROTO_ICMP || !v4 && proto == unix.IPPROTO_ICMPV6
			} else {
				ok = proto == t.proto
			}
		case termFamily:
			ok = (t.family == inet.V4) == v4
		}
		if !ok {
			return false
		}
	}
	return true
}
