package wizards

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/nft"
	"roundtrip/engine/plan"
	"roundtrip/engine/quote"
)

// On a host whose firewall is native nftables (State.UseNFT, or --firewall nft) a wizard's
// chains go into roundtrip's own nft table (plan.KindNFT) rather than into iptables.

// shared plans this run's rules (group.tag) in one of roundtrip's chains that several wizard
// runs share (each port forward adds its rules to RT-PF-PRE). In iptables the chain holds
// every run's rules (sharedChain). In roundtrip's nft table each run has chains of its own,
// NAME.HASH (of its tag): the table holds nft rules, which a plan (made of iptables rules)
// could not carry over for the other runs; a run whose group is empty removes its chain.
func (b *builder) shared(table, name string, hooks []plan.Jump, group tagged, why string) {
	if !b.s.UseNFT() {
		if len(group.rules) > 0 || b.s.Netfilter.FindChain(inet.V4, table, name) != nil {
			b.chain(sharedChain(b.s, table, name, hooks, group), why)
		}
		return
	}
	sum := sha256.Sum256([]byte(group.tag))
	own := name + "." + hex.EncodeToString(sum[:4])
	spec := plan.ChainSpec{Family: inet.V4, Table: table, Name: own, Jumps: hooks, Rules: group.rules}
	if len(group.rules) > 0 {
		b.nftChain(spec, why)
		return
	}
	if t := nftOwnTable(b.s); t != nil && slices.ContainsFunc(t.Chains, func(c *nft.Chain) bool { return c.Name == own }) {
		spec.Jumps, spec.Rules = nil, nil
		b.d.RemoveNFTChains = append(b.d.RemoveNFTChains, spec)
		b.d.Why[plan.Change{Kind: plan.KindNFT, Op: plan.OpDelete, NFT: &spec}.ObjectKey()] = "this run no longer needs it"
	}
}

// nftChain plans one of roundtrip's chains in its nft table, replacing the chain of that name.
func (b *builder) nftChain(c plan.ChainSpec, why string) {
	if b.s.WriteFirewall == "" && b.noNFT == nil {
		// nft was the host's choice, not the user's: rules nft cannot take send the whole
		// plan to iptables (withNFTFallback) rather than fail.
		if err := plan.NFTTranslates(c); err != nil {
			b.noNFT = err
		}
	}
	if b.claim(plan.Change{Kind: plan.KindNFT, Op: plan.OpSet, NFT: &c}, why) {
		b.d.NFTChains = append(b.d.NFTChains, c)
	}
}

// sweepNFT plans the removal of this wizard's chains in roundtrip's nft table that the current
// options no longer want.
func (b *builder) sweepNFT() {
	t := nftOwnTable(b.s)
	if t == nil {
		return
	}
	for _, c := range t.Chains {
		if c.Hook != "" || !strings.HasPrefix(c.Name, b.owner) {
			continue
		}
		if slices.ContainsFunc(b.d.NFTChains, func(d plan.ChainSpec) bool { return d.Name == c.Name }) {
			continue
		}
		// Deleting needs only the name: the base chains of every hook go with the chain.
		spec := plan.ChainSpec{Family: inet.V4, Table: "filter", Name: c.Name}
		b.d.RemoveNFTChains = append(b.d.RemoveNFTChains, spec)
		b.d.Why[plan.Change{Kind: plan.KindNFT, Op: plan.OpDelete, NFT: &spec}.ObjectKey()] = "left from an earlier run of this wizard with other options"
	}
}

// nftOwnTable returns roundtrip's own nft table on the host, or nil.
func nftOwnTable(s *model.State) *nft.Table {
	if s.Nftables == nil {
		return nil
	}
	for _, t := range s.Nftables.Tables {
		if string(t.Family) == plan.NFTFamily && t.Name == plan.NFTTable {
			return t
		}
	}
	return nil
}

// nftNote says where a plan's netfilter rules go on a host whose firewall is native nftables:
// into roundtrip's own nft table, or (--firewall iptables, or a host with iptables rules of
// its own) into iptables' tables beside the nft ones. Either way a packet must be accepted by
// every base chain of its hook: the note names the host's chains whose policy drops forwarded
// packets, which roundtrip's table cannot override, and the rule the operator adds to them.
// Empty when the plan changes no netfilter rule or the host has no native nft table.
func nftNote(s *model.State, p *plan.Plan) string {
	hasNFT := slices.ContainsFunc(p.Changes, func(c plan.Change) bool { return c.Kind == plan.KindNFT })
	hasChain := slices.ContainsFunc(p.Changes, func(c plan.Change) bool { return c.Kind == plan.KindChain })
	if !s.NativeNFT() || !hasNFT && !hasChain {
		return ""
	}
	var native []string
	for _, t := range s.Nftables.Tables {
		if t.HasNative() && !(string(t.Family) == plan.NFTFamily && t.Name == plan.NFTTable) {
			native = append(native, t.String())
		}
	}
	var note string
	if hasNFT {
		note = "this host's firewall is native nftables (" + strings.Join(native, ", ") + "): the plan's rules go into roundtrip's own table " +
			plan.NFTFamily + " " + plan.NFTTable + ", loaded with nft -f in one transaction (rollback restores the table as it was); " +
			"--firewall iptables puts them into iptables instead"
	} else {
		note = "this host's firewall is native nftables (" + strings.Join(native, ", ") + "): the plan's rules go into iptables' " +
			"tables, beside those; both run on each hook in priority order, so a drop or a NAT " +
			"in an nft chain still applies (roundtrip trace shows both). `roundtrip plan render --format nft` gives " +
			"the same rules as a native nft table to load instead, and --firewall nft applies them so" + sharedTables(s, p)
	}
	if drops := nftForwardDrops(s); len(drops) > 0 && planForwards(p) {
		var adds []string
		for _, d := range drops {
			for _, a := range forwardAccepts(p) {
				adds = append(adds, "nft insert rule "+d+" "+a)
			}
		}
		note += fmt.Sprintf("; the host's forward chain %s drops by default, and an accept in another table cannot override that "+
			"(a packet must pass every base chain of its hook): roundtrip does not change the host's own tables, so this wizard's "+
			"forwarded connections stay dropped until you accept them there, e.g. %s", strings.Join(drops, ", "), strings.Join(adds, "; "))
	}
	return note
}

// forwardAccepts returns the nft rules that accept the forwarded connections of a plan's NAT
// rules in a forward chain: `ct status dnat accept` for DNATs, the source, destination and
// output interface of each SNAT or masquerade. Values are checked and quoted.
func forwardAccepts(p *plan.Plan) []string {
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, c := range p.Changes {
		spec := c.NFT
		if spec == nil {
			spec = c.Chain
		}
		if spec == nil || c.Op == plan.OpDelete || spec.Family != inet.V4 {
			continue
		}
		for _, rs := range spec.Rules {
			r, err := iptables.ParseRule(inet.V4, rs)
			if err != nil {
				continue
			}
			switch r.Target {
			case "DNAT":
				add("ct status dnat accept")
			case "SNAT", "MASQUERADE":
				var parts []string
				for _, a := range []struct {
					dir string
					v   *iptables.NegAddr
				}{{"saddr", r.Src}, {"daddr", r.Dst}} {
					if a.v == nil || a.v.Not {
						continue
					}
					if pf, err := netip.ParsePrefix(a.v.Prefix); err == nil && pf.Addr().Is4() {
						parts = append(parts, "ip "+a.dir+" "+pf.Masked().String())
					}
				}
				if r.Out != nil && !r.Out.Not && !strings.HasSuffix(r.Out.Value, "+") {
					if q, err := quote.NFTString(r.Out.Value); err == nil {
						parts = append(parts, "oifname "+q)
					}
				}
				add(strings.Join(append(parts, "accept"), " "))
			}
		}
	}
	if len(out) == 0 {
		out = append(out, "ct status dnat accept")
	}
	return out
}

// nftForwardDrops lists the host's native base chains on the forward hook whose policy
// drops, as "FAMILY TABLE CHAIN".
func nftForwardDrops(s *model.State) []string {
	var out []string
	for _, t := range s.Nftables.Tables {
		if t.Origin != "" || string(t.Family) == plan.NFTFamily && t.Name == plan.NFTTable {
			continue
		}
		if t.Family != "inet" && t.Family != "ip" {
			continue
		}
		for _, c := range t.Chains {
			if c.Hook == "forward" && c.Policy == "drop" {
				out = append(out, fmt.Sprintf("%s %s %s", t.Family, t.Name, c.Name))
			}
		}
	}
	return out
}

// planForwards reports whether the plan turns on forwarding or NATs forwarded traffic.
func planForwards(p *plan.Plan) bool {
	return slices.ContainsFunc(p.Changes, func(c plan.Change) bool {
		spec := c.NFT
		if spec == nil {
			spec = c.Chain
		}
		return spec != nil && spec.Table == "nat" || c.Sysctl != nil && c.Sysctl.Key == model.SysctlIPForward
	})
}

// sharedTables warns, for each native nft table that has the name of an iptables table the
// plan writes into through iptables-nft (a hand-written `table ip nat`), that iptables-nft
// writes into that very table: nft then calls the whole table managed by iptables-nft, and
// the built-in chains iptables-nft adds to it for the plan's jumps stay after a rollback
// (empty, with policy accept).
func sharedTables(s *model.State, p *plan.Plan) string {
	var out []string
	for _, c := range p.Changes {
		if c.Kind != plan.KindChain || c.Chain == nil || c.Chain.Backend == iptables.BackendLegacy ||
			c.Chain.Backend == "" && s.Netfilter.Backend == iptables.BackendLegacy {
			continue
		}
		fam := nft.FamilyIP
		if c.Chain.Family == inet.V6 {
			fam = nft.FamilyIP6
		}
		t := s.Nftables.Table(fam, c.Chain.Table)
		if t == nil || !t.HasNative() {
			continue
		}
		var added []string
		for _, j := range c.Chain.Jumps {
			if t.Chain(j.Chain) == nil && !slices.Contains(added, j.Chain) {
				added = append(added, j.Chain)
			}
		}
		w := fmt.Sprintf("; iptables-nft writes into this host's own table %s (it has iptables' name), which nft then calls managed by iptables-nft", t)
		if len(added) > 0 {
			w += fmt.Sprintf(", and the built-in chain %s it adds there stays, empty, after a rollback", strings.Join(added, ", "))
		}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return strings.Join(out, "")
}

// nftFallback is a wizard run that chose roundtrip's nft table by the host's firewall and met
// a rule that has no nft form there.
type nftFallback struct{ why error }

func (e *nftFallback) Error() string {
	return "roundtrip's nft table cannot hold this plan's rules: " + e.why.Error()
}

// withNFTFallback runs a wizard's planning; when it chose nft on its own (the host's firewall
// is native nftables) and a rule cannot go there, it plans again into iptables, beside the
// native tables, and says why. With --firewall nft the untranslatable rule is an error.
func withNFTFallback(s *model.State, planOnce func(*model.State) (*Result, error)) (*Result, error) {
	res, err := planOnce(s)
	var fb *nftFallback
	if !errors.As(err, &fb) {
		return res, err
	}
	ipt := s.Clone()
	ipt.WriteFirewall = model.FirewallIPTables
	if res, err = planOnce(ipt); err != nil {
		return nil, err
	}
	res.Notes = append(res.Notes, fmt.Sprintf("this plan's rules go into iptables, not roundtrip's own nft table, which cannot hold them (%v); --firewall nft insists and fails", fb.why))
	return res, nil
}
