package kernel

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ti-mo/conntrack"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/model"
	"roundtrip/engine/nft"
	"roundtrip/engine/plan"
	"roundtrip/engine/safefile"
)

// Host is every read and change the Applier makes in a namespace, shaped like the libraries
// and tools beneath it: links and addresses added, set and deleted, routes and rules in
// pipelined batches, one iptables-restore transaction, sysctl files, a conntrack flush, the
// rt_tables file. LiveHost is the kernel; kerneltest.Fake is a State that the apply and undo
// logic can be tested against without root.
//
// Errors carry the kernel's errno (errors.Is(err, unix.EEXIST)), so that undo can tell "already
// as wanted" from a failure.
type Host interface {
	// ReadState reads links with addresses, rules, sysctls and table names; routes unless
	// what.NoRoutes, netfilter unless what.NoNetfilter.
	ReadState(ctx context.Context, what ReadWhat) (*model.State, error)
	// EachRoute streams the routes of one family and table (every table when 0) as the dump
	// brings them; fn gets routes with device names from names. An ErrDumpInterrupted means
	// the table changed meanwhile: start over.
	EachRoute(ctx context.Context, fam inet.Family, table int, names map[int]string, fn func(model.Route)) error

	ReadSysctl(key string) (string, error) // fs.ErrNotExist when the kernel lacks it
	WriteSysctl(key, value string) error

	LinkExists(name string) (bool, error)
	LinkAdd(l model.Link) error // a tunnel or vxlan link, down, without addresses
	LinkSet(l model.Link) error // MTU (when set), master (when set), up or down
	LinkDel(name string) error  // unix.ENODEV when it is not there
	AddrAdd(dev string, a model.Address, replace bool) error
	AddrDel(dev string, a model.Address) error

	// Routes and Rules send ops in order, many per message, and return how many the kernel
	// may have made (done: every op before that was sent) and the ops that failed; with
	// stopOnError nothing is sent after a group with a failure. err is a failure of the
	// transport (or ctx): then the ops counted in done may or may not have taken effect.
	Routes(ctx context.Context, ops []RouteOp, stopOnError bool) (done int, failed []OpError, err error)
	Rules(ctx context.Context, ops []RuleOp, stopOnError bool) (done int, failed []OpError, err error)

	ReadNetfilter(ctx context.Context) (iptables.Ruleset, error)
	// Restore runs `iptables-restore --noflush -w` (ip6tables- for V6; -w where the tool
	// has it) with tx; with test, `--test` as well, which changes nothing.
	Restore(ctx context.Context, f inet.Family, tx []byte, test bool) error
	// RestoreIn is Restore into one iptables backend (iptables.BackendLegacy or BackendNFT)
	// with that backend's iptables-restore; "" is Restore.
	RestoreIn(ctx context.Context, backend string, f inet.Family, tx []byte, test bool) error

	FlushConntrack(ctx context.Context, f plan.ConntrackFlush) error

	// ReadNftables reads the nft ruleset (nil without nf_tables or a reader linked in).
	ReadNftables(ctx context.Context) (*nft.Ruleset, error)
	// NFTList prints roundtrip's own table (`nft list table inet roundtrip`); exists is false
	// when there is none.
	NFTList(ctx context.Context) (listing string, exists bool, err error)
	// NFTLoad loads an nft script as one transaction (`nft -f`); with check, `nft -c`, which
	// changes nothing.
	NFTLoad(ctx context.Context, script []byte, check bool) error

	ReadFile(path string) ([]byte, error) // fs.ErrNotExist when absent
	WriteFile(path string, data []byte) error
	RemoveFile(path string) error // nil when absent

	Close() error
}

// ReadWhat leaves parts out of Host.ReadState.
type ReadWhat struct {
	NoRoutes, NoNetfilter bool
}

// RouteOp is one route change of a batch: OpAdd (NLM_F_EXCL), OpReplace or OpDelete.
type RouteOp struct {
	Op    plan.Op
	Route model.Route
}

// RuleOp is one rule change of a batch: OpAdd or OpDelete.
type RuleOp struct {
	Op   plan.Op
	Rule model.Rule
}

// OpError is the failure of one op of a batch.
type OpError struct {
	Index int
	Err   error
}

// LiveHost is the Host of a network namespace: netlink handles and sockets inside it, the
// iptables tools under `ip netns exec`, /proc/sys/net on a thread inside it.
type LiveHost struct {
	ns     Namespace
	dirs   []string // iproute2 configuration directories (ReadOptions)
	h      *vnl.Handle
	pipe   *pipe
	links  map[string]int // ifindex by name, cached: routes come by the thousand
	runner Runner
	caps   map[string]RestoreCaps // what each iptables-restore accepts, probed once
}

// OpenHost opens the live Host of a namespace; dirs are the iproute2 configuration directories
// table names are read from. The caller closes it.
func OpenHost(ns Namespace, dirs []string) (*LiveHost, error) {
	h, err := ns.Handle()
	if err != nil {
		return nil, err
	}
	return &LiveHost{ns: ns, dirs: dirs, h: h, runner: ns.Runner()}, nil
}

// Close closes the host's netlink handle and socket.
func (l *LiveHost) Close() error {
	if l.pipe != nil {
		l.pipe.close()
		l.pipe = nil
	}
	if l.h != nil {
		l.h.Close()
		l.h = nil
	}
	return nil
}

// ReadState implements Host.
func (l *LiveHost) ReadState(ctx context.Context, what ReadWhat) (*model.State, error) {
	return ReadWith(ctx, l.ns, ReadOptions{RTTablesDirs: l.dirs, NoRoutes: what.NoRoutes, NoNetfilter: what.NoNetfilter})
}

// ReadSysctl implements Host.
func (l *LiveHost) ReadSysctl(key string) (string, error) {
	var v string
	err := l.ns.Do(func() error {
		path, err := model.SysctlFile(key)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

// WriteSysctl implements Host.
func (l *LiveHost) WriteSysctl(key, value string) error {
	return l.ns.Do(func() error {
		// The file exists (the kernel made it); O_TRUNC without O_CREAT writes it and never
		// creates anything, should the key point outside /proc/sys.
		path, err := model.SysctlFile(key)
		if err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return err
		}
		_, werr := f.WriteString(value + "\n")
		return errors.Join(werr, f.Close())
	})
}

func (l *LiveHost) link(name string) (vnl.Link, error) {
	nl, err := l.h.LinkByName(name)
	if err != nil {
		var nf vnl.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("link %s: %w", name, unix.ENODEV)
		}
		return nil, fmt.Errorf("finding link %s: %w", name, err)
	}
	return nl, nil
}

// LinkExists implements Host.
func (l *LiveHost) LinkExists(name string) (bool, error) {
	_, err := l.link(name)
	if errors.Is(err, unix.ENODEV) {
		return false, nil
	}
	return err == nil, err
}

func (l *LiveHost) linkIndex(name string) (int, error) {
	if i, ok := l.links[name]; ok {
		return i, nil
	}
	nl, err := l.link(name)
	if err != nil {
		return 0, err
	}
	if l.links == nil {
		l.links = map[string]int{}
	}
	l.links[name] = nl.Attrs().Index
	return nl.Attrs().Index, nil
}

// LinkAdd implements Host.
func (l *LiveHost) LinkAdd(link model.Link) error {
	l.links = nil // ifindexes change
	nl, err := l.newLink(link)
	if err != nil {
		return err
	}
	if err := l.h.LinkAdd(nl); err != nil {
		return fmt.Errorf("creating link: %w", err)
	}
	return nil
}

// LinkSet implements Host.
func (l *LiveHost) LinkSet(link model.Link) error {
	nl, err := l.link(link.Name)
	if err != nil {
		return err
	}
	if link.MTU != 0 && nl.Attrs().MTU != link.MTU {
		if err := l.h.LinkSetMTU(nl, link.MTU); err != nil {
			return fmt.Errorf("setting mtu %d: %w", link.MTU, err)
		}
	}
	if link.Master != "" {
		idx, err := l.linkIndex(link.Master)
		if err != nil {
			return err
		}
		if err := l.h.LinkSetMasterByIndex(nl, idx); err != nil {
			return fmt.Errorf("setting master %s: %w", link.Master, err)
		}
	}
	if link.Up {
		if err := l.h.LinkSetUp(nl); err != nil {
			return fmt.Errorf("setting up: %w", err)
		}
	} else if err := l.h.LinkSetDown(nl); err != nil {
		return fmt.Errorf("setting down: %w", err)
	}
	return nil
}

// LinkDel implements Host.
func (l *LiveHost) LinkDel(name string) error {
	l.links = nil
	nl, err := l.link(name)
	if err != nil {
		return err
	}
	return l.h.LinkDel(nl)
}

// newLink builds the netlink object for a tunnel link, with iproute2's defaults where netlink
// would otherwise send other values (vxlan learning on, ipip path MTU discovery on).
func (l *LiveHost) newLink(link model.Link) (vnl.Link, error) {
	attrs := vnl.NewLinkAttrs()
	attrs.Name = link.Name
	attrs.MTU = link.MTU
	if link.HardwareAddr != "" {
		hw, err := net.ParseMAC(link.HardwareAddr)
		if err != nil {
			return nil, fmt.Errorf("hardware address %q: %w", link.HardwareAddr, err)
		}
		attrs.HardwareAddr = hw
	}
	t := model.Tunnel{}
	if link.Tunnel != nil {
		t = *link.Tunnel
	}
	dev := 0
	if t.Dev != "" {
		idx, err := l.linkIndex(t.Dev)
		if err != nil {
			return nil, err
		}
		dev = idx
	}
	switch link.Kind {
	case "vxlan":
		v := &vnl.Vxlan{LinkAttrs: attrs, VxlanId: int(t.VNI), VtepDevIndex: dev, SrcAddr: ipOf(t.Local), TTL: t.TTL, Port: t.Port, Learning: true}
		if t.Group.IsValid() {
			v.Group = ipOf(t.Group)
		} else {
			v.Group = ipOf(t.Remote)
		}
		return v, nil
	case "ipip":
		return &vnl.Iptun{LinkAttrs: attrs, Local: ipOf(t.Local), Remote: ipOf(t.Remote), Ttl: uint8(t.TTL), Link: uint32(dev), PMtuDisc: 1}, nil
	case "sit":
		return &vnl.Sittun{LinkAttrs: attrs, Local: ipOf(t.Local), Remote: ipOf(t.Remote), Ttl: uint8(t.TTL), Link: uint32(dev), PMtuDisc: 1}, nil
	case "gre", "gretap":
		// The library sets the GRE_KEY flags itself when a key is given.
		if link.Kind == "gretap" {
			return &vnl.Gretap{LinkAttrs: attrs, Local: ipOf(t.Local), Remote: ipOf(t.Remote), Ttl: uint8(t.TTL), Link: uint32(dev), IKey: t.Key, OKey: t.Key, PMtuDisc: 1}, nil
		}
		return &vnl.Gretun{LinkAttrs: attrs, Local: ipOf(t.Local), Remote: ipOf(t.Remote), Ttl: uint8(t.TTL), Link: uint32(dev), IKey: t.Key, OKey: t.Key, PMtuDisc: 1}, nil
	}
	return nil, fmt.Errorf("cannot create a %s link", link.Kind)
}

// AddrAdd implements Host.
func (l *LiveHost) AddrAdd(dev string, a model.Address, replace bool) error {
	nl, err := l.link(dev)
	if err != nil {
		return err
	}
	if replace {
		return l.h.AddrReplace(nl, netlinkAddr(a))
	}
	return l.h.AddrAdd(nl, netlinkAddr(a))
}

// AddrDel implements Host.
func (l *LiveHost) AddrDel(dev string, a model.Address) error {
	nl, err := l.link(dev)
	if err != nil {
		return err
	}
	return l.h.AddrDel(nl, netlinkAddr(a))
}

var addrScopes = map[string]int{"": unix.RT_SCOPE_UNIVERSE, "global": unix.RT_SCOPE_UNIVERSE, "site": unix.RT_SCOPE_SITE, "link": unix.RT_SCOPE_LINK, "host": unix.RT_SCOPE_HOST}

// netlinkAddr converts an address the way `ip addr add` sends it: no broadcast unless asked
// (netlink would compute one), loopback addresses with host scope (iproute2 default_scope).
func netlinkAddr(a model.Address) *vnl.Addr {
	na := &vnl.Addr{IPNet: &net.IPNet{IP: net.IP(a.Prefix.Addr().AsSlice()), Mask: net.CIDRMask(a.Prefix.Bits(), a.Prefix.Addr().BitLen())}}
	if a.Prefix.Addr().Is4() {
		na.Broadcast = net.IPv4zero
	}
	if a.Peer.IsValid() {
		na.Peer = ipNet(a.Peer)
		na.Peer.IP = net.IP(a.Peer.Addr().AsSlice())
	}
	na.Scope = addrScopes[a.Scope]
	if a.Scope == "" && a.Prefix.Addr().Is4() && a.Prefix.Addr().As4()[0] == 127 {
		na.Scope = unix.RT_SCOPE_HOST
	}
	return na
}

// ReadNetfilter implements Host.
func (l *LiveHost) ReadNetfilter(ctx context.Context) (iptables.Ruleset, error) {
	return ReadNetfilter(ctx, l.runner)
}

// Restore implements Host.
func (l *LiveHost) Restore(ctx context.Context, f inet.Family, tx []byte, test bool) error {
	return l.RestoreIn(ctx, "", f, tx, test)
}

// RestoreIn implements Host: the backend's iptables-restore, with the options it accepts.
func (l *LiveHost) RestoreIn(ctx context.Context, backend string, f inet.Family, tx []byte, test bool) error {
	if l.caps == nil {
		l.caps = map[string]RestoreCaps{}
	}
	tool, caps, err := pickRestore(ctx, l.runner, l.caps, f, backend)
	if err != nil {
		return err
	}
	args, err := caps.Args(test)
	if err != nil {
		return err
	}
	_, err = l.runner.Run(ctx, tx, tool, args...)
	return err
}

// FlushConntrack deletes the conntrack entries of the flush's family whose original tuple
// matches, each as the streamed dump brings it, so memory does not grow with the table (the
// kernel filters the family and the mark). A kernel without conntrack has no entries to delete.
func (l *LiveHost) FlushConntrack(ctx context.Context, f plan.ConntrackFlush) error {
	c, err := OpenConntrack(l.ns)
	if err != nil {
		return err
	}
	defer c.Close()
	var deleteErr error
	err = c.dump(ctx, &ConntrackFilter{Family: f.Family, Mark: f.Mark}, true, func(fl *conntrack.Flow, _ *ConntrackEntry) error {
		t := fl.TupleOrig
		if f.Proto != 0 && int(t.Proto.Protocol) != f.Proto ||
			f.Src.IsValid() && !f.Src.Contains(t.IP.SourceAddress.Unmap()) ||
			f.Dst.IsValid() && !f.Dst.Contains(t.IP.DestinationAddress.Unmap()) ||
			f.DPort != 0 && t.Proto.DestinationPort != f.DPort {
			return nil
		}
		// An entry may be gone by now: it expired, or the dump sent it again (ctnetlink restarts
		// a hash bucket when the entry it stopped at was deleted meanwhile).
		if err := c.conn.Delete(*fl); err != nil && !errors.Is(err, unix.ENOENT) {
			deleteErr = fmt.Errorf("deleting conntrack entry %s: %w", t, err)
			return deleteErr
		}
		return nil
	})
	if deleteErr == nil && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP)) {
		return nil
	}
	return err
}

// ReadFile implements Host.
func (l *LiveHost) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

// WriteFile implements Host: the file is replaced through a new file created exclusively next
// to it, synced and renamed over it, so a planted link at its path is replaced, not followed.
func (l *LiveHost) WriteFile(path string, data []byte) error {
	return writeFileAtomic(path, data, 0o644)
}

// RemoveFile implements Host.
func (l *LiveHost) RemoveFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// writeFileAtomic replaces a file, creating its directory if needed, through a new, synced
// file renamed over it: safefile never follows a link planted at the path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	return safefile.WriteFile(path, data, mode, nil)
}

// syncDir makes a directory's new or renamed entries survive a crash.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// isErrno reports whether err carries one of the errnos.
func isErrno(err error, errnos ...syscall.Errno) bool {
	for _, n := range errnos {
		if errors.Is(err, n) {
			return true
		}
	}
	return false
}
