package dropwatch

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Location is where in the kernel a packet was dropped: the function that freed it.
type Location struct {
	Symbol string // "ip_rcv_finish_core"; "" when /proc/kallsyms does not say
	Offset uint64
	Addr   uint64
}

func (l Location) String() string { return string(l.AppendText(nil)) }

// AppendText appends String's text.
func (l Location) AppendText(b []byte) []byte {
	if l.Symbol != "" {
		b = append(b, l.Symbol...)
		b = append(b, '+')
	}
	b = append(b, "0x"...)
	if l.Symbol == "" {
		return strconv.AppendUint(b, l.Addr, 16)
	}
	return strconv.AppendUint(b, l.Offset, 16)
}

// MarshalText writes the function's name (String adds the offset), or the address when
// the symbol is unknown: "location":"ip_rcv_finish_core" in JSON.
func (l Location) MarshalText() ([]byte, error) {
	if l.Symbol == "" {
		return []byte(l.String()), nil
	}
	return []byte(l.Symbol), nil
}

// UnmarshalText reads what MarshalText wrote: a function's name, or an address 0x...
// (a summary read back from JSON has the function, not the offset).
func (l *Location) UnmarshalText(b []byte) error {
	*l = Location{}
	if a, ok := strings.CutPrefix(string(b), "0x"); ok {
		if v, err := strconv.ParseUint(a, 16, 64); err == nil {
			l.Addr = v
			return nil
		}
	}
	l.Symbol = string(b)
	return nil
}

// symbols is the kernel's text symbols sorted by address, read once from /proc/kallsyms.
type symbols struct {
	once  sync.Once
	addrs []uint64
	names []string
	err   error
}

func (s *symbols) load() {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		s.err = fmt.Errorf("reading kernel symbols: %w", err)
		return
	}
	defer f.Close()
	s.addrs, s.names, s.err = parseKallsyms(f)
}

// parseKallsyms reads the text symbols of a kallsyms listing, sorted by address. All-zero
// addresses (kptr_restrict hides them) are skipped.
func parseKallsyms(r io.Reader) ([]uint64, []string, error) {
	type sym struct {
		addr uint64
		name string
	}
	var syms []sym
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// "ffffffff820552b0 t ip_rcv_finish_core" or "... t nf_hook_slow [nf_tables]"
		f := strings.Fields(sc.Text())
		if len(f) < 3 || (f[1] != "t" && f[1] != "T") {
			continue
		}
		a, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil || a == 0 {
			continue
		}
		name := f[2]
		if len(f) > 3 {
			name += " " + f[3]
		}
		syms = append(syms, sym{a, name})
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("reading kernel symbols: %w", err)
	}
	slices.SortStableFunc(syms, func(a, b sym) int {
		switch {
		case a.addr < b.addr:
			return -1
		case a.addr > b.addr:
			return 1
		}
		return 0
	})
	addrs := make([]uint64, len(syms))
	names := make([]string, len(syms))
	for i, s := range syms {
		addrs[i], names[i] = s.addr, s.name
	}
	return addrs, names, nil
}

// resolve names the function holding addr.
func (s *symbols) resolve(addr uint64) Location {
	s.once.Do(s.load)
	l := Location{Addr: addr}
	i, found := slices.BinarySearch(s.addrs, addr)
	if !found {
		i--
	}
	if i >= 0 && i < len(s.addrs) {
		l.Symbol, l.Offset = s.names[i], addr-s.addrs[i]
	}
	return l
}
