package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// Batches of routes and rules are journaled in a compact binary form rather than as JSON: a
// million-route apply journals a million routes, and reading them back for the apply and for a
// rollback must cost little next to the kernel's work. Strings repeat (devices, protocols) and
// are written once per batch. The undo of most changes is the mirror of the change (an added
// route is deleted, a deleted one added back as it was) and is not written at all; only undos
// that differ (a replaced route comes back as it was before) are.

const (
	undoMirror   = 0 // the undo is the change with add and delete swapped
	undoExplicit = 1 // the undo changes follow
)

type stepEncoder struct {
	b       []byte
	strings map[string]int
}

func (e *stepEncoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *stepEncoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }

func (e *stepEncoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *stepEncoder) str(s string) {
	if i, ok := e.strings[s]; ok {
		e.uvarint(uint64(i + 1))
		return
	}
	e.uvarint(0)
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
	if e.strings == nil {
		e.strings = map[string]int{}
	}
	e.strings[s] = len(e.strings)
}

func (e *stepEncoder) addr(a netip.Addr) {
	switch {
	case !a.IsValid():
		e.b = append(e.b, 0)
	case a.Is4():
		b := a.As4()
		e.b = append(append(e.b, 4), b[:]...)
	default:
		b := a.As16()
		e.b = append(append(e.b, 6), b[:]...)
		e.str(a.Zone())
	}
}

func (e *stepEncoder) prefix(p netip.Prefix) {
	e.addr(p.Addr())
	if p.IsValid() {
		e.b = append(e.b, byte(p.Bits()))
	}
}

func (e *stepEncoder) route(r *model.Route) {
	e.b = append(e.b, byte(r.Family))
	e.varint(int64(r.Table))
	e.str(r.Type)
	e.prefix(r.Dst)
	e.b = append(e.b, r.TOS)
	e.addr(r.Gateway)
	e.str(r.Dev)
	e.addr(r.Src)
	e.varint(int64(r.Metric))
	e.str(r.Scope)
	e.str(r.Protocol)
	e.bool(r.OnLink)
	e.uvarint(uint64(len(r.Nexthops)))
	for _, nh := range r.Nexthops {
		e.addr(nh.Gateway)
		e.str(nh.Dev)
		e.varint(int64(nh.Weight))
		e.bool(nh.OnLink)
	}
}

func (e *stepEncoder) optInt(p *int) {
	e.bool(p != nil)
	if p != nil {
		e.varint(int64(*p))
	}
}

func (e *stepEncoder) rule(r *model.Rule) {
	e.b = append(e.b, byte(r.Family))
	e.varint(int64(r.Priority))
	e.bool(r.Not)
	e.prefix(r.Src)
	e.prefix(r.Dst)
	e.str(r.IIF)
	e.str(r.OIF)
	e.bool(r.Mark != nil)
	if r.Mark != nil {
		e.uvarint(uint64(r.Mark.Value))
		e.uvarint(uint64(r.Mark.Mask))
	}
	e.b = append(e.b, r.TOS)
	e.varint(int64(r.IPProto))
	for _, pr := range []*model.PortRange{r.SPort, r.DPort} {
		e.bool(pr != nil)
		if pr != nil {
			e.uvarint(uint64(pr.Start))
			e.uvarint(uint64(pr.End))
		}
	}
	e.bool(r.UIDRange != nil)
	if r.UIDRange != nil {
		e.uvarint(uint64(r.UIDRange.Start))
		e.uvarint(uint64(r.UIDRange.End))
	}
	e.optInt(r.SuppressPrefixLen)
	e.optInt(r.SuppressIfGroup)
	e.str(r.Action)
	e.varint(int64(r.Table))
	e.varint(int64(r.Goto))
	e.varint(int64(r.Protocol))
}

var opCodes = []plan.Op{plan.OpAdd, plan.OpReplace, plan.OpSet, plan.OpDelete, plan.OpFlush}

func (e *stepEncoder) change(c plan.Change) {
	e.b = append(e.b, byte(slices.Index(opCodes, c.Op)))
	if c.Route != nil {
		e.route(c.Route)
	} else {
		e.rule(c.Rule)
	}
}

// encodeBatch encodes the changes of a batch step (all routes or all rules) with their undos.
func encodeBatch(st *Step) []byte { return appendBatch(nil, st, nil) }

// appendBatch appends the encoding of a batch to b, with strs (emptied first) as its table of
// strings, so that a writer can reuse both.
func appendBatch(b []byte, st *Step, strs map[string]int) []byte {
	clear(strs)
	e := stepEncoder{b: b, strings: strs}
	kind := byte('r')
	if st.Changes[0].Kind == plan.KindRule {
		kind = 'u'
	}
	e.b = append(e.b, kind)
	e.uvarint(uint64(st.First))
	e.uvarint(uint64(len(st.Changes)))
	for i, c := range st.Changes {
		e.change(c)
		u := st.Undos[i]
		if u == nil {
			e.b = append(e.b, undoMirror)
			continue
		}
		e.b = append(e.b, undoExplicit)
		e.uvarint(uint64(len(u)))
		for _, x := range u {
			e.change(x)
		}
	}
	return e.b
}

// batches recycles decoded batches: the apply reads a few hundred of them, each holding
// thousands of routes, one after the other (recycle).
var batches = sync.Pool{New: func() any { return new(Step) }}

// recycle gives a batch that is no longer used back for the next one to be decoded into.
func recycle(st *Step) {
	if st == nil || !st.Batch {
		return
	}
	clear(st.Changes)
	clear(st.Undos)
	clear(st.routes)
	batches.Put(st)
}

type stepDecoder struct {
	b       []byte
	err     error
	strings []string
	routes  []model.Route // allocated for the whole batch at once
}

var errShortStep = errors.New("the step record ends early")

func (d *stepDecoder) byte() byte {
	if len(d.b) == 0 {
		d.err = errShortStep
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *stepDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShortStep
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *stepDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShortStep
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *stepDecoder) bytes(n int) []byte {
	if n < 0 || n > len(d.b) {
		d.err = errShortStep
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *stepDecoder) str() string {
	k := d.uvarint()
	if k > 0 {
		if k > uint64(len(d.strings)) {
			d.err = fmt.Errorf("string %d of %d", k, len(d.strings))
			return ""
		}
		return d.strings[k-1]
	}
	s := string(d.bytes(int(min(d.uvarint(), uint64(len(d.b)+1)))))
	d.strings = append(d.strings, s)
	return s
}

func (d *stepDecoder) addr() netip.Addr {
	switch d.byte() {
	case 0:
		return netip.Addr{}
	case 4:
		if v := d.bytes(4); len(v) == 4 {
			return netip.AddrFrom4([4]byte(v))
		}
		return netip.Addr{}
	case 6:
		v := d.bytes(16)
		if len(v) != 16 {
			return netip.Addr{}
		}
		a := netip.AddrFrom16([16]byte(v))
		if z := d.str(); z != "" {
			a = a.WithZone(z)
		}
		return a
	}
	d.err = errors.New("bad address")
	return netip.Addr{}
}

func (d *stepDecoder) prefix() netip.Prefix {
	a := d.addr()
	if !a.IsValid() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(a, int(d.byte()))
}

func (d *stepDecoder) bool() bool { return d.byte() != 0 }

func (d *stepDecoder) route() *model.Route {
	var r *model.Route
	if len(d.routes) > 0 {
		r, d.routes = &d.routes[0], d.routes[1:]
	} else {
		r = new(model.Route)
	}
	*r = model.Route{Family: inet.Family(d.byte()), Table: int(d.varint()), Type: d.str(), Dst: d.prefix(), TOS: d.byte(),
		Gateway: d.addr(), Dev: d.str(), Src: d.addr(), Metric: int(d.varint()), Scope: d.str(), Protocol: d.str(), OnLink: d.bool()}
	if n := d.uvarint(); n > 0 && d.err == nil {
		if n > uint64(len(d.b)) {
			d.err = errShortStep
			return r
		}
		r.Nexthops = make([]model.Nexthop, n)
		for i := range r.Nexthops {
			r.Nexthops[i] = model.Nexthop{Gateway: d.addr(), Dev: d.str(), Weight: int(d.varint()), OnLink: d.bool()}
		}
	}
	return r
}

func (d *stepDecoder) optInt() *int {
	if !d.bool() {
		return nil
	}
	v := int(d.varint())
	return &v
}

func (d *stepDecoder) rule() *model.Rule {
	r := &model.Rule{Family: inet.Family(d.byte()), Priority: int(d.varint()), Not: d.bool(), Src: d.prefix(), Dst: d.prefix(), IIF: d.str(), OIF: d.str()}
	if d.bool() {
		r.Mark = &model.MarkMatch{Value: uint32(d.uvarint()), Mask: uint32(d.uvarint())}
	}
	r.TOS = d.byte()
	r.IPProto = int(d.varint())
	for _, pr := range []**model.PortRange{&r.SPort, &r.DPort} {
		if d.bool() {
			*pr = &model.PortRange{Start: uint16(d.uvarint()), End: uint16(d.uvarint())}
		}
	}
	if d.bool() {
		r.UIDRange = &model.UIDRange{Start: uint32(d.uvarint()), End: uint32(d.uvarint())}
	}
	r.SuppressPrefixLen = d.optInt()
	r.SuppressIfGroup = d.optInt()
	r.Action = d.str()
	r.Table = int(d.varint())
	r.Goto = int(d.varint())
	r.Protocol = int(d.varint())
	return r
}

func (d *stepDecoder) change(kind plan.ChangeKind) plan.Change {
	op := d.byte()
	if int(op) >= len(opCodes) {
		d.err = fmt.Errorf("bad op %d", op)
		return plan.Change{}
	}
	c := plan.Change{Kind: kind, Op: opCodes[op]}
	if kind == plan.KindRoute {
		c.Route = d.route()
	} else {
		c.Rule = d.rule()
	}
	return c
}

// decodeBatch decodes what encodeBatch encoded.
func decodeBatch(b []byte) (*Step, error) {
	d := stepDecoder{b: b}
	kind := plan.KindRoute
	switch d.byte() {
	case 'r':
	case 'u':
		kind = plan.KindRule
	default:
		return nil, errors.New("not a batch of routes or rules")
	}
	st := batches.Get().(*Step)
	st.Batch, st.First = true, int(d.uvarint())
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return nil, errShortStep
	}
	st.Changes = slices.Grow(st.Changes[:0], int(n))
	st.Undos = slices.Grow(st.Undos[:0], int(n))
	if kind == plan.KindRoute {
		st.routes = slices.Grow(st.routes[:0], int(n))[:n]
		d.routes = st.routes
	}
	for range n {
		st.Changes = append(st.Changes, d.change(kind))
		var u []plan.Change
		switch d.byte() {
		case undoMirror:
		case undoExplicit:
			m := d.uvarint()
			if m > uint64(len(d.b)) {
				return nil, errShortStep
			}
			u = make([]plan.Change, 0, m)
			for range m {
				u = append(u, d.change(kind))
			}
		default:
			d.err = errors.New("bad undo marker")
		}
		st.Undos = append(st.Undos, u)
		if d.err != nil {
			return nil, d.err
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the batch", len(d.b))
	}
	return st, nil
}
