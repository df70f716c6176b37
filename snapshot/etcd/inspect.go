package etcd

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// Report is what Inspect finds in a snapshot file. A damaged file is a Report with HashMatches or
// Readable false, not an error; Err turns it into one.
type Report struct {
	Path      string
	SizeBytes int64
	SHA256    string // hex, of the whole file
	// HasHash: etcd's SHA-256 of the database is appended (size%512 == 32). Snapshots from
	// Maintenance.Snapshot (etcdctl, firedrill) have it; a raw copy of member/snap/db does not.
	HasHash bool
	// HashMatches: the appended hash equals the SHA-256 of the rest of the file.
	HashMatches bool
	// Readable: bbolt opened the database and its consistency check passed. A file whose hash does
	// not match is not opened (ReadError says so): bbolt trusts its pages and can crash the process
	// on a damaged one.
	Readable  bool
	ReadError string
	// What etcdutl's `snapshot status` reports; zero unless Readable.
	Revision    int64
	TotalKeys   int
	Version     string // storage version, empty before etcd 3.6
	DBSizeBytes int64  // the database without the appended hash
	Hash        uint32 // etcdutl's CRC-32C over every bucket, key and value
}

// Err says what is wrong with the snapshot, or nil when its hash matched and bbolt read it. The
// error wraps ErrCorrupt, or ErrNoHash for a readable file without the appended hash.
func (r *Report) Err() error {
	layoutErr, isLayout := strings.CutPrefix(r.ReadError, ErrCorrupt.Error()+": ")
	switch {
	case !r.Readable && isLayout:
		return fmt.Errorf("%w: %s", ErrCorrupt, layoutErr) // not a snapshot, empty, truncated: say that first
	case r.HasHash && !r.HashMatches:
		return errHashMismatch(r.Path)
	case !r.Readable:
		return fmt.Errorf("%w: %s: etcd cannot read the database: %s", ErrCorrupt, r.Path, r.ReadError)
	case !r.HasHash:
		return errNoHash(r.Path)
	}
	return nil
}

// Inspect is InspectContext without a way to interrupt it.
func Inspect(path string) (*Report, error) { return InspectContext(context.Background(), path) }

// InspectContext hashes the file (streaming, memory stays flat), checks etcd's appended hash and
// the database's structure (see checkBolt: bbolt itself would crash the process on a damaged one),
// then has etcdutl's snapshot status read every key. It returns an error only when
// the file cannot be read (missing, a directory, an I/O error) or ctx ends.
//
// The status pass keeps every distinct key in memory (that is how etcdutl counts them), so its
// memory grows with the number of keys, not with the size of values.
func InspectContext(ctx context.Context, path string) (*Report, error) {
	return inspect(ctx, path, true)
}

// Verify is the part of Inspect a restore needs: the file's SHA-256, etcd's appended hash and
// the database's structure, without etcdutl's status pass over every key — so Revision and
// TotalKeys stay zero. `firedrill restore etcd` uses it to stay as quick as etcdutl's restore.
func Verify(ctx context.Context, path string) (*Report, error) { return inspect(ctx, path, false) }

func inspect(ctx context.Context, path string, status bool) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("inspect etcd snapshot: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("inspect etcd snapshot: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("inspect etcd snapshot: %s is not a regular file", path)
	}
	r := &Report{Path: path, SizeBytes: st.Size(), HasHash: hasHash(st.Size())}
	lay, layErr := readLayout(f, st.Size(), path)

	// Also a snapshot whose hash matches gets the structure check: the hash proves the copy, not
	// that the etcd it came from had a sound database.
	sc, err := scanFile(ctx, f, st.Size(), lay, layErr == nil)
	if err != nil {
		return nil, fmt.Errorf("inspect etcd snapshot %s: %w", path, err)
	}
	r.SHA256, r.HashMatches = sc.digest.sha256, sc.digest.hashMatches

	switch {
	case layErr != nil:
		r.ReadError = layErr.Error()
		return r, nil
	case r.HasHash && !r.HashMatches:
		r.ReadError = "not opened: the appended SHA-256 does not match, so the file is damaged"
		return r, nil
	case sc.structure != nil:
		r.ReadError = "bbolt structure: " + redactData(sc.structure.Error())
		return r, nil
	}
	r.DBSizeBytes = lay.dbSize
	if lockedByOther(f) {
		r.ReadError = "not opened: another process (a running etcd?) holds the database's lock; take a snapshot of it instead, or copy it while etcd is stopped"
		return r, nil
	}
	if !status {
		r.Readable = true
		return r, nil
	}
	var ss snapshot.Status
	err = guard(func() (err error) {
		ss, err = snapshot.NewV3(zap.NewNop()).Status(path)
		return err
	})
	if err != nil {
		r.ReadError = redactData(err.Error())
		return r, nil
	}
	r.Readable = true
	r.Revision, r.TotalKeys, r.Version, r.Hash = ss.Revision, ss.TotalKey, ss.Version, ss.Hash
	return r, nil
}
