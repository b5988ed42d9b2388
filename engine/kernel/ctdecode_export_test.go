package kernel

import (
	"bytes"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ConntrackMessagesForTest dumps a namespace's conntrack table as the raw ctnetlink messages
// (payloads after nlmsghdr) that dump decodes.
func ConntrackMessagesForTest(ns Namespace) ([][]byte, error) {
	sock, err := ns.socket(unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, err
	}
	defer sock.Close()
	req := nl.NewNetlinkRequest(nfnlSubsysCTNetlink<<8|ipctnlMsgCTGet, unix.NLM_F_DUMP)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: {Socket: sock}}
	req.AddData(nfgenmsg{})
	var msgs [][]byte
	err = req.ExecuteIter(unix.NETLINK_NETFILTER, nfnlSubsysCTNetlink<<8|ipctnlMsgCTNew, func(m []byte) bool {
		msgs = append(msgs, bytes.Clone(m))
		return true
	})
	return msgs, err
}

// DecodeEntryBothForTest decodes a message straight (decodeEntry) and through ti-mo
// (decodeEvent, convertFlow).
func DecodeEntryBothForTest(m []byte) (fast ConntrackEntry, ok bool, lib ConntrackEntry, err error) {
	fast, ok = decodeEntry(m)
	ev, err := decodeEvent(m, 0)
	if err == nil {
		lib = convertFlow(ev.Flow)
	}
	return fast, ok, lib, err
}
