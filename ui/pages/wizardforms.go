package pages

import (
	"errors"
	"fmt"
	"strings"

	"roundtrip/ui/common"
	"roundtrip/ui/components"
	"roundtrip/wizards"
)

// This file builds each wizard's form from the wizard's one description of its fields
// (wizards.Spec, which the command line's flags are declared from too): the fields are named
// like the flags, so that a finding's fix (`--uplink eth0:10.0.0.1`) fills the form, in the
// order the flags are documented, with the same defaults and syntax checks; the form's values
// become the wizard's options through the same Build. Fields check their syntax as they are
// typed; the wizard's own Validate checks them against the host.

var yesNo = []string{"no", "yes"}

// wizardSpec is one wizard's form.
type wizardSpec struct {
	name    string
	summary string
	spec    *wizards.Spec
}

// fields returns the form's fields: every field of the wizard but those of the command line
// only.
func (s wizardSpec) fields(st *common.Styles) []*components.Field {
	var out []*components.Field
	for i := range s.spec.Fields {
		f := &s.spec.Fields[i]
		if f.CLIOnly {
			continue
		}
		hint := f.Hint
		if hint == "" {
			hint = f.Help
		}
		switch f.Kind {
		case wizards.Bool:
			out = append(out, components.NewChoice(f.Name, f.Label, yesNo, "no", hint))
		case wizards.Choice:
			choices := f.Choices
			if f.Default == "" {
				// No default: the form starts with no choice made, and asks for one.
				choices = append([]string{""}, choices...)
			}
			fl := components.NewChoice(f.Name, f.Label, choices, f.Default, hint)
			fl.Validate = one(f)
			fl.SetValue(f.Default)
			out = append(out, fl)
		case wizards.List:
			out = append(out, components.NewText(st, f.Name, f.Label, f.Default, hint, listOf(f)))
		default:
			out = append(out, components.NewText(st, f.Name, f.Label, f.Default, hint, one(f)))
		}
	}
	return out
}

// build turns the form into the wizard's options, as the command line turns its flags.
func (s wizardSpec) build(form *components.Form) (wizards.Wizard, error) {
	v := s.spec.NewValues()
	for _, fl := range form.Fields {
		f := s.spec.Field(fl.Key)
		val := fl.Value()
		if f == nil || val == "" {
			continue
		}
		vals := []string{val}
		if f.Kind == wizards.List {
			vals = strings.Fields(val)
		}
		for _, x := range vals {
			if err := v.Add(f.Name, x); err != nil {
				return nil, err
			}
		}
	}
	return s.spec.Build(v)
}

// specs are the wizards in the order of the field cases they fix (wizards.Names).
var specs = func() []wizardSpec {
	var out []wizardSpec
	for _, s := range wizards.Specs() {
		out = append(out, wizardSpec{name: s.Name, summary: s.Summary, spec: s})
	}
	return out
}()

// WizardFields returns the flags a wizard's form asks for, in the form's order (nil for an
// unknown wizard).
func WizardFields(name string) []string {
	i := specByName(name)
	if i < 0 {
		return nil
	}
	var out []string
	for _, f := range specs[i].fields(common.NewStyles(common.ModePlain)) {
		out = append(out, f.Key)
	}
	return out
}

// WizardForm returns a new form of a wizard, as the console shows it before anything is typed
// (nil for an unknown wizard).
func WizardForm(name string) *components.Form {
	i := specByName(name)
	if i < 0 {
		return nil
	}
	st := common.NewStyles(common.ModePlain)
	return components.NewForm(st, specs[i].fields(st)...)
}

func specByName(name string) int {
	for i, s := range specs {
		if s.name == name {
			return i
		}
	}
	return -1
}

// fill sets a form from a wizard's flags: `--flag value`, `--flag=value`, and bare boolean
// flags for yes/no fields; a repeated flag collects its values. Unknown flags are an error.
func fill(spec wizardSpec, f *components.Form, args []string) error {
	collected := map[string][]string{}
	var order []string
	var errs []error
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			errs = append(errs, fmt.Errorf("unexpected argument %q", a))
			continue
		}
		name, value, hasValue := strings.Cut(name, "=")
		fl := f.Field(name)
		if d := spec.spec.Field(name); fl != nil && d != nil && d.Kind == wizards.Bool && !hasValue {
			value, hasValue = "yes", true
		}
		if !hasValue {
			if i+1 >= len(args) {
				errs = append(errs, fmt.Errorf("--%s needs a value", name))
				continue
			}
			i++
			value = args[i]
		}
		if fl == nil {
			errs = append(errs, fmt.Errorf("the %s wizard has no option --%s", spec.name, name))
			continue
		}
		if _, seen := collected[name]; !seen {
			order = append(order, name)
		}
		collected[name] = append(collected[name], value)
	}
	for _, k := range order {
		f.Field(k).SetValue(strings.Join(collected[k], " "))
	}
	return errors.Join(errs...)
}

// one validates a field of one value: empty is "required" or fine.
func one(f *wizards.Field) func(string) error {
	return func(v string) error {
		if v == "" {
			if f.Required {
				return errors.New("required")
			}
			return nil
		}
		return f.Validate(v)
	}
}

// listOf validates a space-separated list, each item by the field.
func listOf(f *wizards.Field) func(string) error {
	return func(v string) error {
		items := strings.Fields(v)
		if len(items) == 0 && f.Required {
			return errors.New("required")
		}
		for _, it := range items {
			if err := f.Validate(it); err != nil {
				return err
			}
		}
		return nil
	}
}
