package kernel_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
)

// TestPrivilegedReadIPSets creates ipsets with the ipset tool and checks that ReadIPSets (over
// netlink) reads what `ipset save` prints from the same kernel: types, families, netmask,
// members with ports, protocols and nomatch, and a set large enough to take several messages.
func TestPrivilegedReadIPSets(t *testing.T) {
	lab.RequireTool(t, "ipset")
	l := lab.New(t)
	ns := l.NS("hbr-ipset")
	for _, c := range [][]string{
		{"create", "nets", "hash:net"},
		{"add", "nets", "198.51.100.0/24"},
		{"add", "nets", "198.51.100.128/25", "nomatch"},
		{"create", "nets6", "hash:net", "family", "inet6"},
		{"add", "nets6", "2001:db8:1::/48"},
		{"create", "hosts", "hash:ip", "netmask", "24"},
		{"add", "hosts", "203.0.113.77"},
		{"create", "svc", "hash:ip,port"},
		{"add", "svc", "10.0.0.1,tcp:22"},
		{"add", "svc", "10.0.0.1,udp:53"},
		{"create", "big", "hash:net", "maxelem", "100000"},
	} {
		ns.Run("ipset", c...)
	}
	var restore strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&restore, "add big 10.%d.%d.0/24\n", 100+i/256, i%256)
	}
	ns.Run("sh", "-c", "printf '%s' \"$1\" | ipset restore", "sh", restore.String())

	got, err := kernel.ReadIPSets(kernel.Namespace{Name: ns.Name})
	if err != nil {
		t.Fatal(err)
	}
	want := parseIPSetSave(t, ns.Run("ipset", "save"))
	if len(got) != len(want) {
		t.Fatalf("read %d sets, ipset save has %d", len(got), len(want))
	}
	for _, g := range got {
		w, ok := want[g.Name]
		if !ok {
			t.Errorf("set %s is not in ipset save", g.Name)
			continue
		}
		key := func(m model.IPSetMember) string { return fmt.Sprintf("%s/%d/%d/%v", m.Net, m.Proto, m.Port, m.NoMatch) }
		gm, wm := make([]string, 0, len(g.Members)), make([]string, 0, len(w.Members))
		for _, m := range g.Members {
			gm = append(gm, key(m))
		}
		for _, m := range w.Members {
			wm = append(wm, key(m))
		}
		slices.Sort(gm)
		slices.Sort(wm)
		if g.Type != w.Type || g.Family != w.Family || g.Netmask != w.Netmask || !slices.Equal(gm, wm) {
			t.Errorf("set %s: read %s %v netmask %d, %d members; ipset save: %s %v netmask %d, %d members", g.Name, g.Type, g.Family, g.Netmask, len(gm), w.Type, w.Family, w.Netmask, len(wm))
		}
		if err := g.Validate(); err != nil {
			t.Errorf("set %s does not validate: %v", g.Name, err)
		}
	}
	if big := want["big"]; len(big.Members) != 3000 {
		t.Errorf("ipset save lists %d members of big", len(big.Members))
	}
}

// parseIPSetSave reads the create and add lines of `ipset save`.
func parseIPSetSave(t *testing.T, out string) map[string]*model.IPSet {
	sets := map[string]*model.IPSet{}
	for _, line := range strings.Split(out, "\n") {
		w := strings.Fields(line)
		if len(w) < 3 {
			continue
		}
		switch w[0] {
		case "create":
			s := &model.IPSet{Name: w[1], Type: w[2], Family: inet.V4}
			for i := 3; i+1 < len(w); i++ {
				switch w[i] {
				case "family":
					if w[i+1] == "inet6" {
						s.Family = inet.V6
					}
				case "netmask":
					s.Netmask, _ = strconv.Atoi(w[i+1])
				}
			}
			sets[w[1]] = s
		case "add":
			s := sets[w[1]]
			parts := strings.Split(w[2], ",")
			p, err := netip.ParsePrefix(parts[0])
			if err != nil {
				a := netip.MustParseAddr(parts[0])
				p = netip.PrefixFrom(a, a.BitLen())
			}
			m := model.IPSetMember{Net: p, NoMatch: slices.Contains(w[3:], "nomatch")}
			if len(parts) > 1 {
				proto, port, _ := strings.Cut(parts[1], ":")
				m.Proto, _ = inet.ProtoNumber(proto)
				n, _ := strconv.Atoi(port)
				m.Port = uint16(n)
			}
			s.Members = append(s.Members, m)
		}
	}
	if len(sets) == 0 {
		t.Fatalf("ipset save printed no sets:\n%s", out)
	}
	return sets
}
