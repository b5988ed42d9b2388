package trace_test

import (
	"fmt"
	"testing"

	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// libvirtRules is the layout libvirt (5.1 and later, iptables backend) writes for its default
// NAT network virbr0 (192.168.122.0/24): LIBVIRT_* chains, MASQUERADE --to-ports 1024-65535
// for TCP and UDP, guests reachable only by connections they opened.
const libvirtRules = `*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:LIBVIRT_PRT - [0:0]
-A POSTROUTING -j LIBVIRT_PRT
-A LIBVIRT_PRT -o virbr0 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:LIBVIRT_PRT - [0:0]
-A POSTROUTING -j LIBVIRT_PRT
-A LIBVIRT_PRT -s 192.168.122.0/24 -d 224.0.0.0/24 -j RETURN
-A LIBVIRT_PRT -s 192.168.122.0/24 -d 255.255.255.255/32 -j RETURN
-A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -p tcp -j MASQUERADE --to-ports 1024-65535
-A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -p udp -j MASQUERADE --to-ports 1024-65535
-A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:LIBVIRT_FWI - [0:0]
:LIBVIRT_FWO - [0:0]
:LIBVIRT_FWX - [0:0]
:LIBVIRT_INP - [0:0]
:LIBVIRT_OUT - [0:0]
-A INPUT -j LIBVIRT_INP
-A FORWARD -j LIBVIRT_FWX
-A FORWARD -j LIBVIRT_FWI
-A FORWARD -j LIBVIRT_FWO
-A OUTPUT -j LIBVIRT_OUT
-A LIBVIRT_FWI -d 192.168.122.0/24 -o virbr0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A LIBVIRT_FWI -o virbr0 -j REJECT --reject-with icmp-port-unreachable
-A LIBVIRT_FWO -s 192.168.122.0/24 -i virbr0 -j ACCEPT
-A LIBVIRT_FWO -i virbr0 -j REJECT --reject-with icmp-port-unreachable
-A LIBVIRT_FWX -i virbr0 -o virbr0 -j ACCEPT
-A LIBVIRT_INP -i virbr0 -p udp -m udp --dport 53 -j ACCEPT
-A LIBVIRT_INP -i virbr0 -p tcp -m tcp --dport 53 -j ACCEPT
-A LIBVIRT_INP -i virbr0 -p udp -m udp --dport 67 -j ACCEPT
-A LIBVIRT_INP -i virbr0 -p tcp -m tcp --dport 67 -j ACCEPT
-A LIBVIRT_OUT -o virbr0 -p udp -m udp --dport 53 -j ACCEPT
-A LIBVIRT_OUT -o virbr0 -p tcp -m tcp --dport 53 -j ACCEPT
-A LIBVIRT_OUT -o virbr0 -p udp -m udp --dport 68 -j ACCEPT
-A LIBVIRT_OUT -o virbr0 -p tcp -m tcp --dport 68 -j ACCEPT
COMMIT
`

// A libvirt host (br_netfilter off, as without Docker) with two guests on virbr0 and a host
// outside: client results, conntrack's SNAT and trace agree.
func TestPrivilegedLibvirtHost(t *testing.T) {
	l := lab.New(t)
	host := lab.Host(l, "hbr-virt", true)
	vm1, vm2 := lab.Host(l, "hbr-vm1", false), lab.Host(l, "hbr-vm2", false)
	out := lab.Host(l, "hbr-vout", false)
	l.Veth(host, "vnet0", vm1, "eth0")
	l.Veth(host, "vnet1", vm2, "eth0")
	l.Veth(host, "eth0", out, "eth0")
	host.Bridge("virbr0", "vnet0", "vnet1")
	host.Addr("virbr0", "192.168.122.1/24")
	host.Addr("eth0", "198.18.92.1/24")
	vm1.Addr("eth0", "192.168.122.10/24")
	vm1.IP("route", "add", "default", "via", "192.168.122.1")
	vm2.Addr("eth0", "192.168.122.11/24")
	vm2.IP("route", "add", "default", "via", "192.168.122.1")
	out.Addr("eth0", "198.18.92.2/24")
	out.IP("route", "add", "192.168.122.0/24", "via", "198.18.92.1")
	(&podNode{node: host}).brNetfilter(t, false)
	host.Run("sh", "-c", `printf '%s' "$1" | iptables-restore`, "sh", libvirtRules)
	out.Listen("0.0.0.0:80")
	vm2.Listen("0.0.0.0:22")
	st := readState(t, host)
	checkDoctor(t, st)

	for _, c := range []struct {
		name, src, dst, iif string
		client              *lab.NS
		verdict             string
		snat                string // the source trace predicts, as rendered
	}{
		{"guest to outside, port kept", "192.168.122.10:40700", "198.18.92.2:80", "vnet0", vm1, trace.LegForward, "198.18.92.1:40700"},
		{"guest to outside, privileged port", "192.168.122.10:700", "198.18.92.2:80", "vnet0", vm1, trace.LegForward, "198.18.92.1:(1024-65535)"},
		{"guest to guest", "192.168.122.10:40701", "192.168.122.11:22", "vnet0", vm1, trace.LegBridged, ""},
		{"outside to a guest", "198.18.92.2:40702", "192.168.122.11:22", "eth0", out, trace.LegReject, ""},
	} {
		before := ruleCounters(t, host)
		conn, err := c.client.Dial(c.dst, c.src, dialTimeout)
		if conn != nil {
			conn.Close()
		}
		res := traceTCP(st, c.src, c.dst, c.iif)
		checkCounted(t, c.name, before, ruleCounters(t, host), res, err == nil)
		works := len(errorIDs(res)) == 0
		if res.Forward.Verdict != c.verdict || (err == nil) != works || res.Has(trace.FindingUncertain) {
			t.Errorf("%s: the client: %v; trace %s with errors %v, want %s\n%s", c.name, err, res.Forward.Verdict, errorIDs(res), c.verdict, render(res))
			continue
		}
		if c.snat == "" {
			continue
		}
		e := conntrackEntry(t, host, c.src, c.dst)
		fp := res.Forward.Packet
		got := fmt.Sprintf("%s:%d", fp.Src.Addr(), fp.Src.Port())
		if fp.SrcPortRange != "" {
			got = fmt.Sprintf("%s:(%s)", fp.Src.Addr(), fp.SrcPortRange)
			if e.Reply.Dst.Port() < 1024 {
				t.Errorf("%s: the kernel took port %d, outside the range", c.name, e.Reply.Dst.Port())
			}
		} else if fp.Src != e.Reply.Dst {
			t.Errorf("%s: trace source %s, kernel %s", c.name, fp.Src, e.Reply.Dst)
		}
		if got != c.snat {
			t.Errorf("%s: trace source %s, want %s", c.name, got, c.snat)
		}
	}
}
