package etcd_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

func TestZZProf(t *testing.T) {
	file := os.Getenv("ZZ_SNAP")
	if file == "" {
		t.Skip()
	}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		t0 := time.Now()
		rep, err := etcd.Verify(ctx, file)
		if err != nil || rep.Err() != nil {
			t.Fatal(err, rep.Err())
		}
		t1 := time.Now()
		dir := filepath.Join(filepath.Dir(file), "zzdir")
		if err := etcd.Restore(ctx, etcd.RestoreOptions{SnapshotPath: file, DataDir: dir, BumpRevision: 1e9, MarkCompacted: true, Inspected: true}); err != nil {
			t.Fatal(err)
		}
		t2 := time.Now()
		os.RemoveAll(dir)
		t.Logf("verify %v restore %v", t1.Sub(t0), t2.Sub(t1))
	}
}
