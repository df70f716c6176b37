package etcd

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"
)

func TestZZTake(t *testing.T) {
	ep := os.Getenv("ZZ_EP")
	if ep == "" {
		t.Skip()
	}
	path := filepath.Join("/tmp/fdperf", "zz-take.db")
	defer os.Remove(path)
	var peak uint64
	var ms runtime.MemStats
	dumped := false
	t0 := time.Now()
	snap, err := Take(context.Background(), TakeOptions{Endpoints: []string{ep}, Path: path, Progress: func(n int64) {
		if n%(64<<20) < 256<<10 {
			runtime.ReadMemStats(&ms)
			t.Logf("%5d MiB: inuse %2d idle %2d released %2d sys %2d MiB gc %d", n>>20, ms.HeapInuse>>20, ms.HeapIdle>>20, ms.HeapReleased>>20, ms.Sys>>20, ms.NumGC)
			if ms.HeapInuse > peak {
				peak = ms.HeapInuse
			}
			if n > 600<<20 && !dumped {
				dumped = true
				f, _ := os.Create("/tmp/fdperf/heap.prof")
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
				t.Logf("at %d MiB: heapInuse %d MiB heapSys %d MiB stacks %d MiB sys %d MiB numGC %d", n>>20, ms.HeapInuse>>20, ms.HeapSys>>20, ms.StackSys>>20, ms.Sys>>20, ms.NumGC)
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v, %d bytes, rev %d, peak heap in use %d MiB", time.Since(t0), snap.SizeBytes, snap.Revision, peak>>20)
}
