package nftrace

import (
	"os"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"

	"roundtrip/engine/kernel/dropwatch"
)

// readNetFile reads the lines of /proc/net/FILE as the namespace sees it, from a thread
// switched into it (/proc/net follows the reading thread's namespace).
func readNetFile(ns, file string) ([]string, error) {
	path, err := dropwatch.NetnsPath(ns)
	if err != nil {
		return nil, err
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	var data []byte
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it dies with the goroutine rather than going back to
		// the pool in another namespace.
		runtime.LockOSThread()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		var err error
		data, err = os.ReadFile("/proc/thread-self/net/" + file)
		errc <- err
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return strings.Fields(string(data)), nil
}
