package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// BenchmarkObjectsMatch compares FIREDRILL_BENCH_OBJECTS (default 10000) ConfigMaps of a backup
// with their restored copies in another namespace of the sandbox, against what a person would do
// with kubectl: `kubectl get configmaps -o json` of both namespaces (run side by side), the
// outputs normalised (the same metadata left out, as JSON lines sorted by name) and `diff`. The
// peer's normalisation is done in Go, which is faster than jq: the peer gets the better of it.
//
// The check reads the backup's side from memory, as the drill hands it the backup's contents, and
// lists the restored side; the peer lists both, since a person has no other way to the backup.
// x-kubectl-wall is firedrill's time over the peer's (target: below 1). The objects are created
// once per run, through a client with a high rate limit.
func BenchmarkObjectsMatch(b *testing.B) {
	if testing.Short() {
		b.Skip("creates many objects in the sandbox")
	}
	kubectl, err := sandbox.LookupBinary("kubectl", "", "kubectl")
	if err != nil {
		b.Fatalf("the peer needs kubectl (make sandbox-bin builds it into bin/): %v", err)
	}
	diffBin, err := exec.LookPath("diff")
	if err != nil {
		b.Fatalf("the peer needs diff: %v", err)
	}
	n := benchEnv(b, "FIREDRILL_BENCH_OBJECTS", 10_000)
	dir := b.TempDir()
	needDisk(b, dir, int64(n)*8<<10)
	sb := veleroSandbox(b)
	cfg := fastConfig(sb)
	cs := kubernetes.NewForConfigOrDie(cfg)
	src, dst := newNamespace(b, cs, "bsrc"), newNamespace(b, cs, "bdst")
	t0 := time.Now()
	fillNamespaces(b, cs, n, src, dst)
	b.Logf("created %d ConfigMaps in each of %s and %s in %s", n, src, dst, time.Since(t0).Round(time.Second))
	items := backupItems(b, cfg, src)
	target := &VeleroTarget{Cluster: newTestCluster(b, sb.RESTConfig()), NamespaceMapping: map[string]string{src: dst}, Items: items}
	check, err := NewObjectsMatchCheck("", scenarios.ObjectsMatchCheck{Resources: []string{"configmaps"}})
	must(b, err)

	var peer time.Duration
	for b.Loop() {
		b.StopTimer()
		t0 := time.Now()
		peerDiff(b, kubectl, diffBin, sb.Kubeconfig(), dir, src, dst)
		peer += time.Since(t0)
		b.StartTimer()
		o := check.Run(context.Background(), target)
		if o.Status != StatusPassed || o.Evidence["equal"] != n {
			b.Fatalf("%s: %s (%v)", o.Status, o.Message, o.Evidence["equal"])
		}
	}
	iters := float64(b.N)
	b.ReportMetric(peer.Seconds()/iters, "kubectl-s/op")
	b.ReportMetric(b.Elapsed().Seconds()/peer.Seconds(), "x-kubectl-wall")
	b.ReportMetric(float64(n)*iters/b.Elapsed().Seconds(), "objects/s")
}

// fillNamespaces creates n ConfigMaps in src and the same in dst, labelled as Velero labels what
// it restores, many at a time.
func fillNamespaces(b *testing.B, cs kubernetes.Interface, n int, src, dst string) {
	b.Helper()
	ctx := context.Background()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range n {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%05d", i), Labels: map[string]string{"app": "shop", "tier": "backend"}},
			Data: map[string]string{
				"currency": "EUR", "region": "eu-west-1", "feature.checkout": "on",
				"settings.json": fmt.Sprintf(`{"id":%d,"retries":3,"timeout":"30s","endpoints":["https://api.example.com/v1","https://api.example.com/v2"],"owner":"team-shop"}`, i),
				"notes":         strings.Repeat("x", 200),
			},
		}
		for _, ns := range []string{src, dst} {
			g.Go(func() error {
				c := cm.DeepCopy()
				if ns == dst {
					c.Labels["velero.io/backup-name"], c.Labels["velero.io/restore-name"] = "b", "r"
				}
				_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, c, metav1.CreateOptions{})
				return create(c, err)
			})
		}
	}
	must(b, g.Wait())
}

// peerDiff is the peer: kubectl get of both namespaces, normalised, and diff, which must find
// them equal.
func peerDiff(b *testing.B, kubectl, diffBin, kubeconfig, dir, src, dst string) {
	b.Helper()
	files := map[string]string{}
	var mu sync.Mutex
	var g errgroup.Group
	for _, ns := range []string{src, dst} {
		g.Go(func() error {
			out, err := exec.Command(kubectl, "--kubeconfig", kubeconfig, "get", "configmaps", "-n", ns, "-o", "json").Output()
			if err != nil {
				return fmt.Errorf("kubectl get configmaps -n %s: %w", ns, err)
			}
			norm, err := normaliseList(out)
			if err != nil {
				return err
			}
			f := filepath.Join(dir, ns+".jsonl")
			mu.Lock()
			files[ns] = f
			mu.Unlock()
			return os.WriteFile(f, norm, 0o600)
		})
	}
	must(b, g.Wait())
	if out, err := exec.Command(diffBin, files[src], files[dst]).CombinedOutput(); err != nil {
		b.Fatalf("diff of the normalised outputs: %v\n%.2000s", err, out)
	}
}

// normaliseList leaves out of a kubectl list what legitimately differs between the namespaces and
// writes one object per line, sorted by name.
func normaliseList(data []byte) ([]byte, error) {
	var l struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, err
	}
	var lines [][]byte
	for _, it := range l.Items {
		u := unstructured.Unstructured{Object: it}
		for _, f := range []string{"uid", "resourceVersion", "creationTimestamp", "managedFields", "namespace"} {
			unstructured.RemoveNestedField(u.Object, "metadata", f)
		}
		labels := u.GetLabels()
		for k := range labels {
			if strings.HasPrefix(k, "velero.io/") {
				delete(labels, k)
			}
		}
		u.SetLabels(labels)
		line, err := json.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		lines = append(lines, line)
	}
	slices.SortFunc(lines, bytes.Compare)
	return append(bytes.Join(lines, []byte("\n")), '\n'), nil
}
