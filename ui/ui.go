// Package ui is roundtrip's console: a terminal UI over the engine, the diagnosis and the
// wizards, in which every read and change of the host happens in a command off the screen's
// loop.
package ui

import (
	"context"
	"errors"
	"io"
	"os"

	tea "charm.land/bubbletea/v2"

	"roundtrip/ui/common"
)

// Options say what the console looks at and how it draws.
type Options struct {
	// Namespace is the network namespace to work on ("": the process's own, which is what
	// `ip netns exec NS roundtrip` gives).
	Namespace string
	// Snapshot, when set, is a snapshot file to look at instead of a live host: read-only.
	Snapshot string
	// Backend replaces the live or snapshot backend (tests).
	Backend common.Backend
	// Mode forces a styling mode; nil detects it from the terminal and NO_COLOR.
	Mode *common.Mode
	// NoMouse leaves the mouse to the terminal (for selecting text).
	NoMouse bool
	// Input and Output replace the terminal (nil: standard input and output).
	Input  io.Reader
	Output io.Writer
}

// New returns the console's model for the options, ready for tea.NewProgram (and for tests,
// which drive it with messages).
func New(ctx context.Context, o Options) *App {
	b := o.Backend
	switch {
	case b != nil:
	case o.Snapshot != "":
		b = &SnapshotBackend{Path: o.Snapshot}
	default:
		b = NewLiveBackend(o.Namespace)
	}
	mode := common.DetectMode()
	if o.Mode != nil {
		mode = *o.Mode
	}
	c := common.New(ctx, common.NewStyles(mode), b)
	if b.Live() {
		c.SSH = os.Getenv("SSH_CONNECTION")
	}
	return NewApp(c, !o.NoMouse)
}

// Run runs the console until the operator quits or ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Snapshot != "" && o.Namespace != "" {
		return errors.New("a snapshot is already one namespace's state: give --snapshot or --netns, not both")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts := []tea.ProgramOption{tea.WithContext(ctx)}
	if o.Input != nil {
		opts = append(opts, tea.WithInput(o.Input))
	}
	if o.Output != nil {
		opts = append(opts, tea.WithOutput(o.Output))
	}
	_, err := tea.NewProgram(New(ctx, o), opts...).Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		// Ended by a signal through ctx: not a failure of the console.
		return nil
	}
	return err
}
