package model

import (
	"fmt"
	"slices"
	"strings"

	"roundtrip/engine/inet"
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
	for _, t := range s.Netfilter.Tables {
		cmd := "iptables"
		if t.Family == inet.V6 {
			cmd = "ip6tables"
		}
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
	for k, v := range s.Sysctls {
		if k == SysctlConntrackCount {
			continue
		}
		out = append(out, fmt.Sprintf("sysctl %s=%s", k, v))
	}
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
