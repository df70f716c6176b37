package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/firedrill-dev/firedrill/drill/history"
)

// pruneEvery is how often Config.Retain prunes after the first prune; retainCheckEvery how
// often a replica that did not prune yet (not the leader) looks again.
const (
	pruneEvery       = 24 * time.Hour
	retainCheckEvery = time.Minute
)

// checkRetain refuses retention without an archive directory, and creates that directory.
func checkRetain(cfg Config) error {
	switch {
	case cfg.Retain < 0:
		return &ConfigError{Err: fmt.Errorf("--retain must not be negative, got %s", cfg.Retain)}
	case cfg.Retain == 0:
		return nil
	case cfg.ArchiveDir == "":
		return &ConfigError{Err: errors.New("--retain needs --archive-dir: the runs it prunes from the history are archived there"),
			Hint: "Give --archive-dir DIR on a volume that is backed up."}
	}
	if err := os.MkdirAll(cfg.ArchiveDir, 0o700); err != nil {
		return fmt.Errorf("archive directory: %w; choose a writable --archive-dir", err)
	}
	return nil
}

// retain prunes the history at start-up (once this replica leads, with leader election) and
// then every pruneEvery, until ctx is done.
func (s *Service) retain(ctx context.Context) {
	var last time.Time
	try := func() {
		if !last.IsZero() && time.Since(last) < pruneEvery || s.elector != nil && !s.elector.Leading() {
			return
		}
		last = time.Now()
		s.prune(ctx)
	}
	try()
	every(ctx, retainCheckEvery, try)
}

// prune removes the runs older than Config.Retain into a new archive, and logs what it did.
func (s *Service) prune(ctx context.Context) {
	before := time.Now().Add(-s.cfg.Retain)
	res, err := s.cfg.Store.Prune(ctx, history.PruneOptions{Before: before, Dir: s.cfg.ArchiveDir, Trigger: "schedule", Operator: s.cfg.Operator})
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Error("pruning the history failed; it keeps every run until the next try", "err", err, "next", pruneEvery.String())
	case res.Checkpoint != nil:
		c := res.Checkpoint
		s.log.Info("pruned the history", "archived", c.Pruned.Records, "archive", res.Archive, "checkpoint", c.ID, "standsFor", c.Pruned.Runs,
			"before", before.UTC().Format(time.RFC3339))
	}
}
