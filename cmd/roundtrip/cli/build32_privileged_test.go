package cli

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"roundtrip/engine/lab"
)

// A 32-bit build (armhf boards, 386, MIPS routers) shows and checks a host exactly as the
// 64-bit one does, a table id above 2^31-1 included (a 32-bit int holds it as a negative
// number), and refuses to capture with the reason instead of panicking in gopacket's ring
// (diagnose then answers from the model alone).
// The 386 build runs here on the amd64 kernel's IA32 emulation.
func TestPrivileged32BitBuild(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("runs a GOARCH=386 build, which needs an amd64 host")
	}
	l := lab.New(t)
	gw, isp := l.NS("b32gw"), l.NS("b32isp")
	l.Veth(gw, "wan0", isp, "eth0")
	gw.Addr("wan0", "198.18.9.2/30")
	gw.IP("route", "add", "default", "via", "198.18.9.1", "table", "4294967000")
	gw.IP("route", "add", "203.0.113.0/24", "via", "192.0.2.1", "dev", "wan0", "onlink", "table", "100")
	gw.IP("rule", "add", "priority", "100", "from", "198.18.9.2", "lookup", "4294967000")
	gw.IP("rule", "add", "priority", "200", "iif", "wan0", "lookup", "100")
	gw.Run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE")

	bin32 := filepath.Join(t.TempDir(), "roundtrip386")
	build := exec.Command("go", "build", "-o", bin32, "roundtrip/cmd/roundtrip")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH=386")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("GOARCH=386 go build: %v\n%s", err, out)
	}
	if err := exec.Command(bin32, "--help").Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			if errors.Is(err, syscall.ENOEXEC) {
				t.Skip("this kernel runs no 32-bit x86 programs (CONFIG_IA32_EMULATION is off)")
			}
			t.Fatalf("running the 386 build: %v", err)
		}
	}
	bin64 := roundtripBinary(t)

	for _, args := range [][]string{
		{"show"},
		{"doctor"},
		{"trace", "tcp", "198.18.9.2:40000", "192.0.2.80:443"},
	} {
		full := append([]string{"netns", "exec", gw.Name}, args...)
		code64, out64, err64 := runCommand(t, "ip", append(full[:3:3], append([]string{bin64}, args...)...)...)
		code32, out32, err32 := runCommand(t, "ip", append(full[:3:3], append([]string{bin32}, args...)...)...)
		if code32 != code64 || out32 != out64 {
			t.Errorf("%s: the 386 build (exit %d) and the amd64 build (exit %d) differ:\n--- 386:\n%s%s\n--- amd64:\n%s%s",
				strings.Join(args, " "), code32, code64, out32, err32, out64, err64)
		}
		if args[0] == "show" && !strings.Contains(out32, "lookup 4294967000") {
			t.Errorf("show of the 386 build lacks the rule to table 4294967000:\n%s", out32)
		}
	}

	code, _, stderr := runCommand(t, "ip", "netns", "exec", gw.Name, bin32, "capture", "--duration", "1s")
	if code == 0 || !strings.Contains(stderr, "needs a 64-bit build") || strings.Contains(stderr, "goroutine ") {
		t.Errorf("capture in the 386 build: exit %d, want a refusal that says why:\n%s", code, stderr)
	}
	// diagnose gives the model's trace and says why there is no live capture.
	code, out, stderr := runCommand(t, "ip", "netns", "exec", gw.Name, bin32, "diagnose", "tcp", "198.18.9.2:40000", "192.0.2.80:443", "--timeout", "1s")
	if !strings.Contains(out, "no live capture: capturing packets needs a 64-bit build") || !strings.Contains(out, "wan0") || strings.Contains(stderr, "goroutine ") {
		t.Errorf("diagnose in the 386 build: exit %d, want the trace and why nothing was captured:\n%s%s", code, out, stderr)
	}
}
