package kernel

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/plan"
)

// ErrRestoreTool is wrapped by the errors that say the installed iptables-restore cannot do
// what roundtrip needs (missing, too old, another backend's): nothing was run.
var ErrRestoreTool = errors.New("iptables-restore unusable")

// RestoreCaps is what an installed iptables-restore accepts. Old userlands differ: -w (wait
// for the xtables lock) came in 1.6.2, so CentOS 7's 1.4.21 refuses it; --noflush and --test
// are older than anything still shipped, -c (counters) older still. roundtrip asks the tool
// (its usage text) instead of assuming.
type RestoreCaps struct {
	Tool    string
	Version string // "1.8.9 (nf_tables)", or "" when the tool does not say
	Wait    bool   // -w / --wait
	NoFlush bool   // -n / --noflush
	Test    bool   // -t / --test
	// Counters is -c / --counters: roundtrip does not use it (its chains start at zero), but
	// reports it with the rest.
	Counters bool
}

var restoreVersionRE = regexp.MustCompile(`v(\d+\.\d+(?:\.\d+)?)\s*(\([a-z_]+\))?`)

// ProbeRestore asks an iptables-restore what it accepts: `TOOL --help` prints the usage (on
// standard error, and with exit status 1, in old versions: both are read), `TOOL --version`
// the version where it knows the option. A missing tool is an error wrapping ErrToolMissing.
func ProbeRestore(ctx context.Context, r Runner, tool string) (RestoreCaps, error) {
	caps := RestoreCaps{Tool: tool}
	out, stderr, err := runDiag(ctx, r, tool, "--help")
	if errors.Is(err, ErrToolMissing) {
		return caps, err
	}
	usage := string(out) + "\n" + string(stderr)
	if err != nil {
		// The usage is in the error's text (ExecRunner carries both outputs).
		usage += "\n" + err.Error()
	}
	has := func(long, short string) bool {
		return strings.Contains(usage, "--"+long) || strings.Contains(usage, "[-"+short+" ") || strings.Contains(usage, "[-"+short+"]")
	}
	caps.Wait = has("wait", "w")
	caps.NoFlush = has("noflush", "n")
	caps.Test = has("test", "t")
	caps.Counters = has("counters", "c")
	if !caps.NoFlush && !caps.Test && !strings.Contains(usage, "Usage") {
		return caps, fmt.Errorf("asking %s what it accepts: `%s --help` printed no usage: %s", tool, tool, strings.TrimSpace(usage))
	}
	if v, err := r.Run(ctx, nil, tool, "--version"); err == nil {
		if m := restoreVersionRE.FindStringSubmatch(string(v)); m != nil {
			caps.Version = strings.TrimSpace(m[1] + " " + m[2])
		}
	}
	return caps, nil
}

// Args are the options roundtrip runs the tool with: --noflush (roundtrip's transaction must
// leave every other chain alone), -w when the tool has it, --test to only check. A tool that
// lacks what cannot be done without is an error saying so.
func (c RestoreCaps) Args(test bool) ([]string, error) {
	name := c.Tool
	if c.Version != "" {
		name += " " + c.Version
	}
	if !c.NoFlush {
		return nil, fmt.Errorf("%w: %s does not accept --noflush: roundtrip cannot change its own chains without replacing every table; upgrade iptables", ErrRestoreTool, name)
	}
	var args []string
	if test {
		if !c.Test {
			return nil, fmt.Errorf("%w: %s does not accept --test: the plan's rules cannot be checked before they are applied; upgrade iptables", ErrRestoreTool, name)
		}
		args = append(args, "--test")
	}
	args = append(args, "--noflush")
	if c.Wait {
		// Without -w (before iptables 1.6.2) the tool does not wait for the xtables lock: a
		// concurrent iptables command makes it fail, and the apply then undoes what it did.
		args = append(args, "-w")
	}
	return args, nil
}

// pickRestore chooses the iptables-restore of a family and backend and probes it once (caps
// caches by tool): the backend's own tool (iptables-legacy-restore, iptables-nft-restore)
// where it is installed; without it (iptables before 1.8, where legacy is all there is),
// plain iptables-restore when that writes into the backend asked for. Never another backend.
func pickRestore(ctx context.Context, r Runner, caps map[string]RestoreCaps, f inet.Family, backend string) (string, RestoreCaps, error) {
	probe := func(tool string) (RestoreCaps, error) {
		if c, ok := caps[tool]; ok {
			return c, nil
		}
		c, err := ProbeRestore(ctx, r, tool)
		if err == nil {
			caps[tool] = c
		}
		return c, err
	}
	plain := plan.RestoreTool(f, "")
	if backend == "" {
		c, err := probe(plain)
		return plain, c, err
	}
	own := plan.RestoreTool(f, backend)
	c, err := probe(own)
	if err == nil {
		return own, c, nil
	}
	if !errors.Is(err, ErrToolMissing) {
		return "", c, err
	}
	// Which backend does plain iptables write into? The -V of its restore tool says
	// "(legacy)", "(nf_tables)", or, before 1.8, nothing (legacy).
	pc, perr := probe(plain)
	if perr != nil {
		return "", pc, perr
	}
	plainBackend := iptables.BackendLegacy
	if strings.Contains(pc.Version, "nf_tables") {
		plainBackend = iptables.BackendNFT
	}
	if plainBackend != backend {
		return "", pc, fmt.Errorf("%w: the plan writes into the %s iptables backend, but %s is not installed and %s writes into %s: install %s or plan for the %s backend (--iptables-backend)", ErrRestoreTool, backend, own, plain, plainBackend, own, plainBackend)
	}
	return plain, pc, nil
}
