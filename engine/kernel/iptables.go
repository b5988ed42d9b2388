// Package kernel is roundtrip's only access to the kernel: netlink, iptables tools, sysctls and conntrack.
package kernel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/safefile"
)

// Runner runs a command-line tool and returns its standard output. It is the seam between
// roundtrip and the iptables/nft tools, so that tests can replace the kernel with a fake
// (after tailscale's wgengine/router/osrouter runner).
type Runner interface {
	Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)
}

// ErrToolMissing is returned (wrapped) when a command-line tool is not installed.
var ErrToolMissing = errors.New("tool missing")

// toolPackages names the Debian package that installs each tool roundtrip runs.
var toolPackages = map[string]string{
	"iptables": "iptables", "iptables-save": "iptables", "iptables-restore": "iptables",
	"ip6tables": "iptables", "ip6tables-save": "iptables", "ip6tables-restore": "iptables",
	"iptables-legacy": "iptables", "iptables-legacy-save": "iptables", "iptables-legacy-restore": "iptables",
	"ip6tables-legacy": "iptables", "ip6tables-legacy-save": "iptables", "ip6tables-legacy-restore": "iptables",
	"iptables-nft": "iptables", "iptables-nft-save": "iptables", "iptables-nft-restore": "iptables",
	"ip6tables-nft": "iptables", "ip6tables-nft-save": "iptables", "ip6tables-nft-restore": "iptables",
	"nft": "nftables", "ip": "iproute2", "conntrack": "conntrack", "sysctl": "procps", "tcpdump": "tcpdump",
}

// missingToolError says which tool is missing and how to install it; errors.Is(err,
// ErrToolMissing) holds for it.
type missingToolError struct{ tool string }

func (e *missingToolError) Error() string {
	if pkg, ok := toolPackages[e.tool]; ok {
		return fmt.Sprintf("%s not found: install the %s package (apt-get install %s)", e.tool, pkg, pkg)
	}
	return fmt.Sprintf("%s not found: install it or add its directory to PATH", e.tool)
}

func (e *missingToolError) Unwrap() error { return ErrToolMissing }

// ExecRunner runs tools as processes, inside the network namespace NetNS (`ip netns exec`)
// when it is set. It sets LC_ALL=C so that output and error messages are the untranslated
// ones that roundtrip parses and users search for.
type ExecRunner struct {
	NetNS string
}

// Run runs name with args and stdin (if not nil) and returns its standard output (warnings on
// standard error, such as iptables-nft-save's about legacy tables, are not part of it). A
// failure names the command line and carries both outputs.
func (e ExecRunner) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	out, _, err := e.RunDiag(ctx, stdin, name, args...)
	return out, err
}

// RunDiag implements DiagRunner: Run, with the standard error of a tool that succeeded
// (its first 64 KiB).
func (e ExecRunner) RunDiag(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, []byte, error) {
	cmdline := strings.Join(append([]string{name}, args...), " ")
	where := ""
	argv := append([]string{name}, args...)
	if e.NetNS != "" {
		where = " in network namespace " + e.NetNS
		argv = append([]string{"ip", "netns", "exec", e.NetNS}, argv...)
	}
	// Look the tools up first: under `ip netns exec` a missing tool would only show as
	// "exec of ... failed" with exit status 255.
	for _, tool := range []string{argv[0], name} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, nil, &missingToolError{tool: tool}
		}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	stdout := cappedBuffer{limit: maxToolOutput}
	// Error messages only name the command's problem: their start is enough.
	stderr := cappedBuffer{limit: 64 << 10, truncate: true}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if stdout.over {
			// The copy stopped at the limit and the tool died writing into a closed pipe.
			return nil, nil, fmt.Errorf("running %q%s: its output is over %s, the most roundtrip reads from a tool", cmdline, where, safefile.Size(int64(maxToolOutput)))
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, nil, fmt.Errorf("running %q%s: %w", cmdline, where, ctxErr)
		}
		// Both streams, the error messages first: they come through separate pipes, so the
		// order they were written in is lost anyway.
		out := strings.TrimSpace(strings.TrimSpace(stderr.String()) + "\n" + strings.TrimSpace(stdout.String()))
		if out != "" {
			return nil, nil, fmt.Errorf("running %q%s: %w: %s", cmdline, where, err, out)
		}
		return nil, nil, fmt.Errorf("running %q%s: %w", cmdline, where, err)
	}
	return stdout.Bytes(), stderr.Bytes(), nil
}

// maxToolOutput is model.MaxToolOutput; tests lower it.
var maxToolOutput = model.MaxToolOutput

// cappedBuffer collects a tool's output up to a limit. Past it, it fails the write (exec then
// stops copying and closes the pipe, so the tool ends instead of filling memory), or with
// truncate drops the rest. The buffer is a field, not embedded: an embedded bytes.Buffer's
// ReadFrom would let io.Copy bypass Write and its limit.
type cappedBuffer struct {
	buf      bytes.Buffer
	limit    int
	truncate bool
	over     bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.buf.Len()+len(p) > b.limit {
		b.over = true
		if b.truncate {
			b.buf.Write(p[:b.limit-b.buf.Len()])
			return len(p), nil
		}
		return 0, errors.New("output over its limit")
	}
	return b.buf.Write(p)
}

func (b *cappedBuffer) Bytes() []byte  { return b.buf.Bytes() }
func (b *cappedBuffer) String() string { return b.buf.String() }

// ReadNetfilter reads the iptables rules of both families with iptables-save -c and
// ip6tables-save -c, the iptables backend from `iptables -V`, and the native nftables tables
// that iptables-save cannot show (from `nft -j list tables`, when nft is installed). When the
// iptables tools are missing it returns a Netfilter whose Unavailable says so, and no error,
// so that the rest of the state can still be read.
func ReadNetfilter(ctx context.Context, r Runner) (iptables.Ruleset, error) {
	nf, nftRead, err := readIPTables(ctx, r)
	if errors.Is(err, ErrToolMissing) {
		why := err.Error()
		if missing := (*missingToolError)(nil); errors.As(err, &missing) {
			why = missing.Error() // without the "finding the iptables backend" context
		}
		nf = iptables.Ruleset{Unavailable: why + "; NAT and filter rules are not modelled"}
	} else if isPermissionDenied(err) {
		// Reading netfilter needs CAP_NET_ADMIN; routing does not. Say so and go on, so that
		// an unprivileged `show` or `trace` still explains the routing.
		nf = iptables.Ruleset{Unavailable: "reading netfilter needs root (iptables-save: permission denied): run as root to see NAT and filter rules; they are not modelled"}
	} else if err != nil {
		return iptables.Ruleset{}, err
	}
	if nf.Foreign, err = foreignNFTables(ctx, r, nftRead); isPermissionDenied(err) {
		nf.Foreign = nil // already said: netfilter is not readable without root
	} else if err != nil {
		return iptables.Ruleset{}, err
	}
	return nf, nil
}

// isPermissionDenied reports whether a netfilter tool failed for lack of privilege, which
// iptables and nft only say in their output.
func isPermissionDenied(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "Permission denied") || strings.Contains(msg, "Operation not permitted") || strings.Contains(msg, "you must be root")
}

// readIPTables reads the backend of the iptables command and the tables of both families.
// Where iptables-legacy-save and iptables-nft-save both exist, both backends are read (the
// kernel runs both, and software that brings its own iptables often writes into the one the
// iptables command does not show), each table labelled with its backend; elsewhere (iptables
// before 1.8, CentOS 7) iptables-save is the only backend there is.
// nftRead says whether the nf_tables backend was read, so that iptables-nft's own tables are
// not reported as foreign nftables tables.
func readIPTables(ctx context.Context, r Runner) (nf iptables.Ruleset, nftRead bool, err error) {
	ver, err := r.Run(ctx, nil, "iptables", "-V")
	if err != nil {
		return nf, false, fmt.Errorf("finding the iptables backend: %w", err)
	}
	if nf.Backend, err = iptablesBackend(ver); err != nil {
		return nf, false, err
	}
	nftRead = nf.Backend == iptables.BackendNFT
	for _, f := range []inet.Family{inet.V4, inet.V6} {
		tables, hidden, both, err := readFamily(ctx, r, f, nf.Backend)
		if err != nil {
			return iptables.Ruleset{}, false, fmt.Errorf("reading %s netfilter rules: %w", f, err)
		}
		nftRead = nftRead || both
		nf.Tables = append(nf.Tables, tables...)
		nf.Hidden = append(nf.Hidden, hidden...)
	}
	return nf, nftRead, nil
}

// legacyWarning is what iptables-nft-save (and iptables-nft -L) write on standard error when
// the legacy backend holds tables too.
const legacyWarning = "iptables-legacy tables present"

// readFamily reads one family's tables from every backend it can. hidden says what is known
// to be there but could not be read.
func readFamily(ctx context.Context, r Runner, f inet.Family, backend string) (tables []iptables.Table, hidden []string, both bool, err error) {
	cmd := iptables.Command(f)
	save := func(tool, label string) (bool, string, error) {
		out, stderr, err := runDiag(ctx, r, tool, "-c")
		if errors.Is(err, ErrToolMissing) && tool != cmd+"-save" {
			return false, "", nil
		}
		if err != nil {
			return false, "", err
		}
		ts, err := iptables.ParseSave(f, out)
		if err != nil {
			return false, "", err
		}
		for i := range ts {
			ts[i].Backend = label
		}
		tables = append(tables, ts...)
		// iptables-nft-save lists a table holding native nft base chains it cannot print
		// with a comment only ("# Table `filter' contains incompatible base-chains, use 'nft'
		// tool to list them."): those chains run all the same.
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "# Table") && strings.Contains(line, "incompatible") {
				hidden = append(hidden, fmt.Sprintf("%s: %s", tool, strings.TrimSpace(strings.TrimPrefix(line, "#"))))
			}
		}
		return true, string(stderr), nil
	}
	haveLegacy, _, err := save(cmd+"-legacy-save", iptables.BackendLegacy)
	if err != nil {
		return nil, nil, false, err
	}
	haveNFT, warn, err := save(cmd+"-nft-save", iptables.BackendNFT)
	if err != nil {
		return nil, nil, false, err
	}
	switch {
	case haveLegacy && haveNFT:
		return tables, hidden, true, nil
	}
	// One backend's tool at most: the iptables command's own save tool is the authority (its
	// backend is the one -V named; before 1.8 there is only legacy). Its tables are left
	// unlabelled: they are the Ruleset's Backend, and plain iptables is the way to them.
	nftWarn := ""
	if haveNFT && strings.Contains(warn, legacyWarning) {
		nftWarn = cmd + "-nft-save"
	}
	tables, hidden = nil, nil
	if _, warn, err = save(cmd+"-save", ""); err != nil {
		return nil, nil, false, err
	}
	if nftWarn == "" && backend == iptables.BackendNFT && strings.Contains(warn, legacyWarning) {
		nftWarn = cmd + "-save"
	}
	if nftWarn != "" {
		// The nf_tables tool knows the legacy backend holds tables, but there is no tool
		// here to read them: the rules run all the same, and a trace must say it may miss
		// them.
		hidden = append(hidden, fmt.Sprintf("%s warns %q, but %s-legacy-save is not installed: the legacy backend's %s rules are not modelled", nftWarn, "iptables-legacy tables present", cmd, f))
	}
	return tables, hidden, false, nil
}

// DiagRunner is a Runner that also returns what a successful tool wrote on standard error,
// where iptables-nft-save warns about legacy tables and old iptables-restore prints its usage.
type DiagRunner interface {
	RunDiag(ctx context.Context, stdin []byte, name string, args ...string) (stdout, stderr []byte, err error)
}

// runDiag runs a tool through r, with its standard error when r can give it.
func runDiag(ctx context.Context, r Runner, name string, args ...string) ([]byte, []byte, error) {
	if d, ok := r.(DiagRunner); ok {
		return d.RunDiag(ctx, nil, name, args...)
	}
	out, err := r.Run(ctx, nil, name, args...)
	return out, nil, err
}

// iptablesBackend reads `iptables -V`: "iptables v1.8.9 (nf_tables)" or "(legacy)"; versions
// before 1.8 have only the legacy backend and print no suffix.
func iptablesBackend(version []byte) (string, error) {
	v := strings.TrimSpace(string(version))
	switch {
	case strings.HasSuffix(v, "(nf_tables)"):
		return "nf_tables", nil
	case strings.HasSuffix(v, "(legacy)"), strings.HasPrefix(v, "iptables v1.") && !strings.Contains(v, "("):
		return "legacy", nil
	}
	return "", fmt.Errorf("cannot tell the iptables backend from `iptables -V` output %q: want \"iptables vX.Y.Z (legacy)\" or \"(nf_tables)\"", v)
}

// iptablesNFTTables are the tables iptables-nft creates in the ip and ip6 families;
// iptables-nft-save shows their rules.
var iptablesNFTTables = map[string]bool{"filter": true, "nat": true, "mangle": true, "raw": true, "security": true}

// foreignNFTables lists the nftables tables that iptables-save does not show, as "FAMILY NAME".
// When the nf_tables backend was read those are every table but iptables-nft's own; otherwise
// (the legacy backend only, or no iptables at all) every nftables table is foreign. Without nft there is nothing
// to list: a host without nft can still have nftables tables, but roundtrip cannot see them.
func foreignNFTables(ctx context.Context, r Runner, nftRead bool) ([]string, error) {
	out, err := r.Run(ctx, nil, "nft", "-j", "list", "tables")
	if errors.Is(err, ErrToolMissing) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing nftables tables: %w", err)
	}
	// nft -j prints {"nftables": [{"metainfo": {...}}, {"table": {"family": "ip", "name": "nat", "handle": 1}}, ...]}.
	var doc struct {
		Nftables []struct {
			Table *struct {
				Family string `json:"family"`
				Name   string `json:"name"`
			} `json:"table"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		// nft 1.0.6 and earlier cut their JSON short at a table flag they do not know (the
		// owner flag of roundtrip's own trace tables): the text listing still works.
		return foreignNFTablesText(ctx, r, nftRead, err)
	}
	var foreign []string
	for _, o := range doc.Nftables {
		t := o.Table
		if t == nil {
			continue
		}
		if nftRead && (t.Family == "ip" || t.Family == "ip6") && iptablesNFTTables[t.Name] || isTraceTable(t.Family, t.Name) {
			continue
		}
		foreign = append(foreign, t.Family+" "+t.Name)
	}
	return foreign, nil
}

// isTraceTable says whether a table is one of roundtrip's own temporary trace tables
// (engine/kernel/nftrace): it only marks packets for tracing and decides nothing.
func isTraceTable(family, name string) bool {
	return family == "inet" && strings.HasPrefix(name, "roundtrip_trace_")
}

// foreignNFTablesText is foreignNFTables from `nft list tables` ("table FAMILY NAME" lines),
// for when the JSON listing is unreadable (jsonErr).
func foreignNFTablesText(ctx context.Context, r Runner, nftRead bool, jsonErr error) ([]string, error) {
	out, err := r.Run(ctx, nil, "nft", "list", "tables")
	if err != nil {
		return nil, fmt.Errorf("listing nftables tables: reading `nft -j list tables` output: %w", jsonErr)
	}
	var foreign []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "table" {
			continue
		}
		if nftRead && (f[1] == "ip" || f[1] == "ip6") && iptablesNFTTables[f[2]] || isTraceTable(f[1], f[2]) {
			continue
		}
		foreign = append(foreign, f[1]+" "+f[2])
	}
	return foreign, nil
}
