package trace_test

import (
	"fmt"
	"testing"

	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// dockerRules is the iptables layout Docker 27 writes for its default bridge network with one
// published port (docker run -p 8080:80 -p 5353:53/udp, userland proxy on), as its documentation ("Packet
// filtering and firewalls", docs.docker.com/engine/network/packet-filtering-firewalls/)
// describes and iptables-save prints it on such a host (libnetwork's iptables.go and
// bridge/setup_ip_tables.go write these chains), with the hairpin MASQUERADE of the published
// port and the documented DOCKER-USER example "restrict connections to the Docker host"
// (-i ext_if ! -s ALLOWED -j DROP).
const dockerRules = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p udp -m udp --dport 53 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
-A DOCKER ! -i docker0 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.17.0.2:53
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
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -i eth0 ! -s 198.18.90.0/25 -j DROP
-A DOCKER-USER -j RETURN
COMMIT
`

// dockerHost builds a Docker host (br_netfilter on, as Docker sets it) with two containers on
// docker0 and a host outside (198.18.90.2 allowed by DOCKER-USER, 198.18.90.200 not), and
// loads rules.
func dockerHost(t *testing.T, name, rules string) *rwHost {
	h := newRealWorld(t, name, true)
	ctr1 := h.peer("ctr1", "veth1", "172.17.0.2/16", "172.17.0.1")
	ctr2 := h.peer("ctr2", "veth2", "172.17.0.3/16", "172.17.0.1")
	out := h.peer("out", "eth0", "198.18.90.2/24", "")
	out.Addr("eth0", "198.18.90.200/24")
	out.IP("route", "add", "172.17.0.0/16", "via", "198.18.90.1")
	h.host.Bridge("docker0", "veth1", "veth2")
	h.host.Addr("docker0", "172.17.0.1/16")
	h.host.Addr("eth0", "198.18.90.1/24")
	newPodNodeBRNF(t, h.host)
	ctr1.Listen("0.0.0.0:80")
	ctr1.Listen("0.0.0.0:81")
	ctr2.Listen("0.0.0.0:80")
	out.Listen("0.0.0.0:80")
	h.host.Listen("0.0.0.0:8080") // the userland proxy of the published port
	h.host.Listen("0.0.0.0:22")
	udpEcho(t, ctr1, "0.0.0.0:53")
	udpEcho(t, out, "0.0.0.0:5000")
	h.load(rules)
	return h
}

// A Docker 27 host: every flow's kernel decisions against trace's (realworld_test.go), and
// doctor finds nothing the kernel's behaviour contradicts.
func TestPrivilegedDockerBridgeHost(t *testing.T) {
	t.Parallel()
	h := dockerHost(t, "dock", dockerRules)

	h.run([]rwFlow{
		{name: "published port", client: "out", src: "198.18.90.2", dst: "198.18.90.1:8080", iif: "eth0", verdict: trace.LegForward},
		{name: "published port from a source DOCKER-USER drops", client: "out", src: "198.18.90.200", dst: "198.18.90.1:8080", iif: "eth0", verdict: trace.LegDrop},
		{name: "container to outside", client: "ctr2", src: "172.17.0.3", dst: "198.18.90.2:80", iif: "veth2", verdict: trace.LegForward},
		{name: "published UDP port", client: "out", src: "198.18.90.2", dst: "198.18.90.1:5353", iif: "eth0", verdict: trace.LegForward, udp: true},
		{name: "container to outside over UDP", client: "ctr2", src: "172.17.0.3", dst: "198.18.90.2:5000", iif: "veth2", verdict: trace.LegForward, udp: true},
		{name: "container to container", client: "ctr2", src: "172.17.0.3", dst: "172.17.0.2:80", iif: "veth2", verdict: trace.LegBridged},
		{name: "container to the published port (userland proxy)", client: "ctr2", src: "172.17.0.3", dst: "198.18.90.1:8080", iif: "veth2", verdict: trace.LegLocal},
		{name: "container to its own published port (hairpin through the proxy)", client: "ctr1", src: "172.17.0.2", dst: "198.18.90.1:8080", iif: "veth1", verdict: trace.LegLocal},
		{name: "host to the published port (nat OUTPUT)", client: "host", src: "198.18.90.1", dst: "198.18.90.1:8080", verdict: trace.LegOutput},
		{name: "host to the published port on loopback (userland proxy)", client: "host", src: "127.0.0.1", dst: "127.0.0.1:8080", verdict: trace.LegLocal},
		{name: "container to the published port on docker0's address", client: "ctr2", src: "172.17.0.3", dst: "172.17.0.1:8080", iif: "veth2", verdict: trace.LegLocal},
		{name: "routed to a published container port", client: "out", src: "198.18.90.2", dst: "172.17.0.2:80", iif: "eth0", verdict: trace.LegForward},
		{name: "routed to an unpublished container port", client: "out", src: "198.18.90.2", dst: "172.17.0.2:81", iif: "eth0", verdict: trace.LegDrop},
		{name: "routed to a container without published ports", client: "out", src: "198.18.90.2", dst: "172.17.0.3:80", iif: "eth0", verdict: trace.LegDrop},
		{name: "container to the host", client: "ctr1", src: "172.17.0.2", dst: "172.17.0.1:22", iif: "veth1", verdict: trace.LegLocal},
		{name: "outside to the host", client: "out", src: "198.18.90.200", dst: "198.18.90.1:22", iif: "eth0", verdict: trace.LegLocal},
	})
}

// docker28Rules is the layout Docker 28 writes for the same containers, as moby's design notes
// for the bridge driver's iptables rules (libnetwork/drivers/bridge, "iptables" docs) and
// docs.docker.com's "Docker with iptables" describe it: DOCKER-FORWARD with per-bridge
// DOCKER-CT, DOCKER-INTERNAL and DOCKER-BRIDGE chains replacing the isolation stages in FORWARD,
// a DROP of whatever else enters a bridge in DOCKER, and the raw table's PREROUTING DROP of
// packets routed to a container's address from outside its bridge (28.0: "direct routing" to
// containers blocked unless the gateway mode is routed).
const docker28Rules = `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -d 172.17.0.2/32 ! -i docker0 -j DROP
-A PREROUTING -d 172.17.0.3/32 ! -i docker0 -j DROP
COMMIT
*nat
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
-A DOCKER ! -i docker0 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.17.0.2:53
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-BRIDGE - [0:0]
:DOCKER-CT - [0:0]
:DOCKER-FORWARD - [0:0]
:DOCKER-INTERNAL - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-FORWARD
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT
-A DOCKER ! -i docker0 -o docker0 -j DROP
-A DOCKER-BRIDGE -o docker0 -j DOCKER
-A DOCKER-CT -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A DOCKER-FORWARD -j DOCKER-CT
-A DOCKER-FORWARD -j DOCKER-INTERNAL
-A DOCKER-FORWARD -j DOCKER-BRIDGE
-A DOCKER-FORWARD -i docker0 -j ACCEPT
-A DOCKER-USER -i eth0 ! -s 198.18.90.0/25 -j DROP
COMMIT
`

// A Docker 28 host: the same flows as Docker 27's, except that a container's address is no
// longer reachable by routing from outside (raw PREROUTING), each compared with the kernel.
func TestPrivilegedDocker28BridgeHost(t *testing.T) {
	t.Parallel()
	h := dockerHost(t, "dock28", docker28Rules)
	h.run([]rwFlow{
		{name: "published port", client: "out", src: "198.18.90.2", dst: "198.18.90.1:8080", iif: "eth0", verdict: trace.LegForward},
		{name: "published UDP port", client: "out", src: "198.18.90.2", dst: "198.18.90.1:5353", iif: "eth0", verdict: trace.LegForward, udp: true},
		{name: "published port from a source DOCKER-USER drops", client: "out", src: "198.18.90.200", dst: "198.18.90.1:8080", iif: "eth0", verdict: trace.LegDrop},
		{name: "container to outside", client: "ctr2", src: "172.17.0.3", dst: "198.18.90.2:80", iif: "veth2", verdict: trace.LegForward},
		{name: "container to outside over UDP", client: "ctr2", src: "172.17.0.3", dst: "198.18.90.2:5000", iif: "veth2", verdict: trace.LegForward, udp: true},
		{name: "container to container", client: "ctr2", src: "172.17.0.3", dst: "172.17.0.2:80", iif: "veth2", verdict: trace.LegBridged},
		{name: "container to the published port (userland proxy)", client: "ctr2", src: "172.17.0.3", dst: "198.18.90.1:8080", iif: "veth2", verdict: trace.LegLocal},
		{name: "host to the published port (nat OUTPUT)", client: "host", src: "198.18.90.1", dst: "198.18.90.1:8080", verdict: trace.LegOutput},
		{name: "host to a container", client: "host", src: "172.17.0.1", dst: "172.17.0.3:80", verdict: trace.LegOutput},
		{name: "routed to a published container port (raw DROP)", client: "out", src: "198.18.90.2", dst: "172.17.0.2:80", iif: "eth0", verdict: trace.LegDrop},
		{name: "routed to an unpublished container port", client: "out", src: "198.18.90.2", dst: "172.17.0.3:80", iif: "eth0", verdict: trace.LegDrop},
		{name: "container to the host", client: "ctr1", src: "172.17.0.2", dst: "172.17.0.1:22", iif: "veth1", verdict: trace.LegLocal},
		{name: "outside to the host", client: "out", src: "198.18.90.200", dst: "198.18.90.1:22", iif: "eth0", verdict: trace.LegLocal},
	})
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
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p udp -m udp --dport 53 -j MASQUERADE
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
