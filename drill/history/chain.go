package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
)

// SetSigner makes the store sign every record it finishes from now on with sg (nil: stop
// signing). `run --signing-key` and `serve` call it once after Open.
func (s *Store) SetSigner(sg *chain.Signer) { s.signer.Store(sg) }

// lastHash is the query for the hash of the newest record of the chain; standard SQL.
const lastHash = `SELECT hash FROM runs WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1`

// seal links r to the hash chain (docs/history.md) inside tx, the transaction that gives r
// its seq, so that two processes finishing at once still form one chain. It hashes r as it
// will be stored (times in UTC) and sets r's PrevHash, Hash and Signature.
func (s *Store) seal(ctx context.Context, tx *sql.Tx, r *drill.Record) error {
	prev := chain.Genesis
	if err := tx.QueryRowContext(ctx, lastHash).Scan(&prev); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read the chain head: %w", err)
	}
	u := inUTC(r)
	if err := chain.Seal(&u, prev, s.signer.Load()); err != nil {
		return err
	}
	r.PrevHash, r.Hash, r.Signature = u.PrevHash, u.Hash, u.Signature
	return nil
}

// WalkRaw calls fn with every finished record in chain order (seq), as the JSON the history
// stores, from one consistent read, without holding more than one record in memory. raw is
// only valid during the call. It stops at fn's first error and returns it.
func (s *Store) WalkRaw(ctx context.Context, fn func(raw []byte) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT record FROM runs WHERE seq IS NOT NULL ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("read the history: %w", s.d.describe(err))
	}
	defer rows.Close()
	for rows.Next() {
		var raw sql.RawBytes
		if err := rows.Scan(&raw); err != nil {
			return fmt.Errorf("read the history: %w", err)
		}
		if err := fn(raw); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the history: %w", s.d.describe(err))
	}
	return nil
}

// Walk is WalkRaw with each record decoded.
func (s *Store) Walk(ctx context.Context, fn func(drill.Record) error) error {
	return s.WalkRaw(ctx, func(raw []byte) error {
		var r drill.Record
		if err := decode(raw, &r); err != nil {
			return fmt.Errorf("stored record: %w", err)
		}
		return fn(r)
	})
}
