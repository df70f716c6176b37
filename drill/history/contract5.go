package history

// CONTRACT (issue 5): names the serve command and the scheduler are written against. The
// helper implementing PostgreSQL and the spool replaces the placeholders and may move them
// into other files; the signatures stay.

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// ErrDuplicateSchedule: Begin or Finish of a scheduled run whose scenario and ScheduledFor
// another run already has — another replica ran it. The scheduler then does nothing.
var ErrDuplicateSchedule = errors.New("this scheduled run is already in the history")

// LastScheduled returns the ScheduledFor of the newest run of scenario that has one (any
// result, running included), or the zero time.
func (s *Store) LastScheduled(ctx context.Context, scenario string) (time.Time, error) {
	panic("not implemented")
}

// Ping checks that the store answers.
func (s *Store) Ping(ctx context.Context) error { panic("not implemented") }

// Spool is a drill.Recorder in front of a Store that never loses a final record: when the
// store cannot be reached, Finish writes the record to a file in dir (0600, fsynced) and
// returns nil; Flush writes spooled records to the store (oldest first) and removes their
// files. Begin and Update failures are logged and do not stop the drill.
type Spool struct{}

// NewSpool returns a Spool over store, creating dir (0700) if needed; records already in dir
// (from an earlier process) are kept for Flush.
func NewSpool(store *Store, dir string, log *slog.Logger) (*Spool, error) { panic("not implemented") }

func (s *Spool) Begin(ctx context.Context, r *drill.Record) error  { panic("not implemented") }
func (s *Spool) Update(ctx context.Context, r *drill.Record) error { panic("not implemented") }
func (s *Spool) Finish(ctx context.Context, r *drill.Record) error { panic("not implemented") }

// Flush writes every spooled record to the store; it returns how many it wrote and the first
// error (the rest stay spooled).
func (s *Spool) Flush(ctx context.Context) (int, error) { panic("not implemented") }

// Pending returns how many records wait in the spool.
func (s *Spool) Pending() int { panic("not implemented") }

// Run flushes every interval until ctx is done.
func (s *Spool) Run(ctx context.Context, every time.Duration) { panic("not implemented") }
