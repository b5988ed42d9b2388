package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"roundtrip/engine/capture"
)

// The values of a capture live in engine/capture; these names keep the adapter's callers as
// they were.
type (
	Direction        = capture.Direction
	PacketType       = capture.PacketType
	LinkType         = capture.LinkType
	CaptureInterface = capture.Interface
	Packet           = capture.Packet
	CaptureStats     = capture.Stats
)

// Directions, packet types and link types (engine/capture).
const (
	In  = capture.In
	Out = capture.Out

	PacketHost      = capture.PacketHost
	PacketBroadcast = capture.PacketBroadcast
	PacketMulticast = capture.PacketMulticast
	PacketOtherHost = capture.PacketOtherHost
	PacketOutgoing  = capture.PacketOutgoing

	LinkEthernet = capture.LinkEthernet
	LinkRawIP    = capture.LinkRawIP
)

// CaptureConfig says what to capture.
type CaptureConfig struct {
	// Ifaces are the interfaces to listen on; empty means every interface of the namespace,
	// including ones created while the capture runs.
	Ifaces []string
	// Filter selects packets in the kernel; nil keeps everything.
	Filter *CaptureFilter
	// SnapLen is how many bytes of each packet are kept (0: DefaultSnapLen).
	SnapLen int
	// BufferSize is the size in bytes of each of the two kernel rings (received and sent
	// packets); 0 means DefaultCaptureBuffer. A bigger ring rides out longer bursts.
	BufferSize int
}

// DefaultCaptureBuffer is the default size of each capture ring: 8 MiB holds about 100 ms of
// a saturated gigabit link, four times tcpdump's default buffer.
const DefaultCaptureBuffer = 8 << 20

// MaxCaptureBuffer bounds each capture ring: 1 GiB rides out seconds of a 10 Gbit/s burst.
// The rings are kernel memory that no limit of the process's covers, so a bigger one is
// refused rather than left for the kernel to find room for by killing processes.
const MaxCaptureBuffer = 1 << 30

// MaxSnapLen bounds the bytes kept of each packet: the largest packet Linux hands a packet
// socket (a 256 KiB GSO packet), as tcpdump's maximum.
const MaxSnapLen = 262144

// CheckCaptureMemory refuses a ring size whose two rings would take more than half of the
// memory available now (MemAvailable in /proc/meminfo), or more than MaxCaptureBuffer each.
func CheckCaptureMemory(ringSize int) error {
	if ringSize > MaxCaptureBuffer {
		return fmt.Errorf("a capture ring of %d MiB is over the maximum of %d MiB", ringSize>>20, MaxCaptureBuffer>>20)
	}
	avail, err := memAvailable()
	if err != nil {
		return nil // no /proc/meminfo to judge by: the maximum above still holds
	}
	if 2*uint64(ringSize) > avail/2 {
		return fmt.Errorf("two rings of %d MiB would take more than half of the %d MiB of memory available now: give a smaller --buffer", ringSize>>20, avail>>20)
	}
	return nil
}

// memAvailable reads MemAvailable from /proc/meminfo, in bytes.
func memAvailable() (uint64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("reading /proc/meminfo: %q: %w", line, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no MemAvailable in /proc/meminfo")
}

// ErrStopCapture, returned by a capture callback, ends Capture.Run without an error.
var ErrStopCapture = errors.New("stop capture")

// CapabilityError says that an operation needs a capability roundtrip does not have.
type CapabilityError struct {
	What string // "capturing packets"
	Cap  string // "CAP_NET_RAW"
	Err  error
}

func (e *CapabilityError) Error() string {
	return fmt.Sprintf("%s needs root or %s (try sudo): %v", e.What, e.Cap, e.Err)
}

func (e *CapabilityError) Unwrap() error { return e.Err }

// capErr wraps EPERM/EACCES in a CapabilityError.
func capErr(what, capability string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return &CapabilityError{What: what, Cap: capability, Err: err}
	}
	return err
}

// Capture reads packets from the interfaces of one namespace.
//
// Direction: gopacket's afpacket (v1.7.7) does not expose the sockaddr_ll of a packet, so the
// kernel's packet type (PACKET_OUTGOING or not) cannot be read from the ring. Instead the
// capture opens two TPACKET_V3 rings, both bound to every interface of the namespace (ifindex
// 0, ETH_P_ALL), and their BPF programs split the traffic with the SKF_AD_PKTTYPE extension:
// one keeps what the host sends, the other what it receives. Each packet therefore comes with
// an exact direction, and the ring it came from is its direction. The interface comes from
// sll_ifindex, which afpacket does report; a chosen set of interfaces is selected in the same
// programs with SKF_AD_IFINDEX, so two rings serve any number of interfaces. Received packets
// are further told apart (host, broadcast, multicast, otherhost) by their destination MAC.
type Capture struct {
	ns      Namespace
	all     bool
	cfg     CaptureConfig
	rings   [2]*ring // In, Out
	mu      sync.Mutex
	ifaces  map[int]CaptureInterface
	refresh time.Time
}

type ring struct {
	tp       *afpacket.TPacket
	dir      Direction
	attached time.Time // packets stamped before the filter was attached are discarded
	base     afpacket.SocketStatsV3
	received atomic.Uint64
}

// ErrCapture32 says that this build cannot capture: a 32-bit one.
var ErrCapture32 = errors.New("capturing packets needs a 64-bit build of roundtrip: gopacket's afpacket ring (v1.7.7) makes a 64-bit atomic operation on a field that 32-bit platforms do not align, and panics at the first read (gopacket/gopacket#133); the rest of roundtrip works in this build")

// capture32 refuses a capture in a 32-bit build (see ErrCapture32) before any ring is opened.
func capture32() error {
	if strconv.IntSize == 32 {
		return ErrCapture32
	}
	return nil
}

// OpenCapture opens the capture rings inside the namespace and attaches the filter. Without
// CAP_NET_RAW it returns a *CapabilityError.
func OpenCapture(ns Namespace, cfg CaptureConfig) (*Capture, error) {
	if err := capture32(); err != nil {
		return nil, err
	}
	if cfg.SnapLen <= 0 {
		cfg.SnapLen = DefaultSnapLen
	}
	if cfg.BufferSize <= 0 {
		cfg.BufferSize = DefaultCaptureBuffer
	}
	if cfg.SnapLen > MaxSnapLen {
		return nil, fmt.Errorf("capturing: a snap length of %d is over the maximum of %d bytes", cfg.SnapLen, MaxSnapLen)
	}
	if err := CheckCaptureMemory(cfg.BufferSize); err != nil {
		return nil, fmt.Errorf("capturing: %w", err)
	}
	c := &Capture{ns: ns, cfg: cfg, all: len(cfg.Ifaces) == 0}
	ifaces, err := c.readInterfaces()
	if err != nil {
		return nil, err
	}
	c.ifaces = ifaces
	var indexes []int
	if !c.all {
		byName := map[string]int{}
		for _, i := range ifaces {
			byName[i.Name] = i.Index
		}
		for _, name := range cfg.Ifaces {
			idx, ok := byName[name]
			if !ok {
				return nil, fmt.Errorf("capturing on %s: no interface %q there (`ip link` lists them)", ns, name)
			}
			if !slices.Contains(indexes, idx) {
				indexes = append(indexes, idx)
			}
		}
	}

	// Block size: a power of two of pages (the kernel allocates each block as one
	// high-order page run); big blocks for big rings, small ones so that a small ring still
	// has several blocks to rotate through.
	block := 1 << 20
	for block > 64<<10 && cfg.BufferSize/block < 8 {
		block /= 2
	}
	nblocks := max(cfg.BufferSize/block, 2)

	err = ns.Do(func() error {
		for i, dir := range []Direction{In, Out} {
			tp, err := afpacket.NewTPacket(
				afpacket.OptTPacketVersion(afpacket.TPacketVersion3),
				afpacket.SocketRaw,
				afpacket.OptFrameSize(afpacket.DefaultFrameSize),
				afpacket.OptBlockSize(block),
				afpacket.OptNumBlocks(nblocks),
				// A block reaches user space when full or after this long: short enough for
				// live output, long enough to batch at high rates.
				afpacket.OptBlockTimeout(20*time.Millisecond),
				// Readers wake up this often to notice that the capture is over.
				afpacket.OptPollTimeout(100*time.Millisecond),
			)
			if err != nil {
				return capErr("capturing packets", "CAP_NET_RAW", fmt.Errorf("opening a packet socket: %w", err))
			}
			r := &ring{tp: tp, dir: dir}
			c.rings[i] = r
			prog, err := cfg.Filter.socketProgram(dir == Out, indexes, uint32(cfg.SnapLen))
			if err != nil {
				return err
			}
			if err := tp.SetBPF(prog); err != nil {
				return fmt.Errorf("attaching the capture filter: %w", err)
			}
			// The socket was bound before the filter was attached: anything it took in
			// meanwhile is unfiltered and without a known direction. Those packets carry
			// earlier timestamps, and the counters so far are left out of Stats.
			r.attached = time.Now()
			_, st, err := tp.SocketStats()
			if err != nil {
				return fmt.Errorf("reading capture statistics: %w", err)
			}
			r.base = st
		}
		return nil
	})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("capturing in %s: %w", ns, err)
	}
	return c, nil
}

// readInterfaces lists the links of the namespace.
func (c *Capture) readInterfaces() (map[int]CaptureInterface, error) {
	h, err := c.ns.Handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var links []netlink.Link
	err = retryDump("listing links", func() error {
		var err error
		links, err = h.LinkList()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing interfaces of %s: %w", c.ns, err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	out := make(map[int]CaptureInterface, len(links))
	for _, l := range links {
		a := l.Attrs()
		lt := LinkRawIP
		if a.EncapType == "ether" || a.EncapType == "loopback" {
			lt = LinkEthernet
		}
		out[a.Index] = CaptureInterface{
			Index: a.Index, Name: a.Name, Kind: l.Type(), Master: names[a.MasterIndex],
			HardwareAddr: a.HardwareAddr, LinkType: lt,
		}
	}
	return out, nil
}

// Interfaces returns the interfaces the capture listens on, by index.
func (c *Capture) Interfaces() []CaptureInterface {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []CaptureInterface
	for _, i := range c.ifaces {
		if c.all || slices.Contains(c.cfg.Ifaces, i.Name) {
			out = append(out, i)
		}
	}
	slices.SortFunc(out, func(a, b CaptureInterface) int { return a.Index - b.Index })
	return out
}

// iface returns the interface with that index, re-reading the list (at most once a second) for
// interfaces created after the capture started.
func (c *Capture) iface(idx int) CaptureInterface {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.ifaces[idx]; ok {
		return i
	}
	if time.Since(c.refresh) > time.Second {
		c.refresh = time.Now()
		if m, err := c.readInterfaces(); err == nil {
			c.ifaces = m
			if i, ok := m[idx]; ok {
				return i
			}
		}
	}
	// Gone already: name it by index, and assume Ethernet as most links are.
	i := CaptureInterface{Index: idx, Name: fmt.Sprintf("if%d", idx), LinkType: LinkEthernet}
	c.ifaces[idx] = i
	return i
}

// Run reads packets until ctx ends or fn returns an error, calling fn for each packet. Calls
// of fn are serialised (received and sent packets are read by two goroutines, so packets
// come in timestamp order per direction only). fn returning ErrStopCapture ends Run cleanly.
func (c *Capture) Run(ctx context.Context, fn func(*Packet) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var fnMu sync.Mutex
	errc := make(chan error, len(c.rings))
	for _, r := range c.rings {
		go func() {
			err := c.read(ctx, r, &fnMu, fn)
			if err != nil {
				cancel()
			}
			errc <- err
		}()
	}
	var err error
	for range c.rings {
		if e := <-errc; e != nil && err == nil {
			err = e
		}
	}
	if errors.Is(err, ErrStopCapture) {
		return nil
	}
	return err
}

func (c *Capture) read(ctx context.Context, r *ring, fnMu *sync.Mutex, fn func(*Packet) error) error {
	var p Packet
	for ctx.Err() == nil {
		data, ci, err := r.tp.ZeroCopyReadPacketData()
		if errors.Is(err, afpacket.ErrTimeout) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading captured packets: %w", err)
		}
		if ci.Timestamp.Before(r.attached) {
			continue
		}
		ifc := c.iface(ci.InterfaceIndex)
		p = Packet{
			Time: ci.Timestamp, IfIndex: ci.InterfaceIndex, Iface: ifc.Name, Dir: r.dir,
			LinkType: ifc.LinkType, Length: ci.Length, Data: data, Type: PacketOutgoing,
		}
		if r.dir == In {
			p.Type = classify(data, ifc)
		}
		r.received.Add(1)
		fnMu.Lock()
		err = fn(&p)
		fnMu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// classify tells a received frame's packet type from its destination MAC, as eth_type_trans
// does.
func classify(data []byte, ifc CaptureInterface) PacketType {
	if ifc.LinkType != LinkEthernet || len(data) < 6 || len(ifc.HardwareAddr) != 6 {
		return PacketHost
	}
	dst := data[:6]
	switch {
	case dst[0]&1 != 0 && string(dst) == "\xff\xff\xff\xff\xff\xff":
		return PacketBroadcast
	case dst[0]&1 != 0:
		return PacketMulticast
	case string(dst) == string(ifc.HardwareAddr):
		return PacketHost
	}
	return PacketOtherHost
}

// Stats returns the counters since the filter was attached.
func (c *Capture) Stats() (CaptureStats, error) {
	var s CaptureStats
	for _, r := range c.rings {
		if r == nil {
			continue
		}
		_, st, err := r.tp.SocketStats()
		if err != nil {
			return s, fmt.Errorf("reading capture statistics: %w", err)
		}
		s.Received += r.received.Load()
		s.KernelPackets += uint64(st.Packets() - r.base.Packets())
		s.KernelDrops += uint64(st.Drops() - r.base.Drops())
		s.QueueFreezes += uint64(st.QueueFreezes() - r.base.QueueFreezes())
	}
	return s, nil
}

// Close releases the rings. Run must have returned.
func (c *Capture) Close() {
	for _, r := range c.rings {
		if r != nil {
			r.tp.Close()
		}
	}
}
