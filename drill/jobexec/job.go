package jobexec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// Labels of a drill's Job and its pod: the janitor, the admission policy and operators find
// them by these (kubectl get jobs -l firedrill.dev/component=drill-runner).
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "firedrill"
	LabelComponent = "firedrill.dev/component"
	Component      = "drill-runner"
	LabelRunID     = "firedrill.dev/run-id"
	LabelScenario  = "firedrill.dev/scenario"
	// AnnotationCreatedBy is the identity of the serve replica that created the Job (its Lease
	// identity with --leader-elect): the leader, as long as leader election holds.
	AnnotationCreatedBy = "firedrill.dev/created-by"
)

// Environment of `firedrill run-job`: what to run, and as which run.
const (
	EnvScenario     = "FIREDRILL_JOB_SCENARIO"      // the scenario as JSON, the version serve loaded
	EnvRunID        = "FIREDRILL_JOB_RUN_ID"        // the run's id, handed out by serve's scheduler
	EnvTrigger      = "FIREDRILL_JOB_TRIGGER"       // schedule, api
	EnvOperator     = "FIREDRILL_JOB_OPERATOR"      // who asked
	EnvScheduledFor = "FIREDRILL_JOB_SCHEDULED_FOR" // RFC 3339; a scheduled run's cron time
	EnvSeed         = "FIREDRILL_JOB_SEED"          // repeats a random choice of the backup
	EnvWorkDir      = "FIREDRILL_JOB_WORK_DIR"      // where runs make their work directories
)

// Container is the name of the drill's container in the Job's pod.
const Container = "drill"

// WorkDir is where the Job's work volume is mounted.
const WorkDir = "/work"

// Bounds of a Job beyond its scenario's spec.timeout.
const (
	// FinalLinger is how long run-job stays after its final record when it was stopped by
	// SIGTERM (its pod deleted), so that serve's log reader gets the line before the pod and its
	// log are gone.
	FinalLinger = 3 * time.Second
	// CleanupTimeout is drill.Runner's default cleanup bound.
	CleanupTimeout = 5 * time.Minute
	// deadlineMargin is what activeDeadlineSeconds adds for scheduling, pulling and recording.
	deadlineMargin = 5 * time.Minute
	// ttlAfterFinished keeps a finished Job (and its pod's log) for kubectl logs.
	ttlAfterFinished = int32(3600)
	// runnerUID is the non-root user of firedrill's image (distroless "nonroot").
	runnerUID = int64(65532)
)

// JobParams is one run's Job.
type JobParams struct {
	Namespace, Image string
	// ServiceAccount is the default; the scenario's spec.runner.serviceAccountName wins.
	ServiceAccount string
	Scenario       *scenarios.Scenario
	RunID          string
	Trigger        string
	Operator       string
	ScheduledFor   time.Time
	Seed           *uint64
	// Env is added to the container's (FIREDRILL_PROBE_IMAGE and the like).
	Env []corev1.EnvVar
	// CreatedBy is the creating replica's identity (AnnotationCreatedBy); "" sets none.
	CreatedBy string
}

// JobName is the name of run id's Job.
func JobName(runID string) string { return "firedrill-" + runID }

// Deadline is how long a Job of sc may run: its spec.timeout, cleanup, and a margin.
func Deadline(sc *scenarios.Scenario) time.Duration {
	timeout := sc.Spec.Timeout.Duration
	if timeout <= 0 {
		timeout = scenarios.DefaultTimeout
	}
	return timeout + CleanupTimeout + deadlineMargin
}

// BuildJob returns the Job that runs one drill: `firedrill run-job` in firedrill's image, never
// retried (backoffLimit 0: a drill that died is recorded, not run twice), bounded by Deadline,
// kept an hour after it ends. A pod deleted or evicted gets the cleanup's time to clean up.
func BuildJob(p JobParams) (*batchv1.Job, error) {
	sc := p.Scenario
	spec, err := json.Marshal(sc)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", sc.Metadata.Name, err)
	}
	env := []corev1.EnvVar{
		{Name: EnvScenario, Value: string(spec)},
		{Name: EnvRunID, Value: p.RunID},
		{Name: EnvTrigger, Value: p.Trigger},
		{Name: EnvOperator, Value: p.Operator},
		{Name: EnvWorkDir, Value: WorkDir},
		{Name: "TMPDIR", Value: WorkDir},
		{Name: "HOME", Value: WorkDir},
	}
	if !p.ScheduledFor.IsZero() {
		env = append(env, corev1.EnvVar{Name: EnvScheduledFor, Value: p.ScheduledFor.UTC().Format(time.RFC3339Nano)})
	}
	if p.Seed != nil {
		env = append(env, corev1.EnvVar{Name: EnvSeed, Value: strconv.FormatUint(*p.Seed, 10)})
	}
	env = append(env, p.Env...)

	sa := p.ServiceAccount
	var res corev1.ResourceRequirements
	work := corev1.Volume{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	if r := sc.Spec.Runner; r != nil {
		if r.ServiceAccountName != "" {
			sa = r.ServiceAccountName
		}
		if r.Resources != nil {
			if res.Requests, err = resourceList("spec.runner.resources.requests", r.Resources.Requests); err != nil {
				return nil, err
			}
			if res.Limits, err = resourceList("spec.runner.resources.limits", r.Resources.Limits); err != nil {
				return nil, err
			}
		}
		if v := r.WorkVolume; v != nil {
			size, err := resource.ParseQuantity(v.Size)
			if err != nil {
				return nil, fmt.Errorf("spec.runner.workVolume.size %q: %w", v.Size, err)
			}
			claim := corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
			}
			if v.StorageClassName != "" {
				claim.StorageClassName = &v.StorageClassName
			}
			work.VolumeSource = corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
				VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{
					ObjectMeta: metav1.ObjectMeta{Labels: labels(p)}, Spec: claim,
				},
			}}
		}
	}

	deadline := int64(Deadline(sc).Seconds())
	grace := int64((CleanupTimeout + 30*time.Second).Seconds())
	backoff, ttl := int32(0), ttlAfterFinished
	no, yes, uid := false, true, runnerUID
	var annotations map[string]string
	if p.CreatedBy != "" {
		annotations = map[string]string{AnnotationCreatedBy: p.CreatedBy}
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: JobName(p.RunID), Namespace: p.Namespace, Labels: labels(p), Annotations: annotations},
		Spec: batchv1.JobSpec{
			BackoffLimit:            &backoff,
			ActiveDeadlineSeconds:   &deadline,
			TTLSecondsAfterFinished: &ttl,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(p)},
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					ServiceAccountName:            sa,
					TerminationGracePeriodSeconds: &grace,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid, FSGroup: &uid,
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:            Container,
						Image:           p.Image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Args:            []string{"run-job"},
						Env:             env,
						Resources:       res,
						VolumeMounts:    []corev1.VolumeMount{{Name: "work", MountPath: WorkDir}},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
					}},
					Volumes: []corev1.Volume{work},
				},
			},
		},
	}, nil
}

func labels(p JobParams) map[string]string {
	return map[string]string{
		LabelManagedBy: ManagedBy,
		LabelComponent: Component,
		LabelRunID:     p.RunID,
		LabelScenario:  p.Scenario.Metadata.Name,
	}
}

func resourceList(field string, m map[string]string) (corev1.ResourceList, error) {
	if len(m) == 0 {
		return nil, nil
	}
	l := corev1.ResourceList{}
	for k, v := range m {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("%s[%s] %q: %w", field, k, v, err)
		}
		l[corev1.ResourceName(k)] = q
	}
	return l, nil
}
