-- 0003: the kind of a chain record (issue 12); see migrations/sqlite/0003_kind.sql.

ALTER TABLE runs ADD COLUMN kind TEXT COLLATE "C" NOT NULL DEFAULT 'run' CHECK (kind IN ('run', 'checkpoint'));
