package kernel

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"roundtrip/engine"
)

// RouteGet asks the kernel where it routes a flow, as `ip route get DST [from SRC] [iif IF]
// [mark M]` does: an input lookup when fl.IIF is set (with the kernel's source validation:
// rp_filter, forwarding), an output lookup otherwise. The answer is shaped like the model's
// (engine.FIBResult) so the two can be compared; Verdict is the kernel's refusal when it
// refuses: no-route (ENETUNREACH), unreachable (EHOSTUNREACH, also what forwarding turned off
// gives), blackhole or invalid (EINVAL), prohibit (EACCES), or "rp-filter" (EXDEV).
// The protocol and ports of the flow are not passed (the netlink library has no attributes
// for them), so rules on ipproto/sport/dport are not exercised.
func (ns Namespace) RouteGet(fl engine.Flow) (engine.FIBResult, error) {
	h, err := ns.Handle()
	if err != nil {
		return engine.FIBResult{}, err
	}
	defer h.Close()
	if !fl.Dst.IsValid() {
		return engine.FIBResult{}, errors.New("route get: the flow has no destination")
	}
	opts := &netlink.RouteGetOptions{Iif: fl.IIF, Oif: fl.OIF, Mark: fl.Mark}
	if fl.Src.IsValid() && !fl.Src.IsUnspecified() {
		opts.SrcAddr = net.IP(fl.Src.AsSlice())
	}
	if fl.UID != 0 && fl.IIF == "" {
		uid := fl.UID
		opts.UID = &uid
	}
	routes, err := h.RouteGetWithOptions(net.IP(fl.Dst.AsSlice()), opts)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			if v, ok := routeGetRefusals[errno]; ok {
				return engine.FIBResult{Verdict: v, Note: fmt.Sprintf("the kernel answers: %v", errno)}, nil
			}
		}
		return engine.FIBResult{}, fmt.Errorf("ip route get %s in %s: %w", fl.Dst, ns, err)
	}
	if len(routes) == 0 {
		return engine.FIBResult{}, fmt.Errorf("ip route get %s in %s: the kernel returned no route", fl.Dst, ns)
	}
	r := routes[0]
	fam := engine.FamilyOf(fl.Dst)
	res := engine.FIBResult{
		Verdict: routeTypes[r.Type],
		Table:   r.Table,
		Gateway: gatewayOf(r.Gw, r.Via, fam),
		Src:     addrIn(r.Src, fam),
		PrefSrc: addrIn(r.Src, fam),
		Nexthop: -1,
	}
	if res.Verdict == "" {
		res.Verdict = fmt.Sprint(r.Type)
	}
	if r.LinkIndex > 0 {
		l, err := h.LinkByIndex(r.LinkIndex)
		if err != nil {
			return engine.FIBResult{}, fmt.Errorf("ip route get %s in %s: naming interface %d: %w", fl.Dst, ns, r.LinkIndex, err)
		}
		res.OIF = l.Attrs().Name
	}
	return res, nil
}

// routeGetRefusals maps the errors of RTM_GETROUTE to the verdict they mean.
var routeGetRefusals = map[syscall.Errno]string{
	unix.ENETUNREACH:  engine.VerdictNoRoute,
	unix.EHOSTUNREACH: engine.VerdictUnreachable,
	unix.EINVAL:       engine.VerdictInvalid,
	unix.EACCES:       engine.VerdictProhibit,
	unix.EXDEV:        "rp-filter",
}
