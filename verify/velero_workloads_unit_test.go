package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// The classification of workloads is pure logic over objects: these cases run without a cluster,
// through fake clients, as a drill hands the check its clients. What the kubelet and controllers
// really report is tested against the sandbox's real node.
func TestWorkloadsReadyClassifies(t *testing.T) {
	t.Parallel()
	const ns = "drill-1-shop"
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1}
	}
	waiting := func(container, reason, msg string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: container, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
	}
	pod := func(name string, phase corev1.PodPhase, ready bool, statuses ...corev1.ContainerStatus) *corev1.Pod {
		cond := corev1.ConditionFalse
		if ready {
			cond = corev1.ConditionTrue
		}
		return &corev1.Pod{ObjectMeta: meta(name), Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
			Status: corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: cond}}, ContainerStatuses: statuses}}
	}
	crashed := waiting("app", "CrashLoopBackOff", "back-off 10s restarting failed container")
	crashed.RestartCount = 3
	crashed.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}
	notReady := corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	wffc := storagev1.VolumeBindingWaitForFirstConsumer

	for _, tc := range []struct {
		name     string
		objs     []runtime.Object
		result   Status
		want     []string // in the message
		terminal bool     // failed at once, not after the timeout
	}{
		{name: "all ready", result: StatusPassed, want: []string{"1/1 deployments", "1/1 pods"}, objs: []runtime.Object{
			&appsv1.Deployment{ObjectMeta: meta("web"), Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1)},
				Status: appsv1.DeploymentStatus{ObservedGeneration: 1, UpdatedReplicas: 1, AvailableReplicas: 1}},
			pod("web-1", corev1.PodRunning, true),
		}},
		{name: "missing secret", result: StatusFailed, terminal: true, objs: []runtime.Object{
			&appsv1.Deployment{ObjectMeta: meta("web"), Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1)},
				Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1}},
			pod("web-1", corev1.PodPending, false, waiting("app", "CreateContainerConfigError", `secret "db" not found`)),
		}, want: []string{"workloads failed", "deployment web: 0/1 available", `pod web-1: container app: CreateContainerConfigError: secret "db" not found`}},
		{name: "image not on the node", result: StatusFailed, terminal: true, objs: []runtime.Object{
			pod("web-1", corev1.PodPending, false, waiting("app", "ErrImageNeverPull", `Container image "shop:1" is not present with pull policy of Never`)),
		}, want: []string{"pod web-1: container app: ErrImageNeverPull: Container image \"shop:1\" is not present"}},
		{name: "crash loop", result: StatusFailed, objs: []runtime.Object{pod("db-0", corev1.PodRunning, false, crashed)},
			want: []string{"not ready after", "pod db-0: container app: CrashLoopBackOff: back-off 10s restarting failed container (last exit code 2, Error)"}},
		{name: "probe failing", result: StatusFailed, objs: []runtime.Object{pod("web-1", corev1.PodRunning, false, notReady)},
			want: []string{"pod web-1: container app running but not ready"}},
		{name: "unschedulable", result: StatusFailed, objs: []runtime.Object{&corev1.Pod{ObjectMeta: meta("big"),
			Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes are available: 1 Insufficient memory."}}}}},
			want: []string{"pod big: unschedulable: 0/1 nodes are available: 1 Insufficient memory."}},
		{name: "statefulset and daemonset short", result: StatusFailed, objs: []runtime.Object{
			&appsv1.StatefulSet{ObjectMeta: meta("db"), Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3)}, Status: appsv1.StatefulSetStatus{ObservedGeneration: 1, ReadyReplicas: 1}},
			&appsv1.DaemonSet{ObjectMeta: meta("agent"), Status: appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, NumberReady: 1}},
		}, want: []string{"statefulset db: 1/3 ready", "daemonset agent: 1/2 ready"}},
		{name: "controller has not seen it", result: StatusFailed, objs: []runtime.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Generation: 2}, Status: appsv1.DeploymentStatus{ObservedGeneration: 1}},
		}, want: []string{"deployment web: the controller has not seen it yet (generation 2, observed 1)"}},
		{name: "failed job", result: StatusFailed, terminal: true, objs: []runtime.Object{&batchv1.Job{ObjectMeta: meta("migrate"),
			Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}}}}},
			want: []string{"job migrate: failed (BackoffLimitExceeded: Job has reached the specified backoff limit)"}},
		{name: "suspended job and cronjob are ready", result: StatusPassed, objs: []runtime.Object{
			&batchv1.Job{ObjectMeta: meta("once"), Spec: batchv1.JobSpec{Suspend: ptr.To(true)}},
			&batchv1.CronJob{ObjectMeta: meta("nightly"), Spec: batchv1.CronJobSpec{Suspend: ptr.To(true)}},
		}, want: []string{"1/1 jobs", "1/1 cronjobs"}},
		{name: "claim waits for its first consumer", result: StatusPassed, objs: []runtime.Object{
			&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local", Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}}, VolumeBindingMode: &wffc},
			&corev1.PersistentVolumeClaim{ObjectMeta: meta("data"), Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}},
		}, want: []string{"pvc data is Pending until a pod uses it (StorageClass local binds on first consumer)"}},
		{name: "claim names a volume that is gone", result: StatusFailed, objs: []runtime.Object{
			&corev1.PersistentVolumeClaim{ObjectMeta: meta("data"), Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-1", StorageClassName: ptr.To("")},
				Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}},
		}, want: []string{"pvc data: Pending (it names volume pv-1, which does not exist here"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs := append([]runtime.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}}, tc.objs...)
			c := NewWorkloadsReadyCheck("", scenarios.WorkloadsReadyCheck{Timeout: scenarios.Duration{Duration: 2 * time.Second}})
			c.minPoll, c.maxPoll = 10*time.Millisecond, 10*time.Millisecond
			start := time.Now()
			o := c.Run(context.Background(), &VeleroTarget{Cluster: &Cluster{Kube: fake.NewClientset(objs...)}, NamespaceMapping: map[string]string{"shop": ns}})
			if o.Status != tc.result {
				t.Fatalf("%s %q, want %s", o.Status, o.Message, tc.result)
			}
			for _, w := range tc.want {
				if !strings.Contains(o.Message, w) {
					t.Errorf("message lacks %q:\n%s", w, o.Message)
				}
			}
			if took := time.Since(start); tc.terminal && took > time.Second {
				t.Errorf("a blocker that cannot clear waited %s for the timeout", took)
			}
		})
	}
}

// A terminal blocker ends the wait only once nothing else is still starting: here a second pod
// is still being created when the first reports its missing Secret; the verdict waits for it
// and names both (a restore's pods do not all start at once).
func TestWorkloadsReadyWaitsForWhatIsStillStarting(t *testing.T) {
	t.Parallel()
	const ns = "drill-2-shop"
	pod := func(name string, w *corev1.ContainerStateWaiting) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Waiting: w}}}}}
	}
	kube := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		pod("needs-secret-1", &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: `secret "api-key" not found`}),
		pod("no-image-1", &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}))
	c := NewWorkloadsReadyCheck("", scenarios.WorkloadsReadyCheck{Timeout: scenarios.Duration{Duration: time.Minute}})
	c.minPoll, c.maxPoll = 10*time.Millisecond, 10*time.Millisecond

	const startsFor = 300 * time.Millisecond
	go func() {
		time.Sleep(startsFor)
		p := pod("no-image-1", &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: `Container image "shop:1" is not present with pull policy of Never`})
		if _, err := kube.CoreV1().Pods(ns).UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
			t.Error(err)
		}
	}()
	start := time.Now()
	o := c.Run(context.Background(), &VeleroTarget{Cluster: &Cluster{Kube: kube}, NamespaceMapping: map[string]string{"shop": ns}})
	if o.Status != StatusFailed {
		t.Fatalf("%s %q, want failed", o.Status, o.Message)
	}
	for _, w := range []string{"workloads failed", `pod needs-secret-1: container app: CreateContainerConfigError: secret "api-key" not found`, "pod no-image-1: container app: ErrImageNeverPull"} {
		if !strings.Contains(o.Message, w) {
			t.Errorf("message lacks %q:\n%s", w, o.Message)
		}
	}
	if took := time.Since(start); took < startsFor || took > 30*time.Second {
		t.Errorf("the verdict came after %s: want it once the starting pod failed too (after %s), not at the timeout", took, startsFor)
	}
}

func TestPodStarting(t *testing.T) {
	t.Parallel()
	now := time.Now()
	running := func(started time.Time) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}}}
	}
	waiting := func(reason string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
	}
	for _, tc := range []struct {
		name   string
		phase  corev1.PodPhase
		status []corev1.ContainerStatus
		want   bool
	}{
		{"not reported yet", corev1.PodPending, nil, true},
		{"being created", corev1.PodPending, []corev1.ContainerStatus{waiting("ContainerCreating")}, true},
		{"missing secret", corev1.PodPending, []corev1.ContainerStatus{waiting("CreateContainerConfigError")}, false},
		{"crash looping", corev1.PodRunning, []corev1.ContainerStatus{waiting("CrashLoopBackOff")}, false},
		{"just started, not ready", corev1.PodRunning, []corev1.ContainerStatus{running(now.Add(-5 * time.Second))}, true},
		{"not ready for long", corev1.PodRunning, []corev1.ContainerStatus{running(now.Add(-2 * warmUp))}, false},
		{"failed", corev1.PodFailed, nil, false},
	} {
		p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}, Status: corev1.PodStatus{Phase: tc.phase, ContainerStatuses: tc.status}}
		if got := podStarting(p, now); got != tc.want {
			t.Errorf("%s: podStarting = %v, want %v", tc.name, got, tc.want)
		}
	}
}
