package pages

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// shellSafe are the characters a shell word may hold unquoted.
const shellSafe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%_+=:,./-"

// shellQuote quotes a word for sh when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, shellSafe) == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellJoin quotes each word and joins them with spaces: a command line to paste.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// saveFile writes data to a file that must not exist yet. The data goes to a new temporary
// file in the same directory (created exclusively), which is then hard-linked to path and
// removed: link fails when anything has that name, a planted symbolic link included, so no
// file is ever replaced or written through a link, and path never holds half a script.
func saveFile(path string, data []byte, mode fs.FileMode) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("saving to %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(abs), ".roundtrip-save-*")
	if err != nil {
		return "", fmt.Errorf("saving to %s: %w", abs, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(data)
	err = errors.Join(werr, tmp.Chmod(mode), tmp.Sync(), tmp.Close())
	if err != nil {
		return "", fmt.Errorf("saving to %s: %w", abs, err)
	}
	if err := os.Link(tmp.Name(), abs); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("%s already exists: give another name (a saved script never replaces a file)", abs)
		}
		return "", fmt.Errorf("saving to %s: %w", abs, err)
	}
	return abs, nil
}
