package etcd_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

func median(xs []float64) float64 { sort.Float64s(xs); return xs[len(xs)/2] }

func BenchmarkZZAlternate(b *testing.B) {
	endpoints := benchEtcd(b)
	dir := b.TempDir()
	p := filepath.Join(dir, "x.db")
	snapPath := filepath.Join(dir, "keep.db")
	s, err := etcd.Take(context.Background(), etcd.TakeOptions{Endpoints: endpoints, Path: snapPath})
	if err != nil {
		b.Fatal(err)
	}
	m := map[string][]float64{}
	timeit := func(name string, fn func()) { t0 := time.Now(); fn(); m[name] = append(m[name], time.Since(t0).Seconds()) }
	run := func(args ...string) {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			b.Fatal(err, string(out))
		}
	}
	dd := filepath.Join(dir, "data")
	for i := 0; i < 7; i++ {
		timeit("take", func() {
			if _, err := etcd.Take(context.Background(), etcd.TakeOptions{Endpoints: endpoints, Path: p}); err != nil {
				b.Fatal(err)
			}
		})
		os.Remove(p)
		timeit("etcdctl-save", func() { run("/work/main/bin/etcdctl", "--endpoints", endpoints[0], "snapshot", "save", p) })
		os.Remove(p)
		timeit("restore", func() {
			if err := etcd.Restore(context.Background(), etcd.RestoreOptions{SnapshotPath: snapPath, DataDir: dd, BumpRevision: 1e9, MarkCompacted: true}); err != nil {
				b.Fatal(err)
			}
		})
		os.RemoveAll(dd)
		timeit("inspect+restore-inspected", func() {
			if _, err := etcd.Inspect(snapPath); err != nil {
				b.Fatal(err)
			}
			if err := etcd.Restore(context.Background(), etcd.RestoreOptions{SnapshotPath: snapPath, DataDir: dd, BumpRevision: 1e9, MarkCompacted: true, Inspected: true}); err != nil {
				b.Fatal(err)
			}
		})
		os.RemoveAll(dd)
		timeit("etcdutl-restore", func() {
			run("/work/main/bin/etcdutl", "snapshot", "restore", snapPath, "--data-dir", dd, "--bump-revision", "1000000000", "--mark-compacted")
		})
		os.RemoveAll(dd)
		timeit("inspect", func() {
			if _, err := etcd.Inspect(snapPath); err != nil {
				b.Fatal(err)
			}
		})
		timeit("etcdutl-status", func() { run("/work/main/bin/etcdutl", "snapshot", "status", snapPath) })
	}
	for k, v := range m {
		b.ReportMetric(median(v), k+"-s")
	}
	b.ReportMetric(float64(s.SizeBytes)/(1<<20), "snapshot-MiB")
}
