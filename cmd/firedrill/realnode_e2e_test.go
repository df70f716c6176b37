package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

// `sandbox down` leaves the host as `up --real-node` found it: after a SIGKILLed up (with the
// node's pods running), and after a full up; a second real node on the machine is refused.
func TestSandboxRealNodeDownLeavesHostAsFound(t *testing.T) {
	needSandbox(t)
	sandboxtest.LockRealNode(t)
	before := sandboxtest.CaptureHost(t)
	assertHost := func(when string) {
		t.Helper()
		if d := before.Diff(sandboxtest.CaptureHost(t)); d != "" {
			t.Errorf("host changed %s:\n%s", when, d)
		}
	}

	// 1. up is killed once node-agent's pod exists (the Velero server is started after it),
	// leaving detached components, pods, mounts, firewall rules and cgroups behind.
	dir := t.TempDir()
	up := exec.Command(firedrillBin, "sandbox", "up", "--real-node", "--velero", "--network-policy", "--dir", dir)
	var errb bytes.Buffer
	up.Stderr = &errb
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(4 * time.Minute)
	for {
		st, err := sandbox.Load(dir)
		if err == nil && slices.ContainsFunc(st.Processes, func(p sandbox.ProcessState) bool { return p.Name == "velero" }) {
			break
		}
		if time.Now().After(deadline) || up.ProcessState != nil {
			_ = up.Process.Kill()
			_ = up.Wait()
			t.Fatalf("sandbox up never started velero:\n%s", errb.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := up.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = up.Wait()
	st, _ := sandbox.Load(dir)
	down := firedrill(t, nil, "sandbox", "down", "--dir", dir)
	if down.code != 0 {
		t.Fatalf("down after a killed up: exit %d\n%s%s", down.code, down.stdout, down.stderr)
	}
	assertStopped(t, st)
	assertHost("after a SIGKILLed up and down")

	// 2. A full up; a second real node is refused while it runs; down.
	dir = t.TempDir()
	r := firedrill(t, nil, "sandbox", "up", "--real-node", "--velero", "--dir", dir)
	if r.code != 0 {
		t.Fatalf("sandbox up --real-node: exit %d\n%s", r.code, r.stderr)
	}
	t.Cleanup(func() { firedrill(t, nil, "sandbox", "down", "--dir", dir) })
	if !strings.Contains(r.stdout, "Real node:") || !strings.Contains(r.stderr, "real node") {
		t.Errorf("up does not describe the real node:\n%s\n%s", r.stdout, r.stderr)
	}
	other := t.TempDir()
	second := firedrill(t, nil, "sandbox", "up", "--real-node", "--dir", other)
	if second.code != exitError || !strings.Contains(second.stderr, "already running on this machine") || !strings.Contains(second.stderr, dir) {
		t.Errorf("second real node: exit %d\n%s; want exit 3 naming the running one", second.code, second.stderr)
	}
	if _, err := os.Stat(filepath.Join(other, "sandbox.json")); !os.IsNotExist(err) {
		t.Errorf("the refused up left a record: %v", err)
	}
	st, _ = sandbox.Load(dir)
	if down := firedrill(t, nil, "sandbox", "down", "--dir", dir); down.code != 0 {
		t.Fatalf("down: exit %d\n%s%s", down.code, down.stdout, down.stderr)
	}
	assertStopped(t, st)
	assertHost("after up and down")
}

// Where the real node cannot run (here: its binaries are missing), a plain `sandbox up` says why
// and starts the kwok-only sandbox; `--real-node` given explicitly fails instead.
func TestSandboxUpWithoutRealNodeFallsBackToKwok(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	real := sandbox.FindBinDir()
	bin := t.TempDir()
	entries, err := os.ReadDir(real)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "kubelet" {
			if err := os.Symlink(filepath.Join(real, e.Name()), filepath.Join(bin, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	explicit := firedrill(t, nil, "sandbox", "up", "--real-node", "--bin-dir", bin, "--dir", t.TempDir())
	if explicit.code != exitError || !strings.Contains(explicit.stderr, "cannot run the sandbox's real node") || !strings.Contains(explicit.stderr, "kubelet") {
		t.Errorf("explicit --real-node: exit %d\n%s", explicit.code, explicit.stderr)
	}
	dir := t.TempDir()
	t.Cleanup(func() { firedrill(t, nil, "sandbox", "down", "--dir", dir) })
	r := firedrill(t, nil, "sandbox", "up", "--bin-dir", bin, "--dir", dir)
	if r.code != 0 {
		t.Fatalf("sandbox up: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"cannot run the sandbox's real node", "kubelet not found", "simulated (kwok) nodes only", "kwok"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("up's message lacks %q:\n%s", want, r.stderr)
		}
	}
	if st, _ := sandbox.Load(dir); st.RealNode != nil {
		t.Errorf("a real node was recorded: %+v", st.RealNode)
	}
}
