package model

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode"

	"roundtrip/engine/inet"
)

// IPSet is one ipset (ipset list): its name, type and members, as the set match of iptables
// (-m set --match-set) tests them.
type IPSet struct {
	Name   string      `json:"name"`
	Type   string      `json:"type"` // hash:net, hash:ip, hash:ip,port, ...
	Family inet.Family `json:"family"`
	// Netmask is hash:ip's netmask (addresses are stored masked); 0 for none.
	Netmask int           `json:"netmask,omitempty"`
	Members []IPSetMember `json:"members"`
}

// IPSetMember is one entry: an address or network, with a protocol and port for the types that
// have them (hash:ip,port), and the nomatch flag of hash:net entries (an exception).
type IPSetMember struct {
	Net     netip.Prefix `json:"net"`
	Proto   int          `json:"proto,omitempty"`
	Port    uint16       `json:"port,omitempty"`
	NoMatch bool         `json:"nomatch,omitempty"`
}

// IPSetByName returns the set with that name, or nil.
func (s *State) IPSetByName(name string) *IPSet {
	for i := range s.IPSets {
		if s.IPSets[i].Name == name {
			return &s.IPSets[i]
		}
	}
	return nil
}

// MaxIPSetName is the longest set name the kernel takes (IPSET_MAXNAMELEN - 1).
const MaxIPSetName = 31

// Validate checks a set loaded from a snapshot: a name and type of printable characters that
// fit the kernel's limits, members of the set's family.
func (p *IPSet) Validate() error {
	if p.Name == "" || len(p.Name) > MaxIPSetName || strings.IndexFunc(p.Name, func(r rune) bool { return !unicode.IsPrint(r) || r == ' ' }) >= 0 {
		return fmt.Errorf("ipset name %q: want 1-%d printable characters without spaces", p.Name, MaxIPSetName)
	}
	if len(p.Type) > 32 || strings.IndexFunc(p.Type, func(r rune) bool { return !(unicode.IsLetter(r) || r == ':' || r == ',') }) >= 0 {
		return fmt.Errorf("ipset %s: type %q is not a set type", p.Name, p.Type)
	}
	if p.Family != inet.V4 && p.Family != inet.V6 {
		return fmt.Errorf("ipset %s: family %d is neither inet nor inet6", p.Name, p.Family)
	}
	if p.Netmask < 0 || p.Netmask > 128 {
		return fmt.Errorf("ipset %s: netmask %d out of range", p.Name, p.Netmask)
	}
	for _, m := range p.Members {
		if !m.Net.IsValid() || inet.FamilyOf(m.Net.Addr()) != p.Family {
			return fmt.Errorf("ipset %s: member %s is not an address of the set's family", p.Name, m.Net)
		}
		if m.Proto < 0 || m.Proto > 255 {
			return fmt.Errorf("ipset %s: member %s has protocol %d", p.Name, m.Net, m.Proto)
		}
	}
	return nil
}

// cloneIPSets copies the sets and their member slices.
func cloneIPSets(in []IPSet) []IPSet {
	out := slices.Clone(in)
	for i := range out {
		out[i].Members = slices.Clone(out[i].Members)
	}
	return out
}
