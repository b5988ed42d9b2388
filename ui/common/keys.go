package common

import "charm.land/bubbles/v2/key"

// KeyMap holds the bindings shared by every page: the app's own and list navigation.
type KeyMap struct {
	Quit     key.Binding
	Help     key.Binding
	NextPage key.Binding
	PrevPage key.Binding
	Pages    key.Binding // 1-6, shown once in help
	Refresh  key.Binding
	Confirm  key.Binding // keep an apply that waits for confirmation
	Cancel   key.Binding // cancel a long operation, leave a field

	Up       key.Binding
	Down     key.Binding
	PageUp   key.Binding
	PageDown key.Binding
	Home     key.Binding
	End      key.Binding
	Left     key.Binding
	Right    key.Binding
	Enter    key.Binding
	Filter   key.Binding
}

// Keys are the bindings in use. Pages add their own next to them.
var Keys = KeyMap{
	Quit:     key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
	Help:     key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
	NextPage: key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "next page")),
	PrevPage: key.NewBinding(key.WithKeys("shift+tab"), key.WithHelp("shift+tab", "previous page")),
	Pages:    key.NewBinding(key.WithKeys("1", "2", "3", "4", "5", "6"), key.WithHelp("1-6", "go to page")),
	Refresh:  key.NewBinding(key.WithKeys("r", "f5"), key.WithHelp("r", "re-read state")),
	Confirm:  key.NewBinding(key.WithKeys("y"), key.WithHelp("y", "keep the changes (confirm)")),
	Cancel:   key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "cancel / back")),

	Up:       key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
	Down:     key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
	PageUp:   key.NewBinding(key.WithKeys("pgup", "ctrl+b"), key.WithHelp("pgup", "page up")),
	PageDown: key.NewBinding(key.WithKeys("pgdown", "ctrl+f", "space"), key.WithHelp("pgdn", "page down")),
	Home:     key.NewBinding(key.WithKeys("home", "g"), key.WithHelp("g/home", "first")),
	End:      key.NewBinding(key.WithKeys("end", "G"), key.WithHelp("G/end", "last")),
	Left:     key.NewBinding(key.WithKeys("left", "h"), key.WithHelp("←/h", "left")),
	Right:    key.NewBinding(key.WithKeys("right", "l"), key.WithHelp("→/l", "right")),
	Enter:    key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "select")),
	Filter:   key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter")),
}

// Bind is a short way to declare a page's binding.
func Bind(help, desc string, keys ...string) key.Binding {
	return key.NewBinding(key.WithKeys(keys...), key.WithHelp(help, desc))
}
