package cli

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"roundtrip/engine/finding"
)

func testFactory() (*Factory, *bytes.Buffer) {
	var errb bytes.Buffer
	return &Factory{Ctx: context.Background(), Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &errb}, &errb
}

// TestNewCmdParsesIntoFreshOptions runs trace's command line with its run replaced (runF):
// flags after the arguments, the shared --json and --snapshot, "--" ending the flags; and a
// second run of a new command starts from fresh options, not the first run's.
func TestNewCmdParsesIntoFreshOptions(t *testing.T) {
	f, errb := testFactory()
	var got []TraceOptions
	runF := func(o *TraceOptions) error { got = append(got, *o); return nil }
	args := []string{"tcp", "10.0.0.1:1", "--iif", "eth0", "10.0.0.2:80", "--json", "--mark", "0x2", "--snapshot", "s.json", "--", "--x"}
	if code := run(f, nil, NewCmdTrace(f, runF), args); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb)
	}
	if code := run(f, nil, NewCmdTrace(f, runF), []string{"udp", "10.0.0.1", "10.0.0.2"}); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb)
	}
	if len(got) != 2 {
		t.Fatalf("runF ran %d times", len(got))
	}
	a, b := got[0], got[1]
	if a.iif != "eth0" || a.mark != "0x2" || !a.JSON || a.Snapshot != "s.json" || !slices.Equal(a.Args, []string{"tcp", "10.0.0.1:1", "10.0.0.2:80", "--x"}) {
		t.Errorf("first run parsed %+v, args %q", a, a.Args)
	}
	if b.iif != "" || b.mark != "" || b.JSON || b.Snapshot != "" || len(b.Args) != 3 {
		t.Errorf("second run kept the first's options: %+v", b)
	}
}

// TestWizardSubcommandOptions runs a wizard with its run replaced: the shared flags are the
// ones every command has, declared once, and the wizard's own fill its values.
func TestWizardSubcommandOptions(t *testing.T) {
	f, errb := testFactory()
	var got *WizardOptions
	c := NewCmdWizard(f, func(o *WizardOptions) error { got = o; return nil })
	args := []string{"--listen", "80", "--netns", "lab1", "--to", "10.1.0.80:80", "--json", "--apply", "--hairpin"}
	if code := run(f, c, c.sub([]string{finding.WizardPortForward}), args); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb)
	}
	if got.NetNS != "lab1" || !got.JSON || !got.apply || got.Values.Get("listen") != "80" || !got.Values.On("hairpin") || got.Values.Get("snat") != "auto" {
		t.Errorf("parsed %+v, values listen %q hairpin %v snat %q", got, got.Values.Get("listen"), got.Values.On("hairpin"), got.Values.Get("snat"))
	}
	// The wizard's own shared flag words: --json says what the JSON holds.
	var help strings.Builder
	printHelp(&help, nil, c)
	if !strings.Contains(help.String(), "--json") || !strings.Contains(help.String(), "port-forward") {
		t.Errorf("wizard --help:\n%s", help.String())
	}
}

// TestHelpFromTheCommandTable: `help NAME` shows what `NAME --help` shows (the shared flags
// included), `help wizard NAME` the wizard's own help, and a one-letter flag as -o.
func TestHelpFromTheCommandTable(t *testing.T) {
	for _, name := range []string{"trace", "snapshot", "conntrack"} {
		_, viaHelp, _ := runCLI(t, "help", name)
		_, viaFlag, _ := runCLI(t, name, "--help")
		if viaHelp != viaFlag || !strings.Contains(viaHelp, "--netns NAME") {
			t.Errorf("help %s differs from %s --help or lacks --netns:\n%s\n---\n%s", name, name, viaHelp, viaFlag)
		}
	}
	if _, out, _ := runCLI(t, "help", "snapshot"); !strings.Contains(out, "\n  -o FILE") {
		t.Errorf("help snapshot does not show -o:\n%s", out)
	}
	code, out, _ := runCLI(t, "help", "wizard", "tunnel")
	if code != ExitOK || !strings.HasPrefix(out, "usage: roundtrip wizard tunnel --type") || !strings.Contains(out, "--uplink-only") {
		t.Errorf("help wizard tunnel: exit %d\n%s", code, out)
	}
}
