package model

import (
	"strings"
	"testing"
	"time"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
)

// TestSnapshotBackends: tables labelled with their backend survive a snapshot; a snapshot
// from before the labels (tables without one) loads as the iptables command's backend; a
// label that is not a backend, or a table twice in one backend, is refused on load.
func TestSnapshotBackends(t *testing.T) {
	s := sampleState()
	legacy := s.Netfilter.Tables[0]
	legacy.Backend = iptables.BackendLegacy
	s.Netfilter.Tables = append(s.Netfilter.Tables, legacy)
	s.Netfilter.Hidden = []string{"ip6tables-nft-save warns ..."}
	b, err := NewSnapshot(s, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := ParseSnapshot(b)
	if err != nil {
		t.Fatalf("parsing: %v", err)
	}
	nf := snap.State.Netfilter
	if nf.TableIn(iptables.BackendLegacy, inet.V4, "nat") == nil || nf.TableIn(iptables.BackendNFT, inet.V4, "nat") == nil || len(nf.Hidden) != 1 {
		t.Errorf("netfilter after a snapshot: %+v", nf)
	}
	if d := Diff(s, snap.State); d != "" {
		t.Errorf("state changed through a snapshot:\n%s", d)
	}
	// The unlabelled table is the iptables command's (nf_tables), so the lines name both.
	lines := strings.Join(s.Lines(), "\n")
	if !strings.Contains(lines, "iptables-legacy -t nat -A POSTROUTING [1] -o eth0 -j MASQUERADE") || !strings.Contains(lines, "iptables-nft -t nat -A POSTROUTING [1]") {
		t.Errorf("lines do not tell the backends apart:\n%s", lines)
	}

	for _, c := range []struct{ from, to, want string }{
		{`"backend": "legacy"`, `"backend": "bpf"`, `field backend "bpf"`},
		{`"backend": "legacy"`, `"backend": "nf_tables"`, "appears twice in backend"},
	} {
		bad := strings.Replace(string(b), c.from, c.to, 1)
		if bad == string(b) {
			t.Fatalf("no %s in the snapshot", c.from)
		}
		if _, err := ParseSnapshot([]byte(bad)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("snapshot with %s: %v, want %q", c.to, err, c.want)
		}
	}
}
