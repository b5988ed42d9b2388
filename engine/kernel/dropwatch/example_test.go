package dropwatch_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"roundtrip/engine/kernel/dropwatch"
)

// Watching one TCP connection through a router namespace, adding its NAT tuple when
// conntrack reports it.
func Example() {
	ctx := context.Background()
	w, err := dropwatch.Start(ctx, dropwatch.Options{
		Netns: "router",
		Flows: []dropwatch.Flow{{Proto: unix.IPPROTO_TCP, Src: netip.MustParseAddr("192.168.1.10"), Dst: netip.MustParseAddr("203.0.113.5"), DstPort: 443}},
	})
	if errors.Is(err, dropwatch.ErrUnsupported) {
		fmt.Println(err) // one line; go on without drop reasons
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()
	// Later, from conntrack: the reply tuple after SNAT.
	_ = w.AddFlow(dropwatch.Flow{Proto: unix.IPPROTO_TCP, Src: netip.MustParseAddr("203.0.113.5"), SrcPort: 443, Dst: netip.MustParseAddr("198.51.100.2"), DstPort: 40000})
	for d := range w.Events() {
		fmt.Printf("kernel: %s on %s in %s (%s): %s\n", d.Reason, d.Iface, d.Location.Symbol, d.Words, d.Packet)
	}
}
