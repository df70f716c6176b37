package history

import (
	"embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

//go:embed migrations/postgres/*.sql
var postgresMigrations embed.FS

// connectTimeoutSeconds bounds a connection attempt when the URL does not say: a server that
// does not answer should become an error (and a spooled record), not a hung drill.
const connectTimeoutSeconds = 10

// postgresDialect is the SQLite dialect's statements with $n placeholders, and what differs:
// the schema (migrations/postgres), how a foreign database is recognised, the lock that
// serialises finishing runs, and LIMIT/OFFSET.
func postgresDialect() dialect {
	d := sqliteDialect()
	for _, q := range []*string{&d.insertMigration, &d.insertRun, &d.updateRun, &d.heartbeat, &d.runResult,
		&d.nextSeq, &d.getPrefix, &d.getExact, &d.running, &d.lastSched, &d.delChecks, &d.insCheck} {
		*q = rebind(*q)
	}
	d.name = "PostgreSQL"
	d.driver = "pgx"
	d.migrations = mustSub(postgresMigrations, "migrations/postgres")
	d.bind = func(n int) string { return "$" + strconv.Itoa(n) }
	d.connString = postgresConnString
	d.describe = describePostgresError
	d.verify = nil
	d.isDuplicateSchedule = func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "runs_scenario_scheduled"
	}
	// A database may hold other programs' tables; only tables with our names that we did not
	// create (ours has schema_migrations with applied_at) mean "not a firedrill history".
	// golang-migrate, for one, also makes a schema_migrations table.
	d.checkFile = `WITH ours AS (
			SELECT count(*) > 0 AS yes FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = 'schema_migrations' AND column_name = 'applied_at')
		SELECT CASE WHEN ours.yes THEN ` + strconv.Itoa(applicationID) + ` ELSE 0 END,
			CASE WHEN ours.yes THEN 0 ELSE (SELECT count(*) FROM pg_catalog.pg_tables
				WHERE schemaname = current_schema() AND tablename IN ('runs', 'checks', 'schema_migrations')) END
		FROM ours`
	d.foreign = "the database's schema has a runs, checks or schema_migrations table that firedrill did not create; " +
		"use another database, or another schema with ?search_path=NAME in the URL"
	// Transaction-scoped, so a crashed client cannot leave it held; the key is arbitrary
	// but fixed (the application id), and advisory locks are per database.
	d.writeLock = `SELECT pg_advisory_xact_lock(` + strconv.Itoa(applicationID) + `)`
	d.createMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER NOT NULL PRIMARY KEY,
			name       TEXT    NOT NULL,
			applied_at TEXT    NOT NULL
		)`
	d.limit = func(b *queryBuilder, limit, offset int) {
		if limit > 0 {
			b.sql.WriteString(" LIMIT " + b.arg(limit))
		}
		if offset > 0 {
			b.sql.WriteString(" OFFSET " + b.arg(offset))
		}
	}
	return d
}

// rebind turns ? placeholders into $1, $2, ...; none of our statements has a ? in a literal.
func rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// postgresConnString adds a connect timeout unless the URL sets one.
func postgresConnString(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn // ParseLocation has parsed it already; pgx will say what is wrong
	}
	q := u.Query()
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", strconv.Itoa(connectTimeoutSeconds))
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// describePostgresError turns what an operator can fix into words about it. pgx's own messages
// name the user, database and address but never the password.
func describePostgresError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return fmt.Errorf("the PostgreSQL server refused the login: %s; check the user and password in the URL (and the server's pg_hba.conf)", pe.Message)
		case "3D000": // invalid_catalog_name
			return fmt.Errorf("%s on the PostgreSQL server: create it (createdb NAME) or fix the database name in the URL", pe.Message)
		case "42501": // insufficient_privilege
			return fmt.Errorf("%s: the history's user needs to create and write tables in its schema (GRANT CREATE ON SCHEMA ...), or use a database it owns", pe.Message)
		case "57P01", "57P02", "57P03": // admin_shutdown, crash_shutdown, cannot_connect_now
			return fmt.Errorf("the PostgreSQL server is shutting down or starting up: %s; try again once it is up", pe.Message)
		case "53300": // too_many_connections
			return fmt.Errorf("the PostgreSQL server has no connection to spare: %s", pe.Message)
		}
		return err
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		cause := errors.Unwrap(ce)
		var op *net.OpError
		var dns *net.DNSError
		switch {
		case errors.As(err, &dns):
			return fmt.Errorf("cannot find the PostgreSQL server's host %s: %v; check the host in the URL", dns.Name, dns.Err)
		case errors.As(err, &op), pgconn.Timeout(err):
			return fmt.Errorf("cannot reach the PostgreSQL server: %v; check that it runs and that the URL's host and port are right", cause)
		}
		return fmt.Errorf("cannot connect to the PostgreSQL server: %v", cause)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("lost the connection to the PostgreSQL server: %w", err)
	}
	return err
}
