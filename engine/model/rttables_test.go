package model

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestParseRTTables(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[int]string
	}{
		{
			name: "debian default",
			in: `#
# reserved values
#
255	local
254	main
253	default
0	unspec
#
# local
#
#1	inr.ruhep
`,
			want: map[int]string{255: "local", 254: "main", 253: "default", 0: "unspec"},
		},
		{
			name: "hex, spaces, comments after the name and no final newline",
			in:   "  0x64  isp1 # first uplink\n\t200\tisp2\n0xffffffff top",
			want: map[int]string{100: "isp1", 200: "isp2", 4294967295: "top"},
		},
		{
			name: "later line wins, text after the name ignored as iproute2 does",
			in:   "100 old\n100 new extra words\n",
			want: map[int]string{100: "new"},
		},
		{
			name: "windows line endings and blank lines",
			in:   "100 a\r\n\r\n   \r\n101 b\r\n",
			want: map[int]string{100: "a", 101: "b"},
		},
		{name: "empty", in: "", want: map[int]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRTTables([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseRTTables: %v", err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("ParseRTTables = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseRTTablesErrors(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"100\n", `line 1 "100": want a table number and a name`},
		{"# ok\nisp1 100\n", `line 2 "isp1 100": bad table number "isp1"`},
		{"-1 neg\n", `bad table number "-1"`},
		{"4294967296 big\n", `bad table number "4294967296"`},
		{"0x name\n", `bad table number "0x"`},
		{"0xg1 name\n", `bad table number "0xg1"`},
		{"+5 plus\n", `bad table number "+5"`},
	}
	for _, tt := range tests {
		got, err := ParseRTTables([]byte(tt.in))
		if err == nil {
			t.Errorf("ParseRTTables(%q) = %v, want error %q", tt.in, got, tt.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseRTTables(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
		}
	}
}

// FuzzParseRTTables checks that no input panics, that every accepted file yields valid ids and
// names, and that writing the result back out in rt_tables syntax parses to the same map.
func FuzzParseRTTables(f *testing.F) {
	f.Add([]byte("255 local\n254 main\n# c\n0x64 isp\n"))
	f.Add([]byte("100 a # x\n\n\t 7\tb\r\n"))
	f.Add([]byte("4294967295 top\n-1 x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		names, err := ParseRTTables(data)
		if err != nil {
			if names != nil {
				t.Fatalf("error %v with non-nil result %v", err, names)
			}
			return
		}
		var b strings.Builder
		for _, id := range slices.Sorted(maps.Keys(names)) {
			name := names[id]
			if id < 0 || id > 1<<32-1 {
				t.Fatalf("table id %d out of the kernel's u32 range", id)
			}
			if name == "" || strings.ContainsAny(name, " \t\r\n") {
				t.Fatalf("bad name %q for table %d", name, id)
			}
			fmt.Fprintf(&b, "%d %s\n", id, name)
		}
		again, err := ParseRTTables([]byte(b.String()))
		if err != nil {
			t.Fatalf("re-parsing %q: %v", b.String(), err)
		}
		if !maps.Equal(names, again) {
			t.Fatalf("round trip changed the names: %v, then %v", names, again)
		}
	})
}
