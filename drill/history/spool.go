package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// Spool is a drill.Recorder in front of a Store that never loses a final record: when the
// store cannot be reached, Finish writes the record to a file in dir (0600, fsynced) and
// returns nil; Flush writes spooled records to the store (oldest first) and removes their
// files. Begin and Update failures are logged and do not stop the drill.
//
// A spooled record gets its place in the hash chain when it is flushed, not when its run
// ended. Files that cannot be read back are moved to dir/corrupt, records the store refuses
// for good to dir/rejected; neither is ever deleted.
type Spool struct {
	store *Store
	dir   string
	log   *slog.Logger
	flush sync.Mutex // one Flush at a time, so that no file is written twice at once
}

var _ drill.Recorder = (*Spool)(nil)

const (
	spoolExt       = ".json"
	spoolCorrupt   = "corrupt"
	spoolRejected  = "rejected"
	spoolTmpPrefix = ".tmp-"
)

// NewSpool returns a Spool over store, creating dir (0700) if needed; records already in dir
// (from an earlier process) are kept for Flush.
func NewSpool(store *Store, dir string, log *slog.Logger) (*Spool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("history spool %s: %w", dir, err)
	}
	// Find out now, not when the store is down and the spool is all there is.
	f, err := os.CreateTemp(dir, spoolTmpPrefix+"probe-")
	if err != nil {
		return nil, fmt.Errorf("history spool %s is not writable: %w; choose another directory", dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	s := &Spool{store: store, dir: dir, log: log}
	if n := s.Pending(); n > 0 {
		log.Info("history spool holds records from before; they are written once the store answers", "dir", dir, "records", n)
	}
	return s, nil
}

// Begin records the start of a run. A duplicate scheduled run is refused, as by the store;
// any other failure is logged and the drill goes on (Finish then stores the whole record).
func (s *Spool) Begin(ctx context.Context, r *drill.Record) error {
	err := s.store.Begin(ctx, r)
	if err == nil || errors.Is(err, ErrDuplicateSchedule) {
		return err
	}
	s.log.Warn("history: could not record the start of a run; its final record will be kept", "run", r.ID, "err", err)
	return nil
}

// Update records progress; a failure is logged and the drill goes on. A run whose Begin did
// not get through (the store was down) is begun now, so that it shows as running once the
// store is back.
func (s *Spool) Update(ctx context.Context, r *drill.Record) error {
	err := s.store.Update(ctx, r)
	if errors.Is(err, ErrNotFound) {
		err = s.store.Begin(ctx, r)
	}
	if err != nil {
		s.log.Warn("history: could not record the progress of a run", "run", r.ID, "err", err)
	}
	return nil
}

// Finish stores the final record, or spools it when the store fails. It returns an error
// only for a record the store would never take (invalid, a duplicate scheduled run, a run
// already finished, which is kept in dir/rejected), or when the store and the spool both fail.
func (s *Spool) Finish(ctx context.Context, r *drill.Record) error {
	if err := validateFinal(r); err != nil {
		return err
	}
	err := s.store.Finish(ctx, r)
	if err == nil || errors.Is(err, ErrDuplicateSchedule) {
		return err
	}
	if errors.Is(err, ErrNotRunning) {
		// Finished otherwise meanwhile (MarkAbandoned while the store was down, say): the
		// history keeps that, and this record is kept aside as evidence of how it ended.
		if path, werr := s.write(r); werr == nil {
			_ = s.reject(filepath.Base(path), r, err)
		}
		return err
	}
	path, serr := s.write(r)
	if serr != nil {
		return fmt.Errorf("%w; and it could not be spooled either: %v", err, serr)
	}
	s.log.Warn("history: the store did not take a final record; spooled it to write later", "run", r.ID, "file", path, "err", err)
	return nil
}

// write puts r into a new spool file: written to a temporary name, fsynced, renamed, and the
// directory fsynced, so that after a crash the file is either whole or absent.
func (s *Spool) write(r *drill.Record) (string, error) {
	u := inUTC(r)
	b, err := json.Marshal(&u)
	if err != nil {
		return "", err
	}
	// The name sorts by when the record was spooled, which is the order Flush writes in.
	name := fmt.Sprintf("%s-%s%s", time.Now().UTC().Format("20060102T150405.000000000Z"), safeName(r.ID), spoolExt)
	f, err := os.CreateTemp(s.dir, spoolTmpPrefix+"*") // 0600
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, name))
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return filepath.Join(s.dir, name), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// safeName keeps a run id readable in a file name without letting it name another place.
func safeName(id string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, id)
}

// files returns the spooled records' file names, oldest first.
func (s *Spool) files() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), spoolExt) && !strings.HasPrefix(e.Name(), spoolTmpPrefix) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// Flush writes every spooled record to the store; it returns how many it wrote and the first
// error (the rest stay spooled). A record the store already has, finished the same way (its
// Finish got through but the answer did not), counts as written. A file that can't be read
// is moved to dir/corrupt and reported, and Flush goes on with the next; a record the store
// refuses for good (finished otherwise meanwhile, or another replica ran that scheduled time)
// is moved to dir/rejected and logged.
func (s *Spool) Flush(ctx context.Context) (int, error) {
	s.flush.Lock()
	defer s.flush.Unlock()
	names, err := s.files()
	if err != nil {
		return 0, fmt.Errorf("history spool %s: %w", s.dir, err)
	}
	written := 0
	var first error
	keep := func(err error) {
		if first == nil {
			first = err
		}
	}
	for _, name := range names {
		path := filepath.Join(s.dir, name)
		var r drill.Record
		b, err := os.ReadFile(path)
		if err == nil {
			err = decode(b, &r)
		}
		if err == nil {
			err = validateFinal(&r)
		}
		if err != nil {
			moved, merr := s.moveAside(name, spoolCorrupt)
			if merr != nil {
				keep(fmt.Errorf("history spool: %s can't be read (%v) nor moved aside: %w", path, err, merr))
				continue
			}
			s.log.Error("history spool: a spooled record can't be read; moved it aside, look at it by hand", "file", moved, "err", err)
			keep(fmt.Errorf("history spool: %s can't be read (%v): moved to %s; look at it by hand", path, err, moved))
			continue
		}
		err = s.store.Finish(ctx, &r)
		if errors.Is(err, ErrNotRunning) {
			var same bool
			if same, err = s.sameAsStored(ctx, &r); err == nil && !same {
				err = s.reject(name, &r, errors.New("the history has this run finished otherwise"))
				if err == nil {
					continue
				}
			}
		} else if errors.Is(err, ErrDuplicateSchedule) {
			if err = s.reject(name, &r, err); err == nil {
				continue
			}
		}
		if err != nil {
			keep(fmt.Errorf("history spool: run %s: %w", r.ID, err))
			break // the store is down, most likely; the rest keep their order
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			keep(fmt.Errorf("history spool: run %s is stored but its file stays: %w", r.ID, err))
			break
		}
		written++
	}
	if written > 0 {
		if err := syncDir(s.dir); err != nil {
			keep(fmt.Errorf("history spool %s: %w", s.dir, err))
		}
	}
	return written, first
}

// sameAsStored says whether the history has r's run finished as r says: then an earlier
// write got through and only its answer was lost. Otherwise the run was finished another way
// (MarkAbandoned), and r is set aside as evidence.
func (s *Spool) sameAsStored(ctx context.Context, r *drill.Record) (bool, error) {
	got, err := s.store.Get(ctx, r.ID)
	if err != nil {
		return false, err
	}
	return got.Result == r.Result && got.FinishedAt != nil && got.FinishedAt.Equal(*r.FinishedAt), nil
}

func (s *Spool) reject(name string, r *drill.Record, why error) error {
	moved, err := s.moveAside(name, spoolRejected)
	if err != nil {
		return err
	}
	s.log.Warn("history spool: the store refuses a spooled record for good; moved it aside", "run", r.ID, "result", r.Result, "file", moved, "why", why)
	return nil
}

func (s *Spool) moveAside(name, sub string) (string, error) {
	dir := filepath.Join(s.dir, sub)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	to := filepath.Join(dir, name)
	if err := os.Rename(filepath.Join(s.dir, name), to); err != nil {
		return "", err
	}
	return to, syncDir(s.dir)
}

// Pending returns how many records wait in the spool.
func (s *Spool) Pending() int {
	names, err := s.files()
	if err != nil {
		return 0
	}
	return len(names)
}

// Retry writes what waits in the spool to the store, logging what it wrote and, unless ctx
// is done, why the rest waits; it returns how many records still wait.
func (s *Spool) Retry(ctx context.Context) int {
	if s.Pending() > 0 {
		n, err := s.Flush(ctx)
		if n > 0 {
			s.log.Info("wrote spooled records to the history", "records", n)
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("history still unreachable; records stay spooled", "records", s.Pending(), "err", err)
		}
	}
	return s.Pending()
}

// Run calls Retry at once and every interval until ctx is done; what it can't write stays for
// the next time. pending, when not nil, is told how many records wait after each pass (a gauge).
func (s *Spool) Run(ctx context.Context, every time.Duration, pending func(int)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n := s.Retry(ctx)
		if pending != nil {
			pending(n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
