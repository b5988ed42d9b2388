package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"roundtrip/diagnose"
	"roundtrip/engine/kernel"
	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/lab"
)

// These tests run diagnose and capture with the kernel's word (drop reasons and rule
// verdicts) as an operator would: a client, a router and a server in namespaces of their own
// (named with "hdr"), a real client whose packets the kernel drops, and the command's JSON.
//
//	client eth0 10.73.1.2 -- lan 10.73.1.1 [router] wan 10.73.2.1 -- eth0 10.73.2.2 server

type dropNet struct {
	lab                    *lab.Lab
	client, router, server *lab.NS
}

const (
	dnClient    = "10.73.1.2"
	dnRouterLAN = "10.73.1.1"
	dnRouterWAN = "10.73.2.1"
	dnServer    = "10.73.2.2"
)

// requireDropWatch skips a test on a kernel that reports no drop reasons (no BTF, before
// 5.17, locked down), naming why; roundtrip itself goes on without them there.
func requireDropWatch(t *testing.T) {
	t.Helper()
	lab.Require(t)
	w, err := dropwatch.Start(context.Background(), dropwatch.Options{})
	if errors.Is(err, dropwatch.ErrUnsupported) {
		lab.SkipKernel(t, "BPF drop reasons", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
}

func newDropNet(t *testing.T) *dropNet {
	t.Helper()
	l := lab.New(t)
	n := &dropNet{lab: l, client: l.NS("hdr-cli"), router: l.NS("hdr-rtr"), server: l.NS("hdr-srv")}
	for _, ns := range []*lab.NS{n.client, n.router, n.server} {
		// No IPv6 chatter in the watched namespaces.
		ns.Sysctl("net.ipv6.conf.all.disable_ipv6", "1")
		ns.Sysctl("net.ipv6.conf.default.disable_ipv6", "1")
	}
	l.Veth(n.client, "eth0", n.router, "lan")
	l.Veth(n.router, "wan", n.server, "eth0")
	n.client.Addr("eth0", dnClient+"/24")
	n.router.Addr("lan", dnRouterLAN+"/24")
	n.router.Addr("wan", dnRouterWAN+"/24")
	n.server.Addr("eth0", dnServer+"/24")
	n.client.IP("route", "add", "default", "via", dnRouterLAN)
	n.server.IP("route", "add", "default", "via", dnRouterWAN)
	n.router.Sysctl("net.ipv4.ip_forward", "1")
	return n
}

// jsonEvent is one line of diagnose or capture --json, with the fields of every type.
type jsonEvent struct {
	Type     string `json:"type"`
	Netns    string `json:"netns"`
	Iface    string `json:"iface"`
	Reason   string `json:"reason"`
	Words    string `json:"words"`
	Location string `json:"location"`
	Conn     *int   `json:"conn"`
	Packet   struct {
		Proto string `json:"proto"`
		Src   string `json:"src"`
		Dst   string `json:"dst"`
	} `json:"packet"`
	// rule
	Family  string `json:"family"`
	Table   string `json:"table"`
	Chain   string `json:"chain"`
	Handle  uint64 `json:"handle"`
	Rule    string `json:"rule"`
	Verdict any    `json:"verdict"` // a rule step's verdict, or diagnose's last line
	Finding *diagnose.Finding
	Notice  string `json:"notice"`
}

func parseEvents(t *testing.T, out string) []jsonEvent {
	t.Helper()
	var evs []jsonEvent
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("a line of --json is not JSON: %q: %v", sc.Text(), err)
		}
		var ev jsonEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			// The verdict line's "verdict" and "packet" are objects of other shapes.
			ev = jsonEvent{}
			json.Unmarshal(raw["type"], &ev.Type)
		}
		evs = append(evs, ev)
	}
	return evs
}

// verdictOf returns diagnose's verdict, the last line.
func verdictOf(t *testing.T, out string) diagnose.Verdict {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last struct {
		Type    string           `json:"type"`
		Verdict diagnose.Verdict `json:"verdict"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Type != "verdict" {
		t.Fatalf("the last line of diagnose --json is not the verdict (%v):\n%s", err, out)
	}
	return last.Verdict
}

// dropCase is one way the kernel drops the client's flow, and what it must say.
type dropCase struct {
	name   string
	setup  func(t *testing.T, n *dropNet)
	watch  func(n *dropNet) *lab.NS // the namespace diagnosed (the router by default)
	flow   []string                 // PROTO SRC DST for diagnose
	iif    string
	client func(t *testing.T, n *dropNet) error
	reason string // the kernel's reason
	iface  string // where it dropped
	where  string // the kernel function, "" any
	// rule: the rule step that names a netfilter drop (family table chain), "" none expected.
	rule string
	// ruleText is a part of the rule's text.
	ruleText string
	// model is the model's finding beside the kernel's word, "" when the model cannot see it.
	model string
	// notice is a part of a notice the command must give (one line), "" none.
	notice string
	// ruleEvidence is the rule line of the kernel-drop finding when no rule step names it.
	ruleEvidence string
}

func dial(ns *lab.NS, dst, from string) error {
	c, err := ns.Dial(dst, from, 1500*time.Millisecond)
	if err == nil {
		c.Close()
		return nil
	}
	return err
}

func sendUDP(ns *lab.NS, dst string) error {
	return ns.Do(func() error {
		c, err := net.Dial("udp4", dst)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("roundtrip drops test"))
		return err
	})
}

var dropCases = []dropCase{
	{
		name: "rp_filter",
		setup: func(t *testing.T, n *dropNet) {
			// A second link whose subnet does not route back to the client's address.
			n.lab.Veth(n.client, "alt", n.router, "alt")
			n.client.Addr("alt", "10.73.4.2/24")
			n.router.Addr("alt", "10.73.4.1/24")
			n.client.Sysctl("net.ipv4.conf.all.arp_announce", "2")
			n.router.Sysctl("net.ipv4.conf.all.rp_filter", "1")
			n.router.Sysctl("net.ipv4.conf.alt.rp_filter", "1")
			n.router.Listen("10.73.4.1:80")
		},
		flow: []string{"tcp", dnClient, "10.73.4.1:80"}, iif: "alt",
		client: func(t *testing.T, n *dropNet) error { return dial(n.client, "10.73.4.1:80", dnClient+":0") },
		reason: "IP_RPFILTER", iface: "alt", where: "ip_rcv_finish_core", model: "rp-filter-drop",
	},
	{
		name: "iptables DROP",
		setup: func(t *testing.T, n *dropNet) {
			lab.RequireTool(t, "iptables-nft")
			n.server.Listen(dnServer + ":80")
			n.router.Run("iptables-nft", "-A", "FORWARD", "-d", dnServer, "-p", "tcp", "--dport", "80", "-j", "DROP")
		},
		flow: []string{"tcp", dnClient, dnServer + ":80"}, iif: "lan",
		client: func(t *testing.T, n *dropNet) error { return dial(n.client, dnServer+":80", "") },
		reason: "NETFILTER_DROP", iface: "lan", rule: "ip filter FORWARD", ruleText: "-j DROP",
	},
	{
		// After NAT: the packet dropped in FORWARD carries the backend's address, which the
		// client never used; the model's NAT tuple is watched too.
		name: "DNAT then DROP",
		setup: func(t *testing.T, n *dropNet) {
			lab.RequireTool(t, "iptables-nft")
			n.server.Listen(dnServer + ":80")
			n.router.Run("iptables-nft", "-t", "nat", "-A", "PREROUTING", "-i", "lan", "-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", dnServer+":80")
			n.router.Run("iptables-nft", "-A", "FORWARD", "-d", dnServer, "-p", "tcp", "--dport", "80", "-j", "DROP")
		},
		flow: []string{"tcp", dnClient, dnRouterLAN + ":8080"}, iif: "lan",
		client: func(t *testing.T, n *dropNet) error { return dial(n.client, dnRouterLAN+":8080", "") },
		reason: "NETFILTER_DROP", iface: "lan", rule: "ip filter FORWARD", ruleText: "-j DROP", model: "filtered",
	},
	{
		name: "iptables-legacy DROP",
		setup: func(t *testing.T, n *dropNet) {
			lab.RequireTool(t, "iptables-legacy")
			n.server.Listen(dnServer + ":80")
			n.router.Run("iptables-legacy", "-w", "-A", "FORWARD", "-d", dnServer, "-p", "tcp", "--dport", "80", "-j", "DROP")
		},
		flow: []string{"tcp", dnClient, dnServer + ":80"}, iif: "lan",
		client: func(t *testing.T, n *dropNet) error { return dial(n.client, dnServer+":80", "") },
		// Legacy rules live outside nf_tables: the drop reason comes, the rule is not named.
		reason: "NETFILTER_DROP", iface: "lan", notice: "rule tracing needs nf_tables",
		ruleEvidence: "rule: not named: iptables-legacy tables (filter) are not traced",
	},
	{
		name: "nft drop rule",
		setup: func(t *testing.T, n *dropNet) {
			lab.RequireTool(t, "nft")
			n.router.Run("nft", "add table inet hdrfilter")
			n.router.Run("nft", "add chain inet hdrfilter hdrfwd { type filter hook forward priority 0; }")
			n.router.Run("nft", "add rule inet hdrfilter hdrfwd udp dport 5353 counter drop")
		},
		flow: []string{"udp", dnClient, dnServer + ":5353"}, iif: "lan",
		client: func(t *testing.T, n *dropNet) error { return sendUDP(n.client, dnServer+":5353") },
		reason: "NETFILTER_DROP", iface: "lan", rule: "inet hdrfilter hdrfwd", ruleText: "udp dport 5353 counter drop",
	},
	{
		name:  "unreachable route",
		setup: func(t *testing.T, n *dropNet) { n.router.IP("route", "add", "unreachable", "10.73.9.0/24") },
		flow:  []string{"tcp", dnClient, "10.73.9.9:80"}, iif: "lan",
		client: func(t *testing.T, n *dropNet) error { return dial(n.client, "10.73.9.9:80", "") },
		// Linux gives no specific reason there: the location says it (see dropwatch).
		reason: "NOT_SPECIFIED", iface: "lan", where: "ip_error", model: "unreachable",
	},
	{
		name: "forwarding off",
		setup: func(t *testing.T, n *dropNet) {
			n.router.Sysctl("net.ipv4.ip_forward", "0")
			n.server.Listen(dnServer + ":80")
		},
		flow: []string{"tcp", dnClient, dnServer + ":80"}, iif: "lan",
		client: func(t *testing.T, n *dropNet) error { return dial(n.client, dnServer+":80", "") },
		reason: "IP_INADDRERRORS", iface: "lan", model: "forwarding-disabled",
	},
	{
		name: "gateway without ARP",
		setup: func(t *testing.T, n *dropNet) {
			n.router.IP("route", "add", "10.73.8.0/24", "via", "10.73.2.99")
			// Give up after one ARP request, 100 ms later.
			n.router.Sysctl("net.ipv4.neigh.wan.mcast_solicit", "1")
			n.router.Sysctl("net.ipv4.neigh.wan.retrans_time_ms", "100")
		},
		flow: []string{"udp", dnClient, "10.73.8.8:53"}, iif: "lan",
		client: func(t *testing.T, n *dropNet) error { return sendUDP(n.client, "10.73.8.8:53") },
		reason: "NEIGH_FAILED", iface: "wan",
	},
	{
		name:  "closed port",
		setup: func(t *testing.T, n *dropNet) {},
		watch: func(n *dropNet) *lab.NS { return n.server },
		flow:  []string{"tcp", dnClient, dnServer + ":81"}, iif: "eth0",
		client: func(t *testing.T, n *dropNet) error {
			return dial(n.client, dnServer+":81", "")
		},
		reason: "NO_SOCKET", iface: "eth0",
	},
}

// Each way of dropping the client's flow: diagnose reports the kernel's reason on the right
// interface as a drop event, a kernel-drop finding carries it as evidence (with the rule for
// netfilter, and the model's word where the model sees it), and the verdict leads with it.
func TestPrivilegedDiagnoseKernelDrops(t *testing.T) {
	requireDropWatch(t)
	for _, tc := range dropCases {
		// Not parallel: commands run in this process share their flags' variables.
		t.Run(tc.name, func(t *testing.T) {
			n := newDropNet(t)
			tc.setup(t, n)
			ns := n.router
			if tc.watch != nil {
				ns = tc.watch(n)
			}
			args := append([]string{"diagnose", "--netns", ns.Name, "--json", "--timeout", "8s", "--iif", tc.iif}, tc.flow...)
			done := runCLIAsync(t, args...)
			if err := tc.client(t, n); err == nil && tc.flow[0] == "tcp" {
				t.Fatal("the client connected: the drop does not happen")
			}
			r := <-done
			if r.code != ExitFindings {
				t.Errorf("diagnose exit %d, want %d; stderr:\n%s", r.code, ExitFindings, r.errs)
			}
			checkKernelWord(t, tc, r, ns.Name)
		})
	}
}

func checkKernelWord(t *testing.T, tc dropCase, r cliResult, nsName string) {
	t.Helper()
	evs := parseEvents(t, r.out)
	var drop *jsonEvent
	var rule *jsonEvent
	var kf *diagnose.Finding
	for i := range evs {
		ev := &evs[i]
		switch ev.Type {
		case "drop":
			if drop == nil && ev.Reason == tc.reason {
				drop = ev
			}
		case "rule":
			if rule == nil && ev.Verdict == "drop" {
				rule = ev
			}
		case "finding":
			if ev.Finding != nil && ev.Finding.ID == diagnose.FindingKernelDrop && kf == nil {
				kf = ev.Finding
			}
		}
	}
	if drop == nil {
		t.Fatalf("no drop event with reason %s:\n%s\nstderr:\n%s", tc.reason, r.out, r.errs)
	}
	if drop.Iface != tc.iface || drop.Netns != nsName || drop.Words == "" || drop.Conn == nil || *drop.Conn == 0 {
		t.Errorf("drop event %+v: want it on %s in %s, in words, with its connection", *drop, tc.iface, nsName)
	}
	if tc.where != "" && drop.Location != tc.where {
		t.Errorf("drop location %q, want %s", drop.Location, tc.where)
	}
	if kf == nil {
		t.Fatalf("no kernel-drop finding:\n%s", r.out)
	}
	t.Logf("kernel-drop: %s\n\tevidence: %q\n\tfix: %s", kf.Summary, kf.Evidence, kf.Fix.Summary)
	word := "kernel: " + tc.reason + " on " + tc.iface + " in "
	if !hasPrefixed(kf.Evidence, word) {
		t.Errorf("kernel-drop evidence %q: want %q...", kf.Evidence, word)
	}
	if tc.rule != "" {
		if rule == nil {
			t.Fatalf("no rule step with verdict drop:\n%s", r.out)
		}
		if got := rule.Family + " " + rule.Table + " " + rule.Chain; got != tc.rule || rule.Handle == 0 || !strings.Contains(rule.Rule, tc.ruleText) {
			t.Errorf("rule step %s handle %d %q; want %s with a handle and %q", got, rule.Handle, rule.Rule, tc.rule, tc.ruleText)
		}
		if !hasPrefixed(kf.Evidence, "rule: "+tc.rule+" handle ") {
			t.Errorf("kernel-drop evidence %q does not name the rule %s", kf.Evidence, tc.rule)
		}
	} else if rule != nil {
		t.Errorf("a rule step with verdict drop for a drop that is not netfilter's, or a legacy one: %+v", *rule)
	}
	if tc.ruleEvidence != "" && !hasPrefixed(kf.Evidence, tc.ruleEvidence) {
		t.Errorf("kernel-drop evidence %q: want %q...", kf.Evidence, tc.ruleEvidence)
	}
	if tc.notice != "" {
		n := 0
		for _, ev := range evs {
			if ev.Type == "notice" && strings.Contains(ev.Notice, tc.notice) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d notices saying %q, want one:\n%s", n, tc.notice, r.out)
		}
	}
	if tc.model != "" {
		if !hasPrefixed(kf.Evidence, "model: "+tc.model+": ") || kf.Cause != tc.model {
			t.Errorf("kernel-drop evidence %q, cause %q: want the model's %s beside the kernel's word", kf.Evidence, kf.Cause, tc.model)
		}
	}
	v := verdictOf(t, r.out)
	if v.Outcome != diagnose.OutcomeFailed || !strings.HasPrefix(v.Summary, "the flow is broken: kernel-drop: the kernel dropped ") ||
		!strings.Contains(v.Summary, tc.reason) {
		t.Errorf("verdict %s: %s; want it to lead with the kernel's %s", v.Outcome, v.Summary, tc.reason)
	}
	if v.Capture == nil || !v.Capture.DropsWatched || v.Capture.DropCount == 0 {
		t.Errorf("verdict's capture: %+v; want the drops counted", v.Capture)
	}
}

func hasPrefixed(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// capture with a filter reports the kernel's drops of what it captures, and only those: a
// dropped flow the filter leaves out is not reported.
func TestPrivilegedCaptureKernelDrops(t *testing.T) {
	requireDropWatch(t)
	lab.RequireTool(t, "iptables-nft")
	n := newDropNet(t)
	n.router.Run("iptables-nft", "-A", "FORWARD", "-d", dnServer, "-p", "tcp", "-m", "multiport", "--dports", "80,8080", "-j", "DROP")
	done := runCLIAsync(t, "capture", "--netns", n.router.Name, "--json", "--duration", "3s", "tcp", "and", "port", "80")
	for _, dst := range []string{dnServer + ":8080", dnServer + ":80"} {
		if err := dial(n.client, dst, ""); err == nil {
			t.Fatalf("the client reached %s through the DROP rule", dst)
		}
	}
	r := <-done
	evs := parseEvents(t, r.out)
	drops, rules := 0, 0
	for _, ev := range evs {
		switch ev.Type {
		case "drop":
			drops++
			if ev.Reason != "NETFILTER_DROP" || ev.Iface != "lan" || ev.Packet.Dst != dnServer+":80" {
				t.Errorf("drop %+v: want NETFILTER_DROP on lan of the SYN to port 80 only", ev)
			}
		case "rule":
			rules++
			if ev.Packet.Dst != dnServer+":80" && ev.Packet.Src != dnServer+":80" {
				t.Errorf("rule step of a flow the filter leaves out: %+v", ev)
			}
		}
	}
	if drops == 0 || rules == 0 {
		t.Errorf("%d drop and %d rule events; want the SYN to port 80's:\n%s\n%s", drops, rules, r.out, r.errs)
	}
}

// traceTables lists the inet tables of a namespace that are roundtrip's trace tables.
func traceTables(t *testing.T, ns *lab.NS) []string {
	t.Helper()
	var names []string
	for _, l := range strings.Split(ns.Run("nft", "list", "tables", "inet"), "\n") {
		if f := strings.Fields(l); len(f) == 3 && strings.HasPrefix(f[2], "roundtrip_trace_") {
			names = append(names, f[2])
		}
	}
	return names
}

// leaveTraceTable makes the table and the record a roundtrip process killed on a kernel
// without owner tables (before 5.12) leaves behind: the kernel keeps the table.
func leaveTraceTable(t *testing.T, ns *lab.NS, stateDir string, pid int, start string, seq int) string {
	t.Helper()
	table := fmt.Sprintf("roundtrip_trace_%d_%s_%d", pid, start, seq)
	ns.Run("nft", "add table inet "+table)
	ns.Run("nft", "add chain inet "+table+" pre { type filter hook prerouting priority -301; }")
	ns.Run("nft", "add rule inet "+table+" pre meta nftrace set 1")
	rec, err := json.Marshal(map[string]any{"netns": ns.Name, "family": "inet", "table": table, "pid": pid, "created": time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, "nftrace", table+".json"), rec, 0o600); err != nil {
		t.Fatal(err)
	}
	return table
}

func markers(t *testing.T, stateDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(stateDir, "nftrace"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// A diagnose killed with SIGKILL leaves no trace table behind: the kernel removes the
// owned table with its process, and rollback (or the next capture or diagnose) removes a
// table the kernel kept (kernels before 5.12 have no owner tables) with the records.
func TestPrivilegedTraceTableGoneAfterKill(t *testing.T) {
	lab.RequireTool(t, "nft")
	bin := roundtripBinary(t)
	n := newDropNet(t)
	stateDir := t.TempDir()
	t.Setenv(kernel.StateDirEnv, stateDir)
	env := append(os.Environ(), kernel.StateDirEnv+"="+stateDir)

	cmd := exec.Command(bin, "diagnose", "--netns", n.router.Name, "--timeout", "60s", "--iif", "lan", "tcp", dnClient, dnServer+":80")
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	rd := bufio.NewReader(stderr)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("diagnose ended before it watched: %v", err)
		}
		if strings.Contains(line, "start the client now") {
			break
		}
	}
	go io.Copy(io.Discard, rd)
	pid := cmd.Process.Pid
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))[19]
	own := fmt.Sprintf("roundtrip_trace_%d_%s_1", pid, start)
	if got := traceTables(t, n.router); !slices.Equal(got, []string{own}) || !slices.Equal(markers(t, stateDir), []string{own + ".json"}) {
		t.Fatalf("while diagnose runs: trace tables %v, records %v; want %s and its record", got, markers(t, stateDir), own)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if got := traceTables(t, n.router); len(got) != 0 {
		t.Errorf("after SIGKILL the owned trace table is still there: %v", got)
	}
	kept := leaveTraceTable(t, n.router, stateDir, pid, start, 2)

	code, out, errs := runCommand(t, "env", kernel.StateDirEnv+"="+stateDir, bin, "rollback", "--netns", n.router.Name)
	if code != ExitOK || !strings.Contains(errs, "removed trace table inet "+kept) {
		t.Errorf("rollback: exit %d\n%s\n%s", code, out, errs)
	}
	if got := traceTables(t, n.router); len(got) != 0 || len(markers(t, stateDir)) != 0 {
		t.Errorf("after rollback: trace tables %v, records %v; want none", got, markers(t, stateDir))
	}

	// The next run in the namespace removes what a killed one left, and its own table.
	kept = leaveTraceTable(t, n.router, stateDir, pid, start, 3)
	code, out, errs = runCommand(t, "env", kernel.StateDirEnv+"="+stateDir, bin, "capture", "--netns", n.router.Name, "--duration", "1s", "tcp", dnClient, dnServer+":80")
	if code != ExitOK || !strings.Contains(errs, "removed trace tables left by roundtrip processes that no longer run: ["+kept+"]") {
		t.Errorf("capture: exit %d\n%s\n%s", code, out, errs)
	}
	if got := traceTables(t, n.router); len(got) != 0 || len(markers(t, stateDir)) != 0 {
		t.Errorf("after the next run: trace tables %v, records %v; want none", got, markers(t, stateDir))
	}
}

// Without CAP_BPF and CAP_PERFMON the drop watcher cannot load: one line says so, the
// capture runs as before, and the rule verdicts (which need no BPF) still come.
func TestPrivilegedCaptureWithoutBPF(t *testing.T) {
	lab.RequireTool(t, "setpriv", "nft")
	bin := roundtripBinary(t)
	n := newDropNet(t)
	n.router.Run("nft", "add table inet hdrfilter")
	n.router.Run("nft", "add chain inet hdrfilter hdrfwd { type filter hook forward priority 0; }")
	n.router.Run("nft", "add rule inet hdrfilter hdrfwd udp dport 5353 drop")
	stateDir := t.TempDir()
	// ip netns exec enters the namespace; setpriv then drops what BPF needs (and
	// CAP_SYS_ADMIN, which would stand in for both) from the capabilities roundtrip gets.
	cmd := exec.Command("ip", "netns", "exec", n.router.Name, "setpriv", "--bounding-set", "-bpf,-perfmon,-sys_admin",
		bin, "capture", "--json", "--duration", "3s", "udp", dnClient, dnServer+":5353")
	cmd.Env = append(os.Environ(), kernel.StateDirEnv+"="+stateDir)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(errb.String(), "listening (") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := sendUDP(n.client, dnServer+":5353"); err != nil {
		t.Fatal(err)
	}
	// Exit 3: the packet came in and never left (forwarded-not-seen), with the rule.
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != ExitFindings {
		t.Fatalf("capture without CAP_BPF: %v\n%s\n%s", err, out.String(), errb.String())
	}
	var notices []string
	drops, ruleDrops := 0, 0
	for _, ev := range parseEvents(t, out.String()) {
		switch ev.Type {
		case "notice":
			notices = append(notices, ev.Notice)
		case "drop":
			drops++
		case "rule":
			if ev.Verdict == "drop" && ev.Table == "hdrfilter" {
				ruleDrops++
			}
		case "finding":
			if ev.Finding.ID == diagnose.FindingForwardedNotSeen && !hasPrefixed(ev.Finding.Evidence, "rule: inet hdrfilter hdrfwd handle ") {
				t.Errorf("forwarded-not-seen evidence %q does not name the rule", ev.Finding.Evidence)
			}
		}
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "CAP_BPF") || !strings.Contains(notices[0], "go on without") {
		t.Errorf("notices %q: want one line saying what the drop watcher needs and that the rest goes on", notices)
	}
	if drops != 0 || ruleDrops != 1 {
		t.Errorf("%d drop events, %d rule drop steps; want none and the nft rule's drop:\n%s\n%s", drops, ruleDrops, out.String(), errb.String())
	}
}
