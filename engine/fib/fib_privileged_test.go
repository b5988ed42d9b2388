package fib_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"roundtrip/engine/fib"
	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
)

// fibSeeds are the seeds of the random rule sets; ROUNDTRIP_FIB_SEEDS overrides them with a
// comma-separated list, or "random" for a few fresh ones.
func fibSeeds(t *testing.T) []uint64 {
	env := os.Getenv("ROUNDTRIP_FIB_SEEDS")
	switch env {
	case "":
		return []uint64{1, 2, 3}
	case "random":
		n := uint64(time.Now().UnixNano())
		return []uint64{n, n + 1, n + 2}
	}
	var seeds []uint64
	for _, s := range strings.Split(env, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			t.Fatalf("ROUNDTRIP_FIB_SEEDS=%q: %v", env, err)
		}
		seeds = append(seeds, n)
	}
	return seeds
}

// TestPrivilegedFIBMatchesKernel builds random policy rules and routes (every selector, every
// route type, multipath, TOS, metrics, suppress_prefixlength, goto) in a namespace, reads the
// state back with the kernel reader and compares FIB with the kernel's own answer
// (RTM_GETROUTE, as `ip route get`) for thousands of random probes of both families, received
// and locally generated.
func TestPrivilegedFIBMatchesKernel(t *testing.T) {
	lab.Require(t)
	total := map[string]int{}
	defer fib.SetIndexMin(fib.SetIndexMin(0))
	for _, seed := range fibSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			// Odd seeds look up through the tables' top index, which the FIB builds for
			// large tables only, even ones without.
			fib.SetIndexMin(1 << 30)
			if seed%2 == 1 {
				fib.SetIndexMin(1)
			}
			t.Logf("seed %d (rerun with ROUNDTRIP_FIB_SEEDS=%d)", seed, seed)
			d := newFIBLab(t, seed)
			d.randomConfig()
			d.apply()
			st := d.read()
			fb := fib.New(st)
			k := openKernelFIB(t, d.ns)
			counts := map[string]int{}
			var failures []string
			for _, fam := range []inet.Family{inet.V4, inet.V6} {
				for range 2000 {
					fl := d.probe(fam, st)
					want, desc := expectKernel(fb, fl)
					got := kernelGet(t, k, fl)
					counts[fmt.Sprintf("%s %s %s", fam, map[bool]string{true: "input", false: "output"}[fl.IIF != ""], want[0].kind())]++
					if diff := compareKernel(fl, want, got); diff != "" {
						failures = append(failures, fmt.Sprintf("probe: ip %s route get %s\nkernel: %s\nsimulator: %s\n%s\n%sroutes to the destination:\n%s",
							fam.Flag(), kernel.RouteGetArgs(fl), got, want[0], diff, desc, routesTo(st, fl.Dst)))
					}
				}
			}
			logCounts(t, counts)
			for k, n := range counts {
				total[k] += n
			}
			if len(failures) > 0 {
				t.Errorf("%d of %d probes differ from the kernel; rules:\n%s\nfirst ones:\n%s",
					len(failures), 4000, rulesText(st), strings.Join(failures[:min(len(failures), 5)], "\n\n"))
			}
		})
	}
	// A differential test that only ever saw one kind of answer would prove little.
	for _, kind := range []string{"inet output unicast", "inet input unicast", "inet output local", "inet input local",
		"inet6 output unicast", "inet6 input unicast", "inet output ENETUNREACH", "inet6 output ENETUNREACH", "inet input EINVAL",
		"inet output broadcast", "inet6 output anycast"} {
		if total[kind] == 0 {
			t.Errorf("no probe answered %q: the random configurations are too narrow", kind)
		}
	}
}

// TestPrivilegedRPFCheckMatchesKernel compares RPFCheck with the kernel's input path under
// strict and loose reverse-path filtering, with and without src_valid_mark.
func TestPrivilegedRPFCheckMatchesKernel(t *testing.T) {
	lab.Require(t)
	d := newFIBLab(t, 7)
	r := d.ns
	// Replies to 192.168.0.0/16 leave by e2, except for marked packets, which table 7 sends by
	// e1: with src_valid_mark the mark decides the reverse path.
	d.v4 = append(d.v4,
		"route add 192.168.0.0/16 via 10.2.0.254 dev e2",
		"route add 172.16.0.0/12 via 10.3.0.254 dev e3",
		"route add 192.168.0.0/16 via 10.1.0.254 dev e1 table 7",
		"route add blackhole 198.51.100.0/24",
		"route add 10.50.0.0/16 via 10.4.0.254 dev e4",
		"rule add priority 100 fwmark 0x7 lookup 7",
		"rule add priority 101 iif e3 lookup 7",
	)
	d.apply()
	modes := map[string]string{"e1": "1", "e2": "2", "e3": "1", "e4": "0"}
	for dev, m := range modes {
		r.Sysctl("net.ipv4.conf."+dev+".rp_filter", m)
	}
	r.Sysctl("net.ipv4.conf.e1.src_valid_mark", "1")
	st := d.read()
	fb := fib.New(st)
	k := openKernelFIB(t, r)
	accepted, rejected := 0, 0
	srcs := []string{"192.168.1.1", "172.16.5.5", "10.1.0.9", "10.2.0.9", "10.3.0.9", "10.4.0.9", "198.51.100.1", "203.0.113.5", "10.1.0.1", "127.0.0.1"}
	dsts := []string{"10.1.0.1", "10.2.0.1", "10.50.1.1", "192.168.2.2", "172.16.9.9", "10.3.0.255"}
	for _, iif := range []string{"e1", "e2", "e3", "e4"} {
		for _, src := range srcs {
			for _, dst := range dsts {
				for _, mark := range []uint32{0, 7} {
					fl := fib.Flow{Family: inet.V4, IIF: iif, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Mark: mark, Proto: 17}
					ok, rev, why := fb.RPFCheck(fl)
					got := kernelGet(t, k, fl)
					want, _ := expectKernel(fb, fl)
					if diff := compareKernel(fl, want, got); diff != "" {
						t.Errorf("ip route get %s (rp_filter %s): kernel %s, simulator %s (rpf ok=%v: %s; reverse %s table %d dev %s)\n%s",
							kernel.RouteGetArgs(fl), modes[iif], got, want[0], ok, why, rev.Verdict, rev.Table, rev.OIF, diff)
					}
					if ok {
						accepted++
					} else {
						rejected++
					}
				}
			}
		}
	}
	t.Logf("%d probes accepted, %d rejected by the source checks", accepted, rejected)
	if accepted < 50 || rejected < 50 {
		t.Errorf("accepted %d, rejected %d: the probes do not exercise both outcomes", accepted, rejected)
	}
}

// fibLab is a namespace "fib" with five veth links to a peer namespace: e1..e3 plain, e4 without
// carrier (its peer is down) and e5, which goes down after the routes are added, so that
// multipath routes keep dead nexthops through it.
type fibLab struct {
	t      *testing.T
	rng    *rand.Rand
	ns     *lab.NS
	peer   *lab.NS
	v4, v6 []string // ip -batch lines
}

var fibLinks = []string{"e1", "e2", "e3", "e4", "e5"}

func newFIBLab(t *testing.T, seed uint64) *fibLab {
	l := lab.NewPrefixed(t, "rtfb")
	r, p := l.NS("fib"), l.NS("peer")
	// Addresses must be usable at once: no duplicate address detection anywhere.
	r.NoDAD()
	for i, name := range fibLinks {
		l.Veth(r, name, p, "p"+name[1:])
		n := i + 1
		r.IP("addr", "add", fmt.Sprintf("10.%d.0.1/24", n), "dev", name)
		r.IP("addr", "add", fmt.Sprintf("10.%d.0.2/24", n), "dev", name) // secondary
		r.IP("addr", "add", fmt.Sprintf("10.%d.1.1/24", n), "dev", name)
		r.IP("-6", "addr", "add", fmt.Sprintf("2001:db8:%d::1/64", n), "dev", name, "nodad")
		r.IP("-6", "addr", "add", fmt.Sprintf("fd00:%d::1/64", n), "dev", name, "nodad")
	}
	p.IP("link", "set", "p4", "down")
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"}, {"net.ipv6.conf.all.forwarding", "1"},
		{"net.ipv4.conf.all.rp_filter", "0"}, {"net.ipv4.conf.default.rp_filter", "0"},
	} {
		r.Sysctl(kv[0], kv[1])
	}
	for _, name := range fibLinks {
		r.Sysctl("net.ipv4.conf."+name+".rp_filter", "0")
	}
	return &fibLab{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), ns: r, peer: p}
}

// apply runs the batch lines (failures are expected: random routes may be refused, and the
// state is read back from the kernel), then takes e5 down.
func (d *fibLab) apply() {
	d.t.Helper()
	for fam, lines := range map[string][]string{"-4": d.v4, "-6": d.v6} {
		if len(lines) == 0 {
			continue
		}
		path := filepath.Join(d.t.TempDir(), "batch"+fam)
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			d.t.Fatal(err)
		}
		out, _ := d.ns.Try("ip", fam, "-force", "-batch", path)
		d.t.Logf("ip %s -batch: %d commands, %d refused", fam, len(lines), strings.Count(out, "Command failed"))
	}
	d.ns.IP("link", "set", "e5", "down")
}

func (d *fibLab) read() *model.State {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := kernel.Read(ctx, kernel.Namespace{Name: d.ns.Name})
	if err != nil {
		d.t.Fatalf("reading the namespace: %v", err)
	}
	return st
}

func (d *fibLab) pick(xs ...string) string { return xs[d.rng.IntN(len(xs))] }
func (d *fibLab) chance(p float64) bool    { return d.rng.Float64() < p }

// v4Regions and v6Regions are where random prefixes and probes fall: the links' subnets and a
// few /16 (/48) beyond them, so that prefixes overlap and probes hit the overlaps.
var (
	v4Regions = []string{"10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16", "10.50.0.0/16", "10.51.0.0/16", "192.168.0.0/16"}
	v6Regions = []string{"2001:db8:1::/48", "2001:db8:2::/48", "2001:db8:50::/48", "2001:db8:51::/48", "fd00:1::/48", "fd00:60::/48"}
)

func (d *fibLab) randomAddr(region string) netip.Addr {
	p := netip.MustParsePrefix(region)
	b := p.Addr().AsSlice()
	for i := p.Bits() / 8; i < len(b); i++ {
		b[i] = byte(d.rng.IntN(256))
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (d *fibLab) randomPrefix(fam inet.Family) netip.Prefix {
	if fam == inet.V4 {
		if d.chance(0.04) {
			return netip.MustParsePrefix("0.0.0.0/0")
		}
		bitsLen := []int{8, 12, 16, 20, 22, 24, 24, 25, 26, 28, 30, 32}[d.rng.IntN(12)]
		return netip.PrefixFrom(d.randomAddr(d.pick(v4Regions...)), bitsLen).Masked()
	}
	if d.chance(0.04) {
		return netip.MustParsePrefix("::/0")
	}
	bitsLen := []int{16, 32, 40, 48, 52, 56, 60, 64, 64, 80, 120, 128}[d.rng.IntN(12)]
	return netip.PrefixFrom(d.randomAddr(d.pick(v6Regions...)), bitsLen).Masked()
}

func (d *fibLab) gateway(fam inet.Family, link int) netip.Addr {
	if fam == inet.V4 {
		return netip.MustParseAddr(fmt.Sprintf("10.%d.%d.%d", link, d.rng.IntN(2), 10+d.rng.IntN(10)))
	}
	return netip.MustParseAddr(fmt.Sprintf("2001:db8:%d::%x", link, 0x10+d.rng.IntN(10)))
}

func (d *fibLab) localAddr(fam inet.Family) netip.Addr {
	n := 1 + d.rng.IntN(len(fibLinks))
	if fam == inet.V4 {
		return netip.MustParseAddr(fmt.Sprintf("10.%d.%s", n, d.pick("0.1", "0.2", "1.1")))
	}
	return netip.MustParseAddr(fmt.Sprintf("%s:%d::1", d.pick("2001:db8", "fd00"), n))
}

var fibTables = []int{100, 200, 300, model.TableMain, model.TableDefault}

func (d *fibLab) randomRoute(fam inet.Family) model.Route {
	r := model.Route{Family: fam, Dst: d.randomPrefix(fam), Table: fibTables[d.rng.IntN(len(fibTables))]}
	if d.chance(0.03) {
		r.Table = model.TableLocal
	}
	r.Metric = []int{0, 0, 10, 100}[d.rng.IntN(4)]
	if fam == inet.V4 && d.chance(0.2) {
		r.TOS = []uint8{0x04, 0x08, 0x10, 0x18}[d.rng.IntN(4)]
	}
	link := 1 + d.rng.IntN(len(fibLinks))
	switch x := d.rng.Float64(); {
	case x < 0.05:
		r.Type = model.RouteBlackhole
	case x < 0.10:
		r.Type = model.RouteUnreachable
	case x < 0.15:
		r.Type = model.RouteProhibit
	case x < 0.22:
		r.Type = model.RouteThrow
	case x < 0.26:
		r.Type = model.RouteLocal
		r.Dev = d.pick("lo", fibLinks[link-1])
	case x < 0.40:
		for n := 2 + d.rng.IntN(2); len(r.Nexthops) < n; {
			l := 1 + d.rng.IntN(len(fibLinks))
			r.Nexthops = append(r.Nexthops, model.Nexthop{Gateway: d.gateway(fam, l), Dev: fibLinks[l-1], Weight: 1 + d.rng.IntN(3), OnLink: fam == inet.V4 && d.chance(0.5)})
		}
	case x < 0.55:
		r.Dev = fibLinks[link-1]
	default:
		r.Gateway, r.Dev = d.gateway(fam, link), fibLinks[link-1]
		r.OnLink = fam == inet.V4 && d.chance(0.5)
	}
	if (r.Type == "" || r.Type == model.RouteUnicast) && d.chance(0.1) {
		r.Src = d.localAddr(fam)
	}
	return r
}

func (d *fibLab) randomRule(fam inet.Family, prios []int) model.Rule {
	r := model.Rule{Family: fam, Priority: prios[d.rng.IntN(len(prios))], Not: d.chance(0.1)}
	if d.chance(0.25) {
		r.Src = d.randomPrefix(fam)
		if d.chance(0.4) {
			r.Src = netip.PrefixFrom(d.localAddr(fam), map[inet.Family]int{inet.V4: 24, inet.V6: 64}[fam]).Masked()
		}
	}
	if d.chance(0.25) {
		r.Dst = d.randomPrefix(fam)
	}
	if d.chance(0.15) {
		r.IIF = d.pick("e1", "e2", "e3", "e4", "e5", "lo", "ghost0")
	}
	if d.chance(0.1) {
		r.OIF = d.pick("e1", "e2", "e3", "e5", "ghost0")
	}
	if d.chance(0.25) {
		r.Mark = &model.MarkMatch{Value: []uint32{1, 2, 3, 0x10, 0xff}[d.rng.IntN(5)], Mask: []uint32{0xffffffff, 0x0f, 0xf0}[d.rng.IntN(3)]}
		r.Mark.Value &= r.Mark.Mask
	}
	if d.chance(0.12) {
		if fam == inet.V4 {
			r.TOS = []uint8{0x04, 0x08, 0x10, 0x18}[d.rng.IntN(4)]
		} else {
			r.TOS = []uint8{0x10, 0x20, 0xb8}[d.rng.IntN(3)]
		}
	}
	if d.chance(0.15) {
		r.IPProto = []int{6, 17, 1}[d.rng.IntN(3)]
		if fam == inet.V6 && r.IPProto == 1 {
			r.IPProto = 58
		}
	}
	if d.chance(0.1) {
		lo := uint16(1000 + d.rng.IntN(100))
		r.SPort = &model.PortRange{Start: lo, End: lo + uint16(d.rng.IntN(50))}
	}
	if d.chance(0.1) {
		lo := uint16(80 + d.rng.IntN(10))
		r.DPort = &model.PortRange{Start: lo, End: lo + uint16(d.rng.IntN(5))}
	}
	if d.chance(0.1) {
		lo := uint32(d.rng.IntN(1500))
		r.UIDRange = &model.UIDRange{Start: lo, End: lo + uint32(d.rng.IntN(1000))}
	}
	switch x := d.rng.Float64(); {
	case x < 0.08:
		r.Action = model.ActionGoto
		r.Goto = prios[d.rng.IntN(len(prios))]
		if r.Goto <= r.Priority {
			r.Goto = r.Priority + 1 + d.rng.IntN(100) // most likely a missing target
		}
	case x < 0.12:
		r.Action = model.ActionNop
	case x < 0.16:
		r.Action = model.ActionBlackhole
	case x < 0.20:
		r.Action = model.ActionUnreachable
	case x < 0.24:
		r.Action = model.ActionProhibit
	default:
		r.Action = model.ActionTable
		r.Table = append(fibTables, model.TableLocal, 999)[d.rng.IntN(len(fibTables)+2)]
		if d.chance(0.2) {
			n := []int{0, 8, 16, 24, 32, 48, 64}[d.rng.IntN(7)]
			r.SuppressPrefixLen = &n
		}
		if d.chance(0.05) {
			g := d.pick("0", "7")
			n, _ := strconv.Atoi(g)
			r.SuppressIfGroup = &n
		}
	}
	return r
}

// tableNumber names tables as `ip` does without an rt_tables file.
var tableNumber = (&model.State{}).TableName

func (d *fibLab) randomConfig() {
	if d.chance(0.5) {
		d.ns.Sysctl("net.ipv4.conf.e4.ignore_routes_with_linkdown", "1")
		d.ns.Sysctl("net.ipv6.conf.e4.ignore_routes_with_linkdown", "1")
	}
	for _, fam := range []inet.Family{inet.V4, inet.V6} {
		// The kernel resolves a route's gateway when the route is added, against the rules
		// and routes of that moment, and the simulator against the final state: add rules
		// first, then the routes without gateways, so that both see the same.
		var lines, gatewayRoutes []string
		prios := make([]int, 10+d.rng.IntN(8))
		for i := range prios {
			prios[i] = 100 + d.rng.IntN(32000)
		}
		for range len(prios) {
			lines = append(lines, "rule add "+d.randomRule(fam, prios).Args(tableNumber))
		}
		for range 120 {
			r := d.randomRoute(fam)
			if r.Gateway.IsValid() || len(r.Nexthops) > 0 {
				gatewayRoutes = append(gatewayRoutes, "route add "+r.Args(tableNumber))
			} else {
				lines = append(lines, "route add "+r.Args(tableNumber))
			}
		}
		lines = append(lines, gatewayRoutes...)
		if fam == inet.V4 {
			d.v4 = lines
		} else {
			d.v6 = lines
		}
	}
}

// probe makes a random flow aimed at the configured prefixes, local addresses and subnets.
func (d *fibLab) probe(fam inet.Family, st *model.State) fib.Flow {
	fl := fib.Flow{Family: fam}
	regions := v4Regions
	if fam == inet.V6 {
		regions = v6Regions
	}
	switch x := d.rng.Float64(); {
	case x < 0.5:
		var rs []model.Route
		for _, r := range st.Routes {
			if r.Family == fam && r.Dst.Bits() > 0 && r.Type != model.RouteMulticast {
				rs = append(rs, r)
			}
		}
		p := rs[d.rng.IntN(len(rs))].Dst
		a := d.randomAddr(netip.PrefixFrom(p.Addr(), p.Bits()/8*8).String())
		// Keep the prefix's bits, randomise the rest.
		pb, ab := p.Addr().AsSlice(), a.AsSlice()
		for i := range pb {
			keep := min(max(p.Bits()-8*i, 0), 8)
			m := byte(0xff << (8 - keep))
			ab[i] = pb[i]&m | ab[i]&^m
		}
		fl.Dst, _ = netip.AddrFromSlice(ab)
	case x < 0.75:
		fl.Dst = d.randomAddr(d.pick(regions...))
	case x < 0.9:
		fl.Dst = d.localAddr(fam)
		if fam == inet.V4 && d.chance(0.3) {
			fl.Dst = netip.MustParseAddr(fmt.Sprintf("10.%d.0.255", 1+d.rng.IntN(5)))
		}
	case x < 0.93:
		// Loopback, limited broadcast and link-local destinations.
		if fam == inet.V4 {
			fl.Dst = netip.MustParseAddr(d.pick("127.0.0.1", "127.3.2.1", "255.255.255.255"))
		} else {
			fl.Dst = d.randomAddr("fe80::/64")
		}
	default:
		if fam == inet.V4 {
			fl.Dst = d.randomAddr(fmt.Sprintf("10.%d.%d.0/24", 1+d.rng.IntN(5), d.rng.IntN(2)))
		} else {
			fl.Dst = d.randomAddr(fmt.Sprintf("2001:db8:%d::/64", 1+d.rng.IntN(5)))
		}
	}
	fl.Mark = []uint32{0, 0, 1, 2, 3, 0x10, 0x11, 0xff, d.rng.Uint32()}[d.rng.IntN(9)]
	if fam == inet.V4 {
		fl.TOS = []uint8{0, 0, 0x04, 0x08, 0x10, 0x18, 0x30, 0xb8}[d.rng.IntN(8)]
	} else {
		fl.TOS = []uint8{0, 0, 0x10, 0x20, 0xb8, 0x12}[d.rng.IntN(6)]
	}
	if fam == inet.V4 {
		// RTM_GETROUTE looks up IPv4 flows without a protocol as UDP (inet_rtm_getroute):
		// probes always name one so that the simulator sees what the kernel does.
		fl.Proto = []int{6, 17, 1}[d.rng.IntN(3)]
	} else {
		fl.Proto = []int{0, 6, 17, 58}[d.rng.IntN(4)]
	}
	fl.UID = []uint32{0, 500, 1000, 1500, 65534}[d.rng.IntN(5)]
	if d.chance(0.45) {
		fl.IIF = d.pick("e1", "e2", "e3", "e4", "e5", "lo")
		if d.chance(0.1) {
			fl.Src = d.localAddr(fam)
		} else {
			fl.Src = d.randomAddr(d.pick(regions...))
		}
		// An input route lookup of `ip route get` sees ports only through the TCP or UDP
		// header it builds (inet_rtm_getroute_build_skb).
		if fam == inet.V4 && fl.Proto != 6 && fl.Proto != 17 {
			return fl
		}
	} else {
		switch x := d.rng.Float64(); {
		case x < 0.4:
			fl.Src = d.localAddr(fam)
		case x < 0.5:
			fl.Src = d.randomAddr(d.pick(regions...))
		}
		if d.chance(0.15) {
			fl.OIF = d.pick(fibLinks...)
		}
	}
	fl.SPort = uint16(990 + d.rng.IntN(200))
	fl.DPort = uint16(78 + d.rng.IntN(15))
	return fl
}

// openKernelFIB opens a route prober (RTM_GETROUTE, as `ip route get`) inside the namespace.
func openKernelFIB(t *testing.T, ns *lab.NS) *kernel.RouteProber {
	p, err := kernel.Namespace{Name: ns.Name}.OpenRouteProber()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// kernelGet asks the kernel with every selector of the flow.
func kernelGet(t *testing.T, p *kernel.RouteProber, fl fib.Flow) kernel.RouteAnswer {
	t.Helper()
	a, err := p.RouteGet(fl)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// expectation is what the simulator predicts the kernel answers.
type expectation struct {
	errno syscall.Errno
	res   fib.Result
	why   string
}

func (e expectation) kind() string {
	if e.errno != 0 {
		return unix.ErrnoName(e.errno)
	}
	return e.res.Verdict
}

func (e expectation) String() string {
	if e.errno != 0 {
		return unix.ErrnoName(e.errno) + " (" + e.res.Verdict + ")"
	}
	s := fmt.Sprintf("%s table %d dev %s", e.res.Verdict, e.res.Table, e.res.OIF)
	if e.res.Gateway.IsValid() {
		s += " via " + e.res.Gateway.String()
	}
	if e.res.Src.IsValid() {
		s += " src " + e.res.Src.String()
	}
	if len(e.res.Candidates) > 0 {
		s += fmt.Sprintf(" candidates %v", e.res.Candidates)
	}
	return s
}

// expectKernel turns the simulator's answer into the kernel's possible replies to `ip route get`:
// the error it returns, or the route; one for each path of a multipath route the kernel may hash
// the flow to. For IPv4 input lookups the source checks come first, from the chosen path; the
// kernel reports any refusal of the input path as EINVAL.
func expectKernel(f *fib.FIB, fl fib.Flow) ([]expectation, string) {
	res := f.Lookup(fl)
	desc := "simulator steps:\n" + stepsOf(res)
	alts := []fib.Result{res}
	if len(res.Candidates) > 0 {
		alts = alts[:0]
		for _, c := range res.Candidates {
			p, err := f.PickNexthop(fl, res, c)
			if err != nil {
				panic(err)
			}
			alts = append(alts, p)
		}
	}
	var out []expectation
	for _, res := range alts {
		e := expectation{res: res}
		out = append(out, e)
		if fl.IIF != "" && fl.Family == inet.V4 {
			ok, rev, why := f.RPFCheckFor(fl, res)
			out[len(out)-1].why = why
			if !ok {
				out[len(out)-1].errno = unix.EINVAL
				out[len(out)-1].res.Verdict = "refused: " + why
				desc += fmt.Sprintf("source check via %s: %s\nreverse lookup:\n%s", res.OIF, why, stepsOf(rev))
				continue
			}
		}
		e = out[len(out)-1]
		switch res.Verdict {
		case fib.VerdictNoRoute:
			e.errno = unix.ENETUNREACH
		case fib.VerdictUnreachable:
			e.errno = unix.ENETUNREACH // a rule's unreachable is ENETUNREACH (fib4_rule_action)
			if res.Route != nil {
				e.errno = unix.EHOSTUNREACH
			}
		case fib.VerdictProhibit:
			e.errno = unix.EACCES
		case fib.VerdictBlackhole, fib.VerdictInvalid:
			e.errno = unix.EINVAL
		case fib.VerdictUnicast, fib.VerdictLocal, fib.VerdictBroadcast:
		case model.RouteAnycast:
			if fl.IIF != "" && fl.Family == inet.V4 {
				e.errno = unix.EINVAL // martian destination
			}
		default:
			e.errno = unix.EINVAL
		}
		out[len(out)-1] = e
	}
	return out, desc
}

func stepsOf(res fib.Result) string {
	var b strings.Builder
	for _, s := range res.Steps {
		fmt.Fprintf(&b, "  %s => %s\n", s.Rule.Args(tableNumber), s.Outcome)
	}
	if res.Note != "" {
		b.WriteString("  note: " + res.Note + "\n")
	}
	return b.String()
}

// compareKernel says how the kernel's answer differs from every expectation, "" when it matches
// one.
func compareKernel(fl fib.Flow, alts []expectation, got kernel.RouteAnswer) string {
	var diffs []string
	for _, want := range alts {
		d := compareOne(fl, want, got)
		if d == "" {
			return ""
		}
		diffs = append(diffs, d)
	}
	return strings.Join(diffs, "\nor ")
}

func compareOne(fl fib.Flow, want expectation, got kernel.RouteAnswer) string {
	if want.errno != 0 || got.Errno != 0 {
		if want.errno != got.Errno {
			return fmt.Sprintf("errors differ: kernel %s, simulator %s", got, want)
		}
		return ""
	}
	res := want.res
	var diffs []string
	if got.Verdict != res.Verdict {
		diffs = append(diffs, fmt.Sprintf("type %s, simulator %s", got.Verdict, res.Verdict))
	}
	if got.Table != res.Table {
		diffs = append(diffs, fmt.Sprintf("table %d, simulator %d", got.Table, res.Table))
	}
	if got.OIF != res.OIF {
		diffs = append(diffs, fmt.Sprintf("dev %s, simulator %s", got.OIF, res.OIF))
	}
	if got.Gateway != res.Gateway {
		diffs = append(diffs, fmt.Sprintf("gateway %v, simulator %v", got.Gateway, res.Gateway))
	}
	if fl.IIF == "" {
		// IPv4 reports the source only when it is not the one asked for (RouteAnswer.Src is
		// then the flow's); IPv6 always reports the source it would select for the route.
		src, wantSrc := got.PrefSrc, res.PrefSrc
		if fl.Family == inet.V4 {
			src, wantSrc = got.Src, res.Src
		}
		if src != wantSrc {
			diffs = append(diffs, fmt.Sprintf("source %v, simulator %v", src, wantSrc))
		}
	}
	if len(diffs) > 0 {
		return fmt.Sprintf("%s: %s", want, strings.Join(diffs, "; "))
	}
	return ""
}

func routesTo(st *model.State, dst netip.Addr) string {
	var b strings.Builder
	for _, r := range st.Routes {
		if r.Dst.Contains(dst) {
			fmt.Fprintf(&b, "  %s\n", r.Args(tableNumber))
		}
	}
	return b.String()
}

func rulesText(st *model.State) string {
	var b strings.Builder
	for _, r := range st.Rules {
		fmt.Fprintf(&b, "  ip %s rule add %s\n", r.Family.Flag(), r.Args(tableNumber))
	}
	return b.String()
}

func logCounts(t *testing.T, counts map[string]int) {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-40s %d\n", k, counts[k])
	}
	t.Logf("probe answers:\n%s", b.String())
}
