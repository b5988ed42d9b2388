package cli

import (
	"strings"
	"testing"

	"roundtrip/engine/nft"
)

// --firewall chooses where a wizard's rules go on a host whose firewall is native nft; by
// default a host with iptables rules of its own (here the DNAT made by hand) keeps them in
// iptables, and one without gets roundtrip's nft table.
func TestWizardFirewallFlag(t *testing.T) {
	st := wizardState()
	st.Nftables = &nft.Ruleset{HostOrder: "little", Tables: []*nft.Table{{Family: nft.FamilyInet, Name: "filter"}}}
	snap := writeSnapshot(t, st)
	bare := wizardState()
	bare.Netfilter.Tables = nil
	bare.Nftables = st.Nftables
	bareSnap := writeSnapshot(t, bare)
	pf := []string{"wizard", "port-forward", "--listen", "192.0.2.2:80", "--in", "wan0", "--to", "10.1.0.80:80"}
	tests := []struct {
		args      []string
		code      int
		in, notIn string
	}{
		{append(pf, "--snapshot", snap, "--firewall", "bogus"), ExitUsage, `--firewall "bogus": want nft or iptables`, ""},
		{append(pf, "--snapshot", snap, "--firewall", "nft", "--iptables-backend", "legacy"), ExitUsage, "--iptables-backend goes with --firewall iptables", ""},
		{append(pf, "--snapshot", snap), ExitOK, "hook iptables nat POSTROUTING RT-PF-POST", "RT_NFT_EOF"},
		{append(pf, "--snapshot", snap, "--firewall", "nft"), ExitOK, "snat ip to 10.1.0.1", "iptables-restore"},
		{append(pf, "--snapshot", bareSnap), ExitOK, "nft -f - <<'RT_NFT_EOF'", "iptables-restore"},
		{append(pf, "--snapshot", bareSnap, "--firewall", "iptables"), ExitOK, "RT-PF-PRE", "RT_NFT_EOF"},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(t, tt.args...)
		all := out + errOut
		if code != tt.code || !strings.Contains(all, tt.in) || tt.notIn != "" && strings.Contains(all, tt.notIn) {
			t.Errorf("roundtrip %s: exit %d, want %d with %q and without %q:\n%s", strings.Join(tt.args, " "), code, tt.code, tt.in, tt.notIn, all)
		}
	}
}
