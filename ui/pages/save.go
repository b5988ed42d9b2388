package pages

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"roundtrip/engine/safefile"
)

// saveFile writes data to a file that does not exist yet, through engine/safefile (a new file
// created exclusively next to it, renamed into place: never written through a planted link,
// never in /dev or a directory anyone may swap it in). The console never replaces a file: a
// second plan saved under the first one's name would silently take its place. It returns the
// path written and what safefile warned about.
func saveFile(path string, data []byte, mode fs.FileMode) (string, []string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", nil, fmt.Errorf("saving to %s: %w", path, err)
	}
	if _, err := os.Lstat(abs); err == nil {
		return "", nil, fmt.Errorf("%s already exists: give another name (a saved script never replaces a file)", abs)
	}
	var warnings []string
	if err := safefile.WriteFile(abs, data, mode, func(msg string) { warnings = append(warnings, msg) }); err != nil {
		return "", warnings, err
	}
	return abs, warnings, nil
}
