// Package capture holds the values of a packet capture (a packet with its direction, kernel
// packet type and framing; the interfaces listened on; the counters), apart from the kernel
// adapter that captures them (engine/kernel), so that the console and the pure correlation code
// need not import it.
package capture

import (
	"fmt"
	"net"
	"time"
)

// Direction says whether the interface a packet was seen on received it or sent it.
type Direction uint8

// Directions of a captured packet.
const (
	In  Direction = 1 // received by the interface (any pkt_type but PACKET_OUTGOING)
	Out Direction = 2 // sent by the interface (PACKET_OUTGOING)
)

func (d Direction) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	}
	return "?"
}

// MarshalText writes "in" or "out".
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads "in" or "out".
func (d *Direction) UnmarshalText(b []byte) error {
	switch string(b) {
	case "in":
		*d = In
	case "out":
		*d = Out
	default:
		return fmt.Errorf("invalid direction %q: want in or out", b)
	}
	return nil
}

// PacketType is the kernel's classification of a packet (sll_pkttype): to this host, broadcast,
// multicast, to another host (seen because the interface is promiscuous, e.g. a bridge port),
// or sent by this host.
type PacketType uint8

// Packet types, as in linux/if_packet.h.
const (
	PacketHost      PacketType = 0 // PACKET_HOST
	PacketBroadcast PacketType = 1 // PACKET_BROADCAST
	PacketMulticast PacketType = 2 // PACKET_MULTICAST
	PacketOtherHost PacketType = 3 // PACKET_OTHERHOST
	PacketOutgoing  PacketType = 4 // PACKET_OUTGOING
)

func (t PacketType) String() string {
	switch t {
	case PacketHost:
		return "host"
	case PacketBroadcast:
		return "broadcast"
	case PacketMulticast:
		return "multicast"
	case PacketOtherHost:
		return "otherhost"
	case PacketOutgoing:
		return "outgoing"
	}
	return fmt.Sprint(uint8(t))
}

// MarshalText writes the type's name.
func (t PacketType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads a type's name.
func (t *PacketType) UnmarshalText(b []byte) error {
	for _, c := range []PacketType{PacketHost, PacketBroadcast, PacketMulticast, PacketOtherHost, PacketOutgoing} {
		if c.String() == string(b) {
			*t = c
			return nil
		}
	}
	return fmt.Errorf("invalid packet type %q", b)
}

// LinkType is the framing of captured packets: what the first byte of Packet.Data is.
type LinkType uint8

// Link types of captured packets.
const (
	LinkEthernet LinkType = 1 // an Ethernet header (Ethernet, veth, bridge, vxlan, loopback)
	LinkRawIP    LinkType = 2 // the IP header (ipip, gre, sit, wireguard, tun: no link header)
)

func (l LinkType) String() string {
	if l == LinkEthernet {
		return "ethernet"
	}
	return "raw-ip"
}

// Interface is an interface of the namespace a capture listens on.
type Interface struct {
	Index        int              `json:"index"`
	Name         string           `json:"name"`
	Kind         string           `json:"kind,omitempty"`
	Master       string           `json:"master,omitempty"`
	HardwareAddr net.HardwareAddr `json:"-"`
	LinkType     LinkType         `json:"-"`
}

// Packet is one captured packet.
type Packet struct {
	Time     time.Time
	IfIndex  int
	Iface    string
	Dir      Direction
	Type     PacketType
	LinkType LinkType
	Length   int // length on the wire; Data may be shorter (snap length)
	// Data are the captured bytes. They live in the kernel ring and are only valid during the
	// callback: copy them to keep them.
	Data []byte
}

// Stats counts what a capture saw, summed over both rings.
type Stats struct {
	// Received is how many packets roundtrip read from the rings.
	Received uint64 `json:"received"`
	// KernelPackets is how many packets matched the filter in the kernel (tp_packets),
	// including the dropped ones.
	KernelPackets uint64 `json:"kernel_packets"`
	// KernelDrops is how many matching packets the kernel dropped because the ring was full.
	KernelDrops uint64 `json:"kernel_drops"`
	// QueueFreezes counts how often a ring filled up (TPACKET_V3 tp_freeze_q_cnt).
	QueueFreezes uint64 `json:"queue_freezes"`
}
