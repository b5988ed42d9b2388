// Command nftread-bench measures reading a large nftables ruleset with engine/kernel/nftread
// against `nft -j list ruleset`: time and peak RSS, in a namespace it builds and deletes.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"roundtrip/engine/kernel"
	"roundtrip/engine/kernel/nftread"
)

func main() {
	child := flag.String("child", "", "internal: run one measured read (read, snapshot) in the current namespace")
	rules := flag.Int("rules", 10000, "rules in the ruleset")
	elems := flag.Int("elements", 100000, "intervals in the big set")
	runs := flag.Int("runs", 3, "runs per method (the median is reported)")
	profile := flag.String("cpuprofile", "", "with -child: write a CPU profile")
	keep := flag.String("keep", "", "load the ruleset into this existing namespace and leave it (for profiling)")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if *keep != "" {
		cmd := exec.Command("ip", "netns", "exec", *keep, "nft", "-f", "-")
		cmd.Stdin = bytes.NewReader(ruleset(*rules, *elems))
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "nftread-bench: %v: %s\n", err, out)
			os.Exit(1)
		}
		return
	}
	if *child != "" {
		if err := runChild(*child); err != nil {
			pprof.StopCPUProfile()
			fmt.Fprintln(os.Stderr, "nftread-bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*rules, *elems, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "nftread-bench:", err)
		os.Exit(1)
	}
}

// runChild is one measured read: the ruleset through netlink, rendered; with "snapshot" also
// validated and encoded as JSON, as a snapshot would hold it.
func runChild(mode string) error {
	rs, err := nftread.Read(context.Background(), kernel.Namespace{}, nftread.Options{})
	if err != nil {
		return err
	}
	n, e := 0, 0
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			n += len(c.Rules)
		}
		for _, s := range t.Sets {
			e += len(s.Elements)
		}
	}
	if mode == "snapshot" {
		if err := rs.Validate(); err != nil {
			return err
		}
		b, err := json.Marshal(rs)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "json %d bytes\n", len(b))
	}
	fmt.Fprintf(os.Stderr, "%d rules, %d elements\n", n, e)
	return nil
}

type measurement struct {
	wall     time.Duration
	rssKiB   int64
	cpu      time.Duration
	outBytes int
}

func run(nrules, nelems, runs int) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the benchmark builds a network namespace")
	}
	gnuTime, err := exec.LookPath("time")
	if _, statErr := os.Stat("/usr/bin/time"); statErr == nil {
		gnuTime, err = "/usr/bin/time", nil
	}
	if err != nil {
		return fmt.Errorf("GNU time is needed for peak RSS (apt-get install time)")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ns := fmt.Sprintf("rtnftbench%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	dir, err := os.MkdirTemp("", "nftread-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "ruleset.nft")
	if err := os.WriteFile(file, ruleset(nrules, nelems), 0o600); err != nil {
		return err
	}
	start := time.Now()
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-f", file).CombinedOutput(); err != nil {
		return fmt.Errorf("loading the ruleset: %v: %s", err, out)
	}
	load := time.Since(start)
	methods := []struct {
		name string
		args []string
	}{
		{"nftread.Read (netlink, rendered)", []string{"ip", "netns", "exec", ns, self, "-child", "read"}},
		{"nftread.Read + Validate + JSON", []string{"ip", "netns", "exec", ns, self, "-child", "snapshot"}},
		{"nft -j list ruleset", []string{"ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"}},
		{"nft list ruleset", []string{"ip", "netns", "exec", ns, "nft", "list", "ruleset"}},
	}
	results := make([][]measurement, len(methods))
	for r := 0; r < runs; r++ {
		for k := range methods {
			i := (k + r) % len(methods) // take turns so no method always runs first
			m, err := measure(gnuTime, dir, methods[i].args)
			if err != nil {
				return fmt.Errorf("%s: %w", methods[i].name, err)
			}
			results[i] = append(results[i], m)
		}
	}
	load1, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("ruleset: %d rules in 11 chains, one interval set of %d elements; loaded by nft -f in %s\n", nrules, nelems, load.Round(time.Millisecond))
	fmt.Printf("load average: %s\n", strings.TrimSpace(string(load1)))
	fmt.Printf("| method | median time | peak RSS | CPU (user+sys) | output | runs |\n| --- | --- | --- | --- | --- | --- |\n")
	for i, m := range methods {
		med := median(results[i])
		out := "-"
		if med.outBytes > 0 {
			out = fmt.Sprintf("%.1f MB", float64(med.outBytes)/1e6)
		}
		fmt.Printf("| %s | %s | %.1f MiB | %s | %s | %d |\n", m.name, med.wall.Round(time.Millisecond), float64(med.rssKiB)/1024, med.cpu.Round(time.Millisecond), out, runs)
	}
	return nil
}

func measure(gnuTime, dir string, args []string) (measurement, error) {
	tf := filepath.Join(dir, "time.txt")
	cmd := exec.Command(gnuTime, append([]string{"-f", "%M %U %S", "-o", tf, "--"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return measurement{}, fmt.Errorf("%v: %s", err, errb.String())
	}
	wall := time.Since(start)
	data, err := os.ReadFile(tf)
	if err != nil {
		return measurement{}, err
	}
	var kb int64
	var user, sys float64
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if _, err := fmt.Sscanf(lines[len(lines)-1], "%d %f %f", &kb, &user, &sys); err != nil {
		return measurement{}, fmt.Errorf("reading GNU time's report %q: %w", data, err)
	}
	return measurement{wall: wall, rssKiB: kb, cpu: time.Duration((user + sys) * float64(time.Second)), outBytes: out.Len()}, nil
}

func median(ms []measurement) measurement {
	sorted := append([]measurement(nil), ms...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].wall < sorted[j].wall })
	return sorted[len(sorted)/2]
}

// ruleset writes the benchmark ruleset: a forward chain that jumps to ten chains of rules of
// the usual kinds (addresses, ports, interfaces, marks, sets, counters), and a set of
// non-adjacent /30 intervals (each a start and an end element in the kernel).
func ruleset(nrules, nelems int) []byte {
	var b bytes.Buffer
	b.WriteString("table inet bench {\n\tset big {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { ")
	for i := 0; i < nelems; i++ {
		a := uint32(10<<24) + uint32(i)*8
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d.%d.%d.%d/30", a>>24, a>>16&0xff, a>>8&0xff, a&0xff)
	}
	b.WriteString(" }\n\t}\n\n")
	per := nrules / 10
	for c := 0; c < 10; c++ {
		fmt.Fprintf(&b, "\tchain c%d {\n", c)
		for i := 0; i < per; i++ {
			n := c*per + i
			switch n % 5 {
			case 0:
				fmt.Fprintf(&b, "\t\tip saddr 172.%d.%d.0/24 tcp dport %d counter accept\n", 16+n%16, n/16%256, 1024+n%60000)
			case 1:
				fmt.Fprintf(&b, "\t\tiifname \"eth%d\" ip daddr 192.168.%d.%d udp dport { 53, %d } counter drop\n", n%64, n/256%256, n%256, 1000+n%50000)
			case 2:
				fmt.Fprintf(&b, "\t\tmeta mark 0x%08x ct state established,related counter accept\n", n)
			case 3:
				fmt.Fprintf(&b, "\t\tip saddr @big tcp dport %d-%d meta mark set 0x%x counter\n", n%30000, n%30000+10, n)
			case 4:
				fmt.Fprintf(&b, "\t\tip6 saddr 2001:db8:%x::/48 tcp dport %d counter reject\n", n, n%60000)
			}
		}
		b.WriteString("\t}\n\n")
	}
	b.WriteString("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n")
	for c := 0; c < 10; c++ {
		fmt.Fprintf(&b, "\t\tjump c%d\n", c)
	}
	b.WriteString("\t}\n}\n")
	return b.Bytes()
}
