package capture

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The packet types are the kernel's sll_pkttype values, written as numbers so that this
// package builds without the kernel's headers: they must stay the kernel's.
func TestPacketTypesAreTheKernels(t *testing.T) {
	for _, c := range []struct {
		got  PacketType
		want int
	}{
		{PacketHost, unix.PACKET_HOST}, {PacketBroadcast, unix.PACKET_BROADCAST},
		{PacketMulticast, unix.PACKET_MULTICAST}, {PacketOtherHost, unix.PACKET_OTHERHOST},
		{PacketOutgoing, unix.PACKET_OUTGOING},
	} {
		if int(c.got) != c.want {
			t.Errorf("%s = %d, the kernel's is %d", c.got, c.got, c.want)
		}
	}
}

func TestTextRoundTrips(t *testing.T) {
	for _, d := range []Direction{In, Out} {
		b, _ := d.MarshalText()
		var back Direction
		if err := back.UnmarshalText(b); err != nil || back != d {
			t.Errorf("direction %s: read back %s, %v", d, back, err)
		}
	}
	for _, pt := range []PacketType{PacketHost, PacketBroadcast, PacketMulticast, PacketOtherHost, PacketOutgoing} {
		b, _ := pt.MarshalText()
		var back PacketType
		if err := back.UnmarshalText(b); err != nil || back != pt {
			t.Errorf("packet type %s: read back %s, %v", pt, back, err)
		}
	}
	var d Direction
	if err := d.UnmarshalText([]byte("sideways")); err == nil {
		t.Error("direction sideways accepted")
	}
}
