package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// TakeOptions says where to take a snapshot from and where to put it.
type TakeOptions struct {
	// Endpoints are tried in order, each with a client of its own: a snapshot is the state of the
	// one member that streams it.
	Endpoints []string
	// TLS files for https endpoints; nil for plain ones.
	TLS *TLSFiles
	// DialTimeout bounds connecting to one endpoint and its first answer; 0: DefaultDialTimeout.
	DialTimeout time.Duration
	// StallTimeout ends an attempt when no bytes arrive for this long (a member that hangs, a
	// network that drops packets silently); 0: one minute.
	StallTimeout time.Duration
	// Path is the final path. The snapshot is written to a temporary file in the same directory
	// and renamed to Path only once it is complete, fsynced and its hash verified; an existing
	// file at Path is replaced then, never before. The directory must exist.
	Path string
	// Progress, when set, is called with the bytes written so far after each chunk (every
	// 256 KiB), from the goroutine that called Take; it must return quickly.
	Progress func(written int64)
}

// Snapshot is a snapshot file on local disk and where it came from.
type Snapshot struct {
	Path      string
	SHA256    string // hex, of the whole file as written
	SizeBytes int64
	Source    Source
	// Location: take: the endpoint used; dir: the directory; s3: s3://bucket/prefix.
	Location string
	Name     string // file name or object key
	// CreatedAt: take: when the snapshot request started; dir: mtime; s3: LastModified. The RPO of a
	// drill is the age of this time.
	CreatedAt time.Time
	// SelectedBy says how the snapshot was chosen: "" for take, "mtime" for dir,
	// "s3-last-modified" for s3.
	SelectedBy string
	// Revision is the revision the snapshot holds (as etcdutl's snapshot status reports it), read
	// from the file by a few small reads; Version is the storage version the member reported
	// (empty before etcd 3.6). Take only: 0 and empty for dir and s3 (Inspect has them), and
	// Revision 0 too when the file's structure could not be followed to it.
	Revision int64
	Version  string
}

const defaultStallTimeout = time.Minute

// Source says where a snapshot came from.
type Source string

const (
	SourceTake Source = "take" // taken from a live etcd
	SourceDir  Source = "dir"  // the newest file of a directory
	SourceS3   Source = "s3"   // the newest object under an S3 prefix
)

// snapshotWindow is the gRPC flow-control window of a snapshot's connection and stream: how much
// the member may send ahead of what has been written. gRPC's default grows it up to 16 MiB, which
// a consumer writing to disk fills and holds in memory. 1 MiB allows 100 MiB/s at 10 ms of round
// trip, far more than within a data centre; a member across a slower, longer link streams at
// 1 MiB per round trip.
const snapshotWindow = 1 << 20

// Take streams a snapshot from the first endpoint that delivers a complete one, verifying etcd's
// appended SHA-256 as the bytes arrive. A failed or interrupted attempt leaves no file behind.
//
// When every endpoint fails the error is an *EndpointsError (errors.Is ErrUnreachable). When ctx
// ends the error wraps ctx.Err() and no further endpoint is tried. A local problem (the
// directory is missing, the disk is full) is returned at once: another endpoint would not help.
func Take(ctx context.Context, opts TakeOptions) (*Snapshot, error) {
	if opts.Path == "" {
		return nil, errors.New("take etcd snapshot: no output path given")
	}
	path, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("take etcd snapshot: %w", err)
	}
	opts.Path = path
	if st, err := os.Stat(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("take etcd snapshot: output directory: %w (create it first)", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("take etcd snapshot: %s is not a directory", filepath.Dir(path))
	}
	if _, err := clientConfig(opts.Endpoints, opts.TLS, opts.DialTimeout); err != nil {
		return nil, fmt.Errorf("take etcd snapshot: %w", err)
	}

	errs := make([]error, 0, len(opts.Endpoints))
	for _, ep := range opts.Endpoints {
		snap, err := takeFrom(ctx, ep, opts)
		if err == nil {
			return snap, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("take etcd snapshot from %s: interrupted: %w", ep, ctx.Err())
		}
		var local *localError
		if errors.As(err, &local) {
			return nil, fmt.Errorf("take etcd snapshot from %s: %w", ep, local.err)
		}
		errs = append(errs, err)
	}
	return nil, &EndpointsError{Op: "take a snapshot", Endpoints: opts.Endpoints, Errs: errs}
}

// localError marks a failure on this machine's side, which no other endpoint can fix.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

func takeFrom(ctx context.Context, endpoint string, opts TakeOptions) (*Snapshot, error) {
	cfg, err := clientConfig([]string{endpoint}, opts.TLS, opts.DialTimeout)
	if err != nil {
		return nil, &localError{err}
	}
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithInitialWindowSize(snapshotWindow), grpc.WithInitialConnWindowSize(snapshotWindow))
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	if err := probe(ctx, cli, endpoint, cfg.DialTimeout); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := opts.StallTimeout
	if stall <= 0 {
		stall = defaultStallTimeout
	}
	touch := watchStall(ctx, cancel, stall)

	started := time.Now()
	stream, err := openSnapshot(ctx, cli)
	if err != nil {
		return nil, streamError(ctx, "open snapshot stream", 0, err)
	}

	out, err := createAtomic(opts.Path)
	if err != nil {
		return nil, &localError{err}
	}
	defer out.abort()

	hp := newHashPipeline()
	defer hp.stop()
	var written int64
	for {
		// The stream yields a message (32 KiB) per read: gather a whole buffer before writing and
		// hashing it, so that there is one system call and one hand-over per buffer, not per message.
		buf := hp.buffer()
		n, rerr := fill(stream, buf, touch)
		if n > 0 {
			if _, err := out.Write(buf[:n]); err != nil {
				hp.release(buf)
				return nil, &localError{fmt.Errorf("write snapshot: %w", err)}
			}
			hp.hash(buf[:n])
			written += int64(n)
			if opts.Progress != nil {
				opts.Progress(written)
			}
		} else {
			hp.release(buf)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, streamError(ctx, "snapshot stream broke", written, rerr)
		}
	}
	sum := hp.sum()
	if !sum.hasHash {
		return nil, fmt.Errorf("snapshot stream ended after %d bytes without etcd's appended SHA-256: the member or the connection cut it short", written)
	}
	if !sum.hashMatches {
		return nil, fmt.Errorf("snapshot stream of %d bytes does not match the SHA-256 etcd appended: the data was damaged on the way", written)
	}
	if err := out.commit(); err != nil {
		return nil, &localError{err}
	}
	// etcd 3.6 sends no response header with a snapshot, so the revision comes from the file: the
	// last key of its tree, just written and still in the page cache.
	rev, _ := fileRevision(opts.Path)
	return &Snapshot{
		Revision:  rev,
		Version:   stream.Version(),
		Path:      opts.Path,
		SHA256:    sum.sha256,
		SizeBytes: sum.size,
		Source:    SourceTake,
		Location:  endpoint,
		Name:      filepath.Base(opts.Path),
		CreatedAt: started,
	}, nil
}

// fill reads from r until buf is full or r fails (io.EOF included), calling touch whenever bytes
// arrive.
func fill(r io.Reader, buf []byte, touch func()) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		if m > 0 {
			touch()
			n += m
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// streamError says how far a stream got and, when the stall watchdog ended it, that it stalled.
func streamError(ctx context.Context, what string, written int64, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
		err = cause
	}
	if written > 0 {
		return fmt.Errorf("%s after %d bytes: %w", what, written, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// watchStall cancels ctx with a cause when touch has not been called for d. It stops with ctx.
func watchStall(ctx context.Context, cancel context.CancelCauseFunc, d time.Duration) (touch func()) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	go func() {
		t := time.NewTicker(d / 4)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if now.Sub(time.Unix(0, last.Load())) > d {
					cancel(fmt.Errorf("stalled: no data for %v", d))
					return
				}
			}
		}
	}()
	return func() { last.Store(time.Now().UnixNano()) }
}
