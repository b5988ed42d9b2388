package cli

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"roundtrip/watch"
	"roundtrip/wizards"
)

func init() {
	RegisterNew(func(f *Factory) *Command { return NewCmdCompletion(f, nil) })
}

// CompletionOptions are the options of one run of roundtrip completion.
type CompletionOptions struct {
	*Invocation
}

// NewCmdCompletion returns the completion command: a script for bash, zsh or fish, generated
// from the same command table that parses the command line, so it names every command,
// wizard and flag there is.
func NewCmdCompletion(f *Factory, runF func(*CompletionOptions) error) *Command {
	opts := &CompletionOptions{}
	return &Command{
		Name:    "completion",
		Usage:   "bash|zsh|fish",
		Summary: "print a shell completion script for bash, zsh or fish",
		Help: `Prints a script that completes roundtrip's commands, wizards, flags and their values
(interfaces, namespaces, files, choices) in the shell named.

  bash:  source <(roundtrip completion bash)       (e.g. in ~/.bashrc), or save it as
         /etc/bash_completion.d/roundtrip
  zsh:   source <(roundtrip completion zsh)        (e.g. in ~/.zshrc, after compinit), or
         save it as _roundtrip in a directory of $fpath
  fish:  roundtrip completion fish > ~/.config/fish/completions/roundtrip.fish`,
		NoJSON: true,
		Run: func(inv *Invocation) error {
			opts.Invocation = inv
			if runF != nil {
				return runF(opts)
			}
			return runCompletion(opts)
		},
	}
}

func runCompletion(o *CompletionOptions) error {
	if len(o.Args) != 1 {
		return Usagef("name a shell: bash, zsh or fish")
	}
	t := completionTable(commandSet(o.Factory))
	switch o.Args[0] {
	case "bash":
		return writeBash(o.Stdout, t)
	case "zsh":
		return writeZsh(o.Stdout, t)
	case "fish":
		return writeFish(o.Stdout, t)
	}
	return Usagef("unknown shell %q: want bash, zsh or fish", o.Args[0])
}

// compFlag is one flag as completion sees it.
type compFlag struct {
	name, help string
	value      bool     // takes a value
	kind       string   // what the value is: "file", "iface", "netns", or "" for anything
	choices    []string // the values it takes, when they are few
}

// compCmd is a command (or a subcommand) as completion sees it.
type compCmd struct {
	name, summary string
	flags         []compFlag
	words         []string // arguments it takes, when they are few
	subs          []compCmd
}

// flagKinds say what the values of flags are, by name, wherever they appear.
var flagKinds = map[string]string{
	"snapshot": "file", "o": "file", "peer-out": "file", "pcap": "file",
	"netns": "netns",
	"iif":   "iface", "in": "iface", "out": "iface", "lan": "iface",
}

// flagChoices are the values of flags that are not wizard fields (those say their own).
var flagChoices = map[string][]string{
	"format":   planFormats,
	"family":   {"inet", "inet6"},
	"failback": {watch.FailbackImmediate, "new-flows"},
}

// commandWords are the arguments of commands that take a few fixed ones.
var commandWords = map[string][]string{
	"trace":      {"tcp", "udp", "icmp", "sctp", "gre"},
	"diagnose":   {"tcp", "udp", "icmp", "sctp", "gre"},
	"plan":       {"show", "render"},
	"completion": {"bash", "zsh", "fish"},
}

func completionTable(commands map[string]*Command) []compCmd {
	var out []compCmd
	names := make([]string, 0, len(commands))
	for n, c := range commands {
		if !c.Hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, compCommand(commands[n]))
	}
	help := compCmd{name: "help", summary: "show a command's help"}
	help.words = names
	return append(out, help)
}

func compCommand(c *Command) compCmd {
	cc := compCmd{name: c.Name, summary: c.Summary, words: commandWords[c.Name]}
	for _, s := range c.Subs {
		sub := compCommand(s)
		if spec := wizards.SpecFor(s.Name); spec != nil && c.Name == "wizard" {
			for i := range sub.flags {
				if f := spec.Field(sub.flags[i].name); f != nil && f.Kind == wizards.Choice {
					sub.flags[i].choices = f.Choices
				}
			}
		}
		cc.subs = append(cc.subs, sub)
	}
	if len(c.Subs) > 0 {
		return cc
	}
	fs := flagSet(c, &Invocation{})
	fs.VisitAll(func(f *flag.Flag) {
		_, usage := flag.UnquoteUsage(f)
		b, isBool := f.Value.(boolFlag)
		cf := compFlag{name: f.Name, help: usage, value: !isBool || !b.IsBoolFlag(), kind: flagKinds[f.Name], choices: flagChoices[f.Name]}
		cc.flags = append(cc.flags, cf)
	})
	return cc
}

// dash returns a flag as typed: -o, --json.
func dash(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

func names(cs []compCmd) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.name)
	}
	return out
}

func writeBash(w io.Writer, t []compCmd) error {
	var b strings.Builder
	b.WriteString(`# bash completion for roundtrip (roundtrip completion bash)
_roundtrip_ifaces() { local d; for d in /sys/class/net/*; do printf '%s\n' "${d##*/}"; done; }
_roundtrip_netns() { local n r; ip netns list 2>/dev/null | while read -r n r; do printf '%s\n' "$n"; done; }
_roundtrip() {
    local cur prev cmd="" sub="" i w flags="" words=""
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
`)
	// A flag that takes a value takes the next word with it.
	valued := map[string]bool{}
	var walk func(cs []compCmd)
	walk = func(cs []compCmd) {
		for _, c := range cs {
			for _, f := range c.flags {
				if f.value {
					valued[dash(f.name)] = true
				}
			}
			walk(c.subs)
		}
	}
	walk(t)
	var vs []string
	for v := range valued {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	fmt.Fprintf(&b, "        %s) ((i++)); continue ;;\n", strings.Join(vs, "|"))
	b.WriteString(`        -*|=) continue ;;
        esac
        if [[ -z $cmd ]]; then
            cmd=$w
        elif [[ -z $sub ]]; then
            sub=$w
        fi
    done
    case $prev in
`)
	kinds := map[string][]string{}
	var walkValues func(cs []compCmd)
	walkValues = func(cs []compCmd) {
		for _, c := range cs {
			for _, f := range c.flags {
				if f.kind != "" {
					kinds[f.kind] = appendNew(kinds[f.kind], dash(f.name))
				}
			}
			walkValues(c.subs)
		}
	}
	walkValues(t)
	for _, k := range []string{"file", "iface", "netns"} {
		sort.Strings(kinds[k])
		switch k {
		case "file":
			fmt.Fprintf(&b, "        %s) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n", strings.Join(kinds[k], "|"))
		case "iface":
			fmt.Fprintf(&b, "        %s) COMPREPLY=($(compgen -W \"$(_roundtrip_ifaces)\" -- \"$cur\")); return ;;\n", strings.Join(kinds[k], "|"))
		case "netns":
			fmt.Fprintf(&b, "        %s) COMPREPLY=($(compgen -W \"$(_roundtrip_netns)\" -- \"$cur\")); return ;;\n", strings.Join(kinds[k], "|"))
		}
	}
	b.WriteString("    esac\n")
	fmt.Fprintf(&b, "    if [[ -z $cmd ]]; then\n        COMPREPLY=($(compgen -W %s -- \"$cur\"))\n        return\n    fi\n", wordList(names(t)))
	b.WriteString("    case $cmd in\n")
	for _, c := range t {
		fmt.Fprintf(&b, "    %s)\n", c.name)
		if len(c.subs) > 0 {
			fmt.Fprintf(&b, "        case $sub in\n        \"\") words=%s ;;\n", wordList(names(c.subs)))
			for _, s := range c.subs {
				fmt.Fprintf(&b, "        %s)\n", s.name)
				writeBashFlags(&b, s, "            ")
				b.WriteString("            ;;\n")
			}
			b.WriteString("        esac\n")
		} else {
			writeBashFlags(&b, c, "        ")
			if len(c.words) > 0 {
				fmt.Fprintf(&b, "        [[ -z $sub ]] && words=%s\n", wordList(c.words))
			}
		}
		b.WriteString("        ;;\n")
	}
	b.WriteString(`    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    elif [[ -n $words ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
}
complete -o default -F _roundtrip roundtrip
`)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeBashFlags sets the flags of a command, and the values of those with choices after them.
func writeBashFlags(b *strings.Builder, c compCmd, indent string) {
	var fl []string
	for _, f := range c.flags {
		fl = append(fl, dash(f.name))
	}
	fmt.Fprintf(b, "%sflags=%s\n", indent, wordList(fl))
	for _, f := range c.flags {
		if len(f.choices) > 0 {
			fmt.Fprintf(b, "%s[[ $prev == %s ]] && { COMPREPLY=($(compgen -W %s -- \"$cur\")); return; }\n", indent, dash(f.name), wordList(f.choices))
		}
	}
}

func appendNew(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// wordList quotes a word list for the shell (names, flags and choices are plain words).
func wordList(ws []string) string { return "'" + strings.Join(ws, " ") + "'" }

// zshDesc makes a description safe inside a single-quoted _arguments spec's brackets.
func zshDesc(s string) string {
	r := strings.NewReplacer("'", "'\\''", "[", "(", "]", ")", "\n", " ")
	return r.Replace(s)
}

func writeZsh(w io.Writer, t []compCmd) error {
	var b strings.Builder
	b.WriteString("#compdef roundtrip\n# zsh completion for roundtrip (roundtrip completion zsh)\n\n")
	b.WriteString("_roundtrip_netns() { local -a ns; ns=(${(f)\"$(ip netns list 2>/dev/null | cut -d' ' -f1)\"}); _describe 'namespace' ns }\n\n")
	b.WriteString("_roundtrip() {\n  local -a cmds subs\n  cmds=(\n")
	for _, c := range t {
		fmt.Fprintf(&b, "    '%s:%s'\n", c.name, zshDesc(c.summary))
	}
	b.WriteString("  )\n  if (( CURRENT == 2 )); then\n    _describe 'command' cmds\n    return\n  fi\n  case ${words[2]} in\n")
	for _, c := range t {
		fmt.Fprintf(&b, "  %s)\n    shift words; (( CURRENT-- ))\n", c.name)
		if len(c.subs) > 0 {
			b.WriteString("    subs=(\n")
			for _, s := range c.subs {
				fmt.Fprintf(&b, "      '%s:%s'\n", s.name, zshDesc(s.summary))
			}
			b.WriteString("    )\n    if (( CURRENT == 2 )); then\n      _describe 'wizard' subs\n      return\n    fi\n    case ${words[2]} in\n")
			for _, s := range c.subs {
				fmt.Fprintf(&b, "    %s)\n      shift words; (( CURRENT-- ))\n", s.name)
				writeZshArgs(&b, s, "      ")
				b.WriteString("      ;;\n")
			}
			b.WriteString("    esac\n")
		} else {
			writeZshArgs(&b, c, "    ")
		}
		b.WriteString("    ;;\n")
	}
	// Loaded from $fpath it runs as the function; sourced, it registers itself.
	b.WriteString("  esac\n}\n\nif [[ $funcstack[1] == _roundtrip ]]; then\n  _roundtrip \"$@\"\nelse\n  compdef _roundtrip roundtrip\nfi\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeZshArgs(b *strings.Builder, c compCmd, indent string) {
	fmt.Fprintf(b, "%s_arguments -S \\\n", indent)
	for _, f := range c.flags {
		spec := "*" + dash(f.name) + "[" + zshDesc(f.help) + "]"
		if f.value {
			action := " "
			switch {
			case len(f.choices) > 0:
				action = "(" + strings.Join(f.choices, " ") + ")"
			case f.kind == "file":
				action = "_files"
			case f.kind == "iface":
				action = "_net_interfaces"
			case f.kind == "netns":
				action = "_roundtrip_netns"
			}
			spec += ":" + f.name + ":" + action
		}
		fmt.Fprintf(b, "%s  '%s' \\\n", indent, spec)
	}
	if len(c.words) > 0 {
		fmt.Fprintf(b, "%s  '1:argument:(%s)' \\\n", indent, strings.Join(c.words, " "))
	}
	fmt.Fprintf(b, "%s  '*:file:_files'\n", indent)
}

// fishQuote quotes s for fish, in single quotes.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`, "\n", " ").Replace(s) + "'"
}

func writeFish(w io.Writer, t []compCmd) error {
	var b strings.Builder
	b.WriteString("# fish completion for roundtrip (roundtrip completion fish)\n")
	b.WriteString("function __roundtrip_netns\n    ip netns list 2>/dev/null | string replace -r ' .*' ''\nend\n")
	cmds := strings.Join(names(t), " ")
	for _, c := range t {
		fmt.Fprintf(&b, "complete -c roundtrip -f -n 'not __fish_seen_subcommand_from %s' -a %s -d %s\n", cmds, c.name, fishQuote(c.summary))
	}
	for _, c := range t {
		cond := "__fish_seen_subcommand_from " + c.name
		if len(c.subs) > 0 {
			subs := strings.Join(names(c.subs), " ")
			for _, s := range c.subs {
				fmt.Fprintf(&b, "complete -c roundtrip -f -n '%s; and not __fish_seen_subcommand_from %s' -a %s -d %s\n", cond, subs, s.name, fishQuote(s.summary))
			}
			for _, s := range c.subs {
				writeFishFlags(&b, s, cond+"; and __fish_seen_subcommand_from "+s.name)
			}
			continue
		}
		writeFishFlags(&b, c, cond)
		if len(c.words) > 0 {
			fmt.Fprintf(&b, "complete -c roundtrip -f -n '%s' -a %s\n", cond, fishQuote(strings.Join(c.words, " ")))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeFishFlags(b *strings.Builder, c compCmd, cond string) {
	for _, f := range c.flags {
		opt := "-l " + f.name
		if len(f.name) == 1 {
			opt = "-s " + f.name
		}
		arg := ""
		if f.value {
			switch {
			case len(f.choices) > 0:
				arg = " -x -a " + fishQuote(strings.Join(f.choices, " "))
			case f.kind == "file":
				arg = " -r -F"
			case f.kind == "iface":
				arg = " -x -a '(__fish_print_interfaces)'"
			case f.kind == "netns":
				arg = " -x -a '(__roundtrip_netns)'"
			default:
				arg = " -x"
			}
		}
		fmt.Fprintf(b, "complete -c roundtrip -n '%s' %s%s -d %s\n", cond, opt, arg, fishQuote(f.help))
	}
}
