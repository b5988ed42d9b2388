package trace_test

import (
	"fmt"
	"strings"
	"testing"

	"roundtrip/engine/doctor"
	"roundtrip/engine/fib"
	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// dockerRules is the iptables layout Docker 27 writes for its default bridge network with one
// published port (docker run -p 8080:80, userland proxy on), as its documentation ("Packet
// filtering and firewalls") describes and iptables-save prints it on such a host.
const dockerRules = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
`

// A Docker host (br_netfilter on, as Docker sets it) with two containers on docker0 and a
// host outside: for each flow the real client's result, the host's conntrack entry (DNAT and
// SNAT) and trace agree, and doctor finds nothing the kernel's behaviour contradicts.
func TestPrivilegedDockerBridgeHost(t *testing.T) {
	l := lab.New(t)
	host := lab.Host(l, "hbr-dock", true)
	ctr1, ctr2 := lab.Host(l, "hbr-ctr1", false), lab.Host(l, "hbr-ctr2", false)
	out := lab.Host(l, "hbr-out", false)
	l.Veth(host, "veth1", ctr1, "eth0")
	l.Veth(host, "veth2", ctr2, "eth0")
	l.Veth(host, "eth0", out, "eth0")
	host.Bridge("docker0", "veth1", "veth2")
	host.Addr("docker0", "172.17.0.1/16")
	host.Addr("eth0", "198.18.90.1/24")
	ctr1.Addr("eth0", "172.17.0.2/16")
	ctr1.IP("route", "add", "default", "via", "172.17.0.1")
	ctr2.Addr("eth0", "172.17.0.3/16")
	ctr2.IP("route", "add", "default", "via", "172.17.0.1")
	out.Addr("eth0", "198.18.90.2/24")
	out.IP("route", "add", "172.17.0.0/16", "via", "198.18.90.1")
	newPodNodeBRNF(t, host)
	host.Run("sh", "-c", `printf '%s' "$1" | iptables-restore`, "sh", dockerRules)
	ctr1.Listen("0.0.0.0:80")
	ctr1.Listen("0.0.0.0:81")
	out.Listen("0.0.0.0:80")
	host.Listen("0.0.0.0:8080") // the userland proxy of the published port
	st := readState(t, host)

	for i, c := range []struct {
		name, src, dst, iif string
		verdict             string
		nat                 string // the conntrack reply tuple "SRC -> DST", or ""
	}{
		{"published port", "198.18.90.2", "198.18.90.1:8080", "eth0", trace.LegForward, "172.17.0.2:80 -> 198.18.90.2:%d"},
		{"container to outside", "172.17.0.3", "198.18.90.2:80", "veth2", trace.LegForward, "198.18.90.2:80 -> 198.18.90.1:%d"},
		{"container to container", "172.17.0.3", "172.17.0.2:80", "veth2", trace.LegBridged, ""},
		{"container to the published port", "172.17.0.3", "198.18.90.1:8080", "veth2", trace.LegLocal, ""},
		{"routed to a published container port", "198.18.90.2", "172.17.0.2:80", "eth0", trace.LegForward, ""},
		{"routed to an unpublished container port", "198.18.90.2", "172.17.0.2:81", "eth0", trace.LegDrop, ""},
	} {
		client := map[string]*lab.NS{"198.18.90.2": out, "172.17.0.3": ctr2}[c.src]
		port := 40500 + i
		src := fmt.Sprintf("%s:%d", c.src, port)
		before := ruleCounters(t, host)
		conn, err := client.Dial(c.dst, src, dialTimeout)
		if conn != nil {
			conn.Close()
		}
		res := traceTCP(st, src, c.dst, c.iif)
		works := len(errorIDs(res)) == 0 && res.Forward.Verdict != trace.LegDrop
		checkCounted(t, c.name, before, ruleCounters(t, host), res, err == nil)
		if res.Forward.Verdict != c.verdict || (err == nil) != works || res.Has(trace.FindingUncertain) {
			t.Errorf("%s: the client: %v; trace %s with errors %v, want %s\n%s", c.name, err, res.Forward.Verdict, errorIDs(res), c.verdict, render(res))
			continue
		}
		if c.nat == "" {
			continue
		}
		e := conntrackEntry(t, host, src, c.dst)
		want := fmt.Sprintf(c.nat, port)
		if got := e.Reply.Src.String() + " -> " + e.Reply.Dst.String(); got != want {
			t.Errorf("%s: conntrack reply tuple %s, want %s", c.name, got, want)
		}
		// What trace says leaves is what conntrack expects back, reversed.
		fp := res.Forward.Packet
		if fp.Dst != e.Reply.Src || fp.Src != e.Reply.Dst {
			t.Errorf("%s: trace sends %s -> %s, conntrack expects the reply %s -> %s", c.name, fp.Src, fp.Dst, e.Reply.Src, e.Reply.Dst)
		}
	}
	for _, f := range doctor.Run(st, fib.New(st)) {
		if f.Severity != "info" && !strings.HasPrefix(f.ID, "duplicate") {
			t.Errorf("doctor on the Docker host: %s: %s", f.ID, f.Summary)
		}
	}
}

// newPodNodeBRNF turns br_netfilter on in a namespace, or skips naming it.
func newPodNodeBRNF(t *testing.T, ns *lab.NS) {
	t.Helper()
	(&podNode{node: ns}).brNetfilter(t, true)
}

// Docker without its userland proxy DNATs a container's connection to the host's published
// port back to the container itself (and MASQUERADEs it): the bridge must send the frame out
// the port it came in on, which it does only with hairpin mode on that port. The kernel's
// result changes with the flag; trace reads it and agrees.
func TestPrivilegedDockerHairpin(t *testing.T) {
	rules := `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
`
	for i, hairpin := range []string{"on", "off"} {
		t.Run("hairpin "+hairpin, func(t *testing.T) {
			l := lab.New(t)
			host := lab.Host(l, "hbr-hdock", true)
			ctr := lab.Host(l, "hbr-hctr", false)
			l.Veth(host, "veth1", ctr, "eth0")
			host.Bridge("docker0", "veth1")
			host.IP("link", "set", "veth1", "type", "bridge_slave", "hairpin", hairpin)
			host.Addr("docker0", "172.17.0.1/16")
			host.Addr("docker0", "198.18.95.1/32")
			ctr.Addr("eth0", "172.17.0.2/16")
			ctr.IP("route", "add", "default", "via", "172.17.0.1")
			newPodNodeBRNF(t, host)
			host.Run("sh", "-c", `printf '%s' "$1" | iptables-restore`, "sh", rules)
			ctr.Listen("0.0.0.0:80")
			src := fmt.Sprintf("172.17.0.2:%d", 41100+i)
			conn, err := ctr.Dial("198.18.95.1:8080", src, dialTimeout)
			if conn != nil {
				conn.Close()
			}
			if (err == nil) != (hairpin == "on") {
				t.Fatalf("the client with hairpin %s: %v", hairpin, err)
			}
			for _, iif := range []string{"veth1", "docker0"} {
				res := traceTCP(readState(t, host), src, "198.18.95.1:8080", iif)
				want, wantErr := trace.LegBridged, ""
				if hairpin == "off" {
					want, wantErr = trace.LegDrop, trace.FindingBridgeNoHairpin
				}
				if got := errorIDs(res); res.Forward.Verdict != want || (wantErr == "") != (len(got) == 0) || wantErr != "" && got[0] != wantErr {
					t.Errorf("trace from %s:\n%s", iif, render(res))
				}
			}
		})
	}
}
