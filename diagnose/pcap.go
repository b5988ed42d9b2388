package diagnose

import (
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"roundtrip/engine/capture"
)

// pcapWriter writes captured packets as pcapng: one interface block per interface (with its
// name and link type), and each packet's direction and reception type in its flags, so that
// Wireshark and tcpdump -r show where and which way every packet went.
type pcapWriter struct {
	w       *pcapgo.NgWriter
	ids     map[int]int // ifindex -> pcapng interface id
	filter  string
	snaplen int
	start   time.Time
}

func linkTypeOf(lt capture.LinkType) layers.LinkType {
	if lt == capture.LinkRawIP {
		return layers.LinkTypeRaw
	}
	return layers.LinkTypeEthernet
}

func newPcapWriter(out io.Writer, ifaces []capture.Interface, filter string, snaplen int) (*pcapWriter, error) {
	if len(ifaces) == 0 {
		return nil, fmt.Errorf("writing pcap: no interfaces to describe")
	}
	p := &pcapWriter{ids: map[int]int{}, filter: filter, snaplen: snaplen, start: time.Now()}
	opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Hardware: runtime.GOARCH, OS: runtime.GOOS, Application: "roundtrip capture"}}
	w, err := pcapgo.NewNgWriterInterface(out, p.ngInterface(ifaces[0]), opts)
	if err != nil {
		return nil, fmt.Errorf("writing pcap: %w", err)
	}
	p.w = w
	p.ids[ifaces[0].Index] = 0
	for _, i := range ifaces[1:] {
		if _, err := p.add(i); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *pcapWriter) ngInterface(i capture.Interface) pcapgo.NgInterface {
	return pcapgo.NgInterface{
		Name: i.Name, Description: i.Kind, Filter: p.filter, OS: runtime.GOOS,
		LinkType: linkTypeOf(i.LinkType), SnapLength: uint32(p.snaplen), TimestampResolution: 9,
	}
}

func (p *pcapWriter) add(i capture.Interface) (int, error) {
	id, err := p.w.AddInterface(p.ngInterface(i))
	if err != nil {
		return 0, fmt.Errorf("writing pcap: %w", err)
	}
	p.ids[i.Index] = id
	return id, nil
}

// write adds a packet; an interface first seen now gets its block first (pcapng allows
// interface blocks anywhere before the packets that use them).
func (p *pcapWriter) write(kp *capture.Packet) error {
	id, ok := p.ids[kp.IfIndex]
	if !ok {
		var err error
		if id, err = p.add(capture.Interface{Index: kp.IfIndex, Name: kp.Iface, LinkType: kp.LinkType}); err != nil {
			return err
		}
	}
	flags := pcapgo.NgEpbFlags{Direction: pcapgo.NgEpbFlagDirectionOutbound}
	if kp.Dir == capture.In {
		flags.Direction = pcapgo.NgEpbFlagDirectionInbound
		switch kp.Type {
		case capture.PacketHost:
			flags.Reception = pcapgo.NgEpbFlagReceptionTypeUnicast
		case capture.PacketBroadcast:
			flags.Reception = pcapgo.NgEpbFlagReceptionTypeBroadcast
		case capture.PacketMulticast:
			flags.Reception = pcapgo.NgEpbFlagReceptionTypeMulticast
		case capture.PacketOtherHost:
			flags.Reception = pcapgo.NgEpbFlagReceptionTypePromiscuous
		}
	}
	ci := gopacket.CaptureInfo{Timestamp: kp.Time, CaptureLength: len(kp.Data), Length: max(kp.Length, len(kp.Data)), InterfaceIndex: id}
	if err := p.w.WritePacketWithOptions(ci, kp.Data, pcapgo.NgPacketOptions{Flags: &flags}); err != nil {
		return fmt.Errorf("writing pcap: %w", err)
	}
	return nil
}

// close writes the kernel's counters as interface statistics of the first interface (the
// rings serve all interfaces at once, so the drops are not per interface) and flushes.
func (p *pcapWriter) close(st capture.Stats) error {
	err := p.w.WriteInterfaceStats(0, pcapgo.NgInterfaceStatistics{
		LastUpdate: time.Now(), StartTime: p.start, EndTime: time.Now(),
		PacketsReceived: st.KernelPackets, PacketsDropped: st.KernelDrops,
	})
	if ferr := p.w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("writing pcap: %w", err)
	}
	return nil
}
