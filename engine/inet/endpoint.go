package inet

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// HasPorts reports whether a protocol's packets carry ports: TCP, UDP, SCTP, DCCP and
// UDP-Lite. GRE, ICMP and the rest do not (a GRE key or an ICMP id is no port), so a flow of
// theirs is given without :PORT.
func HasPorts(proto int) bool {
	switch proto {
	case 6, 17, 132, 33, 136:
		return true
	}
	return false
}

// ParseEndpoint reads ADDR, ADDR:PORT or [ADDR]:PORT (IPv6); port 0 means none. what names
// the endpoint in errors ("source"); without it the errors are a form field's, which names
// itself.
func ParseEndpoint(what, s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.AddrPort{}, endpointErr(what, fmt.Sprintf("%q: zones are not supported", s), "zones are not supported")
		}
		return netip.AddrPortFrom(a.Unmap(), 0), nil
	}
	const want = "want ADDR or ADDR:PORT ([ADDR]:PORT for IPv6)"
	host, port, ok := cutPort(s)
	a, err := netip.ParseAddr(host)
	if !ok || err != nil || a.Zone() != "" {
		return netip.AddrPort{}, endpointErr(what, fmt.Sprintf("malformed %s address %q: %s", what, s, want), want)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return netip.AddrPort{}, endpointErr(what, fmt.Sprintf("port %q is not a number", port), fmt.Sprintf("port %q is not a number", port))
	}
	if n < 0 || n > 65535 {
		return netip.AddrPort{}, endpointErr(what, fmt.Sprintf("port %d out of range 0-65535", n), fmt.Sprintf("port %d out of range 0-65535", n))
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(n)), nil
}

// endpointErr is long when the endpoint is named (a command line) and short when not (a form
// field).
func endpointErr(what, long, short string) error {
	if what == "" {
		return fmt.Errorf("%s", short)
	}
	if strings.HasPrefix(long, "malformed ") {
		return fmt.Errorf("%s", long)
	}
	return fmt.Errorf("%s %s", what, long)
}

func cutPort(s string) (host, port string, ok bool) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]:")
		if end < 0 {
			return "", "", false
		}
		return s[1:end], s[end+2:], true
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.Count(s, ":") > 1 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}
