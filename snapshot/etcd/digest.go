package etcd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
)

// hashSize is the length of the SHA-256 that etcd appends to a snapshot.
const hashSize = sha256.Size

// hasHash is etcd's rule (etcdutl and clientv3 use the same test): a database is a whole number of
// 512-byte sectors, so a file 32 bytes past a multiple of 512 carries the hash.
func hasHash(size int64) bool { return size%512 == hashSize }

// digester hashes a stream once and yields both digests a snapshot needs: of the whole file (what
// the record keeps) and of everything before the last 32 bytes (what etcd's appended hash covers).
// It holds back the last 32 bytes it has seen, so it works on a stream of unknown length.
type digester struct {
	h    hash.Hash
	tail [hashSize]byte
	n    int // bytes held in tail
	size int64
}

func newDigester() *digester { return &digester{h: sha256.New()} }

func (d *digester) Write(p []byte) (int, error) {
	d.size += int64(len(p))
	if d.n+len(p) <= hashSize {
		d.n += copy(d.tail[d.n:], p)
		return len(p), nil
	}
	// Everything but the last hashSize bytes of tail+p is known not to be the trailer.
	feed := d.n + len(p) - hashSize
	if feed <= d.n {
		d.h.Write(d.tail[:feed])
		copy(d.tail[:], d.tail[feed:d.n])
		d.n -= feed
		d.n += copy(d.tail[d.n:], p)
		return len(p), nil
	}
	d.h.Write(d.tail[:d.n])
	d.h.Write(p[:feed-d.n])
	d.n = copy(d.tail[:], p[feed-d.n:])
	return len(p), nil
}

// digest is what a digester found.
type digest struct {
	size        int64
	sha256      string // hex, of the whole stream
	hasHash     bool   // by etcd's size rule
	hashMatches bool   // the last 32 bytes are the SHA-256 of the rest
}

// sum finishes the digester; it must not be written to afterwards.
func (d *digester) sum() digest {
	inner := d.h.Sum(nil) // Sum leaves the running state alone
	matches := d.n == hashSize && bytes.Equal(inner, d.tail[:])
	d.h.Write(d.tail[:d.n])
	return digest{
		size:        d.size,
		sha256:      hex.EncodeToString(d.h.Sum(nil)),
		hasHash:     hasHash(d.size),
		hashMatches: hasHash(d.size) && matches,
	}
}

// copyBufSize is the read size for files: large enough that syscalls cost nothing next to
// hashing, small enough that memory stays flat.
const copyBufSize = 1 << 20

// digestReader reads r to the end, checking ctx between reads, and returns its digest.
func digestReader(ctx context.Context, r io.Reader) (digest, error) {
	d := newDigester()
	buf := make([]byte, copyBufSize)
	for {
		if err := ctx.Err(); err != nil {
			return digest{}, err
		}
		n, err := r.Read(buf)
		d.Write(buf[:n])
		if err == io.EOF {
			return d.sum(), nil
		}
		if err != nil {
			return digest{}, err
		}
	}
}
