package trace_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"

	"roundtrip/engine/doctor"
	"roundtrip/engine/fib"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/trace"
)

// podNode is a node in the shape Docker, CNI bridge plugins and libvirt build: pods in their
// own namespaces, each on a veth port of the node's bridge cni0, and a ClusterIP-style DNAT
// of 10.96.0.10:80 to pod B's 10.244.0.3:8080 on the same bridge.
type podNode struct {
	node, podA, podB *lab.NS
}

func newPodNode(t *testing.T) *podNode {
	l := lab.New(t)
	n := &podNode{node: lab.Host(l, "hbr-node", true), podA: lab.Host(l, "hbr-poda", false), podB: lab.Host(l, "hbr-podb", false)}
	l.Veth(n.node, "vetha", n.podA, "eth0")
	l.Veth(n.node, "vethb", n.podB, "eth0")
	n.node.Bridge("cni0", "vetha", "vethb")
	n.node.Addr("cni0", "10.244.0.1/24")
	n.podA.Addr("eth0", "10.244.0.2/24")
	n.podA.IP("route", "add", "default", "via", "10.244.0.1")
	n.podB.Addr("eth0", "10.244.0.3/24")
	n.podB.IP("route", "add", "default", "via", "10.244.0.1")
	n.node.Run("iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-d", "10.96.0.10/32", "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", "10.244.0.3:8080")
	n.podB.ServeHTTP("0.0.0.0:8080", "pod b")
	return n
}

// brNetfilter sets bridge-nf-call-iptables in the node's namespace; it skips the test, naming
// br_netfilter, when the module is not loaded (the sysctl is absent there).
func (n *podNode) brNetfilter(t *testing.T, on bool) {
	t.Helper()
	err := n.node.Do(func() error {
		_, err := os.Stat(kernel.SysctlPath(model.SysctlBridgeNFIPTables))
		return err
	})
	if errors.Is(err, fs.ErrNotExist) {
		if on {
			t.Skipf("br_netfilter is not loaded (no %s in the namespace; modprobe br_netfilter)", model.SysctlBridgeNFIPTables)
		}
		return // absent is off
	}
	if err != nil {
		t.Fatal(err)
	}
	v := "0"
	if on {
		v = "1"
	}
	n.node.Sysctl(model.SysctlBridgeNFIPTables, v)
}

// A pod reaching a ClusterIP whose endpoint is on the same bridge works with br_netfilter on
// (conntrack sees the bridged reply and undoes the DNAT) and fails with it off; with
// forwarding off it fails either way (the DNATed packet is routed again). The real client's
// result, the conntrack entry and trace agree in every case.
func TestPrivilegedBridgeClusterIP(t *testing.T) {
	for i, c := range []struct {
		brnf, forward bool
		works         bool
		verdict       string // of the request
		finding       string // the one error trace reports, or ""
	}{
		{true, true, true, trace.LegBridged, ""},
		{true, false, false, trace.LegDrop, trace.FindingForwardingDisabled},
		{false, true, false, trace.LegForward, trace.FindingReplyBypassesNAT},
		{false, false, false, trace.LegDrop, trace.FindingForwardingDisabled},
	} {
		name := fmt.Sprintf("brnf=%v,forward=%v", c.brnf, c.forward)
		t.Run(name, func(t *testing.T) {
			n := newPodNode(t)
			n.brNetfilter(t, c.brnf)
			n.node.Sysctl("net.ipv4.ip_forward", map[bool]string{true: "1", false: "0"}[c.forward])
			src := fmt.Sprintf("10.244.0.2:%d", 40200+i)
			conn, err := n.podA.Dial("10.96.0.10:80", src, dialTimeout)
			if conn != nil {
				conn.Close()
			}
			if (err == nil) != c.works {
				t.Fatalf("the client's connection: %v, want working=%v", err, c.works)
			}
			st := readState(t, n.node)
			res := traceTCP(st, src, "10.96.0.10:80", "vetha")
			if res.Forward.Verdict != c.verdict || res.Forward.IIF != "cni0" {
				t.Fatalf("trace: request %s in %s, want %s in cni0\n%s", res.Forward.Verdict, res.Forward.IIF, c.verdict, render(res))
			}
			// doctor agrees: the DNAT lacks SNAT for clients on its bridge exactly when the
			// bridged reply bypasses conntrack.
			var dnatFinding bool
			for _, f := range doctor.Run(st, fib.New(st)) {
				dnatFinding = dnatFinding || f.ID == doctor.FindingDNATWithoutSNAT
			}
			if dnatFinding == c.brnf {
				t.Errorf("doctor %s: %v with br_netfilter %v", doctor.FindingDNATWithoutSNAT, dnatFinding, c.brnf)
			}
			if got := errorIDs(res); (c.finding == "" && len(got) > 0) || (c.finding != "" && (len(got) != 1 || got[0] != c.finding)) {
				t.Fatalf("trace errors %v, want %q\n%s", got, c.finding, render(res))
			}
			if c.verdict == trace.LegDrop {
				return // the kernel dropped the request: no conntrack entry is confirmed
			}
			e := conntrackEntry(t, n.node, src, "10.96.0.10:80")
			if e.Reply.Src.String() != "10.244.0.3:8080" || res.Forward.Packet.Dst.String() != "10.244.0.3:8080" || res.Forward.OIF != "cni0" {
				t.Errorf("DNAT: kernel %s, trace %s out %s", e.Reply.Src, res.Forward.Packet.Dst, res.Forward.OIF)
			}
			// conntrack saw the reply exactly when trace says it undoes the DNAT.
			if e.Unreplied() == (res.Reply.Packet.Src.String() == "10.96.0.10:80") {
				t.Errorf("conntrack unreplied=%v, trace reply from %s\n%s", e.Unreplied(), res.Reply.Packet.Src, render(res))
			}
		})
	}
}

// Pod to pod on the bridge is bridged whatever ip_forward says, and iptables FORWARD (here a
// DROP policy, as Docker sets it) sees it only with br_netfilter on.
func TestPrivilegedBridgePodToPod(t *testing.T) {
	for i, brnf := range []bool{true, false} {
		t.Run(fmt.Sprintf("brnf=%v", brnf), func(t *testing.T) {
			n := newPodNode(t)
			n.brNetfilter(t, brnf)
			n.node.Sysctl("net.ipv4.ip_forward", "0")
			n.node.Run("iptables", "-w", "-P", "FORWARD", "DROP")
			src := fmt.Sprintf("10.244.0.2:%d", 40300+i)
			conn, err := n.podA.Dial("10.244.0.3:8080", src, dialTimeout)
			if conn != nil {
				conn.Close()
			}
			works := !brnf
			if (err == nil) != works {
				t.Fatalf("the client's connection: %v, want working=%v", err, works)
			}
			res := traceTCP(readState(t, n.node), src, "10.244.0.3:8080", "vetha")
			want := trace.LegBridged
			if brnf {
				want = trace.LegDrop
			}
			if res.Forward.Verdict != want || (brnf != res.Has(trace.FindingFiltered)) || res.Has(trace.FindingForwardingDisabled) {
				t.Fatalf("trace: request %s, findings %v; want %s\n%s", res.Forward.Verdict, errorIDs(res), want, render(res))
			}
		})
	}
}

// The physdev match (Proxmox and libvirt firewalls filter bridged traffic by port with it):
// bridged pod-to-pod traffic is allowed from one port only; trace reads the port from --iif
// and agrees with the kernel, and says it cannot know when the flow names only the bridge.
func TestPrivilegedBridgePhysdev(t *testing.T) {
	n := newPodNode(t)
	n.brNetfilter(t, true)
	n.node.Run("iptables", "-w", "-P", "FORWARD", "DROP")
	n.node.Run("iptables", "-w", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT")
	n.node.Run("iptables", "-w", "-A", "FORWARD", "-m", "physdev", "--physdev-is-bridged", "--physdev-in", "vetha", "-j", "ACCEPT")
	n.podA.Listen("0.0.0.0:8080")
	st := readState(t, n.node)
	for i, c := range []struct {
		client   *lab.NS
		src, dst string
		port     string
		works    bool
	}{
		{n.podA, "10.244.0.2", "10.244.0.3:8080", "vetha", true},
		{n.podB, "10.244.0.3", "10.244.0.2:8080", "vethb", false},
	} {
		src := fmt.Sprintf("%s:%d", c.src, 41500+i)
		conn, err := c.client.Dial(c.dst, src, dialTimeout)
		if conn != nil {
			conn.Close()
		}
		if (err == nil) != c.works {
			t.Fatalf("%s -> %s: the client: %v, want working=%v", src, c.dst, err, c.works)
		}
		res := traceTCP(st, src, c.dst, c.port)
		want := trace.LegBridged
		if !c.works {
			want = trace.LegDrop
		}
		if res.Forward.Verdict != want || res.Has(trace.FindingUncertain) {
			t.Errorf("%s -> %s from %s: trace %s\n%s", src, c.dst, c.port, res.Forward.Verdict, render(res))
		}
		if res = traceTCP(st, src, c.dst, "cni0"); !res.Has(trace.FindingUncertain) {
			t.Errorf("%s -> %s from cni0 (port unknown): trace is sure\n%s", src, c.dst, render(res))
		}
	}
}
