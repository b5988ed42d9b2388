package diagnose

import (
	"golang.org/x/sys/unix"

	"roundtrip/engine/capture"
	"roundtrip/engine/finding"
)

// Progress follows a capture's events to tell, while it runs, how the flow fares: how many of
// its connections made the round trip through this host (a TCP handshake that finished, or a
// request answered) and how many have an error finding. It sees the events in the order the
// capture emits them, so it is right even when a screen shows only some of the packets.
type Progress struct {
	conns             map[int]*progressConn
	completed, failed int
	tcp               bool // every completed connection was TCP
}

type progressConn struct {
	hs              handshakeState
	request, reply  bool
	done, hasErrors bool
}

// Observe takes one event into account.
func (p *Progress) Observe(ev Event) {
	if p.conns == nil {
		p.conns, p.tcp = map[int]*progressConn{}, true
	}
	conn := func(id int) *progressConn {
		c := p.conns[id]
		if c == nil {
			c = &progressConn{}
			p.conns[id] = c
		}
		return c
	}
	switch {
	case ev.Type == EventPacket && ev.Packet != nil && ev.Packet.Conn != 0 && ev.Packet.Type != capture.PacketOtherHost:
		pk := ev.Packet
		c := conn(pk.Conn)
		if pk.Proto == unix.IPPROTO_TCP {
			c.hs.see(pk.Role, pk.Flags)
		} else {
			c.request = c.request || pk.Role == RoleRequest
			c.reply = c.reply || (c.request && pk.Role == RoleReply)
		}
		if !c.done && (c.hs.done() || (c.request && c.reply)) {
			c.done = true
			p.tcp = p.tcp && pk.Proto == unix.IPPROTO_TCP
			if !c.hasErrors {
				p.completed++
			}
		}
	case ev.Type == EventFinding && ev.Finding != nil && ev.Finding.Conn != 0 && ev.Finding.Severity == finding.SeverityError:
		c := conn(ev.Finding.Conn)
		if !c.hasErrors {
			c.hasErrors = true
			p.failed++
			if c.done {
				p.completed--
			}
		}
	}
}

// Completed is how many connections made the round trip without an error.
func (p *Progress) Completed() int { return p.completed }

// Failed is how many connections have an error finding.
func (p *Progress) Failed() int { return p.failed }

// TCP reports whether every completed connection was TCP (a handshake, not an answer).
func (p *Progress) TCP() bool { return p.tcp || p.completed == 0 }
