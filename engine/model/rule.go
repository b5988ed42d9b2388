package model

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"roundtrip/engine/inet"
)

// Rule actions (FR_ACT_* in include/uapi/linux/fib_rules.h), named as iproute2 prints them.
const (
	ActionTable       = "table"
	ActionGoto        = "goto"
	ActionNop         = "nop"
	ActionBlackhole   = "blackhole"
	ActionUnreachable = "unreachable"
	ActionProhibit    = "prohibit"
)

// Rule is one policy routing rule (`ip rule`). Zero values mean "no selector": a zero Src
// matches every source, a nil Mark matches every packet.
type Rule struct {
	Family   inet.Family  `json:"family"`
	Priority int          `json:"priority"`
	Not      bool         `json:"not,omitempty"`
	Src      netip.Prefix `json:"src,omitzero"`
	Dst      netip.Prefix `json:"dst,omitzero"`
	IIF      string       `json:"iif,omitempty"`
	OIF      string       `json:"oif,omitempty"`
	Mark     *MarkMatch   `json:"fwmark,omitempty"`
	TOS      uint8        `json:"tos,omitempty"`
	IPProto  int          `json:"ipproto,omitempty"`
	SPort    *PortRange   `json:"sport,omitempty"`
	DPort    *PortRange   `json:"dport,omitempty"`
	UIDRange *UIDRange    `json:"uidrange,omitempty"`
	// SuppressPrefixLen rejects a table's answer whose prefix is this long or shorter
	// (nil: not set; the kernel stores -1).
	SuppressPrefixLen *int   `json:"suppress_prefixlength,omitempty"`
	SuppressIfGroup   *int   `json:"suppress_ifgroup,omitempty"`
	Action            string `json:"action"`
	Table             int    `json:"table,omitempty"`
	Goto              int    `json:"goto,omitempty"`
	Protocol          int    `json:"protocol,omitempty"` // RTPROT_* of the rule itself
}

// MarkMatch selects packets whose fwmark & Mask == Value.
type MarkMatch struct {
	Value uint32 `json:"value"`
	Mask  uint32 `json:"mask"`
}

// PortRange is an inclusive range of ports.
type PortRange struct {
	Start uint16 `json:"start"`
	End   uint16 `json:"end"`
}

// UIDRange is an inclusive range of user ids.
type UIDRange struct {
	Start uint32 `json:"start"`
	End   uint32 `json:"end"`
}

func (p PortRange) String() string {
	if p.Start == p.End {
		return fmt.Sprint(p.Start)
	}
	return fmt.Sprintf("%d-%d", p.Start, p.End)
}

// Contains reports whether port is in the range.
func (p PortRange) Contains(port uint16) bool { return port >= p.Start && port <= p.End }

// Selectors renders the rule's match part in `ip rule` syntax (without priority and action).
func (r Rule) Selectors() string { return strings.Join(r.SelectorArgv(), " ") }

// SelectorArgv is Selectors as argument words.
func (r Rule) SelectorArgv() []string {
	a := make([]string, 0, 8)
	if r.Not {
		a = append(a, "not")
	}
	if r.Src.IsValid() {
		a = append(a, "from", r.Src.String())
	} else {
		a = append(a, "from", "all")
	}
	if r.Dst.IsValid() {
		a = append(a, "to", r.Dst.String())
	}
	if r.TOS != 0 {
		a = append(a, "tos", fmt.Sprintf("0x%02x", r.TOS))
	}
	if r.Mark != nil {
		if r.Mark.Mask == 0xffffffff {
			a = append(a, "fwmark", fmt.Sprintf("%#x", r.Mark.Value))
		} else {
			a = append(a, "fwmark", fmt.Sprintf("%#x/%#x", r.Mark.Value, r.Mark.Mask))
		}
	}
	if r.IIF != "" {
		a = append(a, "iif", r.IIF)
	}
	if r.OIF != "" {
		a = append(a, "oif", r.OIF)
	}
	if r.UIDRange != nil {
		a = append(a, "uidrange", fmt.Sprintf("%d-%d", r.UIDRange.Start, r.UIDRange.End))
	}
	if r.IPProto != 0 {
		a = append(a, "ipproto", inet.ProtoName(r.IPProto))
	}
	if r.SPort != nil {
		a = append(a, "sport", r.SPort.String())
	}
	if r.DPort != nil {
		a = append(a, "dport", r.DPort.String())
	}
	return a
}

// ActionString renders the rule's action in `ip rule` syntax, naming tables through names.
func (r Rule) ActionString(names func(int) string) string {
	return strings.Join(r.ActionArgv(names), " ")
}

// ActionArgv is ActionString as argument words.
func (r Rule) ActionArgv(names func(int) string) []string {
	var a []string
	switch r.Action {
	case ActionTable, "":
		a = append(a, "lookup", names(r.Table))
	case ActionGoto:
		a = append(a, "goto", strconv.Itoa(r.Goto))
	default:
		a = append(a, r.Action)
	}
	if r.SuppressPrefixLen != nil {
		a = append(a, "suppress_prefixlength", strconv.Itoa(*r.SuppressPrefixLen))
	}
	if r.SuppressIfGroup != nil {
		a = append(a, "suppress_ifgroup", strconv.Itoa(*r.SuppressIfGroup))
	}
	return a
}

// Args renders the rule as arguments of `ip rule add` (family flag not included), for reading.
func (r Rule) Args(names func(int) string) string {
	return strings.Join(r.Argv(names), " ")
}

// Argv renders the rule as the argument words of `ip rule add` (family flag not included).
func (r Rule) Argv(names func(int) string) []string {
	return slices.Concat([]string{"priority", strconv.Itoa(r.Priority)}, r.SelectorArgv(), r.ActionArgv(names))
}

func (r Rule) String() string {
	return fmt.Sprintf("ip %s rule add %s", r.Family.Flag(), r.Args(NumericTable))
}

// NumericTable names a table as `ip` does without an rt_tables file: the reserved names, else
// the number.
func NumericTable(id int) string {
	switch id {
	case TableMain:
		return "main"
	case TableLocal:
		return "local"
	case TableDefault:
		return "default"
	}
	if id < 0 && strconv.IntSize == 32 {
		// A 32-bit build keeps a table id above 2^31-1 (the kernel's are 32 bits unsigned)
		// as the negative int of the same bits: shown as the kernel's number.
		return strconv.FormatUint(uint64(uint32(id)), 10)
	}
	return strconv.Itoa(id)
}
