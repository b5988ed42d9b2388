package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// bench holds what every section shares: the roundtrip binary, the work directory, the
// namespaces created so far (deleted at the end, also on SIGINT) and the log.
type bench struct {
	ctx    context.Context
	bin    string // the roundtrip binary under test
	work   string // scratch files: plans, batch files, snapshots, journals
	prefix string // namespace names start with it: rtbench-PID
	runs   int
	log    io.Writer
	// gnuTime is GNU time's path, which measures the commands' peak RSS exactly; "" when it
	// is not installed (then the RSS of small commands includes this process's).
	gnuTime string

	mu  sync.Mutex
	nss []string
}

// newNS creates the namespace prefix-short with loopback up and registers it for deletion.
func (b *bench) newNS(short string) (string, error) {
	name := b.prefix + "-" + short
	if err := b.cmd("ip", "netns", "add", name); err != nil {
		return "", err
	}
	b.mu.Lock()
	b.nss = append(b.nss, name)
	b.mu.Unlock()
	return name, b.cmd("ip", "-n", name, "link", "set", "lo", "up")
}

// delNS deletes a namespace created by newNS.
func (b *bench) delNS(name string) error {
	b.mu.Lock()
	b.nss = slices.DeleteFunc(b.nss, func(n string) bool { return n == name })
	b.mu.Unlock()
	return runCmd(context.Background(), "ip", "netns", "del", name)
}

// cleanup deletes every namespace still registered. It ignores the context: it also runs after
// an interrupt.
func (b *bench) cleanup() {
	b.mu.Lock()
	nss := slices.Clone(b.nss)
	b.mu.Unlock()
	for _, n := range nss {
		if err := b.delNS(n); err != nil {
			fmt.Fprintf(os.Stderr, "roundtrip-bench: %v\n", err)
		}
	}
}

func (b *bench) logf(format string, a ...any) {
	fmt.Fprintf(b.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

// cmd runs a setup command and returns its output in the error when it fails.
func (b *bench) cmd(name string, args ...string) error { return runCmd(b.ctx, name, args...) }

func runCmd(ctx context.Context, name string, args ...string) error {
	c := exec.CommandContext(ctx, name, args...)
	c.Env = childEnv(nil)
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// output runs a command and returns its standard output.
func (b *bench) output(name string, args ...string) ([]byte, error) {
	c := exec.CommandContext(b.ctx, name, args...)
	c.Env = childEnv(nil)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// ipBatch feeds commands to `ip -n ns -batch -` (setup, not measured).
func (b *bench) ipBatch(ns string, lines []string) error {
	c := exec.CommandContext(b.ctx, "ip", "-n", ns, "-batch", "-")
	c.Env = childEnv(nil)
	c.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s -batch: %w: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

// childEnv is the environment of the commands run: C locale, as operators' scripts parse it,
// no SSH_CONNECTION (roundtrip apply would guard an SSH session), plus extra.
func childEnv(extra []string) []string {
	env := []string{"LC_ALL=C"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SSH_CONNECTION=") || strings.HasPrefix(kv, "LC_ALL=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// measurement is one run of a measured command.
type measurement struct {
	Wall   time.Duration
	MaxRSS int64 // bytes, of the process (and its waited-for children) at its largest
	User   time.Duration
	Sys    time.Duration
}

// child describes a measured command.
type child struct {
	Args   []string
	Env    []string // added to childEnv
	Stdin  string   // a file to read, "" for none
	Stdout string   // a file to write, "" for /dev/null
	// OKExit lists exit codes other than 0 that still mean success (3: roundtrip found a
	// problem, as a full conntrack table).
	OKExit []int
}

// measure runs the command once and measures its wall time and peak RSS.
func (b *bench) measure(c child) (measurement, error) {
	cmd, finish, err := b.start(c.Args, c.Env)
	if err != nil {
		return measurement{}, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if c.Stdin != "" {
		f, err := os.Open(c.Stdin)
		if err != nil {
			return measurement{}, err
		}
		defer f.Close()
		cmd.Stdin = f
	}
	out := os.DevNull
	if c.Stdout != "" {
		out = c.Stdout
	}
	f, err := os.Create(out)
	if err != nil {
		return measurement{}, err
	}
	defer f.Close()
	cmd.Stdout = f
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || !slices.Contains(c.OKExit, ee.ExitCode()) {
			return measurement{}, fmt.Errorf("%s: %w: %s", strings.Join(c.Args, " "), err, tail(stderr.String(), 600))
		}
	}
	return finish(cmd.ProcessState, wall)
}

// start prepares a measured command. Its peak RSS must be its own: Linux keeps the largest
// RSS a process ever had across exec (ru_maxrss), and Go starts children with vfork, so a
// child exec'ed directly from this process inherits this process's peak (gigabytes, after a
// 1M-route plan). GNU time forks the command from its own small image and reports the
// command's peak (%M, within ~1 MiB), so commands run under it when it is installed. The
// command and GNU time share a new process group: signals go to the group (GNU time ignores
// SIGINT while it waits, the command gets it).
func (b *bench) start(args, env []string) (*exec.Cmd, func(*os.ProcessState, time.Duration) (measurement, error), error) {
	if b.gnuTime == "" {
		cmd := exec.CommandContext(b.ctx, args[0], args[1:]...)
		cmd.Env = childEnv(env)
		return cmd, func(ps *os.ProcessState, wall time.Duration) (measurement, error) { return usage(ps, wall), nil }, nil
	}
	tf, err := os.CreateTemp(b.work, "time-*.txt")
	if err != nil {
		return nil, nil, err
	}
	tf.Close()
	cmd := exec.CommandContext(b.ctx, b.gnuTime, append([]string{"-f", "%M %U %S", "-o", tf.Name(), "--"}, args...)...)
	cmd.Env = childEnv(env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd, func(ps *os.ProcessState, wall time.Duration) (measurement, error) {
		defer os.Remove(tf.Name())
		data, err := os.ReadFile(tf.Name())
		if err != nil {
			return measurement{}, err
		}
		// A command that failed adds a line before the format's ("Command exited with ...").
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		var kb int64
		var user, sys float64
		if _, err := fmt.Sscanf(lines[len(lines)-1], "%d %f %f", &kb, &user, &sys); err != nil {
			return measurement{}, fmt.Errorf("reading GNU time's report %q: %w", data, err)
		}
		return measurement{Wall: wall, MaxRSS: kb << 10, User: time.Duration(user * float64(time.Second)), Sys: time.Duration(sys * float64(time.Second))}, nil
	}, nil
}

// signal sends sig to a command started by start (to its process group under GNU time).
func (b *bench) signal(cmd *exec.Cmd, sig syscall.Signal) error {
	if b.gnuTime != "" {
		return syscall.Kill(-cmd.Process.Pid, sig)
	}
	return cmd.Process.Signal(sig)
}

func usage(ps *os.ProcessState, wall time.Duration) measurement {
	m := measurement{Wall: wall, User: ps.UserTime(), Sys: ps.SystemTime()}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		m.MaxRSS = int64(ru.Maxrss) << 10 // KiB on Linux
	}
	return m
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// series is the measurements of one command over several runs.
type series []measurement

func (s series) median(f func(measurement) float64) float64 {
	if len(s) == 0 {
		return 0
	}
	v := make([]float64, len(s))
	for i, m := range s {
		v[i] = f(m)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (s series) wall() float64 {
	return s.median(func(m measurement) float64 { return m.Wall.Seconds() })
}
func (s series) rss() float64 {
	return s.median(func(m measurement) float64 { return float64(m.MaxRSS) })
}
func (s series) cpu() float64 {
	return s.median(func(m measurement) float64 { return (m.User + m.Sys).Seconds() })
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// newCmd is exec.CommandContext with the children's environment.
func newCmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, name, args...)
	c.Env = childEnv(nil)
	return c
}
