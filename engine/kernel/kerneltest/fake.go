// Package kerneltest provides a fake kernel.Host, a model.State that the change engine can
// apply to, roll back and fail in without root, as tailscale's router tests and linuxfw fake do.
package kerneltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/kernel"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

// Fake is a kernel.Host backed by a model.State. Each operation changes the state as the
// kernel would (through plan.ApplyChange, the model the planner's Expect uses) and fails as
// the kernel would: adding what exists, deleting what does not, a route via a gateway that is
// not on-link, a device that is not there. It refuses what it does not model (link kinds other
// than tunnels, sysctls it does not have, iptables-restore lines it does not know, files other
// than the table names file) rather than pretending. It writes every operation to Log in the ip
// and iptables syntax the renderer emits, and prints its state the same way (String).
type Fake struct {
	mu    sync.Mutex
	state *model.State
	// TablesFile is the table names file the Applier writes (Applier.RTTablesDirs[0] +
	// plan.RTTablesFile); BaseTables are the names from elsewhere.
	TablesFile string
	BaseTables map[int]string
	files      map[string][]byte

	// Fail, when set, is asked before every operation (each route or rule of a batch is one);
	// an error fails that operation and changes nothing.
	Fail func(op Op) error
	// After, when set, is called after every operation that changed the state.
	After func(op Op)
	// Log holds one line per operation.
	Log []string
	ops int

	// nftTable is roundtrip's own nft table (nil: none), see nft.go; NFTLoaded holds the
	// scripts NFTLoad loaded, in order.
	nftTable  *fakeNFTTable
	NFTLoaded []string
}

// Op is one operation: its number (from 1, in the order made) and what it was.
type Op struct {
	N    int
	Kind string // "link", "addr", "route", "rule", "sysctl", "restore", "conntrack", "file"
	Line string // in ip/iptables syntax
}

// New returns a Fake holding a copy of st.
func New(st *model.State, tablesFile string) *Fake {
	f := &Fake{state: st.Clone(), TablesFile: tablesFile, BaseTables: map[int]string{}, files: map[string][]byte{}}
	for id, n := range st.TableNames {
		f.BaseTables[id] = n
	}
	return f
}

// State returns a copy of the fake's state.
func (f *Fake) State() *model.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.Clone()
}

// Files returns a copy of the files the fake holds.
func (f *Fake) Files() map[string][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range f.files {
		out[k] = bytes.Clone(v)
	}
	return out
}

// SetFiles replaces the fake's files (a copy of another fake's, to restart from its world).
func (f *Fake) SetFiles(files map[string][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files = map[string][]byte{}
	for k, v := range files {
		f.files[k] = bytes.Clone(v)
	}
	f.reloadTables()
}

// String prints the state as ip and iptables lines.
func (f *Fake) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.String()
}

// op runs one operation: asks Fail, applies change (which may refuse), logs, calls After.
func (f *Fake) op(kind, line string, change func() error) error {
	f.mu.Lock()
	f.ops++
	op := Op{N: f.ops, Kind: kind, Line: line}
	failFn := f.Fail
	f.mu.Unlock()
	if failFn != nil {
		if err := failFn(op); err != nil {
			f.mu.Lock()
			f.Log = append(f.Log, "# failed: "+line+": "+err.Error())
			f.mu.Unlock()
			return err
		}
	}
	f.mu.Lock()
	err := change()
	if err != nil {
		f.Log = append(f.Log, "# refused: "+line+": "+err.Error())
		f.mu.Unlock()
		return err
	}
	f.Log = append(f.Log, line)
	after := f.After
	f.mu.Unlock()
	if after != nil {
		after(op)
	}
	return nil
}

// Close implements kernel.Host.
func (f *Fake) Close() error { return nil }

// ReadState implements kernel.Host.
func (f *Fake) ReadState(_ context.Context, what kernel.ReadWhat) (*model.State, error) {
	st := f.State()
	if what.NoRoutes {
		st.Routes = nil
	}
	if what.NoNetfilter {
		st.Netfilter = iptables.Ruleset{}
	} else {
		f.mu.Lock()
		st.Nftables = f.nftRuleset(st.Nftables)
		f.mu.Unlock()
	}
	return st, nil
}

// EachRoute implements kernel.Host.
func (f *Fake) EachRoute(ctx context.Context, fam inet.Family, table int, names map[int]string, fn func(model.Route)) error {
	for _, r := range f.State().Routes {
		if r.Family == fam && (table == 0 || r.Table == table) {
			fn(r)
		}
	}
	return ctx.Err()
}

// ReadSysctl implements kernel.Host.
func (f *Fake) ReadSysctl(key string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.state.Sysctls[key]
	if !ok {
		return "", fmt.Errorf("sysctl %s: %w", key, fs.ErrNotExist)
	}
	return v, nil
}

// WriteSysctl implements kernel.Host: only sysctls the state has, or those of a link that
// exists (the kernel makes them with the link), can be written.
func (f *Fake) WriteSysctl(key, value string) error {
	return f.op("sysctl", "sysctl -w "+key+"="+value, func() error {
		_, ok := f.state.Sysctls[key]
		if iface, perLink := model.SysctlIface(key); !ok && !(perLink && f.state.LinkByName(iface) != nil) {
			return fmt.Errorf("sysctl %s: %w", key, fs.ErrNotExist)
		}
		f.state.Sysctls[key] = value
		return nil
	})
}

// LinkExists implements kernel.Host.
func (f *Fake) LinkExists(name string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.LinkByName(name) != nil, nil
}

var tunnelKinds = []string{"vxlan", "ipip", "gre", "gretap", "sit"}

// LinkAdd implements kernel.Host.
func (f *Fake) LinkAdd(l model.Link) error {
	return f.op("link", "ip link add "+l.Name+" type "+l.Kind, func() error {
		if !slices.Contains(tunnelKinds, l.Kind) {
			return fmt.Errorf("the fake does not create %s links", l.Kind)
		}
		if f.state.LinkByName(l.Name) != nil {
			return fmt.Errorf("link %s: %w", l.Name, unix.EEXIST)
		}
		if l.Tunnel != nil && l.Tunnel.Dev != "" && f.state.LinkByName(l.Tunnel.Dev) == nil {
			return fmt.Errorf("link %s: %w", l.Tunnel.Dev, unix.ENODEV)
		}
		nl := l
		nl.Up, nl.Addrs = false, nil
		plan.ApplyChange(f.state, plan.Change{Kind: plan.KindLink, Op: plan.OpAdd, Link: &nl})
		return nil
	})
}

// LinkSet implements kernel.Host.
func (f *Fake) LinkSet(l model.Link) error {
	state := "down"
	if l.Up {
		state = "up"
	}
	return f.op("link", fmt.Sprintf("ip link set %s %s mtu %d master %q", l.Name, state, l.MTU, l.Master), func() error {
		cur := f.state.LinkByName(l.Name)
		if cur == nil {
			return fmt.Errorf("link %s: %w", l.Name, unix.ENODEV)
		}
		if l.Master != "" && f.state.LinkByName(l.Master) == nil {
			return fmt.Errorf("link %s: %w", l.Master, unix.ENODEV)
		}
		set := model.Link{Name: l.Name, Kind: cur.Kind, Up: l.Up, MTU: l.MTU, Master: l.Master}
		plan.ApplyChange(f.state, plan.Change{Kind: plan.KindLink, Op: plan.OpSet, Link: &set})
		return nil
	})
}

// LinkDel implements kernel.Host.
func (f *Fake) LinkDel(name string) error {
	return f.op("link", "ip link del "+name, func() error {
		if f.state.LinkByName(name) == nil {
			return fmt.Errorf("link %s: %w", name, unix.ENODEV)
		}
		plan.ApplyChange(f.state, plan.Change{Kind: plan.KindLink, Op: plan.OpDelete, Link: &model.Link{Name: name}})
		return nil
	})
}

func hasAddr(l *model.Link, p netip.Prefix) bool {
	return slices.ContainsFunc(l.Addrs, func(a model.Address) bool { return a.Prefix == p })
}

// AddrAdd implements kernel.Host.
func (f *Fake) AddrAdd(dev string, a model.Address, replace bool) error {
	verb := "add"
	if replace {
		verb = "replace"
	}
	return f.op("addr", fmt.Sprintf("ip addr %s %s dev %s", verb, a.Prefix, dev), func() error {
		l := f.state.LinkByName(dev)
		if l == nil {
			return fmt.Errorf("link %s: %w", dev, unix.ENODEV)
		}
		if hasAddr(l, a.Prefix) {
			if replace {
				return nil
			}
			return fmt.Errorf("address %s: %w", a.Prefix, unix.EEXIST)
		}
		plan.ApplyChange(f.state, plan.Change{Kind: plan.KindAddress, Op: plan.OpAdd, Address: &plan.LinkAddress{Dev: dev, Address: a}})
		return nil
	})
}

// AddrDel implements kernel.Host.
func (f *Fake) AddrDel(dev string, a model.Address) error {
	return f.op("addr", fmt.Sprintf("ip addr del %s dev %s", a.Prefix, dev), func() error {
		l := f.state.LinkByName(dev)
		if l == nil {
			return fmt.Errorf("link %s: %w", dev, unix.ENODEV)
		}
		if !hasAddr(l, a.Prefix) {
			return fmt.Errorf("address %s: %w", a.Prefix, unix.EADDRNOTAVAIL)
		}
		plan.ApplyChange(f.state, plan.Change{Kind: plan.KindAddress, Op: plan.OpDelete, Address: &plan.LinkAddress{Dev: dev, Address: a}})
		return nil
	})
}

// Routes implements kernel.Host: each route is one operation; with stopOnError the batch
// stops after the first failure (the pipelined kernel would finish the group it is in; the
// Applier must not care which).
func (f *Fake) Routes(ctx context.Context, ops []kernel.RouteOp, stopOnError bool) (int, []kernel.OpError, error) {
	var failed []kernel.OpError
	for i, o := range ops {
		if err := ctx.Err(); err != nil {
			return i, failed, err
		}
		r := plan.NormalizeRoute(o.Route)
		verb := map[plan.Op]string{plan.OpAdd: "add", plan.OpReplace: "replace", plan.OpDelete: "del"}[o.Op]
		line := fmt.Sprintf("ip %s route %s %s", r.Family.Flag(), verb, r.Args(strconv.Itoa))
		err := f.op("route", line, func() error { return f.route(o.Op, r) })
		if err != nil {
			failed = append(failed, kernel.OpError{Index: i, Err: err})
			if stopOnError {
				return i + 1, failed, nil
			}
		}
	}
	return len(ops), failed, nil
}

func (f *Fake) route(op plan.Op, r model.Route) error {
	present := plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd, Route: &r}
	if op == plan.OpDelete {
		if !present.InEffect(f.state) {
			return fmt.Errorf("route %s: %w", r.Dst, unix.ESRCH)
		}
		plan.ApplyChange(f.state, plan.Change{Kind: plan.KindRoute, Op: plan.OpDelete, Route: &r})
		return nil
	}
	same := 0
	for _, x := range f.state.Routes {
		if x.Family == r.Family && x.Table == r.Table && x.Dst == r.Dst && x.TOS == r.TOS && x.Metric == r.Metric {
			same++
		}
	}
	if op == plan.OpAdd && same > 0 {
		return fmt.Errorf("route %s: %w", r.Dst, unix.EEXIST)
	}
	for _, dev := range append([]string{r.Dev}, nexthopDevs(r)...) {
		if dev != "" && f.state.LinkByName(dev) == nil {
			return fmt.Errorf("device %s: %w", dev, unix.ENODEV)
		}
	}
	// The kernel checks the gateway as the planner's Validate does (fib_check_nh).
	p := plan.New("fake")
	p.Changes = []plan.Change{{Kind: plan.KindRoute, Op: plan.OpReplace, Route: &r}}
	if err := p.Validate(f.state); err != nil {
		return fmt.Errorf("%v: %w", err, unix.ENETUNREACH)
	}
	plan.ApplyChange(f.state, plan.Change{Kind: plan.KindRoute, Op: plan.OpReplace, Route: &r})
	return nil
}

func nexthopDevs(r model.Route) []string {
	var out []string
	for _, nh := range r.Nexthops {
		out = append(out, nh.Dev)
	}
	return out
}

// Rules implements kernel.Host.
func (f *Fake) Rules(ctx context.Context, ops []kernel.RuleOp, stopOnError bool) (int, []kernel.OpError, error) {
	var failed []kernel.OpError
	for i, o := range ops {
		if err := ctx.Err(); err != nil {
			return i, failed, err
		}
		r := plan.NormalizeRule(o.Rule)
		verb := "add"
		if o.Op == plan.OpDelete {
			verb = "del"
		}
		line := fmt.Sprintf("ip %s rule %s priority %d %s", r.Family.Flag(), verb, r.Priority, r.Args(strconv.Itoa))
		err := f.op("rule", line, func() error {
			present := plan.Change{Kind: plan.KindRule, Op: plan.OpAdd, Rule: &r}.InEffect(f.state)
			switch {
			case o.Op == plan.OpDelete && !present:
				return fmt.Errorf("rule %d: %w", r.Priority, unix.ENOENT)
			case o.Op != plan.OpDelete && present:
				return fmt.Errorf("rule %d: %w", r.Priority, unix.EEXIST)
			}
			plan.ApplyChange(f.state, plan.Change{Kind: plan.KindRule, Op: o.Op, Rule: &r})
			return nil
		})
		if err != nil {
			failed = append(failed, kernel.OpError{Index: i, Err: err})
			if stopOnError {
				return i + 1, failed, nil
			}
		}
	}
	return len(ops), failed, nil
}

// ReadNetfilter implements kernel.Host.
func (f *Fake) ReadNetfilter(context.Context) (iptables.Ruleset, error) {
	return f.State().Netfilter, nil
}

// builtinTargets are the targets the fake's iptables-restore knows besides chains.
var builtinTargets = []string{"ACCEPT", "DROP", "RETURN", "REJECT", "LOG", "MARK", "CONNMARK", "DNAT", "SNAT", "MASQUERADE", "CT", "NOTRACK", "TPROXY", "TCPMSS", "REDIRECT"}

// Restore implements kernel.Host: the subset of `iptables-restore --noflush` that
// plan.NetfilterTransaction writes, all or nothing.
func (f *Fake) Restore(ctx context.Context, fam inet.Family, tx []byte, test bool) error {
	return f.RestoreIn(ctx, "", fam, tx, test)
}

// RestoreIn implements kernel.Host: Restore into one backend's tables (the backend's own
// iptables-restore), so that a test sees which backend a plan wrote into.
func (f *Fake) RestoreIn(_ context.Context, backend string, fam inet.Family, tx []byte, test bool) error {
	tool := iptables.BackendCommand(fam, backend) + "-restore"
	line := tool + " --noflush -w"
	if test {
		line = tool + " --test --noflush -w"
	}
	return f.op("restore", line+"\n"+string(tx), func() error {
		st := f.state.Clone()
		if err := restore(st, backend, fam, tx); err != nil {
			return fmt.Errorf("%s: %w", tool, err)
		}
		if !test {
			f.state.Netfilter = st.Netfilter
		}
		return nil
	})
}

// builtinChains are the chains each iptables table is created with.
var builtinChains = map[string][]string{
	"raw":      {"PREROUTING", "OUTPUT"},
	"mangle":   {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"nat":      {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"filter":   {"INPUT", "FORWARD", "OUTPUT"},
	"security": {"INPUT", "FORWARD", "OUTPUT"},
}

func restore(st *model.State, backend string, fam inet.Family, tx []byte) error {
	var t *iptables.Table
	for n, raw := range strings.Split(string(tx), "\n") {
		line := strings.TrimSpace(raw)
		fail := func(format string, a ...any) error {
			return fmt.Errorf("line %d (%q): %s", n+1, line, fmt.Sprintf(format, a...))
		}
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			name := line[1:]
			t = st.Netfilter.TableIn(backend, fam, name)
			if t == nil {
				// The kernel creates a table with its built-in chains, accepting.
				nt := iptables.Table{Family: fam, Name: name, Backend: backend}
				for _, c := range builtinChains[name] {
					nt.Chains = append(nt.Chains, iptables.Chain{Name: c, Policy: "ACCEPT"})
				}
				st.Netfilter.Tables = append(st.Netfilter.Tables, nt)
				t = &st.Netfilter.Tables[len(st.Netfilter.Tables)-1]
			}
		case line == "COMMIT":
			t = nil
		case t == nil:
			return fail("outside a table")
		case strings.HasPrefix(line, ":"):
			name := strings.Fields(line[1:])[0]
			if ch := t.Chain(name); ch != nil {
				ch.Rules = nil // --noflush: declaring a chain flushes it
			} else {
				t.Chains = append(t.Chains, iptables.Chain{Name: name})
			}
		default:
			f := strings.Fields(line)
			if len(f) < 2 || t.Chain(f[1]) == nil {
				return fail("no such chain")
			}
			ch := t.Chain(f[1])
			rest := strings.Join(f[2:], " ")
			switch f[0] {
			case "-A", "-I":
				pos := len(ch.Rules) + 1
				if f[0] == "-I" {
					pos = 1
					if len(f) > 2 {
						if p, err := strconv.Atoi(f[2]); err == nil {
							pos, rest = p, strings.Join(f[3:], " ")
						}
					}
				}
				r, err := iptables.ParseRule(fam, rest)
				if err != nil {
					return fail("%v", err)
				}
				if r.Target != "" && !slices.Contains(builtinTargets, r.Target) && t.Chain(r.Target) == nil {
					return fail("unknown target %s", r.Target)
				}
				if pos < 1 || pos > len(ch.Rules)+1 {
					return fail("index %d out of range", pos)
				}
				ch.Rules = slices.Insert(ch.Rules, pos-1, r)
			case "-D":
				i := slices.IndexFunc(ch.Rules, func(r iptables.Rule) bool { return r.Spec == rest })
				if i < 0 {
					return fail("no such rule")
				}
				ch.Rules = slices.Delete(ch.Rules, i, i+1)
			case "-F":
				ch.Rules = nil
			case "-X":
				if len(ch.Rules) > 0 || ch.Policy != "" {
					return fail("chain is not empty or is built in")
				}
				t.Chains = slices.DeleteFunc(t.Chains, func(c iptables.Chain) bool { return c.Name == f[1] })
			default:
				return fail("the fake does not know this command")
			}
		}
	}
	if t != nil {
		return errors.New("no COMMIT at the end")
	}
	return nil
}

// FlushConntrack implements kernel.Host: the fake holds no conntrack entries.
func (f *Fake) FlushConntrack(_ context.Context, c plan.ConntrackFlush) error {
	return f.op("conntrack", fmt.Sprintf("conntrack -D -f %s", c.Family), func() error { return nil })
}

// ReadFile implements kernel.Host.
func (f *Fake) ReadFile(path string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if path != f.TablesFile {
		return nil, fmt.Errorf("the fake has no file %s", path)
	}
	b, ok := f.files[path]
	if !ok {
		return nil, fmt.Errorf("%s: %w", path, fs.ErrNotExist)
	}
	return bytes.Clone(b), nil
}

// WriteFile implements kernel.Host.
func (f *Fake) WriteFile(path string, data []byte) error {
	return f.op("file", "cat > "+path, func() error {
		if path != f.TablesFile {
			return fmt.Errorf("the fake has no file %s", filepath.Base(path))
		}
		f.files[path] = bytes.Clone(data)
		return f.reloadTables()
	})
}

// RemoveFile implements kernel.Host.
func (f *Fake) RemoveFile(path string) error {
	return f.op("file", "rm -f "+path, func() error {
		if path != f.TablesFile {
			return fmt.Errorf("the fake has no file %s", filepath.Base(path))
		}
		delete(f.files, path)
		return f.reloadTables()
	})
}

// reloadTables recomputes the state's table names from the base names and the file.
func (f *Fake) reloadTables() error {
	names := map[int]string{}
	for id, n := range f.BaseTables {
		names[id] = n
	}
	if b, ok := f.files[f.TablesFile]; ok {
		file, err := model.ParseRTTables(b)
		if err != nil {
			return err
		}
		for id, n := range file {
			names[id] = n
		}
	}
	if len(names) == 0 {
		names = nil
	}
	f.state.TableNames = names
	return nil
}

var _ kernel.Host = (*Fake)(nil)
