package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/doctor"
	"roundtrip/engine/finding"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/trace"
)

// These tests take field cases 1, 4 and 5 of SCENARIOS.md as engine/lab builds them, with real
// servers and clients: the failure reproduces, `roundtrip trace` on the affected host names it
// with the right interfaces, the manual fix from the seed makes the client succeed and the
// finding go away, and a trace of a snapshot of the host says the same as the live one.

// clientTimeout bounds a client's attempt in the privileged tests of this package: long enough
// for a namespace on a loaded machine, short enough that the expected failures stay cheap.
const clientTimeout = 1500 * time.Millisecond

// traceRun is one run of `roundtrip trace --json`.
type traceRun struct {
	code int
	res  trace.Result
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
	code, out, errs := runCommand(t, "ip", append([]string{"netns", "exec", ns.Name, roundtripBinary(t), "trace"}, append(args, "--json")...)...)
	return decodeTrace(t, code, out, errs)
}

// traceSnapshot saves the namespace's state as a snapshot file and traces the snapshot.
func traceSnapshot(t *testing.T, ns *lab.NS, args ...string) traceRun {
	t.Helper()
	st, err := kernel.Read(context.Background(), kernel.Namespace{Name: ns.Name})
	if err != nil {
		t.Fatalf("reading %s: %v", ns.Name, err)
	}
	b, err := model.NewSnapshot(st, time.Now()).Marshal()
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
	var res struct{ Findings []finding.Finding }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("doctor exited %d without JSON: %v\n%s\n%s", code, err, out, errs)
	}
	ids := []string{}
	for _, f := range res.Findings {
		ids = append(ids, f.ID)
	}
	return ids
}

func (r traceRun) finding(t *testing.T, id string) finding.Finding {
	t.Helper()
	f := r.res.Finding(id)
	if f == nil {
		t.Fatalf("no %s finding; findings %v\n%s", id, r.ids(), r.out)
	}
	return *f
}

// Case 1 (seeds/000): web server C has a LAN NIC behind a firewall that DNATs its port 80 to
// C, and a public NIC em1 with a "national route" toward the client's network. The client
// reaches C through the firewall; C's SYN-ACK leaves by em1 and the handshake dies.
func TestPrivilegedTraceCase1AsymmetricReturn(t *testing.T) {
	n := lab.Case1(t)
	client, c := n.Client, n.Server
	direct := n.ServerPublicAddr + ":80"

	// Direct access to C's public address works: that path is symmetric.
	if body, err := client.HTTPGet(direct, clientTimeout); err != nil || body != n.Body {
		t.Fatalf("direct access to C fails before anything else: %q %v", body, err)
	}
	// (a) Through the firewall's DNAT the handshake dies.
	if body, err := client.HTTPGet(n.Service, clientTimeout); err == nil {
		t.Fatalf("access through the firewall works before the fix (%q): the failure does not reproduce", body)
	}

	// (b) On C the trace names the asymmetric return: in on eth0, out by em1.
	flow := []string{"tcp", n.ClientAddr + ":40000", n.ServerAddr, "--iif", n.ServerLAN}
	live := traceBinary(t, c, flow...)
	if live.code != ExitFindings {
		t.Errorf("trace exit %d, want %d", live.code, ExitFindings)
	}
	f := live.finding(t, trace.FindingAsymmetricReturn)
	ev := strings.Join(f.Evidence, "\n")
	if live.res.Forward.IIF != "eth0" || live.res.Reply == nil || live.res.Reply.OIF != "em1" || !strings.Contains(f.Summary, "in on eth0 but the reply leaves by em1") ||
		!strings.Contains(ev, "198.18.72.0/24 via 192.168.72.253 dev em1") || f.Fix.Wizard != finding.WizardSourceReturn {
		t.Errorf("asymmetric-return finding %+v, reply %+v", f, live.res.Reply)
	}
	if live.res.Has(trace.FindingKernelDisagrees) {
		t.Errorf("the kernel disagrees with the model: %+v", live.res.Finding(trace.FindingKernelDisagrees))
	}
	// (d) The in-process run and the snapshot say the same.
	inproc := traceLive(t, c, flow...)
	if !slices.Equal(inproc.ids(), live.ids()) {
		t.Errorf("in-process trace %v, binary %v", inproc.ids(), live.ids())
	}
	sameAsSnapshot(t, c, live, flow...)
	if ids := doctorIDs(t, c); !slices.Equal(ids, []string{doctor.FindingUplinkNoReturn}) {
		t.Errorf("doctor on C before the fix: %v, want the uplink without return routing", ids)
	}

	// (c) The seed's fix: a table for em1 selected by em1's address, the national route gone.
	n.Fix()
	if body, err := client.HTTPGet(n.Service, clientTimeout); err != nil || body != n.Body {
		t.Fatalf("through the firewall after the fix: %q %v", body, err)
	}
	if body, err := client.HTTPGet(direct, clientTimeout); err != nil || body != n.Body {
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
	mgmt := traceLive(t, c, "tcp", n.ClientAddr+":40000", direct, "--iif", n.ServerPublic)
	if mgmt.code != ExitOK || mgmt.res.Reply.OIF != "em1" || mgmt.res.Reply.Table != 100 {
		t.Errorf("direct access trace: exit %d reply %+v", mgmt.code, mgmt.res.Reply)
	}
}

// Case 4 (seeds/003): host A reaches the business net through host B. First B does not
// forward; with forwarding on, the business net has no route back; SNAT on B fixes it.
func TestPrivilegedTraceCase4ForwardingAndReturnRoute(t *testing.T) {
	n := lab.Case4(t)
	a, b := n.A, n.B
	if body, err := b.HTTPGet(n.Service, clientTimeout); err != nil || body != n.Body {
		t.Fatalf("B cannot reach the server itself: %q %v", body, err)
	}
	flow := []string{"tcp", n.AAddr + ":40000", n.Service, "--iif", n.BIn}

	// (a) + (b): forwarding is off on B.
	if _, err := a.HTTPGet(n.Service, clientTimeout); err == nil {
		t.Fatal("A reaches the business net with forwarding off on B")
	}
	off := traceLive(t, b, flow...)
	f := off.finding(t, trace.FindingForwardingDisabled)
	if off.code != ExitFindings || off.res.Forward.Verdict != trace.LegDrop || !strings.Contains(f.Summary, "arrives on eth1") || !strings.Contains(f.Summary, "routed out eth0") {
		t.Errorf("exit %d verdict %s finding %+v", off.code, off.res.Forward.Verdict, f)
	}
	if off.res.Has(trace.FindingKernelDisagrees) {
		t.Errorf("the kernel disagrees: %+v", off.res.Finding(trace.FindingKernelDisagrees))
	}
	sameAsSnapshot(t, b, off, flow...)

	// With forwarding on the request leaves eth0 but no reply comes back.
	n.EnableForwarding()
	if _, err := a.HTTPGet(n.Service, clientTimeout); err == nil {
		t.Fatal("A reaches the business net without SNAT: the missing return route does not reproduce")
	}
	on := traceLive(t, b, flow...)
	f = on.finding(t, trace.FindingNoReturnRoute)
	if on.res.Has(trace.FindingForwardingDisabled) || on.res.Forward.OIF != "eth0" || f.Fix.Wizard != finding.WizardSNATGateway ||
		!strings.Contains(f.Fix.Summary, "-s 10.72.43.0/24 -o eth0 -j SNAT --to-source 10.72.44.63") {
		t.Errorf("findings %v, out %s, finding %+v", on.ids(), on.res.Forward.OIF, f)
	}
	if on.code != ExitOK {
		t.Errorf("exit %d: no-return-route is a warning", on.code)
	}
	sameAsSnapshot(t, b, on, flow...)

	// (c) The seed's fix: SNAT on B toward the business net.
	n.Fix()
	if body, err := a.HTTPGet(n.Service, clientTimeout); err != nil || body != n.Body {
		t.Fatalf("A after SNAT on B: %q %v", body, err)
	}
	fixed := traceLive(t, b, flow...)
	if fixed.code != ExitOK || len(fixed.res.Findings) != 0 || fixed.res.Forward.Packet.Src.Addr().String() != n.BBusiness || fixed.res.Reply.OIF != "eth1" {
		t.Errorf("after the fix: exit %d findings %v forward %+v\n%s", fixed.code, fixed.ids(), fixed.res.Forward.Packet, fixed.out)
	}
	sameAsSnapshot(t, b, fixed, flow...)
}

// Case 5 (seeds/004): A forwards its port 81 to B's port 80 on the same LAN. With DNAT and the
// author's SNAT rule for the reply direction, B answers the client directly and the client
// refuses it; SNAT of the forwarded request fixes it.
func TestPrivilegedTraceCase5ReplyBypassesNAT(t *testing.T) {
	n := lab.Case5(t)
	client, a := n.Client, n.A
	if body, err := client.HTTPGet(n.Backend, clientTimeout); err != nil || body != n.Body {
		t.Fatalf("the client cannot reach B directly: %q %v", body, err)
	}
	// The author's first SNAT rule matches the reply direction and never fires.
	wrong := []string{"-t", "nat", "-A", "POSTROUTING", "-s", n.BAddr, "-j", "SNAT", "--to-source", n.AAddr}
	a.Run("iptables", append([]string{"-w"}, wrong...)...)

	// (a) The client's connection to A:81 fails.
	if body, err := client.HTTPGet(n.Service, clientTimeout); err == nil {
		t.Fatalf("the port forward works before the fix (%q): the failure does not reproduce", body)
	}
	// (b) On A the trace names the bypass, and the reply-direction SNAT rule.
	flow := []string{"tcp", n.ClientAddr + ":40000", n.Service, "--iif", n.AIface}
	live := traceLive(t, a, flow...)
	f := live.finding(t, trace.FindingReplyBypassesNAT)
	ev := strings.Join(f.Evidence, "\n")
	if live.code != ExitFindings || live.res.Forward.OIF != "eth0" || live.res.Forward.Packet.Dst.String() != n.Backend ||
		!strings.Contains(ev, "-s 10.72.5.32/32 -j SNAT --to-source 10.72.5.34") || f.Fix.Wizard != finding.WizardPortForward {
		t.Errorf("exit %d forward %+v finding %+v", live.code, live.res.Forward.Packet, f)
	}
	if live.res.Has(trace.FindingKernelDisagrees) {
		t.Errorf("the kernel disagrees: %+v", live.res.Finding(trace.FindingKernelDisagrees))
	}
	sameAsSnapshot(t, a, live, flow...)
	if ids := doctorIDs(t, a); !slices.Equal(ids, []string{doctor.FindingDNATWithoutSNAT}) {
		t.Errorf("doctor on A before the fix: %v", ids)
	}

	// (c) The seed's fix: drop the reply-direction rule, SNAT the forwarded request.
	wrong[2] = "-D"
	a.Run("iptables", append([]string{"-w"}, wrong...)...)
	n.Fix()
	if body, err := client.HTTPGet(n.Service, clientTimeout); err != nil || body != n.Body {
		t.Fatalf("the port forward after the fix: %q %v", body, err)
	}
	fixed := traceLive(t, a, flow...)
	if fixed.code != ExitOK || len(fixed.res.Findings) != 0 || fixed.res.Reply.Packet.Src.String() != n.Service {
		t.Errorf("after the fix: exit %d findings %v reply %+v\n%s", fixed.code, fixed.ids(), fixed.res.Reply, fixed.out)
	}
	sameAsSnapshot(t, a, fixed, flow...)
	if ids := doctorIDs(t, a); len(ids) != 0 {
		t.Errorf("doctor on A after the fix: %v", ids)
	}
}
