package netfilter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
)

// match evaluates one -m match with all its options.
func (n *Sim) match(m iptables.Match, p *Packet, ct *Conn) (bool, string) {
	switch m.Name {
	case "comment":
		return true, ""
	case "tcp", "udp", "sctp", "dccp", "udplite":
		return n.matchPorts(m, p, ct)
	case "multiport":
		return n.matchMultiport(m, p, ct)
	case "icmp", "icmp6":
		return n.matchICMP(m, p, ct)
	case "conntrack", "state":
		return n.matchConntrack(m, p, ct)
	case "mark", "connmark":
		return n.matchMark(m, p, ct)
	case "addrtype":
		return n.matchAddrType(m, p, ct)
	case "iprange":
		return n.matchIPRange(m, p, ct)
	case "rpfilter":
		return n.rpfilter(m, p)
	case "set":
		return n.matchSet(m, p)
	case "physdev":
		return matchPhysdev(m, p)
	case "pkttype":
		return n.matchPktType(m, p, ct)
	}
	return false, fmt.Sprintf("match -m %s is not modelled", m.Name)
}

// matchPorts is -m tcp, udp, sctp, dccp and udplite: the protocol, its ports and TCP's flags.
func (n *Sim) matchPorts(m iptables.Match, p *Packet, ct *Conn) (bool, string) {
	unknown := func(o iptables.Option) (bool, string) {
		return false, fmt.Sprintf("-m %s --%s is not modelled", m.Name, o.Name)
	}
	want := map[string]int{"tcp": 6, "udp": 17, "sctp": 132, "dccp": 33, "udplite": 136}[m.Name]
	if p.Proto != want {
		return false, ""
	}
	for _, o := range m.Options {
		var ok bool
		var why string
		switch o.Name {
		case "sport", "source-port":
			ok, why = matchPortList(o.Values, p.SPort, false)
		case "dport", "destination-port":
			ok, why = matchPortList(o.Values, p.DPort, false)
		case "tcp-flags":
			if m.Name != "tcp" || len(o.Values) != 2 {
				return unknown(o)
			}
			mask, err1 := tcpFlags(o.Values[0])
			comp, err2 := tcpFlags(o.Values[1])
			if err1 != nil || err2 != nil {
				return unknown(o)
			}
			ok = p.TCPFlags&mask == comp
		case "syn":
			if m.Name != "tcp" {
				return unknown(o)
			}
			ok = p.TCPFlags&(TCPSYN|tcpRST|TCPACK|tcpFIN) == TCPSYN
		default:
			return unknown(o)
		}
		if why != "" {
			return false, fmt.Sprintf("-m %s --%s %s: %s", m.Name, o.Name, strings.Join(o.Values, " "), why)
		}
		if ok == o.Not {
			return false, ""
		}
	}
	return true, ""
}

// matchMultiport is -m multiport: a port list of either side or both.
func (n *Sim) matchMultiport(m iptables.Match, p *Packet, ct *Conn) (bool, string) {
	unknown := func(o iptables.Option) (bool, string) {
		return false, fmt.Sprintf("-m %s --%s is not modelled", m.Name, o.Name)
	}
	switch p.Proto {
	case 6, 17, 132, 33, 136:
	default:
		return false, ""
	}
	for _, o := range m.Options {
		var ok bool
		var why string
		switch o.Name {
		case "dports", "destination-ports":
			ok, why = matchPortList(o.Values, p.DPort, true)
		case "sports", "source-ports":
			ok, why = matchPortList(o.Values, p.SPort, true)
		case "ports":
			ok, why = matchPortList(o.Values, p.DPort, true)
			if !ok && why == "" {
				ok, why = matchPortList(o.Values, p.SPort, true)
			}
		default:
			return unknown(o)
		}
		if why != "" {
			return false, fmt.Sprintf("-m multiport --%s %s: %s", o.Name, strings.Join(o.Values, " "), why)
		}
		if ok == o.Not {
			return false, ""
		}
	}
	return true, ""
}

// matchICMP is -m icmp and icmp6: the protocol and the ICMP type.
func (n *Sim) matchICMP(m iptables.Match, p *Packet, ct *Conn) (bool, string) {
	unknown := func(o iptables.Option) (bool, string) {
		return false, fmt.Sprintf("-m %s --%s is not modelled", m.Name, o.Name)
	}
	want := 1
	if m.Name == "icmp6" {
		want = 58
	}
	if p.Proto != want {
		return false, ""
	}
	for _, o := range m.Options {
		if o.Name != "icmp-type" && o.Name != "icmpv6-type" || len(o.Values) == 0 {
			return unknown(o)
		}
		if matchICMPType(o.Values[0], p.ICMPType) == o.Not {
			return false, ""
		}
	}
	return true, ""
}

// matchConntrack is -m conntrack and state: the connection's state, direction, protocol and original or reply addresses and ports.
func (n *Sim) matchConntrack(m iptables.Match, p *Packet, ct *Conn) (bool, string) {
	unknown := func(o iptables.Option) (bool, string) {
		return false, fmt.Sprintf("-m %s --%s is not modelled", m.Name, o.Name)
	}
	for _, o := range m.Options {
		var ok bool
		var why string
		switch o.Name {
		case "ctstate", "state":
			ok = matchCTState(o.Values, ct)
		case "ctdir":
			want := "ORIGINAL"
			if ct.Reply {
				want = "REPLY"
			}
			ok = len(o.Values) == 1 && strings.EqualFold(o.Values[0], want)
			if ct.State == CTUntracked {
				ok = false
			}
		case "ctproto":
			if len(o.Values) != 1 {
				return unknown(o)
			}
			ok, why = matchProto(o.Values[0], p.Proto)
		case "ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst":
			if len(o.Values) != 1 {
				return unknown(o)
			}
			var a netip.Addr
			switch o.Name {
			case "ctorigsrc":
				a = ct.Orig.Src.Addr()
			case "ctorigdst":
				a = ct.Orig.Dst.Addr()
			case "ctreplsrc":
				a = ct.NATed.Dst.Addr() // the reply comes from where the request went
			case "ctrepldst":
				a = ct.NATed.Src.Addr()
			}
			ok, why = matchAddrText(o.Values[0], a)
		case "ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport":
			var port uint16
			switch o.Name {
			case "ctorigsrcport":
				port = ct.Orig.Src.Port()
			case "ctorigdstport":
				port = ct.Orig.Dst.Port()
			case "ctreplsrcport":
				port = ct.NATed.Dst.Port()
			case "ctrepldstport":
				port = ct.NATed.Src.Port()
			}
			ok, why = matchPortList(o.Values, port, false)
		default:
			return unknown(o)
		}
		if why != "" {
			return false, fmt.Sprintf("-m %s --%s: %s", m.Name, o.Name, why)
		}
		if ok == o.Not {
			return false, ""
		}
	}
	return true, ""
}

// matchMark is -m mark and connmark: the packet's or the connection's mark under a mask.
func (n *Sim) matchMark(m iptables.Match, p *Packet, ct *Conn) (bool, string) {
	unknown := func(o iptables.Option) (bool, string) {
		return false, fmt.Sprintf("-m %s --%s is not modelled", m.Name, o.Name)
	}
	v := p.Mark
	if m.Name == "connmark" {
		if ct.State == CTUntracked {
			return false, ""
		}
		v = ct.Mark
	}
	for _, o := range m.Options {
		if o.Name != "mark" || len(o.Values) != 1 {
			return unknown(o)
		}
		val, mask, err := iptables.ParseMark(o.Values[0])
		if err != nil {
			return false, fmt.Sprintf("-m %s --mark %s: %v", m.Name, o.Values[0], err)
		}
		if (v&mask == val) == o.Not {
			return false, ""
		}
	}
	return true, ""
}

// matchAddrType is -m addrtype: the kernel's type of the source or destination address, on any interface or the packet's.
func (n *Sim) matchAddrType(m iptables.Match, p *Packet, ct *Conn) (bool, string) {
	unknown := func(o iptables.Option) (bool, string) {
		return false, fmt.Sprintf("-m %s --%s is not modelled", m.Name, o.Name)
	}
	var limitIn, limitOut bool
	for _, o := range m.Options {
		switch o.Name {
		case "limit-iface-in":
			limitIn = true
		case "limit-iface-out":
			limitOut = true
		}
	}
	for _, o := range m.Options {
		var a netip.Addr
		switch o.Name {
		case "src-type":
			a = p.Src
		case "dst-type":
			a = p.Dst
		case "limit-iface-in", "limit-iface-out":
			continue
		default:
			return unknown(o)
		}
		dev := ""
		if limitIn {
			dev = p.IIF
		} else if limitOut {
			dev = p.OIF
		}
		typ := n.AddrType(a, dev)
		ok := false
		for _, v := range o.Values {
			for _, want := range strings.Split(v, ",") {
				if strings.EqualFold(want, typ) {
					ok = true
				}
			}
		}
		if ok == o.Not {
			return false, ""
		}
	}
	return true, ""
}

// matchIPRange is -m iprange: the source or destination address within a range.
func (n *Sim) matchIPRange(m iptables.Match, p *Packet, ct *Conn) (bool, string) {
	unknown := func(o iptables.Option) (bool, string) {
		return false, fmt.Sprintf("-m %s --%s is not modelled", m.Name, o.Name)
	}
	for _, o := range m.Options {
		var a netip.Addr
		switch o.Name {
		case "src-range":
			a = p.Src
		case "dst-range":
			a = p.Dst
		default:
			return unknown(o)
		}
		if len(o.Values) != 1 {
			return unknown(o)
		}
		lo, hi, ok := strings.Cut(o.Values[0], "-")
		loA, err1 := netip.ParseAddr(lo)
		hiA, err2 := netip.ParseAddr(hi)
		if !ok || err1 != nil || err2 != nil {
			return false, fmt.Sprintf("-m iprange --%s %s: not an address range", o.Name, o.Values[0])
		}
		in := a.Compare(loA) >= 0 && a.Compare(hiA) <= 0
		if in == o.Not {
			return false, ""
		}
	}
	return true, ""
}

// matchPktType is -m pkttype: unicast, broadcast or multicast by the destination address.
func (n *Sim) matchPktType(m iptables.Match, p *Packet, ct *Conn) (bool, string) {
	unknown := func(o iptables.Option) (bool, string) {
		return false, fmt.Sprintf("-m %s --%s is not modelled", m.Name, o.Name)
	}
	for _, o := range m.Options {
		if o.Name != "pkt-type" || len(o.Values) != 1 {
			return unknown(o)
		}
		typ := "unicast"
		switch n.AddrType(p.Dst, "") {
		case "BROADCAST":
			typ = "broadcast"
		case "MULTICAST":
			typ = "multicast"
		}
		if strings.EqualFold(o.Values[0], typ) == o.Not {
			return false, ""
		}
	}
	return true, ""
}

// rpfilter is the rpfilter match (net/ipv4/netfilter/ipt_rpfilter.c): a reverse lookup of the
// source from loopback (from the destination, with the mark only under
// --validmark) must give a unicast route out the interface the packet came in on (any
// interface with --loose; a local route too with --accept-local). It is the same check as the
// rp_filter sysctl, made by a rule.
func (n *Sim) rpfilter(m iptables.Match, p *Packet) (bool, string) {
	var loose, validMark, acceptLocal, invert bool
	for _, o := range m.Options {
		switch o.Name {
		case "loose":
			loose = true
		case "validmark":
			validMark = true
		case "accept-local":
			acceptLocal = true
		case "invert":
			invert = true
		default:
			return false, fmt.Sprintf("-m rpfilter --%s is not modelled", o.Name)
		}
	}
	if p.IIF == "" {
		return false, "-m rpfilter on a locally generated packet (it belongs in PREROUTING)"
	}
	if p.Dst.IsMulticast() {
		return !invert, "" // local multicast passes (rpfilter_mt)
	}
	// A plain FIB lookup from loopback (flowi4_iif = LOOPBACK_IFINDEX), as fib_lookup makes it:
	// an input lookup from lo, which unlike an output lookup does not require the source to
	// be this host's.
	fl := fib.Flow{Family: p.Family, Dst: p.Src, Src: p.Dst, IIF: "lo", Proto: p.Proto, SPort: p.DPort, DPort: p.SPort}
	if t := n.AddrType(p.Dst, ""); t != "LOCAL" && t != "UNICAST" {
		fl.Src = netip.Addr{}
	}
	if validMark {
		fl.Mark = p.Mark
	}
	r := n.fib.Lookup(fl)
	pass := false
	switch r.Verdict {
	case model.RouteUnicast:
		pass = loose || r.OIF == p.IIF
		if !pass && r.Route != nil {
			for _, nh := range r.Route.Nexthops {
				pass = pass || nh.Dev == p.IIF
			}
		}
	case model.RouteLocal:
		pass = acceptLocal
	case fib.VerdictInvalid:
		return false, "-m rpfilter: the reverse lookup is refused: " + r.Note
	}
	return pass != invert, ""
}

// matchPhysdev is the physdev match (net/netfilter/xt_physdev.c) over what br_netfilter
// recorded: without that record (not from a bridge port, or br_netfilter off) only inverted
// options match; --physdev-in compares the port when known; --physdev-out cannot be known for
// a bridged packet (the forwarding table decides) and matches when there is no out port.
func matchPhysdev(m iptables.Match, p *Packet) (bool, string) {
	if p.Phys == nil {
		for _, o := range m.Options {
			if !o.Not {
				return false, ""
			}
		}
		return true, ""
	}
	for _, o := range m.Options {
		var ok bool
		switch o.Name {
		case "physdev-is-in":
			ok = true
		case "physdev-is-bridged", "physdev-is-out":
			ok = p.Phys.Bridged
		case "physdev-in":
			if len(o.Values) != 1 {
				return false, "-m physdev --physdev-in needs one name"
			}
			if p.Phys.In == "" {
				return false, "-m physdev --physdev-in depends on the bridge port the packet came in on: give it as --iif"
			}
			ok = matchIface(o.Values[0], p.Phys.In)
		case "physdev-out":
			if !p.Phys.Bridged {
				continue // no out port: the option matches (inverted or not)
			}
			return false, "-m physdev --physdev-out depends on the bridge port the bridge's forwarding table sends the packet to"
		default:
			return false, fmt.Sprintf("-m physdev --%s is not modelled", o.Name)
		}
		if ok == o.Not {
			return false, ""
		}
	}
	return true, ""
}

// matchSet is the set match (xt_set, revision 4): the packet's addresses and ports named by
// the flags (src, dst, in the set type's order) must be a member of the set; of hash:net
// members the most specific containing the address decides, and a nomatch member makes the
// test fail (or, with --return-nomatch, succeed), as ip_set_test does. hash:ip, hash:net,
// hash:ip,port and hash:net,port are matched; other types leave the rule uncertain.
func (n *Sim) matchSet(m iptables.Match, p *Packet) (bool, string) {
	var name string
	var flags []string
	var not, returnNoMatch bool
	for _, o := range m.Options {
		switch o.Name {
		case "match-set", "set":
			if len(o.Values) != 2 {
				return false, "-m set --match-set needs a set name and flags"
			}
			name, flags, not = o.Values[0], strings.Split(o.Values[1], ","), o.Not
		case "return-nomatch":
			returnNoMatch = true
		case "update-counters", "update-subcounters":
		default:
			return false, fmt.Sprintf("-m set --%s (counters) is not modelled", o.Name)
		}
	}
	set := n.s.IPSetByName(name)
	if set == nil {
		return false, fmt.Sprintf("-m set: set %s is not in the state (ipsets not read, or created since)", name)
	}
	if set.Family != p.Family {
		return not, ""
	}
	dims := strings.Split(strings.TrimPrefix(strings.TrimPrefix(set.Type, "hash:"), "bitmap:"), ",")
	if !strings.HasPrefix(set.Type, "hash:") || len(dims) > 2 || dims[0] != "ip" && dims[0] != "net" || len(dims) == 2 && dims[1] != "port" {
		return false, fmt.Sprintf("-m set: set %s of type %s is not modelled (hash:ip, hash:net, hash:ip,port and hash:net,port are)", name, set.Type)
	}
	if len(flags) < len(dims) {
		return false, fmt.Sprintf("-m set --match-set %s: %d flags for a set of %d dimensions", name, len(flags), len(dims))
	}
	addr := p.Dst
	if flags[0] == "src" {
		addr = p.Src
	}
	if dims[0] == "ip" && set.Netmask > 0 && set.Netmask < addr.BitLen() {
		addr = netip.PrefixFrom(addr, set.Netmask).Masked().Addr()
	}
	var port uint16
	if len(dims) == 2 {
		switch p.Proto {
		case 6, 17, 132, 136:
		default:
			return not, "" // no ports: no member of a port type matches
		}
		port = p.DPort
		if flags[1] == "src" {
			port = p.SPort
		}
		if port == 0 {
			return false, fmt.Sprintf("-m set --match-set %s: the port is not known: give it in the trace (ADDR:PORT)", name)
		}
	}
	best := -1
	found, noMatch := false, false
	for _, mem := range set.Members {
		if !mem.Net.Contains(addr) || mem.Net.Bits() <= best {
			continue
		}
		if len(dims) == 2 && (mem.Port != port || mem.Proto != p.Proto) {
			continue
		}
		best, found, noMatch = mem.Net.Bits(), true, mem.NoMatch
	}
	in := found && (!noMatch || returnNoMatch)
	return in != not, ""
}

// matchAddrText matches an iptables address: "10.0.0.0/8", "10.0.0.1", "10.0.0.0/255.0.0.0".
// iptables-save prints non-contiguous masks in dotted form; those are honoured bit by bit.
func matchAddrText(text string, a netip.Addr) (bool, string) {
	if !a.IsValid() {
		return false, ""
	}
	addrS, maskS, hasMask := strings.Cut(text, "/")
	base, err := netip.ParseAddr(addrS)
	if err != nil {
		return false, fmt.Sprintf("address %q is not numeric (host names are not resolved)", text)
	}
	if base.Is4() != a.Is4() {
		return false, ""
	}
	if !hasMask {
		return base == a, ""
	}
	if bits, err := strconv.Atoi(maskS); err == nil {
		pfx, err := base.Prefix(bits)
		if err != nil {
			return false, fmt.Sprintf("address %q has an invalid prefix length", text)
		}
		return pfx.Contains(a), ""
	}
	mask, err := netip.ParseAddr(maskS)
	if err != nil || mask.Is4() != base.Is4() {
		return false, fmt.Sprintf("address %q has an invalid mask", text)
	}
	bb, mb, ab := base.AsSlice(), mask.AsSlice(), a.AsSlice()
	for i := range bb {
		if bb[i]&mb[i] != ab[i]&mb[i] {
			return false, ""
		}
	}
	return true, ""
}

// matchIface matches an interface name; a trailing '+' matches every name with that prefix.
func matchIface(pattern, name string) bool {
	if p, ok := strings.CutSuffix(pattern, "+"); ok {
		return strings.HasPrefix(name, p)
	}
	return pattern == name
}

// nfProtoNames are protocol names iptables-save may print (from /etc/protocols) beyond the ones
// ProtoNumber knows.
var nfProtoNames = map[string]int{"esp": 50, "ah": 51, "igmp": 2, "ospf": 89, "vrrp": 112, "pim": 103, "dccp": 33, "udplite": 136, "ipv6": 41, "ipv6-icmp": 58, "icmpv6": 58}

func matchProto(v string, proto int) (bool, string) {
	v = strings.ToLower(v)
	if v == "all" || v == "0" {
		return true, ""
	}
	if n, ok := nfProtoNames[v]; ok {
		return n == proto, ""
	}
	n, err := inet.ProtoNumber(v)
	if err != nil {
		return false, fmt.Sprintf("protocol %q is not known", v)
	}
	return n == proto, ""
}

// matchPortList matches a port against "80", "1000:2000", ":1024", "1024:" and, for multiport,
// comma-separated lists of those. Port 0 stands for a port the request did not give.
func matchPortList(values []string, port uint16, multi bool) (bool, string) {
	if len(values) != 1 {
		return false, "want one value"
	}
	items := []string{values[0]}
	if multi {
		items = strings.Split(values[0], ",")
	}
	if port == 0 {
		return false, "the port is not known: give it in the trace (ADDR:PORT)"
	}
	for _, it := range items {
		lo, hi, isRange := strings.Cut(it, ":")
		if !isRange {
			lo, hi = it, it
		}
		l, h := 0, 65535
		var err error
		if lo != "" {
			if l, err = strconv.Atoi(lo); err != nil {
				return false, fmt.Sprintf("port %q is not a number", it)
			}
		}
		if hi != "" {
			if h, err = strconv.Atoi(hi); err != nil {
				return false, fmt.Sprintf("port %q is not a number", it)
			}
		}
		if int(port) >= l && int(port) <= h {
			return true, ""
		}
	}
	return false, ""
}

func tcpFlags(s string) (uint8, error) {
	var f uint8
	for _, name := range strings.Split(s, ",") {
		switch strings.ToUpper(name) {
		case "FIN":
			f |= tcpFIN
		case "SYN":
			f |= TCPSYN
		case "RST":
			f |= tcpRST
		case "PSH":
			f |= tcpPSH
		case "ACK":
			f |= TCPACK
		case "URG":
			f |= tcpURG
		case "ALL":
			f |= 0x3f
		case "NONE":
		default:
			return 0, fmt.Errorf("unknown tcp flag %q", name)
		}
	}
	return f, nil
}

// matchICMPType compares an --icmp-type value with the packet's type. Traced ICMP flows are
// echo request and reply; any other named type does not match them.
func matchICMPType(v string, typ int) bool {
	switch strings.ToLower(v) {
	case "any":
		return true
	case "echo-request", "ping":
		return typ == 8 || typ == 128
	case "echo-reply", "pong":
		return typ == 0 || typ == 129
	}
	t, _, _ := strings.Cut(v, "/")
	n, err := strconv.Atoi(t)
	return err == nil && n == typ
}

func matchCTState(values []string, ct *Conn) bool {
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			switch strings.ToUpper(s) {
			case ct.State:
				return true
			case "DNAT":
				if ct.DNAT && ct.State != CTUntracked {
					return true
				}
			case "SNAT":
				if ct.SNAT && ct.State != CTUntracked {
					return true
				}
			}
		}
	}
	return false
}

// addrType classifies an address as the addrtype match does (inet_dev_addr_type): from the
// local routing table, optionally only the routes of one device.
func (n *Sim) AddrType(a netip.Addr, dev string) string {
	if !a.IsValid() || a.IsUnspecified() {
		return "UNSPEC"
	}
	if a.IsMulticast() {
		return "MULTICAST"
	}
	if a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return "BROADCAST"
	}
	if !n.localRead {
		for _, r := range n.s.Routes {
			if r.Table == model.TableLocal {
				n.local = append(n.local, r)
			}
		}
		n.localRead = true
	}
	best := -1
	typ := "UNICAST"
	for _, r := range n.local {
		if r.Family != inet.FamilyOf(a) || !r.Dst.Contains(a) || r.Dst.Bits() <= best {
			continue
		}
		if dev != "" && r.Dev != dev {
			continue
		}
		best = r.Dst.Bits()
		typ = strings.ToUpper(r.Type)
		if typ == "" {
			typ = "UNICAST"
		}
	}
	return typ
}
