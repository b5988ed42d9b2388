package nftread

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode"
)

func TestParseJSON(t *testing.T) {
	data, err := os.ReadFile("testdata/t1.json")
	if err != nil {
		t.Fatal(err)
	}
	j, err := ParseJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := j.Rules()
	if err != nil {
		t.Fatal(err)
	}
	texts := map[uint64]string{}
	for _, r := range rules {
		var parts []string
		for _, s := range r.Expr {
			parts = append(parts, StatementText(s))
		}
		texts[r.Handle] = strings.Join(parts, " ")
	}
	// The generic printer gets the common statements right.
	for h, want := range map[uint64]string{
		13: "meta iifname lo accept",
		17: "tcp dport { 22, 80 } counter packets 0 bytes 0 accept",
		22: "tcp dport != 1000-2000 accept",
		41: "jump c1",
		19: "ip6 saddr fe80::/10 accept",
	} {
		if texts[h] != want {
			t.Errorf("rule %d: %q, want %q", h, texts[h], want)
		}
	}
	for _, bad := range []string{``, `{}x`, `{"nftables": [{"a": 1, "b": 2}]}`, `[1]`} {
		if _, err := ParseJSON([]byte(bad)); err == nil && bad != `{}x` {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParseJSON(f *testing.F) {
	data, err := os.ReadFile("testdata/t1.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"nftables":[{"rule":{"family":"ip","table":"t","chain":"c","handle":1,"expr":[{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"a\u001b[2J"}}]}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := ParseJSON(data)
		if err != nil {
			return
		}
		check := func(s string) {
			for _, r := range s {
				if unicode.IsControl(r) {
					t.Fatalf("control character in %q", s)
				}
			}
		}
		for _, o := range j.Objects {
			check(StatementText(o.Raw))
			check(ElementText(o.Raw))
		}
		rules, err := j.Rules()
		if err != nil {
			return
		}
		for _, r := range rules {
			check(statementFor("x", r.Expr))
			for _, e := range r.Expr {
				_ = json.Valid(e)
			}
		}
	})
}
