package etcd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// boltCheck verifies the structure of a bbolt database the way bbolt's own consistency check does
// (every page in bounds, of the right type and referenced once, every key inside its page and in
// order, every nested bucket likewise), from one sequential read of the file: the pass that hashes
// it feeds it the same bytes (Write), then finish walks the tree.
//
// It exists because bbolt cannot look at a damaged database safely: its checker and its free-page
// scan (which runs whenever etcd opens a database, as etcd keeps no freelist on disk) report
// damage by panicking on goroutines of their own, which kills the whole process — a long-running
// firedrill serve included. Following the tree with reads of its own would cost a system call or a
// page fault per page, as much again as the hash; reading in order costs next to nothing more.
//
// As the bytes stream by, every block whose header names its own page id might start a page (a
// stale header in a free page may too: only the walk knows which are reachable). Each such page
// is checked on its own — element table, keys and values inside it, keys ascending — and
// summarised: its type, overflow, the keys its parent's bounds apply to, the pages it refers to.
// finish then walks the tree from the root over the summaries.
//
// Memory: a summary per candidate page (tens of bytes plus the first and last key of a leaf,
// every key of a branch), one bit per page, and the bytes of pages still being streamed whose
// element table or keys run past their first block.
type boltCheck struct {
	pageSize uint64
	hwm      uint64 // high-water mark: pages at and above it are not part of the database
	root     uint64
	freelist uint64

	next      uint64 // id of the next block Write will see
	carry     []byte // the start of a block split between two writes
	pending   []*pendingPage
	collected uint64 // bytes the pending pages hold or wait for
	pages     map[uint64]*pageSummary
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
	// collectLimit bounds the bytes collected for pages whose element table or keys run past
	// their first block, all such pages at once: far beyond what bbolt writes (keys are at most
	// 32 KiB), so only damage (or a value that mimics a page header) reaches it.
	collectLimit = 256 << 20
)

func newBoltCheck(l layout) *boltCheck {
	return &boltCheck{
		pageSize: uint64(l.pageSize), hwm: l.meta.pgid, root: l.meta.root, freelist: l.meta.freelist,
		carry: make([]byte, 0, l.pageSize), pages: make(map[uint64]*pageSummary),
	}
}

// pageSummary is what the walk needs of a page that was checked on its own.
type pageSummary struct {
	flags    uint16
	overflow uint64
	done     bool     // checked: all its bytes went by
	err      error    // what is wrong inside the page, or why it could not be checked
	keys     [][]byte // branch: every key; leaf: the first and the last, none when empty
	children []uint64 // branch: the page under each key
	buckets  []bucketRef
}

// bucketRef is a nested bucket with pages of its own, stored in a leaf (or in an inline bucket
// inside one: depth counts the levels).
type bucketRef struct {
	name  string // key, with those of enclosing inline buckets
	root  uint64
	depth int
}

// Write takes the next bytes of the file. Bytes past the high-water mark (etcd's hash) are ignored.
func (c *boltCheck) Write(p []byte) (int, error) {
	n := len(p)
	ps := int(c.pageSize)
	for len(p) > 0 && c.next < c.hwm {
		if len(c.carry) > 0 || len(p) < ps {
			k := copy(c.carry[len(c.carry):ps], p)
			c.carry, p = c.carry[:len(c.carry)+k], p[k:]
			if len(c.carry) == ps {
				c.block(c.carry)
				c.carry = c.carry[:0]
			}
			continue
		}
		c.block(p[:ps])
		p = p[ps:]
	}
	return n, nil
}

// block takes the whole block of page c.next; b is only valid during the call.
func (c *boltCheck) block(b []byte) {
	id := c.next
	c.next++
	if len(c.pending) > 0 {
		c.feedPending(id, b)
	}
	le := binary.LittleEndian
	if id < 2 || le.Uint64(b) != id {
		return // a meta page, or not the start of a page
	}
	s := &pageSummary{flags: le.Uint16(b[8:]), overflow: uint64(le.Uint32(b[12:]))}
	c.pages[id] = s
	if id+s.overflow >= c.hwm {
		return // the walk reports it, should anything refer to it
	}
	switch s.flags {
	case boltBranchPage, boltLeafPage, boltFreelistPage:
	default:
		return
	}
	p := &pendingPage{c: c, id: id, sum: s, view: pageView{span: (s.overflow + 1) * c.pageSize, head: b}}
	if p.plan() {
		p.parse()
		return
	}
	if s.err == nil {
		p.view.head = slices.Clone(b)
		p.collected += c.pageSize
		c.collected += c.pageSize
		c.pending = append(c.pending, p)
	}
}

// feedPending hands block id to the pages still collecting bytes and parses those that are complete.
func (c *boltCheck) feedPending(id uint64, b []byte) {
	keep := c.pending[:0]
	for _, p := range c.pending {
		off := (id - p.id) * c.pageSize
		if off >= p.view.span {
			p.sum.err = errors.New("bytes missing at the end of the page") // cannot happen: planned within the span
			continue
		}
		if p.feed(off, b) {
			p.parse()
		}
		if p.sum.err != nil || p.sum.done {
			c.collected -= p.collected
			continue
		}
		keep = append(keep, p)
	}
	clear(c.pending[len(keep):])
	c.pending = keep
}

// pendingPage is a page whose element table or keys run past its first block.
type pendingPage struct {
	c         *boltCheck
	id        uint64
	sum       *pageSummary
	view      pageView
	table     uint64 // bytes from the page start the element table ends at
	needs     []need
	collected uint64 // bytes held or awaited, counted in c.collected
}

type need struct {
	off uint64
	buf []byte // filled up to len, capacity the length needed
}

// plan works out which bytes the page's check reads. It reports whether they are all in head;
// it sets p.sum.err when the page cannot be checked whatever follows.
func (p *pendingPage) plan() (ready bool) {
	v := &p.view
	le := binary.LittleEndian
	count := uint64(le.Uint16(v.head[10:]))
	switch p.sum.flags {
	case boltFreelistPage:
		p.table = boltPageHeader
		if count == 0xFFFF {
			p.table += 8
		}
	default:
		p.table = boltPageHeader + count*boltElemSize
	}
	if p.table > v.span {
		return true // parse reports it
	}
	if p.table > uint64(len(v.head)) {
		return false
	}
	if p.sum.flags == boltFreelistPage {
		return true
	}
	for i := range count {
		e := v.head[boltPageHeader+i*boltElemSize:]
		pos := boltPageHeader + i*boltElemSize
		var off, n uint64
		if p.sum.flags == boltBranchPage {
			off, n = pos+uint64(le.Uint32(e[0:])), uint64(le.Uint32(e[4:]))
		} else {
			off, n = pos+uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:]))
			// A bucket's header (and inline page) follows its key: collect them as one.
			if with := n + uint64(le.Uint32(e[12:])); le.Uint32(e[0:])&boltBucketLeaf != 0 && off+with <= v.span {
				n = with
			}
		}
		if off+n > v.span || off+n <= uint64(len(v.head)) {
			continue // outside: parse reports it; inside head: nothing to collect
		}
		if p.c.collected+n > collectLimit {
			p.sum.err = fmt.Errorf("page %d: its keys run to more than %d bytes: damaged element table", p.id, collectLimit)
			return false
		}
		p.c.collected += n
		p.collected += n
		buf := make([]byte, 0, n)
		if off < uint64(len(v.head)) {
			buf = append(buf, v.head[off:]...)
		}
		p.needs = append(p.needs, need{off: off, buf: buf})
	}
	return len(p.needs) == 0
}

// feed takes the block at off bytes into the page and reports whether the page is complete.
func (p *pendingPage) feed(off uint64, b []byte) bool {
	v := &p.view
	if p.table > uint64(len(v.head)) {
		v.head = append(v.head, b...) // whole blocks: needs then continue past head
		p.collected += uint64(len(b))
		p.c.collected += uint64(len(b))
		if p.c.collected > collectLimit {
			p.sum.err = fmt.Errorf("page %d: its element table runs to more than %d bytes: damaged header", p.id, collectLimit)
			return false
		}
		if p.table > uint64(len(v.head)) {
			return false
		}
		return p.plan()
	}
	end, done := off+uint64(len(b)), true
	for i := range p.needs {
		n := &p.needs[i]
		at := n.off + uint64(len(n.buf))
		if len(n.buf) < cap(n.buf) && at >= off && at < end {
			n.buf = append(n.buf, b[at-off:min(end, n.off+uint64(cap(n.buf)))-off]...)
		}
		done = done && len(n.buf) == cap(n.buf)
	}
	if done {
		v.more = make(map[uint64][]byte, len(p.needs))
		for _, n := range p.needs {
			if len(n.buf) > len(v.more[n.off]) {
				v.more[n.off] = n.buf
			}
		}
	}
	return done
}

// parse checks the page on its own and fills its summary.
func (p *pendingPage) parse() {
	s, v := p.sum, &p.view
	s.done = true
	var err error
	switch s.flags {
	case boltFreelistPage:
		err = parseFreelist(p.id, v)
	case boltBranchPage:
		err = parseBranch(p.id, v, s)
	case boltLeafPage:
		var first, last []byte
		first, last, s.buckets, err = parseLeaf(p.id, v, "", 0)
		if first != nil {
			s.keys = [][]byte{slices.Clone(first), slices.Clone(last)}
		}
	}
	s.err = err
}

// pageView gives bounds-checked access to one page and its overflow pages: the first bytes
// (head), and the ranges plan asked for, collected as the file streamed by (more, by offset).
type pageView struct {
	span uint64 // bytes of the page with its overflow pages
	head []byte
	more map[uint64][]byte
}

// bytes returns n bytes at offset off of the page, or an error when they fall outside it.
func (v *pageView) bytes(off, n uint64) ([]byte, error) {
	if off+n > v.span || off+n < off {
		return nil, fmt.Errorf("bytes %d..%d outside its %d-byte page", off, off+n, v.span)
	}
	if off+n <= uint64(len(v.head)) {
		return v.head[off : off+n], nil
	}
	if b := v.more[off]; uint64(len(b)) >= n {
		return b[:n], nil
	}
	return nil, fmt.Errorf("bytes %d..%d were not collected", off, off+n) // a bug, not damage
}

func (v *pageView) u16(off uint64) (uint16, error) {
	b, err := v.bytes(off, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func parseFreelist(id uint64, v *pageView) error {
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

// elements returns the element table of a page: count entries of boltElemSize bytes.
func elements(id uint64, v *pageView) ([]byte, int, error) {
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
func at(v *pageView, elem int, pos, size uint32) ([]byte, error) {
	return v.bytes(uint64(boltPageHeader+elem*boltElemSize)+uint64(pos), uint64(size))
}

// parseBranch reads a branch page's keys and children; their order against the subtrees is the
// walk's to check.
func parseBranch(id uint64, v *pageView, s *pageSummary) error {
	table, n, err := elements(id, v)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	s.keys, s.children = make([][]byte, n), make([]uint64, n)
	for i := range n {
		e := table[i*boltElemSize:]
		k, err := at(v, i, le.Uint32(e[0:]), le.Uint32(e[4:]))
		if err != nil {
			return fmt.Errorf("page %d: key %d: %w", id, i, err)
		}
		s.keys[i], s.children[i] = slices.Clone(k), le.Uint64(e[8:])
	}
	return nil
}

// parseLeaf checks a leaf page (or an inline bucket's, id 0) on its own: keys and values inside it,
// keys ascending, bucket headers whole, inline buckets likewise. It returns the first and last
// key (aliasing the page) and the buckets with pages of their own.
func parseLeaf(id uint64, v *pageView, name string, depth int) (first, last []byte, buckets []bucketRef, err error) {
	table, n, err := elements(id, v)
	if err != nil {
		return nil, nil, nil, err
	}
	le := binary.LittleEndian
	var prev []byte
	for i := range n {
		e := table[i*boltElemSize:]
		flags, pos, ksize, vsize := le.Uint32(e), le.Uint32(e[4:]), le.Uint32(e[8:]), le.Uint32(e[12:])
		k, err := at(v, i, pos, ksize)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("page %d: key %d: %w", id, i, err)
		}
		// The value follows the key; only its bounds matter unless it holds a bucket.
		vpos := uint64(boltPageHeader+i*boltElemSize) + uint64(pos) + uint64(ksize)
		if vpos+uint64(vsize) > v.span {
			return nil, nil, nil, fmt.Errorf("page %d: value %d: bytes %d..%d outside its %d-byte page", id, i, vpos, vpos+uint64(vsize), v.span)
		}
		if i > 0 && bytes.Compare(prev, k) >= 0 {
			return nil, nil, nil, fmt.Errorf("page %d: key %d not above the one before", id, i)
		}
		if i == 0 {
			first = k
		}
		prev = k
		if flags&boltBucketLeaf == 0 {
			continue
		}
		if vsize < boltBucketHeader {
			return nil, nil, nil, fmt.Errorf("page %d: bucket %q: header of %d bytes", id, k, vsize)
		}
		// Key and bucket header were planned as one range: read them as one.
		kv, err := at(v, i, pos, ksize+vsize)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("page %d: bucket %q: %w", id, k, err)
		}
		val := kv[ksize:]
		bname := name + fmt.Sprintf("%q", k)
		if root := le.Uint64(val); root != 0 {
			buckets = append(buckets, bucketRef{name: bname, root: root, depth: depth + 1})
			continue
		}
		nested, err := parseInline(val[boltBucketHeader:], bname, depth)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("bucket %s: %w", bname, err)
		}
		buckets = append(buckets, nested...)
	}
	return first, prev, buckets, nil
}

// parseInline checks a bucket stored inside its parent's value: a leaf page without its own page
// id, whose keys are bounded by nothing outside it.
func parseInline(p []byte, name string, depth int) ([]bucketRef, error) {
	v := &pageView{span: uint64(len(p)), head: p}
	flags, err := v.u16(8)
	if err != nil {
		return nil, errors.New("inline bucket shorter than a page header")
	}
	if flags != boltLeafPage {
		return nil, fmt.Errorf("inline bucket: type %#x", flags)
	}
	_, _, buckets, err := parseLeaf(0, v, name+"/", depth+1)
	return buckets, err
}

// finish walks the tree from the root over the summaries; Write must have seen the whole database.
func (c *boltCheck) finish() error {
	if c.next < c.hwm {
		return fmt.Errorf("the database ends at page %d of %d", c.next, c.hwm)
	}
	w := &boltWalk{c: c, seen: make([]uint64, c.hwm/64+1)}
	if c.freelist != boltNoFreelist {
		s, err := w.page(c.freelist)
		if err != nil {
			return fmt.Errorf("freelist: %w", err)
		}
		if s.flags != boltFreelistPage {
			return fmt.Errorf("freelist page %d: type %#x", c.freelist, s.flags)
		}
		if s.err != nil {
			return s.err
		}
	}
	return w.bucket(c.root, 0)
}

type boltWalk struct {
	c    *boltCheck
	seen []uint64 // bit per page: reached already
}

// page returns the summary of page id and checks that no other reference reached it before.
func (w *boltWalk) page(id uint64) (*pageSummary, error) {
	if id < 2 || id >= w.c.hwm {
		return nil, fmt.Errorf("page %d: out of bounds (high-water mark %d)", id, w.c.hwm)
	}
	s := w.c.pages[id]
	if s == nil {
		return nil, fmt.Errorf("page %d: its header does not name it: damaged, or the middle of another page", id)
	}
	if id+s.overflow >= w.c.hwm {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the high-water mark %d", id, s.overflow, w.c.hwm)
	}
	for p := id; p <= id+s.overflow; p++ {
		if w.seen[p/64]&(1<<(p%64)) != 0 {
			return nil, fmt.Errorf("page %d: referenced more than once", p)
		}
		w.seen[p/64] |= 1 << (p % 64)
	}
	return s, nil
}

// bucket checks the tree of a bucket whose root is page root (0: inline, nothing to follow).
func (w *boltWalk) bucket(root uint64, depth int) error {
	if root == 0 {
		return nil
	}
	_, err := w.node(root, nil, nil, depth)
	return err
}

// node checks page id and its subtree, whose keys must lie in [min, max) (nil: unbounded), and
// returns the subtree's greatest key.
func (w *boltWalk) node(id uint64, min, max []byte, depth int) ([]byte, error) {
	if depth > boltMaxDepth {
		return nil, fmt.Errorf("page %d: tree deeper than %d levels", id, boltMaxDepth)
	}
	s, err := w.page(id)
	if err != nil {
		return nil, err
	}
	if s.flags != boltBranchPage && s.flags != boltLeafPage {
		return nil, fmt.Errorf("page %d: type %#x where a branch or leaf page belongs", id, s.flags)
	}
	if s.err != nil {
		return nil, s.err
	}
	if s.flags == boltLeafPage {
		return w.leaf(id, s, min, max, depth)
	}
	running, last := min, []byte(nil)
	for i, k := range s.keys {
		if err := keyOrder(id, i, k, running, max); err != nil {
			return nil, err
		}
		upper := max
		if i < len(s.keys)-1 {
			upper = s.keys[i+1]
		}
		sub, err := w.node(s.children[i], k, upper, depth+1)
		if err != nil {
			return nil, err
		}
		running, last = sub, sub
	}
	return last, nil
}

func (w *boltWalk) leaf(id uint64, s *pageSummary, min, max []byte, depth int) ([]byte, error) {
	if len(s.keys) == 0 {
		return min, nil
	}
	// Within the page the keys ascend (parseLeaf checked): the first bounds them from below, the
	// last from above.
	if err := keyOrder(id, 0, s.keys[0], min, max); err != nil {
		return nil, err
	}
	if max != nil && bytes.Compare(s.keys[1], max) >= 0 {
		return nil, fmt.Errorf("page %d: last key not below the next key of its parent", id)
	}
	for _, b := range s.buckets {
		if err := w.bucket(b.root, depth+b.depth); err != nil {
			return nil, fmt.Errorf("bucket %s: %w", b.name, err)
		}
	}
	return s.keys[1], nil
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
