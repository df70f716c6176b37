-- 0002: the cron time of a scheduled run (issue 5), one run per scenario and cron time.
--
-- The unique index is what keeps two `serve` replicas from running the same scheduled drill
-- twice: the second one's Begin fails. Runs that are not scheduled have NULL, and NULLs are
-- never equal, so they are not limited. Existing runs keep NULL: no firedrill before this
-- migration scheduled runs.

ALTER TABLE runs ADD COLUMN scheduled_for TEXT;

CREATE UNIQUE INDEX runs_scenario_scheduled ON runs (scenario, scheduled_for)
    WHERE scheduled_for IS NOT NULL;
