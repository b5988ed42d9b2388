package kernel_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/kernel"
	"roundtrip/engine/plan"
)

// diagRunner is a fakeRunner that also answers standard error, as ExecRunner.RunDiag does.
type diagRunner struct {
	fakeRunner
	stderr map[string]string
}

func (d *diagRunner) RunDiag(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, []byte, error) {
	out, err := d.Run(ctx, stdin, name, args...)
	return out, []byte(d.stderr[strings.Join(append([]string{name}, args...), " ")]), err
}

const legacyDNAT = `*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
[0:0] -A PREROUTING -i wan0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 100.140.0.10:80
COMMIT
`

const nftDrop = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
[0:0] -A FORWARD -p tcp -m tcp --dport 80 -j DROP
COMMIT
`

// TestReadNetfilterBothBackends: where both backends' tools exist, both are read and every
// table says which backend it lives in; iptables-nft-save's warning about legacy tables is
// then answered by reading them.
func TestReadNetfilterBothBackends(t *testing.T) {
	warning := "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n"
	r := &diagRunner{fakeRunner: fakeRunner{t: t, answers: map[string]fakeAnswer{
		"iptables -V":              {out: "iptables v1.8.9 (nf_tables)\n"},
		"iptables-legacy-save -c":  {out: legacyDNAT},
		"iptables-nft-save -c":     {out: nftDrop},
		"ip6tables-legacy-save -c": {out: ""},
		"ip6tables-nft-save -c":    {out: "# Table `filter' contains incompatible base-chains, use 'nft' tool to list them.\n" + saveV6},
		"nft -j list tables":       {out: `{"nftables": [{"table": {"family": "ip", "name": "filter", "handle": 1}}, {"table": {"family": "inet", "name": "fw", "handle": 2}}]}`},
	}}, stderr: map[string]string{"iptables-nft-save -c": warning}}
	nf, err := kernel.ReadNetfilter(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tb := range nf.Tables {
		got = append(got, fmt.Sprintf("%s %s %s", tb.Backend, tb.Family, tb.Name))
	}
	want := []string{"legacy inet nat", "nf_tables inet filter", "nf_tables inet6 filter"}
	if !slices.Equal(got, want) {
		t.Errorf("tables = %q, want %q", got, want)
	}
	if nf.Backend != iptables.BackendNFT || len(nf.Hidden) != 1 || !strings.Contains(nf.Hidden[0], "ip6tables-nft-save: Table `filter' contains incompatible base-chains") {
		t.Errorf("Backend = %q, Hidden = %q; want nf_tables and only ip6 filter's native chains hidden (legacy was read)", nf.Backend, nf.Hidden)
	}
	if !nf.Mixed() || !slices.Equal(nf.Backends(), []string{"legacy", "nf_tables"}) {
		t.Errorf("Backends = %q, Mixed = %v; want both", nf.Backends(), nf.Mixed())
	}
	// ip filter is iptables-nft's own (read by iptables-nft-save), inet fw is not.
	if !slices.Equal(nf.Foreign, []string{"inet fw"}) {
		t.Errorf("Foreign = %q, want [inet fw]", nf.Foreign)
	}
	if got := nf.TableCommand(nf.TableIn(iptables.BackendLegacy, inet.V4, "nat")); got != "iptables-legacy" {
		t.Errorf("TableCommand(legacy nat) = %q, want iptables-legacy", got)
	}
	if nf.TableIn(iptables.BackendNFT, inet.V4, "nat") != nil {
		t.Errorf("TableIn(nf_tables, nat) found a table only the legacy backend has")
	}
	if got := nf.PlanBackend(inet.V4, []string{"nat"}, []string{"RT-PF"}); got != iptables.BackendLegacy {
		t.Errorf("PlanBackend for nat = %q, want legacy, where the host's nat rules are", got)
	}
	if got := nf.PlanBackend(inet.V4, []string{"mangle"}, []string{"RT-MARK"}); got != iptables.BackendNFT {
		t.Errorf("PlanBackend for mangle (in neither) with rules in both = %q, want the iptables command's (nf_tables)", got)
	}
	nf.WriteBackend = iptables.BackendLegacy
	if got := nf.PlanBackend(inet.V4, []string{"filter"}, []string{"RT-PF"}); got != iptables.BackendLegacy {
		t.Errorf("PlanBackend with --iptables-backend legacy = %q", got)
	}
}

// TestReadNetfilterLegacyHidden: iptables-nft-save warns about legacy tables on a host that
// has no iptables-legacy-save: the warning is kept as what the model cannot see.
func TestReadNetfilterLegacyHidden(t *testing.T) {
	warning := "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n"
	r := &diagRunner{fakeRunner: fakeRunner{t: t, answers: map[string]fakeAnswer{
		"iptables -V":           {out: "iptables v1.8.9 (nf_tables)\n"},
		"iptables-nft-save -c":  {out: nftDrop},
		"iptables-save -c":      {out: nftDrop},
		"ip6tables-nft-save -c": {out: ""},
		"ip6tables-save -c":     {out: ""},
		"nft -j list tables":    {out: `{"nftables": []}`},
	}}, stderr: map[string]string{"iptables-nft-save -c": warning, "iptables-save -c": warning}}
	nf, err := kernel.ReadNetfilter(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if len(nf.Hidden) != 1 || !strings.Contains(nf.Hidden[0], "iptables-legacy tables present") || !strings.Contains(nf.Hidden[0], "iptables-legacy-save is not installed") {
		t.Errorf("Hidden = %q, want the warning and the missing tool", nf.Hidden)
	}
	if len(nf.Tables) != 1 || nf.Tables[0].Backend != "" || nf.TableBackend(&nf.Tables[0]) != iptables.BackendNFT {
		t.Errorf("tables = %+v, want one, of the iptables command's backend", nf.Tables)
	}
}

// CentOS 7's iptables-restore 1.4.21: no -w, no --version (its usage, on standard error, with
// exit status 1 for the unknown option).
const usage1421 = `Usage: iptables-restore [-b] [-c] [-v] [-t] [-h]
	   [ --binary ]
	   [ --counters ]
	   [ --verbose ]
	   [ --test ]
	   [ --help ]
	   [ --noflush ]
	   [ --table=<TABLE> ]
          [ --modprobe=<command>]
`

const usage189 = `Usage: iptables-restore [-c] [-v] [-V] [-t] [-h] [-n] [-w secs] [-W usecs] [-T table] [-M command] [file]
	   [ --counters ]
	   [ --verbose ]
	   [ --version]
	   [ --test ]
	   [ --help ]
	   [ --noflush ]
	   [ --wait=<seconds>
	   [ --table=<TABLE> ]
	   [ --modprobe=<command> ]
`

func TestProbeRestore(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		answers  map[string]fakeAnswer
		stderr   map[string]string
		wantWait bool
		version  string
		args     []string
	}{
		{"1.8.9", map[string]fakeAnswer{
			"iptables-restore --help":    {out: usage189},
			"iptables-restore --version": {out: "iptables-restore v1.8.9 (nf_tables)\n"},
		}, nil, true, "1.8.9 (nf_tables)", []string{"--test", "--noflush", "-w"}},
		{"1.4.21", map[string]fakeAnswer{
			"iptables-restore --help":    {err: errors.New(`running "iptables-restore --help": exit status 1`)},
			"iptables-restore --version": {err: errors.New(`running "iptables-restore --version": exit status 1: iptables-restore: unrecognized option '--version'`)},
		}, map[string]string{"iptables-restore --help": usage1421}, false, "", []string{"--test", "--noflush"}},
		{"1.4.21 usage in the error", map[string]fakeAnswer{
			"iptables-restore --help":    {err: errors.New(`running "iptables-restore --help": exit status 1: ` + usage1421)},
			"iptables-restore --version": {err: errors.New("exit status 1")},
		}, nil, false, "", []string{"--test", "--noflush"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &diagRunner{fakeRunner: fakeRunner{t: t, answers: c.answers}, stderr: c.stderr}
			caps, err := kernel.ProbeRestore(ctx, r, "iptables-restore")
			if err != nil {
				t.Fatal(err)
			}
			if caps.Wait != c.wantWait || !caps.NoFlush || !caps.Test || !caps.Counters || caps.Version != c.version {
				t.Errorf("caps = %+v, want Wait %v, NoFlush, Test, Counters, version %q", caps, c.wantWait, c.version)
			}
			args, err := caps.Args(true)
			if err != nil || !slices.Equal(args, c.args) {
				t.Errorf("Args(test) = %q, %v; want %q", args, err, c.args)
			}
		})
	}
	// A tool without --noflush cannot be used, and the error says what is missing.
	_, err := kernel.RestoreCaps{Tool: "iptables-restore", Version: "1.2", Test: true}.Args(false)
	if err == nil || !strings.Contains(err.Error(), "does not accept --noflush") {
		t.Errorf("Args without --noflush: %v, want an error naming it", err)
	}
	_, err = kernel.RestoreCaps{Tool: "iptables-restore", NoFlush: true}.Args(true)
	if err == nil || !strings.Contains(err.Error(), "does not accept --test") {
		t.Errorf("Args(test) without --test: %v, want an error naming it", err)
	}
	// A missing tool says so.
	r := &diagRunner{fakeRunner: fakeRunner{t: t}}
	if _, err := kernel.ProbeRestore(ctx, r, "iptables-legacy-restore"); !errors.Is(err, kernel.ErrToolMissing) {
		t.Errorf("ProbeRestore of a missing tool: %v, want ErrToolMissing", err)
	}
}

// TestPickRestore: a plan's backend decides the tool; an old userland without the backends'
// own tools falls back to plain iptables-restore only when that writes into the backend asked
// for, and never into another.
func TestPickRestore(t *testing.T) {
	ctx := context.Background()
	modern := map[string]fakeAnswer{
		"iptables-legacy-restore --help":    {out: usage189},
		"iptables-legacy-restore --version": {out: "iptables-restore v1.8.9 (legacy)\n"},
		"ip6tables-nft-restore --help":      {out: usage189},
		"ip6tables-nft-restore --version":   {out: "ip6tables-restore v1.8.9 (nf_tables)\n"},
		"iptables-restore --help":           {out: usage189},
		"iptables-restore --version":        {out: "iptables-restore v1.8.9 (nf_tables)\n"},
	}
	old := map[string]fakeAnswer{
		"iptables-restore --help":    {err: errors.New("exit status 1: " + usage1421)},
		"iptables-restore --version": {err: errors.New("exit status 1")},
	}
	for _, c := range []struct {
		name     string
		answers  map[string]fakeAnswer
		f        inet.Family
		backend  string
		wantTool string
		wantArgs []string
		wantErr  string
	}{
		{"legacy", modern, inet.V4, iptables.BackendLegacy, "iptables-legacy-restore", []string{"--noflush", "-w"}, ""},
		{"nft v6", modern, inet.V6, iptables.BackendNFT, "ip6tables-nft-restore", []string{"--noflush", "-w"}, ""},
		{"unnamed", modern, inet.V4, "", "iptables-restore", []string{"--noflush", "-w"}, ""},
		{"old userland legacy", old, inet.V4, iptables.BackendLegacy, "iptables-restore", []string{"--noflush"}, ""},
		{"old userland nft", old, inet.V4, iptables.BackendNFT, "", nil, "iptables-nft-restore is not installed and iptables-restore writes into legacy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &diagRunner{fakeRunner: fakeRunner{t: t, answers: c.answers}}
			tool, caps, err := kernel.PickRestore(ctx, r, c.f, c.backend)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("PickRestore = %q, %v; want an error containing %q", tool, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			args, err := caps.Args(false)
			if tool != c.wantTool || err != nil || !slices.Equal(args, c.wantArgs) {
				t.Errorf("PickRestore = %q %q (%v), want %q %q", tool, args, err, c.wantTool, c.wantArgs)
			}
		})
	}
}

// TestFakeApplyIntoBackend: on a host with rules in both backends, a plan's chains go into the
// backend it names, through that backend's iptables-restore, and the rollback takes them out
// of it again; the other backend is never touched.
func TestFakeApplyIntoBackend(t *testing.T) {
	ctx := context.Background()
	for _, backend := range []string{iptables.BackendLegacy, iptables.BackendNFT} {
		t.Run(backend, func(t *testing.T) {
			st := fakeState()
			for i := range st.Netfilter.Tables {
				st.Netfilter.Tables[i].Backend = iptables.BackendLegacy
			}
			nftDrop, err := iptables.ParseSave(inet.V4, []byte(nftDrop))
			if err != nil {
				t.Fatal(err)
			}
			nftDrop[0].Backend = iptables.BackendNFT
			st.Netfilter.Backend = iptables.BackendNFT
			st.Netfilter.Tables = append(st.Netfilter.Tables, nftDrop...)
			st.Netfilter.WriteBackend = backend
			w := newWorld(t, st)
			before := w.fake.State()
			d := &plan.Desired{Intent: "test", Chains: []plan.ChainSpec{{Family: inet.V4, Table: "nat", Name: "RT-PF-PRE", Jumps: []plan.Jump{{Chain: "PREROUTING"}},
				Rules: []string{"-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.88.0.2:80"}}}}
			p, err := d.Plan(before)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.applier.Apply(ctx, p, kernel.ApplyOptions{}); err != nil {
				t.Fatalf("apply: %v\n%s", err, strings.Join(w.fake.Log, "\n"))
			}
			tool := iptables.BackendCommand(inet.V4, backend) + "-restore"
			if log := strings.Join(w.fake.Log, "\n"); !strings.Contains(log, tool+" --noflush") {
				t.Errorf("the apply did not run %s:\n%s", tool, log)
			}
			after := w.fake.State().Netfilter
			other := map[string]string{iptables.BackendLegacy: iptables.BackendNFT, iptables.BackendNFT: iptables.BackendLegacy}[backend]
			if after.TableIn(backend, inet.V4, "nat").Chain("RT-PF-PRE") == nil || after.TableIn(other, inet.V4, "nat").Chain("RT-PF-PRE") != nil {
				t.Errorf("RT-PF-PRE is not in the %s backend alone:\n%s", backend, w.fake.String())
			}
			if _, err := w.applier.Rollback(ctx, "", "test"); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			sameState(t, "rollback did not restore both backends", before, w.fake.State())
		})
	}
}
