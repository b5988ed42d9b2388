package cli

import (
	"flag"
	"io"
	"strings"
	"testing"

	"roundtrip/engine/finding"
	"roundtrip/ui/pages"
	"roundtrip/wizards"
)

// goodValues are a valid value of every wizard field, for checking that the command line and
// the console accept the same values.
var goodValues = map[string]string{
	"uplink": "eth0:192.0.2.1", "mode": "connmark", "gateway": "192.0.2.1",
	"wan": "eth1:203.0.113.1:isp_a", "lan": "eth0", "default": "isp_a", "route-list": "isp_a=/etc/isp_a.txt",
	"snat": "true", "connmark": "true",
	"type": "gre", "local": "10.0.2.201", "remote": "10.0.3.29", "address": "10.255.0.1/30", "route": "61.135.169.121/32",
	"uplink-only": "true", "peer-address": "10.255.0.2", "peer-route": "10.0.9.0/24", "name": "tun9", "vni": "7", "port": "4790",
	"from": "10.0.43.0/24", "to": "10.0.44.0/24", "out": "eth0", "in": "eth1", "to-source": "10.0.44.1",
	"listen": "192.168.1.34:81", "proto": "udp", "hairpin": "true",
	"port-forward to": "192.168.1.32:80", "port-forward snat": "none", "port-forward in": "eth2",
}

// badValues are values some fields refuse; a field refuses one on the command line exactly
// when its form field does.
var badValues = []string{"x/y!", "300.1.1.1", "10.0.0.1/33", "70000", "eth0:not-an-address", "vxlan6", "=", "maybe"}

// TestWizardFlagsAndFormsAgree builds each wizard's flags and its console form from the one
// description in wizards and compares them: the same names (the form in the documented order,
// without the command-line-only --gateway), the same defaults, the same values accepted and
// refused, the same fields required.
func TestWizardFlagsAndFormsAgree(t *testing.T) {
	for _, s := range wizards.Specs() {
		fs := flag.NewFlagSet(s.Name, flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		bindFields(fs, s, s.NewValues())
		form := pages.WizardForm(s.Name)
		if form == nil {
			t.Fatalf("the console has no form for %s", s.Name)
		}
		var want []string
		for _, f := range s.Fields {
			if !f.CLIOnly {
				want = append(want, f.Name)
			}
		}
		var got []string
		for _, fl := range form.Fields {
			got = append(got, fl.Key)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: the form asks for %v, the description has %v", s.Name, got, want)
		}
		var help strings.Builder
		printWizardHelp(&help, s)
		for _, f := range s.Fields {
			fl := fs.Lookup(f.Name)
			if fl == nil {
				t.Errorf("%s: no flag --%s", s.Name, f.Name)
				continue
			}
			if !strings.Contains(help.String(), "  --"+f.Name) {
				t.Errorf("%s --help does not show --%s", s.Name, f.Name)
			}
			good, ok := goodValues[s.Name+" "+f.Name]
			if !ok {
				good, ok = goodValues[f.Name]
			}
			if !ok {
				t.Errorf("%s: no good value for --%s in the test", s.Name, f.Name)
			}
			// A flag's values are checked as they are given: each on a fresh set.
			set := func(v string) error {
				fs := flag.NewFlagSet(s.Name, flag.ContinueOnError)
				bindFields(fs, s, s.NewValues())
				return fs.Lookup(f.Name).Value.Set(v)
			}
			if err := set(good); err != nil {
				t.Errorf("%s --%s %s: %v", s.Name, f.Name, good, err)
			}
			if f.CLIOnly {
				continue
			}
			ff := form.Field(f.Name)
			// Defaults: a Bool is off ("false" as a flag, "no" in a form), the rest alike.
			def, formDef := fl.DefValue, ff.Value()
			if f.Kind == wizards.Bool {
				def = map[string]string{"false": "no", "true": "yes"}[def]
			}
			if def != formDef {
				t.Errorf("%s --%s: default %q on the command line, %q in the form", s.Name, f.Name, fl.DefValue, formDef)
			}
			if f.Kind == wizards.Bool {
				continue // a choice of yes/no in the form: nothing to type wrong
			}
			if f.Kind == wizards.Choice {
				ff.SetValue(good)
				if ff.Value() != good || ff.Err != nil {
					t.Errorf("%s: the form cannot choose %s %q (%v)", s.Name, f.Name, good, ff.Err)
				}
			} else {
				ff.SetValue(good)
				if ff.Err != nil {
					t.Errorf("%s: the form refuses %s %q: %v", s.Name, f.Name, good, ff.Err)
				}
				for _, bad := range badValues {
					ff.SetValue(bad)
					cliErr, formErr := set(bad), ff.Err
					if (cliErr == nil) != (formErr == nil) {
						t.Errorf("%s --%s %q: command line says %v, form says %v", s.Name, f.Name, bad, cliErr, formErr)
					}
				}
			}
			// Required: the form says so of an empty field, the help says so of the flag.
			ff.SetValue("")
			formRequired := ff.Err != nil && ff.Err.Error() == "required"
			if f.Kind == wizards.Choice && !f.Required {
				formRequired = false // a choice with a default is never empty
			}
			if formRequired != f.Required || strings.Contains(flagHelpLine(help.String(), f.Name), "(required)") != f.Required {
				t.Errorf("%s --%s: required %v, the form says %v, the help line %q", s.Name, f.Name, f.Required, formRequired, flagHelpLine(help.String(), f.Name))
			}
		}
	}
	// The defaults that had drifted apart (issue 16): multi-wan's SNAT is off unless asked for
	// in both; the tunnel type has no default in either.
	mw := pages.WizardForm(finding.WizardMultiWAN)
	if mw.Get("snat") != "no" {
		t.Errorf("the multi-wan form's SNAT starts at %q", mw.Get("snat"))
	}
	tun := pages.WizardForm(finding.WizardTunnel)
	if tun.Get("type") != "" || tun.Field("type").Err == nil {
		t.Errorf("the tunnel form starts with type %q (%v); the command line requires --type", tun.Get("type"), tun.Field("type").Err)
	}
}

// flagHelpLine returns the line of --help that documents --name.
func flagHelpLine(help, name string) string {
	_, flags, _ := strings.Cut(help, "\nFlags:\n")
	for _, l := range strings.Split(flags, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "--"+name {
			return l
		}
	}
	return ""
}
