package etcd_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime/metrics"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// benchMB is how much the benchmarks put into the sandbox's etcd; the lead's side-by-side script
// against etcdctl/etcdutl uses 1 GiB and more.
const benchMB = 256

// benchEtcd returns the sandbox's endpoints once its etcd holds benchMB of values under
// /firedrill-bench/ (written on first use).
func benchEtcd(b *testing.B) []string {
	sb, cli := sandboxEtcd(b)
	resp, err := cli.Get(context.Background(), "/firedrill-bench/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		b.Fatal(err)
	}
	if resp.Count == 0 {
		fill(b, cli, "/firedrill-bench/", benchMB)
	}
	return sb.EtcdEndpoints()
}

// BenchmarkTake streams a snapshot of the sandbox's etcd to disk; bytes/op is the snapshot's size.
// B/op counts gRPC's short-lived message buffers; peak-heap-MB, sampled while the bytes stream,
// shows that memory does not grow with the snapshot.
func BenchmarkTake(b *testing.B) {
	endpoints := benchEtcd(b)
	dir := b.TempDir()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	progress := func(n int64) {
		if n%(8<<20) < 32<<10 { // about every 8 MiB
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		path := filepath.Join(dir, "bench.db")
		snap, err := etcd.Take(context.Background(), etcd.TakeOptions{Endpoints: endpoints, Path: path, Progress: progress})
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			b.SetBytes(snap.SizeBytes)
		}
		os.Remove(path)
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
}

// BenchmarkRestore restores that snapshot into a fresh data directory with a revision bump, as
// `etcdutl snapshot restore --bump-revision --mark-compacted` does: "verify" inspects the file
// first (hash, structure, every key decoded), "inspected" is the drill's case, where Inspect has
// just done that.
func BenchmarkRestore(b *testing.B) {
	endpoints := benchEtcd(b)
	dir := b.TempDir()
	snap, err := etcd.Take(context.Background(), etcd.TakeOptions{Endpoints: endpoints, Path: filepath.Join(dir, "bench.db")})
	if err != nil {
		b.Fatal(err)
	}
	for _, inspected := range []bool{false, true} {
		name := "verify"
		if inspected {
			name = "inspected"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(snap.SizeBytes)
			b.ReportAllocs()
			for b.Loop() {
				dataDir := filepath.Join(dir, "data")
				err := etcd.Restore(context.Background(), etcd.RestoreOptions{
					SnapshotPath: snap.Path, DataDir: dataDir, BumpRevision: 1e9, MarkCompacted: true, Inspected: inspected,
				})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(dataDir)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkInspect hashes the snapshot, checks its structure and has etcdutl's status read every
// key, as the etcdIntegrity check does.
func BenchmarkInspect(b *testing.B) {
	endpoints := benchEtcd(b)
	path := filepath.Join(b.TempDir(), "bench.db")
	snap, err := etcd.Take(context.Background(), etcd.TakeOptions{Endpoints: endpoints, Path: path})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(snap.SizeBytes)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if r, err := etcd.Inspect(path); err != nil || r.Err() != nil {
			b.Fatal(err, r.Err())
		}
	}
}
