package nftrace_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel/dropwatch"
	"roundtrip/engine/kernel/nftrace"
)

// Naming the rules that see one flow in a router namespace, after removing what a crashed
// run left behind.
func Example() {
	if removed, err := nftrace.CleanupRecorded(); err != nil || len(removed) > 0 {
		fmt.Println("leftover trace tables:", removed, err)
	}
	flow := dropwatch.Flow{Proto: unix.IPPROTO_UDP, Dst: netip.MustParseAddr("10.0.0.53"), DstPort: 53}
	t, err := nftrace.Start(context.Background(), nftrace.Options{Netns: "router", Flows: []dropwatch.Flow{flow}})
	if errors.Is(err, nftrace.ErrUnsupported) {
		fmt.Println(err) // one line; drop reasons go on
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	defer t.Close()
	for _, w := range t.Warnings() {
		fmt.Println(w)
	}
	for s := range t.Events() {
		if s.Verdict == "drop" {
			fmt.Printf("rule: %s %s %s handle %d: %s\n", s.Family, s.Table, s.Chain, s.Handle, s.Rule.Nft)
		}
	}
}
