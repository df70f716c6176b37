// Package history stores run records: one row per run and one per check, in SQLite (a file,
// the default) or PostgreSQL (a postgres:// URL, for a history shared by several hosts or
// `serve` replicas). Both have the same schema and behaviour; the differences live in a
// dialect (sqlite.go, postgres.go) and one test suite runs against both.
//
// The engine calls Begin when a run starts, Update (or Heartbeat) while it runs and Finish
// once with the final record; a finished record never changes again, which is what the hash
// chain relies on (chain.go, docs/history.md). MarkAbandoned turns runs whose runner died into aborted
// ones. Several processes may use one database at once. A scheduled run's scenario and
// ScheduledFor are unique, so two replicas cannot both record one cron time (ErrDuplicateSchedule).
// Spool sits in front of a Store when a final record must survive the store being down.
package history

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
)

var (
	// ErrNotFound: no run has this id or prefix.
	ErrNotFound = errors.New("no such run")
	// ErrAmbiguous: more than one run starts with this prefix; the message lists them.
	ErrAmbiguous = errors.New("ambiguous run id")
	// ErrNotRunning: Update, Heartbeat or Finish on a run that is already finished (for
	// instance marked aborted by MarkAbandoned); a finished record is never changed.
	ErrNotRunning = errors.New("run is no longer running")
	// ErrDuplicateSchedule: Begin or Finish of a scheduled run whose scenario and ScheduledFor
	// another run already has — another replica ran it. The scheduler then does nothing.
	ErrDuplicateSchedule = errors.New("this scheduled run is already in the history")
)

// pathHint ends every error about where the history lives.
const pathHint = "choose another with --history or FIREDRILL_HISTORY"

// Store is the run history. It is safe for concurrent use, also by several processes.
type Store struct {
	db   *sql.DB
	d    dialect
	loc  Location
	now  func() time.Time
	host string // this host's name; runs of other hosts are judged by their heartbeat
	// signer signs every record Finish seals; nil: unsigned (SetSigner).
	signer atomic.Pointer[chain.Signer]
}

// Open opens the history at dsn and brings its schema up to date. dsn is a file path or
// sqlite:///abs/path (the file and its directory are created, 0600 and 0700, when missing), or
// a postgres:// or postgresql:// URL of an existing database, whose current schema (set it with
// ?search_path=NAME) gets firedrill's tables. A database written by a newer firedrill is
// refused rather than modified.
func Open(ctx context.Context, dsn string) (*Store, error) {
	return open(ctx, dsn, nil)
}

// open is Open with a hook that changes the dialect, for tests (older schemas).
func open(ctx context.Context, dsn string, adjust func(*dialect)) (*Store, error) {
	loc, err := ParseLocation(dsn)
	if err != nil {
		return nil, err
	}
	d, where, conn := sqliteDialect(), loc.String(), loc.Path
	if loc.Postgres {
		d, conn = postgresDialect(), loc.DSN
	} else if err := prepareFile(loc.Path); err != nil {
		return nil, fmt.Errorf("open history %s: %w; %s", where, err, pathHint)
	}
	if adjust != nil {
		adjust(&d)
	}
	db, err := sql.Open(d.driver, d.connString(conn))
	if err != nil {
		return nil, fmt.Errorf("open history %s: %w", where, d.describe(err))
	}
	host, _ := os.Hostname()
	s := &Store{db: db, d: d, loc: loc, now: time.Now, host: host}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open history %s: %w", where, err)
	}
	if d.verify != nil {
		if err := d.verify(ctx, db); err != nil {
			db.Close()
			return nil, fmt.Errorf("open history %s: %w", where, err)
		}
	}
	return s, nil
}

// prepareFile creates the directory and the file with owner-only permissions (SQLite creates
// -wal and -shm with the file's), and turns the usual mistakes into plain words before SQLite
// can report them as "unable to open database file".
func prepareFile(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return errors.New("is a directory, want a file")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create its directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// Location is where the history lives.
func (s *Store) Location() Location { return s.loc }

// Close closes the database.
func (s *Store) Close() error {
	return s.db.Close()
}

// Begin records a run that has just started. Its Result must be Running.
func (s *Store) Begin(ctx context.Context, r *drill.Record) error {
	if err := validate(r); err != nil {
		return fmt.Errorf("begin run: %w", err)
	}
	if r.Result != drill.Running {
		return fmt.Errorf("begin run %s: result is %q, want %q (a final record goes to Finish)", r.ID, r.Result, drill.Running)
	}
	row, err := s.encode(r, nil)
	if err != nil {
		return fmt.Errorf("begin run %s: %w", r.ID, err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.insertRun, row.insertArgs()...)
		if err != nil {
			return s.duplicateSchedule(err, r)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errors.New("a run with this id is already in the history")
		}
		return s.writeChecks(ctx, tx, r)
	})
	if err != nil {
		return fmt.Errorf("begin run %s: %w", r.ID, err)
	}
	return nil
}

// Update stores the progress of a running run (steps and checks so far) and refreshes its
// heartbeat. The record's Result must still be Running.
func (s *Store) Update(ctx context.Context, r *drill.Record) error {
	if err := validate(r); err != nil {
		return fmt.Errorf("update run: %w", err)
	}
	if r.Result != drill.Running {
		return fmt.Errorf("update run %s: result is %q, want %q (a final record goes to Finish)", r.ID, r.Result, drill.Running)
	}
	row, err := s.encode(r, nil)
	if err != nil {
		return fmt.Errorf("update run %s: %w", r.ID, err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.updateRun, row.updateArgs()...)
		if err != nil {
			return err
		}
		if err := s.touchedRunning(ctx, tx, res, r.ID); err != nil {
			return err
		}
		return s.writeChecks(ctx, tx, r)
	})
	if err != nil {
		return fmt.Errorf("update run %s: %w", r.ID, err)
	}
	return nil
}

// Heartbeat says a run is still alive without rewriting its record, for a ticker that must
// not read a record the engine is changing.
func (s *Store) Heartbeat(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, s.d.heartbeat, dbTime(s.now()), id)
	if err == nil {
		err = s.touchedRunning(ctx, s.db, res, id)
	}
	if err != nil {
		return fmt.Errorf("heartbeat of run %s: %w", id, s.d.describe(err))
	}
	return nil
}

// Finish stores the final record of a run. The run need not have been begun (a run that
// failed before its first write still gets its record, and `serve` records skipped and missed
// runs only here), but it must not be finished already. FinishedAt must be set and Result must
// be final: passed, failed, error, aborted, skipped or missed.
func (s *Store) Finish(ctx context.Context, r *drill.Record) error {
	if err := validateFinal(r); err != nil {
		return err
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		return s.finish(ctx, tx, r)
	})
	if err != nil {
		return fmt.Errorf("finish run %s: %w", r.ID, err)
	}
	return nil
}

// finish writes a final record inside tx, giving it the next seq and sealing it into the hash
// chain: prev_hash is the hash of the run with the highest seq, read in this same write
// transaction, so two processes finishing at once still form one chain.
func (s *Store) finish(ctx context.Context, tx *sql.Tx, r *drill.Record) error {
	if s.d.writeLock != "" {
		if _, err := tx.ExecContext(ctx, s.d.writeLock); err != nil {
			return err
		}
	}
	var state string
	exists := true
	switch err := tx.QueryRowContext(ctx, s.d.runResult, r.ID).Scan(&state); {
	case errors.Is(err, sql.ErrNoRows):
		exists = false
	case err != nil:
		return err
	case state != string(drill.Running):
		return fmt.Errorf("%w: it was already finished as %s", ErrNotRunning, state)
	}
	var seq int64
	if err := tx.QueryRowContext(ctx, s.d.nextSeq).Scan(&seq); err != nil {
		return err
	}
	if err := s.seal(ctx, tx, r); err != nil {
		return err
	}
	row, err := s.encode(r, &seq)
	if err != nil {
		return err
	}
	if !exists {
		_, err = tx.ExecContext(ctx, s.d.insertRun, row.insertArgs()...)
	} else {
		_, err = tx.ExecContext(ctx, s.d.updateRun, row.updateArgs()...)
	}
	if err != nil {
		return s.duplicateSchedule(err, r)
	}
	return s.writeChecks(ctx, tx, r)
}

// duplicateSchedule turns the unique index on (scenario, scheduled_for) refusing r into
// ErrDuplicateSchedule, and returns any other error unchanged.
func (s *Store) duplicateSchedule(err error, r *drill.Record) error {
	if !s.d.isDuplicateSchedule(err) || r.ScheduledFor == nil {
		return err
	}
	return fmt.Errorf("%w: scenario %s already has a run scheduled for %s", ErrDuplicateSchedule,
		r.Scenario, r.ScheduledFor.UTC().Format(time.RFC3339))
}

// Ping checks that the store answers.
func (s *Store) Ping(ctx context.Context) error {
	err := s.db.PingContext(ctx)
	// database/sql retries getting a connection but not the ping itself, and a pooled
	// connection that the server closed (it restarted) fails its ping and is dropped; the
	// pool keeps at most 2 idle ones.
	for i := 0; i < 3 && errors.Is(err, driver.ErrBadConn); i++ {
		err = s.db.PingContext(ctx)
	}
	if err != nil {
		return fmt.Errorf("history %s: %w", s.loc, s.d.describe(err))
	}
	return nil
}

// LastScheduled returns the ScheduledFor of the newest run of scenario that has one (any
// result, running included), or the zero time.
func (s *Store) LastScheduled(ctx context.Context, scenario string) (time.Time, error) {
	var v sql.NullString
	if err := s.db.QueryRowContext(ctx, s.d.lastSched, scenario).Scan(&v); err != nil {
		return time.Time{}, fmt.Errorf("last scheduled run of %s: %w", scenario, s.d.describe(err))
	}
	if !v.Valid {
		return time.Time{}, nil
	}
	t, err := parseDBTime(v.String)
	if err != nil {
		return time.Time{}, fmt.Errorf("last scheduled run of %s: scheduled_for %q: %w", scenario, v.String, err)
	}
	return t, nil
}

// queryRower is what *sql.DB and *sql.Tx have in common here.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// touchedRunning turns "no row updated" into ErrNotFound or ErrNotRunning.
func (s *Store) touchedRunning(ctx context.Context, q queryRower, res sql.Result, id string) error {
	n, err := res.RowsAffected()
	if err != nil || n > 0 {
		return err
	}
	var state string
	if err := q.QueryRowContext(ctx, s.d.runResult, id).Scan(&state); errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w (Begin was not called)", ErrNotFound)
	} else if err != nil {
		return err
	}
	return fmt.Errorf("%w: it was finished as %s", ErrNotRunning, state)
}

func (s *Store) writeChecks(ctx context.Context, tx *sql.Tx, r *drill.Record) error {
	if _, err := tx.ExecContext(ctx, s.d.delChecks, r.ID); err != nil {
		return err
	}
	for i, c := range r.Checks {
		var evidence any // NULL when there is none
		if c.Evidence != nil {
			b, err := marshal(c.Evidence)
			if err != nil {
				return fmt.Errorf("evidence of check %q: %w", c.Name, err)
			}
			evidence = string(b)
		}
		_, err := tx.ExecContext(ctx, s.d.insCheck,
			r.ID, i, c.Name, c.Type, string(c.Result), c.Message, c.Seconds, evidence)
		if err != nil {
			return err
		}
	}
	return nil
}

// inTx runs fn in a write transaction (BEGIN IMMEDIATE on SQLite) and commits it.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err == nil {
		defer tx.Rollback() //nolint:errcheck // a no-op after Commit
		err = fn(tx)
	}
	if err == nil {
		err = tx.Commit()
	}
	if err != nil && ctx.Err() != nil {
		return context.Cause(ctx) // not the lock's fault: the caller gave up
	}
	if err != nil && !errors.Is(err, ErrDuplicateSchedule) {
		return s.d.describe(err)
	}
	return err
}

// validateFinal checks what Finish needs of a record, so that Spool can tell a record the store
// would refuse from a store that is down.
func validateFinal(r *drill.Record) error {
	if err := validate(r); err != nil {
		return fmt.Errorf("finish run: %w", err)
	}
	switch r.Result {
	case drill.Passed, drill.Failed, drill.Error, drill.Aborted, drill.Skipped, drill.Missed:
	default:
		return fmt.Errorf("finish run %s: result is %q, want passed, failed, error, aborted, skipped or missed", r.ID, r.Result)
	}
	if r.FinishedAt == nil || r.FinishedAt.IsZero() {
		return fmt.Errorf("finish run %s: finishedAt is not set", r.ID)
	}
	return nil
}

// validate checks what every stored record needs.
func validate(r *drill.Record) error {
	switch {
	case r == nil:
		return errors.New("no record")
	case r.ID == "":
		return errors.New("record has no id")
	case !utf8.ValidString(r.ID) || !utf8.ValidString(r.Scenario):
		return fmt.Errorf("run %q: id and scenario must be UTF-8 text", r.ID)
	case r.Scenario == "":
		return fmt.Errorf("run %s has no scenario", r.ID)
	case r.StartedAt.IsZero():
		return fmt.Errorf("run %s has no startedAt", r.ID)
	}
	return nil
}
