package nftrace_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/kernel/dropwatch/dwtest"
	"roundtrip/engine/kernel/nftrace"
	"roundtrip/engine/lab"
)

// trace starts a rule tracer on the namespace, closed when the test ends, with its markers
// in the test's own state directory. It skips the test where rules cannot be traced.
func trace(t *testing.T, ns *lab.NS, flows ...dropwatch.Flow) *nftrace.Tracer {
	t.Helper()
	tr, err := nftrace.Start(context.Background(), nftrace.Options{Netns: ns.Name, Flows: flows})
	if errors.Is(err, nftrace.ErrUnsupported) {
		t.Skipf("privileged test: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("closing the tracer: %v", err)
		}
	})
	return tr
}

func requireTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("privileged test: needs %s (apt-get install %s)", name, pkg)
	}
}

func waitStep(t *testing.T, tr *nftrace.Tracer, what string, match func(nftrace.Step) bool) (nftrace.Step, []nftrace.Step) {
	t.Helper()
	return dwtest.Wait(t, tr.Events(), tr.Err, "rule step of "+what, match)
}

func dropStep(dst netip.AddrPort) func(nftrace.Step) bool {
	return func(s nftrace.Step) bool { return s.Verdict == "drop" && dwtest.PacketTo(s.Packet, dst) }
}

// An iptables DROP rule (iptables-nft, so in nf_tables): the drop watcher says
// NETFILTER_DROP on the router's LAN side, the tracer names the chain and the rule. A flow
// that is not watched, dropped by the same chain, shows in neither.
func TestPrivilegedTraceIptablesDrop(t *testing.T) {
	t.Setenv(nftrace.StateDirEnv, t.TempDir())
	requireTool(t, "iptables-nft", "iptables")
	n := dwtest.NewNet(t)
	dst := netip.AddrPortFrom(dwtest.ServerAddr, 80)
	other := netip.AddrPortFrom(dwtest.ServerAddr, 8080)
	n.Server.Listen(dst.String())
	n.Server.Listen(other.String())
	// The conntrack match turns conntrack on in the namespace: the steps carry the entry's id.
	n.Router.Run("iptables-nft", "-A", "FORWARD", "-d", dwtest.ServerAddr.String(), "-p", "tcp", "-m", "multiport", "--dports", "80,8080",
		"-m", "conntrack", "--ctstate", "NEW", "-j", "DROP")
	flow := dropwatch.Flow{Proto: unix.IPPROTO_TCP, Dst: dst.Addr(), DstPort: dst.Port()}
	tr := trace(t, n.Router, flow)
	w := dwtest.Watch(t, n.Router, flow)

	for _, d := range []netip.AddrPort{other, dst} {
		if err := dwtest.DialTCP(n.Client, d, "", time.Second); err == nil {
			t.Fatalf("the client reached %s through the DROP rule", d)
		}
	}
	d, before := dwtest.WaitDrop(t, w, "SYN to "+dst.String(), dwtest.To(dst))
	if d.Reason != "NETFILTER_DROP" || d.Iface != "lan" {
		t.Errorf("drop = %s on %q; want NETFILTER_DROP on lan", d.Reason, d.Iface)
	}
	if len(before) != 0 {
		t.Errorf("drops of the unwatched flow reported: %s", dwtest.List(before))
	}
	s, steps := waitStep(t, tr, "the SYN's drop", dropStep(dst))
	if s.Family != "ip" || s.Table != "filter" || s.Chain != "FORWARD" || s.Kind != "rule" || s.Handle == 0 {
		t.Errorf("step = %s; want rule in ip filter FORWARD with a handle", s)
	}
	if !strings.HasPrefix(s.Rule.Iptables, "-A FORWARD ") || !strings.Contains(s.Rule.Iptables, "--dports 80,8080") ||
		!strings.Contains(s.Rule.Iptables, "--ctstate NEW") || !strings.HasSuffix(s.Rule.Iptables, "-j DROP") {
		t.Errorf("iptables text = %q; want the rule as written", s.Rule.Iptables)
	}
	if traceHasConntrack(t) && (s.Conntrack == 0 || s.CtDirection != "original") {
		t.Errorf("step conntrack = %d %q; want the SYN's entry, original direction", s.Conntrack, s.CtDirection)
	}
	if s.IifName != "lan" || s.Packet.Flags&0x02 == 0 || s.Packet.Src.Addr() != dwtest.ClientAddr {
		t.Errorf("step packet = %s in on %q; want the client's SYN in on lan", s.Packet, s.IifName)
	}
	for _, b := range append(steps, s) {
		if dwtest.PacketTo(b.Packet, other) {
			t.Errorf("the unwatched flow was traced: %s", b)
		}
		if strings.HasPrefix(b.Table, "roundtrip_trace_") {
			t.Errorf("the trace table's own rule is reported: %s", b)
		}
	}
}

var echoHandle = regexp.MustCompile(`# handle ([0-9]+)`)

// A native nft drop rule: the step names the table, chain and handle the kernel gave it, and
// its text as nft shows it. Also: a tracer started with no flows traces nothing until
// AddFlow.
func TestPrivilegedTraceNftDrop(t *testing.T) {
	t.Setenv(nftrace.StateDirEnv, t.TempDir())
	requireTool(t, "nft", "nftables")
	n := dwtest.NewNet(t)
	n.Router.Run("nft", "add table inet rtfilter")
	n.Router.Run("nft", "add chain inet rtfilter rtfwd { type filter hook forward priority 0; }")
	out := n.Router.Run("nft", "--echo", "--handle", "add rule inet rtfilter rtfwd udp dport 5353 counter drop")
	m := echoHandle.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("nft --echo --handle printed no handle: %q", out)
	}
	handle, _ := strconv.ParseUint(m[1], 10, 64)
	dst := netip.AddrPortFrom(dwtest.ServerAddr, 5353)
	flow := dropwatch.Flow{Proto: unix.IPPROTO_UDP, Src: dwtest.ClientAddr, Dst: dst.Addr(), DstPort: dst.Port()}
	tr := trace(t, n.Router)
	w := dwtest.Watch(t, n.Router, flow)

	// Not marked yet: the drop is reported by the watcher but not traced.
	if err := dwtest.SendUDP(n.Client, dst); err != nil {
		t.Fatal(err)
	}
	dwtest.WaitDrop(t, w, "the first datagram", dwtest.To(dst))
	if err := tr.AddFlow(flow); err != nil {
		t.Fatal(err)
	}
	if err := dwtest.SendUDP(n.Client, dst); err != nil {
		t.Fatal(err)
	}
	d, _ := dwtest.WaitDrop(t, w, "the second datagram", dwtest.To(dst))
	if d.Reason != "NETFILTER_DROP" || d.Iface != "lan" {
		t.Errorf("drop = %s on %q; want NETFILTER_DROP on lan", d.Reason, d.Iface)
	}
	s, before := waitStep(t, tr, "the datagram's drop", dropStep(dst))
	if s.Family != "inet" || s.Table != "rtfilter" || s.Chain != "rtfwd" || s.Handle != handle {
		t.Errorf("step = %s; want inet rtfilter rtfwd handle %d", s, handle)
	}
	if s.Rule.Nft != "udp dport 5353 counter drop" || s.Rule.Iptables != "" {
		t.Errorf("rule text = %+v; want the nft rule, counters left out", s.Rule)
	}
	// Steps arrive in the kernel's order: had the first datagram been traced, its drop would
	// come first.
	if len(before) != 0 {
		t.Errorf("steps before the drop (the first datagram was traced before AddFlow?): %s", dwtest.List(before))
	}
}

// traceHasConntrack says whether this kernel's trace events carry the conntrack entry
// (NFTA_TRACE_CT_ID, Linux 6.16).
func traceHasConntrack(t *testing.T) bool {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	if err := spec.TypeByName("nft_trace_attributes", &e); err != nil {
		return false
	}
	for _, v := range e.Values {
		if v.Name == "NFTA_TRACE_CT_ID" {
			return true
		}
	}
	return false
}

// The steps of an accepted connection carry its conntrack id, the one `conntrack -L -o id`
// shows: how a rule step joins the conntrack entry (and so diagnose's connection).
func TestPrivilegedTraceConntrackID(t *testing.T) {
	t.Setenv(nftrace.StateDirEnv, t.TempDir())
	requireTool(t, "conntrack", "conntrack")
	if !traceHasConntrack(t) {
		t.Skip("privileged test: this kernel's nf_tables traces carry no conntrack id (needs Linux 6.16)")
	}
	n := dwtest.NewNet(t)
	dst := netip.AddrPortFrom(dwtest.ServerAddr, 80)
	n.Server.ServeHTTP(dst.String(), "hello")
	n.Router.Run("iptables-nft", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")
	tr := trace(t, n.Router, dropwatch.Flow{Proto: unix.IPPROTO_TCP, Dst: dst.Addr(), DstPort: dst.Port()})
	if body, err := n.Client.HTTPGet(dst.String(), 3*time.Second); err != nil || body != "hello" {
		t.Fatalf("GET through the router: %q, %v", body, err)
	}
	s, _ := waitStep(t, tr, "the SYN's accept", func(s nftrace.Step) bool { return s.Verdict == "accept" && s.Packet.Flags == 0x02 })
	out := n.Router.Run("conntrack", "-L", "-p", "tcp", "--dport", "80", "-o", "id")
	if s.Conntrack == 0 || !strings.Contains(out, fmt.Sprintf(" id=%d\n", s.Conntrack)) {
		t.Errorf("step's conntrack id %d is not in the router's table:\n%s", s.Conntrack, out)
	}
}
