package jobexec

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/firedrill-dev/firedrill/scenarios"
)

func scenario(t *testing.T, runner string) *scenarios.Scenario {
	t.Helper()
	doc := `apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: etcd-job}
spec:
  timeout: 10m
  backup: {etcd: {take: {endpoints: ["http://10.0.0.1:2379"]}}}
  restore: {scratchEtcd: {}}
  checks: [{etcdIntegrity: {}}]
` + runner
	sc, err := scenarios.LoadBytes([]byte(doc), "")
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func TestBuildJobDefaults(t *testing.T) {
	t.Parallel()
	sc := scenario(t, "")
	sf := time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC)
	j, err := BuildJob(JobParams{Namespace: "firedrill", Image: "firedrill.local/firedrill:dev", ServiceAccount: "firedrill-drill",
		Scenario: sc, RunID: "20261204-050000-abcdef", Trigger: "schedule", Operator: "serve@host", ScheduledFor: sf, CreatedBy: "serve-0_1"})
	if err != nil {
		t.Fatal(err)
	}
	s := j.Spec
	if j.Name != "firedrill-20261204-050000-abcdef" || j.Namespace != "firedrill" {
		t.Errorf("Job %s/%s", j.Namespace, j.Name)
	}
	if *s.BackoffLimit != 0 || *s.TTLSecondsAfterFinished != 3600 || *s.ActiveDeadlineSeconds != int64((10*time.Minute+CleanupTimeout+deadlineMargin).Seconds()) {
		t.Errorf("backoffLimit %d, ttl %d, deadline %d", *s.BackoffLimit, *s.TTLSecondsAfterFinished, *s.ActiveDeadlineSeconds)
	}
	for _, l := range []map[string]string{j.Labels, s.Template.Labels} {
		if l[LabelRunID] != "20261204-050000-abcdef" || l[LabelScenario] != "etcd-job" || l[LabelManagedBy] != "firedrill" || l[LabelComponent] != Component {
			t.Errorf("labels %v", l)
		}
	}
	if j.Annotations[AnnotationCreatedBy] != "serve-0_1" {
		t.Errorf("annotations %v, want %s naming the replica", j.Annotations, AnnotationCreatedBy)
	}
	p := s.Template.Spec
	c := p.Containers[0]
	if p.ServiceAccountName != "firedrill-drill" || p.RestartPolicy != corev1.RestartPolicyNever || c.Image != "firedrill.local/firedrill:dev" || strings.Join(c.Args, " ") != "run-job" {
		t.Errorf("pod: sa %q restart %q image %q args %v", p.ServiceAccountName, p.RestartPolicy, c.Image, c.Args)
	}
	if p.Volumes[0].EmptyDir == nil || c.VolumeMounts[0].MountPath != WorkDir || env(c, EnvWorkDir) != WorkDir {
		t.Errorf("work volume %+v mounted at %v", p.Volumes[0], c.VolumeMounts)
	}
	if env(c, EnvRunID) != "20261204-050000-abcdef" || env(c, EnvTrigger) != "schedule" || env(c, EnvOperator) != "serve@host" || env(c, EnvScheduledFor) != "2026-12-04T05:00:00Z" {
		t.Errorf("env %v", c.Env)
	}
	var back scenarios.Scenario
	if err := json.Unmarshal([]byte(env(c, EnvScenario)), &back); err != nil || back.Metadata.Name != "etcd-job" || back.Spec.Timeout.Duration != 10*time.Minute {
		t.Errorf("the scenario does not come back from the env: %v %+v", err, back.Metadata)
	}
	if *c.SecurityContext.ReadOnlyRootFilesystem != true || *p.SecurityContext.RunAsNonRoot != true {
		t.Error("the drill container is not locked down")
	}
}

func TestBuildJobRunnerSettings(t *testing.T) {
	t.Parallel()
	sc := scenario(t, `  runner:
    serviceAccountName: etcd-reader
    resources: {requests: {cpu: 250m, memory: 256Mi}, limits: {memory: 1Gi}}
    workVolume: {storageClassName: fast, size: 20Gi}
`)
	j, err := BuildJob(JobParams{Namespace: "fd", Image: "img", ServiceAccount: "default-sa", Scenario: sc, RunID: "r1", Trigger: "api"})
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Annotations) != 0 {
		t.Errorf("annotations %v without CreatedBy, want none", j.Annotations)
	}
	p := j.Spec.Template.Spec
	c := p.Containers[0]
	if p.ServiceAccountName != "etcd-reader" {
		t.Errorf("serviceAccountName %q, want the scenario's", p.ServiceAccountName)
	}
	if c.Resources.Limits.Memory().String() != "1Gi" || c.Resources.Requests.Cpu().String() != "250m" {
		t.Errorf("resources %v", c.Resources)
	}
	e := p.Volumes[0].Ephemeral
	if e == nil || *e.VolumeClaimTemplate.Spec.StorageClassName != "fast" || e.VolumeClaimTemplate.Spec.Resources.Requests.Storage().String() != "20Gi" {
		t.Errorf("work volume %+v", p.Volumes[0])
	}
	if env(c, EnvScheduledFor) != "" {
		t.Error("an API run has no scheduledFor")
	}
}

func TestDeathReasons(t *testing.T) {
	t.Parallel()
	now := metav1.Now()
	pod := func(mod func(*corev1.Pod)) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "firedrill-r1-x"}, Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{Name: Container, Image: "img", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}
		mod(&p)
		return p
	}
	terminated := func(reason string, code int32) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodFailed
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: reason, ExitCode: code}}
		}
	}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "firedrill-r1", UID: "u1"}}
	failedJob := func(reason string) *batchv1.Job {
		j := job.DeepCopy()
		deadline := int64(1500)
		j.Spec.ActiveDeadlineSeconds = &deadline
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: reason, Message: "Job was active longer than specified deadline"}}
		return j
	}
	for _, tc := range []struct {
		name  string
		o     Observed
		limit string
		want  string // "" alive
	}{
		{"running", Observed{Job: job, JobSeen: true, Pods: []corev1.Pod{pod(func(*corev1.Pod) {})}}, "", ""},
		{"pending, no pod yet", Observed{Job: job, JobSeen: true}, "", ""},
		{"OOMKilled", Observed{Job: job, Pods: []corev1.Pod{pod(terminated("OOMKilled", 137))}}, "512Mi",
			"Job pod firedrill-r1-x was OOMKilled (limit 512Mi): raise spec.runner.resources.limits.memory"},
		{"exit without record", Observed{Job: job, Pods: []corev1.Pod{pod(terminated("Error", 3))}}, "",
			"exited with code 3 (Error) without a final record"},
		{"evicted", Observed{Job: job, Pods: []corev1.Pod{pod(func(p *corev1.Pod) {
			p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, "Evicted", "The node was low on resource: memory."
		})}}, "", "was Evicted: The node was low on resource: memory."},
		{"node lost", Observed{Job: job, Pods: []corev1.Pod{pod(func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "DeletionByTaintManager", Message: "Taint manager: deleting due to NoExecute taint"}}
		})}}, "", "DisruptionTarget DeletionByTaintManager"},
		{"pod deleted", Observed{Job: job, Pods: []corev1.Pod{pod(func(p *corev1.Pod) { p.DeletionTimestamp = &now })}}, "", "was deleted before the drill ended"},
		{"pod deleted, cleaned up, record lost", Observed{Job: job, Pods: []corev1.Pod{pod(func(p *corev1.Pod) {
			terminated("Completed", 0)(p)
			p.DeletionTimestamp = &now
		})}}, "", "was deleted before the drill ended (kubectl delete pod, a drain or an eviction); the drill stopped and cleaned up (exit 0)"},
		{"image pull", Observed{Job: job, Pods: []corev1.Pod{pod(func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found"}}
		})}}, "", "cannot pull image img (ErrImagePull)"},
		{"deadline", Observed{Job: failedJob(batchv1.JobReasonDeadlineExceeded)}, "", "Job DeadlineExceeded: it ran past activeDeadlineSeconds (1500s)"},
		{"no ServiceAccount", Observed{Job: job, JobSeen: true, Events: []corev1.Event{{Reason: "FailedCreate",
			Message: `Error creating: pods "firedrill-r1-" is forbidden: error looking up service account fd/nobody: serviceaccount "nobody" not found`}}}, "",
			`its ServiceAccount does not exist (Error creating: pods "firedrill-r1-" is forbidden: error looking up service account fd/nobody: serviceaccount "nobody" not found)`},
		{"Job deleted", Observed{JobSeen: true}, "", "the drill's Job was deleted"},
		{"pod gone, Job failed", Observed{Job: failedJob(batchv1.JobReasonBackoffLimitExceeded)}, "", "ended without a final record and is gone: deleted by force"},
	} {
		got := Death(tc.o, tc.limit)
		switch {
		case tc.want == "" && got != "":
			t.Errorf("%s: dead (%s), want alive", tc.name, got)
		case tc.want != "" && !strings.Contains(got, tc.want):
			t.Errorf("%s: %q, want it to say %q", tc.name, got, tc.want)
		}
	}
}
