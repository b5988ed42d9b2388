package plan_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
	"roundtrip/engine/quote"
)

// This file proves that each rendering of a plan does only what the plan says, whatever the
// strings in it: the fuzzers put arbitrary strings into every string field of a plan, keep
// the plans that pass validation (Parse), render them and check the result
//
//   - script: run by sh with ip, iptables and conntrack replaced by shell functions that
//     record their arguments, against the same plan with plain placeholder names: the calls
//     and files must be the placeholder run's with the placeholders replaced, and a canary file
//     must not appear (TestPrivilegedScriptFuzzCorpus also runs the scripts for real);
//   - nft: outside its strings, the file is the placeholder plan's file; loaded into a
//     namespace by the real nft, the ruleset holds exactly the planned tables, chains, rules,
//     names and comments;
//   - systemd: a strict unit parser reads one Key=Value a line, known keys only, and ExecStart
//     unquoted by systemd's rules is the intended command;
//   - networkd: every line but comments is the placeholder plan's with the values put in;
//   - iptables-restore: the rules read back (by the parser, and applied by the real
//     iptables-restore in a namespace) with exactly the planned names and comments.
//
// They run over their seeds and testdata/fuzz corpus in every `go test`, and for longer with
// go test ./engine -run XXX -fuzz FuzzRenderScript -fuzztime 3m (and the others).

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
		q := quote.Shell(w)
		if quote.HasControl(strings.ReplaceAll(q, "\n", "")) {
			t.Errorf("engine.ShellQuote(%q) = %q holds control characters", w, q)
		}
		out, err := exec.Command(sh, "-c", `printf '%s' `+q).Output()
		if err != nil {
			t.Errorf("sh rejects engine.ShellQuote(%q) = %s: %v", w, q, err)
			continue
		}
		if string(out) != w {
			t.Errorf("engine.ShellQuote(%q) = %s reads back as %q", w, q, out)
		}
	}
	if got := quote.ShellJoin("ip", "link", "del", "dev", "l$(>PW)"); got != `ip link del dev 'l$(>PW)'` {
		t.Errorf("ShellJoin: %s", got)
	}
}

func TestSystemdQuoteRoundTrips(t *testing.T) {
	for _, w := range trickyWords {
		if w == "" {
			continue
		}
		q := quote.Systemd(w)
		if strings.ContainsAny(q, "\n\r") {
			t.Errorf("engine.SystemdQuote(%q) = %q spans lines", w, q)
		}
		if got := systemdWords(t, q); len(got) != 1 || got[0] != w {
			t.Errorf("engine.SystemdQuote(%q) = %s reads back as %q", w, q, got)
		}
	}
	if got := quote.SystemdText("50% of \\\nthis\\"); got != "50%% of \\ this" {
		t.Errorf("SystemdText: %q", got)
	}
}

// fuzzFields are the strings a fuzzer puts into a plan.
type fuzzFields struct{ Up, Tun, Proto, Table, Text, Val, NS string }

// jsonNormal is a field as a plan file holds it: JSON replaces bytes that are not UTF-8.
func (f fuzzFields) jsonNormal() fuzzFields {
	n := func(s string) string {
		b, _ := json.Marshal(s)
		var out string
		json.Unmarshal(b, &out)
		return out
	}
	return fuzzFields{n(f.Up), n(f.Tun), n(f.Proto), n(f.Table), n(f.Text), n(f.Val), n(f.NS)}
}

// usable keeps the fields that build a loadable plan on their own (the others set to their
// placeholders) and puts the placeholder back for the rest, so that a fuzzer's input always
// reaches a renderer with as many of its strings as validation lets through.
func (f fuzzFields) usable(build func(fuzzFields) *plan.Plan) fuzzFields {
	out := placeholders
	src, dst := reflect.ValueOf(f), reflect.ValueOf(&out).Elem()
	for i := range src.NumField() {
		try := placeholders
		reflect.ValueOf(&try).Elem().Field(i).Set(src.Field(i))
		if load(build(try)) != nil {
			dst.Field(i).Set(src.Field(i))
		}
	}
	return out
}

// placeholders are plain values for every field: the plan they make is the reference.
var placeholders = fuzzFields{Up: "fzup0", Tun: "fztun0", Proto: "bird", Table: "fztable", Text: "fztext", Val: "fzval", NS: "fzns"}

// replacer turns placeholders into the fields' values.
func (f fuzzFields) replacer() *strings.Replacer {
	p := placeholders
	return strings.NewReplacer(p.Up, f.Up, p.Tun, f.Tun, p.Proto, f.Proto, p.Table, f.Table, p.Text, f.Text, p.Val, f.Val, p.NS, f.NS)
}

// load passes a plan through the loader: only plans that load are rendered.
func load(p *plan.Plan) *plan.Plan {
	b, err := p.Marshal()
	if err != nil {
		return nil
	}
	q, err := plan.Parse(b)
	if err != nil {
		return nil
	}
	return q
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

// commentRule is `-i IFACE -m comment --comment TEXT -j TARGET` in iptables-save syntax.
func commentRule(iface, text, target string) string {
	r := iptables.Rule{Target: target,
		Matches: []iptables.Match{{Name: "comment", Options: []iptables.Option{{Name: "comment", Values: []string{text}}}}}}
	if iface != "" {
		r.In = &iptables.NegStr{Value: iface}
	}
	return r.Args()
}

// scriptPlan touches every kind of change with the fields in every string: names of links,
// devices, tables, a route protocol, a sysctl key and value, a rule's interfaces, an iptables
// comment, the intent, the whys and the namespace.
func scriptPlan(f fuzzFields) *plan.Plan {
	p := plan.New("fuzz: " + f.Text)
	p.Namespace = f.NS
	p.Changes = []plan.Change{
		{Kind: plan.KindTable, Op: plan.OpAdd, Why: f.Text, Table: &plan.RTTable{ID: 1000, Name: f.Table}},
		{Kind: plan.KindLink, Op: plan.OpAdd, Why: f.Text, Link: &model.Link{Name: f.Tun, Kind: "vxlan", Up: true,
			Tunnel: &model.Tunnel{VNI: 42, Local: addr("10.99.0.1"), Remote: addr("10.99.0.2"), Dev: f.Up, Port: 4789},
			Addrs:  []model.Address{{Prefix: pfx("172.16.9.1/30")}}}},
		{Kind: plan.KindAddress, Op: plan.OpAdd, Address: &plan.LinkAddress{Dev: f.Up, Address: model.Address{Prefix: pfx("10.99.0.1/24")}}},
		{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: model.ConfKey(f.Up, "rp_filter"), Value: f.Val}},
		{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4, Table: 1000, Dst: pfx("10.98.0.0/16"),
			Gateway: addr("10.99.0.254"), Dev: f.Up, Protocol: f.Proto}},
		{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4, Table: 1000, Dst: pfx("10.97.0.0/16"),
			Nexthops: []model.Nexthop{{Gateway: addr("10.99.0.254"), Dev: f.Up, Weight: 1}, {Gateway: addr("10.99.0.253"), Dev: f.Up, Weight: 2}}}},
		{Kind: plan.KindRule, Op: plan.OpAdd, Rule: &model.Rule{Family: inet.V4, Priority: 1000, IIF: f.Up, Table: 1000}},
		{Kind: plan.KindRule, Op: plan.OpAdd, Rule: &model.Rule{Family: inet.V4, Priority: 1001, OIF: f.Tun, Table: 1000}},
		{Kind: plan.KindChain, Op: plan.OpSet, Why: f.Text, Chain: &plan.ChainSpec{Family: inet.V4, Table: "mangle", Name: "RT-FUZZ",
			Jumps: []plan.Jump{{Chain: "PREROUTING"}}, Rules: []string{commentRule(f.Up, f.Text, "ACCEPT")}}},
		{Kind: plan.KindConntrack, Op: plan.OpFlush, Conntrack: &plan.ConntrackFlush{Family: inet.V4, Proto: 6, DPort: 80}},
	}
	return p
}

// scriptSeeds are the fuzzers' seeds: the exploits and the strings that break naive
// quoting, each in every field it fits.
var scriptSeeds = []fuzzFields{
	placeholders,
	{Up: "l$(>PW)", Tun: "t`touch`X", Proto: "static", Table: "t1", Text: "$(touch $CANARY)", Val: "2", NS: "ns"},
	{Up: "l;touch", Tun: "t|id&", Proto: "4", Table: "t.x-1", Text: "'; touch $CANARY; '", Val: "2", NS: "n s"},
	{Up: `q'\x`, Tun: "a|b&c", Proto: "dhcp", Table: "isp_a", Text: "}; }; flush ruleset; table ip evil {", Val: "2", NS: "x"},
	{Up: "eth0.100", Tun: "vx\x01", Proto: "zebra", Table: "T", Text: "café ∞ 50% $$ \\n", Val: "1\t2", NS: "%n"},
	{Up: "-f", Tun: "*", Proto: "12", Table: "a", Text: "`touch $CANARY`", Val: "-n", NS: "$HOME"},
	{Up: "ROUNDTRIP_PEER", Tun: "x\x1b]0;t\x07", Proto: "kernel", Table: "c", Text: "ROUNDTRIP_PEER_SCRIPT", Val: "\\c", NS: "z"},
	{Up: "type", Tun: "mtu", Proto: "bgp", Table: "dev", Text: "-j DROP", Val: "2", NS: "ns"},
	{Up: "dev", Tun: "t\xff\u202e", Proto: "0", Table: "lookup", Text: "--table nat", Val: "2", NS: "ns"},
	// Refused on load: the exploits that no real host can carry.
	{Up: "~", Tun: "{a,b}", Proto: "$(touch X)static", Table: "b", Text: "x", Val: "$(touch $CANARY)", NS: "y"},
	{Up: "a", Tun: "b", Proto: "static", Table: "t", Text: "x", Val: "2", NS: "ns\nExecStartPre=/bin/touch /x"},
	{Up: "x\x1b]0;t\x07", Tun: "b", Proto: "static", Table: "t", Text: `"; }; }; flush ruleset; table ip evil {`, Val: "2", NS: "ns"},
}

func addSeeds(f *testing.F) {
	for _, s := range scriptSeeds {
		f.Add(s.Up, s.Tun, s.Proto, s.Table, s.Text, s.Val, s.NS)
	}
}

// stubs replace the commands the script runs with functions that record their arguments;
// iptables -C answers "no such rule", so that hook inserts and unhook stops.
const stubs = `rec() { printf '%s\0' "$#" "$@" >>"$RT_LOG"; }
ip() { rec ip "$@"; }
iptables() { rec iptables "$@"; [ "$4" != -C ]; }
ip6tables() { rec ip6tables "$@"; [ "$4" != -C ]; }
conntrack() { rec conntrack "$@"; }
`

// stubbedRun is what a script did with the commands stubbed: the calls with their arguments,
// and the files it left (by path relative to the run's root, placeholders in place).
type stubbedRun struct {
	Calls [][]string
	Files map[string]string
}

// runStubbed runs a script with the stubs, in a directory of its own with a PATH of only the
// tools its helpers use (mkdir, touch, grep, mv: ip and iptables are only the stubs), its
// sysctl files redirected into the directory. The canary and the working directory must stay
// untouched.
func runStubbed(t testing.TB, script []byte, up string) stubbedRun {
	t.Helper()
	dir, err := os.MkdirTemp("", "rtfuzz")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	root, bin, cwd := filepath.Join(dir, "root"), filepath.Join(dir, "bin"), filepath.Join(dir, "cwd")
	for _, d := range []string{bin, cwd, filepath.Join(root, "etc"), filepath.Join(root, "proc/sys/net/ipv4/conf", up)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tool := range []string{"mkdir", "touch", "grep", "mv"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("needs %s", tool)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.SplitAfter(string(script), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, `printf '%s\n' `) {
			lines[i] = strings.Replace(l, "/proc/sys/", root+"/proc/sys/", 1)
		}
	}
	files := map[string]string{"stubs": stubs, "script": strings.Join(lines, "")}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	log, canary := filepath.Join(dir, "log"), filepath.Join(dir, "canary")
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("needs sh")
	}
	args := []string{sh, "-c", `. "$1"; . "$2"`, "sh", filepath.Join(dir, "stubs"), filepath.Join(dir, "script")}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = cwd
	cmd.Env = []string{"PATH=" + bin, "LC_ALL=C", "HOME=" + cwd, "RT_LOG=" + log, "CANARY=" + canary, engineIPRoute2Env + "=" + filepath.Join(root, "etc")}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the script fails with the commands stubbed: %v\n%s\nscript:\n%s", err, out, script)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatalf("the canary was touched: the script ran a command of a value\n%s", script)
	}
	if ents, _ := os.ReadDir(cwd); len(ents) > 0 {
		t.Fatalf("the script created %s in its working directory\n%s", ents[0].Name(), script)
	}
	run := stubbedRun{Files: map[string]string{}}
	raw, _ := os.ReadFile(log)
	words := strings.Split(string(raw), "\x00")
	for i := 0; i+1 < len(words); {
		n, err := strconv.Atoi(words[i])
		if err != nil || i+1+n > len(words) {
			t.Fatalf("bad stub log at word %d: %q", i, words)
		}
		run.Calls = append(run.Calls, words[i+1:i+1+n])
		i += 1 + n
	}
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(path)
			rel, _ := filepath.Rel(root, path)
			run.Files[rel] = string(b)
		}
		return nil
	})
	return run
}

// engineIPRoute2Env is kernel.IPRoute2DirEnv, which the script's rt_name helper reads.
const engineIPRoute2Env = "ROUNDTRIP_IPROUTE2_DIR"

// substituted is the placeholder run with the placeholders replaced by the fields' values.
func (r stubbedRun) substituted(f fuzzFields) stubbedRun {
	rep := f.replacer()
	out := stubbedRun{Files: map[string]string{}}
	for _, c := range r.Calls {
		var nc []string
		for _, w := range c {
			nc = append(nc, rep.Replace(w))
		}
		out.Calls = append(out.Calls, nc)
	}
	for k, v := range r.Files {
		out.Files[rep.Replace(k)] = rep.Replace(v)
	}
	return out
}

var (
	referenceOnce sync.Once
	referenceRun  stubbedRun
)

func FuzzRenderScript(f *testing.F) {
	if _, err := exec.LookPath("sh"); err != nil {
		f.Skip("needs sh")
	}
	addSeeds(f)
	f.Fuzz(func(t *testing.T, up, tun, proto, table, text, val, ns string) {
		in := fuzzFields{up, tun, proto, table, text, val, ns}.jsonNormal().usable(scriptPlan)
		up, tun, proto, table, text, val, ns = in.Up, in.Tun, in.Proto, in.Table, in.Text, in.Val, in.NS
		p := load(scriptPlan(in))
		if p == nil {
			return
		}
		// A protocol number is written by its name where it has one (as the kernel reads it).
		if n, err := strconv.ParseUint(proto, 10, 8); err == nil && model.RouteProtocolNames[int(n)] != "" {
			proto = model.RouteProtocolNames[int(n)]
		}
		if proto == "boot" || proto == "" {
			return // the route then has no proto word: another shape than the reference
		}
		referenceOnce.Do(func() { referenceRun = runStubbed(t, load(scriptPlan(placeholders)).Script(), placeholders.Up) })
		want := referenceRun.substituted(fuzzFields{up, tun, proto, table, text, val, ns})
		got := runStubbed(t, p.Script(), up)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("the script does something else than the plan says:\ngot  %q\nwant %q\nscript:\n%s", got, want, p.Script())
		}
	})
}

// TestPrivilegedScriptFuzzCorpus runs the scripts of the fuzz seeds and corpus for real, each
// in a fresh namespace with the planned uplink created under its (hostile) name, from an empty
// directory with a canary: nothing but the plan may happen, and the namespace must then be as
// the plan expects (Plan.Drift is empty).
func TestPrivilegedScriptFuzzCorpus(t *testing.T) {
	lab.Require(t)
	for _, tool := range []string{"iptables", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	inputs := slices.Clone(scriptSeeds)
	inputs = append(inputs, readCorpus(t, "FuzzRenderScript")...)
	ran := 0
	for i, in := range inputs {
		in = in.jsonNormal()
		// The kernel takes rp_filter 0-2 only and rejects an unknown protocol name of ip; the
		// rest stays as the fuzzer made it.
		in.Val = "2"
		p := load(scriptPlan(in))
		if p == nil || in.Up == in.Tun || in.Proto != "" && !protocolKnownToIP(in.Proto) {
			continue
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			runForReal(t, p, in)
		})
		ran++
	}
	if ran < len(scriptSeeds)-3 {
		t.Errorf("only %d of the %d inputs ran", ran, len(inputs))
	}
}

// protocolKnownToIP reports whether iproute2 takes a route protocol: a number, or a name of
// its own rt_protos.
func protocolKnownToIP(p string) bool {
	if _, err := strconv.ParseUint(p, 10, 8); err == nil {
		return true
	}
	for _, n := range model.RouteProtocolNames {
		if n == p {
			return true
		}
	}
	return false
}

func runForReal(t *testing.T, p *plan.Plan, in fuzzFields) {
	l := lab.New(t)
	ns := l.NS("script")
	if out, err := exec.Command("ip", "-n", ns.Name, "link", "add", "name", in.Up, "type", "veth", "peer", "name", "fzpeer").CombinedOutput(); err != nil {
		t.Skipf("ip cannot create a link named %q: %v: %s", in.Up, err, out)
	}
	ns.IP("link", "set", "dev", in.Up, "up")
	ns.IP("link", "set", "dev", "fzpeer", "up")
	dir := t.TempDir()
	cwd, etc := filepath.Join(dir, "cwd"), filepath.Join(dir, "etc")
	os.MkdirAll(cwd, 0o755)
	script := filepath.Join(dir, "plan.sh")
	if err := os.WriteFile(script, p.Script(), 0o700); err != nil {
		t.Fatal(err)
	}
	canary := filepath.Join(dir, "canary")
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "sh", script)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "CANARY="+canary, engineIPRoute2Env+"="+etc)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the script fails: %v\n%s\nscript:\n%s", err, out, p.Script())
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("the canary was touched")
	}
	if ents, _ := os.ReadDir(cwd); len(ents) > 0 {
		t.Fatalf("the script created %q in its working directory", ents[0].Name())
	}
	t.Setenv(engineIPRoute2Env, etc)
	st := readNamespace(t, ns.Name)
	if drift := p.Drift(st); len(drift) > 0 {
		t.Errorf("the namespace is not as the plan expects:\n%s\nscript:\n%s", strings.Join(drift, "\n"), p.Script())
	}
}

// readCorpus reads the inputs of a fuzzer's corpus directory (testdata/fuzz/NAME): seven
// strings per file, in fuzzFields order.
func readCorpus(t *testing.T, name string) []fuzzFields {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", name, "*"))
	var out []fuzzFields
	for _, file := range files {
		vals := corpusStrings(t, file)
		if len(vals) != 7 {
			t.Fatalf("%s: %d values, want 7", file, len(vals))
		}
		out = append(out, fuzzFields{vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], vals[6]})
	}
	return out
}

// corpusStrings reads the string values of a file in the go fuzz corpus format.
func corpusStrings(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "string("); ok {
			s, err := strconv.Unquote(strings.TrimSuffix(v, ")"))
			if err != nil {
				t.Fatalf("%s: %q: %v", file, line, err)
			}
			out = append(out, s)
		}
	}
	return out
}

// nftPlan is two chains: one matching an interface with a comment, one logging with a prefix.
func nftPlan(iface, comment, prefix string) *plan.Plan {
	p := plan.New("nft fuzz")
	log := iptables.Rule{Target: "LOG", TargetOpts: []iptables.Option{{Name: "log-prefix", Values: []string{prefix}}}}
	p.Changes = []plan.Change{
		{Kind: plan.KindChain, Op: plan.OpSet, Chain: &plan.ChainSpec{Family: inet.V4, Table: "mangle", Name: "RT-FZ-A",
			Jumps: []plan.Jump{{Chain: "PREROUTING"}}, Rules: []string{commentRule(iface, comment, "RT-FZ-B")}}},
		{Kind: plan.KindChain, Op: plan.OpSet, Chain: &plan.ChainSpec{Family: inet.V4, Table: "mangle", Name: "RT-FZ-B",
			Rules: []string{log.Args()}}},
	}
	return p
}

// nftFields is nftPlan of the fields it uses (interface, comment, log prefix).
func nftFields(f fuzzFields) *plan.Plan { return nftPlan(f.Up, f.Text, f.Val) }

// nftInput is the fuzzers' input as the plan holds it, and the plan (nil when it does not
// load even with placeholders for the fields that fail alone).
func nftInput(iface, comment, prefix string) (string, string, string, *plan.Plan) {
	if iface == "" {
		// No interface is no -i match at all: a plan of another shape than the reference,
		// whose strings the comparison could not line up.
		iface = placeholders.Up
	}
	n := fuzzFields{Up: iface, Text: comment, Val: prefix}.jsonNormal().usable(nftFields)
	return n.Up, n.Text, n.Val, load(nftFields(n))
}

// nftSkeleton splits an nft file into its text outside strings (every line, comments
// dropped) and its strings. nft's strings end at the next '"' and know no escapes.
func nftSkeleton(t testing.TB, text string) (skeleton string, strs []string) {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, `"`)
		if len(parts)%2 == 0 {
			t.Fatalf("unbalanced quotes in nft line %q", line)
		}
		for i, part := range parts {
			if i%2 == 1 {
				strs = append(strs, part)
				b.WriteString(`""`)
			} else {
				b.WriteString(part)
			}
		}
		b.WriteString("\n")
	}
	return b.String(), strs
}

// toolNamespace returns a namespace for a fuzzer to load its files into with tool, or nil
// (saying why) when the test does not run as root or the tool is missing: the fuzzer then
// checks the files without the tool.
func toolNamespace(f *testing.F, tool, pkg string) *lab.NS {
	if os.Geteuid() != 0 {
		f.Logf("not root: checking the files without loading them with %s", tool)
		return nil
	}
	if _, err := exec.LookPath(tool); err != nil {
		f.Logf("%s is missing (apt-get install %s): checking the files without loading them", tool, pkg)
		return nil
	}
	if w := flag.Lookup("test.fuzzworker"); w != nil && w.Value.String() == "true" {
		// -fuzz runs the target in worker processes that the coordinator kills at the end,
		// before any cleanup: a namespace made here would outlive them. New inputs get the
		// structural checks; the corpus is loaded for real in every plain go test.
		f.Logf("fuzz worker: checking the files without loading them with %s", tool)
		return nil
	}
	return lab.New(f).NS(strings.TrimSuffix(tool, "-restore"))
}

// nftNS and iptNS are the namespaces the fuzzers load their files into (one per process).
var nftNS, iptNS *lab.NS

func FuzzRenderNFT(f *testing.F) {
	for _, s := range scriptSeeds {
		f.Add(s.Up, s.Text, s.Tun)
	}
	f.Add("eth+", "a comment", "fw: ")
	ref, err := load(nftPlan("fzup0", "fztext", "fzval")).NFT()
	if err != nil {
		f.Fatal(err)
	}
	refSkel, refStrs := nftSkeleton(f, string(ref))
	nftNS = toolNamespace(f, "nft", "nftables")
	privileged := nftNS != nil
	f.Fuzz(func(t *testing.T, iface, comment, prefix string) {
		iface, comment, prefix, p := nftInput(iface, comment, prefix)
		if p == nil {
			return
		}
		out, err := p.NFT()
		if err != nil {
			if !strings.Contains(err.Error(), "no translation") && !strings.Contains(err.Error(), "cannot be written") && !strings.Contains(err.Error(), "as a variable") {
				t.Fatalf("unexpected refusal: %v", err)
			}
			return
		}
		rep := fuzzFields{Up: iface, Text: comment, Val: prefix}.replacer()
		wantIface := strings.TrimSuffix(iface, "+")
		if strings.HasSuffix(iface, "+") {
			wantIface += "*"
		}
		skel, strs := nftSkeleton(t, string(out))
		var wantStrs []string
		for _, s := range refStrs {
			if s == "fzup0" {
				wantStrs = append(wantStrs, wantIface)
			} else {
				wantStrs = append(wantStrs, rep.Replace(s))
			}
		}
		if skel != refSkel || !slices.Equal(strs, wantStrs) {
			t.Fatalf("the nft file says something else than the plan:\n%s\nwant strings %q, got %q", out, wantStrs, strs)
		}
		if !privileged {
			return
		}
		if len(comment) > 128 || len(prefix) > 127 {
			return // nft's own limits: it refuses these, which is not a breakout
		}
		checkNFTLoaded(t, nftNS, out, wantIface, comment, prefix)
	})
}

// checkNFTLoaded loads the file with the real nft into the namespace and checks the whole
// ruleset: only ip roundtrip, with the three planned chains, one rule each, the planned
// interface, comment and log prefix, and nothing else.
func checkNFTLoaded(t *testing.T, ns *lab.NS, file []byte, iface, comment, prefix string) {
	path := filepath.Join(t.TempDir(), "plan.nft")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := ns.Try("nft", "-c", "-f", path); err != nil {
		t.Fatalf("nft -c refuses the file: %v\n%s\n%s", err, out, file)
	}
	if _, err := ns.Try("nft", "flush", "ruleset"); err != nil {
		t.Fatal(err)
	}
	if out, err := ns.Try("nft", "-f", path); err != nil {
		t.Fatalf("nft -f refuses the file: %v\n%s\n%s", err, out, file)
	}
	out, err := ns.Try("nft", "-j", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j: %v\n%s", err, out)
	}
	var tables, chains []string
	rules := map[string][]string{}
	for _, obj := range doc.Nftables {
		for kind, raw := range obj {
			var o struct {
				Family, Name, Table, Chain, Comment string
				Expr                                []json.RawMessage
			}
			json.Unmarshal(raw, &o)
			switch kind {
			case "table":
				tables = append(tables, o.Family+" "+o.Name)
			case "chain":
				chains = append(chains, o.Name)
			case "rule":
				desc := []string{"comment=" + o.Comment}
				for _, e := range o.Expr {
					var x struct {
						Match *struct {
							Left  struct{ Meta struct{ Key string } }
							Right json.RawMessage
						}
						Log  *struct{ Prefix string }
						Jump *struct{ Target string }
					}
					json.Unmarshal(e, &x)
					switch {
					case x.Match != nil && x.Match.Left.Meta.Key == "iifname":
						var s string
						json.Unmarshal(x.Match.Right, &s)
						desc = append(desc, "iifname="+s)
					case x.Log != nil:
						desc = append(desc, "log="+x.Log.Prefix)
					case x.Jump != nil:
						desc = append(desc, "jump="+x.Jump.Target)
					}
				}
				rules[o.Chain] = append(rules[o.Chain], strings.Join(desc, " "))
			}
		}
	}
	want := map[string][]string{
		"RT-FZ-A":           {"comment=" + comment + " iifname=" + iface + " jump=RT-FZ-B"},
		"RT-FZ-B":           {"comment= log=" + prefix},
		"mangle-prerouting": {"comment= jump=RT-FZ-A"},
	}
	slices.Sort(chains)
	if !slices.Equal(tables, []string{"ip roundtrip"}) || !slices.Equal(chains, []string{"RT-FZ-A", "RT-FZ-B", "mangle-prerouting"}) || !reflect.DeepEqual(rules, want) {
		t.Fatalf("the loaded ruleset is not the plan:\ntables %q\nchains %q\nrules %q\nwant %q\nfile:\n%s", tables, chains, rules, want, file)
	}
}

// unitKeys are the keys each section of roundtrip's unit may hold.
var unitKeys = map[string][]string{
	"Unit":    {"Description", "Wants", "After"},
	"Service": {"Type", "RemainAfterExit", "ExecStart"},
	"Install": {"WantedBy"},
}

// parseUnit reads a unit strictly: comments, blank lines, sections and one Key=Value a line,
// no continuation lines, known keys once each.
func parseUnit(t *testing.T, unit string) map[string]string {
	t.Helper()
	out := map[string]string{}
	section := ""
	for _, line := range strings.Split(strings.TrimSuffix(unit, "\n"), "\n") {
		switch {
		case strings.HasSuffix(line, `\`):
			t.Fatalf("line %q continues onto the next", line)
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if _, ok := unitKeys[section]; !ok {
				t.Fatalf("unknown section %s", line)
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || !slices.Contains(unitKeys[section], k) {
				t.Fatalf("line %q is not a known key of [%s]", line, section)
			}
			if _, dup := out[k]; dup {
				t.Fatalf("%s given twice", k)
			}
			out[k] = v
		}
	}
	return out
}

func FuzzRenderSystemd(f *testing.F) {
	f.Add("roundtrip-plan", "/etc/roundtrip/plan.sh", "", "plain")
	f.Add("x\nExecStartPre=/bin/touch /x", "/etc/x.sh", "ns", "i")
	f.Add("ok", "/etc/x.sh", "ns\nExecStartPre=/bin/touch /x", "intent")
	f.Add("ok", "/etc/my plan/$HOME/%n.sh", "gw 1", "50% done\\")
	f.Add("ok", "/etc/a\"b'c\\d;e.sh", "%i$$", "a\x1bb")
	f.Fuzz(func(t *testing.T, name, path, ns, intent string) {
		n := fuzzFields{NS: ns, Text: intent}.jsonNormal()
		ns, intent = n.NS, n.Text
		p := plan.New(intent)
		p.Namespace = ns
		if p = load(p); p == nil {
			return
		}
		unit, err := p.SystemdUnit(name, path)
		if err != nil {
			return
		}
		keys := parseUnit(t, string(unit))
		argv := systemdWords(t, keys["ExecStart"])
		want := []string{"/bin/sh", path}
		if ns != "" {
			want = append([]string{"/usr/sbin/ip", "netns", "exec", ns}, want...)
		}
		if !slices.Equal(argv, want) {
			t.Fatalf("ExecStart runs %q, want %q\n%s", argv, want, unit)
		}
		desc := strings.ReplaceAll(keys["Description"], "%%", "%")
		if strings.Count(keys["Description"], "%")%2 != 0 || desc != "roundtrip: "+strings.TrimRight(strings.Join(strings.Fields(intent), " "), `\`) {
			t.Fatalf("Description=%s for intent %q", keys["Description"], intent)
		}
	})
}

// systemdWords splits an ExecStart value into words as systemd does (systemd.syntax(7):
// double and single quotes, C escapes, "%%" and "$$"), failing on a lone % or $.
func systemdWords(t *testing.T, line string) []string {
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
				v, err := strconv.ParseUint(line[i+1:i+3], 16, 8)
				if err != nil {
					t.Fatalf("bad \\x escape in %q", line)
				}
				cur.WriteByte(byte(v))
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

// networkdPlan puts the fields into everything Networkd writes: a table name, a vxlan link
// on an underlying device, an address, a sysctl, a route and a rule.
func networkdPlan(f fuzzFields) *plan.Plan {
	p := plan.New("networkd fuzz: " + f.Text)
	p.Changes = []plan.Change{
		{Kind: plan.KindTable, Op: plan.OpAdd, Table: &plan.RTTable{ID: 1000, Name: f.Table}},
		{Kind: plan.KindLink, Op: plan.OpAdd, Link: &model.Link{Name: f.Tun, Kind: "vxlan", Up: true,
			Tunnel: &model.Tunnel{VNI: 42, Remote: addr("10.99.0.2"), Dev: f.Up, Port: 4789}}},
		{Kind: plan.KindAddress, Op: plan.OpAdd, Address: &plan.LinkAddress{Dev: f.Up, Address: model.Address{Prefix: pfx("10.99.0.1/24")}}},
		{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &plan.SysctlValue{Key: model.ConfKey(f.Up, "rp_filter"), Value: f.Val}},
		{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4, Table: 1000, Dst: pfx("10.98.0.0/16"), Gateway: addr("10.99.0.254"), Dev: f.Up}},
		{Kind: plan.KindRule, Op: plan.OpAdd, Rule: &model.Rule{Family: inet.V4, Priority: 1000, IIF: f.Up, Table: 1000}},
		{Kind: plan.KindChain, Op: plan.OpSet, Chain: &plan.ChainSpec{Family: inet.V4, Table: "mangle", Name: "RT-FUZZ", Rules: []string{commentRule(f.Up, f.Text, "ACCEPT")}}},
	}
	return p
}

// networkdLines splits a rendering into its comment lines (count) and its other lines.
func networkdLines(t testing.TB, out string) (comments int, lines []string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		// A tab is whitespace to sysctl.d as to the kernel (tcp_rmem's value holds tabs, and
		// model.CheckSysctlValue allows them); anything else a terminal or parser acts on is not.
		if quote.HasControl(strings.ReplaceAll(l, "\t", " ")) {
			t.Fatalf("line %q holds control characters", l)
		}
		if strings.HasPrefix(l, "#") {
			comments++
		} else {
			lines = append(lines, l)
		}
	}
	return comments, lines
}

func FuzzRenderNetworkd(f *testing.F) {
	addSeeds(f)
	ref, err := load(networkdPlan(placeholders)).Networkd()
	if err != nil {
		f.Fatal(err)
	}
	refComments, refLines := networkdLines(f, string(ref))
	f.Fuzz(func(t *testing.T, up, tun, proto, table, text, val, ns string) {
		in := fuzzFields{up, tun, proto, table, text, val, ns}.jsonNormal().usable(networkdPlan)
		up, tun = in.Up, in.Tun
		p := load(networkdPlan(in))
		if p == nil {
			return
		}
		out, err := p.Networkd()
		if err != nil {
			if !strings.Contains(err.Error(), "cannot be written for networkd") {
				t.Fatalf("unexpected refusal: %v", err)
			}
			return
		}
		if up == tun {
			return // one .network file then holds both: another shape than the reference
		}
		comments, lines := networkdLines(t, string(out))
		rep := in.replacer()
		// sysctl.d writes a dot in an interface name as a slash (model.ConfKey).
		slashed := in
		slashed.Up = strings.ReplaceAll(in.Up, ".", "/")
		repKey := slashed.replacer()
		var want []string
		for _, l := range refLines {
			if strings.HasPrefix(l, "net.") {
				want = append(want, repKey.Replace(l))
				continue
			}
			want = append(want, rep.Replace(l))
		}
		if comments != refComments || !slices.Equal(lines, want) {
			t.Fatalf("the networkd rendering says something else than the plan:\n%s\nwant lines %q", out, want)
		}
	})
}

// restoreRules reads the -A lines of an iptables-restore file: chain and rule, parsed.
func restoreRules(t *testing.T, file string) map[string][]iptables.Rule {
	t.Helper()
	out := map[string][]iptables.Rule{}
	for _, line := range strings.Split(file, "\n") {
		rest, ok := strings.CutPrefix(line, "-A ")
		if !ok {
			if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "*") && !strings.HasPrefix(line, ":") &&
				!strings.HasPrefix(line, "-I ") && line != "COMMIT" {
				t.Fatalf("unexpected line %q", line)
			}
			continue
		}
		chain, spec, _ := strings.Cut(rest, " ")
		r, err := iptables.ParseRule(inet.V4, spec)
		if err != nil {
			t.Fatalf("line %q does not parse: %v", line, err)
		}
		r.Spec = ""
		out[chain] = append(out[chain], r)
	}
	return out
}

func FuzzRenderIPTablesRestore(f *testing.F) {
	for _, s := range scriptSeeds {
		f.Add(s.Up, s.Text, s.Tun)
	}
	iptNS = toolNamespace(f, "iptables-restore", "iptables")
	privileged := iptNS != nil
	empty := &model.State{}
	f.Fuzz(func(t *testing.T, iface, comment, prefix string) {
		_, comment, prefix, p := nftInput(iface, comment, prefix)
		if p == nil {
			return
		}
		file := p.IPTablesRestore(inet.V4, empty)
		got := restoreRules(t, string(file))
		want := map[string][]iptables.Rule{}
		for _, c := range p.Changes {
			for _, spec := range c.Chain.Rules {
				r, _ := iptables.ParseRule(inet.V4, spec)
				r.Spec = ""
				want[c.Chain.Name] = append(want[c.Chain.Name], r)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("the restore file reads back as other rules:\n%s\ngot  %+v\nwant %+v", file, got, want)
		}
		if !privileged || len(comment) > 255 || len(prefix) > 29 {
			return // iptables' own limits: it refuses these, which is not a breakout
		}
		checkRestoreApplied(t, iptNS, file, want)
	})
}

// checkRestoreApplied applies the file with the real iptables-restore in the namespace, from
// empty tables, and reads the chains back with iptables-save: the planned rules, exactly.
func checkRestoreApplied(t *testing.T, ns *lab.NS, file []byte, want map[string][]iptables.Rule) {
	reset := filepath.Join(t.TempDir(), "reset")
	os.WriteFile(reset, []byte("*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n"), 0o600)
	if out, err := ns.Try("iptables-restore", reset); err != nil {
		t.Fatalf("resetting mangle: %v %s", err, out)
	}
	// On standard input, as apply feeds it: after -w, a file name would be taken for -w's
	// optional argument.
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "iptables-restore", "--noflush", "-w")
	cmd.Stdin = bytes.NewReader(file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iptables-restore refuses the file: %v\n%s\n%s", err, out, file)
	}
	saved, err := ns.Try("iptables-save", "-t", "mangle")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := iptables.ParseSave(inet.V4, []byte(saved))
	if err != nil {
		t.Fatalf("reading back: %v\n%s", err, saved)
	}
	got := map[string][]iptables.Rule{}
	for _, tb := range tables {
		for _, c := range tb.Chains {
			for _, r := range c.Rules {
				r.Spec, r.Packets, r.Bytes = "", 0, 0
				// iptables-save adds the defaults of LOG; the plan does not name them.
				r.TargetOpts = slices.DeleteFunc(r.TargetOpts, func(o iptables.Option) bool { return o.Name == "log-level" })
				if c.Name == "PREROUTING" {
					continue
				}
				got[c.Name] = append(got[c.Name], r)
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the applied rules are not the plan's:\n%s\ngot  %+v\nwant %+v", saved, got, want)
	}
}

// TestRendersOfExploits renders the crafted plans without validation (as if a caller
// skipped it): the renderings still hold each value as one inert word or refuse it.
func TestRendersOfExploits(t *testing.T) {
	p := plan.New("crafted")
	p.Namespace = "ns\nExecStartPre=/bin/touch /x"
	p.Changes = []plan.Change{{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &model.Route{Family: inet.V4, Dst: pfx("10.1.0.0/16"),
		Dev: "l$(>PW)", Protocol: "$(touch X)static", Scope: "link;id"}}}
	script := string(p.Script())
	if !strings.Contains(script, `ip -4 route replace 10.1.0.0/16 dev 'l$(>PW)' proto '$(touch X)static' scope 'link;id'`) {
		t.Errorf("the route is not quoted:\n%s", script)
	}
	if strings.Contains(script, "\nExecStartPre") {
		t.Errorf("the namespace's newline reached the script:\n%s", script)
	}
	if _, err := p.SystemdUnit("ok", "/etc/x.sh"); err == nil {
		t.Error("a unit was rendered for a namespace with a newline")
	}
	if _, err := plan.New("x").SystemdUnit("x\nExecStartPre=/bin/touch /x", "/etc/x.sh"); err == nil {
		t.Error("a unit was rendered with a newline in its name")
	}
	nft := plan.New("crafted")
	nft.Changes = []plan.Change{{Kind: plan.KindChain, Op: plan.OpSet, Chain: &plan.ChainSpec{Family: inet.V4, Table: "filter", Name: "RT-X",
		Rules: []string{commentRule("", `"; }; }; flush ruleset; table ip evil {`, "ACCEPT")}}}}
	if out, err := nft.NFT(); err == nil {
		t.Errorf("the nft comment breakout was rendered:\n%s", out)
	}
	if _, err := plan.Parse(mustMarshal(t, nft)); err == nil {
		t.Error("a plan with the nft comment breakout loads")
	}
	run := runStubbed(t, p.Script(), "x")
	if len(run.Calls) != 1 || !slices.Equal(run.Calls[0], []string{"ip", "-4", "route", "replace", "10.1.0.0/16", "dev", "l$(>PW)", "proto", "$(touch X)static", "scope", "link;id"}) {
		t.Errorf("the crafted script runs %q", run.Calls)
	}
}

func mustMarshal(t *testing.T, p *plan.Plan) []byte {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readNamespace reads a namespace's state through the kernel package, as apply does.
func readNamespace(t *testing.T, name string) *model.State {
	t.Helper()
	st, err := kernel.Read(context.Background(), kernel.Namespace{Name: name})
	if err != nil {
		t.Fatalf("reading namespace %s: %v", name, err)
	}
	return st
}
