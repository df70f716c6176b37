-- 0003: the kind of a chain record (issue 12): 'run', or 'checkpoint' for the record a prune
-- leaves in place of the runs it archived (docs/history.md). It copies the record's "kind"
-- member ('run' when it has none, as every run's record) so that listings of runs can leave
-- checkpoints out; `history verify` checks the copy like the others. Existing rows are runs.

ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'run' CHECK (kind IN ('run', 'checkpoint'));
