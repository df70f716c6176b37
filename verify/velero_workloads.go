package verify

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// WorkloadsReadyCheck waits until what was restored runs: Deployments, StatefulSets and
// DaemonSets reach their ready replicas, Pods are neither crash-looping, failing to pull their
// image nor unschedulable, PersistentVolumeClaims are Bound and Jobs complete. On failure every
// blocking object is named with why.
//
// Jobs: Velero does not restore a Job that had completed when it was backed up (restore.go,
// isCompleted). A Job the target holds counts as ready when it is Complete, suspended, or was
// complete in the backup (restored by other means, it would not run again and is no failure).
// A Job that failed is a failure at once; one still running is waited for.
//
// PersistentVolumeClaims of a WaitForFirstConsumer StorageClass that no Pod uses stay Pending by
// design; they count as ready and are noted.
type WorkloadsReadyCheck struct {
	checkName
	timeout          time.Duration
	minPoll, maxPoll time.Duration
}

var _ VeleroCheck = (*WorkloadsReadyCheck)(nil)

// NewWorkloadsReadyCheck builds a workloadsReady check; the timeout defaults to 10m.
func NewWorkloadsReadyCheck(name string, spec scenarios.WorkloadsReadyCheck) *WorkloadsReadyCheck {
	timeout := spec.Timeout.Duration
	if timeout <= 0 {
		timeout = scenarios.DefaultWorkloadsTimeout
	}
	return &WorkloadsReadyCheck{checkName: newCheckName(name, scenarios.CheckWorkloadsReady), timeout: timeout,
		minPoll: 250 * time.Millisecond, maxPoll: 5 * time.Second}
}

// readyCount is the evidence of one kind.
type readyCount struct {
	Ready     int `json:"ready"`
	Total     int `json:"total"`
	Suspended int `json:"suspended,omitempty"`
}

// workloadKinds are the keys of evidence "perKind", in the order messages name them.
var workloadKinds = []string{"deployments", "statefulsets", "daemonsets", "pods", "persistentvolumeclaims", "jobs", "cronjobs"}

type blocker struct {
	what     string
	terminal bool // will not get better by waiting
	// explain, when set, asks the cluster why (events, a crashed container's last log lines);
	// called only for the blockers of the final verdict.
	explain func(ctx context.Context, kube kubernetes.Interface) string
}

type workloadSurvey struct {
	counts   map[string]*readyCount
	blocking []blocker
	// starting counts what is still on its way (pods being created or started, objects their
	// controller has not acted on): a terminal blocker ends the wait only once it is zero, so
	// that the verdict names every blocker and later checks see a settled namespace.
	starting int
	pending  []pendingClaim // not Bound, for diagnosis
	notes    []string
}

// pendingClaim is a claim that is not bound and the index of its blocker.
type pendingClaim struct {
	pvc     corev1.PersistentVolumeClaim
	blocker int
}

func (s *workloadSurvey) block(terminal bool, format string, args ...any) *blocker {
	s.blocking = append(s.blocking, blocker{what: fmt.Sprintf(format, args...), terminal: terminal})
	return &s.blocking[len(s.blocking)-1]
}

// settled says whether waiting longer can change the verdict: some blockers are terminal, the
// same ones as at the poll before (wasTerminal), and nothing is still starting.
func (s *workloadSurvey) settled(wasTerminal []string) bool {
	term := s.terminal()
	return len(term) > 0 && slices.Equal(term, wasTerminal) && s.starting == 0
}

// terminal lists the blockers that will not get better by waiting.
func (s *workloadSurvey) terminal() []string {
	var out []string
	for _, b := range s.blocking {
		if b.terminal {
			out = append(out, b.what)
		}
	}
	return out
}

// Run polls every target namespace, with backoff, until nothing blocks or the timeout is over.
func (c *WorkloadsReadyCheck) Run(ctx context.Context, t *VeleroTarget) Outcome {
	namespaces := targetNamespaces(t)
	ev := map[string]any{"namespaces": namespaces, "timeout": c.timeout.String()}
	if t.Cluster == nil {
		return noTarget(ev)
	}
	if len(namespaces) == 0 {
		return errorOutcome(ev, "no restored namespaces to check: the target names no namespace mapping and no namespaced items")
	}
	kube := t.Cluster.Kube
	var absent []string
	for _, ns := range namespaces {
		_, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			absent = append(absent, ns)
		case err != nil:
			return unreachable(ev, t, err)
		}
	}
	if len(absent) > 0 {
		return failedOutcome(ev, "restored namespaces do not exist: %s", strings.Join(absent, ", "))
	}
	completed := completedJobs(t)
	sc := &storageClasses{kube: kube, byName: map[string]*storagev1.StorageClass{}}

	start := time.Now()
	deadline := start.Add(c.timeout)
	wait := c.minPoll
	var last *workloadSurvey
	var lastErr error
	polls := 0
	var wasTerminal []string
	for {
		s, err := c.survey(ctx, kube, namespaces, completed, sc)
		polls++
		if err == nil {
			last, lastErr = s, nil
			if len(s.blocking) == 0 {
				break
			}
			// A blocker that will not get better (a Secret the restore did not bring back, an
			// image the node does not have) ends the wait once a second poll sees it too (a
			// kubelet can report one for a moment before its caches catch up) and nothing else
			// is still starting (its own failure may be next, or it may come up and write data
			// the next check reads).
			term := s.terminal()
			if s.settled(wasTerminal) {
				break
			}
			wasTerminal = term
		} else {
			lastErr = err
		}
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
		sleep(ctx, min(wait, time.Until(deadline)))
		wait = min(wait*3/2, c.maxPoll)
	}
	elapsed := time.Since(start)
	ev["seconds"], ev["polls"] = elapsed.Round(time.Millisecond).Seconds(), polls
	if last == nil {
		return unreachable(ev, t, lastErr)
	}
	last.evidence(ev)
	if len(last.blocking) == 0 {
		return passedOutcome(ev, "%s", strings.Join(append([]string{fmt.Sprintf("every workload is ready after %s: %s", elapsed.Round(10*time.Millisecond), last.summary())}, last.notes...), "; "))
	}
	if lastErr != nil && ctx.Err() == nil {
		// The last poll failed: what the one before saw is still the best account, said as such.
		last.notes = append(last.notes, "the last poll failed: "+lastErr.Error())
	}
	c.diagnose(ctx, kube, last, sc)
	var what []string
	for _, b := range last.blocking {
		what = append(what, b.what)
	}
	ev["blocking"] = what[:min(len(what), 5*maxListed)]
	const named = 2 * maxListed
	msg := strings.Join(what[:min(len(what), named)], "; ")
	if len(what) > named {
		msg += fmt.Sprintf("; and %d more", len(what)-named)
	}
	switch {
	case ctx.Err() != nil:
		return errorOutcome(ev, "interrupted after %s while waiting for workloads: %s", elapsed.Round(100*time.Millisecond), msg)
	case len(last.terminal()) > 0:
		return failedOutcome(ev, "%s", strings.Join(append([]string{"workloads failed: " + msg}, last.notes...), "; "))
	}
	return failedOutcome(ev, "%s", strings.Join(append([]string{fmt.Sprintf("not ready after %s: %s", c.timeout, msg)}, last.notes...), "; "))
}

// completedJobs are the Jobs (target namespace/name) that had completed in the backup.
func completedJobs(t *VeleroTarget) map[string]bool {
	out := map[string]bool{}
	for _, it := range t.Items {
		if groupResource(it.Resource) != grJobs || it.Object == nil {
			continue
		}
		ct, _ := nestedString(it.Object.Object, "status", "completionTime")
		conds, _ := nestedField(it.Object.Object, "status", "conditions").([]any)
		complete := ct != ""
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Complete" && m["status"] == "True" {
				complete = true
			}
		}
		if complete {
			out[identity(mapNamespace(t, it.Namespace), it.Name)] = true
		}
	}
	return out
}

func (c *WorkloadsReadyCheck) survey(ctx context.Context, kube kubernetes.Interface, namespaces []string, completed map[string]bool, sc *storageClasses) (*workloadSurvey, error) {
	s := &workloadSurvey{counts: map[string]*readyCount{}}
	for _, k := range workloadKinds {
		s.counts[k] = &readyCount{}
	}
	one := len(namespaces) == 1
	for _, ns := range namespaces {
		name := func(n string) string {
			if one {
				return n
			}
			return ns + "/" + n
		}
		deps, err := kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, d := range deps.Items {
			s.deployment(&d, name(d.Name))
		}
		stss, err := kube.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, st := range stss.Items {
			s.statefulSet(&st, name(st.Name))
		}
		dss, err := kube.AppsV1().DaemonSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, ds := range dss.Items {
			s.daemonSet(&ds, name(ds.Name))
		}
		pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		claimed := map[string]bool{}
		for _, p := range pods.Items {
			s.pod(&p, name(p.Name))
			for _, v := range p.Spec.Volumes {
				if v.PersistentVolumeClaim != nil {
					claimed[v.PersistentVolumeClaim.ClaimName] = true
				}
			}
		}
		pvcs, err := kube.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, pvc := range pvcs.Items {
			s.claim(ctx, &pvc, name(pvc.Name), claimed[pvc.Name], sc)
		}
		jobs, err := kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, j := range jobs.Items {
			s.job(&j, name(j.Name), completed[identity(ns, j.Name)])
		}
		cjs, err := kube.BatchV1().CronJobs(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, cj := range cjs.Items {
			rc := s.counts["cronjobs"]
			rc.Total++
			rc.Ready++ // a CronJob is ready by being there; suspended is what the isolation wants
			if cj.Spec.Suspend != nil && *cj.Spec.Suspend {
				rc.Suspended++
			}
		}
	}
	return s, nil
}

func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func (s *workloadSurvey) deployment(d *appsv1.Deployment, name string) {
	rc := s.counts["deployments"]
	rc.Total++
	want := replicas(d.Spec.Replicas)
	switch {
	case d.Status.ObservedGeneration < d.Generation:
		s.starting++
		s.block(false, "deployment %s: the controller has not seen it yet (generation %d, observed %d)", name, d.Generation, d.Status.ObservedGeneration)
	case d.Status.UpdatedReplicas < want || d.Status.AvailableReplicas < want:
		why, stuck := "", false
		for _, c := range d.Status.Conditions {
			switch {
			case c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue,
				c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse:
				why += fmt.Sprintf(" (%s: %s)", c.Reason, c.Message)
				stuck = true
			}
		}
		if d.Status.Replicas < want && !stuck {
			s.starting++ // its ReplicaSet has not made all its pods yet
		}
		s.block(false, "deployment %s: %d/%d available%s", name, d.Status.AvailableReplicas, want, why)
	default:
		rc.Ready++
	}
}

func (s *workloadSurvey) statefulSet(st *appsv1.StatefulSet, name string) {
	rc := s.counts["statefulsets"]
	rc.Total++
	want := replicas(st.Spec.Replicas)
	switch {
	case st.Status.ObservedGeneration < st.Generation:
		s.starting++
		s.block(false, "statefulset %s: the controller has not seen it yet (generation %d, observed %d)", name, st.Generation, st.Status.ObservedGeneration)
	case st.Status.ReadyReplicas < want:
		if st.Status.Replicas == 0 && want > 0 {
			// No pod yet. (Later ones of an OrderedReady set wait for the first: not counted.)
			s.starting++
		}
		s.block(false, "statefulset %s: %d/%d ready", name, st.Status.ReadyReplicas, want)
	default:
		rc.Ready++
	}
}

func (s *workloadSurvey) daemonSet(ds *appsv1.DaemonSet, name string) {
	rc := s.counts["daemonsets"]
	rc.Total++
	switch {
	case ds.Status.ObservedGeneration < ds.Generation:
		s.starting++
		s.block(false, "daemonset %s: the controller has not seen it yet (generation %d, observed %d)", name, ds.Generation, ds.Status.ObservedGeneration)
	case ds.Status.NumberReady < ds.Status.DesiredNumberScheduled:
		if ds.Status.CurrentNumberScheduled < ds.Status.DesiredNumberScheduled {
			s.starting++
		}
		s.block(false, "daemonset %s: %d/%d ready", name, ds.Status.NumberReady, ds.Status.DesiredNumberScheduled)
	default:
		rc.Ready++
	}
}

// badWaiting are container waiting reasons that mean a Pod will not start by itself; those in
// terminalWaiting will not change however long one waits (the check runs once the restore is done).
var (
	badWaiting = []string{"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName",
		"ImageInspectError", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
	terminalWaiting = []string{"CreateContainerConfigError", "ErrImageNeverPull", "InvalidImageName"}
)

// warmUp is how long a running container that is not ready yet counts as still starting (its
// readiness probe's first passes): past it, it is only a blocker.
const warmUp = time.Minute

func (s *workloadSurvey) pod(p *corev1.Pod, name string) {
	rc := s.counts["pods"]
	rc.Total++
	if p.Status.Phase == corev1.PodSucceeded || podReady(p) {
		rc.Ready++
	}
	if podStarting(p, time.Now()) {
		s.starting++
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			s.block(false, "pod %s: unschedulable: %s", name, strings.TrimSpace(c.Message))
		}
	}
	for _, cs := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
		switch w, run := cs.State.Waiting, cs.State.Running; {
		case w != nil && slices.Contains(badWaiting, w.Reason):
			msg := ""
			if w.Message != "" {
				msg = ": " + w.Message
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				msg += fmt.Sprintf(" (last exit code %d%s)", t.ExitCode, prefixed(", ", t.Reason))
			}
			b := s.block(slices.Contains(terminalWaiting, w.Reason), "pod %s: container %s: %s%s", name, cs.Name, w.Reason, msg)
			if cs.RestartCount > 0 {
				b.explain = lastLogLines(p.Namespace, p.Name, cs.Name)
			}
		case run != nil && !cs.Ready && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && !isInit(p, cs.Name):
			// Running but not ready: a readiness probe that does not pass; the pod's events say why.
			b := s.block(false, "pod %s: container %s running but not ready", name, cs.Name)
			b.explain = lastWarning(p.Namespace, "Pod", p.Name)
		}
	}
	if p.Status.Phase == corev1.PodFailed && metav1.GetControllerOf(p) == nil {
		s.block(true, "pod %s: Failed (%s)", name, strings.TrimSpace(p.Status.Reason+" "+p.Status.Message))
	}
}

// podStarting says whether a pod is still on its way up: not yet scheduled (and not refused),
// its containers being created or not reported yet, or running for less than warmUp without
// being ready. Failing, finished and deleted pods are not starting.
func podStarting(p *corev1.Pod, now time.Time) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || podReady(p) {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return false
		}
	}
	statuses := slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses)
	if len(statuses) < len(p.Spec.InitContainers)+len(p.Spec.Containers) {
		return true // the kubelet has not reported every container yet
	}
	for _, cs := range statuses {
		switch w, run := cs.State.Waiting, cs.State.Running; {
		case w != nil && !slices.Contains(badWaiting, w.Reason):
			return true // ContainerCreating, PodInitializing, ...
		case run != nil && !cs.Ready && now.Sub(run.StartedAt.Time) < warmUp:
			return true
		}
	}
	return false
}

func isInit(p *corev1.Pod, container string) bool {
	return slices.ContainsFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == container })
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// lastLogLines explains a crashing container by the last lines it wrote before it ended.
func lastLogLines(ns, pod, container string) func(context.Context, kubernetes.Interface) string {
	return func(ctx context.Context, kube kubernetes.Interface) string {
		tail := int64(5)
		b, err := kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: true, TailLines: &tail, LimitBytes: ptrTo(int64(2048))}).DoRaw(ctx)
		if err != nil || len(bytes.TrimSpace(b)) == 0 {
			return ""
		}
		return "last log lines: " + strings.Join(strings.Fields(strings.ReplaceAll(string(b), "\n", " | ")), " ")
	}
}

// lastWarning explains an object by its newest Warning event.
func lastWarning(ns, kind, name string) func(context.Context, kubernetes.Interface) string {
	return func(ctx context.Context, kube kubernetes.Interface) string {
		evs, err := kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
			"involvedObject.kind": kind, "involvedObject.name": name}.String()})
		if err != nil {
			return ""
		}
		var last *corev1.Event
		for i := range evs.Items {
			e := &evs.Items[i]
			if e.Type == corev1.EventTypeWarning && (last == nil || eventTime(e).After(eventTime(last))) {
				last = e
			}
		}
		if last == nil {
			return ""
		}
		return last.Reason + ": " + strings.TrimSpace(last.Message)
	}
}

func ptrTo[T any](v T) *T { return &v }

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (s *workloadSurvey) claim(ctx context.Context, pvc *corev1.PersistentVolumeClaim, name string, used bool, sc *storageClasses) {
	rc := s.counts["persistentvolumeclaims"]
	rc.Total++
	if pvc.Status.Phase == corev1.ClaimBound {
		rc.Ready++
		return
	}
	if pvc.Status.Phase == corev1.ClaimPending && !used && pvc.Spec.VolumeName == "" {
		if class, _ := sc.of(ctx, pvc); class != nil && class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
			rc.Ready++
			s.notes = append(s.notes, fmt.Sprintf("pvc %s is Pending until a pod uses it (StorageClass %s binds on first consumer)", name, class.Name))
			return
		}
	}
	s.pending = append(s.pending, pendingClaim{pvc: *pvc, blocker: len(s.blocking)})
	s.block(pvc.Status.Phase == corev1.ClaimLost, "pvc %s: %s", name, pvc.Status.Phase)
}

func (s *workloadSurvey) job(j *batchv1.Job, name string, completeInBackup bool) {
	rc := s.counts["jobs"]
	rc.Total++
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			rc.Ready++
			return
		case batchv1.JobFailed:
			if completeInBackup {
				rc.Ready++
				s.notes = append(s.notes, fmt.Sprintf("job %s failed here but had completed in the backup", name))
				return
			}
			s.block(true, "job %s: failed (%s: %s)", name, c.Reason, c.Message)
			return
		}
	}
	switch {
	case j.Spec.Suspend != nil && *j.Spec.Suspend:
		rc.Ready++
		rc.Suspended++
	case completeInBackup:
		rc.Ready++
	default:
		s.block(false, "job %s: not complete (%d active, %d succeeded, %d failed)", name, j.Status.Active, j.Status.Succeeded, j.Status.Failed)
	}
}

func (s *workloadSurvey) summary() string {
	var parts []string
	for _, k := range workloadKinds {
		if rc := s.counts[k]; rc.Total > 0 {
			parts = append(parts, fmt.Sprintf("%d/%d %s", rc.Ready, rc.Total, k))
		}
	}
	if len(parts) == 0 {
		return "there are no workloads"
	}
	return strings.Join(parts, ", ")
}

func (s *workloadSurvey) evidence(ev map[string]any) {
	per := map[string]readyCount{}
	for k, rc := range s.counts {
		per[k] = *rc
	}
	ev["perKind"] = per
}

// diagnose says why each pending claim is not bound, in place of its bare phase.
func (c *WorkloadsReadyCheck) diagnose(ctx context.Context, kube kubernetes.Interface, s *workloadSurvey, sc *storageClasses) {
	for i := range s.blocking {
		if b := &s.blocking[i]; b.explain != nil {
			if why := b.explain(ctx, kube); why != "" {
				b.what += " (" + why + ")"
			}
		}
	}
	for _, p := range s.pending {
		if why := pvcWhy(ctx, kube, &p.pvc, sc); why != "" {
			s.blocking[p.blocker].what += " (" + why + ")"
		}
	}
}

// pvcWhy explains a claim that is not bound, from its volume, its StorageClass and its events.
func pvcWhy(ctx context.Context, kube kubernetes.Interface, pvc *corev1.PersistentVolumeClaim, sc *storageClasses) string {
	const hint = "restored without its PersistentVolume: the restore must clear spec.volumeName so that a new volume is provisioned"
	if v := pvc.Spec.VolumeName; v != "" {
		pv, err := kube.CoreV1().PersistentVolumes().Get(ctx, v, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return fmt.Sprintf("it names volume %s, which does not exist here; %s", v, hint)
		case err == nil && pv.Spec.ClaimRef != nil && (pv.Spec.ClaimRef.Namespace != pvc.Namespace || pv.Spec.ClaimRef.Name != pvc.Name):
			return fmt.Sprintf("it names volume %s, which belongs to claim %s/%s; %s", v, pv.Spec.ClaimRef.Namespace, pv.Spec.ClaimRef.Name, hint)
		}
	}
	class, err := sc.of(ctx, pvc)
	switch {
	case err != nil:
		return err.Error()
	case class == nil && pvc.Spec.StorageClassName == nil:
		return "no StorageClass? the claim names none and the cluster has no default StorageClass"
	}
	return lastWarning(pvc.Namespace, "PersistentVolumeClaim", pvc.Name)(ctx, kube)
}

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// storageClasses reads StorageClasses once per check run.
type storageClasses struct {
	kube   kubernetes.Interface
	byName map[string]*storagev1.StorageClass
	all    []storagev1.StorageClass
	listed bool
}

// of is a claim's StorageClass: the one it names, or the cluster's default when it names none.
// An error says a named class does not exist.
func (sc *storageClasses) of(ctx context.Context, pvc *corev1.PersistentVolumeClaim) (*storagev1.StorageClass, error) {
	if !sc.listed {
		l, err := sc.kube.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, nil // not allowed or not reachable: no diagnosis, no verdict
		}
		sc.all, sc.listed = l.Items, true
		for i := range sc.all {
			sc.byName[sc.all[i].Name] = &sc.all[i]
		}
	}
	if n := pvc.Spec.StorageClassName; n != nil {
		if *n == "" {
			return nil, nil // static binding only
		}
		if c := sc.byName[*n]; c != nil {
			return c, nil
		}
		return nil, fmt.Errorf("StorageClass %s does not exist", *n)
	}
	for i := range sc.all {
		if sc.all[i].Annotations["storageclass.kubernetes.io/is-default-class"] == "true" {
			return &sc.all[i], nil
		}
	}
	return nil, nil
}
