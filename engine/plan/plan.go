// Package plan holds changes to a host as typed, reversible plans: computed from a desired
// state, checked, settled against the current state and rendered as scripts and units.
package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/quote"
	"roundtrip/engine/safefile"
)

// Format and Version identify roundtrip's plan files; a loader refuses newer versions.
const (
	Format  = "roundtrip-plan"
	Version = 1
)

// ChainPrefix starts the name of every iptables chain roundtrip owns. Netfilter changes only
// ever replace the contents of such chains and the single jump rule that hooks each one into a
// built-in chain, so other tools' rules (Docker, kube-proxy, firewalld) are never rewritten.
const ChainPrefix = "RT-"

// ChangeKind says what a change touches.
type ChangeKind string

// Change kinds.
const (
	KindTable     ChangeKind = "table"     // a name in rt_tables
	KindLink      ChangeKind = "link"      // a tunnel or vxlan link
	KindAddress   ChangeKind = "address"   // an address on a link
	KindSysctl    ChangeKind = "sysctl"    // a /proc/sys/net setting
	KindRoute     ChangeKind = "route"     // a route of one table
	KindRule      ChangeKind = "rule"      // a policy routing rule
	KindChain     ChangeKind = "chain"     // one of roundtrip's iptables chains
	KindConntrack ChangeKind = "conntrack" // conntrack entries to flush
	KindNFT       ChangeKind = "nft"       // one of roundtrip's chains in its nft table (inet roundtrip)
)

// Op is what a change does to its object.
type Op string

// Operations. Not every kind has every operation (see validOps).
const (
	OpAdd     Op = "add"
	OpReplace Op = "replace" // a route whose key exists with other fields
	OpSet     Op = "set"     // a sysctl value, a link's up/mtu, a chain's contents
	OpDelete  Op = "delete"
	OpFlush   Op = "flush"
)

var validOps = map[ChangeKind][]Op{
	KindTable:     {OpAdd, OpDelete},
	KindLink:      {OpAdd, OpSet, OpDelete},
	KindAddress:   {OpAdd, OpDelete},
	KindSysctl:    {OpSet},
	KindRoute:     {OpAdd, OpReplace, OpDelete},
	KindRule:      {OpAdd, OpDelete},
	KindChain:     {OpSet, OpDelete},
	KindConntrack: {OpFlush},
	KindNFT:       {OpSet, OpDelete},
}

// Plan is an ordered list of changes to one host or namespace, with the intent behind them. It
// is computed as the difference between a desired and the current state (Desired.Plan), so each
// change is declarative: applying a plan whose changes are all in effect changes nothing.
type Plan struct {
	Format    string   `json:"format"`
	Version   int      `json:"version"`
	Intent    string   `json:"intent"`
	Namespace string   `json:"namespace,omitempty"` // informational: where it was planned
	Changes   []Change `json:"changes"`
}

// Change is one typed change. Exactly one of the object fields is set, the one of its Kind.
type Change struct {
	Kind ChangeKind `json:"kind"`
	Op   Op         `json:"op"`
	Why  string     `json:"why,omitempty"` // shown as a comment in renderings

	Table     *RTTable        `json:"table,omitempty"`
	Link      *model.Link     `json:"link,omitempty"`
	Address   *LinkAddress    `json:"address,omitempty"`
	Sysctl    *SysctlValue    `json:"sysctl,omitempty"`
	Route     *model.Route    `json:"route,omitempty"`
	Rule      *model.Rule     `json:"rule,omitempty"`
	Chain     *ChainSpec      `json:"chain,omitempty"`
	Conntrack *ConntrackFlush `json:"conntrack,omitempty"`
	// NFT is a chain of roundtrip's own nftables table, written as iptables rules (see
	// NFTScript).
	NFT *ChainSpec `json:"nft,omitempty"`
}

// RTTable names a routing table in rt_tables.
type RTTable struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// LinkAddress is an address on a named link.
type LinkAddress struct {
	Dev string `json:"dev"`
	model.Address
}

// SysctlValue is a sysctl setting, by its dotted name (net.ipv4.conf.eth0.rp_filter).
type SysctlValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ChainSpec is the whole content of one of roundtrip's chains and the built-in chains that
// jump to it. Rules are written as iptables-save prints them after "-A NAME".
type ChainSpec struct {
	Family inet.Family `json:"family"`
	// Backend is the iptables backend the chain lives in (iptables.BackendLegacy or
	// BackendNFT): the apply runs that backend's iptables-restore. "" is whichever backend
	// the host's iptables command uses (a plan of an old userland, or of an older roundtrip).
	Backend string   `json:"backend,omitempty"`
	Table   string   `json:"table"` // raw, mangle, nat, filter, security
	Name    string   `json:"name"`  // starts with ChainPrefix
	Jumps   []Jump   `json:"hooks,omitempty"`
	Rules   []string `json:"rules,omitempty"`
}

// Hook is a jump from a built-in chain ("-A PREROUTING -j RT-X"). Position is where the jump
// is inserted when it is missing (1, the default, is first); a jump already present anywhere
// in the chain is left where it is.
type Jump struct {
	Chain    string `json:"chain"`
	Position int    `json:"position,omitempty"`
}

// ConntrackFlush selects conntrack entries to delete after the other changes, so that flows
// whose path changed are re-routed and re-NATed instead of following their old entries.
// Addresses and port are of the original direction; zero fields match everything.
type ConntrackFlush struct {
	Family inet.Family      `json:"family"`
	Proto  int              `json:"proto,omitempty"`
	Src    netip.Prefix     `json:"src,omitzero"`
	Dst    netip.Prefix     `json:"dst,omitzero"`
	DPort  uint16           `json:"dport,omitempty"`
	Mark   *model.MarkMatch `json:"mark,omitempty"`
}

// New returns an empty plan for an intent.
func New(intent string) *Plan {
	return &Plan{Format: Format, Version: Version, Intent: intent, Changes: []Change{}}
}

// ErrBadPlan is wrapped by every error about a plan's content.
var ErrBadPlan = errors.New("bad plan")

// Marshal encodes the plan as indented JSON.
func (p *Plan) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding plan: %w", err)
	}
	return append(b, '\n'), nil
}

// Parse decodes a plan file and checks it on its own (Check). Whatever the input, it
// returns an error naming the problem rather than panicking.
func Parse(data []byte) (*Plan, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: the file is empty", ErrBadPlan)
	}
	var head struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadPlan, model.DescribeJSONError(data, err))
	}
	if head.Format != Format {
		return nil, fmt.Errorf("%w: format is %q, want %q (was it written by a roundtrip wizard?)", ErrBadPlan, head.Format, Format)
	}
	if head.Version > Version {
		return nil, fmt.Errorf("%w: version %d is newer than this roundtrip understands (%d): upgrade roundtrip", ErrBadPlan, head.Version, Version)
	}
	if head.Version < 1 {
		return nil, fmt.Errorf("%w: version %d is invalid", ErrBadPlan, head.Version)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Plan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadPlan, model.DescribeJSONError(data, err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: unexpected data after the plan object", ErrBadPlan)
	}
	if p.Changes == nil {
		p.Changes = []Change{}
	}
	if err := p.Check(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Load reads and checks a plan file.
func Load(path string) (*Plan, error) {
	data, err := safefile.ReadFile(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("reading plan: %w", err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("loading plan %s: %w", path, err)
	}
	return p, nil
}

type problems struct{ errs []error }

func (ps *problems) add(format string, a ...any) {
	if len(ps.errs) < model.MaxProblems {
		ps.errs = append(ps.errs, fmt.Errorf(format, a...))
	}
}

func (ps *problems) err(what string) error {
	if len(ps.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s: %w", ErrBadPlan, what, errors.Join(ps.errs...))
}

// Check validates a plan on its own, without a host: every field of every change is well
// formed (names by the kernel's rules, numbers in their real ranges, text without control
// characters, iptables rules that parse), and no two changes touch the same object. Errors
// name the change and the field. Validate also checks the plan against a host's state.
func (p *Plan) Check() error {
	var ps problems
	if p.Format != Format {
		ps.add("format is %q, want %q", p.Format, Format)
	}
	if p.Version < 1 || p.Version > Version {
		ps.add("version %d is not supported (want 1-%d)", p.Version, Version)
	}
	if err := model.CheckText("intent", p.Intent, model.MaxText); err != nil {
		ps.add("%w", err)
	}
	if p.Namespace != "" {
		if err := model.CheckNetnsName(p.Namespace); err != nil {
			ps.add("field namespace: %w", err)
		}
	}
	seen := map[string]int{}
	backends := map[inet.Family]int{} // the first chain change of each family
	for i, c := range p.Changes {
		if err := c.check(); err != nil {
			ps.add("change %d: %w", i+1, err)
			continue
		}
		if c.Kind == KindChain {
			// A family's chain changes are one iptables-restore transaction: one backend.
			if first, ok := backends[c.Chain.Family]; !ok {
				backends[c.Chain.Family] = i
			} else if b := p.Changes[first].Chain.Backend; b != c.Chain.Backend {
				ps.add("change %d: chain %s is in the %q iptables backend but change %d's is in %q: a plan writes each family's chains into one backend", i+1, c.Chain.Name, c.Chain.Backend, first+1, b)
			}
		}
		id := c.object()
		if prev, dup := seen[id]; dup && c.Kind != KindConntrack {
			ps.add("changes %d and %d both touch %s: merge them into one", prev, i+1, id)
		}
		seen[id] = i + 1
	}
	return ps.err("invalid plan")
}

var (
	tableNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
	chainNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

	// hookable lists the built-in chains of each iptables table.
	hookable = map[string][]string{
		"raw":      {"PREROUTING", "OUTPUT"},
		"mangle":   {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
		"nat":      {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
		"filter":   {"INPUT", "FORWARD", "OUTPUT"},
		"security": {"INPUT", "FORWARD", "OUTPUT"},
	}
	// tunnelKinds are the link kinds a plan can create (and re-create on rollback).
	tunnelKinds = map[string]bool{"vxlan": true, "ipip": true, "gre": true, "gretap": true, "sit": true}
)

func familyOK(f inet.Family) error {
	if f != inet.V4 && f != inet.V6 {
		return fmt.Errorf("family must be inet or inet6")
	}
	return nil
}

func (c Change) payloads() int {
	n := 0
	for _, set := range []bool{c.Table != nil, c.Link != nil, c.Address != nil, c.Sysctl != nil, c.Route != nil, c.Rule != nil, c.Chain != nil, c.Conntrack != nil, c.NFT != nil} {
		if set {
			n++
		}
	}
	return n
}

// check validates one change on its own.
func (c Change) check() error {
	ops, ok := validOps[c.Kind]
	if !ok {
		return fmt.Errorf("unknown kind %q: want table, link, address, sysctl, route, rule, chain, conntrack or nft", c.Kind)
	}
	if !slices.Contains(ops, c.Op) {
		return fmt.Errorf("%s change has op %q: want one of %v", c.Kind, c.Op, ops)
	}
	if c.payloads() != 1 {
		return fmt.Errorf("%s change must carry exactly one object (its %q field)", c.Kind, c.Kind)
	}
	if err := model.CheckText(`field "why"`, c.Why, model.MaxText); err != nil {
		return err
	}
	switch c.Kind {
	case KindTable:
		t := c.Table
		if t == nil {
			return errors.New(`table change without "table"`)
		}
		if t.ID <= 0 || t.ID > model.MaxU32 || t.ID == model.TableDefault || t.ID == model.TableMain || t.ID == model.TableLocal {
			return fmt.Errorf("table: field id %d: want 1-%d other than 253, 254, 255", t.ID, model.MaxU32)
		}
		if len(t.Name) > 255 || !tableNameRE.MatchString(t.Name) || slices.Contains([]string{"main", "local", "default", "unspec", "all"}, t.Name) {
			return fmt.Errorf("table %d: field name %q: want a word of letters, digits, '_', '.', '-' that starts with a letter and is not main, local, default, unspec or all", t.ID, t.Name)
		}
	case KindLink:
		if c.Link == nil {
			return errors.New(`link change without "link"`)
		}
		return checkPlanLink(c.Link, c.Op)
	case KindAddress:
		a := c.Address
		if a == nil {
			return errors.New(`address change without "address"`)
		}
		if err := model.CheckIfName(a.Dev); err != nil {
			return fmt.Errorf("address: field dev: %w", err)
		}
		return model.CheckAddress(a.Address, false)
	case KindSysctl:
		s := c.Sysctl
		if s == nil {
			return errors.New(`sysctl change without "sysctl"`)
		}
		if err := model.CheckSysctlKey(s.Key); err != nil {
			return fmt.Errorf("sysctl: field key: %w", err)
		}
		if err := model.CheckSysctlValue(s.Value); err != nil {
			return fmt.Errorf("sysctl %s: field value: %w", s.Key, err)
		}
	case KindRoute:
		if c.Route == nil {
			return errors.New(`route change without "route"`)
		}
		return checkRoute(*c.Route, c.Op)
	case KindRule:
		if c.Rule == nil {
			return errors.New(`rule change without "rule"`)
		}
		return checkRule(*c.Rule)
	case KindChain:
		if c.Chain == nil {
			return errors.New(`chain change without "chain"`)
		}
		return checkChain(*c.Chain, c.Op)
	case KindNFT:
		if c.NFT == nil {
			return errors.New(`nft change without "nft"`)
		}
		return checkNFT(*c.NFT, c.Op)
	case KindConntrack:
		ct := c.Conntrack
		if ct == nil {
			return errors.New(`conntrack change without "conntrack"`)
		}
		if err := familyOK(ct.Family); err != nil {
			return fmt.Errorf("conntrack flush: %w", err)
		}
		if ct.Proto < 0 || ct.Proto > 255 {
			return fmt.Errorf("conntrack flush: field proto %d out of range: want 0-255", ct.Proto)
		}
		if ct.DPort != 0 && ct.Proto != 6 && ct.Proto != 17 && ct.Proto != 132 {
			return errors.New("conntrack flush: a destination port needs proto tcp (6), udp (17) or sctp (132)")
		}
		for _, p := range []netip.Prefix{ct.Src, ct.Dst} {
			if p.IsValid() && inet.FamilyOf(p.Addr()) != ct.Family {
				return fmt.Errorf("conntrack flush: %s is not %s", p, ct.Family)
			}
		}
	}
	return nil
}

// checkPlanLink checks a link a plan creates, changes or deletes. A deletion names the link
// only; whatever else it carries must still be well formed.
func checkPlanLink(l *model.Link, op Op) error {
	if err := model.CheckIfName(l.Name); err != nil {
		return fmt.Errorf("link: field name: %w", err)
	}
	if err := model.CheckLinkFields(l); err != nil {
		return fmt.Errorf("link %s: %w", l.Name, err)
	}
	if l.HardwareAddr != "" {
		if err := planHWAddrOK(l.HardwareAddr); err != nil {
			return fmt.Errorf("link %s: field hwaddr: %w", l.Name, err)
		}
	}
	for _, a := range l.Addrs {
		if err := model.CheckAddress(a, false); err != nil {
			return fmt.Errorf("link %s: %w", l.Name, err)
		}
	}
	if op == OpDelete {
		if l.Tunnel != nil {
			return checkTunnel(l)
		}
		return nil
	}
	if !tunnelKinds[l.Kind] {
		return fmt.Errorf("link %s: kind %q cannot be created by a plan: want vxlan, ipip, gre, gretap or sit", l.Name, l.Kind)
	}
	if l.Tunnel == nil {
		return fmt.Errorf("link %s: a %s link needs its tunnel parameters", l.Name, l.Kind)
	}
	return checkTunnel(l)
}

func checkTunnel(l *model.Link) error {
	t := l.Tunnel
	if t.Dev != "" {
		if err := model.CheckIfName(t.Dev); err != nil {
			return fmt.Errorf("link %s: tunnel field dev: %w", l.Name, err)
		}
	}
	if t.TTL < 0 || t.TTL > 255 || t.Port < 0 || t.Port > 65535 {
		return fmt.Errorf("link %s: tunnel field ttl %d (want 0-255) or port %d (want 0-65535) out of range", l.Name, t.TTL, t.Port)
	}
	if t.VNI >= 1<<24 {
		return fmt.Errorf("link %s: tunnel field vni %d is more than 24 bits", l.Name, t.VNI)
	}
	if l.Kind == "" {
		return nil
	}
	switch l.Kind {
	case "vxlan":
		if t.Remote.IsValid() && t.Group.IsValid() {
			return fmt.Errorf("link %s: a vxlan link has a remote or a group, not both", l.Name)
		}
		if t.Remote.IsMulticast() {
			return fmt.Errorf("link %s: remote %s is multicast: give it as group", l.Name, t.Remote)
		}
		if t.Group.IsValid() && !t.Group.IsMulticast() {
			return fmt.Errorf("link %s: group %s is not multicast", l.Name, t.Group)
		}
		if t.Group.IsValid() && t.Dev == "" {
			return fmt.Errorf("link %s: a multicast vxlan needs an underlying device (dev)", l.Name)
		}
	default:
		if !t.Remote.IsValid() && !t.Local.IsValid() {
			return fmt.Errorf("link %s: a %s tunnel needs a local or remote address", l.Name, l.Kind)
		}
	}
	var fams []inet.Family
	for _, a := range []netip.Addr{t.Local, t.Remote, t.Group} {
		if a.IsValid() {
			fams = append(fams, inet.FamilyOf(a))
		}
	}
	if len(slices.Compact(fams)) > 1 {
		return fmt.Errorf("link %s: tunnel addresses mix IPv4 and IPv6", l.Name)
	}
	if (l.Kind == "ipip" || l.Kind == "sit" || l.Kind == "gre" || l.Kind == "gretap") && len(fams) > 0 && fams[0] != inet.V4 {
		return fmt.Errorf("link %s: %s tunnels are IPv4-only here (use ip6tnl/ip6gre by hand)", l.Name, l.Kind)
	}
	return nil
}

func checkRoute(r model.Route, op Op) error {
	if err := familyOK(r.Family); err != nil {
		return fmt.Errorf("route %s: %w", r.Dst, err)
	}
	if !r.Dst.IsValid() {
		return errors.New("route without a destination (want e.g. 10.0.0.0/8, or 0.0.0.0/0 for default)")
	}
	if inet.FamilyOf(r.Dst.Addr()) != r.Family {
		return fmt.Errorf("route %s: destination is not %s", r.Dst, r.Family)
	}
	if r.Dst.Masked() != r.Dst {
		return fmt.Errorf("route %s: host bits are set (the kernel refuses it): use %s", r.Dst, r.Dst.Masked())
	}
	if r.Type != "" && !model.ValidRouteTypes[r.Type] {
		return fmt.Errorf("route %s: field type %q: want unicast, local, broadcast, anycast, multicast, blackhole, unreachable, prohibit, throw or nat", r.Dst, r.Type)
	}
	if err := model.CheckRouteFields(r, false); err != nil {
		return fmt.Errorf("route %s: %w", r.Dst, err)
	}
	for _, a := range []netip.Addr{r.Gateway, r.Src} {
		if a.IsValid() && inet.FamilyOf(a) != r.Family {
			return fmt.Errorf("route %s: %s is not %s", r.Dst, a, r.Family)
		}
	}
	if len(r.Nexthops) > 0 && (r.Gateway.IsValid() || r.Dev != "") {
		return fmt.Errorf("route %s: a multipath route has its gateways in nexthops only", r.Dst)
	}
	typ := r.Type
	if (typ == model.RouteBlackhole || typ == model.RouteUnreachable || typ == model.RouteProhibit || typ == model.RouteThrow) && (r.Gateway.IsValid() || r.Dev != "" || len(r.Nexthops) > 0) {
		return fmt.Errorf("route %s: a %s route has no gateway or device", r.Dst, typ)
	}
	if op != OpDelete && (typ == "" || typ == model.RouteUnicast) && !r.Gateway.IsValid() && r.Dev == "" && len(r.Nexthops) == 0 {
		return fmt.Errorf("route %s: a unicast route needs a gateway (via) or a device (dev)", r.Dst)
	}
	return nil
}

func checkRule(r model.Rule) error {
	if err := familyOK(r.Family); err != nil {
		return fmt.Errorf("rule: %w", err)
	}
	if r.Priority <= 0 || r.Priority > model.MaxU32 {
		return fmt.Errorf("rule %q needs an explicit priority 1-%d (priority 0 belongs to the local table rule; engine.Allocator picks a free one)", r.Selectors(), model.MaxU32)
	}
	if err := model.CheckRuleFields(r); err != nil {
		return fmt.Errorf("rule %d: %w", r.Priority, err)
	}
	for _, p := range []netip.Prefix{r.Src, r.Dst} {
		if p.IsValid() && p.Masked() != p {
			return fmt.Errorf("rule %d: %s is not a %s prefix without host bits", r.Priority, p, r.Family)
		}
	}
	if r.Action == model.ActionGoto && r.Goto <= r.Priority {
		return fmt.Errorf("rule %d: goto %d must jump forward (to a higher priority number)", r.Priority, r.Goto)
	}
	return nil
}

// iptablesCommands are iptables' own long options, which a rule may not hold: getopt would
// read them as a command in the middle of the rule (iptables/xshared.c).
var iptablesCommands = map[string]bool{
	"append": true, "check": true, "delete": true, "insert": true, "replace": true, "list": true,
	"list-rules": true, "flush": true, "zero": true, "new-chain": true, "delete-chain": true,
	"policy": true, "rename-chain": true, "table": true, "numeric": true, "verbose": true,
	"exact": true, "line-numbers": true, "modprobe": true, "set-counters": true, "wait": true,
	"wait-interval": true, "help": true, "version": true, "ipv4": true, "ipv6": true,
}

// checkRuleSpec checks one rule of a chain as iptables-restore will read it: one line of
// printable text, no double quote inside a value (nft and iptables-nft's listings cannot write
// one back, iptables-save prints interfaces unquoted), interfaces by the kernel's rules, no word that
// iptables-restore takes for a table switch, no iptables command option, and a rule that
// parses.
func checkRuleSpec(f inet.Family, spec string) error {
	if len(spec) > model.MaxText {
		return fmt.Errorf("the rule is %d bytes long: at most %d", len(spec), model.MaxText)
	}
	if !utf8.ValidString(spec) || quote.HasControl(strings.ReplaceAll(spec, "\t", " ")) {
		return errors.New("the rule must be one line of printable text (no control characters)")
	}
	toks, err := iptables.SplitArgs(spec)
	if err != nil {
		return err
	}
	for _, t := range toks {
		// iptables-restore refuses any word that starts with one dash and holds a 't', and
		// any prefix of --table (add_param_to_argv): catch it here, before an apply.
		if len(t.Text) > 1 && t.Text[0] == '-' && t.Text[1] != '-' && strings.Contains(t.Text, "t") ||
			len(t.Text) > 2 && strings.HasPrefix("--table", t.Text) {
			return fmt.Errorf("word %q would be read by iptables-restore as a table switch", t.Text)
		}
		if name, ok := strings.CutPrefix(t.Text, "--"); ok && !t.Quoted {
			name, _, _ = strings.Cut(name, "=")
			if iptablesCommands[name] {
				return fmt.Errorf("option --%s is an iptables command, not part of a rule", name)
			}
		}
	}
	r, err := iptables.ParseRule(f, spec)
	if err != nil {
		return err
	}
	// A value with a double quote cannot be written back by nft or iptables-nft's listings,
	// nor, in an interface name, read back from iptables-save.
	var values []string
	for _, a := range []*iptables.NegAddr{r.Src, r.Dst} {
		if a != nil {
			values = append(values, a.Prefix)
		}
	}
	if r.Proto != nil {
		values = append(values, r.Proto.Value)
	}
	for _, m := range r.Matches {
		if err := iptablesWordOK("match", m.Name); err != nil {
			return err
		}
		for _, o := range m.Options {
			values = append(values, o.Values...)
		}
	}
	for _, o := range r.TargetOpts {
		values = append(values, o.Values...)
	}
	for _, v := range values {
		if v == "" {
			return errors.New("an option has an empty value: iptables refuses most of them (--log-prefix \"\")")
		}
		if strings.Contains(v, `"`) {
			return fmt.Errorf("value %q holds a double quote: roundtrip does not write those into rules", v)
		}
	}
	for _, i := range []*iptables.NegStr{r.In, r.Out} {
		if i == nil {
			continue
		}
		if name := strings.TrimSuffix(i.Value, "+"); name != "" {
			if err := model.CheckIfName(name); err != nil {
				return err
			}
		}
		if strings.Contains(i.Value, `"`) {
			return fmt.Errorf("interface %q holds a double quote: iptables-save prints interfaces unquoted, so the rule would not read back; rename the interface", i.Value)
		}
	}
	if r.Target != "" {
		if err := iptables.CheckChainName(r.Target); err != nil {
			return fmt.Errorf("target: %w", err)
		}
	}
	if _, err := CanonicalRuleSpec(f, spec); err != nil {
		return err
	}
	return nil
}

// iptablesWordOK checks the name of a match or an option: letters, digits, '_' and '-'.
func iptablesWordOK(what, s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%s %q: want letters, digits, '_' and '-'", what, s)
		}
	}
	if s == "" {
		return fmt.Errorf("empty %s name", what)
	}
	return nil
}

func checkChain(c ChainSpec, op Op) error {
	if err := familyOK(c.Family); err != nil {
		return fmt.Errorf("chain %s: %w", c.Name, err)
	}
	switch c.Backend {
	case "", iptables.BackendLegacy, iptables.BackendNFT:
	default:
		return fmt.Errorf("chain %s: field backend %q: want legacy or nf_tables", c.Name, c.Backend)
	}
	hooks, ok := hookable[c.Table]
	if !ok {
		return fmt.Errorf("chain %s: field table %q: want raw, mangle, nat, filter or security", c.Name, c.Table)
	}
	if !strings.HasPrefix(c.Name, ChainPrefix) || len(c.Name) > 28 || !chainNameRE.MatchString(c.Name) {
		return fmt.Errorf("chain: field name %q: roundtrip's chains are named %s... (letters, digits, '_', '.', '-'; at most 28 characters)", c.Name, ChainPrefix)
	}
	seen := map[string]bool{}
	for _, h := range c.Jumps {
		if !slices.Contains(hooks, h.Chain) {
			return fmt.Errorf("chain %s: %s has no built-in chain %q to hook from (it has %s)", c.Name, c.Table, h.Chain, strings.Join(hooks, ", "))
		}
		if seen[h.Chain] {
			return fmt.Errorf("chain %s: hooked twice from %s", c.Name, h.Chain)
		}
		seen[h.Chain] = true
		if h.Position < 0 || h.Position > 1<<31-1 {
			return fmt.Errorf("chain %s: hook position %d: want 1 or more", c.Name, h.Position)
		}
	}
	for i, spec := range c.Rules {
		if err := checkRuleSpec(c.Family, spec); err != nil {
			return fmt.Errorf("chain %s rule %d %s: %w", c.Name, i+1, strconv.Quote(spec), err)
		}
	}
	return nil
}

// object names what a change touches; two changes of one plan never touch the same object.
func (c Change) object() string {
	switch c.Kind {
	case KindTable:
		return fmt.Sprintf("table %d", c.Table.ID)
	case KindLink:
		return "link " + c.Link.Name
	case KindAddress:
		return fmt.Sprintf("address %s on %s", c.Address.Prefix, c.Address.Dev)
	case KindSysctl:
		return "sysctl " + c.Sysctl.Key
	case KindRoute:
		id := identOf(NormalizeRoute(*c.Route))
		return fmt.Sprintf("route %s %s table %d tos %d metric %d", id.family, id.dst, id.table, id.tos, id.metric)
	case KindRule:
		return fmt.Sprintf("rule %s %s", c.Rule.Family, NormalizeRule(*c.Rule).Args(model.NumericTable))
	case KindChain:
		return fmt.Sprintf("chain %s %s %s", c.Chain.Family, c.Chain.Table, c.Chain.Name)
	case KindConntrack:
		return "conntrack"
	case KindNFT:
		return fmt.Sprintf("nft chain %s %s %s", NFTFamily, NFTTable, c.NFT.Name)
	}
	return string(c.Kind)
}

// NormalizeRoute fills in what iproute2 and the kernel fill in for a route added without them,
// so that a planned route compares equal to the route read back: table main, type unicast,
// protocol boot (and a protocol number with a name by its name), iproute2's scope choice (ip/iproute.c: host for local and nat, link for a
// unicast route without a gateway, universe otherwise), IPv6's scope (always universe) and
// metric (IP6_RT_PRIO_USER, 1024, when 0), and nexthop weight 1.
func NormalizeRoute(r model.Route) model.Route {
	if r.Table == model.TableUnspec {
		r.Table = model.TableMain
	}
	if r.Type == "" {
		r.Type = model.RouteUnicast
	}
	if r.Protocol == "" {
		r.Protocol = "boot"
	}
	// The kernel reads a protocol back by its number, named where rt_protos has a name. (Only
	// a number is parsed: a failed ParseUint allocates its error, a million times in a load.)
	if c := r.Protocol[0]; c >= '0' && c <= '9' {
		if n, err := strconv.ParseUint(r.Protocol, 10, 8); err == nil {
			if name, ok := model.RouteProtocolNames[int(n)]; ok {
				r.Protocol = name
			}
		}
	}
	if r.Dst.IsValid() {
		r.Dst = r.Dst.Masked()
	}
	if r.Family == inet.V6 {
		r.Scope = "universe"
		if r.Metric == 0 {
			r.Metric = 1024
		}
	} else if r.Scope == "" {
		switch r.Type {
		case model.RouteLocal, model.RouteNAT:
			r.Scope = "host"
		case model.RouteBroadcast, model.RouteMulticast, model.RouteAnycast:
			r.Scope = "link"
		case model.RouteUnicast:
			if !r.Gateway.IsValid() && len(r.Nexthops) == 0 {
				r.Scope = "link"
			} else {
				r.Scope = "universe"
			}
		default:
			r.Scope = "universe"
		}
	}
	if len(r.Nexthops) > 0 {
		r.Nexthops = slices.Clone(r.Nexthops)
		for i := range r.Nexthops {
			if r.Nexthops[i].Weight == 0 {
				r.Nexthops[i].Weight = 1
			}
		}
	}
	return r
}

// NormalizeRule fills in the defaults of `ip rule add`: action table, table main, and a mark
// without a mask matches all 32 bits.
func NormalizeRule(r model.Rule) model.Rule {
	if r.Action == "" {
		r.Action = model.ActionTable
	}
	if r.Action == model.ActionTable && r.Table == 0 {
		r.Table = model.TableMain
	}
	if r.Mark != nil && r.Mark.Mask == 0 {
		r.Mark = &model.MarkMatch{Value: r.Mark.Value, Mask: 0xffffffff}
	}
	return r
}

// normalizeLink fills in the kernel's defaults for a planned tunnel link: vxlan's port (8472,
// the Linux default that iproute2 also falls back to).
func normalizeLink(l model.Link) model.Link {
	if l.Tunnel != nil {
		t := *l.Tunnel
		if l.Kind == "vxlan" && t.Port == 0 {
			t.Port = 8472
		}
		l.Tunnel = &t
	}
	l.Addrs = slices.Clone(l.Addrs)
	return l
}

// routeID is how the kernel identifies a route for replace and delete: family, table,
// destination, tos and metric (IPv4 fib_alias: fa_tos, fib_priority).
type routeID struct {
	family inet.Family
	table  int
	dst    netip.Prefix
	tos    uint8
	metric int
}

func identOf(r model.Route) routeID {
	return routeID{r.Family, r.Table, r.Dst, r.TOS, r.Metric}
}

// routesWithID returns the routes of s with the identity of r.
func routesWithID(s *model.State, id routeID) []model.Route {
	var out []model.Route
	for _, r := range s.Routes {
		if identOf(r) == id {
			out = append(out, r)
		}
	}
	return out
}

// sameRoute reports whether an existing route a is the planned route want (normalized).
func sameRoute(a, want model.Route) bool {
	if identOf(a) != identOf(want) {
		return false
	}
	// A route via a gateway may leave the device to the kernel, which picks the one the
	// gateway is on-link through.
	devOK := func(have, want string, gw netip.Addr) bool { return have == want || want == "" && gw.IsValid() }
	if len(a.Nexthops) != len(want.Nexthops) {
		return false
	}
	for i, nh := range want.Nexthops {
		h := a.Nexthops[i]
		if h.Gateway != nh.Gateway || h.Weight != nh.Weight || h.OnLink != nh.OnLink || !devOK(h.Dev, nh.Dev, nh.Gateway) {
			return false
		}
	}
	return a.Type == want.Type && a.Gateway == want.Gateway && devOK(a.Dev, want.Dev, want.Gateway) && a.Src == want.Src &&
		a.Scope == want.Scope && a.Protocol == want.Protocol && a.OnLink == want.OnLink
}

// sameRule reports whether two rules are the same rule (the kernel refuses a second one with
// NLM_F_EXCL).
func sameRule(a, b model.Rule) bool {
	a, b = NormalizeRule(a), NormalizeRule(b)
	return a.Family == b.Family && a.Protocol == b.Protocol && a.Args(model.NumericTable) == b.Args(model.NumericTable)
}

// CanonicalRuleSpec rewrites a rule as iptables-save prints it, so that a planned rule and the
// rule read back compare equal: -m before the options of an implicit protocol match, host
// addresses with their /32 or /128, marks in hex with the masks iptables adds (MARK --set-mark
// V becomes --set-xmark V/0xffffffff, CONNMARK --save-mark gets --nfmask and --ctmask). Other
// options must already be written the way iptables-save prints them.
func CanonicalRuleSpec(f inet.Family, spec string) (string, error) {
	r, err := iptables.ParseRule(f, spec)
	if err != nil {
		return "", err
	}
	host := func(a *iptables.NegAddr) {
		if a == nil || strings.Contains(a.Prefix, "/") {
			return
		}
		if ip, err := netip.ParseAddr(a.Prefix); err == nil {
			a.Prefix = netip.PrefixFrom(ip, ip.BitLen()).String()
		}
	}
	host(r.Src)
	host(r.Dst)
	for i := range r.Matches {
		m := &r.Matches[i]
		if m.Name == "mark" || m.Name == "connmark" {
			for j := range m.Options {
				if o := &m.Options[j]; o.Name == "mark" && len(o.Values) == 1 {
					o.Values[0] = hexMark(o.Values[0])
				}
			}
		}
	}
	switch r.Target {
	case "MARK", "CONNMARK":
		var out []iptables.Option
		for _, o := range r.TargetOpts {
			switch {
			case (o.Name == "set-mark" || o.Name == "set-xmark") && len(o.Values) == 1:
				v, m, err := iptables.ParseMark(o.Values[0])
				if err != nil {
					return "", fmt.Errorf("--%s %s: %w", o.Name, o.Values[0], err)
				}
				if o.Name == "set-mark" {
					// libxt_MARK: --set-mark v/m zeroes the bits of m|v and sets v.
					m |= v
				}
				out = append(out, iptables.Option{Name: "set-xmark", Values: []string{fmt.Sprintf("%#x/%#x", v, m)}})
			case (o.Name == "save-mark" || o.Name == "restore-mark") && len(o.Values) == 0:
				out = append(out, o)
			case o.Name == "mask" && len(o.Values) == 1:
				_, m, err := iptables.ParseMark(o.Values[0] + "/" + o.Values[0])
				if err != nil {
					return "", fmt.Errorf("--mask %s: %w", o.Values[0], err)
				}
				out = append(out, iptables.Option{Name: "nfmask", Values: []string{fmt.Sprintf("%#x", m)}}, iptables.Option{Name: "ctmask", Values: []string{fmt.Sprintf("%#x", m)}})
			default:
				out = append(out, o)
			}
		}
		if r.Target == "CONNMARK" && len(out) == 1 && (out[0].Name == "save-mark" || out[0].Name == "restore-mark") {
			out = append(out, iptables.Option{Name: "nfmask", Values: []string{"0xffffffff"}}, iptables.Option{Name: "ctmask", Values: []string{"0xffffffff"}})
		}
		r.TargetOpts = out
	}
	return r.Args(), nil
}

// hexMark rewrites a -m mark value as iptables-save prints it (0x1, 0x10/0xf0); a value it
// cannot parse is returned unchanged, for iptables to judge.
func hexMark(s string) string {
	vs, ms, hasMask := strings.Cut(s, "/")
	v, err := iptables.ParseU32(vs)
	if err != nil {
		return s
	}
	if !hasMask {
		return fmt.Sprintf("%#x", v)
	}
	m, err := iptables.ParseU32(ms)
	if err != nil || m == 0xffffffff {
		if err == nil {
			return fmt.Sprintf("%#x", v)
		}
		return s
	}
	return fmt.Sprintf("%#x/%#x", v, m)
}

// canonicalRules canonicalizes a chain's rules, leaving a rule it cannot parse as it is.
func canonicalRules(f inet.Family, specs []string) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		if c, err := CanonicalRuleSpec(f, s); err == nil {
			out[i] = c
		} else {
			out[i] = s
		}
	}
	return out
}

// normalized returns the change with its object normalized (routes, rules, links, chain rules),
// the form in which it is compared with a state and rendered.
func (c Change) normalized() Change {
	switch {
	case c.Route != nil:
		r := NormalizeRoute(*c.Route)
		c.Route = &r
	case c.Rule != nil:
		r := NormalizeRule(*c.Rule)
		c.Rule = &r
	case c.Link != nil && c.Op != OpDelete:
		l := normalizeLink(*c.Link)
		c.Link = &l
	case c.NFT != nil:
		ch := *c.NFT
		ch.Rules = canonicalRules(ch.Family, ch.Rules)
		ch.Jumps = slices.Clone(ch.Jumps)
		c.NFT = &ch
	case c.Chain != nil:
		ch := *c.Chain
		ch.Rules = canonicalRules(ch.Family, ch.Rules)
		ch.Jumps = slices.Clone(ch.Jumps)
		for i := range ch.Jumps {
			if ch.Jumps[i].Position == 0 {
				ch.Jumps[i].Position = 1
			}
		}
		c.Chain = &ch
	}
	return c
}

// Summary renders a change as one line, in ip/iptables words where there are some.
func (c Change) Summary() string {
	switch c.Kind {
	case KindTable:
		if c.Op == OpDelete {
			return fmt.Sprintf("forget table name %d %s", c.Table.ID, c.Table.Name)
		}
		return fmt.Sprintf("name table %d %s", c.Table.ID, c.Table.Name)
	case KindLink:
		switch c.Op {
		case OpDelete:
			return "ip link del " + c.Link.Name
		case OpSet:
			return fmt.Sprintf("ip link set %s %s", c.Link.Name, upDown(c.Link.Up))
		}
		s := fmt.Sprintf("ip link add %s type %s", c.Link.Name, tunnelString(*c.Link))
		if c.Link.Up {
			s += ", up"
		}
		for _, a := range c.Link.Addrs {
			s += ", " + a.Prefix.String()
		}
		return s
	case KindAddress:
		verb := "add"
		if c.Op == OpDelete {
			verb = "del"
		}
		return fmt.Sprintf("ip addr %s %s dev %s", verb, c.Address.Prefix, c.Address.Dev)
	case KindSysctl:
		return fmt.Sprintf("sysctl %s=%s", c.Sysctl.Key, c.Sysctl.Value)
	case KindRoute:
		verb := string(c.Op)
		if c.Op == OpDelete {
			verb = "del"
		}
		return fmt.Sprintf("ip %s route %s %s", c.Route.Family.Flag(), verb, c.Route.Args(model.NumericTable))
	case KindRule:
		verb := "add"
		if c.Op == OpDelete {
			verb = "del"
		}
		return fmt.Sprintf("ip %s rule %s %s", c.Rule.Family.Flag(), verb, c.Rule.Args(model.NumericTable))
	case KindChain:
		if c.Op == OpDelete {
			return fmt.Sprintf("%s -t %s: delete chain %s", iptables.BackendCommand(c.Chain.Family, c.Chain.Backend), c.Chain.Table, c.Chain.Name)
		}
		var hooks []string
		for _, h := range c.Chain.Jumps {
			hooks = append(hooks, h.Chain)
		}
		s := fmt.Sprintf("%s -t %s: chain %s with %d rule(s)", iptables.BackendCommand(c.Chain.Family, c.Chain.Backend), c.Chain.Table, c.Chain.Name, len(c.Chain.Rules))
		if len(hooks) > 0 {
			s += ", jumped to from " + strings.Join(hooks, ", ")
		}
		return s
	case KindConntrack:
		return "conntrack -D " + strings.Join(c.Conntrack.args(), " ")
	case KindNFT:
		if c.Op == OpDelete {
			return fmt.Sprintf("nft %s %s: delete chain %s", NFTFamily, NFTTable, c.NFT.Name)
		}
		var hooks []string
		for _, h := range c.NFT.Jumps {
			hooks = append(hooks, strings.ToLower(h.Chain))
		}
		s := fmt.Sprintf("nft %s %s: chain %s (iptables %s) with %d rule(s)", NFTFamily, NFTTable, c.NFT.Name, c.NFT.Table, len(c.NFT.Rules))
		if len(hooks) > 0 {
			s += ", hooked at " + strings.Join(hooks, ", ")
		}
		return s
	}
	return string(c.Kind) + " " + string(c.Op)
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// args renders the flush as conntrack(8) arguments.
func (ct ConntrackFlush) args() []string {
	out := []string{"-f", "ipv4"}
	if ct.Family == inet.V6 {
		out[1] = "ipv6"
	}
	if ct.Proto != 0 {
		out = append(out, "-p", inet.ProtoName(ct.Proto))
	}
	if ct.Src.IsValid() {
		out = append(out, "-s", prefixArg(ct.Src))
	}
	if ct.Dst.IsValid() {
		out = append(out, "-d", prefixArg(ct.Dst))
	}
	if ct.DPort != 0 {
		out = append(out, "--dport", fmt.Sprint(ct.DPort))
	}
	if ct.Mark != nil {
		out = append(out, "--mark", fmt.Sprintf("%#x/%#x", ct.Mark.Value, ct.Mark.Mask))
	}
	return out
}

func prefixArg(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// Desired is what a wizard wants a host to look like: objects that must exist (with these
// exact fields) and objects that must not. Desired.Plan diffs it against the current state.
type Desired struct {
	Intent     string
	TableNames []RTTable
	Links      []model.Link // tunnel or vxlan links, with the addresses they must carry
	Addresses  []LinkAddress
	Sysctls    []SysctlValue
	Routes     []model.Route
	Rules      []model.Rule
	Chains     []ChainSpec // roundtrip's chains with their whole contents
	// NFTChains are roundtrip's chains in its own nft table (KindNFT), for a host whose
	// firewall is native nftables; RemoveNFTChains go from that table.
	NFTChains []ChainSpec

	RemoveRules     []model.Rule
	RemoveRoutes    []model.Route
	RemoveChains    []ChainSpec // by family, table and name
	RemoveAddresses []LinkAddress
	RemoveLinks     []string
	RemoveTables    []RTTable
	RemoveNFTChains []ChainSpec

	// Flush lists conntrack entries to delete when anything else changes.
	Flush []ConntrackFlush
	// Why explains objects by their Summary-free key; optional comments for renderings.
	Why map[string]string
}

// Plan returns the changes that turn cur into the desired state, ordered so that new paths
// exist before old ones go (tables, links, addresses, sysctls, routes, rules, chains, then the
// removals in reverse, then conntrack), and validated against cur. A desired state that cur
// already has gives an empty plan.
func (d *Desired) Plan(cur *model.State) (*Plan, error) {
	p := New(d.Intent)
	add := func(c Change) { p.Changes = append(p.Changes, c) }
	for _, t := range d.TableNames {
		add(Change{Kind: KindTable, Op: OpAdd, Table: &t})
	}
	for _, l := range d.Links {
		add(Change{Kind: KindLink, Op: OpAdd, Link: &l})
	}
	for _, a := range d.Addresses {
		add(Change{Kind: KindAddress, Op: OpAdd, Address: &a})
	}
	for _, s := range d.Sysctls {
		add(Change{Kind: KindSysctl, Op: OpSet, Sysctl: &s})
	}
	for _, r := range d.Routes {
		add(Change{Kind: KindRoute, Op: OpAdd, Route: &r})
	}
	for _, r := range d.Rules {
		add(Change{Kind: KindRule, Op: OpAdd, Rule: &r})
	}
	backend := d.chainBackends(cur)
	for _, c := range d.Chains {
		if c.Backend == "" {
			c.Backend = backend[c.Family]
		}
		add(Change{Kind: KindChain, Op: OpSet, Chain: &c})
	}
	for _, c := range d.NFTChains {
		add(Change{Kind: KindNFT, Op: OpSet, NFT: &c})
	}
	for _, r := range d.RemoveRules {
		add(Change{Kind: KindRule, Op: OpDelete, Rule: &r})
	}
	for _, r := range d.RemoveRoutes {
		add(Change{Kind: KindRoute, Op: OpDelete, Route: &r})
	}
	for _, c := range d.RemoveChains {
		if c.Backend == "" {
			c.Backend = backend[c.Family]
		}
		add(Change{Kind: KindChain, Op: OpDelete, Chain: &ChainSpec{Family: c.Family, Backend: c.Backend, Table: c.Table, Name: c.Name}})
	}
	for _, c := range d.RemoveNFTChains {
		add(Change{Kind: KindNFT, Op: OpDelete, NFT: &ChainSpec{Family: c.Family, Table: c.Table, Name: c.Name}})
	}
	for _, a := range d.RemoveAddresses {
		add(Change{Kind: KindAddress, Op: OpDelete, Address: &a})
	}
	for _, n := range d.RemoveLinks {
		add(Change{Kind: KindLink, Op: OpDelete, Link: &model.Link{Name: n}})
	}
	for _, t := range d.RemoveTables {
		add(Change{Kind: KindTable, Op: OpDelete, Table: &t})
	}
	for _, f := range d.Flush {
		add(Change{Kind: KindConntrack, Op: OpFlush, Conntrack: &f})
	}
	for i := range p.Changes {
		p.Changes[i].Why = d.Why[p.Changes[i].object()]
	}
	if err := p.Check(); err != nil {
		return nil, err
	}
	p = p.Pending(cur)
	if err := p.Validate(cur); err != nil {
		return nil, err
	}
	return p, nil
}

// chainBackends picks, per family, the one iptables backend the plan's chains go into
// (Ruleset.PlanBackend over all of them).
func (d *Desired) chainBackends(cur *model.State) map[inet.Family]string {
	tables, chains := map[inet.Family][]string{}, map[inet.Family][]string{}
	for _, c := range slices.Concat(d.Chains, d.RemoveChains) {
		tables[c.Family] = append(tables[c.Family], c.Table)
		chains[c.Family] = append(chains[c.Family], c.Name)
	}
	out := map[inet.Family]string{}
	for f := range tables {
		out[f] = cur.Netfilter.PlanBackend(f, tables[f], chains[f])
	}
	return out
}

// ObjectKey is the key Desired.Why uses for a change's comment.
func (c Change) ObjectKey() string { return c.object() }

// MaxFileSize bounds a plan file (apply, plan show, plan render).
const MaxFileSize = 2 << 30

// planHWAddrOK checks a hardware address a plan gives a new link: one the kernel takes for an
// Ethernet-like link (net.ParseMAC's 6, 8 or 20 bytes, written with colons).
func planHWAddrOK(s string) error {
	if err := model.CheckHWAddr(s); err != nil {
		return err
	}
	if _, err := net.ParseMAC(s); err != nil {
		return fmt.Errorf("hardware address %q: %w", s, err)
	}
	return nil
}
