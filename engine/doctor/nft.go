package doctor

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"

	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/netfilter"
	"roundtrip/engine/nft"
	"roundtrip/engine/quote"
)

// This file holds the checks of doctor.go for native nftables rulesets (State.Nftables): the
// same pitfalls when the firewall is written with nft.

var (
	nftIifname = regexp.MustCompile(`\biifname "([^"]+)"`)
	nftDport   = regexp.MustCompile(`\b(tcp|udp) dport ([0-9]+)\b`)
	nftDaddr   = regexp.MustCompile(`\bip daddr ([0-9.]+)(\s|$)`)
)

// constDNAT returns the address and port of a rule's dnat when they are constants (`dnat to
// 10.0.0.2:80`), as the kernel loads them: immediates into the registers the nat expression
// reads.
func constDNAT(r *nft.Rule) (netip.Addr, uint16, bool) {
	regs := map[uint32][]byte{}
	for _, e := range r.Exprs {
		if e.Immediate != nil {
			regs[e.Immediate.Dreg] = e.Immediate.Data
		}
		n := e.Nat
		if n == nil || n.Type != "dnat" || n.RegAddrMin == 0 {
			continue
		}
		a, ok := netip.AddrFromSlice(regs[n.RegAddrMin])
		if !ok || !a.Is4() || n.RegAddrMax != 0 && n.RegAddrMax != n.RegAddrMin {
			return netip.Addr{}, 0, false
		}
		var port uint16
		if p := regs[n.RegProtoMin]; n.RegProtoMin != 0 && len(p) >= 2 {
			port = uint16(p[0])<<8 | uint16(p[1])
		}
		return a, port, true
	}
	return netip.Addr{}, 0, false
}

// nftDNATWithoutSNAT is dnatWithoutSNAT for native nat chains: a dnat to a constant IPv4
// address on one of this host's networks, reachable by clients of that network, where
// neither the native nat postrouting chains nor iptables' nat POSTROUTING source-NAT a client
// of that network's packet to the backend.
func (d *doctor) nftDNATWithoutSNAT() {
	rs := d.s.Nftables
	if rs == nil {
		return
	}
	for _, t := range rs.Tables {
		if !t.HasNative() || t.Family != nft.FamilyIP && t.Family != nft.FamilyInet {
			continue
		}
		var bases []*nft.Chain
		for _, c := range t.Chains {
			if c.Type == nft.TypeNAT && c.Hook == nft.HookPrerouting && t.Native(c) {
				bases = append(bases, c)
			}
		}
		if len(bases) == 0 {
			continue
		}
		// The DNAT may sit in a regular chain a base chain jumps to (firewalld's nft backend
		// keeps it in the zone's chain nat_PRE_public); whether a network's packets get to it
		// is checked for each rule below.
		for _, c := range t.Chains {
			if !t.Native(c) || c.Hook != "" && !slices.Contains(bases, c) {
				continue
			}
			for _, r := range c.Rules {
				d.nftDNATRule(rs, t, c, r, bases)
			}
		}
	}
}

// nftDNATReached reports whether a packet from client arriving on in for dst:dport is
// translated by rule r of chain c, evaluating the table's nat prerouting base chains: an
// earlier rule may send that network's packets elsewhere for good (firewalld's goto to the
// zone chain of their interface). Undecidable expressions count as reaching it.
func (d *doctor) nftDNATReached(rs *nft.Ruleset, t *nft.Table, bases []*nft.Chain, c *nft.Chain, r *nft.Rule, proto int, client, dst netip.Addr, dport uint16, in string) bool {
	for _, b := range bases {
		pkt := &nft.PacketInfo{Proto: 2, L4: uint8(proto), Src: client, Dst: dst, SPort: 40000, DPort: dport, HasPorts: true,
			Flags: netfilter.TCPSYN, HasFlags: proto == 6, In: &nft.Iface{Name: in}, CTEntry: &nft.CT{State: "new"}}
		if l := d.s.LinkByName(in); l != nil {
			pkt.In.Index, pkt.In.Type = uint32(l.Index), 1
		}
		for _, o := range rs.EvalChain(t, b, pkt, nil).Outcomes {
			if n := o.Effects.Nat; n != nil && n.Step.Handle == r.Handle && n.Step.Chain == c.Name {
				return true
			}
		}
	}
	return false
}

func (d *doctor) nftDNATRule(rs *nft.Ruleset, t *nft.Table, c *nft.Chain, r *nft.Rule, bases []*nft.Chain) {
	backend, port, ok := constDNAT(r)
	if !ok || d.nf.AddrType(backend, "") == "LOCAL" {
		return
	}
	out, pfx := d.linkOf(backend)
	if out == "" {
		return
	}
	in := out
	if m := nftIifname.FindStringSubmatch(r.Text); m != nil {
		in = m[1]
		if _, shared := model.PrefixContaining(d.s.Connected(in), backend); !shared {
			return
		}
	}
	client := d.clientIn(pfx, backend)
	if !client.IsValid() {
		return
	}
	proto, protoName, listenPort := 6, "tcp", uint16(0)
	if m := nftDport.FindStringSubmatch(r.Text); m != nil {
		protoName = m[1]
		if protoName == "udp" {
			proto = 17
		}
		n, _ := strconv.ParseUint(m[2], 10, 16)
		listenPort = uint16(n)
	}
	if port == 0 {
		port = listenPort
	}
	var listen netip.Addr
	if m := nftDaddr.FindStringSubmatch(r.Text); m != nil {
		listen, _ = netip.ParseAddr(m[1])
	}
	dst, dport := listen, listenPort
	if !dst.IsValid() {
		dst = d.fib.MasqueradeAddr(in, client, client) // this host's address on the clients' network
	}
	if dport == 0 {
		dport = port
	}
	if dst.IsValid() && !d.nftDNATReached(rs, t, bases, c, r, proto, client, dst, dport, in) {
		return // packets from that network never get to the rule
	}
	// iptables' nat POSTROUTING first (iptables-nft or legacy), then the native chains.
	p := &netfilter.Packet{Family: inet.V4, Proto: proto, Src: client, Dst: backend, SPort: 40000, DPort: port,
		IIF: in, OIF: out, NextHop: backend, ICMPType: -1, TCPFlags: netfilter.TCPSYN}
	res := d.nf.Run("nat", "POSTROUTING", p, &netfilter.Conn{State: netfilter.CTNew, DNAT: true})
	if p.Src != client || len(res.Uncertain) > 0 {
		return
	}
	var snatChain *nft.Chain
	var snatTable *nft.Table
	for _, pt := range rs.Tables {
		if !pt.HasNative() || pt.Family != nft.FamilyIP && pt.Family != nft.FamilyInet || slices.Contains(pt.Flags, "dormant") {
			continue
		}
		for _, pc := range pt.Chains {
			if pc.Type != nft.TypeNAT || pc.Hook != nft.HookPostrouting || !pt.Native(pc) {
				continue
			}
			if snatChain == nil || pt == t {
				snatChain, snatTable = pc, pt
			}
			pkt := &nft.PacketInfo{Proto: 2, L4: uint8(proto), Src: client, Dst: backend, SPort: 40000, DPort: port, HasPorts: true,
				Flags: netfilter.TCPSYN, HasFlags: proto == 6, In: &nft.Iface{Name: in}, Out: &nft.Iface{Name: out},
				CTEntry: &nft.CT{State: "new", Status: 32}}
			if l := d.s.LinkByName(out); l != nil {
				pkt.Out.Index, pkt.Out.Type = uint32(l.Index), 1
			}
			if l := d.s.LinkByName(in); l != nil {
				pkt.In.Index, pkt.In.Type = uint32(l.Index), 1
			}
			er := rs.EvalChain(pt, pc, pkt, nil)
			if !er.Certain() {
				return // cannot tell
			}
			if er.Outcomes[0].Effects.Nat != nil || er.Outcomes[0].Verdict != "accept" {
				return // source-NATed (or dropped: nothing to answer)
			}
		}
	}
	self := d.fib.MasqueradeAddr(out, backend, backend)
	text := fmt.Sprintf("%s # handle %d (chain %s %s)", r.Text, r.Handle, t, c.Name)
	fix := finding.SNATCommand(inet.V4, backend, protoName, port, self)
	if snatChain != nil {
		w := []string{"nft", "add", "rule", string(snatTable.Family), snatTable.Name, snatChain.Name, "ip", "daddr", backend.String()}
		if port != 0 {
			w = append(w, protoName, "dport", strconv.Itoa(int(port)))
		}
		w = append(w, "snat")
		if snatTable.Family == nft.FamilyInet {
			w = append(w, "ip")
		}
		fix = quote.ShellJoin(append(w, "to", self.String())...)
	}
	d.add(finding.Finding{ID: FindingDNATWithoutSNAT, Severity: finding.SeverityWarning,
		Summary: fmt.Sprintf("DNAT to %s, which is on %s (%s) where its clients are too, without SNAT: the backend answers clients on %s directly and the connection fails", backend, out, pfx, pfx),
		Evidence: []string{text,
			fmt.Sprintf("%s is on %s (%s); requests arrive on %s", backend, out, pfx, in),
			fmt.Sprintf("no snat or masquerade in the nat postrouting chains catches %s -> %s out %s", client, backend, out)},
		Fix: finding.PortForwardFix("SNAT the forwarded traffic to this host's address: "+fix,
			finding.PortForwardArgs(proto, nftIfaceArg(r.Text), netip.AddrPortFrom(listen, listenPort), netip.AddrPortFrom(backend, port)))})
}

func nftIfaceArg(text string) string {
	if m := nftIifname.FindStringSubmatch(text); m != nil {
		return m[1]
	}
	return ""
}

// nftForwardEvidence lists the native rules that say this host forwards: nat chains and
// forward chains with rules.
func (d *doctor) nftForwardEvidence() []string {
	rs := d.s.Nftables
	if rs == nil {
		return nil
	}
	var ev []string
	for _, t := range rs.Tables {
		if !t.HasNative() || t.Family != nft.FamilyIP && t.Family != nft.FamilyInet || slices.Contains(t.Flags, "dormant") {
			continue
		}
		for _, c := range t.Chains {
			if t.Native(c) && (c.Type == nft.TypeNAT && c.Hook == nft.HookPostrouting || c.Hook == nft.HookForward) {
				for _, r := range c.Rules {
					ev = append(ev, fmt.Sprintf("nft chain %s %s: %s # handle %d", t, c.Name, r.Text, r.Handle))
				}
			}
		}
	}
	return ev
}
