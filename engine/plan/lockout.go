package plan

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"roundtrip/engine/fib"
	"roundtrip/engine/model"
)

// SSHSession is the connection an operator is logged in over, from sshd's SSH_CONNECTION
// variable ("client-address client-port server-address server-port").
type SSHSession struct {
	Client     netip.Addr `json:"client"`
	ClientPort uint16     `json:"client_port"`
	Server     netip.Addr `json:"server"`
	ServerPort uint16     `json:"server_port"`
}

// ParseSSHConnection parses the value of SSH_CONNECTION.
func ParseSSHConnection(v string) (SSHSession, error) {
	f := strings.Fields(v)
	if len(f) != 4 {
		return SSHSession{}, fmt.Errorf("SSH_CONNECTION %q: want four fields: client port server port", v)
	}
	var s SSHSession
	var err error
	if s.Client, err = netip.ParseAddr(f[0]); err != nil {
		return SSHSession{}, fmt.Errorf("SSH_CONNECTION client address: %w", err)
	}
	if s.Server, err = netip.ParseAddr(f[2]); err != nil {
		return SSHSession{}, fmt.Errorf("SSH_CONNECTION server address: %w", err)
	}
	for i, p := range []*uint16{&s.ClientPort, &s.ServerPort} {
		n, err := strconv.ParseUint(f[1+2*i], 10, 16)
		if err != nil {
			return SSHSession{}, fmt.Errorf("SSH_CONNECTION port %q: %w", f[1+2*i], err)
		}
		*p = uint16(n)
	}
	// sshd prints IPv4 clients of a dual-stack socket as plain IPv4, but be safe.
	s.Client, s.Server = s.Client.Unmap(), s.Server.Unmap()
	return s, nil
}

// Lockout is the outcome of the SSH lockout check: how the server's replies to the operator's
// SSH client are routed before and after a plan.
type Lockout struct {
	Session SSHSession `json:"session"`
	// Applies is false when the server address is not an address of the state checked (the
	// session reaches another namespace), so the plan cannot cut it.
	Applies bool       `json:"applies"`
	Changed bool       `json:"changed"`
	Before  fib.Result `json:"-"`
	After   fib.Result `json:"-"`
	Reason  string     `json:"reason"`
}

// CheckLockout simulates the route of the SSH session's return traffic (an output lookup from
// the server address to the client, as sshd's socket makes it) on the state before and after
// a plan. Any difference in verdict, output device, gateway or source counts: the session may
// survive it, but the operator should have a way back (apply --confirm).
//
// It does not see marks set by netfilter rules (a mangle OUTPUT MARK that moves port 22 to
// another table): such plans are routed as unmarked here.
func CheckLockout(before, after *model.State, s SSHSession) Lockout {
	out := Lockout{Session: s}
	if !localAddr(before, s.Server) {
		out.Reason = fmt.Sprintf("the SSH server address %s is not an address of this namespace: the session does not pass through it", s.Server)
		return out
	}
	out.Applies = true
	fl := fib.Flow{Src: s.Server, Dst: s.Client, Proto: 6, SPort: s.ServerPort, DPort: s.ClientPort}
	out.Before = fib.New(before).Lookup(fl)
	out.After = fib.New(after).Lookup(fl)
	describe := func(r fib.Result) string {
		if r.Verdict != fib.VerdictUnicast {
			return r.Verdict
		}
		d := "dev " + r.OIF
		if r.Gateway.IsValid() {
			d = "via " + r.Gateway.String() + " " + d
		}
		if r.Src.IsValid() {
			d += " src " + r.Src.String()
		}
		return d
	}
	b, a := out.Before, out.After
	if b.Verdict == a.Verdict && b.OIF == a.OIF && b.Gateway == a.Gateway && b.Src == a.Src {
		out.Reason = fmt.Sprintf("replies to your SSH client %s still leave %s", s.Client, describe(b))
		return out
	}
	out.Changed = true
	out.Reason = fmt.Sprintf("replies to your SSH client %s would leave %s instead of %s", s.Client, describe(a), describe(b))
	return out
}
