// Package sandboxtest starts sandboxes for tests. A test that needs one fails, never skips, when
// the component binaries are missing; under -short it is skipped.
package sandboxtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/firedrill-dev/firedrill/sandbox"
)

// Start starts a sandbox for t alone and stops it when t ends. Options.Dir defaults to a
// temporary directory of t. With Options.RealNode it first waits until no other test binary uses
// the machine's real node (a package's real-node tests use either Start or Shared, not both).
func Start(t testing.TB, opts sandbox.Options) *sandbox.Sandbox {
	t.Helper()
	skipShort(t)
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.RealNode {
		needRealNode(t, opts.BinDir)
		LockRealNode(t)
	}
	sb, err := sandbox.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sb.Stop(); err != nil {
			t.Errorf("stop sandbox: %v", err)
		}
	})
	return sb
}

var shared struct {
	sync.Mutex
	installed bool
	byKey     map[string]*entry
}

type entry struct {
	once   sync.Once
	sb     *sandbox.Sandbox
	err    error
	unlock func()
}

// Shared returns the test binary's sandbox for these options, starting it on first use, so that
// the tests of a package share one cluster. Tests that use it must leave alone what others rely
// on (work in namespaces of their own). It needs Main in the package's TestMain, which stops it.
func Shared(t testing.TB, opts sandbox.Options) *sandbox.Sandbox {
	t.Helper()
	skipShort(t)
	if opts.Dir != "" {
		t.Fatal("sandboxtest.Shared picks its own directory; use Start for a sandbox in a given Dir")
	}
	shared.Lock()
	if !shared.installed {
		shared.Unlock()
		t.Fatal("sandboxtest.Shared needs `func TestMain(m *testing.M) { sandboxtest.Main(m) }` in the package, which stops the shared sandbox")
	}
	if opts.VeleroStorage != nil {
		t.Fatal("sandboxtest.Shared starts its own S3 server; use Start for a sandbox on another's storage")
	}
	if opts.RealNode {
		needRealNode(t, opts.BinDir)
	}
	key := fmt.Sprintf("velero=%v nodes=%d readonly=%v realnode=%v netpol=%v", opts.Velero, opts.Nodes, opts.VeleroReadOnly, opts.RealNode, opts.NetworkPolicy)
	e := shared.byKey[key]
	if e == nil {
		e = &entry{}
		shared.byKey[key] = e
	}
	shared.Unlock()

	e.once.Do(func() {
		if opts.RealNode {
			// Held until Run stops the shared sandboxes.
			if e.unlock, e.err = lockRealNode(context.Background(), t.Logf); e.err != nil {
				return
			}
		}
		dir, err := os.MkdirTemp("", "firedrill-sandbox-")
		if err != nil {
			e.err = err
			return
		}
		opts.Dir = dir
		e.sb, e.err = sandbox.Start(context.Background(), opts)
		if e.err != nil {
			os.RemoveAll(dir)
		}
	})
	if e.err != nil {
		t.Fatal(e.err)
	}
	return e.sb
}

// Main runs the package's tests and then stops the shared sandboxes. Their directories, with every
// component's log, are kept when a test failed.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that has more to do after the tests: it returns the exit code.
func Run(m *testing.M) int {
	shared.Lock()
	shared.installed = true
	shared.byKey = map[string]*entry{}
	shared.Unlock()

	code := m.Run()

	shared.Lock()
	defer shared.Unlock()
	for _, e := range shared.byKey {
		if e.unlock != nil {
			defer e.unlock()
		}
		if e.sb == nil {
			continue
		}
		if err := e.sb.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "sandboxtest: stop shared sandbox: %v\n", err)
			code = 1
		}
		if code != 0 {
			fmt.Fprintf(os.Stderr, "sandboxtest: logs of the shared sandbox kept in %s/logs\n", e.sb.Dir())
		} else {
			os.RemoveAll(e.sb.Dir())
		}
	}
	return code
}

// needRealNode fails t, naming what is missing, when this machine cannot run a real node: a test
// that asks for one must not pass quietly without it.
func needRealNode(t testing.TB, binDir string) {
	t.Helper()
	if binDir == "" {
		binDir = sandbox.FindBinDir()
	}
	if err := sandbox.CanRunRealNode(binDir); err != nil {
		t.Fatal(err)
	}
}

func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the sandbox (real etcd, kube-apiserver, ...): skipped under -short")
	}
}
