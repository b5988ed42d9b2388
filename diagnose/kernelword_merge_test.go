package diagnose

import (
	"strings"
	"testing"
	"time"

	"roundtrip/engine/kernel/nftrace"
)

// A flood of drops of one connection, reason, interface and kernel function is reported
// maxDropLines times (events and summary entries) and then only counted, on the first
// entry; another kernel function is a run of its own; the finding is made once, and names
// the rule traced for the first packets although the later ones were not traced.
func TestKernelDropRepeatsCounted(t *testing.T) {
	s, evs := kwSession(t, "tcp and port 80", explainAs(""))
	kwSYN(s)
	first := kwDrop("NETFILTER_DROP", "lan", "nft_do_chain", kwServer)
	// Only the first packets are traced (the trace rule's limit): one step, at the first drop.
	st := nftrace.Step{Time: first.Time, Family: "ip", Table: "filter", Chain: "FORWARD", Handle: 7, Kind: "rule", Verdict: "drop",
		Rule: nftrace.RuleText{Nft: "tcp dport 80 drop"}, Packet: first.Packet}
	s.kw.dropSteps[canon(dropTuple(st.Packet))] = st
	const flood = 40
	for i := range flood {
		d := *first
		// Seconds apart: the later drops are beyond the traced step's window.
		d.Time = first.Time.Add(time.Duration(i) * 100 * time.Millisecond)
		kwHand(s, &d)
	}
	other := kwDrop("NETFILTER_DROP", "lan", "nf_hook_slow", kwServer)
	for range 2 {
		kwHand(s, other)
	}
	var drops int
	for _, e := range *evs {
		if e.Type == EventDrop {
			drops++
		}
	}
	if drops != maxDropLines+2 {
		t.Errorf("%d drop events; want %d of the flood and 2 of the other function", drops, maxDropLines+2)
	}
	sum := &CaptureSummary{}
	s.kw.summary(sum)
	if sum.DropCount != flood+2 || len(sum.Drops) != maxDropLines+2 {
		t.Fatalf("summary: drop_count %d, %d drops; want %d and %d", sum.DropCount, len(sum.Drops), flood+2, maxDropLines+2)
	}
	if sum.Drops[0].Count != flood || sum.Drops[1].Count != 0 || sum.Drops[maxDropLines].Count != 2 {
		t.Errorf("counts %d, %d, %d; want %d on the flood's first entry, none on its second, 2 on the other's first",
			sum.Drops[0].Count, sum.Drops[1].Count, sum.Drops[maxDropLines].Count, flood)
	}
	kf := kwFindings(*evs, FindingKernelDrop)
	if len(kf) != 1 || !strings.Contains(strings.Join(kf[0].Evidence, "\n"), "rule: ip filter FORWARD handle 7: drop (tcp dport 80 drop)") {
		t.Fatalf("kernel-drop findings %+v: want one naming the traced rule", kf)
	}
	var b strings.Builder
	sum.DropsWatched = true // the test has no watcher
	renderDrops(&b, sum)
	if !strings.Contains(b.String(), "(40 like it)") {
		t.Errorf("text summary %q: want the flood's count", b.String())
	}
}

// Pending kernel events are appended while they come in time order and sorted only when one
// comes before the last: what is released is in time order either way.
func TestKernelPendingOrder(t *testing.T) {
	s, evs := kwSession(t, "tcp and port 80", explainAs(""))
	kwSYN(s)
	at := func(ms int) kernelEvent {
		d := kwDrop("SOCKET_RCVBUFF", "lan", "sk_filter", kwServer)
		d.Time = kwT0.Add(time.Duration(ms) * time.Millisecond)
		d.Packet.Length = ms
		return kernelEvent{at: d.Time, drop: d}
	}
	s.kw.queue(at(1))
	s.kw.queue(at(2))
	s.kw.queue(at(2))
	if s.kw.unsorted {
		t.Fatal("events in time order marked unsorted")
	}
	s.kw.queue(at(3))
	s.kw.queue(at(0))
	if !s.kw.unsorted {
		t.Fatal("an event before the last one is not marked")
	}
	s.releaseKernel(kwT0.Add(time.Second))
	if s.kw.unsorted || len(s.kw.pending) != 0 {
		t.Errorf("after release: unsorted %v, %d pending; want sorted and none", s.kw.unsorted, len(s.kw.pending))
	}
	var got []int
	for _, e := range *evs {
		if e.Type == EventDrop {
			got = append(got, e.Drop.Packet.Length)
		}
	}
	if len(got) != 5 || got[0] != 0 || got[1] != 1 || got[2] != 2 || got[3] != 2 || got[4] != 3 {
		t.Errorf("released in the order %v; want 0 1 2 2 3", got)
	}
	// Released up to a time: what is later stays, in order.
	s.kw.queue(at(10))
	s.kw.queue(at(20))
	s.releaseKernel(kwT0.Add(15 * time.Millisecond))
	if len(s.kw.pending) != 1 || s.kw.pending[0].drop.Packet.Length != 20 {
		t.Errorf("pending after a release up to 15 ms: %d events; want the one at 20 ms", len(s.kw.pending))
	}
}
