package iptables

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"roundtrip/engine/inet"
)

// FuzzParseIPTablesSave: any input either fails to parse or parses to tables that survive
// RenderRestore and a second parse unchanged, and whose rules' canonical Args read back
// to the same fields. It never panics.
func FuzzParseIPTablesSave(f *testing.F) {
	for _, c := range captures {
		f.Add(c.family == inet.V6, readCapture(f, c.file))
	}
	f.Add(false, []byte("*filter\n:INPUT ACCEPT\n-A INPUT -s ! 1.2.3.4 -p tcp --dport ! 22 -m comment --comment \"a\\\"b\" -j LOG --log-prefix \"-f\"\nCOMMIT\n"))
	f.Add(true, []byte("*nat\n:X - [1:2]\n[3:4] -A X ! -f -m a --b=c ! --d -g X\nCOMMIT"))
	// "--source=x" is -s, not an option named "source" that Args would print as "--source x".
	f.Add(false, []byte("*raw\n:X -\n-A X -m m --source=1.2.3.4 --fragment\nCOMMIT\n"))
	f.Fuzz(func(t *testing.T, v6 bool, data []byte) {
		fam := inet.V4
		if v6 {
			fam = inet.V6
		}
		tables, err := ParseSave(fam, data)
		if err != nil {
			return
		}
		out := RenderRestore(tables, true)
		back, err := ParseSave(fam, out)
		if err != nil {
			t.Fatalf("parsing the render of parsed input: %v\ninput:\n%q\nrender:\n%q", err, data, out)
		}
		if diff := cmp.Diff(tables, back); diff != "" {
			t.Fatalf("Parse(Render(x)) != x (-x +back):\n%s\ninput:\n%q\nrender:\n%q", diff, data, out)
		}
		for _, tb := range tables {
			for _, c := range tb.Chains {
				for _, r := range c.Rules {
					args := r.Args()
					again, err := ParseRule(fam, args)
					if err != nil {
						t.Fatalf("rule %q: Args() = %q does not parse: %v", r.Spec, args, err)
					}
					again.Spec, again.Packets, again.Bytes = r.Spec, r.Packets, r.Bytes
					if diff := cmp.Diff(r, again); diff != "" {
						t.Fatalf("rule %q: Args() = %q reads back differently (-rule +again):\n%s", r.Spec, args, diff)
					}
				}
			}
		}
	})
}
