-- 0001: runs and their checks; the PostgreSQL twin of migrations/sqlite/0001_init.sql.
--
-- Same columns and meaning as in SQLite, so the store's queries are the same:
-- - times are UTC text with nine fractional digits, so text order is time order;
-- - every column that is compared or sorted is COLLATE "C" (bytewise), whatever the
--   database's locale: id prefixes are looked up as a byte range and pages are ordered as
--   SQLite orders them;
-- - record and evidence are json, not jsonb: json keeps the text exactly as firedrill wrote
--   it, which the hash chain depends on.

CREATE TABLE runs (
    id                 TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    seq                BIGINT UNIQUE,
    scenario           TEXT COLLATE "C" NOT NULL,
    trigger            TEXT NOT NULL,
    operator           TEXT NOT NULL,
    result             TEXT COLLATE "C" NOT NULL,
    message            TEXT NOT NULL,
    started_at         TEXT COLLATE "C" NOT NULL,
    finished_at        TEXT COLLATE "C",
    rto_seconds        DOUBLE PRECISION,
    rpo_seconds        DOUBLE PRECISION,
    heartbeat_at       TEXT COLLATE "C" NOT NULL,
    runner_host        TEXT NOT NULL,
    runner_pid         BIGINT NOT NULL,
    runner_start_ticks BIGINT NOT NULL,
    prev_hash          TEXT NOT NULL DEFAULT '',
    hash               TEXT NOT NULL DEFAULT '',
    signature          TEXT NOT NULL DEFAULT '',
    record             JSON NOT NULL,
    CHECK ((result = 'running') = (seq IS NULL))
);

-- The List filters, each ending in the sort order (newest first, id breaks ties).
CREATE INDEX runs_started ON runs (started_at, id);
CREATE INDEX runs_scenario_started ON runs (scenario, started_at, id);
CREATE INDEX runs_result_started ON runs (result, started_at, id);

CREATE TABLE checks (
    run_id   TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name     TEXT NOT NULL,
    type     TEXT NOT NULL,
    result   TEXT NOT NULL,
    message  TEXT NOT NULL,
    seconds  DOUBLE PRECISION NOT NULL,
    evidence JSON,
    PRIMARY KEY (run_id, position)
);

CREATE INDEX checks_type_result ON checks (type, result);
