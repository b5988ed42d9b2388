package cli

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"roundtrip/engine/doctor"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// Issue 19: iptables rules in the legacy backend only, the nf_tables backend only, and split
// across both (a DNAT in one, a DROP in the other), on a router between a client and a web
// server, with real connections. show lists every rule with its backend; trace's verdict and
// NAT are what the kernel did (the client's result and the conntrack entry read back); doctor
// names the split; a port-forward wizard applied and rolled back leaves both backends as they
// were. iptables-legacy and nft run only inside the test's namespaces.

// backendsRouter is client (100.64.0.7) -- wan0 router lan0 -- server (100.140.0.10, HTTP
// on 80 and 81).
type backendsRouter struct {
	client, router, server *lab.NS
}

const (
	bkRouterWAN = "100.64.0.1"
	bkClient    = "100.64.0.7"
	bkServer    = "100.140.0.10"
)

func newBackendsRouter(t *testing.T) *backendsRouter {
	t.Helper()
	lab.RequireTool(t, "iptables-legacy", "iptables-nft", "iptables-legacy-save", "iptables-nft-save", "conntrack")
	l := lab.NewPrefixed(t, "hbk")
	n := &backendsRouter{client: l.NS("c"), router: l.NS("r"), server: l.NS("s")}
	l.Veth(n.client, "eth0", n.router, "wan0")
	l.Veth(n.router, "lan0", n.server, "eth0")
	n.client.Addr("eth0", bkClient+"/24")
	n.router.Addr("wan0", bkRouterWAN+"/24")
	n.router.Addr("lan0", "100.140.0.1/24")
	n.server.Addr("eth0", bkServer+"/24")
	n.server.IP("route", "add", "default", "via", "100.140.0.1")
	n.router.Sysctl("net.ipv4.ip_forward", "1")
	n.server.ServeHTTP(bkServer+":80", "port80")
	n.server.ServeHTTP(bkServer+":81", "port81")
	return n
}

// saves returns both backends' rules of the router (both families), each as iptables-*-save
// prints them, counters zeroed and comment lines (the dates) left out: nothing else.
func (n *backendsRouter) saves(t *testing.T) map[string]string {
	t.Helper()
	counters := regexp.MustCompile(`\[\d+:\d+\]`)
	out := map[string]string{}
	for _, tool := range []string{"iptables-legacy-save", "iptables-nft-save", "ip6tables-legacy-save", "ip6tables-nft-save"} {
		var kept []string
		for _, line := range strings.Split(n.router.Run(tool), "\n") {
			if line = strings.TrimSpace(counters.ReplaceAllString(line, "[0:0]")); line != "" && !strings.HasPrefix(line, "#") {
				kept = append(kept, line)
			}
		}
		out[tool] = strings.Join(kept, "\n")
	}
	return out
}

// conntrackDNAT reads back the router's conntrack entry of the client's connection to port
// and returns where the kernel sent it (the reply's source), or "" when there is none.
func (n *backendsRouter) conntrackDNAT(t *testing.T, port string) string {
	t.Helper()
	out, err := n.router.Try("conntrack", "-L", "-p", "tcp", "--orig-dst", bkRouterWAN, "--orig-port-dst", port)
	if err != nil && !strings.Contains(out, "0 flow entries") {
		t.Fatalf("conntrack -L: %v", err)
	}
	// tcp 6 117 TIME_WAIT src=100.64.0.7 dst=100.64.0.1 sport=40000 dport=8081 src=100.140.0.10 dst=100.64.0.7 sport=81 dport=40000 [ASSURED] ...
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		var srcs, sports []string
		for _, w := range f {
			if v, ok := strings.CutPrefix(w, "src="); ok {
				srcs = append(srcs, v)
			}
			if v, ok := strings.CutPrefix(w, "sport="); ok {
				sports = append(sports, v)
			}
		}
		if len(srcs) == 2 && len(sports) == 2 {
			return srcs[1] + ":" + sports[1]
		}
	}
	return ""
}

// traceDNAT is where trace says the forward leg's DNAT sent the flow, "" without one.
func traceDNAT(res *trace.Result) string {
	for _, s := range res.Forward.Steps {
		if _, to, ok := strings.Cut(s.What, "DNAT "+bkRouterWAN); ok && strings.Contains(to, " -> ") {
			_, dst, _ := strings.Cut(to, " -> ")
			return strings.Fields(dst)[0]
		}
	}
	return ""
}

// checkFlow connects the client to the router's port and compares the kernel's outcome with
// trace's: both deliver (to the same DNAT target, read back from conntrack) or both drop.
func (n *backendsRouter) checkFlow(t *testing.T, port, wantTo string, wantPass bool) *trace.Result {
	t.Helper()
	body, err := n.client.HTTPGet(bkRouterWAN+":"+port, 1500*time.Millisecond)
	passed := err == nil
	if passed != wantPass {
		t.Errorf("client to :%s: passed %v (%q, %v), want %v", port, passed, body, err, wantPass)
	}
	ct := n.conntrackDNAT(t, port)
	r := traceLive(t, n.router, "tcp", bkClient+":40000", bkRouterWAN+":"+port, "--iif", "wan0")
	tracePass := r.res.Forward.Verdict == trace.LegForward
	if tracePass != passed {
		t.Errorf("trace to :%s: verdict %s, but the kernel %s the connection\n%s", port, r.res.Forward.Verdict, map[bool]string{true: "passed", false: "dropped"}[passed], r.out)
	}
	if got := traceDNAT(&r.res); got != wantTo {
		t.Errorf("trace to :%s: DNAT to %q, want %q\n%s", port, got, wantTo, r.out)
	}
	if passed && ct != wantTo {
		t.Errorf("conntrack to :%s: sent to %q, want %q as trace says", port, ct, wantTo)
	}
	if !passed && ct != "" {
		t.Errorf("conntrack to :%s holds %q for a connection the kernel dropped", port, ct)
	}
	return &r.res
}

func (n *backendsRouter) show(t *testing.T) string {
	t.Helper()
	code, out, errs := runCLI(t, "show", "--netns", n.router.Name)
	if code != ExitOK {
		t.Fatalf("show: exit %d: %s", code, errs)
	}
	return out
}

func TestPrivilegedIPTablesBackends(t *testing.T) {
	dnat := func(port, to string) []string {
		return []string{"-t", "nat", "-A", "PREROUTING", "-i", "wan0", "-p", "tcp", "--dport", port, "-j", "DNAT", "--to-destination", to}
	}
	drop80 := []string{"-A", "FORWARD", "-p", "tcp", "--dport", "80", "-j", "DROP"}
	for _, c := range []struct {
		name          string
		legacy, nft   [][]string
		showLines     []string
		pass8080      bool
		mixed         bool
		writesInto    string // the backend the wizard writes into: where the host's nat rules are
		dropBackendIn string // the backend trace names for the DROP
	}{
		{name: "legacy only", legacy: [][]string{dnat("8080", bkServer+":80"), dnat("8081", bkServer+":81")},
			showLines: []string{"[legacy] nat PREROUTING", "--dport 8080 -j DNAT --to-destination " + bkServer + ":80"},
			pass8080:  true, writesInto: "iptables-legacy-save"},
		{name: "nft only", nft: [][]string{dnat("8080", bkServer+":80"), dnat("8081", bkServer+":81")},
			showLines: []string{"[nft] nat PREROUTING", "--dport 8080 -j DNAT --to-destination " + bkServer + ":80"},
			pass8080:  true, writesInto: "iptables-nft-save"},
		{name: "dnat legacy, drop nft", legacy: [][]string{dnat("8080", bkServer+":80"), dnat("8081", bkServer+":81")}, nft: [][]string{drop80},
			showLines: []string{"rules in both backends", "[legacy] nat PREROUTING", "[nft] filter FORWARD", "-p tcp -m tcp --dport 80 -j DROP"},
			mixed:     true, writesInto: "iptables-legacy-save", dropBackendIn: "nft"},
		{name: "dnat nft, drop legacy", nft: [][]string{dnat("8080", bkServer+":80"), dnat("8081", bkServer+":81")}, legacy: [][]string{drop80},
			showLines: []string{"rules in both backends", "[nft] nat PREROUTING", "[legacy] filter FORWARD"},
			mixed:     true, writesInto: "iptables-nft-save", dropBackendIn: "legacy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(kernel.StateDirEnv, t.TempDir())
			n := newBackendsRouter(t)
			for _, args := range c.legacy {
				n.router.Run("iptables-legacy", args...)
			}
			for _, args := range c.nft {
				n.router.Run("iptables-nft", args...)
			}

			out := n.show(t)
			for _, want := range c.showLines {
				if !strings.Contains(out, want) {
					t.Errorf("show lacks %q:\n%s", want, out)
				}
			}

			// Real packets against trace: 8080 (dropped after the DNAT when the other backend
			// drops port 80), 8081 (passes everywhere).
			r := n.checkFlow(t, "8080", bkServer+":80", c.pass8080)
			if c.dropBackendIn != "" {
				f := r.Finding(trace.FindingFiltered)
				if f == nil || !strings.Contains(f.Summary, "filter FORWARD ("+c.dropBackendIn+")") || !strings.Contains(f.Evidence[0], "iptables-"+c.dropBackendIn+" -t filter -A FORWARD") {
					t.Errorf("trace's filtered finding %+v does not name the %s DROP", f, c.dropBackendIn)
				}
			}
			if r.Has(trace.FindingUncertain) {
				t.Errorf("trace is uncertain where the order is defined: %+v", r.Findings)
			}
			n.checkFlow(t, "8081", bkServer+":81", true)

			ids := doctorIDs(t, n.router)
			if slices.Contains(ids, doctor.FindingIPTablesBackendsMixed) != c.mixed {
				t.Errorf("doctor findings %v: %s present %v, want %v", ids, doctor.FindingIPTablesBackendsMixed, !c.mixed, c.mixed)
			}
			if c.mixed {
				_, js, _ := runCLI(t, "doctor", "--netns", n.router.Name, "--json")
				if !strings.Contains(js, "iptables-legacy-save") || !strings.Contains(js, "iptables-nft-save") {
					t.Errorf("doctor's split finding does not give both commands:\n%s", js)
				}
			}

			// A wizard applied and rolled back: it writes into the backend the host's rules
			// use, never the other, and the rollback leaves both as they were.
			before := n.saves(t)
			code, pout, perr := runCLI(t, "wizard", "port-forward", "--listen", bkRouterWAN+":9090", "--in", "wan0", "--to", bkServer+":81", "--netns", n.router.Name, "--apply")
			if code != ExitOK {
				t.Fatalf("wizard port-forward --apply: exit %d\n%s\n%s", code, pout, perr)
			}
			if body, err := n.client.HTTPGet(bkRouterWAN+":9090", 3*time.Second); err != nil || body != "port81" {
				t.Errorf("after the wizard the client gets %q, %v; want port81", body, err)
			}
			during := n.saves(t)
			for tool, text := range during {
				changed := text != before[tool]
				if changed != (tool == c.writesInto) {
					t.Errorf("after the wizard %s changed %v, want %v (it writes into %s)\nbefore:\n%s\nafter:\n%s", tool, changed, !changed, c.writesInto, before[tool], text)
				}
			}
			if !strings.Contains(during[c.writesInto], "RT-") {
				t.Errorf("%s has no roundtrip chain after the wizard:\n%s", c.writesInto, during[c.writesInto])
			}
			if code, _, errs := runCLI(t, "rollback", "--netns", n.router.Name); code != ExitOK {
				t.Fatalf("rollback: exit %d: %s", code, errs)
			}
			after := n.saves(t)
			for tool := range before {
				if after[tool] != before[tool] {
					t.Errorf("after the rollback %s differs:\nbefore:\n%s\nafter:\n%s", tool, before[tool], after[tool])
				}
			}
		})
	}
}
