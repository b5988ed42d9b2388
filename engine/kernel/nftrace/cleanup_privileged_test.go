package nftrace_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/kernel/dropwatch/dwtest"
	"roundtrip/engine/kernel/nftrace"
	"roundtrip/engine/lab"
)

// The test binary, re-executed with helperEnv set, is a roundtrip that starts tracing in a
// namespace, says its table's name and waits to be killed.
const (
	helperEnv      = "NFTRACE_TEST_HELPER"
	helperNetnsEnv = "NFTRACE_TEST_NETNS"
	helperNoOwner  = "NFTRACE_TEST_NO_OWNER"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "hold" {
		if os.Getenv(helperNoOwner) != "" {
			nftrace.SetOwnerFlag(false)
		}
		tr, err := nftrace.Start(context.Background(), nftrace.Options{Netns: os.Getenv(helperNetnsEnv),
			Flows: []dropwatch.Flow{{Proto: unix.IPPROTO_TCP, Dst: dwtest.ServerAddr, DstPort: 80}}})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(tr.Table())
		select {}
	}
	if os.Getenv(helperEnv) == "start" {
		// Start as the user it runs as, and say what happened.
		tr, err := nftrace.Start(context.Background(), nftrace.Options{})
		if err != nil {
			fmt.Printf("unsupported=%v\n%v\n", errors.Is(err, nftrace.ErrUnsupported), err)
			os.Exit(0)
		}
		tr.Close()
		fmt.Println("started")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startHolder runs the helper and returns its table's name and the process.
func startHolder(t *testing.T, ns *lab.NS, owner bool) (string, *exec.Cmd) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), helperEnv+"=hold", helperNetnsEnv+"="+ns.Name)
	if !owner {
		cmd.Env = append(cmd.Env, helperNoOwner+"=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	line = strings.TrimSpace(line)
	if err != nil || !strings.HasPrefix(line, "roundtrip_trace_") {
		t.Fatalf("the helper said %q (%v); want its table's name", line, err)
	}
	return line, cmd
}

// tables lists the inet tables of the namespace.
func tables(t *testing.T, ns *lab.NS) []string {
	t.Helper()
	var names []string
	for _, l := range strings.Split(ns.Run("nft", "list", "tables", "inet"), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "table" {
			names = append(names, f[2])
		}
	}
	return names
}

func markerExists(t *testing.T, table string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(os.Getenv(nftrace.StateDirEnv), "nftrace", table+".json"))
	return err == nil
}

// A roundtrip killed with SIGKILL leaves no trace table behind: the kernel removes an owned
// table with its socket, and Cleanup (or the rollback's CleanupRecorded) removes one made
// without the owner flag, as on kernels before 5.12, and the markers. A live process's
// table is left alone.
func TestPrivilegedTraceTableGoneAfterKill(t *testing.T) {
	requireTool(t, "nft", "nftables")
	t.Setenv(nftrace.StateDirEnv, t.TempDir())
	n := dwtest.NewNet(t)
	mine := trace(t, n.Router) // this process's: alive throughout

	for _, tc := range []struct {
		name    string
		owner   bool
		cleanup func() ([]string, error)
	}{
		{"owned table, Cleanup", true, func() ([]string, error) { return nftrace.Cleanup(n.Router.Name) }},
		{"table without owner, Cleanup", false, func() ([]string, error) { return nftrace.Cleanup(n.Router.Name) }},
		{"table without owner, CleanupRecorded", false, nftrace.CleanupRecorded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table, cmd := startHolder(t, n.Router, tc.owner)
			if !slices.Contains(tables(t, n.Router), table) || !markerExists(t, table) {
				t.Fatalf("the helper's table %s or its marker is missing: tables %v", table, tables(t, n.Router))
			}
			if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			left := slices.Contains(tables(t, n.Router), table)
			if left == tc.owner {
				t.Fatalf("after SIGKILL the table is there: %v; an owned table goes with its process, another stays", left)
			}
			if !markerExists(t, table) {
				t.Fatal("the killed process's marker is gone already; rollback would not know the table")
			}
			removed, err := tc.cleanup()
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(removed, table); got != left {
				t.Errorf("cleanup removed %v; want %s removed: %v", removed, table, left)
			}
			if slices.Contains(tables(t, n.Router), table) || markerExists(t, table) {
				t.Errorf("after cleanup: tables %v, marker there: %v", tables(t, n.Router), markerExists(t, table))
			}
			if !slices.Contains(tables(t, n.Router), mine.Table()) || !markerExists(t, mine.Table()) {
				t.Errorf("cleanup removed the live tracer's table %s or its marker", mine.Table())
			}
		})
	}
	// Close removes the table and the marker itself.
	if err := mine.Close(); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(tables(t, n.Router), mine.Table()) || markerExists(t, mine.Table()) {
		t.Errorf("after Close: tables %v, marker there: %v", tables(t, n.Router), markerExists(t, mine.Table()))
	}
}

// The tracer stops when its context ends, and removes its table and marker.
func TestPrivilegedTraceContextEnds(t *testing.T) {
	requireTool(t, "nft", "nftables")
	t.Setenv(nftrace.StateDirEnv, t.TempDir())
	n := dwtest.NewNet(t)
	ctx, cancel := context.WithCancel(context.Background())
	tr, err := nftrace.Start(ctx, nftrace.Options{Netns: n.Router.Name})
	if errors.Is(err, nftrace.ErrUnsupported) {
		t.Skipf("privileged test: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tables(t, n.Router), tr.Table()) {
		t.Fatalf("table %s not created", tr.Table())
	}
	cancel()
	for range tr.Events() {
	}
	if slices.Contains(tables(t, n.Router), tr.Table()) || markerExists(t, tr.Table()) {
		t.Errorf("after the context ended: tables %v, marker there: %v", tables(t, n.Router), markerExists(t, tr.Table()))
	}
	if err := tr.AddFlow(dropwatch.Flow{Proto: unix.IPPROTO_UDP}); err == nil {
		t.Error("AddFlow after the context ended succeeded")
	}
}
