// Package wizards turns operator intents into engine plans; it makes no kernel calls of its own.
package wizards

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
	"roundtrip/engine/quote"
)

// Wizard is one guided setup: options filled from flags or a form, checked against a host's
// state, and planned as the changes that make the host do what was asked. Every wizard's
// options type implements it.
type Wizard interface {
	// Name is the wizard's command name (finding.WizardSourceReturn, ...).
	Name() string
	// Args renders the options as the flags that give them, so that a plan records the exact
	// command that made it and a form can show the command it stands for.
	Args() []string
	// Validate checks the options against the host's state: interfaces exist, gateways are
	// on-link, ports are valid, nothing clashes with rules or tables already there.
	Validate(s *model.State) error
	// Plan validates the options and plans the changes. Planning against a state that already
	// has the result gives an empty plan.
	Plan(s *model.State) (*Result, error)
}

// Names lists the wizards in the order of the field cases they fix.
var Names = []string{finding.WizardSourceReturn, finding.WizardMultiWAN, finding.WizardTunnel, finding.WizardSNATGateway, finding.WizardPortForward}

// Result is what a wizard planned: the changes for this host, the plan for the other end of
// the setup when there is one, and notes that explain the choices made.
type Result struct {
	Wizard string     `json:"wizard"`
	Plan   *plan.Plan `json:"plan"`
	// Peer is the plan for another host (the tunnel's far relay, the host that needs a route
	// through this one), planned without seeing that host: it is shown as a script for the
	// operator to run there. Nil when the setup has no other end.
	Peer *plan.Plan `json:"peer,omitempty"`
	// PeerHost says in words where Peer must run.
	PeerHost string `json:"peer_host,omitempty"`
	// NoPeer says why a wizard that has another end planned none (the receiving end of an
	// uplink-only tunnel does not know the sending end's routes).
	NoPeer string   `json:"no_peer,omitempty"`
	Notes  []string `json:"notes"`
}

// PeerScript renders the peer's plan as a shell script, or "" when there is no peer.
func (r *Result) PeerScript() string {
	if r.Peer == nil {
		return ""
	}
	return string(r.Peer.Script())
}

// peerMarker ends the here-document that carries the peer's script.
const peerMarker = "ROUNDTRIP_PEER_SCRIPT"

// commentText makes text one line of a script comment, safe to print (quote.Term).
func commentText(s string) string { return quote.Term(strings.Join(strings.Fields(s), " ")) }

// Script renders the result as one shell script: this host's plan with the notes as comments
// after its header, then the peer's script inside a here-document fed to ':', so that running
// the whole output on this host never runs the peer's part. The here-document's end marker is
// one no line of the peer's script equals.
func (r *Result) Script() []byte {
	var b bytes.Buffer
	script := r.Plan.Script()
	// Keep the shebang and the header comments first, then the notes.
	lines := bytes.SplitAfter(script, []byte("\n"))
	i := 0
	for i < len(lines) && (i == 0 || bytes.HasPrefix(lines[i], []byte("#"))) {
		b.Write(lines[i])
		i++
	}
	for _, n := range r.Notes {
		b.WriteString("# note: " + commentText(n) + "\n")
	}
	for ; i < len(lines); i++ {
		b.Write(lines[i])
	}
	if r.Peer != nil {
		peer := r.PeerScript()
		marker := peerMarker
		for n := 1; slices.Contains(strings.Split(peer, "\n"), marker); n++ {
			marker = fmt.Sprintf("%s_%d", peerMarker, n)
		}
		fmt.Fprintf(&b, "\n# ---- the other end: run this part on %s, not here ----\n", commentText(r.PeerHost))
		fmt.Fprintf(&b, ": <<'%s'\n", marker)
		b.WriteString(peer)
		if !strings.HasSuffix(peer, "\n") {
			b.WriteString("\n")
		}
		b.WriteString(marker + "\n")
	}
	return b.Bytes()
}

// builder collects the desired state of one wizard run and turns it into a plan.
type builder struct {
	s      *model.State
	alloc  *plan.Allocator
	owner  string // chain prefix of the wizard's whole-owned chains
	d      plan.Desired
	seen   map[string]string // object key -> summary, to merge duplicates
	tables map[int]bool      // tables this run owns
	notes  []string
	errs   []error
	// noNFT holds why a chain cannot go into roundtrip's nft table when the host's firewall
	// chose nft (not the user): the wizard then plans again into iptables (withNFTFallback).
	noNFT error
}

func newBuilder(s *model.State, owner, intent string) *builder {
	return &builder{
		s: s, alloc: plan.NewAllocator(s, owner), owner: owner,
		d:    plan.Desired{Intent: intent, Why: map[string]string{}},
		seen: map[string]string{}, tables: map[int]bool{},
	}
}

func (b *builder) notef(format string, a ...any) {
	b.notes = append(b.notes, fmt.Sprintf(format, a...))
}

// claim records that the plan touches c's object; it returns false when an identical change is
// already planned, and records an error when a different one is.
func (b *builder) claim(c plan.Change, why string) bool {
	key, sum := c.ObjectKey(), c.Summary()
	if prev, ok := b.seen[key]; ok {
		if prev != sum {
			b.errs = append(b.errs, fmt.Errorf("the options ask for two different things on %s: %q and %q", key, prev, sum))
		}
		return false
	}
	b.seen[key] = sum
	if why != "" {
		b.d.Why[key] = why
	}
	return true
}

// table returns the id of the routing table named name, naming it in rt_tables when it is new.
func (b *builder) table(name, why string) (int, error) {
	id, err := b.alloc.Table(name)
	if err != nil {
		return 0, err
	}
	b.tables[id] = true
	t := plan.RTTable{ID: id, Name: name}
	if b.claim(plan.Change{Kind: plan.KindTable, Op: plan.OpAdd, Table: &t}, why) {
		b.d.TableNames = append(b.d.TableNames, t)
	}
	return id, nil
}

func (b *builder) route(r model.Route, why string) {
	r.Family = inet.V4
	if r.Table == 0 {
		r.Table = model.TableMain
	}
	if b.claim(plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &r}, why) {
		b.d.Routes = append(b.d.Routes, r)
	}
}

func (b *builder) sysctl(key, value, why string) {
	v := plan.SysctlValue{Key: key, Value: value}
	if b.claim(plan.Change{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &v}, why) {
		b.d.Sysctls = append(b.d.Sysctls, v)
	}
}

func (b *builder) link(l model.Link, why string) {
	if b.claim(plan.Change{Kind: plan.KindLink, Op: plan.OpAdd, Link: &l}, why) {
		b.d.Links = append(b.d.Links, l)
	}
}

func (b *builder) chain(c plan.ChainSpec, why string) {
	if b.s.UseNFT() {
		b.nftChain(c, why)
		return
	}
	if b.claim(plan.Change{Kind: plan.KindChain, Op: plan.OpSet, Chain: &c}, why) {
		b.d.Chains = append(b.d.Chains, c)
	}
}

// rule plans an IPv4 rule. An existing rule that is the same in everything but its priority is
// reused as it is (so re-running never adds a duplicate, even of a rule made by hand); a rule
// that selects the same packets but sends them elsewhere is a clash, unless it is one of this
// wizard's own earlier rules, which the sweep removes.
func (b *builder) rule(r model.Rule, why string) error {
	r.Family = inet.V4
	r = plan.NormalizeRule(r)
	for _, x := range b.s.Rules {
		if x.Family == r.Family && sameRuleBut(x, r) {
			r.Priority, r.Protocol = x.Priority, x.Protocol
			b.addRule(r, why)
			return nil
		}
	}
	for _, x := range b.s.Rules {
		if x.Family != r.Family || x.Not != r.Not || x.Selectors() != r.Selectors() || b.ownRule(x) {
			continue
		}
		return fmt.Errorf("ip rule %q already routes the packets this wizard must route (%s): remove it with `ip rule del priority %d`, or keep it and do not run this wizard",
			x.Args(b.s.TableName), r.Selectors(), x.Priority)
	}
	p, err := b.alloc.Priority(r)
	if err != nil {
		return err
	}
	r.Priority = p
	b.addRule(r, why)
	return nil
}

func (b *builder) addRule(r model.Rule, why string) {
	if b.claim(plan.Change{Kind: plan.KindRule, Op: plan.OpAdd, Rule: &r}, why) {
		b.d.Rules = append(b.d.Rules, r)
	}
}

// ownRule reports whether an existing rule is one of this wizard's: in roundtrip's priority
// range and pointing at one of the tables it owns.
func (b *builder) ownRule(x model.Rule) bool {
	return x.Priority >= plan.PriorityFirst && x.Priority <= plan.PriorityLast && b.tables[x.Table]
}

// sameRuleBut reports whether two rules are the same but for priority and protocol.
func sameRuleBut(a, b model.Rule) bool {
	a, b = plan.NormalizeRule(a), plan.NormalizeRule(b)
	a.Priority, a.Protocol = b.Priority, b.Protocol
	num := func(id int) string { return fmt.Sprint(id) }
	return a.Family == b.Family && a.Args(num) == b.Args(num)
}

// sweep plans the removal of this wizard's earlier rules and chains that the current options no
// longer want (another mode, an uplink left out), so that a re-run reconciles instead of
// piling up.
func (b *builder) sweep() {
	for _, x := range b.s.Rules {
		if x.Family != inet.V4 || !b.ownRule(x) {
			continue
		}
		if slices.ContainsFunc(b.d.Rules, func(r model.Rule) bool { return r.Priority == x.Priority && sameRuleBut(r, x) }) {
			continue
		}
		b.d.RemoveRules = append(b.d.RemoveRules, x)
		b.d.Why[plan.Change{Kind: plan.KindRule, Op: plan.OpDelete, Rule: &x}.ObjectKey()] = "left from an earlier run of this wizard with other options"
	}
	if b.owner == "" {
		return
	}
	b.sweepNFT()
	for _, t := range b.s.Netfilter.Tables {
		if t.Family != inet.V4 {
			continue
		}
		for _, c := range t.Chains {
			if c.Policy != "" || !strings.HasPrefix(c.Name, b.owner) {
				continue
			}
			if slices.ContainsFunc(b.d.Chains, func(d plan.ChainSpec) bool { return d.Table == t.Name && d.Name == c.Name }) {
				continue
			}
			spec := plan.ChainSpec{Family: inet.V4, Table: t.Name, Name: c.Name}
			b.d.RemoveChains = append(b.d.RemoveChains, spec)
			b.d.Why[plan.Change{Kind: plan.KindChain, Op: plan.OpDelete, Chain: &spec}.ObjectKey()] = "left from an earlier run of this wizard with other options"
		}
	}
}

// result plans the collected desired state against the host.
func (b *builder) result(wizard string) (*Result, error) {
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	if b.noNFT != nil {
		return nil, &nftFallback{b.noNFT}
	}
	p, err := b.d.Plan(b.s)
	if err != nil {
		return nil, fmt.Errorf("planning %s: %w", wizard, err)
	}
	p.Namespace = b.s.Namespace
	notes := b.notes
	if notes == nil {
		notes = []string{}
	}
	if n := nftNote(b.s, p); n != "" {
		notes = append(notes, n)
	}
	notes = append(notes, forwardDropElsewhere(b.s, p)...)
	return &Result{Wizard: wizard, Plan: p, Notes: notes}, nil
}

// intent renders the command line of a wizard as the plan's intent.
func intent(w Wizard) string {
	return "roundtrip wizard " + w.Name() + " " + strings.Join(w.Args(), " ")
}

// forwarding asks for IPv4 forwarding, and for each interface packets to forward arrive on.
// Writing net.ipv4.ip_forward sets every interface's forwarding flag (inet_forward_change), but
// the kernel decides per ingress interface (IN_DEV_FORWARD in ip_route_input_slow), so the
// ingress interfaces are named too: that covers a host where one was turned off on its own.
func (b *builder) forwarding(why string, ifaces ...string) {
	b.sysctl(model.SysctlIPForward, "1", why)
	for _, i := range ifaces {
		if i != "" {
			b.sysctl(model.ConfKey(i, "forwarding"), "1", why)
		}
	}
}

// tagged is a group of rules of a shared chain that belong to one wizard run, named by the
// comment each of them carries.
type tagged struct {
	tag   string
	rules []string
}

// sharedChain returns one of roundtrip's chains that several wizard runs share (each port
// forward adds its rules to the same nat chains): the rules of each group's tag (a comment
// match) are replaced by the group's rules, at the place of the first of them; the rules of
// other runs stay as they are, and new groups go at the end.
func sharedChain(s *model.State, table, name string, hooks []plan.Jump, groups ...tagged) plan.ChainSpec {
	spec := plan.ChainSpec{Family: inet.V4, Table: table, Name: name, Jumps: hooks}
	var have []iptables.Rule
	if c := s.Netfilter.FindChain(inet.V4, table, name); c != nil {
		have = c.Rules
	}
	placed := map[string]bool{}
	for _, r := range have {
		t := ruleTag(r)
		i := slices.IndexFunc(groups, func(g tagged) bool { return g.tag == t })
		if i < 0 {
			spec.Rules = append(spec.Rules, r.Spec)
			continue
		}
		if !placed[t] {
			spec.Rules = append(spec.Rules, groups[i].rules...)
			placed[t] = true
		}
	}
	for _, g := range groups {
		if !placed[g.tag] {
			spec.Rules = append(spec.Rules, g.rules...)
		}
	}
	return spec
}

// ruleTag returns the comment of an iptables rule, which roundtrip uses to tell whose rule it is.
func ruleTag(r iptables.Rule) string {
	if pr, err := iptables.ParseRule(inet.V4, r.Spec); err == nil {
		r = pr
	}
	for _, m := range r.Matches {
		if m.Name != "comment" {
			continue
		}
		if o, ok := m.Option("comment"); ok && len(o.Values) == 1 {
			return o.Values[0]
		}
	}
	return ""
}

// comment renders the comment match that tags a rule.
func comment(tag string) string { return "-m comment --comment " + tag }

// Chains shared by several runs of the NAT wizards.
const (
	chainForwardAccept = plan.ChainPrefix + "FWD"
	tagEstablished     = "rt:established"
)

// acceptForwarded lets the forwarded traffic of a wizard through a filter FORWARD chain whose
// policy drops: new connections matching each of matches, and the rest of every accepted
// connection. Nothing is added where FORWARD accepts by default.
func (b *builder) acceptForwarded(tag string, matches ...string) {
	// Either backend's FORWARD policy drops what the other accepts.
	drops := false
	for _, t := range b.s.Netfilter.TablesNamed(inet.V4, "filter") {
		if c := t.Chain("FORWARD"); c != nil && c.Policy == "DROP" {
			drops = true
		}
	}
	if !drops {
		return
	}
	var rules []string
	for _, m := range matches {
		rules = append(rules, m+" -m conntrack --ctstate NEW "+comment(tag)+" -j ACCEPT")
	}
	spec := sharedChain(b.s, "filter", chainForwardAccept, []plan.Jump{{Chain: "FORWARD", Position: 1}},
		tagged{tagEstablished, []string{"-m conntrack --ctstate RELATED,ESTABLISHED " + comment(tagEstablished) + " -j ACCEPT"}},
		tagged{tag, rules})
	b.chain(spec, "filter FORWARD drops by default (policy DROP): let this wizard's forwarded connections through")
	b.notef("filter FORWARD drops by default: the plan accepts this wizard's forwarded connections in chain %s", chainForwardAccept)
}

// forwardDropElsewhere warns when a plan's FORWARD accept goes into one iptables backend and
// the other backend's filter FORWARD drops by default: every base chain on a hook must accept
// a packet, so the accept does not help there. A plan writes a family's chains into one
// backend (the one holding the host's NAT rules, say), so it cannot fix both; it says what to
// run instead of failing silently.
func forwardDropElsewhere(s *model.State, p *plan.Plan) []string {
	var notes []string
	for _, c := range p.Changes {
		if c.Kind != plan.KindChain || c.Op != plan.OpSet || c.Chain == nil || c.Chain.Table != "filter" || c.Chain.Name != chainForwardAccept {
			continue
		}
		for _, t := range s.Netfilter.TablesNamed(c.Chain.Family, "filter") {
			b := s.Netfilter.TableBackend(t)
			fwd := t.Chain("FORWARD")
			if b == "" || b == c.Chain.Backend || c.Chain.Backend == "" || fwd == nil || fwd.Policy != "DROP" {
				continue
			}
			other := iptables.BackendCommand(c.Chain.Family, b)
			notes = append(notes, fmt.Sprintf("filter FORWARD drops by default in the %s backend too (%s) while this plan's accept goes into the %s backend: a packet must be accepted by both, so the forwarded flow stays dropped until %s accepts it as well, or plan again with --iptables-backend %s",
				iptables.BackendName(b), quote.ShellJoin(other, "-t", "filter", "-P", "FORWARD", "DROP"), iptables.BackendName(c.Chain.Backend), other, iptables.BackendName(b)))
		}
	}
	return notes
}

// peerPlan plans a desired state for a host roundtrip cannot see (the other end of a tunnel,
// the network behind a SNAT gateway): every object becomes a change, in the order
// Desired.Plan uses, and the plan is checked on its own. Its script is idempotent, so objects
// that are already there do no harm.
func peerPlan(d *plan.Desired) (*plan.Plan, error) {
	p := plan.New(d.Intent)
	add := func(c plan.Change) {
		c.Why = d.Why[c.ObjectKey()]
		p.Changes = append(p.Changes, c)
	}
	for i := range d.TableNames {
		add(plan.Change{Kind: plan.KindTable, Op: plan.OpAdd, Table: &d.TableNames[i]})
	}
	for i := range d.Links {
		add(plan.Change{Kind: plan.KindLink, Op: plan.OpAdd, Link: &d.Links[i]})
	}
	for i := range d.Sysctls {
		add(plan.Change{Kind: plan.KindSysctl, Op: plan.OpSet, Sysctl: &d.Sysctls[i]})
	}
	for i := range d.Routes {
		add(plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &d.Routes[i]})
	}
	for i := range d.Rules {
		add(plan.Change{Kind: plan.KindRule, Op: plan.OpAdd, Rule: &d.Rules[i]})
	}
	if err := p.Check(); err != nil {
		return nil, fmt.Errorf("planning the other end: %w", err)
	}
	return p, nil
}

// GatewaySetter is implemented by the wizards whose uplinks need a gateway: a form (or a
// terminal prompt) answers a GatewayError with SetGateway and plans again.
type GatewaySetter interface {
	// SetGateway sets the gateway of the uplink on iface; false when there is no such uplink.
	SetGateway(iface string, gw netip.Addr) bool
}

// SetGateway implements GatewaySetter.
func (o *SourceReturnOptions) SetGateway(iface string, gw netip.Addr) bool {
	for i := range o.Uplinks {
		if o.Uplinks[i].Iface == iface {
			o.Uplinks[i].Gateway = gw
			return true
		}
	}
	return false
}

// SetGateway implements GatewaySetter.
func (o *MultiWANOptions) SetGateway(iface string, gw netip.Addr) bool {
	for i := range o.WANs {
		if o.WANs[i].Iface == iface {
			o.WANs[i].Gateway = gw
			return true
		}
	}
	return false
}
