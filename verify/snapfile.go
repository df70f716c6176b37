package verify

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"google.golang.org/protobuf/encoding/protowire"

	etcdsnap "github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// revisionFromSnapshot: the data was read at the snapshot's own revision (readRevision.From).
const revisionFromSnapshot = "snapshot"

// unreadableSnapshot says why the file is not to be opened, or "". bbolt trusts the pages it maps:
// on a damaged file it can loop or exhaust memory, which no recover catches, so a file the
// snapshot driver judged damaged is not opened again. A report that says nothing (the file was not
// inspected) does not stop it.
func unreadableSnapshot(s etcdsnap.Report) string {
	switch {
	case s.HasHash && !s.HashMatches:
		return "its appended hash does not match its data"
	case !s.Readable && s.ReadError != "":
		return "etcd cannot read it: " + s.ReadError
	}
	return ""
}

// Batches a snapshot file is handed to the decoders in.
const (
	fileBatchKeys  = 512
	fileBatchBytes = 1 << 20
)

// snapshotFileStats is what decodeSnapshotFile found besides the values.
type snapshotFileStats struct {
	Revision int64 // the newest revision of the file
	Keys     int   // live keys in the whole keyspace, as etcdutl counts them
}

// decodeSnapshotFile decodes, with decode on workers goroutines, the value of every key under
// prefix as a restore of the snapshot file at path serves it: the value of the key's latest
// revision, unless that revision deleted it.
//
// It reads like `etcdutl snapshot status`, opening the file read-only with bbolt, and walks etcd's
// key bucket once, from the newest revision to the oldest: the first revision met of a key is its
// latest, and older ones are skipped without decoding. Values are decoded straight from bbolt's
// memory map. Memory: every key (as etcdutl keeps them), none of the values.
func decodeSnapshotFile(ctx context.Context, path, prefix string, workers int, decode decodeFunc) (st *decodeStats, fs snapshotFileStats, err error) {
	err = recovering(func() error {
		fi, err := os.Stat(path)
		switch {
		case err != nil:
			return err
		case !fi.Mode().IsRegular():
			return errors.New("not a regular file")
		case fi.Size() == 0:
			return errors.New("the file is empty")
		}
		db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 10 * time.Second, MmapFlags: snapshotMmapFlags})
		if err != nil {
			return err
		}
		defer db.Close()
		return db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(schema.Key.Name())
			if b == nil {
				return errors.New("no key bucket: not an etcd v3 database")
			}
			st, err = decodeAll(ctx, func(ctx context.Context, emit func([]storedValue) error) error {
				fs, err = latestValues(ctx, b.Cursor(), prefix, emit)
				return err
			}, workers, decode, nil)
			return err
		})
	})()
	return st, fs, err
}

// latestValues walks a key bucket from the newest revision to the oldest and emits, in batches,
// the latest value of each live key under prefix.
func latestValues(ctx context.Context, c *bolt.Cursor, prefix string, emit func([]storedValue) error) (snapshotFileStats, error) {
	var fs snapshotFileStats
	pre := []byte(prefix)
	seen := map[string]struct{}{}
	batch := make([]storedValue, 0, fileBatchKeys)
	batchBytes := 0
	i := 0
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		if i++; i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return fs, err
			}
		}
		main, err := parseRevisionKey(k)
		if err != nil {
			return fs, err
		}
		if fs.Revision == 0 {
			fs.Revision = main
		}
		key, value, err := parseKeyValue(v)
		if err != nil {
			return fs, fmt.Errorf("revision %d: %w", main, err)
		}
		if _, ok := seen[string(key)]; ok {
			continue // an older revision
		}
		ks := string(key)
		seen[ks] = struct{}{}
		if mvcc.IsTombstone(k) {
			continue // deleted at its latest revision
		}
		fs.Keys++
		if !bytes.HasPrefix(key, pre) {
			continue
		}
		batch = append(batch, storedValue{Key: ks, Value: value})
		batchBytes += len(value)
		if len(batch) == fileBatchKeys || batchBytes >= fileBatchBytes {
			if err := emit(batch); err != nil {
				return fs, err
			}
			batch, batchBytes = make([]storedValue, 0, fileBatchKeys), 0
		}
	}
	if len(batch) > 0 {
		if err := emit(batch); err != nil {
			return fs, err
		}
	}
	return fs, nil
}

// Layout of a key of etcd's key bucket: the main revision and the sub revision, 8 bytes each, big
// endian, with '_' between them and 't' after them on a deletion (mvcc.RevToBytes,
// mvcc.BucketKey).
const (
	revKeyLen    = 8 + 1 + 8
	revKeyMarked = revKeyLen + 1
)

// parseRevisionKey returns the main revision of a key of the key bucket.
func parseRevisionKey(k []byte) (int64, error) {
	if (len(k) != revKeyLen && len(k) != revKeyMarked) || k[8] != '_' {
		return 0, fmt.Errorf("key bucket holds %d-byte key %x, which is not a revision", len(k), k[:min(len(k), revKeyMarked)])
	}
	return int64(binary.BigEndian.Uint64(k)), nil
}

// Field numbers of mvccpb.KeyValue.
const (
	kvKeyField   = 1
	kvValueField = 5
)

// parseKeyValue returns the key and value of a marshalled mvccpb.KeyValue without copying them
// (mvccpb's Unmarshal copies both, and most values of an old revision are never looked at).
func parseKeyValue(b []byte) (key, value []byte, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, fmt.Errorf("malformed mvccpb.KeyValue: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == kvKeyField || num == kvValueField {
			if typ != protowire.BytesType {
				return nil, nil, fmt.Errorf("malformed mvccpb.KeyValue: field %d has wire type %d", num, typ)
			}
			f, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, nil, fmt.Errorf("malformed mvccpb.KeyValue: %w", protowire.ParseError(n))
			}
			if num == kvKeyField {
				key = f
			} else {
				value = f
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, nil, fmt.Errorf("malformed mvccpb.KeyValue: %w", protowire.ParseError(n))
		}
		b = b[n:]
	}
	if len(key) == 0 {
		return nil, nil, errors.New("mvccpb.KeyValue without a key")
	}
	return key, value, nil
}
