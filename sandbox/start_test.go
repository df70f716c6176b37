package sandbox_test

import (
	"context"
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/sandbox"
)

// fakeBinDir makes a bin dir whose components are shell scripts, so the start-up logic can be
// tested without the real binaries (and under -short).
func fakeBinDir(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		body, ok := scripts[name]
		if !ok {
			body = "sleep 60"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "kwok-stages"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kwok-stages", "stage.yaml"), []byte("kind: Stage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMissingBinariesNameMakeTarget(t *testing.T) {
	t.Parallel()
	_, err := sandbox.Start(context.Background(), sandbox.Options{Dir: t.TempDir(), BinDir: t.TempDir(), Velero: true})
	var mb *sandbox.MissingBinariesError
	if !errors.As(err, &mb) || !errors.Is(err, sandbox.ErrMissingBinaries) {
		t.Fatalf("got %v, want a MissingBinariesError", err)
	}
	for _, want := range []string{"make sandbox-bin", "kube-apiserver", "velero-plugin-for-aws", "kwok-stages"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestComponentThatExitsEarlyIsNamedWithItsLog(t *testing.T) {
	t.Parallel()
	bin := fakeBinDir(t, map[string]string{"etcd": `echo "starting"; echo "fatal: data dir is corrupt (boom)" >&2; exit 3`})
	dir := t.TempDir()
	_, err := sandbox.Start(context.Background(), sandbox.Options{Dir: dir, BinDir: bin})
	var ce *sandbox.ComponentError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a ComponentError", err)
	}
	if ce.Component != "etcd" || !strings.Contains(ce.LastLines, "data dir is corrupt (boom)") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("error does not name etcd, its exit status and its last log lines:\n%v", err)
	}
	if ce.Log != filepath.Join(dir, "logs", "etcd.log") {
		t.Errorf("log path %q", ce.Log)
	}
}

func TestComponentNotReadyInTimeIsStopped(t *testing.T) {
	t.Parallel()
	bin := fakeBinDir(t, map[string]string{"etcd": `echo "waiting for peers"; sleep 60`})
	dir := t.TempDir()
	t0 := time.Now()
	_, err := sandbox.Start(context.Background(), sandbox.Options{Dir: dir, BinDir: bin, ReadyTimeout: time.Second})
	var ce *sandbox.ComponentError
	if !errors.As(err, &ce) || ce.Component != "etcd" || !strings.Contains(err.Error(), "not ready after 1s") ||
		!strings.Contains(err.Error(), "waiting for peers") {
		t.Fatalf("got %v, want etcd not ready with its log", err)
	}
	if time.Since(t0) > 20*time.Second {
		t.Errorf("failed start took %s", time.Since(t0))
	}
	// The failed start stopped what it started and removed its record.
	if _, err := os.Stat(filepath.Join(dir, "sandbox.json")); !os.IsNotExist(err) {
		t.Errorf("state file left after failed start: %v", err)
	}
	if out, _ := exec("pgrep", "-f", bin); out != "" {
		t.Errorf("processes of the failed start still running: %s", out)
	}
}

func TestCancelDuringStartStopsWhatStarted(t *testing.T) {
	t.Parallel()
	bin := fakeBinDir(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := sandbox.Start(ctx, sandbox.Options{Dir: t.TempDir(), BinDir: bin})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("got %v, want an interrupted start", err)
	}
	if out, _ := exec("pgrep", "-f", bin); out != "" {
		t.Errorf("processes of the interrupted start still running: %s", out)
	}
}

func TestEnvScriptQuotesAndOrders(t *testing.T) {
	t.Parallel()
	st := sandbox.State{Dir: "/tmp/it's here", BinDir: "/b", Kubeconfig: "/tmp/it's here/kubeconfig",
		EtcdEndpoints: []string{"http://127.0.0.1:1", "http://127.0.0.1:2"},
		S3:            &sandbox.S3{URL: "http://127.0.0.1:3", Region: "us-east-1", Bucket: "velero", AccessKey: "a", SecretKey: "s"}}
	got := st.EnvScript()
	for _, want := range []string{
		`export KUBECONFIG='/tmp/it'\''s here/kubeconfig'`,
		`export FIREDRILL_ETCD_ENDPOINTS='http://127.0.0.1:1,http://127.0.0.1:2'`,
		`export FIREDRILL_S3_URL='http://127.0.0.1:3'`,
		`export PATH='/b':"$PATH"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("env script lacks %s:\n%s", want, got)
		}
	}
}

// TestComponentsMatchPinnedModules keeps the version table that `firedrill version` prints in step
// with what hack/tools really builds.
func TestComponentsMatchPinnedModules(t *testing.T) {
	t.Parallel()
	var gomods strings.Builder
	files, _ := filepath.Glob("../hack/tools/*/go.mod")
	if len(files) < 3 {
		t.Fatalf("found %d hack/tools modules", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		gomods.Write(b)
	}
	for _, c := range sandbox.Components {
		re := regexp.MustCompile(`(?m)^\s*(require\s+)?` + regexp.QuoteMeta(c.Module) + `\s+` + regexp.QuoteMeta(c.Version) + `\b`)
		if !re.MatchString(gomods.String()) {
			t.Errorf("%s: %s %s is not what hack/tools pins", c.Name, c.Module, c.Version)
		}
	}
}

func exec(name string, args ...string) (string, error) {
	out, err := osexec.Command(name, args...).Output()
	return strings.TrimSpace(string(out)), err
}

// A machine that cannot run the real node is told why, with what to do; Start refuses it.
func TestRealNodeNeedsItsBinariesAndSaysSo(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	err := sandbox.CanRunRealNode(bin)
	if err == nil {
		t.Fatal("an empty bin dir can run a real node")
	}
	for _, want := range []string{"cannot run the sandbox's real node", "kubelet", "containerd", "cni/bridge", "make sandbox-bin", "pause.tar"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	_, err = sandbox.Start(context.Background(), sandbox.Options{Dir: t.TempDir(), BinDir: bin, RealNode: true})
	if err == nil || !strings.Contains(err.Error(), "cannot run the sandbox's real node") {
		t.Errorf("Start: %v", err)
	}
	if _, err := sandbox.Start(context.Background(), sandbox.Options{Dir: t.TempDir(), BinDir: bin, NetworkPolicy: true}); err == nil {
		t.Error("NetworkPolicy without RealNode was accepted")
	}
}
