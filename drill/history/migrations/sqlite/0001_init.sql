-- 0001: runs and their checks.
--
-- runs.record holds the whole drill.Record as JSON exactly as firedrill wrote it; it is the
-- source of truth that Get and List return. The other columns copy fields out of it so they
-- can be filtered, sorted and joined. Times are UTC text with nine fractional digits
-- (2006-01-02T15:04:05.000000000Z), so text order is time order.
--
-- seq is the order of the hash chain (docs/history.md): NULL while the run is in flight,
-- assigned max+1 in the transaction that finishes it, so the chain grows in the order runs
-- finish and a finished record never changes again.

PRAGMA application_id = 1178882642; -- "FDRR": lets Open tell a firedrill history from another SQLite file

CREATE TABLE runs (
    id                 TEXT    NOT NULL PRIMARY KEY,
    seq                INTEGER UNIQUE,
    scenario           TEXT    NOT NULL,
    trigger            TEXT    NOT NULL,
    operator           TEXT    NOT NULL,
    result             TEXT    NOT NULL,
    message            TEXT    NOT NULL,
    started_at         TEXT    NOT NULL,
    finished_at        TEXT,
    rto_seconds        REAL,
    rpo_seconds        REAL,
    heartbeat_at       TEXT    NOT NULL,
    runner_host        TEXT    NOT NULL,
    runner_pid         INTEGER NOT NULL,
    runner_start_ticks INTEGER NOT NULL,
    prev_hash          TEXT    NOT NULL DEFAULT '',
    hash               TEXT    NOT NULL DEFAULT '',
    signature          TEXT    NOT NULL DEFAULT '',
    record             TEXT    NOT NULL CHECK (json_valid(record)),
    CHECK ((result = 'running') = (seq IS NULL))
) STRICT;

-- The List filters, each ending in the sort order (newest first, id breaks ties).
CREATE INDEX runs_started ON runs (started_at, id);
CREATE INDEX runs_scenario_started ON runs (scenario, started_at, id);
CREATE INDEX runs_result_started ON runs (result, started_at, id);

CREATE TABLE checks (
    run_id   TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name     TEXT    NOT NULL,
    type     TEXT    NOT NULL,
    result   TEXT    NOT NULL,
    message  TEXT    NOT NULL,
    seconds  REAL    NOT NULL,
    evidence TEXT CHECK (evidence IS NULL OR json_valid(evidence)),
    PRIMARY KEY (run_id, position)
) STRICT;

CREATE INDEX checks_type_result ON checks (type, result);
