package cli

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"roundtrip/engine/doctor"
	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/model"
	"roundtrip/engine/trace"
)

func TestTraceUsageErrors(t *testing.T) {
	p := writeSnapshot(t, testState())
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"tcp", "10.0.0.1"}, "want PROTO SRC[:PORT] DST[:PORT], got 2 argument(s)"},
		{[]string{"tpc", "10.0.0.1:1", "10.0.0.2:80"}, `unknown protocol "tpc"`},
		{[]string{"tcp", "10.0.0:1", "10.0.0.2:80"}, `malformed source address "10.0.0:1"`},
		{[]string{"tcp", "10.0.0.1:1", "10.0.0.2:70000"}, "destination port 70000 out of range 0-65535"},
		{[]string{"tcp", "10.0.0.1:x", "10.0.0.2:80"}, `source port "x" is not a number`},
		{[]string{"icmp", "10.0.0.1:1", "10.0.0.2"}, "icmp has no ports"},
		{[]string{"tcp", "10.0.0.1:1", "[2001:db8::1]:80"}, "not of one address family"},
		{[]string{"tcp", "10.0.0.1:1", "10.0.0.2:80", "--iif", "eth9"}, "interface eth9 does not exist; interfaces: lo, lan0, wan0"},
		{[]string{"tcp", "10.0.0.1:1", "10.0.0.2:80", "--mark", "0xzz"}, `--mark "0xzz" is not a 32-bit number`},
	} {
		code, _, errs := runCLI(t, append(append([]string{"trace"}, c.args...), "--snapshot", p)...)
		if code != ExitUsage || !strings.Contains(errs, c.want) || !strings.Contains(errs, "usage: roundtrip trace") {
			t.Errorf("trace %v = %d, stderr %q; want usage error with %q", c.args, code, errs, c.want)
		}
	}
}

// On the test host the DNATed request from the internet arrives on wan0, whose rp_filter is
// strict while the route back to the client points at lan0: the trace drops it there and
// exits 3; the JSON holds the finding.
func TestTraceSnapshotJSON(t *testing.T) {
	p := writeSnapshot(t, testState())
	code, out, errs := runCLI(t, "trace", "tcp", "203.0.113.5:40000", "192.0.2.2:80", "--iif", "wan0", "--snapshot", p, "--json")
	if code != ExitFindings {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, ExitFindings, out, errs)
	}
	var res trace.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("not a trace: %v\n%s", err, out)
	}
	if res.Forward.IIF != "wan0" || res.Forward.Verdict != trace.LegDrop || !res.Has(trace.FindingRPFilterDrop) || res.Reply != nil {
		t.Errorf("trace %+v", res)
	}
	if res.Forward.Packet.Dst.String() != "10.1.0.80:80" {
		t.Errorf("DNAT not applied before the drop: %s", res.Forward.Packet.Dst)
	}

	code, out, _ = runCLI(t, "trace", "tcp", "203.0.113.5:40000", "192.0.2.2:80", "--iif", "wan0", "--snapshot", p)
	if code != ExitFindings || !strings.Contains(out, "rp-filter-drop") || !strings.Contains(out, "REQUEST") {
		t.Errorf("human output (exit %d):\n%s", code, out)
	}
}

func TestDoctorSnapshot(t *testing.T) {
	s := testState()
	s.Sysctls[model.SysctlConntrackMax] = "100"
	s.Sysctls[model.SysctlConntrackCount] = "100"
	p := writeSnapshot(t, s)
	code, out, errs := runCLI(t, "doctor", "--snapshot", p, "--json")
	if code != ExitFindings {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	var got struct{ Findings []finding.Finding }
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, f := range got.Findings {
		ids[f.ID] = true
	}
	if !ids[doctor.FindingConntrackFull] {
		t.Errorf("findings %v", ids)
	}
	code, _, errs = runCLI(t, "doctor", "extra", "--snapshot", p)
	if code != ExitUsage || !strings.Contains(errs, "doctor takes no arguments") {
		t.Errorf("doctor extra = %d %q", code, errs)
	}
}

// TestKernelAgrees checks how the live comparison reads the kernel's answers: a refusal of
// the input path (EINVAL) agrees with an rp_filter drop, any live path of a multipath route
// agrees with the model's pick, and another device does not.
func TestKernelAgrees(t *testing.T) {
	gw := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	multipath := &model.Route{Nexthops: []model.Nexthop{{Gateway: gw("10.1.0.254"), Dev: "wan1"}, {Gateway: gw("10.2.0.254"), Dev: "wan2"}}}
	rpDrop := &trace.Result{Findings: []finding.Finding{{ID: trace.FindingRPFilterDrop}},
		Forward: trace.Leg{Steps: []trace.Step{{Hook: "routing"}, {Hook: trace.HookRPFilter, Decisive: true}}}}
	// Only the reply fails rp_filter: the request is routed as the kernel says.
	replyRPDrop := &trace.Result{Findings: []finding.Finding{{ID: trace.FindingRPFilterDrop}},
		Forward: trace.Leg{Steps: []trace.Step{{Hook: "routing", Decisive: true}, {Hook: "filter FORWARD"}}},
		Reply:   &trace.Leg{Steps: []trace.Step{{Hook: trace.HookRPFilter, Decisive: true}}}}
	for _, c := range []struct {
		name        string
		res         *trace.Result
		model, kern fib.Result
		want        bool
	}{
		{"rp_filter refusal", rpDrop, fib.Result{Verdict: fib.VerdictUnicast, OIF: "lan0"}, fib.Result{Verdict: fib.VerdictInvalid}, true},
		{"refusal the model does not see", &trace.Result{}, fib.Result{Verdict: fib.VerdictUnicast, OIF: "lan0"}, fib.Result{Verdict: fib.VerdictInvalid}, false},
		{"multipath, the model's pick", &trace.Result{}, fib.Result{Verdict: fib.VerdictUnicast, Route: multipath, Candidates: []int{0, 1}, OIF: "wan1", Gateway: gw("10.1.0.254")},
			fib.Result{Verdict: fib.VerdictUnicast, OIF: "wan1", Gateway: gw("10.1.0.254")}, true},
		{"multipath, another live path", &trace.Result{}, fib.Result{Verdict: fib.VerdictUnicast, Route: multipath, Candidates: []int{0, 1}, OIF: "wan1", Gateway: gw("10.1.0.254")},
			fib.Result{Verdict: fib.VerdictUnicast, OIF: "wan2", Gateway: gw("10.2.0.254")}, true},
		{"multipath, a dead path", &trace.Result{}, fib.Result{Verdict: fib.VerdictUnicast, Route: multipath, Candidates: []int{0}, OIF: "wan1", Gateway: gw("10.1.0.254")},
			fib.Result{Verdict: fib.VerdictUnicast, OIF: "wan2", Gateway: gw("10.2.0.254")}, false},
		{"another device", &trace.Result{}, fib.Result{Verdict: fib.VerdictUnicast, OIF: "wan1"}, fib.Result{Verdict: fib.VerdictUnicast, OIF: "lan0"}, false},
		{"only the reply fails rp_filter", replyRPDrop, fib.Result{Verdict: fib.VerdictUnicast, OIF: "lan0"}, fib.Result{Verdict: fib.VerdictUnicast, OIF: "lan0"}, true},
		{"only the reply fails rp_filter, the kernel refuses the request", replyRPDrop, fib.Result{Verdict: fib.VerdictUnicast, OIF: "lan0"}, fib.Result{Verdict: fib.VerdictInvalid}, false},
		{"unicast while the model drops for rp_filter", rpDrop, fib.Result{Verdict: fib.VerdictUnicast, OIF: "lan0"}, fib.Result{Verdict: fib.VerdictUnicast, OIF: "lan0"}, false},
	} {
		if got := kernelAgrees(c.res, c.model, c.kern); got != c.want {
			t.Errorf("%s: kernelAgrees = %v, want %v", c.name, got, c.want)
		}
	}
}
