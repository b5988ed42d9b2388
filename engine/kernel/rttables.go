package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"roundtrip/engine/model"
)

// DefaultRTTablesDirs are where iproute2 looks for rt_tables, the administrator's directory
// first: /etc, then the distribution's (iproute2 6.5+ ships /usr/share/iproute2; some
// distributions build it with /usr/lib/iproute2).
var DefaultRTTablesDirs = []string{"/etc/iproute2", "/usr/share/iproute2", "/usr/lib/iproute2"}

// IPRoute2DirEnv names a directory that replaces /etc/iproute2 for roundtrip, as it does for
// the scripts roundtrip renders: the administrator's rt_tables is read from it and roundtrip's
// table names are written there. Tests and staged setups use it to keep off the host's /etc.
const IPRoute2DirEnv = "ROUNDTRIP_IPROUTE2_DIR"

// RTTablesDirs returns the directories in effect: DefaultRTTablesDirs, with the first
// replaced by $ROUNDTRIP_IPROUTE2_DIR when it is set.
func RTTablesDirs() []string {
	dirs := slices.Clone(DefaultRTTablesDirs)
	if d := os.Getenv(IPRoute2DirEnv); d != "" {
		dirs[0] = d
	}
	return dirs
}

// builtinTables are the names iproute2 knows without any file; model.State.TableName supplies
// them, so TableNames only holds the site's own names.
var builtinTables = map[int]string{
	model.TableUnspec:  "unspec",
	model.TableDefault: "default",
	model.TableMain:    "main",
	model.TableLocal:   "local",
}

// ReadTableNames reads the routing table names from rt_tables files under dirs (highest
// precedence first; DefaultRTTablesDirs when empty) the way iproute2 does: the first
// dir/rt_tables found, then every dir/rt_tables.d/*.conf, a file name in a higher dir hiding the
// same name in a lower one. Later definitions of an ID win, so the administrator's files, read
// last, win over the distribution's. The built-in names are left out.
func ReadTableNames(dirs []string) (map[int]string, error) {
	if len(dirs) == 0 {
		dirs = RTTablesDirs()
	}
	var files []string
	for _, d := range dirs {
		p := filepath.Join(d, "rt_tables")
		if _, err := os.Stat(p); err == nil {
			files = append(files, p)
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("reading routing table names: %w", err)
		}
	}
	seen := map[string]bool{}
	var confs [][]string // per dir, highest precedence first
	for _, d := range dirs {
		matches, err := filepath.Glob(filepath.Join(d, "rt_tables.d", "*.conf"))
		if err != nil {
			return nil, fmt.Errorf("reading routing table names: %w", err)
		}
		var mine []string
		for _, m := range matches { // Glob returns sorted names
			if base := filepath.Base(m); !seen[base] {
				seen[base] = true
				mine = append(mine, m)
			}
		}
		confs = append(confs, mine)
	}
	for _, c := range slices.Backward(confs) {
		files = append(files, c...)
	}

	names := map[int]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since it was listed
		}
		if err != nil {
			return nil, fmt.Errorf("reading routing table names: %w", err)
		}
		m, err := model.ParseRTTables(data)
		if err != nil {
			return nil, fmt.Errorf("reading routing table names from %s: %w; fix or remove that line", f, err)
		}
		maps.Copy(names, m)
	}
	for id, n := range names {
		if builtinTables[id] == n {
			delete(names, id)
		}
	}
	return names, nil
}
