-- 0002: the cron time of a scheduled run (issue 5); see migrations/sqlite/0002_scheduled_for.sql.

ALTER TABLE runs ADD COLUMN scheduled_for TEXT COLLATE "C";

CREATE UNIQUE INDEX runs_scenario_scheduled ON runs (scenario, scheduled_for)
    WHERE scheduled_for IS NOT NULL;
