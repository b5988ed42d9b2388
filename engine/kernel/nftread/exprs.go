package nftread

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"roundtrip/engine/nft"
)

// exprAttrs lists, per expression, the attributes google/nftables' decoder understands and
// that the model keeps. An expression carrying any other attribute (a newer kernel's option,
// or one the library drops, such as ct's SREG or bitwise's shift OP) is not handed to the
// library, whose decoder would silently lose it and make the rule look broader than it is.
var exprAttrs = map[string][]uint16{
	"payload":      {1, 2, 3, 4, 5, 6, 7, 8},
	"meta":         {1, 2, 3},
	"cmp":          {1, 2, 3},
	"range":        {1, 2, 3, 4},
	"lookup":       {1, 2, 3, 4, 5},
	"immediate":    {1, 2},
	"nat":          {1, 2, 3, 4, 5, 6, 7},
	"masq":         {1, 2, 3},
	"redir":        {1, 2, 3},
	"fib":          {1, 2, 3},
	"limit":        {1, 2, 3, 4, 5},
	"quota":        {1, 2, 3, 4},
	"counter":      {1, 2, 3},
	"log":          {1, 2, 3, 4, 5, 6},
	"reject":       {1, 2},
	"queue":        {1, 2, 3},
	"exthdr":       {1, 2, 3, 4, 5, 6, 7},
	"numgen":       {1, 2, 3, 4},
	"hash":         {1, 2, 3, 4, 5, 6, 7},
	"connlimit":    {1, 2},
	"flow_offload": {1},
	"socket":       {1, 2, 3},
}

// attrList decodes a flat attribute list into type → data (the last of a repeated type wins;
// nf_tables expressions never repeat one).
func attrList(b []byte) (map[uint16][]byte, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, err
	}
	out := map[uint16][]byte{}
	for ad.Next() {
		out[ad.Type()] = ad.Bytes()
	}
	return out, ad.Err()
}

func be32(b []byte) uint32 {
	if len(b) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func be64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// decodeExprs decodes NFTA_RULE_EXPRESSIONS (a list of NFTA_LIST_ELEM, each with
// NFTA_EXPR_NAME and NFTA_EXPR_DATA). An expression that cannot be decoded exactly becomes
// nft.Unknown and unknown is true.
func decodeExprs(fam byte, b []byte) (exprs []nft.Expr, unknown bool, err error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, false, err
	}
	for ad.Next() {
		if ad.Type() != unix.NFTA_LIST_ELEM {
			continue
		}
		attrs, err := attrList(ad.Bytes())
		if err != nil {
			return nil, false, fmt.Errorf("decoding an expression: %w", err)
		}
		name := cstring(attrs[unix.NFTA_EXPR_NAME])
		e, err := decodeExpr(fam, name, attrs[unix.NFTA_EXPR_DATA])
		if err != nil {
			e = nft.Expr{Unknown: &nft.Unknown{Name: name, Raw: attrs[unix.NFTA_EXPR_DATA]}}
		}
		if e.Unknown != nil {
			unknown = true
		}
		exprs = append(exprs, e)
	}
	return exprs, unknown, ad.Err()
}

// decodeExpr turns one kernel expression into the model: through google/nftables' expr types
// when the library decodes every attribute present, else by hand.
func decodeExpr(fam byte, name string, data []byte) (nft.Expr, error) {
	attrs, err := attrList(data)
	if err != nil {
		return nft.Expr{}, err
	}
	if allowed, ok := exprAttrs[name]; ok {
		for t := range attrs {
			if !contains(allowed, t) {
				return unknownExpr(name, data), nil
			}
		}
		return libraryExpr(fam, name, data, attrs)
	}
	switch name {
	case "notrack":
		return nft.Expr{Notrack: &nft.Notrack{}}, nil
	case "ct":
		return ctExpr(attrs)
	case "bitwise":
		return bitwiseExpr(attrs)
	case "byteorder":
		return byteorderExpr(attrs)
	case "rt":
		k, ok := nft.RtKeyName(be32(attrs[2]))
		if !ok || len(attrs) != 2 {
			return unknownExpr(name, data), nil
		}
		return nft.Expr{Rt: &nft.Rt{Key: k, Dreg: be32(attrs[1])}}, nil
	case "objref":
		return objrefExpr(attrs, data)
	case "dynset":
		return dynsetExpr(fam, attrs, data)
	case "match", "target":
		if len(attrs) > 3 {
			return unknownExpr(name, data), nil
		}
		return nft.Expr{Xt: &nft.Xt{Kind: name, Name: cstring(attrs[1]), Rev: be32(attrs[2]), Info: attrs[3]}}, nil
	}
	return unknownExpr(name, data), nil
}

func unknownExpr(name string, data []byte) nft.Expr {
	return nft.Expr{Unknown: &nft.Unknown{Name: name, Raw: data}}
}

func contains(list []uint16, t uint16) bool {
	for _, v := range list {
		if v == t {
			return true
		}
	}
	return false
}

// libraryExpr decodes with google/nftables and converts its expr.* value.
func libraryExpr(fam byte, name string, data []byte, attrs map[uint16][]byte) (nft.Expr, error) {
	var e expr.Any
	switch name {
	case "payload":
		e = &expr.Payload{}
	case "meta":
		e = &expr.Meta{}
	case "cmp":
		e = &expr.Cmp{}
	case "range":
		e = &expr.Range{}
	case "lookup":
		e = &expr.Lookup{}
	case "immediate":
		e = &expr.Immediate{}
		if _, isData := nestedType(attrs[2], unix.NFTA_DATA_VERDICT); isData {
			e = &expr.Verdict{}
		}
	case "nat":
		e = &expr.NAT{}
	case "masq":
		e = &expr.Masq{}
	case "redir":
		e = &expr.Redir{}
	case "fib":
		e = &expr.Fib{}
	case "limit":
		e = &expr.Limit{}
	case "quota":
		e = &expr.Quota{}
	case "counter":
		e = &expr.Counter{}
	case "log":
		e = &expr.Log{}
	case "reject":
		e = &expr.Reject{}
	case "queue":
		e = &expr.Queue{}
	case "exthdr":
		e = &expr.Exthdr{}
	case "numgen":
		e = &expr.Numgen{}
	case "hash":
		e = &expr.Hash{}
	case "connlimit":
		e = &expr.Connlimit{}
	case "flow_offload":
		e = &expr.FlowOffload{}
	case "socket":
		e = &expr.Socket{}
	}
	if err := expr.Unmarshal(fam, data, e); err != nil {
		return nft.Expr{}, fmt.Errorf("decoding %s: %w", name, err)
	}
	return convert(name, e, attrs)
}

// nestedType reports whether the nested attribute list b holds an attribute of type t, and
// returns its data.
func nestedType(b []byte, t uint16) ([]byte, bool) {
	attrs, err := attrList(b)
	if err != nil {
		return nil, false
	}
	v, ok := attrs[t]
	return v, ok
}

var payloadBases = []string{"ll", "network", "transport", "inner"}

var cmpOps = []string{"eq", "neq", "lt", "lte", "gt", "gte"}

// convert maps a decoded google/nftables expression onto the model.
func convert(name string, e expr.Any, attrs map[uint16][]byte) (nft.Expr, error) {
	switch x := e.(type) {
	case *expr.Payload:
		if int(x.Base) >= len(payloadBases) {
			return unknownExpr(name, nil), nil
		}
		p := &nft.Payload{Base: payloadBases[x.Base], Offset: x.Offset, Len: x.Len}
		if _, ok := attrs[unix.NFTA_PAYLOAD_SREG]; ok {
			p.Set, p.Sreg = true, x.SourceRegister
			p.CsumType, p.CsumOffset, p.CsumFlags = uint32(x.CsumType), x.CsumOffset, x.CsumFlags
		} else {
			p.Dreg = x.DestRegister
		}
		return nft.Expr{Payload: p}, nil
	case *expr.Meta:
		k, ok := nft.MetaKeyName(uint32(x.Key))
		if !ok {
			return unknownExpr(name, nil), nil
		}
		m := &nft.Meta{Key: k}
		if x.SourceRegister {
			m.Set, m.Sreg = true, x.Register
		} else {
			m.Dreg = x.Register
		}
		return nft.Expr{Meta: m}, nil
	case *expr.Cmp:
		if int(x.Op) >= len(cmpOps) {
			return unknownExpr(name, nil), nil
		}
		return nft.Expr{Cmp: &nft.Cmp{Op: cmpOps[x.Op], Sreg: x.Register, Data: x.Data}}, nil
	case *expr.Range:
		op := "eq"
		if x.Op == expr.CmpOpNeq {
			op = "neq"
		} else if x.Op != expr.CmpOpEq {
			return unknownExpr(name, nil), nil
		}
		return nft.Expr{Range: &nft.Range{Op: op, Sreg: x.Register, From: x.FromData, To: x.ToData}}, nil
	case *expr.Lookup:
		return nft.Expr{Lookup: &nft.Lookup{Set: x.SetName, Sreg: x.SourceRegister, HasDreg: x.IsDestRegSet, Dreg: x.DestRegister, Invert: x.Invert}}, nil
	case *expr.Immediate:
		return nft.Expr{Immediate: &nft.Immediate{Dreg: x.Register, Data: x.Data}}, nil
	case *expr.Verdict:
		v, ok := verdictFromLib(int32(x.Kind), x.Chain)
		if !ok {
			return unknownExpr(name, nil), nil
		}
		return nft.Expr{Verdict: v}, nil
	case *expr.NAT:
		n := &nft.Nat{RegAddrMin: x.RegAddrMin, RegAddrMax: x.RegAddrMax, RegProtoMin: x.RegProtoMin, RegProtoMax: x.RegProtoMax}
		switch x.Type {
		case expr.NATTypeSourceNAT:
			n.Type = "snat"
		case expr.NATTypeDestNAT:
			n.Type = "dnat"
		default:
			return unknownExpr(name, nil), nil
		}
		switch x.Family {
		case unix.NFPROTO_IPV4:
			n.Family = "ip"
		case unix.NFPROTO_IPV6:
			n.Family = "ip6"
		}
		// The library folds the flags into booleans and drops some; keep them all.
		return natFlags(name, n, attrs[unix.NFTA_NAT_FLAGS])
	case *expr.Masq:
		n := &nft.Nat{Type: "masquerade", RegProtoMin: x.RegProtoMin, RegProtoMax: x.RegProtoMax}
		return natFlags(name, n, attrs[unix.NFTA_MASQ_FLAGS])
	case *expr.Redir:
		n := &nft.Nat{Type: "redirect", RegProtoMin: x.RegisterProtoMin, RegProtoMax: x.RegisterProtoMax}
		return natFlags(name, n, attrs[unix.NFTA_REDIR_FLAGS])
	case *expr.Fib:
		f := &nft.Fib{Dreg: x.Register}
		switch {
		case x.ResultOIF:
			f.Result = "oif"
		case x.ResultOIFNAME:
			f.Result = "oifname"
		case x.ResultADDRTYPE:
			f.Result = "type"
		default:
			return unknownExpr(name, nil), nil
		}
		flags, rest := nft.FibFlagNames(be32(attrs[unix.NFTA_FIB_FLAGS]))
		if rest != 0 {
			return unknownExpr(name, nil), nil
		}
		f.Flags = flags
		return nft.Expr{Fib: f}, nil
	case *expr.Limit:
		l := &nft.Limit{Type: "packets", Rate: x.Rate, Unit: uint64(x.Unit), Burst: x.Burst, Over: x.Over}
		if x.Type == expr.LimitTypePktBytes {
			l.Type = "bytes"
		}
		return nft.Expr{Limit: l}, nil
	case *expr.Quota:
		return nft.Expr{Quota: &nft.Quota{Bytes: x.Bytes, Consumed: x.Consumed, Over: x.Over}}, nil
	case *expr.Counter:
		return nft.Expr{Counter: &nft.Counter{Packets: x.Packets, Bytes: x.Bytes}}, nil
	case *expr.Log:
		l := &nft.Log{}
		if x.Key&(1<<unix.NFTA_LOG_PREFIX) != 0 {
			l.Prefix = cstring(x.Data)
		}
		if x.Key&(1<<unix.NFTA_LOG_LEVEL) != 0 {
			lv := uint32(x.Level)
			l.Level = &lv
		}
		if x.Key&(1<<unix.NFTA_LOG_GROUP) != 0 {
			g := x.Group
			l.Group = &g
		}
		l.Snaplen, l.QThreshold = x.Snaplen, x.QThreshold
		flags, rest := nft.LogFlagNames(uint32(x.Flags))
		if rest != 0 {
			return unknownExpr(name, nil), nil
		}
		l.Flags = flags
		return nft.Expr{Log: l}, nil
	case *expr.Reject:
		r := &nft.Reject{Code: x.Code}
		switch x.Type {
		case unix.NFT_REJECT_ICMP_UNREACH:
			r.Type = "icmp"
		case unix.NFT_REJECT_TCP_RST:
			r.Type = "tcp reset"
		case unix.NFT_REJECT_ICMPX_UNREACH:
			r.Type = "icmpx"
		default:
			return unknownExpr(name, nil), nil
		}
		return nft.Expr{Reject: r}, nil
	case *expr.Queue:
		flags, rest := nft.QueueFlagNames(uint32(x.Flag))
		if rest != 0 {
			return unknownExpr(name, nil), nil
		}
		return nft.Expr{Queue: &nft.Queue{Num: x.Num, Total: x.Total, Flags: flags}}, nil
	case *expr.Exthdr:
		ops := []string{"ipv6", "tcpopt", "ipv4", "sctp", "dccp"}
		if int(x.Op) >= len(ops) {
			return unknownExpr(name, nil), nil
		}
		h := &nft.Exthdr{Op: ops[x.Op], Type: x.Type, Offset: x.Offset, Len: x.Len, Flags: x.Flags}
		if _, ok := attrs[unix.NFTA_EXTHDR_SREG]; ok {
			h.Set, h.Sreg = true, x.SourceRegister
		} else {
			h.Dreg = x.DestRegister
		}
		return nft.Expr{Exthdr: h}, nil
	case *expr.Numgen:
		t := "inc"
		if x.Type == unix.NFT_NG_RANDOM {
			t = "random"
		}
		return nft.Expr{Numgen: &nft.Numgen{Type: t, Modulus: x.Modulus, Offset: x.Offset, Dreg: x.Register}}, nil
	case *expr.Hash:
		h := &nft.Hash{Type: "jhash", Sreg: x.SourceRegister, Dreg: x.DestRegister, Len: x.Length, Modulus: x.Modulus, Seed: x.Seed, Offset: x.Offset}
		if x.Type == expr.HashTypeSym {
			h.Type = "symhash"
		}
		_, h.HasSeed = attrs[unix.NFTA_HASH_SEED]
		return nft.Expr{Hash: h}, nil
	case *expr.Connlimit:
		return nft.Expr{Connlimit: &nft.Connlimit{Count: x.Count, Over: x.Flags&1 != 0}}, nil
	case *expr.FlowOffload:
		return nft.Expr{FlowOffload: &nft.FlowOffload{Table: x.Name}}, nil
	case *expr.Socket:
		k, ok := nft.SocketKeyName(uint32(x.Key))
		if !ok {
			return unknownExpr(name, nil), nil
		}
		return nft.Expr{Socket: &nft.Socket{Key: k, Level: x.Level, Dreg: x.Register}}, nil
	}
	return unknownExpr(name, nil), nil
}

// natFlags names a NAT expression's NF_NAT_RANGE_* flags (raw: the attribute, if any); a bit
// the model does not know makes the expression unknown.
func natFlags(name string, n *nft.Nat, raw []byte) (nft.Expr, error) {
	if raw != nil {
		names, rest := nft.NatFlagNames(be32(raw))
		if rest != 0 {
			return unknownExpr(name, nil), nil
		}
		n.Flags = names
	}
	return nft.Expr{Nat: n}, nil
}

// verdictFromLib names a verdict code with its chain.
func verdictFromLib(code int32, chain string) (*nft.Verdict, bool) {
	kind, ok := nft.VerdictFromCode(code)
	if !ok {
		return nil, false
	}
	v := &nft.Verdict{Kind: kind}
	if kind == "jump" || kind == "goto" {
		v.Chain = chain
	}
	return v, true
}

// verdictData decodes NFTA_DATA_VERDICT's nested NFTA_VERDICT_CODE and NFTA_VERDICT_CHAIN.
func verdictData(b []byte) (*nft.Verdict, error) {
	attrs, err := attrList(b)
	if err != nil {
		return nil, err
	}
	v, ok := verdictFromLib(int32(be32(attrs[unix.NFTA_VERDICT_CODE])), cstring(attrs[unix.NFTA_VERDICT_CHAIN]))
	if !ok {
		return nil, fmt.Errorf("unknown verdict code %d", int32(be32(attrs[unix.NFTA_VERDICT_CODE])))
	}
	return v, nil
}

// ctExpr decodes ct by hand: google/nftables does not read NFTA_CT_SREG, so it would turn
// `ct mark set meta mark` into a ct mark load.
func ctExpr(attrs map[uint16][]byte) (nft.Expr, error) {
	for t := range attrs {
		if t < 1 || t > 4 {
			return unknownExpr("ct", nil), nil
		}
	}
	k, dir, ok := nft.CtKeyName(be32(attrs[unix.NFTA_CT_KEY]))
	if !ok {
		return unknownExpr("ct", nil), nil
	}
	c := &nft.Ct{Key: k}
	if d, ok := attrs[unix.NFTA_CT_DIRECTION]; ok && len(d) == 1 {
		if !dir {
			return unknownExpr("ct", nil), nil
		}
		c.Dir = map[byte]string{0: "original", 1: "reply"}[d[0]]
	}
	if s, ok := attrs[4]; ok {
		c.Set, c.Sreg = true, be32(s)
	} else {
		c.Dreg = be32(attrs[unix.NFTA_CT_DREG])
	}
	return nft.Expr{Ct: c}, nil
}

// bitwiseExpr decodes bitwise by hand: the library reads only the boolean form and would
// turn a shift into a mask.
func bitwiseExpr(attrs map[uint16][]byte) (nft.Expr, error) {
	b := &nft.Bitwise{Sreg: be32(attrs[1]), Dreg: be32(attrs[2]), Len: be32(attrs[3]), Op: "bool"}
	for t := range attrs {
		if t < 1 || t > 7 {
			return unknownExpr("bitwise", nil), nil
		}
	}
	if op, ok := attrs[6]; ok {
		switch be32(op) {
		case 0:
		case 1:
			b.Op = "lshift"
		case 2:
			b.Op = "rshift"
		default:
			return unknownExpr("bitwise", nil), nil
		}
	}
	if b.Op == "bool" {
		m, _ := nestedType(attrs[4], unix.NFTA_DATA_VALUE)
		x, _ := nestedType(attrs[5], unix.NFTA_DATA_VALUE)
		b.Mask, b.Xor = m, x
	} else {
		d, _ := nestedType(attrs[7], unix.NFTA_DATA_VALUE)
		b.Shift = be32(d)
	}
	return nft.Expr{Bitwise: b}, nil
}

func byteorderExpr(attrs map[uint16][]byte) (nft.Expr, error) {
	for t := range attrs {
		if t < 1 || t > 5 {
			return unknownExpr("byteorder", nil), nil
		}
	}
	op := "ntoh"
	if be32(attrs[3]) == 1 {
		op = "hton"
	}
	return nft.Expr{Byteorder: &nft.Byteorder{Op: op, Sreg: be32(attrs[1]), Dreg: be32(attrs[2]), Len: be32(attrs[4]), Size: be32(attrs[5])}}, nil
}

var objTypeNames = map[uint32]string{1: "counter", 2: "quota", 3: "ct helper", 4: "limit", 6: "tunnel", 7: "ct timeout", 8: "secmark", 9: "ct expectation", 10: "synproxy"}

func objrefExpr(attrs map[uint16][]byte, data []byte) (nft.Expr, error) {
	o := &nft.Objref{}
	if n, ok := attrs[4]; ok {
		o.Set, o.Sreg = cstring(n), be32(attrs[3])
		return nft.Expr{Objref: o}, nil
	}
	t, ok := objTypeNames[be32(attrs[1])]
	if !ok {
		return unknownExpr("objref", data), nil
	}
	o.Type, o.Name = t, cstring(attrs[2])
	return nft.Expr{Objref: o}, nil
}

// dynsetExpr decodes dynset by hand so that its nested expressions go through the same
// checks as a rule's.
func dynsetExpr(fam byte, attrs map[uint16][]byte, data []byte) (nft.Expr, error) {
	d := &nft.Dynset{Set: cstring(attrs[1]), SregKey: be32(attrs[4]), SregData: be32(attrs[5])}
	switch be32(attrs[3]) {
	case 0:
		d.Op = "add"
	case 1:
		d.Op = "update"
	case 2:
		d.Op = "delete"
	default:
		return unknownExpr("dynset", data), nil
	}
	if t, ok := attrs[6]; ok {
		d.TimeoutMS = be64(t)
	}
	d.Invert = be32(attrs[9])&1 != 0
	var nested [][]byte
	if one, ok := attrs[7]; ok {
		nested = append(nested, one)
	}
	if list, ok := attrs[10]; ok {
		ad, err := netlink.NewAttributeDecoder(list)
		if err != nil {
			return nft.Expr{}, err
		}
		for ad.Next() {
			nested = append(nested, ad.Bytes())
		}
	}
	for _, n := range nested {
		a, err := attrList(n)
		if err != nil {
			return nft.Expr{}, err
		}
		sub, err := decodeExpr(fam, cstring(a[unix.NFTA_EXPR_NAME]), a[unix.NFTA_EXPR_DATA])
		if err != nil {
			return nft.Expr{}, err
		}
		if sub.Unknown != nil {
			return unknownExpr("dynset", data), nil
		}
		d.Exprs = append(d.Exprs, sub)
	}
	return nft.Expr{Dynset: d}, nil
}
