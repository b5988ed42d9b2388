package nftread

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/nft"
)

// The traffic oracle: real connections through a router namespace loaded with a ruleset, and
// for each the evaluator's prediction (hook by hook, as the kernel runs them) compared with what
// the kernel did: whether the client connected (or was refused at once), the conntrack entry's
// NAT tuples and mark, the rule counters along the predicted path, and the uplink used.

// router is a three-namespace network: lan -- r -- wan, and for dual-WAN a second uplink.
type router struct {
	l             *lab.Lab
	r, lan, wan   *lab.NS
	wanB          *lab.NS
	links         map[string]nft.Iface
	addrs         map[string]netip.Addr // the router's IPv4 address per interface
	lanIP, wanIP  string
	routerLAN     string
	routerWAN     string
	lanServerBody string
}

// newRouter builds the network: lan 10.81.1.2 (and .200) behind r's lan0 10.81.1.1, wan
// 198.18.81.2 on r's wan0 198.18.81.1. Web servers answer on lan :80 and wan :80, and r
// listens on :22 and :23.
func newRouter(t *testing.T) *router {
	t.Helper()
	l := lab.New(t)
	rt := &router{l: l, lanIP: "10.81.1.2", wanIP: "198.18.81.2", routerLAN: "10.81.1.1", routerWAN: "198.18.81.1", lanServerBody: "lan server"}
	rt.r = lab.Host(l, "r", true)
	rt.lan = lab.Host(l, "lan", false)
	rt.wan = lab.Host(l, "wan", false)
	l.Veth(rt.r, "lan0", rt.lan, "eth0")
	l.Veth(rt.r, "wan0", rt.wan, "eth0")
	rt.r.Addr("lan0", "10.81.1.1/24")
	rt.r.Addr("wan0", "198.18.81.1/24")
	rt.lan.Addr("eth0", "10.81.1.2/24")
	rt.lan.Addr("eth0", "10.81.1.200/24")
	rt.lan.IP("route", "add", "default", "via", "10.81.1.1")
	rt.wan.Addr("eth0", "198.18.81.2/24")
	// The WAN side can reach the LAN directly (for the tests that it must not).
	rt.wan.IP("route", "add", "10.81.1.0/24", "via", "198.18.81.1")
	rt.lan.ServeHTTP("0.0.0.0:80", rt.lanServerBody)
	rt.wan.ServeHTTP("0.0.0.0:80", "wan server")
	rt.r.ServeHTTP("0.0.0.0:22", "router ssh")
	rt.r.ServeHTTP("0.0.0.0:23", "router telnet")
	rt.readLinks(t)
	return rt
}

// readLinks records the router's interfaces and addresses for the packet contexts.
func (rt *router) readLinks(t *testing.T) {
	t.Helper()
	var links []struct {
		Ifindex  uint32 `json:"ifindex"`
		Ifname   string `json:"ifname"`
		LinkType string `json:"link_type"`
		AddrInfo []struct {
			Family string `json:"family"`
			Local  string `json:"local"`
		} `json:"addr_info"`
	}
	must(t, json.Unmarshal([]byte(rt.r.IP("-j", "addr", "show")), &links))
	rt.links, rt.addrs = map[string]nft.Iface{}, map[string]netip.Addr{}
	for _, k := range links {
		typ := uint16(1)
		if k.LinkType == "loopback" {
			typ = 772
		}
		rt.links[k.Ifname] = nft.Iface{Name: k.Ifname, Index: k.Ifindex, Type: typ}
		for _, a := range k.AddrInfo {
			if a.Family == "inet" {
				if _, ok := rt.addrs[k.Ifname]; !ok {
					rt.addrs[k.Ifname] = netip.MustParseAddr(a.Local)
				}
			}
		}
	}
}

// flow is one TCP connection a test makes.
type flow struct {
	name         string
	from         *lab.NS
	src          string
	sport        uint16
	dst          string
	dport        uint16
	iif          string // the router interface the SYN arrives on
	wantBody     string // what the server answers when the connection must succeed ("" blocked)
	wantRejected bool   // blocked with an error sent back (refused / unreachable) rather than dropped
}

// prediction is what the evaluator says happens to the flow's first packet.
type prediction struct {
	verdict  string // accept, drop, reject
	path     []nft.Step
	dnat     *nft.NatAction
	snat     *nft.NatAction
	snatAddr netip.Addr // the address masquerade/snat picks (masquerade: the oif's address)
	mark     uint32
	ctmark   uint32
	oif      string // "" for local delivery
	local    bool
}

// routeGet asks the kernel for the routing decision of a forwarded packet with the mark the
// prerouting hook gave it (the FIB is not what is under test here).
func (rt *router) routeGet(t *testing.T, dst, src netip.Addr, iif string, mark uint32) (oif string, local bool) {
	t.Helper()
	out := rt.r.IP("-j", "route", "get", dst.String(), "from", src.String(), "iif", iif, "mark", strconv.FormatUint(uint64(mark), 10))
	var res []struct {
		Type string `json:"type"`
		Dev  string `json:"dev"`
	}
	must(t, json.Unmarshal([]byte(out), &res))
	if len(res) == 0 {
		t.Fatalf("ip route get %s: no answer", dst)
	}
	return res[0].Dev, res[0].Type == "local"
}

// predict runs the flow's first packet through the hooks: prerouting, the routing decision,
// forward or input, and postrouting.
func (rt *router) predict(t *testing.T, rs *nft.Ruleset, f flow) prediction {
	t.Helper()
	src, dst := netip.MustParseAddr(f.src), netip.MustParseAddr(f.dst)
	in := rt.links[f.iif]
	ct := &nft.CT{State: "new", Orig: nft.Tuple{Src: src, Dst: dst, SPort: f.sport, DPort: f.dport, Proto: 6},
		ReplyT: nft.Tuple{Src: dst, Dst: src, SPort: f.dport, DPort: f.sport, Proto: 6}}
	pkt := &nft.PacketInfo{Proto: 2, L4: 6, Src: src, Dst: dst, SPort: f.sport, DPort: f.dport, HasPorts: true,
		Flags: 0x02, HasFlags: true, In: &in, CTEntry: ct}
	var p prediction
	run := func(hook nft.Hook) bool {
		o := nft.HookOrder(rs, nft.FamilyIP, hook, nft.HookOptions{Conntrack: true})
		res := rs.EvalHook(o, pkt, nil)
		if !res.Certain() {
			t.Fatalf("%s: %s: the evaluator is not certain: %+v", f.name, hook, res.Outcomes)
		}
		out := res.Outcomes[0]
		p.path = append(p.path, out.Path...)
		if out.Effects.Mark != nil {
			pkt.FwMark, p.mark = *out.Effects.Mark, *out.Effects.Mark
		}
		if out.Effects.CtMark != nil {
			ct.Mark, p.ctmark = *out.Effects.CtMark, *out.Effects.CtMark
		}
		if a := out.Effects.Nat; a != nil {
			switch a.Type {
			case "dnat", "redirect":
				p.dnat = a
				if a.AddrMin.IsValid() {
					pkt.Dst = a.AddrMin
				}
				if a.ProtoMin != 0 {
					pkt.DPort = a.ProtoMin
				}
				ct.Status |= 32 // IPS_DST_NAT
			case "snat", "masquerade":
				p.snat = a
				p.snatAddr = a.AddrMin
				if a.Type == "masquerade" {
					p.snatAddr = rt.addrs[pkt.Out.Name]
				}
				ct.Status |= 16 // IPS_SRC_NAT
			}
		}
		switch hook {
		case nft.HookPrerouting, nft.HookOutput:
			ct.Status |= 256 // IPS_DST_NAT_DONE: the NAT core has decided
		case nft.HookPostrouting, nft.HookInput:
			ct.Status |= 128 // IPS_SRC_NAT_DONE
		}
		if out.Verdict != "accept" {
			p.verdict = out.Verdict
			return false
		}
		return true
	}
	p.verdict = "accept"
	if !run(nft.HookPrerouting) {
		return p
	}
	oif, local := rt.routeGet(t, pkt.Dst, pkt.Src, f.iif, pkt.FwMark)
	p.oif, p.local = oif, local
	if local {
		run(nft.HookInput)
		return p
	}
	out := rt.links[oif]
	pkt.Out = &out
	if !run(nft.HookForward) {
		return p
	}
	run(nft.HookPostrouting)
	return p
}

// ctEntry is one `conntrack -L` line.
type ctEntry struct {
	orig, reply [4]string // src dst sport dport
	mark        string
}

func conntrackList(t *testing.T, ns *lab.NS) []ctEntry {
	t.Helper()
	out, err := ns.Try("conntrack", "-L", "-p", "tcp")
	if err != nil && !strings.Contains(out, "flow entries") {
		t.Fatalf("conntrack -L: %v", err)
	}
	var entries []ctEntry
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "tcp") {
			continue
		}
		var e ctEntry
		seen := map[string]int{}
		for _, f := range strings.Fields(line) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			idx := map[string]int{"src": 0, "dst": 1, "sport": 2, "dport": 3}
			if i, ok := idx[k]; ok {
				if seen[k] == 0 {
					e.orig[i] = v
				} else {
					e.reply[i] = v
				}
				seen[k]++
			}
			if k == "mark" {
				e.mark = v
			}
		}
		entries = append(entries, e)
	}
	return entries
}

// connect makes the flow's connection and returns the body, or the error (and whether it was
// a timeout, that is a silent drop).
func connect(f flow) (string, error, bool) {
	conn, err := f.from.Dial(net.JoinHostPort(f.dst, strconv.Itoa(int(f.dport))), net.JoinHostPort(f.src, strconv.Itoa(int(f.sport))), 2*time.Second)
	if err != nil {
		var ne net.Error
		return "", err, errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
	buf := make([]byte, 4096)
	var resp []byte
	for {
		n, err := conn.Read(buf)
		resp = append(resp, buf[:n]...)
		if err != nil {
			break
		}
	}
	_, body, _ := strings.Cut(string(resp), "\r\n\r\n")
	return body, nil, false
}

// checkFlow makes the connection and compares the kernel's handling with the prediction.
func (rt *router) checkFlow(t *testing.T, rs *nft.Ruleset, f flow) prediction {
	t.Helper()
	p := rt.predict(t, rs, f)
	var steps []string
	for _, s := range p.path {
		if s.Action != "policy" || s.Text != "policy accept" {
			steps = append(steps, fmt.Sprintf("%s/%s/%d:%s %q", s.Table, s.Chain, s.Handle, s.Action, s.Text))
		}
	}
	t.Logf("%s: predicted %s, dnat %+v, snat %s, mark %d, ctmark %d, oif %q local %v\n  %s", f.name, p.verdict, natText(p.dnat), p.snatAddr, p.mark, p.ctmark, p.oif, p.local, strings.Join(steps, "\n  "))
	body, err, timeout := connect(f)
	switch {
	case p.verdict == "accept" && err != nil:
		t.Errorf("%s: the evaluator accepts, the kernel did not connect: %v", f.name, err)
	case p.verdict != "accept" && err == nil:
		t.Errorf("%s: the evaluator says %s, the kernel connected (body %q)", f.name, p.verdict, body)
	case p.verdict == "drop" && !timeout:
		t.Errorf("%s: the evaluator says drop (silent), the kernel answered: %v", f.name, err)
	case p.verdict == "reject" && timeout:
		t.Errorf("%s: the evaluator says reject, the connection timed out (silent drop)", f.name)
	}
	if (p.verdict == "accept") != (f.wantBody != "") || (p.verdict == "reject") != f.wantRejected {
		t.Errorf("%s: the test expects body %q rejected %v, the evaluator says %s", f.name, f.wantBody, f.wantRejected, p.verdict)
	}
	if err == nil && body != f.wantBody {
		t.Errorf("%s: body %q, want %q (the wrong uplink or server)", f.name, body, f.wantBody)
	}
	if err == nil {
		rt.checkConntrack(t, f, p)
	}
	rt.checkCounters(t, f, p)
	return p
}

func natText(a *nft.NatAction) string {
	if a == nil {
		return "none"
	}
	return fmt.Sprintf("%s %s:%d", a.Type, a.AddrMin, a.ProtoMin)
}

// checkConntrack compares the conntrack entry's tuples and mark with the prediction.
func (rt *router) checkConntrack(t *testing.T, f flow, p prediction) {
	t.Helper()
	var e *ctEntry
	for _, c := range conntrackList(t, rt.r) {
		if c.orig[0] == f.src && c.orig[1] == f.dst && c.orig[2] == strconv.Itoa(int(f.sport)) && c.orig[3] == strconv.Itoa(int(f.dport)) {
			e = &c
			break
		}
	}
	if e == nil {
		t.Errorf("%s: no conntrack entry in the router", f.name)
		return
	}
	wantReplySrc, wantReplySport := f.dst, strconv.Itoa(int(f.dport))
	if p.dnat != nil {
		wantReplySrc = p.dnat.AddrMin.String()
		if p.dnat.ProtoMin != 0 {
			wantReplySport = strconv.Itoa(int(p.dnat.ProtoMin))
		}
	}
	wantReplyDst := f.src
	if p.snat != nil {
		wantReplyDst = p.snatAddr.String()
	}
	if e.reply[0] != wantReplySrc || e.reply[2] != wantReplySport || e.reply[1] != wantReplyDst {
		t.Errorf("%s: conntrack reply tuple %v, predicted src %s:%s dst %s", f.name, e.reply, wantReplySrc, wantReplySport, wantReplyDst)
	}
	if e.mark != strconv.FormatUint(uint64(p.ctmark), 10) {
		t.Errorf("%s: conntrack mark %s, predicted ct mark %d", f.name, e.mark, p.ctmark)
	}
}

// checkCounters reads the ruleset back: every rule with a counter on the predicted path has
// counted a packet.
func (rt *router) checkCounters(t *testing.T, f flow, p prediction) {
	t.Helper()
	now, err := Read(context.Background(), kernel.Namespace{Name: rt.r.Name}, Options{NoFallback: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.path {
		if s.Handle == 0 || s.Origin != "" && s.Action == "skipped" {
			continue
		}
		tb := now.Table(s.Family, s.Table)
		if tb == nil || tb.Chain(s.Chain) == nil {
			continue
		}
		for _, r := range tb.Chain(s.Chain).Rules {
			if r.Handle == s.Handle && r.Counter() != nil && r.Counter().Packets == 0 {
				t.Errorf("%s: the predicted path goes through %s %s handle %d (%q), its counter is 0", f.name, s.Table, s.Chain, s.Handle, r.Text)
			}
		}
	}
}

// counterOf returns a rule's counter by its text (for rules that must not have counted).
func counterOf(t *testing.T, ns *lab.NS, family nft.Family, table, chain, text string) uint64 {
	t.Helper()
	rs, err := Read(context.Background(), kernel.Namespace{Name: ns.Name}, Options{NoFallback: true})
	if err != nil {
		t.Fatal(err)
	}
	tb := rs.Table(family, table)
	if tb == nil || tb.Chain(chain) == nil {
		t.Fatalf("no chain %s %s %s", family, table, chain)
	}
	for _, r := range tb.Chain(chain).Rules {
		if strings.HasPrefix(r.Text, text) && r.Counter() != nil {
			return r.Counter().Packets
		}
	}
	t.Fatalf("no counted rule %q in %s", text, chain)
	return 0
}

func readRouter(t *testing.T, rt *router) *nft.Ruleset {
	t.Helper()
	rs, err := Read(context.Background(), kernel.Namespace{Name: rt.r.Name}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func requireTraffic(t *testing.T) {
	t.Helper()
	lab.Require(t)
	requireNft(t, "conntrack")
}

// TestPrivilegedDebianRouterTraffic: the Debian nftables.conf router, real connections.
func TestPrivilegedDebianRouterTraffic(t *testing.T) {
	requireTraffic(t)
	rt := newRouter(t)
	rt.r.Run("nft", "-f", "testdata/debian.nft")
	rs := readRouter(t, rt)
	flows := []flow{
		{name: "lan to wan web, masqueraded", from: rt.lan, src: rt.lanIP, sport: 41001, dst: rt.wanIP, dport: 80, iif: "lan0", wantBody: "wan server"},
		{name: "port forward 8080 to the lan server", from: rt.wan, src: rt.wanIP, sport: 41002, dst: rt.routerWAN, dport: 8080, iif: "wan0", wantBody: rt.lanServerBody},
		{name: "wan straight to the lan server", from: rt.wan, src: rt.wanIP, sport: 41003, dst: rt.lanIP, dport: 80, iif: "wan0"},
		{name: "wan to the router's ssh", from: rt.wan, src: rt.wanIP, sport: 41004, dst: rt.routerWAN, dport: 22, iif: "wan0"},
		{name: "lan to the router's ssh", from: rt.lan, src: rt.lanIP, sport: 41005, dst: rt.routerLAN, dport: 22, iif: "lan0", wantBody: "router ssh"},
	}
	for _, f := range flows {
		rt.checkFlow(t, rs, f)
	}
	// The lan server was reached only through the port forward: the forward policy's counter
	// rule saw the direct attempt, the dnat rule saw the forwarded one.
	if n := counterOf(t, rt.r, nft.FamilyInet, "filter", "forward", `counter packets`); n == 0 {
		t.Errorf("the forward chain's final counter did not count the dropped connection")
	}
}

// TestPrivilegedFirewalldTraffic: firewalld's native layout with zones, ssh allowed on
// public, a forward-port and masquerading.
func TestPrivilegedFirewalldTraffic(t *testing.T) {
	requireTraffic(t)
	rt := newRouter(t)
	rt.r.Run("nft", "-f", "testdata/firewalld.nft")
	rs := readRouter(t, rt)
	flows := []flow{
		{name: "public ssh", from: rt.wan, src: rt.wanIP, sport: 42001, dst: rt.routerWAN, dport: 22, iif: "wan0", wantBody: "router ssh"},
		{name: "public telnet is rejected", from: rt.wan, src: rt.wanIP, sport: 42002, dst: rt.routerWAN, dport: 23, iif: "wan0", wantRejected: true},
		{name: "forward-port 8080", from: rt.wan, src: rt.wanIP, sport: 42003, dst: rt.routerWAN, dport: 8080, iif: "wan0", wantBody: rt.lanServerBody},
		{name: "trusted lan out, masqueraded", from: rt.lan, src: rt.lanIP, sport: 42004, dst: rt.wanIP, dport: 80, iif: "lan0", wantBody: "wan server"},
		{name: "public into the lan is rejected", from: rt.wan, src: rt.wanIP, sport: 42005, dst: rt.lanIP, dport: 80, iif: "wan0", wantRejected: true},
		{name: "trusted lan to the router", from: rt.lan, src: rt.lanIP, sport: 42006, dst: rt.routerLAN, dport: 23, iif: "lan0", wantBody: "router telnet"},
	}
	for _, f := range flows {
		rt.checkFlow(t, rs, f)
	}
}

// TestPrivilegedIptablesNftTraffic: the same router written with iptables-nft-restore; the
// compat expressions (DNAT, MASQUERADE, conntrack, CONNMARK, MARK) are evaluated from their
// kernel structures.
func TestPrivilegedIptablesNftTraffic(t *testing.T) {
	requireTraffic(t)
	requireNft(t, "iptables-nft-restore")
	rt := newRouter(t)
	rt.r.Run("iptables-nft-restore", "testdata/iptables.rules")
	rs := readRouter(t, rt)
	for _, tb := range rs.Tables {
		if tb.Origin != "iptables-nft" {
			t.Errorf("table %s: origin %q, want iptables-nft", tb, tb.Origin)
		}
	}
	flows := []flow{
		{name: "lan to wan web, masqueraded", from: rt.lan, src: rt.lanIP, sport: 43001, dst: rt.wanIP, dport: 80, iif: "lan0", wantBody: "wan server"},
		{name: "port forward 8080", from: rt.wan, src: rt.wanIP, sport: 43002, dst: rt.routerWAN, dport: 8080, iif: "wan0", wantBody: rt.lanServerBody},
		{name: "wan straight to the lan", from: rt.wan, src: rt.wanIP, sport: 43003, dst: rt.lanIP, dport: 80, iif: "wan0"},
		{name: "lan ssh to the router", from: rt.lan, src: rt.lanIP, sport: 43004, dst: rt.routerLAN, dport: 22, iif: "lan0", wantBody: "router ssh"},
		{name: "wan ssh to the router", from: rt.wan, src: rt.wanIP, sport: 43005, dst: rt.routerWAN, dport: 22, iif: "wan0"},
	}
	for _, f := range flows {
		rt.checkFlow(t, rs, f)
	}
}

// TestPrivilegedDualWANTraffic: destination verdict map and source mark map steer flows to
// two uplinks by policy routing on the mark; each "internet" answers with its own name at
// the same addresses, so the body tells which uplink the kernel used.
func TestPrivilegedDualWANTraffic(t *testing.T) {
	requireTraffic(t)
	l := lab.New(t)
	rt := &router{l: l}
	rt.r = lab.Host(l, "r", true)
	rt.lan = lab.Host(l, "lan", false)
	rt.wan = lab.Host(l, "ispa", false)
	rt.wanB = lab.Host(l, "ispb", false)
	l.Veth(rt.r, "lan0", rt.lan, "eth0")
	l.Veth(rt.r, "wan_a", rt.wan, "eth0")
	l.Veth(rt.r, "wan_b", rt.wanB, "eth0")
	rt.r.Addr("lan0", "10.81.1.1/24")
	rt.r.Addr("wan_a", "198.18.82.1/24")
	rt.r.Addr("wan_b", "198.18.83.1/24")
	rt.lan.Addr("eth0", "10.81.1.10/24")
	rt.lan.Addr("eth0", "10.81.1.200/24")
	rt.lan.IP("route", "add", "default", "via", "10.81.1.1")
	rt.wan.Addr("eth0", "198.18.82.2/24")
	rt.wanB.Addr("eth0", "198.18.83.2/24")
	for _, isp := range []struct {
		ns    *lab.NS
		addrs []string
		body  string
	}{{rt.wan, []string{"198.18.88.10", "192.0.2.10"}, "isp A"}, {rt.wanB, []string{"198.18.89.10", "192.0.2.10"}, "isp B"}} {
		for _, a := range isp.addrs {
			isp.ns.Addr("lo", a+"/32")
		}
		isp.ns.ServeHTTP("0.0.0.0:80", isp.body)
	}
	rt.r.IP("route", "add", "default", "via", "198.18.82.2", "dev", "wan_a")
	rt.r.IP("route", "add", "default", "via", "198.18.83.2", "dev", "wan_b", "table", "102")
	// Table 102 needs the LAN too: replies restored to mark 2 look it up on their way back.
	rt.r.IP("route", "add", "10.81.1.0/24", "dev", "lan0", "table", "102")
	rt.r.IP("rule", "add", "fwmark", "0x2", "lookup", "102", "priority", "100")
	// Replies come back on the uplink the router sent from; answer them by their mark too.
	rt.r.Sysctl("net.ipv4.conf.all.rp_filter", "0")
	rt.r.Run("nft", "-f", "testdata/dualwan.nft")
	rt.readLinks(t)
	rs := readRouter(t, rt)
	flows := []struct {
		flow
		oif  string
		mark uint32
	}{
		{flow{name: "ISP B destination set (vmap jump mark_b)", from: rt.lan, src: "10.81.1.10", sport: 44001, dst: "198.18.89.10", dport: 80, iif: "lan0", wantBody: "isp B"}, "wan_b", 2},
		{flow{name: "ISP A destination set (vmap jump mark_a)", from: rt.lan, src: "10.81.1.10", sport: 44002, dst: "198.18.88.10", dport: 80, iif: "lan0", wantBody: "isp A"}, "wan_a", 1},
		{flow{name: "source map (meta mark set ip saddr map)", from: rt.lan, src: "10.81.1.200", sport: 44003, dst: "192.0.2.10", dport: 80, iif: "lan0", wantBody: "isp B"}, "wan_b", 2},
		{flow{name: "unmarked: main table", from: rt.lan, src: "10.81.1.10", sport: 44004, dst: "192.0.2.10", dport: 80, iif: "lan0", wantBody: "isp A"}, "wan_a", 0},
	}
	for _, f := range flows {
		p := rt.checkFlow(t, rs, f.flow)
		if p.oif != f.oif || p.ctmark != f.mark {
			t.Errorf("%s: predicted uplink %s mark %d, the case expects %s mark %d", f.name, p.oif, p.ctmark, f.oif, f.mark)
		}
	}
}

// TestPrivilegedHookOrderMatchesKernel checks HookOrder's and EvalHook's order against the
// kernel's with one forwarded connection: the NAT core position, a tie between two tables (not
// defined; the probable order is the one the kernel took for a fresh load) and a tie inside a
// table (defined by the handles).
func TestPrivilegedHookOrderMatchesKernel(t *testing.T) {
	requireTraffic(t)
	rt := newRouter(t)
	rt.r.Run("nft", "-f", "testdata/hookorder.nft")
	rs := readRouter(t, rt)
	o := nft.HookOrder(rs, nft.FamilyIP, nft.HookPrerouting, nft.HookOptions{Conntrack: true})
	var names []string
	for i := range o.Slots {
		names = append(names, o.Slots[i].Name())
	}
	want := "conntrack in, ip natcore before, the NAT core, ip natcore after, inet newer b, inet older a, inet same x2, inet same x1"
	if got := strings.Join(names, ", "); got != want {
		t.Fatalf("order:\n got %s\nwant %s", got, want)
	}
	if len(o.Ties) != 2 || o.Ties[0].Defined || !o.Ties[1].Defined {
		t.Fatalf("ties %+v: the two tables' must be undefined, the one table's defined", o.Ties)
	}

	f := flow{name: "forwarded through the port forward", from: rt.wan, src: rt.wanIP, sport: 45001, dst: rt.routerWAN, dport: 8080, iif: "wan0"}
	in := rt.links["wan0"]
	src, dst := netip.MustParseAddr(f.src), netip.MustParseAddr(f.dst)
	pkt := &nft.PacketInfo{Proto: 2, L4: 6, Src: src, Dst: dst, SPort: f.sport, DPort: f.dport, HasPorts: true, In: &in,
		CTEntry: &nft.CT{State: "new", Orig: nft.Tuple{Src: src, Dst: dst, SPort: f.sport, DPort: f.dport, Proto: 6}}}
	res := rs.EvalHook(o, pkt, nil)
	if len(res.Outcomes) != 2 {
		t.Fatalf("want two outcomes (one per order of the undefined tie), got %+v", res.Outcomes)
	}
	probable := res.Outcomes[0]
	if len(probable.Conditions) != 1 || !strings.Contains(probable.Conditions[0].Branch, "inet newer b, inet older a") {
		t.Errorf("the probable outcome's condition: %+v", probable.Conditions)
	}
	if probable.Effects.Mark == nil || *probable.Effects.Mark != 0x202 {
		t.Fatalf("probable mark %v, want 0x202 (newer table first, x2 before x1)", probable.Effects.Mark)
	}
	matched := map[string]bool{}
	for _, s := range probable.Path {
		if s.Action == "match" {
			matched[s.Chain+" "+s.Text] = true
		}
	}

	body, err, _ := connect(f)
	if err != nil || body != rt.lanServerBody {
		t.Fatalf("the connection did not go through: %q %v", body, err)
	}
	// The kernel: which prerouting rules counted, and which mark reached forward.
	for _, c := range []struct {
		chain, text string
	}{
		{"before", "ip daddr 198.18.81.1 tcp dport 8080 counter"},
		{"before", "ip daddr 10.81.1.2 tcp dport 80 counter"},
		{"after", "ip daddr 198.18.81.1 tcp dport 8080 counter"},
		{"after", "ip daddr 10.81.1.2 tcp dport 80 counter"},
	} {
		n := counterOf(t, rt.r, nft.FamilyIP, "natcore", c.chain, c.text)
		predicted := matched[c.chain+" "+c.text+" packets 0 bytes 0"]
		if (n > 0) != predicted {
			t.Errorf("%s %q: the kernel counted %d, the evaluator predicted match=%v", c.chain, c.text, n, predicted)
		}
	}
	for _, m := range []string{"0x00000101", "0x00000102", "0x00000201", "0x00000202"} {
		n := counterOf(t, rt.r, nft.FamilyIP, "count", "forward_count", "meta mark "+m)
		if (n > 0) != (m == "0x00000202") {
			t.Errorf("forward saw mark %s %d times; the evaluator's probable order gives 0x00000202", m, n)
		}
	}
}
