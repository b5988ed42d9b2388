package netfilter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
)

// NATRange is a --to-destination / --to-source / --to-ports value: addresses MinAddr-MaxAddr
// (invalid when the value names none) and ports MinPort-MaxPort (0 when it names none).
type NATRange struct {
	MinAddr, MaxAddr netip.Addr
	MinPort, MaxPort uint16
}

// ParseNATSpec parses "addr", "addr:port", "addr-addr:port-port", ":port", or for IPv6
// "[addr]:port".
func ParseNATSpec(f inet.Family, s string) (NATRange, error) {
	var addrS, portS string
	if f == inet.V6 && strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return NATRange{}, fmt.Errorf("%q: missing ]", s)
		}
		addrS = s[1:end]
		portS = strings.TrimPrefix(s[end+1:], ":")
		if rest, ok := strings.CutPrefix(portS, "-["); ok {
			// [a]-[b]:port
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return NATRange{}, fmt.Errorf("%q: missing ]", s)
			}
			addrS += "-" + rest[:end]
			portS = strings.TrimPrefix(rest[end+1:], ":")
		}
	} else if f == inet.V6 {
		addrS = s
	} else {
		addrS, portS, _ = strings.Cut(s, ":")
	}
	var r NATRange
	if addrS != "" {
		lo, hi, isRange := strings.Cut(addrS, "-")
		var err error
		if r.MinAddr, err = netip.ParseAddr(strings.Trim(lo, "[]")); err != nil {
			return NATRange{}, fmt.Errorf("%q: %q is not an address", s, lo)
		}
		r.MaxAddr = r.MinAddr
		if isRange {
			if r.MaxAddr, err = netip.ParseAddr(strings.Trim(hi, "[]")); err != nil {
				return NATRange{}, fmt.Errorf("%q: %q is not an address", s, hi)
			}
		}
	}
	var err error
	if r.MinPort, r.MaxPort, err = ParsePortRange(portS); err != nil {
		return NATRange{}, fmt.Errorf("%q: %w", s, err)
	}
	return r, nil
}

// ParseNATRange parses a --to-destination / --to-source value (ParseNATSpec) into its first
// address and first port.
func ParseNATRange(f inet.Family, s string) (netip.Addr, uint16, error) {
	r, err := ParseNATSpec(f, s)
	return r.MinAddr, r.MinPort, err
}

// ParsePortRange parses "", "80", "1024-65535" (or "1024:65535"); 0, 0 for "".
func ParsePortRange(s string) (lo, hi uint16, err error) {
	if s == "" {
		return 0, 0, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		a, b, isRange = strings.Cut(s, ":")
	}
	if lo, err = parsePort(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = parsePort(b); err != nil {
			return 0, 0, err
		}
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("port range %q runs backwards", s)
	}
	return lo, hi, nil
}

func parsePort(s string) (uint16, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a number 0-65535", s)
	}
	return uint16(p), nil
}

func FirstPort(s string) (uint16, error) {
	lo, _, err := ParsePortRange(s)
	return lo, err
}

// natPort is the port NAT leaves a packet with, as get_unique_tuple and
// nf_nat_l4proto_unique_tuple choose it (net/netfilter/nf_nat_core.c): the original port is
// kept when it is in the range (and no other connection holds the same tuple, which the model
// cannot see, so it assumes none does) unless --random or --random-fully is given. Otherwise a
// source port is picked at random from the range; a destination port is the range's first
// (off = 0 for DNAT), or random with --random. Without a range only --random moves a source
// port, into 1-511, 600-1023 or 1024-65535 by where it was. known is false when the port is
// random: then the caller shows the range, never a made-up number.
func natPort(orig, lo, hi uint16, src, random bool) (port uint16, known bool, rng string) {
	if lo == 0 && hi == 0 {
		if !random || !src {
			return orig, true, ""
		}
		switch {
		case orig == 0:
			return 0, false, "1-65535"
		case orig < 512:
			return 0, false, "1-511"
		case orig < 1024:
			return 0, false, "600-1023"
		}
		return 0, false, "1024-65535"
	}
	rng = fmt.Sprint(lo)
	if hi != lo {
		rng = fmt.Sprintf("%d-%d", lo, hi)
	}
	if lo == hi && !random {
		return lo, true, rng
	}
	if orig != 0 && orig >= lo && orig <= hi && !random {
		return orig, true, rng
	}
	if !src && !random {
		return lo, true, rng
	}
	return 0, false, rng
}

// setNATPort applies natPort to the packet's source or destination port and says how it was
// chosen when that is worth saying.
func setNATPort(p *Packet, r *iptables.Rule, lo, hi uint16, src bool) string {
	_, rnd := r.TargetOption("random")
	_, rndFully := r.TargetOption("random-fully")
	orig := p.DPort
	if src {
		orig = p.SPort
	}
	port, known, rng := natPort(orig, lo, hi, src, rnd || rndFully)
	pp, pr := &p.DPort, &p.DPortRange
	if src {
		pp, pr = &p.SPort, &p.SPortRange
	}
	*pp, *pr = port, ""
	switch {
	case !known:
		*pr = rng
		why := "not the original port, which is outside it"
		if rnd || rndFully {
			why = "random"
		} else if orig == 0 {
			why = "the original port is not known"
		}
		return fmt.Sprintf(" (port: a port in %s, %s)", rng, why)
	case rng == "":
		return ""
	case port == orig:
		return fmt.Sprintf(" (port %d kept: it is in %s and the kernel keeps a port in range while no other connection holds the same tuple)", port, rng)
	case lo != hi:
		return fmt.Sprintf(" (port %d: the original %d is outside %s, and the kernel tries the range's first port first)", port, orig, rng)
	}
	return ""
}

// applyNAT applies a NAT target to the packet and says what it did. An empty description with
// no error means the target drops the packet (MASQUERADE or REDIRECT without an address).
func (n *Sim) applyNAT(r *iptables.Rule, hook string, p *Packet) (string, string) {
	s := n.s
	hasPorts := p.Proto == 6 || p.Proto == 17 || p.Proto == 132 || p.Proto == 33 || p.Proto == 136
	optVal := func(names ...string) (string, bool) {
		for _, n := range names {
			if o, ok := r.TargetOption(n); ok && len(o.Values) > 0 {
				return o.Values[0], true
			}
		}
		return "", false
	}
	switch r.Target {
	case "DNAT", "SNAT":
		name := "to-destination"
		if r.Target == "SNAT" {
			name = "to-source"
		}
		v, ok := optVal(name, "to")
		if !ok {
			return "", fmt.Sprintf("%s without --%s", r.Target, name)
		}
		rng, err := ParseNATSpec(p.Family, v)
		if err != nil {
			return "", fmt.Sprintf("%s --%s %v", r.Target, name, err)
		}
		a := rng.MinAddr
		addrNote := ""
		if rng.MaxAddr != rng.MinAddr {
			addrNote = fmt.Sprintf(" (address: one of %s-%s, the kernel picks by a hash of the addresses; the first is shown)", rng.MinAddr, rng.MaxAddr)
		}
		if r.Target == "DNAT" {
			old := netip.AddrPortFrom(p.Dst, p.DPort)
			if a.IsValid() {
				p.Dst = a
			}
			note := ""
			if hasPorts {
				note = setNATPort(p, r, rng.MinPort, rng.MaxPort, false)
			}
			return fmt.Sprintf("DNAT %s -> %s%s%s", inet.Endpoint(old), portEndpoint(p.Dst, p.DPort, p.DPortRange), addrNote, note), ""
		}
		old := netip.AddrPortFrom(p.Src, p.SPort)
		if a.IsValid() {
			p.Src = a
		}
		note := ""
		if hasPorts {
			note = setNATPort(p, r, rng.MinPort, rng.MaxPort, true)
		}
		return fmt.Sprintf("SNAT %s -> %s%s%s", inet.Endpoint(old), portEndpoint(p.Src, p.SPort, p.SPortRange), addrNote, note), ""
	case "MASQUERADE":
		a := n.fib.MasqueradeAddr(p.OIF, p.NextHop, p.Dst)
		if !a.IsValid() {
			return "", ""
		}
		old := netip.AddrPortFrom(p.Src, p.SPort)
		p.Src = a
		note := ""
		if hasPorts {
			v, _ := optVal("to-ports")
			lo, hi, err := ParsePortRange(v)
			if err != nil {
				return "", "MASQUERADE --to-ports " + err.Error()
			}
			note = setNATPort(p, r, lo, hi, true)
		}
		return fmt.Sprintf("MASQUERADE %s -> %s (address of %s)%s", inet.Endpoint(old), portEndpoint(p.Src, p.SPort, p.SPortRange), p.OIF, note), ""
	case "REDIRECT":
		// nf_nat_redirect_ipv4: locally generated packets go to loopback, others to the first
		// address of the interface they came in on.
		var a netip.Addr
		if p.LocalOut {
			a = netip.IPv6Loopback()
			if p.Family == inet.V4 {
				a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			}
		} else if l := s.LinkByName(p.IIF); l != nil {
			for _, ad := range l.Addrs {
				if inet.FamilyOf(ad.Prefix.Addr()) == p.Family {
					a = ad.Prefix.Addr()
					break
				}
			}
		}
		if !a.IsValid() {
			return "", ""
		}
		old := netip.AddrPortFrom(p.Dst, p.DPort)
		p.Dst = a
		note := ""
		if v, ok := optVal("to-ports"); ok && hasPorts {
			lo, hi, err := ParsePortRange(v)
			if err != nil {
				return "", "REDIRECT --to-ports " + err.Error()
			}
			note = setNATPort(p, r, lo, hi, false)
		}
		return fmt.Sprintf("REDIRECT %s -> %s%s", inet.Endpoint(old), portEndpoint(p.Dst, p.DPort, p.DPortRange), note), ""
	case "NETMAP":
		v, ok := optVal("to")
		if !ok {
			return "", "NETMAP without --to"
		}
		to, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return "", fmt.Sprintf("NETMAP --to %s is not a prefix", v)
			}
			to = netip.PrefixFrom(a, a.BitLen())
		}
		mapAddr := func(a netip.Addr) netip.Addr {
			ab, tb := a.AsSlice(), to.Addr().AsSlice()
			if len(ab) != len(tb) {
				return a
			}
			for i := range ab {
				bits := min(max(to.Bits()-8*i, 0), 8)
				m := byte(0xff << (8 - bits))
				ab[i] = ab[i]&^m | tb[i]&m
			}
			out, _ := netip.AddrFromSlice(ab)
			return out
		}
		if hook == "PREROUTING" || hook == "OUTPUT" {
			old := p.Dst
			p.Dst = mapAddr(p.Dst)
			return fmt.Sprintf("NETMAP destination %s -> %s", old, p.Dst), ""
		}
		old := p.Src
		p.Src = mapAddr(p.Src)
		return fmt.Sprintf("NETMAP source %s -> %s", old, p.Src), ""
	}
	return "", fmt.Sprintf("target %s is not modelled", r.Target)
}

// portEndpoint writes an address with its port, or with the range its port is picked from
// when NAT left it unknown.
func portEndpoint(a netip.Addr, port uint16, rng string) string {
	if port == 0 && rng != "" {
		if a.Is6() {
			return fmt.Sprintf("[%s]:(%s)", a, rng)
		}
		return fmt.Sprintf("%s:(%s)", a, rng)
	}
	return inet.Endpoint(netip.AddrPortFrom(a, port))
}
