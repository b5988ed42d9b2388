package pages

import (
	"fmt"
	"regexp"
	"strings"

	"roundtrip/diagnose"
	"roundtrip/engine/finding"
	"roundtrip/engine/trace"
	"roundtrip/ui/common"
	"roundtrip/ui/components"
)

// fixPlan is a finding's fix as the wizard run it opens: the flags the finding gives, what it
// says its placeholders stand for, and the wizard's required fields that still have no value.
type fixPlan struct {
	Fix     finding.Fix
	Missing []string // "Out (the interface toward the far network)", the fix's own word first
	Err     error    // flags the wizard does not take
}

// planFix works out what a fix fills in and what it leaves to the operator.
func planFix(st *common.Styles, fix finding.Fix) fixPlan {
	fp := fixPlan{Fix: fix}
	if fix.Missing != "" {
		fp.Missing = append(fp.Missing, fix.Missing)
	}
	i := specByName(fix.Wizard)
	if i < 0 {
		return fp
	}
	form := components.NewForm(st, specs[i].fields(st)...)
	fp.Err = fill(specs[i], form, withoutPlaceholders(fix.Args))
	fp.Missing = append(fp.Missing, missingFields(form)...)
	return fp
}

// withoutPlaceholders drops what a fix could not know from its flags: "eth1:<GATEWAY>" becomes
// "eth1" (the form completes it when the console finds the gateway), and a flag whose whole
// value is a placeholder goes.
func withoutPlaceholders(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !finding.HasPlaceholder(a) {
			out = append(out, a)
			continue
		}
		a = strings.TrimRight(placeholder.ReplaceAllString(a, ""), ":")
		switch {
		case a != "":
			out = append(out, a)
		case len(out) > 0 && strings.HasPrefix(out[len(out)-1], "--"):
			out = out[:len(out)-1] // the flag of a value that is all placeholder
		}
	}
	return out
}

// placeholder is finding.Placeholder's form: <WHAT>.
var placeholder = regexp.MustCompile(`<[^<>]*>`)

// missingFields names the fields that need a value and have none.
func missingFields(f *components.Form) []string {
	var out []string
	for _, fl := range f.Fields {
		if fl.Err != nil && fl.Value() == "" {
			out = append(out, fmt.Sprintf("%s (%s)", fl.Label, fl.Hint))
		}
	}
	return out
}

// Opens says in one line what w opens: "the source-return wizard: --uplink eth0:10.72.1.1",
// or for a fix that does not say everything "the snat-gateway wizard; still needed: Out (...)".
func (fp fixPlan) Opens() string {
	s := "the " + fp.Fix.Wizard + " wizard"
	if len(fp.Fix.Args) > 0 {
		s += ": " + strings.TrimPrefix(fp.Fix.Command(), "roundtrip wizard "+fp.Fix.Wizard+" ")
	}
	if len(fp.Missing) > 0 {
		s += "; still needed: " + strings.Join(fp.Missing, ", ")
	}
	return s
}

// liveFix completes the fix of a finding the capture made: the correlator knows the wizard but
// not its flags. The trace of the same flow knows them when it found the same problem;
// otherwise the finding's interfaces say what they can. The loopback interface is never an
// uplink.
func liveFix(f *diagnose.Finding, trace *trace.Result) finding.Fix {
	fix := f.Fix
	if fix.Wizard == "" || len(fix.Args) > 0 {
		return fix
	}
	if trace != nil {
		for _, tf := range trace.Findings {
			if tf.Fix.Wizard == fix.Wizard && len(tf.Fix.Args) > 0 {
				fix.Args = tf.Fix.Args
				return fix
			}
		}
	}
	usable := func(iface string) bool { return iface != "" && iface != "lo" }
	switch fix.Wizard {
	case finding.WizardSourceReturn:
		if usable(f.Ingress) {
			fix.Args = []string{"--uplink", f.Ingress}
		}
	case finding.WizardSNATGateway:
		if usable(f.Ingress) {
			fix.Args = append(fix.Args, "--in", f.Ingress)
		}
		if usable(f.Egress) && f.Egress != f.Ingress {
			fix.Args = append(fix.Args, "--out", f.Egress)
		}
	}
	return fix
}
