package doctor

import (
	"slices"
	"strings"
	"testing"

	"roundtrip/engine/fib"
	"roundtrip/engine/finding"
	"roundtrip/engine/model/modeltest"
	"roundtrip/engine/trace"
)

func doctorOn(t *testing.T, host string) []finding.Finding {
	t.Helper()
	s := modeltest.Host(t, host)
	return Run(s, fib.New(s))
}

func wantDoctor(t *testing.T, fs []finding.Finding, want ...string) {
	t.Helper()
	got := finding.IDs(fs)
	slices.Sort(got)
	want = append([]string{}, want...)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		var b strings.Builder
		trace.RenderFindings(&b, fs)
		t.Fatalf("findings %v, want %v\n%s", got, want, b.String())
	}
}

func TestDoctorCleanHost(t *testing.T) {
	wantDoctor(t, doctorOn(t, `
link eth0 10.0.0.1/24
route default via 10.0.0.254 dev eth0
sysctl net.ipv4.conf.all.rp_filter=1
`))
}

func TestDoctorForwardingOff(t *testing.T) {
	nat := "link lan 10.0.0.1/24\nlink wan 192.0.2.2/30\nroute default via 192.0.2.1 dev wan\nipt nat -A POSTROUTING -o wan -j MASQUERADE\n"
	fs := doctorOn(t, nat)
	wantDoctor(t, fs, FindingForwardingOff)
	if !strings.Contains(strings.Join(fs[0].Evidence, "\n"), "-j MASQUERADE") {
		t.Errorf("evidence %v", fs[0].Evidence)
	}
	wantDoctor(t, doctorOn(t, nat+"sysctl net.ipv4.ip_forward=1\n"))
	// A DNAT to this host itself (a local port redirect) needs no forwarding.
	wantDoctor(t, doctorOn(t, "link eth0 10.0.0.1/24\nipt nat -A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.1:8080\n"))
}

const twoUplinks = `
link eth0 192.168.10.2/24
link em1 192.168.1.254/30
route default via 192.168.10.1 dev eth0
route 198.18.0.0/15 via 192.168.1.253 dev em1
`

func TestDoctorStrictRPFilterMultihomed(t *testing.T) {
	fs := doctorOn(t, twoUplinks+"sysctl net.ipv4.conf.em1.rp_filter=1\n")
	if !slices.Contains(finding.IDs(fs), FindingRPFilterStrict) {
		t.Fatalf("findings %v", finding.IDs(fs))
	}
	if f := fs[slices.Index(finding.IDs(fs), FindingRPFilterStrict)]; !strings.Contains(f.Summary, "em1") || strings.Contains(f.Summary, "eth0,") {
		t.Errorf("finding %+v", f)
	}
	fs = doctorOn(t, twoUplinks+"sysctl net.ipv4.conf.all.rp_filter=2\n")
	if slices.Contains(finding.IDs(fs), FindingRPFilterStrict) {
		t.Errorf("loose mode flagged")
	}
}

// Seed case 1 before and after the seed's fix: em1 is a second uplink whose connections are
// answered through eth0 until a rule sends replies from em1's address to em1's table.
func TestDoctorUplinkWithoutReturnRouting(t *testing.T) {
	fs := doctorOn(t, twoUplinks)
	wantDoctor(t, fs, FindingUplinkNoReturn)
	f := fs[0]
	if !strings.Contains(f.Summary, "em1") || f.Fix.Wizard != finding.WizardSourceReturn || !slices.Equal(f.Fix.Args, []string{"--uplink", "em1:192.168.1.253"}) {
		t.Errorf("finding %+v", f)
	}
	if !strings.Contains(strings.Join(f.Evidence, "\n"), "leaves by eth0") {
		t.Errorf("evidence %v", f.Evidence)
	}
	wantDoctor(t, doctorOn(t, `
name 1 china
link eth0 192.168.10.2/24
link em1 192.168.1.254/30
route default via 192.168.10.1 dev eth0
route table china 192.168.1.252/30 dev em1 src 192.168.1.254
route table china default via 192.168.1.253 dev em1
route table china 192.168.10.0/24 dev eth0
rule 100 from 192.168.1.254 table china
`))
	// Return routing by connmark counts too.
	wantDoctor(t, doctorOn(t, twoUplinks+"route table 7 default via 192.168.1.253 dev em1\nroute table 7 192.168.10.0/24 dev eth0\nrule 90 fwmark 0x7 table 7\n"))
}

// Seed case 5: the DNAT's backend shares the network of its clients and the only SNAT rule
// matches the reply direction. The corrected SNAT silences the finding.
func TestDoctorDNATWithoutSNAT(t *testing.T) {
	base := `
link eth0 192.168.1.34/24
sysctl net.ipv4.ip_forward=1
ipt nat -A PREROUTING -d 192.168.1.34/32 -p tcp -m tcp --dport 81 -j DNAT --to-destination 192.168.1.32:80
`
	fs := doctorOn(t, base+"ipt nat -A POSTROUTING -s 192.168.1.32/32 -j SNAT --to-source 192.168.1.34\n")
	wantDoctor(t, fs, FindingDNATWithoutSNAT)
	if !strings.Contains(fs[0].Fix.Summary, "-d 192.168.1.32 -p tcp --dport 80 -j SNAT --to-source 192.168.1.34") || fs[0].Fix.Wizard != finding.WizardPortForward {
		t.Errorf("fix %+v", fs[0].Fix)
	}
	wantDoctor(t, doctorOn(t, base+"ipt nat -A POSTROUTING -d 192.168.1.32/32 -p tcp -m tcp --dport 80 -j SNAT --to-source 192.168.1.34\n"))
	wantDoctor(t, doctorOn(t, base+"ipt nat -A POSTROUTING -o eth0 -j MASQUERADE\n"))
	// A router's DNAT from the WAN to a LAN server is fine: the clients are not on the LAN.
	wantDoctor(t, doctorOn(t, `
link wan 192.0.2.2/30
link lan 10.0.0.1/24
sysctl net.ipv4.ip_forward=1
route default via 192.0.2.1 dev wan
ipt nat -A PREROUTING -i wan -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.100
`))
}

func TestDoctorTableMissingConnected(t *testing.T) {
	base := `
link lan 10.0.0.1/24
link wan1 192.0.2.2/30
link wan2 198.51.100.2/30
sysctl net.ipv4.ip_forward=1
route default via 192.0.2.1 dev wan1
route table 100 default via 198.51.100.1 dev wan2
rule 100 fwmark 0x2 table 100
`
	fs := doctorOn(t, base)
	wantDoctor(t, fs, FindingTableMissingConnected)
	if !strings.Contains(fs[0].Fix.Summary, "ip route add 10.0.0.0/24 dev lan table 100") {
		t.Errorf("fix %+v", fs[0].Fix)
	}
	wantDoctor(t, doctorOn(t, base+"route table 100 10.0.0.0/24 dev lan\n"))
}

func TestDoctorDuplicates(t *testing.T) {
	fs := doctorOn(t, `
link eth0 10.0.0.1/24
link eth1 10.1.0.1/24
route table 100 default via 10.1.0.254 dev eth1
route table 100 10.0.0.0/24 dev eth0
rule 100 from 10.1.0.1 table 100
rule 101 from 10.1.0.1 table 100
ipt filter -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
ipt filter -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
`)
	wantDoctor(t, fs, FindingDuplicateRule, FindingDuplicateIPTablesRule)
	for _, f := range fs {
		if f.ID == FindingDuplicateRule && !strings.Contains(f.Fix.Summary, "ip -4 rule del priority 101") {
			t.Errorf("fix %q", f.Fix.Summary)
		}
	}
}

func TestDoctorRuleOnEmptyTable(t *testing.T) {
	fs := doctorOn(t, "link eth0 10.0.0.1/24\nrule 100 from 10.0.0.1 table 300\n")
	wantDoctor(t, fs, FindingRuleEmptyTable)
	if !strings.Contains(fs[0].Evidence[0], "lookup 300") {
		t.Errorf("evidence %v", fs[0].Evidence)
	}
}

func TestDoctorGatewayNotOnLink(t *testing.T) {
	fs := doctorOn(t, "link eth0 10.0.0.1/24\nroute 10.5.0.0/16 via 172.16.0.1 dev eth0\n")
	wantDoctor(t, fs, FindingGatewayNotOnLink)
	wantDoctor(t, doctorOn(t, "link eth0 10.0.0.1/24\nroute 10.5.0.0/16 via 172.16.0.1 dev eth0 onlink\n"))
	wantDoctor(t, doctorOn(t, "link eth0 10.0.0.1/24\nroute 172.16.0.0/30 dev eth0\nroute 10.5.0.0/16 via 172.16.0.1 dev eth0\n"))
}

func TestDoctorConntrackFull(t *testing.T) {
	for _, c := range []struct {
		count string
		want  []string
		sev   string
	}{
		{"10", nil, ""},
		{"95", []string{FindingConntrackFull}, finding.SeverityWarning},
		{"100", []string{FindingConntrackFull}, finding.SeverityError},
	} {
		fs := doctorOn(t, "link eth0 10.0.0.1/24\nsysctl net.netfilter.nf_conntrack_max=100\nsysctl net.netfilter.nf_conntrack_count="+c.count+"\n")
		wantDoctor(t, fs, c.want...)
		if len(fs) > 0 && fs[0].Severity != c.sev {
			t.Errorf("count %s: severity %s", c.count, fs[0].Severity)
		}
	}
}

// A DNAT in nat OUTPUT (directly or in a chain only OUTPUT reaches) redirects this host's own
// connections: it is not a port forward, needs no forwarding and no SNAT.
func TestDoctorDNATInOutputIsNotAPortForward(t *testing.T) {
	host := `
link eth0 10.0.0.1/24
route default via 10.0.0.254 dev eth0
ipt nat -N LOCAL-SVC
ipt nat -A OUTPUT -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j DNAT --to-destination 10.0.0.5:6443
ipt nat -A OUTPUT -j LOCAL-SVC
ipt nat -A LOCAL-SVC -d 10.96.0.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.6:8080
`
	wantDoctor(t, doctorOn(t, host))
	// Reached from PREROUTING too, the same chain forwards: both findings are real.
	wantDoctor(t, doctorOn(t, host+"ipt nat -A PREROUTING -j LOCAL-SVC\n"), FindingForwardingOff, FindingDNATWithoutSNAT)
}

// A DNAT to an endpoint on one of this host's bridges: clients on the bridge get their
// replies bridged through this host, so with br_netfilter on conntrack undoes the DNAT.
func TestDoctorDNATOnBridge(t *testing.T) {
	host := `
bridge cni0 10.244.0.1/24
port veth1 cni0
sysctl net.ipv4.ip_forward=1
ipt nat -N KUBE-SEP-A
ipt nat -A PREROUTING -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-SEP-A
ipt nat -A OUTPUT -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-SEP-A
ipt nat -A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 10.244.0.3:8080
`
	wantDoctor(t, doctorOn(t, host+"sysctl net.bridge.bridge-nf-call-iptables=1\n"))
	fs := doctorOn(t, host)
	wantDoctor(t, fs, FindingDNATWithoutSNAT)
	if ev := strings.Join(fs[0].Evidence, "\n"); !strings.Contains(ev, "br_netfilter is off") || !strings.Contains(fs[0].Fix.Summary, "bridge-nf-call-iptables=1") {
		t.Errorf("finding %+v", fs[0])
	}
}

// firewalld sends each interface's packets (-g) to its zone's chain: a forward port of the
// public zone is not reached by clients on the internal zone's network, even though the
// catch-all -g of the default zone names the same chain.
func TestDoctorDNATOnlyReachedFromItsZone(t *testing.T) {
	host := `
link eth0 198.18.94.1/24
link eth1 10.94.1.1/24
sysctl net.ipv4.ip_forward=1
ipt nat -N PREROUTING_ZONES
ipt nat -N PRE_public
ipt nat -N PRE_internal
ipt nat -A PREROUTING -j PREROUTING_ZONES
ipt nat -A PREROUTING_ZONES -i eth1 -g PRE_internal
ipt nat -A PREROUTING_ZONES -i eth0 -g PRE_public
ipt nat -A PREROUTING_ZONES -g PRE_public
ipt nat -A PRE_public -p tcp -m tcp --dport 8443 -j DNAT --to-destination 10.94.1.2:443
`
	wantDoctor(t, doctorOn(t, host))
	// Without the internal zone's -g, eth1's clients fall through to the public zone.
	wantDoctor(t, doctorOn(t, strings.Replace(host, "ipt nat -A PREROUTING_ZONES -i eth1 -g PRE_internal\n", "", 1)), FindingDNATWithoutSNAT)
}
