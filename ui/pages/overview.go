package pages

import (
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"roundtrip/engine/finding"
	"roundtrip/engine/model"
	"roundtrip/ui/common"
	"roundtrip/ui/components"
	"roundtrip/watch"
)

// Overview shows the host at a glance: the doctor's findings first, then interfaces and
// addresses, gateways, and the kernel settings that decide paths.
type Overview struct {
	c        *common.Common
	state    *model.State
	routes   *common.RouteIndex
	findings []finding.Finding
	analysed bool
	// notChecked: the doctor's run was cancelled; there are no findings to show.
	notChecked bool
	selected   int
	follow     bool // the selection moved: scroll it into view
	expanded   bool
	offset     int
	height     int
	// watch is what `roundtrip watch` last reported (nil: no watcher here); watchSeq drops
	// the answers and refreshes of superseded reads.
	watch    *watch.Status
	watchSeq int

	keys struct{ Expand, Wizard key.Binding }
}

// watchTick reads the watcher's status again.
type watchTick struct{ seq int }

// NewOverview returns the Overview page.
func NewOverview(c *common.Common) *Overview {
	o := &Overview{c: c}
	o.keys.Expand = common.Bind("enter", "show evidence", "enter")
	o.keys.Wizard = common.Bind("w", "open the fix's wizard", "w")
	return o
}

// Title implements Page.
func (o *Overview) Title() string { return "Overview" }

// Capturing implements Page.
func (o *Overview) Capturing() bool { return false }

// ShortHelp implements Page.
func (o *Overview) ShortHelp() []key.Binding {
	return []key.Binding{common.Keys.Up, common.Keys.Down, o.keys.Expand, o.keys.Wizard}
}

// FullHelp implements Page.
func (o *Overview) FullHelp() [][]key.Binding {
	k := common.Keys
	return [][]key.Binding{{k.Up, k.Down, k.PageUp, k.PageDown}, {o.keys.Expand, o.keys.Wizard}}
}

// Update implements Page.
func (o *Overview) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case common.StateMsg:
		if msg.Err == nil {
			o.state, o.routes = msg.State, msg.Routes
			o.analysed = false
			o.watchSeq++
			return common.LoadWatch(o.c, o.watchSeq)
		}
	case common.WatchMsg:
		if msg.Seq == o.watchSeq && msg.Err == nil {
			o.watch = msg.Status
			if o.watch != nil && o.watch.Running {
				return o.c.After(common.WatchRefresh, watchTick{o.watchSeq})
			}
		}
	case watchTick:
		if msg.seq == o.watchSeq {
			return common.LoadWatch(o.c, o.watchSeq)
		}
	case common.AnalysisMsg:
		if msg.State == o.state {
			// The selection stays on its finding when the list changes around it.
			var sel string
			if f := o.current(); f != nil {
				sel = f.ID + "|" + f.Summary
			}
			o.findings, o.analysed, o.notChecked = msg.Findings, true, msg.Err != nil
			o.selected = min(o.selected, max(len(o.findings)-1, 0))
			for i, f := range o.findings {
				if f.ID+"|"+f.Summary == sel {
					o.selected = i
				}
			}
		}
	case tea.KeyPressMsg:
		k := common.Keys
		switch {
		case key.Matches(msg, k.Up):
			if o.selected > 0 {
				o.selected--
				o.follow = true
			} else {
				o.offset--
			}
		case key.Matches(msg, k.Down):
			if o.selected < len(o.findings)-1 {
				o.selected++
				o.follow = true
			} else {
				o.offset++
			}
		case key.Matches(msg, k.PageUp):
			o.offset -= max(o.height-1, 1)
		case key.Matches(msg, k.PageDown):
			o.offset += max(o.height-1, 1)
		case key.Matches(msg, k.Home):
			o.selected, o.offset = 0, 0
		case key.Matches(msg, o.keys.Expand):
			o.expanded = !o.expanded
		case key.Matches(msg, o.keys.Wizard):
			if f := o.current(); f != nil && f.Fix.Wizard != "" {
				return func() tea.Msg { return common.OpenFix(*f) }
			} else if f != nil {
				return common.Status("this finding has no wizard: " + f.Fix.Summary)
			}
		}
	case tea.MouseWheelMsg:
		if msg.Mouse().Button == tea.MouseWheelUp {
			o.offset -= 3
		} else if msg.Mouse().Button == tea.MouseWheelDown {
			o.offset += 3
		}
	}
	return nil
}

func (o *Overview) current() *finding.Finding {
	if o.selected < 0 || o.selected >= len(o.findings) {
		return nil
	}
	return &o.findings[o.selected]
}

// SelectedFinding returns the finding under the cursor, or nil.
func (o *Overview) SelectedFinding() *finding.Finding { return o.current() }

func sevMark(sev string) string {
	switch sev {
	case finding.SeverityError:
		return "✗"
	case finding.SeverityWarning:
		return "!"
	}
	return "i"
}

// View implements Page.
func (o *Overview) View(width, height int) string {
	st := o.c.Styles
	o.height = height
	if o.state == nil {
		return components.Lines(st.Dim.Render("  reading state…"), width, height)
	}
	var lines []string
	add := func(s string) { lines = append(lines, s) }
	section := func(title, right string) {
		gap := width - len(title) - len(right) - 2
		add(st.Header.Render(" " + title + strings.Repeat(" ", max(gap, 1)) + right))
	}

	// Findings first: they are why an operator opens the console.
	selLine := 0
	switch {
	case !o.analysed:
		section("Findings", "")
		add(st.Dim.Render("  checking the host…"))
	case o.notChecked:
		section("Findings", "")
		add(st.Dim.Render("  the check was cancelled: r reads the state and checks it again"))
	case len(o.findings) == 0:
		section("Findings", "")
		add(st.OK.Render("  ✓ the doctor found no problems"))
	default:
		section("Findings", findingCounts(o.findings))
		for i, f := range o.findings {
			marker := "  "
			if i == o.selected {
				marker = "▸ "
				selLine = len(lines)
			}
			sev := st.Severity(f.Severity).Render(fmt.Sprintf("%s %-7s", sevMark(f.Severity), f.Severity))
			line := components.Fit(marker+sev+" "+f.Summary, width)
			if i == o.selected {
				line = st.Selected.Render(components.Fit(marker+fmt.Sprintf("%s %-7s", sevMark(f.Severity), f.Severity)+" "+f.Summary, width))
			}
			add(line)
			if i == o.selected && o.expanded {
				add(st.Dim.Render("    id: " + f.ID))
				for _, e := range f.Evidence {
					for _, l := range components.Wrap("• "+e, width-4, "  ") {
						add("    " + l)
					}
				}
				if f.Fix.Summary != "" {
					for _, l := range components.Wrap("fix: "+f.Fix.Summary, width-4, "     ") {
						add("    " + st.OK.Render(l))
					}
				}
				if f.Fix.Wizard != "" {
					fp := planFix(st, f.Fix)
					for i, l := range components.Wrap("w opens "+fp.Opens(), width-4, "  ") {
						if i == 0 {
							l = st.Bold.Render("w") + strings.TrimPrefix(l, "w")
						}
						add("    " + l)
					}
				}
			}
		}
	}

	add("")
	section("Interfaces", fmt.Sprintf("%d links", len(o.state.Links)))
	for _, l := range o.state.Links {
		state := "down"
		if l.Up {
			state = "up"
			// UNKNOWN is what loopback and tunnels report: nothing to say about them.
			if l.OperState != "" && !strings.EqualFold(l.OperState, "up") && !strings.EqualFold(l.OperState, "unknown") {
				state = "up/" + strings.ToLower(l.OperState)
			}
		}
		var addrs []string
		for _, a := range l.Addrs {
			addrs = append(addrs, a.Prefix.String())
		}
		kind := l.Kind
		if l.Master != "" {
			kind += "@" + l.Master
		}
		row := fmt.Sprintf("  %-12s %-10s %-8s %s", components.Cut(l.Name, 12), components.Cut(kind, 10), state, strings.Join(addrs, " "))
		if !l.Up {
			row = st.Dim.Render(row)
		}
		add(row)
	}

	add("")
	section("Gateways", "")
	if len(o.routes.Defaults) == 0 {
		add(st.Warning.Render("  no default route in any table"))
	}
	for _, ri := range o.routes.Defaults {
		r := &o.state.Routes[ri]
		add(fmt.Sprintf("  %-10s %s", components.Cut(o.state.TableName(r.Table), 10), gatewayText(r)))
	}

	if o.watch != nil {
		add("")
		o.watchView(add, section, width)
	}

	add("")
	section("Kernel", o.state.Netfilter.Backend)
	sc := o.state.Sysctls
	fwd := "off"
	if sc.IPForward() {
		fwd = "on"
	}
	add(fmt.Sprintf("  forwarding %s   rp_filter all=%d default=%d   src_valid_mark %d", fwd,
		sc.Int(model.ConfKey("all", "rp_filter"), 0), sc.Int(model.ConfKey("default", "rp_filter"), 0),
		sc.Int(model.SysctlSrcValidMark, 0)))
	if mx := sc.Int(model.SysctlConntrackMax, 0); mx > 0 {
		add(fmt.Sprintf("  conntrack %d of %d entries", sc.Int(model.SysctlConntrackCount, 0), mx))
	}
	add(fmt.Sprintf("  %d rules, %d routes in %d tables", len(o.state.Rules), len(o.state.Routes), len(o.routes.Tables)))
	if o.state.Netfilter.Unavailable != "" {
		add(st.Warning.Render("  netfilter: " + o.state.Netfilter.Unavailable))
	}
	if o.state.Nftables != nil {
		var native []string
		for _, t := range o.state.Nftables.Tables {
			if t.HasNative() {
				native = append(native, t.String())
			}
		}
		add(fmt.Sprintf("  nftables: %s (modelled; NAT page, t to nft)", strings.Join(native, ", ")))
	} else {
		for _, f := range o.state.Netfilter.Foreign {
			add(st.Warning.Render("  nftables table " + f + " is not modelled: paths through it may differ"))
		}
	}

	if o.follow {
		if selLine < o.offset {
			o.offset = selLine
		}
		if selLine >= o.offset+height {
			o.offset = selLine - height + 1
		}
		o.follow = false
	}
	o.offset = max(min(o.offset, len(lines)-height), 0)
	return components.Lines(strings.Join(lines[o.offset:], "\n"), width, height)
}

func findingCounts(fs []finding.Finding) string {
	n := map[string]int{}
	for _, f := range fs {
		n[f.Severity]++
	}
	var parts []string
	for _, s := range []string{finding.SeverityError, finding.SeverityWarning, finding.SeverityInfo} {
		switch {
		case n[s] == 1:
			parts = append(parts, "1 "+s)
		case n[s] > 1:
			parts = append(parts, fmt.Sprintf("%d %ss", n[s], s))
		}
	}
	return strings.Join(parts, ", ")
}

// gatewayText describes a default route without its table: "default via GW dev D metric M".
func gatewayText(r *model.Route) string {
	s := "default"
	if r.Type != "" && r.Type != model.RouteUnicast {
		s = r.Type + " " + s
	}
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	for _, nh := range r.Nexthops {
		s += " nexthop via " + nh.Gateway.String() + " dev " + nh.Dev
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	return s
}

// watchView shows what `roundtrip watch` sees: each WAN's health and where the default route
// goes now.
func (o *Overview) watchView(add func(string), section func(title, right string), width int) {
	st, w := o.c.Styles, o.watch
	state := "running, failback " + w.Failback
	if !w.Running {
		state = "not running since " + w.Updated.Local().Format("15:04:05")
	}
	section("WAN failover", state)
	for _, h := range w.WANs {
		health := string(h.Health)
		switch h.Health {
		case watch.HealthUp:
			health = st.OK.Render(fmt.Sprintf("%-7s", health))
		case watch.HealthDown:
			health = st.Severity(finding.SeverityError).Render(fmt.Sprintf("%-7s", health))
		default:
			health = fmt.Sprintf("%-7s", health)
		}
		rtt := "-"
		if h.RTT > 0 {
			rtt = h.RTT.Round(10 * time.Microsecond).String()
		}
		add(fmt.Sprintf("  %-10s %-10s %s since %s  loss %3.0f%%  rtt %s", components.Cut(h.Name, 10), components.Cut(h.Iface, 10),
			health, h.Since.Local().Format("15:04:05"), h.Loss*100, rtt))
	}
	switch {
	case len(w.RoutedAround) > 0:
		add(st.Warning.Render(components.Fit(fmt.Sprintf("  default via %s; routed around %s", w.Default, strings.Join(w.RoutedAround, ", ")), width)))
	case w.Default != "":
		add(fmt.Sprintf("  default via %s; every WAN in use", w.Default))
	}
	if w.Error != "" {
		add(st.Warning.Render(components.Fit("  last error: "+w.Error, width)))
	}
	if n := len(w.Events); n > 0 {
		e := w.Events[n-1]
		add(st.Dim.Render(components.Fit("  last: "+e.At.Local().Format("15:04:05")+" "+e.String(), width)))
	}
}
