package diagnose

import (
	"fmt"
	"io"
	"runtime"
	"sync"
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
	out     *asyncWriter
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
	p := &pcapWriter{ids: map[int]int{}, filter: filter, snaplen: snaplen, start: time.Now(), out: newAsyncWriter(out)}
	opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Hardware: runtime.GOARCH, OS: runtime.GOOS, Application: "roundtrip capture"}}
	w, err := pcapgo.NewNgWriterInterface(p.out, p.ngInterface(ifaces[0]), opts)
	if err != nil {
		p.out.Close()
		return nil, fmt.Errorf("writing pcap: %w", err)
	}
	p.w = w
	p.ids[ifaces[0].Index] = 0
	for _, i := range ifaces[1:] {
		if _, err := p.add(i); err != nil {
			p.out.Close()
			return nil, err
		}
	}
	return p, nil
}

// asyncWriter hands what is written to a goroutine that writes it out in chunks, so that a
// file system that stalls for a moment (writeback, a journal commit) holds up that goroutine
// and not the capture, whose ring must be read on: with the pcap written in line, a stall of a
// quarter second lost 2% of the packets at 300k packets/s where the text alone lost none.
// Up to asyncQueue chunks wait (32 MiB, a second and a half at 300k packets/s); beyond that
// Write blocks, as the file would.
type asyncWriter struct {
	out   io.Writer
	cur   []byte
	queue chan []byte
	free  chan []byte
	done  chan struct{}
	mu    sync.Mutex
	err   error // the first error of out, returned by every Write after it and by Close
}

const (
	asyncChunk = 1 << 20
	asyncQueue = 32
)

func newAsyncWriter(out io.Writer) *asyncWriter {
	a := &asyncWriter{out: out, queue: make(chan []byte, asyncQueue), free: make(chan []byte, asyncQueue+1), done: make(chan struct{})}
	go a.run()
	return a
}

func (a *asyncWriter) run() {
	defer close(a.done)
	for b := range a.queue {
		if a.failed() == nil {
			if _, err := a.out.Write(b); err != nil {
				a.mu.Lock()
				a.err = err
				a.mu.Unlock()
			}
		}
		select {
		case a.free <- b[:0]:
		default:
		}
	}
}

func (a *asyncWriter) failed() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Write copies p into the chunk being filled and queues the chunks it fills. Not safe for
// concurrent use (the capture writes with its lock held).
func (a *asyncWriter) Write(p []byte) (int, error) {
	if err := a.failed(); err != nil {
		return 0, err
	}
	n := len(p)
	for len(p) > 0 {
		if a.cur == nil {
			select {
			case b := <-a.free:
				a.cur = b
			default:
				a.cur = make([]byte, 0, asyncChunk)
			}
		}
		k := copy(a.cur[len(a.cur):cap(a.cur)], p)
		a.cur, p = a.cur[:len(a.cur)+k], p[k:]
		if len(a.cur) == cap(a.cur) {
			a.queue <- a.cur
			a.cur = nil
		}
	}
	return n, nil
}

// Close queues what is left, waits until everything is written and returns the first error.
func (a *asyncWriter) Close() error {
	if len(a.cur) > 0 {
		a.queue <- a.cur
		a.cur = nil
	}
	close(a.queue)
	<-a.done
	return a.failed()
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
	if cerr := p.out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing pcap: %w", err)
	}
	return nil
}
