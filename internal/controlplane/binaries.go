// Package controlplane starts Kubernetes control-plane components as plain processes: it finds
// their binaries, makes credentials for them, runs each in a process group of its own that is
// stopped by its recorded id only, and waits until each is ready. The etcd drill's scratch API
// server and the sandbox are both built on it. Its errors speak to whoever runs the component
// (an operator in a drill), so they name what is missing and where it was looked for, nothing more.
package controlplane

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// FindBinDir returns where component binaries are expected: $FIREDRILL_BIN_DIR, else the
// directory of the running executable when it holds kube-apiserver (bin/firedrill sits next to
// them), else bin/ at the root of the firedrill checkout that contains the working directory.
func FindBinDir() string {
	if d := os.Getenv("FIREDRILL_BIN_DIR"); d != "" {
		return d
	}
	if exe, err := os.Executable(); err == nil {
		d := filepath.Dir(exe)
		if _, err := os.Stat(filepath.Join(d, "kube-apiserver")); err == nil {
			return d
		}
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
				strings.HasPrefix(string(b), "module github.com/firedrill-dev/firedrill\n") {
				return filepath.Join(d, "bin")
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "bin"
}

// LookupBinary resolves a component binary: a path (containing a slash) as is; otherwise name
// (default def) in binDir (default FindBinDir()), then on PATH. The error says where it looked.
func LookupBinary(name, binDir, def string) (string, error) {
	if name == "" {
		name = def
	}
	if filepath.Base(name) != name {
		p, err := filepath.Abs(name)
		if err != nil {
			return "", err
		}
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return "", fmt.Errorf("%s not found at %s", def, p)
		}
		return p, nil
	}
	if binDir == "" {
		binDir = FindBinDir()
	}
	if p, err := filepath.Abs(filepath.Join(binDir, name)); err == nil {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	return "", fmt.Errorf("%s not found in %s or on PATH: install %s there, or give its path", name, binDir, def)
}

// MissingBinaries returns the names among names that are not executable files in binDir.
func MissingBinaries(binDir string, names []string) []string {
	var missing []string
	for _, n := range names {
		if st, err := os.Stat(filepath.Join(binDir, n)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, n)
		}
	}
	return missing
}
