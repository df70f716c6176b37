package service

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/firedrill-dev/firedrill/coverage"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/jobexec"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/server"
)

// startLoops starts the background work that stops with ctx: the scenario watch, gauges that
// drift with time, a follower's reseeding, the spool's retries, the sweep for abandoned runs,
// the janitor and the history's retention.
func (s *Service) startLoops(ctx context.Context, wg *sync.WaitGroup) {
	if s.watcher != nil {
		wg.Go(func() {
			err := s.watcher.Run(ctx, s.reload, func([]schedule.Entry) { s.updateScenarios() })
			if err != nil && ctx.Err() == nil {
				s.log.Error("watching scenarios stopped; changes are no longer picked up", "err", err)
			}
		})
	}
	if s.cluster != nil {
		wg.Go(func() {
			if err := s.cluster.Run(ctx, func() { s.updateScenarios() }); err != nil && ctx.Err() == nil {
				s.log.Error("watching Scenario resources stopped; changes are no longer picked up", "err", err)
			}
		})
		wg.Go(func() { s.status.Run(ctx) })
	}
	if s.runs != nil {
		wg.Go(func() {
			if err := s.runs.Run(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("watching DrillRuns stopped; new ones are not run", "err", err)
			}
		})
	}
	wg.Go(func() { every(ctx, scenarioMetricsEvery, func() { s.metrics.SetScenarios(s.sched.Scenarios()) }) })
	if s.elector != nil {
		// A follower's last-run gauges would otherwise stay as they were at its start-up, and
		// an alert that takes the worst value across replicas (objective met) would keep
		// firing on a stale follower after the leader's next pass. Seed keeps only newer facts.
		wg.Go(func() {
			every(ctx, reseedEvery, func() {
				if s.elector.Leading() || s.cfg.Store.Ping(ctx) != nil {
					return
				}
				newest, _ := server.SeedFromHistory(ctx, s.cfg.Store, scenarioNames(s.entries()), s.log)
				s.metrics.Seed(newest)
			})
		})
	}
	wg.Go(func() { s.spool.Run(ctx, s.cfg.SpoolFlushInterval, s.metrics.SetSpooled) })
	wg.Go(func() {
		every(ctx, abandonedSweepEvery, func() {
			s.markAbandoned(ctx)
			s.sweepOrphanJobs(ctx)
		})
	})
	if s.janitor != nil {
		wg.Go(func() { s.janitor.Run(ctx, s.cfg.JanitorInterval, s.log, s.metrics.SetScratchNamespaces) })
	}
	if s.cfg.Retain > 0 {
		wg.Go(func() { s.retain(ctx) })
	}
	if s.cfg.CoverageInterval > 0 {
		wg.Go(func() { s.coverageLoop(ctx) })
	}
}

// coverageTimeout bounds one coverage measurement: an API server that does not answer must
// not stop the next.
const coverageTimeout = 2 * time.Minute

// coverageLoop measures coverage at start, every CoverageInterval and after drills finish.
func (s *Service) coverageLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.CoverageInterval)
	defer t.Stop()
	for {
		s.measureCoverage(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.measure:
		}
	}
}

func (s *Service) measureCoverage(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, coverageTimeout)
	defer cancel()
	var scs []*scenarios.Scenario
	for _, e := range s.entries() {
		if e.Scenario != nil {
			scs = append(scs, e.Scenario)
		}
	}
	res, err := coverage.Measure(ctx, scs, coverage.StoreHistory{Runs: s.cfg.Store}, s.cfg.CoverageDiscover,
		coverage.JoinOptions{Now: time.Now(), Within: s.cfg.CoverageWithin})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("could not measure coverage; its metrics keep the last measurement", "err", err)
		}
		return
	}
	for _, p := range res.Problems {
		s.log.Warn("coverage is incomplete", "problem", p)
	}
	s.metrics.SetCoverage(res)
}

// schedule schedules always, or while this replica leads; the channel closes when scheduling
// (and campaigning) has stopped for good.
func (s *Service) schedule(schedCtx, electCtx context.Context, fatal chan<- error) <-chan struct{} {
	done := make(chan struct{})
	if s.elector == nil {
		s.log.Info("scheduling (no --leader-elect: this replica always schedules)")
		go func() {
			defer close(done)
			s.sweepOrphanJobs(schedCtx) // the drill Jobs of this replica's previous process
			if err := s.sched.Run(schedCtx); err != nil {
				fatal <- fmt.Errorf("scheduler: %w", err)
			}
		}()
		return done
	}
	s.log.Info("campaigning for the Lease; scheduling only while leader", "identity", s.elector.Identity())
	go func() {
		defer close(done)
		err := s.elector.Run(electCtx, func(lctx context.Context) {
			s.log.Info("became leader: scheduling")
			if s.status != nil {
				s.status.Poke()
			}
			if s.runs != nil {
				s.runs.Poke()
			}
			s.markAbandoned(lctx) // the previous leader's runs, if it died
			// Its drill Jobs still running are adopted before scheduling starts, so that the
			// scheduler counts them as the runs in flight they are.
			s.sweepOrphanJobs(lctx)
			lead, cancel := context.WithCancel(lctx)
			stop := context.AfterFunc(schedCtx, cancel)
			defer stop()
			defer cancel()
			if err := s.sched.Run(lead); err != nil {
				s.log.Error("scheduler stopped", "err", err)
			}
			// Keep the Lease until it is lost or released: returning would mean giving it up
			// while drills of ours may still run.
			<-lctx.Done()
			s.log.Info("leadership ended: not scheduling")
		})
		if err != nil && electCtx.Err() == nil {
			fatal <- fmt.Errorf("leader election: %w", err)
		}
	}()
	return done
}

// replaySpool writes the records an earlier process spooled. It runs before markAbandoned: a
// spooled final record is the truth about its run, and MarkAbandoned would finish it first.
func (s *Service) replaySpool(ctx context.Context) {
	if s.spool.Pending() == 0 {
		return
	}
	written, err := s.spool.Flush(ctx)
	s.log.Info("replayed spooled records", "written", written, "left", s.spool.Pending(), "dir", s.cfg.SpoolDir)
	if err != nil {
		s.log.Warn("some spooled records could not be written yet", "err", err)
	}
}

// markAbandoned finishes as aborted the runs whose runner died (this host: its process is gone;
// another host: no heartbeat for history.StaleRunAfter).
func (s *Service) markAbandoned(ctx context.Context) {
	ids, err := s.cfg.Store.MarkAbandoned(ctx, history.ProcessAlive, history.StaleRunAfter)
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Warn("could not look for abandoned runs", "err", err)
	case len(ids) > 0:
		s.log.Warn("marked runs aborted whose runner is gone", "runs", strings.Join(ids, ","))
	}
}

// sweepOrphanJobs looks at the drill Jobs no process follows (--executor job): the leader adopts
// those whose run is still running (their serve died mid-drill); every replica deletes those
// whose run was marked aborted since.
func (s *Service) sweepOrphanJobs(ctx context.Context) {
	if s.jobs == nil {
		return
	}
	var adopt func(jobexec.Orphan) error
	if s.elector == nil || s.elector.Leading() {
		adopt = func(o jobexec.Orphan) error {
			return s.sched.Adopt(o.Scenario, o.Trigger, s.jobs.Adopt(o, s.cfg.Store))
		}
	}
	sw, err := s.jobs.SweepOrphans(ctx, s.cfg.Store, adopt)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("could not look for orphaned drill Jobs", "err", err)
	}
	if len(sw.Adopted) > 0 {
		s.log.Warn("adopted drill Jobs another replica created and no longer follows; their records are stored from their pods' logs here", "jobs", strings.Join(sw.Adopted, ","))
	}
	if len(sw.Deleted) > 0 {
		s.log.Warn("deleted drill Jobs whose run was marked aborted (their serve died)", "jobs", strings.Join(sw.Deleted, ","))
	}
}

// every calls f every d until ctx is done.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// scenarioNames are the names of the scenarios that loaded.
func scenarioNames(entries []schedule.Entry) []string {
	var names []string
	for _, e := range entries {
		if e.Scenario != nil {
			names = append(names, e.Scenario.Metadata.Name)
		}
	}
	return names
}

// scenarioHeartbeats are the scenarios' own heartbeat URLs by name (the last good version's).
func scenarioHeartbeats(entries []schedule.Entry) map[string]string {
	urls := map[string]string{}
	for _, e := range entries {
		if e.Scenario != nil && e.Scenario.Spec.Notify.HeartbeatURL != "" {
			urls[e.Scenario.Metadata.Name] = e.Scenario.Spec.Notify.HeartbeatURL
		}
	}
	return urls
}

func countScheduled(entries []schedule.Entry) int {
	n := 0
	for _, e := range entries {
		if e.Scenario != nil && e.Scenario.Spec.Schedule != "" {
			n++
		}
	}
	return n
}

func countInvalid(entries []schedule.Entry) int {
	n := 0
	for _, e := range entries {
		if e.Err != nil {
			n++
		}
	}
	return n
}
