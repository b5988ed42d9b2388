package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// RevertTimerCommand is the hidden subcommand a revert timer runs as:
// `roundtrip __revert-timer --journal ID --after D [--netns NAME]`.
const RevertTimerCommand = "__revert-timer"

// timerLockWait bounds how long a timer waits for an apply in progress to finish.
const timerLockWait = time.Hour

// StartRevertTimer starts the revert timer of a journal as a detached process: this program
// again, in a session of its own (setsid: no controlling terminal, so neither the end of the
// SSH session nor SIGHUP reaches it), with standard input from /dev/null and its output in a
// log next to the journal. It outlives this process, however that ends, and rolls the journal
// back after `after` unless the journal is confirmed first.
func StartRevertTimer(s *Store, j *Journal, after time.Duration) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("finding roundtrip's own executable: %w", err)
	}
	args := []string{RevertTimerCommand, "--journal", j.ID, "--after", after.String()}
	if s.NS.Name != "" {
		args = append(args, "--netns", s.NS.Name)
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, j.ID+".timer.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, fmt.Errorf("opening the timer log: %w", err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s %v: %w", exe, args, err)
	}
	pid := cmd.Process.Pid
	// Reap it should it end while this process still runs; otherwise init adopts it.
	go cmd.Wait()
	return pid, nil
}

// RunRevertTimer is the body of the revert timer: it waits until the journal's confirmation
// deadline and rolls the journal back unless it was confirmed or rolled back meanwhile. If the
// apply that started it dies before finishing, the timer rolls back what it did as soon as the
// apply's lock is free.
func RunRevertTimer(ctx context.Context, ns Namespace, id string, after time.Duration) error {
	store, err := OpenStore(ns)
	if err != nil {
		return err
	}
	a := &Applier{NS: ns, Store: store, LockWait: timerLockWait, Log: os.Stderr}
	for {
		j, err := store.Load(id)
		if err != nil {
			return err
		}
		switch j.Status {
		case StatusPending:
			if wait := time.Until(j.ConfirmBy); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
				continue
			}
			return revertIfStill(ctx, a, store, id, StatusPending, fmt.Sprintf("not confirmed within %s", after))
		case StatusApplying:
			// Wait for the apply to let go of the lock; if the journal is still applying then,
			// the apply died half way.
			if err := revertIfStill(ctx, a, store, id, StatusApplying, "the apply was interrupted before it finished"); err != nil {
				return err
			}
			continue
		default:
			fmt.Fprintf(os.Stderr, "journal %s is %s: nothing to revert\n", id, j.Status)
			return nil
		}
	}
}

// revertIfStill takes the lock and rolls the journal back if it still has status want.
func revertIfStill(ctx context.Context, a *Applier, store *Store, id, want, reason string) error {
	release, err := store.Lock(ctx, timerLockWait)
	if err != nil {
		return err
	}
	defer release()
	j, err := store.Load(id)
	if err != nil || j.Status != want {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: rolling back journal %s: %s\n", time.Now().Format(time.RFC3339), id, reason)
	host, closeHost, err := a.host()
	if err != nil {
		return err
	}
	defer closeHost()
	// The rollback must finish even if a SIGTERM cancels ctx meanwhile.
	_, err = a.rollbackLocked(context.WithoutCancel(ctx), store, host, id, reason)
	return err
}

// ErrNothingToConfirm is returned when no apply waits for confirmation.
var ErrNothingToConfirm = errors.New("nothing waits for confirmation")

// Confirm keeps the changes of the apply waiting for confirmation in a namespace (the one with
// that id, or the pending one when id is empty) and stops its revert timer. Past the deadline
// it refuses, since the timer is rolling the apply back; but if the timer died (killed, or the
// machine rebooted) nothing is rolling it back, and the late confirmation is taken: the
// operator is evidently still there to keep the changes.
func Confirm(ctx context.Context, ns Namespace, id string, lockWait time.Duration) (*Journal, error) {
	store, err := OpenStore(ns)
	if err != nil {
		return nil, err
	}
	release, err := store.Lock(ctx, lockWait)
	if err != nil {
		return nil, err
	}
	defer release()
	latest, err := store.Latest()
	if err != nil {
		return nil, err
	}
	if latest == nil || latest.Status != StatusPending || (id != "" && latest.ID != id) {
		if id != "" {
			if other, lerr := store.Load(id); lerr == nil {
				return nil, fmt.Errorf("%w: journal %s is %s", ErrNothingToConfirm, id, other.Status)
			}
		}
		return nil, fmt.Errorf("%w in %s (see roundtrip history)", ErrNothingToConfirm, ns)
	}
	j, err := store.Load(latest.ID)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	if time.Now().After(j.ConfirmBy) && !j.TimerDead {
		return nil, fmt.Errorf("too late: journal %s had to be confirmed by %s and its revert timer is rolling it back; apply the plan again", j.ID, j.ConfirmBy.Local().Format("15:04:05"))
	}
	if j.TimerDead {
		store.note("the revert timer of journal %s (pid %d) had died: nothing would have reverted it", j.ID, j.TimerPID())
	}
	if err := j.write(record{Type: "confirmed"}, true); err != nil {
		return nil, err
	}
	store.updateIndex(j)
	// The timer would find the journal confirmed and exit at the deadline anyway; stopping it
	// now leaves no process behind. Only a process that is this journal's timer is signalled.
	stopTimer(j.Timer, j.ID)
	return j, nil
}
