package trace

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"unicode/utf8"

	"roundtrip/engine/finding"
	"roundtrip/engine/inet"
	"roundtrip/engine/model"
	"roundtrip/engine/quote"
)

// renderWidth is the width the human output is wrapped to: readable on an 80-column terminal.
const renderWidth = 80

// style colours text when writing to a terminal (and NO_COLOR is unset), and leaves it plain
// otherwise, so that piped output and files never hold escape codes.
type style struct{ on bool }

func styleFor(w io.Writer) style {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return style{}
	}
	st, err := f.Stat()
	return style{on: err == nil && st.Mode()&os.ModeCharDevice != 0}
}

func (s style) wrap(code, text string) string {
	if !s.on || text == "" {
		return text
	}
	return "\x1b[" + code + "m" + text + "\x1b[0m"
}

func (s style) bold(t string) string { return s.wrap("1", t) }
func (s style) dim(t string) string  { return s.wrap("2", t) }

func (s style) severity(sev string) string {
	switch sev {
	case finding.SeverityError:
		return s.wrap("1;31", sev)
	case finding.SeverityWarning:
		return s.wrap("1;33", sev)
	}
	return s.wrap("1;36", sev)
}

// Render writes the trace for a person: the flow, both legs as hook -> rule -> table -> route
// -> interface with the deciding steps marked ▶, then the findings with evidence and fix.
func (r *Result) Render(w io.Writer, s *model.State) {
	st := styleFor(w)
	fl := r.Flow
	head := fmt.Sprintf("%s %s -> %s", fl.Proto, inet.Endpoint(fl.Src), inet.Endpoint(fl.Dst))
	if fl.IIF != "" {
		head += " arriving on " + fl.IIF
	} else {
		head += " from this host"
	}
	if fl.Mark != 0 {
		head += fmt.Sprintf(" with mark %#x", fl.Mark)
	}
	if s != nil && (s.Host != "" || s.Namespace != "") {
		where := s.Host
		if s.Namespace != "" {
			where = strings.TrimPrefix(where+" netns "+s.Namespace, " ")
		}
		head += " (" + where + ")"
	}
	fmt.Fprintln(w, st.bold(wrapText("", head, renderWidth, "")))
	fmt.Fprintln(w)
	renderLeg(w, st, "REQUEST", &r.Forward)
	if r.Reply != nil {
		fmt.Fprintln(w)
		renderLeg(w, st, "REPLY", r.Reply)
	} else {
		fmt.Fprintln(w)
		fmt.Fprintln(w, st.bold("REPLY")+"    none: the request does not get through")
	}
	fmt.Fprintln(w)
	RenderFindings(w, r.Findings)
}

func renderLeg(w io.Writer, st style, title string, l *Leg) {
	fmt.Fprintf(w, "%s  %s\n", st.bold(fmt.Sprintf("%-7s", title)), quote.Term(legSummary(l)))
	for _, s := range l.Steps {
		mark := "  "
		if s.Decisive {
			mark = "▶ "
		}
		what := s.What
		if s.Backend != "" {
			what = "[" + s.Backend + "] " + what
		}
		text := wrapText(fmt.Sprintf("%s%-16s ", mark, s.Hook), what, renderWidth, strings.Repeat(" ", 19))
		if s.Decisive {
			text = st.bold(text)
		}
		fmt.Fprintln(w, text)
		if s.Rule != "" {
			fmt.Fprintln(w, st.dim(wrapText(strings.Repeat(" ", 19), s.Rule, renderWidth, strings.Repeat(" ", 21))))
		}
	}
	p := l.Packet
	fmt.Fprintln(w, wrapText(fmt.Sprintf("  %-16s ", "packet"), fmt.Sprintf("%s %s -> %s%s", p.Proto, rangeEndpoint(p.Src, p.SrcPortRange), rangeEndpoint(p.Dst, p.DstPortRange), markText(p.Mark)), renderWidth, strings.Repeat(" ", 19)))
}

// rangeEndpoint writes an endpoint whose port NAT picks from a range as ADDR:(RANGE).
func rangeEndpoint(ap netip.AddrPort, rng string) string {
	if ap.Port() != 0 || rng == "" {
		return inet.Endpoint(ap)
	}
	if ap.Addr().Is6() {
		return "[" + ap.Addr().String() + "]:(" + rng + ")"
	}
	return ap.Addr().String() + ":(" + rng + ")"
}

func markText(m uint32) string {
	if m == 0 {
		return ""
	}
	return fmt.Sprintf(" mark %#x", m)
}

// legSummary is the leg in one line: where it enters, what decides, where it leaves.
func legSummary(l *Leg) string {
	in := "generated here"
	if l.IIF != "" {
		in = "in " + l.IIF
	}
	var out string
	switch l.Verdict {
	case LegLocal:
		out = "delivered locally"
	case LegForward:
		out = "forwarded out " + l.OIF
	case LegOutput:
		out = "out " + l.OIF
	case LegBridged:
		out = "bridged out " + l.OIF
	case LegUncertain:
		out = "UNCERTAIN"
		if l.OIF != "" {
			out += " (probably out " + l.OIF + ")"
		}
	default:
		out = strings.ToUpper(l.Verdict)
	}
	if l.Gateway.IsValid() && (l.Verdict == LegForward || l.Verdict == LegOutput || l.Verdict == LegUncertain) {
		out += " via " + l.Gateway.String()
	}
	if l.TableName != "" {
		out += ", table " + l.TableName
		if l.Rule != nil {
			out += fmt.Sprintf(" (rule %d)", *l.Rule)
		}
	}
	return in + " -> " + out
}

// RenderFindings writes findings for a person: severity, id, summary, evidence and fix. The
// fix's command is written whole on one line, to be copied. When every finding is of severity
// info, nothing is wrong as far as the model sees: it says so, and lists the assumptions that
// conclusion rests on.
func RenderFindings(w io.Writer, fs []finding.Finding) {
	st := styleFor(w)
	if len(fs) == 0 {
		fmt.Fprintln(w, "No problems found.")
		return
	}
	errs, infos := finding.CountErrors(fs), 0
	for _, f := range fs {
		if f.Severity == finding.SeverityInfo {
			infos++
		}
	}
	if infos == len(fs) {
		fmt.Fprintln(w, st.bold(fmt.Sprintf("No problems found, assuming what follows (%d):", infos)))
	} else {
		fmt.Fprintln(w, st.bold(fmt.Sprintf("FINDINGS (%d, %d error%s)", len(fs), errs, tern(errs == 1, "", "s"))))
	}
	for _, f := range fs {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "%s %s\n", st.severity(quote.Term(strings.ToUpper(f.Severity))), st.bold(quote.Term(f.ID)))
		fmt.Fprintln(w, wrapText("  ", f.Summary, renderWidth, "  "))
		for _, e := range f.Evidence {
			fmt.Fprintln(w, wrapText("    - ", e, renderWidth, "      "))
		}
		if f.Fix.Summary != "" {
			fmt.Fprintln(w, wrapText("  fix: ", f.Fix.Summary, renderWidth, "       "))
		}
		if lines := f.Fix.CommandLines("  run: ", "         ", renderWidth); len(lines) > 0 {
			fmt.Fprintln(w, quote.TermLines(strings.Join(lines, "\n")))
			if f.Fix.Missing != "" {
				fmt.Fprintln(w, wrapText("       missing: ", f.Fix.Missing, renderWidth, "       "))
			}
		}
	}
}

// wrapText writes prefix and then text broken at spaces so that lines fit width; continuation
// lines start with indent. Words longer than a line (a long rule) are kept whole. Prefix and
// words are escaped for the terminal (quote.Term): they hold names from the state.
func wrapText(prefix, text string, width int, indent string) string {
	var b strings.Builder
	prefix = quote.Term(prefix)
	line := prefix
	n := utf8.RuneCountInString(prefix)
	fresh := true // nothing but the prefix or indent on the line yet
	for _, wd := range strings.Fields(text) {
		wd = quote.Term(wd)
		wl := utf8.RuneCountInString(wd)
		if !fresh && n+1+wl > width {
			b.WriteString(line + "\n")
			line, n, fresh = indent, utf8.RuneCountInString(indent), true
		}
		if !fresh {
			line += " "
			n++
		}
		line += wd
		n += wl
		fresh = false
	}
	b.WriteString(line)
	return b.String()
}
