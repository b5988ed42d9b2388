package plan_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"roundtrip/engine/lab"
	"roundtrip/engine/plan"
)

// TestPrivilegedNFTRenderingLoads loads the nft rendering of the golden plan into a namespace
// with the real nft, twice (the second load must replace, not duplicate), and checks the
// chains and the hook.
func TestPrivilegedNFTRenderingLoads(t *testing.T) {
	lab.RequireTool(t, "nft")
	l := lab.New(t)
	ns := l.NS("nft")
	p, _ := plan.GoldenPlanForTest(t)
	nft, err := p.NFT()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "plan.nft")
	if err := os.WriteFile(file, nft, 0o644); err != nil {
		t.Fatal(err)
	}
	ns.Run("nft", "-f", file)
	first := ns.Run("nft", "list", "table", "ip", "roundtrip")
	ns.Run("nft", "-f", file)
	second := ns.Run("nft", "list", "table", "ip", "roundtrip")
	if first != second {
		t.Errorf("loading the file twice changed the table:\n%s\n---\n%s", first, second)
	}
	for _, want := range []string{`chain RT-PF-PRE`, `dnat to 192.168.1.32:80`, `type nat hook prerouting priority dstnat`, `jump RT-SR-PRE`, `ct mark`} {
		if !strings.Contains(first, want) {
			t.Errorf("loaded table lacks %q:\n%s", want, first)
		}
	}
}
