package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"roundtrip/engine"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
)

// These tests rebuild field cases 1, 4 and 5 of SCENARIOS.md in namespaces with real servers
// and clients: the failure reproduces, `roundtrip trace` on the affected host names it with
// the right interfaces, the manual fix from the seed makes the client succeed and the finding
// go away, and a trace of a snapshot of the host says the same as the live one.

const clientTimeout = 1500 * time.Millisecond

// traceRun is one run of `roundtrip trace --json`.
type traceRun struct {
	code int
	res  engine.TraceResult
	out  string
}

func (r traceRun) ids() []string {
	var ids []string
	for _, f := range r.res.Findings {
		ids = append(ids, f.ID)
	}
	slices.Sort(ids)
	return ids
}

func decodeTrace(t *testing.T, code int, out, errs string) traceRun {
	t.Helper()
	r := traceRun{code: code, out: out}
	if err := json.Unmarshal([]byte(out), &r.res); err != nil {
		t.Fatalf("trace exited %d without a JSON result: %v\nstdout: %s\nstderr: %s", code, err, out, errs)
	}
	return r
}

// traceLive runs trace in-process on the live namespace (--netns).
func traceLive(t *testing.T, ns *lab.NS, args ...string) traceRun {
	t.Helper()
	code, out, errs := runCLI(t, append(append([]string{"trace"}, args...), "--netns", ns.Name, "--json")...)
	return decodeTrace(t, code, out, errs)
}

// traceBinary runs the real binary inside the namespace, as an operator on that host would.
func traceBinary(t *testing.T, ns *lab.NS, args ...string) traceRun {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, roundtripBinary(t), "trace"}, append(args, "--json")...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running roundtrip in %s: %v", ns.Name, err)
		}
		code = ee.ExitCode()
	}
	return decodeTrace(t, code, out.String(), errb.String())
}

// traceSnapshot saves the namespace's state as a snapshot file and traces the snapshot.
func traceSnapshot(t *testing.T, ns *lab.NS, args ...string) traceRun {
	t.Helper()
	st, err := kernel.Read(context.Background(), kernel.Namespace{Name: ns.Name})
	if err != nil {
		t.Fatalf("reading %s: %v", ns.Name, err)
	}
	b, err := engine.NewSnapshot(st, time.Now()).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "snapshot.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, append(append([]string{"trace"}, args...), "--snapshot", p, "--json")...)
	return decodeTrace(t, code, out, errs)
}

// sameAsSnapshot checks that a trace of a snapshot of the host finds what the live one found.
func sameAsSnapshot(t *testing.T, ns *lab.NS, live traceRun, args ...string) {
	t.Helper()
	snap := traceSnapshot(t, ns, args...)
	if !slices.Equal(live.ids(), snap.ids()) || live.code != snap.code || live.res.Forward.OIF != snap.res.Forward.OIF {
		t.Errorf("snapshot trace differs from the live one: findings %v (exit %d, out %s) vs %v (exit %d, out %s)",
			snap.ids(), snap.code, snap.res.Forward.OIF, live.ids(), live.code, live.res.Forward.OIF)
	}
}

// doctorIDs runs `roundtrip doctor --json` on the live namespace and returns the finding ids.
func doctorIDs(t *testing.T, ns *lab.NS) []string {
	t.Helper()
	code, out, errs := runCLI(t, "doctor", "--netns", ns.Name, "--json")
	var res struct{ Findings []engine.Finding }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("doctor exited %d without JSON: %v\n%s\n%s", code, err, out, errs)
	}
	ids := []string{}
	for _, f := range res.Findings {
		ids = append(ids, f.ID)
	}
	return ids
}

func (r traceRun) finding(t *testing.T, id string) engine.Finding {
	t.Helper()
	f := r.res.Finding(id)
	if f == nil {
		t.Fatalf("no %s finding; findings %v\n%s", id, r.ids(), r.out)
	}
	return *f
}

// quietHost makes a namespace's IPv4 settings independent of the host's: new namespaces
// inherit net.ipv4.conf.{all,default} from the initial one, rp_filter included.
func quietHost(ns *lab.NS, forward bool) {
	ns.Sysctl("net.ipv4.conf.all.rp_filter", "0")
	ns.Sysctl("net.ipv4.conf.default.rp_filter", "0")
	if forward {
		ns.Sysctl("net.ipv4.ip_forward", "1")
	} else {
		ns.Sysctl("net.ipv4.ip_forward", "0")
	}
}

func newNS(l *lab.Lab, name string, forward bool) *lab.NS {
	ns := l.NS(name)
	quietHost(ns, forward)
	return ns
}

// Case 1 (seeds/000): web server C has a LAN NIC behind a firewall that DNATs its port 80 to
// C, and a public NIC em1 with a "national route" toward the client's network. The client
// reaches C through the firewall; C's SYN-ACK leaves by em1 and the handshake dies.
func TestPrivilegedTraceCase1AsymmetricReturn(t *testing.T) {
	l := lab.New(t)
	client := newNS(l, "client", false)
	inet := newNS(l, "inet", true)
	fw := newNS(l, "fw", true)
	c := newNS(l, "c", false)
	l.Veth(client, "eth0", inet, "c0")
	l.Veth(inet, "f0", fw, "pub")
	l.Veth(inet, "e0", c, "em1")
	l.Veth(fw, "lan", c, "eth0")

	client.Addr("eth0", "198.18.100.10/24")
	client.IP("route", "add", "default", "via", "198.18.100.1")
	inet.Addr("c0", "198.18.100.1/24")
	inet.Addr("f0", "198.18.50.1/24")
	inet.Addr("e0", "198.18.1.253/30")
	fw.Addr("pub", "198.18.50.2/24")
	fw.Addr("lan", "10.71.1.1/24")
	fw.IP("route", "add", "default", "via", "198.18.50.1")
	fw.Run("iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-i", "pub", "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", "10.71.1.10:80")
	fw.Run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "pub", "-s", "10.71.1.0/24", "-j", "MASQUERADE")
	c.Addr("eth0", "10.71.1.10/24")
	c.Addr("em1", "198.18.1.254/30")
	c.IP("route", "add", "default", "via", "10.71.1.1", "dev", "eth0")
	c.IP("route", "add", "198.18.100.0/24", "via", "198.18.1.253", "dev", "em1") // the national route
	c.ServeHTTP("0.0.0.0:80", "web C")

	// Direct access to C's public address works: that path is symmetric.
	if body, err := client.HTTPGet("198.18.1.254:80", clientTimeout); err != nil || body != "web C" {
		t.Fatalf("direct access to C fails before anything else: %q %v", body, err)
	}
	// (a) Through the firewall's DNAT the handshake dies.
	if body, err := client.HTTPGet("198.18.50.2:80", clientTimeout); err == nil {
		t.Fatalf("access through the firewall works before the fix (%q): the failure does not reproduce", body)
	}

	// (b) On C the trace names the asymmetric return: in on eth0, out by em1.
	flow := []string{"tcp", "198.18.100.10:40000", "10.71.1.10:80", "--iif", "eth0"}
	live := traceBinary(t, c, flow...)
	if live.code != ExitFindings {
		t.Errorf("trace exit %d, want %d", live.code, ExitFindings)
	}
	f := live.finding(t, engine.FindingAsymmetricReturn)
	ev := strings.Join(f.Evidence, "\n")
	if live.res.Forward.IIF != "eth0" || live.res.Reply == nil || live.res.Reply.OIF != "em1" || !strings.Contains(f.Summary, "in on eth0 but the reply leaves by em1") ||
		!strings.Contains(ev, "198.18.100.0/24 via 198.18.1.253 dev em1") || f.Fix.Wizard != engine.WizardSourceReturn {
		t.Errorf("asymmetric-return finding %+v, reply %+v", f, live.res.Reply)
	}
	if live.res.Has(engine.FindingKernelDisagrees) {
		t.Errorf("the kernel disagrees with the model: %+v", live.res.Finding(engine.FindingKernelDisagrees))
	}
	// (d) The in-process run and the snapshot say the same.
	inproc := traceLive(t, c, flow...)
	if !slices.Equal(inproc.ids(), live.ids()) {
		t.Errorf("in-process trace %v, binary %v", inproc.ids(), live.ids())
	}
	sameAsSnapshot(t, c, live, flow...)
	if ids := doctorIDs(t, c); !slices.Equal(ids, []string{engine.DoctorUplinkNoReturn}) {
		t.Errorf("doctor on C before the fix: %v, want the uplink without return routing", ids)
	}

	// (c) The seed's fix: a table for em1 selected by em1's address, the national route gone.
	c.IP("route", "add", "198.18.1.252/30", "dev", "em1", "src", "198.18.1.254", "table", "100")
	c.IP("route", "add", "default", "via", "198.18.1.253", "dev", "em1", "table", "100")
	c.IP("rule", "add", "from", "198.18.1.254", "table", "100")
	c.IP("route", "del", "198.18.100.0/24", "via", "198.18.1.253", "dev", "em1")
	if body, err := client.HTTPGet("198.18.50.2:80", clientTimeout); err != nil || body != "web C" {
		t.Fatalf("through the firewall after the fix: %q %v", body, err)
	}
	if body, err := client.HTTPGet("198.18.1.254:80", clientTimeout); err != nil || body != "web C" {
		t.Fatalf("direct access after the fix: %q %v", body, err)
	}
	fixed := traceLive(t, c, flow...)
	if fixed.code != ExitOK || len(fixed.res.Findings) != 0 || fixed.res.Reply.OIF != "eth0" {
		t.Errorf("after the fix: exit %d findings %v reply out %s\n%s", fixed.code, fixed.ids(), fixed.res.Reply.OIF, fixed.out)
	}
	sameAsSnapshot(t, c, fixed, flow...)
	if ids := doctorIDs(t, c); len(ids) != 0 {
		t.Errorf("doctor on C after the fix: %v", ids)
	}
	// Management access to em1's own address now returns by rule 32765 -> table 100.
	direct := traceLive(t, c, "tcp", "198.18.100.10:40000", "198.18.1.254:80", "--iif", "em1")
	if direct.code != ExitOK || direct.res.Reply.OIF != "em1" || direct.res.Reply.Table != 100 {
		t.Errorf("direct access trace: exit %d reply %+v", direct.code, direct.res.Reply)
	}
}

// Case 4 (seeds/003): host A reaches the business net through host B. First B does not
// forward; with forwarding on, the business net has no route back; SNAT on B fixes it.
func TestPrivilegedTraceCase4ForwardingAndReturnRoute(t *testing.T) {
	l := lab.New(t)
	a := newNS(l, "a", false)
	b := newNS(l, "b", false)
	srv := newNS(l, "srv", false)
	l.Veth(a, "eth0", b, "eth1")
	l.Veth(b, "eth0", srv, "eth0")
	a.Addr("eth0", "10.71.43.15/24")
	a.IP("route", "add", "10.71.44.0/24", "via", "10.71.43.101")
	b.Addr("eth1", "10.71.43.101/24")
	b.Addr("eth0", "10.71.44.63/24")
	b.IP("route", "add", "default", "via", "10.71.44.1", "dev", "eth0")
	// The business net's own router and server: it knows nothing of 10.71.43.0/24.
	srv.Addr("eth0", "10.71.44.1/24")
	srv.ServeHTTP("10.71.44.1:80", "business")
	if body, err := b.HTTPGet("10.71.44.1:80", clientTimeout); err != nil || body != "business" {
		t.Fatalf("B cannot reach the server itself: %q %v", body, err)
	}
	flow := []string{"tcp", "10.71.43.15:40000", "10.71.44.1:80", "--iif", "eth1"}

	// (a) + (b): forwarding is off on B.
	if _, err := a.HTTPGet("10.71.44.1:80", clientTimeout); err == nil {
		t.Fatal("A reaches the business net with forwarding off on B")
	}
	off := traceLive(t, b, flow...)
	f := off.finding(t, engine.FindingForwardingDisabled)
	if off.code != ExitFindings || off.res.Forward.Verdict != engine.LegDrop || !strings.Contains(f.Summary, "arrives on eth1") || !strings.Contains(f.Summary, "routed out eth0") {
		t.Errorf("exit %d verdict %s finding %+v", off.code, off.res.Forward.Verdict, f)
	}
	if off.res.Has(engine.FindingKernelDisagrees) {
		t.Errorf("the kernel disagrees: %+v", off.res.Finding(engine.FindingKernelDisagrees))
	}
	sameAsSnapshot(t, b, off, flow...)

	// With forwarding on the request leaves eth0 but no reply comes back.
	b.Sysctl("net.ipv4.ip_forward", "1")
	if _, err := a.HTTPGet("10.71.44.1:80", clientTimeout); err == nil {
		t.Fatal("A reaches the business net without SNAT: the missing return route does not reproduce")
	}
	on := traceLive(t, b, flow...)
	f = on.finding(t, engine.FindingNoReturnRoute)
	if on.res.Has(engine.FindingForwardingDisabled) || on.res.Forward.OIF != "eth0" || f.Fix.Wizard != engine.WizardSNATGateway ||
		!strings.Contains(f.Fix.Summary, "-s 10.71.43.0/24 -o eth0 -j SNAT --to-source 10.71.44.63") {
		t.Errorf("findings %v, out %s, finding %+v", on.ids(), on.res.Forward.OIF, f)
	}
	if on.code != ExitOK {
		t.Errorf("exit %d: no-return-route is a warning", on.code)
	}
	sameAsSnapshot(t, b, on, flow...)

	// (c) The seed's fix: SNAT on B toward the business net.
	b.Run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-d", "10.71.44.0/24", "-o", "eth0", "-j", "SNAT", "--to", "10.71.44.63")
	if body, err := a.HTTPGet("10.71.44.1:80", clientTimeout); err != nil || body != "business" {
		t.Fatalf("A after SNAT on B: %q %v", body, err)
	}
	fixed := traceLive(t, b, flow...)
	if fixed.code != ExitOK || len(fixed.res.Findings) != 0 || fixed.res.Forward.Packet.Src.Addr().String() != "10.71.44.63" || fixed.res.Reply.OIF != "eth1" {
		t.Errorf("after the fix: exit %d findings %v forward %+v\n%s", fixed.code, fixed.ids(), fixed.res.Forward.Packet, fixed.out)
	}
	sameAsSnapshot(t, b, fixed, flow...)
}

// Case 5 (seeds/004): A forwards its port 81 to B's port 80 on the same LAN. With DNAT and the
// author's SNAT rule for the reply direction, B answers the client directly and the client
// refuses it; SNAT of the forwarded request fixes it.
func TestPrivilegedTraceCase5ReplyBypassesNAT(t *testing.T) {
	l := lab.New(t)
	sw := newNS(l, "sw", false)
	client := newNS(l, "cl", false)
	a := newNS(l, "a", true)
	b := newNS(l, "b", false)
	l.Veth(sw, "p1", client, "eth0")
	l.Veth(sw, "p2", a, "eth0")
	l.Veth(sw, "p3", b, "eth0")
	sw.Bridge("br0", "p1", "p2", "p3")
	client.Addr("eth0", "10.71.5.185/24")
	a.Addr("eth0", "10.71.5.34/24")
	b.Addr("eth0", "10.71.5.32/24")
	b.ServeHTTP("10.71.5.32:80", "server B")
	if body, err := client.HTTPGet("10.71.5.32:80", clientTimeout); err != nil || body != "server B" {
		t.Fatalf("the client cannot reach B directly: %q %v", body, err)
	}
	a.Run("iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-d", "10.71.5.34", "-p", "tcp", "-m", "tcp", "--dport", "81", "-j", "DNAT", "--to-destination", "10.71.5.32:80")
	wrong := []string{"-t", "nat", "-A", "POSTROUTING", "-s", "10.71.5.32", "-j", "SNAT", "--to-source", "10.71.5.34"}
	a.Run("iptables", append([]string{"-w"}, wrong...)...)

	// (a) The client's connection to A:81 fails.
	if body, err := client.HTTPGet("10.71.5.34:81", clientTimeout); err == nil {
		t.Fatalf("the port forward works before the fix (%q): the failure does not reproduce", body)
	}
	// (b) On A the trace names the bypass, and the reply-direction SNAT rule.
	flow := []string{"tcp", "10.71.5.185:40000", "10.71.5.34:81", "--iif", "eth0"}
	live := traceLive(t, a, flow...)
	f := live.finding(t, engine.FindingReplyBypassesNAT)
	ev := strings.Join(f.Evidence, "\n")
	if live.code != ExitFindings || live.res.Forward.OIF != "eth0" || live.res.Forward.Packet.Dst.String() != "10.71.5.32:80" ||
		!strings.Contains(ev, "-s 10.71.5.32/32 -j SNAT --to-source 10.71.5.34") || f.Fix.Wizard != engine.WizardPortForward {
		t.Errorf("exit %d forward %+v finding %+v", live.code, live.res.Forward.Packet, f)
	}
	if live.res.Has(engine.FindingKernelDisagrees) {
		t.Errorf("the kernel disagrees: %+v", live.res.Finding(engine.FindingKernelDisagrees))
	}
	sameAsSnapshot(t, a, live, flow...)
	if ids := doctorIDs(t, a); !slices.Equal(ids, []string{engine.DoctorDNATWithoutSNAT}) {
		t.Errorf("doctor on A before the fix: %v", ids)
	}

	// (c) The seed's fix: drop the reply-direction rule, SNAT the forwarded request.
	wrong[2] = "-D"
	a.Run("iptables", append([]string{"-w"}, wrong...)...)
	a.Run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-d", "10.71.5.32", "-p", "tcp", "--dport", "80", "-j", "SNAT", "--to-source", "10.71.5.34")
	if body, err := client.HTTPGet("10.71.5.34:81", clientTimeout); err != nil || body != "server B" {
		t.Fatalf("the port forward after the fix: %q %v", body, err)
	}
	fixed := traceLive(t, a, flow...)
	if fixed.code != ExitOK || len(fixed.res.Findings) != 0 || fixed.res.Reply.Packet.Src.String() != "10.71.5.34:81" {
		t.Errorf("after the fix: exit %d findings %v reply %+v\n%s", fixed.code, fixed.ids(), fixed.res.Reply, fixed.out)
	}
	sameAsSnapshot(t, a, fixed, flow...)
	if ids := doctorIDs(t, a); len(ids) != 0 {
		t.Errorf("doctor on A after the fix: %v", ids)
	}
}
