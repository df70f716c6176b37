package history

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// migration is one numbered schema change, NNNN_name.sql in the dialect's migrations.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the dialect's migrations and insists they are numbered 1, 2, 3, ...
// so that a missing or duplicated file fails every test rather than a user's upgrade.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, n := range names {
		num, name, ok := strings.Cut(strings.TrimSuffix(path.Base(n), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: want NNNN_name.sql", n)
		}
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %04d_%s: want number %d", m.version, m.name, i+1)
		}
	}
	return ms, nil
}

// migrate brings the schema up to date in one write transaction, so that two processes
// opening a new database at once apply each migration once and a failed migration leaves
// the database as it was.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations(s.d.migrations)
	if err != nil {
		return err
	}
	latest := len(ms)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if s.d.writeLock != "" {
			if _, err := tx.ExecContext(ctx, s.d.writeLock); err != nil {
				return err
			}
		}
		var appID, tables int64
		if err := tx.QueryRowContext(ctx, s.d.checkFile).Scan(&appID, &tables); err != nil {
			return err
		}
		if appID != 0 && appID != applicationID {
			return fmt.Errorf("not a firedrill history (SQLite application id %d); %s", appID, pathHint)
		}
		if appID == 0 && tables > 0 {
			return fmt.Errorf("not a firedrill history (%s); %s", s.d.foreign, pathHint)
		}
		if _, err := tx.ExecContext(ctx, s.d.createMigrations); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRowContext(ctx, s.d.schemaVersion).Scan(&current); err != nil {
			return err
		}
		if current > latest {
			return fmt.Errorf("the history has schema version %d, this firedrill knows up to %d: upgrade firedrill (or use another history with --history)", current, latest)
		}
		for _, m := range ms[current:] {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %04d_%s: %w", m.version, m.name, s.d.describe(err))
			}
			if _, err := tx.ExecContext(ctx, s.d.insertMigration, m.version, m.name, dbTime(s.now())); err != nil {
				return fmt.Errorf("migration %04d_%s: %w", m.version, m.name, err)
			}
		}
		return nil
	})
}
