package history

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/firedrill-dev/firedrill/drill/chain"
)

// kindRun is the kind column of a run's row; a prune's checkpoint has chain.KindCheckpoint.
const kindRun = "run"

var (
	// ErrNotIntact: Prune refuses a history that does not verify: it would sign a checkpoint
	// over records that were tampered with.
	ErrNotIntact = errors.New("the history is not intact")
	// ErrSigningKey: Prune has no signing key, or another one, for a signed history: its
	// checkpoint would fail verification with the history's public key.
	ErrSigningKey = errors.New("the checkpoint cannot be signed like the history")
	// errPrefixChanged: between Prune's read and its write, the start of the chain changed.
	errPrefixChanged = errors.New("the start of the chain changed while it was read: another prune ran at the same time")
)

// PruneOptions say what Prune removes, where it archives it and who asked.
type PruneOptions struct {
	// Before: the runs at the start of the chain that finished before it are removed, up to
	// the first that did not (a run written late, from a spool, keeps those after it). It
	// must not be in the future.
	Before time.Time
	// Dir is the archive's directory, which must exist. Name names the archive in it from
	// when the first and last run it holds finished (nil: ArchiveName). Prune never
	// overwrites a file.
	Dir  string
	Name func(first, last time.Time) string
	// Trigger (manual, schedule) and Operator go into the checkpoint, as into a run's record.
	Trigger, Operator string
}

// PruneResult is what Prune did; Checkpoint is nil when there was nothing to prune.
type PruneResult struct {
	Archive    string            `json:"archive,omitempty"` // the archive's path
	Checkpoint *chain.Checkpoint `json:"checkpoint,omitempty"`
}

// ArchiveName is the archive's file name from when its first and last run finished, in UTC:
// firedrill-history-20250101T000000Z-20251231T235959Z.jsonl.
func ArchiveName(first, last time.Time) string {
	const layout = "20060102T150405Z"
	return "firedrill-history-" + first.UTC().Format(layout) + "-" + last.UTC().Format(layout) + ".jsonl"
}

// Prune removes the runs at the start of the hash chain that finished before o.Before, and
// leaves a checkpoint record (chain.Checkpoint) in their place that stands for them: signed
// with the store's signer, naming the last removed hash, which the next record links to. A
// checkpoint the chain already starts with is removed along with them (the new one stands
// for its runs too). The removed records go, as stored and in chain order, one per line, into
// an archive that `history verify --archive` checks against the checkpoint (VerifyArchives).
//
// It verifies the whole history first and refuses one that is not intact (ErrNotIntact), and
// one whose newest record is signed while the store has no signer, or another key. It never
// removes a running run (those are not in the chain yet) nor the chain's newest record (new
// records link to it). The archive is written and fsynced, under its name, before anything is
// removed; the removal and the checkpoint are one transaction that holds the lock Finish
// takes, so records finished meanwhile join the chain after the checkpoint.
func (s *Store) Prune(ctx context.Context, o PruneOptions) (PruneResult, error) {
	started := s.now().UTC()
	before := o.Before.UTC()
	switch {
	case before.IsZero():
		return PruneResult{}, errors.New("prune: no time to prune before")
	case before.After(started):
		return PruneResult{}, fmt.Errorf("prune runs finished before %s: that is in the future; give a time in the past", before.Format(time.RFC3339))
	}
	if o.Name == nil {
		o.Name = ArchiveName
	}
	signer := s.signer.Load()
	tmp, err := os.CreateTemp(o.Dir, ".firedrill-archive-*")
	if err != nil {
		return PruneResult{}, fmt.Errorf("prune: create the archive: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	p := &prefix{before: before, w: w}
	v, err := s.Verify(ctx, VerifyOptions{Each: p.add})
	if err != nil {
		return PruneResult{}, fmt.Errorf("prune: %w", err)
	}
	if !v.Intact {
		return PruneResult{}, fmt.Errorf("prune: %w: %s; a prune signs a checkpoint over what it removes, never over tampered records: find out what happened with 'firedrill history verify'", ErrNotIntact, v.Problem)
	}
	if p.runs == 0 {
		return PruneResult{}, nil
	}
	if err := p.sealable(signer); err != nil {
		return PruneResult{}, fmt.Errorf("prune: %w", err)
	}
	if err := w.Flush(); err != nil {
		return PruneResult{}, fmt.Errorf("prune: write the archive: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return PruneResult{}, fmt.Errorf("prune: write the archive: %w", err)
	}
	path := filepath.Join(o.Dir, o.Name(p.firstRun.finished, p.lastRun.finished))
	// A link, unlike a rename, refuses an existing name; the archive appears whole or not at all.
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return PruneResult{}, fmt.Errorf("prune: the archive %s exists: firedrill never overwrites an archive; choose another name", path)
	} else if err != nil {
		return PruneResult{}, fmt.Errorf("prune: write the archive: %w", err)
	}
	if err := syncDir(o.Dir); err != nil {
		os.Remove(path)
		return PruneResult{}, fmt.Errorf("prune: write the archive: %w", err)
	}
	cp := p.checkpoint(o, before, started, filepath.Base(path))
	err = s.inTx(ctx, func(tx *sql.Tx) error { return s.replacePrefix(ctx, tx, p, &cp, signer) })
	if err != nil {
		if errors.Is(err, errPrefixChanged) || s.firstIs(ctx, p.first.id) {
			os.Remove(path) // nothing was removed: the archive would only duplicate the history
			return PruneResult{}, fmt.Errorf("prune: %w; nothing was removed", err)
		}
		return PruneResult{}, fmt.Errorf("prune: %w; the archive %s was written, and whether the history was pruned is unknown: 'firedrill history verify --archive %s' tells", err, path, path)
	}
	return PruneResult{Archive: path, Checkpoint: &cp}, nil
}

// replacePrefix removes the records p archived and inserts cp, sealed, in their place (with
// the seq of the last of them), inside tx. It takes the lock Finish takes and checks that the
// chain still starts with what p read.
func (s *Store) replacePrefix(ctx context.Context, tx *sql.Tx, p *prefix, cp *chain.Checkpoint, signer *chain.Signer) error {
	if s.d.writeLock != "" {
		if _, err := tx.ExecContext(ctx, s.d.writeLock); err != nil {
			return err
		}
	}
	var firstID, lastID string
	var firstSeq, lastSeq int64
	err := tx.QueryRowContext(ctx, firstRecord).Scan(&firstID, &firstSeq)
	if err == nil && firstID == p.first.id {
		nth := queryBuilder{d: &s.d}
		nth.sql.WriteString(`SELECT id, seq FROM runs WHERE seq IS NOT NULL ORDER BY seq LIMIT 1 OFFSET ` + nth.arg(p.records-1))
		err = tx.QueryRowContext(ctx, nth.sql.String(), nth.args...).Scan(&lastID, &lastSeq)
	}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return errPrefixChanged
	case err != nil:
		return err
	case firstID != p.first.id || lastID != p.last.id:
		return errPrefixChanged
	}
	cp.Pruned.FirstSeq, cp.Pruned.LastSeq = firstSeq, lastSeq
	cp.FinishedAt = s.now().UTC()
	if err := chain.SealCheckpoint(cp, chain.Genesis, signer); err != nil {
		return err
	}
	raw, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	// The checks first, in one statement: the cascade would delete them run by run.
	checks := queryBuilder{d: &s.d}
	checks.sql.WriteString(`DELETE FROM checks WHERE run_id IN (SELECT id FROM runs WHERE seq IS NOT NULL AND seq <= ` + checks.arg(lastSeq) + `)`)
	if _, err := tx.ExecContext(ctx, checks.sql.String(), checks.args...); err != nil {
		return err
	}
	del := queryBuilder{d: &s.d}
	del.sql.WriteString(`DELETE FROM runs WHERE seq IS NOT NULL AND seq <= ` + del.arg(lastSeq))
	res, err := tx.ExecContext(ctx, del.sql.String(), del.args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != int64(p.records) {
		return fmt.Errorf("removing the %d records read removed %d rows: the history changed meanwhile", p.records, n)
	}
	ri := CurrentRunner()
	ins := queryBuilder{d: &s.d}
	ins.sql.WriteString(`INSERT INTO runs (id, seq, scenario, trigger, operator, result, message, started_at, finished_at,
		heartbeat_at, runner_host, runner_pid, runner_start_ticks, prev_hash, hash, signature, record, kind) VALUES (`)
	for i, v := range []any{cp.ID, lastSeq, "", cp.Trigger, cp.Operator, "", cp.Message, dbTime(cp.StartedAt), dbTime(cp.FinishedAt),
		dbTime(cp.FinishedAt), ri.Host, int64(ri.PID), int64(ri.StartTicks), cp.PrevHash, cp.Hash, cp.Signature, string(raw), chain.KindCheckpoint} {
		if i > 0 {
			ins.sql.WriteString(", ")
		}
		ins.sql.WriteString(ins.arg(v))
	}
	ins.sql.WriteString(")")
	_, err = tx.ExecContext(ctx, ins.sql.String(), ins.args...)
	return err
}

// firstRecord is the query for the id and seq of the chain's first record; standard SQL.
const firstRecord = `SELECT id, seq FROM runs WHERE seq IS NOT NULL ORDER BY seq LIMIT 1`

// firstIs reports whether the chain still starts with record id: a failed prune removed nothing.
func (s *Store) firstIs(ctx context.Context, id string) bool {
	var first string
	var seq int64
	return s.db.QueryRowContext(ctx, firstRecord).Scan(&first, &seq) == nil && first == id
}

// prefix collects, as Verify reads the chain, the records a prune removes: from the start,
// the runs that finished before `before`, with the checkpoint the chain starts with, if any,
// but never the chain's last record. It writes a record to the archive once a later one shows
// it is not the last.
type prefix struct {
	before time.Time
	w      *bufio.Writer
	pos    int
	ended  bool // a record that stays was seen
	held   []byte
	heldAs chainRecord
	holds  bool
	// records counts what was written, runs and unprotected the runs among them.
	records, runs, unprotected int
	first, last                chainRecord // of the records written
	firstRun, lastRun          chainRecord
	prior                      chain.Pruned // of the checkpoint the chain starts with
	head                       chainRecord  // the last record read
}

// chainRecord is what a prune reads of a record.
type chainRecord struct {
	id, kind, hash, signature string
	finished                  time.Time
}

func (p *prefix) add(raw []byte, f *chain.Fields) error {
	p.pos++
	text := func(name string) string { s, _ := f.String(name); return s }
	r := chainRecord{id: text("id"), kind: text("kind"), hash: text("hash"), signature: text("signature")}
	r.finished, _ = time.Parse(time.RFC3339Nano, text("finishedAt"))
	p.head = r
	if p.ended {
		return nil
	}
	if p.pos == 1 && r.kind == chain.KindCheckpoint {
		var c chain.Checkpoint
		if json.Unmarshal(raw, &c) == nil { // else Verify says what is wrong with it
			p.prior = c.Pruned
			p.hold(raw, r)
			return nil
		}
	}
	if (r.kind == "" || r.kind == kindRun) && !r.finished.IsZero() && r.finished.Before(p.before) {
		if err := p.flush(); err != nil {
			return err
		}
		p.hold(raw, r)
		return nil
	}
	p.ended = true
	if p.holds && p.heldAs.kind != chain.KindCheckpoint { // this record follows it: not the last
		return p.flush()
	}
	p.holds = false // a checkpoint stays unless runs go with it
	return nil
}

func (p *prefix) hold(raw []byte, r chainRecord) {
	p.held, p.heldAs, p.holds = append(p.held[:0], raw...), r, true
}

func (p *prefix) flush() error {
	if !p.holds {
		return nil
	}
	p.holds = false
	r := p.heldAs
	if _, err := p.w.Write(p.held); err != nil {
		return fmt.Errorf("write the archive: %w", err)
	}
	if err := p.w.WriteByte('\n'); err != nil {
		return fmt.Errorf("write the archive: %w", err)
	}
	if p.records == 0 {
		p.first = r
	}
	p.records++
	p.last = r
	if r.kind != chain.KindCheckpoint {
		if p.runs == 0 {
			p.firstRun = r
		}
		p.runs++
		p.lastRun = r
		if r.hash == "" {
			p.unprotected++
		}
	}
	return nil
}

// sealable says why no checkpoint can be made of what p collected: the last run to go has
// no hash to name, or the history is signed and signer would not sign like it.
func (p *prefix) sealable(signer *chain.Signer) error {
	if p.last.hash == "" {
		return fmt.Errorf("the last run to prune, %s, predates the hash chain (it has no hash), so no checkpoint can name it: prune up to a later time, so that a run with a hash is the last to go", p.last.id)
	}
	h := p.head
	switch {
	case h.signature == "":
		return nil
	case signer == nil:
		return fmt.Errorf("%w: the history is signed (its newest record, %s, is), and an unsigned checkpoint would fail 'history verify --public-key': give the signing key (--signing-key or FIREDRILL_SIGNING_KEY)", ErrSigningKey, h.id)
	case !chain.VerifySignature(signer.Public(), h.hash, h.signature):
		return fmt.Errorf("%w: the signing key (%s) did not sign the history's newest record, %s, so a checkpoint signed with it would fail 'history verify --public-key'; give the key the history is signed with", ErrSigningKey, chain.Fingerprint(signer.Public()), h.id)
	}
	return nil
}

// checkpoint is the checkpoint that stands for what p collected, before replacePrefix seals it.
func (p *prefix) checkpoint(o PruneOptions, before, started time.Time, archive string) chain.Checkpoint {
	what := fmt.Sprintf("%d runs", p.runs)
	if p.first.kind == chain.KindCheckpoint {
		what += fmt.Sprintf(" and the checkpoint before them (for %d runs)", p.prior.Runs)
	}
	return chain.Checkpoint{
		ID:      "checkpoint-" + started.Format("20060102-150405") + "-" + p.last.hash[:6],
		Trigger: o.Trigger, Operator: o.Operator,
		Message:   fmt.Sprintf("pruned %s that finished before %s into %s", what, before.Format(time.RFC3339), archive),
		StartedAt: started,
		Pruned: chain.Pruned{Before: before, Runs: p.prior.Runs + p.runs, Unprotected: p.prior.Unprotected + p.unprotected,
			Archive: archive, Records: p.records, FirstRun: p.firstRun.id, LastRun: p.lastRun.id,
			From: p.firstRun.finished, To: p.lastRun.finished},
		LastHash: p.last.hash,
	}
}
