package history

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/sqlite/*.sql
var sqliteMigrations embed.FS

// applicationID marks a SQLite file as a firedrill history ("FDRR"); migration 0001 sets it.
const applicationID = 1178882642

// busyTimeoutMillis is how long a writer waits for another process's write transaction.
// Ours last milliseconds, so a long wait means something is wrong, not busy.
const busyTimeoutMillis = 10000

// dialect is everything that differs between databases: the driver, the connection string,
// the migrations and every SQL statement. The store's logic is written once against it, so
// PostgreSQL is a second value of this type, not a second store.
type dialect struct {
	name       string // SQLite, PostgreSQL: for messages
	driver     string // for sql.Open
	migrations fs.FS  // NNNN_name.sql, applied in order
	// bind returns the placeholder of the nth argument, counting from 1.
	bind func(n int) string

	// connString turns a validated path or URL into what sql.Open takes.
	connString func(target string) string
	// describe turns a driver error into words an operator can act on, or returns it unchanged.
	describe func(err error) error
	// verify checks, once migrations are applied, that the connection settings took effect;
	// nil when there is nothing to check.
	verify func(ctx context.Context, db *sql.DB) error
	// isDuplicateSchedule says whether err is the unique index on (scenario, scheduled_for)
	// refusing a second run of one scheduled time.
	isDuplicateSchedule func(err error) bool
	// checkFile refuses a database that is not a firedrill history; runs inside the migration
	// transaction before anything is created.
	checkFile string // returns (application id, tables other than schema_migrations)
	// foreign says, in a few words, why checkFile's count of other tables means "not ours".
	foreign string
	// writeLock, when set, runs first in every transaction that reads before it writes in a
	// way that must not interleave with another process: migrating and finishing (seq is
	// max+1). SQLite needs none: BEGIN IMMEDIATE already lets one writer in at a time.
	writeLock string

	createMigrations string
	schemaVersion    string
	insertMigration  string

	insertRun string // id, then runColumns (runRow.insertArgs); does nothing if the id exists
	updateRun string // runColumns, then id (runRow.updateArgs); only touches a running run
	heartbeat string // heartbeat_at, id; only touches a running run
	runResult string // id -> result
	nextSeq   string
	getPrefix string // lower bound, upper bound -> id, scenario, started_at, record of runs
	getExact  string // id -> id, scenario, started_at, record of a run
	running   string // -> id, heartbeat_at, record of every running run
	lastSched string // scenario -> newest scheduled_for or NULL
	delChecks string // run_id
	insCheck  string // run_id, position, name, type, result, message, seconds, evidence
	// limit appends LIMIT/OFFSET for List; limit <= 0 means none.
	limit func(b *queryBuilder, limit, offset int)
}

// listQuery is List's query for f: newest first, id breaking ties, so that pages are stable.
// Only runs: a prune's checkpoint is in the chain but is no run. Standard SQL apart from the
// placeholders and d.limit.
func (d *dialect) listQuery(f Filter) (string, []any) {
	b := queryBuilder{d: d}
	b.sql.WriteString("SELECT record FROM runs")
	b.where("kind = 'run'")
	if f.Scenario != "" {
		b.where("scenario = " + b.arg(f.Scenario))
	}
	if !f.Since.IsZero() {
		b.where("started_at >= " + b.arg(dbTime(f.Since)))
	}
	if f.Result != "" {
		b.where("result = " + b.arg(string(f.Result)))
	}
	b.sql.WriteString(" ORDER BY started_at DESC, id DESC")
	d.limit(&b, f.Limit, f.Offset)
	return b.sql.String(), b.args
}

// runColumns are the columns runRow fills, in order.
const runColumns = `seq, scenario, trigger, operator, result, message, started_at, finished_at,
	rto_seconds, rpo_seconds, heartbeat_at, runner_host, runner_pid, runner_start_ticks,
	prev_hash, hash, signature, record, scheduled_for`

func sqliteDialect() dialect {
	cols := strings.Fields(strings.ReplaceAll(runColumns, ",", " "))
	set := make([]string, len(cols))
	for i, c := range cols {
		set[i] = c + " = ?"
	}
	return dialect{
		name:                "SQLite",
		driver:              "sqlite",
		migrations:          mustSub(sqliteMigrations, "migrations/sqlite"),
		bind:                func(int) string { return "?" },
		connString:          sqliteConnString,
		describe:            describeSQLiteError,
		verify:              verifySQLite,
		isDuplicateSchedule: isSQLiteDuplicateSchedule,
		checkFile: `SELECT (SELECT application_id FROM pragma_application_id),
			(SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name <> 'schema_migrations')`,
		foreign: "an SQLite database with other tables",

		createMigrations: `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER NOT NULL PRIMARY KEY,
			name       TEXT    NOT NULL,
			applied_at TEXT    NOT NULL
		) STRICT`,
		schemaVersion:   `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`,
		insertMigration: `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,

		insertRun: `INSERT INTO runs (id, ` + runColumns + `)
			VALUES (?` + strings.Repeat(", ?", len(cols)) + `)
			ON CONFLICT (id) DO NOTHING`,
		updateRun: `UPDATE runs SET ` + strings.Join(set, ", ") + `
			WHERE id = ? AND result = 'running'`,
		heartbeat: `UPDATE runs SET heartbeat_at = ? WHERE id = ? AND result = 'running'`,
		runResult: `SELECT result FROM runs WHERE id = ?`,
		nextSeq:   `SELECT COALESCE(MAX(seq), 0) + 1 FROM runs`,
		// A range on the primary key, so prefix lookups use the index and no LIKE escaping
		// is needed; SQLite compares TEXT bytewise.
		getPrefix: `SELECT id, scenario, started_at, record FROM runs
			WHERE id >= ? AND id < ? AND kind = 'run' ORDER BY id LIMIT 11`,
		getExact:  `SELECT id, scenario, started_at, record FROM runs WHERE id = ? AND kind = 'run'`,
		running:   `SELECT id, heartbeat_at, record FROM runs WHERE result = 'running' ORDER BY started_at, id`,
		lastSched: `SELECT MAX(scheduled_for) FROM runs WHERE scenario = ?`,
		delChecks: `DELETE FROM checks WHERE run_id = ?`,
		insCheck: `INSERT INTO checks (run_id, position, name, type, result, message, seconds, evidence)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		limit: func(b *queryBuilder, limit, offset int) {
			if limit <= 0 && offset <= 0 {
				return
			}
			if limit <= 0 {
				limit = -1 // SQLite needs a LIMIT before an OFFSET; -1 is none
			}
			b.sql.WriteString(" LIMIT " + b.arg(limit) + " OFFSET " + b.arg(offset))
		},
	}
}

// sqliteConnString builds a file: URI so that any byte in the path is escaped, and sets
// per connection: a busy timeout so concurrent firedrill processes wait for each other,
// foreign keys, WAL (readers never block the writer), full fsync on commit (a record is
// evidence; losing the last one on power loss is not acceptable), and BEGIN IMMEDIATE for
// every transaction so a read-then-write transaction takes the write lock up front instead
// of failing with SQLITE_BUSY when it upgrades.
func sqliteConnString(path string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMillis))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// verifySQLite refuses to go on without WAL: SQLite silently keeps its rollback journal where
// WAL can't work (some network filesystems), and there concurrent firedrills would block
// each other's reads or, worse, corrupt the file through broken locking.
func verifySQLite(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("SQLite could not use WAL mode here (journal_mode is %s): keep the history on a local filesystem; %s", mode, pathHint)
	}
	return nil
}

func describeSQLiteError(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_NOTADB:
		return errors.New("not an SQLite database; " + pathHint)
	case sqlite3.SQLITE_CANTOPEN:
		return errors.New("cannot open the database file or its -wal/-shm files; " + pathHint)
	case sqlite3.SQLITE_READONLY:
		return errors.New("the database is read-only; " + pathHint)
	case sqlite3.SQLITE_BUSY:
		return fmt.Errorf("the database is locked by another process (waited up to %ds)", busyTimeoutMillis/1000)
	}
	return err
}

// isSQLiteDuplicateSchedule: SQLite names the index's columns, not the index, in the error.
func isSQLiteDuplicateSchedule(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE &&
		strings.Contains(se.Error(), "runs.scheduled_for")
}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // only a wrong constant above can get here
	}
	return sub
}

// queryBuilder appends SQL with placeholders in the dialect's style.
type queryBuilder struct {
	d     *dialect
	sql   strings.Builder
	args  []any
	conds int
}

func (b *queryBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return b.d.bind(len(b.args))
}

// where appends a condition, "WHERE" the first time and "AND" after.
func (b *queryBuilder) where(cond string) {
	if b.conds == 0 {
		b.sql.WriteString(" WHERE ")
	} else {
		b.sql.WriteString(" AND ")
	}
	b.conds++
	b.sql.WriteString(cond)
}
