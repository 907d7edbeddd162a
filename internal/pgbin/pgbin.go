// Package pgbin finds the installed PostgreSQL server programs (initdb,
// pg_ctl), for the command's private development cluster and for the
// tests' throwaway clusters.
package pgbin

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
)

// ErrNotFound: initdb and pg_ctl are neither on the PATH nor under
// /usr/lib/postgresql/*/bin.
var ErrNotFound = errors.New("PostgreSQL server programs (initdb, pg_ctl) not found in PATH or /usr/lib/postgresql/*/bin")

// Find returns the folder holding initdb and pg_ctl: the PATH's if both
// are there, else the newest /usr/lib/postgresql/<major>/bin that has them
// (Debian does not put them on the PATH).
func Find() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			if real, err := filepath.EvalSymlinks(p); err == nil {
				p = real
			}
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	for _, d := range dirs {
		if executable(filepath.Join(d, "initdb")) && executable(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", ErrNotFound
}

func major(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
