package nft

import (
	"encoding/binary"
	"net/netip"
)

// Helpers that write rules the way nft linearizes them (checked against `nft --debug=netlink`
// for the same rules), so that tests read like the nft rules they stand for.

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

func ip4(s string) []byte {
	a := netip.MustParseAddr(s).As4()
	return a[:]
}

func ip6(s string) []byte {
	a := netip.MustParseAddr(s).As16()
	return a[:]
}

func ifn(s string) []byte { return ifname(s) }

func metaLoad(key string, reg uint32) Expr { return Expr{Meta: &Meta{Key: key, Dreg: reg}} }
func metaSet(key string, reg uint32) Expr  { return Expr{Meta: &Meta{Key: key, Set: true, Sreg: reg}} }
func ctLoad(key string, reg uint32) Expr   { return Expr{Ct: &Ct{Key: key, Dreg: reg}} }
func ctSet(key string, reg uint32) Expr    { return Expr{Ct: &Ct{Key: key, Set: true, Sreg: reg}} }
func cmp(op string, reg uint32, data []byte) Expr {
	return Expr{Cmp: &Cmp{Op: op, Sreg: reg, Data: data}}
}
func eq(reg uint32, data []byte) Expr  { return cmp("eq", reg, data) }
func imm(reg uint32, data []byte) Expr { return Expr{Immediate: &Immediate{Dreg: reg, Data: data}} }
func verdict(kind string) Expr         { return Expr{Verdict: &Verdict{Kind: kind}} }
func jump(kind, chain string) Expr     { return Expr{Verdict: &Verdict{Kind: kind, Chain: chain}} }
func load(base string, off, n, reg uint32) Expr {
	return Expr{Payload: &Payload{Base: base, Offset: off, Len: n, Dreg: reg}}
}
func mask(sreg, dreg uint32, m []byte) Expr {
	return Expr{Bitwise: &Bitwise{Op: "bool", Sreg: sreg, Dreg: dreg, Len: uint32(len(m)), Mask: m, Xor: make([]byte, len(m))}}
}
func lookup(set string, reg uint32) Expr { return Expr{Lookup: &Lookup{Set: set, Sreg: reg}} }
func mapLookup(set string, sreg, dreg uint32) Expr {
	return Expr{Lookup: &Lookup{Set: set, Sreg: sreg, HasDreg: true, Dreg: dreg}}
}
func counter() Expr { return Expr{Counter: &Counter{}} }

// l4 is `meta l4proto P`, the dependency nft puts before a transport match.
func l4(p uint8) []Expr { return []Expr{metaLoad("l4proto", 1), eq(1, []byte{p})} }

// nfproto is `meta nfproto ipv4/ipv6`, the dependency inet tables get before ip/ip6 matches.
func nfproto(p uint8) []Expr { return []Expr{metaLoad("nfproto", 1), eq(1, []byte{p})} }

// dport is `tcp dport N` (with its dependency).
func dport(proto uint8, port uint16) []Expr {
	return append(l4(proto), load("transport", 2, 2, 1), eq(1, be16(port)))
}

func ctState(mask uint32) []Expr {
	return []Expr{ctLoad("state", 1), Expr{Bitwise: &Bitwise{Op: "bool", Sreg: 1, Dreg: 1, Len: 4, Mask: le32(mask), Xor: le32(0)}}, cmp("neq", 1, le32(0))}
}

func iifname(name string) []Expr { return []Expr{metaLoad("iifname", 1), eq(1, ifn(name))} }
func oifname(name string) []Expr { return []Expr{metaLoad("oifname", 1), eq(1, ifn(name))} }

func cat(parts ...any) []Expr {
	var out []Expr
	for _, p := range parts {
		switch v := p.(type) {
		case Expr:
			out = append(out, v)
		case []Expr:
			out = append(out, v...)
		}
	}
	return out
}

var handleSeq uint64 = 100

func rule(parts ...any) *Rule {
	handleSeq++
	return &Rule{Handle: handleSeq, Exprs: cat(parts...)}
}

func base(name string, typ ChainType, hook Hook, prio int32, policy string, rules ...*Rule) *Chain {
	return &Chain{Name: name, Type: typ, Hook: hook, Priority: prio, Policy: policy, Rules: rules}
}

func regular(name string, rules ...*Rule) *Chain { return &Chain{Name: name, Rules: rules} }

// tcpPkt is a TCP packet in a connection in the given conntrack state.
func tcpPkt(src, dst string, sport, dport uint16, state string, in, out string) *PacketInfo {
	p := &PacketInfo{Proto: 2, L4: 6, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
		SPort: sport, DPort: dport, HasPorts: true, Flags: 0x02, HasFlags: state == "new"}
	if p.Src.Is6() {
		p.Proto = 10
	}
	if in != "" {
		p.In = &Iface{Name: in, Index: 10}
	}
	if out != "" {
		p.Out = &Iface{Name: out, Index: 20}
	}
	if state != "" {
		p.CTEntry = &CT{State: state, Orig: Tuple{Src: p.Src, Dst: p.Dst, SPort: sport, DPort: dport, Proto: 6},
			ReplyT: Tuple{Src: p.Dst, Dst: p.Src, SPort: dport, DPort: sport, Proto: 6}}
	}
	return p
}
