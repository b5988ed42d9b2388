package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progressBar draws how far a long command got as one line on stderr: a bar and the counts,
// redrawn at most ten times a second and erased when the work ends. It draws only when stderr
// is a terminal: piped or redirected, a command prints nothing it would not print anyway.
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer
	what  string
	last  time.Time
	drawn bool
}

// barWidth is the bar's width in cells (bubbles/progress would add a module for its animation).
const barWidth = 30

// newProgress returns the bar of a command's work named what ("doctor"), or nil when stderr is
// not a terminal; a nil bar's methods do nothing.
func newProgress(inv *Invocation, what string) *progressBar {
	if !isTerminal(inv.Stderr) {
		return nil
	}
	return &progressBar{w: inv.Stderr, what: what}
}

// Update shows done of total.
func (p *progressBar) Update(done, total int) {
	if p == nil || total <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		frac := float64(min(done, total)) / float64(total)
		// \r and erase-line: the bar is redrawn in place, whatever was there before.
		full := int(frac * barWidth)
		fmt.Fprintf(p.w, "\r\x1b[K%s %s%s %3.0f%% %s/%s", p.what, strings.Repeat("█", full), strings.Repeat("░", barWidth-full), 100*frac, count(done), count(total))
		p.drawn = true
	}
}

// Done erases the bar, so that what the command prints next starts on a clean line.
func (p *progressBar) Done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// count writes a number of steps shortly: 950, 12.3k, 1.2M.
func count(n int) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%.0fk", float64(n)/1e3)
	case n >= 1_000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
