package pages

import (
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/nft"
	"roundtrip/engine/plan"
	"roundtrip/ui/common"
	"roundtrip/ui/components"
)

// hookOrder is the order in which a packet meets the built-in chains.
var hookOrder = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// natTables are the iptables tables the page can show, NAT first, and last the native
// nftables tables (natNFT), listed beside them.
var natTables = []string{"nat", "mangle", "filter", "raw", natNFT}

// natNFT is the page's entry for the native nftables tables.
const natNFT = "nft"

// natEvery is how often the rules and their counters are read again while the page is shown.
const natEvery = 2 * time.Second

// NAT shows the netfilter rules of one table per hook, in the order a packet meets them,
// with user chains unfolded under the rule that jumps to them, roundtrip's own chains told
// apart from other tools', and the packet and byte counters, read again every few seconds
// while the page is shown.
type NAT struct {
	c     *common.Common
	state *model.State
	// nf is the netfilter shown: the state's, then the page's own newer reads (the state is
	// shared with the other pages and is never changed).
	nf     iptables.Ruleset
	nfAt   time.Time
	table  int
	rows   []natRow
	shown  []int // rows that pass the filter
	list   *components.Table
	detail *components.Detail

	active, busy bool
	gen          int
	nfErr        error

	filter    *components.Form
	filtering bool
	listTop   int // the line of the list's header, as last drawn (for mouse clicks)

	keys struct{ Table, Filter, Detail key.Binding }
}

type netfilterMsg struct {
	gen int
	nf  iptables.Ruleset
	err error
	at  time.Time
}

type natTick struct{ gen int }

type natRow struct {
	// nft: a chain or rule of a native nftables table (its text as nft prints it).
	nft     bool
	header  bool
	family  inet.Family
	chain   string
	owner   string
	packets uint64
	bytes   uint64
	text    string
	depth   int
	policy  string
	target  string
	// backend is the iptables backend the chain lives in ("legacy", "nft"; "" when only the
	// iptables command's was read) and cmd the command that lists it.
	backend string
	cmd     string
}

// NewNAT returns the NAT page.
func NewNAT(c *common.Common) *NAT {
	p := &NAT{c: c}
	p.keys.Table = common.Bind("t", "next table (nat, mangle, filter, raw, nft)", "t")
	p.keys.Filter = common.Bind("/", "filter", "/")
	p.keys.Detail = common.Bind("enter", "the rule in full", "enter")
	p.list = components.NewTable(c.Styles,
		components.Column{Title: "CHAIN", Width: 12, Drop: 2},
		components.Column{Title: "OWNER", Width: 9, Drop: 3},
		components.Column{Title: "PKTS", Width: 7},
		components.Column{Title: "BYTES", Width: 7, Drop: 1},
		components.Column{Title: "RULE", Width: 30, Flex: true, Min: 20},
	)
	p.list.Cell = p.cells
	p.list.RowStyle = p.rowStyle
	p.list.Key = func(i int) string {
		r := p.rows[p.shown[i]]
		return fmt.Sprintf("%v|%s|%d|%s", r.header, r.chain, r.depth, r.text)
	}
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
	if p.detail != nil {
		return []key.Binding{common.Keys.Down, common.Bind("esc", "back", "esc")}
	}
	return []key.Binding{common.Bind("t", "next table", "t"), p.keys.Filter, common.Bind("enter", "details", "enter"), common.Keys.Down}
}

// FullHelp implements Page.
func (p *NAT) FullHelp() [][]key.Binding {
	k := common.Keys
	return [][]key.Binding{{k.Up, k.Down, k.PageUp, k.PageDown, k.Home, k.End}, {p.keys.Table, p.keys.Filter, p.keys.Detail,
		common.Bind("esc", "clear the filter", "esc")}}
}

// Activate implements Activator: the counters are read again while the page is shown.
func (p *NAT) Activate() tea.Cmd {
	p.active = true
	p.gen++
	return p.read()
}

// Deactivate implements Activator.
func (p *NAT) Deactivate() {
	p.active = false
	p.gen++
}

func (p *NAT) read() tea.Cmd {
	if p.busy || !p.c.Backend.Live() {
		return nil
	}
	p.busy = true
	gen, b, ctx, now := p.gen, p.c.Backend, p.c.Ctx, p.c.Now
	return func() tea.Msg {
		nf, err := b.Netfilter(ctx)
		return netfilterMsg{gen: gen, nf: nf, err: err, at: now()}
	}
}

// TableName returns the iptables table shown.
func (p *NAT) TableName() string { return natTables[p.table] }

// Update implements Page.
func (p *NAT) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case common.StateMsg:
		if msg.Err == nil {
			p.state, p.nf, p.nfAt = msg.State, msg.State.Netfilter, p.c.Now()
			p.build()
		}
	case netfilterMsg:
		p.busy = false
		switch {
		case !p.active:
			return nil
		case msg.gen != p.gen:
			// Hidden and shown again while this read ran: read for the new showing.
			return p.read()
		}
		p.nfErr = msg.err
		if msg.err == nil {
			p.nf, p.nfAt = msg.nf, msg.at
			p.build()
		}
		return p.c.After(natEvery, natTick{gen: p.gen})
	case natTick:
		if msg.gen == p.gen && p.active {
			return p.read()
		}
	case tea.KeyPressMsg:
		if p.detail != nil {
			if p.detail.Update(msg) {
				p.detail = nil
			}
			return nil
		}
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
			p.list.Reset()
			p.build()
		case key.Matches(msg, p.keys.Detail):
			if p.list.Rows > 0 {
				p.detail = p.rowDetail(p.rows[p.shown[p.list.Cursor]])
			}
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
	if name == natNFT {
		p.nftRows()
		p.applyFilter()
		return
	}
	for _, fam := range []inet.Family{inet.V4, inet.V6} {
		// One table per backend that holds it: the kernel runs both.
		for ti := range p.nf.Tables {
			t := &p.nf.Tables[ti]
			if t.Family != fam || t.Name != name {
				continue
			}
			p.tableRows(t)
		}
	}
	p.applyFilter()
}

// tableRows adds the rows of one table.
func (p *NAT) tableRows(t *iptables.Table) {
	fam := t.Family
	famTag := ""
	if fam == inet.V6 {
		famTag = " (ip6)"
	}
	backend, cmd := "", p.nf.TableCommand(t)
	if t.Backend != "" {
		backend = iptables.BackendName(t.Backend)
		famTag += " [" + backend + "]"
	}
	seen := map[string]bool{}
	for _, hook := range hookOrder {
		c := t.Chain(hook)
		if c == nil {
			continue
		}
		p.rows = append(p.rows, natRow{header: true, family: fam, chain: hook, policy: c.Policy, backend: backend, cmd: cmd,
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
		p.rows = append(p.rows, natRow{header: true, family: fam, chain: c.Name, owner: owner(c.Name, ""), backend: backend, cmd: cmd,
			text: fmt.Sprintf("%s%s  not reached from any hook", c.Name, famTag)})
		p.chainRows(t, c, 0, map[string]bool{c.Name: true})
	}
}

// reached reports whether any rule of the table jumps to the chain.
func reached(t *iptables.Table, name string) bool {
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
	if strings.HasPrefix(chain, plan.ChainPrefix) || strings.HasPrefix(target, plan.ChainPrefix) {
		return "roundtrip"
	}
	return "other"
}

func (p *NAT) chainRows(t *iptables.Table, c *iptables.Chain, depth int, path map[string]bool) {
	backend := ""
	if t.Backend != "" {
		backend = iptables.BackendName(t.Backend)
	}
	for _, r := range c.Rules {
		p.rows = append(p.rows, natRow{family: t.Family, chain: c.Name, owner: owner(c.Name, r.Target), packets: r.Packets, bytes: r.Bytes,
			text: r.Spec, depth: depth, target: r.Target, backend: backend, cmd: p.nf.TableCommand(t)})
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
			if !strings.Contains(strings.ToLower(r.text+" "+r.chain+" "+r.owner+" "+r.backend), w) {
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
	if r.nft {
		return []string{"", r.owner, count(r.packets), count(r.bytes), r.text}
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

// rowDetail shows a rule or a chain in full: the rule as iptables-save writes it, its exact
// counters, who owns it.
func (p *NAT) rowDetail(r natRow) *components.Detail {
	cmd := r.cmd
	if cmd == "" {
		cmd = iptables.Command(r.family)
	}
	table := natTables[p.table]
	if r.nft {
		if r.header {
			return components.NewDetail(p.c.Styles, "Chain "+r.chain+" (nftables)", "Chain", r.text)
		}
		return components.NewDetail(p.c.Styles, "Rule of nft chain "+r.chain, "Rule", r.text,
			"Packets", fmt.Sprint(r.packets), "Bytes", fmt.Sprint(r.bytes))
	}
	if r.header {
		d := components.NewDetail(p.c.Styles, fmt.Sprintf("Chain %s of %s -t %s", r.chain, cmd, table), "Chain", r.text)
		if r.policy != "" {
			d.Add("Policy", r.policy)
		}
		return d.Add("Packets", fmt.Sprint(r.packets)).Add("Bytes", fmt.Sprint(r.bytes))
	}
	d := components.NewDetail(p.c.Styles, fmt.Sprintf("Rule of %s -t %s, chain %s", cmd, table, r.chain),
		"Rule", cmd+" -t "+table+" -A "+r.chain+" "+r.text, "Owner", r.owner,
		"Packets", fmt.Sprint(r.packets), "Bytes", fmt.Sprint(r.bytes))
	if r.backend != "" {
		d.Add("Backend", r.backend)
	}
	if r.target != "" {
		d.Add("Target", r.target)
	}
	return d
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
	if p.detail != nil {
		return p.detail.View(width, height)
	}
	title := fmt.Sprintf(" iptables -t %s", p.TableName())
	if p.TableName() == natNFT {
		title = " nft: native tables (as read with the state; r reads again)"
		if p.state.Nftables == nil {
			p.list.Empty = "no native nftables tables"
		}
	} else {
		p.list.Empty = "no rules"
	}
	right := "t: next table"
	if p.nf.Backend != "" {
		right = p.nf.Backend + "  " + right
	}
	if p.active && p.c.Backend.Live() {
		right = "read " + p.nfAt.Format("15:04:05") + "  " + right
	}
	b.WriteString(st.Header.Render(components.Fit(title+strings.Repeat(" ", max(width-len(title)-len(right)-1, 1))+right, width)) + "\n")
	used := 1
	if p.nf.Unavailable != "" {
		b.WriteString(st.Warning.Render(components.Fit("  netfilter could not be read: "+p.nf.Unavailable, width)) + "\n")
		used++
	}
	if p.nf.Mixed() {
		b.WriteString(st.Warning.Render(components.Fit("  rules in both iptables backends, legacy and nft: the kernel runs both ([legacy] and [nft] below)", width)) + "\n")
		used++
	}
	for _, h := range p.nf.Hidden {
		b.WriteString(st.Warning.Render(components.Fit("  not read: "+h, width)) + "\n")
		used++
	}
	if p.nfErr != nil {
		b.WriteString(st.Error.Render(components.Fit("  reading the rules again failed: "+p.nfErr.Error(), width)) + "\n")
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

// nftRows lists the native nftables tables (from the state: they are not read again while
// the page is shown): each chain, base chains with hook, priority and policy, and its rules
// with their handles and counters.
func (p *NAT) nftRows() {
	rs := p.state.Nftables
	if rs == nil {
		return
	}
	for _, t := range rs.Tables {
		if t = t.NativeView(); t == nil {
			continue
		}
		for _, c := range t.Chains {
			head := fmt.Sprintf("%s %s  regular chain  %d rule(s)", t, c.Name, len(c.Rules))
			if c.Base() {
				head = fmt.Sprintf("%s %s  hook %s priority %s policy %s  %d rule(s)", t, c.Name, c.Hook, nft.PriorityName(t.Family, c.Hook, c.Priority), c.Policy, len(c.Rules))
			}
			p.rows = append(p.rows, natRow{header: true, nft: true, chain: c.Name, policy: c.Policy, owner: "nft", text: head})
			for _, r := range c.Rules {
				row := natRow{nft: true, chain: t.String() + " " + c.Name, owner: "nft", text: fmt.Sprintf("%s # handle %d", r.Text, r.Handle)}
				if ctr := r.Counter(); ctr != nil {
					row.packets, row.bytes = ctr.Packets, ctr.Bytes
				}
				p.rows = append(p.rows, row)
			}
		}
	}
}
