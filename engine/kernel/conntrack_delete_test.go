package kernel_test

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"roundtrip/engine/inet"
	. "roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
)

// ctFlow builds a conntrack entry of a LAN client's connection source-NATed to natTo.
func ctFlow(proto uint8, src, dst netip.AddrPort, natTo netip.Addr, mark uint32) conntrack.Flow {
	var f conntrack.Flow
	f.TupleOrig.IP.SourceAddress, f.TupleOrig.IP.DestinationAddress = src.Addr(), dst.Addr()
	f.TupleReply.IP.SourceAddress, f.TupleReply.IP.DestinationAddress = dst.Addr(), natTo
	f.TupleOrig.Proto.Protocol, f.TupleReply.Proto.Protocol = proto, proto
	if proto == unix.IPPROTO_ICMP {
		f.TupleOrig.Proto.ICMPv4, f.TupleReply.Proto.ICMPv4 = true, true
		f.TupleOrig.Proto.ICMPType, f.TupleOrig.Proto.ICMPID = 8, src.Port()
		f.TupleReply.Proto.ICMPType, f.TupleReply.Proto.ICMPID = 0, src.Port()
	} else {
		f.TupleOrig.Proto.SourcePort, f.TupleOrig.Proto.DestinationPort = src.Port(), dst.Port()
		f.TupleReply.Proto.SourcePort, f.TupleReply.Proto.DestinationPort = dst.Port(), src.Port()
	}
	f.Timeout, f.Mark = 600, mark
	return f
}

func TestPrivilegedConntrackDeleteAndMark(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	ns := Namespace{Name: l.NS("ct").Name}
	wanA, wanB := netip.MustParseAddr("198.18.74.2"), netip.MustParseAddr("198.18.75.2")
	ap := netip.MustParseAddrPort
	flows := []conntrack.Flow{
		ctFlow(unix.IPPROTO_UDP, ap("10.73.20.50:40001"), ap("192.0.2.80:53"), wanA, 0),
		ctFlow(unix.IPPROTO_UDP, ap("10.73.20.50:40002"), ap("192.0.2.80:53"), wanB, 0x10),
		ctFlow(unix.IPPROTO_ICMP, ap("10.73.20.50:7"), ap("192.0.2.1:0"), wanA, 0),
		ctFlow(unix.IPPROTO_TCP, ap("10.73.20.50:40004"), ap("192.0.2.80:80"), wanA, 0x1000000),
		// The gateway's own connection from A's address: not NATed.
		ctFlow(unix.IPPROTO_UDP, ap("198.18.74.2:40005"), ap("192.0.2.80:53"), wanA, 0),
	}
	err := ns.Do(func() error {
		c, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		for _, f := range flows {
			if err := c.Create(f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("creating entries: %v", err)
	}
	c, err := OpenConntrack(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ports := func() map[uint16]uint32 {
		t.Helper()
		out := map[uint16]uint32{}
		if err := c.Dump(context.Background(), nil, func(e *ConntrackEntry) error {
			out[e.Orig.Src.Port()] = e.Mark
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := ports(); len(got) != len(flows) {
		t.Fatalf("the table holds %v", got)
	}

	// Delete what was NATed to A: UDP, ICMP and TCP alike; B's and the unNATed one stay.
	n, err := c.DeleteFunc(context.Background(), &ConntrackFilter{Family: inet.V4}, func(e *ConntrackEntry) bool {
		return e.SNAT() && e.Reply.Dst.Addr() == wanA
	})
	if err != nil {
		t.Fatal(err)
	}
	got := ports()
	keys := slices.Sorted(maps.Keys(got))
	if n != 3 || !slices.Equal(keys, []uint16{40002, 40005}) {
		t.Fatalf("deleted %d, left %v; want 3 deleted, 40002 and 40005 left", n, keys)
	}

	// Pin B's connection: its other mark bits stay.
	pin := model.MarkMatch{Value: 0x2000000, Mask: 0x3000000}
	n, err = c.MarkFunc(context.Background(), nil, func(e *ConntrackEntry) (model.MarkMatch, bool) {
		return pin, e.Reply.Dst.Addr() == wanB
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := ports(); n != 1 || got[40002] != 0x2000010 || got[40005] != 0 {
		t.Errorf("marked %d; marks %#v, want 40002 at 0x2000010", n, got)
	}
	// Marking again changes nothing; clearing to zero is refused.
	if n, err := c.MarkFunc(context.Background(), nil, func(e *ConntrackEntry) (model.MarkMatch, bool) { return pin, true }); err != nil || n != 1 {
		t.Errorf("marking again: %d changed (want only the unmarked one), %v", n, err)
	}
	if _, err := c.MarkFunc(context.Background(), nil, func(e *ConntrackEntry) (model.MarkMatch, bool) {
		return model.MarkMatch{Mask: 0xffffffff}, true
	}); err == nil {
		t.Error("clearing marks to zero was accepted")
	}
}
