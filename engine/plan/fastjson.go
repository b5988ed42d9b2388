package plan

import (
	"net/netip"
	"strconv"
	"unicode/utf8"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// fastChange decodes a route or rule change written plainly at the start of b and returns how
// many bytes it took: lowercase keys each given once,
// strings without escapes, integers without fraction or exponent, no nulls, no nexthops. It
// reports ok=false for anything else, and the caller decodes the change with encoding/json,
// whose result is the reference: for every input fastChange accepts, it yields exactly what
// encoding/json yields (FuzzPlanFile compares them).
func fastChange(b []byte, in *interner) (Change, int, bool) {
	p := fastParser{b: b, in: in}
	var c Change
	var seen uint8
	more, ok := p.open()
	for ok && more {
		var key []byte
		if key, ok = p.key(); !ok {
			break
		}
		var bit uint8
		switch string(key) {
		case "kind":
			bit = 1
			var s []byte
			if s, ok = p.str(); ok {
				switch string(s) {
				case string(KindRoute):
					c.Kind = KindRoute
				case string(KindRule):
					c.Kind = KindRule
				default:
					ok = false
				}
			}
		case "op":
			bit = 2
			var s []byte
			if s, ok = p.str(); ok {
				switch string(s) {
				case string(OpAdd):
					c.Op = OpAdd
				case string(OpReplace):
					c.Op = OpReplace
				case string(OpDelete):
					c.Op = OpDelete
				default:
					ok = false
				}
			}
		case "why":
			bit = 4
			var s []byte
			if s, ok = p.str(); ok {
				c.Why = string(s)
			}
		case "route":
			bit = 8
			c.Route = p.in.route()
			ok = p.route(c.Route)
		case "rule":
			bit = 16
			c.Rule = new(model.Rule)
			ok = p.rule(c.Rule)
		default:
			ok = false
		}
		if !ok || seen&bit != 0 {
			return Change{}, 0, false
		}
		seen |= bit
		more, ok = p.next()
	}
	if !ok {
		return Change{}, 0, false
	}
	return c, p.i, true
}

// interner keeps one copy of the strings that repeat over a plan (device names, route
// protocols), so that a million routes do not allocate a million copies of "eth0".
type interner struct {
	m      map[string]string
	recent [8]string     // the last strings got, compared before the map is asked
	next   int           // the slot of recent to fill next
	routes []model.Route // handed out one by one: one allocation for many routes
}

// route returns a new zero Route.
func (in *interner) route() *model.Route {
	if len(in.routes) == 0 {
		in.routes = make([]model.Route, 256)
	}
	r := &in.routes[0]
	in.routes = in.routes[1:]
	return r
}

func (in *interner) get(b []byte) string {
	// A route has four names (type, dev, scope, protocol), the same in most routes of a plan:
	// comparing a few short strings costs less than hashing one.
	for _, s := range in.recent {
		if s == string(b) {
			return s
		}
	}
	s, ok := in.m[string(b)]
	if !ok {
		s = string(b)
		if in.m == nil {
			in.m = map[string]string{}
		}
		if len(in.m) < 4096 {
			in.m[s] = s
		}
	}
	in.recent[in.next] = s
	in.next = (in.next + 1) % len(in.recent)
	return s
}

type fastParser struct {
	b  []byte
	i  int
	in *interner
}

func (p *fastParser) ws() {
	b, i := p.b, p.i
	for i < len(b) {
		switch b[i] {
		case ' ', '\n', '\t', '\r':
			i++
			continue
		}
		break
	}
	p.i = i
}

func (p *fastParser) byte(want byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == want {
		p.i++
		return true
	}
	return false
}

// open starts an object: it reports whether a key follows (more) and whether the input is an
// object at all (ok).
func (p *fastParser) open() (more, ok bool) {
	if !p.byte('{') {
		return false, false
	}
	return !p.byte('}'), true
}

// key parses `"key":`.
func (p *fastParser) key() ([]byte, bool) {
	k, ok := p.str()
	if !ok || !p.byte(':') {
		return nil, false
	}
	p.ws()
	return k, true
}

// next parses what follows a member: ',' (more) or '}' (done).
func (p *fastParser) next() (more, ok bool) {
	if p.byte(',') {
		return true, true
	}
	return false, p.byte('}')
}

// str parses a string without escapes or control characters, in valid UTF-8.
func (p *fastParser) str() ([]byte, bool) {
	p.ws()
	b, i := p.b, p.i
	if i >= len(b) || b[i] != '"' {
		return nil, false
	}
	i++
	start := i
	ascii := true
	for ; i < len(b); i++ {
		c := b[i]
		if c == '"' {
			s := b[start:i]
			p.i = i + 1
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			return s, true
		}
		if c == '\\' || c < 0x20 {
			return nil, false
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	return nil, false
}

// intLit parses an integer literal as JSON writes it: -?(0|[1-9][0-9]*), not followed by a
// fraction or an exponent.
func (p *fastParser) intLit() ([]byte, bool) {
	p.ws()
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	n := p.i - digits
	if n == 0 || n > 1 && p.b[digits] == '0' {
		return nil, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return nil, false
		}
	}
	return p.b[start:p.i], true
}

func (p *fastParser) int() (int, bool) {
	lit, ok := p.intLit()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(lit), 10, 64)
	return int(n), err == nil
}

func (p *fastParser) uint(bits int) (uint64, bool) {
	lit, ok := p.intLit()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(string(lit), 10, bits)
	return n, err == nil
}

func (p *fastParser) bool() (bool, bool) {
	p.ws()
	for _, lit := range []string{"true", "false"} {
		if len(p.b)-p.i >= len(lit) && string(p.b[p.i:p.i+len(lit)]) == lit {
			p.i += len(lit)
			return lit == "true", true
		}
	}
	return false, false
}

func (p *fastParser) family(f *inet.Family) bool {
	s, ok := p.str()
	if !ok {
		return false
	}
	return f.UnmarshalText(s) == nil
}

func (p *fastParser) prefix(out *netip.Prefix) bool {
	s, ok := p.str()
	if !ok {
		return false
	}
	return out.UnmarshalText(s) == nil
}

func (p *fastParser) addr(out *netip.Addr) bool {
	s, ok := p.str()
	if !ok {
		return false
	}
	return out.UnmarshalText(s) == nil
}

func (p *fastParser) name(out *string) bool {
	s, ok := p.str()
	if !ok {
		return false
	}
	*out = p.in.get(s)
	return true
}

func (p *fastParser) route(r *model.Route) bool {
	var seen uint16
	more, ok := p.open()
	for ok && more {
		var key []byte
		if key, ok = p.key(); !ok {
			return false
		}
		var bit uint16
		switch string(key) {
		case "family":
			bit, ok = 1<<0, p.family(&r.Family)
		case "table":
			bit = 1 << 1
			r.Table, ok = p.int()
		case "type":
			bit, ok = 1<<2, p.name(&r.Type)
		case "dst":
			bit, ok = 1<<3, p.prefix(&r.Dst)
		case "tos":
			bit = 1 << 4
			var n uint64
			n, ok = p.uint(8)
			r.TOS = uint8(n)
		case "gateway":
			bit, ok = 1<<5, p.addr(&r.Gateway)
		case "dev":
			bit, ok = 1<<6, p.name(&r.Dev)
		case "prefsrc":
			bit, ok = 1<<7, p.addr(&r.Src)
		case "metric":
			bit = 1 << 8
			r.Metric, ok = p.int()
		case "scope":
			bit, ok = 1<<9, p.name(&r.Scope)
		case "protocol":
			bit, ok = 1<<10, p.name(&r.Protocol)
		case "onlink":
			bit = 1 << 11
			r.OnLink, ok = p.bool()
		default:
			ok = false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		more, ok = p.next()
	}
	return ok
}

// pair parses an object of two unsigned integers of the given size under keys a and b.
func (p *fastParser) pair(a, b string, bits int) (x, y uint64, ok bool) {
	var seen uint8
	more, ok := p.open()
	for ok && more {
		var key []byte
		if key, ok = p.key(); !ok {
			break
		}
		var bit uint8
		switch string(key) {
		case a:
			bit = 1
			x, ok = p.uint(bits)
		case b:
			bit = 2
			y, ok = p.uint(bits)
		default:
			ok = false
		}
		if !ok || seen&bit != 0 {
			return 0, 0, false
		}
		seen |= bit
		more, ok = p.next()
	}
	return x, y, ok
}

func (p *fastParser) rule(r *model.Rule) bool {
	var seen uint32
	more, ok := p.open()
	for ok && more {
		var key []byte
		if key, ok = p.key(); !ok {
			return false
		}
		var bit uint32
		switch string(key) {
		case "family":
			bit, ok = 1<<0, p.family(&r.Family)
		case "priority":
			bit = 1 << 1
			r.Priority, ok = p.int()
		case "not":
			bit = 1 << 2
			r.Not, ok = p.bool()
		case "src":
			bit, ok = 1<<3, p.prefix(&r.Src)
		case "dst":
			bit, ok = 1<<4, p.prefix(&r.Dst)
		case "iif":
			bit, ok = 1<<5, p.name(&r.IIF)
		case "oif":
			bit, ok = 1<<6, p.name(&r.OIF)
		case "fwmark":
			bit = 1 << 7
			var v, m uint64
			if v, m, ok = p.pair("value", "mask", 32); ok {
				r.Mark = &model.MarkMatch{Value: uint32(v), Mask: uint32(m)}
			}
		case "tos":
			bit = 1 << 8
			var n uint64
			n, ok = p.uint(8)
			r.TOS = uint8(n)
		case "ipproto":
			bit = 1 << 9
			r.IPProto, ok = p.int()
		case "sport", "dport":
			bit = 1 << 10
			if key[0] == 'd' {
				bit = 1 << 11
			}
			var lo, hi uint64
			if lo, hi, ok = p.pair("start", "end", 16); ok {
				pr := &model.PortRange{Start: uint16(lo), End: uint16(hi)}
				if key[0] == 'd' {
					r.DPort = pr
				} else {
					r.SPort = pr
				}
			}
		case "uidrange":
			bit = 1 << 12
			var lo, hi uint64
			if lo, hi, ok = p.pair("start", "end", 32); ok {
				r.UIDRange = &model.UIDRange{Start: uint32(lo), End: uint32(hi)}
			}
		case "suppress_prefixlength", "suppress_ifgroup":
			bit = 1 << 13
			if key[9] == 'i' {
				bit = 1 << 14
			}
			var n int
			if n, ok = p.int(); ok {
				if bit == 1<<13 {
					r.SuppressPrefixLen = &n
				} else {
					r.SuppressIfGroup = &n
				}
			}
		case "action":
			bit, ok = 1<<15, p.name(&r.Action)
		case "table":
			bit = 1 << 16
			r.Table, ok = p.int()
		case "goto":
			bit = 1 << 17
			r.Goto, ok = p.int()
		case "protocol":
			bit = 1 << 18
			r.Protocol, ok = p.int()
		default:
			ok = false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		more, ok = p.next()
	}
	return ok
}
