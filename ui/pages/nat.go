package pages

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"roundtrip/engine"
	"roundtrip/ui/common"
	"roundtrip/ui/components"
)

// hookOrder is the order in which a packet meets the built-in chains.
var hookOrder = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// natTables are the iptables tables the page can show, NAT first.
var natTables = []string{"nat", "mangle", "filter", "raw"}

// NAT shows the netfilter rules of one table per hook, in the order a packet meets them,
// with user chains unfolded under the rule that jumps to them, roundtrip's own chains told
// apart from other tools', and the packet and byte counters.
type NAT struct {
	c     *common.Common
	state *engine.State
	table int
	rows  []natRow
	shown []int // rows that pass the filter
	list  *components.Table

	filter    *components.Form
	filtering bool
	listTop   int // the line of the list's header, as last drawn (for mouse clicks)

	keys struct{ Table, Filter key.Binding }
}

type natRow struct {
	header  bool
	chain   string
	owner   string
	packets uint64
	bytes   uint64
	text    string
	depth   int
}

// NewNAT returns the NAT page.
func NewNAT(c *common.Common) *NAT {
	p := &NAT{c: c}
	p.keys.Table = common.Bind("t", "next table (nat, mangle, filter, raw)", "t")
	p.keys.Filter = common.Bind("/", "filter", "/")
	p.list = components.NewTable(c.Styles,
		components.Column{Title: "CHAIN", Width: 12, Drop: 2},
		components.Column{Title: "OWNER", Width: 9, Drop: 3},
		components.Column{Title: "PKTS", Width: 7},
		components.Column{Title: "BYTES", Width: 7, Drop: 1},
		components.Column{Title: "RULE", Width: 30, Flex: true, Min: 20},
	)
	p.list.Cell = p.cells
	p.list.RowStyle = p.rowStyle
	p.list.Empty = "no rules"
	f := components.NewText(c.Styles, "filter", "Filter", "", "words to find in the rules; enter keeps, esc clears", nil)
	p.filter = components.NewForm(c.Styles, f)
	return p
}

// Title implements Page.
func (p *NAT) Title() string { return "NAT" }

// Capturing implements Page.
func (p *NAT) Capturing() bool { return p.filtering }

// ShortHelp implements Page.
func (p *NAT) ShortHelp() []key.Binding {
	if p.filtering {
		return []key.Binding{common.Bind("enter", "keep filter", "enter"), common.Bind("esc", "clear", "esc")}
	}
	return []key.Binding{p.keys.Table, p.keys.Filter, common.Keys.Down}
}

// FullHelp implements Page.
func (p *NAT) FullHelp() [][]key.Binding {
	k := common.Keys
	return [][]key.Binding{{k.Up, k.Down, k.PageUp, k.PageDown, k.Home, k.End}, {p.keys.Table, p.keys.Filter}}
}

// TableName returns the iptables table shown.
func (p *NAT) TableName() string { return natTables[p.table] }

// Update implements Page.
func (p *NAT) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case common.StateMsg:
		if msg.Err == nil {
			p.state = msg.State
			p.build()
		}
	case tea.KeyPressMsg:
		if p.filtering {
			switch msg.String() {
			case "enter":
				p.filtering, p.filter.Active = false, false
			case "esc":
				p.filtering, p.filter.Active = false, false
				p.filter.Fields[0].SetValue("")
				p.applyFilter()
			default:
				if changed, cmd := p.filter.Update(msg); changed {
					p.applyFilter()
					return cmd
				}
			}
			return nil
		}
		switch {
		case key.Matches(msg, p.keys.Table):
			p.table = (p.table + 1) % len(natTables)
			p.list.MoveTo(0)
			p.build()
		case key.Matches(msg, p.keys.Filter):
			p.filtering, p.filter.Active = true, true
		case msg.String() == "esc":
			p.filter.Fields[0].SetValue("")
			p.applyFilter()
		default:
			p.list.Update(msg)
		}
	case tea.MouseWheelMsg:
		p.list.Update(msg)
	}
	return nil
}

// build flattens the table's chains into rows: each built-in chain in hook order, its rules,
// and under a jump to a user chain that chain's rules, indented.
func (p *NAT) build() {
	p.rows = nil
	if p.state == nil {
		return
	}
	name := natTables[p.table]
	for _, fam := range []engine.Family{engine.V4, engine.V6} {
		t := p.state.Netfilter.Table(fam, name)
		if t == nil {
			continue
		}
		famTag := ""
		if fam == engine.V6 {
			famTag = " (ip6)"
		}
		seen := map[string]bool{}
		for _, hook := range hookOrder {
			c := t.Chain(hook)
			if c == nil {
				continue
			}
			p.rows = append(p.rows, natRow{header: true, chain: hook,
				text: fmt.Sprintf("%s%s  policy %s  %d rule(s)", hook, famTag, c.Policy, len(c.Rules)), packets: c.Packets, bytes: c.Bytes})
			p.chainRows(t, c, 0, map[string]bool{hook: true})
			seen[hook] = true
		}
		// User chains no hook reaches still matter when someone jumps to them later.
		for i := range t.Chains {
			c := &t.Chains[i]
			if c.Policy != "" || reached(t, c.Name) {
				continue
			}
			p.rows = append(p.rows, natRow{header: true, chain: c.Name, owner: owner(c.Name, ""),
				text: fmt.Sprintf("%s%s  not reached from any hook", c.Name, famTag)})
			p.chainRows(t, c, 0, map[string]bool{c.Name: true})
		}
	}
	p.applyFilter()
}

// reached reports whether any rule of the table jumps to the chain.
func reached(t *engine.NFTable, name string) bool {
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			if r.Target == name {
				return true
			}
		}
	}
	return false
}

func owner(chain, target string) string {
	if strings.HasPrefix(chain, engine.ChainPrefix) || strings.HasPrefix(target, engine.ChainPrefix) {
		return "roundtrip"
	}
	return "other"
}

func (p *NAT) chainRows(t *engine.NFTable, c *engine.NFChain, depth int, path map[string]bool) {
	for _, r := range c.Rules {
		p.rows = append(p.rows, natRow{chain: c.Name, owner: owner(c.Name, r.Target), packets: r.Packets, bytes: r.Bytes,
			text: r.Spec, depth: depth})
		if r.Target == "" || path[r.Target] || depth >= 4 {
			continue
		}
		if sub := t.Chain(r.Target); sub != nil && sub.Policy == "" {
			path[r.Target] = true
			p.chainRows(t, sub, depth+1, path)
			delete(path, r.Target)
		}
	}
}

func (p *NAT) applyFilter() {
	words := strings.Fields(strings.ToLower(p.filter.Get("filter")))
	p.shown = p.shown[:0]
	for i, r := range p.rows {
		ok := true
		for _, w := range words {
			if !strings.Contains(strings.ToLower(r.text+" "+r.chain+" "+r.owner), w) {
				ok = false
				break
			}
		}
		if ok || (r.header && len(words) == 0) {
			p.shown = append(p.shown, i)
		}
	}
	p.list.SetRows(len(p.shown))
}

func (p *NAT) cells(i int) []string {
	r := p.rows[p.shown[i]]
	if r.header {
		return []string{r.chain, r.owner, count(r.packets), count(r.bytes), r.text}
	}
	return []string{"", r.owner, count(r.packets), count(r.bytes), strings.Repeat("  ", r.depth) + "-A " + r.chain + " " + r.text}
}

func (p *NAT) rowStyle(i int) lipgloss.Style {
	r := p.rows[p.shown[i]]
	switch {
	case r.header:
		return p.c.Styles.Header
	case r.owner == "roundtrip":
		return p.c.Styles.Info
	}
	return lipgloss.NewStyle()
}

// count shortens a counter as iptables -L does: 1234567 → 1234K.
func count(n uint64) string {
	switch {
	case n >= 100_000_000_000:
		return fmt.Sprintf("%dG", n/1_000_000_000)
	case n >= 100_000_000:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 100_000:
		return fmt.Sprintf("%dK", n/1000)
	}
	return fmt.Sprint(n)
}

// View implements Page.
func (p *NAT) View(width, height int) string {
	st := p.c.Styles
	if p.state == nil {
		return components.Lines(st.Dim.Render("  reading state…"), width, height)
	}
	var b strings.Builder
	title := fmt.Sprintf(" iptables -t %s", p.TableName())
	right := "t: next table"
	if p.state.Netfilter.Backend != "" {
		right = p.state.Netfilter.Backend + "  " + right
	}
	b.WriteString(st.Header.Render(components.Fit(title+strings.Repeat(" ", max(width-len(title)-len(right)-1, 1))+right, width)) + "\n")
	used := 1
	if p.state.Netfilter.Unavailable != "" {
		b.WriteString(st.Warning.Render(components.Fit("  netfilter could not be read: "+p.state.Netfilter.Unavailable, width)) + "\n")
		used++
	}
	if p.filtering || p.filter.Get("filter") != "" {
		b.WriteString(p.filter.View(width) + "\n")
		used++
		if n := p.filter.FocusNote(width); n != "" {
			b.WriteString(n + "\n")
			used += strings.Count(n, "\n") + 1
		}
	}
	p.listTop = used
	b.WriteString(p.list.View(width, height-used))
	return components.Lines(b.String(), width, height)
}

// Click implements Clicker: a click on a row selects it.
func (p *NAT) Click(x, y int) tea.Cmd {
	p.list.Click(y - p.listTop - 1)
	return nil
}
