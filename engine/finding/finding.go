// Package finding is what trace, doctor and diagnose report: findings with severities and the
// fixes (commands or wizards) that remove them.
package finding

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/quote"
)

// Finding severities. An error is a cause that breaks a flow; a warning is a likely cause that
// the model cannot prove (it cannot see the far side); info explains an assumption.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
	SeverityInfo    = "info"
)

// Wizards a fix can name (wizards/ implements them).
const (
	WizardSourceReturn = "source-return"
	WizardPortForward  = "port-forward"
	WizardSNATGateway  = "snat-gateway"
	WizardMultiWAN     = "multi-wan"
	WizardTunnel       = "tunnel"
)

// Finding is one problem found by trace or doctor, with the evidence that shows it and the way
// to fix it. Its JSON form is stable: the ui and diagnose build on it.
type Finding struct {
	ID       string   `json:"id"`
	Severity string   `json:"severity"`
	Summary  string   `json:"summary"`
	Evidence []string `json:"evidence"`
	Fix      Fix      `json:"fix"`
}

// Fix says how to repair a finding: in words, and as the wizard (with flags) that does it.
// The wizard and its args are a complete command line (Command); when a value it needs cannot
// be known from where the finding was made, its arg is a placeholder (Placeholder) and Missing
// says what to put there.
type Fix struct {
	Summary string   `json:"summary"`
	Wizard  string   `json:"wizard"`
	Args    []string `json:"args"`
	Missing string   `json:"missing,omitempty"`
}

// Placeholder is the arg that stands for a value a fix cannot know, e.g. <GATEWAY>. Pasted
// into a shell as it is, it is a redirection from a file that does not exist: the command
// fails instead of running with a wrong value.
func Placeholder(what string) string { return "<" + what + ">" }

// HasPlaceholder reports whether an arg is or holds a Placeholder (eth1:<GATEWAY>).
func HasPlaceholder(arg string) bool {
	_, rest, ok := strings.Cut(arg, "<")
	return ok && strings.Contains(rest, ">")
}

// withoutPlaceholders removes the placeholders from an arg.
func withoutPlaceholders(arg string) string {
	for {
		i := strings.Index(arg, "<")
		j := strings.Index(arg, ">")
		if i < 0 || j < i {
			return arg
		}
		arg = arg[:i] + arg[j+1:]
	}
}

// Command is the fix as the command line an operator runs: roundtrip wizard NAME ARGS, each
// arg shell-quoted (args with placeholders stay as they are). It is "" when the fix names no wizard.
func (f Fix) Command() string { return strings.Join(f.commandWords(), " ") }

// commandWords are Command's words, quoted.
func (f Fix) commandWords() []string {
	if f.Wizard == "" {
		return nil
	}
	words := []string{"roundtrip", "wizard", quote.Shell(f.Wizard)}
	for _, a := range f.Args {
		if w := withoutPlaceholders(a); HasPlaceholder(a) && (w == "" || quote.Shell(w) == w) {
			words = append(words, a)
		} else {
			words = append(words, quote.Shell(a))
		}
	}
	return words
}

// CommandLines is Command broken into lines of at most width columns where it can be, each
// but the last ending in " \\" so that the lines still paste as one command. A flag stays on
// the line of its value. The first line starts with prefix, the others with indent.
func (f Fix) CommandLines(prefix, indent string, width int) []string {
	words := f.commandWords()
	if len(words) == 0 {
		return nil
	}
	// Units: a flag with its value, or a lone word.
	var units []string
	for i := 0; i < len(words); i++ {
		u := words[i]
		if strings.HasPrefix(u, "-") && i+1 < len(words) && !strings.HasPrefix(words[i+1], "-") {
			i++
			u += " " + words[i]
		}
		units = append(units, u)
	}
	var lines []string
	line := prefix + units[0]
	for _, u := range units[1:] {
		if len(line)+1+len(u)+2 > width {
			lines = append(lines, line+" \\")
			line = indent + u
			continue
		}
		line += " " + u
	}
	return append(lines, line)
}

// CountErrors returns how many findings have severity error.
func CountErrors(fs []Finding) int {
	n := 0
	for _, f := range fs {
		if f.Severity == SeverityError {
			n++
		}
	}
	return n
}

// SNATCommand is the iptables command line that SNATs forwarded traffic to backend (of one
// protocol and port when port is not 0) to the address self, quoted to be pasted.
func SNATCommand(f inet.Family, backend netip.Addr, proto string, port uint16, self netip.Addr) string {
	w := []string{iptables.Command(f), "-t", "nat", "-A", "POSTROUTING", "-d", backend.String()}
	if port != 0 && proto != "" {
		w = append(w, "-p", proto, "--dport", strconv.Itoa(int(port)))
	}
	return quote.ShellJoin(append(w, "-j", "SNAT", "--to-source", self.String())...)
}

// IDs lists the ids of findings, in order.
func IDs(fs []Finding) []string {
	ids := []string{}
	for _, f := range fs {
		ids = append(ids, f.ID)
	}
	return ids
}

// PortForwardArgs are the port-forward wizard's flags that rebuild a DNAT of proto from listen
// to backend, entering on iif (any interface when ""), with the SNAT the wizard decides is
// needed. It is nil for what the wizard does not forward: protocols other than tcp and udp,
// a DNAT of a whole address (no port), IPv6.
func PortForwardArgs(proto int, iif string, listen, backend netip.AddrPort) []string {
	if proto != 6 && proto != 17 || listen.Port() == 0 || listen.Addr().IsValid() && !listen.Addr().Is4() || !backend.Addr().Is4() {
		return nil
	}
	l := listen.String()
	if !listen.Addr().IsValid() {
		l = fmt.Sprint(listen.Port()) // any address of this host
	}
	args := []string{"--listen", l}
	if iif != "" {
		args = append(args, "--in", iif)
	}
	args = append(args, "--to", backend.String())
	if proto == 17 {
		args = append(args, "--proto", "udp")
	}
	return append(args, "--snat", "auto")
}

// PortForwardFix is a fix by the port-forward wizard with args, or without a wizard when the
// wizard cannot rebuild the forward (args nil): then summary, a command, is the whole fix.
func PortForwardFix(summary string, args []string) Fix {
	if args == nil {
		return Fix{Summary: summary, Args: []string{}}
	}
	return Fix{Summary: summary, Wizard: WizardPortForward, Args: args}
}
