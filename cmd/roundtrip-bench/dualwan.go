package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab/pktgen"
)

// The dual-WAN question of seed case 2: which of the three ways of sending a destination list
// out of the second ISP forwards fastest? A router namespace between a LAN namespace and two
// ISP namespaces is configured each way in turn, from scratch, and measured with the same
// traffic:
//
//	lan eth0 10.90.1.2 -- lan0 10.90.1.1 [rtr] wan1 10.90.2.1/30 -- cust 10.90.2.2 [ispa]
//	                                           wan2 10.90.3.1/30 -- cust 10.90.3.2 [ispb]
//
// ISP B's destination list is N /24s of 10.64.0.0/10 (in random order); everything else
// (10.128.0.0/10 here) leaves by ISP A. The ISPs own the probe addresses 10.128.0.1 and one
// address in the middle of B's list, and blackhole the rest of both ranges (silently: with
// forwarding on, a blackhole route drops without an ICMP error), so no packet leaves the
// namespaces. Every configuration source-NATs the LAN to the WAN it leaves by, as the seed's
// gateway does, so conntrack runs in all of them.
const (
	dwLANNet   = "10.90.1.0/24"
	dwClient   = "10.90.1.2"
	dwWANA     = "10.90.2.1"
	dwGWA      = "10.90.2.2"
	dwWANB     = "10.90.3.1"
	dwGWB      = "10.90.3.2"
	dwProbeA   = "10.128.0.1"
	dwEchoPort = 7
)

type dwNet struct {
	lan, rtr, ispa, ispb string
	list                 []netip.Prefix
	probeB               netip.Addr
}

// dwList returns n distinct /24s of 10.64.0.0/10 in a fixed random order, and the probe
// address of ISP B: in the list's middle entry, so that a rule walk reaches it half way.
func dwList(n int) ([]netip.Prefix, netip.Addr) {
	n = min(n, 1<<14)
	idx := rand.New(rand.NewPCG(5, 6)).Perm(1 << 14)[:n]
	out := make([]netip.Prefix, n)
	for i, k := range idx {
		out[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(64 + k>>8), byte(k), 0}), 24)
	}
	mid := out[n/2].Addr().As4()
	mid[3] = 1
	return out, netip.AddrFrom4(mid)
}

// dwConfig is one way of configuring the router; it returns what it ran, for the report.
type dwConfig struct {
	name, how string
	apply     func(b *bench, d *dwNet) error
}

func (b *bench) dwTopology(d *dwNet) error {
	var err error
	for _, p := range []struct {
		short string
		dst   *string
	}{{"dwlan", &d.lan}, {"dwrtr", &d.rtr}, {"dwispa", &d.ispa}, {"dwispb", &d.ispb}} {
		if *p.dst, err = b.newNS(p.short); err != nil {
			return err
		}
	}
	for _, v := range [][4]string{{d.lan, "eth0", d.rtr, "lan0"}, {d.rtr, "wan1", d.ispa, "cust"}, {d.rtr, "wan2", d.ispb, "cust"}} {
		if err := b.cmd("ip", "-n", v[0], "link", "add", v[1], "type", "veth", "peer", "name", v[3], "netns", v[2]); err != nil {
			return err
		}
	}
	steps := []struct {
		ns    string
		lines []string
	}{
		{d.lan, []string{"addr add 10.90.1.2/24 dev eth0", "link set eth0 up", "route add default via 10.90.1.1"}},
		{d.rtr, []string{"addr add 10.90.1.1/24 dev lan0", "addr add 10.90.2.1/30 dev wan1", "addr add 10.90.3.1/30 dev wan2",
			"link set lan0 up", "link set wan1 up", "link set wan2 up"}},
		{d.ispa, []string{"addr add 10.90.2.2/30 dev cust", "link set cust up", "addr add 10.128.0.1/32 dev lo",
			"route add blackhole 10.128.0.0/10", "route add blackhole 10.64.0.0/10", "route add 10.90.0.0/16 via 10.90.2.1"}},
		{d.ispb, []string{"addr add 10.90.3.2/30 dev cust", "link set cust up", "addr add " + d.probeB.String() + "/32 dev lo",
			"route add blackhole 10.128.0.0/10", "route add blackhole 10.64.0.0/10", "route add 10.90.0.0/16 via 10.90.3.1"}},
	}
	for _, s := range steps {
		if err := b.ipBatch(s.ns, s.lines); err != nil {
			return err
		}
	}
	for _, ns := range []string{d.rtr, d.ispa, d.ispb} {
		if err := b.sysctl(ns, "net.ipv4.ip_forward", "1"); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) sysctl(ns, key, value string) error {
	return kernel.Namespace{Name: ns}.Do(func() error { return os.WriteFile(kernel.SysctlPath(key), []byte(value+"\n"), 0o644) })
}

func (b *bench) iptablesRestore(ns, rules string) error {
	c := newCmd(b.ctx, "ip", "netns", "exec", ns, "iptables-restore", "--noflush", "-w")
	c.Stdin = strings.NewReader(rules)
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore in %s: %w: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

// The seed's NAT rules and "back the way it came" tables (ctc 100, cnc 200), shared by its
// three methods.
const dwSNAT = "*nat\n-A POSTROUTING -s " + dwLANNet + " -o wan1 -j SNAT --to-source " + dwWANA +
	"\n-A POSTROUTING -s " + dwLANNet + " -o wan2 -j SNAT --to-source " + dwWANB + "\nCOMMIT\n"

var dwReturnTables = []string{
	"route add default via " + dwGWA + " dev wan1 src " + dwWANA + " table 100",
	"route add " + dwLANNet + " dev lan0 scope link src 10.90.1.1 table 100",
	"rule add from " + dwWANA + " table 100",
	"route add default via " + dwGWB + " dev wan2 src " + dwWANB + " table 200",
	"route add " + dwLANNet + " dev lan0 scope link src 10.90.1.1 table 200",
	"rule add from " + dwWANB + " table 200",
}

func seedMethod(lines func(d *dwNet) []string, mangle func(d *dwNet) string) func(b *bench, d *dwNet) error {
	return func(b *bench, d *dwNet) error {
		l := append([]string{"route replace default via " + dwGWA + " dev wan1"}, dwReturnTables...)
		if err := b.ipBatch(d.rtr, append(l, lines(d)...)); err != nil {
			return err
		}
		rules := dwSNAT
		if mangle != nil {
			rules += mangle(d)
		}
		return b.iptablesRestore(d.rtr, rules)
	}
}

func (b *bench) dwConfigs(listFile string) []dwConfig {
	wizard := func(connmark bool) func(b *bench, d *dwNet) error {
		return func(b *bench, d *dwNet) error {
			args := []string{b.bin, "wizard", "multi-wan", "--netns", d.rtr, "--wan", "wan1:" + dwGWA + ":isp_a", "--wan", "wan2:" + dwGWB + ":isp_b",
				"--lan", "lan0", "--route-list", "isp_b=" + listFile, "--snat", "--apply"}
			if connmark {
				args = append(args, "--connmark")
			}
			// The wizard names its tables; keep those names in the bench's scratch directory,
			// not in the host's /etc/iproute2.
			_, err := b.measure(child{Args: args, Env: []string{
				kernel.StateDirEnv + "=" + filepath.Join(b.work, "dwstate"),
				kernel.IPRoute2DirEnv + "=" + filepath.Join(b.work, "iproute2"),
			}})
			return err
		}
	}
	return []dwConfig{
		{"baseline", "a default route via ISP A only (and the SNAT)", seedMethod(func(*dwNet) []string { return nil }, nil)},
		{"1 static routes", "the list as routes in main: `ip route add CIDR via GW_B dev wan2` (seed method 1)", seedMethod(func(d *dwNet) []string {
			var l []string
			for _, p := range d.list {
				l = append(l, "route add "+p.String()+" via "+dwGWB+" dev wan2")
			}
			return l
		}, nil)},
		{"2 policy rules", "the list as rules: `ip rule add to CIDR table cnc prio 100` (seed method 2)", seedMethod(func(d *dwNet) []string {
			var l []string
			for _, p := range d.list {
				l = append(l, "rule add to "+p.String()+" table 200 prio 100")
			}
			return l
		}, nil)},
		{"3 CONNMARK + fwmark", "each new LAN connection walks the list once in mangle (`-d CIDR -g mark-B`, else mark A), the mark is saved in the connection and restored on every packet; `ip rule fwmark` picks the table (seed method 3)",
			seedMethod(func(*dwNet) []string {
				return []string{"rule add fwmark 0x100 table 100 prio 40", "rule add fwmark 0x200 table 200 prio 40"}
			}, func(d *dwNet) string {
				var s strings.Builder
				s.WriteString("*mangle\n:RTB-LIST - [0:0]\n:RTB-B - [0:0]\n")
				s.WriteString("-A PREROUTING -i lan0 -m connmark --mark 0 -j RTB-LIST\n")
				s.WriteString("-A PREROUTING -i wan1 -m conntrack --ctstate NEW -j CONNMARK --set-mark 0x100\n")
				s.WriteString("-A PREROUTING -i wan2 -m conntrack --ctstate NEW -j CONNMARK --set-mark 0x200\n")
				s.WriteString("-A PREROUTING -j CONNMARK --restore-mark\n")
				s.WriteString("-A OUTPUT -j CONNMARK --restore-mark\n")
				for _, p := range d.list {
					s.WriteString("-A RTB-LIST -d " + p.String() + " -g RTB-B\n")
				}
				s.WriteString("-A RTB-LIST -j CONNMARK --set-mark 0x100\n")
				s.WriteString("-A RTB-B -j CONNMARK --set-mark 0x200\n")
				s.WriteString("COMMIT\n")
				return s.String()
			})},
		{"roundtrip multi-wan", "`roundtrip wizard multi-wan --wan wan1:GW_A:isp_a --wan wan2:GW_B:isp_b --lan lan0 --route-list isp_b=LIST --snat --apply` (static routes, return tables, SNAT)", wizard(false)},
		{"roundtrip multi-wan --connmark", "the same with `--connmark` (replies of inbound connections by connection mark)", wizard(true)},
	}
}

// echoServer answers every UDP datagram on addr in the namespace until the socket closes.
func echoServer(ns, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := kernel.Namespace{Name: ns}.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc, nil
}

// probeRTTs measures round trips from the LAN client to dst: n datagrams of one flow (after
// one to set it up), or one new flow (a new socket, a new conntrack entry) per datagram.
func probeRTTs(lan string, dst netip.AddrPort, n int, newFlows bool) ([]float64, int, error) {
	dial := func() (net.Conn, error) {
		var c net.Conn
		err := kernel.Namespace{Name: lan}.Do(func() error {
			var err error
			c, err = net.Dial("udp4", dst.String())
			return err
		})
		return c, err
	}
	var rtts []float64
	lost := 0
	buf := make([]byte, 64)
	var c net.Conn
	ping := func() (float64, error) {
		c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		t0 := time.Now()
		if _, err := c.Write([]byte("roundtrip-bench probe")); err != nil {
			return 0, err
		}
		if _, err := c.Read(buf); err != nil {
			return 0, err
		}
		return time.Since(t0).Seconds(), nil
	}
	for i := 0; i <= n; i++ {
		if newFlows || c == nil {
			if c != nil {
				c.Close()
			}
			var err error
			if c, err = dial(); err != nil {
				return nil, 0, err
			}
			if !newFlows {
				if _, err := ping(); err != nil { // sets up the flow; not counted
					lost++
				}
			}
		}
		if i == n {
			break
		}
		rtt, err := ping()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				lost++
				continue
			}
			c.Close()
			return nil, 0, err
		}
		rtts = append(rtts, rtt)
	}
	c.Close()
	return rtts, lost, nil
}

// rxPackets reads the received-packets counter of a link.
func (b *bench) rxPackets(ns, dev string) (uint64, error) {
	out, err := b.output("ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev)
	if err != nil {
		return 0, err
	}
	var l []struct {
		Stats64 struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &l); err != nil || len(l) != 1 {
		return 0, fmt.Errorf("reading the counters of %s in %s: %v", dev, ns, err)
	}
	return l[0].Stats64.RX.Packets, nil
}

type dwResult struct {
	setup            float64 // seconds to configure the router
	pps, shareB      float64
	sent             int
	rttA, rttB       []float64 // one flow
	rttANew, rttBNew []float64 // a new flow each
	lost             int
}

// dwRun builds the network, configures it one way and measures it.
func (b *bench) dwRun(cfg dwConfig, list []netip.Prefix, probeB netip.Addr, listFile string, flood time.Duration, probes int) (dwResult, error) {
	var res dwResult
	d := &dwNet{list: list, probeB: probeB}
	defer func() {
		for _, ns := range []string{d.lan, d.rtr, d.ispa, d.ispb} {
			if ns != "" {
				b.delNS(ns)
			}
		}
		os.RemoveAll(filepath.Join(b.work, "dwstate"))
	}()
	if err := b.dwTopology(d); err != nil {
		return res, err
	}
	t0 := time.Now()
	if err := cfg.apply(b, d); err != nil {
		return res, fmt.Errorf("configuring %s: %w", cfg.name, err)
	}
	res.setup = time.Since(t0).Seconds()

	srvA, err := echoServer(d.ispa, fmt.Sprintf("%s:%d", dwProbeA, dwEchoPort))
	if err != nil {
		return res, err
	}
	defer srvA.Close()
	srvB, err := echoServer(d.ispb, fmt.Sprintf("%s:%d", probeB, dwEchoPort))
	if err != nil {
		return res, err
	}
	defer srvB.Close()
	probeA := netip.AddrPortFrom(netip.MustParseAddr(dwProbeA), dwEchoPort)
	pb := netip.AddrPortFrom(probeB, dwEchoPort)
	if cfg.name == "baseline" {
		// The baseline's B probe goes through a router whose only route is via ISP B.
		pb = netip.AddrPort{}
	}
	var lost int
	measure := func(dst netip.AddrPort, newFlows bool) ([]float64, error) {
		if !dst.IsValid() {
			return nil, nil
		}
		n := probes
		if newFlows {
			n = probes / 2
		}
		r, l, err := probeRTTs(d.lan, dst, n, newFlows)
		lost += l
		return r, err
	}
	if res.rttA, err = measure(probeA, false); err != nil {
		return res, err
	}
	if res.rttANew, err = measure(probeA, true); err != nil {
		return res, err
	}
	if res.rttB, err = measure(pb, false); err != nil {
		return res, err
	}
	if res.rttBNew, err = measure(pb, true); err != nil {
		return res, err
	}
	if cfg.name == "baseline" {
		if err := b.cmd("ip", "-n", d.rtr, "route", "replace", "default", "via", dwGWB, "dev", "wan2"); err != nil {
			return res, err
		}
		if res.rttB, err = measure(netip.AddrPortFrom(probeB, dwEchoPort), false); err != nil {
			return res, err
		}
		if res.rttBNew, err = measure(netip.AddrPortFrom(probeB, dwEchoPort), true); err != nil {
			return res, err
		}
		if err := b.cmd("ip", "-n", d.rtr, "route", "replace", "default", "via", dwGWA, "dev", "wan1"); err != nil {
			return res, err
		}
	}
	res.lost = lost

	// The flood: 4096 flows, half to B's list, half elsewhere, from the LAN client's address,
	// as fast as one core sends them; forwarded packets are counted where the ISPs receive them.
	rtrMAC, err := pktgen.InterfaceMAC(d.rtr, "lan0")
	if err != nil {
		return res, err
	}
	lanMAC, err := pktgen.InterfaceMAC(d.lan, "eth0")
	if err != nil {
		return res, err
	}
	rng := rand.New(rand.NewPCG(7, 8))
	frames := make([][]byte, 4096)
	for i := range frames {
		var dst netip.Addr
		if i%2 == 0 {
			p := list[rng.IntN(len(list))].Addr().As4()
			p[3] = byte(2 + rng.IntN(250))
			dst = netip.AddrFrom4(p)
		} else {
			dst = netip.AddrFrom4([4]byte{10, byte(128 + rng.IntN(64)), byte(rng.IntN(256)), byte(2 + rng.IntN(250))})
		}
		frames[i] = pktgen.UDPv4Frame(rtrMAC, lanMAC, netip.AddrPortFrom(netip.MustParseAddr(dwClient), uint16(1024+i)), netip.AddrPortFrom(dst, 9))
	}
	send, err := pktgen.Open(d.lan, "eth0", frames)
	if err != nil {
		return res, err
	}
	defer send.Close()
	// One slow round first, so that the flood measures established flows: every flow gets its
	// conntrack entry (and, with CONNMARK, its mark: a new flow walks the whole list once),
	// the gateways their ARP entries.
	for range len(frames) / pktgen.BatchSize {
		if _, err := send.Batch(); err != nil {
			return res, err
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := b.waitConntrack(d.rtr, len(frames)); err != nil {
		return res, err
	}
	a0, err := b.rxPackets(d.ispa, "cust")
	if err != nil {
		return res, err
	}
	b0, err := b.rxPackets(d.ispb, "cust")
	if err != nil {
		return res, err
	}
	sent, el, err := paced(send, 1<<30, flood)
	if err != nil {
		return res, err
	}
	time.Sleep(200 * time.Millisecond)
	a1, err := b.rxPackets(d.ispa, "cust")
	if err != nil {
		return res, err
	}
	b1, err := b.rxPackets(d.ispb, "cust")
	if err != nil {
		return res, err
	}
	got := float64(a1 - a0 + b1 - b0)
	res.sent = sent
	res.pps = got / el.Seconds()
	if got > 0 {
		res.shareB = float64(b1-b0) / got
	}
	return res, nil
}

// benchDualWAN answers the seed's question for a list of n CIDRs.
func (b *bench) benchDualWAN(r *report, n int, flood time.Duration, probes int) error {
	list, probeB := dwList(n)
	var lf bytes.Buffer
	lf.WriteString("# ISP B's destination list (roundtrip-bench)\n")
	for _, p := range list {
		lf.WriteString(p.String() + "\n")
	}
	listFile := filepath.Join(b.work, "isp_b.txt")
	if err := os.WriteFile(listFile, lf.Bytes(), 0o600); err != nil {
		return err
	}
	cfgs := b.dwConfigs(listFile)
	results := make([][]dwResult, len(cfgs))
	for run := range b.runs {
		for k := range cfgs {
			i := (k + run) % len(cfgs)
			b.logf("dual-wan: %s (run %d)", cfgs[i].name, run+1)
			res, err := b.dwRun(cfgs[i], list, probeB, listFile, flood, probes)
			if err != nil {
				return err
			}
			b.logf("  setup %.2fs, %.0f pps (%.0f%% to B), rtt A %.0fµs B %.0fµs, new flow A %.0fµs B %.0fµs, lost %d",
				res.setup, res.pps, res.shareB*100, medianOf(res.rttA)*1e6, medianOf(res.rttB)*1e6, medianOf(res.rttANew)*1e6, medianOf(res.rttBNew)*1e6, res.lost)
			results[i] = append(results[i], res)
		}
	}
	med := func(rs []dwResult, f func(dwResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, x := range rs {
			v[i] = f(x)
		}
		return medianOf(v)
	}
	rtt := func(f func(dwResult) []float64) func(dwResult) float64 {
		return func(x dwResult) float64 { return medianOf(f(x)) * 1e6 }
	}
	p99 := func(f func(dwResult) []float64) func(dwResult) float64 {
		return func(x dwResult) float64 {
			v := slices.Clone(f(x))
			if len(v) == 0 {
				return 0
			}
			slices.Sort(v)
			return v[len(v)*99/100] * 1e6
		}
	}
	baseA := med(results[0], rtt(func(x dwResult) []float64 { return x.rttA }))
	baseB := med(results[0], rtt(func(x dwResult) []float64 { return x.rttB }))
	baseAN := med(results[0], rtt(func(x dwResult) []float64 { return x.rttANew }))
	baseBN := med(results[0], rtt(func(x dwResult) []float64 { return x.rttBNew }))
	basePPS := med(results[0], func(x dwResult) float64 { return x.pps })
	sec := r.section(fmt.Sprintf("Dual WAN: which of the three methods is fastest (%d-CIDR list)", len(list)),
		fmt.Sprintf("A router namespace between a LAN namespace and two ISP namespaces, configured from scratch each way in turn and driven with the same traffic: "+
			"a flood of 60-byte UDP frames over 4096 established flows (half to ISP B's list, half elsewhere; each flow sent once beforehand) for %s, as fast as one core sends them from a packet socket "+
			"(forwarded packets counted where the ISPs receive them; the router's forwarding runs on the sender's core, in its softirq), and UDP echo round trips from a Go client in the LAN to a server at each ISP "+
			"(%d on one flow, %d each opening a new flow, so a new conntrack entry) with no other traffic. "+
			"ISP B's probe address is in the middle entry of the list; ISP A's is in no entry, so it walks the whole list wherever a list is walked. "+
			"Every configuration source-NATs the LAN (conntrack runs in all of them). Added latency is the median's difference to the baseline router, "+
			"whose only route is a default via the ISP probed. Medians of %d runs.", flood, probes, probes/2, b.runs))
	sec.table("method", "configure", "forwarded pps", "vs baseline", "to ISP B", "RTT A (one flow)", "RTT B (one flow)", "RTT A, new flow", "RTT B, new flow", "p99 A new flow")
	for i, c := range cfgs {
		rs := results[i]
		pps := med(rs, func(x dwResult) float64 { return x.pps })
		a := med(rs, rtt(func(x dwResult) []float64 { return x.rttA }))
		bb := med(rs, rtt(func(x dwResult) []float64 { return x.rttB }))
		an := med(rs, rtt(func(x dwResult) []float64 { return x.rttANew }))
		bn := med(rs, rtt(func(x dwResult) []float64 { return x.rttBNew }))
		sec.row(c.name, secs(med(rs, func(x dwResult) float64 { return x.setup })), fmt.Sprintf("%.0fk", pps/1000), ratio(pps, basePPS),
			fmt.Sprintf("%.0f%%", 100*med(rs, func(x dwResult) float64 { return x.shareB })),
			usDelta(a, baseA, i == 0), usDelta(bb, baseB, i == 0), usDelta(an, baseAN, i == 0), usDelta(bn, baseBN, i == 0),
			fmt.Sprintf("%.0f µs", med(rs, p99(func(x dwResult) []float64 { return x.rttANew }))))
	}
	for _, c := range cfgs {
		sec.note("- **" + c.name + "**: " + c.how)
	}
	sec.cmds("make bench-dualwan   # go run ./cmd/roundtrip-bench -o - -only dualwan -dualwan-cidrs 10000")
	return nil
}

func usDelta(v, base float64, isBase bool) string {
	if isBase {
		return fmt.Sprintf("%.0f µs", v)
	}
	return fmt.Sprintf("%.0f µs (%+.0f)", v, v-base)
}

// waitConntrack waits until the namespace's conntrack table holds at least n entries.
func (b *bench) waitConntrack(ns string, n int) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var count int
		err := kernel.Namespace{Name: ns}.Do(func() error {
			data, err := os.ReadFile(kernel.SysctlPath("net.netfilter.nf_conntrack_count"))
			if err == nil {
				_, err = fmt.Sscan(string(data), &count)
			}
			return err
		})
		if err != nil {
			return err
		}
		if count >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the router in %s tracks %d connections after the warm-up, want %d", ns, count, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
