package engine

// Finding severities. An error is a cause that breaks a flow; a warning is a likely cause that
// the model cannot prove (it cannot see the far side); info explains an assumption.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
	SeverityInfo    = "info"
)

// Wizards a fix can name (wizards/ implements them).
const (
	WizardSourceReturn = "source-return"
	WizardPortForward  = "port-forward"
	WizardSNATGateway  = "snat-gateway"
	WizardMultiWAN     = "multi-wan"
	WizardTunnel       = "tunnel"
)

// Finding is one problem found by trace or doctor, with the evidence that shows it and the way
// to fix it. Its JSON form is stable: the ui and diagnose build on it.
type Finding struct {
	ID       string   `json:"id"`
	Severity string   `json:"severity"`
	Summary  string   `json:"summary"`
	Evidence []string `json:"evidence"`
	Fix      Fix      `json:"fix"`
}

// Fix says how to repair a finding: in words, and as the wizard (with flags) that does it.
type Fix struct {
	Summary string   `json:"summary"`
	Wizard  string   `json:"wizard"`
	Args    []string `json:"args"`
}

// CountErrors returns how many findings have severity error.
func CountErrors(fs []Finding) int {
	n := 0
	for _, f := range fs {
		if f.Severity == SeverityError {
			n++
		}
	}
	return n
}
