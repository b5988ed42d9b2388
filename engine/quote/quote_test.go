package quote

import (
	"bytes"
	"testing"
)

func TestTermSafe(t *testing.T) {
	for in, want := range map[string]string{
		"eth0":                 "eth0",
		"\x1b]0;pwned\x07":     `\x1b]0;pwned\x07`,
		"a\nb\tc\rd":           `a\nb\tc\rd`,
		"caf\xc3\xa9":          "café",
		"\xff":                 `\xff`,
		"\u202eevil\u2066":     `\u202eevil\u2066`,
		"x\u009by":             `x\u009by`,
		`back\slash`:           `back\slash`,
		"\x7f":                 `\x7f`,
		"host\x1b[2J\x1b[1;1H": `host\x1b[2J\x1b[1;1H`,
	} {
		if got := Term(in); got != want {
			t.Errorf("TermSafe(%q) = %q, want %q", in, got, want)
		}
	}
	var b bytes.Buffer
	TermFprintf(&b, "link %-6s mtu %d %v\n", "a\x1bb", 1500, []string{"\x07"})
	if got := b.String(); got != "link a\\x1bb    mtu 1500 [\\x07]\n" {
		t.Errorf("TermFprintf: %q", got)
	}
	if got := TermLines("one\x1b\ntwo"); got != "one\\x1b\ntwo" {
		t.Errorf("TermSafeLines: %q", got)
	}
	styled := "\x1b[1;31mred\x1b[0m\n\x1b]52;c;AAAA\x07 \x1b[2J"
	if got, want := TermStyled(styled), "\x1b[1;31mred\x1b[0m\n\\x1b]52;c;AAAA\\x07 \\x1b[2J"; got != want {
		t.Errorf("TermSafeStyled(%q) = %q, want %q", styled, got, want)
	}
}

func TestNFTStringRefusesBreakout(t *testing.T) {
	if _, err := NFTString(`"; }; }; flush ruleset; table ip evil {`); err == nil {
		t.Error("a double quote was written into an nft string")
	}
	if s, err := NFTString(`it's $x; {ok}`); err != nil || s != `"it's $x; {ok}"` {
		t.Errorf("nftString: %s, %v", s, err)
	}
	for in, want := range map[string]string{"RT-A": "RT-A", "1x": `"1x"`, "a b": `"a b"`} {
		if got, err := NFTIdent(in); err != nil || got != want {
			t.Errorf("nftIdent(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
}
