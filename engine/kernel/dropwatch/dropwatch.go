package dropwatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Drop is one packet the kernel dropped, in its own words. The JSON names are those of the
// `{"type":"drop",...}` events (the caller adds type and the connection).
type Drop struct {
	Time       time.Time `json:"time"`
	NetnsInode uint32    `json:"netns_inode"`
	Netns      string    `json:"netns"` // the name in `ip netns list`; "" for roundtrip's own or unknown
	Ifindex    int       `json:"ifindex"`
	Iface      string    `json:"iface"` // "" when the interface is gone or the namespace unnamed
	// Reason is the kernel's name of the reason, without SKB_DROP_REASON_ ("IP_RPFILTER");
	// Words says it in an operator's words.
	Reason     string   `json:"reason"`
	ReasonCode uint32   `json:"-"` // this kernel's number for it
	Words      string   `json:"words"`
	Location   Location `json:"location"`
	Mark       uint32   `json:"mark,omitempty"` // the packet's fwmark at the drop
	Packet     Packet   `json:"packet"`
}

// Explain says a drop's reason in an operator's words, with the location's help where the
// kernel gives no specific reason.
func Explain(reason string, loc Location) string {
	if reason == "NOT_SPECIFIED" {
		if w, ok := unspecifiedAt[loc.Symbol]; ok {
			return w
		}
	}
	return Describe(reason)
}

// String is the drop on one line: "IP_RPFILTER (reverse-path filter ...) on eth1 in
// ip_rcv_finish_core+0x1a3: tcp 10.0.0.1:5000 > 10.0.0.2:80 [S] len 60".
func (d Drop) String() string { return string(d.AppendText(nil)) }

// AppendText appends String's text, without fmt (a capture may print a line a drop).
func (d *Drop) AppendText(b []byte) []byte {
	b = append(b, d.Reason...)
	b = append(b, " ("...)
	b = append(b, d.Words...)
	b = append(b, ") on "...)
	if d.Iface == "" {
		b = append(b, "ifindex "...)
		b = strconv.AppendInt(b, int64(d.Ifindex), 10)
	} else {
		b = append(b, d.Iface...)
	}
	b = append(b, " in "...)
	b = d.Location.AppendText(b)
	b = append(b, ": "...)
	return d.Packet.AppendText(b)
}

// Options says what to watch.
type Options struct {
	// Netns is the namespace whose drops are reported, by its name in `ip netns list`; "" is
	// the namespace roundtrip runs in. AllNetns reports drops in every namespace instead.
	Netns    string
	AllNetns bool
	// Flows are the flows whose drops are reported (each in both directions); none reports
	// every drop in the namespace. AddFlow adds more while the watcher runs.
	Flows []Flow
	// Buffer is how many drops wait in Events for the reader; 256 when 0. The kernel's ring
	// holds more; drops beyond both are counted by Lost, never silently lost.
	Buffer int
}

// Watcher reports drops from the BPF program until closed.
type Watcher struct {
	objs    bpfObjects
	link    link.Link
	rd      *ringbuf.Reader
	reasons Reasons
	syms    symbols
	ifaces  *ifaces
	inode   uint32
	events  chan Drop
	mono    time.Time // wall clock time at CLOCK_MONOTONIC 0

	mu     sync.Mutex // config and the flows map
	cfg    bpfFilterConfig
	closed chan struct{} // Close was called: no more flows
	// abandon: Close gave up waiting for Events to be read; the reader drops the rest.
	abandon chan struct{}
	once    sync.Once
	done    chan struct{} // the reader has stopped
	err     error
	// draining: Close detached the program; the reader stops once the ring is empty.
	draining atomic.Bool
}

// Start loads the BPF program, attaches it to skb:kfree_skb and starts reporting drops. It
// stops when ctx ends or Close is called. Where the kernel or the privileges do not allow
// it, the error wraps ErrUnsupported and says in one line why.
func Start(ctx context.Context, o Options) (*Watcher, error) {
	w := &Watcher{ifaces: newIfaces(), closed: make(chan struct{}), abandon: make(chan struct{}), done: make(chan struct{})}
	if !o.AllNetns {
		ino, err := NetnsInode(o.Netns)
		if err != nil {
			return nil, fmt.Errorf("watching drops: %w", err)
		}
		w.inode = ino
		w.cfg.Netns, w.cfg.Flags = ino, cfgNetns
		w.ifaces.ns[ino] = o.Netns
	}
	keys := make(map[bpfFlowKey]bool)
	for _, f := range o.Flows {
		k, shape, err := f.key()
		if err != nil {
			return nil, fmt.Errorf("watching drops: %w", err)
		}
		keys[k] = true
		w.cfg.Shapes |= 1 << shape
	}
	if err := lockedDown(); err != nil {
		return nil, err
	}
	kspec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, unsupported("the kernel has no BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)", err)
	}
	if err := checkTracepoint(kspec); err != nil {
		return nil, unsupported("this kernel reports no drop reasons (needs Linux 5.17 or later)", err)
	}
	if w.reasons, err = ReasonsFromBTF(kspec); err != nil {
		return nil, unsupported("this kernel reports no drop reasons (needs Linux 5.17 or later)", err)
	}
	// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; later ones ignore it.
	_ = rlimit.RemoveMemlock()
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("watching drops: %w", err)
	}
	if err := spec.LoadAndAssign(&w.objs, &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kspec}}); err != nil {
		return nil, loadError(err)
	}
	if err := w.objs.Config.Put(uint32(0), &w.cfg); err != nil {
		w.objs.Close()
		return nil, fmt.Errorf("watching drops: configuring the filter: %w", err)
	}
	for k := range keys {
		if err := w.objs.Flows.Put(&k, uint8(1)); err != nil {
			w.objs.Close()
			return nil, fmt.Errorf("watching drops: adding a flow: %w", err)
		}
	}
	if w.rd, err = ringbuf.NewReader(w.objs.Events); err != nil {
		w.objs.Close()
		return nil, fmt.Errorf("watching drops: opening the ring buffer: %w", err)
	}
	if w.link, err = link.AttachTracing(link.TracingOptions{Program: w.objs.OnKfreeSkb, AttachType: ebpf.AttachTraceRawTp}); err != nil {
		w.rd.Close()
		w.objs.Close()
		return nil, loadError(err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		w.Close()
		return nil, fmt.Errorf("watching drops: reading the clock: %w", err)
	}
	w.mono = time.Now().Add(-time.Duration(ts.Nano()))
	buf := o.Buffer
	if buf <= 0 {
		buf = 256
	}
	w.events = make(chan Drop, buf)
	// The kernel's symbols are read now (a tenth of a second or more), not while the first
	// drop waits for its location and falls behind what happened after it.
	w.syms.once.Do(w.syms.load)
	go w.read()
	go func() {
		select {
		case <-ctx.Done():
			w.Close()
		case <-w.closed:
		}
	}()
	return w, nil
}

// filter_config.flags of bpf/dropwatch.c.
const cfgNetns = 1 << 0

// NetnsInode is the inode of the watched namespace; 0 with AllNetns.
func (w *Watcher) NetnsInode() uint32 { return w.inode }

// Reasons returns this kernel's drop reason names by number.
func (w *Watcher) Reasons() Reasons { return w.reasons }

// Events delivers the drops until the watcher is closed, then is closed itself.
func (w *Watcher) Events() <-chan Drop { return w.events }

// AddFlow adds a flow to watch (both directions), for example a NAT tuple of the watched
// connection that conntrack reported. The first flow turns the flow filter on: from then on
// only drops of the added flows are reported.
func (w *Watcher) AddFlow(f Flow) error {
	k, shape, err := f.key()
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.closed:
		return errors.New("adding a flow to watch: the drop watcher is closed")
	default:
	}
	// The key first: the kernel never sees a shape whose keys are not there yet.
	if err := w.objs.Flows.Put(&k, uint8(1)); err != nil {
		return fmt.Errorf("adding flow %s to watch: %w (at most %d flows)", f, err, w.objs.Flows.MaxEntries())
	}
	if w.cfg.Shapes&(1<<shape) == 0 {
		cfg := w.cfg
		cfg.Shapes |= 1 << shape
		if err := w.objs.Config.Put(uint32(0), &cfg); err != nil {
			return fmt.Errorf("adding flow %s to watch: %w", f, err)
		}
		w.cfg = cfg
	}
	return nil
}

// Lost returns how many matching drops found the kernel's ring buffer full and were not
// reported.
func (w *Watcher) Lost() (uint64, error) {
	// Not while Close frees the map (it takes the lock to mark the watcher closed).
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.closed:
		return 0, errors.New("reading the lost drop count: the drop watcher is closed")
	default:
	}
	var per []uint64
	if err := w.objs.Lost.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("reading the lost drop count: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// Cost returns how often the program ran (every drop in any namespace, filtered or not)
// and its average run time. The kernel only counts while BPF run-time statistics are on
// (sysctl kernel.bpf_stats_enabled=1, or ebpf.EnableStats); otherwise both are zero.
func (w *Watcher) Cost() (runs uint64, perRun time.Duration, err error) {
	st, err := w.objs.OnKfreeSkb.Stats()
	if err != nil {
		return 0, 0, fmt.Errorf("reading the drop watcher's run statistics: %w", err)
	}
	if st.RunCount == 0 {
		return 0, 0, nil
	}
	return st.RunCount, st.Runtime / time.Duration(st.RunCount), nil
}

// Err returns why the watcher stopped on its own, if it did.
func (w *Watcher) Err() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}

// closeDrain bounds how long Close waits for the drops still in the ring to be taken from
// Events; after it they are dropped.
const closeDrain = time.Second

// Close detaches the program, delivers the drops it reported before that (the reader is not
// woken for every drop, so up to PollInterval of them may still be in the ring) as long as
// Events is read, then frees it; Events is closed once the last drop is delivered or, after
// closeDrain without a reader, dropped.
func (w *Watcher) Close() error {
	var err error
	w.once.Do(func() {
		w.mu.Lock()
		close(w.closed)
		w.mu.Unlock()
		if w.link != nil {
			err = w.link.Close()
		}
		if w.rd != nil && w.events != nil {
			// The reader reads what the ring holds, then stops at the deadline.
			w.draining.Store(true)
			w.rd.SetDeadline(time.Now())
			select {
			case <-w.done:
			case <-time.After(closeDrain):
			}
		}
		close(w.abandon)
		if w.rd != nil {
			w.rd.Close()
		}
		if w.events != nil {
			<-w.done
		}
		w.objs.Close()
	})
	return err
}

// PollInterval is how long a reported drop may wait in the kernel's ring before the reader
// finds it: the program wakes the reader only each time another 32 KiB of the ring (about
// 340 drops) waits, so a few drops are read when the reader polls.
const PollInterval = 10 * time.Millisecond

func (w *Watcher) read() {
	defer close(w.done)
	defer close(w.events)
	var rec ringbuf.Record
	w.rd.SetDeadline(time.Now().Add(PollInterval))
	for {
		if err := w.rd.ReadInto(&rec); err != nil {
			// The deadline passed and every record waiting then has been read: poll again.
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if w.draining.Load() {
					return // Close: the ring is read to its end
				}
				w.rd.SetDeadline(time.Now().Add(PollInterval))
				continue
			}
			if !errors.Is(err, os.ErrClosed) {
				w.err = fmt.Errorf("reading dropped packets: %w", err)
			}
			return
		}
		d, err := w.decode(rec.RawSample)
		if err != nil {
			w.err = err
			return
		}
		select {
		case w.events <- d:
		case <-w.abandon:
			return
		}
	}
}

func (w *Watcher) decode(raw []byte) (Drop, error) {
	if len(raw) < int(unsafe.Sizeof(bpfEvent{})) {
		return Drop{}, fmt.Errorf("a dropped packet's record of %d bytes, want %d", len(raw), unsafe.Sizeof(bpfEvent{}))
	}
	// The record is the program's struct event, in this host's layout (bpf2go's twin says
	// so): copied as is, which is much cheaper than decoding field by field at 100k/s.
	e := *(*bpfEvent)(unsafe.Pointer(&raw[0]))
	d := Drop{
		Time:       w.mono.Add(time.Duration(e.TimeNs)),
		NetnsInode: e.Netns,
		Ifindex:    int(e.Ifindex),
		Reason:     w.reasons.Name(e.Reason),
		ReasonCode: e.Reason,
		Location:   w.syms.resolve(e.Location),
		Mark:       e.Mark,
		Packet:     packetOf(&e),
	}
	d.Words = Explain(d.Reason, d.Location)
	d.Netns, d.Iface = w.ifaces.name(e.Netns, e.Ifindex)
	return d, nil
}

// lockedDown fails when kernel lockdown forbids BPF from reading kernel memory.
func lockedDown() error {
	b, err := os.ReadFile("/sys/kernel/security/lockdown")
	if err != nil {
		return nil // no lockdown support, or securityfs not mounted: nothing forbids it
	}
	if strings.Contains(string(b), "[confidentiality]") {
		return unsupported("the kernel is locked down (confidentiality), which forbids BPF tracing", nil)
	}
	return nil
}

// loadError classifies a failure to load or attach the program.
func loadError(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return unsupported("loading BPF needs root (CAP_BPF and CAP_PERFMON)", err)
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		return unsupported("this kernel cannot attach BPF to the skb:kfree_skb tracepoint", err)
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return unsupported("this kernel's BPF verifier rejected the drop watcher ("+firstLine(ve.Error())+")", err)
	}
	return unsupported("loading the drop watcher failed ("+firstLine(err.Error())+")", err)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
