package pgtest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/firedrill-dev/firedrill/internal/pgtest"
)

// TestStartStopRestart: a database made by NewDatabase keeps its data across Stop and
// Restart on the same port, refuses connections while stopped, and the cleanup removes
// the directory.
func TestStartStopRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL: skipped under -short")
	}
	ctx := context.Background()
	var dir string
	t.Run("server", func(t *testing.T) {
		s := pgtest.Start(t)
		dir = s.Dir
		dsn := s.NewDatabase(t)
		exec := func(sql string) error {
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				return err
			}
			defer conn.Close(ctx)
			_, err = conn.Exec(ctx, sql)
			return err
		}
		if err := exec(`CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')`); err != nil {
			t.Fatal(err)
		}
		port := s.Port
		s.Stop(t)
		if err := exec(`SELECT 1`); err == nil {
			t.Fatal("a stopped server answered")
		}
		s.Restart(t)
		if s.Port != port {
			t.Errorf("port changed from %d to %d", port, s.Port)
		}
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var v string
		if err := conn.QueryRow(ctx, `SELECT v FROM t`).Scan(&v); err != nil || v != "kept" {
			t.Errorf("after restart: %q, %v", v, err)
		}
		if other := s.NewDatabase(t); other == dsn {
			t.Errorf("NewDatabase gave the same DSN twice: %s", dsn)
		}
	})
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("the server's directory %s is left behind: %v", dir, err)
	}
}

// TestFindBin: the binaries are found on PATH or in Debian's versioned directories, and their
// absence is an error that says what to install.
func TestFindBin(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, dir := range []string{"path/bin", "lib/14/bin", "lib/15/bin", "lib/16/bin"} {
		os.MkdirAll(filepath.Join(root, dir), 0o755)
		for _, name := range []string{"initdb", "postgres"} {
			if dir == "lib/16/bin" && name == "postgres" {
				continue // an incomplete installation is passed over
			}
			os.WriteFile(filepath.Join(root, dir, name), []byte("#!/bin/sh\n"), 0o755)
		}
	}
	glob := filepath.Join(root, "lib/*/bin/initdb")
	for _, tc := range []struct{ path, glob, want string }{
		{"/nonexistent" + string(filepath.ListSeparator) + filepath.Join(root, "path/bin"), glob, filepath.Join(root, "path/bin")},
		{"/nonexistent", glob, filepath.Join(root, "lib/15/bin")},
	} {
		if got, err := pgtest.FindBin(tc.path, tc.glob); err != nil || got != tc.want {
			t.Errorf("FindBin(%q, %q) = %q, %v; want %q", tc.path, tc.glob, got, err, tc.want)
		}
	}
	_, err := pgtest.FindBin("/nonexistent", filepath.Join(root, "none/*/bin/initdb"))
	if err == nil || !strings.Contains(err.Error(), "apt-get install postgresql") || !strings.Contains(err.Error(), "PATH") {
		t.Errorf("no binaries: %v", err)
	}
}
