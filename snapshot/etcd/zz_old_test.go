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
// Memory: one bit per page, plus the pages on the current path from the root (large values are
// never read: only their bounds matter).
func oldCheckBolt(ctx context.Context, r io.ReaderAt, l layout) error {
	c := &oldChecker{ctx: ctx, r: r, pageSize: l.pageSize, hwm: l.meta.pgid, seen: make([]uint64, l.meta.pgid/64+1)}
	if f := l.meta.freelist; f != boltNoFreelist {
		if err := c.checkFreelist(f); err != nil {
			return err
		}
	}
	return c.bucket(l.meta.root, 0)
}


type oldChecker struct {
	ctx      context.Context
	pages    int
	r        io.ReaderAt
	pageSize int64
	hwm      uint64
	seen     []uint64 // bit per page: reached already
}

// oldPageView gives bounds-checked access to one page and its overflow pages. Small pages are read
// whole; a page spanning many overflow pages (a large value) is read piecemeal, because checking
// it needs only its element table and keys, not the value bytes.
type oldPageView struct {
	r    io.ReaderAt
	base int64  // file offset of the page; unused when buf holds it all
	span uint64 // bytes of the page with its overflow pages
	buf  []byte // the whole page, or its first bytes
}

const oldWholePageLimit = 64 << 10

// bytes returns n bytes at offset off of the page, or an error when they fall outside it.
func (v *oldPageView) bytes(off, n uint64) ([]byte, error) {
	if off+n > v.span || off+n < off {
		return nil, fmt.Errorf("bytes %d..%d outside its %d-byte page", off, off+n, v.span)
	}
	if off+n <= uint64(len(v.buf)) {
		return v.buf[off : off+n], nil
	}
	b := make([]byte, n)
	if _, err := v.r.ReadAt(b, v.base+int64(off)); err != nil {
		return nil, err
	}
	return b, nil
}

func (v *oldPageView) u16(off uint64) (uint16, error) {
	b, err := v.bytes(off, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

// page reads page id and checks its header and that no other reference reached it before.
func (c *oldChecker) page(id uint64) (*oldPageView, error) {
	if id < 2 || id >= c.hwm {
		return nil, fmt.Errorf("page %d: out of bounds (high-water mark %d)", id, c.hwm)
	}
	if c.pages++; c.pages%1024 == 0 && c.ctx.Err() != nil {
		return nil, c.ctx.Err()
	}
	base := int64(id) * c.pageSize
	first := make([]byte, c.pageSize)
	if _, err := c.r.ReadAt(first, base); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := binary.LittleEndian.Uint64(first); got != id {
		return nil, fmt.Errorf("page %d: identifies itself as page %d", id, got)
	}
	overflow := uint64(binary.LittleEndian.Uint32(first[12:]))
	if id+overflow >= c.hwm {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the high-water mark %d", id, overflow, c.hwm)
	}
	for p := id; p <= id+overflow; p++ {
		if c.seen[p/64]&(1<<(p%64)) != 0 {
			return nil, fmt.Errorf("page %d: referenced more than once", p)
		}
		c.seen[p/64] |= 1 << (p % 64)
	}
	v := &oldPageView{r: c.r, base: base, span: (overflow + 1) * uint64(c.pageSize), buf: first}
	if overflow > 0 && v.span <= oldWholePageLimit {
		v.buf = make([]byte, v.span)
		if _, err := c.r.ReadAt(v.buf, base); err != nil {
			return nil, fmt.Errorf("page %d: %w", id, err)
		}
	}
	return v, nil
}

func (c *oldChecker) checkFreelist(id uint64) error {
	v, err := c.page(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags, _ := v.u16(8); flags != boltFreelistPage {
		return fmt.Errorf("freelist page %d: type %#x", id, flags)
	}
	count, _ := v.u16(10)
	n, start := uint64(count), uint64(boltPageHeader)
	if n == 0xFFFF { // the real count is the first element
		b, err := v.bytes(boltPageHeader, 8)
		if err != nil {
			return fmt.Errorf("freelist page %d: %w", id, err)
		}
		n, start = binary.LittleEndian.Uint64(b), boltPageHeader+8
	}
	if n > v.span/8 || start+8*n > v.span {
		return fmt.Errorf("freelist page %d: %d ids do not fit", id, n)
	}
	return nil
}

// bucket checks the tree of a bucket whose root is page root (0: inline, nothing to follow).
func (c *oldChecker) bucket(root uint64, depth int) error {
	if root == 0 {
		return nil
	}
	_, err := c.node(root, nil, nil, depth)
	return err
}

// node checks page id and its subtree, whose keys must lie in [min, max) (nil: unbounded), and
// returns the subtree's greatest key.
func (c *oldChecker) node(id uint64, min, max []byte, depth int) ([]byte, error) {
	if depth > boltMaxDepth {
		return nil, fmt.Errorf("page %d: tree deeper than %d levels", id, boltMaxDepth)
	}
	v, err := c.page(id)
	if err != nil {
		return nil, err
	}
	switch flags, _ := v.u16(8); flags {
	case boltBranchPage:
		return c.branch(id, v, min, max, depth)
	case boltLeafPage:
		return c.leaf(id, v, min, max, depth)
	default:
		return nil, fmt.Errorf("page %d: type %#x where a branch or leaf page belongs", id, flags)
	}
}

// elements returns the element table of a page: count entries of boltElemSize bytes.
func oldElements(id uint64, v *oldPageView) ([]byte, int, error) {
	n, err := v.u16(10)
	if err != nil {
		return nil, 0, fmt.Errorf("page %d: %w", id, err)
	}
	table, err := v.bytes(boltPageHeader, uint64(n)*boltElemSize)
	if err != nil {
		return nil, 0, fmt.Errorf("page %d: %d elements do not fit: %w", id, n, err)
	}
	return table, int(n), nil
}

// at returns the bytes an element describes with a position relative to the element itself (as
// bbolt stores it) and a length.
func oldAt(v *oldPageView, elem int, pos, size uint32) ([]byte, error) {
	return v.bytes(uint64(boltPageHeader+elem*boltElemSize)+uint64(pos), uint64(size))
}

func (c *oldChecker) branch(id uint64, v *oldPageView, min, max []byte, depth int) ([]byte, error) {
	table, n, err := oldElements(id, v)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	keys := make([][]byte, n)
	for i := range n {
		e := table[i*boltElemSize:]
		if keys[i], err = oldAt(v, i, le.Uint32(e[0:]), le.Uint32(e[4:])); err != nil {
			return nil, fmt.Errorf("page %d: key %d: %w", id, i, err)
		}
	}
	running, last := min, []byte(nil)
	for i := range n {
		if err := oldKeyOrder(id, i, keys[i], running, max); err != nil {
			return nil, err
		}
		upper := max
		if i < n-1 {
			upper = keys[i+1]
		}
		sub, err := c.node(le.Uint64(table[i*boltElemSize+8:]), keys[i], upper, depth+1)
		if err != nil {
			return nil, err
		}
		running, last = sub, sub
	}
	return last, nil
}

func (c *oldChecker) leaf(id uint64, v *oldPageView, min, max []byte, depth int) ([]byte, error) {
	table, n, err := oldElements(id, v)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	running := min
	for i := range n {
		e := table[i*boltElemSize:]
		flags, pos, ksize, vsize := le.Uint32(e), le.Uint32(e[4:]), le.Uint32(e[8:]), le.Uint32(e[12:])
		k, err := oldAt(v, i, pos, ksize)
		if err != nil {
			return nil, fmt.Errorf("page %d: key %d: %w", id, i, err)
		}
		// The value follows the key; only its bounds matter unless it holds a bucket.
		vpos := uint64(boltPageHeader+i*boltElemSize) + uint64(pos) + uint64(ksize)
		if vpos+uint64(vsize) > v.span {
			return nil, fmt.Errorf("page %d: value %d: bytes %d..%d outside its %d-byte page", id, i, vpos, vpos+uint64(vsize), v.span)
		}
		if err := oldKeyOrder(id, i, k, running, max); err != nil {
			return nil, err
		}
		running = k
		if flags&boltBucketLeaf == 0 {
			continue
		}
		if vsize < boltBucketHeader {
			return nil, fmt.Errorf("page %d: bucket %q: header of %d bytes", id, k, vsize)
		}
		val, err := v.bytes(vpos, uint64(vsize))
		if err != nil {
			return nil, fmt.Errorf("page %d: bucket %q: %w", id, k, err)
		}
		if root := le.Uint64(val); root == 0 {
			err = c.inline(val[boltBucketHeader:], depth)
		} else {
			err = c.bucket(root, depth+1)
		}
		if err != nil {
			return nil, fmt.Errorf("bucket %q: %w", k, err)
		}
	}
	return running, nil
}

// inline checks a bucket stored inside its parent's value: a leaf page without its own page id.
func (c *oldChecker) inline(p []byte, depth int) error {
	v := &oldPageView{span: uint64(len(p)), buf: p}
	flags, err := v.u16(8)
	if err != nil {
		return errors.New("inline bucket shorter than a page header")
	}
	if flags != boltLeafPage {
		return fmt.Errorf("inline bucket: type %#x", flags)
	}
	_, err = c.leaf(0, v, nil, nil, depth+1)
	return err
}

// keyOrder applies bbolt's rule: keys ascend strictly within a page and lie in [min, max).
func oldKeyOrder(id uint64, i int, key, prev, max []byte) error {
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
