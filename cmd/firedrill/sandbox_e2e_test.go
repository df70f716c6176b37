package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/sandbox"
)

// needSandbox skips under -short only; without the binaries `sandbox up` itself fails the test
// with a message that names `make sandbox-bin`.
func needSandbox(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a sandbox: skipped under -short")
	}
}

func assertStopped(t *testing.T, st sandbox.State) {
	t.Helper()
	if running := st.Running(); len(running) > 0 {
		t.Errorf("still running after stop: %v", running)
	}
}

func TestSandboxUpEnvDown(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	dir := t.TempDir()
	t.Cleanup(func() { firedrill(t, nil, "sandbox", "down", "--dir", dir) })

	up := firedrill(t, nil, "sandbox", "up", "--real-node=false", "--velero", "--nodes", "2", "--dir", dir)
	if up.code != 0 {
		t.Fatalf("sandbox up: exit %d\n%s", up.code, up.stderr)
	}
	for _, want := range []string{"etcd", "kube-apiserver", "velero", "Sandbox ready in"} {
		if !strings.Contains(up.stderr, want) {
			t.Errorf("up progress lacks %q:\n%s", want, up.stderr)
		}
	}
	if !strings.Contains(up.stdout, "firedrill sandbox down --dir "+dir) {
		t.Errorf("up does not say how to stop it:\n%s", up.stdout)
	}

	// A second up on the same dir refuses and leaves the running one alone.
	again := firedrill(t, nil, "sandbox", "up", "--dir", dir)
	if again.code != exitError || !strings.Contains(again.stderr, "already running") {
		t.Errorf("second up: exit %d, stderr %q; want exit 3 and 'already running'", again.code, again.stderr)
	}

	env := firedrill(t, nil, "sandbox", "env", "--dir", dir)
	if env.code != 0 {
		t.Fatalf("sandbox env: exit %d: %s", env.code, env.stderr)
	}
	for _, want := range []string{"export KUBECONFIG=", "export FIREDRILL_ETCD_ENDPOINTS=", "export FIREDRILL_S3_URL=", "export VELERO_NAMESPACE="} {
		if !strings.Contains(env.stdout, want) {
			t.Errorf("env lacks %q:\n%s", want, env.stdout)
		}
	}
	// The env file works in a shell the way the README says: kubectl sees both nodes Ready.
	sh := exec.Command("bash", "-c", `eval "$(`+firedrillBin+` sandbox env --dir `+dir+`)" && kubectl get nodes --no-headers`)
	out, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl through the env: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), " Ready "); n != 2 {
		t.Errorf("want 2 Ready nodes, got:\n%s", out)
	}
	envJSON := firedrill(t, nil, "sandbox", "env", "--dir", dir, "-o", "json")
	var vars map[string]string
	if err := json.Unmarshal([]byte(envJSON.stdout), &vars); err != nil || vars["KUBECONFIG"] != filepath.Join(dir, "kubeconfig") {
		t.Errorf("env -o json: %v %v\n%s", err, vars, envJSON.stdout)
	}

	st, err := sandbox.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	down := firedrill(t, nil, "sandbox", "down", "--dir", dir)
	if down.code != 0 || !strings.Contains(down.stdout, "Stopped") || !strings.Contains(down.stdout, "velero") {
		t.Fatalf("sandbox down: exit %d\n%s%s", down.code, down.stdout, down.stderr)
	}
	assertStopped(t, st)

	if r := firedrill(t, nil, "sandbox", "down", "--dir", dir); r.code != 0 || !strings.Contains(r.stdout, "nothing to stop") {
		t.Errorf("second down: exit %d %q", r.code, r.stdout)
	}
	if r := firedrill(t, nil, "sandbox", "env", "--dir", dir); r.code != exitError || !strings.Contains(r.stderr, "firedrill sandbox up") {
		t.Errorf("env after down: exit %d %q; want exit 3 naming 'firedrill sandbox up'", r.code, r.stderr)
	}
}

func TestSandboxUpInterruptedLeavesNothing(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	dir := t.TempDir()
	cmd := exec.Command(firedrillBin, "sandbox", "up", "--real-node=false", "--dir", dir)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt once the API server has been started (it is recorded the moment it starts).
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := sandbox.Load(dir)
		if err == nil && len(st.Processes) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("sandbox up never recorded the API server:\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, _ := sandbox.Load(dir)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Fatalf("interrupted up: %v, want exit 130\n%s", err, errb.String())
	}
	assertStopped(t, st)
	for _, p := range st.Processes {
		if err := syscall.Kill(-p.PGID, 0); err == nil && len(st.Running()) > 0 {
			t.Errorf("%s group %d still exists", p.Name, p.PGID)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sandbox.json")); !os.IsNotExist(err) {
		t.Errorf("interrupted up left its record: %v", err)
	}
}
