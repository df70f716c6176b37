package etcddrill_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/drilltest"
	"github.com/firedrill-dev/firedrill/drill/etcddrill"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

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

func runDrill(t *testing.T, ctx context.Context, sc *scenarios.Scenario, sb *sandbox.Sandbox, p drill.Progress) (*drill.Record, string) {
	t.Helper()
	work := t.TempDir()
	rec, err := (&drill.Runner{Progress: p, WorkRoot: work}).Run(ctx, sc, etcddrill.New(etcddrill.Options{BinDir: sb.BinDir()}))
	if err != nil {
		t.Fatal(err)
	}
	return rec, work
}

func assertNothingLeft(t *testing.T, work string) {
	t.Helper()
	if entries, _ := os.ReadDir(work); len(entries) > 0 {
		t.Errorf("work root not empty after the run: %v", entries)
	}
	// The scratch kube-apiserver runs with its files under the work dir: none may survive.
	if procs := testkit.ProcessesUnder(work); len(procs) > 0 {
		t.Errorf("processes still running: %v", procs)
	}
}

// takeScenario snapshots the sandbox's etcd, restores it behind a scratch kube-apiserver and runs
// every etcd check on namespace ns.
func takeScenario(sb *sandbox.Sandbox, ns string) string {
	return fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
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
`, ns, sb.EtcdEndpoints()[0], filepath.Join(sb.BinDir(), "kube-apiserver"), ns, ns)
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

// flipped is a real snapshot with one byte changed in the middle.
func flipped(t *testing.T, sb *sandbox.Sandbox) []byte {
	t.Helper()
	data, err := os.ReadFile(snapshotFile(t, sb, t.TempDir(), "good.db"))
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	return data
}

// The driver contract (drill/drilltest) on the real sandbox.
func TestEtcdDriverContract(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{})
	live, err := etcd.NewClient(sb.EtcdEndpoints(), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	drilltest.Run(t, drilltest.Harness{
		Driver: etcddrill.New(etcddrill.Options{BinDir: sb.BinDir()}),
		Good: func(t *testing.T) *scenarios.Scenario {
			return testkit.WriteScenario(t, takeScenario(sb, seedNamespace(t, sb)))
		},
		Corrupt: func(t *testing.T) *scenarios.Scenario {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "etcd.db"), flipped(t, sb), 0o644); err != nil {
				t.Fatal(err)
			}
			return testkit.WriteScenario(t, latestFromScenario("corrupt", dir))
		},
		Unreachable: func(t *testing.T) *scenarios.Scenario {
			return testkit.WriteScenario(t, `apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: unreachable}
spec:
  backup:
    etcd:
      take: {endpoints: [http://127.0.0.1:1, http://127.0.0.1:2], dialTimeout: 1s}
  restore: {scratchEtcd: {}}
  checks: [{etcdIntegrity: {}}]
`)
		},
		Leftovers: func(t *testing.T, rec *drill.Record) []string {
			// The canary key is removed from the live etcd at cleanup.
			r, err := live.Get(context.Background(), scenarios.CanaryKeyPrefix+rec.Scenario)
			if err != nil {
				t.Fatal(err)
			}
			if r.Count != 0 {
				return []string{"canary key " + scenarios.CanaryKeyPrefix + rec.Scenario + " in the live etcd"}
			}
			return nil
		},
		AssertGood: func(t *testing.T, rec *drill.Record) {
			if len(rec.Checks) != 6 {
				t.Fatalf("%d checks recorded", len(rec.Checks))
			}
			b := rec.Backup
			if b.Kind != "etcd-snapshot" || b.Source != "take" || b.Endpoint != sb.EtcdEndpoints()[0] || len(b.SHA256) != 64 || b.SizeBytes == 0 || b.CreatedAt == nil {
				t.Errorf("backup record %+v", b)
			}
			if *rec.RPOSeconds > 60 || len(rec.Objectives) != 2 || !rec.Objectives[0].Met || !rec.Objectives[1].Met {
				t.Errorf("RPO %v objectives %+v", *rec.RPOSeconds, rec.Objectives)
			}
			if strings.Contains(fmt.Sprintf("%+v", rec), "hunter2-do-not-leak") {
				t.Error("the record contains a secret value")
			}
		},
		AssertUnreachable: func(t *testing.T, rec *drill.Record) {
			if !strings.Contains(rec.Message, "http://127.0.0.1:1") || !strings.Contains(rec.Message, "http://127.0.0.1:2") {
				t.Errorf("message %q does not name both endpoints", rec.Message)
			}
		},
	})
}

// Every way a snapshot file can be bad fails the drill at its integrity check.
func TestEtcdDrillBadSnapshotsFail(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{})
	good, err := os.ReadFile(snapshotFile(t, sb, t.TempDir(), "good.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		content []byte
		want    string
	}{
		{"flipped-byte", flipped(t, sb), "snapshot integrity check failed: the SHA-256"},
		{"truncated", good[:len(good)/3], "snapshot integrity check failed"},
		{"empty", nil, "snapshot integrity check failed"},
		{"not-a-snapshot", []byte("this is a text file, not an etcd snapshot\n"), "snapshot integrity check failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "etcd.db"), tc.content, 0o644); err != nil {
				t.Fatal(err)
			}
			rec, work := runDrill(t, context.Background(), testkit.WriteScenario(t, latestFromScenario("bad-"+tc.name, dir)), sb, drill.NopProgress{})
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

// An interrupt while the scratch kube-apiserver starts, the longest part of the restore, leaves
// no process behind.
func TestEtcdDrillInterruptedDuringRestoreLeavesNothing(t *testing.T) {
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{})
	dir := t.TempDir()
	snapshotFile(t, sb, dir, "etcd.db")
	sc := testkit.WriteScenario(t, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
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
	p := &testkit.Notes{On: func(s string) {
		if strings.HasPrefix(s, "scratch etcd serving") {
			time.AfterFunc(300*time.Millisecond, cancel)
		}
	}}
	rec, work := runDrill(t, ctx, sc, sb, p)
	if rec.Result != drill.Aborted {
		t.Fatalf("result %s %q, want aborted; notes %v", rec.Result, rec.Message, p.Lines())
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal("context not cancelled")
	}
	assertNothingLeft(t, work)
}

// A latestFrom directory that is a file says so, rather than "is not readable: <nil>".
func TestEtcdDrillSnapshotDirIsAFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "etcd.db")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	sc := testkit.WriteScenario(t, latestFromScenario("dir-is-file", file))
	rec, err := (&drill.Runner{WorkRoot: t.TempDir()}).Run(context.Background(), sc, etcddrill.New(etcddrill.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	want := "snapshot directory " + file + " is not a directory"
	if rec.Result != drill.Error || !strings.Contains(rec.Message, want) || strings.Contains(rec.Message, "<nil>") {
		t.Fatalf("result %s %q, want an error saying %q", rec.Result, rec.Message, want)
	}
}
