package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/firedrill-dev/firedrill/drill"
)

// Get returns the run whose id is idOrPrefix, or the only run whose id starts with it (as git
// does with commits). An id that matches exactly wins over longer ids it is a prefix of.
func (s *Store) Get(ctx context.Context, idOrPrefix string) (*drill.Record, error) {
	if idOrPrefix == "" {
		return nil, errors.New("get run: empty id")
	}
	if !utf8.ValidString(idOrPrefix) { // no stored id is (validate), and PostgreSQL refuses such text
		return nil, fmt.Errorf("run %q: %w (list runs with firedrill history)", idOrPrefix, ErrNotFound)
	}
	var rows *sql.Rows
	var err error
	if upper, ok := prefixEnd(idOrPrefix); ok {
		rows, err = s.db.QueryContext(ctx, s.d.getPrefix, idOrPrefix, upper)
	} else {
		rows, err = s.db.QueryContext(ctx, s.d.getExact, idOrPrefix)
	}
	if err != nil {
		return nil, fmt.Errorf("get run %q: %w", idOrPrefix, s.d.describe(err))
	}
	defer rows.Close()
	type match struct {
		id, scenario, started string
		record                []byte
	}
	var ms []match
	for rows.Next() {
		var m match
		if err := rows.Scan(&m.id, &m.scenario, &m.started, &m.record); err != nil {
			return nil, fmt.Errorf("get run %q: %w", idOrPrefix, err)
		}
		if !strings.HasPrefix(m.id, idOrPrefix) {
			continue
		}
		ms = append(ms, m)
		if m.id == idOrPrefix {
			break // the exact id sorts first; longer ids are not candidates
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("get run %q: %w", idOrPrefix, s.d.describe(err))
	}
	switch {
	case len(ms) == 0:
		return nil, fmt.Errorf("run %q: %w (list runs with firedrill history)", idOrPrefix, ErrNotFound)
	case len(ms) > 1:
		cands := make([]string, 0, len(ms))
		for i, m := range ms {
			if i == 10 { // the query fetched 11 to know there are more
				cands = append(cands, "and more")
				break
			}
			started := m.started
			if t, err := parseDBTime(m.started); err == nil {
				started = t.Format(time.RFC3339)
			}
			cands = append(cands, fmt.Sprintf("%s (%s, %s)", m.id, m.scenario, started))
		}
		return nil, fmt.Errorf("run %q: %w, it matches %s; give more characters",
			idOrPrefix, ErrAmbiguous, strings.Join(cands, ", "))
	}
	var r drill.Record
	if err := decode(ms[0].record, &r); err != nil {
		return nil, fmt.Errorf("get run %s: stored record: %w", ms[0].id, err)
	}
	return &r, nil
}

// prefixEnd returns a string greater than every string with prefix p and smaller than every
// other string greater than p, bytewise (UTF-8 byte order is code point order). It increments
// the last code point rather than the last byte so that the bound is valid UTF-8, which
// PostgreSQL insists on. ok is false when there is none (p is all U+10FFFF).
func prefixEnd(p string) (string, bool) {
	rs := []rune(p)
	for i := len(rs) - 1; i >= 0; i-- {
		switch r := rs[i]; {
		case r == utf8.MaxRune:
			continue
		case r == 0xD7FF: // the surrogates are not valid in UTF-8
			rs[i] = 0xE000
		default:
			rs[i]++
		}
		return string(rs[:i+1]), true
	}
	return "", false
}

// Filter selects runs for List. Zero fields select everything.
type Filter struct {
	Scenario string       // exact scenario name
	Since    time.Time    // runs started at or after
	Result   drill.Result // one result, including Running
	Limit    int          // at most this many runs; 0 means no limit
	Offset   int          // skip this many of the newest matching runs first
}

// List returns the runs that match f, newest (by start time) first.
func (s *Store) List(ctx context.Context, f Filter) ([]drill.Record, error) {
	if f.Limit < 0 || f.Offset < 0 {
		return nil, fmt.Errorf("list runs: limit %d and offset %d must not be negative", f.Limit, f.Offset)
	}
	switch f.Result {
	case "", drill.Running, drill.Passed, drill.Failed, drill.Error, drill.Aborted, drill.Skipped, drill.Missed:
	default:
		return nil, fmt.Errorf("list runs: unknown result %q: want running, passed, failed, error, aborted, skipped or missed", f.Result)
	}
	query, args := s.d.listQuery(f)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", s.d.describe(err))
	}
	defer rows.Close()
	var out []drill.Record
	if f.Limit > 0 {
		out = make([]drill.Record, 0, min(f.Limit, 1000))
	}
	for rows.Next() {
		var raw sql.RawBytes // decoded at once, so no copy is needed
		if err := rows.Scan(&raw); err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		out = append(out, drill.Record{})
		if err := decode(raw, &out[len(out)-1]); err != nil {
			return nil, fmt.Errorf("list runs: stored record: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list runs: %w", s.d.describe(err))
	}
	return out, nil
}

// InFlight is a run the history still has running, with when its runner last said it was
// alive (Begin, Update, Heartbeat; the writer's clock).
type InFlight struct {
	Record    drill.Record
	Heartbeat time.Time
}

// InFlight returns the runs still marked running, oldest first: what a new leader of `serve
// --executor job` looks at to take over the drill Jobs of a replica that died.
func (s *Store) InFlight(ctx context.Context) ([]InFlight, error) {
	rows, err := s.db.QueryContext(ctx, s.d.running)
	if err != nil {
		return nil, fmt.Errorf("runs in flight: %w", s.d.describe(err))
	}
	defer rows.Close()
	var out []InFlight
	for rows.Next() {
		var id, hb string
		var raw []byte
		if err := rows.Scan(&id, &hb, &raw); err != nil {
			return nil, fmt.Errorf("runs in flight: %w", s.d.describe(err))
		}
		f := InFlight{}
		if err := decode(raw, &f.Record); err != nil {
			return nil, fmt.Errorf("run %s: stored record: %w", id, err)
		}
		if f.Heartbeat, err = parseDBTime(hb); err != nil {
			return nil, fmt.Errorf("run %s: heartbeat %q: %w", id, hb, err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("runs in flight: %w", s.d.describe(err))
	}
	return out, nil
}

// StaleRunAfter is the staleAfter firedrill passes MarkAbandoned: drill.Runner beats every
// 15s, so a run of another host quiet for this long has lost its runner.
const StaleRunAfter = 2 * time.Minute

// MarkAbandoned finishes as aborted every run still marked running whose runner is gone, and
// returns their ids. A run of this host is gone when alive says its process is (nil means
// ProcessAlive). A run of another host can't be checked from here, so it is gone only when
// its heartbeat is older than staleAfter (0 or less: never); choose staleAfter well above the
// heartbeat interval plus any clock skew between hosts, or a live run gets marked and its
// Finish then fails with ErrNotRunning.
func (s *Store) MarkAbandoned(ctx context.Context, alive func(drill.RunnerInfo) bool, staleAfter time.Duration) ([]string, error) {
	if alive == nil {
		alive = ProcessAlive
	}
	var marked []string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		marked = nil
		// Before reading the running runs, so that two replicas starting at once do not both
		// try to finish the same run (finish takes the lock too, but only after this read).
		if s.d.writeLock != "" {
			if _, err := tx.ExecContext(ctx, s.d.writeLock); err != nil {
				return err
			}
		}
		type inFlight struct {
			id, heartbeat string
			record        []byte
		}
		var runs []inFlight
		rows, err := tx.QueryContext(ctx, s.d.running)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r inFlight
			if err := rows.Scan(&r.id, &r.heartbeat, &r.record); err != nil {
				rows.Close()
				return err
			}
			runs = append(runs, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}

		now := s.now()
		for _, run := range runs {
			var rec drill.Record
			if err := decode(run.record, &rec); err != nil {
				return fmt.Errorf("run %s: stored record: %w", run.id, err)
			}
			hb, err := parseDBTime(run.heartbeat)
			if err != nil {
				return fmt.Errorf("run %s: heartbeat %q: %w", run.id, run.heartbeat, err)
			}
			why := s.abandoned(rec.Runner, hb, now, alive, staleAfter)
			if why == "" {
				continue
			}
			rec.Result = drill.Aborted
			rec.Message = why
			finished := now
			rec.FinishedAt = &finished
			for i := range rec.Steps {
				if rec.Steps[i].Result == drill.Running {
					rec.Steps[i].Result = drill.Aborted
					if rec.Steps[i].Message == "" {
						rec.Steps[i].Message = "runner gone"
					}
				}
			}
			if err := s.finish(ctx, tx, &rec); err != nil {
				return fmt.Errorf("run %s: %w", run.id, err)
			}
			marked = append(marked, run.id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mark abandoned runs: %w", err)
	}
	return marked, nil
}

// abandoned says why a running run's runner is gone, or "" when it may still run.
func (s *Store) abandoned(ri drill.RunnerInfo, heartbeat, now time.Time, alive func(drill.RunnerInfo) bool, staleAfter time.Duration) string {
	last := heartbeat.Format(time.RFC3339)
	if s.host != "" && ri.Host == s.host {
		if alive(ri) {
			return ""
		}
		return fmt.Sprintf("abandoned: its runner, pid %d on %s, is gone (last heartbeat %s)", ri.PID, ri.Host, last)
	}
	if staleAfter <= 0 || now.Sub(heartbeat) <= staleAfter {
		return ""
	}
	host := ri.Host
	if host == "" {
		host = "an unknown host"
	}
	return fmt.Sprintf("abandoned: no heartbeat from its runner, pid %d on %s, since %s (more than %s)", ri.PID, host, last, staleAfter)
}
