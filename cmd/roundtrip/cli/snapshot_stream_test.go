package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
)

// TestPrivilegedSnapshotStreamsAsMarshalWrites: the snapshot command, which encodes the routes
// as the dump delivers them, writes the file Snapshot.Marshal writes for the state Read reads
// of the same namespace, byte for byte, to a file and to standard output.
func TestPrivilegedSnapshotStreamsAsMarshalWrites(t *testing.T) {
	l := lab.NewPrefixed(t, "hst")
	a, b := l.NS("a"), l.NS("b")
	a.NoDAD()
	l.Veth(a, "v1", b, "eth0")
	a.Addr("v1", "10.1.0.1/24")
	a.IP("addr", "add", "2001:db8:1::1/64", "dev", "v1", "nodad")
	a.IP("route", "add", "default", "via", "10.1.0.2", "table", "100")
	a.IP("route", "add", "10.60.0.0/16", "table", "1000", "nexthop", "via", "10.1.0.2", "dev", "v1", "weight", "3",
		"nexthop", "via", "10.1.0.3", "dev", "v1")
	a.IP("route", "add", "blackhole", "10.50.0.0/16", "table", "200", "metric", "7")
	a.IP("rule", "add", "pref", "100", "from", "10.1.0.0/24", "lookup", "100")
	a.Run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "v1", "-j", "MASQUERADE")
	var batch strings.Builder
	for i := range 300 {
		fmt.Fprintf(&batch, "route add 198.18.%d.%d/32 via 10.1.0.2 table 100\n", i/250, i%250)
	}
	file := filepath.Join(t.TempDir(), "snap.json")
	if err := os.WriteFile(file+".batch", []byte(batch.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	a.IP("-batch", file+".batch")

	if code, _, errs := runCLI(t, "snapshot", "--netns", a.Name, "-o", file); code != ExitOK {
		t.Fatalf("snapshot: exit %d: %s", code, errs)
	}
	code, stdout, errs := runCLI(t, "snapshot", "--netns", a.Name)
	if code != ExitOK {
		t.Fatalf("snapshot to stdout: exit %d: %s", code, errs)
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := model.ParseSnapshot(got)
	if err != nil {
		t.Fatalf("the streamed snapshot does not parse: %v", err)
	}
	if len(snap.State.Routes) < 300 {
		t.Fatalf("the snapshot holds %d routes", len(snap.State.Routes))
	}
	st, err := kernel.Read(t.Context(), kernel.Namespace{Name: a.Name})
	if err != nil {
		t.Fatal(err)
	}
	want, err := model.NewSnapshot(st, snap.Taken).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("streamed snapshot (%d bytes) is not Marshal's (%d bytes)", len(got), len(want))
	}
	snap2, err := model.ParseSnapshot([]byte(stdout))
	if err != nil {
		t.Fatalf("the snapshot on standard output does not parse: %v", err)
	}
	if want2, _ := model.NewSnapshot(st, snap2.Taken).Marshal(); stdout != string(want2) {
		t.Fatal("the snapshot on standard output is not Marshal's")
	}
}
