package wizards

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"roundtrip/engine/model"
	"roundtrip/engine/safefile"
)

// RouteList is a destination list of the multi-wan wizard: networks that leave by one WAN.
type RouteList struct {
	WAN      string // the WAN's name (or interface)
	File     string
	Prefixes []netip.Prefix // loaded from File when nil
}

// maxListErrors bounds how many bad lines one error lists.
const maxListErrors = 10

// ParseRouteList reads a destination list: one IPv4 network (or address) a line, `#` starting
// a comment, blank lines ignored. Every bad line is reported as name:line, up to ten of them. A
// list without a single network is refused: it would send nothing by its WAN, which is never
// what was meant (a wrong file, a failed download).
// Lists of tens of thousands of networks are read in milliseconds: lines are parsed in place
// without copying.
func ParseRouteList(name string, r io.Reader) ([]netip.Prefix, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var out []netip.Prefix
	var errs []error
	bad := 0
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		p, err := parseListEntry(line)
		if err != nil {
			bad++
			if len(errs) < maxListErrors {
				errs = append(errs, fmt.Errorf("%s:%d: %w", name, n, err))
			}
			continue
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		var tl *safefile.TooLargeError
		if errors.As(err, &tl) {
			return nil, err // it names the file already
		}
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if bad > maxListErrors {
		errs = append(errs, fmt.Errorf("%s: and %d more bad lines", name, bad-maxListErrors))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no networks (only blank lines and comments): a list sends its networks by its WAN; give a file with one network a line", name)
	}
	return out, nil
}

func parseListEntry(line []byte) (netip.Prefix, error) {
	if bytes.IndexByte(line, '/') < 0 {
		var a netip.Addr
		if err := a.UnmarshalText(line); err != nil || !a.Is4() {
			return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 network or address", line)
		}
		return netip.PrefixFrom(a, 32), nil
	}
	p, err := netip.ParsePrefix(string(line))
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 network (want e.g. 203.0.113.0/24)", line)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set: did you mean %s?", p, p.Masked())
	}
	return p, nil
}

// LoadRouteList reads a destination list file: a regular file of at most
// model.MaxRouteListFile bytes.
func LoadRouteList(path string) ([]netip.Prefix, error) {
	f, err := safefile.Open(path, model.MaxRouteListFile)
	if err != nil {
		return nil, fmt.Errorf("reading destination list: %w", err)
	}
	defer f.Close()
	return ParseRouteList(path, f)
}
