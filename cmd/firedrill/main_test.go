package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

// firedrillBin is the binary the end-to-end tests drive: $FIREDRILL_BINARY (make sets it to the
// one it just built), else one built from this package for the test run.
var firedrillBin string

func TestMain(m *testing.M) {
	code := func() int {
		bin, cleanup, err := sandboxtest.FiredrillBinary(".")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cleanup()
		firedrillBin = bin
		return sandboxtest.Run(m)
	}()
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// firedrill runs the built binary as a user would, with env added to the test's environment.
func firedrill(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(firedrillBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run firedrill %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

// inProcess runs the command tree without a subprocess, for the pure CLI logic.
func inProcess(args ...string) result {
	var out, errb bytes.Buffer
	code := execute(context.Background(), newApp(strings.NewReader(""), &out, &errb, func(string) string { return "" }), args)
	return result{code, out.String(), errb.String()}
}

func TestExitCodesForMisuse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"no-such-command"}, `unknown command "no-such-command"`},
		{[]string{"version", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"version", "extra"}, "takes no arguments"},
		{[]string{"-o", "xml", "version"}, `unknown output format "xml"`},
		{[]string{"sandbox", "up", "--nodes", "0"}, "--nodes must be at least 1"},
	} {
		r := inProcess(tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("firedrill %v: exit %d, stderr %q; want exit 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

func TestHelpDocumentsExitCodesAndExamples(t *testing.T) {
	t.Parallel()
	r := firedrill(t, nil, "--help")
	if r.code != 0 {
		t.Fatalf("--help exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"Exit status:", "130", "--kubeconfig", "--context", "--output", "Examples:", "sandbox"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--help lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, sub := range [][]string{{"sandbox", "up", "--help"}, {"sandbox", "env", "--help"}, {"sandbox", "down", "--help"}, {"version", "--help"}} {
		r := firedrill(t, nil, sub...)
		if r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("firedrill %v: exit %d, no examples:\n%s", sub, r.code, r.stdout)
		}
	}
}

func TestVersionJSON(t *testing.T) {
	t.Parallel()
	r := firedrill(t, nil, "version", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("version -o json is not JSON: %v\n%s", err, r.stdout)
	}
	found := false
	for _, c := range v.Components {
		found = found || c.Name == "kube-apiserver" && c.Version == "v1.36.3"
	}
	if !found || !strings.HasPrefix(v.Go, "go1.") || v.Libraries["k8s.io/client-go"] == "" {
		t.Errorf("version info incomplete: %+v", v)
	}
}

func TestShellCompletion(t *testing.T) {
	t.Parallel()
	for shell, want := range map[string]string{"bash": "__start_firedrill", "zsh": "#compdef firedrill", "fish": "complete -c firedrill"} {
		r := firedrill(t, nil, "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("completion %s: exit %d, lacks %q", shell, r.code, want)
		}
	}
}
