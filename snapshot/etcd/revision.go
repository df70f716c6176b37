package etcd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// keyBucket is etcd's bucket of key revisions: keys are revisions (8 bytes big-endian main,
// '_', 8 bytes sub, 't' for a tombstone), so the last one is the newest.
var keyBucket = []byte("key")

// fileRevision returns the revision a snapshot holds — the main revision of the last key in etcd's
// "key" bucket, as etcdutl's snapshot status reports it — by following the rightmost path of
// the bucket's tree: a few small reads, whatever the size of the file. 0 when the bucket is empty.
func fileRevision(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	lay, err := readLayout(f, st.Size(), path)
	if err != nil {
		return 0, err
	}
	r := &pathReader{r: f, pageSize: uint64(lay.pageSize), hwm: lay.meta.pgid}
	k, err := r.last(lay.meta.root)
	if err != nil {
		return 0, err
	}
	if len(k) < 8 {
		return 0, fmt.Errorf("revision key of %d bytes", len(k))
	}
	return int64(binary.BigEndian.Uint64(k)), nil
}

// pathReader follows one path down a bbolt tree with bounds-checked reads: a database that passed
// etcd's hash may still be damaged, and this must not be the code that crashes on it.
type pathReader struct {
	r        io.ReaderAt
	pageSize uint64
	hwm      uint64
}

// page reads the header and element table of page id: what this descent needs of it.
func (r *pathReader) page(id uint64) (v *pageView, flags uint16, n int, err error) {
	if id < 2 || id >= r.hwm {
		return nil, 0, 0, fmt.Errorf("page %d: out of bounds (high-water mark %d)", id, r.hwm)
	}
	head := make([]byte, r.pageSize)
	if _, err := r.r.ReadAt(head, int64(id*r.pageSize)); err != nil {
		return nil, 0, 0, fmt.Errorf("page %d: %w", id, err)
	}
	le := binary.LittleEndian
	overflow := uint64(le.Uint32(head[12:]))
	if le.Uint64(head) != id || id+overflow >= r.hwm {
		return nil, 0, 0, fmt.Errorf("page %d: damaged header", id)
	}
	v = &pageView{span: (overflow + 1) * r.pageSize, head: head}
	n = int(le.Uint16(head[10:]))
	if end := boltPageHeader + uint64(n)*boltElemSize; end > uint64(len(head)) {
		if end > v.span {
			return nil, 0, 0, fmt.Errorf("page %d: %d elements do not fit", id, n)
		}
		v.head = make([]byte, end)
		if _, err := r.r.ReadAt(v.head, int64(id*r.pageSize)); err != nil {
			return nil, 0, 0, fmt.Errorf("page %d: %w", id, err)
		}
	}
	return v, le.Uint16(head[8:]), n, nil
}

// read returns n bytes at off of a page read by page, reading them when they lie past its head.
func (r *pathReader) read(id uint64, v *pageView, off, n uint64) ([]byte, error) {
	if off+n > v.span || off+n < off {
		return nil, fmt.Errorf("page %d: bytes %d..%d outside its %d-byte page", id, off, off+n, v.span)
	}
	if off+n <= uint64(len(v.head)) {
		return v.head[off : off+n], nil
	}
	b := make([]byte, n)
	if _, err := r.r.ReadAt(b, int64(id*r.pageSize+off)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return b, nil
}

// last finds the "key" bucket in the root bucket at page root and returns its last key.
func (r *pathReader) last(root uint64) ([]byte, error) {
	le := binary.LittleEndian
	id := root
	for depth := 0; ; depth++ {
		if depth > boltMaxDepth {
			return nil, errors.New("root bucket deeper than any real tree")
		}
		v, flags, n, err := r.page(id)
		if err != nil {
			return nil, err
		}
		if flags == boltBranchPage {
			// The child whose range holds "key": the last one whose first key is not above it.
			child := uint64(0)
			for i := range n {
				e := v.head[boltPageHeader+i*boltElemSize:]
				k, err := r.read(id, v, uint64(boltPageHeader+i*boltElemSize)+uint64(le.Uint32(e[0:])), uint64(le.Uint32(e[4:])))
				if err != nil {
					return nil, err
				}
				if i > 0 && bytes.Compare(k, keyBucket) > 0 {
					break
				}
				child = le.Uint64(e[8:])
			}
			if n == 0 {
				return nil, fmt.Errorf("page %d: empty branch", id)
			}
			id = child
			continue
		}
		if flags != boltLeafPage {
			return nil, fmt.Errorf("page %d: type %#x", id, flags)
		}
		for i := range n {
			e := v.head[boltPageHeader+i*boltElemSize:]
			pos, ksize, vsize := uint64(boltPageHeader+i*boltElemSize)+uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
			k, err := r.read(id, v, pos, ksize)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(k, keyBucket) {
				continue
			}
			if le.Uint32(e[0:])&boltBucketLeaf == 0 || vsize < boltBucketHeader {
				return nil, errors.New(`"key" is not a bucket`)
			}
			val, err := r.read(id, v, pos+ksize, vsize)
			if err != nil {
				return nil, err
			}
			if sub := le.Uint64(val); sub != 0 {
				return r.lastKey(sub)
			}
			return lastInline(val[boltBucketHeader:])
		}
		return nil, errors.New(`no "key" bucket: not an etcd database`)
	}
}

// lastKey returns the greatest key of the tree at page id: the rightmost path down.
func (r *pathReader) lastKey(id uint64) ([]byte, error) {
	le := binary.LittleEndian
	for depth := 0; ; depth++ {
		if depth > boltMaxDepth {
			return nil, errors.New(`"key" bucket deeper than any real tree`)
		}
		v, flags, n, err := r.page(id)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			if flags == boltLeafPage {
				return make([]byte, 8), nil // no keys: revision 0
			}
			return nil, fmt.Errorf("page %d: empty branch", id)
		}
		e := v.head[boltPageHeader+(n-1)*boltElemSize:]
		switch flags {
		case boltBranchPage:
			id = le.Uint64(e[8:])
		case boltLeafPage:
			return r.read(id, v, uint64(boltPageHeader+(n-1)*boltElemSize)+uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])))
		default:
			return nil, fmt.Errorf("page %d: type %#x", id, flags)
		}
	}
}

// lastInline returns the last key of a bucket stored inline in its parent's value.
func lastInline(p []byte) ([]byte, error) {
	if len(p) < boltPageHeader {
		return nil, errors.New("inline bucket shorter than a page header")
	}
	le := binary.LittleEndian
	n := int(le.Uint16(p[10:]))
	if n == 0 {
		return make([]byte, 8), nil
	}
	v := &pageView{span: uint64(len(p)), head: p}
	table, err := v.bytes(boltPageHeader, uint64(n)*boltElemSize)
	if err != nil {
		return nil, err
	}
	e := table[(n-1)*boltElemSize:]
	return v.bytes(uint64(boltPageHeader+(n-1)*boltElemSize)+uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])))
}
