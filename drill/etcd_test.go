package drill_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

// writeScenario writes YAML to a file and loads it the way `firedrill run` does.
func writeScenario(t *testing.T, yaml string) *scenarios.Scenario {
	t.Helper()
	path := filepath.Join(t.TempDir(), "drill.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	sc, err := scenarios.Load(path)
	if err != nil {
		t.Fatalf("scenario does not load:\n%v\n%s", err, yaml)
	}
	return sc
}

func seedNamespace(t *testing.T, sb *sandbox.Sandbox) string {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(sb.RESTConfig())
	ctx := context.Background()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "shop-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := cs.CoreV1().ConfigMaps(ns.Name).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i)}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().Secrets(ns.Name).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, StringData: map[string]string{"password": "hunter2-do-not-leak"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// notes records progress notes, so a test can act at a precise moment of a run.
type notes struct {
	mu    sync.Mutex
	lines []string
	on    func(string)
}

func (n *notes) Step(s string)      { n.Note("step " + s) }
func (n *notes) Bytes(int64, int64) {}
func (n *notes) Note(s string) {
	n.mu.Lock()
	n.lines = append(n.lines, s)
	on := n.on
	n.mu.Unlock()
	if on != nil {
		on(s)
	}
}

func runDrill(t *testing.T, ctx context.Context, sc *scenarios.Scenario, sb *sandbox.Sandbox, p drill.Progress) (*drill.Record, string) {
	t.Helper()
	d, err := drill.NewEtcdDriver(sc, drill.EtcdOptions{BinDir: sb.BinDir()})
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	rec, err := (&drill.Runner{Progress: p, WorkRoot: work}).Run(ctx, sc, d)
	if err != nil {
		t.Fatal(err)
	}
	return rec, work
}

func assertNothingLeft(t *testing.T, work string) {
	t.Helper()
	entries, _ := os.ReadDir(work)
	if len(entries) > 0 {
		t.Errorf("work root not empty after the run: %v", entries)
	}
	// The scratch kube-apiserver runs with its files under the work dir: none may survive.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), work) {
			t.Errorf("process %s still running: %s", p, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

func TestEtcdDrillTakePasses(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{})
	ns := seedNamespace(t, sb)
	sc := writeScenario(t, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: take-%s}
spec:
  objectives: {rto: 10m, rpo: 1h}
  backup:
    etcd:
      take: {endpoints: [http://127.0.0.1:1, %s]}
  restore:
    scratchEtcd:
      apiServer: {binary: %s}
  checks:
    - {name: snapshot integrity, etcdIntegrity: {}}
    - {name: every object decodes, etcdObjectsDecode: {}}
    - {name: namespaces present, etcdKeys: {prefix: /registry/namespaces/, min: 4}}
    - {name: configmaps match live, etcdMatchesLive: {prefixes: [/registry/configmaps/%s/]}}
    - {name: api serves objects, objectsServed: {namespaces: [%s]}}
    - {name: data is fresh, canary: {}}
`, ns, sb.EtcdEndpoints()[0], filepath.Join(sb.BinDir(), "kube-apiserver"), ns, ns))
	rec, work := runDrill(t, context.Background(), sc, sb, drill.NopProgress{})
	if rec.Result != drill.Passed {
		t.Fatalf("result %s: %s\nchecks: %+v\nsteps: %+v", rec.Result, rec.Message, rec.Checks, rec.Steps)
	}
	if len(rec.Checks) != 6 {
		t.Fatalf("%d checks recorded", len(rec.Checks))
	}
	for _, c := range rec.Checks {
		if c.Result != drill.Passed || len(c.Evidence) == 0 {
			t.Errorf("check %s: %s %q evidence %v", c.Name, c.Result, c.Message, c.Evidence)
		}
	}
	b := rec.Backup
	if b.Kind != "etcd-snapshot" || b.Source != "take" || b.Endpoint != sb.EtcdEndpoints()[0] || len(b.SHA256) != 64 || b.SizeBytes == 0 || b.CreatedAt == nil {
		t.Errorf("backup record %+v", b)
	}
	if rec.RTOSeconds == nil || rec.RPOSeconds == nil || *rec.RPOSeconds > 60 || len(rec.Objectives) != 2 || !rec.Objectives[0].Met || !rec.Objectives[1].Met {
		t.Errorf("RTO %v RPO %v objectives %+v", rec.RTOSeconds, rec.RPOSeconds, rec.Objectives)
	}
	assertNothingLeft(t, work)
	// The canary key is removed from the live etcd at cleanup.
	c, err := etcd.NewClient(sb.EtcdEndpoints(), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r, err := c.Get(context.Background(), "/firedrill/canary/take-"+ns); err != nil || r.Count != 0 {
		t.Errorf("canary key left in the live etcd: %v %v", r, err)
	}
	// No secret value in the record.
	if strings.Contains(fmt.Sprintf("%+v", rec), "hunter2-do-not-leak") {
		t.Error("the record contains a secret value")
	}
}

// snapshotFile takes a real snapshot of the sandbox into dir.
func snapshotFile(t *testing.T, sb *sandbox.Sandbox, dir, name string) string {
	t.Helper()
	s, err := etcd.Take(context.Background(), etcd.TakeOptions{Endpoints: sb.EtcdEndpoints(), Path: filepath.Join(dir, name)})
	if err != nil {
		t.Fatal(err)
	}
	return s.Path
}

func latestFromScenario(name, dir string) string {
	return fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: %s}
spec:
  backup:
    etcd:
      latestFrom: {dir: %s}
  restore:
    scratchEtcd: {}
  checks:
    - {name: snapshot integrity, etcdIntegrity: {}}
    - {name: every object decodes, etcdObjectsDecode: {}}
`, name, dir)
}

func TestEtcdDrillBadSnapshotsFail(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{})
	good := snapshotFile(t, sb, t.TempDir(), "good.db")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 0x40
	for _, tc := range []struct {
		name    string
		content []byte
		want    string
	}{
		{"flipped-byte", flipped, "snapshot integrity check failed: the SHA-256"},
		{"truncated", data[:len(data)/3], "snapshot integrity check failed"},
		{"empty", nil, "snapshot integrity check failed"},
		{"not-a-snapshot", []byte("this is a text file, not an etcd snapshot\n"), "snapshot integrity check failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "etcd.db"), tc.content, 0o644); err != nil {
				t.Fatal(err)
			}
			rec, work := runDrill(t, context.Background(), writeScenario(t, latestFromScenario("bad-"+tc.name, dir)), sb, drill.NopProgress{})
			if rec.Result != drill.Failed || !strings.Contains(rec.Message, tc.want) {
				t.Fatalf("result %s %q, want failed with %q", rec.Result, rec.Message, tc.want)
			}
			if rec.Checks[0].Type != scenarios.CheckEtcdIntegrity || rec.Checks[0].Result != drill.Failed {
				t.Errorf("integrity check %+v", rec.Checks[0])
			}
			if rec.Checks[1].Result != drill.Skipped {
				t.Errorf("decode check %+v, want skipped", rec.Checks[1])
			}
			if rec.RTOSeconds != nil {
				t.Errorf("RTO measured for a failed drill: %v", *rec.RTOSeconds)
			}
			assertNothingLeft(t, work)
		})
	}
}

func TestEtcdDrillUnreachableIsAnError(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{})
	sc := writeScenario(t, `apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: unreachable}
spec:
  backup:
    etcd:
      take: {endpoints: [http://127.0.0.1:1, http://127.0.0.1:2], dialTimeout: 1s}
  restore: {scratchEtcd: {}}
  checks: [{etcdIntegrity: {}}]
`)
	rec, work := runDrill(t, context.Background(), sc, sb, drill.NopProgress{})
	if rec.Result != drill.Error || !strings.Contains(rec.Message, "http://127.0.0.1:1") || !strings.Contains(rec.Message, "http://127.0.0.1:2") {
		t.Fatalf("result %s %q, want error naming both endpoints", rec.Result, rec.Message)
	}
	assertNothingLeft(t, work)
}

func TestEtcdDrillInterruptedDuringRestoreLeavesNothing(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{})
	dir := t.TempDir()
	snapshotFile(t, sb, dir, "etcd.db")
	sc := writeScenario(t, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: interrupted}
spec:
  backup:
    etcd:
      latestFrom: {dir: %s}
  restore:
    scratchEtcd:
      apiServer: {binary: %s}
  checks: [{objectsServed: {}}]
`, dir, filepath.Join(sb.BinDir(), "kube-apiserver")))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Interrupt while the scratch kube-apiserver is starting, the longest part of the restore.
	p := &notes{on: func(s string) {
		if strings.HasPrefix(s, "scratch etcd serving") {
			time.AfterFunc(300*time.Millisecond, cancel)
		}
	}}
	rec, work := runDrill(t, ctx, sc, sb, p)
	if rec.Result != drill.Aborted {
		t.Fatalf("result %s %q, want aborted; notes %v", rec.Result, rec.Message, p.lines)
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal("context not cancelled")
	}
	assertNothingLeft(t, work)
}
