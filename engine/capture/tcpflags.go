package capture

// TCP flags as in the TCP header.
const (
	TCPFIN = 0x01
	TCPSYN = 0x02
	TCPRST = 0x04
	TCPPSH = 0x08
	TCPACK = 0x10
)

// tcpFlagLetters are tcpdump's letters for the flags, in its order.
var tcpFlagLetters = [...]struct {
	bit uint8
	c   byte
}{{TCPSYN, 'S'}, {TCPFIN, 'F'}, {TCPRST, 'R'}, {TCPPSH, 'P'}, {TCPACK, '.'}}

// AppendTCPFlags writes TCP flags as tcpdump does: S, F, R, P, and "." for ACK; "none" for
// none. Packet lines and the drop watcher's JSON both use it, and ParseTCPFlags reads it back.
func AppendTCPFlags(b []byte, f uint8) []byte {
	n := len(b)
	for _, x := range tcpFlagLetters {
		if f&x.bit != 0 {
			b = append(b, x.c)
		}
	}
	if len(b) == n {
		b = append(b, "none"...)
	}
	return b
}

// ParseTCPFlags reads what AppendTCPFlags writes; letters it does not write are ignored.
func ParseTCPFlags(s string) uint8 {
	var f uint8
	if s == "none" {
		return 0
	}
	for i := 0; i < len(s); i++ {
		for _, x := range tcpFlagLetters {
			if s[i] == x.c {
				f |= x.bit
			}
		}
	}
	return f
}
