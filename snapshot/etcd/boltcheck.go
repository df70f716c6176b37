package etcd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// checkBolt verifies the structure of a bbolt database the way bbolt's own consistency check does
// (every page in bounds, of the right type and referenced once, every key inside its page and in
// order, every nested bucket likewise), but with plain reads instead of bbolt's memory map.
//
// It exists because bbolt cannot look at a damaged database safely: its checker and its free-page
// scan (which runs whenever etcd opens a database, as etcd keeps no freelist on disk) report
// damage by panicking on goroutines of their own, which kills the whole process — a long-running
// firedrill serve included. A file whose appended hash matched is the database etcd wrote, byte
// for byte, and needs no such walk; a raw copy without the hash does, before bbolt opens it.
//
// Memory: one bit per page, plus the pages on the current path from the root.
func checkBolt(ctx context.Context, r io.ReaderAt, l layout) error {
	c := &boltChecker{ctx: ctx, r: r, pageSize: l.pageSize, hwm: l.meta.pgid, seen: make([]uint64, l.meta.pgid/64+1)}
	if f := l.meta.freelist; f != boltNoFreelist {
		if err := c.checkFreelist(f); err != nil {
			return err
		}
	}
	return c.bucket(l.meta.root, 0)
}

const (
	boltBranchPage   = 0x01
	boltLeafPage     = 0x02
	boltFreelistPage = 0x10
	boltBucketLeaf   = 0x01
	boltElemSize     = 16
	boltBucketHeader = 16 // root page id and sequence of a nested bucket
	boltNoFreelist   = ^uint64(0)
	boltMaxDepth     = 64 // far beyond any real B+tree; a loop in a damaged file ends here
)

type boltChecker struct {
	ctx      context.Context
	pages    int
	r        io.ReaderAt
	pageSize int64
	hwm      uint64
	seen     []uint64 // bit per page: reached already
}

// page reads page id with its overflow pages and checks its header.
func (c *boltChecker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= c.hwm {
		return nil, fmt.Errorf("page %d: out of bounds (high-water mark %d)", id, c.hwm)
	}
	if c.pages++; c.pages%1024 == 0 && c.ctx.Err() != nil {
		return nil, c.ctx.Err()
	}
	hdr := make([]byte, boltPageHeader)
	if _, err := c.r.ReadAt(hdr, int64(id)*c.pageSize); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := binary.LittleEndian.Uint64(hdr); got != id {
		return nil, fmt.Errorf("page %d: identifies itself as page %d", id, got)
	}
	overflow := uint64(binary.LittleEndian.Uint32(hdr[12:]))
	if id+overflow >= c.hwm {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the high-water mark %d", id, overflow, c.hwm)
	}
	for p := id; p <= id+overflow; p++ {
		if c.seen[p/64]&(1<<(p%64)) != 0 {
			return nil, fmt.Errorf("page %d: referenced more than once", p)
		}
		c.seen[p/64] |= 1 << (p % 64)
	}
	buf := make([]byte, int64(overflow+1)*c.pageSize)
	if _, err := c.r.ReadAt(buf, int64(id)*c.pageSize); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return buf, nil
}

func (c *boltChecker) checkFreelist(id uint64) error {
	p, err := c.page(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags := binary.LittleEndian.Uint16(p[8:]); flags != boltFreelistPage {
		return fmt.Errorf("freelist page %d: type %#x", id, flags)
	}
	n, start := uint64(binary.LittleEndian.Uint16(p[10:])), uint64(boltPageHeader)
	if n == 0xFFFF { // the real count is the first element
		n, start = binary.LittleEndian.Uint64(p[boltPageHeader:]), boltPageHeader+8
	}
	if n > uint64(len(p))/8 || start+8*n > uint64(len(p)) {
		return fmt.Errorf("freelist page %d: %d ids do not fit", id, n)
	}
	return nil
}

// bucket checks the tree of a bucket whose root is page root (0: inline, nothing to follow).
func (c *boltChecker) bucket(root uint64, depth int) error {
	if root == 0 {
		return nil
	}
	_, err := c.node(root, nil, nil, depth)
	return err
}

// node checks page id and its subtree, whose keys must lie in [min, max) (nil: unbounded), and
// returns the subtree's greatest key.
func (c *boltChecker) node(id uint64, min, max []byte, depth int) ([]byte, error) {
	if depth > boltMaxDepth {
		return nil, fmt.Errorf("page %d: tree deeper than %d levels", id, boltMaxDepth)
	}
	p, err := c.page(id)
	if err != nil {
		return nil, err
	}
	switch flags := binary.LittleEndian.Uint16(p[8:]); flags {
	case boltBranchPage:
		return c.branch(id, p, min, max, depth)
	case boltLeafPage:
		return c.leaf(id, p, min, max, depth)
	default:
		return nil, fmt.Errorf("page %d: type %#x where a branch or leaf page belongs", id, flags)
	}
}

func (c *boltChecker) branch(id uint64, p []byte, min, max []byte, depth int) ([]byte, error) {
	n := int(binary.LittleEndian.Uint16(p[10:]))
	if boltPageHeader+n*boltElemSize > len(p) {
		return nil, fmt.Errorf("page %d: %d elements do not fit", id, n)
	}
	keys := make([][]byte, n)
	for i := range n {
		e := p[boltPageHeader+i*boltElemSize:]
		k, err := slice(p, boltPageHeader+i*boltElemSize, e[0:], e[4:])
		if err != nil {
			return nil, fmt.Errorf("page %d: key %d: %w", id, i, err)
		}
		keys[i] = k
	}
	running, last := min, []byte(nil)
	for i := range n {
		if err := keyOrder(id, i, keys[i], running, max); err != nil {
			return nil, err
		}
		upper := max
		if i < n-1 {
			upper = keys[i+1]
		}
		child := binary.LittleEndian.Uint64(p[boltPageHeader+i*boltElemSize+8:])
		sub, err := c.node(child, keys[i], upper, depth+1)
		if err != nil {
			return nil, err
		}
		running, last = sub, sub
	}
	return last, nil
}

func (c *boltChecker) leaf(id uint64, p []byte, min, max []byte, depth int) ([]byte, error) {
	n := int(binary.LittleEndian.Uint16(p[10:]))
	if boltPageHeader+n*boltElemSize > len(p) {
		return nil, fmt.Errorf("page %d: %d elements do not fit", id, n)
	}
	running := min
	for i := range n {
		off := boltPageHeader + i*boltElemSize
		e := p[off:]
		k, err := slice(p, off, e[4:], e[8:])
		if err != nil {
			return nil, fmt.Errorf("page %d: key %d: %w", id, i, err)
		}
		// The value follows the key.
		vpos := binary.LittleEndian.Uint32(e[4:]) + binary.LittleEndian.Uint32(e[8:])
		var vposb [4]byte
		binary.LittleEndian.PutUint32(vposb[:], vpos)
		v, err := slice(p, off, vposb[:], e[12:])
		if err != nil {
			return nil, fmt.Errorf("page %d: value %d: %w", id, i, err)
		}
		if err := keyOrder(id, i, k, running, max); err != nil {
			return nil, err
		}
		running = k
		if binary.LittleEndian.Uint32(e)&boltBucketLeaf != 0 {
			if len(v) < boltBucketHeader {
				return nil, fmt.Errorf("page %d: bucket %q: header of %d bytes", id, k, len(v))
			}
			root := binary.LittleEndian.Uint64(v)
			if root == 0 {
				err = c.inline(v[boltBucketHeader:], depth)
			} else {
				err = c.bucket(root, depth+1)
			}
			if err != nil {
				return nil, fmt.Errorf("bucket %q: %w", k, err)
			}
		}
	}
	return running, nil
}

// inline checks a bucket stored inside its parent's value: a leaf page without its own page id.
func (c *boltChecker) inline(p []byte, depth int) error {
	if len(p) < boltPageHeader {
		return errors.New("inline bucket shorter than a page header")
	}
	if flags := binary.LittleEndian.Uint16(p[8:]); flags != boltLeafPage {
		return fmt.Errorf("inline bucket: type %#x", flags)
	}
	_, err := c.leaf(0, p, nil, nil, depth+1)
	return err
}

// slice returns the bytes an element at offset elem describes with a position (relative to the
// element, as bbolt stores it) and a length, or an error when they fall outside the page.
func slice(p []byte, elem int, pos, size []byte) ([]byte, error) {
	start := uint64(elem) + uint64(binary.LittleEndian.Uint32(pos))
	end := start + uint64(binary.LittleEndian.Uint32(size))
	if end > uint64(len(p)) {
		return nil, fmt.Errorf("bytes %d..%d outside its %d-byte page", start, end, len(p))
	}
	return p[start:end], nil
}

// keyOrder applies bbolt's rule: keys ascend strictly within a page and lie in [min, max).
func keyOrder(id uint64, i int, key, prev, max []byte) error {
	switch {
	case prev != nil && i == 0 && bytes.Compare(prev, key) > 0:
		return fmt.Errorf("page %d: first key below its parent's", id)
	case i > 0 && bytes.Compare(prev, key) >= 0:
		return fmt.Errorf("page %d: key %d not above the one before", id, i)
	case max != nil && bytes.Compare(key, max) >= 0:
		return fmt.Errorf("page %d: key %d not below the next key of its parent", id, i)
	}
	return nil
}
