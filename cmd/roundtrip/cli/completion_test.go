package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"roundtrip/engine/kernel"
	"roundtrip/wizards"
)

// TestCompletionBash generates the bash script, checks it with bash -n, checks that it names
// every command, wizard and a wizard's flags, and runs its completion function for a few
// command lines as bash would.
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	code, script, errOut := runCLI(t, "completion", "bash")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	file := filepath.Join(t.TempDir(), "roundtrip.bash")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bash, "-n", file).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	want := append([]string{"apply", "capture", "completion", "confirm", "conntrack", "diagnose", "doctor", "history", "plan",
		"rollback", "show", "snapshot", "trace", "tui", "watch", "wizard", "--peer-out", "--uplink-only", "--snapshot"}, wizards.Names...)
	for _, w := range want {
		if !strings.Contains(script, w) {
			t.Errorf("the bash script does not name %s", w)
		}
	}
	if strings.Contains(script, kernel.RevertTimerCommand) {
		t.Errorf("the bash script offers the internal %s", kernel.RevertTimerCommand)
	}
	for _, tt := range []struct {
		words []string
		want  string
	}{
		{[]string{"roundtrip", "wi"}, "wizard"},
		{[]string{"roundtrip", "wizard", ""}, strings.Join(wizards.Names, " ")},
		{[]string{"roundtrip", "wizard", "tunnel", "--ty"}, "--type"},
		{[]string{"roundtrip", "wizard", "tunnel", "--type", ""}, "ipip gre vxlan"},
		{[]string{"roundtrip", "wizard", "--netns", "x", "tu"}, "tunnel"},
		{[]string{"roundtrip", "trace", "tcp", "10.0.0.1", "10.0.0.2", "--ii"}, "--iif"},
		{[]string{"roundtrip", "trace", "--iif", "l"}, "lo"},
		{[]string{"roundtrip", "plan", "render", "p.json", "--format", "n"}, "nft networkd"},
		{[]string{"roundtrip", "completion", ""}, "bash zsh fish"},
	} {
		sh := "source " + file + "\nCOMP_WORDS=(" + quoteWords(tt.words) + ")\nCOMP_CWORD=" + strconv.Itoa(len(tt.words)-1) + "\n_roundtrip\necho \"${COMPREPLY[*]}\"\n"
		out, err := exec.Command(bash, "-c", sh).CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != tt.want {
			t.Errorf("completing %q: %q (%v), want %q", tt.words, got, err, tt.want)
		}
	}
}

// TestCompletionZshFish checks the zsh and fish scripts with their shells' syntax check,
// where the shells are installed, and that each names the commands and wizards.
func TestCompletionZshFish(t *testing.T) {
	for _, sh := range []string{"zsh", "fish"} {
		code, script, errOut := runCLI(t, "completion", sh)
		if code != ExitOK {
			t.Fatalf("%s: exit %d: %s", sh, code, errOut)
		}
		flags := []string{"--iif", "--type"}
		if sh == "fish" {
			flags = []string{"-l iif", "-l type"}
		}
		for _, w := range append(append([]string{"trace", "wizard"}, flags...), wizards.Names...) {
			if !strings.Contains(script, w) {
				t.Errorf("the %s script does not name %s", sh, w)
			}
		}
		path, err := exec.LookPath(sh)
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Errorf("%s is not installed: under CI its script's syntax must be checked (./test.sh installs it)", sh)
			} else {
				t.Logf("%s is not installed: its syntax is not checked", sh)
			}
			continue
		}
		file := filepath.Join(t.TempDir(), "roundtrip."+sh)
		if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(path, "-n", file).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", sh, err, out)
		}
	}
	if code, _, errOut := runCLI(t, "completion", "tcsh"); code != ExitUsage || !strings.Contains(errOut, `unknown shell "tcsh"`) {
		t.Errorf("completion tcsh: exit %d, %q", code, errOut)
	}
}

func quoteWords(ws []string) string {
	var out []string
	for _, w := range ws {
		out = append(out, "'"+w+"'")
	}
	return strings.Join(out, " ")
}
