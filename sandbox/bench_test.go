package sandbox_test

import (
	"context"
	"testing"

	"github.com/firedrill-dev/firedrill/sandbox"
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
