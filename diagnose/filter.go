package diagnose

import "roundtrip/engine/kernel"

// CaptureFilter selects the packets a capture keeps (a flow expression such as
// "tcp and host 10.0.0.1 and port 80"), under the name the console's Backend uses. Its terms
// and their cBPF compiler stay in the kernel adapter, where the capture and the drop watcher
// use them; the console only passes it on, so it need not import the adapter.
type CaptureFilter = kernel.CaptureFilter
