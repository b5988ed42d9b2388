package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"roundtrip/diagnose"
	"roundtrip/engine/lab"
	"roundtrip/engine/trace"
)

// These tests run capture, conntrack and diagnose as an operator would, on field cases 1 and
// 5 built by engine/lab, with real clients.

type cliResult struct {
	code      int
	out, errs string
}

// runCLIAsync starts a command and returns a channel with its result.
func runCLIAsync(t *testing.T, args ...string) <-chan cliResult {
	t.Helper()
	done := make(chan cliResult, 1)
	var out, errb syncBuffer
	go func() {
		code := Run(context.Background(), args, strings.NewReader(""), &out, &errb)
		done <- cliResult{code, out.String(), errb.String()}
	}()
	// The command reads the host state and opens its rings before it captures; it says on
	// stderr when a client started from then on is seen whole (or it ends, having failed).
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case r := <-done:
			done <- r
			return done
		default:
		}
		if e := errb.String(); strings.Contains(e, "listening (") || strings.Contains(e, "start the client now") {
			return done
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v: not capturing after 30s: %s", args, errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// captureEvent is one NDJSON line of capture --json.
type captureEvent struct {
	Type    string                   `json:"type"`
	Finding *diagnose.Finding        `json:"finding"`
	Packet  json.RawMessage          `json:"packet"`
	Summary *diagnose.CaptureSummary `json:"summary"`
}

func TestPrivilegedCaptureCLICase5JSONAndPcap(t *testing.T) {
	n := lab.Case5(t)
	pcapPath := filepath.Join(t.TempDir(), "a.pcapng")
	done := runCLIAsync(t, "capture", "--netns", n.A.Name, "--json", "--duration", "4s", "--pcap", pcapPath,
		"tcp", "and", "port", "81", "or", "tcp", "and", "port", "80")
	if _, err := n.Client.Dial(n.Service, n.ClientAddr+":40105", 1500*time.Millisecond); err == nil {
		t.Fatal("the port forward works before the fix: the failure does not reproduce")
	}
	r := <-done
	if r.code != ExitFindings {
		t.Errorf("capture exit %d, want %d; stderr %s", r.code, ExitFindings, r.errs)
	}

	var events []captureEvent
	sc := bufio.NewScanner(strings.NewReader(r.out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev captureEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("capture --json printed a line that is not JSON: %q: %v", sc.Text(), err)
		}
		events = append(events, ev)
	}
	var found *diagnose.Finding
	packets := 0
	for _, ev := range events {
		switch ev.Type {
		case diagnose.EventFinding:
			if ev.Finding.ID == diagnose.FindingReplyNotSeen {
				found = ev.Finding
			}
		case diagnose.EventPacket:
			packets++
		}
	}
	last := events[len(events)-1]
	if last.Type != "summary" || last.Summary == nil {
		t.Fatalf("the last line is %+v, want the summary\n%s", last, r.out)
	}
	if found == nil || found.Conntrack == nil || !found.Conntrack.Unreplied() || found.Ingress != "eth0" || found.Egress != "eth0" {
		t.Fatalf("reply-not-seen finding %+v: want one with an UNREPLIED conntrack entry, in and out on eth0\n%s", found, r.out)
	}
	sum := last.Summary
	if sum.Kernel.KernelDrops != 0 || int(sum.Kernel.Received) != packets || sum.Packets != packets {
		t.Errorf("summary %+v: want every one of the %d packet events counted and no drops", sum.Kernel, packets)
	}

	// The pcap reads back with the same packets, each with its interface and direction.
	f, err := os.Open(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var inbound81, outbound80, total int
	for {
		data, ci, opts, err := rd.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		total++
		ifc, err := rd.Interface(ci.InterfaceIndex)
		if err != nil || ifc.Name != "eth0" || ifc.LinkType != layers.LinkTypeEthernet || opts.Flags == nil {
			t.Fatalf("packet %d: interface %+v, %v, flags %v", total, ifc, err, opts.Flags)
		}
		ip := data[14:]
		dport := int(ip[20+2])<<8 | int(ip[20+3])
		switch {
		case opts.Flags.Direction == pcapgo.NgEpbFlagDirectionInbound && dport == 81:
			inbound81++
		case opts.Flags.Direction == pcapgo.NgEpbFlagDirectionOutbound && dport == 80:
			outbound80++
		}
	}
	if total != packets || inbound81 == 0 || outbound80 == 0 {
		t.Errorf("pcap has %d packets (%d in to port 81, %d out to port 80); want %d, with the client's SYN in and the forwarded SYN out", total, inbound81, outbound80, packets)
	}
	// Wireshark's own reader, as an operator opens the file, agrees on interface and direction.
	t.Run("tshark", func(t *testing.T) {
		lab.RequireTool(t, "tshark")
		out, err := exec.Command("tshark", "-r", pcapPath, "-T", "fields", "-e", "frame.interface_name", "-e", "frame.packet_flags_direction", "-e", "ip.dst", "-e", "tcp.dstport").CombinedOutput()
		if err != nil {
			t.Fatalf("tshark: %v: %s", err, out)
		}
		text := string(out)
		if !strings.Contains(text, "eth0\t0x00000001\t"+n.AAddr+"\t81") || !strings.Contains(text, "eth0\t0x00000002\t"+n.BAddr+"\t80") {
			t.Errorf("tshark reads:\n%s\nwant the SYN in to %s:81 and out to %s:80 on eth0", text, n.AAddr, n.BAddr)
		}
	})

	// conntrack shows the entry as the seed's author saw it: DNAT, UNREPLIED.
	code, out, errs := runCLI(t, "conntrack", "--netns", n.A.Name, "--state", "UNREPLIED", "--port", "81")
	if code != ExitOK || !strings.Contains(out, n.ClientAddr+":40105 -> "+n.Service+"  reply "+n.Backend+" -> "+n.ClientAddr+":40105  DNAT  [UNREPLIED]") ||
		!strings.Contains(out, "conntrack: ") || !strings.Contains(out, "drops: drop 0") {
		t.Errorf("conntrack exit %d:\n%s\n%s", code, out, errs)
	}
	code, out, _ = runCLI(t, "conntrack", "--netns", n.A.Name, "--state", "ASSURED", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != ExitOK || len(lines) != 1 || !strings.Contains(lines[0], `"type":"stats"`) {
		t.Errorf("conntrack --state ASSURED --json: exit %d, want only the stats line:\n%s", code, out)
	}
	if code, _, errs := runCLI(t, "conntrack", "--netns", n.A.Name, "--state", "bogus"); code != ExitUsage || !strings.Contains(errs, "neither a TCP state") {
		t.Errorf("conntrack --state bogus: exit %d, %s", code, errs)
	}
}

func TestPrivilegedDiagnoseCLICase1(t *testing.T) {
	n := lab.Case1(t)
	flow := []string{"diagnose", "tcp", n.ClientAddr, n.ServerAddr, "--iif", "eth0", "--netns", n.Server.Name, "--timeout", "5s"}
	done := runCLIAsync(t, flow...)
	if _, err := n.Client.Dial(n.Service, n.ClientAddr+":40101", 1500*time.Millisecond); err == nil {
		t.Fatal("the client reaches the server through the firewall before the fix")
	}
	r := <-done
	if r.code != ExitFindings || !strings.Contains(r.out, "verdict: failed: the flow is broken: asymmetric-return: the request came in on eth0 but the reply left by em1") ||
		!strings.Contains(r.out, "FINDING asymmetric-return") || !strings.Contains(r.out, "model:") {
		t.Errorf("diagnose before the fix: exit %d\n%s\n%s", r.code, r.out, r.errs)
	}

	n.Fix()
	done = runCLIAsync(t, append(flow, "--json")...)
	if body, err := n.Client.HTTPGet(n.Service, 1500*time.Millisecond); err != nil || body != n.Body {
		t.Fatalf("after the fix the client gets %q, %v", body, err)
	}
	r = <-done
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	var last struct {
		Type    string           `json:"type"`
		Verdict diagnose.Verdict `json:"verdict"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("last line of diagnose --json: %v\n%s", err, r.out)
	}
	v := last.Verdict
	if r.code != ExitOK || last.Type != "verdict" || v.Outcome != diagnose.OutcomeCompleted || v.Capture == nil || len(v.Capture.Findings) != 0 || v.Trace == nil || v.Trace.Has(trace.FindingAsymmetricReturn) {
		t.Errorf("diagnose after the fix: exit %d, verdict %+v\n%s", r.code, v, r.errs)
	}
}

// TestPrivilegedCaptureWithoutCapabilities runs the binary as nobody with no capabilities:
// capture says what it needs, conntrack still shows the table's fill level.
func TestPrivilegedCaptureWithoutCapabilities(t *testing.T) {
	lab.Require(t)
	lab.RequireTool(t, "setpriv") // to drop privileges
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatal(err)
	}
	bin := roundtripBinary(t)
	run := func(args ...string) (int, string, string) {
		return runCommand(t, setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", bin}, args...)...)
	}
	code, _, errs := run("capture", "--count", "1")
	if code != ExitError || !strings.Contains(errs, "capturing packets needs root or CAP_NET_RAW (try sudo)") {
		t.Errorf("capture without CAP_NET_RAW: exit %d, stderr %q", code, errs)
	}
	code, out, errs := run("conntrack")
	if code != ExitError || !strings.Contains(out, "conntrack: ") || !strings.Contains(out, "drop counters unavailable") ||
		!strings.Contains(errs, "needs root or CAP_NET_ADMIN (try sudo)") {
		t.Errorf("conntrack without CAP_NET_ADMIN: exit %d\nstdout %q\nstderr %q", code, out, errs)
	}
}
