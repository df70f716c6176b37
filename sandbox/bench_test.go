package sandbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

// BenchmarkStartStop measures how long a test waits for a sandbox, with and without Velero.
func BenchmarkStartStop(b *testing.B) {
	for _, velero := range []bool{false, true} {
		name := "core"
		if velero {
			name = "velero"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				sb, err := sandbox.Start(context.Background(), sandbox.Options{Dir: b.TempDir(), Velero: velero})
				if err != nil {
					b.Fatal(err)
				}
				if err := sb.Stop(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRealNodeStart compares how long `sandbox up --real-node` takes to a Ready node with
// the kwok-only sandbox, in the same run: the ratio is the number to watch (goal: at most 2).
func BenchmarkRealNodeStart(b *testing.B) {
	sandboxtest.LockRealNode(b)
	var kwok, real time.Duration
	for b.Loop() {
		for _, realNode := range []bool{false, true} {
			t0 := time.Now()
			sb, err := sandbox.Start(context.Background(), sandbox.Options{Dir: b.TempDir(), RealNode: realNode})
			if err != nil {
				b.Fatal(err)
			}
			if realNode {
				real += time.Since(t0)
			} else {
				kwok += time.Since(t0)
			}
			if err := sb.Stop(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(kwok.Seconds()/float64(b.N), "s-kwok/op")
	b.ReportMetric(real.Seconds()/float64(b.N), "s-realnode/op")
	b.ReportMetric(real.Seconds()/kwok.Seconds(), "realnode/kwok")
}
