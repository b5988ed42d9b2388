package nftrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel/dropwatch"
)

// The trace table's chains: one per hook where a watched flow's packets enter the ruleset.
// They run at raw priority minus one so that they come before every raw-priority chain
// (iptables' raw table included: chains of equal priority run in the order they were
// registered), and before conntrack.
const (
	chainPrerouting = "prerouting"
	chainOutput     = "output"
	tracePriority   = -301
)

// tableFlagOwner is NFT_TABLE_F_OWNER (Linux 5.12): the kernel deletes the table when the
// netlink socket that created it closes, so a killed roundtrip leaves no trace table behind.
const tableFlagOwner = 0x2

// ownerFlag is cleared by tests to create a table as a kernel without owner tables would.
var ownerFlag = true

func nftType(msg int) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg)
}

// nfgen is struct nfgenmsg: family, version, resource id (big endian).
func nfgen(family uint8, resID uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func cstr(s string) []byte { return append([]byte(s), 0) }

// op builds one request of a batch.
func op(msg int, flags netlink.HeaderFlags, attrs []netlink.Attribute) (netlink.Message, error) {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return netlink.Message{}, err
	}
	return netlink.Message{
		Header: netlink.Header{Type: nftType(msg), Flags: netlink.Request | netlink.Acknowledge | flags},
		Data:   append(nfgen(unix.NFPROTO_INET, 0), data...),
	}, nil
}

// transact sends requests as one nf_tables transaction and waits for each one's answer: all are
// applied or none.
func transact(c *netlink.Conn, ops []netlink.Message) error {
	msgs := make([]netlink.Message, 0, len(ops)+2)
	msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_BEGIN, Flags: netlink.Request}, Data: nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)})
	msgs = append(msgs, ops...)
	msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: unix.NFNL_MSG_BATCH_END, Flags: netlink.Request}, Data: nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)})
	if _, err := c.SendMessages(msgs); err != nil {
		return fmt.Errorf("sending to nf_tables: %w", err)
	}
	// The kernel answers every request of the batch; the deadline only guards against a
	// kernel that answers fewer.
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	defer c.SetReadDeadline(time.Time{})
	var first error
	for want := len(ops); want > 0; {
		replies, err := c.Receive()
		if err != nil {
			if first == nil {
				first = err
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			want--
			continue
		}
		for _, m := range replies {
			if m.Header.Type == netlink.Error {
				want--
			}
		}
	}
	return first
}

// tableOps creates the trace table, owned by the socket or not, and its two chains.
func tableOps(table string, owner bool) ([]netlink.Message, error) {
	var flags uint32
	if owner {
		flags = tableFlagOwner
	}
	t, err := op(unix.NFT_MSG_NEWTABLE, netlink.Create|netlink.Excl, []netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: cstr(table)},
		{Type: unix.NFTA_TABLE_FLAGS, Data: be32(flags)},
	})
	if err != nil {
		return nil, err
	}
	ops := []netlink.Message{t}
	prio := int32(tracePriority)
	for _, ch := range []struct {
		name string
		hook uint32
	}{{chainPrerouting, unix.NF_INET_PRE_ROUTING}, {chainOutput, unix.NF_INET_LOCAL_OUT}} {
		hook, err := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_HOOK_HOOKNUM, Data: be32(ch.hook)},
			{Type: unix.NFTA_HOOK_PRIORITY, Data: be32(uint32(prio))},
		})
		if err != nil {
			return nil, err
		}
		c, err := op(unix.NFT_MSG_NEWCHAIN, netlink.Create, []netlink.Attribute{
			{Type: unix.NFTA_CHAIN_TABLE, Data: cstr(table)},
			{Type: unix.NFTA_CHAIN_NAME, Data: cstr(ch.name)},
			{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: hook},
			{Type: unix.NFTA_CHAIN_TYPE, Data: cstr("filter")},
			{Type: unix.NFTA_CHAIN_POLICY, Data: be32(nfAccept)},
		})
		if err != nil {
			return nil, err
		}
		ops = append(ops, c)
	}
	return ops, nil
}

// delTableOp deletes the trace table with everything in it.
func delTableOp(table string) (netlink.Message, error) {
	return op(unix.NFT_MSG_DELTABLE, 0, []netlink.Attribute{{Type: unix.NFTA_TABLE_NAME, Data: cstr(table)}})
}

// The trace rules' limit, per rule (a flow's direction in one chain): a burst of TraceBurst
// packets, then TraceRate a second.
const (
	TraceRate  = 20
	TraceBurst = 20
)

// flowOps adds the rules that mark a flow's packets for tracing, in both directions, to both
// chains.
func flowOps(table string, f dropwatch.Flow) ([]netlink.Message, error) {
	matches, err := flowMatches(f)
	if err != nil {
		return nil, err
	}
	setTrace := []expr.Any{
		// Only a flow's first packets, and then a few a second, are traced: a flood of one
		// flow (every packet dropped) otherwise floods the trace socket with several
		// messages a packet, costing more than the capture itself. The first dropped
		// packets of a connection are traced, so a drop's rule is still named.
		&expr.Limit{Type: expr.LimitTypePkts, Rate: TraceRate, Unit: expr.LimitTimeSecond, Burst: TraceBurst},
		&expr.Immediate{Register: 1, Data: []byte{1}},
		&expr.Meta{Key: expr.MetaKeyNFTRACE, SourceRegister: true, Register: 1},
	}
	comment := userdata.AppendString(nil, userdata.TypeComment, "roundtrip: trace "+f.String())
	var ops []netlink.Message
	for _, chain := range []string{chainPrerouting, chainOutput} {
		for _, m := range matches {
			var elems []netlink.Attribute
			for _, e := range append(m, setTrace...) {
				b, err := expr.Marshal(unix.NFPROTO_INET, e)
				if err != nil {
					return nil, fmt.Errorf("encoding the trace rule for %s: %w", f, err)
				}
				elems = append(elems, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: b})
			}
			list, err := netlink.MarshalAttributes(elems)
			if err != nil {
				return nil, err
			}
			r, err := op(unix.NFT_MSG_NEWRULE, netlink.Create|unix.NLM_F_APPEND, []netlink.Attribute{
				{Type: unix.NFTA_RULE_TABLE, Data: cstr(table)},
				{Type: unix.NFTA_RULE_CHAIN, Data: cstr(chain)},
				{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: list},
				{Type: unix.NFTA_RULE_USERDATA, Data: comment},
			})
			if err != nil {
				return nil, err
			}
			ops = append(ops, r)
		}
	}
	return ops, nil
}

// flowMatches returns the match expressions of a flow: one list per direction (one only
// when both are the same), and per protocol when ports are given without one.
func flowMatches(f dropwatch.Flow) ([][]expr.Any, error) {
	src, dst := f.Src.Unmap(), f.Dst.Unmap()
	if src.IsValid() && dst.IsValid() && src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("bad flow %s: source and destination are of different IP versions", f)
	}
	protos := []uint8{f.Proto}
	if f.Proto == 0 && (f.SrcPort != 0 || f.DstPort != 0) {
		protos = []uint8{unix.IPPROTO_TCP, unix.IPPROTO_UDP}
	} else if f.Proto != unix.IPPROTO_TCP && f.Proto != unix.IPPROTO_UDP && (f.SrcPort != 0 || f.DstPort != 0) {
		return nil, fmt.Errorf("bad flow %s: ports need tcp or udp", f)
	}
	type dir struct {
		src, dst     netip.Addr
		sport, dport uint16
	}
	dirs := []dir{{src, dst, f.SrcPort, f.DstPort}}
	if rev := (dir{dst, src, f.DstPort, f.SrcPort}); rev != dirs[0] {
		dirs = append(dirs, rev)
	}
	var out [][]expr.Any
	for _, p := range protos {
		for _, d := range dirs {
			out = append(out, matchExprs(p, d.src, d.dst, d.sport, d.dport))
		}
	}
	return out, nil
}

// matchExprs matches one direction: meta nfproto, meta l4proto, addresses, ports.
func matchExprs(proto uint8, src, dst netip.Addr, sport, dport uint16) []expr.Any {
	var e []expr.Any
	cmp := func(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }
	v6 := src.Is6() || dst.Is6()
	if src.IsValid() || dst.IsValid() {
		fam := byte(unix.NFPROTO_IPV4)
		if v6 {
			fam = unix.NFPROTO_IPV6
		}
		e = append(e, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, cmp([]byte{fam}))
	}
	if proto != 0 {
		e = append(e, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmp([]byte{proto}))
	}
	for i, a := range []netip.Addr{src, dst} {
		if !a.IsValid() {
			continue
		}
		off, b := uint32(12+4*i), a.AsSlice()
		if v6 {
			off = uint32(8 + 16*i)
		}
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(len(b))}, cmp(b))
	}
	for i, p := range []uint16{sport, dport} {
		if p == 0 {
			continue
		}
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: uint32(2 * i), Len: 2},
			cmp(binary.BigEndian.AppendUint16(nil, p)))
	}
	return e
}
