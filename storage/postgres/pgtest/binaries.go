package pgtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// debianBinGlob is where Debian and Ubuntu install each PostgreSQL version's
// server binaries, which are not on PATH.
const debianBinGlob = "/usr/lib/postgresql/*/bin"

// BinDirEnv names an environment variable that, when set, is the only
// directory searched for the server binaries.
const BinDirEnv = "ANVIL_PGTEST_BINDIR"

// ErrNotInstalled says the PostgreSQL server binaries are missing, and how to
// get them.
var ErrNotInstalled = errors.New("PostgreSQL is not installed: the server binaries initdb and postgres were not found " +
	"in " + debianBinGlob + " (newest first), on PATH, or in $" + BinDirEnv + ". " +
	"Install them with `apt-get install -y postgresql` (as root), or run `make deps`")

// binaries are the programs a cluster needs.
type binaries struct {
	initdb, postgres string
}

// findBinaries looks in $ANVIL_PGTEST_BINDIR if set, otherwise in the newest
// Debian version directory, then on PATH.
func findBinaries() (binaries, error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		return lookBinaries([]string{dir})
	}
	dirs, _ := filepath.Glob(debianBinGlob)
	sortByVersionDescending(dirs)
	return lookBinaries(append(dirs, filepath.SplitList(os.Getenv("PATH"))...))
}

// lookBinaries returns the first directory of dirs holding both binaries.
func lookBinaries(dirs []string) (binaries, error) {
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		b := binaries{initdb: filepath.Join(dir, "initdb"), postgres: filepath.Join(dir, "postgres")}
		if executable(b.initdb) && executable(b.postgres) {
			return b, nil
		}
	}
	return binaries{}, fmt.Errorf("pgtest: %w (searched %s)", ErrNotInstalled, strings.Join(dirs, ", "))
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// sortByVersionDescending orders …/15/bin before …/9/bin.
func sortByVersionDescending(dirs []string) {
	version := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	sort.SliceStable(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
}
