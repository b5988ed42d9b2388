package wizards

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/trace"
)

// The field cases for real: in lab namespaces, each failure is reproduced with a real client,
// the wizard's plan is applied by the engine's applier, the client succeeds, trace finds
// nothing wrong with the flow, and rollback brings back the failure and the exact state.

const clientTimeout = 1500 * time.Millisecond

// e2eHost is the lab namespace a wizard plans for, with its own rt_tables directory and
// journal store so that nothing outside the lab is touched.
type e2eHost struct {
	t       *testing.T
	ns      *lab.NS
	dirs    []string
	applier *kernel.Applier
	applied int
}

func newE2EHost(t *testing.T, ns *lab.NS) *e2eHost {
	dirs := []string{t.TempDir()}
	k := kernel.Namespace{Name: ns.Name}
	return &e2eHost{t: t, ns: ns, dirs: dirs, applier: &kernel.Applier{NS: k, RTTablesDirs: dirs, LockWait: 10 * time.Second,
		Store: &kernel.Store{Dir: t.TempDir(), NS: k}}}
}

// settle waits until the namespace's IPv6 addresses have left duplicate address detection:
// their local routes appear only then, and a state read before would differ from one read
// after a rollback for that reason alone.
func (h *e2eHost) settle() {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := h.ns.IP("-6", "addr", "show", "tentative")
		if strings.TrimSpace(out) == "" {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("IPv6 addresses of %s still tentative after 5s:\n%s", h.ns.Name, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *e2eHost) read() *model.State {
	h.t.Helper()
	st, err := kernel.ReadWith(context.Background(), kernel.Namespace{Name: h.ns.Name}, kernel.ReadOptions{RTTablesDirs: h.dirs})
	if err != nil {
		h.t.Fatalf("reading %s: %v", h.ns.Name, err)
	}
	return st
}

func (h *e2eHost) plan(w Wizard) *Result {
	h.t.Helper()
	res, err := w.Plan(h.read())
	if err != nil {
		h.t.Fatalf("%s: %v", intent(w), err)
	}
	return res
}

// apply plans w on the host, applies the plan and checks that it is in effect.
func (h *e2eHost) apply(w Wizard) *Result {
	h.t.Helper()
	res := h.plan(w)
	if len(res.Plan.Changes) == 0 {
		h.t.Fatalf("%s: empty plan on a host that lacks the setup", intent(w))
	}
	out, err := h.applier.Apply(context.Background(), res.Plan, kernel.ApplyOptions{})
	if err != nil {
		h.t.Fatalf("applying %s: %v\n%s", intent(w), err, res.Plan.Script())
	}
	if len(out.Drift) > 0 {
		h.t.Errorf("after applying %s the host differs from the plan:\n%s", intent(w), strings.Join(out.Drift, "\n"))
	}
	h.applied++
	return res
}

// replanIsEmpty plans w again on the live host: nothing is left to do.
func (h *e2eHost) replanIsEmpty(w Wizard) {
	h.t.Helper()
	if res := h.plan(w); len(res.Plan.Changes) != 0 {
		h.t.Errorf("re-running %s plans %d changes, want none:\n%s", intent(w), len(res.Plan.Changes), res.Plan.Script())
	}
}

// rollbackAll undoes every apply of the test, latest first.
func (h *e2eHost) rollbackAll() {
	h.t.Helper()
	for ; h.applied > 0; h.applied-- {
		if _, err := h.applier.Rollback(context.Background(), "", "test"); err != nil {
			h.t.Fatalf("rolling back: %v", err)
		}
	}
}

// findings traces a TCP flow on the live host and returns its findings.
func (h *e2eHost) findings(src, dst, iif string) []string {
	h.t.Helper()
	return traceFlow(h.read(), src, dst, iif)
}

func (h *e2eHost) expectFinding(id, src, dst, iif string) {
	h.t.Helper()
	f := h.findings(src, dst, iif)
	if !strings.Contains(strings.Join(f, "\n"), id+":") {
		h.t.Errorf("trace of %s -> %s on %s finds %q, want %s", src, dst, h.ns.Name, f, id)
	}
}

func (h *e2eHost) expectNoFinding(src, dst, iif string) {
	h.t.Helper()
	if f := h.findings(src, dst, iif); len(f) > 0 {
		h.t.Errorf("trace of %s -> %s on %s still finds:\n%s", src, dst, h.ns.Name, strings.Join(f, "\n"))
	}
}

// sameState checks that rollback left the host exactly as it was.
func (h *e2eHost) sameState(before *model.State) {
	h.t.Helper()
	if d := model.Diff(before, h.read()); d != "" {
		h.t.Errorf("after rollback %s differs from before the wizard:\n%s", h.ns.Name, d)
	}
}

func fails(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s succeeded, want it to fail", what)
	}
}

func gets(t *testing.T, what string, body string, err error, want string) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if !strings.HasPrefix(body, want) {
		t.Errorf("%s answered %q, want %q", what, body, want)
	}
}

func TestPrivilegedCase1SourceReturn(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{ModeFrom, ModeConnmark} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c := lab.Case1(t)
			h := newE2EHost(t, c.Server)
			get := func() (string, error) { return c.Client.HTTPGet(c.Service, clientTimeout) }
			_, err := get()
			fails(t, "the client through the firewall's DNAT, before the wizard", err)
			flow := []string{c.ClientAddr + ":40000", c.ServerAddr, c.ServerLAN}
			h.expectFinding(trace.FindingAsymmetricReturn, flow[0], flow[1], flow[2])

			h.settle()
			before := h.read()
			w := &SourceReturnOptions{Uplinks: []Uplink{{Iface: c.ServerLAN}, {Iface: c.ServerPublic}}, Mode: mode}
			h.apply(w)
			body, err := get()
			gets(t, "the client after the wizard", body, err, c.Body)
			h.expectNoFinding(flow[0], flow[1], flow[2])
			h.replanIsEmpty(w)

			h.rollbackAll()
			_, err = get()
			fails(t, "the client after rollback", err)
			h.sameState(before)
		})
	}
}

func TestPrivilegedCase2MultiWAN(t *testing.T) {
	t.Parallel()
	c := lab.Case2(t)
	gw := newE2EHost(t, c.GW)
	// ISP B's destination list: its customer network among a few thousand others.
	list := filepath.Join(t.TempDir(), "isp_b.txt")
	var b strings.Builder
	fmt.Fprintf(&b, "# ISP B\n%s\n", c.NetB)
	for i := range 2000 {
		fmt.Fprintf(&b, "100.%d.%d.0/24\n", 64+i/256, i%256)
	}
	if err := os.WriteFile(list, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	type check struct {
		what   string
		from   *lab.NS
		to     string
		answer string // the body's prefix: the web page, or the source address a server saw
	}
	web := func(pub string) string { return pub + ":80" }
	checks := []check{
		{"cross access: ISP A's client to ISP B's address", c.ClientA, web(c.PublicB), c.Body},
		{"cross access: ISP B's client to ISP A's address", c.ClientB, web(c.PublicA), c.Body},
		{"a LAN host to ISP B's network leaves by ISP B", c.LANHost, c.ServerBAddr, c.PublicB + ":"},
		{"a LAN host to ISP A's network leaves by ISP A", c.LANHost, c.ServerAAddr, c.PublicA + ":"},
		{"hairpin: a LAN host to ISP B's address", c.LANHost, web(c.PublicB), c.Body},
		{"hairpin: a LAN host to ISP A's address", c.LANHost, web(c.PublicA), c.Body},
	}
	// Before: everything fails but cross access to ISP A's address, whose answer happens to
	// leave by ISP A (the default route) already.
	broken := func(when string) {
		for _, ch := range checks {
			body, err := ch.from.HTTPGet(ch.to, clientTimeout)
			if ch.to == web(c.PublicA) && ch.from == c.ClientB {
				gets(t, ch.what+" "+when, body, err, ch.answer)
				continue
			}
			fails(t, ch.what+" "+when, err)
		}
	}
	broken("before the wizards")
	cross := []string{c.ClientAAddr + ":40000", web(c.PublicB), c.WANB}
	gw.expectFinding(trace.FindingAsymmetricReturn, cross[0], cross[1], cross[2])

	gw.settle()
	before := gw.read()
	mw := &MultiWANOptions{
		WANs:       []WAN{{Iface: c.WANA, Gateway: netip.MustParseAddr(c.GWA), Name: "isp_a"}, {Iface: c.WANB, Gateway: netip.MustParseAddr(c.GWB), Name: "isp_b"}},
		LANs:       []string{c.LAN},
		Default:    "isp_a",
		RouteLists: []RouteList{{WAN: "isp_b", File: list}},
		SNAT:       true, Connmark: true,
	}
	pfA := &PortForwardOptions{ListenAddr: netip.MustParseAddr(c.PublicA), ListenPort: 80, In: c.WANA, To: netip.MustParseAddrPort(c.WebAddr + ":80"), Hairpin: true}
	pfB := &PortForwardOptions{ListenAddr: netip.MustParseAddr(c.PublicB), ListenPort: 80, In: c.WANB, To: netip.MustParseAddrPort(c.WebAddr + ":80"), Hairpin: true}
	start := time.Now()
	gw.apply(mw)
	t.Logf("multi-wan with %d listed networks planned and applied in %s", 2001, time.Since(start).Round(time.Millisecond))
	gw.apply(pfA)
	gw.apply(pfB)

	for _, ch := range checks {
		body, err := ch.from.HTTPGet(ch.to, clientTimeout)
		gets(t, ch.what+" after the wizards", body, err, ch.answer)
	}
	gw.expectNoFinding(cross[0], cross[1], cross[2])
	gw.expectNoFinding(c.ClientBAddr+":40000", web(c.PublicA), c.WANA)
	gw.expectNoFinding(c.LANHostAddr+":40000", c.ServerBAddr, c.LAN)
	gw.expectNoFinding(c.LANHostAddr+":40000", web(c.PublicB), c.LAN)

	// Re-running changes nothing, and no rule is there twice.
	for _, w := range []Wizard{mw, pfA, pfB} {
		gw.replanIsEmpty(w)
	}
	seen := map[string]bool{}
	st := gw.read()
	for _, r := range st.Rules {
		k := r.Family.String() + " " + r.Selectors() + " " + r.ActionString(st.TableName)
		if seen[k] {
			t.Errorf("rule %q is there twice", k)
		}
		seen[k] = true
	}

	gw.rollbackAll()
	broken("after rollback")
	gw.sameState(before)
}

func TestPrivilegedCase3Tunnel(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{"vxlan", "ipip", "gre"} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			c := lab.Case3(t)
			if typ != "vxlan" {
				// Try the real thing: the kernel loads the module on demand when it can.
				if _, err := c.Relay1.Try("ip", "link", "add", "rtprobe", "type", typ, "local", c.Relay1Addr, "remote", c.Relay2Addr); err != nil {
					lab.SkipKernel(t, typ, err)
				}
				c.Relay1.IP("link", "del", "rtprobe")
			}
			_, err := c.Get(clientTimeout)
			fails(t, "the client across the border, before the wizard", err)

			r1 := newE2EHost(t, c.Relay1)
			r1.settle()
			before := r1.read()
			w := &TunnelOptions{Type: typ, Local: netip.MustParseAddr(c.Relay1Addr), Remote: netip.MustParseAddr(c.Relay2Addr),
				Address: netip.MustParsePrefix("10.73.99.1/30"), Routes: []netip.Prefix{netip.MustParsePrefix(c.ServerAddr + "/32")}, UplinkOnly: true}
			res := r1.apply(w)
			// The other end runs the peer script, as the operator would.
			if out, err := c.Relay2.Try("sh", "-c", res.PeerScript()); err != nil {
				t.Fatalf("the peer script failed on relay 2: %v\n%s\n%s", err, out, res.PeerScript())
			}
			body, err := c.Get(clientTimeout)
			gets(t, "the client through the tunnel", body, err, c.Body)
			r1.expectNoFinding(c.ClientPublic+":40000", c.Service, c.Relay1LAN)
			r1.replanIsEmpty(w)

			r1.rollbackAll()
			_, err = c.Get(clientTimeout)
			fails(t, "the client after rollback", err)
			r1.sameState(before)
		})
	}
}

func TestPrivilegedCase4SNATGateway(t *testing.T) {
	t.Parallel()
	c := lab.Case4(t)
	b := newE2EHost(t, c.B)
	get := func() (string, error) { return c.A.HTTPGet(c.Service, clientTimeout) }
	_, err := get()
	fails(t, "A to the business network, before the wizard", err)
	flow := []string{c.AAddr + ":40000", c.Service, c.BIn}
	b.expectFinding(trace.FindingForwardingDisabled, flow[0], flow[1], flow[2])

	b.settle()
	before := b.read()
	w := &SNATGatewayOptions{From: []netip.Prefix{netip.MustParsePrefix("10.72.43.0/24")}, To: []netip.Prefix{netip.MustParsePrefix("10.72.44.0/24")}, Out: c.BOut}
	res := b.apply(w)
	// A runs the peer script (its route through B is there already: the script is idempotent).
	if out, err := c.A.Try("sh", "-c", res.PeerScript()); err != nil {
		t.Fatalf("the peer script failed on A: %v\n%s", err, out)
	}
	body, err := get()
	gets(t, "A after the wizard", body, err, c.Body)
	b.expectNoFinding(flow[0], flow[1], flow[2])
	b.replanIsEmpty(w)

	b.rollbackAll()
	_, err = get()
	fails(t, "A after rollback", err)
	b.sameState(before)
}

func TestPrivilegedCase5PortForward(t *testing.T) {
	t.Parallel()
	c := lab.Case5(t)
	a := newE2EHost(t, c.A)
	get := func() (string, error) { return c.Client.HTTPGet(c.Service, clientTimeout) }
	_, err := get()
	fails(t, "the client through A's DNAT, before the wizard", err)
	flow := []string{c.ClientAddr + ":40000", c.Service, c.AIface}
	a.expectFinding(trace.FindingReplyBypassesNAT, flow[0], flow[1], flow[2])

	a.settle()
	before := a.read()
	w := &PortForwardOptions{ListenAddr: netip.MustParseAddr(c.AAddr), ListenPort: 81, To: netip.MustParseAddrPort(c.Backend)}
	res := a.apply(w)
	if !strings.Contains(strings.Join(res.Notes, "\n"), "DNAT is already there") {
		t.Errorf("the wizard did not keep the existing DNAT: %q", res.Notes)
	}
	body, err := get()
	gets(t, "the client after the wizard", body, err, c.Body)
	a.expectNoFinding(flow[0], flow[1], flow[2])
	a.replanIsEmpty(w)

	a.rollbackAll()
	_, err = get()
	fails(t, "the client after rollback", err)
	a.sameState(before)
}
