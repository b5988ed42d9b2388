package engine

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// RTTablesFile is where roundtrip names routing tables, relative to an iproute2 configuration
// directory: a file of its own, so that removing a name never edits the administrator's
// rt_tables. iproute2 reads rt_tables.d/*.conf after rt_tables.
const RTTablesFile = "rt_tables.d/roundtrip.conf"

// Script renders the plan as a commented POSIX shell script of ip, iptables and conntrack
// commands. The script is idempotent: every command either replaces (ip route replace, ip addr
// replace, a chain flushed and refilled) or tolerates exactly the error that means "already
// so" (ip rule add is refused with "File exists" when the identical rule is there), so running
// it twice leaves no duplicate rule, route or jump.
func (p *Plan) Script() []byte {
	var body bytes.Buffer
	used := map[string]bool{}
	var chains []Change
	chainsAt := -1
	for _, c := range p.Changes {
		c = c.normalized()
		if c.Kind == KindChain {
			if chainsAt < 0 {
				chainsAt = body.Len()
			}
			chains = append(chains, c)
			continue
		}
		scriptChange(&body, c, used)
	}
	if chainsAt >= 0 {
		var nf bytes.Buffer
		scriptChains(&nf, chains, used)
		rest := slices.Clone(body.Bytes()[chainsAt:])
		body.Truncate(chainsAt)
		body.Write(nf.Bytes())
		body.Write(rest)
	}

	var b bytes.Buffer
	b.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&b, "# roundtrip plan: %s\n", oneLine(p.Intent))
	b.WriteString("# Idempotent: running it again changes nothing and adds no duplicate rule, route or\n")
	b.WriteString("# jump. Run it as root; for a network namespace: ip netns exec NAME sh THIS-FILE.\n")
	if p.Namespace != "" {
		fmt.Fprintf(&b, "# Planned for network namespace %s.\n", p.Namespace)
	}
	b.WriteString("set -eu\n")
	// Error texts are matched below, so they must not be translated.
	b.WriteString("export LC_ALL=C\n")
	for _, h := range scriptHelpers {
		if used[h.name] {
			b.WriteString("\n" + h.text)
		}
	}
	if len(p.Changes) == 0 {
		b.WriteString("\n# Nothing to change.\n")
	}
	b.Write(body.Bytes())
	return b.Bytes()
}

var scriptHelpers = []struct{ name, text string }{
	{"try", `# try MSGS CMD...: run CMD; when it fails only because of one of the |-separated MSGS
# (the object is already there, or already gone), that is the state wanted. Any other
# failure stops the script.
try() {
	msgs=$1
	shift
	if ! out=$("$@" 2>&1); then
		ok=
		IFS='|'
		for m in $msgs; do
			case $out in *"$m"*) ok=1 ;; esac
		done
		unset IFS
		if [ -z "$ok" ]; then
			printf '%s\n' "$out" >&2
			exit 1
		fi
	fi
}
`},
	{"rt_name", `# rt_name ID [NAME]: name table ID in roundtrip's own rt_tables file, or forget its name.
rt_name() {
	f=${ROUNDTRIP_IPROUTE2_DIR:-/etc/iproute2}/` + RTTablesFile + `
	mkdir -p "${f%/*}"
	touch "$f"
	grep -v "^$1[[:space:]]" "$f" >"$f.new" || :
	if [ $# -gt 1 ]; then printf '%s\t%s\n' "$1" "$2" >>"$f.new"; fi
	mv "$f.new" "$f"
}
`},
	{"chain", `# chain CMD TABLE NAME: create roundtrip's chain NAME, or empty it when it exists.
chain() {
	try 'already exists' "$1" -w -t "$2" -N "$3"
	"$1" -w -t "$2" -F "$3"
}
`},
	{"hook", `# hook CMD TABLE BUILTIN NAME POS: jump from BUILTIN to NAME unless a jump is there already.
hook() {
	"$1" -w -t "$2" -C "$3" -j "$4" 2>/dev/null || "$1" -w -t "$2" -I "$3" "$5" -j "$4"
}
`},
	{"unhook", `# unhook CMD TABLE BUILTIN NAME: remove every jump from BUILTIN to NAME.
unhook() {
	while "$1" -w -t "$2" -C "$3" -j "$4" 2>/dev/null; do "$1" -w -t "$2" -D "$3" -j "$4"; done
}
`},
	{"unchain", `# unchain CMD TABLE NAME: delete roundtrip's chain NAME if it exists.
unchain() {
	if "$1" -w -t "$2" -n -L "$3" >/dev/null 2>&1; then
		"$1" -w -t "$2" -F "$3"
		"$1" -w -t "$2" -X "$3"
	fi
}
`},
}

// oneLine keeps a comment on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// shellQuote quotes a word for sh unless it is plainly safe.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:,=+@%^") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func comment(b *bytes.Buffer, c Change) {
	fmt.Fprintf(b, "\n# %s\n", c.Summary())
	if c.Why != "" {
		fmt.Fprintf(b, "# why: %s\n", oneLine(c.Why))
	}
}

func scriptChange(b *bytes.Buffer, c Change, used map[string]bool) {
	comment(b, c)
	switch c.Kind {
	case KindTable:
		used["rt_name"] = true
		if c.Op == OpDelete {
			fmt.Fprintf(b, "rt_name %d\n", c.Table.ID)
		} else {
			fmt.Fprintf(b, "rt_name %d %s\n", c.Table.ID, shellQuote(c.Table.Name))
		}
	case KindLink:
		l := c.Link
		if c.Op == OpDelete {
			used["try"] = true
			fmt.Fprintf(b, "try 'Cannot find device' ip link del %s\n", l.Name)
			return
		}
		if c.Op == OpAdd {
			used["try"] = true
			fmt.Fprintf(b, "try 'File exists' ip link add %s\n", linkAddArgs(*l))
		}
		set := "ip link set dev " + l.Name
		if l.MTU != 0 {
			set += fmt.Sprintf(" mtu %d", l.MTU)
		}
		if l.Master != "" {
			set += " master " + l.Master
		}
		fmt.Fprintf(b, "%s %s\n", set, upDown(l.Up))
		for _, a := range l.Addrs {
			fmt.Fprintf(b, "ip addr replace %s\n", addrArgs(l.Name, a))
		}
	case KindAddress:
		if c.Op == OpDelete {
			used["try"] = true
			fmt.Fprintf(b, "try 'Cannot assign requested address|Address not found' ip addr del %s dev %s\n", c.Address.Prefix, c.Address.Dev)
			return
		}
		fmt.Fprintf(b, "ip addr replace %s\n", addrArgs(c.Address.Dev, c.Address.Address))
	case KindSysctl:
		fmt.Fprintf(b, "echo %s >%s\n", shellQuote(c.Sysctl.Value), shellQuote(SysctlPath(c.Sysctl.Key)))
	case KindRoute:
		r := c.Route
		if c.Op == OpDelete {
			used["try"] = true
			fmt.Fprintf(b, "try 'No such process' ip %s route del %s\n", r.Family.Flag(), routeKeyArgs(*r))
			return
		}
		fmt.Fprintf(b, "ip %s route replace %s\n", r.Family.Flag(), r.Args(numericTable))
	case KindRule:
		used["try"] = true
		if c.Op == OpDelete {
			fmt.Fprintf(b, "try 'No such file or directory' ip %s rule del %s\n", c.Rule.Family.Flag(), c.Rule.Args(numericTable))
			return
		}
		fmt.Fprintf(b, "try 'File exists' ip %s rule add %s\n", c.Rule.Family.Flag(), ruleAddArgs(*c.Rule))
	case KindConntrack:
		// conntrack -D exits 1 when no entry matched; there may be none to flush.
		fmt.Fprintf(b, "if command -v conntrack >/dev/null; then conntrack -D %s >/dev/null 2>&1 || :; fi\n", strings.Join(c.Conntrack.args(), " "))
	}
}

// ruleAddArgs renders a rule for `ip rule add`, with its protocol when it has one.
func ruleAddArgs(r Rule) string {
	s := r.Args(numericTable)
	if r.Protocol != 0 {
		s += fmt.Sprintf(" protocol %d", r.Protocol)
	}
	return s
}

// routeKeyArgs renders the identity of a route for `ip route del`: without a type, gateway or
// device the kernel deletes the route with this table, destination, tos and metric.
func routeKeyArgs(r Route) string {
	s := r.Dst.String()
	if r.Dst.Bits() == 0 {
		s = "default"
	}
	if r.TOS != 0 {
		s += fmt.Sprintf(" tos 0x%02x", r.TOS)
	}
	s += fmt.Sprintf(" table %d", r.Table)
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	return s
}

func addrArgs(dev string, a Address) string {
	s := a.Prefix.String()
	if a.Peer.IsValid() {
		s = fmt.Sprintf("%s peer %s", a.Prefix.Addr(), a.Peer)
	}
	s += " dev " + dev
	if a.Scope != "" && a.Scope != "global" {
		s += " scope " + a.Scope
	}
	return s
}

// linkAddArgs renders `ip link add` arguments for a tunnel link.
func linkAddArgs(l Link) string {
	s := l.Name
	if l.HardwareAddr != "" {
		s += " address " + l.HardwareAddr
	}
	if l.MTU != 0 {
		s += fmt.Sprintf(" mtu %d", l.MTU)
	}
	s += " type " + l.Kind
	t := l.Tunnel
	if t == nil {
		return s
	}
	if l.Kind == "vxlan" {
		s += fmt.Sprintf(" id %d", t.VNI)
	}
	if t.Remote.IsValid() {
		s += " remote " + t.Remote.String()
	}
	if t.Group.IsValid() {
		s += " group " + t.Group.String()
	}
	if t.Local.IsValid() {
		s += " local " + t.Local.String()
	}
	if t.Dev != "" {
		s += " dev " + t.Dev
	}
	if l.Kind == "vxlan" {
		s += fmt.Sprintf(" dstport %d", t.Port)
	}
	if t.Key != 0 {
		s += fmt.Sprintf(" key %d", t.Key)
	}
	if t.TTL != 0 {
		s += fmt.Sprintf(" ttl %d", t.TTL)
	}
	return s
}

// scriptChains renders all chain changes together: chains are created or emptied first, so
// that rules can jump between roundtrip's chains, then filled, then hooked; deleted chains go
// last.
func scriptChains(b *bytes.Buffer, chains []Change, used map[string]bool) {
	b.WriteString("\n# roundtrip's iptables chains (the iptables-restore rendering replaces them atomically)\n")
	for _, c := range chains {
		ch := c.Chain
		cmd := iptablesCmd(ch.Family)
		comment(b, c)
		if c.Op == OpDelete {
			used["unhook"], used["try"] = true, true
			for _, bi := range hookable[ch.Table] {
				fmt.Fprintf(b, "unhook %s %s %s %s\n", cmd, ch.Table, bi, ch.Name)
			}
			continue
		}
		used["chain"], used["try"] = true, true
		fmt.Fprintf(b, "chain %s %s %s\n", cmd, ch.Table, ch.Name)
	}
	for _, c := range chains {
		if c.Op == OpDelete {
			continue
		}
		ch := c.Chain
		cmd := iptablesCmd(ch.Family)
		for _, spec := range ch.Rules {
			toks, err := splitArgs(spec)
			if err != nil {
				// Check refuses such rules; keep the text so that the script shows the problem.
				fmt.Fprintf(b, "%s -w -t %s -A %s %s\n", cmd, ch.Table, ch.Name, spec)
				continue
			}
			words := make([]string, len(toks))
			for i, t := range toks {
				words[i] = shellQuote(t.text)
			}
			fmt.Fprintf(b, "%s -w -t %s -A %s %s\n", cmd, ch.Table, ch.Name, strings.Join(words, " "))
		}
		hooked := map[string]bool{}
		for _, h := range ch.Hooks {
			used["hook"] = true
			hooked[h.Chain] = true
			fmt.Fprintf(b, "hook %s %s %s %s %d\n", cmd, ch.Table, h.Chain, ch.Name, max(h.Position, 1))
		}
		for _, bi := range hookable[ch.Table] {
			if !hooked[bi] {
				used["unhook"] = true
				fmt.Fprintf(b, "unhook %s %s %s %s\n", cmd, ch.Table, bi, ch.Name)
			}
		}
	}
	for _, c := range chains {
		if c.Op == OpDelete {
			used["unchain"] = true
			fmt.Fprintf(b, "unchain %s %s %s\n", iptablesCmd(c.Chain.Family), c.Chain.Table, c.Chain.Name)
		}
	}
}

// NetfilterTransaction renders the chain changes of one family as one iptables-restore
// --noflush transaction against the netfilter state cur: ":NAME - [0:0]" creates a chain or,
// for a chain that exists, empties it (iptables-restore --noflush flushes a declared user
// chain), the rules follow, the jump rules missing from the built-in chains are inserted at
// their positions, stray jumps are deleted, and deleted chains are removed last. Because it
// depends on which jumps cur has, it must be rendered against the state it is applied to.
// It returns nil when no change concerns the family.
func NetfilterTransaction(f Family, changes []Change, cur *State) []byte {
	type tableOps struct {
		name    string
		changes []Change
	}
	var tables []*tableOps
	for _, c := range changes {
		if c.Kind != KindChain || c.Chain.Family != f {
			continue
		}
		c = c.normalized()
		i := slices.IndexFunc(tables, func(t *tableOps) bool { return t.name == c.Chain.Table })
		if i < 0 {
			tables = append(tables, &tableOps{name: c.Chain.Table})
			i = len(tables) - 1
		}
		tables[i].changes = append(tables[i].changes, c)
	}
	if len(tables) == 0 {
		return nil
	}
	var b bytes.Buffer
	for _, to := range tables {
		t := cur.Netfilter.Table(f, to.name)
		fmt.Fprintf(&b, "*%s\n", to.name)
		// Lengths of the built-in chains as the transaction goes, for insert positions.
		length := map[string]int{}
		for _, bi := range hookable[to.name] {
			if ch := t.Chain(bi); ch != nil {
				length[bi] = len(ch.Rules)
			}
		}
		var dels, adds, inserts, removes []string
		for _, c := range to.changes {
			ch := c.Chain
			exists := t.Chain(ch.Name) != nil
			if c.Op == OpDelete && !exists && len(hookJumps(t, ch.Name)) == 0 {
				continue
			}
			if c.Op != OpDelete || exists {
				fmt.Fprintf(&b, ":%s - [0:0]\n", ch.Name)
			}
			wanted := map[string]bool{}
			if c.Op != OpDelete {
				for _, h := range ch.Hooks {
					wanted[h.Chain] = true
				}
			}
			present := map[string]bool{}
			for _, h := range hookJumps(t, ch.Name) {
				if wanted[h.Chain] {
					present[h.Chain] = true
					continue
				}
				dels = append(dels, fmt.Sprintf("-D %s -j %s", h.Chain, ch.Name))
				length[h.Chain]--
			}
			if c.Op == OpDelete {
				if exists {
					removes = append(removes, "-X "+ch.Name)
				}
				continue
			}
			for _, spec := range ch.Rules {
				adds = append(adds, fmt.Sprintf("-A %s %s", ch.Name, spec))
			}
			for _, h := range ch.Hooks {
				if !present[h.Chain] {
					inserts = append(inserts, fmt.Sprintf("%s\x00%08d\x00%s", h.Chain, max(h.Position, 1), ch.Name))
				}
			}
		}
		// Inserting in ascending positions puts each jump back exactly where it was.
		slices.Sort(inserts)
		for _, line := range slices.Concat(dels, adds) {
			b.WriteString(line + "\n")
		}
		for _, ins := range inserts {
			parts := strings.Split(ins, "\x00")
			var pos int
			fmt.Sscanf(parts[1], "%d", &pos)
			pos = min(pos, length[parts[0]]+1)
			length[parts[0]]++
			fmt.Fprintf(&b, "-I %s %d -j %s\n", parts[0], pos, parts[2])
		}
		for _, line := range removes {
			b.WriteString(line + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	return b.Bytes()
}

// IPTablesRestore renders the plan's netfilter changes of one family as an
// `iptables-restore --noflush -w` file (ip6tables-restore for V6), computed against cur (the
// jumps it inserts are those cur lacks). Re-running the file on the same host would insert
// those jumps again: re-apply with the shell script or `roundtrip apply` instead.
func (p *Plan) IPTablesRestore(f Family, cur *State) []byte {
	tx := NetfilterTransaction(f, p.Changes, cur)
	var b bytes.Buffer
	tool := "iptables-restore"
	if f == V6 {
		tool = "ip6tables-restore"
	}
	fmt.Fprintf(&b, "# roundtrip plan: %s\n", oneLine(p.Intent))
	fmt.Fprintf(&b, "# Apply in one transaction with: %s --noflush -w < THIS-FILE\n", tool)
	b.WriteString("# Rendered against the host's current rules: it inserts the jump rules missing now, so\n")
	b.WriteString("# render it again rather than re-running it later.\n")
	if tx == nil {
		fmt.Fprintf(&b, "# The plan changes no %s netfilter rules.\n", f)
	}
	b.Write(tx)
	return b.Bytes()
}

// nftHook gives the nftables base chain type and priority of an iptables table's built-in
// chain, as iptables-nft registers them (the standard priorities of nftables(8)).
func nftHook(table, chain string) (typ, prio string) {
	switch table {
	case "raw":
		return "filter", "raw"
	case "mangle":
		if chain == "OUTPUT" {
			// A mark set in OUTPUT must re-route the packet (ip_route_me_harder).
			return "route", "mangle"
		}
		return "filter", "mangle"
	case "nat":
		switch chain {
		case "PREROUTING", "OUTPUT":
			return "nat", "dstnat"
		}
		return "nat", "srcnat"
	case "security":
		return "filter", "security"
	}
	return "filter", "filter"
}

// NFT renders the plan's chains as native nftables tables (ip roundtrip, ip6 roundtrip) for
// `nft -f`: each file first declares and deletes the table, then defines it whole, so loading
// it again replaces it atomically. Chains the plan deletes are simply absent. Routes, rules,
// links and sysctls are not netfilter: the shell script carries them. A rule with a match or
// target that has no translation here is an error naming it.
func (p *Plan) NFT() ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "#!/usr/sbin/nft -f\n# roundtrip plan: %s\n", oneLine(p.Intent))
	b.WriteString("# roundtrip's chains as native nftables tables. Loading this file replaces the tables\n")
	b.WriteString("# atomically, so running it again is a no-op. Its base chains hook at the priorities of\n")
	b.WriteString("# iptables' own; use either this file or the iptables renderings, not both.\n")
	wrote := false
	for _, f := range []Family{V4, V6} {
		var sets []ChainSpec
		for _, c := range p.Changes {
			if c.Kind == KindChain && c.Chain.Family == f && c.Op != OpDelete {
				sets = append(sets, *c.normalized().Chain)
			}
		}
		fam := "ip"
		if f == V6 {
			fam = "ip6"
		}
		deleted := slices.ContainsFunc(p.Changes, func(c Change) bool {
			return c.Kind == KindChain && c.Chain.Family == f && c.Op == OpDelete
		})
		if len(sets) == 0 && !deleted {
			continue
		}
		wrote = true
		fmt.Fprintf(&b, "\ntable %s roundtrip {}\ndelete table %s roundtrip\n", fam, fam)
		if len(sets) == 0 {
			continue
		}
		fmt.Fprintf(&b, "table %s roundtrip {\n", fam)
		type base struct{ table, chain string }
		var bases []base
		jumps := map[base][]string{}
		for _, ch := range sets {
			fmt.Fprintf(&b, "\tchain %s {\n", nftQuote(ch.Name))
			for i, spec := range ch.Rules {
				r, err := ParseIPTablesRule(f, spec)
				if err != nil {
					return nil, fmt.Errorf("chain %s rule %d: %w", ch.Name, i+1, err)
				}
				line, err := nftRule(f, r)
				if err != nil {
					return nil, fmt.Errorf("chain %s rule %d %q: %w; use the iptables-restore rendering for it", ch.Name, i+1, spec, err)
				}
				fmt.Fprintf(&b, "\t\t%s\n", line)
			}
			b.WriteString("\t}\n")
			for _, h := range ch.Hooks {
				k := base{ch.Table, h.Chain}
				if _, ok := jumps[k]; !ok {
					bases = append(bases, k)
				}
				jumps[k] = append(jumps[k], ch.Name)
			}
		}
		for _, k := range bases {
			typ, prio := nftHook(k.table, k.chain)
			fmt.Fprintf(&b, "\tchain %s {\n", nftQuote(k.table+"-"+strings.ToLower(k.chain)))
			fmt.Fprintf(&b, "\t\ttype %s hook %s priority %s; policy accept;\n", typ, strings.ToLower(k.chain), prio)
			for _, j := range jumps[k] {
				fmt.Fprintf(&b, "\t\tjump %s\n", nftQuote(j))
			}
			b.WriteString("\t}\n")
		}
		b.WriteString("}\n")
	}
	if !wrote {
		b.WriteString("\n# The plan changes no netfilter rules.\n")
	}
	return b.Bytes(), nil
}

// nftQuote quotes a chain name that nft would not read as a plain identifier. nft's scanner
// takes letters, digits, '_', '-' and '.' after a leading letter; roundtrip's own chain names
// are such (checkChain), so quoting only guards against names from elsewhere.
func nftQuote(s string) string {
	for i, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.')) {
			return strconv.Quote(s)
		}
	}
	return s
}

// nftRule translates one parsed iptables rule into nftables syntax, for the matches and
// targets roundtrip's wizards write.
func nftRule(f Family, r NFRule) (string, error) {
	var parts []string
	ipx := "ip"
	if f == V6 {
		ipx = "ip6"
	}
	neq := func(not bool) string {
		if not {
			return "!= "
		}
		return ""
	}
	if r.Fragment != nil {
		return "", fmt.Errorf("no translation for -f")
	}
	if r.Src != nil {
		parts = append(parts, fmt.Sprintf("%s saddr %s%s", ipx, neq(r.Src.Not), r.Src.Prefix))
	}
	if r.Dst != nil {
		parts = append(parts, fmt.Sprintf("%s daddr %s%s", ipx, neq(r.Dst.Not), r.Dst.Prefix))
	}
	iface := func(dir string, v *NegStr) {
		name := v.Value
		if strings.HasSuffix(name, "+") {
			name = strings.TrimSuffix(name, "+") + "*"
		}
		parts = append(parts, fmt.Sprintf("%sname %s\"%s\"", dir, neq(v.Not), name))
	}
	if r.In != nil {
		iface("iif", r.In)
	}
	if r.Out != nil {
		iface("oif", r.Out)
	}
	proto := ""
	if r.Proto != nil {
		proto = strings.ToLower(r.Proto.Value)
		hasPortMatch := !r.Proto.Not && slices.ContainsFunc(r.Matches, func(m NFMatch) bool { return m.Name == proto })
		if !hasPortMatch {
			parts = append(parts, fmt.Sprintf("meta l4proto %s%s", neq(r.Proto.Not), proto))
		}
	}
	portList := func(vals []string) string {
		v := strings.ReplaceAll(strings.Join(vals, ","), ":", "-")
		if strings.Contains(v, ",") {
			return "{ " + strings.ReplaceAll(v, ",", ", ") + " }"
		}
		return v
	}
	markExpr := func(key, v string) string {
		val, mask, err := parseMarkMask(v)
		if err != nil {
			return ""
		}
		if mask == 0xffffffff {
			return fmt.Sprintf("%s %#x", key, val)
		}
		return fmt.Sprintf("%s and %#x == %#x", key, mask, val)
	}
	for _, m := range r.Matches {
		for _, o := range m.Options {
			var s string
			switch {
			case (m.Name == "tcp" || m.Name == "udp" || m.Name == "sctp") && (o.Name == "dport" || o.Name == "sport" || o.Name == "destination-port" || o.Name == "source-port"):
				dir := "dport"
				if o.Name == "sport" || o.Name == "source-port" {
					dir = "sport"
				}
				s = fmt.Sprintf("%s %s %s%s", m.Name, dir, neq(o.Not), portList(o.Values))
			case m.Name == "multiport" && (o.Name == "dports" || o.Name == "sports" || o.Name == "ports") && proto != "":
				dir := "dport"
				if o.Name == "sports" {
					dir = "sport"
				}
				if o.Name == "ports" {
					return "", fmt.Errorf("no translation for -m multiport --ports")
				}
				s = fmt.Sprintf("%s %s %s%s", proto, dir, neq(o.Not), portList(o.Values))
			case (m.Name == "mark" || m.Name == "connmark") && o.Name == "mark" && len(o.Values) == 1:
				key := "meta mark"
				if m.Name == "connmark" {
					key = "ct mark"
				}
				s = markExpr(key, o.Values[0])
				if o.Not {
					s = strings.Replace(s, "==", "!=", 1)
					if !strings.Contains(s, "!=") {
						s = strings.Replace(s, key+" ", key+" != ", 1)
					}
				}
			case m.Name == "conntrack" && o.Name == "ctstate" || m.Name == "state" && o.Name == "state":
				s = fmt.Sprintf("ct state %s%s", neq(o.Not), strings.ToLower(strings.Join(o.Values, ",")))
			case m.Name == "addrtype" && (o.Name == "dst-type" || o.Name == "src-type") && len(o.Values) == 1:
				dir := "daddr"
				if o.Name == "src-type" {
					dir = "saddr"
				}
				s = fmt.Sprintf("fib %s type %s%s", dir, neq(o.Not), strings.ToLower(o.Values[0]))
			case m.Name == "comment" && o.Name == "comment":
				continue // appended at the end, where nft wants it
			}
			if s == "" {
				return "", fmt.Errorf("no translation for -m %s --%s", m.Name, o.Name)
			}
			parts = append(parts, s)
		}
	}
	verdict, err := nftTarget(r)
	if err != nil {
		return "", err
	}
	parts = append(parts, "counter")
	if verdict != "" {
		parts = append(parts, verdict)
	}
	for _, m := range r.Matches {
		if m.Name == "comment" {
			if o, ok := m.Option("comment"); ok && len(o.Values) == 1 {
				parts = append(parts, fmt.Sprintf("comment %q", o.Values[0]))
			}
		}
	}
	return strings.Join(parts, " "), nil
}

func nftTarget(r NFRule) (string, error) {
	opt := func(name string) string {
		if o, ok := r.TargetOption(name); ok && len(o.Values) > 0 {
			return o.Values[0]
		}
		return ""
	}
	switch r.Target {
	case "":
		return "", nil
	case "ACCEPT", "DROP", "RETURN":
		return strings.ToLower(r.Target), nil
	case "DNAT":
		return "dnat to " + opt("to-destination"), nil
	case "SNAT":
		return "snat to " + opt("to-source"), nil
	case "MASQUERADE":
		if p := opt("to-ports"); p != "" {
			return "masquerade to :" + p, nil
		}
		return "masquerade", nil
	case "MARK", "CONNMARK":
		key := "meta mark"
		if r.Target == "CONNMARK" {
			key = "ct mark"
		}
		if x := opt("set-xmark"); x != "" {
			v, m, err := parseMarkMask(x)
			if err != nil {
				return "", err
			}
			if m == 0xffffffff {
				return fmt.Sprintf("%s set %#x", key, v), nil
			}
			// xmark: mark = (mark & ~m) ^ v.
			return fmt.Sprintf("%s set %s and %#x xor %#x", key, key, ^m, v), nil
		}
		full := opt("nfmask") == "0xffffffff" && opt("ctmask") == "0xffffffff"
		if _, ok := r.TargetOption("save-mark"); ok && full {
			return "ct mark set meta mark", nil
		}
		if _, ok := r.TargetOption("restore-mark"); ok && full {
			return "meta mark set ct mark", nil
		}
	case "LOG":
		if p := opt("log-prefix"); p != "" {
			return fmt.Sprintf("log prefix %q", p), nil
		}
		return "log", nil
	case "REJECT":
		return "reject", nil
	}
	if strings.HasPrefix(r.Target, ChainPrefix) {
		if r.Goto {
			return "goto " + nftQuote(r.Target), nil
		}
		return "jump " + nftQuote(r.Target), nil
	}
	return "", fmt.Errorf("no translation for -j %s with these options", r.Target)
}

// SystemdUnit renders a systemd service that re-applies the plan at boot by running its shell
// script (Script) from scriptPath; the script is idempotent, so a restart is harmless. For a
// plan made for a network namespace the script runs inside it.
func (p *Plan) SystemdUnit(name, scriptPath string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# roundtrip plan: %s\n", oneLine(p.Intent))
	b.WriteString("# Re-applies the plan at boot by running its idempotent shell script. Install with:\n")
	fmt.Fprintf(&b, "#   roundtrip plan render PLAN --format script > %s\n", scriptPath)
	fmt.Fprintf(&b, "#   cp THIS-FILE /etc/systemd/system/%s.service\n", name)
	fmt.Fprintf(&b, "#   systemctl daemon-reload && systemctl enable %s.service\n", name)
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=roundtrip: %s\n", oneLine(p.Intent))
	b.WriteString("Wants=network-online.target\n")
	// Firewall services load their rules first, so that roundtrip's jumps land on top of them.
	b.WriteString("After=network-online.target netfilter-persistent.service iptables.service firewalld.service docker.service\n")
	b.WriteString("\n[Service]\nType=oneshot\nRemainAfterExit=yes\n")
	if p.Namespace != "" {
		fmt.Fprintf(&b, "ExecStart=/usr/sbin/ip netns exec %s /bin/sh %s\n", p.Namespace, scriptPath)
	} else {
		fmt.Fprintf(&b, "ExecStart=/bin/sh %s\n", scriptPath)
	}
	b.WriteString("\n[Install]\nWantedBy=multi-user.target\n")
	return b.Bytes()
}

// Networkd renders what systemd-networkd (and sysctl.d) can express of the plan as file
// snippets: links as .netdev files, addresses, routes and policy rules as sections of the
// .network file of their interface, table names for networkd.conf and sysctls for sysctl.d.
// Netfilter chains, conntrack flushes and removals have no networkd form; they are listed at
// the end, to be kept in the systemd unit.
func (p *Plan) Networkd() []byte {
	files := map[string]*bytes.Buffer{}
	var order []string
	file := func(name, header string) *bytes.Buffer {
		if b, ok := files[name]; ok {
			return b
		}
		b := &bytes.Buffer{}
		b.WriteString(header)
		files[name] = b
		order = append(order, name)
		return b
	}
	network := func(dev string) *bytes.Buffer {
		return file("network "+dev, fmt.Sprintf("# --- add to the .network file that manages %s (or a drop-in in its .network.d/) ---\n", dev))
	}
	var notExpressible []string
	for _, c := range p.Changes {
		c = c.normalized()
		if c.Op == OpDelete {
			notExpressible = append(notExpressible, "remove by hand: "+c.Summary())
			continue
		}
		switch c.Kind {
		case KindTable:
			b := file("networkd.conf", "# --- /etc/systemd/networkd.conf.d/roundtrip.conf ---\n[Network]\n")
			fmt.Fprintf(b, "RouteTable=%s:%d\n", c.Table.Name, c.Table.ID)
		case KindLink:
			l := c.Link
			b := file("netdev "+l.Name, fmt.Sprintf("# --- /etc/systemd/network/50-roundtrip-%s.netdev ---\n", l.Name))
			fmt.Fprintf(b, "[NetDev]\nName=%s\nKind=%s\n", l.Name, l.Kind)
			if l.MTU != 0 {
				fmt.Fprintf(b, "MTUBytes=%d\n", l.MTU)
			}
			if l.HardwareAddr != "" {
				fmt.Fprintf(b, "MACAddress=%s\n", l.HardwareAddr)
			}
			t := l.Tunnel
			if l.Kind == "vxlan" {
				fmt.Fprintf(b, "\n[VXLAN]\nVNI=%d\n", t.VNI)
				if t.Remote.IsValid() {
					fmt.Fprintf(b, "Remote=%s\n", t.Remote)
				}
				if t.Group.IsValid() {
					fmt.Fprintf(b, "Group=%s\n", t.Group)
				}
				if t.Local.IsValid() {
					fmt.Fprintf(b, "Local=%s\n", t.Local)
				}
				fmt.Fprintf(b, "DestinationPort=%d\n", t.Port)
			} else {
				b.WriteString("\n[Tunnel]\n")
				if t.Local.IsValid() {
					fmt.Fprintf(b, "Local=%s\n", t.Local)
				}
				if t.Remote.IsValid() {
					fmt.Fprintf(b, "Remote=%s\n", t.Remote)
				}
				if t.Key != 0 {
					fmt.Fprintf(b, "Key=%d\n", t.Key)
				}
			}
			if t.TTL != 0 {
				fmt.Fprintf(b, "TTL=%d\n", t.TTL)
			}
			if t.Dev != "" {
				kind := map[string]string{"vxlan": "VXLAN", "gretap": "Tunnel", "gre": "Tunnel", "ipip": "Tunnel", "sit": "Tunnel"}[l.Kind]
				fmt.Fprintf(network(t.Dev), "[Network]\n%s=%s\n", kind, l.Name)
			}
			nb := file("network "+l.Name, fmt.Sprintf("# --- /etc/systemd/network/50-roundtrip-%s.network ---\n[Match]\nName=%s\n", l.Name, l.Name))
			if !l.Up {
				nb.WriteString("\n[Link]\nActivationPolicy=down\n")
			}
			for _, a := range l.Addrs {
				networkdAddress(nb, a)
			}
		case KindAddress:
			networkdAddress(network(c.Address.Dev), c.Address.Address)
		case KindSysctl:
			b := file("sysctl", "# --- /etc/sysctl.d/90-roundtrip.conf ---\n")
			fmt.Fprintf(b, "%s = %s\n", c.Sysctl.Key, c.Sysctl.Value)
		case KindRoute:
			r := c.Route
			dev := r.Dev
			if dev == "" && len(r.Nexthops) > 0 {
				dev = r.Nexthops[0].Dev
			}
			if dev == "" {
				dev = "lo"
			}
			b := network(dev)
			b.WriteString("\n[Route]\n")
			fmt.Fprintf(b, "Destination=%s\n", r.Dst)
			if r.Gateway.IsValid() {
				fmt.Fprintf(b, "Gateway=%s\n", r.Gateway)
			}
			if r.OnLink {
				b.WriteString("GatewayOnLink=yes\n")
			}
			for _, nh := range r.Nexthops {
				fmt.Fprintf(b, "MultiPathRoute=%s@%s %d\n", nh.Gateway, nh.Dev, nh.Weight)
			}
			if r.Table != TableMain {
				fmt.Fprintf(b, "Table=%d\n", r.Table)
			}
			if r.Type != RouteUnicast {
				fmt.Fprintf(b, "Type=%s\n", r.Type)
			}
			if r.Src.IsValid() {
				fmt.Fprintf(b, "PreferredSource=%s\n", r.Src)
			}
			if r.Metric != 0 {
				fmt.Fprintf(b, "Metric=%d\n", r.Metric)
			}
			if r.Scope != "" && r.Scope != "universe" && r.Family == V4 {
				fmt.Fprintf(b, "Scope=%s\n", r.Scope)
			}
		case KindRule:
			r := c.Rule
			dev := r.IIF
			if dev == "" {
				dev = r.OIF
			}
			if dev == "" {
				dev = "lo"
			}
			b := network(dev)
			b.WriteString("\n[RoutingPolicyRule]\n")
			fmt.Fprintf(b, "Priority=%d\n", r.Priority)
			fam := "ipv4"
			if r.Family == V6 {
				fam = "ipv6"
			}
			fmt.Fprintf(b, "Family=%s\n", fam)
			if r.Src.IsValid() {
				fmt.Fprintf(b, "From=%s\n", r.Src)
			}
			if r.Dst.IsValid() {
				fmt.Fprintf(b, "To=%s\n", r.Dst)
			}
			if r.Mark != nil {
				if r.Mark.Mask == 0xffffffff {
					fmt.Fprintf(b, "FirewallMark=%d\n", r.Mark.Value)
				} else {
					fmt.Fprintf(b, "FirewallMark=%d/%d\n", r.Mark.Value, r.Mark.Mask)
				}
			}
			if r.IIF != "" {
				fmt.Fprintf(b, "IncomingInterface=%s\n", r.IIF)
			}
			if r.OIF != "" {
				fmt.Fprintf(b, "OutgoingInterface=%s\n", r.OIF)
			}
			if r.IPProto != 0 {
				fmt.Fprintf(b, "IPProtocol=%s\n", ProtoName(r.IPProto))
			}
			if r.SPort != nil {
				fmt.Fprintf(b, "SourcePort=%s\n", r.SPort)
			}
			if r.DPort != nil {
				fmt.Fprintf(b, "DestinationPort=%s\n", r.DPort)
			}
			if r.Not {
				b.WriteString("InvertRule=yes\n")
			}
			if r.SuppressPrefixLen != nil {
				fmt.Fprintf(b, "SuppressPrefixLength=%d\n", *r.SuppressPrefixLen)
			}
			switch r.Action {
			case ActionTable:
				fmt.Fprintf(b, "Table=%d\n", r.Table)
			case ActionBlackhole, ActionUnreachable, ActionProhibit:
				fmt.Fprintf(b, "Type=%s\n", r.Action)
			default:
				notExpressible = append(notExpressible, "keep in the systemd unit: "+c.Summary())
			}
		default:
			notExpressible = append(notExpressible, "keep in the systemd unit: "+c.Summary())
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# roundtrip plan: %s\n", oneLine(p.Intent))
	b.WriteString("# What systemd-networkd can make permanent. networkd uses only the first .network file\n")
	b.WriteString("# that matches a link, so add these sections to that file rather than a new one.\n")
	for _, name := range order {
		b.WriteString("\n")
		b.Write(files[name].Bytes())
	}
	if len(notExpressible) > 0 {
		b.WriteString("\n# --- not expressible in networkd ---\n")
		for _, s := range notExpressible {
			fmt.Fprintf(&b, "# %s\n", s)
		}
	}
	return b.Bytes()
}

func networkdAddress(b *bytes.Buffer, a Address) {
	b.WriteString("\n[Address]\n")
	fmt.Fprintf(b, "Address=%s\n", a.Prefix)
	if a.Peer.IsValid() {
		fmt.Fprintf(b, "Peer=%s\n", a.Peer)
	}
	if a.Scope != "" && a.Scope != "global" {
		fmt.Fprintf(b, "Scope=%s\n", a.Scope)
	}
}
