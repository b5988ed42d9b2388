package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/vishvananda/netns"
)

// fillConntrack creates n UDP entries in the namespace's conntrack table through ctnetlink
// (the fastest way: no packets, one request per entry, two sockets in parallel). They look like
// a NAT gateway's: LAN clients 10.97.x.y talking to servers 10.96.x.y, every other one
// source-NATed to 10.95.0.1, with an hour to live. They are UNREPLIED: ctnetlink refuses
// status bits on create through this library (EBUSY). The namespace holds them; deleting it
// deletes them.
func (b *bench) fillConntrack(ns string, n int) (time.Duration, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return 0, fmt.Errorf("opening namespace %s: %w", ns, err)
	}
	defer h.Close()
	start := time.Now()
	const workers = 2
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			c, err := conntrack.Dial(&netlink.Config{NetNS: int(h)})
			if err != nil {
				errs[w] = fmt.Errorf("opening ctnetlink in %s: %w", ns, err)
				return
			}
			defer c.Close()
			for i := w; i < n; i += workers {
				if b.ctx.Err() != nil {
					errs[w] = b.ctx.Err()
					return
				}
				src := netip.AddrFrom4([4]byte{10, 97, byte(i >> 16), byte(i >> 8)})
				dst := netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})
				sport := uint16(1024 + i%60000)
				f := conntrack.NewFlow(17, 0, src, dst, sport, 53, 3600, 0)
				if i%2 == 1 {
					f.TupleReply.IP.DestinationAddress = netip.MustParseAddr("10.95.0.1")
					f.TupleReply.Proto.DestinationPort = uint16(20000 + i%40000)
				}
				if err := c.Create(f); err != nil {
					errs[w] = fmt.Errorf("creating conntrack entry %d of %d in %s: %w", i+1, n, ns, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// benchConntrack lists a table of n entries with roundtrip (text and JSON) and conntrack -L,
// each writing to a file, and checks that each listed every entry.
func (b *bench) benchConntrack(r *report, n int, profile string) error {
	ns, err := b.newNS("ct")
	if err != nil {
		return err
	}
	defer b.delNS(ns)
	b.logf("conntrack: filling %d entries", n)
	fillT, err := b.fillConntrack(ns, n)
	if err != nil {
		return err
	}
	b.logf("  filled in %.1fs", fillT.Seconds())
	outFile := func(name string) string { return filepath.Join(b.work, "conntrack-"+name+".out") }
	methods := []namedChild{
		// A full table (count = nf_conntrack_max) makes roundtrip exit 3: a finding, not a failure.
		{"roundtrip conntrack", child{Args: []string{b.bin, "conntrack", "--netns", ns}, Stdout: outFile("rt"), OKExit: []int{3}}},
		{"roundtrip conntrack --json", child{Args: []string{b.bin, "conntrack", "--netns", ns, "--json"}, Stdout: outFile("rtjson"), OKExit: []int{3}}},
		{"conntrack -L", child{Args: []string{"ip", "netns", "exec", ns, "conntrack", "-L"}, Stdout: outFile("ct")}},
	}
	// Lines per entry in each output, and lines besides them.
	extra := []int{-1, 1, 0} // text: checked by its "N entries shown" line instead
	res := make([]series, len(methods))
	for run := range b.runs {
		for k := range methods {
			i := (k + run) % len(methods)
			b.logf("conntrack: %s (run %d)", methods[i].Name, run+1)
			m, err := b.measure(methods[i].child)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(methods[i].Stdout)
			if err != nil {
				return err
			}
			if extra[i] >= 0 {
				if got := bytes.Count(data, []byte("\n")) - extra[i]; got != n {
					return fmt.Errorf("%s listed %d entries of %d", methods[i].Name, got, n)
				}
			} else if !bytes.Contains(data, fmt.Appendf(nil, "\n%d entries shown", n)) {
				return fmt.Errorf("%s did not list %d entries: %s", methods[i].Name, n, tail(string(data), 300))
			}
			b.logf("  %.2fs, %s", m.Wall.Seconds(), mib(m.MaxRSS))
			res[i] = append(res[i], m)
		}
	}
	sec := r.section(fmt.Sprintf("Conntrack table of %d entries", n),
		fmt.Sprintf("A namespace's table is filled through ctnetlink (%.1f s; UDP entries of a NAT gateway, half of them source-NATed, all unreplied), "+
			"then listed by each tool into a file. roundtrip streams the dump (one entry decoded and printed at a time).", fillT.Seconds()))
	sec.table("method", "median time", "peak RSS", "CPU (user+sys)", "time vs conntrack -L")
	base := res[2].wall()
	for i, m := range methods {
		sec.row("`"+m.Name+"`", secs(res[i].wall()), mib(int64(res[i].rss())), cpu(res[i].cpu()), ratio(res[i].wall(), base))
	}
	sec.cmds("roundtrip conntrack --netns NS [--json] > file", "ip netns exec NS conntrack -L > file")
	r.verdict(fmt.Sprintf("conntrack %d listed", n), "≤ 1.1× conntrack -L", res[0].wall()/base, 1.1, "×")
	r.verdict(fmt.Sprintf("conntrack %d listed, peak RSS", n), "≤ 200 MB", res[0].rss()/1e6, 200, " MB")
	for _, name := range []string{"rt", "rtjson", "ct"} {
		os.Remove(outFile(name))
	}
	if profile != "" {
		return b.profileConntrack(profile, ns)
	}
	return nil
}
