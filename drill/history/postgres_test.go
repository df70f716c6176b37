package history

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/firedrill-dev/firedrill/internal/pgtest"
)

// TestOpenPostgresRefuses: what an operator gets wrong about a PostgreSQL history is said in
// words about it, with the URL's password left out.
func TestOpenPostgresRefuses(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL (initdb, postgres): skipped under -short")
	}
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Shared(t)
	withUser := func(dsn, user string) string { return strings.Replace(dsn, "postgres@", user+"@", 1) }

	// A database with tables of another program under firedrill's names.
	foreign := srv.NewDatabase(t)
	migrateTool := srv.NewDatabase(t) // golang-migrate's table has the same name as ours
	for dsn, ddl := range map[string]string{
		foreign:     `CREATE TABLE runs (id int)`,
		migrateTool: `CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)`,
	} {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, ddl); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
	}
	// A free port with nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	missingDB := strings.Replace(srv.DSN, "/postgres?", "/no_such_db?", 1)

	for _, tc := range []struct {
		name, dsn string
		want      []string
	}{
		{"unreachable", fmt.Sprintf("postgres://fd:s3cret@127.0.0.1:%d/fd?sslmode=disable", closedPort),
			[]string{"cannot reach the PostgreSQL server", "connection refused", "host and port", fmt.Sprint(closedPort), "fd:xxxxx@"}},
		{"unknown user", withUser(srv.DSN, "nobody_here:s3cret"),
			[]string{"refused the login", `role "nobody_here" does not exist`, "user and password", "nobody_here:xxxxx@"}},
		{"missing database", withUser(missingDB, "postgres:s3cret"),
			[]string{`database "no_such_db" does not exist`, "createdb", "postgres:xxxxx@"}},
		{"password in the query", missingDB + "&password=s3cret", []string{"does not exist", "password=xxxxx"}},
		{"foreign tables", foreign, []string{"not a firedrill history", "did not create", "search_path"}},
		{"another program's schema_migrations", migrateTool, []string{"not a firedrill history"}},
	} {
		s, err := Open(ctx, tc.dsn)
		if err == nil {
			s.Close()
			t.Errorf("%s: Open(%q) succeeded", tc.name, tc.dsn)
			continue
		}
		t.Logf("%s: %v", tc.name, err)
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not mention %q", tc.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error shows the password: %q", tc.name, err)
		}
	}
	// The refused databases were left as they were.
	conn, err := pgx.Connect(ctx, migrateTool)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename IN ('runs', 'checks')`).Scan(&n); err != nil || n != 0 {
		t.Errorf("a refused database got firedrill's tables: %d, %v", n, err)
	}
}

// TestPostgresSchema: a history in a schema named by search_path, beside another program's
// tables, in a database whose collation is not bytewise (ICU English sorts "x-a" before
// "x-B"): ids and pages still sort as in SQLite.
func TestPostgresSchema(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL (initdb, postgres): skipped under -short")
	}
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Shared(t)
	admin, err := pgx.Connect(ctx, srv.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `CREATE DATABASE icu_en TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'`); err != nil {
		t.Fatal(err)
	}
	dsn := strings.Replace(srv.DSN, "/postgres?", "/icu_en?", 1)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var lt bool
	if _, err := conn.Exec(ctx, `CREATE SCHEMA firedrill; CREATE TABLE public.photos (id int)`); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT 'x-a' < 'x-B'`).Scan(&lt); err != nil || !lt {
		t.Fatalf("the database's collation sorts bytewise (%v, %v): the test proves nothing", lt, err)
	}

	s := openDSN(t, dsn+"&search_path=firedrill")
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"x-a", "x-B", "y"} {
		if err := s.Finish(ctx, fullRecord(id, t0, nil)); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := s.List(ctx, Filter{})
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	if got := strings.Join(ids, " "); err != nil || got != "y x-a x-B" {
		t.Errorf("List = %q, %v; want bytewise order y x-a x-B", got, err)
	}
	if _, err := s.Get(ctx, "x-"); !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), "x-B (") {
		t.Errorf("Get(x-): %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM firedrill.runs`).Scan(&n); err != nil || n != 3 {
		t.Errorf("runs in schema firedrill: %d, %v", n, err)
	}
}

func TestRebind(t *testing.T) {
	t.Parallel()
	if got := rebind(`SELECT a FROM t WHERE b = ? AND c IN (?, ?)`); got != `SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)` {
		t.Errorf("rebind: %s", got)
	}
}

func TestPrefixEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"abc", "abd", true},
		{"a\u007f", "a\u0080", true}, // the next code point, valid UTF-8, not byte 0x80
		{"é", "ê", true},
		{"a\U0010FFFF", "b", true},
		{"\ud7ff", "\ue000", true},
		{"\U0010FFFF", "", false},
	} {
		got, ok := prefixEnd(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("prefixEnd(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok && !(tc.in < got) {
			t.Errorf("prefixEnd(%q) = %q is not greater", tc.in, got)
		}
	}
}

// TestPostgresRestart: after the server restarts (or fails over), the connections the store
// kept are dead; the first Ping, read and transaction must take new ones instead of failing.
func TestPostgresRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL (initdb, postgres): skipped under -short")
	}
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t) // its own server: this test restarts it
	s := openDSN(t, srv.NewDatabase(t))
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	if err := s.Finish(ctx, fullRecord("before", t0, nil)); err != nil {
		t.Fatal(err)
	}
	// Hold two connections at once, so that two go back to the pool.
	tx1, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	tx2, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	tx1.Rollback()
	tx2.Rollback()
	if idle := s.db.Stats().Idle; idle < 2 {
		t.Fatalf("%d idle connections, want 2", idle)
	}

	for i, step := range []func() error{
		func() error { return s.Ping(ctx) },
		func() error { _, err := s.Get(ctx, "before"); return err },
		func() error { return s.Finish(ctx, fullRecord("after", t0.Add(time.Hour), nil)) },
	} {
		srv.Stop(t)
		srv.Restart(t)
		if err := step(); err != nil {
			t.Errorf("step %d after a restart: %v", i, err)
		}
	}
	assertOnce(t, s, "before", "after")
}
