package history

import "database/sql"

// readAhead reads a query's rows on a goroutine of its own, copied into batches, so that the
// database's work (for SQLite, a third of verifying a history) overlaps with the caller's.
// It is used like sql.Rows: Next, Row, Err and Close, from one goroutine.
type readAhead struct {
	full, free chan *rowBatch
	stop       chan struct{}
	finished   chan struct{}
	cur        *rowBatch
	next       int // the row of cur that Next returns next
	row        [][]byte
	err        error
}

// readAheadRows is how many rows a batch holds; three batches circulate.
const readAheadRows = 128

// rowBatch holds rows of text values, each a span of buf (nil for NULL).
type rowBatch struct {
	buf   []byte
	cells []cell
	n     int   // rows
	err   error // why reading ended after these rows; nil at the end of the rows
}

type cell struct {
	from, to int
	null     bool
}

// startReadAhead takes over rows, whose columns it scans as text (sql.RawBytes: numbers as
// strconv formats them), and closes them when done.
func startReadAhead(rows *sql.Rows, columns int) *readAhead {
	r := &readAhead{full: make(chan *rowBatch, 3), free: make(chan *rowBatch, 3), stop: make(chan struct{}),
		finished: make(chan struct{}), row: make([][]byte, columns)}
	for range 3 {
		r.free <- &rowBatch{}
	}
	go r.produce(rows, columns)
	return r
}

func (r *readAhead) produce(rows *sql.Rows, columns int) {
	defer close(r.finished)
	defer close(r.full)
	defer rows.Close()
	vals := make([]sql.RawBytes, columns)
	dest := make([]any, columns)
	for i := range vals {
		dest[i] = &vals[i]
	}
	var b *rowBatch
	for {
		if b == nil {
			select {
			case b = <-r.free:
				b.buf, b.cells, b.n, b.err = b.buf[:0], b.cells[:0], 0, nil
			case <-r.stop:
				return
			}
		}
		if !rows.Next() {
			b.err = rows.Err()
			break
		}
		if err := rows.Scan(dest...); err != nil {
			b.err = err
			break
		}
		for _, v := range vals {
			b.cells = append(b.cells, cell{from: len(b.buf), to: len(b.buf) + len(v), null: v == nil})
			b.buf = append(b.buf, v...)
		}
		b.n++
		if b.n == readAheadRows {
			select {
			case r.full <- b:
				b = nil
			case <-r.stop:
				return
			}
		}
	}
	select {
	case r.full <- b:
	case <-r.stop:
	}
}

// Next makes the next row current; false at the end of the rows or on an error (Err).
func (r *readAhead) Next() bool {
	for r.cur == nil || r.next >= r.cur.n {
		if r.cur != nil {
			if r.cur.err != nil {
				r.err = r.cur.err
				return false
			}
			r.free <- r.cur // room for every batch: never blocks
			r.cur = nil
		}
		b, ok := <-r.full
		if !ok {
			return false
		}
		r.cur, r.next = b, 0
	}
	cells := r.cur.cells[r.next*len(r.row) : (r.next+1)*len(r.row)]
	for i, c := range cells {
		r.row[i] = nil
		if !c.null {
			r.row[i] = r.cur.buf[c.from:c.to:c.to]
		}
	}
	r.next++
	return true
}

// Row is the current row's values, NULL as nil; valid until the next call of Next.
func (r *readAhead) Row() [][]byte { return r.row }

// Err is why reading stopped early, if it did.
func (r *readAhead) Err() error { return r.err }

// Close stops reading and closes the rows.
func (r *readAhead) Close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.finished
}
