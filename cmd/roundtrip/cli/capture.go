package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"roundtrip/diagnose"
	"roundtrip/engine/kernel"
	"roundtrip/engine/quote"
	"roundtrip/engine/safefile"
)

func init() { RegisterNew(func(f *Factory) *Command { return NewCmdCapture(f, nil) }) }

// captureFlags are the capture settings shared by capture and diagnose.
type captureFlags struct {
	ifaces string
	pcap   string
}

func (c *captureFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.ifaces, "iface", "", "capture on these interfaces only (`LIST`, comma-separated; default: all)")
	fs.StringVar(&c.pcap, "pcap", "", "also write the captured packets to `FILE` (pcapng: Wireshark keeps interfaces and directions)")
}

func (c *captureFlags) ifaceList() []string {
	var out []string
	for _, s := range strings.Split(c.ifaces, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// openPcap starts the pcap file, or returns nil when none was asked for. Packets go to a new
// file next to the target, renamed over it when the capture ends (Commit, also after Ctrl-C):
// a link planted at the target is never written through, not even while the capture runs.
func (c *captureFlags) openPcap(inv *Invocation) (*safefile.File, error) {
	if c.pcap == "" {
		return nil, nil
	}
	f, err := safefile.Create(c.pcap, safefile.ModePrivate, safefile.ToWriter(inv.Stderr))
	if err != nil {
		return nil, fmt.Errorf("creating the pcap file: %w", err)
	}
	return f, nil
}

// closePcap finishes the pcap file: renamed into place when the capture ran (captured is
// true), removed when it never started. err is the capture's error, returned unless it is nil
// and finishing fails.
func closePcap(f *safefile.File, captured bool, err error) error {
	if f == nil {
		return err
	}
	if !captured {
		f.Abort()
		return err
	}
	if cerr := f.Commit(); cerr != nil && err == nil {
		return fmt.Errorf("writing the pcap file: %w", cerr)
	}
	return err
}

// checkCaptureSizes bounds the sizes a capture takes from its flags: the kernel allocates the
// two rings at once, so an unbounded --buffer has the kernel kill processes for memory.
func checkCaptureSizes(count, snaplen, bufMiB int) error {
	if count < 0 {
		return Usagef("--count %d: want a number of packets, or 0 for no limit", count)
	}
	if err := checkRange("snaplen", snaplen, 1, kernel.MaxSnapLen, "bytes"); err != nil {
		return err
	}
	if err := checkRange("buffer", bufMiB, 1, kernel.MaxCaptureBuffer>>20, "MiB"); err != nil {
		return err
	}
	if err := kernel.CheckCaptureMemory(bufMiB << 20); err != nil {
		return Usagef("--buffer %d: %v", bufMiB, err)
	}
	return nil
}

// capabilityHint adds what still works to a missing-capability error.
func capabilityHint(err error) error {
	var ce *kernel.CapabilityError
	if errors.As(err, &ce) {
		return fmt.Errorf("%w; without it, trace, show and doctor still work", err)
	}
	return err
}

// eventPrinter writes capture events: one JSON object per line, or one text line each.
// Output is buffered and flushed twenty times a second (and at the end), and packet lines
// are built without fmt into one reused buffer: at a few hundred thousand packets a second a
// write(2) and fmt per line cost more than everything else capture does, and the kernel
// dropped what the printer could not keep up with (BENCHMARKS.md, capture).
type eventPrinter struct {
	inv  *Invocation
	mu   sync.Mutex // the flusher against emit
	out  *bufio.Writer
	enc  *json.Encoder
	line []byte
	err  error // the first write error: the capture stops with it
	done chan struct{}
	wg   sync.WaitGroup
}

// printerFlush is how often buffered output is written out while events come.
const printerFlush = 50 * time.Millisecond

// newEventPrinter starts a printer; close flushes it and stops its flusher.
func newEventPrinter(inv *Invocation) *eventPrinter {
	p := &eventPrinter{inv: inv, out: bufio.NewWriterSize(inv.Stdout, 64<<10), done: make(chan struct{})}
	p.enc = json.NewEncoder(p.out)
	p.wg.Go(func() {
		t := time.NewTicker(printerFlush)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				p.mu.Lock()
				if p.out.Buffered() > 0 && p.err == nil {
					p.err = p.out.Flush()
				}
				p.mu.Unlock()
			}
		}
	})
	return p
}

// close stops the flusher and writes out what is buffered.
func (p *eventPrinter) close() error {
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = p.out.Flush()
	}
	return p.err
}

func (p *eventPrinter) emit(ev diagnose.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	if p.inv.JSON {
		p.err = p.enc.Encode(ev)
		return p.err
	}
	w := p.out
	var err error
	switch ev.Type {
	case diagnose.EventPacket:
		p.line = appendPacketLine(p.line[:0], ev.Packet)
		_, err = w.Write(p.line)
	case diagnose.EventFinding:
		// Findings are rare and what the person waits for: written out at once.
		ev.Finding.Render(w)
		err = w.Flush()
	case diagnose.EventConntrack:
		_, err = quote.TermFprintf(w, "%s conntrack %-7s [conn %d] %s\n", ev.Time.Format("15:04:05.000000"), ev.Conntrack.Type, ev.Conn, diagnose.EntryLine(&ev.Conntrack.Entry))
	case diagnose.EventDrop:
		// A drop and a rule step can come with every packet of a flow: built as packet
		// lines are.
		p.line = appendDropLine(p.line[:0], ev)
		_, err = w.Write(p.line)
	case diagnose.EventRule:
		p.line = appendKernelLine(p.line[:0], ev, "rule      ", ev.Rule.String())
		_, err = w.Write(p.line)
	case diagnose.EventNotice:
		// Standard error is not buffered: what was printed before the notice goes first.
		if err = w.Flush(); err == nil {
			_, err = quote.TermFprintf(p.inv.Stderr, "roundtrip: %s\n", ev.Notice)
		}
	}
	p.err = err
	return err
}

// appendPacketLine appends a packet's text line: the packet, its connection and role.
func appendPacketLine(b []byte, pk *diagnose.Packet) []byte {
	b = pk.AppendLine(b)
	if pk.Conn != 0 {
		b = append(b, "  [conn "...)
		b = strconv.AppendInt(b, int64(pk.Conn), 10)
		b = append(b, ' ')
		b = append(b, quote.Term(pk.Role)...)
		b = append(b, ']')
	}
	return append(b, '\n')
}

// appendKernelLine appends "TIME KIND[conn N] TEXT\n", TEXT escaped for a terminal.
func appendKernelLine(b []byte, ev diagnose.Event, kind, text string) []byte {
	b = ev.Time.AppendFormat(b, "15:04:05.000000")
	b = append(b, ' ')
	b = append(b, kind...)
	b = append(b, "[conn "...)
	b = strconv.AppendInt(b, int64(ev.Conn), 10)
	b = append(b, "] "...)
	b = append(b, quote.Term(text)...)
	return append(b, '\n')
}

// appendDropLine is appendKernelLine of a drop, its text built without fmt and escaped only
// where a name the kernel gave carries a control character (numbers and addresses cannot).
func appendDropLine(b []byte, ev diagnose.Event) []byte {
	d := ev.Drop
	if quote.HasControl(d.Reason) || quote.HasControl(d.Words) || quote.HasControl(d.Iface) ||
		quote.HasControl(d.Location.Symbol) || quote.HasControl(d.Packet.L3) {
		return appendKernelLine(b, ev, "drop      ", d.String())
	}
	b = ev.Time.AppendFormat(b, "15:04:05.000000")
	b = append(b, " drop      [conn "...)
	b = strconv.AppendInt(b, int64(ev.Conn), 10)
	b = append(b, "] "...)
	b = d.AppendText(b)
	return append(b, '\n')
}

// final writes the closing JSON object and flushes.
func (p *eventPrinter) final(kind string, v any) error {
	if err := p.close(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.enc.Encode(map[string]any{"type": kind, kind: v}); err != nil {
		return err
	}
	return p.out.Flush()
}

// CaptureOptions are the options of one run of roundtrip capture: fresh for every run.
type CaptureOptions struct {
	*Invocation
	cf       captureFlags
	filter   string
	duration time.Duration
	count    int
	snaplen  int
	bufMiB   int
	noKernel bool
}

// NewCmdCapture returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdCapture(f *Factory, runF func(*CaptureOptions) error) *Command {
	opts := &CaptureOptions{}
	return &Command{
		Name:    "capture",
		Usage:   "[--iface LIST] [--filter EXPR | EXPR] [--duration D] [--count N] [--pcap FILE] [--json]",
		Summary: "watch packets on every interface, tie them together across NAT, say what goes wrong",
		Help: `Captures packets on all interfaces (or --iface LIST) at once, each with the
interface it was seen on and its direction (in or out), and ties them into
connections: across interfaces, and across NAT by the host's conntrack entries, so
that both sides of a NAT box line up. As it goes it reports, with the packets as
evidence:
  asymmetric-return    a request came in on one NIC and its reply left by another
  reply-not-seen       a request was forwarded and no reply came back (conntrack UNREPLIED)
  reply-bypasses-nat   a reply came from an address the client never spoke to
  forwarded-not-seen   a packet for another host came in and never left; the trace
                       engine names the cause (forwarding-disabled, rp-filter-drop, ...)
  reset-by-peer        a TCP reset
  retransmits          a segment sent again
  kernel-drop          the kernel dropped a packet of the captured flows and said why
                       (reason, interface, function; for netfilter the rule), with the
                       model's word beside it; model-kernel-disagree where they differ

The filter (--filter, or the words after the flags) is a small tcpdump subset,
compiled to a kernel BPF program: [src|dst] host ADDR, [src|dst] net CIDR,
[src|dst] port N, proto tcp|udp|icmp, tcp, udp, icmp, ip, ip6, joined by "and"
and "or" ("and" binds tighter; no parentheses). A flow as trace takes it,
"tcp 10.0.0.1:5000 10.0.0.2:80", selects that flow both ways.

The capture runs until interrupted, --duration or --count. The kernel's counters
(packets matched, dropped because the ring was full) are always shown at the end,
with the conntrack table's fill level and drop counters. --pcap writes a pcapng
file that Wireshark opens with each packet's interface and direction.
The kernel's drops of the captured packets come from a BPF program on
skb:kfree_skb, filtered in the kernel to this namespace and the filter's flows; with a
filter of hosts, ports and protocols a temporary nf_tables trace table also names the
rules they meet (removed at the end; rollback removes one a killed run left).
Both cost work for every packet of the flow, in the kernel as well: on a busy link
--no-kernel-word captures as tcpdump does.
--json prints one JSON object per line: {"type":"packet"|"finding"|"conntrack"|
"drop"|"rule"|"notice", ...}, then {"type":"summary", ...}.

Needs root or CAP_NET_RAW (and CAP_NET_ADMIN for conntrack). Exit status 3 when a
problem of severity error was found.

Examples:
  roundtrip capture tcp and port 80
  roundtrip capture --iface eth0,em1 --filter "host 198.51.100.7" --pcap case.pcapng
  roundtrip capture --filter "tcp 198.51.100.7 192.0.2.10:80" --duration 30s --json`,
		Flags: func(fs *flag.FlagSet) {
			opts.cf.register(fs)
			fs.StringVar(&opts.filter, "filter", "", "capture only packets matching `EXPR` (see above)")
			fs.DurationVar(&opts.duration, "duration", 0, "stop after `D` (e.g. 30s; default: until interrupted)")
			fs.IntVar(&opts.count, "count", 0, "stop after `N` packets")
			fs.IntVar(&opts.snaplen, "snaplen", kernel.DefaultSnapLen, "keep at most `N` bytes of each packet (1-262144)")
			fs.BoolVar(&opts.noKernel, "no-kernel-word", false, "do not watch the kernel's drops nor trace the rules (both cost work for every packet of the flow: for a busy link)")
			fs.IntVar(&opts.bufMiB, "buffer", kernel.DefaultCaptureBuffer>>20, "kernel ring size in `MiB`, for each direction (1-1024; both rings at most half the free memory)")
		},
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			cf, filter, duration, count, snaplen, bufMiB, noKernel := opts.cf, opts.filter, opts.duration, opts.count, opts.snaplen, opts.bufMiB, opts.noKernel
			expr := filter
			if len(inv.Args) > 0 {
				if filter != "" {
					return Usagef("give the filter either with --filter or after the flags, not both")
				}
				expr = strings.Join(inv.Args, " ")
			}
			f, err := kernel.ParseCaptureFilter(expr)
			if err != nil {
				return Usagef("%v", err)
			}
			if err := checkCaptureSizes(count, snaplen, bufMiB); err != nil {
				return err
			}
			pcap, err := cf.openPcap(inv)
			if err != nil {
				return err
			}
			opts := diagnose.CaptureOptions{
				Namespace: inv.Namespace(), Ifaces: cf.ifaceList(), Filter: f, Duration: duration, Count: count,
				SnapLen: snaplen, BufferSize: bufMiB << 20, NoKernelDrops: noKernel,
			}
			if pcap != nil {
				opts.Pcap = pcap
			}
			// As tcpdump's "listening on": from here on no packet is missed (on stderr, so
			// that --json output stays one object per line).
			opts.Ready = func() {
				fmt.Fprintf(inv.Stderr, "roundtrip capture: listening (%s); Ctrl-C to stop\n", captureScope(inv, opts.Ifaces))
			}
			pr := newEventPrinter(inv)
			sum, err := diagnose.Capture(inv.Ctx, opts, pr.emit)
			if perr := pr.close(); err == nil {
				err = perr
			}
			err = closePcap(pcap, sum != nil, err)
			if sum == nil {
				return capabilityHint(err)
			}
			if inv.JSON {
				if perr := pr.final("summary", sum); err == nil {
					err = perr
				}
			} else {
				diagnose.RenderSummary(inv.Stdout, sum)
			}
			if err != nil {
				return err
			}
			if n := sum.Errors(); n > 0 {
				return &FindingsError{Count: n}
			}
			return nil
		},
	}
}

// captureScope names where a capture listens, for its start line.
func captureScope(inv *Invocation, ifaces []string) string {
	where := "every interface"
	if len(ifaces) > 0 {
		where = strings.Join(ifaces, ", ")
	}
	if inv.NetNS != "" {
		where += " of namespace " + inv.NetNS
	}
	return quote.Term(where)
}
