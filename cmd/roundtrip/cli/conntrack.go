package cli

import (
	"bufio"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"roundtrip/diagnose"
	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/model"
	"roundtrip/engine/quote"
)

func init() { RegisterNew(func(f *Factory) *Command { return NewCmdConntrack(f, nil) }) }

// ConntrackOptions are the options of one run of roundtrip conntrack: fresh for every run.
type ConntrackOptions struct {
	*Invocation
	src, dst, addr, proto, mark, state, family string
	port                                       int
	watch                                      bool
}

// NewCmdConntrack returns the command; runF, when not nil, runs instead of it with the options
// parsed (tests check the parsing with it).
func NewCmdConntrack(f *Factory, runF func(*ConntrackOptions) error) *Command {
	opts := &ConntrackOptions{}
	return &Command{
		Name:    "conntrack",
		Usage:   "[--src A] [--dst A] [--addr A] [--proto P] [--port N] [--mark M[/MASK]] [--state S] [--family inet|inet6] [--watch] [--json]",
		Summary: "list or watch connection tracking entries, with NAT and the table's drops",
		Help: `Lists the connection tracking table: for each entry the original tuple (as the
first packet arrived) and the reply tuple (as the answer is expected, after NAT),
what NAT did (DNAT, SNAT), the state, UNREPLIED and ASSURED, the mark and the
time left. First comes the table's fill level (count of max) and the kernel's
drop counters, so a full table shows. The table is streamed: any size is listed
in constant memory. --watch shows new, updated and destroyed entries as they
happen instead.

Filters: --src and --dst match the original tuple's addresses, --addr any address
of either tuple (so a NATed address finds its connections), --port any port,
--proto tcp|udp|icmp|N, --mark VALUE or VALUE/MASK, --family inet|inet6, and
--state a TCP state (ESTABLISHED, SYN_SENT, TIME_WAIT, ...) or a status
(UNREPLIED, ASSURED, SEEN_REPLY, SRC_NAT, DST_NAT, ...).

--json prints one JSON object per line: {"type":"stats",...} then
{"type":"entry",...} (or {"type":"event",...} with --watch).
Without CAP_NET_ADMIN only the count and maximum can be read; they are shown and
the rest is refused with a message. Exit status 3 when the table is full or has
dropped packets.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&opts.src, "src", "", "original source address `A`")
			fs.StringVar(&opts.dst, "dst", "", "original destination address `A`")
			fs.StringVar(&opts.addr, "addr", "", "any address `A` of either tuple")
			fs.StringVar(&opts.proto, "proto", "", "protocol `P` (tcp, udp, icmp or a number)")
			fs.IntVar(&opts.port, "port", 0, "any port `N` of either tuple")
			fs.StringVar(&opts.mark, "mark", "", "connmark `M` or M/MASK (decimal or 0x-hex)")
			fs.StringVar(&opts.state, "state", "", "TCP state or status `S` (ESTABLISHED, UNREPLIED, ASSURED, ...)")
			fs.StringVar(&opts.family, "family", "", "address family `F`: inet or inet6")
			fs.BoolVar(&opts.watch, "watch", false, "show changes as they happen")
		},
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			src, dst, addr, proto, mark, state, family, port, watch := opts.src, opts.dst, opts.addr, opts.proto, opts.mark, opts.state, opts.family, opts.port, opts.watch
			if len(inv.Args) > 0 {
				return Usagef("conntrack takes flags only, got %q", inv.Args[0])
			}
			var f kernel.ConntrackFilter
			for _, a := range []struct {
				flag, val string
				dst       *netip.Addr
			}{{"--src", src, &f.Src}, {"--dst", dst, &f.Dst}, {"--addr", addr, &f.Addr}} {
				if a.val == "" {
					continue
				}
				ip, err := netip.ParseAddr(a.val)
				if err != nil {
					return Usagef("%s %q is not an IP address", a.flag, a.val)
				}
				*a.dst = ip.Unmap()
			}
			if proto != "" {
				p, err := inet.ProtoNumber(proto)
				if err != nil || p == 0 {
					return Usagef("--proto %q: want tcp, udp, icmp or a protocol number 1-255", proto)
				}
				f.Proto = uint8(p)
			}
			if port < 0 || port > 65535 {
				return Usagef("--port %d out of range 1-65535", port)
			}
			f.Port = uint16(port)
			if mark != "" {
				m, err := parseMarkMask(mark)
				if err != nil {
					return err
				}
				f.Mark = m
			}
			if state != "" {
				if s, err := kernel.ParseTCPState(state); err == nil {
					f.TCPState = s
				} else if set, clr, serr := kernel.ParseConntrackStatus(state); serr == nil {
					f.StatusSet, f.StatusClear = set, clr
				} else {
					return Usagef("--state %q is neither a TCP state (ESTABLISHED, SYN_SENT, TIME_WAIT, ...) nor a status (UNREPLIED, ASSURED, SEEN_REPLY, ...)", state)
				}
			}
			switch family {
			case "":
			case "inet", "ipv4", "4":
				f.Family = inet.V4
			case "inet6", "ipv6", "6":
				f.Family = inet.V6
			default:
				return Usagef("--family %q: want inet or inet6", family)
			}
			// A listing of 262k entries is one write(2) per entry unbuffered; --watch must show
			// each event as it happens, so only the listing is buffered.
			out := inv.Stdout
			var buf *bufio.Writer
			if !watch {
				buf = bufio.NewWriterSize(inv.Stdout, 64<<10)
				out = buf
			}
			res, err := diagnose.ListConntrack(inv.Ctx, diagnose.ConntrackOptions{Namespace: inv.Namespace(), Filter: f, Watch: watch, JSON: inv.JSON}, out)
			if buf != nil {
				if ferr := buf.Flush(); err == nil && ferr != nil {
					err = fmt.Errorf("writing the listing: %w", ferr)
				}
			}
			if err != nil {
				return err
			}
			if res.Err != nil {
				return fmt.Errorf("%w; the count and maximum above come from sysctls, which anyone may read", res.Err)
			}
			if !inv.JSON && !watch {
				fmt.Fprintf(inv.Stdout, "%d entries shown\n", res.Entries)
			}
			if p := res.Problem(); p != "" {
				quote.TermFprintf(inv.Stderr, "roundtrip conntrack: %s\n", p)
				return &FindingsError{Count: 1}
			}
			return nil
		},
	}
}

// parseMarkMask reads VALUE or VALUE/MASK, each decimal or 0x-hex.
func parseMarkMask(s string) (*model.MarkMatch, error) {
	v, m, hasMask := strings.Cut(s, "/")
	val, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		return nil, Usagef("--mark %q: %q is not a 32-bit number (decimal or 0x-hex)", s, v)
	}
	mask := uint64(0xffffffff)
	if hasMask {
		if mask, err = strconv.ParseUint(m, 0, 32); err != nil {
			return nil, Usagef("--mark %q: mask %q is not a 32-bit number", s, m)
		}
	}
	return &model.MarkMatch{Value: uint32(val), Mask: uint32(mask)}, nil
}
