package cli

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"roundtrip/engine"
	"roundtrip/engine/safefile"
)

// loadPlan reads a plan file, or standard input for "-", through the plan size limit: a
// device such as /dev/zero or a pipe given by name is refused (it could be endless), and so is
// anything over engine.MaxPlanFile. For apply (checkOwner), it warns when someone other than
// root and the operator could have changed the file: whoever can write a plan decides what
// root runs.
func loadPlan(inv *Invocation, path string, checkOwner bool) (*engine.Plan, error) {
	limit := int64(maxPlanFile)
	var data []byte
	if path == "-" {
		var err error
		if data, err = safefile.ReadAll(inv.Stdin, "the plan on standard input", limit); err != nil {
			return nil, fmt.Errorf("reading plan: %w", err)
		}
	} else {
		r, err := safefile.Open(path, limit)
		var nr *safefile.NotRegularError
		if errors.As(err, &nr) {
			return nil, fmt.Errorf("reading plan: %w: give a plan file, or - to read the plan from standard input", err)
		}
		if err != nil {
			return nil, fmt.Errorf("reading plan: %w", err)
		}
		defer r.Close()
		if checkOwner {
			// fstat of the file read, not a second look at the path.
			if who := safefile.ChangeableByOthers(r.Info(), os.Geteuid(), sudoUID()); who != "" {
				fmt.Fprintf(inv.Stderr, "warning: plan %s: %s, so someone else may have changed what it does: check it with roundtrip plan show %s, and keep plans writable by root only (chown root, chmod 600)\n", path, who, path)
			}
		}
		if data, err = r.ReadAll(); err != nil {
			return nil, fmt.Errorf("reading plan: %w", err)
		}
	}
	p, err := engine.ParsePlan(data)
	if err != nil {
		return nil, fmt.Errorf("loading plan %s: %w", path, err)
	}
	return p, nil
}

// maxPlanFile is engine.MaxPlanFile; tests lower it.
var maxPlanFile = engine.MaxPlanFile

// sudoUID is the user who ran roundtrip through sudo (their own files are theirs to trust),
// or -1.
func sudoUID() int {
	uid, err := strconv.Atoi(os.Getenv("SUDO_UID"))
	if err != nil {
		return -1
	}
	return uid
}
