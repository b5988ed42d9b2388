package dropwatch

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/run/netns"

// NetnsPath returns the file of a namespace: of a name of `ip netns list`, or of the
// namespace the process runs in for "".
func NetnsPath(name string) (string, error) {
	if name == "" {
		return "/proc/self/ns/net", nil
	}
	if name == "." || name == ".." || filepath.Base(name) != name {
		return "", fmt.Errorf("bad namespace name %q: a name of `ip netns list` is a plain file name", name)
	}
	return filepath.Join(netnsDir, name), nil
}

// NetnsInode returns the inode number that identifies a namespace in the kernel (what the
// BPF program sees as net->ns.inum): of a name of `ip netns list`, or "" for the current one.
func NetnsInode(name string) (uint32, error) {
	path, err := NetnsPath(name)
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("finding network namespace %q: %w (is it listed by `ip netns list`?)", name, err)
	}
	return uint32(st.Ino), nil
}

// ifaces names interfaces by namespace inode and index, remembering what it found.
type ifaces struct {
	mu      sync.Mutex
	ns      map[uint32]string // inode → namespace name ("" the current one)
	unnamed map[uint32]bool   // namespaces not found by name (a container's, say)
	links   map[[2]uint32]string
}

func newIfaces() *ifaces {
	return &ifaces{ns: map[uint32]string{}, unnamed: map[uint32]bool{}, links: map[[2]uint32]string{}}
}

// netnsName finds the name of the namespace with the inode: the current one, or one of
// `ip netns list`.
func (c *ifaces) netnsName(inode uint32) (string, bool) {
	if name, ok := c.ns[inode]; ok {
		return name, true
	}
	if c.unnamed[inode] {
		return "", false
	}
	if ino, err := NetnsInode(""); err == nil && ino == inode {
		c.ns[inode] = ""
		return "", true
	}
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		if ino, err := NetnsInode(e.Name()); err == nil && ino == inode {
			c.ns[inode] = e.Name()
			return e.Name(), true
		}
	}
	c.unnamed[inode] = true
	return "", false
}

// name returns the namespace's name and the interface's, "" where not found.
func (c *ifaces) name(inode uint32, ifindex uint32) (netnsName, iface string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nsName, ok := c.netnsName(inode)
	if !ok || ifindex == 0 {
		return nsName, ""
	}
	key := [2]uint32{inode, ifindex}
	if n, ok := c.links[key]; ok {
		return nsName, n
	}
	n := LinkName(nsName, int(ifindex))
	if n != "" {
		c.links[key] = n
	}
	return nsName, n
}

// LinkName returns the name of the interface with the index in the namespace ("" for the
// current one); "" when there is none.
func LinkName(nsName string, ifindex int) string {
	path, err := NetnsPath(nsName)
	if err != nil {
		return ""
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return ""
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return ""
	}
	defer nl.Close()
	l, err := nl.LinkByIndex(ifindex)
	if err != nil {
		return ""
	}
	return l.Attrs().Name
}
