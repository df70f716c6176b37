package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// JobCheck runs a Job in a restored namespace (e.g. a query the restored database must answer)
// and passes when it completes. The Job gets no retries (backoffLimit 0), activeDeadlineSeconds
// from the timeout and firedrill's labels; the tail of its Pod's log is kept as evidence and the
// Job is deleted afterwards. When the log cannot be read (simulated nodes have no kubelet to serve
// it) the verdict still follows the Job's status and the evidence says the log was unavailable.
//
// The Pod gets no resource requests of its own: a restored namespace with a cpu or memory quota
// needs a LimitRange with defaults, or the Pod is refused (the check then names the refusal).
type JobCheck struct {
	checkName
	spec    scenarios.JobCheck
	timeout time.Duration
	// grace is how long past the deadline the Job controller may take to mark the Job failed.
	grace time.Duration
	// logLimit is how much of the end of the log is kept.
	logLimit int
}

var _ VeleroCheck = (*JobCheck)(nil)

// Job and log limits.
const (
	jobContainer    = "check"
	DefaultLogLimit = 16 << 10
	logTailLines    = 2000
)

// NewJobCheck builds a job check; the timeout defaults to 5m. It fails without an image.
func NewJobCheck(name string, spec scenarios.JobCheck) (*JobCheck, error) {
	if strings.TrimSpace(spec.Image) == "" {
		return nil, errors.New("job.image is required: the container image the Job runs, e.g. postgres:16")
	}
	for i, e := range spec.Env {
		switch {
		case e.Name == "":
			return nil, fmt.Errorf("job.env[%d]: name is required", i)
		case e.ValueFrom != nil && (e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name == "" || e.ValueFrom.SecretKeyRef.Key == ""):
			return nil, fmt.Errorf("job.env[%d] (%s): valueFrom needs secretKeyRef with a name and a key", i, e.Name)
		}
	}
	timeout := spec.Timeout.Duration
	if timeout <= 0 {
		timeout = scenarios.DefaultJobTimeout
	}
	return &JobCheck{checkName: newCheckName(name, scenarios.CheckJob), spec: spec, timeout: timeout,
		grace: 30 * time.Second, logLimit: DefaultLogLimit}, nil
}

// namespace is where the Job runs: the restored copy of spec.Namespace, or of the first
// backed-up namespace in name order.
func (c *JobCheck) namespace(t *VeleroTarget) (string, error) {
	return scratchOf(t, c.spec.Namespace, "job")
}

// scratchOf is the scratch copy of backed-up namespace from, which a check of type typ looks at;
// from empty means the first backed-up namespace.
func scratchOf(t *VeleroTarget, from, typ string) (string, error) {
	if from == "" {
		src := slices.Sorted(maps.Keys(namespaceEvidence(t)))
		if len(src) == 0 {
			return "", fmt.Errorf("no restored namespace for the %s check: the target names no namespace mapping", typ)
		}
		from = src[0]
	}
	_, own := t.NamespaceMapping[from]
	if _, reachable := t.Reachable[from]; !own && !reachable && len(t.NamespaceMapping) > 0 {
		return "", fmt.Errorf("%s.namespace %s is not a backed-up namespace of this restore (restored: %s)", typ, from,
			strings.Join(slices.Sorted(maps.Keys(t.NamespaceMapping)), ", "))
	}
	return mapNamespace(t, from), nil
}

var labelValueJunk = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// labelValue makes s a valid label value (63 characters, alphanumeric at both ends).
func labelValue(s string) string {
	s = labelValueJunk.ReplaceAllString(s, "-")
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.Trim(s, "-_.")
}

func (c *JobCheck) build(t *VeleroTarget) *batchv1.Job {
	lbl := map[string]string{managedByLabel: managedByValue}
	if v := labelValue(t.RunID); v != "" {
		lbl[runLabel] = v
	}
	var env []corev1.EnvVar
	for _, e := range c.spec.Env {
		v := corev1.EnvVar{Name: e.Name, Value: e.Value}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			// The Secret restored into the Job's namespace keeps its backed-up name.
			ref := e.ValueFrom.SecretKeyRef
			v = corev1.EnvVar{Name: e.Name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: ref.Name}, Key: ref.Key}}}
		}
		env = append(env, v)
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "firedrill-check-", Labels: lbl},
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr.To[int32](0),
			ActiveDeadlineSeconds: ptr.To(int64(math.Ceil(c.timeout.Seconds()))),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(lbl)},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name: jobContainer, Image: c.spec.Image, Command: c.spec.Command, Args: c.spec.Args, Env: env,
					}},
				},
			},
		},
	}
}

// Run creates the Job, waits for it to complete or fail, keeps its log and deletes it. Command,
// arguments and the values of the environment are not recorded (only the variables' names): they
// may hold credentials.
func (c *JobCheck) Run(ctx context.Context, t *VeleroTarget) (out Outcome) {
	ev := map[string]any{"image": c.spec.Image, "timeout": c.timeout.String()}
	if len(c.spec.Env) > 0 {
		var names []string
		for _, e := range c.spec.Env {
			names = append(names, e.Name)
		}
		ev["env"] = names
	}
	if t.Cluster == nil {
		return noTarget(ev)
	}
	ns, err := c.namespace(t)
	if err != nil {
		return errorOutcome(ev, "%v", err)
	}
	ev["namespace"] = ns
	kube := t.Cluster.Kube
	job, err := kube.BatchV1().Jobs(ns).Create(ctx, c.build(t), metav1.CreateOptions{})
	if _, refused := err.(apierrors.APIStatus); err != nil && !refused {
		return unreachable(ev, t, err)
	} else if err != nil {
		return errorOutcome(ev, "create the job in %s: %v", ns, err)
	}
	ev["job"] = job.Name
	defer func() {
		// Delete whatever happened, also when ctx is over; the Pods go with it.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err := kube.BatchV1().Jobs(ns).Delete(dctx, job.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
		if err != nil {
			ev["deleteError"] = err.Error()
		} else {
			ev["deleted"] = true
		}
	}()
	return c.await(ctx, kube, job, ev)
}

func (c *JobCheck) await(ctx context.Context, kube kubernetes.Interface, job *batchv1.Job, ev map[string]any) Outcome {
	start := time.Now()
	deadline := start.Add(c.timeout + c.grace)
	wait := 250 * time.Millisecond
	var cond *batchv1.JobCondition
	var lastErr error
	// seen is the Job's pod as last seen running: the Job controller deletes the pods of a Job
	// that overran its deadline, and with them the reason it did.
	var seen *corev1.Pod
	for {
		j, err := kube.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
		if err == nil {
			job, lastErr = j, nil
			if cond = finished(j); cond != nil {
				break
			}
			if p, err := c.lastPod(ctx, kube, j); err == nil && p != nil {
				seen = p
			}
		} else {
			lastErr = err
		}
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
		sleep(ctx, min(wait, time.Until(deadline)))
		wait = min(wait*3/2, 2*time.Second)
	}
	elapsed := time.Since(start)
	ev["seconds"] = elapsed.Round(time.Millisecond).Seconds()
	where := fmt.Sprintf("job %s in %s", job.Name, job.Namespace)

	pod, podErr := c.lastPod(ctx, kube, job)
	if pod == nil && podErr == nil {
		pod = seen
	}
	if pod != nil {
		ev["pod"] = pod.Name
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.Name == jobContainer && cs.State.Terminated != nil {
				ev["exitCode"] = cs.State.Terminated.ExitCode
			}
		}
		if !started(pod) {
			ev["logsError"] = "the pod never started"
		} else if logs, truncated, err := c.logs(ctx, kube, pod); err != nil {
			ev["logsError"] = err.Error()
		} else {
			ev["logs"], ev["logsTruncated"] = logs, truncated
		}
	}
	logNote := func() string {
		switch {
		case ev["logsError"] != nil:
			return "; no log kept: " + ev["logsError"].(string)
		case ev["logs"] != nil:
			return fmt.Sprintf("; its log (%d bytes) is kept", len(ev["logs"].(string)))
		}
		return ""
	}

	switch {
	case cond != nil && cond.Type == batchv1.JobComplete:
		ev["result"] = "Complete"
		return passedOutcome(ev, "%s completed in %s%s", where, elapsed.Round(100*time.Millisecond), logNote())
	case cond != nil:
		ev["result"], ev["reason"] = "Failed", cond.Reason
		why := c.explain(ctx, kube, job, pod, podErr)
		return failedOutcome(ev, "%s failed after %s (%s: %s)%s%s", where, elapsed.Round(100*time.Millisecond), cond.Reason, cond.Message, why, logNote())
	case ctx.Err() != nil:
		return errorOutcome(ev, "interrupted after %s while waiting for %s", elapsed.Round(100*time.Millisecond), where)
	case lastErr != nil:
		return errorOutcome(ev, "read %s from the restored cluster: %v", where, lastErr)
	}
	ev["result"] = "Timeout"
	why := c.explain(ctx, kube, job, pod, podErr)
	return failedOutcome(ev, "%s did not finish within %s%s%s", where, c.timeout, why, logNote())
}

// started says whether a container of the pod ran, and so may have written a log.
func started(p *corev1.Pod) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running != nil || cs.State.Terminated != nil {
			return true
		}
	}
	return false
}

// finished is the Job's Complete or Failed condition, nil while it runs.
func finished(j *batchv1.Job) *batchv1.JobCondition {
	for i, c := range j.Status.Conditions {
		if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

// lastPod is the newest Pod of the Job, nil when it has none.
func (c *JobCheck) lastPod(ctx context.Context, kube kubernetes.Interface, job *batchv1.Job) (*corev1.Pod, error) {
	sel := labels.Set{"batch.kubernetes.io/job-name": job.Name}.String()
	if job.Spec.Selector != nil {
		if s, err := metav1.LabelSelectorAsSelector(job.Spec.Selector); err == nil {
			sel = s.String()
		}
	}
	pods, err := kube.CoreV1().Pods(job.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil || len(pods.Items) == 0 {
		return nil, err
	}
	newest := &pods.Items[0]
	for i := range pods.Items {
		if pods.Items[i].CreationTimestamp.After(newest.CreationTimestamp.Time) {
			newest = &pods.Items[i]
		}
	}
	return newest, nil
}

// explain says why a Job did not complete, from its Pod or, without one, from its events.
func (c *JobCheck) explain(ctx context.Context, kube kubernetes.Interface, job *batchv1.Job, pod *corev1.Pod, podErr error) string {
	if pod == nil {
		evs, err := kube.CoreV1().Events(job.Namespace).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
			"involvedObject.kind": "Job", "involvedObject.name": job.Name}.String()})
		if err == nil {
			var last *corev1.Event
			for i := range evs.Items {
				e := &evs.Items[i]
				if e.Reason == "FailedCreate" && (last == nil || eventTime(e).After(eventTime(last))) {
					last = e
				}
			}
			if last != nil {
				return "; its pod could not be created: " + last.Message
			}
		}
		if podErr != nil {
			return "; its pods could not be listed: " + podErr.Error()
		}
		return "; it has no pod"
	}
	var why []string
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
			why = append(why, fmt.Sprintf("pod %s unschedulable: %s", pod.Name, strings.TrimSpace(cond.Message)))
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			why = append(why, fmt.Sprintf("container %s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0:
			why = append(why, fmt.Sprintf("container %s exited with code %d (%s)", cs.Name, cs.State.Terminated.ExitCode, cs.State.Terminated.Reason))
		}
	}
	if len(why) == 0 {
		why = append(why, fmt.Sprintf("pod %s is %s", pod.Name, pod.Status.Phase))
	}
	return "; " + strings.Join(why, "; ")
}

// logs is the end of the Pod's log, at most logLimit bytes.
func (c *JobCheck) logs(ctx context.Context, kube kubernetes.Interface, pod *corev1.Pod) (string, bool, error) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rc, err := kube.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{
		Container: jobContainer, TailLines: ptr.To[int64](logTailLines), LimitBytes: ptr.To[int64](64 * int64(c.logLimit)),
	}).Stream(lctx)
	if err != nil {
		return "", false, shortError(err)
	}
	defer rc.Close()
	tail, truncated, err := readTail(rc, c.logLimit)
	if err != nil {
		return "", false, shortError(err)
	}
	return strings.ToValidUTF8(string(tail), "\uFFFD"), truncated, nil
}

// readTail reads r to the end and keeps its last limit bytes.
func readTail(r io.Reader, limit int) ([]byte, bool, error) {
	var buf []byte
	truncated := false
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if len(buf) > 2*limit {
			buf, truncated = append(buf[:0:0], buf[len(buf)-limit:]...), true
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, false, err
		}
	}
	if len(buf) > limit {
		buf, truncated = buf[len(buf)-limit:], true
	}
	return buf, truncated, nil
}

// shortError keeps an error's message to a line of reasonable length for the record.
func shortError(err error) error {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return errors.New(s)
}
