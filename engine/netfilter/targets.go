package netfilter

import (
	"fmt"

	"roundtrip/engine/iptables"
)

// applyMark does what the MARK target does (net/netfilter/xt_mark.c: mark = (mark & ~mask) ^
// value; iptables translates --set-mark, --and-mark, --or-mark and --xor-mark into that).
func applyMark(mark *uint32, r *iptables.Rule) string {
	// The MARK target takes exactly one operation.
	if len(r.TargetOpts) == 0 {
		return "MARK without an option"
	}
	o := r.TargetOpts[0]
	if len(o.Values) != 1 {
		return fmt.Sprintf("MARK --%s needs one value", o.Name)
	}
	v, m, err := iptables.ParseMark(o.Values[0])
	if err != nil {
		return "MARK: " + err.Error()
	}
	switch o.Name {
	case "set-xmark":
		*mark = (*mark &^ m) ^ v
	case "set-mark":
		*mark = (*mark &^ m) | v
	case "and-mark":
		*mark &= v
	case "or-mark":
		*mark |= v
	case "xor-mark":
		*mark ^= v
	default:
		return fmt.Sprintf("MARK --%s is not modelled", o.Name)
	}
	return ""
}

// applyConnmark does what the CONNMARK target does (net/netfilter/xt_connmark.c, revision 1):
//
//	--set-xmark v/m:   ctmark = (ctmark & ~m) ^ v
//	--save-mark:       ctmark = (ctmark & ~ctmask) ^ (mark & nfmask)
//	--restore-mark:    mark   = (mark & ~nfmask) ^ (ctmark & ctmask)
//
// --mask m sets both masks; they default to all ones.
func applyConnmark(p *Packet, ct *Conn, r *iptables.Rule) string {
	nfmask, ctmask := uint32(0xffffffff), uint32(0xffffffff)
	var op string
	var opVal []string
	for _, o := range r.TargetOpts {
		switch o.Name {
		case "nfmask", "ctmask", "mask":
			if len(o.Values) != 1 {
				return fmt.Sprintf("CONNMARK --%s needs one value", o.Name)
			}
			v, err := iptables.ParseU32(o.Values[0])
			if err != nil {
				return fmt.Sprintf("CONNMARK --%s: %v", o.Name, err)
			}
			switch o.Name {
			case "nfmask":
				nfmask = v
			case "ctmask":
				ctmask = v
			default:
				nfmask, ctmask = v, v
			}
		case "set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark", "save-mark", "restore-mark":
			op, opVal = o.Name, o.Values
		default:
			return fmt.Sprintf("CONNMARK --%s is not modelled", o.Name)
		}
	}
	switch op {
	case "save-mark":
		ct.Mark = (ct.Mark &^ ctmask) ^ (p.Mark & nfmask)
	case "restore-mark":
		p.Mark = (p.Mark &^ nfmask) ^ (ct.Mark & ctmask)
	case "":
		return "CONNMARK without an operation"
	default:
		if len(opVal) != 1 {
			return fmt.Sprintf("CONNMARK --%s needs one value", op)
		}
		v, m, err := iptables.ParseMark(opVal[0])
		if err != nil {
			return "CONNMARK: " + err.Error()
		}
		switch op {
		case "set-xmark":
			ct.Mark = (ct.Mark &^ m) ^ v
		case "set-mark":
			ct.Mark = (ct.Mark &^ m) | v
		case "and-mark":
			ct.Mark &= v
		case "or-mark":
			ct.Mark |= v
		case "xor-mark":
			ct.Mark ^= v
		}
	}
	return ""
}
