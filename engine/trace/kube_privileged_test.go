package trace_test

import (
	"fmt"
	"strings"
	"testing"

	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// kubeRules is the layout kube-proxy (iptables mode, Kubernetes 1.28+) writes for a ClusterIP
// service with a NodePort and two endpoints, as its proxier writes it (KUBE-SERVICES,
// KUBE-SVC/KUBE-EXT/KUBE-SEP chains, the 0x4000 masquerade mark, MASQUERADE --random-fully).
const kubeRules = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-EXT-WEB - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-B - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-WEB - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-EXT-WEB -m comment --comment "masquerade traffic for default/web external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-WEB -j KUBE-SVC-WEB
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web" -m tcp --dport 30080 -j KUBE-EXT-WEB
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-A -s 10.244.0.2/32 -m comment --comment "default/web" -j KUBE-MARK-MASQ
-A KUBE-SEP-A -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination 10.244.0.2:8080
-A KUBE-SEP-B -s 10.244.0.3/32 -m comment --comment "default/web" -j KUBE-MARK-MASQ
-A KUBE-SEP-B -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination 10.244.0.3:8080
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "default/web cluster IP" -m tcp --dport 80 -j KUBE-SVC-WEB
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-WEB ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m comment --comment "default/web cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-WEB -m comment --comment "default/web -> 10.244.0.2:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A
-A KUBE-SVC-WEB -m comment --comment "default/web -> 10.244.0.3:8080" -j KUBE-SEP-B
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
`

// A kube-proxy node with pods on cni0 (br_netfilter on): the kernel picks an endpoint at
// random and trace names both with their probability; the kernel's pick is among them, and for
// a NodePort the MASQUERADE --random-fully source port is within the range trace names.
func TestPrivilegedKubeProxyNode(t *testing.T) {
	l := lab.New(t)
	node := lab.Host(l, "hbr-knode", true)
	podA, podB, podC := lab.Host(l, "hbr-kpa", false), lab.Host(l, "hbr-kpb", false), lab.Host(l, "hbr-kpc", false)
	out := lab.Host(l, "hbr-kout", false)
	for i, p := range []*lab.NS{podA, podB, podC} {
		veth := fmt.Sprintf("veth%d", i)
		l.Veth(node, veth, p, "eth0")
		p.Addr("eth0", fmt.Sprintf("10.244.0.%d/24", i+2))
		p.IP("route", "add", "default", "via", "10.244.0.1")
	}
	node.Bridge("cni0", "veth0", "veth1", "veth2")
	node.Addr("cni0", "10.244.0.1/24")
	l.Veth(node, "eth0", out, "eth0")
	node.Addr("eth0", "198.18.91.1/24")
	out.Addr("eth0", "198.18.91.2/24")
	newPodNodeBRNF(t, node)
	node.Run("sh", "-c", `printf '%s' "$1" | iptables-restore`, "sh", kubeRules)
	podA.Listen("0.0.0.0:8080")
	podB.Listen("0.0.0.0:8080")
	st := readState(t, node)
	checkDoctor(t, st)

	for i, c := range []struct {
		name, src, dst, iif string
		client              *lab.NS
		masq                bool // the request is MASQUERADEd to cni0's address, a random port
	}{
		{"pod to ClusterIP", "10.244.0.4", "10.96.0.10:80", "veth2", podC, false},
		{"outside to NodePort", "198.18.91.2", "198.18.91.1:30080", "eth0", out, true},
	} {
		for try := range 4 { // the kernel picks anew each time: each pick must be a candidate
			src := fmt.Sprintf("%s:%d", c.src, 40600+10*i+try)
			conn, err := c.client.Dial(c.dst, src, dialTimeout)
			if err != nil {
				t.Fatalf("%s: the client: %v", c.name, err)
			}
			conn.Close()
			e := conntrackEntry(t, node, src, c.dst)
			res := traceTCP(st, src, c.dst, c.iif)
			if n := len(errorIDs(res)); n > 0 || res.Has(trace.FindingUncertain) {
				t.Fatalf("%s: trace errors %v\n%s", c.name, errorIDs(res), render(res))
			}
			cand := res.Finding(trace.FindingCandidates)
			endpoint := e.Reply.Src.String()
			if cand == nil || !strings.Contains(strings.Join(cand.Evidence, "\n"), "-> "+endpoint) || !strings.Contains(strings.Join(cand.Evidence, "\n"), "probability 50%") {
				t.Fatalf("%s: the kernel chose %s, which trace does not name as a candidate:\n%s", c.name, endpoint, render(res))
			}
			fp := res.Forward.Packet
			if !c.masq {
				if fp.Src != e.Reply.Dst {
					t.Errorf("%s: trace source %s, conntrack expects the reply at %s", c.name, fp.Src, e.Reply.Dst)
				}
				continue
			}
			// --random-fully: a port in 1024-65535, never a number trace made up.
			if fp.Src.Addr() != e.Reply.Dst.Addr() || fp.Src.Port() != 0 || fp.SrcPortRange != "1024-65535" || e.Reply.Dst.Port() < 1024 {
				t.Errorf("%s: trace source %s (range %q), kernel %s", c.name, fp.Src, fp.SrcPortRange, e.Reply.Dst)
			}
			if try == 0 {
				t.Logf("%s:\n%s", c.name, render(res))
			}
			if res.Forward.OIF != "cni0" || !strings.Contains(render(res), "10.244.0.1:(1024-65535)") {
				t.Errorf("%s: out %s\n%s", c.name, res.Forward.OIF, render(res))
			}
		}
	}
}
