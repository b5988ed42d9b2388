package kerneltest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"roundtrip/engine/nft"
	"roundtrip/engine/plan"
)

// The fake models roundtrip's own nft table only, as far as the scripts roundtrip loads
// (plan.NFTScript, plan.NFTRestoreScript) and the listing it prints (NFTList) need: chains
// with their comment, base chains with their hook, and rules as text. A statement of any other
// form is refused, as a kernel refuses what it does not know.

type fakeNFTTable struct {
	chains []*fakeNFTChain
}

type fakeNFTChain struct {
	name, comment string
	base          string // "type ... hook ... priority ...; policy ...;" of a base chain
	hook          string
	rules         []string
}

func (t *fakeNFTTable) clone() *fakeNFTTable {
	if t == nil {
		return nil
	}
	out := &fakeNFTTable{}
	for _, c := range t.chains {
		x := *c
		x.rules = slices.Clone(c.rules)
		out.chains = append(out.chains, &x)
	}
	return out
}

func (t *fakeNFTTable) chain(name string) *fakeNFTChain {
	for _, c := range t.chains {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (t *fakeNFTTable) ensure(name string) *fakeNFTChain {
	if c := t.chain(name); c != nil {
		return c
	}
	c := &fakeNFTChain{name: name}
	t.chains = append(t.chains, c)
	return c
}

// listing prints the table as `nft list table inet roundtrip` does.
func (t *fakeNFTTable) listing() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", plan.NFTFamily, plan.NFTTable)
	for i, c := range t.chains {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\tchain %s {\n", c.name)
		if c.comment != "" {
			fmt.Fprintf(&b, "\t\tcomment %q\n", c.comment)
		}
		if c.base != "" {
			fmt.Fprintf(&b, "\t\t%s\n", c.base)
		}
		for _, r := range c.rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// nftRuleset returns rs with roundtrip's table as the fake holds it (a new ruleset: states
// share theirs).
func (f *Fake) nftRuleset(rs *nft.Ruleset) *nft.Ruleset {
	out := &nft.Ruleset{}
	if rs != nil {
		*out = *rs
		out.Tables = slices.DeleteFunc(slices.Clone(rs.Tables), func(t *nft.Table) bool {
			return string(t.Family) == plan.NFTFamily && t.Name == plan.NFTTable
		})
	}
	if f.nftTable != nil {
		nt := &nft.Table{Family: nft.Family(plan.NFTFamily), Name: plan.NFTTable}
		for _, c := range f.nftTable.chains {
			ch := &nft.Chain{Name: c.name, Comment: c.comment, Hook: nft.Hook(c.hook)}
			if c.base != "" {
				ch.Policy = "accept"
			}
			for _, r := range c.rules {
				ch.Rules = append(ch.Rules, &nft.Rule{Text: r})
			}
			nt.Chains = append(nt.Chains, ch)
		}
		out.Tables = append(out.Tables, nt)
	}
	if len(out.Tables) == 0 {
		return nil
	}
	return out
}

// ReadNftables implements kernel.Host.
func (f *Fake) ReadNftables(context.Context) (*nft.Ruleset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nftRuleset(f.state.Nftables), nil
}

// NFTList implements kernel.Host.
func (f *Fake) NFTList(context.Context) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nftTable == nil {
		return "", false, nil
	}
	return f.nftTable.listing(), true, nil
}

// SetNFTListing gives the fake roundtrip's table as a listing (the form NFTList prints), for
// a test that starts from one.
func (f *Fake) SetNFTListing(listing string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, err := loadFakeNFT(nil, listing)
	if err != nil {
		return err
	}
	f.nftTable = t
	return nil
}

// NFTLoad implements kernel.Host: the script is interpreted as one transaction (all of it or,
// on an error, nothing), logged as op kind "nft" and kept in NFTLoaded; a check changes
// nothing and is not an operation.
func (f *Fake) NFTLoad(_ context.Context, script []byte, check bool) error {
	f.mu.Lock()
	cur := f.nftTable.clone()
	f.mu.Unlock()
	next, err := loadFakeNFT(cur, string(script))
	if check || err != nil {
		return err
	}
	return f.op("nft", "nft -f - # "+strconv.Itoa(len(script))+" bytes", func() error {
		f.nftTable = next
		f.NFTLoaded = append(f.NFTLoaded, string(script))
		return nil
	})
}

// loadFakeNFT applies a script of roundtrip's forms to t (nil: no table) and returns the result.
func loadFakeNFT(t *fakeNFTTable, script string) (*fakeNFTTable, error) {
	tbl := plan.NFTFamily + " " + plan.NFTTable
	var in *fakeNFTChain // the chain of a block being read
	block := false
	for n, line := range strings.Split(script, "\n") {
		l := strings.TrimSpace(line)
		bad := func() error { return fmt.Errorf("the fake does not model line %d of the nft script: %q", n+1, l) }
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case in != nil && l == "}":
			in = nil
		case in != nil && strings.HasPrefix(l, "comment "):
			c, err := strconv.Unquote(strings.TrimPrefix(l, "comment "))
			if err != nil {
				return nil, bad()
			}
			in.comment = c
		case in != nil && strings.HasPrefix(l, "type "):
			in.base = l
			f := strings.Fields(l)
			if len(f) < 4 || f[2] != "hook" {
				return nil, bad()
			}
			in.hook = f[3]
		case in != nil:
			in.rules = append(in.rules, l)
		case block && l == "}":
			block = false
		case block && strings.HasPrefix(l, "chain ") && strings.HasSuffix(l, " {"):
			in = t.ensure(strings.TrimSuffix(strings.TrimPrefix(l, "chain "), " {"))
		case l == "table "+tbl+" {}":
			if t == nil {
				t = &fakeNFTTable{}
			}
		case l == "table "+tbl+" {":
			if t == nil {
				t = &fakeNFTTable{}
			}
			block = true
		case l == "delete table "+tbl:
			if t == nil {
				return nil, fmt.Errorf("line %d: delete table: no such file or directory", n+1)
			}
			t = nil
		case t == nil:
			return nil, fmt.Errorf("line %d: %s: no such file or directory (no table)", n+1, l)
		case strings.HasPrefix(l, "add chain "+tbl+" "):
			rest := strings.TrimPrefix(l, "add chain "+tbl+" ")
			name, base, hasBase := strings.Cut(rest, " { ")
			c := t.ensure(name)
			if hasBase {
				c.base = strings.TrimSuffix(strings.TrimSpace(base), " }")
				f := strings.Fields(c.base)
				if len(f) < 4 || f[2] != "hook" {
					return nil, bad()
				}
				c.hook = f[3]
			}
		case strings.HasPrefix(l, "delete chain "+tbl+" "):
			name := strings.TrimPrefix(l, "delete chain "+tbl+" ")
			if t.chain(name) == nil {
				return nil, fmt.Errorf("line %d: delete chain %s: no such file or directory", n+1, name)
			}
			t.chains = slices.DeleteFunc(t.chains, func(c *fakeNFTChain) bool { return c.name == name })
		case strings.HasPrefix(l, "flush chain "+tbl+" "):
			c := t.chain(strings.TrimPrefix(l, "flush chain "+tbl+" "))
			if c == nil {
				return nil, bad()
			}
			c.rules = nil
		case strings.HasPrefix(l, "add rule "+tbl+" "):
			name, rule, ok := strings.Cut(strings.TrimPrefix(l, "add rule "+tbl+" "), " ")
			c := t.chain(name)
			if !ok || c == nil {
				return nil, bad()
			}
			c.rules = append(c.rules, rule)
		default:
			return nil, bad()
		}
	}
	if in != nil || block {
		return nil, fmt.Errorf("the nft script ends inside a block")
	}
	return t, nil
}
