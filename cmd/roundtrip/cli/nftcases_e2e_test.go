package cli

import (
	"slices"
	"strings"
	"testing"

	"roundtrip/engine/doctor"
	"roundtrip/engine/finding"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/trace"
)

// Field cases 1 and 2 on hosts whose own firewall is native nftables (issue 13's parity with
// the iptables path, as the nft versions of cases 3 to 5 in trace_nft_e2e_test.go): the
// failure reproduces with a real client, trace and doctor name it while reading the nft
// tables, the wizard the finding suggests is applied (its iptables rules go into
// iptables-nft, beside the native tables), the client then works, rollback brings the
// failure back, and the host's own nft tables are the same after apply and rollback.

// case1ServerNFT is a Debian-style /etc/nftables.conf of case 1's web server: input allows
// loopback, established traffic, HTTP and ICMP and drops the rest; it forwards nothing.
const case1ServerNFT = `table inet filter {
	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		ct state invalid counter drop
		ct state established,related accept
		tcp dport 80 counter accept
		meta l4proto icmp accept
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
	}
	chain output {
		type filter hook output priority filter; policy accept;
	}
}
`

// case1FirewallNFT is case 1's firewall abroad with its DNAT and masquerade in nft.
const case1FirewallNFT = `table ip nat {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "pub" tcp dport 80 dnat to 10.72.1.2:80
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "pub" ip saddr 10.72.1.0/24 masquerade
	}
}
`

// nftOnly replaces what iptables-nft made of the lab's iptables commands with a native
// ruleset: afterwards iptables-save shows nothing.
func nftOnly(t *testing.T, ns *lab.NS, ruleset string) {
	t.Helper()
	ns.Run("nft", "flush", "ruleset")
	loadNFT(t, ns, ruleset)
	if out := strings.TrimSpace(ns.Run("iptables-save")); strings.Contains(out, "-A ") {
		t.Fatalf("iptables rules left in %s:\n%s", ns.Name, out)
	}
}

// nftTables lists the named native tables without their counters.
func nftTables(t *testing.T, ns *lab.NS, tables ...string) string {
	t.Helper()
	var b strings.Builder
	for _, tb := range tables {
		b.WriteString(ns.Run("nft", append([]string{"-s", "list", "table"}, strings.Fields(tb)...)...))
	}
	return b.String()
}

// stepRule is the rule text of the first step of leg on hook whose rule starts with prefix.
func stepRule(leg *trace.Leg, hook, prefix string) string {
	if leg == nil {
		return ""
	}
	for _, s := range leg.Steps {
		if s.Hook == hook && strings.HasPrefix(s.Rule, prefix) {
			return s.Rule
		}
	}
	return ""
}

// noModelDoubt fails the test when trace was unsure of a construct or the kernel disagreed.
func noModelDoubt(t *testing.T, what string, tr traceRun) {
	t.Helper()
	for _, id := range []string{trace.FindingUncertain, trace.FindingKernelDisagrees} {
		if tr.res.Has(id) {
			t.Errorf("%s: %s: %+v\n%s", what, id, tr.res.Finding(id), tr.out)
		}
	}
}

// rollbackCLI undoes the latest apply in ns with the rollback command.
func rollbackCLI(t *testing.T, ns *lab.NS) {
	t.Helper()
	if code, _, errs := runCLI(t, "rollback", "--netns", ns.Name); code != ExitOK {
		t.Fatalf("rollback in %s: exit %d: %s", ns.Name, code, errs)
	}
}

// Case 1 with nft-only hosts: the firewall abroad DNATs in an `ip nat` table, the web server's
// own firewall is a Debian-style `inet filter` (input policy drop). The trace on the server
// walks the nft input chain (the HTTP rule accepts the SYN) and names the asymmetric return;
// the suggested source-return fix (ip rules only) and the connmark mode (CONNMARK rules in
// iptables-nft's mangle table, beside the native table) both make the client work, and both
// roll back to the failure with the server's own table untouched.
func TestPrivilegedNFTCase1SourceReturn(t *testing.T) {
	lab.RequireTool(t, "nft")
	c := lab.Case1In(lab.NewPrefixed(t, "hnc"))
	nftOnly(t, c.Firewall, case1FirewallNFT)
	nftOnly(t, c.Server, case1ServerNFT)
	// Table names go to roundtrip's own rt_tables file: keep the test off the host's /etc.
	t.Setenv("ROUNDTRIP_IPROUTE2_DIR", t.TempDir())
	get := func() (string, error) { return c.Client.HTTPGet(c.Service, clientTimeout) }
	direct := c.ServerPublicAddr + ":80"

	if body, err := c.Client.HTTPGet(direct, clientTimeout); err != nil || body != c.Body {
		t.Fatalf("direct access to the server through the nft input chain: %q %v", body, err)
	}
	if body, err := get(); err == nil {
		t.Fatalf("the client gets %q through the nft firewall's DNAT: the failure does not reproduce", body)
	}

	flow := []string{"tcp", c.ClientAddr + ":40000", c.ServerAddr, "--iif", c.ServerLAN}
	tr := traceLive(t, c.Server, flow...)
	f := tr.finding(t, trace.FindingAsymmetricReturn)
	noModelDoubt(t, "trace before the fix", tr)
	accept := stepRule(&tr.res.Forward, "nft inet filter input", "tcp dport 80 counter packets ")
	if tr.code != ExitFindings || tr.res.Reply == nil || tr.res.Reply.OIF != c.ServerPublic || !strings.Contains(f.Summary, "in on eth0 but the reply leaves by em1") ||
		!strings.Contains(strings.Join(f.Evidence, "\n"), "198.18.72.0/24 via 192.168.72.253 dev em1") || f.Fix.Wizard != finding.WizardSourceReturn ||
		!strings.HasSuffix(accept, " accept # handle 7") {
		t.Errorf("trace on the server: exit %d, finding %+v, input rule %q\n%s", tr.code, f, accept, tr.out)
	}
	sameAsSnapshot(t, c.Server, tr, flow...)
	// The input chain is in the model: SSH to the server is dropped by its policy.
	ssh := traceLive(t, c.Server, "tcp", c.ClientAddr+":40000", "10.72.1.2:22", "--iif", c.ServerLAN)
	if fd := ssh.finding(t, trace.FindingFiltered); len(fd.Evidence) == 0 || fd.Evidence[0] != "policy drop of chain inet filter input (hook input)" {
		t.Errorf("SSH to the server: %+v", fd)
	}
	if ids := doctorIDs(t, c.Server); !slices.Equal(ids, []string{doctor.FindingUplinkNoReturn}) {
		t.Errorf("doctor on the server: %v, want the uplink without return routing", ids)
	}
	// diagnose sees it on the wire: SYN in on eth0, SYN-ACK out by em1.
	done := runCLIAsync(t, "diagnose", "tcp", c.ClientAddr, c.ServerAddr, "--iif", c.ServerLAN, "--netns", c.Server.Name, "--timeout", "5s")
	if _, err := c.Client.Dial(c.Service, c.ClientAddr+":40101", clientTimeout); err == nil {
		t.Fatal("the client gets through while diagnose watches")
	}
	if r := <-done; r.code != ExitFindings || !strings.Contains(r.out, "verdict: failed: the flow is broken: asymmetric-return: the request came in on eth0 but the reply left by em1") {
		t.Errorf("diagnose on the server: exit %d\n%s\n%s", r.code, r.out, r.errs)
	}

	own := nftTables(t, c.Server, "inet filter")
	before := readNS(t, c.Server)
	restored := func(what string) {
		t.Helper()
		if _, err := get(); err == nil {
			t.Errorf("the client gets through after rolling back %s", what)
		}
		if d := model.Diff(before, readNS(t, c.Server)); d != "" {
			t.Errorf("rolling back %s did not restore the server:\n%s", what, d)
		}
		if after := nftTables(t, c.Server, "inet filter"); after != own {
			t.Errorf("%s and its rollback changed the server's own table:\n%s\nwas\n%s", what, after, own)
		}
	}

	// The fix the finding suggests, as printed.
	applySuggestedFix(t, c.Server.Name, f)
	if body, err := get(); err != nil || body != c.Body {
		t.Fatalf("the client after the suggested fix: %q %v", body, err)
	}
	fixed := traceLive(t, c.Server, flow...)
	noModelDoubt(t, "trace after the fix", fixed)
	if fixed.code != ExitOK || len(fixed.res.Findings) != 0 || fixed.res.Reply == nil || fixed.res.Reply.OIF != c.ServerLAN {
		t.Errorf("trace after the suggested fix: exit %d findings %v\n%s", fixed.code, fixed.ids(), fixed.out)
	}
	rollbackCLI(t, c.Server)
	restored("the suggested fix")

	// The connmark mode writes CONNMARK rules: into iptables-nft, the host's iptables, beside
	// the native table whose input chain still accepts the request.
	code, out, errs := runCLI(t, "wizard", "source-return", "--uplink", c.ServerLAN+":10.72.1.1", "--uplink", c.ServerPublic+":192.168.72.253",
		"--mode", "connmark", "--netns", c.Server.Name, "--apply")
	if code != ExitOK {
		t.Fatalf("source-return --mode connmark: exit %d\n%s\n%s", code, out, errs)
	}
	if save := c.Server.Run("iptables-nft-save", "-t", "mangle"); !strings.Contains(save, "CONNMARK") {
		t.Errorf("the CONNMARK rules are not in iptables-nft:\n%s", save)
	}
	if body, err := get(); err != nil || body != c.Body {
		t.Fatalf("the client after the connmark fix: %q %v", body, err)
	}
	cm := traceLive(t, c.Server, flow...)
	noModelDoubt(t, "trace after the connmark fix", cm)
	if cm.code != ExitOK || len(cm.res.Findings) != 0 || cm.res.Reply == nil || cm.res.Reply.OIF != c.ServerLAN || cm.res.Reply.Packet.Mark == 0 ||
		stepRule(&cm.res.Forward, "nft inet filter input", "tcp dport 80 counter packets ") == "" {
		t.Errorf("trace after the connmark fix: exit %d findings %v\n%s", cm.code, cm.ids(), cm.out)
	}
	rollbackCLI(t, c.Server)
	restored("the connmark fix")
}
