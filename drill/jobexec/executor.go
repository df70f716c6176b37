// Package jobexec runs drills as Kubernetes Jobs for `firedrill serve --executor job`: one Job
// per run, in firedrill's own image, running `firedrill run-job` with the scenario serve loaded.
//
// The Job holds no history credential and no signing key and needs no route to serve: it
// writes its records as lines on its stdout (LineRecorder), serve follows the pod's log
// through the Kubernetes API and stores them through its own history, spool and signer, so
// serve stays the hash chain's one writer. A Job that dies without a final record — pod deleted,
// OOMKilled, evicted, past its deadline, its node lost, its pod never created — is recorded
// aborted with the reason (Death), deleted, and its run handed to the janitor at once.
package jobexec

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// Janitor is told about runs whose Job died without cleaning up (janitor.Janitor).
type Janitor interface {
	RunnerGone(run string, runner drill.RunnerInfo)
	Wake()
}

// Runs is what the orphan sweep and adoption read of the history (history.Store).
type Runs interface {
	Get(ctx context.Context, id string) (*drill.Record, error)
	InFlight(ctx context.Context) ([]history.InFlight, error)
}

// Options are an Executor's dependencies and settings.
type Options struct {
	// Kube reaches the cluster the Jobs run in. Required.
	Kube kubernetes.Interface
	// Namespace of the Jobs; Image is firedrill's image they run; ServiceAccount the default
	// of spec.runner.serviceAccountName. Namespace and Image are required.
	Namespace, Image, ServiceAccount string
	// Recorder stores the records (serve's history.Spool: signed, linked, spooled when the
	// history is down). Required.
	Recorder drill.Recorder
	// Runner is serve's identity, in the running record written before the Job's pod starts.
	Runner drill.RunnerInfo
	// Identity is this replica's (its Lease identity with --leader-elect), put on every Job it
	// creates as AnnotationCreatedBy; FieldManager names it in the Jobs' managedFields.
	Identity, FieldManager string
	// Operator is who runs without one are attributed to.
	Operator string
	// Env is added to every Job's container (FIREDRILL_PROBE_IMAGE and the like).
	Env []corev1.EnvVar
	// Janitor, when set, removes at once what a dead Job's run left.
	Janitor Janitor
	// PollEvery is how often a Job's state is read; default 2s. HeartbeatEvery is how often the
	// running record is refreshed while the pod says nothing (pending, pulling); default 15s.
	PollEvery, HeartbeatEvery time.Duration
	// DrainTimeout bounds reading the rest of the log once the pod has ended; default 30s.
	DrainTimeout time.Duration
	// AdoptAfter is how long an adopted run's record must have gone without a heartbeat before
	// this executor follows its Job: until then another replica may still follow it (one that
	// lost the Lease, not its life). Default 45s: three of a follower's heartbeats, well under
	// history.StaleRunAfter, after which the run would be marked aborted.
	AdoptAfter time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// Executor runs drills as Jobs. Its Run is a schedule.RunFunc; the scheduler's MaxConcurrent
// bounds the Jobs in flight as it bounds the drills of any executor.
type Executor struct {
	o Options

	mu       sync.Mutex
	inFlight map[string]bool // run ids whose Job this process follows
}

var _ schedule.RunFunc = (*Executor)(nil).Run

// New checks o and returns an Executor; it contacts nothing.
func New(o Options) (*Executor, error) {
	switch {
	case o.Kube == nil || o.Recorder == nil:
		return nil, errors.New("jobexec: Options.Kube and Options.Recorder are required")
	case o.Namespace == "":
		return nil, errors.New("jobexec: Options.Namespace is required")
	case o.Image == "":
		return nil, errors.New("jobexec: Options.Image is required")
	}
	if o.PollEvery <= 0 {
		o.PollEvery = 2 * time.Second
	}
	if o.HeartbeatEvery <= 0 {
		o.HeartbeatEvery = 15 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 30 * time.Second
	}
	if o.AdoptAfter <= 0 {
		o.AdoptAfter = 45 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Executor{o: o, inFlight: map[string]bool{}}, nil
}

// Run runs one drill of sc as a Job and returns its final record, stored. ctx ending (serve's
// shutdown grace is over) deletes the Job: its pod gets the cleanup's time to clean up and
// write its final record, which is stored when it comes.
func (e *Executor) Run(ctx context.Context, sc *scenarios.Scenario, t schedule.Trigger) (*drill.Record, error) {
	op := t.Operator
	if op == "" {
		op = e.o.Operator
	}
	r := &run{e: e, sc: sc, t: t, op: op, name: JobName(t.ID),
		log: e.o.Logger.With("component", "drill-job", "scenario", sc.Metadata.Name, "id", t.ID, "job", JobName(t.ID))}
	r.last = &drill.Record{
		ID: t.ID, Scenario: sc.Metadata.Name, Labels: sc.Metadata.Labels, Annotations: sc.Metadata.Annotations,
		Trigger: t.Kind, Operator: op, Result: drill.Running, StartedAt: e.o.Now().UTC(), Runner: e.o.Runner,
		Objectives: []drill.ObjectiveRecord{}, Steps: []drill.StepRecord{}, Checks: []drill.CheckRecord{},
	}
	if !t.ScheduledFor.IsZero() {
		sf := t.ScheduledFor.UTC()
		r.last.ScheduledFor = &sf
	}
	// Begun here, before the Job exists: a scheduled time another replica has is dropped
	// before anything runs, and the run shows as running while its pod is pending.
	if err := e.o.Recorder.Begin(ctx, copyRecord(r.last)); err != nil {
		if errors.Is(err, history.ErrDuplicateSchedule) {
			return r.last, err
		}
		return r.finish(ctx, drill.Error, "could not record the start of the run: "+err.Error())
	}
	e.mu.Lock()
	e.inFlight[t.ID] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.inFlight, t.ID)
		e.mu.Unlock()
	}()
	return r.do(ctx)
}

// run is one drill's Job as serve follows it.
type run struct {
	e    *Executor
	sc   *scenarios.Scenario
	t    schedule.Trigger
	op   string
	name string
	log  *slog.Logger

	last    *drill.Record // the newest record, the pod's once it spoke
	seq     int           // the last record line stored
	jobSeen bool
	pod     string // the pod whose log is followed
	podGone bool
	created time.Time
	// behind, for an adopted run, is its record as the history had it: the log's progress
	// lines before it are not stored again.
	behind *drill.Record
}

func (r *run) do(ctx context.Context) (*drill.Record, error) {
	e := r.e
	job, err := BuildJob(JobParams{Namespace: e.o.Namespace, Image: e.o.Image, ServiceAccount: e.o.ServiceAccount, Scenario: r.sc,
		RunID: r.t.ID, Trigger: r.t.Kind, Operator: r.op, ScheduledFor: r.t.ScheduledFor, Seed: r.t.Seed, Env: e.o.Env, CreatedBy: e.o.Identity})
	if err != nil {
		return r.finish(ctx, drill.Error, "could not build the drill's Job: "+err.Error())
	}
	r.created = e.o.Now()
	job, err = e.o.Kube.BatchV1().Jobs(e.o.Namespace).Create(ctx, job, metav1.CreateOptions{FieldManager: e.o.FieldManager})
	if err != nil {
		return r.finish(ctx, drill.Error, fmt.Sprintf("could not create the drill's Job %s/%s: %v; serve's ServiceAccount needs create on jobs there (deploy/)", e.o.Namespace, r.name, err))
	}
	r.jobSeen = true
	r.log.Info("drill Job created", "namespace", e.o.Namespace, "serviceAccount", job.Spec.Template.Spec.ServiceAccountName)
	return r.watch(ctx)
}

// watch follows the run's Job to its final record: the pod's record lines stored as they
// come, its death recorded when it dies without one.
func (r *run) watch(ctx context.Context) (*drill.Record, error) {
	e := r.e
	poll := time.NewTicker(e.o.PollEvery)
	defer poll.Stop()
	beat := time.NewTicker(e.o.HeartbeatEvery)
	defer beat.Stop()
	var lines <-chan Line // nil until the pod's log is followed; closed when it ends
	followCtx, stopFollow := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFollow()
	shutdown := ctx.Done()
	var shutdownAt time.Time

	for {
		select {
		case l, ok := <-lines:
			if !ok {
				lines = nil // the log ended; the next poll says why
				continue
			}
			if final := r.store(ctx, l); final != nil {
				return r.finished(ctx, final)
			}
		case <-beat.C:
			// The pod beats every 15s itself once it runs; this keeps a pending run alive for
			// other replicas' abandoned-run sweep.
			_ = e.o.Recorder.Update(context.WithoutCancel(ctx), copyRecord(r.last))
		case <-shutdown:
			shutdown, shutdownAt = nil, e.o.Now()
			r.log.Warn("serve is shutting down past its grace: deleting the drill's Job; its pod cleans up and records")
			r.deleteJob()
		case <-poll.C:
			o := r.observe(ctx)
			if lines == nil && r.pod != "" && !r.podGone && o.following {
				lines = r.follow(followCtx, r.pod)
			}
			why := Death(o.Observed, memoryLimit(r.sc))
			if why == "" && lines == nil && o.ended {
				why = fmt.Sprintf("Job pod %s ended without a final record: look at kubectl logs -n %s job/%s", r.pod, e.o.Namespace, r.name)
			}
			overdue := shutdown == nil && e.o.Now().Sub(shutdownAt) > CleanupTimeout+time.Minute
			if overdue {
				why = "firedrill serve shut down and deleted the drill's Job; its pod did not record how the drill ended in time"
			}
			if why == "" {
				continue
			}
			if o.running && !r.podGone && !overdue {
				// Deleted, evicted, past its deadline, its Job deleted: the pod was sent SIGTERM
				// and gets the cleanup's time to clean up and write its final record. Wait for it.
				continue
			}
			// The pod may have written its final record just before it ended: read the rest.
			if final := r.drain(ctx, lines); final != nil {
				return r.finished(ctx, final)
			}
			if shutdown == nil {
				why = "firedrill serve shut down: " + why
			}
			return r.died(ctx, why)
		}
	}
}

// observed is one look at the Job.
type observed struct {
	Observed
	following bool // the pod's container runs or ran: its log can be read
	running   bool // the pod's container still runs: it may yet write its final record
	ended     bool // the pod ended (Succeeded or Failed)
}

func (r *run) observe(ctx context.Context) observed {
	e := r.e
	var o observed
	o.JobSeen = r.jobSeen
	job, err := e.o.Kube.BatchV1().Jobs(e.o.Namespace).Get(ctx, r.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		r.log.Warn("could not read the drill's Job; trying again", "err", err)
		o.JobSeen = false // unknown is not gone
		return o
	default:
		o.Job = job
	}
	pods, err := e.o.Kube.CoreV1().Pods(e.o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelRunID + "=" + r.t.ID})
	if err != nil {
		r.log.Warn("could not list the drill Job's pods; trying again", "err", err)
		return observed{}
	}
	o.Pods = pods.Items
	if len(o.Pods) == 0 && r.pod != "" && !r.podGone {
		r.podGone = true
	}
	if r.podGone {
		// Force-deleted: nothing is left to ask.
		o.Pods = append(o.Pods, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: r.pod, DeletionTimestamp: &metav1.Time{Time: e.o.Now()}}})
	}
	for _, p := range pods.Items {
		if r.pod == "" {
			r.pod = p.Name
		}
		if p.Name != r.pod {
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == Container && (cs.State.Running != nil || cs.State.Terminated != nil) {
				o.following = true
			}
			// A pod past its deletion time (its grace period) that still shows running is on a node
			// that no longer answers: waiting for it would be forever.
			lost := p.DeletionTimestamp != nil && e.o.Now().After(p.DeletionTimestamp.Add(time.Minute))
			if cs.Name == Container && cs.State.Running != nil && !lost {
				o.running = true
			}
		}
		o.ended = p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	}
	if len(pods.Items) == 0 && o.Job != nil {
		ev, err := e.o.Kube.CoreV1().Events(e.o.Namespace).List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.uid", string(o.Job.UID)).String()})
		if err == nil {
			o.Events = ev.Items
		}
	}
	return o
}

// follow reads the pod's log until its container has ended, sending each record line it has
// not sent before; after a dropped connection it reads the log again from its start and skips
// what it had (by Seq: a since-time would trust the node's clock).
func (r *run) follow(ctx context.Context, pod string) <-chan Line {
	out := make(chan Line)
	sent := r.seq
	each := func(l Line) bool {
		if l.Seq <= sent {
			return true
		}
		sent = l.Seq
		select {
		case out <- l:
			return true
		case <-ctx.Done():
			return false
		}
	}
	go func() {
		defer close(out)
		for attempt := 0; ctx.Err() == nil; attempt++ {
			err := r.readLog(ctx, pod, true, each)
			if ctx.Err() != nil {
				return
			}
			p, perr := r.e.o.Kube.CoreV1().Pods(r.e.o.Namespace).Get(ctx, pod, metav1.GetOptions{})
			if apierrors.IsNotFound(perr) {
				return // the pod and its log are gone
			}
			if perr == nil && containerEnded(p) {
				// A followed log can end at the container's exit before its last lines (the
				// final record, written last) have been sent: read the whole log once more
				// while the pod is still there. Lines already sent are skipped by Seq.
				if err := r.readLog(ctx, pod, false, each); err != nil && ctx.Err() == nil {
					r.log.Info("could not read the ended drill pod's log again", "pod", pod, "err", err)
				}
				return
			}
			if err != nil {
				r.log.Info("the drill pod's log dropped; reading it again", "pod", pod, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(time.Duration(attempt+1)*time.Second, 10*time.Second)):
			}
		}
	}()
	return out
}

func (r *run) readLog(ctx context.Context, pod string, follow bool, each func(Line) bool) error {
	s, err := r.e.o.Kube.CoreV1().Pods(r.e.o.Namespace).GetLogs(pod, &corev1.PodLogOptions{Container: Container, Follow: follow}).Stream(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	br := bufio.NewReaderSize(s, 64<<10)
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 && (err == nil || errors.Is(err, io.EOF)) {
			l, ok, perr := ParseLine(string(b))
			switch {
			case perr != nil:
				r.log.Warn("a record line of the drill's pod does not parse; skipped", "pod", pod, "err", perr)
			case ok && !each(l):
				return nil
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func containerEnded(p *corev1.Pod) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == Container && cs.State.Terminated != nil {
			return true
		}
	}
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// store takes one record line: progress is stored as an update, and the final record is
// returned for finished. The pod speaks for its own run only: what names the run is serve's.
func (r *run) store(ctx context.Context, l Line) *drill.Record {
	rec := l.Record
	if rec.ID != r.t.ID {
		r.log.Warn("the drill's pod wrote a record of another run; ignored", "got", rec.ID)
		return nil
	}
	r.seq = l.Seq
	rec.Scenario, rec.Trigger, rec.Operator, rec.ScheduledFor = r.last.Scenario, r.last.Trigger, r.last.Operator, r.last.ScheduledFor
	rec.Labels, rec.Annotations = r.last.Labels, r.last.Annotations
	rec.PrevHash, rec.Hash, rec.Signature = "", "", ""
	if l.Kind == KindFinish {
		return rec
	}
	if rec.Result != drill.Running {
		r.log.Warn("the drill's pod wrote a progress record that is not running; ignored", "result", rec.Result)
		return nil
	}
	if r.behind != nil {
		if progress(rec) < progress(r.behind) {
			return nil // the history has this already (adopted: the log is read from its start)
		}
		r.behind = nil
	}
	r.last = rec
	_ = r.e.o.Recorder.Update(context.WithoutCancel(ctx), copyRecord(rec))
	return nil
}

// drain reads what is left of the log, for at most DrainTimeout; it returns the final record if
// one comes.
func (r *run) drain(ctx context.Context, lines <-chan Line) *drill.Record {
	if lines == nil && r.pod != "" && !r.podGone {
		// Never followed (the pod ended between two polls): read its log once.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.e.o.DrainTimeout)
		defer cancel()
		lines = r.follow(fctx, r.pod)
	}
	if lines == nil {
		return nil
	}
	timeout := time.After(r.e.o.DrainTimeout)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return nil
			}
			if final := r.store(ctx, l); final != nil {
				return final
			}
		case <-timeout:
			return nil
		}
	}
}

// finished stores the pod's final record. An aborted run whose scratch resources were not kept
// is handed to the janitor: its cleanup may have been cut short.
func (r *run) finished(ctx context.Context, rec *drill.Record) (*drill.Record, error) {
	if rec.FinishedAt == nil {
		now := r.e.o.Now().UTC()
		rec.FinishedAt = &now
	}
	err := r.e.o.Recorder.Finish(context.WithoutCancel(ctx), rec)
	if rec.Result == drill.Aborted && (rec.Target == nil || !rec.Target.Kept) {
		r.handOver(rec.Runner)
	}
	r.log.Info("drill Job finished", "result", rec.Result, "message", rec.Message, "jobToStart", rec.StartedAt.Sub(r.created).Round(time.Millisecond).String())
	if err != nil {
		return rec, fmt.Errorf("%w %s: %w", drill.ErrRecord, rec.ID, err)
	}
	return rec, nil
}

// died records the run aborted with why, deletes its Job and hands the run to the janitor.
func (r *run) died(ctx context.Context, why string) (*drill.Record, error) {
	r.log.Warn("drill Job died; the run is recorded aborted and its Job deleted", "why", why)
	r.deleteJob()
	r.handOver(r.last.Runner)
	return r.finish(ctx, drill.Aborted, why)
}

// finish stores the last record as final with result and message.
func (r *run) finish(ctx context.Context, result drill.Result, msg string) (*drill.Record, error) {
	rec := copyRecord(r.last)
	now := r.e.o.Now().UTC()
	rec.Result, rec.Message, rec.FinishedAt = result, msg, &now
	for i := range rec.Steps {
		if rec.Steps[i].Result == drill.Running {
			rec.Steps[i].Result, rec.Steps[i].Message, rec.Steps[i].FinishedAt = drill.Aborted, "runner gone: "+msg, &now
		}
	}
	if err := r.e.o.Recorder.Finish(context.WithoutCancel(ctx), rec); err != nil {
		return rec, fmt.Errorf("%w %s: %w", drill.ErrRecord, rec.ID, err)
	}
	return rec, nil
}

func (r *run) handOver(runner drill.RunnerInfo) {
	if r.e.o.Janitor == nil {
		return
	}
	if runner.Host == "" || runner == r.e.o.Runner {
		runner = drill.RunnerInfo{Host: "pod " + r.e.o.Namespace + "/" + r.pod}
	}
	r.e.o.Janitor.RunnerGone(r.t.ID, runner)
	r.e.o.Janitor.Wake()
}

// deleteJob deletes the run's Job and, through the garbage collector, its pod (which gets its
// grace period to clean up): a Job that died is never run again.
func (r *run) deleteJob() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bg := metav1.DeletePropagationBackground
	err := r.e.o.Kube.BatchV1().Jobs(r.e.o.Namespace).Delete(ctx, r.name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil && !apierrors.IsNotFound(err) {
		r.log.Warn("could not delete the drill's Job; its activeDeadlineSeconds and ttlSecondsAfterFinished end it", "err", err)
	}
}

// Orphan is a drill Job no process of this executor follows whose run the history still
// has running: its serve died (or lost the Lease) while the drill ran. Adopt follows it.
type Orphan struct {
	Job      string
	Scenario *scenarios.Scenario // the version the Job runs, from its environment
	Trigger  schedule.Trigger    // the run's, from its record
	created  time.Time
}

// Sweep is what SweepOrphans did.
type Sweep struct {
	Deleted []string // Jobs of runs the history had finished
	Adopted []string // Jobs handed to adopt
}

// SweepOrphans looks at the drill Jobs no process of this executor follows. The Job of a run
// the history has finished — marked aborted after its serve died (history.Store.MarkAbandoned)
// — is deleted, and its run handed to the janitor. With adopt set (this replica leads), the
// Job of a run still running is handed to adopt, which should run Adopt's RunFunc for it
// (schedule.Scheduler.Adopt); a Job adopt refuses is looked at again at the next sweep.
func (e *Executor) SweepOrphans(ctx context.Context, runs Runs, adopt func(Orphan) error) (Sweep, error) {
	var sw Sweep
	jobs, err := e.o.Kube.BatchV1().Jobs(e.o.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: LabelManagedBy + "=" + ManagedBy + "," + LabelComponent + "=" + Component})
	if err != nil {
		return sw, fmt.Errorf("list drill Jobs in %s: %w", e.o.Namespace, err)
	}
	for _, j := range jobs.Items {
		id := j.Labels[LabelRunID]
		e.mu.Lock()
		ours := e.inFlight[id]
		e.mu.Unlock()
		if ours || id == "" {
			continue
		}
		rec, err := runs.Get(ctx, id)
		if err != nil {
			continue // not begun (the history was down): its Job's deadline and TTL end it
		}
		if rec.Result == drill.Running {
			// Also a finished Job: its pod may have written the final record nobody stored.
			if adopt == nil {
				continue // another replica may follow it; the leader adopts it, or MarkAbandoned ends it
			}
			o := Orphan{Job: j.Name, Scenario: jobScenario(&j, rec), Trigger: triggerOf(rec), created: j.CreationTimestamp.Time}
			e.mu.Lock()
			e.inFlight[id] = true
			e.mu.Unlock()
			if err := adopt(o); err != nil {
				e.mu.Lock()
				delete(e.inFlight, id)
				e.mu.Unlock()
				e.o.Logger.Warn("could not adopt an orphaned drill Job; trying again at the next sweep", "job", j.Name, "err", err)
				continue
			}
			sw.Adopted = append(sw.Adopted, j.Name)
			continue
		}
		if jobFinished(&j) {
			continue
		}
		bg := metav1.DeletePropagationBackground
		if err := e.o.Kube.BatchV1().Jobs(e.o.Namespace).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
			return sw, fmt.Errorf("delete orphaned drill Job %s: %w", j.Name, err)
		}
		sw.Deleted = append(sw.Deleted, j.Name)
		if e.o.Janitor != nil {
			e.o.Janitor.RunnerGone(id, drill.RunnerInfo{Host: "job " + e.o.Namespace + "/" + j.Name})
			e.o.Janitor.Wake()
		}
	}
	return sw, nil
}

// Adopt returns the RunFunc that follows an orphan's Job to its final record, as Run follows a
// Job it created. It first waits until the run's record has gone AdoptAfter without a
// heartbeat: a replica that lost the Lease but not its life still follows its Jobs, and two
// followers would store one run twice. If the record is finished meanwhile — by that replica,
// or marked aborted — the RunFunc returns it with schedule.ErrNotOurs (deleting the Job if it
// still runs, as SweepOrphans would). Then it reads the pod's log from its start, storing only
// what is newer than the history's record. The run's record names this serve as its runner
// while the pod has not written one.
func (e *Executor) Adopt(o Orphan, runs Runs) schedule.RunFunc {
	return func(ctx context.Context, sc *scenarios.Scenario, t schedule.Trigger) (*drill.Record, error) {
		defer func() {
			e.mu.Lock()
			delete(e.inFlight, t.ID)
			e.mu.Unlock()
		}()
		r := &run{e: e, sc: sc, t: t, op: t.Operator, name: o.Job, jobSeen: true, created: o.created,
			log: e.o.Logger.With("component", "drill-job", "scenario", sc.Metadata.Name, "id", t.ID, "job", o.Job, "adopted", true)}
		rec, err := r.standby(ctx, runs)
		if rec == nil || err != nil {
			return rec, err
		}
		r.last, r.behind = rec, copyRecord(rec)
		if !strings.HasPrefix(rec.Runner.Host, o.Job+"-") {
			r.last.Runner = e.o.Runner // the pod has not spoken: the run is this serve's to keep alive
		}
		_ = e.o.Recorder.Update(context.WithoutCancel(ctx), copyRecord(r.last))
		r.log.Info("following an adopted drill Job: its serve is gone", "steps", len(rec.Steps))
		return r.watch(ctx)
	}
}

// standby waits until the run's follower is gone (its record without a heartbeat for
// AdoptAfter), and returns the record as the history has it; or the final record, with
// schedule.ErrNotOurs, when it was finished meanwhile.
func (r *run) standby(ctx context.Context, runs Runs) (*drill.Record, error) {
	e := r.e
	tick := time.NewTicker(e.o.PollEvery)
	defer tick.Stop()
	for {
		flights, err := runs.InFlight(ctx)
		if err == nil {
			i := slices.IndexFunc(flights, func(f history.InFlight) bool { return f.Record.ID == r.t.ID })
			if i >= 0 && e.o.Now().Sub(flights[i].Heartbeat) > e.o.AdoptAfter {
				return &flights[i].Record, nil
			}
			if i < 0 {
				rec, err := runs.Get(ctx, r.t.ID)
				if err == nil {
					r.endIfRunning(ctx)
					return rec, fmt.Errorf("%w: run %s was recorded %s by another replica (%s)", schedule.ErrNotOurs, r.t.ID, rec.Result, rec.Message)
				}
			}
		} else if ctx.Err() == nil {
			r.log.Warn("could not read the runs in flight; trying again", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: serve stopped before the run's follower was found gone", schedule.ErrNotOurs)
		case <-tick.C:
		}
	}
}

// endIfRunning deletes the run's Job when it has not finished: its run is final in the history.
func (r *run) endIfRunning(ctx context.Context) {
	j, err := r.e.o.Kube.BatchV1().Jobs(r.e.o.Namespace).Get(ctx, r.name, metav1.GetOptions{})
	if err != nil || jobFinished(j) {
		return
	}
	r.log.Warn("the adopted run was finished in the history while its Job runs: deleting the Job")
	r.deleteJob()
	r.handOver(drill.RunnerInfo{Host: "job " + r.e.o.Namespace + "/" + r.name})
}

// jobScenario is the scenario a Job runs, from its environment; a Job whose scenario cannot be
// read is followed with its record's name only.
func jobScenario(j *batchv1.Job, rec *drill.Record) *scenarios.Scenario {
	for _, c := range j.Spec.Template.Spec.Containers {
		for _, v := range c.Env {
			if c.Name != Container || v.Name != EnvScenario {
				continue
			}
			var sc scenarios.Scenario
			if json.Unmarshal([]byte(v.Value), &sc) == nil && sc.Metadata.Name == rec.Scenario {
				return &sc
			}
		}
	}
	sc := &scenarios.Scenario{}
	sc.Metadata.Name = rec.Scenario
	return sc
}

// triggerOf is the trigger of a run as its record names it.
func triggerOf(rec *drill.Record) schedule.Trigger {
	t := schedule.Trigger{ID: rec.ID, Kind: rec.Trigger, Operator: rec.Operator}
	if rec.ScheduledFor != nil {
		t.ScheduledFor = *rec.ScheduledFor
	}
	return t
}

// progress orders the running records of one run: a later one has more steps and checks.
func progress(r *drill.Record) int { return len(r.Steps) + len(r.Checks) }

func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func memoryLimit(sc *scenarios.Scenario) string {
	if r := sc.Spec.Runner; r != nil && r.Resources != nil {
		return r.Resources.Limits["memory"]
	}
	return ""
}

func copyRecord(r *drill.Record) *drill.Record {
	c := *r
	c.Steps, c.Checks, c.Objectives = slices.Clone(r.Steps), slices.Clone(r.Checks), slices.Clone(r.Objectives)
	return &c
}
