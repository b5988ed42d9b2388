package trace_test

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/doctor"
	"roundtrip/engine/fib"
	"roundtrip/engine/iptables"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/trace"
)

// These tests send real packets through namespaces and compare what the kernel did (the
// client's result, the conntrack entry) with what trace predicts from the same state.

const dialTimeout = 1500 * time.Millisecond

// readState reads a namespace's state as the live trace does.
func readState(t *testing.T, ns *lab.NS) *model.State {
	t.Helper()
	st, err := kernel.Read(context.Background(), kernel.Namespace{Name: ns.Name})
	if err != nil {
		t.Fatalf("reading %s: %v", ns.Name, err)
	}
	return st
}

func traceTCP(st *model.State, src, dst, iif string) *trace.Result {
	return trace.Run(st, fib.New(st), trace.Request{Proto: 6, Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst), IIF: iif})
}

// conntrackEntry returns the router's entry for a TCP connection by its original tuple.
func conntrackEntry(t *testing.T, ns *lab.NS, src, dst string) kernel.ConntrackEntry {
	t.Helper()
	ct, err := kernel.OpenConntrack(kernel.Namespace{Name: ns.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	e, err := ct.Get(kernel.ConntrackTuple{Proto: 6, Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst)})
	if err != nil {
		t.Fatalf("conntrack in %s: %v", ns.Name, err)
	}
	return e
}

// SNAT and MASQUERADE with a port range: the kernel keeps the client's port when it is in
// the range and picks one in the range otherwise; trace predicts the kept port exactly and,
// for the other, names the range (port 0) instead of a number.
func TestPrivilegedNATSourcePorts(t *testing.T) {
	l := lab.New(t)
	client := lab.Host(l, "hbr-cli", false)
	router := lab.Host(l, "hbr-rtr", true)
	server := lab.Host(l, "hbr-srv", false)
	l.Veth(client, "eth0", router, "lan")
	l.Veth(router, "wan", server, "eth0")
	client.Addr("eth0", "10.81.0.2/24")
	client.IP("route", "add", "default", "via", "10.81.0.1")
	router.Addr("lan", "10.81.0.1/24")
	router.Addr("wan", "198.18.81.1/24")
	server.Addr("eth0", "198.18.81.2/24")
	router.Run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-p", "tcp", "--dport", "80", "-j", "MASQUERADE", "--to-ports", "1024-65535")
	router.Run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-p", "tcp", "--dport", "81", "-j", "SNAT", "--to-source", "198.18.81.1:2000-2100")
	server.Listen("0.0.0.0:80")
	server.Listen("0.0.0.0:81")
	st := readState(t, router)

	for _, c := range []struct {
		sport, dport int
		lo, hi       uint16 // the range the kernel must pick from
		kept         bool   // trace predicts the client's own port
	}{
		{40000, 80, 1024, 65535, true},
		{1000, 80, 1024, 65535, false},
		{2050, 81, 2000, 2100, true},
		{40001, 81, 2000, 2100, false},
	} {
		src := "10.81.0.2:" + strconv.Itoa(c.sport)
		dst := "198.18.81.2:" + strconv.Itoa(c.dport)
		conn, err := client.Dial(dst, src, dialTimeout)
		if err != nil {
			t.Fatalf("%s -> %s: %v", src, dst, err)
		}
		conn.Close()
		e := conntrackEntry(t, router, src, dst)
		kport := e.Reply.Dst.Port() // the reply goes to the SNATed source
		if e.Reply.Dst.Addr() != netip.MustParseAddr("198.18.81.1") || kport < c.lo || kport > c.hi {
			t.Fatalf("%s -> %s: the kernel SNATed to %s, outside the rule's range", src, dst, e.Reply.Dst)
		}
		res := traceTCP(st, src, dst, "lan")
		got := res.Forward.Packet
		if res.Forward.Verdict != trace.LegForward || got.Src.Addr() != e.Reply.Dst.Addr() {
			t.Fatalf("%s -> %s: trace %s from %s, kernel %s", src, dst, res.Forward.Verdict, got.Src, e.Reply.Dst)
		}
		rng := strconv.Itoa(int(c.lo)) + "-" + strconv.Itoa(int(c.hi))
		if c.kept {
			if got.Src.Port() != kport || kport != uint16(c.sport) || got.SrcPortRange != "" {
				t.Errorf("%s -> %s: trace port %d (range %q), kernel %d", src, dst, got.Src.Port(), got.SrcPortRange, kport)
			}
		} else if got.Src.Port() != 0 || got.SrcPortRange != rng {
			t.Errorf("%s -> %s: trace port %d range %q, want no number and range %s (kernel took %d)", src, dst, got.Src.Port(), got.SrcPortRange, rng, kport)
		}
		var b strings.Builder
		res.Render(&b, nil)
		if !c.kept && !strings.Contains(b.String(), "198.18.81.1:("+rng+")") {
			t.Errorf("%s -> %s: the rendered trace does not name the range:\n%s", src, dst, b.String())
		}
	}
}

func render(r *trace.Result) string {
	var b strings.Builder
	r.Render(&b, nil)
	return b.String()
}

func errorIDs(r *trace.Result) []string {
	var ids []string
	for _, f := range r.Findings {
		if f.Severity == "error" {
			ids = append(ids, f.ID)
		}
	}
	return ids
}

// ruleCounters reads a namespace's iptables rules with their packet counters, keyed by the
// command trace shows a rule as.
func ruleCounters(t *testing.T, ns *lab.NS) map[string]uint64 {
	t.Helper()
	st := readState(t, ns)
	out := map[string]uint64{}
	for _, tb := range st.Netfilter.Tables {
		for _, c := range tb.Chains {
			for i := range c.Rules {
				r := &c.Rules[i]
				out[iptables.RuleCommand(tb.Family, tb.Name, c.Name, r)] += r.Packets
			}
		}
	}
	return out
}

// actedRules are the rules trace says acted on a leg: they matched and did something (not the
// random branches it did not take, the outcomes it assumed, nor the rules it explains are not
// consulted).
func actedRules(l *trace.Leg) []string {
	var out []string
	for _, s := range l.Steps {
		if !strings.Contains(s.Rule, " -A ") {
			continue
		}
		switch {
		case strings.HasPrefix(s.What, "random branch"), strings.HasPrefix(s.What, "depends:"),
			strings.HasPrefix(s.What, "uncertain"), strings.HasPrefix(s.What, "not consulted"):
			continue
		}
		out = append(out, s.Rule)
	}
	return out
}

// checkCounted checks that every rule trace says acted on the flow counted packets between
// two readings of the counters: the request's always, the reply's when the flow worked.
func checkCounted(t *testing.T, name string, before, after map[string]uint64, res *trace.Result, worked bool) {
	t.Helper()
	rules := actedRules(&res.Forward)
	if worked && res.Reply != nil {
		rules = append(rules, actedRules(res.Reply)...)
	}
	for _, r := range rules {
		if _, ok := after[r]; !ok {
			t.Errorf("%s: trace names a rule the kernel does not have: %s", name, r)
			continue
		}
		if after[r] <= before[r] {
			t.Errorf("%s: trace says this rule acted, but its counter did not move (%d): %s", name, after[r], r)
		}
	}
}

// checkDoctor runs doctor on a host's state and reports every finding above info: on these
// hosts every flow behaves as configured, so such a finding would be contradicted by the
// kernel, unless the test names it as expected.
func checkDoctor(t *testing.T, st *model.State, expected ...string) {
	t.Helper()
	for _, f := range doctor.Run(st, fib.New(st)) {
		if f.Severity != "info" && !slices.Contains(expected, f.ID) {
			t.Errorf("doctor: %s: %s\n%s", f.ID, f.Summary, strings.Join(f.Evidence, "\n"))
		}
	}
}
