package cli

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"roundtrip/engine/finding"
	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// traceFindings runs trace --json in a namespace and returns its findings.
func traceFindings(t *testing.T, netns string, args ...string) []finding.Finding {
	t.Helper()
	code, out, errs := runCLI(t, append(append([]string{"trace"}, args...), "--json", "--netns", netns)...)
	if code != ExitOK && code != ExitFindings {
		t.Fatalf("trace %v: exit %d: %s", args, code, errs)
	}
	var res struct {
		Findings []finding.Finding `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("trace --json: %v\n%s", err, out)
	}
	return res.Findings
}

// applySuggestedFix runs the wizard a finding names, with exactly the flags it suggests, and
// applies the plan. The suggestion is what an operator copies from the output, so it must be a
// valid command line that fixes the problem, not a hint in roughly the right shape.
func applySuggestedFix(t *testing.T, netns string, f finding.Finding) {
	t.Helper()
	if f.Fix.Wizard == "" {
		t.Fatalf("finding %s suggests no wizard: %+v", f.ID, f.Fix)
	}
	t.Setenv("ROUNDTRIP_STATE_DIR", t.TempDir())
	args := append([]string{"wizard", f.Fix.Wizard}, f.Fix.Args...)
	plan := filepath.Join(t.TempDir(), "plan.json")
	if code, _, errs := runCLI(t, append(args, "--netns", netns, "-o", plan)...); code != ExitOK {
		t.Fatalf("suggested fix %v does not run: exit %d: %s", args, code, errs)
	}
	if code, _, errs := runCLI(t, "apply", plan, "--netns", netns); code != ExitOK {
		t.Fatalf("applying the suggested fix %v: exit %d: %s", args, code, errs)
	}
}

func findingByID(fs []finding.Finding, id string) *finding.Finding {
	for i := range fs {
		if fs[i].ID == id {
			return &fs[i]
		}
	}
	return nil
}

// TestPrivilegedSuggestedFixCase5 takes case 5's reply-bypasses-nat finding at its word: the
// port-forward command it prints, run as printed, makes the real client succeed.
func TestPrivilegedSuggestedFixCase5(t *testing.T) {
	c := lab.Case5(t)
	if _, err := c.Client.HTTPGet(c.Service, 1500*time.Millisecond); err == nil {
		t.Fatal("case 5 does not fail before the fix")
	}
	svc := netip.MustParseAddrPort(c.Service)
	fs := traceFindings(t, c.A.Name, "tcp", c.ClientAddr+":40000", svc.String(), "--iif", c.AIface)
	f := findingByID(fs, trace.FindingReplyBypassesNAT)
	if f == nil {
		t.Fatalf("no %s finding: %+v", trace.FindingReplyBypassesNAT, fs)
	}
	applySuggestedFix(t, c.A.Name, *f)
	if body, err := c.Client.HTTPGet(c.Service, 3*time.Second); err != nil || body != c.Body {
		t.Fatalf("after the suggested fix: %q, %v", body, err)
	}
	if fs := traceFindings(t, c.A.Name, "tcp", c.ClientAddr+":40000", svc.String(), "--iif", c.AIface); findingByID(fs, trace.FindingReplyBypassesNAT) != nil {
		t.Errorf("finding still reported after the fix: %+v", fs)
	}
}

// TestPrivilegedSuggestedFixCase1 does the same for case 1's asymmetric-return on the server.
func TestPrivilegedSuggestedFixCase1(t *testing.T) {
	c := lab.Case1(t)
	if _, err := c.Client.HTTPGet(c.Service, 1500*time.Millisecond); err == nil {
		t.Fatal("case 1 does not fail before the fix")
	}
	fs := traceFindings(t, c.Server.Name, "tcp", c.ClientAddr+":40000", c.ServerAddr, "--iif", c.ServerLAN)
	f := findingByID(fs, trace.FindingAsymmetricReturn)
	if f == nil {
		t.Fatalf("no %s finding: %+v", trace.FindingAsymmetricReturn, fs)
	}
	// Table names go to roundtrip's own rt_tables file: keep the test off the host's /etc.
	t.Setenv("ROUNDTRIP_IPROUTE2_DIR", t.TempDir())
	applySuggestedFix(t, c.Server.Name, *f)
	if body, err := c.Client.HTTPGet(c.Service, 3*time.Second); err != nil || body != c.Body {
		t.Fatalf("after the suggested fix: %q, %v", body, err)
	}
}
