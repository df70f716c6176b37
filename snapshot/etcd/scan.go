package etcd

import (
	"context"
	"fmt"
	"io"
	"os"
)

// scan is what one pass over a snapshot file found.
type scan struct {
	digest    digest
	structure error // from boltCheck; nil when sound or not checked
}

// scanFile reads the file once, in order: it hashes it and, when structure, checks its bbolt
// structure from the same bytes. The hash runs on a goroutine of its own, so on two cores the pass
// takes as long as the hash alone. err is for I/O problems and ctx only.
func scanFile(ctx context.Context, f *os.File, size int64, lay layout, structure bool) (s scan, err error) {
	var bc *boltCheck
	if structure {
		bc = newBoltCheck(lay)
	}
	hp := newHashPipeline()
	defer hp.stop()
	for {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		buf := hp.buffer()
		n, rerr := io.ReadFull(f, buf)
		if n > 0 {
			// The hash goroutine only reads buf, and gives it back after; so does the check.
			hp.hash(buf[:n])
			if bc != nil {
				bc.Write(buf[:n])
			}
		} else {
			hp.release(buf)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return s, rerr
		}
	}
	s.digest = hp.sum()
	if s.digest.size != size {
		return s, fmt.Errorf("%s changed while being read (%d bytes, then %d): is something still writing it?", f.Name(), size, s.digest.size)
	}
	if bc != nil {
		s.structure = bc.finish()
	}
	return s, nil
}
