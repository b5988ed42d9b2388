package kernel

import (
	"context"
	"errors"
	"fmt"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"roundtrip/engine/model"
)

// DeleteFunc deletes the entries that pass f and for which del returns true, and returns how
// many it deleted. It selects by anything an entry holds (the reply tuple's NATed address, the
// mark), which conntrack -D and the plan's ConntrackFlush cannot: after a WAN fails, only the
// connections NATed to its address are deleted, not the whole table. The entries are picked
// during a streaming dump and deleted after it, since deleting during a dump may make the
// kernel skip entries of the hash chain it is walking; an entry that ended in between is not
// an error.
func (c *Conntrack) DeleteFunc(ctx context.Context, f *ConntrackFilter, del func(*ConntrackEntry) bool) (int, error) {
	var doomed []ConntrackTuple
	err := c.Dump(ctx, f, func(e *ConntrackEntry) error {
		if del(e) {
			doomed = append(doomed, e.Orig)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range doomed {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		err := c.conn.Delete(conntrack.Flow{TupleOrig: toTiMoTuple(t)})
		switch {
		case err == nil:
			n++
		case errors.Is(err, unix.ENOENT):
		default:
			return n, fmt.Errorf("deleting conntrack entry %s in %s: %w", t, c.ns, capErr("deleting conntrack entries", "CAP_NET_ADMIN", err))
		}
	}
	return n, nil
}

// MarkFunc sets mark bits of the entries that pass f: for each, mark returns the bits to set
// (Value within Mask; the entry's other bits stay) and whether to set them. It returns how many
// entries it changed. Packets take the new mark when a rule restores it (CONNMARK
// --restore-mark), which is how a connection is pinned to an uplink. Clearing a mark to zero is
// refused: ctnetlink leaves a zero mark out of the request and the entry would not change.
func (c *Conntrack) MarkFunc(ctx context.Context, f *ConntrackFilter, mark func(*ConntrackEntry) (model.MarkMatch, bool)) (int, error) {
	type change struct {
		t    ConntrackTuple
		mark uint32
	}
	var changes []change
	err := c.Dump(ctx, f, func(e *ConntrackEntry) error {
		m, ok := mark(e)
		if !ok {
			return nil
		}
		v := e.Mark&^m.Mask | m.Value&m.Mask
		if v == e.Mark {
			return nil
		}
		if v == 0 {
			return fmt.Errorf("marking conntrack entry %s: clearing its mark %#x to 0 is not supported", e.Orig, e.Mark)
		}
		changes = append(changes, change{e.Orig, v})
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, ch := range changes {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		err := c.conn.Update(conntrack.Flow{TupleOrig: toTiMoTuple(ch.t), Mark: ch.mark})
		switch {
		case err == nil:
			n++
		case errors.Is(err, unix.ENOENT):
		default:
			return n, fmt.Errorf("marking conntrack entry %s in %s with %#x: %w", ch.t, c.ns, ch.mark, capErr("changing conntrack entries", "CAP_NET_ADMIN", err))
		}
	}
	return n, nil
}
