package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"roundtrip/engine/inet"
)

// This file reads and writes the text format of iptables-save / iptables-restore, for both
// backends (legacy and nf_tables print the same format). The tokenizer mirrors iptables'
// own add_param_to_argv (iptables/xshared.c): words are separated by spaces and tabs, a double
// quote opens a quoted part in which a backslash escapes the next character, and quoted and
// unquoted parts of one word are glued together. iptables-save quotes with xtables_save_string,
// which escapes `"`, `\` and `'` inside double quotes.

// ParseSave parses the output of `iptables-save [-c]` (f == V4) or `ip6tables-save [-c]`
// (f == V6). Tables, chains and rules keep the order of the file; each rule's Spec is the exact
// text after `-A CHAIN ` without the `[packets:bytes]` prefix. It is strict: output cut short,
// a rule for an undeclared chain or a line it does not understand is an error naming the line,
// because a half-read ruleset would make every trace through it wrong. Empty input is no tables.
func ParseSave(f inet.Family, data []byte) ([]Table, error) {
	tool := "iptables-save"
	switch f {
	case inet.V4:
	case inet.V6:
		tool = "ip6tables-save"
	default:
		return nil, fmt.Errorf("parsing iptables-save output: invalid address family %d: want inet or inet6", uint8(f))
	}
	var (
		tables    []Table
		cur       *Table // the open table, between *name and COMMIT
		curLine   int    // line of the open table's *name
		chainIdx  map[string]int
		tableSeen = map[string]int{}
	)
	lineErr := func(n int, format string, args ...any) error {
		return fmt.Errorf("%s line %d: %s", tool, n, fmt.Sprintf(format, args...))
	}
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		raw, rest, terminated := bytes.Cut(data, []byte("\n"))
		data = rest
		// Trailing carriage returns are dropped too, so that a file saved with CRLF line
		// endings reads the same.
		line := strings.TrimLeft(strings.TrimRight(string(raw), " \t\r"), " \t")
		switch {
		case line == "" || line[0] == '#':
			continue
		case line[0] == '*':
			name := line[1:]
			if cur != nil {
				return nil, lineErr(lineNo, "table %s starts but table %s (line %d) has no COMMIT (truncated output?)", name, cur.Name, curLine)
			}
			if name == "" || strings.ContainsAny(name, " \t") {
				return nil, lineErr(lineNo, "bad table name %q", name)
			}
			if prev, ok := tableSeen[name]; ok {
				return nil, lineErr(lineNo, "table %s appears twice (first on line %d)", name, prev)
			}
			tableSeen[name] = lineNo
			tables = append(tables, Table{Family: f, Name: name})
			cur, curLine, chainIdx = &tables[len(tables)-1], lineNo, map[string]int{}
		case line == "COMMIT":
			if cur == nil {
				return nil, lineErr(lineNo, "COMMIT without a *table line before it")
			}
			cur = nil
		case line[0] == ':':
			if cur == nil {
				return nil, lineErr(lineNo, "chain declaration %q outside a table (no *table line before it)", line)
			}
			c, err := parseChainLine(line)
			if err != nil {
				return nil, lineErr(lineNo, "%v", err)
			}
			if _, dup := chainIdx[c.Name]; dup {
				return nil, lineErr(lineNo, "chain %s is declared twice in table %s", c.Name, cur.Name)
			}
			chainIdx[c.Name] = len(cur.Chains)
			cur.Chains = append(cur.Chains, c)
		default:
			chain, r, err := parseRuleLine(f, line)
			if err != nil {
				if cur != nil && !terminated {
					return nil, lineErr(lineNo, "%v (the input ends in this line and table %s has no COMMIT: truncated output?)", err, cur.Name)
				}
				return nil, lineErr(lineNo, "%v", err)
			}
			if cur == nil {
				return nil, lineErr(lineNo, "rule for chain %s outside a table (no *table line before it)", chain)
			}
			i, ok := chainIdx[chain]
			if !ok {
				return nil, lineErr(lineNo, "rule for chain %s, which table %s does not declare (no :%s line before it)", chain, cur.Name, chain)
			}
			cur.Chains[i].Rules = append(cur.Chains[i].Rules, r)
		}
	}
	if cur != nil {
		return nil, lineErr(curLine, "table %s has no COMMIT (truncated output?)", cur.Name)
	}
	return tables, nil
}

// parseChainLine parses ":NAME POLICY [packets:bytes]" (the counters are optional, as in
// iptables-restore).
func parseChainLine(line string) (Chain, error) {
	f := strings.FieldsFunc(line[1:], func(r rune) bool { return r == ' ' || r == '\t' })
	if len(f) == 0 || line[1] == ' ' || line[1] == '\t' {
		return Chain{}, fmt.Errorf("chain declaration %q has no chain name", line)
	}
	c := Chain{Name: f[0]}
	if len(f) < 2 {
		return Chain{}, fmt.Errorf("chain %s has no policy: want ACCEPT, DROP or - after the name", c.Name)
	}
	switch f[1] {
	case "ACCEPT", "DROP":
		c.Policy = f[1]
	case "-":
	default:
		return Chain{}, fmt.Errorf("chain %s has policy %q: want ACCEPT, DROP or -", c.Name, f[1])
	}
	if len(f) > 2 {
		var err error
		if c.Packets, c.Bytes, err = parseCounters(f[2]); err != nil {
			return Chain{}, fmt.Errorf("chain %s: %w", c.Name, err)
		}
	}
	if len(f) > 3 {
		return Chain{}, fmt.Errorf("chain %s: unexpected %q after the counters", c.Name, strings.Join(f[3:], " "))
	}
	return c, nil
}

// parseCounters parses "[packets:bytes]".
func parseCounters(s string) (packets, octets uint64, err error) {
	inner, ok := strings.CutPrefix(s, "[")
	if ok {
		inner, ok = strings.CutSuffix(inner, "]")
	}
	p, b, ok2 := strings.Cut(inner, ":")
	if !ok || !ok2 {
		return 0, 0, fmt.Errorf("bad counters %q: want [packets:bytes]", s)
	}
	if packets, err = strconv.ParseUint(p, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("bad counters %q: packets: want a number below 2^64", s)
	}
	if octets, err = strconv.ParseUint(b, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("bad counters %q: bytes: want a number below 2^64", s)
	}
	return packets, octets, nil
}

// parseRuleLine parses "[packets:bytes] -A CHAIN spec..." and returns the chain and the rule.
func parseRuleLine(f inet.Family, line string) (string, Rule, error) {
	var r Rule
	rest := line
	if line[0] == '[' {
		end := strings.IndexByte(line, ']')
		if end < 0 {
			return "", r, fmt.Errorf("bad counters in %q: want [packets:bytes] before -A CHAIN", line)
		}
		var err error
		if r.Packets, r.Bytes, err = parseCounters(line[:end+1]); err != nil {
			return "", r, err
		}
		rest = strings.TrimLeft(line[end+1:], " \t")
	}
	cmd := rest
	if end := strings.IndexAny(rest, " \t"); end >= 0 {
		cmd = rest[:end]
	}
	switch cmd {
	case "-A", "--append":
	case "-I", "--insert", "-D", "--delete", "-R", "--replace", "-N", "--new-chain", "-X", "--delete-chain",
		"-P", "--policy", "-F", "--flush", "-Z", "--zero", "-E", "--rename-chain":
		return "", r, fmt.Errorf("command %s is not iptables-save output: only -A rules, :CHAIN declarations, *table and COMMIT lines are read", cmd)
	default:
		return "", r, fmt.Errorf("line not understood: %q", line)
	}
	// The chain name is one raw word: iptables-save prints it unquoted.
	after := strings.TrimLeft(rest[len(cmd):], " \t")
	end := strings.IndexAny(after, " \t")
	if end < 0 {
		end = len(after)
	}
	chain := after[:end]
	if chain == "" {
		return "", r, fmt.Errorf("%s without a chain name", cmd)
	}
	spec := strings.TrimLeft(after[end:], " \t")
	parsed, err := ParseRule(f, spec)
	if err != nil {
		return chain, r, fmt.Errorf("rule in chain %s: %w", chain, err)
	}
	parsed.Packets, parsed.Bytes = r.Packets, r.Bytes
	return chain, parsed, nil
}

// token is one word of a rule after quote removal. A quoted word is always a value, never an
// option or a negation, so that a comment of "!" or a log prefix of "-f" reads back as written.
type Token struct {
	Text   string
	Quoted bool
}

// SplitArgs splits a rule the way iptables-restore does (add_param_to_argv).
func SplitArgs(s string) ([]Token, error) {
	var (
		toks                         []Token
		cur                          strings.Builder
		inWord, quoted, inQuote, esc bool
		quoteAt                      int
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQuote && esc:
			cur.WriteByte(c)
			esc = false
		case inQuote && c == '\\':
			esc = true
		case inQuote && c == '"':
			inQuote = false
		case inQuote:
			cur.WriteByte(c)
		case c == '"':
			inQuote, quoted, inWord, quoteAt = true, true, true, i
		case c == ' ' || c == '\t':
			if inWord {
				toks = append(toks, Token{cur.String(), quoted})
				cur.Reset()
				inWord, quoted = false, false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inQuote {
		rest := s[quoteAt:]
		if len(rest) > 40 {
			rest = rest[:40] + "..."
		}
		return nil, fmt.Errorf("unterminated quote: %s has no closing \"", rest)
	}
	if inWord {
		toks = append(toks, Token{cur.String(), quoted})
	}
	return toks, nil
}

// isOption reports whether a word is an option: "--name" or a single dash and a letter. Other
// words starting with a dash ("-1", "-foo" as a log prefix) are values.
func (t Token) isOption() bool {
	if t.Quoted {
		return false
	}
	s := t.Text
	return len(s) >= 3 && s[0] == '-' && s[1] == '-' ||
		len(s) == 2 && s[0] == '-' && (s[1] >= 'a' && s[1] <= 'z' || s[1] >= 'A' && s[1] <= 'Z')
}

func (t Token) isBang() bool { return !t.Quoted && t.Text == "!" }

func (t Token) isValue() bool { return !t.isOption() && !t.isBang() }

// topLevel maps the rule options of iptables itself (not of a match or target) to their short
// letter. The long names are getopt names from iptables/xshared.c; extensions cannot reuse them.
var topLevel = map[string]byte{
	"-s": 's', "--source": 's', "--src": 's',
	"-d": 'd', "--destination": 'd', "--dst": 'd',
	"-i": 'i', "--in-interface": 'i',
	"-o": 'o', "--out-interface": 'o',
	"-p": 'p', "--protocol": 'p',
	"-f": 'f', "--fragment": 'f', "--fragments": 'f',
	"-m": 'm', "--match": 'm',
	"-j": 'j', "--jump": 'j',
	"-g": 'g', "--goto": 'g',
}

// implicitMatch names the match iptables loads by itself for an option given after -p without
// -m (`-p tcp --dport 22`). iptables-save always prints the -m, but hand-written restore files
// often leave it out.
var implicitMatch = map[string]string{
	"tcp": "tcp", "udp": "udp", "udplite": "udplite", "sctp": "sctp", "dccp": "dccp",
	"icmp": "icmp", "ipv6-icmp": "icmp6", "icmpv6": "icmp6", "icmp6": "icmp6",
}

// ParseRule parses a rule as iptables-save prints it after `-A CHAIN` (without
// counters) into its fields; Spec is the text itself. Every word must be understood: values
// belong to the option before them, options to the -m match or -j target before them.
func ParseRule(f inet.Family, spec string) (Rule, error) {
	r := Rule{Spec: spec}
	toks, err := SplitArgs(spec)
	if err != nil {
		return Rule{}, err
	}
	const (
		inRule = iota
		inMatch
		inTarget
	)
	where := inRule
	var seen [256]bool // top-level options given, by letter
	for i := 0; i < len(toks); {
		not := false
		t := toks[i]
		if t.isBang() {
			if i+1 == len(toks) {
				return Rule{}, errors.New("! at the end of the rule: it must come before an option")
			}
			not, i, t = true, i+1, toks[i+1]
			if !t.isOption() {
				return Rule{}, fmt.Errorf("! before %q: it must come before an option", t.Text)
			}
		}
		if !t.isOption() {
			return Rule{}, fmt.Errorf("unexpected %q after %s: values must follow an option", t.Text, describePrev(toks, i))
		}
		i++
		// getopt_long also takes "--name=value"; the name decides what the option is.
		optText, inline, hasInline := t.Text, "", false
		if strings.HasPrefix(t.Text, "--") {
			var name string
			name, inline, hasInline = strings.Cut(t.Text[2:], "=")
			optText = "--" + name
		}
		letter, isTop := topLevel[optText]
		if !isTop && len(t.Text) == 2 {
			return Rule{}, fmt.Errorf("unknown option %s", t.Text)
		}
		if isTop {
			if letter == 'j' || letter == 'g' {
				if r.Target != "" {
					return Rule{}, fmt.Errorf("option %s after a target: a rule has one -j or -g", t.Text)
				}
			} else if letter != 'm' && seen[letter] {
				return Rule{}, fmt.Errorf("option %s given twice", t.Text)
			}
			seen[letter] = true
			if letter == 'f' {
				if f != inet.V4 {
					return Rule{}, fmt.Errorf("option %s is IPv4 only (ip6tables matches fragments with -m frag)", t.Text)
				}
				if hasInline {
					return Rule{}, fmt.Errorf("option %s takes no value", t.Text)
				}
				v := !not
				r.Fragment = &v
				continue
			}
			var v string
			switch {
			case hasInline:
				v = inline
			default:
				// Old-style negation after the option: `-s ! 10.0.0.0/8`.
				if i+1 < len(toks) && toks[i].isBang() && toks[i+1].isValue() {
					if not {
						return Rule{}, fmt.Errorf("option %s negated twice", t.Text)
					}
					not, i = true, i+1
				}
				// An interface may be called "-f": iptables-save prints it unquoted, and
				// getopt takes the word after -i or -o as its value whatever it looks like.
				if i < len(toks) && (toks[i].isValue() || (letter == 'i' || letter == 'o') && !toks[i].isBang()) {
					v = toks[i].Text
					i++
				}
			}
			if v == "" {
				return Rule{}, fmt.Errorf("option %s needs a value", t.Text)
			}
			if not && (letter == 'm' || letter == 'j' || letter == 'g') {
				return Rule{}, fmt.Errorf("option %s cannot be negated", t.Text)
			}
			switch letter {
			case 's':
				r.Src = &NegAddr{Not: not, Prefix: v}
			case 'd':
				r.Dst = &NegAddr{Not: not, Prefix: v}
			case 'i':
				r.In = &NegStr{Not: not, Value: v}
			case 'o':
				r.Out = &NegStr{Not: not, Value: v}
			case 'p':
				r.Proto = &NegStr{Not: not, Value: v}
			case 'm':
				r.Matches = append(r.Matches, Match{Name: v})
				where = inMatch
			case 'j', 'g':
				r.Target, r.Goto = v, letter == 'g'
				where = inTarget
			}
			continue
		}
		// An option of a match or of the target, with all the values that follow it.
		if optText == "--" {
			return Rule{}, fmt.Errorf("option %s has no name", t.Text)
		}
		o := Option{Name: optText[2:], Not: not}
		if hasInline {
			o.Values = append(o.Values, inline)
		}
		if !hasInline && i+1 < len(toks) && toks[i].isBang() && toks[i+1].isValue() {
			// Old-style negation after the option: `--dport ! 22`.
			if not {
				return Rule{}, fmt.Errorf("option %s negated twice", t.Text)
			}
			o.Not, i = true, i+1
		}
		for ; i < len(toks) && toks[i].isValue(); i++ {
			o.Values = append(o.Values, toks[i].Text)
		}
		switch where {
		case inMatch:
			m := &r.Matches[len(r.Matches)-1]
			m.Options = append(m.Options, o)
		case inTarget:
			r.TargetOpts = append(r.TargetOpts, o)
		default:
			proto := ""
			if r.Proto != nil && !r.Proto.Not {
				proto = implicitMatch[strings.ToLower(r.Proto.Value)]
			}
			if proto == "" {
				return Rule{}, fmt.Errorf("option %s before any -m match or -j target", t.Text)
			}
			r.Matches = append(r.Matches, Match{Name: proto, Options: []Option{o}})
			where = inMatch
		}
	}
	return r, nil
}

// describePrev names the word before toks[i] for an error message.
func describePrev(toks []Token, i int) string {
	if i == 0 {
		return "the chain name"
	}
	return strconv.Quote(toks[i-1].Text)
}

// savedQuoted lists options whose values iptables-save prints with xtables_save_string, which
// quotes everything but letters, digits, '-' and '_' (libxt_comment, LOG, NFLOG, string, u32,
// helper). Other values are printed raw and quoted here only when they would not read back.
var savedQuoted = map[string]bool{
	"comment": true, "log-prefix": true, "nflog-prefix": true, "ulog-prefix": true,
	"string": true, "hex-string": true, "u32": true, "helper": true,
}

// quoteArg renders one value so that SplitArgs reads it back unchanged.
func quoteArg(v string, saveString bool) string {
	need := v == "" || strings.ContainsAny(v, " \t\"\r\n") || !(Token{Text: v}).isValue()
	if saveString && !need {
		for i := 0; i < len(v); i++ {
			c := v[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				need = true
				break
			}
		}
	}
	if !need {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '"' || c == '\\' || c == '\'' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
	return b.String()
}

// Args renders the rule from its fields as iptables-save prints it after `-A CHAIN` (without
// counters), in iptables-save's order: addresses, interfaces, protocol, fragment, matches,
// target. Spec is ignored, so a rule built field by field (by a wizard) renders the same way
// as one read from the kernel. Names of options, matches and chains are written as they are.
func (r Rule) Args() string {
	var parts []string
	neg := func(not bool, opt, v string) {
		if not {
			parts = append(parts, "!")
		}
		parts = append(parts, opt, quoteArg(v, false))
	}
	if r.Src != nil {
		neg(r.Src.Not, "-s", r.Src.Prefix)
	}
	if r.Dst != nil {
		neg(r.Dst.Not, "-d", r.Dst.Prefix)
	}
	if r.In != nil {
		neg(r.In.Not, "-i", r.In.Value)
	}
	if r.Out != nil {
		neg(r.Out.Not, "-o", r.Out.Value)
	}
	if r.Proto != nil {
		neg(r.Proto.Not, "-p", r.Proto.Value)
	}
	if r.Fragment != nil {
		if !*r.Fragment {
			parts = append(parts, "!")
		}
		parts = append(parts, "-f")
	}
	opts := func(os []Option) {
		for _, o := range os {
			if o.Not {
				parts = append(parts, "!")
			}
			parts = append(parts, "--"+o.Name)
			for _, v := range o.Values {
				parts = append(parts, quoteArg(v, savedQuoted[o.Name]))
			}
		}
	}
	for _, m := range r.Matches {
		parts = append(parts, "-m", quoteArg(m.Name, false))
		opts(m.Options)
	}
	if r.Target != "" {
		if r.Goto {
			parts = append(parts, "-g", quoteArg(r.Target, false))
		} else {
			parts = append(parts, "-j", quoteArg(r.Target, false))
		}
		opts(r.TargetOpts)
	}
	return strings.Join(parts, " ")
}

// RenderRestore writes tables of one family as iptables-restore input, the inverse of
// ParseSave: parsing the result gives the same tables back. Each rule is written from
// its Spec, or from its fields (Args) when Spec is empty. Like iptables-save, it always writes
// chain counters and writes rule counters ("[packets:bytes] -A ...") only when counters is
// true; iptables-restore applies both only when run with -c.
func RenderRestore(tables []Table, counters bool) []byte {
	var b bytes.Buffer
	for _, t := range tables {
		fmt.Fprintf(&b, "*%s\n", t.Name)
		for _, c := range t.Chains {
			policy := c.Policy
			if policy == "" {
				policy = "-"
			}
			fmt.Fprintf(&b, ":%s %s [%d:%d]\n", c.Name, policy, c.Packets, c.Bytes)
		}
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				if counters {
					fmt.Fprintf(&b, "[%d:%d] ", r.Packets, r.Bytes)
				}
				b.WriteString("-A ")
				b.WriteString(c.Name)
				spec := r.Spec
				if spec == "" {
					spec = r.Args()
				}
				if spec != "" {
					b.WriteByte(' ')
					b.WriteString(spec)
				}
				b.WriteByte('\n')
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.Bytes()
}

// ParseMark parses "V" or "V/M" (decimal or 0x-hex); a missing mask is 0xffffffff.
func ParseMark(s string) (v, m uint32, err error) {
	vs, ms, hasMask := strings.Cut(s, "/")
	v, err = ParseU32(vs)
	if err != nil {
		return 0, 0, err
	}
	m = 0xffffffff
	if hasMask {
		if m, err = ParseU32(ms); err != nil {
			return 0, 0, err
		}
	}
	return v, m, nil
}

func ParseU32(s string) (uint32, error) {
	var n uint64
	var err error
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		_, err = fmt.Sscanf(h, "%x", &n)
		if h == "" || strings.Trim(h, "0123456789abcdef") != "" {
			err = errors.New("bad hex")
		}
	} else {
		_, err = fmt.Sscanf(s, "%d", &n)
		if s == "" || strings.Trim(s, "0123456789") != "" {
			err = errors.New("bad number")
		}
	}
	if err != nil || n > 0xffffffff {
		return 0, fmt.Errorf("%q is not a 32-bit number", s)
	}
	return uint32(n), nil
}
