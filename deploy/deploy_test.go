// Package deploy_test proves what deploy/ holds: every kustomize overlay and every Helm values
// file in deploy/helm/firedrill/ci renders and passes a real API server's server-side dry-run;
// the RBAC is enough for real drills and serve and refuses what firedrill has no business with;
// the alerts parse and fire (promtool); the dashboard queries metrics firedrill exports; the
// Dockerfile builds what exists.
package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

// firedrillBin is the binary the RBAC tests drive: $FIREDRILL_BINARY (make sets it), else one
// built from ./cmd/firedrill for this test run.
var firedrillBin string

func TestMain(m *testing.M) {
	code := func() int {
		if !isShort() {
			bin, cleanup, err := sandboxtest.FiredrillBinary("../cmd/firedrill")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer cleanup()
			firedrillBin = bin
		}
		return sandboxtest.Run(m)
	}()
	os.Exit(code)
}

// isShort reads -short before flag parsing has happened in testing.M.Run.
func isShort() bool {
	for _, a := range os.Args[1:] {
		if a == "-test.short" || a == "-test.short=true" {
			return true
		}
	}
	return false
}

// binDir is where make puts the component binaries: $FIREDRILL_BIN_DIR, else the repository's bin/.
func binDir(t testing.TB) string {
	if d := os.Getenv("FIREDRILL_BIN_DIR"); d != "" {
		return d
	}
	d, err := filepath.Abs(filepath.Join("..", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tool returns bin/NAME. A missing tool fails the test (skips it under -short): the tests that
// need one are about running it for real.
func tool(t testing.TB, name, hint string) string {
	t.Helper()
	p := filepath.Join(binDir(t), name)
	if _, err := os.Stat(p); err != nil {
		if testing.Short() {
			t.Skipf("%s is missing (-short): %s", p, hint)
		}
		t.Fatalf("%s is missing: %s", p, hint)
	}
	return p
}

// run runs a command with stdin and returns its stdout; a non-zero exit fails the test with stderr.
func run(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, errOut, err := runErr(stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s\n%s", filepath.Base(name), strings.Join(args, " "), err, errOut, clip(out))
	}
	return out
}

func runErr(stdin []byte, name string, args ...string) (stdout, stderr []byte, err error) {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.Bytes(), e.Bytes(), err
}

func clip(b []byte) string {
	if len(b) > 4000 {
		return string(b[:4000]) + "..."
	}
	return string(b)
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
