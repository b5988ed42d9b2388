package kernel

import (
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"roundtrip/engine/model"
)

// readBridgePorts fills in the bridge port flags a trace needs (hairpin mode) from one
// AF_BRIDGE link dump, which carries them in IFLA_PROTINFO for every bridge port (`bridge -d
// link show`); netlink's LinkGetProtinfo dumps all links for each one it is asked about.
func readBridgePorts(ns Namespace, links []model.Link) error {
	ports := map[int]*model.Link{}
	for i := range links {
		if links[i].Master != "" {
			ports[links[i].Index] = &links[i]
		}
	}
	if len(ports) == 0 {
		return nil
	}
	sock, err := ns.socket(unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer sock.Close()
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: sock}}
	req.AddData(nl.NewIfInfomsg(unix.AF_BRIDGE))
	var decodeErr error
	err = req.ExecuteIter(unix.NETLINK_ROUTE, unix.RTM_NEWLINK, func(m []byte) bool {
		if len(m) < unix.SizeofIfInfomsg {
			return true
		}
		l := ports[int(nl.DeserializeIfInfomsg(m).Index)]
		if l == nil {
			return true
		}
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
		if err != nil {
			decodeErr = err
			return false
		}
		for _, a := range attrs {
			if a.Attr.Type&nlaTypeMask != unix.IFLA_PROTINFO {
				continue
			}
			infos, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				decodeErr = err
				return false
			}
			for _, in := range infos {
				if in.Attr.Type&nlaTypeMask == nl.IFLA_BRPORT_MODE && len(in.Value) > 0 {
					on := in.Value[0] != 0
					l.Hairpin = &on
				}
			}
		}
		return true
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return fmt.Errorf("reading bridge ports of %s: %w", ns, err)
	}
	return nil
}
