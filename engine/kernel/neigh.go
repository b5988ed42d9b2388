package kernel

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"roundtrip/engine/model"
)

// Neighbour is model.Neighbour: the value lives with the model so that the console need not
// import the kernel adapter to suggest gateways from it.
type Neighbour = model.Neighbour

// ReadNeighbours reads the IPv4 and IPv6 neighbour tables of a namespace.
func ReadNeighbours(ns Namespace) ([]Neighbour, error) {
	h, err := ns.Handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	// The kernel refuses netlink's neighbour dump request under strict checking (EINVAL), and
	// this dump asks the kernel to filter nothing: strict checking buys nothing here.
	if err := h.SetStrictCheck(false); err != nil {
		return nil, fmt.Errorf("opening netlink in %s: %w", ns, err)
	}
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links of %s: %w", ns, err)
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []Neighbour
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		var entries []netlink.Neigh
		if err := retryDump("neighbours", func() (err error) { entries, err = h.NeighList(0, fam); return err }); err != nil {
			return nil, fmt.Errorf("reading the neighbour table of %s: %w", ns, err)
		}
		for _, n := range entries {
			a, ok := netip.AddrFromSlice(n.IP)
			if !ok || names[n.LinkIndex] == "" {
				continue
			}
			e := Neighbour{Dev: names[n.LinkIndex], Addr: a.Unmap(), State: nudState(n.State), Router: n.Flags&netlink.NTF_ROUTER != 0}
			if len(n.HardwareAddr) > 0 {
				e.MAC = n.HardwareAddr.String()
			}
			out = append(out, e)
		}
	}
	return out, nil
}

func nudState(s int) string {
	switch {
	case s&netlink.NUD_PERMANENT != 0:
		return "permanent"
	case s&netlink.NUD_NOARP != 0:
		return "noarp"
	case s&netlink.NUD_REACHABLE != 0:
		return "reachable"
	case s&netlink.NUD_STALE != 0:
		return "stale"
	case s&netlink.NUD_DELAY != 0:
		return "delay"
	case s&netlink.NUD_PROBE != 0:
		return "probe"
	case s&netlink.NUD_FAILED != 0:
		return "failed"
	case s&netlink.NUD_INCOMPLETE != 0:
		return "incomplete"
	}
	return "none"
}
