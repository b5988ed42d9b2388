package cli

import (
	"flag"
	"regexp"
	"slices"
	"testing"

	"roundtrip/ui/pages"
	"roundtrip/wizards"
)

// TestConsoleFormsFollowTheFlagOrder checks that each wizard's form in the console asks first
// for the flags its usage line documents, in that order (what an operator reads in
// `roundtrip wizard NAME --help` and the README), and asks only for flags the command has.
func TestConsoleFormsFollowTheFlagOrder(t *testing.T) {
	for _, s := range wizards.Specs() {
		fields := pages.WizardFields(s.Name)
		if fields == nil {
			t.Errorf("the console has no form for the %s wizard", s.Name)
			continue
		}
		var documented []string
		for _, m := range regexp.MustCompile(`--([a-z-]+)`).FindAllStringSubmatch(s.Usage, -1) {
			if !slices.Contains(documented, m[1]) {
				documented = append(documented, m[1])
			}
		}
		if len(fields) < len(documented) || !slices.Equal(fields[:len(documented)], documented) {
			t.Errorf("%s: the form asks for %v; the usage line documents %v first", s.Name, fields, documented)
		}
		fs := flag.NewFlagSet(s.Name, flag.ContinueOnError)
		bindFields(fs, s, s.NewValues())
		for _, f := range fields {
			if fs.Lookup(f) == nil {
				t.Errorf("%s: the form's field %q is no flag of the command", s.Name, f)
			}
		}
	}
}
