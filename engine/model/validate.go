package model

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"roundtrip/engine/inet"
	"roundtrip/engine/quote"
)

// This file holds the checks of single fields that plans (Plan.Check) and snapshots
// (State.Validate) share: names by the kernel's rules, numbers by their real ranges, free text
// without control characters. roundtrip runs as root and renders these values into scripts,
// so a field that passes is one the renderers can quote, and one the kernel would accept.

// MaxU32 limits the numbers the kernel keeps in 32 bits (table ids, priorities, metrics,
// marks), as far as an int holds them: the model keeps them in ints, which on a 32-bit build
// (a Raspberry Pi's armhf, a 386 or MIPS router) end at 2^31-1, so that such a build refuses
// a table id or priority above that as out of range instead of not building at all.
const MaxU32 = min(1<<32-1, math.MaxInt)

// MaxText bounds free text (an intent, a why, a sysctl value): long enough for any sentence,
// short enough that no field can carry a file.
const MaxText = 4096

// CheckIfName checks a link name the way the kernel does (dev_valid_name): 1-15 bytes, not "." or
// "..", no '/', ':' or white space (the kernel's isspace: space, \t \n \v \f \r and 0xa0).
// Everything else is legal, `$ ( ) ; >` and backquotes included: renderings quote names.
func CheckIfName(name string) error {
	if name == "" || len(name) > 15 {
		return fmt.Errorf("interface name %q must be 1-15 bytes", name)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("interface name %q is not allowed by the kernel", name)
	}
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '/', ':', ' ', '\t', '\n', '\v', '\f', '\r', 0xa0, 0:
			return fmt.Errorf("interface name %q holds %q, which the kernel does not allow in names", name, name[i])
		}
	}
	return nil
}

// CheckNetnsName checks the name of a network namespace as iproute2 does (ip netns: not empty,
// at most NAME_MAX bytes, not "." or "..", no '/'), and refuses control characters too: the
// name becomes a file under /run/netns and is printed and rendered into scripts and units.
func CheckNetnsName(name string) error {
	switch {
	case name == "" || len(name) > 255:
		return fmt.Errorf("namespace name %q must be 1-255 bytes", name)
	case name == "." || name == ".." || strings.Contains(name, "/"):
		return fmt.Errorf("namespace name %q is not a plain name: it must not be . or .. or hold '/'", name)
	case !utf8.ValidString(name) || quote.HasControl(name):
		return fmt.Errorf("namespace name %q holds control characters", name)
	}
	return nil
}

// CheckText checks free text: valid UTF-8, no control characters (tabs and newlines included),
// at most max bytes.
func CheckText(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes long: at most %d", what, len(s), max)
	}
	if !utf8.ValidString(s) || quote.HasControl(s) {
		return fmt.Errorf("%s %q holds control characters or bytes that are not UTF-8", what, s)
	}
	return nil
}

// CheckTableName checks a routing table's name in rt_tables: iproute2 reads it as one word (no
// white space), '#' would start a comment, and it is printed and rendered.
func CheckTableName(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("table name %q must be 1-255 bytes", name)
	}
	if strings.ContainsAny(name, " #") || quote.HasControl(name) {
		return fmt.Errorf("table name %q holds white space, '#' or control characters", name)
	}
	return nil
}

// CheckHWAddr checks a link-layer address as netlink gives it: hex bytes separated by colons.
func CheckHWAddr(s string) error {
	ok := len(s) >= 2 && len(s) <= 32*3-1 && len(s)%3 == 2
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		if i%3 == 2 {
			ok = c == ':'
		} else {
			ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
		}
	}
	if !ok {
		return fmt.Errorf("hardware address %q: want hex bytes separated by colons (02:00:00:00:00:01)", s)
	}
	return nil
}

// RouteProtocolNames are iproute2's built-in rt_protos names of route protocols (RTPROT_*).
var RouteProtocolNames = map[int]string{
	0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra",
	10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp",
	18: "keepalived", 42: "babel", 99: "openr", 186: "bgp", 187: "isis", 188: "ospf",
	189: "rip", 192: "eigrp",
}

var routeProtocolNums = func() map[string]int {
	m := make(map[string]int, len(RouteProtocolNames))
	for n, s := range RouteProtocolNames {
		m[s] = n
	}
	return m
}()

// byteNumber parses a decimal number 0-255 written without sign or leading zeros.
func byteNumber(s string) bool {
	n, err := strconv.ParseUint(s, 10, 8)
	return err == nil && strconv.FormatUint(n, 10) == s
}

// CheckRouteProtocol accepts a protocol of rt_protos by name, or a number 0-255.
func CheckRouteProtocol(p string) error {
	if _, ok := routeProtocolNums[p]; ok || byteNumber(p) {
		return nil
	}
	return fmt.Errorf("protocol %q: want a name of rt_protos (kernel, boot, static, dhcp, bird, ...) or a number 0-255", p)
}

// Scopes by name, as the model stores them: routes use universe, addresses global.
var (
	RouteScopes = map[string]bool{"universe": true, "site": true, "link": true, "host": true, "nowhere": true}
	AddrScopes  = map[string]bool{"global": true, "site": true, "link": true, "host": true}
)

// CheckScope accepts a scope by name or, where numbers are allowed (a snapshot), 0-255.
func CheckScope(s string, names map[string]bool, numbers bool) error {
	if s == "" || names[s] || numbers && byteNumber(s) {
		return nil
	}
	want := "universe, site, link, host or nowhere"
	if names["global"] {
		want = "global, site, link or host"
	}
	if numbers {
		want += " or a number 0-255"
	}
	return fmt.Errorf("scope %q: want %s", s, want)
}

// sysctlIfaceKeys are the prefixes of per-interface sysctl keys, whose fourth component is
// an interface.
var sysctlIfaceKeys = map[string]bool{"net.ipv4.conf": true, "net.ipv6.conf": true, "net.ipv4.neigh": true, "net.ipv6.neigh": true, "net.mpls.conf": true}

// CheckSysctlKey checks a dotted sysctl name: under net., components of letters, digits, '_'
// and '-' separated by single dots; only the interface of a per-interface key
// (net.ipv4.conf.IF.x, net.ipv6.conf.IF.x, net.ipv{4,6}.neigh.IF.x) may hold other characters,
// and it must be an interface name the kernel allows, with its dots written as '/' (ConfKey).
// So the file it names (SysctlPath) is always a file under /proc/sys/net.
func CheckSysctlKey(key string) error {
	if len(key) > 512 {
		return fmt.Errorf("sysctl %.40q...: the name is too long", key)
	}
	parts := strings.Split(key, ".")
	if len(parts) < 2 || parts[0] != "net" {
		return fmt.Errorf("sysctl %q: want a dotted name under net., e.g. net.ipv4.ip_forward", key)
	}
	iface := -1
	if len(parts) == 5 && sysctlIfaceKeys[parts[0]+"."+parts[1]+"."+parts[2]] {
		iface = 3
	}
	for i, p := range parts {
		if i == iface {
			if err := CheckIfName(strings.ReplaceAll(p, "/", ".")); err != nil {
				return fmt.Errorf("sysctl %q: %w", key, err)
			}
			continue
		}
		if p == "" {
			return fmt.Errorf("sysctl %q: empty name component (two dots in a row, or a dot at an end)", key)
		}
		for j := 0; j < len(p); j++ {
			c := p[j]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return fmt.Errorf("sysctl %q: component %q may hold only letters, digits, '_' and '-' (only an interface name may hold more)", key, p)
			}
		}
	}
	return nil
}

// sysctlRoot is the directory every sysctl roundtrip reads or writes is under.
const sysctlRoot = "/proc/sys/net/"

// SysctlFile returns the /proc/sys file of a dotted sysctl name, after checking the name
// (CheckSysctlKey) and that the file is under /proc/sys/net.
func SysctlFile(key string) (string, error) {
	if err := CheckSysctlKey(key); err != nil {
		return "", err
	}
	p := "/proc/sys/" + strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, key)
	if path.Clean(p) != p || !strings.HasPrefix(p, sysctlRoot) {
		return "", fmt.Errorf("sysctl %q names %s, which is not a file under %s", key, p, sysctlRoot)
	}
	return p, nil
}

// invalidSysctlPath is what SysctlPath returns for a name that does not pass CheckSysctlKey:
// a name procfs cannot have, so that reading or writing it fails without touching anything.
const invalidSysctlPath = sysctlRoot + "roundtrip: invalid sysctl name"

// SysctlPath returns the /proc/sys file of a dotted sysctl name. In the dotted form an
// interface name's dots are written as slashes (ConfKey), so the two are swapped back. A name
// that does not pass CheckSysctlKey gives a path that cannot exist under /proc/sys/net, never
// one outside it: use SysctlFile to get the reason.
func SysctlPath(key string) string {
	p, err := SysctlFile(key)
	if err != nil {
		return invalidSysctlPath
	}
	return p
}

// CheckSysctlValue checks a sysctl value: one line of printable text (tabs allowed: several
// settings hold tab-separated numbers), not empty.
func CheckSysctlValue(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("the value is empty")
	}
	if len(v) > MaxText || !utf8.ValidString(v) || quote.HasControl(strings.ReplaceAll(v, "\t", " ")) {
		return fmt.Errorf("value %q must be one line of printable text (at most %d bytes)", v, MaxText)
	}
	return nil
}

// CheckRange checks a number against an inclusive range, naming the field.
func CheckRange(field string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s %d out of range: want %d-%d", field, v, lo, hi)
	}
	return nil
}

// MaxProblems bounds how many problems one error lists.
const MaxProblems = 10

// CheckAddress checks an address's fields; a snapshot may hold numeric scopes, a plan not
// (the applier knows the names only).
func CheckAddress(a Address, numericScope bool) error {
	if !a.Prefix.IsValid() {
		return errors.New("address without a valid prefix (want e.g. 192.0.2.1/24)")
	}
	if a.Peer.IsValid() && a.Peer.Addr().Is4() != a.Prefix.Addr().Is4() {
		return fmt.Errorf("address %s: field peer %s is of the other family", a.Prefix, a.Peer)
	}
	if err := CheckScope(a.Scope, AddrScopes, numericScope); err != nil {
		return fmt.Errorf("address %s: field %w", a.Prefix, err)
	}
	return nil
}

// CheckLinkFields checks the fields plans and snapshots share: names of other links, numbers,
// and the text fields, which are printed.
func CheckLinkFields(l *Link) error {
	if err := CheckRange("field index", l.Index, 0, 1<<31-1); err != nil {
		return err
	}
	if err := CheckRange("field mtu", l.MTU, 0, MaxU32); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"master", l.Master}, {"peer", l.Peer}} {
		if f.v != "" {
			if err := CheckIfName(f.v); err != nil {
				return fmt.Errorf("field %s: %w", f.name, err)
			}
		}
	}
	for _, f := range []struct{ name, v string }{{"kind", l.Kind}, {"oper_state", l.OperState}} {
		if err := CheckText("field "+f.name, f.v, 64); err != nil {
			return err
		}
	}
	return nil
}

// CheckRouteFields checks the fields of a route that plans and snapshots share; a snapshot may
// hold numeric scopes.
func CheckRouteFields(r Route, numericScope bool) error {
	if err := CheckRange("field table", r.Table, 0, MaxU32); err != nil {
		return err
	}
	if err := CheckRange("field metric", r.Metric, 0, MaxU32); err != nil {
		return err
	}
	if r.Dev != "" {
		if err := CheckIfName(r.Dev); err != nil {
			return fmt.Errorf("field dev: %w", err)
		}
	}
	if r.Protocol != "" {
		if err := CheckRouteProtocol(r.Protocol); err != nil {
			return fmt.Errorf("field %w", err)
		}
	}
	if err := CheckScope(r.Scope, RouteScopes, numericScope); err != nil {
		return fmt.Errorf("field %w", err)
	}
	for i, nh := range r.Nexthops {
		if nh.Dev != "" {
			if err := CheckIfName(nh.Dev); err != nil {
				return fmt.Errorf("nexthop %d: field dev: %w", i+1, err)
			}
		}
		if nh.Weight < 0 || nh.Weight > 256 {
			return fmt.Errorf("nexthop %d: field weight %d: want 1-256", i+1, nh.Weight)
		}
		if nh.Gateway.IsValid() && r.Family != 0 && inet.FamilyOf(nh.Gateway) != r.Family {
			return fmt.Errorf("nexthop %d: gateway %s is not %s", i+1, nh.Gateway, r.Family)
		}
	}
	return nil
}

// CheckRuleFields checks the fields of a rule that plans and snapshots share.
func CheckRuleFields(r Rule) error {
	for _, f := range []struct {
		name   string
		v, max int
	}{{"priority", r.Priority, MaxU32}, {"table", r.Table, MaxU32}, {"goto", r.Goto, MaxU32}, {"ipproto", r.IPProto, 255}, {"protocol", r.Protocol, 255}} {
		if err := CheckRange("field "+f.name, f.v, 0, f.max); err != nil {
			return err
		}
	}
	if r.Action != "" && !ValidRuleActions[r.Action] {
		return fmt.Errorf("field action %q: want table, goto, nop, blackhole, unreachable or prohibit", r.Action)
	}
	for _, f := range []struct{ name, v string }{{"iif", r.IIF}, {"oif", r.OIF}} {
		if f.v != "" {
			if err := CheckIfName(f.v); err != nil {
				return fmt.Errorf("field %s: %w", f.name, err)
			}
		}
	}
	for _, p := range []netip.Prefix{r.Src, r.Dst} {
		if p.IsValid() && r.Family != 0 && inet.FamilyOf(p.Addr()) != r.Family {
			return fmt.Errorf("%s is not %s", p, r.Family)
		}
	}
	for _, f := range []struct {
		name string
		p    *PortRange
	}{{"sport", r.SPort}, {"dport", r.DPort}} {
		if f.p != nil && f.p.Start > f.p.End {
			return fmt.Errorf("field %s %d-%d: the range ends before it starts", f.name, f.p.Start, f.p.End)
		}
	}
	if r.UIDRange != nil && r.UIDRange.Start > r.UIDRange.End {
		return fmt.Errorf("field uidrange %d-%d: the range ends before it starts", r.UIDRange.Start, r.UIDRange.End)
	}
	if r.SuppressPrefixLen != nil {
		if err := CheckRange("field suppress_prefixlength", *r.SuppressPrefixLen, -1, 128); err != nil {
			return err
		}
	}
	if r.SuppressIfGroup != nil {
		if err := CheckRange("field suppress_ifgroup", *r.SuppressIfGroup, -1, MaxU32); err != nil {
			return err
		}
	}
	return nil
}
