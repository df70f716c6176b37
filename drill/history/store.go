// Package history stores run records: one row per run and one per check, in SQLite for now.
//
// The engine calls Begin when a run starts, Update (or Heartbeat) while it runs and Finish
// once with the final record; a finished record never changes again, which is what the hash
// chain of a later issue relies on. MarkAbandoned turns runs whose runner died into aborted
// ones. Several processes may use one database at once.
package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

var (
	// ErrNotFound: no run has this id or prefix.
	ErrNotFound = errors.New("no such run")
	// ErrAmbiguous: more than one run starts with this prefix; the message lists them.
	ErrAmbiguous = errors.New("ambiguous run id")
	// ErrNotRunning: Update, Heartbeat or Finish on a run that is already finished (for
	// instance marked aborted by MarkAbandoned); a finished record is never changed.
	ErrNotRunning = errors.New("run is no longer running")
)

// pathHint ends every error about where the history lives.
const pathHint = "choose another with --history or FIREDRILL_HISTORY"

// Store is the run history. It is safe for concurrent use, also by several processes.
type Store struct {
	db   *sql.DB
	d    dialect
	path string // for messages
	now  func() time.Time
	host string // this host's name; runs of other hosts are judged by their heartbeat
}

// DefaultPath is where the history lives unless --history says otherwise:
// $FIREDRILL_HISTORY (a path or URL), else $XDG_DATA_HOME/firedrill/history.db, else
// ~/.local/share/firedrill/history.db. It returns "" when none of them is set.
func DefaultPath(getenv func(string) string) string {
	if v := getenv("FIREDRILL_HISTORY"); v != "" {
		return v
	}
	// The XDG spec says to ignore a relative XDG_DATA_HOME.
	if v := getenv("XDG_DATA_HOME"); v != "" && filepath.IsAbs(v) {
		return filepath.Join(v, "firedrill", "history.db")
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".local", "share", "firedrill", "history.db")
	}
	return ""
}

// Open opens the history at dsn, a file path or sqlite:///abs/path, creating the file and
// its directory (0700) when missing, and brings its schema up to date. A database written by
// a newer firedrill is refused rather than modified.
func Open(ctx context.Context, dsn string) (*Store, error) {
	path, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if err := prepareFile(path); err != nil {
		return nil, fmt.Errorf("open history %s: %w; %s", path, err, pathHint)
	}
	d := sqliteDialect()
	db, err := sql.Open(d.driver, d.connString(path))
	if err != nil {
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	host, _ := os.Hostname()
	s := &Store{db: db, d: d, path: path, now: time.Now, host: host}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	if err := d.verify(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	return s, nil
}

// parseDSN returns the file path of dsn or why it can't be used.
func parseDSN(dsn string) (string, error) {
	if dsn == "" {
		return "", fmt.Errorf("no history path: set --history or FIREDRILL_HISTORY, or HOME")
	}
	scheme, rest, isURL := strings.Cut(dsn, "://")
	if !isURL || strings.ContainsAny(scheme, `/\.`) {
		return filepath.Abs(dsn)
	}
	switch strings.ToLower(scheme) {
	case "sqlite", "sqlite3", "file":
		if rest == "" || rest == "/" {
			return "", fmt.Errorf("history %q names no file: want sqlite:///abs/path", dsn)
		}
		return filepath.Abs(rest)
	case "postgres", "postgresql":
		return "", fmt.Errorf("history %s: PostgreSQL is not supported yet; use a file path with --history or FIREDRILL_HISTORY", redactURL(dsn))
	}
	return "", fmt.Errorf("history %s: unknown scheme %q: want a file path or sqlite:///abs/path", redactURL(dsn), scheme)
}

// redactURL drops a password from a URL before it goes into an error message.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
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
			return err
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
// failed before its first write still gets its record), but it must not be finished already.
// FinishedAt must be set and Result must be final: passed, failed, error or aborted.
func (s *Store) Finish(ctx context.Context, r *drill.Record) error {
	if err := validate(r); err != nil {
		return fmt.Errorf("finish run: %w", err)
	}
	switch r.Result {
	case drill.Passed, drill.Failed, drill.Error, drill.Aborted:
	default:
		return fmt.Errorf("finish run %s: result is %q, want passed, failed, error or aborted", r.ID, r.Result)
	}
	if r.FinishedAt == nil || r.FinishedAt.IsZero() {
		return fmt.Errorf("finish run %s: finishedAt is not set", r.ID)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		return s.finish(ctx, tx, r)
	})
	if err != nil {
		return fmt.Errorf("finish run %s: %w", r.ID, err)
	}
	return nil
}

// finish writes a final record inside tx, giving it the next seq.
// This is where the hash chain goes: prev_hash is the hash of the run with seq-1, read in
// this same write transaction, so two processes finishing at once still form one chain.
func (s *Store) finish(ctx context.Context, tx *sql.Tx, r *drill.Record) error {
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
		return err
	}
	return s.writeChecks(ctx, tx, r)
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
	if err != nil {
		return s.d.describe(err)
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
	case r.Scenario == "":
		return fmt.Errorf("run %s has no scenario", r.ID)
	case r.StartedAt.IsZero():
		return fmt.Errorf("run %s has no startedAt", r.ID)
	}
	return nil
}
