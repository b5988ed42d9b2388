package model

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Lines renders the configuration part of a state as one line per item, in ip/iptables/sysctl
// syntax, in a canonical order. Volatile readings (counters, operational state, the conntrack
// count) are left out, so two states with equal Lines are configured the same. So are ipsets
// and bridge port flags: roundtrip never changes them, and the software that does (fail2ban,
// CrowdSec, Docker) changes them all the time, which would read as drift after an apply.
func (s *State) Lines() []string {
	var out []string
	names := s.TableName
	for id, n := range s.TableNames {
		out = append(out, fmt.Sprintf("table %d %s", id, n))
	}
	for _, l := range s.Links {
		line := fmt.Sprintf("link %s %s mtu %d", l.Name, l.Kind, l.MTU)
		if l.Up {
			line += " up"
		}
		if l.Master != "" {
			line += " master " + l.Master
		}
		if t := l.Tunnel; t != nil {
			line += fmt.Sprintf(" tunnel local %s remote %s ttl %d key %d vni %d port %d group %s dev %s",
				t.Local, t.Remote, t.TTL, t.Key, t.VNI, t.Port, t.Group, t.Dev)
		}
		out = append(out, line)
		for _, a := range l.Addrs {
			line := fmt.Sprintf("addr %s dev %s", a.Prefix, l.Name)
			if a.Peer.IsValid() {
				line += " peer " + a.Peer.String()
			}
			if a.Scope != "" && a.Scope != "global" {
				line += " scope " + a.Scope
			}
			out = append(out, line)
		}
	}
	for _, r := range s.Rules {
		out = append(out, fmt.Sprintf("ip %s rule %s", r.Family.Flag(), r.Args(names)))
	}
	for _, r := range s.Routes {
		out = append(out, fmt.Sprintf("ip %s route %s", r.Family.Flag(), r.Args(names)))
	}
	for i := range s.Netfilter.Tables {
		t := &s.Netfilter.Tables[i]
		// With both backends loaded the line names the backend, so the same rule moving from
		// one backend to the other is a difference.
		cmd := s.Netfilter.TableCommand(t)
		for _, c := range t.Chains {
			if c.Policy == "ACCEPT" && len(c.Rules) == 0 {
				// An empty built-in chain that accepts is what a table that was never loaded
				// does: iptables-nft keeps a table once anything used it, so a rollback that
				// removed everything it added still leaves one, and must compare equal.
				continue
			} else if c.Policy != "" {
				out = append(out, fmt.Sprintf("%s -t %s -P %s %s", cmd, t.Name, c.Name, c.Policy))
			} else {
				out = append(out, fmt.Sprintf("%s -t %s -N %s", cmd, t.Name, c.Name))
			}
			for i, r := range c.Rules {
				// The position matters in a chain, so it is part of the line.
				out = append(out, fmt.Sprintf("%s -t %s -A %s [%d] %s", cmd, t.Name, c.Name, i+1, r.Spec))
			}
		}
	}
	for _, f := range s.Netfilter.Foreign {
		out = append(out, "nft table "+f)
	}
	for _, h := range s.Netfilter.Hidden {
		out = append(out, "netfilter hidden: "+h)
	}
	for k, v := range s.Sysctls {
		if k == SysctlConntrackCount {
			continue
		}
		out = append(out, fmt.Sprintf("sysctl %s=%s", k, v))
	}
	out = append(out, s.nftLines()...)
	slices.Sort(out)
	return out
}

// Diff describes how b differs from a, one "-" or "+" line per item (in Lines syntax); it is
// empty when the two are configured the same.
func Diff(a, b *State) string {
	al, bl := a.Lines(), b.Lines()
	count := map[string]int{}
	for _, l := range al {
		count[l]++
	}
	for _, l := range bl {
		count[l]--
	}
	var out strings.Builder
	// Walk the sorted union so the output is stable and groups related lines.
	all := slices.Concat(al, bl)
	slices.Sort(all)
	all = slices.Compact(all)
	for _, l := range all {
		switch n := count[l]; {
		case n > 0:
			for range n {
				fmt.Fprintf(&out, "- %s\n", l)
			}
		case n < 0:
			for range -n {
				fmt.Fprintf(&out, "+ %s\n", l)
			}
		}
	}
	return out.String()
}

// Equal reports whether two states are configured the same (see Lines).
func Equal(a, b *State) bool { return Diff(a, b) == "" }

// String renders the state in Lines syntax.
func (s *State) String() string { return strings.Join(s.Lines(), "\n") + "\n" }

// counterText is the volatile part of an nft rule's text.
var counterText = regexp.MustCompile(`counter packets [0-9]+ bytes [0-9]+`)

// nftLines renders the native nftables tables (iptables-nft's own are in Netfilter already):
// base chains with hook, priority and policy, rules in order without their counters, and
// sets by their elements' count.
func (s *State) nftLines() []string {
	if s.Nftables == nil {
		return nil
	}
	var out []string
	for _, t := range s.Nftables.Tables {
		if t = t.NativeView(); t == nil {
			continue
		}
		out = append(out, "nft table "+t.String())
		for _, c := range t.Chains {
			line := fmt.Sprintf("nft chain %s %s", t, c.Name)
			if c.Base() {
				line += fmt.Sprintf(" type %s hook %s priority %d policy %s", c.Type, c.Hook, c.Priority, c.Policy)
			}
			out = append(out, line)
			for i, r := range c.Rules {
				out = append(out, fmt.Sprintf("nft rule %s %s [%d] %s", t, c.Name, i+1, counterText.ReplaceAllString(r.Text, "counter")))
			}
		}
		for _, st := range t.Sets {
			if st.Has("anonymous") {
				continue
			}
			line := fmt.Sprintf("nft set %s %s %s", t, st.Name, st.KeyType)
			if !st.Has("timeout") && !st.Has("eval") && !st.Has("dynamic") {
				// the elements of a dynamic set come and go with traffic
				line += fmt.Sprintf(" elements %d", len(st.Elements))
			}
			out = append(out, line)
		}
	}
	return out
}
