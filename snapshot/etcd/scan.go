package etcd

import (
	"context"
	"fmt"
	"os"
)

// scan is what one pass over a snapshot file found.
type scan struct {
	digest    digest
	structure error // from checkBolt; nil when sound or not checked
}

// scanFile hashes the file and, when structure, checks its bbolt structure at the same time: the
// hash reads it in order, the check follows the tree with reads of its own and skips large values,
// so it adds little. err is for I/O problems and ctx only.
func scanFile(ctx context.Context, f *os.File, size int64, lay layout, structure bool) (s scan, err error) {
	structDone := make(chan error, 1)
	if structure {
		// A descriptor of its own: the hash moves the shared file offset.
		g, err := os.Open(f.Name())
		if err != nil {
			return s, err
		}
		go func() {
			defer g.Close()
			structDone <- checkBolt(ctx, g, lay)
		}()
	} else {
		structDone <- nil
	}
	s.digest, err = digestReader(ctx, f)
	if err == nil && s.digest.size != size {
		err = fmt.Errorf("%s changed while being read (%d bytes, then %d): is something still writing it?", f.Name(), size, s.digest.size)
	}
	s.structure = <-structDone
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return s, err
}
