package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"roundtrip/diagnose"
	"roundtrip/engine/doctor"
	"roundtrip/engine/fib"
	"roundtrip/engine/kernel"
	"roundtrip/engine/model"
	"roundtrip/engine/plan"
	"roundtrip/engine/safefile"
)

// profiled runs fn with a CPU profile to dir/name.cpu.pprof and writes the heap profile at
// its end (dir/name.heap.pprof); read them with `go tool pprof -top`. What is profiled is the
// same library code the CLI runs, in this process.
func (b *bench) profiled(dir, name string, fn func() error) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	runtime.GC()
	debug.FreeOSMemory()
	f, err := safefile.Create(filepath.Join(dir, name+".cpu.pprof"), safefile.ModePrivate, nil)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	start := time.Now()
	ferr := fn()
	pprof.StopCPUProfile()
	b.logf("profile %s: %.2fs in-process", name, time.Since(start).Seconds())
	if err := f.Commit(); err != nil {
		return err
	}
	h, err := safefile.Create(filepath.Join(dir, name+".heap.pprof"), safefile.ModePrivate, nil)
	if err != nil {
		return err
	}
	defer h.Abort()
	if err := pprof.Lookup("allocs").WriteTo(h, 0); err != nil {
		return err
	}
	if err := h.Commit(); err != nil {
		return err
	}
	return ferr
}

// profileApply applies the plan of n routes as `roundtrip apply` does, into the emptied table.
func (b *bench) profileApply(dir, ns string, n int) error {
	stateDir := filepath.Join(b.work, "state")
	if err := b.emptyTable(ns, stateDir); err != nil {
		return err
	}
	defer os.RemoveAll(stateDir)
	planPath := filepath.Join(b.work, fmt.Sprintf("routes-%d.plan.json", n))
	os.Setenv(kernel.StateDirEnv, stateDir)
	defer os.Unsetenv(kernel.StateDirEnv)
	err := b.profiled(dir, fmt.Sprintf("apply-%d", n), func() error {
		src, err := plan.Open(planPath)
		if err != nil {
			return err
		}
		a := &kernel.Applier{NS: kernel.Namespace{Name: ns}, LockWait: 10 * time.Second}
		_, err = a.ApplySource(b.ctx, src, kernel.ApplyOptions{})
		return err
	})
	if err != nil {
		return err
	}
	if got, err := b.countRoutes(ns, routeTable); err != nil || got != n {
		return fmt.Errorf("the profiled apply loaded %d routes of %d (%v)", got, n, err)
	}
	return nil
}

// profileSnapshot takes a snapshot as `roundtrip snapshot -o` does.
func (b *bench) profileSnapshot(dir, ns string) error {
	return b.profiled(dir, "snapshot", func() error {
		st, err := kernel.Read(b.ctx, kernel.Namespace{Name: ns})
		if err != nil {
			return err
		}
		data, err := model.NewSnapshot(st, time.Now()).Marshal()
		if err != nil {
			return err
		}
		return safefile.WriteFile(filepath.Join(b.work, "profile.snapshot.json"), data, safefile.ModePrivate, nil)
	})
}

// profileDoctor reads the namespace and checks it as `roundtrip doctor --netns NS` does.
func (b *bench) profileDoctor(dir, ns string) error {
	return b.profiled(dir, "doctor", func() error {
		st, err := kernel.Read(b.ctx, kernel.Namespace{Name: ns})
		if err != nil {
			return err
		}
		_, err = doctor.RunContext(b.ctx, st, fib.New(st), nil)
		return err
	})
}

// profileConntrack lists the table as `roundtrip conntrack > FILE` does.
func (b *bench) profileConntrack(dir, ns string) error {
	out := filepath.Join(b.work, "profile.conntrack.out")
	defer os.Remove(out)
	return b.profiled(dir, "conntrack", func() error {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = diagnose.ListConntrack(b.ctx, diagnose.ConntrackOptions{Namespace: kernel.Namespace{Name: ns}}, f)
		return err
	})
}
