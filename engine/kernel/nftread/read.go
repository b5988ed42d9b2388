// Package nftread reads a network namespace's nftables ruleset from the kernel over netlink
// into the engine/nft model, with `nft -j list ruleset` as the fallback for what netlink
// decoding cannot model.
package nftread

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"syscall"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel"
	"roundtrip/engine/nft"
)

// Options tune a read.
type Options struct {
	// Runner runs `nft -j list ruleset` for the fallback; nil runs the nft binary inside the
	// namespace. With NoFallback set, nft is never run and unknown expressions stay without
	// their text.
	Runner     kernel.Runner
	NoFallback bool
	// NoIfnames skips resolving interface indexes (`iif`, `oif`) to names for the rule text.
	NoIfnames bool
}

// ErrUnsupported is wrapped when the kernel has no nf_tables (the module is missing).
var ErrUnsupported = kernel.ErrNFTUnsupported

// kernel.Read reads the nft ruleset through this package when it is linked in. A host whose
// tables are all iptables-nft's (a kubernetes node with thousands of rules) is not read in
// full: iptables-save has shown those rules already.
func init() {
	kernel.RegisterNFTReader(func(ctx context.Context, ns kernel.Namespace) (*nft.Ruleset, error) {
		if native, err := MayHaveNative(ns); err == nil && !native {
			return &nft.Ruleset{HostOrder: hostOrder}, nil
		}
		return Read(ctx, ns, Options{})
	})
}

// MayHaveNative reports whether the namespace may hold a table not written by the
// iptables-nft family of tools, from the tables, chains and sets alone (no rules, no
// elements): false only when every table has exactly iptables-nft's layout, which
// nft.DetectOrigins labels iptables-nft whatever the rules hold.
func MayHaveNative(ns kernel.Namespace) (bool, error) {
	conn, err := dial(ns)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	tables := map[tableKey]*nft.Table{}
	rs := &nft.Ruleset{}
	msgs, err := dump(conn, unix.NFT_MSG_GETTABLE, unix.AF_UNSPEC, nil)
	if err != nil {
		return false, fmt.Errorf("listing tables: %w", err)
	}
	for _, m := range msgs {
		t, err := decodeTable(m)
		if err != nil || t == nil {
			return true, err
		}
		rs.Tables = append(rs.Tables, t)
		tables[tableKey{t.Family, t.Name}] = t
	}
	if len(rs.Tables) == 0 {
		return false, nil
	}
	lookup := func(m msg, name string) *nft.Table {
		f, ok := nft.FamilyFromNFProto(m.family)
		if !ok {
			return nil
		}
		return tables[tableKey{f, name}]
	}
	if msgs, err = dump(conn, unix.NFT_MSG_GETCHAIN, unix.AF_UNSPEC, nil); err != nil {
		return false, fmt.Errorf("listing chains: %w", err)
	}
	for _, m := range msgs {
		tname, c, err := decodeChain(m)
		if err != nil {
			return true, err
		}
		if t := lookup(m, tname); t != nil && c != nil {
			t.Chains = append(t.Chains, c)
		}
	}
	if msgs, err = dump(conn, unix.NFT_MSG_GETSET, unix.AF_UNSPEC, nil); err != nil {
		return false, fmt.Errorf("listing sets: %w", err)
	}
	for _, m := range msgs {
		if t := lookup(m, tableName(m.data, unix.NFTA_SET_TABLE)); t != nil {
			t.Sets = append(t.Sets, &nft.Set{})
		}
	}
	nft.DetectOrigins(rs)
	for _, t := range rs.Tables {
		if t.HasNative() {
			return true, nil
		}
	}
	return false, nil
}

// genRetries bounds how often a read is restarted because the ruleset changed under it.
const genRetries = 5

// Read reads the whole nftables ruleset of the namespace (every family, table, chain, rule,
// set with its elements, flowtable and named object) as one consistent generation: the
// generation id is read before and after, and the read is repeated if a change came in
// between, as nft itself does.
func Read(ctx context.Context, ns kernel.Namespace, opts Options) (*nft.Ruleset, error) {
	conn, err := dial(ns)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var rs *nft.Ruleset
	var unknown bool
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		before, err := generation(conn)
		if err != nil {
			return nil, fmt.Errorf("reading the nftables generation in %s: %w", ns, err)
		}
		rs, unknown, err = readAll(conn)
		if err != nil && !errors.Is(err, errChanged) {
			return nil, fmt.Errorf("reading nftables in %s: %w", ns, err)
		}
		after, gerr := generation(conn)
		if gerr != nil {
			return nil, fmt.Errorf("reading the nftables generation in %s: %w", ns, gerr)
		}
		if err == nil && before == after {
			rs.Generation = after
			break
		}
		if attempt+1 >= genRetries {
			return nil, fmt.Errorf("reading nftables in %s: the ruleset changed during %d reads in a row; try again when it is quiet", ns, genRetries)
		}
	}
	if unknown && !opts.NoFallback {
		runner := opts.Runner
		if runner == nil {
			runner = ns.Runner()
		}
		if err := fillFromJSON(ctx, rs, runner); err != nil {
			rs.Notes = append(rs.Notes, "some expressions could not be decoded from netlink and `nft -j list ruleset` failed too: "+err.Error())
		}
	}
	var names map[uint32]string
	if !opts.NoIfnames {
		names = ifnames(ns)
	}
	nft.DetectOrigins(rs)
	renderAll(rs, names)
	return rs, nil
}

// renderAll sets every rule's Text.
func renderAll(rs *nft.Ruleset, names map[uint32]string) {
	r := nft.NewRenderer(rs.HostOrder)
	if names != nil {
		r.Ifname = func(i uint32) (string, bool) { n, ok := names[i]; return n, ok }
	}
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			for _, rule := range c.Rules {
				rule.Text = r.Rule(t, rule)
			}
		}
	}
}

// ifnames maps the namespace's interface indexes to names, for `iif`/`oif` in rule text.
func ifnames(ns kernel.Namespace) map[uint32]string {
	h, err := ns.Handle()
	if err != nil {
		return nil
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil
	}
	out := make(map[uint32]string, len(links))
	for _, l := range links {
		a := l.Attrs()
		out[uint32(a.Index)] = a.Name
	}
	return out
}

// dial opens a NETLINK_NETFILTER socket inside the namespace.
func dial(ns kernel.Namespace) (*netlink.Conn, error) {
	cfg := &netlink.Config{}
	if ns.Name != "" {
		h, err := netns.GetFromName(ns.Name)
		if err != nil {
			return nil, fmt.Errorf("opening network namespace %s: %w (is it listed by `ip netns list`?)", ns.Name, err)
		}
		defer h.Close()
		cfg.NetNS = int(h)
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening netfilter netlink in %s: %w", ns, err)
	}
	return c, nil
}

var hostOrder = func() string {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return "little"
	}
	return "big"
}()

func msgType(t uint16) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | t)
}

// nfgen is the nfgenmsg header every nf_tables message starts with.
func nfgen(family uint8) []byte { return []byte{family, unix.NFNETLINK_V0, 0, 0} }

var errChanged = errors.New("the ruleset changed during the dump")

// dumpBufSize is the receive buffer for dumps. The kernel sizes each dump round to the
// largest buffer recvmsg was called with (up to 32 KiB, netlink_recvmsg's max_recvmsg_len);
// mdlayher/netlink peeks and reads each message with a buffer of its exact size, which keeps
// rounds at one page. Set element dumps restart their walk of the set on every round
// (nft_rbtree_walk skips what was sent), so small rounds make a 100k-element read quadratic:
// 4 s of kernel time instead of 0.5 s. nft reads with 64 KiB; so does this.
const dumpBufSize = 64 << 10

// dump runs a dump request and returns each reply's family and attributes. A dump the kernel
// marks as interrupted (NLM_F_DUMP_INTR) returns errChanged.
func dump(conn *netlink.Conn, t uint16, family uint8, attrs []netlink.Attribute) ([]msg, error) {
	data := nfgen(family)
	if len(attrs) > 0 {
		b, err := netlink.MarshalAttributes(attrs)
		if err != nil {
			return nil, err
		}
		data = append(data, b...)
	}
	req, err := conn.Send(netlink.Message{
		Header: netlink.Header{Type: msgType(t), Flags: netlink.Request | netlink.Dump},
		Data:   data,
	})
	if err != nil {
		return nil, err
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, dumpBufSize)
	var out []msg
	for {
		var n int
		var rerr error
		if err := raw.Read(func(fd uintptr) bool {
			n, _, _, _, rerr = unix.Recvmsg(int(fd), buf, nil, 0)
			// a signal (EINTR) or no data yet: wait for the socket and read again
			return rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK && rerr != unix.EINTR
		}); err != nil {
			return nil, err
		}
		if rerr != nil {
			return nil, rerr
		}
		// the messages are kept: parse a copy, buf is read into again
		msgs, err := syscall.ParseNetlinkMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			return nil, fmt.Errorf("parsing a netlink reply: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Header.Sequence {
				continue
			}
			if m.Header.Flags&uint16(netlink.DumpInterrupted) != 0 {
				// drain the rest of this dump before reporting the change
				return drainDump(raw, buf, req.Header.Sequence, errChanged)
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, fmt.Errorf("a short netlink error reply")
				}
				errno := -int32(binary.NativeEndian.Uint32(m.Data[:4]))
				if errno == 0 {
					return out, nil
				}
				err := syscall.Errno(errno)
				if err == unix.EINTR {
					return nil, errChanged
				}
				if err == unix.EPROTONOSUPPORT || err == unix.EAFNOSUPPORT {
					return nil, fmt.Errorf("%w: %v (load the nf_tables module)", ErrUnsupported, err)
				}
				return nil, err
			}
			if len(m.Data) < 4 {
				return nil, fmt.Errorf("a reply of %d bytes is shorter than its header", len(m.Data))
			}
			out = append(out, msg{family: m.Data[0], data: m.Data[4:]})
		}
	}
}

// drainDump reads a dump to its end (so the socket is clean for the next request) and
// returns err.
func drainDump(raw syscall.RawConn, buf []byte, seq uint32, err error) ([]msg, error) {
	for {
		var n int
		var rerr error
		if e := raw.Read(func(fd uintptr) bool {
			n, _, _, _, rerr = unix.Recvmsg(int(fd), buf, nil, 0)
			return rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK && rerr != unix.EINTR
		}); e != nil || rerr != nil {
			return nil, err
		}
		msgs, perr := syscall.ParseNetlinkMessage(buf[:n])
		if perr != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Seq == seq && (m.Header.Type == unix.NLMSG_DONE || m.Header.Type == unix.NLMSG_ERROR) {
				return nil, err
			}
		}
	}
}

type msg struct {
	family uint8
	data   []byte
}

// generation reads the ruleset generation id (NFT_MSG_GETGEN).
func generation(conn *netlink.Conn) (uint32, error) {
	replies, err := conn.Execute(netlink.Message{
		Header: netlink.Header{Type: msgType(unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   nfgen(unix.AF_UNSPEC),
	})
	if err != nil {
		return 0, err
	}
	for _, r := range replies {
		if len(r.Data) < 4 {
			continue
		}
		attrs, err := attrList(r.Data[4:])
		if err != nil {
			return 0, err
		}
		if id, ok := attrs[unix.NFTA_GEN_ID]; ok {
			return be32(id), nil
		}
	}
	return 0, fmt.Errorf("no generation id in the reply")
}

type tableKey struct {
	family nft.Family
	name   string
}

// readAll dumps every object type once and assembles the ruleset.
func readAll(conn *netlink.Conn) (*nft.Ruleset, bool, error) {
	rs := &nft.Ruleset{HostOrder: hostOrder}
	tables := map[tableKey]*nft.Table{}
	msgs, err := dump(conn, unix.NFT_MSG_GETTABLE, unix.AF_UNSPEC, nil)
	if err != nil {
		return nil, false, fmt.Errorf("listing tables: %w", err)
	}
	for _, m := range msgs {
		t, err := decodeTable(m)
		if err != nil {
			return nil, false, fmt.Errorf("decoding a table: %w", err)
		}
		if t == nil {
			continue
		}
		rs.Tables = append(rs.Tables, t)
		tables[tableKey{t.Family, t.Name}] = t
	}
	lookup := func(m msg, name string) *nft.Table {
		f, ok := nft.FamilyFromNFProto(m.family)
		if !ok {
			return nil
		}
		return tables[tableKey{f, name}]
	}

	msgs, err = dump(conn, unix.NFT_MSG_GETCHAIN, unix.AF_UNSPEC, nil)
	if err != nil {
		return nil, false, fmt.Errorf("listing chains: %w", err)
	}
	for _, m := range msgs {
		tname, c, err := decodeChain(m)
		if err != nil {
			return nil, false, fmt.Errorf("decoding a chain: %w", err)
		}
		if t := lookup(m, tname); t != nil && c != nil {
			t.Chains = append(t.Chains, c)
		}
	}

	msgs, err = dump(conn, unix.NFT_MSG_GETSET, unix.AF_UNSPEC, nil)
	if err != nil {
		return nil, false, fmt.Errorf("listing sets: %w", err)
	}
	for _, m := range msgs {
		t := lookup(m, tableName(m.data, unix.NFTA_SET_TABLE))
		if t == nil {
			continue
		}
		s, err := decodeSet(m)
		if err != nil {
			return nil, false, fmt.Errorf("decoding a set of table %s: %w", t, err)
		}
		if err := readElements(conn, t, s); err != nil {
			return nil, false, err
		}
		t.Sets = append(t.Sets, s)
	}

	unknown := false
	msgs, err = dump(conn, unix.NFT_MSG_GETRULE, unix.AF_UNSPEC, nil)
	if err != nil {
		return nil, false, fmt.Errorf("listing rules: %w", err)
	}
	for _, m := range msgs {
		tname, cname, r, unk, err := decodeRule(m)
		if err != nil {
			return nil, false, fmt.Errorf("decoding a rule: %w", err)
		}
		t := lookup(m, tname)
		if t == nil {
			continue
		}
		c := t.Chain(cname)
		if c == nil {
			return nil, false, errChanged
		}
		c.Rules = append(c.Rules, r)
		unknown = unknown || unk
	}

	msgs, err = dump(conn, unix.NFT_MSG_GETFLOWTABLE, unix.AF_UNSPEC, nil)
	if err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		return nil, false, fmt.Errorf("listing flowtables: %w", err)
	}
	for _, m := range msgs {
		t := lookup(m, tableName(m.data, 1))
		if t == nil {
			continue
		}
		ft, err := decodeFlowtable(m)
		if err != nil {
			return nil, false, fmt.Errorf("decoding a flowtable: %w", err)
		}
		t.Flowtables = append(t.Flowtables, ft)
	}

	msgs, err = dump(conn, unix.NFT_MSG_GETOBJ, unix.AF_UNSPEC, nil)
	if err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		return nil, false, fmt.Errorf("listing named objects: %w", err)
	}
	for _, m := range msgs {
		t := lookup(m, tableName(m.data, 1))
		if t == nil {
			continue
		}
		if o := decodeObject(m); o != nil {
			t.Objects = append(t.Objects, o)
		}
	}
	return rs, unknown, nil
}

func tableName(data []byte, attr uint16) string {
	attrs, err := attrList(data)
	if err != nil {
		return ""
	}
	return cstring(attrs[attr])
}

// udataComment takes the comment out of libnftnl's userdata TLVs (type, length, value);
// malformed userdata yields no comment rather than a panic.
func udataComment(b []byte, commentType byte) string {
	for len(b) >= 2 {
		t, n := b[0], int(b[1])
		if len(b) < 2+n {
			return ""
		}
		if t == commentType {
			return cstring(b[2 : 2+n])
		}
		b = b[2+n:]
	}
	return ""
}

func decodeTable(m msg) (*nft.Table, error) {
	f, ok := nft.FamilyFromNFProto(m.family)
	if !ok {
		return nil, nil
	}
	attrs, err := attrList(m.data)
	if err != nil {
		return nil, err
	}
	t := &nft.Table{Family: f, Name: cstring(attrs[unix.NFTA_TABLE_NAME]), Handle: be64(attrs[4])} // NFTA_TABLE_HANDLE
	flags, _ := nft.TableFlagNames(be32(attrs[unix.NFTA_TABLE_FLAGS]))
	t.Flags = flags
	t.Comment = udataComment(attrs[6], 0)
	return t, nil
}

func decodeChain(m msg) (string, *nft.Chain, error) {
	f, ok := nft.FamilyFromNFProto(m.family)
	if !ok {
		return "", nil, nil
	}
	attrs, err := attrList(m.data)
	if err != nil {
		return "", nil, err
	}
	c := &nft.Chain{Name: cstring(attrs[unix.NFTA_CHAIN_NAME]), Handle: be64(attrs[unix.NFTA_CHAIN_HANDLE])}
	if hook, ok := attrs[unix.NFTA_CHAIN_HOOK]; ok {
		h, err := attrList(hook)
		if err != nil {
			return "", nil, err
		}
		hk, ok := nft.HookFromNum(f, be32(h[unix.NFTA_HOOK_HOOKNUM]))
		if !ok {
			return "", nil, fmt.Errorf("chain %s: unknown hook %d", c.Name, be32(h[unix.NFTA_HOOK_HOOKNUM]))
		}
		c.Hook = hk
		c.Priority = int32(be32(h[unix.NFTA_HOOK_PRIORITY]))
		if d, ok := h[unix.NFTA_HOOK_DEV]; ok {
			c.Devices = []string{cstring(d)}
		}
		if devs, ok := h[4]; ok { // NFTA_HOOK_DEVS
			c.Devices = deviceList(devs)
		}
		c.Type = nft.ChainType(cstring(attrs[unix.NFTA_CHAIN_TYPE]))
		c.Policy = "accept"
		if p, ok := attrs[unix.NFTA_CHAIN_POLICY]; ok && be32(p) == 0 {
			c.Policy = "drop"
		}
	}
	flags, _ := nft.ChainFlagNames(be32(attrs[10]))
	c.Flags = flags
	c.Comment = udataComment(attrs[12], 0)
	return cstring(attrs[unix.NFTA_CHAIN_TABLE]), c, nil
}

func deviceList(b []byte) []string {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil
	}
	var out []string
	for ad.Next() {
		out = append(out, cstring(ad.Bytes()))
	}
	return out
}

func decodeRule(m msg) (table, chain string, r *nft.Rule, unknown bool, err error) {
	attrs, err := attrList(m.data)
	if err != nil {
		return "", "", nil, false, err
	}
	r = &nft.Rule{Handle: be64(attrs[unix.NFTA_RULE_HANDLE])}
	r.Exprs, unknown, err = decodeExprs(m.family, attrs[unix.NFTA_RULE_EXPRESSIONS])
	if err != nil {
		return "", "", nil, false, err
	}
	if r.Exprs == nil {
		r.Exprs = []nft.Expr{}
	}
	r.Comment = udataComment(attrs[unix.NFTA_RULE_USERDATA], 0)
	return cstring(attrs[unix.NFTA_RULE_TABLE]), cstring(attrs[unix.NFTA_RULE_CHAIN]), r, unknown, nil
}

func decodeSet(m msg) (*nft.Set, error) {
	attrs, err := attrList(m.data)
	if err != nil {
		return nil, err
	}
	s := &nft.Set{Name: cstring(attrs[unix.NFTA_SET_NAME]), Handle: be64(attrs[16])}
	flags, _ := nft.SetFlagNames(be32(attrs[unix.NFTA_SET_FLAGS]))
	s.Flags = flags
	kt := be32(attrs[unix.NFTA_SET_KEY_TYPE])
	if name, ok := nft.DatatypeName(kt); ok {
		s.KeyType = name
	} else {
		s.KeyType = "integer"
	}
	s.KeyLen = be32(attrs[unix.NFTA_SET_KEY_LEN])
	if dt, ok := attrs[unix.NFTA_SET_DATA_TYPE]; ok {
		if name, ok := nft.DatatypeName(be32(dt)); ok {
			s.DataType = name
		} else {
			s.DataType = "integer"
		}
		s.DataLen = be32(attrs[unix.NFTA_SET_DATA_LEN])
		if s.DataType == "verdict" {
			s.DataLen = 0
		}
	}
	if ot, ok := attrs[15]; ok {
		s.ObjType = objTypeNames[be32(ot)]
		s.Flags = slices.DeleteFunc(s.Flags, func(f string) bool { return f == "map" && s.DataType == "" })
	}
	if t, ok := attrs[unix.NFTA_SET_TIMEOUT]; ok {
		s.TimeoutMS = be64(t)
	}
	if desc, ok := attrs[unix.NFTA_SET_DESC]; ok {
		d, err := attrList(desc)
		if err == nil {
			s.Size = be32(d[unix.NFTA_SET_DESC_SIZE])
			if concat, ok := d[2]; ok {
				ad, err := netlink.NewAttributeDecoder(concat)
				if err == nil {
					for ad.Next() {
						f, err := attrList(ad.Bytes())
						if err == nil {
							s.Fields = append(s.Fields, be32(f[1]))
						}
					}
				}
			}
		}
	}
	if ud, ok := attrs[unix.NFTA_SET_USERDATA]; ok {
		s.Comment = udataComment(ud, 7)
	}
	return s, nil
}

// readElements dumps a set's elements and joins interval start/end pairs into one element.
func readElements(conn *netlink.Conn, t *nft.Table, s *nft.Set) error {
	msgs, err := dump(conn, unix.NFT_MSG_GETSETELEM, t.Family.NFProto(), []netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: append([]byte(t.Name), 0)},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: append([]byte(s.Name), 0)},
	})
	if err != nil {
		if errors.Is(err, errChanged) {
			return err
		}
		return fmt.Errorf("listing the elements of set %s in table %s: %w", s.Name, t, err)
	}
	type raw struct {
		el  nft.Element
		end bool
	}
	var raws []raw
	for _, m := range msgs {
		attrs, err := attrList(m.data)
		if err != nil {
			return err
		}
		ad, err := netlink.NewAttributeDecoder(attrs[unix.NFTA_SET_ELEM_LIST_ELEMENTS])
		if err != nil {
			return err
		}
		for ad.Next() {
			el, end, err := decodeElement(ad.Bytes())
			if err != nil {
				return fmt.Errorf("decoding an element of set %s in table %s: %w", s.Name, t, err)
			}
			raws = append(raws, raw{el, end})
		}
		if err := ad.Err(); err != nil {
			return err
		}
	}
	interval := s.Has("interval") && len(s.Fields) == 0
	if !interval {
		s.Elements = make([]nft.Element, 0, len(raws))
		for _, r := range raws {
			if r.end {
				continue
			}
			s.Elements = append(s.Elements, r.el)
		}
		return nil
	}
	// rbtree intervals come as a start element and an end-flag element holding the first key
	// after the interval; sort by key (an end before a start at the same key) and pair them.
	sort.SliceStable(raws, func(i, j int) bool {
		c := bytes.Compare(raws[i].el.Key, raws[j].el.Key)
		if c != 0 {
			return c < 0
		}
		return raws[i].end && !raws[j].end
	})
	s.Elements = make([]nft.Element, 0, len(raws)/2+1)
	for i := 0; i < len(raws); i++ {
		if raws[i].end {
			continue
		}
		el := raws[i].el
		if i+1 < len(raws) && raws[i+1].end {
			el.KeyEnd = minusOne(raws[i+1].el.Key)
			i++
		} else {
			el.KeyEnd = bytes.Repeat([]byte{0xff}, len(el.Key))
		}
		s.Elements = append(s.Elements, el)
	}
	return nil
}

// minusOne returns b-1 as a big-endian number.
func minusOne(b []byte) []byte {
	out := slices.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]--
		if out[i] != 0xff {
			break
		}
	}
	return out
}

func decodeElement(b []byte) (nft.Element, bool, error) {
	// A switch over the attributes rather than attrList's map: this runs once per element,
	// hundreds of thousands of times for a large set.
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nft.Element{}, false, err
	}
	var el nft.Element
	end := false
	for ad.Next() {
		v := ad.Bytes()
		switch ad.Type() {
		case unix.NFTA_SET_ELEM_KEY:
			el.Key = dataValue(v)
		case 10: // NFTA_SET_ELEM_KEY_END
			el.KeyEnd = dataValue(v)
		case unix.NFTA_SET_ELEM_DATA:
			if vd, ok := nestedType(v, unix.NFTA_DATA_VERDICT); ok {
				if el.Verdict, err = verdictData(vd); err != nil {
					return el, false, err
				}
			} else {
				el.Data = dataValue(v)
			}
		case unix.NFTA_SET_ELEM_FLAGS:
			end = be32(v)&unix.NFT_SET_ELEM_INTERVAL_END != 0
		case 9: // NFTA_SET_ELEM_OBJREF
			el.Object = cstring(v)
		case unix.NFTA_SET_ELEM_TIMEOUT:
			el.TimeoutMS = be64(v)
		case unix.NFTA_SET_ELEM_EXPIRATION:
			el.ExpiresMS = be64(v)
		case unix.NFTA_SET_ELEM_USERDATA:
			el.Comment = udataComment(v, 0)
		case unix.NFTA_SET_ELEM_EXPR:
			el.Counter = elementCounter(v, false)
		case 11: // NFTA_SET_ELEM_EXPRESSIONS
			el.Counter = elementCounter(v, true)
		}
	}
	return el, end, ad.Err()
}

// dataValue returns the NFTA_DATA_VALUE inside a nested data attribute, copied out of the
// receive buffer.
func dataValue(b []byte) []byte {
	// NFTA_DATA_VALUE is the first (and only) attribute: a 4-byte header, then the value.
	if len(b) >= 4 {
		n := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) & 0x3fff
		if typ == unix.NFTA_DATA_VALUE && n >= 4 && n <= len(b) {
			return append([]byte(nil), b[4:n]...)
		}
	}
	v, _ := nestedType(b, unix.NFTA_DATA_VALUE)
	return v
}

// elementCounter finds a counter among an element's expressions.
func elementCounter(b []byte, list bool) *nft.Counter {
	one := func(e []byte) *nft.Counter {
		a, err := attrList(e)
		if err != nil || cstring(a[unix.NFTA_EXPR_NAME]) != "counter" {
			return nil
		}
		c, err := attrList(a[unix.NFTA_EXPR_DATA])
		if err != nil {
			return nil
		}
		return &nft.Counter{Bytes: be64(c[unix.NFTA_COUNTER_BYTES]), Packets: be64(c[unix.NFTA_COUNTER_PACKETS])}
	}
	if !list {
		return one(b)
	}
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil
	}
	for ad.Next() {
		if c := one(ad.Bytes()); c != nil {
			return c
		}
	}
	return nil
}

func decodeFlowtable(m msg) (*nft.Flowtable, error) {
	attrs, err := attrList(m.data)
	if err != nil {
		return nil, err
	}
	ft := &nft.Flowtable{Name: cstring(attrs[2]), Handle: be64(attrs[5]), Hook: nft.HookIngress}
	if h, ok := attrs[3]; ok {
		ha, err := attrList(h)
		if err != nil {
			return nil, err
		}
		ft.Priority = int32(be32(ha[2]))
		if d, ok := ha[3]; ok {
			ft.Devices = deviceList(d)
		}
	}
	flags := be32(attrs[7])
	if flags&1 != 0 {
		ft.Flags = append(ft.Flags, "offload")
	}
	if flags&2 != 0 {
		ft.Flags = append(ft.Flags, "counter")
	}
	return ft, nil
}

func decodeObject(m msg) *nft.Object {
	attrs, err := attrList(m.data)
	if err != nil {
		return nil
	}
	typ, ok := objTypeNames[be32(attrs[3])]
	if !ok {
		return nil
	}
	o := &nft.Object{Type: typ, Name: cstring(attrs[2]), Handle: be64(attrs[6]), Comment: udataComment(attrs[8], 0)}
	d, _ := attrList(attrs[4])
	switch typ {
	case "counter":
		o.Counter = &nft.Counter{Bytes: be64(d[1]), Packets: be64(d[2])}
	case "quota":
		o.Quota = &nft.Quota{Bytes: be64(d[1]), Over: be32(d[2])&1 != 0, Consumed: be64(d[4])}
	case "limit":
		l := &nft.Limit{Type: "packets", Rate: be64(d[1]), Unit: be64(d[2]), Burst: be32(d[3]), Over: be32(d[5])&1 != 0}
		if be32(d[4]) == 1 {
			l.Type = "bytes"
		}
		if l.Unit == 0 {
			l.Unit = 1
		}
		o.Limit = l
	}
	return o
}
