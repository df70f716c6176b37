package sandboxtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// FiredrillBinary returns the firedrill binary end-to-end tests drive: $FIREDRILL_BINARY (make
// sets it to the one it just built), else one built from pkg (a path to ./cmd/firedrill relative
// to the test's package) into a temporary directory that cleanup removes. Call it from TestMain.
func FiredrillBinary(pkg string) (path string, cleanup func(), err error) {
	if p := os.Getenv("FIREDRILL_BINARY"); p != "" {
		return p, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "firedrill-e2e-")
	if err != nil {
		return "", nil, err
	}
	path = filepath.Join(dir, "firedrill")
	if out, err := exec.Command("go", "build", "-o", path, pkg).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build firedrill from %s: %v\n%s", pkg, err, out)
	}
	return path, func() { os.RemoveAll(dir) }, nil
}
