package model

import "testing"

func TestSysctlPathStaysUnderProcSysNet(t *testing.T) {
	for _, k := range []string{"net.ipv4.//.//..//tmp.x.secret", "net.ipv4.conf.//.rp_filter", "net..x", "kernel.core_pattern", "net.ipv4.conf./.x", "net"} {
		if _, err := SysctlFile(k); err == nil {
			t.Errorf("SysctlFile(%q) accepted", k)
		}
		if p := SysctlPath(k); p != invalidSysctlPath {
			t.Errorf("SysctlPath(%q) = %s, want the impossible path", k, p)
		}
	}
	for k, want := range map[string]string{
		ConfKey("eth0.100", "rp_filter"): "/proc/sys/net/ipv4/conf/eth0.100/rp_filter",
		ConfKey("l$(>PW)", "rp_filter"):  "/proc/sys/net/ipv4/conf/l$(>PW)/rp_filter",
		SysctlIPForward:                  "/proc/sys/net/ipv4/ip_forward",
		SysctlConntrackMax:               "/proc/sys/net/netfilter/nf_conntrack_max",
	} {
		if got, err := SysctlFile(k); err != nil || got != want {
			t.Errorf("SysctlFile(%q) = %s, %v; want %s", k, got, err, want)
		}
	}
}
