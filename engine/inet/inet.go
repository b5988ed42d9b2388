// Package inet holds the vocabulary of IP that every layer shares: address families and protocol
// numbers.
package inet

import (
	"fmt"
	"net/netip"
	"strings"
)

// fmtEndpoint prints an address with its port, leaving out a port the protocol does not have.
func Endpoint(ap netip.AddrPort) string {
	if ap.Port() == 0 {
		return ap.Addr().String()
	}
	return ap.String()
}

// ProtoName names an IP protocol number as iproute2 and iptables do.
func ProtoName(p int) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "ipv6-icmp"
	case 132:
		return "sctp"
	case 47:
		return "gre"
	case 4:
		return "ipip"
	}
	return fmt.Sprint(p)
}

// ProtoNumber parses a protocol name or number.
func ProtoNumber(s string) (int, error) {
	switch strings.ToLower(s) {
	case "icmp":
		return 1, nil
	case "tcp":
		return 6, nil
	case "udp":
		return 17, nil
	case "ipv6-icmp", "icmpv6", "icmp6":
		return 58, nil
	case "sctp":
		return 132, nil
	case "gre":
		return 47, nil
	case "ipip", "ipencap":
		return 4, nil
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || fmt.Sprint(n) != s || n < 0 || n > 255 {
		return 0, fmt.Errorf("unknown protocol %q: want tcp, udp, icmp or a number 0-255", s)
	}
	return n, nil
}

// Family is an address family. The zero value is invalid on purpose so that a missing family in
// a snapshot is an error rather than silently IPv4.
type Family uint8

// Address families, numbered as in the kernel (AF_INET, AF_INET6).
const (
	V4 Family = 2
	V6 Family = 10
)

func (f Family) String() string {
	switch f {
	case V4:
		return "inet"
	case V6:
		return "inet6"
	}
	return fmt.Sprintf("family(%d)", uint8(f))
}

// MarshalText writes the family as iproute2 names it.
func (f Family) MarshalText() ([]byte, error) {
	if f != V4 && f != V6 {
		return nil, fmt.Errorf("invalid address family %d", uint8(f))
	}
	return []byte(f.String()), nil
}

// UnmarshalText accepts "inet" or "inet6".
func (f *Family) UnmarshalText(b []byte) error {
	switch string(b) {
	case "inet":
		*f = V4
	case "inet6":
		*f = V6
	default:
		return fmt.Errorf("invalid address family %q: want inet or inet6", b)
	}
	return nil
}

// FamilyOf returns the family of an address.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() || a.Is4In6() {
		return V4
	}
	return V6
}

// Flag returns the iproute2 family flag ("-4" or "-6").
func (f Family) Flag() string {
	if f == V6 {
		return "-6"
	}
	return "-4"
}
