package cli

import (
	"flag"
	"strings"
	"time"

	"roundtrip/engine/model"
)

// repeatable is the value of a flag that may be given several times (--wan, --route, ...):
// each occurrence adds one value. Every other flag takes one value and is refused when given
// twice, since the flag package would otherwise keep the last one silently.
type repeatable func(string) error

func (f repeatable) String() string     { return "" }
func (f repeatable) Set(v string) error { return f(v) }

// repeated declares a flag that may be given several times.
func repeated(fs *flag.FlagSet, name, usage string, add func(string) error) {
	fs.Var(repeatable(add), name, usage)
}

// onceValue refuses a second occurrence of a single-value flag.
type onceValue struct {
	flag.Value
	name  string
	first string
	set   bool
	dup   *error // where the first repetition is recorded, for parseFlags' message
}

func (o *onceValue) Set(v string) error {
	if o.set {
		err := Usagef("--%s given twice (%q, then %q): it takes one value", o.name, o.first, v)
		if *o.dup == nil {
			*o.dup = err
		}
		return err
	}
	o.set, o.first = true, v
	return o.Value.Set(v)
}

// onceBoolValue is onceValue for a boolean flag, which takes no argument.
type onceBoolValue struct{ *onceValue }

func (onceBoolValue) IsBoolFlag() bool { return true }

type boolFlag interface{ IsBoolFlag() bool }

// parseFlags parses a command line as parseInterspersed does, refusing a single-value flag
// given twice and a negative duration (no roundtrip duration can be negative: a wait, a
// timeout, a confirmation window).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var dup error
	orig := map[*flag.Flag]flag.Value{}
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := f.Value.(repeatable); ok {
			return
		}
		orig[f] = f.Value
		o := &onceValue{Value: f.Value, name: f.Name, dup: &dup}
		if b, ok := f.Value.(boolFlag); ok && b.IsBoolFlag() {
			f.Value = onceBoolValue{o}
		} else {
			f.Value = o
		}
	})
	// The help text names flag types from their values: show it the originals.
	defer func() {
		for f, v := range orig {
			f.Value = v
		}
	}()
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if dup != nil {
			return nil, dup
		}
		return nil, err
	}
	var neg error
	fs.Visit(func(f *flag.Flag) {
		if g, ok := orig[f].(flag.Getter); ok && neg == nil {
			if d, ok := g.Get().(time.Duration); ok && d < 0 {
				neg = Usagef("--%s %s: a duration cannot be negative", f.Name, d)
			}
		}
	})
	return pos, neg
}

// nameMax is the longest file name Linux allows (NAME_MAX): a named namespace is a file in
// /run/netns.
const nameMax = 255

// checkNetNSName refuses a --netns name that `ip netns add` would not accept: the name is a
// file in /run/netns, so "../../x" would be a path out of it.
func checkNetNSName(name string) error {
	switch {
	case name == "":
		return nil
	case name == "." || name == "..", strings.ContainsAny(name, "/\x00"):
		return Usagef("--netns %q is not a namespace name: a name has no '/' or NUL and is not . or .. (see ip netns list)", name)
	case len(name) > nameMax:
		return Usagef("--netns: a namespace name has at most %d bytes, this one %d", nameMax, len(name))
	}
	// The rest of the rules plans and snapshots follow (no control characters).
	if err := model.CheckNetnsName(name); err != nil {
		return Usagef("--netns: %v", err)
	}
	return nil
}

// checkRange refuses an integer flag outside [lo, hi].
func checkRange(name string, v, lo, hi int, what string) error {
	if v < lo || v > hi {
		return Usagef("--%s %d: want %s from %d to %d", name, v, what, lo, hi)
	}
	return nil
}
