package netfilter

import (
	"fmt"
	"strconv"
	"strings"

	"roundtrip/engine/iptables"
)

// This file covers the matches whose outcome depends on something a trace cannot see: chance
// (-m statistic), rates and history (-m limit, hashlimit, recent, connlimit), the clock
// (-m time), the sending process (-m owner), IPsec (-m policy) and the payload (-m string).
// A rule with one of them is a branch: the evaluation takes the outcome of a quiet host
// (under every rate limit, no history, not the chosen random branch, no IPsec, no payload) and
// records the other, with what it depends on, so that a trace can show both outcomes (and,
// for statistic, every endpoint of a service with its probability). Matches that are named
// but not modelled say what they would do.

// Branch is a rule whose match depends on state or chance.
type Branch struct {
	Rule string // the rule as the command that adds it
	// Prob is the chance the rule matches when it is reached (statistic), or -1 when that
	// depends on state (rates, history, time) rather than chance.
	Prob float64
	// When says what makes the rule match, Else what makes it not match.
	When, Else string
	// Taken is the outcome the evaluation took.
	Taken bool

	rule *iptables.Rule
}

// Key identifies the rule of a branch within one Sim, for Force.
func (b Branch) Key() *iptables.Rule { return b.rule }

// branchInfo is what one match contributes to a Branch.
type branchInfo struct {
	prob       float64
	when, els  string
	assumed    bool
	determined bool // the match's outcome is known after all (assumed holds it)
}

// stateMatch evaluates a match that depends on state or chance. ok is false when m is not
// such a match; why is set when it is one the model names but cannot evaluate at all.
func stateMatch(m iptables.Match, p *Packet) (b branchInfo, why string, ok bool) {
	opt := func(name string) (iptables.Option, bool) {
		for _, o := range m.Options {
			if o.Name == name {
				return o, true
			}
		}
		return iptables.Option{}, false
	}
	val := func(name string) string {
		if o, ok := opt(name); ok && len(o.Values) > 0 {
			return o.Values[0]
		}
		return ""
	}
	negate := func(b branchInfo) branchInfo {
		b.when, b.els = b.els, b.when
		b.assumed = !b.assumed
		if b.prob >= 0 {
			b.prob = 1 - b.prob
		}
		return b
	}
	anyNot := func() bool {
		for _, o := range m.Options {
			if o.Not {
				return true
			}
		}
		return false
	}
	switch m.Name {
	case "statistic":
		var b branchInfo
		switch val("mode") {
		case "random":
			pr, err := strconv.ParseFloat(val("probability"), 64)
			if err != nil || pr < 0 || pr > 1 {
				return b, fmt.Sprintf("-m statistic --probability %q is not a probability", val("probability")), true
			}
			b = branchInfo{prob: pr, when: fmt.Sprintf("chosen at random with probability %s", percent(pr)), els: "not chosen at random"}
		case "nth":
			every, err := strconv.Atoi(val("every"))
			if err != nil || every < 1 {
				return b, fmt.Sprintf("-m statistic --every %q is not a count", val("every")), true
			}
			pkt := val("packet")
			if pkt == "" {
				pkt = "0"
			}
			b = branchInfo{prob: 1 / float64(every), when: fmt.Sprintf("every %d%s packet reaching it (counter, packet %s of each %d)", every, ordinal(every), pkt, every), els: "the other packets of the counter"}
		default:
			return b, fmt.Sprintf("-m statistic --mode %q is not modelled", val("mode")), true
		}
		// The flow is assumed not to be picked, so that the evaluation goes on to the
		// branches after it; the trace shows every one.
		if o, _ := opt("mode"); o.Not || anyNot() {
			return negate(b), "", true
		}
		return b, "", true
	case "limit":
		rate, burst := val("limit"), val("limit-burst")
		if rate == "" {
			rate = "3/hour" // the default of the limit match
		}
		if burst == "" {
			burst = "5"
		}
		b := branchInfo{prob: -1, assumed: true,
			when: fmt.Sprintf("while matching packets stay under %s (burst %s)", rate, burst),
			els:  fmt.Sprintf("once matching packets exceed %s (after a burst of %s)", rate, burst)}
		if anyNot() {
			return negate(b), "", true
		}
		return b, "", true
	case "hashlimit":
		mode := val("hashlimit-mode")
		per := "all packets together"
		if mode != "" {
			per = "each " + strings.ReplaceAll(mode, ",", "+")
		}
		burst := val("hashlimit-burst")
		if burst == "" {
			burst = "5"
		}
		if above := val("hashlimit-above"); above != "" {
			return branchInfo{prob: -1, assumed: false,
				when: fmt.Sprintf("once %s exceeds %s (burst %s, table %s)", per, above, burst, val("hashlimit-name")),
				els:  fmt.Sprintf("while %s stays under %s", per, above)}, "", true
		}
		upto := val("hashlimit-upto")
		if upto == "" {
			upto = val("hashlimit")
		}
		return branchInfo{prob: -1, assumed: true,
			when: fmt.Sprintf("while %s stays under %s (burst %s, table %s)", per, upto, burst, val("hashlimit-name")),
			els:  fmt.Sprintf("once %s exceeds %s", per, upto)}, "", true
	case "connlimit":
		mask := val("connlimit-mask")
		who := "the source address"
		if _, ok := opt("connlimit-daddr"); ok {
			who = "the destination address"
		}
		if mask != "" {
			who += "/" + mask
		}
		if above, ok := opt("connlimit-above"); ok && len(above.Values) > 0 {
			b := branchInfo{prob: -1, assumed: false,
				when: fmt.Sprintf("once %s has more than %s connections", who, above.Values[0]),
				els:  fmt.Sprintf("while %s has at most %s connections", who, above.Values[0])}
			if above.Not {
				return negate(b), "", true
			}
			return b, "", true
		}
		if upto, ok := opt("connlimit-upto"); ok && len(upto.Values) > 0 {
			return branchInfo{prob: -1, assumed: true,
				when: fmt.Sprintf("while %s has at most %s connections", who, upto.Values[0]),
				els:  fmt.Sprintf("once %s has more than %s connections", who, upto.Values[0])}, "", true
		}
		return branchInfo{}, "-m connlimit without --connlimit-above or --connlimit-upto", true
	case "recent":
		name := val("name")
		if name == "" {
			name = "DEFAULT"
		}
		side := "source"
		if _, ok := opt("rdest"); ok {
			side = "destination"
		}
		for _, o := range m.Options {
			switch o.Name {
			case "set":
				// --set always matches: it only records the address.
				return branchInfo{assumed: !o.Not, determined: true}, "", true
			case "rcheck", "update", "remove":
				cond := fmt.Sprintf("the %s address is in recent list %s", side, name)
				if s := val("seconds"); s != "" {
					cond += " seen within " + s + " s"
				}
				if h := val("hitcount"); h != "" {
					cond = fmt.Sprintf("the %s address was seen %s times within %s s (recent list %s)", side, h, val("seconds"), name)
					if val("seconds") == "" {
						cond = fmt.Sprintf("the %s address was seen %s times (recent list %s)", side, h, name)
					}
				}
				b := branchInfo{prob: -1, assumed: false, when: "once " + cond, els: fmt.Sprintf("while the %s address is not (a new client)", side)}
				if o.Not {
					return negate(b), "", true
				}
				return b, "", true
			}
		}
		return branchInfo{}, "-m recent without --set, --rcheck, --update or --remove", true
	case "time":
		var parts []string
		for _, o := range m.Options {
			if o.Name == "kerneltz" || o.Name == "utc" {
				continue
			}
			parts = append(parts, strings.TrimSpace("--"+o.Name+" "+strings.Join(o.Values, " ")))
		}
		b := branchInfo{prob: -1, assumed: true, when: "at the times " + strings.Join(parts, " "), els: "at other times"}
		if anyNot() {
			return negate(b), "", true
		}
		return b, "", true
	case "policy":
		pol := val("pol")
		dir := val("dir")
		// Traced packets are plain: no IPsec policy is assumed to cover them (the state does
		// not hold the xfrm policies).
		b := branchInfo{prob: -1, assumed: pol == "none",
			when: fmt.Sprintf("if the packet is not IPsec-processed (%s)", dir),
			els:  fmt.Sprintf("if an IPsec policy covers it (%s)", dir)}
		if pol != "none" {
			b.when, b.els = b.els, b.when
		}
		if anyNot() {
			return negate(b), "", true
		}
		return b, "", true
	case "owner":
		if !p.LocalOut {
			// Only locally generated packets have a socket: without one the match fails,
			// inverted options included (xt_owner: match ^ invert == 0).
			return branchInfo{determined: true, assumed: false}, "", true
		}
		var parts []string
		for _, o := range m.Options {
			parts = append(parts, strings.TrimSpace(map[bool]string{true: "! ", false: ""}[o.Not]+"--"+o.Name+" "+strings.Join(o.Values, " ")))
		}
		return branchInfo{prob: -1, assumed: false, when: "if the sending process has " + strings.Join(parts, " "), els: "if it has not"}, "", true
	case "string":
		b := branchInfo{prob: -1, assumed: false, when: fmt.Sprintf("if the payload contains %q", val("string")), els: "if it does not (a SYN carries none)"}
		if anyNot() {
			return negate(b), "", true
		}
		return b, "", true
	}
	if why, ok := namedMatches[m.Name]; ok {
		return branchInfo{}, why, true
	}
	return branchInfo{}, "", false
}

// namedMatches are matches the model names but does not evaluate, with what they depend on.
var namedMatches = map[string]string{
	"u32":    "-m u32 matches raw header or payload bytes, which the model does not build",
	"length": "-m length depends on the packet's size, which the trace does not know",
	"ttl":    "-m ttl depends on the packet's TTL, which the trace does not know",
	"hl":     "-m hl depends on the packet's hop limit, which the trace does not know",
	"socket": "-m socket matches when a local socket (a transparent proxy's, say) takes the packet, which depends on the sockets open",
	"bpf":    "-m bpf runs a BPF program the model does not evaluate",
	"cgroup": "-m cgroup depends on the sending process's cgroup",
	"dscp":   "-m dscp depends on the packet's DSCP field, which the trace does not know",
	"tos":    "-m tos depends on the packet's TOS field, which the trace does not know",
	"helper": "-m helper depends on a conntrack helper having assigned the connection",
	"quota":  "-m quota depends on how many bytes have passed already",
}

// namedTargets are targets the model names but does not evaluate, with their effect.
var namedTargets = map[string]string{
	"NFQUEUE":  "NFQUEUE hands the packet to a userspace program that decides (accept or drop)",
	"QUEUE":    "QUEUE hands the packet to a userspace program that decides (accept or drop)",
	"SYNPROXY": "SYNPROXY answers the SYN itself with a cookie and opens the connection to the server only after the client's ACK; the flow works when the server is reachable, untracked SYNs are its input",
	"TPROXY":   "TPROXY delivers the packet to a local transparent proxy socket",
	"TEE":      "TEE sends a copy to another gateway; the original goes on",
}

// namedTargetWhy returns the effect of a named target, with its options when they say more.
func namedTargetWhy(r *iptables.Rule) (string, bool) {
	why, ok := namedTargets[r.Target]
	if !ok {
		return "", false
	}
	switch r.Target {
	case "NFQUEUE":
		q := "0"
		if o, ok := r.TargetOption("queue-num"); ok && len(o.Values) > 0 {
			q = o.Values[0]
		} else if o, ok := r.TargetOption("queue-balance"); ok && len(o.Values) > 0 {
			q = o.Values[0]
		}
		why += " (queue " + q + ")"
		if _, ok := r.TargetOption("queue-bypass"); ok {
			why += "; with --queue-bypass it is accepted when no program listens"
		} else {
			why += "; it is dropped when no program listens"
		}
	case "TPROXY":
		port, ip, mark := "", "", ""
		if o, ok := r.TargetOption("on-port"); ok && len(o.Values) > 0 {
			port = o.Values[0]
		}
		if o, ok := r.TargetOption("on-ip"); ok && len(o.Values) > 0 {
			ip = o.Values[0]
		}
		if o, ok := r.TargetOption("tproxy-mark"); ok && len(o.Values) > 0 {
			mark = o.Values[0]
		}
		why = fmt.Sprintf("TPROXY delivers the packet to a local transparent proxy listening on %s:%s (mark %s, for a policy route to local); it is dropped when no such socket exists", ip, port, mark)
	}
	return why, true
}

// percent writes a probability as a percentage with up to four significant digits.
func percent(p float64) string { return strconv.FormatFloat(p*100, 'g', 4, 64) + "%" }

func ordinal(n int) string {
	switch {
	case n%100 >= 11 && n%100 <= 13:
		return "th"
	case n%10 == 1:
		return "st"
	case n%10 == 2:
		return "nd"
	case n%10 == 3:
		return "rd"
	}
	return "th"
}
