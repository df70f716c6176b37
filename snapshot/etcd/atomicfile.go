package etcd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// partSuffix ends the names of files still being written, here and by etcdctl (NAME.part).
const partSuffix = ".part"

// isPartial reports whether a directory entry is a file still being written or a hidden file, which
// no "latest snapshot" search may pick.
func isPartial(name string) bool {
	return strings.HasSuffix(name, partSuffix) || strings.HasSuffix(name, ".tmp") || strings.HasPrefix(name, ".")
}

// atomicFile is written under a temporary name next to its final path and appears there only
// when commit succeeds; abort (or a crash) leaves nothing under the final name.
type atomicFile struct {
	f       *os.File
	final   string
	done    bool
	size    int64 // bytes written
	started int64 // bytes whose write-out to disk has been started
}

// writebackEvery is how much is written before the kernel is asked to start putting it on disk
// (where the platform allows): the fsync at the end then finds little left to do, instead of a
// whole snapshot of dirty pages — which on a control-plane node would also stall etcd's own
// fsyncs behind it.
const writebackEvery = 8 << 20

func createAtomic(final string) (*atomicFile, error) {
	dir, base := filepath.Split(final)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*"+partSuffix) // mode 0600: snapshots hold Secrets
	if err != nil {
		return nil, fmt.Errorf("create temporary file next to %s: %w", final, err)
	}
	return &atomicFile{f: f, final: final}, nil
}

func (a *atomicFile) Write(p []byte) (int, error) {
	n, err := a.f.Write(p)
	a.size += int64(n)
	if a.size-a.started >= writebackEvery {
		startWriteback(a.f, a.started, a.size-a.started)
		a.started = a.size
	}
	return n, err
}

// commit makes the file durable under its final name: fsync the data, rename, fsync the directory
// so that the rename survives a power loss too.
func (a *atomicFile) commit() error {
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", a.f.Name(), err)
	}
	if err := a.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", a.f.Name(), err)
	}
	if err := os.Rename(a.f.Name(), a.final); err != nil {
		return fmt.Errorf("rename %s to %s: %w", a.f.Name(), a.final, err)
	}
	a.done = true
	if err := syncDir(filepath.Dir(a.final)); err != nil {
		os.Remove(a.final)
		return err
	}
	return nil
}

// abort removes the temporary file; after commit it does nothing.
func (a *atomicFile) abort() {
	if a.done {
		return
	}
	a.done = true
	a.f.Close()
	os.Remove(a.f.Name())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
