package trace_test

import (
	"fmt"
	"testing"

	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// kubeRules is the layout kube-proxy (iptables mode, Kubernetes 1.28+) writes, as its proxier
// (pkg/proxy/iptables/proxier.go) writes it and the Kubernetes documentation ("Virtual IPs and
// Service Proxies") describes it: KUBE-SERVICES, KUBE-SVC/KUBE-EXT/KUBE-SEP chains, the 0x4000
// masquerade mark, MASQUERADE --random-fully, the filter table's KUBE-SERVICES /
// KUBE-EXTERNAL-SERVICES REJECTs of services without endpoints and KUBE-FIREWALL's localnet
// drop. Services: web (10.96.0.10:80, NodePort 30080, endpoints pod A and B, -m statistic),
// db (10.96.0.11:80, one endpoint, pod C), kube-dns (10.96.0.53:53/udp, pod C), empty (10.96.0.20:80, NodePort 30081, none). Pod
// B's egress MASQUERADE is the CNI bridge plugin's (ipMasq: true) CNI-<id> chain.
const kubeRules = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-4f2b1a - [0:0]
:KUBE-EXT-WEB - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-B - [0:0]
:KUBE-SEP-C - [0:0]
:KUBE-SEP-DNS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-DB - [0:0]
:KUBE-SVC-DNS - [0:0]
:KUBE-SVC-WEB - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 10.244.0.3/32 -m comment --comment "name: \"cbr0\" id: \"4f2b1a\"" -j CNI-4f2b1a
-A CNI-4f2b1a -d 10.244.0.0/24 -m comment --comment "name: \"cbr0\" id: \"4f2b1a\"" -j ACCEPT
-A CNI-4f2b1a ! -d 224.0.0.0/4 -m comment --comment "name: \"cbr0\" id: \"4f2b1a\"" -j MASQUERADE
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
-A KUBE-SEP-C -s 10.244.0.4/32 -m comment --comment "default/db" -j KUBE-MARK-MASQ
-A KUBE-SEP-C -p tcp -m comment --comment "default/db" -m tcp -j DNAT --to-destination 10.244.0.4:5432
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "default/web cluster IP" -m tcp --dport 80 -j KUBE-SVC-WEB
-A KUBE-SEP-DNS -s 10.244.0.4/32 -m comment --comment "kube-system/kube-dns:dns" -j KUBE-MARK-MASQ
-A KUBE-SEP-DNS -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.0.4:53
-A KUBE-SERVICES -d 10.96.0.53/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-DNS
-A KUBE-SERVICES -d 10.96.0.11/32 -p tcp -m comment --comment "default/db cluster IP" -m tcp --dport 80 -j KUBE-SVC-DB
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-DB ! -s 10.244.0.0/16 -d 10.96.0.11/32 -p tcp -m comment --comment "default/db cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-DB -m comment --comment "default/db -> 10.244.0.4:5432" -j KUBE-SEP-C
-A KUBE-SVC-DNS ! -s 10.244.0.0/16 -d 10.96.0.53/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-MARK-MASQ
-A KUBE-SVC-DNS -m comment --comment "kube-system/kube-dns:dns -> 10.244.0.4:53" -j KUBE-SEP-DNS
-A KUBE-SVC-WEB ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m comment --comment "default/web cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-WEB -m comment --comment "default/web -> 10.244.0.2:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A
-A KUBE-SVC-WEB -m comment --comment "default/web -> 10.244.0.3:8080" -j KUBE-SEP-B
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "default/empty has no endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30081 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment "default/empty has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
COMMIT
`

// kubeNode builds the node of the kube-proxy tests, br_netfilter on or off, and loads its rules
// (doctor's expected findings given).
func kubeNode(t *testing.T, name string, brnf bool, expected ...string) *rwHost {
	h := newRealWorld(t, name, true)
	var pods []*lab.NS
	for i, name := range []string{"poda", "podb", "podc"} {
		pods = append(pods, h.peer(name, fmt.Sprintf("veth%d", i), fmt.Sprintf("10.244.0.%d/24", i+2), "10.244.0.1"))
	}
	out := h.peer("out", "eth0", "198.18.91.2/24", "")
	out.IP("route", "add", "10.244.0.0/16", "via", "198.18.91.1")
	out.IP("route", "add", "10.96.0.0/12", "via", "198.18.91.1")
	h.host.Bridge("cni0", "veth0", "veth1", "veth2")
	for i := range pods {
		h.host.IP("link", "set", fmt.Sprintf("veth%d", i), "type", "bridge_slave", "hairpin", "on")
	}
	h.host.Addr("cni0", "10.244.0.1/24")
	h.host.Addr("eth0", "198.18.91.1/24")
	h.host.IP("route", "add", "default", "via", "198.18.91.2")
	(&podNode{node: h.host}).brNetfilter(t, brnf)
	h.host.Sysctl("net.ipv4.conf.all.route_localnet", "1") // kube-proxy's, for NodePorts on localhost
	pods[0].Listen("0.0.0.0:8080")
	pods[1].Listen("0.0.0.0:8080")
	pods[2].Listen("0.0.0.0:5432")
	out.Listen("0.0.0.0:80")
	udpEcho(t, pods[2], "0.0.0.0:53")
	h.host.Listen("0.0.0.0:10250") // the kubelet
	h.load(kubeRules, expected...)
	return h
}

// A kube-proxy node with pods A, B, C on cni0 (br_netfilter on, hairpin on the ports as the
// kubelet's hairpin-veth mode sets it) and a host outside: every flow's kernel decisions
// against trace's. For the web service the kernel picks an endpoint at random; each pick must
// be one of trace's candidates, and at least one the path trace follows.
func TestPrivilegedKubeProxyNode(t *testing.T) {
	t.Parallel()
	h := kubeNode(t, "knode", true)

	h.run([]rwFlow{
		{name: "pod to ClusterIP", client: "podc", src: "10.244.0.4", dst: "10.96.0.10:80", iif: "veth2", verdict: trace.LegBridged, tries: 6},
		{name: "pod to a ClusterIP it is an endpoint of (hairpin)", client: "poda", src: "10.244.0.2", dst: "10.96.0.10:80", iif: "veth0", verdict: trace.LegBridged, tries: 6},
		{name: "outside to NodePort", client: "out", src: "198.18.91.2", dst: "198.18.91.1:30080", iif: "eth0", verdict: trace.LegForward, tries: 6},
		{name: "outside to ClusterIP (routed)", client: "out", src: "198.18.91.2", dst: "10.96.0.10:80", iif: "eth0", verdict: trace.LegForward, tries: 6},
		{name: "pod to the DNS ClusterIP over UDP", client: "poda", src: "10.244.0.2", dst: "10.96.0.53:53", iif: "veth0", verdict: trace.LegBridged, udp: true},
		{name: "outside to the DNS ClusterIP over UDP (routed)", client: "out", src: "198.18.91.2", dst: "10.96.0.53:53", iif: "eth0", verdict: trace.LegForward, udp: true},
		{name: "pod to a one-endpoint ClusterIP", client: "poda", src: "10.244.0.2", dst: "10.96.0.11:80", iif: "veth0", verdict: trace.LegBridged},
		{name: "node to a ClusterIP (nat OUTPUT)", client: "host", src: "198.18.91.1", dst: "10.96.0.11:80", verdict: trace.LegOutput},
		{name: "pod to a service without endpoints", client: "poda", src: "10.244.0.2", dst: "10.96.0.20:80", iif: "veth0", verdict: trace.LegReject},
		{name: "outside to a NodePort without endpoints", client: "out", src: "198.18.91.2", dst: "198.18.91.1:30081", iif: "eth0", verdict: trace.LegReject},
		{name: "pod to outside (not masqueraded)", client: "poda", src: "10.244.0.2", dst: "198.18.91.2:80", iif: "veth0", verdict: trace.LegForward},
		{name: "pod to outside (CNI ipMasq)", client: "podb", src: "10.244.0.3", dst: "198.18.91.2:80", iif: "veth1", verdict: trace.LegForward},
		{name: "pod to pod", client: "poda", src: "10.244.0.2", dst: "10.244.0.4:5432", iif: "veth0", verdict: trace.LegBridged},
		{name: "outside to a pod (routed)", client: "out", src: "198.18.91.2", dst: "10.244.0.3:8080", iif: "eth0", verdict: trace.LegForward},
		{name: "pod to a NodePort of its node", client: "podc", src: "10.244.0.4", dst: "198.18.91.1:30080", iif: "veth2", verdict: trace.LegBridged, tries: 4},
		{name: "node to a NodePort on loopback", client: "host", src: "127.0.0.1", dst: "127.0.0.1:30080", verdict: trace.LegOutput, tries: 4},
		{name: "pod to the kubelet", client: "podb", src: "10.244.0.3", dst: "10.244.0.1:10250", iif: "veth1", verdict: trace.LegLocal},
	})
}

// The same node with br_netfilter off (the module not loaded, or bridge-nf-call-iptables=0):
// a pod reaching a ClusterIP whose endpoint shares its bridge gets the endpoint's reply
// bridged past conntrack, un-DNATed, and the connection fails; trace says why and doctor warns
// of it (dnat-same-subnet-no-snat, which the kernel confirms). Everything routed still works.
// The ICMP redirects the node sends a pod it routes back onto cni0 also hold back the ICMP
// error of a later REJECT to that pod (the per-destination ICMP limit): the pod then times
// out, which trace names as what the rejection depends on.
func TestPrivilegedKubeProxyNodeWithoutBRNetfilter(t *testing.T) {
	t.Parallel()
	h := kubeNode(t, "knonf", false, "dnat-same-subnet-no-snat")
	h.run([]rwFlow{
		{name: "pod to ClusterIP (reply bridged past conntrack)", client: "podc", src: "10.244.0.4", dst: "10.96.0.10:80", iif: "veth2", verdict: trace.LegForward, tries: 4},
		{name: "pod to a one-endpoint ClusterIP (reply bridged past conntrack)", client: "poda", src: "10.244.0.2", dst: "10.96.0.11:80", iif: "veth0", verdict: trace.LegForward},
		{name: "pod to the DNS ClusterIP over UDP (reply bridged past conntrack)", client: "poda", src: "10.244.0.2", dst: "10.96.0.53:53", iif: "veth0", verdict: trace.LegForward, udp: true},
		{name: "outside to NodePort", client: "out", src: "198.18.91.2", dst: "198.18.91.1:30080", iif: "eth0", verdict: trace.LegForward, tries: 4},
		{name: "pod to a NodePort of its node (masqueraded)", client: "podc", src: "10.244.0.4", dst: "198.18.91.1:30080", iif: "veth2", verdict: trace.LegForward, tries: 4},
		{name: "pod to pod", client: "poda", src: "10.244.0.2", dst: "10.244.0.4:5432", iif: "veth0", verdict: trace.LegBridged},
		{name: "pod to outside (CNI ipMasq)", client: "podb", src: "10.244.0.3", dst: "198.18.91.2:80", iif: "veth1", verdict: trace.LegForward},
		{name: "pod to a service without endpoints", client: "poda", src: "10.244.0.2", dst: "10.96.0.20:80", iif: "veth0", verdict: trace.LegReject},
	})
}
