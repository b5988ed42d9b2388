package cli

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"roundtrip/engine/inet"
	"roundtrip/engine/kernel"
	"roundtrip/engine/lab"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
)

var nftCounterRE = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// TestPrivilegedNFTApplyKilled kills (SIGKILL) an apply whose first step loaded roundtrip's
// nft table, while its next step sends 400k routes: the journal is left applying, and
// `roundtrip rollback` puts the table back as it was before (here: with a chain of an earlier
// apply in it), byte for byte but for counters, and removes the routes.
func TestPrivilegedNFTApplyKilled(t *testing.T) {
	lab.RequireTool(t, "nft")
	bin := roundtripBinary(t)
	l := lab.NewPrefixed(t, "hna")
	ns := l.NS("kill")
	ns.IP("link", "add", "d0", "type", "veth", "peer", "name", "d1")
	ns.IP("link", "set", "d0", "up")
	ns.IP("link", "set", "d1", "up")
	ns.Addr("d0", "10.77.0.1/24")
	stateDir := t.TempDir()
	t.Setenv(kernel.StateDirEnv, stateDir)
	run := func(args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(bin, append(args, "--netns", ns.Name)...)
		cmd.Env = append(os.Environ(), kernel.StateDirEnv+"="+stateDir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		code := 0
		if err := cmd.Run(); err != nil {
			code = cmd.ProcessState.ExitCode()
		}
		return code, out.String()
	}
	chain := func(name, rule string) plan.Change {
		return plan.Change{Kind: plan.KindNFT, Op: plan.OpSet, NFT: &plan.ChainSpec{Family: inet.V4, Table: "nat", Name: name,
			Jumps: []plan.Jump{{Chain: "PREROUTING"}}, Rules: []string{rule}}}
	}
	// An earlier apply leaves a chain in roundtrip's table, and confirms it.
	first := plan.New("an earlier forward")
	first.Changes = []plan.Change{chain("RT-PF-A", "-d 10.77.0.1/32 -p tcp -m tcp --dport 81 -m comment --comment rt:a -j DNAT --to-destination 10.77.0.9:80")}
	if code, out := run("apply", writePlan(t, first)); code != 0 {
		t.Fatalf("the first apply: exit %d\n%s", code, out)
	}
	before := nftCounterRE.ReplaceAllString(ns.Run("nft", "list", "ruleset"), "counter")
	if !strings.Contains(before, "RT-PF-A") {
		t.Fatalf("the first apply left no chain:\n%s", before)
	}

	p := plan.New("nft and 400k routes")
	p.Changes = append(p.Changes,
		chain("RT-PF-A", "-d 10.77.0.1/32 -p tcp -m tcp --dport 82 -m comment --comment rt:a -j DNAT --to-destination 10.77.0.9:80"),
		chain("RT-PF-B", "-d 10.77.0.1/32 -p tcp -m tcp --dport 83 -m comment --comment rt:b -j DNAT --to-destination 10.77.0.9:80"))
	for i := range 400000 {
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(11 + i>>16), byte(i >> 8), byte(i), 0}), 24)
		p.Changes = append(p.Changes, plan.Change{Kind: plan.KindRoute, Op: plan.OpAdd,
			Route: &model.Route{Family: inet.V4, Table: 200, Dst: dst, Gateway: netip.MustParseAddr("10.77.0.2"), Dev: "d0"}})
	}
	path := writePlan(t, p)
	p = nil

	cmd := exec.Command(bin, "apply", path, "--netns", ns.Name)
	cmd.Env = append(os.Environ(), kernel.StateDirEnv+"="+stateDir)
	var applyOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &applyOut, &applyOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	store, err := kernel.OpenStore(kernel.Namespace{Name: ns.Name})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		js, _ := store.List()
		var j *kernel.Journal
		for _, x := range js {
			if x.Intent == "nft and 400k routes" {
				j, _ = store.Load(x.ID)
			}
		}
		if j != nil && j.Started[1] {
			if j.Status != kernel.StatusApplying {
				t.Fatalf("the apply finished (%s) before it could be killed", j.Status)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the apply did not reach its routes: %v\n%s", js, applyOut.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	mid := ns.Run("nft", "list", "table", "inet", "roundtrip")
	if !strings.Contains(mid, "RT-PF-B") || !strings.Contains(mid, "dport 82") {
		t.Fatalf("the killed apply had not loaded its nft table:\n%s", mid)
	}
	if code, out := run("rollback"); code != 0 {
		t.Fatalf("rollback after SIGKILL: exit %d\n%s", code, out)
	}
	if after := nftCounterRE.ReplaceAllString(ns.Run("nft", "list", "ruleset"), "counter"); after != before {
		t.Errorf("nft list ruleset after the rollback differs from before:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if out, _ := ns.Try("ip", "-4", "route", "show", "table", "200"); strings.TrimSpace(out) != "" && !strings.Contains(out, "does not exist") {
		t.Errorf("routes left after the rollback: %.200s", out)
	}
}
