package crd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/firedrill-dev/firedrill/api/v1alpha1"
	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// What serve puts on the DrillRuns it creates for scheduled runs of Scenario resources.
const (
	// LabelScenario names the scenario (label selectors: kubectl get drillruns -l ...).
	LabelScenario = "firedrill.dev/scenario"
	// LabelTrigger is "schedule".
	LabelTrigger = "firedrill.dev/trigger"
	// AnnotationScheduledFor is the scheduled time (RFC 3339) of the run a DrillRun records. serve
	// starts no run for a DrillRun that has it: it follows the scheduled run's record.
	AnnotationScheduledFor = "firedrill.dev/scheduled-for"
)

// RunRecords is what the DrillRun controller reads of the history (history.Store has it).
type RunRecords interface {
	Get(ctx context.Context, id string) (*drill.Record, error)
	List(ctx context.Context, f history.Filter) ([]drill.Record, error)
}

// RunsOptions are what a RunController works with.
type RunsOptions struct {
	// Namespace whose DrillRuns are served; "" for every namespace.
	Namespace string
	// Entries are the scenarios loaded: files first, then the Source's (Source.Merge).
	Entries func() []schedule.Entry
	// Source holds the Scenario resources: the owners of the DrillRuns of scheduled runs.
	Source *Source
	// Scheduled is the scheduler's view: which scenario has a run in flight.
	Scheduled func() []schedule.Status
	// Start starts a run (schedule.Scheduler.Start).
	Start func(ctx context.Context, name string, t schedule.Trigger) (string, error)
	// Records is the history the status follows.
	Records RunRecords
	// Leading reports whether this replica may act; nil: always.
	Leading func() bool
	// HistoryLimit is how many DrillRuns of scheduled runs are kept per Scenario, the oldest
	// deleted first; 0: scheduled runs get no DrillRun. DrillRuns people create are never
	// deleted.
	HistoryLimit int
	// Every is how often DrillRuns in flight are compared with the history, besides after each
	// change and run; default 5s.
	Every time.Duration
	// ClaimGrace is how long a claimed DrillRun may go without its run's record before it is
	// given up (the replica that claimed it died before the run began); default 5m.
	ClaimGrace time.Duration
	// FieldManager names this replica in the managedFields of the DrillRuns it creates and the
	// statuses it writes; default DefaultFieldManager.
	FieldManager string
	Logger       *slog.Logger
}

// RunController serves DrillRun resources: a new one is claimed by the leader and run through
// the scheduler, and its status follows the run's record in the history until it is sealed.
// It also creates DrillRuns for the scheduled runs of Scenario resources, and prunes them.
type RunController struct {
	client dynamic.Interface
	opts   RunsOptions
	log    *slog.Logger
	poke   chan struct{}
	store  cache.Store // the informer's, once Run has synced

	mu        sync.Mutex
	scheduled []scheduledRun // to record as DrillRuns, from ScheduledRunStarted
}

// scheduledRun is a scheduled run that started on this replica.
type scheduledRun struct {
	scenario string
	at       time.Time
}

// unknownGrace is how long a DrillRun naming no known scenario waits for it before it fails: a
// Scenario applied with it reaches serve through another watch.
const unknownGrace = 15 * time.Second

// maxQueued bounds the scheduled runs waiting for their DrillRun (a follower's, or an API
// server that does not answer): older ones are dropped, the history has them.
const maxQueued = 1000

// NewRunController returns a controller of the DrillRuns client reaches; nothing is read until
// Check or Run.
func NewRunController(client dynamic.Interface, opts RunsOptions) *RunController {
	if opts.Every <= 0 {
		opts.Every = 5 * time.Second
	}
	if opts.ClaimGrace <= 0 {
		opts.ClaimGrace = 5 * time.Minute
	}
	if opts.FieldManager == "" {
		opts.FieldManager = DefaultFieldManager
	}
	if opts.Leading == nil {
		opts.Leading = func() bool { return true }
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RunController{client: client, opts: opts, log: log, poke: make(chan struct{}, 1)}
}

// Check lists DrillRuns once: it fails when the CRD is not installed or RBAC does not allow it.
func (c *RunController) Check(ctx context.Context) error {
	_, err := c.client.Resource(v1alpha1.DrillRunResource).Namespace(c.opts.Namespace).List(ctx, metav1.ListOptions{Limit: 1})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("list DrillRuns: %w: install the DrillRun CRD (kubectl apply --server-side -f deploy/helm/firedrill/crds/)", err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("list DrillRuns: %w: grant get, list, watch, create, delete on drillruns.firedrill.dev and get, update, patch on drillruns/status (deploy/RBAC.md)", err)
	case err != nil:
		return fmt.Errorf("list DrillRuns: %w", err)
	}
	return nil
}

// Poke asks for a pass soon.
func (c *RunController) Poke() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// RunFinished tells the controller a run was recorded: its DrillRun's status is written now.
func (c *RunController) RunFinished(*drill.Record) { c.Poke() }

// ScheduledRunStarted is the scheduler's OnStart: a scheduled run of a Scenario resource gets
// a DrillRun (when HistoryLimit allows), created by the leader's next pass.
func (c *RunController) ScheduledRunStarted(sc *scenarios.Scenario, t schedule.Trigger) {
	if t.Kind != schedule.KindSchedule || c.opts.HistoryLimit <= 0 {
		return
	}
	c.mu.Lock()
	if len(c.scheduled) >= maxQueued {
		c.scheduled = c.scheduled[1:]
	}
	c.scheduled = append(c.scheduled, scheduledRun{scenario: sc.Metadata.Name, at: t.ScheduledFor})
	c.mu.Unlock()
	c.Poke()
}

// Run watches DrillRuns and acts on them, while leading, after every change, run and Poke and
// every opts.Every, until ctx is done.
func (c *RunController) Run(ctx context.Context) error {
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.client, 0, c.opts.Namespace, nil)
	inf := factory.ForResource(v1alpha1.DrillRunResource).Informer()
	poke := func(any) { c.Poke() }
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }}); err != nil {
		return fmt.Errorf("watch DrillRuns: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return ctx.Err()
	}
	c.store = inf.GetStore()
	t := time.NewTicker(c.opts.Every)
	defer t.Stop()
	for {
		c.pass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-c.poke:
		case <-t.C:
		}
	}
}

// pass does, while leading, what is due: DrillRuns for the scheduled runs that started, then
// every DrillRun that is not done compared with its run.
func (c *RunController) pass(ctx context.Context) {
	if !c.opts.Leading() || c.store == nil {
		return
	}
	c.mu.Lock()
	todo := c.scheduled
	c.scheduled = nil
	c.mu.Unlock()
	for _, r := range todo {
		if err := c.recordScheduled(ctx, r); err != nil && ctx.Err() == nil {
			c.log.Warn("could not create the DrillRun of a scheduled run; the history has the run", "scenario", r.scenario, "scheduledFor", r.at, "err", err)
		}
	}
	objs := c.store.List()
	slices.SortFunc(objs, func(a, b any) int { // oldest first: the order people created them in
		ua, ub := a.(*unstructured.Unstructured), b.(*unstructured.Unstructured)
		return cmp.Or(ua.GetCreationTimestamp().Compare(ub.GetCreationTimestamp().Time), cmp.Compare(ua.GetNamespace()+"/"+ua.GetName(), ub.GetNamespace()+"/"+ub.GetName()))
	})
	for _, o := range objs {
		if ctx.Err() != nil {
			return
		}
		u := o.(*unstructured.Unstructured)
		if err := c.reconcile(ctx, u); err != nil && ctx.Err() == nil {
			c.log.Warn("could not bring a DrillRun's status up to date; tried again at the next pass", "drillrun", u.GetNamespace()+"/"+u.GetName(), "err", err)
		}
	}
}

// reconcile acts on one DrillRun: start it, or follow its run, or nothing when it is done.
func (c *RunController) reconcile(ctx context.Context, u *unstructured.Unstructured) error {
	if p, _, _ := unstructured.NestedString(u.Object, "status", "phase"); p == string(v1alpha1.DrillRunFinished) || p == string(v1alpha1.DrillRunFailed) {
		return nil // done: most DrillRuns, every pass
	}
	var dr v1alpha1.DrillRun
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &dr); err != nil {
		return fmt.Errorf("read DrillRun: %w", err)
	}
	switch st := dr.Status; {
	case st.Phase == v1alpha1.DrillRunFinished || st.Phase == v1alpha1.DrillRunFailed:
		return nil
	case st.RunID != "":
		return c.follow(ctx, u, &dr)
	case u.GetAnnotations()[AnnotationScheduledFor] != "":
		return c.findScheduled(ctx, u, &dr)
	}
	return c.start(ctx, u, &dr)
}

// start claims a new DrillRun and starts its run, or says why it cannot run (yet).
func (c *RunController) start(ctx context.Context, u *unstructured.Unstructured, dr *v1alpha1.DrillRun) error {
	ns, name := u.GetNamespace(), u.GetName()
	tg := resolve(ns, dr.Spec, c.opts.Entries(), c.opts.Scheduled())
	switch {
	case tg.unknown && time.Since(u.GetCreationTimestamp().Time) < unknownGrace:
		// Applied together with its Scenario, the DrillRun may be seen first.
		_, err := c.write(ctx, u, pending(fmt.Sprintf("waiting for scenario %q to be loaded", dr.Spec.ScenarioRef.Name)), false)
		return ignoreConflict(err)
	case tg.refusal != "":
		c.log.Warn("DrillRun refused", "drillrun", ns+"/"+name, "reason", tg.refusal)
		_, err := c.write(ctx, u, refused(tg.refusal), false)
		return ignoreConflict(err)
	case tg.wait != "":
		_, err := c.write(ctx, u, pending(tg.wait), false)
		return ignoreConflict(err)
	}
	// The claim: a status write on the version this replica saw. Another replica (a leader
	// that has not noticed it lost the Lease) that claimed it first made that version stale.
	id := drill.NewRunID(time.Now())
	claim, err := c.write(ctx, u, claimed(id, time.Now()), false)
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // the next pass sees the newer version
	} else if err != nil {
		return fmt.Errorf("claim: %w", err)
	}
	t := schedule.Trigger{ID: id, Kind: schedule.KindDrillRun, Operator: "drillrun/" + ns + "/" + name, Labels: dr.Spec.Labels}
	if dr.Spec.Seed != nil {
		seed := uint64(*dr.Spec.Seed)
		t.Seed = &seed
	}
	_, err = c.opts.Start(ctx, tg.name, t)
	var next v1alpha1.DrillRunStatus
	switch {
	case err == nil:
		c.log.Info("DrillRun started", "drillrun", ns+"/"+name, "scenario", tg.name, "id", id)
		return nil
	case errors.Is(err, schedule.ErrBusy), errors.Is(err, schedule.ErrStopped), errors.Is(err, schedule.ErrUnknownScenario):
		// Not started: back to Pending, for this leader's next pass or the next leader (a
		// scenario that is gone by then fails there, saying so).
		next = pending(err.Error())
	default:
		next = refused(err.Error())
	}
	_, werr := c.write(ctx, claim, next, true)
	return werr
}

// follow writes the status of the run a DrillRun has an id of, as the history has it.
func (c *RunController) follow(ctx context.Context, u *unstructured.Unstructured, dr *v1alpha1.DrillRun) error {
	rec, err := c.opts.Records.Get(ctx, dr.Status.RunID)
	if errors.Is(err, history.ErrNotFound) {
		if since := dr.Status.StartedAt; since != nil && time.Since(since.Time) > c.opts.ClaimGrace {
			st := refused(fmt.Sprintf("run %s never reached the history within %s of being claimed: the serve replica that claimed this DrillRun stopped before the drill began; create a new DrillRun to run it", dr.Status.RunID, c.opts.ClaimGrace))
			st.RunID = dr.Status.RunID
			_, err := c.write(ctx, u, st, true)
			return err
		}
		return nil // not begun yet
	} else if err != nil {
		return fmt.Errorf("read run %s: %w", dr.Status.RunID, err)
	}
	_, err = c.write(ctx, u, RunStatus(rec, cmp.Or(dr.Status.Trigger, schedule.KindDrillRun)), true)
	return err
}

// findScheduled finds the record of the scheduled run a DrillRun serve created stands for.
func (c *RunController) findScheduled(ctx context.Context, u *unstructured.Unstructured, dr *v1alpha1.DrillRun) error {
	at, err := time.Parse(time.RFC3339, u.GetAnnotations()[AnnotationScheduledFor])
	if err != nil {
		_, err := c.write(ctx, u, refused(fmt.Sprintf("annotation %s: %v: serve writes an RFC 3339 time there", AnnotationScheduledFor, err)), false)
		return ignoreConflict(err)
	}
	recs, err := c.opts.Records.List(ctx, history.Filter{Scenario: dr.Spec.ScenarioRef.Name, Since: at, Limit: 50})
	if err != nil {
		return fmt.Errorf("read the runs of %s: %w", dr.Spec.ScenarioRef.Name, err)
	}
	for i, r := range slices.Backward(recs) { // oldest first: the scheduled time's run
		if r.ScheduledFor != nil && r.ScheduledFor.Equal(at) && r.Result != drill.Missed {
			_, err := c.write(ctx, u, RunStatus(&recs[i], schedule.KindSchedule), true)
			return err
		}
	}
	if time.Since(u.GetCreationTimestamp().Time) > c.opts.ClaimGrace {
		_, err := c.write(ctx, u, refused(fmt.Sprintf("no run of %s scheduled for %s reached the history within %s", dr.Spec.ScenarioRef.Name, at.Format(time.RFC3339), c.opts.ClaimGrace)), true)
		return err
	}
	return nil
}

// recordScheduled creates the DrillRun of a scheduled run of a Scenario resource (none for a
// scenario file), named after the scheduled time so that two replicas make one, owned by the
// Scenario so that it goes with it; then prunes that Scenario's to HistoryLimit.
func (c *RunController) recordScheduled(ctx context.Context, r scheduledRun) error {
	var owner *unstructured.Unstructured
	for _, e := range c.opts.Entries() {
		if e.Scenario != nil && e.Scenario.Metadata.Name == r.scenario {
			if key, ok := strings.CutPrefix(e.File, FilePrefix); ok && c.opts.Source != nil {
				owner = c.opts.Source.object(key)
			}
			break
		}
	}
	if owner == nil {
		return nil // a scenario file's run, or the Scenario is gone
	}
	ns := owner.GetNamespace()
	dr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "DrillRun",
		"metadata": map[string]any{
			"name": fmt.Sprintf("%s-%d", r.scenario, r.at.Unix()), "namespace": ns,
			"labels":      map[string]any{LabelScenario: r.scenario, LabelTrigger: schedule.KindSchedule},
			"annotations": map[string]any{AnnotationScheduledFor: r.at.UTC().Format(time.RFC3339)},
			"ownerReferences": []any{map[string]any{"apiVersion": v1alpha1.GroupVersion.String(), "kind": "Scenario",
				"name": owner.GetName(), "uid": string(owner.GetUID()), "controller": true}},
		},
		"spec": map[string]any{"scenarioRef": map[string]any{"name": r.scenario}},
	}}
	res := c.client.Resource(v1alpha1.DrillRunResource).Namespace(ns)
	if _, err := res.Create(ctx, dr, metav1.CreateOptions{FieldManager: c.opts.FieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create DrillRun %s/%s: %w", ns, dr.GetName(), err)
	}
	return c.prune(ctx, owner)
}

// prune deletes the oldest DrillRuns serve created for owner's scheduled runs beyond
// HistoryLimit. Only those: a DrillRun someone created is theirs (GitOps would create it again,
// and so run the drill again).
func (c *RunController) prune(ctx context.Context, owner *unstructured.Unstructured) error {
	res := c.client.Resource(v1alpha1.DrillRunResource).Namespace(owner.GetNamespace())
	sel := labels.SelectorFromSet(labels.Set{LabelScenario: owner.GetName(), LabelTrigger: schedule.KindSchedule})
	list, err := res.List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return fmt.Errorf("list the DrillRuns of %s: %w", owner.GetName(), err)
	}
	var ours []unstructured.Unstructured
	for _, d := range list.Items {
		if ownedBy(&d, owner.GetUID()) && d.GetAnnotations()[AnnotationScheduledFor] != "" {
			ours = append(ours, d)
		}
	}
	if len(ours) <= c.opts.HistoryLimit {
		return nil
	}
	slices.SortFunc(ours, func(a, b unstructured.Unstructured) int {
		return cmp.Or(cmp.Compare(a.GetAnnotations()[AnnotationScheduledFor], b.GetAnnotations()[AnnotationScheduledFor]), cmp.Compare(a.GetName(), b.GetName()))
	})
	for _, d := range ours[:len(ours)-c.opts.HistoryLimit] {
		uid := d.GetUID()
		err := res.Delete(ctx, d.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("prune DrillRun %s/%s: %w", d.GetNamespace(), d.GetName(), err)
		}
	}
	return nil
}

func ownedBy(u *unstructured.Unstructured, uid types.UID) bool {
	for _, o := range u.GetOwnerReferences() {
		if o.UID == uid && o.Kind == "Scenario" {
			return true
		}
	}
	return false
}

// write sets u's status to want, when it differs; conditions keep their transition time while
// their status does not change. It returns the object as written (u when nothing was).
//
// Without retry a conflict is returned: someone wrote first, and the caller looks again at the
// next pass (a claim must be made on the version it was decided on). With retry the write is
// made again on the newest version, as long as that still follows the same run.
func (c *RunController) write(ctx context.Context, u *unstructured.Unstructured, want v1alpha1.DrillRunStatus, again bool) (*unstructured.Unstructured, error) {
	res := c.client.Resource(v1alpha1.DrillRunResource).Namespace(u.GetNamespace())
	cur, fresh := u, false
	backoff := retry.DefaultRetry
	if !again {
		backoff.Steps = 1
	}
	out := u
	err := retry.RetryOnConflict(backoff, func() error {
		if fresh {
			var err error
			if cur, err = res.Get(ctx, u.GetName(), metav1.GetOptions{}); err != nil {
				return err
			}
		}
		fresh = true
		var have v1alpha1.DrillRunStatus
		if raw, ok := cur.Object["status"].(map[string]any); ok {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &have); err != nil {
				return fmt.Errorf("read status: %w", err)
			}
		}
		if cur != u && (have.Phase == v1alpha1.DrillRunFinished || have.Phase == v1alpha1.DrillRunFailed || (have.RunID != "" && have.RunID != want.RunID)) {
			return nil // done, or someone else's run: nothing of ours to write
		}
		next := want
		next.Conditions = slices.Clone(have.Conditions)
		now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
		for _, cd := range want.Conditions {
			cd.LastTransitionTime = now
			meta.SetStatusCondition(&next.Conditions, cd)
		}
		for _, typ := range []string{v1alpha1.ConditionPassed} { // only once finished
			if meta.FindStatusCondition(want.Conditions, typ) == nil {
				meta.RemoveStatusCondition(&next.Conditions, typ)
			}
		}
		if sameJSON(have, next) {
			out = cur
			return nil
		}
		raw, err := toMap(next)
		if err != nil {
			return err
		}
		w := cur.DeepCopy()
		w.Object["status"] = raw
		out, err = res.UpdateStatus(ctx, w, metav1.UpdateOptions{FieldManager: c.opts.FieldManager})
		return err
	})
	return out, err
}

func ignoreConflict(err error) error {
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
