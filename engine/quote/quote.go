// Package quote is the one place where values are quoted for the languages roundtrip writes
// (sh, systemd units, nft) and escaped for the terminal it prints to.
package quote

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// This file holds the one quoting function of each language roundtrip writes (POSIX shell,
// systemd unit files, nftables) and the one escaping function for text shown on a terminal.
// Every value that comes from a plan, a snapshot or the host goes through one of them: names
// of interfaces may legally hold `$ ( ) ; >` and backquotes, and a snapshot may come from
// anywhere.

// unsafeRune reports whether a rune must not reach a terminal or a script as it is: C0 and C1
// control characters, DEL, the Unicode line and paragraph separators, and the bidirectional
// controls that can make text read differently from what it is (CVE-2021-42574).
func unsafeRune(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069,
		r == 0x2028, r == 0x2029, r == utf8.RuneError:
		return true
	}
	return false
}

// PlainASCII reports whether s is printable ASCII only (the common case, checked without
// decoding).
func PlainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// HasControl reports whether s holds anything Term would escape: control characters,
// invalid UTF-8, line separators or bidirectional controls.
func HasControl(s string) bool {
	if PlainASCII(s) {
		return false
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if unsafeRune(r) {
			return true
		}
		i += n
	}
	return false
}

// Term makes a string safe to print on a terminal: control characters become \n, \t, \r
// or \xNN, bytes that are not UTF-8 become \xNN, C1 controls, line separators and
// bidirectional controls become \uNNNN. Everything else, including backslashes, is kept, so
// ordinary names read as they are.
func Term(s string) string {
	if !HasControl(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case !unsafeRune(r):
			b.WriteString(s[i : i+n])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80 || r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += n
	}
	return b.String()
}

// TermLines is Term for text of several lines (an error that joins several problems):
// each line is escaped, the line breaks between them are kept.
func TermLines(s string) string {
	if !HasControl(s) {
		return s
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = Term(l)
	}
	return strings.Join(lines, "\n")
}

// TermStyled is Term for a whole screen of styled text (the console's frame): line
// breaks are kept, and so are SGR sequences (ESC [ digits ; : m: colours and attributes, which
// only change how text looks); every other escape sequence and control character is escaped.
// It is the backstop behind the escaping of each value, which is what keeps a value's own SGR
// sequences out.
func TermStyled(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if s[i] == '\n' {
			b.WriteByte('\n')
			i++
			continue
		}
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == ';' || s[j] == ':') {
				j++
			}
			if j < len(s) && s[j] == 'm' {
				b.WriteString(s[i : j+1])
				i = j + 1
				continue
			}
		}
		_, n := utf8.DecodeRuneInString(s[i:])
		b.WriteString(Term(s[i : i+n]))
		i += n
	}
	return b.String()
}

// termArg formats one argument as its usual verb would and escapes the result (Term).
type termArg struct{ v any }

func (a termArg) Format(f fmt.State, verb rune) {
	io.WriteString(f, Term(fmt.Sprintf(fmt.FormatString(f, verb), a.v)))
}

// TermFprintf is fmt.Fprintf for text shown to a person: every argument is escaped with
// Term after formatting, whatever its type; the format itself is trusted.
func TermFprintf(w io.Writer, format string, a ...any) (int, error) {
	return fmt.Fprintf(w, format, TermArgs(a...)...)
}

// TermSprintf is fmt.Sprintf with TermFprintf's escaping.
func TermSprintf(format string, a ...any) string {
	return fmt.Sprintf(format, TermArgs(a...)...)
}

// TermArgs wraps arguments of a fmt call so that each is escaped with Term.
func TermArgs(a ...any) []any {
	out := make([]any, len(a))
	for i, v := range a {
		out[i] = termArg{v}
	}
	return out
}

// shellSafe reports whether a byte needs no quoting in a shell word. The set is deliberately
// small: no glob, tilde, brace, quote, variable or command characters.
func shellSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '-' || c == '.' || c == '/' || c == ':' || c == ',' || c == '=' || c == '+' || c == '@' || c == '%'
}

// allShellSafe reports whether every byte of s is shellSafe.
func allShellSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if !shellSafe(s[i]) {
			return false
		}
	}
	return true
}

// Shell quotes one word for a POSIX shell: plainly safe words are left as they are, the
// rest go in single quotes (a single quote itself as \' outside them). Characters that must
// not appear raw in a script (control characters, bytes that are not UTF-8, bidirectional
// controls; see Term) are written as "$(printf '\ooo')" so that the script stays
// printable text; a newline stays a newline inside the quotes. Trailing newlines of a word
// written with printf would be lost (command substitution drops them), which is one more
// reason plans refuse control characters.
func Shell(s string) string {
	if s == "" {
		return "''"
	}
	if allShellSafe(s) {
		return s
	}
	var b strings.Builder
	open := false
	quote := func(on bool) {
		if on != open {
			b.WriteByte('\'')
			open = on
		}
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\'':
			quote(false)
			b.WriteString(`\'`)
		case r == '\n' || !unsafeRune(r):
			quote(true)
			b.WriteString(s[i : i+n])
		default:
			quote(false)
			b.WriteString(`"$(printf '`)
			for j := i; j < i+n; j++ {
				fmt.Fprintf(&b, `\%03o`, s[j])
			}
			b.WriteString(`')"`)
		}
		i += n
	}
	quote(false)
	return b.String()
}

// ShellJoin quotes each word with Shell and joins them with spaces: a command line that
// runs exactly these arguments.
func ShellJoin(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Shell(w)
	}
	return strings.Join(q, " ")
}

// Systemd quotes one word of a systemd command line (ExecStart=, systemd.syntax(7) and
// systemd.service(5)): plainly safe words are left as they are; the rest are written in
// double quotes with C escapes for backslash, double quote and any character that is not
// printable, "%%" for a literal '%' (specifiers are expanded in each word) and "$$" for a
// literal '$' (environment variables are). The result never holds a line break.
func Systemd(s string) string {
	if s != "" && allShellSafe(s) {
		return strings.ReplaceAll(s, "%", "%%")
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\\' || r == '"':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '%':
			b.WriteString("%%")
		case r == '$':
			b.WriteString("$$")
		case unsafeRune(r):
			for j := i; j < i+n; j++ {
				fmt.Fprintf(&b, `\x%02x`, s[j])
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	b.WriteByte('"')
	return b.String()
}

// SystemdText makes free text (a description, a comment) fit one line of a unit file: white
// space runs become one space, control characters are escaped, '%' is doubled (specifiers are
// expanded in Description=) and trailing backslashes, which would continue the line, go.
func SystemdText(s string) string {
	return strings.TrimRight(strings.ReplaceAll(OneLine(s), "%", "%%"), `\`)
}

// NFTString renders a value as an nftables quoted string. nft's scanner ends a string at the
// next '"' and knows no escapes, so a value with a double quote (or anything not printable)
// cannot be written at all: it is an error rather than a way out of the string.
func NFTString(s string) (string, error) {
	if strings.Contains(s, `"`) || HasControl(s) {
		return "", fmt.Errorf("%q cannot be written as an nft string (double quotes and control characters have no escape in nft)", s)
	}
	return `"` + s + `"`, nil
}

// NFTIdent renders a chain name for nft: as it is when nft's scanner reads it as one
// identifier (a letter, then letters, digits, '_', '-', '.'), else as a quoted string.
func NFTIdent(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty nft identifier")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.')) {
			return NFTString(s)
		}
	}
	return s, nil
}

// oneLine keeps text for a comment on one line and safe to print: white space runs become
// one space and control characters are escaped (Term), so a comment can neither end
// early nor carry terminal escapes.
func OneLine(s string) string {
	return Term(strings.Join(strings.Fields(s), " "))
}
