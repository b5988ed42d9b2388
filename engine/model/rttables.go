package model

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// ParseRTTables parses an iproute2 rt_tables file: one "ID NAME" pair a line, ID decimal or
// 0x-hex, blank lines and lines starting with '#' ignored. Like iproute2 (lib/rt_names.c,
// fread_id_name) anything after the name is ignored, and a later line for the same ID wins.
// Unlike iproute2, which stops reading the file at the first bad line, a bad line is an error
// that names it. IDs are 32-bit (the kernel's FRA_TABLE); iproute2 itself cannot name tables
// above 2^31-1 because it reads them into an int.
func ParseRTTables(data []byte) (map[int]string, error) {
	names := map[int]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	// iproute2 reads lines with a 512-byte buffer; allow long lines rather than failing on them.
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return nil, fmt.Errorf("line %d %q: want a table number and a name", n, line)
		}
		id, err := parseTableID(fields[0])
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", n, line, err)
		}
		names[id] = fields[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading rt_tables: %w", err)
	}
	return names, nil
}

func parseTableID(s string) (int, error) {
	base, digits := 10, s
	if rest, ok := strings.CutPrefix(s, "0x"); ok {
		base, digits = 16, rest
	}
	id, err := strconv.ParseUint(digits, base, 32)
	if err != nil || digits == "" || id > MaxU32 {
		return 0, fmt.Errorf("bad table number %q: want 0-%d (decimal or 0x-hex)", s, MaxU32)
	}
	return int(id), nil
}
