package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"roundtrip/engine/model"
)

// confSettings are the per-interface net.ipv4.conf settings that decide paths (fib.FIB reads
// them, with the kernel's defaults when absent).
var confSettings = []string{"rp_filter", "src_valid_mark", "accept_local", "forwarding",
	"ignore_routes_with_linkdown", "send_redirects", "route_localnet"}

// conf6Settings are the per-interface net.ipv6.conf settings that decide paths.
var conf6Settings = []string{"ignore_routes_with_linkdown"}

// SysctlPath maps a dotted sysctl name to its file under /proc/sys.
func SysctlPath(key string) string { return model.SysctlPath(key) }

// sysctlKeys lists the sysctls a State holds for a namespace with these links.
func sysctlKeys(links []model.Link) []string {
	keys := []string{model.SysctlIPForward, model.SysctlIPv6Forward}
	ifaces := []string{"all", "default"}
	for _, l := range links {
		ifaces = append(ifaces, l.Name)
	}
	for _, iface := range ifaces {
		for _, s := range confSettings {
			keys = append(keys, model.ConfKey(iface, s))
		}
		for _, s := range conf6Settings {
			keys = append(keys, model.ConfKey6(iface, s))
		}
	}
	return append(keys, model.SysctlConntrackCount, model.SysctlConntrackMax,
		model.SysctlBridgeNFIPTables, model.SysctlBridgeNFIP6Tables)
}

// readSysctls reads the path-deciding sysctls inside the namespace. Settings the kernel does not
// have are left out: conntrack's before nf_conntrack is loaded, br_netfilter's before it is
// loaded (which means bridged packets bypass iptables), IPv6's when IPv6 is disabled,
// a link's when it went away after the link dump.
func readSysctls(ns Namespace, links []model.Link) (model.Sysctls, error) {
	keys := sysctlKeys(links)
	out := make(model.Sysctls, len(keys))
	err := ns.Do(func() error {
		for _, k := range keys {
			b, err := os.ReadFile(SysctlPath(k))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("reading sysctl %s: %w", k, err)
			}
			out[k] = strings.TrimSpace(string(b))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, ok := out[model.SysctlIPForward]; !ok {
		return nil, fmt.Errorf("reading sysctl %s: %s is missing; is /proc mounted?", model.SysctlIPForward, SysctlPath(model.SysctlIPForward))
	}
	return out, nil
}
