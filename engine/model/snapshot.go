package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"roundtrip/engine/inet"
	"roundtrip/engine/iptables"
	"roundtrip/engine/safefile"
)

// SnapshotFormat and SnapshotVersion identify roundtrip's snapshot files. The version grows
// when a field changes meaning or is added; a loader refuses versions newer than its own.
// Version 2 added the nft ruleset (state.nftables): a snapshot without one is still written
// as version 1, which older loaders read.
const (
	SnapshotFormat  = "roundtrip-snapshot"
	SnapshotVersion = 2
)

// snapshotVersionOf is the oldest version that can hold the state.
func snapshotVersionOf(s *State) int {
	if s != nil && s.Nftables != nil {
		return 2
	}
	return 1
}

// Snapshot is a saved State with where and when it was taken.
type Snapshot struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	Taken   time.Time `json:"taken"`
	State   *State    `json:"state"`
}

// NewSnapshot wraps a state for saving.
func NewSnapshot(s *State, taken time.Time) *Snapshot {
	return &Snapshot{Format: SnapshotFormat, Version: snapshotVersionOf(s), Taken: taken.UTC(), State: s}
}

// Marshal encodes the snapshot. The encoding is deterministic (map keys sorted, slices in
// stored order), so load-then-save reproduces a file byte for byte.
func (s *Snapshot) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding snapshot: %w", err)
	}
	return append(b, '\n'), nil
}

// ErrBadSnapshot is wrapped by every error about a snapshot's content.
var ErrBadSnapshot = errors.New("bad snapshot")

// ParseSnapshot decodes and validates a snapshot. Any problem is an error that names it;
// nothing in the input can make it panic.
func ParseSnapshot(data []byte) (*Snapshot, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: the file is empty", ErrBadSnapshot)
	}
	var head struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadSnapshot, DescribeJSONError(data, err))
	}
	if head.Format != SnapshotFormat {
		return nil, fmt.Errorf("%w: format is %q, want %q (was it written by roundtrip snapshot?)", ErrBadSnapshot, head.Format, SnapshotFormat)
	}
	if head.Version > SnapshotVersion {
		return nil, fmt.Errorf("%w: version %d is newer than this roundtrip understands (%d): upgrade roundtrip", ErrBadSnapshot, head.Version, SnapshotVersion)
	}
	if head.Version < 1 {
		return nil, fmt.Errorf("%w: version %d is invalid", ErrBadSnapshot, head.Version)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s Snapshot
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadSnapshot, DescribeJSONError(data, err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: unexpected data after the snapshot object", ErrBadSnapshot)
	}
	if s.State == nil {
		return nil, fmt.Errorf("%w: no state in the file", ErrBadSnapshot)
	}
	if err := s.State.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	return &s, nil
}

// LoadSnapshotFile reads and validates a snapshot file.
func LoadSnapshotFile(path string) (*Snapshot, error) {
	data, err := safefile.ReadFile(path, MaxSnapshotFile)
	if err != nil {
		return nil, fmt.Errorf("reading snapshot: %w", err)
	}
	s, err := ParseSnapshot(data)
	if err != nil {
		return nil, fmt.Errorf("loading snapshot %s: %w", path, err)
	}
	return s, nil
}

// WriteTo writes the snapshot.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	b, err := s.Marshal()
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}

// DescribeJSONError turns a decoding error into a message with the line and column.
func DescribeJSONError(data []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var off int64 = -1
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || err.Error() == "unexpected end of JSON input":
		return "the JSON ends early (truncated file?)"
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
		if te.Field != "" {
			return fmt.Sprintf("at %s: field %s: %v", lineCol(data, off), te.Field, err)
		}
	}
	if off >= 0 {
		return fmt.Sprintf("at %s: %v", lineCol(data, off), err)
	}
	return err.Error()
}

func lineCol(data []byte, off int64) string {
	off = min(max(off, 0), int64(len(data)))
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	// The offset points just past the offending byte; columns count from 1.
	col := max(off-int64(bytes.LastIndexByte(data[:off], '\n'))-1, 1)
	return fmt.Sprintf("line %d column %d", line, col)
}

var (
	ValidRuleActions = map[string]bool{ActionTable: true, ActionGoto: true, ActionNop: true, ActionBlackhole: true, ActionUnreachable: true, ActionProhibit: true}
	ValidRouteTypes  = map[string]bool{RouteUnicast: true, RouteLocal: true, RouteBroadcast: true, RouteAnycast: true, RouteMulticast: true, RouteBlackhole: true, RouteUnreachable: true, RouteProhibit: true, RouteThrow: true, RouteNAT: true}
)

// Validate checks that a state is well formed and internally consistent: the mistakes of a
// hand-edited or corrupted snapshot, and the fields a crafted one would use to reach a script
// or a terminal. Names follow the kernel's rules (a link name may hold `$` or `;`: renderings
// quote it), numbers their real ranges, the host name, namespace, table names and other text
// hold no control characters. It reports up to ten problems at once, each naming the field.
func (s *State) Validate() error {
	var errs []error
	add := func(format string, a ...any) {
		if len(errs) < MaxProblems {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	if err := CheckText("host name", s.Host, 255); err != nil {
		add("field host: %w", err)
	}
	if s.Namespace != "" {
		if err := CheckNetnsName(s.Namespace); err != nil {
			add("field namespace: %w", err)
		}
	}
	names := make(map[string]bool, len(s.Links))
	for i, l := range s.Links {
		if err := CheckIfName(l.Name); err != nil {
			add("link %d: field name: %w", i, err)
		}
		if names[l.Name] {
			add("link %s appears twice", l.Name)
		}
		names[l.Name] = true
		if err := CheckLinkFields(&l); err != nil {
			add("link %d (%s): %w", i, l.Name, err)
		}
		if l.HardwareAddr != "" {
			if err := CheckHWAddr(l.HardwareAddr); err != nil {
				add("link %d (%s): field hwaddr: %w", i, l.Name, err)
			}
		}
		if l.Tunnel != nil {
			t := l.Tunnel
			if t.Dev != "" {
				if err := CheckIfName(t.Dev); err != nil {
					add("link %d (%s): tunnel field dev: %w", i, l.Name, err)
				}
			}
			if t.TTL < 0 || t.TTL > 255 || t.Port < 0 || t.Port > 65535 || t.VNI >= 1<<24 {
				add("link %d (%s): tunnel ttl %d, port %d or vni %d out of range", i, l.Name, t.TTL, t.Port, t.VNI)
			}
		}
		for _, a := range l.Addrs {
			if err := CheckAddress(a, true); err != nil {
				add("link %d (%s): %w", i, l.Name, err)
			}
		}
	}
	known := func(dev string) bool { return dev == "" || names[dev] }
	for i, r := range s.Rules {
		if r.Family != inet.V4 && r.Family != inet.V6 {
			add("rule %d (priority %d) has no family", i, r.Priority)
		}
		if !ValidRuleActions[r.Action] {
			add("rule %d (priority %d) has unknown action %q", i, r.Priority, r.Action)
		}
		if err := CheckRuleFields(r); err != nil {
			add("rule %d (priority %d): %w", i, r.Priority, err)
		}
	}
	for i, r := range s.Routes {
		if r.Family != inet.V4 && r.Family != inet.V6 {
			add("route %d (%s) has no family", i, r.Dst)
		}
		if !ValidRouteTypes[r.Type] {
			add("route %d (%s) has unknown type %q", i, r.Dst, r.Type)
		}
		if !r.Dst.IsValid() {
			add("route %d has no destination", i)
		} else if (r.Family == inet.V4 || r.Family == inet.V6) && inet.FamilyOf(r.Dst.Addr()) != r.Family {
			add("route %d: destination %s is not %s", i, r.Dst, r.Family)
		}
		if err := CheckRouteFields(r, true); err != nil {
			add("route %d (%s): %w", i, r.Dst, err)
			continue
		}
		if !known(r.Dev) {
			add("route %d (%s) uses device %s, which is not among the links", i, r.Dst, r.Dev)
		}
		for _, nh := range r.Nexthops {
			if !known(nh.Dev) {
				add("route %d (%s) has a nexthop on device %s, which is not among the links", i, r.Dst, nh.Dev)
			}
		}
	}
	for id, name := range s.TableNames {
		if id < 0 || id > MaxU32 {
			add("table_names: table id %d out of range: want 0-%d", id, MaxU32)
		}
		if err := CheckTableName(name); err != nil {
			add("table_names: table %d: %w", id, err)
		}
	}
	s.validateNetfilter(add)
	for i := range s.IPSets {
		if err := s.IPSets[i].Validate(); err != nil {
			add("ipsets: %w", err)
		}
	}
	for k, v := range s.Sysctls {
		if err := CheckSysctlKey(k); err != nil {
			add("sysctls: %w", err)
		} else if err := CheckSysctlValue(v); err != nil && v != "" {
			add("sysctls: %s: %w", k, err)
		}
	}
	if s.Nftables != nil {
		if err := s.Nftables.Validate(); err != nil {
			add("nftables: %w", err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid state: %w", errors.Join(errs...))
}

// validateNetfilter checks the netfilter part of a state: known backends and tables, chain
// names iptables accepts, rules of one line.
func (s *State) validateNetfilter(add func(string, ...any)) {
	nf := s.Netfilter
	switch nf.Backend {
	case "", "legacy", "nf_tables":
	default:
		add("netfilter: field backend %q: want legacy or nf_tables", nf.Backend)
	}
	if err := CheckText("netfilter field unavailable", nf.Unavailable, MaxText); err != nil {
		add("%w", err)
	}
	for i, f := range nf.Foreign {
		if err := CheckText(fmt.Sprintf("netfilter foreign table %d", i), f, 512); err != nil {
			add("%w", err)
		}
	}
	switch nf.WriteBackend {
	case "", iptables.BackendLegacy, iptables.BackendNFT:
	default:
		add("netfilter: field write_backend %q: want legacy or nf_tables", nf.WriteBackend)
	}
	for i, h := range nf.Hidden {
		if err := CheckText(fmt.Sprintf("netfilter hidden %d", i), h, MaxText); err != nil {
			add("%w", err)
		}
	}
	seen := map[string]int{}
	for ti, t := range nf.Tables {
		switch t.Backend {
		case "", iptables.BackendLegacy, iptables.BackendNFT:
		default:
			add("netfilter table %d (%s): field backend %q: want legacy or nf_tables", ti, t.Name, t.Backend)
		}
		key := fmt.Sprintf("%s %s %s", nf.TableBackend(&nf.Tables[ti]), t.Family, t.Name)
		if prev, ok := seen[key]; ok {
			// Each backend has one table of a name per family; a second would be evaluated
			// twice by a trace.
			add("netfilter table %d (%s %s) appears twice in backend %q (first as table %d)", ti, t.Family, t.Name, nf.TableBackend(&nf.Tables[ti]), prev)
		}
		seen[key] = ti
		if t.Family != inet.V4 && t.Family != inet.V6 {
			add("netfilter table %d (%s) has no family", ti, t.Name)
		}
		if !iptables.KnownTables[t.Name] {
			add("netfilter table %d: field name %q: want raw, mangle, nat, filter or security", ti, t.Name)
		}
		for _, c := range t.Chains {
			if err := iptables.CheckChainName(c.Name); err != nil {
				add("netfilter table %s: %w", t.Name, err)
			}
			switch c.Policy {
			case "", "ACCEPT", "DROP", "QUEUE", "RETURN":
			default:
				add("netfilter chain %s %s: field policy %q: want ACCEPT or DROP", t.Name, c.Name, c.Policy)
			}
			for ri, r := range c.Rules {
				// A rule is kept as iptables-save printed it (comments may hold anything but
				// a line break); printing escapes the rest.
				if strings.ContainsAny(r.Spec, "\n\r\x00") || len(r.Spec) > 1<<16 {
					add("netfilter chain %s %s rule %d: field spec must be one line", t.Name, c.Name, ri+1)
				}
			}
		}
	}
}
