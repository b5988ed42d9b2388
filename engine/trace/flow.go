package trace

import (
	"fmt"

	"roundtrip/engine/inet"
)

// ParseFlow reads a flow as trace and diagnose take it (PROTO SRC[:PORT] DST[:PORT]) and as
// the console's flow form asks for it: the command line and the console accept and refuse
// the same flows with the same words. Ports are refused for a protocol without them
// (inet.HasPorts): GRE and ICMP alike.
func ParseFlow(proto, src, dst string) (Request, error) {
	var req Request
	p, err := inet.ProtoNumber(proto)
	if err != nil {
		return req, err
	}
	s, err := inet.ParseEndpoint("source", src)
	if err != nil {
		return req, err
	}
	d, err := inet.ParseEndpoint("destination", dst)
	if err != nil {
		return req, err
	}
	if s.Addr().Is4() != d.Addr().Is4() {
		return req, fmt.Errorf("source %s and destination %s are not of one address family", s.Addr(), d.Addr())
	}
	if d.Addr().IsUnspecified() {
		return req, fmt.Errorf("destination %s is unspecified: name the address the flow goes to", d.Addr())
	}
	if !inet.HasPorts(p) && (s.Port() != 0 || d.Port() != 0) {
		return req, fmt.Errorf("%s has no ports: give addresses without :PORT", inet.ProtoName(p))
	}
	req.Proto, req.Src, req.Dst = p, s, d
	return req, nil
}
