// Package lab builds throwaway networks of namespaces, veth pairs and bridges for privileged
// tests, runs real servers and clients inside them, and removes everything when a test ends.
package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel"
)

// labTools are the commands the lab itself runs, and the roundtrip tools its tests read and
// change the namespaces with (iptables-save and -restore, of both families).
var labTools = []string{"ip", "iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore", "curl"}

// toolPackages names the Debian package of each tool the privileged tests run, for the message
// that says how to get it.
var toolPackages = map[string]string{
	"ip": "iproute2", "curl": "curl", "conntrack": "conntrack", "nft": "nftables", "tmux": "tmux",
	"tcpdump": "tcpdump", "tshark": "tshark", "setpriv": "util-linux", "sh": "dash", "ipset": "ipset",
}

// inCI reports whether the tests run in CI (CI=true, as CI services set it): there a test that
// cannot run for want of root or a tool fails, so that a green run means every test ran.
func inCI() bool {
	switch strings.ToLower(os.Getenv("CI")) {
	case "", "0", "false", "no":
		return false
	}
	return true
}

// unavailable skips the test, or fails it in CI, saying why it cannot run.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if inCI() {
		t.Fatalf("%s (CI=%s: a test that cannot run fails; run ./test.sh as root, which installs the tools)", why, os.Getenv("CI"))
	}
	t.Skip(why)
}

// Require skips the test unless it can build namespaces: it runs as root and every tool the lab
// runs is installed. In CI (CI=true) it fails the test instead of skipping it.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "privileged test: needs root to create network namespaces; run the tests as root (./test.sh in a root shell)")
	}
	RequireTool(t, labTools...)
}

// RequireTool skips the test (fails it in CI) unless every tool is installed, naming the package
// that installs the missing ones.
func RequireTool(t testing.TB, tools ...string) {
	t.Helper()
	var missing, pkgs []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
			pkg := toolPackages[tool]
			if strings.HasPrefix(tool, "ip") && strings.Contains(tool, "tables") {
				pkg = "iptables"
			}
			if pkg != "" && !slices.Contains(pkgs, pkg) {
				pkgs = append(pkgs, pkg)
			}
		}
	}
	if len(missing) == 0 {
		return
	}
	why := "needs " + strings.Join(missing, ", ")
	if len(pkgs) > 0 {
		why += " (apt-get install " + strings.Join(pkgs, " ") + ")"
	}
	unavailable(t, why)
}

// SkipKernel skips a test of a feature this kernel lacks (a tunnel type, a link kind), naming
// the feature and what the kernel said. It skips in CI too: the kernel is not the test's to
// install.
func SkipKernel(t testing.TB, feature string, err error) {
	t.Helper()
	t.Skipf("kernel lacks %s support: %v", feature, err)
}

// Lab is one test's set of namespaces. Names are derived from the test name and the process id,
// so that packages tested in parallel never collide.
type Lab struct {
	t      testing.TB
	prefix string
	mu     sync.Mutex
	nss    []*NS
}

var labSeq atomic.Int64

var (
	stateDirMu sync.Mutex
	stateDir   string
)

// privateStateDir points roundtrip's state directory (journals, trace table records) at a
// directory of the test process, unless the test chose one: a test that captures or
// diagnoses in its namespaces must not write to the host's /var/lib/roundtrip. Processes the
// test starts inherit it.
func privateStateDir(t testing.TB) {
	stateDirMu.Lock()
	defer stateDirMu.Unlock()
	if os.Getenv(kernel.StateDirEnv) != "" {
		return
	}
	if stateDir == "" {
		stateDir = testStateDir(t)
	}
	os.Setenv(kernel.StateDirEnv, stateDir)
}

// testStateDir is one directory for every test process of the user (a new one per process
// would pile up in /tmp: nothing removes it when the process ends), unless what is there is
// not a private directory of the user's.
func testStateDir(t testing.TB) string {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("roundtrip-test-state-%d", os.Geteuid()))
	if privateDir(dir) {
		return dir
	}
	dir, err := os.MkdirTemp("", "roundtrip-test-state-")
	if err != nil {
		t.Fatalf("creating the tests' state directory: %v", err)
	}
	return dir
}

// privateDir makes dir (mode 0700) unless it exists, and reports whether it is a directory of
// this user's that nobody else can write to or read: a shared path in /tmp or /run may have
// been made, or planted as a link, by someone else.
func privateDir(dir string) bool {
	err := os.Mkdir(dir, 0o700)
	var st unix.Stat_t
	return (err == nil || errors.Is(err, os.ErrExist)) && unix.Lstat(dir, &st) == nil &&
		st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Uid == uint32(os.Geteuid()) && st.Mode&0o077 == 0
}

// New creates an empty lab whose namespaces are deleted when the test ends.
func New(t testing.TB) *Lab {
	t.Helper()
	Require(t)
	privateStateDir(t)
	sweepOnce.Do(func() {
		if swept := sweepStale(); len(swept) > 0 {
			t.Logf("deleted %d namespaces left by test processes that died: %s", len(swept), strings.Join(swept, " "))
		}
	})
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d/%d/%d", t.Name(), os.Getpid(), labSeq.Add(1), time.Now().UnixNano()))
	return &Lab{t: t, prefix: "rt" + hex.EncodeToString(sum[:])[:8]}
}

// NewPrefixed is New with namespace names that start with prefix, so that the tests of one
// line of work can be told apart (and cleaned up) by name.
func NewPrefixed(t testing.TB, prefix string) *Lab {
	t.Helper()
	l := New(t)
	l.prefix = prefix + l.prefix[2:]
	return l
}

// NS is one network namespace of a lab: a host, router or switch of the test network.
type NS struct {
	Name string // the netns name (as in `ip netns list`)
	lab  *Lab
}

// NS creates a namespace named after short (for readability in failures) with loopback up.
func (l *Lab) NS(short string) *NS {
	l.t.Helper()
	name := l.prefix + "-" + short
	note(name)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		forget(name)
		l.t.Fatalf("creating namespace %s: %v: %s", name, err, out)
	}
	n := &NS{Name: name, lab: l}
	l.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			l.t.Errorf("deleting namespace %s: %v: %s", name, err, out)
			return
		}
		forget(name)
	})
	l.mu.Lock()
	l.nss = append(l.nss, n)
	l.mu.Unlock()
	n.IP("link", "set", "lo", "up")
	return n
}

// Try runs a command inside the namespace and returns its combined output.
func (n *NS) Try(name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s %s: %w: %s", n.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Run runs a command inside the namespace and fails the test if it fails.
func (n *NS) Run(name string, args ...string) string {
	n.lab.t.Helper()
	out, err := n.Try(name, args...)
	if err != nil {
		n.lab.t.Fatal(err)
	}
	return out
}

// IP runs `ip -n NS args...` and fails the test on error.
func (n *NS) IP(args ...string) string {
	n.lab.t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		n.lab.t.Fatalf("ip -n %s %s: %v: %s", n.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Sysctl sets a sysctl inside the namespace (for example net.ipv4.ip_forward=1) by writing
// its file under /proc/sys from a thread inside the namespace, as roundtrip itself does: no
// sysctl binary (procps) is needed.
func (n *NS) Sysctl(key, value string) {
	n.lab.t.Helper()
	err := n.Do(func() error { return os.WriteFile(kernel.SysctlPath(key), []byte(value+"\n"), 0o644) })
	if err != nil {
		n.lab.t.Fatalf("setting sysctl %s=%s in %s: %v", key, value, n.Name, err)
	}
}

// NoDAD turns IPv6 duplicate address detection off in the namespace, for links created
// afterwards: their addresses, link-local ones and their routes included, exist as soon as
// the links are up, so a state read right away is the settled one.
func (n *NS) NoDAD() {
	n.lab.t.Helper()
	n.Sysctl("net.ipv6.conf.all.accept_dad", "0")
	n.Sysctl("net.ipv6.conf.default.accept_dad", "0")
}

// SettleIPv6 waits until every IPv6 address on an up link of the namespace is past DAD and
// has its local route: the kernel adds those routes from a work queue, after the address
// (even with nodad), so a test comparing two reads of the routes must not start before.
func (n *NS) SettleIPv6() {
	n.lab.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		addrs := n.IP("-6", "-o", "addr", "show", "up")
		routes := n.IP("-6", "route", "show", "table", "local")
		pending := ""
		for _, line := range strings.Split(addrs, "\n") {
			f := strings.Fields(line)
			i := slices.Index(f, "inet6")
			if i < 0 || i+1 >= len(f) {
				continue
			}
			addr, _, _ := strings.Cut(f[i+1], "/")
			if strings.Contains(line, "tentative") || !strings.Contains(routes, "local "+addr+" ") {
				pending = addr
				break
			}
		}
		if pending == "" {
			return
		}
		if time.Now().After(deadline) {
			n.lab.t.Fatalf("in %s: IPv6 address %s has no local route after 5 s:\n%s\n%s", n.Name, pending, addrs, routes)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Veth connects namespace a (interface aIf) with namespace b (interface bIf) and brings both
// ends up. The pair is created directly inside a with its peer in b, so the host's own
// namespace is never touched.
func (l *Lab) Veth(a *NS, aIf string, b *NS, bIf string) {
	l.t.Helper()
	a.IP("link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name)
	a.IP("link", "set", aIf, "up")
	b.IP("link", "set", bIf, "up")
}

// Bridge creates a bridge in the namespace, enslaves the members and brings it up.
func (n *NS) Bridge(name string, members ...string) {
	n.lab.t.Helper()
	n.IP("link", "add", name, "type", "bridge")
	for _, m := range members {
		n.IP("link", "set", m, "master", name)
	}
	n.IP("link", "set", name, "up")
}

// Addr adds an address (CIDR) to an interface.
func (n *NS) Addr(iface, cidr string) {
	n.lab.t.Helper()
	n.IP("addr", "add", cidr, "dev", iface)
}

// Handle opens the namespace for code that must run inside it; the caller closes it.
func (n *NS) Handle() (netns.NsHandle, error) {
	h, err := netns.GetFromName(n.Name)
	if err != nil {
		return h, fmt.Errorf("opening namespace %s: %w", n.Name, err)
	}
	return h, nil
}

// Do runs fn on an OS thread switched into the namespace. Sockets created inside fn belong to
// the namespace for their whole life, whichever goroutine uses them later.
func (n *NS) Do(fn func() error) error { return kernel.Namespace{Name: n.Name}.Do(fn) }

// Listen opens a TCP listener inside the namespace; it is closed when the test ends.
func (n *NS) Listen(addr string) net.Listener {
	n.lab.t.Helper()
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		n.lab.t.Fatalf("listening on %s in %s: %v", addr, n.Name, err)
	}
	n.lab.t.Cleanup(func() { ln.Close() })
	return ln
}

// ServeHTTP runs an HTTP server inside the namespace that answers every request with body.
// It returns the listener's address.
func (n *NS) ServeHTTP(addr, body string) string {
	n.lab.t.Helper()
	ln := n.Listen(addr)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, body)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	n.lab.t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// Dial connects to addr over TCP from inside the namespace, optionally from a local address,
// and returns the open connection. A connection that is refused, reset or times out is an error.
func (n *NS) Dial(addr, from string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := n.Do(func() error {
		d := net.Dialer{Timeout: timeout}
		if from != "" {
			la, err := net.ResolveTCPAddr("tcp", from)
			if err != nil {
				return fmt.Errorf("bad local address %q: %w", from, err)
			}
			d.LocalAddr = la
		}
		// The socket is created here, inside the namespace; connecting may finish later.
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", addr)
		conn = c
		return err
	})
	return conn, err
}

// HTTPGet fetches http://addr/ from inside the namespace with a Go client and returns the body.
func (n *NS) HTTPGet(addr string, timeout time.Duration) (string, error) {
	conn, err := n.Dial(addr, "", timeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return "", fmt.Errorf("sending request to %s: %w", addr, err)
	}
	resp, err := io.ReadAll(conn)
	if err != nil {
		return string(resp), fmt.Errorf("reading response from %s: %w", addr, err)
	}
	_, body, ok := strings.Cut(string(resp), "\r\n\r\n")
	if !ok {
		return "", fmt.Errorf("malformed HTTP response from %s: %q", addr, resp)
	}
	return body, nil
}

// Curl fetches url with the real curl binary inside the namespace.
func (n *NS) Curl(url string, timeout time.Duration) (string, error) {
	secs := fmt.Sprintf("%.1f", timeout.Seconds())
	return n.Try("curl", "-sS", "--max-time", secs, url)
}
