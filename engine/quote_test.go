package engine

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// trickyWords are values that break naive quoting: shell syntax, quotes of every kind,
// control characters, bytes that are not UTF-8, bidirectional overrides, and legal interface
// names such as l$(>PW).
var trickyWords = []string{
	"", "plain", "l$(>PW)", "$(touch X)static", "`id`", "a;b", "a b", "'", `"`, `\`, `a'b"c\d`,
	"*", "~root", "{a,b}", "$HOME", "${x:-y}", "-n", "#x", "a\nb", "\x1b[31mred", "\x01\x7f",
	"caf\xc3\xa9", "\xff\xfe", "\u202eevil", "x\u0085y", "%n%s", "a=b", "!x", "&", "|", "<>",
}

// TestShellQuoteRoundTrips runs sh on each quoted word: the word sh sees is the original,
// byte for byte, and the quoted text holds nothing a terminal would act on.
func TestShellQuoteRoundTrips(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("needs sh")
	}
	for _, w := range trickyWords {
		q := ShellQuote(w)
		if HasControl(strings.ReplaceAll(q, "\n", "")) {
			t.Errorf("ShellQuote(%q) = %q holds control characters", w, q)
		}
		out, err := exec.Command(sh, "-c", `printf '%s' `+q).Output()
		if err != nil {
			t.Errorf("sh rejects ShellQuote(%q) = %s: %v", w, q, err)
			continue
		}
		if string(out) != w {
			t.Errorf("ShellQuote(%q) = %s reads back as %q", w, q, out)
		}
	}
	if got := ShellJoin("ip", "link", "del", "dev", "l$(>PW)"); got != `ip link del dev 'l$(>PW)'` {
		t.Errorf("ShellJoin: %s", got)
	}
}

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
		if got := TermSafe(in); got != want {
			t.Errorf("TermSafe(%q) = %q, want %q", in, got, want)
		}
	}
	var b bytes.Buffer
	TermFprintf(&b, "link %-6s mtu %d %v\n", "a\x1bb", 1500, []string{"\x07"})
	if got := b.String(); got != "link a\\x1bb    mtu 1500 [\\x07]\n" {
		t.Errorf("TermFprintf: %q", got)
	}
	if got := TermSafeLines("one\x1b\ntwo"); got != "one\\x1b\ntwo" {
		t.Errorf("TermSafeLines: %q", got)
	}
	styled := "\x1b[1;31mred\x1b[0m\n\x1b]52;c;AAAA\x07 \x1b[2J"
	if got, want := TermSafeStyled(styled), "\x1b[1;31mred\x1b[0m\n\\x1b]52;c;AAAA\\x07 \\x1b[2J"; got != want {
		t.Errorf("TermSafeStyled(%q) = %q, want %q", styled, got, want)
	}
}

// systemdUnquote splits an ExecStart value into words as systemd does (systemd.syntax(7):
// double and single quotes, C escapes, "%%" and "$$"), for the words SystemdQuote writes.
func systemdUnquote(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quote := false, byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\':
			if i+1 >= len(line) {
				t.Fatalf("trailing backslash in %q", line)
			}
			i++
			switch e := line[i]; e {
			case 'n':
				cur.WriteByte('\n')
			case 't':
				cur.WriteByte('\t')
			case 'x':
				var v byte
				for _, h := range line[i+1 : i+3] {
					v = v<<4 | byte(strings.IndexRune("0123456789abcdef", h))
				}
				cur.WriteByte(v)
				i += 2
			default:
				cur.WriteByte(e)
			}
			inWord = true
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote, inWord = c, true
		case quote == 0 && c == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '%' || c == '$':
			if i+1 >= len(line) || line[i+1] != c {
				t.Fatalf("lone %c in %q: systemd would expand it", c, line)
			}
			cur.WriteByte(c)
			i++
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		t.Fatalf("unterminated quote in %q", line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func TestSystemdQuoteRoundTrips(t *testing.T) {
	for _, w := range trickyWords {
		if w == "" {
			continue
		}
		q := SystemdQuote(w)
		if strings.ContainsAny(q, "\n\r") {
			t.Errorf("SystemdQuote(%q) = %q spans lines", w, q)
		}
		if got := systemdUnquote(t, q); len(got) != 1 || got[0] != w {
			t.Errorf("SystemdQuote(%q) = %s reads back as %q", w, q, got)
		}
	}
	if got := SystemdText("50% of \\\nthis\\"); got != "50%% of \\ this" {
		t.Errorf("SystemdText: %q", got)
	}
}

func TestNFTStringRefusesBreakout(t *testing.T) {
	if _, err := nftString(`"; }; }; flush ruleset; table ip evil {`); err == nil {
		t.Error("a double quote was written into an nft string")
	}
	if s, err := nftString(`it's $x; {ok}`); err != nil || s != `"it's $x; {ok}"` {
		t.Errorf("nftString: %s, %v", s, err)
	}
	for in, want := range map[string]string{"RT-A": "RT-A", "1x": `"1x"`, "a b": `"a b"`} {
		if got, err := nftIdent(in); err != nil || got != want {
			t.Errorf("nftIdent(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
}
