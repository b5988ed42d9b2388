package kernel_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// loadHost is a namespace with a link d0 (10.77.0.1/24) whose peer 10.77.0.2 is the gateway of
// the routes loaded into table 200.
func loadHost(t *testing.T, name string) (*lab.NS, *kernel.Applier) {
	t.Helper()
	l := lab.New(t)
	ns := l.NS(name)
	ns.IP("link", "add", "d0", "type", "veth", "peer", "name", "d1")
	ns.IP("link", "set", "d0", "up")
	ns.IP("link", "set", "d1", "up")
	ns.Addr("d0", "10.77.0.1/24")
	t.Setenv(kernel.StateDirEnv, t.TempDir())
	return ns, &kernel.Applier{NS: kernel.Namespace{Name: ns.Name}, RTTablesDirs: []string{t.TempDir()}}
}

// routeList is a plan of n distinct /24 routes into table 200 via 10.77.0.2.
func routeList(n int) *plan.Plan {
	p := plan.New(fmt.Sprintf("%d routes", n))
	for i := range n {
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(11 + i>>16), byte(i >> 8), byte(i), 0}), 24)
		p.Changes = append(p.Changes, plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd,
			Route: &model.Route{Family: inet.V4, Table: 200, Dst: dst, Gateway: netip.MustParseAddr("10.77.0.2"), Dev: "d0"}})
	}
	return p
}

// table200 lists table 200 as `ip -j route show table 200` sees it: "DST via GW dev DEV".
func table200(t *testing.T, ns *lab.NS) []string {
	t.Helper()
	out, err := ns.Try("ip", "-j", "route", "show", "table", "200")
	if err != nil {
		if strings.Contains(out, "does not exist") {
			return nil
		}
		t.Fatalf("ip route show: %v: %s", err, out)
	}
	var routes []struct{ Dst, Gateway, Dev string }
	if err := json.Unmarshal([]byte(out), &routes); err != nil {
		t.Fatalf("ip -j route: %v", err)
	}
	var lines []string
	for _, r := range routes {
		lines = append(lines, fmt.Sprintf("%s via %s dev %s", r.Dst, r.Gateway, r.Dev))
	}
	slices.Sort(lines)
	return lines
}

func planLines(p *plan.Plan) []string {
	var lines []string
	for _, c := range p.Changes {
		lines = append(lines, fmt.Sprintf("%s via %s dev %s", c.Route.Dst, c.Route.Gateway, c.Route.Dev))
	}
	slices.Sort(lines)
	return lines
}

// TestPrivilegedPipelineLoad loads 100k routes through the pipelined batches and compares the
// table with iproute2's view of it; the rollback empties it again.
func TestPrivilegedPipelineLoad(t *testing.T) {
	ns, a := loadHost(t, "pl")
	p := routeList(100000)
	res, err := a.Apply(context.Background(), p, kernel.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Drift) > 0 {
		t.Errorf("drift: %v", res.Drift[:min(len(res.Drift), 5)])
	}
	if got, want := table200(t, ns), planLines(p); !slices.Equal(got, want) {
		t.Fatalf("ip route shows %d routes, the plan has %d (first: %v / %v)", len(got), len(want), got[:min(3, len(got))], want[:3])
	}
	if res.Journal.Steps != (100000+kernel.DefaultBatchSize-1)/kernel.DefaultBatchSize {
		t.Errorf("%d steps for 100000 routes", res.Journal.Steps)
	}
	if _, err := a.Rollback(context.Background(), "", "test"); err != nil {
		t.Fatal(err)
	}
	if got := table200(t, ns); len(got) != 0 {
		t.Fatalf("%d routes left after the rollback", len(got))
	}
}

// TestPrivilegedPipelineErrorMidBatch: the kernel refuses a route in the middle of a batch
// (another program added it just before); the error names that change of the plan, the routes
// of the batch that went in are undone, and the other program's route stays.
func TestPrivilegedPipelineErrorMidBatch(t *testing.T) {
	ns, a := loadHost(t, "pe")
	p := routeList(300)
	a.BatchSize = 1000
	theirs := p.Changes[149].Route.Dst.String()
	a.BeforeStep = func(int, kernel.Step) error {
		ns.IP("route", "add", theirs, "via", "10.77.0.3", "dev", "d0", "table", "200")
		return nil
	}
	_, err := a.Apply(context.Background(), p, kernel.ApplyOptions{})
	if !errors.Is(err, unix.EEXIST) || !strings.Contains(err.Error(), "change 150 of the plan (ip -4 route add "+theirs+" via 10.77.0.2") {
		t.Fatalf("apply: %v", err)
	}
	if got := table200(t, ns); !slices.Equal(got, []string{theirs + " via 10.77.0.3 dev d0"}) {
		t.Fatalf("after the failed apply, table 200 holds %d routes (want only the other program's): %v", len(got), got[:min(5, len(got))])
	}
}

// TestPrivilegedPipelineLinkGoneMidBatch: a route whose device went away between planning and
// sending fails alone, tied to its change; the batch is undone.
func TestPrivilegedPipelineLinkGoneMidBatch(t *testing.T) {
	ns, a := loadHost(t, "pg")
	ns.IP("link", "add", "g0", "type", "veth", "peer", "name", "g1")
	ns.IP("link", "set", "g0", "up")
	ns.Addr("g0", "10.78.0.1/24")
	p := routeList(100)
	p.Changes[60].Route.Gateway, p.Changes[60].Route.Dev = netip.MustParseAddr("10.78.0.2"), "g0"
	a.BeforeStep = func(int, kernel.Step) error {
		ns.IP("link", "del", "g0")
		return nil
	}
	_, err := a.Apply(context.Background(), p, kernel.ApplyOptions{})
	if !errors.Is(err, unix.ENODEV) || !strings.Contains(err.Error(), "change 61 of the plan") {
		t.Fatalf("apply: %v", err)
	}
	if got := table200(t, ns); len(got) != 0 {
		t.Fatalf("%d routes left: %v", len(got), got[:min(3, len(got))])
	}
}

// TestPrivilegedDumpMatchesReader: the routes the drift check decodes from its own dump are the
// routes kernel.Read reads through the netlink library, for every kind the model has.
func TestPrivilegedDumpMatchesReader(t *testing.T) {
	l := lab.New(t)
	h := newApplyHost(t, l, "dm")
	a := h.ns
	a.IP("route", "add", "10.60.0.0/16", "table", "300", "nexthop", "via", "10.88.0.2", "dev", "a0", "weight", "2", "nexthop", "via", "10.88.0.3", "dev", "a0")
	a.IP("route", "add", "blackhole", "10.61.0.0/16", "table", "300", "metric", "7")
	a.IP("route", "add", "10.62.0.0/16", "via", "10.99.0.9", "dev", "a0", "onlink", "table", "300", "proto", "bird", "tos", "0x10")
	a.IP("route", "add", "10.63.0.0/16", "dev", "a0", "src", "10.88.0.1", "table", "300", "scope", "link")
	a.IP("-6", "route", "add", "2001:db8:5::/48", "via", "fe80::1", "dev", "a0", "table", "300")
	a.IP("-6", "route", "add", "unreachable", "2001:db8:6::/48", "table", "300")
	st := h.read(t)
	host, err := kernel.OpenHost(kernel.Namespace{Name: a.Name}, []string{h.tables})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	names := map[int]string{}
	for _, l := range st.Links {
		names[l.Index] = l.Name
	}
	for _, fam := range []inet.Family{inet.V4, inet.V6} {
		var dumped []model.Route
		if err := host.EachRoute(context.Background(), fam, 0, names, func(r model.Route) { dumped = append(dumped, r) }); err != nil {
			t.Fatal(err)
		}
		var read []model.Route
		for _, r := range st.Routes {
			if r.Family == fam {
				read = append(read, r)
			}
		}
		str := func(rs []model.Route) []string {
			var out []string
			for _, r := range rs {
				b, _ := json.Marshal(r)
				out = append(out, string(b))
			}
			slices.Sort(out)
			return out
		}
		if d, r := str(dumped), str(read); !slices.Equal(d, r) {
			t.Errorf("%s: the dump and kernel.Read disagree:\ndump %s\nread %s", fam, strings.Join(d, "\n     "), strings.Join(r, "\n     "))
		}
	}
}

// TestPrivilegedDiskFull puts the journals on a small tmpfs filled to a different level each
// time, so that the disk fills up while the steps, the head or the events are written: the
// apply either goes through or leaves the host as it was, and once there is room again,
// history reads and the next apply works.
func TestPrivilegedDiskFull(t *testing.T) {
	lab.Require(t)
	ns, a := loadHost(t, "df")
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v: %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	t.Setenv(kernel.StateDirEnv, dir)
	a.BatchSize = 50
	p := routeList(2000)
	want := planLines(p)
	store, err := kernel.OpenStore(a.NS)
	if err != nil {
		t.Fatal(err)
	}
	a.Store = store
	filler := filepath.Join(dir, "filler")
	var st syscall.Statfs_t
	failed, applied := 0, 0
	for free := int64(0); free <= 128<<10; free += 4 << 10 {
		os.Remove(filler)
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		fill := int64(st.Bavail)*int64(st.Bsize) - free
		if err := os.WriteFile(filler, make([]byte, max(fill, 0)), 0o600); err != nil && !errors.Is(err, syscall.ENOSPC) {
			t.Fatal(err)
		}
		_, err := a.Apply(context.Background(), p, kernel.ApplyOptions{})
		got := table200(t, ns)
		switch {
		case err != nil:
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("%d bytes free: %v", free, err)
			}
			if len(got) != 0 {
				t.Fatalf("%d bytes free: a failed apply left %d routes: %v", free, len(got), err)
			}
			failed++
		default:
			if !slices.Equal(got, want) {
				t.Fatalf("%d bytes free: applied, but table 200 has %d routes", free, len(got))
			}
			applied++
		}
		os.Remove(filler)
		if _, err := store.List(); err != nil {
			t.Fatalf("%d bytes free: history once there is room: %v", free, err)
		}
		if err == nil {
			if _, err := a.Rollback(context.Background(), "", "test"); err != nil {
				t.Fatalf("%d bytes free: rollback once there is room: %v", free, err)
			}
		}
		if _, err := a.Apply(context.Background(), p, kernel.ApplyOptions{}); err != nil {
			t.Fatalf("%d bytes free: the next apply: %v", free, err)
		}
		if _, err := a.Rollback(context.Background(), "", "test"); err != nil {
			t.Fatal(err)
		}
		// Old journals take room: start each level from an empty directory.
		entries, _ := os.ReadDir(store.Dir)
		for _, e := range entries {
			if e.Name() != "lock" {
				os.Remove(filepath.Join(store.Dir, e.Name()))
			}
		}
	}
	if failed == 0 || applied == 0 {
		t.Fatalf("%d applies failed and %d went through: the levels do not cover the disk filling up during an apply", failed, applied)
	}
}
