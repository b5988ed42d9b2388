package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"roundtrip/engine/plan"
	"roundtrip/engine/quote"
	"roundtrip/engine/safefile"
)

// loadPlan reads a plan file, or standard input for "-", through the plan size limit: a
// device such as /dev/zero or a pipe given by name is refused (it could be endless), and so is
// anything over plan.MaxFileSize. For apply (checkOwner), it warns when someone other than
// root and the operator could have changed the file: whoever can write a plan decides what
// root runs.
func loadPlan(inv *Invocation, path string, checkOwner bool) (*plan.Plan, error) {
	limit := maxPlanFile
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
			warnIfOthersCanChange(inv, path, r.Info())
		}
		if data, err = r.ReadAll(); err != nil {
			return nil, fmt.Errorf("reading plan: %w", err)
		}
	}
	p, err := plan.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("loading plan %s: %w", path, err)
	}
	return p, nil
}

// openPlan opens a plan for streaming (apply): a file, held open so that every pass reads the
// same bytes, or standard input for "-" (read whole, under the limit). The same refusals and
// warning as loadPlan with checkOwner.
func openPlan(inv *Invocation, path string) (*plan.File, error) {
	limit := maxPlanFile
	if path == "-" {
		data, err := safefile.ReadAll(inv.Stdin, "the plan on standard input", limit)
		if err != nil {
			return nil, fmt.Errorf("reading plan: %w", err)
		}
		return plan.NewFile("on standard input", bytes.NewReader(data), int64(len(data)))
	}
	r, err := safefile.Open(path, limit)
	var nr *safefile.NotRegularError
	if errors.As(err, &nr) {
		return nil, fmt.Errorf("reading plan: %w: give a plan file, or - to read the plan from standard input", err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading plan: %w", err)
	}
	warnIfOthersCanChange(inv, path, r.Info())
	f, err := plan.NewFile(path, r, r.Info().Size())
	if err != nil {
		r.Close()
		return nil, err
	}
	return f, nil
}

// warnIfOthersCanChange warns when someone other than root and the operator could have
// changed the plan file (fstat of the file read, not a second look at the path): whoever can
// write a plan decides what root runs.
func warnIfOthersCanChange(inv *Invocation, path string, fi fs.FileInfo) {
	if who := safefile.ChangeableByOthers(fi, os.Geteuid(), sudoUID()); who != "" {
		quote.TermFprintf(inv.Stderr, "warning: plan %s: %s, so someone else may have changed what it does: check it with roundtrip plan show %s, and keep plans writable by root only (chown root, chmod 600)\n", path, who, path)
	}
}

// maxPlanFile is plan.MaxFileSize; tests lower it.
var maxPlanFile int64 = plan.MaxFileSize

// sudoUID is the user who ran roundtrip through sudo (their own files are theirs to trust),
// or -1.
func sudoUID() int {
	uid, err := strconv.Atoi(os.Getenv("SUDO_UID"))
	if err != nil {
		return -1
	}
	return uid
}
