package etcd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// RestoreOptions says which snapshot to restore where. The member settings default to what
// `etcdutl snapshot restore` uses, which suits a single-member scratch etcd; a real recovery of a
// cluster sets them to the production member's.
type RestoreOptions struct {
	SnapshotPath string
	// DataDir must not exist, or be an empty directory; anything else is refused and left
	// untouched. Missing parents are created (mode 0700). On failure or interruption everything
	// Restore created is removed again.
	DataDir string
	// Name is the member name, default "default". StartScratch must be given the same.
	Name string
	// PeerURLs the member advertises; default http://localhost:2380.
	PeerURLs []string
	// InitialCluster, default Name=PeerURLs; InitialClusterToken, default "etcd-cluster".
	InitialCluster      string
	InitialClusterToken string
	// BumpRevision is added to the latest revision, and MarkCompacted marks it compacted, so that
	// clients (watch caches of kube-apiserver) never see the revision go backwards. They go together,
	// as in etcdutl: one without the other is refused.
	BumpRevision  uint64
	MarkCompacted bool
	// SkipHashCheck accepts a file without the appended hash (a raw copy of member/snap/db): then
	// only bbolt's structure and the decoding of every key vouch for it. Unlike etcdutl's
	// --skip-hash-check it never accepts a hash that is present and wrong: that file is corrupt.
	SkipHashCheck bool
	// Inspected says the caller has just run Inspect on this file and it passed (Report.Err() nil,
	// or ErrNoHash with SkipHashCheck), so Restore does not read the file a second time to check
	// it; the bbolt header is still checked. Leave it false when the file may have changed since.
	Inspected bool
}

// Restore writes a new etcd data directory from a snapshot with etcdutl's library, after checking
// the file as Inspect does (etcd's appended SHA-256, bbolt's structure, every key and value
// decoded) unless opts.Inspected: etcd's library, and the embedded etcd of StartScratch after it,
// crash the process on a damaged database instead of failing.
//
// Errors wrap ErrCorrupt (not a snapshot, empty, truncated, hash mismatch, a database etcd's code
// cannot read) or ErrNoHash. When ctx ends the error wraps ctx.Err() and the data directory is
// gone; etcd's library itself cannot be interrupted, so during its part (a copy of the file and a
// few passes over the database) Restore waits for it to finish before removing what it wrote.
func Restore(ctx context.Context, opts RestoreOptions) (err error) {
	if opts.SnapshotPath == "" || opts.DataDir == "" {
		return errors.New("restore etcd snapshot: a snapshot path and a data directory are required")
	}
	if (opts.BumpRevision > 0) != opts.MarkCompacted {
		return errors.New("restore etcd snapshot: BumpRevision and MarkCompacted go together (as etcdutl's --bump-revision and --mark-compacted): set both or neither")
	}
	cfg := restoreConfig(opts)
	if err := checkDataDir(opts.DataDir); err != nil {
		return fmt.Errorf("restore etcd snapshot: %w", err)
	}
	if err := verifySnapshot(ctx, opts.SnapshotPath, opts.SkipHashCheck, opts.Inspected); err != nil {
		return fmt.Errorf("restore etcd snapshot: %w", err)
	}
	undo, err := createDataDir(opts.DataDir)
	if err != nil {
		return fmt.Errorf("restore etcd snapshot: %w", err)
	}
	defer func() {
		if err != nil {
			undo()
		}
	}()

	logs := newTailLog(20)
	done := make(chan error, 1)
	go func() {
		done <- guard(func() error { return snapshot.NewV3(logs.logger(zap.InfoLevel)).Restore(cfg) })
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		<-done // nothing may still write into the directory once it is removed
	}
	if ctx.Err() != nil {
		return fmt.Errorf("restore etcd snapshot %s: interrupted, %s removed: %w", opts.SnapshotPath, opts.DataDir, ctx.Err())
	}
	var crash *errCrashed
	if errors.As(err, &crash) {
		return fmt.Errorf("restore etcd snapshot: %w: %s: %s", ErrCorrupt, opts.SnapshotPath, redactData(crash.Error()+logs.suffix(3)))
	}
	if err != nil {
		return fmt.Errorf("restore etcd snapshot %s into %s: %w", opts.SnapshotPath, opts.DataDir, redactErr(err, logs.suffix(3)))
	}
	return nil
}

func restoreConfig(opts RestoreOptions) snapshot.RestoreConfig {
	name := opts.Name
	if name == "" {
		name = "default"
	}
	peers := opts.PeerURLs
	if len(peers) == 0 {
		peers = []string{"http://localhost:2380"}
	}
	cluster := opts.InitialCluster
	if cluster == "" {
		members := make([]string, len(peers))
		for i, p := range peers {
			members[i] = name + "=" + p
		}
		cluster = strings.Join(members, ",")
	}
	token := opts.InitialClusterToken
	if token == "" {
		token = "etcd-cluster"
	}
	return snapshot.RestoreConfig{
		SnapshotPath:        opts.SnapshotPath,
		Name:                name,
		OutputDataDir:       opts.DataDir,
		PeerURLs:            peers,
		InitialCluster:      cluster,
		InitialClusterToken: token,
		// verifySnapshot has checked the hash already; the library would read the whole file a
		// second time for it. It still cuts the hash off the copy by etcd's size rule.
		SkipHashCheck: true,
		RevisionBump:  opts.BumpRevision,
		MarkCompacted: opts.MarkCompacted,
	}
}

// verifySnapshot makes sure etcd's library and server will not crash on the file: unless the
// caller has done so, it inspects it (hash, structure, every key and value decoded).
func verifySnapshot(ctx context.Context, path string, skipHash, inspected bool) error {
	if !inspected {
		r, err := InspectContext(ctx, path)
		if err != nil {
			return err
		}
		if err := r.Err(); err != nil && !(skipHash && errors.Is(err, ErrNoHash)) {
			return err
		}
		return nil
	}
	// The caller inspected the file: check only what costs nothing, in case it was swapped since.
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	lay, err := readLayout(f, st.Size(), path)
	if err != nil {
		return err
	}
	if !lay.hasHash && !skipHash {
		return errNoHash(path)
	}
	return nil
}

func errHashMismatch(path string) error {
	return fmt.Errorf("%w: %s: the SHA-256 etcd appended does not match the data: the file changed after etcd wrote it (bad disk, truncated or altered copy); take or fetch it again", ErrCorrupt, path)
}

func errNoHash(path string) error {
	return fmt.Errorf("%w: %s has no SHA-256 appended, as a raw copy of member/snap/db: nothing proves it is intact; restore it only with SkipHashCheck (etcdutl --skip-hash-check) if you trust where it came from", ErrNoHash, path)
}

// checkDataDir refuses a data directory that exists and is not an empty directory, without
// creating or changing anything.
func checkDataDir(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data dir %s exists and is not a directory: refusing to touch it; choose a new path", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("data dir %s is not empty (%d entries): refusing to restore over it; choose a new directory (a live member's data must never be overwritten by a restore)", dir, len(entries))
	}
	return nil
}

// createDataDir creates dir and its missing parents and returns how to undo exactly that: remove
// the topmost directory it created, or, when dir existed empty, what was put into it since.
func createDataDir(dir string) (undo func(), err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	top := ""
	for p := abs; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("data dir %s: %w", dir, err)
		}
		top = p
		if filepath.Dir(p) == p {
			break
		}
	}
	if top == "" {
		return func() {
			entries, _ := os.ReadDir(abs)
			for _, e := range entries {
				os.RemoveAll(filepath.Join(abs, e.Name()))
			}
		}, nil
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		os.RemoveAll(top)
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	return func() { os.RemoveAll(top) }, nil
}
