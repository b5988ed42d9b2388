package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"roundtrip/engine/inet"
	"roundtrip/engine/model"
)

// The ipset netlink protocol (include/uapi/linux/netfilter/ipset/ip_set.h): a dump of
// IPSET_CMD_LIST answers one or more messages per set, the first with the set's type and
// header, every one with a batch of members (IPSET_ATTR_ADT), as `ipset list` reads them.
const (
	nfnlSubsysIPSet   = 6
	ipsetCmdList      = 7
	ipsetProtocolMin  = 6 // the oldest protocol the kernel accepts; LIST is the same in 6 and 7
	ipsetAttrProtocol = 1
	ipsetAttrSetName  = 2
	ipsetAttrTypeName = 3
	ipsetAttrFamily   = 5
	ipsetAttrData     = 7
	ipsetAttrADT      = 8
	// In IPSET_ATTR_DATA (of the header and of each member).
	ipsetAttrIP        = 1
	ipsetAttrCIDR      = 3
	ipsetAttrPort      = 4
	ipsetAttrProto     = 7
	ipsetAttrCADTFlags = 8
	ipsetAttrNetmask   = 20
	// In IPSET_ATTR_IP.
	ipsetAttrIPv4 = 1
	ipsetAttrIPv6 = 2
	// IPSET_FLAG_NOMATCH in IPSET_ATTR_CADT_FLAGS.
	ipsetFlagNoMatch = 1 << 2
	// nla_type carries NLA_F_NESTED and NLA_F_NET_BYTEORDER in its top bits: nlaTypeMask
	// (ctdecode.go) takes them off.
)

// ReadIPSets lists the namespace's ipsets with their members, as `ipset list` does, over
// netlink. A kernel without ipset has none: that is no error.
func ReadIPSets(ns Namespace) ([]model.IPSet, error) {
	sock, err := ns.socket(unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, err
	}
	defer sock.Close()
	req := nl.NewNetlinkRequest(nfnlSubsysIPSet<<8|ipsetCmdList, unix.NLM_F_DUMP)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: {Socket: sock}}
	req.AddData(nfgenmsg{family: unix.AF_INET})
	req.AddData(nl.NewRtAttr(ipsetAttrProtocol, []byte{ipsetProtocolMin}))
	var sets []model.IPSet
	index := map[string]int{}
	var decodeErr error
	err = req.ExecuteIter(unix.NETLINK_NETFILTER, nfnlSubsysIPSet<<8|ipsetCmdList, func(m []byte) bool {
		if decodeErr = decodeIPSetMsg(m, &sets, index); decodeErr != nil {
			return false
		}
		return true
	})
	var errno syscall.Errno
	if errors.As(err, &errno) && (errno == unix.EOPNOTSUPP || errno == unix.EPROTONOSUPPORT || errno == unix.ENOENT) {
		return nil, nil // no ipset in this kernel
	}
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, fmt.Errorf("listing ipsets of %s: %w", ns, capErr("reading ipsets", "CAP_NET_ADMIN", err))
	}
	return sets, nil
}

// decodeIPSetMsg adds one message of the dump to sets: a new set, or more members of the set
// the previous message began.
func decodeIPSetMsg(m []byte, sets *[]model.IPSet, index map[string]int) error {
	if len(m) < 4 {
		return fmt.Errorf("ipset message of %d bytes", len(m))
	}
	attrs, err := nl.ParseRouteAttr(m[4:])
	if err != nil {
		return fmt.Errorf("decoding an ipset message: %w", err)
	}
	var name, typ string
	var fam inet.Family
	var header, adt []byte
	for _, a := range attrs {
		switch a.Attr.Type & nlaTypeMask {
		case ipsetAttrSetName:
			name = cString(a.Value)
		case ipsetAttrTypeName:
			typ = cString(a.Value)
		case ipsetAttrFamily:
			if len(a.Value) > 0 {
				fam = inet.Family(a.Value[0])
			}
		case ipsetAttrData:
			header = a.Value
		case ipsetAttrADT:
			adt = a.Value
		}
	}
	if name == "" {
		return errors.New("an ipset message without a set name")
	}
	i, ok := index[name]
	if !ok {
		set := model.IPSet{Name: name, Type: typ, Family: fam, Members: []model.IPSetMember{}}
		if header != nil {
			hattrs, err := nl.ParseRouteAttr(header)
			if err != nil {
				return fmt.Errorf("decoding the header of ipset %s: %w", name, err)
			}
			for _, a := range hattrs {
				if a.Attr.Type&nlaTypeMask == ipsetAttrNetmask && len(a.Value) > 0 {
					set.Netmask = int(a.Value[0])
				}
			}
		}
		i = len(*sets)
		index[name] = i
		*sets = append(*sets, set)
	}
	set := &(*sets)[i]
	if adt == nil {
		return nil
	}
	entries, err := nl.ParseRouteAttr(adt)
	if err != nil {
		return fmt.Errorf("decoding the members of ipset %s: %w", name, err)
	}
	for _, e := range entries {
		if e.Attr.Type&nlaTypeMask != ipsetAttrData {
			continue
		}
		mem, ok, err := decodeIPSetMember(e.Value)
		if err != nil {
			return fmt.Errorf("decoding a member of ipset %s: %w", name, err)
		}
		if ok {
			set.Members = append(set.Members, mem)
		}
	}
	return nil
}

// decodeIPSetMember decodes one member; ok is false for a member without an address (the
// types roundtrip does not match, such as hash:mac or list:set).
func decodeIPSetMember(b []byte) (model.IPSetMember, bool, error) {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return model.IPSetMember{}, false, err
	}
	var m model.IPSetMember
	var addr netip.Addr
	cidr := -1
	for _, a := range attrs {
		v := a.Value
		switch a.Attr.Type & nlaTypeMask {
		case ipsetAttrIP:
			ip, err := nl.ParseRouteAttr(v)
			if err != nil || len(ip) == 0 {
				return m, false, fmt.Errorf("bad address attribute")
			}
			switch {
			case ip[0].Attr.Type&nlaTypeMask == ipsetAttrIPv4 && len(ip[0].Value) == 4:
				addr = netip.AddrFrom4([4]byte(ip[0].Value))
			case ip[0].Attr.Type&nlaTypeMask == ipsetAttrIPv6 && len(ip[0].Value) == 16:
				addr = netip.AddrFrom16([16]byte(ip[0].Value))
			default:
				return m, false, fmt.Errorf("address attribute of type %d and %d bytes", ip[0].Attr.Type&nlaTypeMask, len(ip[0].Value))
			}
		case ipsetAttrCIDR:
			if len(v) > 0 {
				cidr = int(v[0])
			}
		case ipsetAttrPort:
			if len(v) >= 2 {
				m.Port = binary.BigEndian.Uint16(v)
			}
		case ipsetAttrProto:
			if len(v) > 0 {
				m.Proto = int(v[0])
			}
		case ipsetAttrCADTFlags:
			if len(v) >= 4 {
				m.NoMatch = binary.BigEndian.Uint32(v)&ipsetFlagNoMatch != 0
			}
		}
	}
	if !addr.IsValid() {
		return m, false, nil
	}
	if cidr < 0 || cidr > addr.BitLen() {
		cidr = addr.BitLen()
	}
	m.Net = netip.PrefixFrom(addr, cidr).Masked()
	return m, true, nil
}
