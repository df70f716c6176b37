package history

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// TestMigrations: migrations are applied once, a reopen changes nothing, the connection
// settings hold, and a database this firedrill does not understand is refused untouched.
func TestMigrations(t *testing.T) {
	t.Parallel()
	runWithStores(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, path := openStore(t, b)
		ms, err := loadMigrations(s.d.migrations)
		if err != nil || len(ms) == 0 {
			t.Fatalf("migrations: %v, %v", ms, err)
		}
		applied := func(s *Store) string {
			t.Helper()
			rows, err := s.db.Query(`SELECT version || ':' || name || '@' || applied_at FROM schema_migrations ORDER BY version`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var out []string
			for rows.Next() {
				var v string
				rows.Scan(&v)
				out = append(out, v)
			}
			return strings.Join(out, " ")
		}
		first := applied(s)
		if n := strings.Count(first, "@"); n != len(ms) {
			t.Fatalf("applied %q, want %d migrations", first, len(ms))
		}
		if b.name == "sqlite" {
			for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "10000", "synchronous": "2"} {
				var got string
				if err := s.db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil || got != want {
					t.Errorf("PRAGMA %s = %q, %v; want %q", pragma, got, err, want)
				}
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("history file mode: %v, %v", fi.Mode(), err)
			}
		}
		if _, err := s.db.Exec(`INSERT INTO checks (run_id, position, name, type, result, message, seconds) VALUES ('nope', 0, '', '', '', '', 0)`); err == nil {
			t.Error("a check of no run was accepted: foreign keys are off")
		}

		s2, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if again := applied(s2); again != first {
			t.Errorf("reopen changed schema_migrations:\n%s\n%s", first, again)
		}
		// A firedrill from the future.
		if _, err := s2.db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')`); err != nil {
			t.Fatal(err)
		}
		_, err = Open(ctx, path)
		if err == nil || !strings.Contains(err.Error(), "schema version 999") || !strings.Contains(err.Error(), "upgrade firedrill") ||
			!strings.Contains(err.Error(), redactURL(path)) {
			t.Errorf("newer schema: %v", err)
		}
	})
}

func TestMigrationFilesNumbered(t *testing.T) {
	t.Parallel()
	for name, fsys := range map[string]fstest.MapFS{
		"gap":      {"0001_a.sql": {}, "0003_c.sql": {}},
		"no start": {"0002_b.sql": {}},
		"twice":    {"0001_a.sql": {}, "1_b.sql": {}},
		"unnamed":  {"0001.sql": {}},
	} {
		if _, err := loadMigrations(fsys); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestOpenRefuses: every path that can't hold a history gives an error that names the path
// and says how to choose another.
func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, []byte(strings.Repeat("this is not a database\n", 100)), 0o600)
	foreign := filepath.Join(dir, "foreign.db")
	db, err := sql.Open("sqlite", foreign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE photos (id INTEGER)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	otherApp := filepath.Join(dir, "other-app.db")
	db, _ = sql.Open("sqlite", otherApp)
	if _, err := db.Exec(`PRAGMA application_id = 42`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	for _, tc := range []struct {
		name, dsn string
		want      []string
	}{
		{"directory", dir, []string{dir, "is a directory", "--history", "FIREDRILL_HISTORY"}},
		{"parent is a file", filepath.Join(file, "history.db"), []string{file, "create its directory", "--history"}},
		{"not SQLite", garbage, []string{garbage, "not an SQLite database"}},
		{"other tables", foreign, []string{foreign, "not a firedrill history", "--history"}},
		{"other application", otherApp, []string{"application id 42"}},
		{"postgres without a database", "postgres://fd:s3cret@db.example", []string{"names no database", "db.example"}},
		{"unknown scheme", "mysql://fd:s3cret@db/fd", []string{`unknown scheme "mysql"`, "postgres://"}},
		{"sqlite URL without a path", "sqlite://", []string{"names no file"}},
		{"empty", "", []string{"--history", "FIREDRILL_HISTORY"}},
	} {
		s, err := Open(ctx, tc.dsn)
		if err == nil {
			s.Close()
			t.Errorf("%s: Open(%q) succeeded", tc.name, tc.dsn)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not mention %q", tc.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error shows the password: %q", tc.name, err)
		}
	}
	// The refused files were not changed into histories.
	db, _ = sql.Open("sqlite", foreign)
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'schema_migrations'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("foreign database got a schema_migrations table: %d, %v", n, err)
	}
}

// TestOpenNoPermission runs as an unprivileged user: as root it runs its own test binary
// again under uid 65534 (nobody), since root ignores file permissions.
func TestOpenNoPermission(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		asNobody(t, "TestOpenNoPermission")
		return
	}
	dir := filepath.Join(t.TempDir(), "locked")
	os.Mkdir(dir, 0o700)
	readOnly := filepath.Join(dir, "read-only.db")
	os.WriteFile(readOnly, nil, 0o400)
	os.Chmod(dir, 0o500)
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	for _, p := range []string{filepath.Join(dir, "history.db"), filepath.Join(dir, "sub", "history.db"), readOnly} {
		_, err := Open(context.Background(), p)
		if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "--history") ||
			!strings.Contains(err.Error(), p) {
			t.Errorf("Open(%s): %v", p, err)
		}
	}
}

// asNobody runs the test named test in a copy of this test binary as uid/gid 65534.
func asNobody(t *testing.T, test string) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("running as root and setpriv (util-linux) is missing, so permissions can't be tested")
	}
	// Not t.TempDir: its parent is 0700, so nobody could not enter it.
	dir, err := os.MkdirTemp("", "firedrill-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o1777)
	bin := filepath.Join(dir, "history.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		bin, "-test.run=^"+test+"$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("%s as nobody: %v\n%s", test, err, out)
	}
}

// TestOpenCreates: missing directories are created owner-only, and any file name works,
// also as a sqlite:// URL and relative to the working directory.
func TestOpenCreates(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	for _, dsn := range []string{
		filepath.Join(root, "xdg", "firedrill", "history.db"),
		"sqlite://" + filepath.Join(root, "url", "history.db"),
		filepath.Join(root, "we?ird #dir %41", "history.db"),
	} {
		s, err := Open(ctx, dsn)
		if err != nil {
			t.Fatalf("Open(%q): %v", dsn, err)
		}
		s.Close()
	}
	for _, p := range []string{"xdg", "xdg/firedrill", "url", "we?ird #dir %41"} {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want a 0700 directory", p, fi.Mode(), err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "we?ird #dir %41", "history.db")); err != nil {
		t.Errorf("the odd name was not used as is: %v", err)
	}
	t.Chdir(root)
	s, err := Open(ctx, "relative.db")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(root, "relative.db")); err != nil {
		t.Error(err)
	}
}
