package components

import (
	"slices"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"roundtrip/ui/common"
)

// Field is one line of a form: a text input, or a choice among fixed values. Validate runs on
// every change, so mistakes show as they are typed.
type Field struct {
	Key   string // the name the form's owner knows it by (a wizard flag)
	Label string
	Hint  string // shown while the field has the focus and is valid
	// Note follows the hint: what the host offers for the field ("here: eth0:10.0.0.1 ...").
	Note     string
	Choices  []string
	Validate func(string) error
	Err      error
	// Touched says the field was changed by hand: until then (or until the form is
	// submitted) a missing value is not shown as a mistake.
	Touched bool

	input  textinput.Model
	choice int
	// offers are whole list entries (an uplink with its gateway) that → completes the last
	// word typed to; see SetSuggestions.
	offers []string
}

func newInput(st *common.Styles) textinput.Model {
	in := textinput.New()
	in.Prompt = ""
	s := textinput.DefaultStyles(true)
	// A steady cursor: no blink timer, and the same frame every time it is drawn.
	s.Cursor.Blink = false
	plain := lipgloss.NewStyle()
	// The focused field's look is the text input's own style: styling its output again would
	// split the cursor's escape sequences (lipgloss underlines rune by rune) and print them.
	s.Focused.Text, s.Focused.Prompt, s.Blurred.Text, s.Blurred.Prompt = st.Input, plain, plain, plain
	s.Focused.Placeholder, s.Blurred.Placeholder = st.Dim, st.Dim
	s.Focused.Suggestion, s.Blurred.Suggestion = st.Dim, st.Dim
	if st.Mode != common.ModeColor {
		s.Cursor.Color = nil
	}
	in.SetStyles(s)
	// The form takes a suggestion itself (→ at the end of the field): tab moves between fields.
	in.KeyMap.AcceptSuggestion = key.NewBinding(key.WithDisabled())
	return in
}

// NewText returns a text field.
func NewText(st *common.Styles, key, label, value, hint string, validate func(string) error) *Field {
	f := &Field{Key: key, Label: label, Hint: hint, Validate: validate, input: newInput(st)}
	f.SetValue(value)
	return f
}

// NewChoice returns a field that cycles through choices with ←/→ or space.
func NewChoice(key, label string, choices []string, value, hint string) *Field {
	f := &Field{Key: key, Label: label, Hint: hint, Choices: choices}
	f.SetValue(value)
	return f
}

// Value is the field's current text or choice.
func (f *Field) Value() string {
	if f.Choices != nil {
		if len(f.Choices) == 0 {
			return ""
		}
		return f.Choices[f.choice]
	}
	return strings.TrimSpace(f.input.Value())
}

// SetValue sets the field and validates it.
func (f *Field) SetValue(v string) {
	if f.Choices != nil {
		if i := slices.Index(f.Choices, v); i >= 0 {
			f.choice = i
		}
	} else {
		f.input.SetValue(v)
		f.input.CursorEnd()
		f.suggest()
	}
	f.check()
}

// SetSuggestions offers entries of a space-separated list (the host's uplinks with their
// gateways): the one that completes the last word typed is shown after the cursor, dimmed,
// and → at the end of the field takes it (in an empty field, the first entry).
func (f *Field) SetSuggestions(entries []string) {
	f.offers = entries
	f.input.ShowSuggestions = len(entries) > 0
	f.suggest()
}

// Suggestions returns the entries offered.
func (f *Field) Suggestions() []string { return f.offers }

// suggest gives the text input the whole values the offers make of what is typed: the words
// before the last one, then an entry not typed yet.
func (f *Field) suggest() {
	if f.Choices != nil || len(f.offers) == 0 {
		return
	}
	v := f.input.Value()
	head := v[:strings.LastIndex(v, " ")+1]
	have := strings.Fields(head)
	var out []string
	for _, e := range f.offers {
		if !slices.Contains(have, e) {
			out = append(out, head+e)
		}
	}
	f.input.SetSuggestions(out)
}

// complete takes the suggestion shown (or, in an empty field, the first entry offered); it
// reports whether the value changed.
func (f *Field) complete() bool {
	v := f.input.Value()
	if f.Choices != nil || len(f.offers) == 0 || f.input.Position() != len([]rune(v)) {
		return false
	}
	next := ""
	if strings.TrimSpace(v) == "" {
		next = f.offers[0]
	} else if m := f.input.MatchedSuggestions(); len(m) > 0 {
		next = m[f.input.CurrentSuggestionIndex()]
	}
	if next == "" || next == v {
		return false
	}
	f.SetValue(next)
	return true
}

// SetPlaceholder shows an example in an empty field.
func (f *Field) SetPlaceholder(p string) { f.input.Placeholder = "e.g. " + p }

func (f *Field) check() {
	f.Err = nil
	if f.Validate != nil {
		f.Err = f.Validate(f.Value())
	}
}

// Form is a column of fields with one focused at a time.
type Form struct {
	Fields []*Field
	Focus  int
	// Active says the form has the keyboard: keys go to the focused field.
	Active bool
	// Submitted shows every field's mistakes, touched or not.
	Submitted bool
	styles    *common.Styles
}

// NewForm returns a form of fields.
func NewForm(st *common.Styles, fields ...*Field) *Form {
	f := &Form{Fields: fields, styles: st}
	f.focusField(0)
	return f
}

// Field returns the field with that key, or nil.
func (f *Form) Field(key string) *Field {
	for _, fl := range f.Fields {
		if fl.Key == key {
			return fl
		}
	}
	return nil
}

// Get returns the value of the field with that key ("" when there is none).
func (f *Form) Get(key string) string {
	if fl := f.Field(key); fl != nil {
		return fl.Value()
	}
	return ""
}

// Valid reports whether every field passes its validation.
func (f *Form) Valid() bool {
	for _, fl := range f.Fields {
		if fl.Err != nil {
			return false
		}
	}
	return true
}

// Current returns the focused field.
func (f *Form) Current() *Field {
	if f.Focus < 0 || f.Focus >= len(f.Fields) {
		return nil
	}
	return f.Fields[f.Focus]
}

func (f *Form) focusField(i int) {
	if len(f.Fields) == 0 {
		return
	}
	i = (i + len(f.Fields)) % len(f.Fields)
	for k, fl := range f.Fields {
		if fl.Choices == nil {
			if k == i {
				fl.input.Focus()
			} else {
				fl.input.Blur()
			}
		}
	}
	f.Focus = i
}

// FocusKey moves the focus to the field with that key.
func (f *Form) FocusKey(key string) {
	for i, fl := range f.Fields {
		if fl.Key == key {
			f.focusField(i)
		}
	}
}

// Next moves the focus to the next field, wrapping around.
func (f *Form) Next() { f.focusField(f.Focus + 1) }

// Prev moves the focus to the previous field.
func (f *Form) Prev() { f.focusField(f.Focus - 1) }

// Update handles a key for the focused field; changed reports that a value changed.
func (f *Form) Update(msg tea.Msg) (changed bool, cmd tea.Cmd) {
	fl := f.Current()
	if fl == nil {
		return false, nil
	}
	km, isKey := msg.(tea.KeyPressMsg)
	if isKey {
		switch km.String() {
		case "tab", "down":
			f.Next()
			return false, nil
		case "shift+tab", "up":
			f.Prev()
			return false, nil
		}
	}
	if fl.Choices != nil {
		if !isKey || len(fl.Choices) == 0 {
			return false, nil
		}
		switch km.String() {
		case "right", "space", "l":
			fl.choice = (fl.choice + 1) % len(fl.Choices)
		case "left", "h":
			fl.choice = (fl.choice - 1 + len(fl.Choices)) % len(fl.Choices)
		default:
			return false, nil
		}
		fl.check()
		fl.Touched = true
		return true, nil
	}
	if isKey && km.String() == "right" && fl.complete() {
		fl.Touched = true
		return true, nil
	}
	before := fl.input.Value()
	fl.input, cmd = fl.input.Update(msg)
	if fl.input.Value() != before {
		fl.suggest()
		fl.check()
		fl.Touched = true
		return true, cmd
	}
	return false, cmd
}

// shows reports whether a field's mistake is shown: once it was touched, has a value, or the
// form was submitted (an empty required field is not a mistake before that).
func (f *Form) shows(fl *Field) bool { return fl.Touched || f.Submitted || fl.Value() != "" }

// FocusNote returns the note of the focused field, wrapped to width: its mistake, or its
// hint; "" when the form does not have the keyboard.
func (f *Form) FocusNote(width int) string {
	fl := f.Current()
	if !f.Active || fl == nil {
		return ""
	}
	text, style := fl.Hint, f.styles.Dim
	if fl.Note != "" {
		text += "; " + fl.Note
	}
	if fl.Err != nil && f.shows(fl) {
		text, style = "✗ "+fl.Err.Error(), f.styles.Error
	}
	if text == "" {
		return ""
	}
	var lines []string
	for _, l := range Wrap(text, width-4, "  ") {
		lines = append(lines, "    "+style.Render(l))
	}
	return strings.Join(lines, "\n")
}

// View renders one line per field: label, value, and the field's error (or, when it has the
// focus, its hint).
func (f *Form) View(width int) string {
	st := f.styles
	lw := 0
	for _, fl := range f.Fields {
		lw = max(lw, len(fl.Label))
	}
	lw = min(lw, 22)
	vw := min(max(width-lw-4, 8), 34)
	var b strings.Builder
	for i, fl := range f.Fields {
		focused := f.Active && i == f.Focus
		marker := "  "
		if focused {
			marker = "▸ "
		}
		var val string
		if fl.Choices != nil {
			val = "‹ " + fl.Value() + " ›"
			val = Fit(val, vw)
			if focused {
				val = st.Input.Render(val)
			}
		} else {
			fl.input.SetWidth(vw - 1)
			if focused {
				val = Fit(fl.input.View(), vw)
			} else if fl.input.Value() == "" && fl.input.Placeholder != "" {
				val = st.Dim.Render(Fit(fl.input.Placeholder, vw))
			} else {
				val = Fit(fl.input.Value(), vw)
			}
		}
		// The focused field's note is shown in full under the form (FocusNote).
		note := ""
		if fl.Err != nil && !focused && f.shows(fl) {
			note = st.Error.Render("✗ " + fl.Err.Error())
		}
		line := marker + st.Label.Render(Fit(fl.Label, lw)) + " " + val + " " + note
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(Cut(line, width))
	}
	return b.String()
}
