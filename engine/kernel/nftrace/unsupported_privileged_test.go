package nftrace_test

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/kernel/dropwatch/dwtest"
	"roundtrip/engine/kernel/nftrace"
	"roundtrip/engine/lab"
)

// An unprivileged process gets ErrUnsupported and one line naming what is needed.
func TestPrivilegedTraceUnprivileged(t *testing.T) {
	lab.Require(t)
	out := dwtest.RunAsNobody(t, helperEnv+"=start", nftrace.StateDirEnv+"="+filepath.Join(t.TempDir(), "state"))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != "unsupported=true" {
		t.Fatalf("unprivileged Start said %q; want an ErrUnsupported in one line", out)
	}
	if !strings.Contains(lines[1], "CAP_NET_ADMIN") || !strings.Contains(lines[1], "go on") {
		t.Errorf("error %q does not say what is needed and what still works", lines[1])
	}
}

// iptables-legacy rules live outside nf_tables: the tracer says so, the drop watcher still
// gives NETFILTER_DROP, and the trace shows the packet pass the nft rules but no drop.
func TestPrivilegedTraceLegacyIptables(t *testing.T) {
	t.Setenv(nftrace.StateDirEnv, t.TempDir())
	requireTool(t, "iptables-legacy", "iptables")
	requireTool(t, "nft", "nftables")
	n := dwtest.NewNet(t)
	dst := netip.AddrPortFrom(dwtest.ServerAddr, 5454)
	n.Router.Run("iptables-legacy", "-w", "-A", "FORWARD", "-p", "udp", "--dport", "5454", "-j", "DROP")
	// An nft rule the packet passes (counter: verdict continue) before the legacy table.
	n.Router.Run("nft", "add table inet rtcount")
	n.Router.Run("nft", "add chain inet rtcount rtfwd { type filter hook forward priority -10; }")
	n.Router.Run("nft", "add rule inet rtcount rtfwd udp dport 5454 counter")
	flow := dropwatch.Flow{Proto: unix.IPPROTO_UDP, Dst: dst.Addr(), DstPort: dst.Port()}
	tr := trace(t, n.Router, flow)
	w := dwtest.Watch(t, n.Router, flow)
	if ws := tr.Warnings(); len(ws) != 1 || !strings.Contains(ws[0], "iptables-legacy") || !strings.Contains(ws[0], "filter") {
		t.Errorf("warnings = %q; want one naming the iptables-legacy filter table", ws)
	}
	if err := dwtest.SendUDP(n.Client, dst); err != nil {
		t.Fatal(err)
	}
	d, _ := dwtest.WaitDrop(t, w, "datagram to "+dst.String(), dwtest.To(dst))
	if d.Reason != "NETFILTER_DROP" || d.Iface != "lan" {
		t.Errorf("drop = %s on %q; want NETFILTER_DROP on lan", d.Reason, d.Iface)
	}
	s, _ := waitStep(t, tr, "the counter rule", func(s nftrace.Step) bool { return s.Table == "rtcount" && dwtest.PacketTo(s.Packet, dst) })
	if s.Verdict != "continue" || s.Rule.Nft != "udp dport 5454 counter" {
		t.Errorf("step = %s; want the counter rule with verdict continue", s)
	}
	// Steps come in the kernel's order: a drop step of the first datagram would arrive
	// before the second datagram's counter step.
	if err := dwtest.SendUDP(n.Client, dst); err != nil {
		t.Fatal(err)
	}
	_, before := waitStep(t, tr, "the second datagram's counter rule", func(x nftrace.Step) bool {
		return x.Table == "rtcount" && dwtest.PacketTo(x.Packet, dst) && x.Packet.Src != s.Packet.Src
	})
	for _, b := range before {
		if b.Verdict == "drop" {
			t.Errorf("a legacy rule's drop was traced: %s", b)
		}
	}
}
