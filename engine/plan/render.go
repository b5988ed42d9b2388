package plan

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/quote"
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
	var chains, nfts []Change
	chainsAt := -1
	for _, c := range p.Changes {
		c = c.normalized()
		if c.Kind == KindNFT {
			if chainsAt < 0 {
				chainsAt = body.Len()
			}
			nfts = append(nfts, c)
			continue
		}
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
		if len(chains) > 0 {
			scriptChains(&nf, chains, used)
		}
		if len(nfts) > 0 {
			scriptNFT(&nf, nfts)
		}
		rest := slices.Clone(body.Bytes()[chainsAt:])
		body.Truncate(chainsAt)
		body.Write(nf.Bytes())
		body.Write(rest)
	}

	var b bytes.Buffer
	b.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&b, "# roundtrip plan: %s\n", quote.OneLine(p.Intent))
	b.WriteString("# Idempotent: running it again changes nothing and adds no duplicate rule, route or\n")
	b.WriteString("# jump. Run it as root; for a network namespace: ip netns exec NAME sh THIS-FILE.\n")
	if p.Namespace != "" {
		fmt.Fprintf(&b, "# Planned for network namespace %s.\n", quote.OneLine(p.Namespace))
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

// cmd writes one command line: every word quoted for sh.
func cmd(b *bytes.Buffer, words ...string) {
	b.WriteString(quote.ShellJoin(words...))
	b.WriteByte('\n')
}

// try writes a command run through the try helper, which accepts the failures in msgs.
func try(b *bytes.Buffer, used map[string]bool, msgs string, words ...string) {
	used["try"] = true
	cmd(b, append([]string{"try", msgs}, words...)...)
}

func comment(b *bytes.Buffer, c Change) {
	fmt.Fprintf(b, "\n# %s\n", quote.OneLine(c.Summary()))
	if c.Why != "" {
		fmt.Fprintf(b, "# why: %s\n", quote.OneLine(c.Why))
	}
}

func scriptChange(b *bytes.Buffer, c Change, used map[string]bool) {
	comment(b, c)
	switch c.Kind {
	case KindTable:
		used["rt_name"] = true
		if c.Op == OpDelete {
			cmd(b, "rt_name", strconv.Itoa(c.Table.ID))
		} else {
			cmd(b, "rt_name", strconv.Itoa(c.Table.ID), c.Table.Name)
		}
	case KindLink:
		l := c.Link
		if c.Op == OpDelete {
			try(b, used, "Cannot find device", "ip", "link", "del", "dev", l.Name)
			return
		}
		if c.Op == OpAdd {
			try(b, used, "File exists", append([]string{"ip", "link", "add"}, linkAddArgv(*l)...)...)
		}
		set := []string{"ip", "link", "set", "dev", l.Name}
		if l.MTU != 0 {
			set = append(set, "mtu", strconv.Itoa(l.MTU))
		}
		if l.Master != "" {
			set = append(set, "master", l.Master)
		}
		cmd(b, append(set, upDown(l.Up))...)
		for _, a := range l.Addrs {
			cmd(b, append([]string{"ip", "addr", "replace"}, addrArgv(l.Name, a)...)...)
		}
	case KindAddress:
		if c.Op == OpDelete {
			try(b, used, "Cannot assign requested address|Address not found", "ip", "addr", "del", c.Address.Prefix.String(), "dev", c.Address.Dev)
			return
		}
		cmd(b, append([]string{"ip", "addr", "replace"}, addrArgv(c.Address.Dev, c.Address.Address)...)...)
	case KindSysctl:
		// printf, not echo: some shells' echo reads backslashes and leading dashes.
		fmt.Fprintf(b, "printf '%%s\\n' %s >%s\n", quote.Shell(c.Sysctl.Value), quote.Shell(model.SysctlPath(c.Sysctl.Key)))
	case KindRoute:
		r := c.Route
		if c.Op == OpDelete {
			try(b, used, "No such process", append([]string{"ip", r.Family.Flag(), "route", "del"}, routeKeyArgv(*r)...)...)
			return
		}
		cmd(b, append([]string{"ip", r.Family.Flag(), "route", "replace"}, r.Argv(model.NumericTable)...)...)
	case KindRule:
		if c.Op == OpDelete {
			try(b, used, "No such file or directory", append([]string{"ip", c.Rule.Family.Flag(), "rule", "del"}, c.Rule.Argv(model.NumericTable)...)...)
			return
		}
		try(b, used, "File exists", append([]string{"ip", c.Rule.Family.Flag(), "rule", "add"}, ruleAddArgv(*c.Rule)...)...)
	case KindConntrack:
		// conntrack -D exits 1 when no entry matched; there may be none to flush.
		fmt.Fprintf(b, "if command -v conntrack >/dev/null; then %s >/dev/null 2>&1 || :; fi\n", quote.ShellJoin(append([]string{"conntrack", "-D"}, c.Conntrack.args()...)...))
	}
}

// scriptNFT writes the plan's nft chains as one `nft -f` transaction (NFTScript) in a
// here-document whose delimiter no line of it can be (every line is a statement or a rule).
func scriptNFT(b *bytes.Buffer, changes []Change) {
	tx, err := NFTScript(changes)
	if err != nil {
		// Plans are checked before they are rendered; say so rather than write half of it.
		fmt.Fprintf(b, "\n# roundtrip's nft table cannot be rendered: %s\nexit 1\n", quote.OneLine(err.Error()))
		return
	}
	fmt.Fprintf(b, "\n# roundtrip's chains in its own nftables table (%s %s), in one transaction\n", NFTFamily, NFTTable)
	b.WriteString("nft -f - <<'RT_NFT_EOF'\n")
	b.Write(tx)
	b.WriteString("RT_NFT_EOF\n")
}

// ruleAddArgv renders a rule for `ip rule add`, with its protocol when it has one.
func ruleAddArgv(r model.Rule) []string {
	a := r.Argv(model.NumericTable)
	if r.Protocol != 0 {
		a = append(a, "protocol", strconv.Itoa(r.Protocol))
	}
	return a
}

// routeKeyArgv renders the identity of a route for `ip route del`: without a type, gateway or
// device the kernel deletes the route with this table, destination, tos and metric.
func routeKeyArgv(r model.Route) []string {
	a := []string{r.Dst.String()}
	if r.Dst.Bits() == 0 {
		a[0] = "default"
	}
	if r.TOS != 0 {
		a = append(a, "tos", fmt.Sprintf("0x%02x", r.TOS))
	}
	a = append(a, "table", strconv.Itoa(r.Table))
	if r.Metric != 0 {
		a = append(a, "metric", strconv.Itoa(r.Metric))
	}
	return a
}

func addrArgv(dev string, a model.Address) []string {
	out := []string{a.Prefix.String()}
	if a.Peer.IsValid() {
		out = []string{a.Prefix.Addr().String(), "peer", a.Peer.String()}
	}
	out = append(out, "dev", dev)
	if a.Scope != "" && a.Scope != "global" {
		out = append(out, "scope", a.Scope)
	}
	return out
}

// linkAddArgv renders `ip link add` arguments for a tunnel link. The name follows the "name"
// keyword, so that a link called "type" or "mtu" is not read as one.
func linkAddArgv(l model.Link) []string {
	a := []string{"name", l.Name}
	if l.HardwareAddr != "" {
		a = append(a, "address", l.HardwareAddr)
	}
	if l.MTU != 0 {
		a = append(a, "mtu", strconv.Itoa(l.MTU))
	}
	a = append(a, "type", l.Kind)
	t := l.Tunnel
	if t == nil {
		return a
	}
	if l.Kind == "vxlan" {
		a = append(a, "id", fmt.Sprint(t.VNI))
	}
	if t.Remote.IsValid() {
		a = append(a, "remote", t.Remote.String())
	}
	if t.Group.IsValid() {
		a = append(a, "group", t.Group.String())
	}
	if t.Local.IsValid() {
		a = append(a, "local", t.Local.String())
	}
	if t.Dev != "" {
		a = append(a, "dev", t.Dev)
	}
	if l.Kind == "vxlan" {
		a = append(a, "dstport", strconv.Itoa(t.Port))
	}
	if t.Key != 0 {
		a = append(a, "key", fmt.Sprint(t.Key))
	}
	if t.TTL != 0 {
		a = append(a, "ttl", strconv.Itoa(t.TTL))
	}
	return a
}

// scriptChains renders all chain changes together: chains are created or emptied first, so
// that rules can jump between roundtrip's chains, then filled, then hooked; deleted chains go
// last.
func scriptChains(b *bytes.Buffer, chains []Change, used map[string]bool) {
	b.WriteString("\n# roundtrip's iptables chains (the iptables-restore rendering replaces them atomically)\n")
	for _, c := range chains {
		ch := c.Chain
		tool := iptables.BackendCommand(ch.Family, ch.Backend)
		comment(b, c)
		if c.Op == OpDelete {
			used["unhook"], used["try"] = true, true
			for _, bi := range hookable[ch.Table] {
				cmd(b, "unhook", tool, ch.Table, bi, ch.Name)
			}
			continue
		}
		used["chain"], used["try"] = true, true
		cmd(b, "chain", tool, ch.Table, ch.Name)
	}
	for _, c := range chains {
		if c.Op == OpDelete {
			continue
		}
		ch := c.Chain
		tool := iptables.BackendCommand(ch.Family, ch.Backend)
		for i, spec := range ch.Rules {
			toks, err := iptables.SplitArgs(spec)
			if err != nil {
				// Check refuses such rules; a script made of one anyway stops here.
				fmt.Fprintf(b, "echo %s >&2; exit 1\n", quote.Shell(fmt.Sprintf("roundtrip: rule %d of chain %s cannot be rendered: %v", i+1, ch.Name, err)))
				continue
			}
			words := []string{tool, "-w", "-t", ch.Table, "-A", ch.Name}
			for _, t := range toks {
				words = append(words, t.Text)
			}
			cmd(b, words...)
		}
		hooked := map[string]bool{}
		for _, h := range ch.Jumps {
			used["hook"] = true
			hooked[h.Chain] = true
			cmd(b, "hook", tool, ch.Table, h.Chain, ch.Name, strconv.Itoa(max(h.Position, 1)))
		}
		for _, bi := range hookable[ch.Table] {
			if !hooked[bi] {
				used["unhook"] = true
				cmd(b, "unhook", tool, ch.Table, bi, ch.Name)
			}
		}
	}
	for _, c := range chains {
		if c.Op == OpDelete {
			used["unchain"] = true
			cmd(b, "unchain", iptables.BackendCommand(c.Chain.Family, c.Chain.Backend), c.Chain.Table, c.Chain.Name)
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
func NetfilterTransaction(f inet.Family, changes []Change, cur *model.State) []byte {
	type tableOps struct {
		name    string
		backend string
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
		tables[i].backend = c.Chain.Backend // one backend per plan and family: Check sees to it
	}
	if len(tables) == 0 {
		return nil
	}
	var b bytes.Buffer
	for _, to := range tables {
		t := cur.Netfilter.TableIn(to.backend, f, to.name)
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
				for _, h := range ch.Jumps {
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
				// Rules are canonical (re-quoted from their words) after normalized(); one
				// that did not parse (Check refuses those) still stays on its own line.
				adds = append(adds, fmt.Sprintf("-A %s %s", ch.Name, strings.Map(oneLineRune, spec)))
			}
			for _, h := range ch.Jumps {
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

// oneLineRune maps line breaks and NUL to spaces, for text that must stay on one line of a
// line-based format.
func oneLineRune(r rune) rune {
	switch r {
	case '\n', '\r', 0, 0x85, 0x2028, 0x2029:
		return ' '
	}
	return r
}

// IPTablesRestore renders the plan's netfilter changes of one family as an
// `iptables-restore --noflush -w` file (ip6tables-restore for V6), computed against cur (the
// jumps it inserts are those cur lacks). Re-running the file on the same host would insert
// those jumps again: re-apply with the shell script or `roundtrip apply` instead.
func (p *Plan) IPTablesRestore(f inet.Family, cur *model.State) []byte {
	tx := NetfilterTransaction(f, p.Changes, cur)
	var b bytes.Buffer
	tool := RestoreTool(f, p.ChainBackend(f))
	fmt.Fprintf(&b, "# roundtrip plan: %s\n", quote.OneLine(p.Intent))
	fmt.Fprintf(&b, "# Apply in one transaction with: %s --noflush -w < THIS-FILE\n", tool)
	b.WriteString("# Rendered against the host's current rules: it inserts the jump rules missing now, so\n")
	b.WriteString("# render it again rather than re-running it later.\n")
	if tx == nil {
		fmt.Fprintf(&b, "# The plan changes no %s netfilter rules.\n", f)
	}
	b.Write(tx)
	return b.Bytes()
}

// RestoreTool is the iptables-restore of a family and backend: iptables-legacy-restore,
// ip6tables-nft-restore, or plain iptables-restore for "".
func RestoreTool(f inet.Family, backend string) string {
	return iptables.BackendCommand(f, backend) + "-restore"
}

// ChainBackend is the backend the plan's chains of a family live in ("" when it has none or
// they name none).
func (p *Plan) ChainBackend(f inet.Family) string {
	for _, c := range p.Changes {
		if c.Kind == KindChain && c.Chain.Family == f {
			return c.Chain.Backend
		}
	}
	return ""
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
// target that has no translation here is an error naming it, and so is a value nft cannot
// hold as written (every address, port and name is checked, every string quoted): the file
// never says more than the plan.
func (p *Plan) NFT() ([]byte, error) {
	for i, c := range p.Changes {
		if c.Kind != KindChain {
			continue
		}
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("%w: change %d: %w", ErrBadPlan, i+1, err)
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "#!/usr/sbin/nft -f\n# roundtrip plan: %s\n", quote.OneLine(p.Intent))
	b.WriteString("# roundtrip's chains as native nftables tables. Loading this file replaces the tables\n")
	b.WriteString("# atomically, so running it again is a no-op. Its base chains hook at the priorities of\n")
	b.WriteString("# iptables' own; use either this file or the iptables renderings, not both.\n")
	wrote := false
	for _, f := range []inet.Family{inet.V4, inet.V6} {
		var sets []ChainSpec
		for _, c := range p.Changes {
			if c.Kind == KindChain && c.Chain.Family == f && c.Op != OpDelete {
				sets = append(sets, *c.normalized().Chain)
			}
		}
		fam := "ip"
		if f == inet.V6 {
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
			name, err := quote.NFTIdent(ch.Name)
			if err != nil {
				return nil, fmt.Errorf("chain %s: %w", quote.Term(ch.Name), err)
			}
			fmt.Fprintf(&b, "\tchain %s {\n", name)
			for i, spec := range ch.Rules {
				r, err := iptables.ParseRule(f, spec)
				if err != nil {
					return nil, fmt.Errorf("chain %s rule %d: %w", ch.Name, i+1, err)
				}
				line, err := nftRule(f, r)
				if err != nil {
					return nil, fmt.Errorf("chain %s rule %d %s: %w; use the iptables-restore rendering for it", ch.Name, i+1, strconv.Quote(spec), err)
				}
				fmt.Fprintf(&b, "\t\t%s\n", line)
			}
			b.WriteString("\t}\n")
			for _, h := range ch.Jumps {
				k := base{ch.Table, h.Chain}
				if _, ok := jumps[k]; !ok {
					bases = append(bases, k)
				}
				jumps[k] = append(jumps[k], name)
			}
		}
		for _, k := range bases {
			typ, prio := nftHook(k.table, k.chain)
			// Tables and built-in chains are from a fixed set (checkChain): plain words.
			fmt.Fprintf(&b, "\tchain %s-%s {\n", k.table, strings.ToLower(k.chain))
			fmt.Fprintf(&b, "\t\ttype %s hook %s priority %s; policy accept;\n", typ, strings.ToLower(k.chain), prio)
			for _, j := range jumps[k] {
				fmt.Fprintf(&b, "\t\tjump %s\n", j)
			}
			b.WriteString("\t}\n")
		}
		b.WriteString("}\n")
	}
	var nfts []Change
	for _, c := range p.Changes {
		if c.Kind == KindNFT {
			nfts = append(nfts, c)
		}
	}
	if len(nfts) > 0 {
		tx, err := NFTScript(nfts)
		if err != nil {
			return nil, err
		}
		wrote = true
		b.WriteString("\n")
		b.Write(tx)
	}
	if !wrote {
		b.WriteString("\n# The plan changes no netfilter rules.\n")
	}
	return b.Bytes(), nil
}

// nftAddr checks an address or prefix of a rule (iptables-save prints them numerically) and
// renders it for nft.
func nftAddr(f inet.Family, s string) (string, error) {
	if p, err := netip.ParsePrefix(s); err == nil && inet.FamilyOf(p.Addr()) == f && p.Addr().Zone() == "" {
		return p.Masked().String(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil && inet.FamilyOf(a) == f && a.Zone() == "" {
		return a.String(), nil
	}
	return "", fmt.Errorf("no translation for address %q (want a numeric %s address or prefix)", s, f)
}

// portNumber parses a port 0-65535 written as digits.
func portNumber(s string) (int, bool) {
	n, err := strconv.ParseUint(s, 10, 16)
	return int(n), err == nil && s != "" && s[0] != '+'
}

// nftPortRange renders "N" or "N:M" (iptables) or "N-M" as nft's N or N-M.
func nftPortRange(s string) (string, error) {
	lo, hi, isRange := strings.Cut(s, ":")
	if !isRange {
		lo, hi, isRange = strings.Cut(s, "-")
	}
	a, ok := portNumber(lo)
	if !ok {
		return "", fmt.Errorf("no translation for port %q", s)
	}
	if !isRange {
		return strconv.Itoa(a), nil
	}
	z, ok := portNumber(hi)
	if !ok || z < a {
		return "", fmt.Errorf("no translation for port range %q", s)
	}
	return fmt.Sprintf("%d-%d", a, z), nil
}

// nftPorts renders the values of a port option (one port, a range, or a comma list).
func nftPorts(vals []string) (string, error) {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			q, err := nftPortRange(p)
			if err != nil {
				return "", err
			}
			out = append(out, q)
		}
	}
	switch len(out) {
	case 0:
		return "", errors.New("no translation for a port option without ports")
	case 1:
		return out[0], nil
	}
	return "{ " + strings.Join(out, ", ") + " }", nil
}

// nftWords renders a comma-separated list of keywords from a known set, lowercased.
func nftWords(what string, vals []string, known map[string]bool) (string, error) {
	var out []string
	for _, v := range vals {
		for _, w := range strings.Split(strings.ToLower(v), ",") {
			if !known[w] {
				return "", fmt.Errorf("no translation for %s %q", what, w)
			}
			out = append(out, w)
		}
	}
	if len(out) == 0 {
		return "", fmt.Errorf("no translation for an empty %s", what)
	}
	return strings.Join(out, ","), nil
}

var (
	nftCtStates  = map[string]bool{"new": true, "established": true, "related": true, "invalid": true, "untracked": true}
	nftAddrTypes = map[string]bool{"unspec": true, "unicast": true, "local": true, "broadcast": true, "anycast": true,
		"multicast": true, "blackhole": true, "unreachable": true, "prohibit": true, "throw": true, "nat": true, "xresolve": true}
	nftPortProtos = map[string]bool{"tcp": true, "udp": true, "sctp": true, "dccp": true, "udplite": true}
)

// nftIface renders an interface name match: iptables' trailing '+' is nft's '*'. A name with
// a '*' or a backslash would read as a pattern in nft and is refused.
func nftIface(v string) (string, error) {
	name, wild := strings.CutSuffix(v, "+")
	if name != "" || !wild {
		if err := model.CheckIfName(name); err != nil {
			return "", fmt.Errorf("no translation for interface %q: %w", v, err)
		}
	}
	if strings.ContainsAny(name, `*\`) {
		return "", fmt.Errorf("no translation for interface %q: nft reads '*' and '\\' in names as a pattern", v)
	}
	if wild {
		name += "*"
	}
	return quote.NFTString(name)
}

// nftNATTo renders the address and ports of DNAT --to-destination or SNAT --to-source
// (ADDR, ADDR-ADDR, ADDR:PORT, ADDR:PORT-PORT; [ADDR]:PORT for IPv6) for nft's "to".
func nftNATTo(f inet.Family, s string) (string, error) {
	addrs, ports := s, ""
	if f == inet.V6 {
		if rest, ok := strings.CutPrefix(s, "["); ok {
			var found bool
			addrs, ports, found = strings.Cut(rest, "]")
			if !found || ports != "" && ports[0] != ':' {
				return "", fmt.Errorf("no translation for NAT target %q", s)
			}
			ports = strings.TrimPrefix(ports, ":")
		}
	} else if a, p, ok := strings.Cut(s, ":"); ok {
		addrs, ports = a, p
	}
	var out []string
	for _, a := range strings.SplitN(addrs, "-", 2) {
		ip, err := netip.ParseAddr(a)
		if err != nil || inet.FamilyOf(ip) != f || ip.Zone() != "" {
			return "", fmt.Errorf("no translation for NAT target %q: %q is not a %s address", s, a, f)
		}
		out = append(out, ip.String())
	}
	to := strings.Join(out, "-")
	if f == inet.V6 && ports != "" {
		to = "[" + to + "]"
	}
	if ports != "" {
		pr, err := nftPortRange(ports)
		if err != nil {
			return "", fmt.Errorf("NAT target %q: %w", s, err)
		}
		to += ":" + pr
	}
	return to, nil
}

// nftRule translates one parsed iptables rule into nftables syntax, for the matches and
// targets roundtrip's wizards write. Every value is checked or quoted on the way: a rule that
// nft would read as more than the rule is an error.
func nftRule(f inet.Family, r iptables.Rule) (string, error) {
	var parts []string
	ipx := "ip"
	if f == inet.V6 {
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
	for _, a := range []struct {
		dir string
		v   *iptables.NegAddr
	}{{"saddr", r.Src}, {"daddr", r.Dst}} {
		if a.v == nil {
			continue
		}
		s, err := nftAddr(f, a.v.Prefix)
		if err != nil {
			return "", err
		}
		parts = append(parts, fmt.Sprintf("%s %s %s%s", ipx, a.dir, neq(a.v.Not), s))
	}
	for _, i := range []struct {
		dir string
		v   *iptables.NegStr
	}{{"iif", r.In}, {"oif", r.Out}} {
		if i.v == nil {
			continue
		}
		s, err := nftIface(i.v.Value)
		if err != nil {
			return "", err
		}
		parts = append(parts, fmt.Sprintf("%sname %s%s", i.dir, neq(i.v.Not), s))
	}
	proto := ""
	if r.Proto != nil && strings.ToLower(r.Proto.Value) != "all" {
		n, err := inet.ProtoNumber(r.Proto.Value)
		if err != nil {
			return "", fmt.Errorf("no translation for -p %q", r.Proto.Value)
		}
		switch n {
		case 1, 6, 17, 132:
			proto = inet.ProtoName(n)
		default:
			proto = strconv.Itoa(n)
		}
		hasPortMatch := !r.Proto.Not && slices.ContainsFunc(r.Matches, func(m iptables.Match) bool { return m.Name == proto })
		if !hasPortMatch {
			parts = append(parts, fmt.Sprintf("meta l4proto %s%s", neq(r.Proto.Not), proto))
		}
	}
	markExpr := func(key, v string, not bool) (string, error) {
		val, mask, err := iptables.ParseMark(v)
		if err != nil {
			return "", fmt.Errorf("no translation for mark %q: %w", v, err)
		}
		if mask == 0xffffffff {
			return fmt.Sprintf("%s %s%#x", key, neq(not), val), nil
		}
		return fmt.Sprintf("%s and %#x %s %#x", key, mask, map[bool]string{false: "==", true: "!="}[not], val), nil
	}
	for _, m := range r.Matches {
		for _, o := range m.Options {
			var s string
			var err error
			switch {
			case nftPortProtos[m.Name] && (o.Name == "dport" || o.Name == "sport" || o.Name == "destination-port" || o.Name == "source-port"):
				dir := "dport"
				if o.Name == "sport" || o.Name == "source-port" {
					dir = "sport"
				}
				var ports string
				if ports, err = nftPorts(o.Values); err == nil {
					s = fmt.Sprintf("%s %s %s%s", m.Name, dir, neq(o.Not), ports)
				}
			case m.Name == "multiport" && (o.Name == "dports" || o.Name == "sports" || o.Name == "ports"):
				if o.Name == "ports" {
					return "", fmt.Errorf("no translation for -m multiport --ports")
				}
				if !nftPortProtos[proto] {
					return "", fmt.Errorf("no translation for -m multiport without -p tcp, udp or sctp")
				}
				dir := "dport"
				if o.Name == "sports" {
					dir = "sport"
				}
				var ports string
				if ports, err = nftPorts(o.Values); err == nil {
					s = fmt.Sprintf("%s %s %s%s", proto, dir, neq(o.Not), ports)
				}
			case (m.Name == "mark" || m.Name == "connmark") && o.Name == "mark" && len(o.Values) == 1:
				key := "meta mark"
				if m.Name == "connmark" {
					key = "ct mark"
				}
				s, err = markExpr(key, o.Values[0], o.Not)
			case m.Name == "conntrack" && o.Name == "ctstate" && len(o.Values) == 1 && (strings.EqualFold(o.Values[0], "DNAT") || strings.EqualFold(o.Values[0], "SNAT")):
				// conntrack's virtual states DNAT and SNAT are nft's ct status bits.
				s = fmt.Sprintf("ct status %s%s", neq(o.Not), strings.ToLower(o.Values[0]))
			case m.Name == "conntrack" && o.Name == "ctstate" || m.Name == "state" && o.Name == "state":
				var states string
				if states, err = nftWords("conntrack state", o.Values, nftCtStates); err == nil {
					s = fmt.Sprintf("ct state %s%s", neq(o.Not), states)
				}
			case m.Name == "addrtype" && (o.Name == "dst-type" || o.Name == "src-type") && len(o.Values) == 1:
				dir := "daddr"
				if o.Name == "src-type" {
					dir = "saddr"
				}
				var typ string
				if typ, err = nftWords("address type", o.Values, nftAddrTypes); err == nil {
					s = fmt.Sprintf("fib %s type %s%s", dir, neq(o.Not), typ)
				}
			case m.Name == "comment" && o.Name == "comment":
				continue // appended at the end, where nft wants it
			}
			if err != nil {
				return "", err
			}
			if s == "" {
				return "", fmt.Errorf("no translation for -m %s --%s", m.Name, o.Name)
			}
			parts = append(parts, s)
		}
	}
	verdict, err := nftTarget(f, r)
	if err != nil {
		return "", err
	}
	parts = append(parts, "counter")
	if verdict != "" {
		parts = append(parts, verdict)
	}
	for _, m := range r.Matches {
		if m.Name != "comment" {
			continue
		}
		if o, ok := m.Option("comment"); ok && len(o.Values) == 1 {
			c, err := quote.NFTString(o.Values[0])
			if err != nil {
				return "", fmt.Errorf("comment: %w", err)
			}
			parts = append(parts, "comment "+c)
		}
	}
	return strings.Join(parts, " "), nil
}

func nftTarget(f inet.Family, r iptables.Rule) (string, error) {
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
	case "DNAT", "SNAT":
		o, verb := "to-destination", "dnat"
		if r.Target == "SNAT" {
			o, verb = "to-source", "snat"
		}
		to, err := nftNATTo(f, opt(o))
		if err != nil {
			return "", err
		}
		return verb + " to " + to, nil
	case "MASQUERADE":
		if p := opt("to-ports"); p != "" {
			ports, err := nftPortRange(p)
			if err != nil {
				return "", err
			}
			return "masquerade to :" + ports, nil
		}
		return "masquerade", nil
	case "MARK", "CONNMARK":
		key := "meta mark"
		if r.Target == "CONNMARK" {
			key = "ct mark"
		}
		if x := opt("set-xmark"); x != "" {
			v, m, err := iptables.ParseMark(x)
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
			// nft expands $NAME inside a log prefix (a variable), even in quotes.
			if strings.Contains(p, "$") {
				return "", fmt.Errorf("log prefix %q: nft reads '$' in a log prefix as a variable", p)
			}
			s, err := quote.NFTString(p)
			if err != nil {
				return "", fmt.Errorf("log prefix: %w", err)
			}
			return "log prefix " + s, nil
		}
		return "log", nil
	case "REJECT":
		return "reject", nil
	}
	if strings.HasPrefix(r.Target, ChainPrefix) {
		name, err := quote.NFTIdent(r.Target)
		if err != nil {
			return "", err
		}
		if r.Goto {
			return "goto " + name, nil
		}
		return "jump " + name, nil
	}
	return "", fmt.Errorf("no translation for -j %s with these options", r.Target)
}

// CheckUnitName checks the name of a systemd service roundtrip writes (without ".service"):
// letters, digits and ":_.-", at most 200 bytes (systemd's unit names: no '@', which would
// make it a template, nor '\', which systemd reads as an escape).
func CheckUnitName(name string) error {
	if name == "" || len(name) > 200 {
		return fmt.Errorf("unit name %q must be 1-200 bytes", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("unit name %q: want letters, digits, ':', '_', '.' and '-'", name)
		}
	}
	return nil
}

// SystemdUnit renders a systemd service that re-applies the plan at boot by running its shell
// script (Script) from scriptPath; the script is idempotent, so a restart is harmless. For a
// plan made for a network namespace the script runs inside it. The unit name, the path
// (absolute, no control characters) and the namespace are checked; ExecStart's words are
// quoted for systemd (quote.Systemd), text is kept to single comment and Description lines.
func (p *Plan) SystemdUnit(name, scriptPath string) ([]byte, error) {
	if err := CheckUnitName(name); err != nil {
		return nil, err
	}
	if !path.IsAbs(scriptPath) || path.Clean(scriptPath) != scriptPath || len(scriptPath) > 4095 || !utf8.ValidString(scriptPath) || quote.HasControl(scriptPath) {
		return nil, fmt.Errorf("script path %q: want a clean absolute path without control characters", scriptPath)
	}
	if p.Namespace != "" {
		if err := model.CheckNetnsName(p.Namespace); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadPlan, err)
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# roundtrip plan: %s\n", quote.SystemdText(p.Intent))
	b.WriteString("# Re-applies the plan at boot by running its idempotent shell script. Install with:\n")
	fmt.Fprintf(&b, "#   roundtrip plan render PLAN --format script > %s\n", quote.SystemdText(quote.Shell(scriptPath)))
	fmt.Fprintf(&b, "#   cp THIS-FILE /etc/systemd/system/%s.service\n", name)
	fmt.Fprintf(&b, "#   systemctl daemon-reload && systemctl enable %s.service\n", name)
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=roundtrip: %s\n", quote.SystemdText(p.Intent))
	b.WriteString("Wants=network-online.target\n")
	// Firewall services load their rules first, so that roundtrip's jumps land on top of them.
	b.WriteString("After=network-online.target netfilter-persistent.service iptables.service firewalld.service docker.service\n")
	b.WriteString("\n[Service]\nType=oneshot\nRemainAfterExit=yes\n")
	b.WriteString("ExecStart=" + strings.Join(systemdExec(p.Namespace, scriptPath), " ") + "\n")
	b.WriteString("\n[Install]\nWantedBy=multi-user.target\n")
	return b.Bytes(), nil
}

// systemdExec returns the quoted words of the unit's ExecStart.
func systemdExec(namespace, scriptPath string) []string {
	argv := []string{"/bin/sh", scriptPath}
	if namespace != "" {
		argv = append([]string{"/usr/sbin/ip", "netns", "exec", namespace}, argv...)
	}
	for i, a := range argv {
		argv[i] = quote.Systemd(a)
	}
	return argv
}

// Networkd renders what systemd-networkd (and sysctl.d) can express of the plan as file
// snippets: links as .netdev files, addresses, routes and policy rules as sections of the
// .network file of their interface, table names for networkd.conf and sysctls for sysctl.d.
// Netfilter chains, conntrack flushes and removals have no networkd form; they are listed at
// the end, to be kept in the systemd unit. Every value is checked first (networkdCheck): an
// interface name networkd would read as a pattern or refuse is an error, not a file.
func (p *Plan) Networkd() ([]byte, error) {
	for i, c := range p.Changes {
		if err := networkdCheck(c); err != nil {
			return nil, fmt.Errorf("change %d (%s): %w", i+1, quote.OneLine(c.Summary()), err)
		}
	}
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
			notExpressible = append(notExpressible, "remove by hand: "+quote.OneLine(c.Summary()))
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
			if r.Table != model.TableMain {
				fmt.Fprintf(b, "Table=%d\n", r.Table)
			}
			if r.Type != model.RouteUnicast {
				fmt.Fprintf(b, "Type=%s\n", r.Type)
			}
			if r.Src.IsValid() {
				fmt.Fprintf(b, "PreferredSource=%s\n", r.Src)
			}
			if r.Metric != 0 {
				fmt.Fprintf(b, "Metric=%d\n", r.Metric)
			}
			if r.Scope != "" && r.Scope != "universe" && r.Family == inet.V4 {
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
			if r.Family == inet.V6 {
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
				fmt.Fprintf(b, "IPProtocol=%s\n", inet.ProtoName(r.IPProto))
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
			case model.ActionTable:
				fmt.Fprintf(b, "Table=%d\n", r.Table)
			case model.ActionBlackhole, model.ActionUnreachable, model.ActionProhibit:
				fmt.Fprintf(b, "Type=%s\n", r.Action)
			default:
				notExpressible = append(notExpressible, "keep in the systemd unit: "+quote.OneLine(c.Summary()))
			}
		default:
			notExpressible = append(notExpressible, "keep in the systemd unit: "+quote.OneLine(c.Summary()))
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# roundtrip plan: %s\n", quote.OneLine(p.Intent))
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
	return b.Bytes(), nil
}

// networkdCheck checks the values of a change that Networkd writes into networkd's files:
// the change itself (Check's rules), and interface names, which networkd matches as glob
// patterns in Name= and refuses when they hold '%', ':', '/' or anything but printable ASCII.
func networkdCheck(c Change) error {
	if err := c.check(); err != nil {
		return err
	}
	var names []string
	switch {
	case c.Link != nil:
		names = append(names, c.Link.Name, c.Link.Master)
		if c.Link.Tunnel != nil {
			names = append(names, c.Link.Tunnel.Dev)
		}
	case c.Address != nil:
		names = append(names, c.Address.Dev)
	case c.Route != nil:
		names = append(names, c.Route.Dev)
		for _, nh := range c.Route.Nexthops {
			names = append(names, nh.Dev)
		}
	case c.Rule != nil:
		names = append(names, c.Rule.IIF, c.Rule.OIF)
	}
	for _, n := range names {
		if n == "" {
			continue
		}
		if n[0] == '!' || strings.ContainsAny(n, "%*?[]\\\"'$#;") || !quote.PlainASCII(n) {
			return fmt.Errorf("interface name %s cannot be written for networkd (it would read as a pattern, a quote or a specifier): use the systemd rendering", quote.Shell(n))
		}
	}
	return nil
}

func networkdAddress(b *bytes.Buffer, a model.Address) {
	b.WriteString("\n[Address]\n")
	fmt.Fprintf(b, "Address=%s\n", a.Prefix)
	if a.Peer.IsValid() {
		fmt.Fprintf(b, "Peer=%s\n", a.Peer)
	}
	if a.Scope != "" && a.Scope != "global" {
		fmt.Fprintf(b, "Scope=%s\n", a.Scope)
	}
}
