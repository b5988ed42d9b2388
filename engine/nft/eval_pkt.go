package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
)

// header is a synthetic packet header: the bytes the evaluator knows and a mask of which bits
// are known. present is false where the kernel would find no such header (no link-layer
// header on locally generated packets): loads from it end the rule.
type header struct {
	val, know []byte
	present   bool
	proto     *proto
}

// setField writes a field's value (big-endian, right-aligned in v) at its bit offset.
func (h *header) setField(f *field, v []byte) {
	for i := uint32(0); i < f.bits; i++ {
		bitPos := f.off + i
		if int(bitPos/8) >= len(h.val) {
			return
		}
		srcBit := uint32(len(v))*8 - f.bits + i
		bit := v[srcBit/8]&(0x80>>(srcBit%8)) != 0
		mask := byte(0x80 >> (bitPos % 8))
		if bit {
			h.val[bitPos/8] |= mask
		} else {
			h.val[bitPos/8] &^= mask
		}
		h.know[bitPos/8] |= mask
	}
}

func (h *header) set(p *proto, name string, v []byte) {
	for i := range p.fields {
		if p.fields[i].name == name {
			h.setField(&p.fields[i], v)
			return
		}
	}
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// buildHeaders lays out the packet's headers from what the Packet says, for payload loads.
func (m *machine) buildHeaders(t *Table) {
	p := m.pkt
	m.hdr = map[string]*header{}
	src, dst := p.Addrs()
	nfp := p.NFProto()
	var nh *header
	switch nfp {
	case 2:
		nh = &header{val: make([]byte, 20), know: make([]byte, 20), present: true, proto: protoIP}
		nh.set(protoIP, "version", []byte{4})
		nh.set(protoIP, "hdrlength", []byte{5})
		nh.set(protoIP, "protocol", []byte{p.L4Proto()})
		if src.Is4() {
			a := src.As4()
			nh.set(protoIP, "saddr", a[:])
		}
		if dst.Is4() {
			a := dst.As4()
			nh.set(protoIP, "daddr", a[:])
		}
		if l, ok := p.Length(); ok {
			nh.set(protoIP, "length", be16(uint16(l)))
		}
		// Flows are traced unfragmented: the fragment offset and MF are known zero, DF is
		// not known (Linux sets it on TCP, not always on UDP).
		nh.know[6], nh.know[7] = 0xbf, 0xff
	case 10:
		nh = &header{val: make([]byte, 40), know: make([]byte, 40), present: true, proto: protoIP6}
		nh.set(protoIP6, "version", []byte{6})
		nh.set(protoIP6, "nexthdr", []byte{p.L4Proto()})
		if src.Is6() {
			a := src.As16()
			nh.set(protoIP6, "saddr", a[:])
		}
		if dst.Is6() {
			a := dst.As16()
			nh.set(protoIP6, "daddr", a[:])
		}
		if l, ok := p.Length(); ok && l >= 40 {
			nh.set(protoIP6, "length", be16(uint16(l-40)))
		}
	}
	if nh != nil {
		m.extraFields(nh)
		m.hdr["network"] = nh
	}
	tp := transportByL4(p.L4Proto())
	th := &header{val: make([]byte, 20), know: make([]byte, 20), present: true, proto: tp}
	if sp, dp, ok := p.Ports(); ok {
		th.set(protoTH, "sport", be16(sp))
		th.set(protoTH, "dport", be16(dp))
	}
	switch tp {
	case protoTCP:
		if fl, ok := p.TCPFlags(); ok {
			th.set(protoTCP, "flags", []byte{fl})
		}
	case protoICMP, protoICMP6:
		if typ, code, ok := p.ICMP(); ok {
			th.set(tp, "type", []byte{typ})
			th.set(tp, "code", []byte{code})
		}
	case protoUDP:
		if l, ok := p.Length(); ok {
			hl := uint32(20)
			if nfp == 10 {
				hl = 40
			}
			if l >= hl+8 {
				th.set(protoUDP, "length", be16(uint16(l-hl)))
			}
		}
	}
	if tp != nil {
		m.extraFields(th)
	}
	m.hdr["transport"] = th
	// The link-layer header exists for packets that came in on an interface; ethernet is
	// assumed, its addresses unknown.
	ll := &header{val: make([]byte, 14), know: make([]byte, 14), proto: protoEther}
	if _, in := p.Iif(); in {
		ll.present = true
		et := uint16(0x0800)
		if nfp == 10 {
			et = 0x86dd
		}
		ll.set(protoEther, "type", be16(et))
		m.extraFields(ll)
	}
	m.hdr["ll"] = ll
	m.hdr["inner"] = &header{present: true}
	for _, w := range m.payload {
		h := m.hdr[w.base]
		if h == nil || w.off+len(w.val) > len(h.val) {
			continue
		}
		copy(h.val[w.off:], w.val)
		copy(h.know[w.off:], w.know)
	}
}

// extraFields fills header fields the caller knows through Extra("ip ttl"), ...
func (m *machine) extraFields(h *header) {
	for i := range h.proto.fields {
		f := &h.proto.fields[i]
		if v, ok := m.pkt.Extra(h.proto.name + " " + f.name); ok && uint32(len(v))*8 >= f.bits {
			h.setField(f, v)
		}
	}
}

func (m *machine) evalPayload(p *Payload) (string, string) {
	h := m.hdr[p.Base]
	if p.Set {
		val, know, _ := m.load(p.Sreg, int(p.Len))
		m.payload = append(m.payload, payloadWrite{base: p.Base, off: int(p.Offset), val: val, know: know})
		if h != nil && int(p.Offset+p.Len) <= len(h.val) {
			copy(h.val[p.Offset:], val)
			copy(h.know[p.Offset:], know)
		}
		m.other(m.r.Rule(m.table, &Rule{Exprs: []Expr{{Payload: p}}}))
		return vContinue, ""
	}
	if h == nil {
		m.unknown(p.Dreg, p.Len, "the "+p.Base+" header (not modelled)")
		return vContinue, ""
	}
	if !h.present {
		// nft_payload_eval: no link-layer header (locally generated) ends the rule
		return vBreak, ""
	}
	val := make([]byte, p.Len)
	know := make([]byte, p.Len)
	for i := uint32(0); i < p.Len; i++ {
		if int(p.Offset+i) < len(h.val) {
			val[i], know[i] = h.val[p.Offset+i], h.know[p.Offset+i]
		}
	}
	why := m.fieldName(h, p)
	m.store(p.Dreg, val, know, why)
	return vContinue, ""
}

// fieldName names the header field a load reads, for conditions ("ip ttl").
func (m *machine) fieldName(h *header, p *Payload) string {
	if h.proto != nil {
		for _, f := range h.proto.fields {
			if f.off/8 >= p.Offset && (f.off+f.bits+7)/8 <= p.Offset+p.Len || f.off/8 == p.Offset {
				return h.proto.name + " " + f.name
			}
		}
		return fmt.Sprintf("%s header bytes %d-%d", h.proto.name, p.Offset, p.Offset+p.Len-1)
	}
	return fmt.Sprintf("%s header bytes %d-%d", p.Base, p.Offset, p.Offset+p.Len-1)
}

func (m *machine) u32(v uint32) []byte {
	b := make([]byte, 4)
	m.host.PutUint32(b, v)
	return b
}

func (m *machine) u16(v uint16) []byte {
	b := make([]byte, 2)
	m.host.PutUint16(b, v)
	return b
}

func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

// metaValue computes a meta key's register value as nft_meta_get_eval does. ok=false with
// brk=false means unknown; brk means the kernel ends the rule (NFT_BREAK).
func (m *machine) metaValue(t *Table, key string) (val []byte, ok, brk bool) {
	p := m.pkt
	if v, known := p.Extra("meta " + key); known {
		return v, true, false
	}
	in, hasIn := p.Iif()
	out, hasOut := p.Oif()
	switch key {
	case "length":
		if l, ok := p.Length(); ok {
			return m.u32(l), true, false
		}
	case "protocol":
		if p.NFProto() == 10 {
			return be16(0x86dd), true, false
		}
		return be16(0x0800), true, false
	case "mark":
		return m.u32(p.Mark()), true, false
	case "iif", "oif":
		ifc, has := in, hasIn
		if key == "oif" {
			ifc, has = out, hasOut
		}
		if !has {
			return m.u32(0), true, false
		}
		if ifc.Index == 0 {
			return nil, false, false
		}
		return m.u32(ifc.Index), true, false
	case "iifname", "oifname":
		ifc, has := in, hasIn
		if key == "oifname" {
			ifc, has = out, hasOut
		}
		if !has {
			return ifname(""), true, false
		}
		return ifname(ifc.Name), true, false
	case "iiftype", "oiftype":
		ifc, has := in, hasIn
		if key == "oiftype" {
			ifc, has = out, hasOut
		}
		if !has {
			return nil, false, true
		}
		if ifc.Type == 0 {
			return nil, false, false
		}
		return m.u16(ifc.Type), true, false
	case "iifgroup", "oifgroup":
		ifc, has := in, hasIn
		if key == "oifgroup" {
			ifc, has = out, hasOut
		}
		if !has {
			return m.u32(0), true, false
		}
		if !ifc.GroupKnown {
			return nil, false, false
		}
		return m.u32(ifc.Group), true, false
	case "iifkind", "oifkind":
		ifc, has := in, hasIn
		if key == "oifkind" {
			ifc, has = out, hasOut
		}
		if !has {
			return nil, false, true
		}
		if ifc.Kind == "" {
			return nil, false, false
		}
		return ifname(ifc.Kind), true, false
	case "ibrname", "obrname":
		ifc, has := in, hasIn
		if key == "obrname" {
			ifc, has = out, hasOut
		}
		if !has || ifc.Bridge == "" {
			return nil, false, true
		}
		return ifname(ifc.Bridge), true, false
	case "skuid", "skgid":
		uid, gid, present, known := p.Socket()
		if !present {
			return nil, false, true
		}
		if !known {
			return nil, false, false
		}
		if key == "skgid" {
			return m.u32(gid), true, false
		}
		return m.u32(uid), true, false
	case "nftrace":
		if m.pkt.nftrace {
			return []byte{1}, true, false
		}
		return []byte{0}, true, false
	case "nfproto":
		switch t.Family {
		case FamilyBridge:
			return []byte{7}, true, false
		case FamilyNetdev:
			return []byte{5}, true, false
		}
		return []byte{p.NFProto()}, true, false
	case "l4proto":
		return []byte{p.L4Proto()}, true, false
	case "pkttype":
		_, dst := p.Addrs()
		switch {
		case dst.IsMulticast():
			return []byte{2}, true, false
		case dst.Is4() && dst.As4() == [4]byte{255, 255, 255, 255}:
			return []byte{1}, true, false
		}
		return []byte{0}, true, false
	}
	return nil, false, false
}

func (m *machine) evalMeta(t *Table, e *Meta) (string, string) {
	k, _ := keyByName(metaKeys, e.Key)
	if e.Set {
		val, know, why := m.load(e.Sreg, int(k.len))
		switch e.Key {
		case "mark":
			if !allSet(know[:4]) {
				m.other("meta mark set from " + why + " (value unknown)")
				return vContinue, ""
			}
			v := m.host.Uint32(val)
			m.pkt.mark = &v
			m.outcome.Effects.Mark = &v
		case "nftrace":
			m.pkt.nftrace = val[0]&1 != 0
			m.outcome.Effects.Nftrace = m.pkt.nftrace
		default:
			m.other(fmt.Sprintf("meta %s set 0x%x", e.Key, val))
		}
		return vContinue, ""
	}
	val, ok, brk := m.metaValue(t, e.Key)
	if brk {
		return vBreak, ""
	}
	if !ok {
		why := "meta " + e.Key
		switch e.Key {
		case "cpu", "random":
			why += " (chance)"
		case "time", "day", "hour":
			why += " (the time of day)"
		default:
			why += " (not given)"
		}
		m.unknown(e.Dreg, k.len, why)
		return vContinue, ""
	}
	m.store(e.Dreg, val, nil, "")
	return vContinue, ""
}

// ctStateBit is NF_CT_STATE_BIT for a conntrack state.
var ctStateBits = map[string]uint32{"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64}

func (m *machine) evalCt(e *Ct) (string, string) {
	k, _ := keyByName(ctKeys, e.Key)
	ct, attached := m.pkt.Conntrack()
	if e.Set {
		val, know, why := m.load(e.Sreg, max(int(k.len), 1))
		if !attached {
			// nft_ct_set_eval does nothing without a conntrack entry (except zone templates)
			if e.Key == "zone" {
				m.other(fmt.Sprintf("ct zone set 0x%x", val))
			}
			return vContinue, ""
		}
		switch e.Key {
		case "mark":
			if !allSet(know[:4]) {
				m.other("ct mark set from " + why + " (value unknown)")
				return vContinue, ""
			}
			v := m.host.Uint32(val)
			m.pkt.ctMark = &v
			m.outcome.Effects.CtMark = &v
		default:
			m.other(fmt.Sprintf("ct %s set 0x%x", e.Key, val))
		}
		return vContinue, ""
	}
	if v, ok := m.pkt.Extra("ct " + e.Key); ok {
		m.store(e.Dreg, v, nil, "")
		return vContinue, ""
	}
	if e.Key == "state" {
		switch {
		case attached:
			m.store(e.Dreg, m.u32(ctStateBits[ct.State]), nil, "")
		case ct.Untracked:
			m.store(e.Dreg, m.u32(64), nil, "")
		default:
			m.store(e.Dreg, m.u32(1), nil, "")
		}
		return vContinue, ""
	}
	if !attached {
		return vBreak, ""
	}
	tuple := ct.Orig
	if e.Dir == "reply" {
		tuple = ct.ReplyT
	}
	addr := func(a interface{ AsSlice() []byte }, want int) ([]byte, bool) {
		b := a.AsSlice()
		if want != 0 && len(b) != want {
			return nil, false
		}
		return b, true
	}
	var val []byte
	switch e.Key {
	case "direction":
		d := byte(0)
		if ct.Reply {
			d = 1
		}
		val = []byte{d}
	case "status":
		val = m.u32(ct.Status)
	case "mark":
		val = m.u32(ct.Mark)
	case "helper":
		val = ifname(ct.Helper)
	case "l3proto":
		val = []byte{m.pkt.NFProto()}
	case "protocol":
		val = []byte{tuple.Proto}
	case "saddr", "ip saddr", "ip6 saddr":
		want := map[string]int{"ip saddr": 4, "ip6 saddr": 16}[e.Key]
		b, ok := addr(tuple.Src, want)
		if !ok || !tuple.Src.IsValid() {
			return vBreak, ""
		}
		val = b
	case "daddr", "ip daddr", "ip6 daddr":
		want := map[string]int{"ip daddr": 4, "ip6 daddr": 16}[e.Key]
		b, ok := addr(tuple.Dst, want)
		if !ok || !tuple.Dst.IsValid() {
			return vBreak, ""
		}
		val = b
	case "proto-src":
		val = be16(tuple.SPort)
	case "proto-dst":
		val = be16(tuple.DPort)
	case "zone":
		val = m.u16(ct.Zone)
	default:
		m.unknown(e.Dreg, max(k.len, 4), "ct "+e.Key+" (not given)")
		return vContinue, ""
	}
	m.store(e.Dreg, val, nil, "")
	return vContinue, ""
}

// --- iptables-nft compat expressions

// evalXt runs the compat matches and targets iptables-nft writes most; the rest are named
// as not modelled. (Rules in iptables-nft's tables are better traced through iptables-nft-save
// and the iptables model; this covers what shows up in native listings.)
func (m *machine) evalXt(x *Xt) (string, string) {
	info := x.Info
	xi := xtInfo{info, m.host}
	u32 := xi.u32
	match := func(ok bool) (string, string) {
		if ok {
			return vContinue, ""
		}
		return vBreak, ""
	}
	name := "xt " + x.Kind + " " + x.Name
	ct, attached := m.pkt.Conntrack()
	stateBit := func() uint32 {
		switch {
		case attached:
			return ctStateBits[ct.State]
		case ct.Untracked:
			return 1 << 8 // XT_CONNTRACK_STATE_UNTRACKED
		}
		return 1 // invalid
	}
	switch x.Kind + " " + x.Name {
	case "match comment":
		return vContinue, ""
	case "match state":
		mask, ok := u32(0)
		if !ok {
			break
		}
		bit := stateBit()
		if bit == 1<<8 {
			bit = 1 << 6 // XT_STATE_UNTRACKED
		}
		return match(mask&bit != 0)
	case "match conntrack":
		mask, inv, ok := xi.conntrackState(x.Rev)
		if !ok {
			break // only --ctstate is modelled
		}
		bit := stateBit()
		if attached {
			// the virtual SNAT and DNAT states (XT_CONNTRACK_STATE_SNAT/DNAT)
			if ct.Status&16 != 0 {
				bit |= 64
			}
			if ct.Status&32 != 0 {
				bit |= 128
			}
		}
		return match((mask&bit != 0) != inv)
	case "match mark":
		mark, ok1 := u32(0)
		mask, ok2 := u32(4)
		if !ok1 || !ok2 || len(info) < 9 {
			break
		}
		return match((m.pkt.Mark()&mask == mark) != (info[8] != 0))
	case "target MARK":
		if x.Rev != 2 {
			break
		}
		mark, ok1 := u32(0)
		mask, ok2 := u32(4)
		if !ok1 || !ok2 {
			break
		}
		v := (m.pkt.Mark() &^ mask) ^ mark
		m.pkt.mark, m.outcome.Effects.Mark = &v, &v
		return vContinue, ""
	case "target CONNMARK":
		if x.Rev != 1 && x.Rev != 2 {
			break
		}
		ctmark, _ := u32(0)
		ctmask, _ := u32(4)
		nfmask, ok := u32(8)
		if !ok || len(info) < 13 {
			break
		}
		mode := info[12]
		var dir, bits byte
		if x.Rev == 2 {
			if len(info) < 15 {
				break
			}
			dir, bits, mode = info[12], info[13], info[14]
		}
		shift := func(v uint32) uint32 {
			if dir == 1 {
				return v >> bits
			}
			return v << bits
		}
		if !attached {
			return vContinue, ""
		}
		cur := ct.Mark
		if m.pkt.ctMark != nil {
			cur = *m.pkt.ctMark
		}
		switch mode {
		case 0: // set
			v := (cur &^ ctmask) ^ ctmark
			m.pkt.ctMark, m.outcome.Effects.CtMark = &v, &v
		case 1: // save
			v := (cur &^ ctmask) ^ shift(m.pkt.Mark()&nfmask)
			m.pkt.ctMark, m.outcome.Effects.CtMark = &v, &v
		case 2: // restore
			v := (m.pkt.Mark() &^ nfmask) ^ shift(cur&ctmask)
			m.pkt.mark, m.outcome.Effects.Mark = &v, &v
		default:
			return m.notModelled(x.Name, name)
		}
		return vContinue, ""
	case "target DNAT", "target SNAT", "target MASQUERADE", "target REDIRECT":
		a, ok := xtNat(x, m.host, m.pkt.NFProto() == 10)
		if !ok {
			break
		}
		a.Step = m.step("nat")
		if !attached {
			return "drop", ""
		}
		m.outcome.Effects.Nat = a
		return "nat", ""
	case "target REJECT":
		with, ok := u32(0)
		if !ok {
			break
		}
		r := &Reject{Type: "icmp", Code: []uint8{0, 1, 2, 3, 0, 9, 10, 0, 13}[min(with, 8)]}
		if with == 7 {
			r = &Reject{Type: "tcp reset"}
		}
		m.outcome.Effects.Reject = r
		return "reject", ""
	case "target LOG", "target NFLOG", "target TCPMSS", "target CT", "target TRACE":
		m.other(name)
		return vContinue, ""
	}
	return m.notModelled(x.Name, name)
}

// xtNat decodes the NAT targets' ranges (nf_nat_ipv4_multi_range_compat for revision 0,
// nf_nat_range(2) after).
func xtNat(x *Xt, host binary.ByteOrder, v6 bool) (*NatAction, bool) {
	typ := map[string]string{"DNAT": "dnat", "SNAT": "snat", "MASQUERADE": "masquerade", "REDIRECT": "redirect"}[x.Name]
	a := &NatAction{Type: typ}
	info := x.Info
	// nf_nat_ipv4_multi_range_compat (revision 0): rangesize, then flags, two IPv4
	// addresses and two ports; nf_nat_range(2): flags, two nf_inet_addr and two ports.
	flagsAt, addrAt, alen, portAt, size := 0, 4, 16, 36, 40
	if x.Rev == 0 {
		flagsAt, addrAt, alen, portAt, size = 4, 8, 4, 16, 20
	}
	if len(info) < size {
		return nil, false
	}
	flags := host.Uint32(info[flagsAt:])
	if flags&1 != 0 {
		a.AddrMin = addrFrom(info[addrAt:addrAt+alen], v6)
		a.AddrMax = addrFrom(info[addrAt+alen:addrAt+2*alen], v6)
	}
	if flags&2 != 0 {
		a.ProtoMin = binary.BigEndian.Uint16(info[portAt:])
		a.ProtoMax = binary.BigEndian.Uint16(info[portAt+2:])
	}
	names, _ := NatFlagNames(flags)
	a.Flags = slices.DeleteFunc(names, func(s string) bool { return s == "map-ips" || s == "proto-specified" })
	return a, true
}

// addrFrom reads an address: 4 bytes, or an nf_inet_addr (16 bytes) holding an IPv4
// address in its first 4 unless v6.
func addrFrom(b []byte, v6 bool) netip.Addr {
	if len(b) == 16 && !v6 {
		b = b[:4]
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// xtInfo reads an xt match's or target's info structure, which is in host byte order.
type xtInfo struct {
	b    []byte
	host binary.ByteOrder
}

func (x xtInfo) u32(off int) (uint32, bool) {
	if off+4 > len(x.b) {
		return 0, false
	}
	return x.host.Uint32(x.b[off:]), true
}

func (x xtInfo) u16(off int) (uint16, bool) {
	if off+2 > len(x.b) {
		return 0, false
	}
	return x.host.Uint16(x.b[off:]), true
}

// conntrackState reads an xt_conntrack_mtinfo{1,2,3} that matches on --ctstate only: eight
// nf_inet_addr (128 bytes), expires (8), l4proto and four ports (10), then match_flags at
// 146, invert_flags at 148 and the state mask at 150 (u8 in revision 1, u16 after).
func (x xtInfo) conntrackState(rev uint32) (mask uint32, inverted, ok bool) {
	flags, ok1 := x.u16(146)
	inv, ok2 := x.u16(148)
	if !ok1 || !ok2 || flags != 1 || rev < 1 || rev > 3 {
		return 0, false, false
	}
	if rev == 1 {
		if len(x.b) < 151 {
			return 0, false, false
		}
		return uint32(x.b[150]), inv&1 != 0, true
	}
	v, ok := x.u16(150)
	return uint32(v), inv&1 != 0, ok
}
