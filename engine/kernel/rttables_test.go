package kernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func writeConf(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadTableNames(t *testing.T) {
	etc, usr := t.TempDir(), t.TempDir()
	writeConf(t, filepath.Join(etc, "rt_tables"), "255 local\n254 main\n253 default\n0 unspec\n100 isp1\n")
	// usr's base file is not read when etc has one, as iproute2 does.
	writeConf(t, filepath.Join(usr, "rt_tables"), "255 local\n150 shadowed\n")
	writeConf(t, filepath.Join(usr, "rt_tables.d", "vendor.conf"), "200 vendor\n300 vendor300\n")
	writeConf(t, filepath.Join(usr, "rt_tables.d", "vpn.conf"), "400 hidden-by-etc\n")
	writeConf(t, filepath.Join(etc, "rt_tables.d", "vpn.conf"), "0x3e8 vpn\n")
	writeConf(t, filepath.Join(etc, "rt_tables.d", "zz.conf"), "300 admin300 # overrides the vendor\n")
	writeConf(t, filepath.Join(etc, "rt_tables.d", "README"), "not a table file\n")
	// A renamed built-in table is kept: it is not the built-in name any more.
	writeConf(t, filepath.Join(etc, "rt_tables.d", "a.conf"), "253 spare\n")

	got, err := ReadTableNames([]string{etc, usr})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{100: "isp1", 200: "vendor", 253: "spare", 300: "admin300", 1000: "vpn"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadTableNames (-want +got):\n%s", diff)
	}

	// Without an etc base file the distribution's is used.
	got, err = ReadTableNames([]string{t.TempDir(), usr})
	if err != nil {
		t.Fatal(err)
	}
	want = map[int]string{150: "shadowed", 200: "vendor", 300: "vendor300", 400: "hidden-by-etc"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadTableNames without /etc (-want +got):\n%s", diff)
	}

	if got, err := ReadTableNames([]string{filepath.Join(etc, "missing")}); err != nil || len(got) != 0 {
		t.Errorf("ReadTableNames(missing dir) = %v, %v; want no names and no error", got, err)
	}
}

func TestReadTableNamesCorrupt(t *testing.T) {
	etc := t.TempDir()
	bad := filepath.Join(etc, "rt_tables.d", "bad.conf")
	writeConf(t, bad, "100 ok\nisp2\n")
	_, err := ReadTableNames([]string{etc})
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `line 2 "isp2"`) {
		t.Errorf("ReadTableNames error = %v, want it to name %s line 2", err, bad)
	}
}
