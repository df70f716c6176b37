package sandboxtest

import (
	"context"
	"net"
	"testing"
	"time"
)

// realNodeLock serialises real-node sandboxes across the test binaries `go test ./...` runs in
// parallel: the machine has one real node, and a second Start would be refused. It is an abstract
// unix socket: held while bound, released when closed or when its process dies, and it leaves no
// file on the host.
const realNodeLock = "@firedrill-real-node-tests"

// LockRealNode waits until no other test binary uses the machine's real node and holds it for t
// (released when t ends). Start and Shared take it themselves; a test that starts a real node
// another way (through the CLI) calls it first.
func LockRealNode(t testing.TB) {
	t.Helper()
	unlock, err := lockRealNode(context.Background(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
}

func lockRealNode(ctx context.Context, logf func(string, ...any)) (func(), error) {
	t0, said := time.Now(), false
	for {
		l, err := net.Listen("unix", realNodeLock)
		if err == nil {
			return func() { l.Close() }, nil
		}
		if !said && time.Since(t0) > 2*time.Second {
			logf("waiting for another test binary's real node to stop (%v)", err)
			said = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
