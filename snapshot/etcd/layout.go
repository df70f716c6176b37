package etcd

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
)

// bbolt's on-disk format (go.etcd.io/bbolt/internal/common): each page starts with a 16-byte
// header; pages 0 and 1 hold a meta record, the newer valid one of which describes the database.
const (
	boltPageHeader = 16
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltMetaSum    = 56 // bytes of the meta record covered by its FNV-64a checksum
	boltMetaLen    = boltMetaSum + 8
)

// layout is what a file's bbolt meta pages say about it, read without opening the database.
type layout struct {
	pageSize int64
	dbSize   int64 // high-water mark × page size: the database's length as the file states it
	hasHash  bool
	meta     boltMeta // of the newest valid meta page
}

type boltMeta struct {
	pageSize uint32
	root     uint64 // page of the root bucket
	freelist uint64 // page of the freelist, or boltNoFreelist
	pgid     uint64 // high-water mark
	txid     uint64
}

// parseBoltMeta reads a meta record; ok is false when its magic, version or checksum is wrong.
func parseBoltMeta(b []byte) (m boltMeta, ok bool) {
	if len(b) < boltMetaLen {
		return m, false
	}
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != boltMagic || le.Uint32(b[4:]) != boltVersion {
		return m, false
	}
	h := fnv.New64a()
	h.Write(b[:boltMetaSum])
	if h.Sum64() != le.Uint64(b[boltMetaSum:]) {
		return m, false
	}
	return boltMeta{
		pageSize: le.Uint32(b[8:]), root: le.Uint64(b[16:]), freelist: le.Uint64(b[32:]),
		pgid: le.Uint64(b[40:]), txid: le.Uint64(b[48:]),
	}, true
}

// readLayout checks that a file of the given size is a whole bbolt database, optionally followed by
// etcd's 32-byte hash, by reading its two meta pages. It costs two small reads, so it runs before
// anything opens the file as a database: bbolt would fault on a truncated file instead of failing.
// Every error wraps ErrCorrupt.
func readLayout(r io.ReaderAt, size int64, path string) (layout, error) {
	if size == 0 {
		return layout{}, fmt.Errorf("%w: %s is empty (0 bytes): the snapshot was never written or its copy failed; take or fetch it again", ErrCorrupt, path)
	}
	notSnapshot := fmt.Errorf("%w: %s is not an etcd snapshot (no bbolt header): check the file was written by `etcdctl snapshot save` or firedrill", ErrCorrupt, path)
	first := make([]byte, boltPageHeader+boltMetaLen)
	if n, _ := r.ReadAt(first, 0); n < len(first) {
		if n >= boltPageHeader+4 && binary.LittleEndian.Uint32(first[boltPageHeader:]) == boltMagic {
			return layout{}, fmt.Errorf("%w: %s is truncated: %d bytes, less than one bbolt meta page: take or fetch it again", ErrCorrupt, path, size)
		}
		return layout{}, notSnapshot
	}
	var metas []boltMeta
	m0, ok0 := parseBoltMeta(first[boltPageHeader:])
	if ok0 {
		metas = append(metas, m0)
	}
	// The second meta page sits one page in; when the first is damaged, bbolt's page size is
	// unknown, so try the sizes bbolt supports (1 KiB steps up to 64 KiB).
	offsets := []int64{int64(m0.pageSize)}
	if !ok0 {
		offsets = offsets[:0]
		for o := int64(1024); o <= 64<<10; o += 1024 {
			offsets = append(offsets, o)
		}
	}
	buf := make([]byte, boltPageHeader+boltMetaLen)
	for _, off := range offsets {
		if off <= 0 {
			continue
		}
		if n, _ := r.ReadAt(buf, off); n < len(buf) {
			continue
		}
		if m1, ok := parseBoltMeta(buf[boltPageHeader:]); ok && int64(m1.pageSize) == off {
			metas = append(metas, m1)
			break
		}
	}
	if len(metas) == 0 {
		if !ok0 && (binary.LittleEndian.Uint32(first[boltPageHeader:]) == boltMagic) {
			return layout{}, fmt.Errorf("%w: %s: both bbolt meta pages fail their checksum: the file is damaged; take or fetch it again", ErrCorrupt, path)
		}
		return layout{}, notSnapshot
	}
	m := metas[0]
	for _, x := range metas[1:] {
		if x.txid > m.txid {
			m = x
		}
	}
	if m.pageSize < 1024 || m.pageSize > 64<<10 || m.pgid < 2 || m.pgid > 1<<40 {
		return layout{}, fmt.Errorf("%w: %s: its bbolt header is implausible (page size %d, %d pages): the file is damaged", ErrCorrupt, path, m.pageSize, m.pgid)
	}
	l := layout{pageSize: int64(m.pageSize), dbSize: int64(m.pgid) * int64(m.pageSize), meta: m}
	switch {
	case size < l.dbSize:
		return layout{}, fmt.Errorf("%w: %s is truncated: it has %d bytes but its header says the database alone has %d: the copy was cut short; take or fetch it again", ErrCorrupt, path, size, l.dbSize)
	case hasHash(size):
		l.hasHash = true
	case size%l.pageSize != 0:
		return layout{}, fmt.Errorf("%w: %s has %d bytes, neither whole %d-byte pages nor pages plus etcd's 32-byte hash: the file was cut short or appended to", ErrCorrupt, path, size, l.pageSize)
	}
	return l, nil
}
